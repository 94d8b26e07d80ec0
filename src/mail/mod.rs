//! Mail: building messages and handing them to a transport (lettre). SMTP when a URL
//! is configured, otherwise a folder of `.eml` files.

pub mod smtp;
pub mod template;

use std::path::Path;
use std::sync::Arc;

use lettre::address::Envelope;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm, DkimSigningKey,
};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{Address, AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};

use crate::error::{Error, Result};
use crate::settings::DkimAlgorithm;

/// Where messages go.
#[derive(Clone)]
pub enum Transport {
    /// An SMTP server: `smtp://host:port` (plain), `smtp://…?tls=required` (STARTTLS),
    /// `smtps://host:465` (TLS), with `user:password@` for authentication.
    Smtp(Arc<smtp::SmtpPool>),
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

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self { permanent: false, message: message.into() }
    }
}

impl Transport {
    /// SMTP with at most `pool_size` connections at once.
    pub fn smtp(url: &str, pool_size: u32) -> Result<Self> {
        let endpoint =
            smtp::Endpoint::parse(url).map_err(|e| Error::internal(format!("the SMTP URL is not valid: {e}")))?;
        Ok(Transport::Smtp(Arc::new(smtp::SmtpPool::new(endpoint, pool_size))))
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
            Transport::Smtp(smtp) => smtp.send(&envelope, message).await,
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
    pub reply_to: Option<String>,
    /// The Message-ID to use (with its angle brackets); `None`: a new one.
    pub message_id: Option<String>,
    /// Extra headers such as `List-Unsubscribe`.
    pub headers: Vec<(String, String)>,
}

/// Signs messages with DKIM (RFC 6376; ed25519-sha256 per RFC 8463, or rsa-sha256).
pub struct Signer {
    selector: String,
    domain: String,
    algorithm: DkimAlgorithm,
    key: String,
}

impl Signer {
    /// Checks the key now, so that a bad key stops the start rather than every message.
    pub fn new(selector: &str, domain: &str, algorithm: DkimAlgorithm, key: &str) -> Result<Self> {
        let signer =
            Self { selector: selector.to_owned(), domain: domain.to_owned(), algorithm, key: key.trim().to_owned() };
        signer.key()?;
        Ok(signer)
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    fn key(&self) -> Result<DkimSigningKey> {
        let algorithm = match self.algorithm {
            DkimAlgorithm::Ed25519 => DkimSigningAlgorithm::Ed25519,
            DkimAlgorithm::Rsa => DkimSigningAlgorithm::Rsa,
        };
        DkimSigningKey::new(&self.key, algorithm)
            .map_err(|e| Error::internal(format!("the DKIM key is not a valid {:?} key: {e}", self.algorithm)))
    }

    /// The headers signed: those that say who, what and how to leave, when present.
    fn config(&self, message: &Message) -> Result<DkimConfig> {
        let headers = SIGNED_HEADERS
            .iter()
            .filter(|name| message.headers().get_raw(name).is_some())
            .map(|name| HeaderName::new_from_ascii_str(name))
            .collect();
        Ok(DkimConfig::new(
            self.selector.clone(),
            self.domain.clone(),
            self.key()?,
            headers,
            DkimCanonicalization { header: DkimCanonicalizationType::Relaxed, body: DkimCanonicalizationType::Relaxed },
        ))
    }
}

const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// A mailbox as a header names it (`Name <address>` or a bare address), read: its display
/// name if any and its address; or why it is not one.
pub fn parse_mailbox(text: &str) -> std::result::Result<(Option<String>, String), String> {
    let mailbox = text.parse::<lettre::message::Mailbox>().map_err(|e| e.to_string())?;
    Ok((mailbox.name, mailbox.email.to_string()))
}

/// Builds the message. Names and subjects with line breaks or other control characters are
/// folded to spaces first: contact data must never break a message or inject a header.
pub fn compose(draft: &Draft, message_domain: &str, signer: Option<&Signer>) -> Result<Composed> {
    let from: Mailbox = draft.from.parse().map_err(|e| Error::internal(format!("sender {:?}: {e}", draft.from)))?;
    let to: Mailbox = draft.to.parse().map_err(|e| Error::field("email", format!("cannot be mailed: {e}")))?;
    let message_id =
        draft.message_id.clone().unwrap_or_else(|| format!("<{}@{}>", uuid::Uuid::now_v7(), message_domain));
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(single_line(&draft.subject))
        .message_id(Some(message_id.clone()));
    if let Some(reply_to) = &draft.reply_to {
        let reply_to: Mailbox = reply_to.parse().map_err(|e| Error::internal(format!("reply-to {reply_to:?}: {e}")))?;
        builder = builder.reply_to(reply_to);
    }
    for (name, value) in &draft.headers {
        let name = HeaderName::new_from_ascii(name.clone()).map_err(|e| Error::internal(e.to_string()))?;
        builder = builder.raw_header(HeaderValue::new(name, single_line(value)));
    }
    let mut message = match &draft.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(draft.text.clone(), html.clone())),
        None => builder.singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(draft.text.clone())),
    }
    .map_err(|e| Error::internal(format!("the message cannot be built: {e}")))?;
    if let Some(signer) = signer {
        let config = signer.config(&message)?;
        lettre::message::dkim::dkim_sign(&mut message, &config);
    }
    let raw = String::from_utf8(message.formatted()).map_err(Error::internal)?;
    Ok(Composed { from: from.email.to_string(), to: to.email.to_string(), message_id, raw })
}

fn single_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Contact data never breaks a message: whatever the subject, a reply-to name or
        /// an extra header's value hold (line breaks, NUL, other control characters,
        /// any Unicode), the message builds, has one Subject, and gains no header.
        #[test]
        fn no_text_injects_a_header(subject in "\\PC{0,40}|.{0,40}\r\nBcc: x@y.z.{0,10}", value in ".{0,40}") {
            let draft = Draft {
                from: "News <news@example.org>".to_owned(),
                to: "reader@example.org".to_owned(),
                subject: subject.clone(),
                text: format!("Hello\r\n{subject}"),
                html: Some(format!("<p>{subject}</p>")),
                headers: vec![("List-Id".to_owned(), value)],
                ..Draft::default()
            };
            let composed = compose(&draft, "example.org", None).unwrap();
            let head = composed.raw.split("\r\n\r\n").next().unwrap();
            let names: Vec<&str> = head
                .split("\r\n")
                .filter(|line| !line.starts_with([' ', '\t']))
                .map(|line| line.split(':').next().unwrap())
                .collect();
            proptest::prop_assert_eq!(names.iter().filter(|n| n.eq_ignore_ascii_case("Subject")).count(), 1);
            proptest::prop_assert!(!names.iter().any(|n| n.eq_ignore_ascii_case("Bcc")), "{}", head);
        }
    }
}
