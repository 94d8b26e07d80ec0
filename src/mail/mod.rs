//! Mail: building messages and handing them to a transport (lettre). SMTP when a URL
//! is configured, otherwise a folder of `.eml` files.

use std::path::Path;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::{Address, AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::error::{Error, Result};

/// Where messages go.
#[derive(Clone)]
pub enum Transport {
    /// An SMTP server: `smtp://host:port` (plain), `smtp://…?tls=required` (STARTTLS),
    /// `smtps://host:465` (TLS), with `user:password@` for authentication.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// A folder where each message is written as an `.eml` file.
    Folder(AsyncFileTransport<Tokio1Executor>),
}

/// Why a message was not sent, and whether trying again can help.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

impl Transport {
    pub fn smtp(url: &str, pool_size: u32) -> Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| Error::internal(format!("the SMTP URL is not valid: {e}")))?
            .timeout(Some(Duration::from_secs(30)))
            .pool_config(PoolConfig::new().max_size(pool_size.max(1)))
            .build();
        Ok(Transport::Smtp(transport))
    }

    pub fn folder(path: &Path) -> Self {
        Transport::Folder(AsyncFileTransport::new(path))
    }

    pub async fn send_raw(&self, from: &str, to: &str, message: &[u8]) -> Result<(), SendError> {
        let address = |text: &str| {
            text.parse::<Address>().map_err(|e| SendError { permanent: true, message: format!("{text}: {e}") })
        };
        let envelope = Envelope::new(Some(address(from)?), vec![address(to)?])
            .map_err(|e| SendError { permanent: true, message: e.to_string() })?;
        match self {
            Transport::Smtp(smtp) => smtp
                .send_raw(&envelope, message)
                .await
                .map(|_| ())
                .map_err(|e| SendError { permanent: e.is_permanent(), message: e.to_string() }),
            Transport::Folder(folder) => folder
                .send_raw(&envelope, message)
                .await
                .map(|_| ())
                .map_err(|e| SendError { permanent: false, message: e.to_string() }),
        }
    }
}

/// A message ready to store and send.
#[derive(Debug, Clone)]
pub struct Composed {
    pub from: String,
    pub to: String,
    pub message_id: String,
    /// The whole message, RFC 5322, as sent: retries send the same bytes and Message-ID.
    pub raw: String,
}

/// What a message says.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Extra headers such as `List-Unsubscribe`.
    pub headers: Vec<(String, String)>,
}

/// Builds the message. Names and subjects with line breaks or other control characters are
/// folded to spaces first: contact data must never break a message or inject a header.
pub fn compose(draft: &Draft, message_domain: &str) -> Result<Composed> {
    let from: Mailbox = draft.from.parse().map_err(|e| Error::internal(format!("sender {:?}: {e}", draft.from)))?;
    let to: Mailbox = draft.to.parse().map_err(|e| Error::field("email", format!("cannot be mailed: {e}")))?;
    let message_id = format!("<{}@{}>", uuid::Uuid::now_v7(), message_domain);
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(single_line(&draft.subject))
        .message_id(Some(message_id.clone()));
    for (name, value) in &draft.headers {
        let name = HeaderName::new_from_ascii(name.clone()).map_err(|e| Error::internal(e.to_string()))?;
        builder = builder.raw_header(HeaderValue::new(name, single_line(value)));
    }
    let message = match &draft.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(draft.text.clone(), html.clone())),
        None => builder.singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(draft.text.clone())),
    }
    .map_err(|e| Error::internal(format!("the message cannot be built: {e}")))?;
    let raw = String::from_utf8(message.formatted()).map_err(Error::internal)?;
    Ok(Composed { from: from.email.to_string(), to: to.email.to_string(), message_id, raw })
}

fn single_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}
