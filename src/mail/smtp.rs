//! SMTP connections kept open and reused, each opened with `TCP_NODELAY`.
//!
//! lettre's own pool opens its sockets without `TCP_NODELAY`, so every message on a
//! connection waits on Nagle's algorithm and the peer's delayed ACK (about 40 ms each:
//! some 23 messages per second per connection). Here the socket is opened by us, with
//! nodelay, and handed to lettre's SMTP conversation (`connect_with_transport`); STARTTLS
//! and authentication are lettre's. Implicit TLS (`smtps://`) uses lettre's own connect,
//! which cannot be given a socket, and keeps the stall.

use std::sync::Mutex;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::SendError;

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain text.
    None,
    /// STARTTLS if the server offers it.
    Opportunistic,
    /// STARTTLS, required.
    StartTls,
    /// TLS from the first byte (`smtps://`, port 465).
    Implicit,
}

/// Where and how to connect, from a URL: `smtp://[user:password@]host[:port][?tls=required|opportunistic]`
/// or `smtps://…` (lettre's URL form).
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    credentials: Option<(String, String)>,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or("the URL has no scheme (smtp:// or smtps://)")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, rest),
        };
        let tls = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
        let (security, default_port) = match (scheme, tls.as_deref()) {
            ("smtps", _) => (Security::Implicit, 465),
            ("smtp", Some("required")) => (Security::StartTls, 587),
            ("smtp", Some("opportunistic")) => (Security::Opportunistic, 587),
            ("smtp", None | Some("none")) => (Security::None, 25),
            ("smtp", Some(other)) => return Err(format!("tls={other} is not one of required, opportunistic, none")),
            (other, _) => return Err(format!("{other}:// is not smtp:// or smtps://")),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || hostport.starts_with('[') => {
                (host.to_owned(), port.parse::<u16>().map_err(|_| format!("the port {port:?} is not a number"))?)
            }
            _ => (hostport.to_owned(), default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err("the URL names no host".to_owned());
        }
        let decode = |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
        let credentials = userinfo.map(|userinfo| match userinfo.split_once(':') {
            Some((user, password)) => (decode(user), decode(password)),
            None => (decode(userinfo), String::new()),
        });
        Ok(Self { host, port, security, credentials })
    }
}

/// Connections to one SMTP server: at most `size` at once, idle ones reused.
pub struct SmtpPool {
    endpoint: Endpoint,
    hello: ClientId,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
    permits: Semaphore,
    timeout: Duration,
}

impl SmtpPool {
    pub fn new(endpoint: Endpoint, size: u32) -> Self {
        Self {
            endpoint,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1) as usize),
            timeout: Duration::from_secs(30),
        }
    }

    /// Sends one message. A reused connection the server has closed meanwhile is replaced
    /// once, transparently. A server that stops answering fails the message after the
    /// timeout rather than holding it.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SendError> {
        match tokio::time::timeout(self.timeout * 2, self.send_within(envelope, message)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(SendError::transient(format!(
                "{}:{}: no answer within {} s",
                self.endpoint.host,
                self.endpoint.port,
                (self.timeout * 2).as_secs()
            ))),
        }
    }

    async fn send_within(&self, envelope: &Envelope, message: &[u8]) -> Result<(), SendError> {
        let _permit = self.permits.acquire().await.map_err(|e| SendError::transient(e.to_string()))?;
        if let Some(mut conn) = self.take_idle() {
            match conn.send(envelope, message).await {
                Ok(_) => {
                    self.put_back(conn);
                    return Ok(());
                }
                // The server answered: that answer stands.
                Err(error) if error.is_permanent() || error.is_transient() => return Err(SendError::from(error)),
                // The connection died while idle: try a new one.
                Err(_) => conn.abort().await,
            }
        }
        let mut conn = self.connect().await?;
        let outcome = conn.send(envelope, message).await;
        match outcome {
            Ok(_) => {
                self.put_back(conn);
                Ok(())
            }
            Err(error) => {
                if !conn.has_broken() {
                    self.put_back(conn);
                }
                Err(SendError::from(error))
            }
        }
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        self.idle.lock().ok()?.pop()
    }

    fn put_back(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let endpoint = &self.endpoint;
        let tls = || TlsParameters::new(endpoint.host.clone()).map_err(|e| SendError::transient(format!("TLS: {e}")));
        let mut conn = if endpoint.security == Security::Implicit {
            AsyncSmtpConnection::connect_tokio1(
                (endpoint.host.as_str(), endpoint.port),
                Some(self.timeout),
                &self.hello,
                Some(tls()?),
                None,
            )
            .await?
        } else {
            let address = (endpoint.host.as_str(), endpoint.port);
            let stream = tokio::time::timeout(self.timeout, TcpStream::connect(address))
                .await
                .map_err(|_| {
                    SendError::transient(format!("{}:{}: connection timed out", endpoint.host, endpoint.port))
                })?
                .map_err(|e| SendError::transient(format!("{}:{}: {e}", endpoint.host, endpoint.port)))?;
            stream.set_nodelay(true).map_err(|e| SendError::transient(e.to_string()))?;
            let greeted = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello);
            let mut conn = tokio::time::timeout(self.timeout, greeted)
                .await
                .map_err(|_| SendError::transient(format!("{}:{}: no greeting", endpoint.host, endpoint.port)))??;
            let starttls = match endpoint.security {
                Security::StartTls => true,
                Security::Opportunistic => conn.can_starttls(),
                _ => false,
            };
            if starttls {
                conn.starttls(tls()?, &self.hello).await?;
            }
            conn
        };
        if let Some((user, password)) = &endpoint.credentials {
            let credentials = Credentials::new(user.clone(), password.clone());
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials).await?;
        }
        Ok(conn)
    }
}

impl From<lettre::transport::smtp::Error> for SendError {
    fn from(error: lettre::transport::smtp::Error) -> Self {
        SendError { permanent: error.is_permanent(), message: error.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_server_the_security_and_the_credentials() {
        let plain = Endpoint::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((plain.host.as_str(), plain.port, plain.security), ("127.0.0.1", 2525, Security::None));
        let submission = Endpoint::parse("smtp://me%40x.org:p%3Ass@mail.x.org?tls=required").unwrap();
        assert_eq!((submission.port, submission.security), (587, Security::StartTls));
        assert_eq!(submission.credentials, Some(("me@x.org".to_owned(), "p:ss".to_owned())));
        assert_eq!(Endpoint::parse("smtps://mail.x.org").unwrap().port, 465);
        assert!(Endpoint::parse("http://x").is_err());
        assert!(Endpoint::parse("smtp://x?tls=maybe").is_err());
    }
}
