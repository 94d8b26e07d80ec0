//! Keys for links in mails and pages, and for the suppression list's address hashes.
//! Both are generated once and kept in the database, so every instance shares them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::auth::random_bytes;
use crate::domain::consent::hex;
use crate::error::{Error, Result};
use crate::storage::{Db, secrets};

/// Bytes of the HMAC kept in a link: 128 bits, enough against forgery, short in a URL.
const LINK_MAC_BYTES: usize = 16;

/// What a link lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Confirm a double opt-in request.
    Confirm,
    /// Unsubscribe (from one list, or all).
    Unsubscribe,
    /// Open the preference centre.
    Preferences,
    /// Count an open or a click (and, for a click, where to go).
    Track,
    /// Answer a post-signup survey.
    Survey,
}

impl LinkKind {
    fn tag(self) -> &'static str {
        match self {
            LinkKind::Confirm => "c",
            LinkKind::Unsubscribe => "u",
            LinkKind::Preferences => "p",
            LinkKind::Track => "t",
            LinkKind::Survey => "s",
        }
    }
}

/// What a verified link carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    pub subject: String,
    pub scope: Option<String>,
}

/// Cheap to clone (two 32-byte keys), so a transaction can take its own copy.
#[derive(Clone)]
pub struct Keys {
    link: Vec<u8>,
    suppression: Vec<u8>,
}

impl Keys {
    pub async fn load(db: &Db) -> Result<Self> {
        let (link, suppression) = db
            .read(|conn| {
                let generate = || URL_SAFE_NO_PAD.encode(random_bytes::<32>());
                Ok((
                    secrets::find_or_insert_secret(conn, "link_signing_key", generate)?,
                    secrets::find_or_insert_secret(conn, "suppression_hash_key", generate)?,
                ))
            })
            .await?;
        let decode = |key: String| URL_SAFE_NO_PAD.decode(key).map_err(Error::internal);
        Ok(Self { link: decode(link)?, suppression: decode(suppression)? })
    }

    /// The keyed hash under which an address is suppressed. Keyed, so that the list
    /// cannot be tested against a dictionary of addresses without the server's secret.
    pub fn email_hash(&self, email_key: &str) -> String {
        hex(&mac(&self.suppression, email_key.as_bytes()))
    }

    /// A signed link token: `payload.mac`, both base64url.
    pub fn sign_link(
        &self,
        kind: LinkKind,
        subject: &str,
        scope: Option<&str>,
        expires: Option<DateTime<Utc>>,
    ) -> String {
        let payload =
            format!("{}|{}|{}|{}", kind.tag(), subject, scope.unwrap_or(""), expires.map_or(0, |at| at.timestamp()));
        let mac = mac(&self.link, payload.as_bytes());
        format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(&mac[..LINK_MAC_BYTES]))
    }

    /// The claims of a token this server signed for `kind` that has not expired. Any
    /// failure answers `None` alike, so a caller cannot tell a forged link from a stale one.
    pub fn verify_link(&self, kind: LinkKind, token: &str) -> Option<LinkClaims> {
        let (payload, tag) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != LINK_MAC_BYTES {
            return None;
        }
        let mut verifier = Hmac::<Sha256>::new_from_slice(&self.link).ok()?;
        verifier.update(&payload);
        // Constant-time comparison of the truncated MAC.
        verifier.verify_truncated_left(&tag).ok()?;
        let payload = String::from_utf8(payload).ok()?;
        let mut parts = payload.split('|');
        let (tag_kind, subject, scope, expires) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if tag_kind != kind.tag() || parts.next().is_some() {
            return None;
        }
        let expires: i64 = expires.parse().ok()?;
        if expires != 0 && Utc::now().timestamp() > expires {
            return None;
        }
        Some(LinkClaims { subject: subject.to_owned(), scope: (!scope.is_empty()).then(|| scope.to_owned()) })
    }
}

pub(crate) fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length; this branch cannot be reached.
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys { link: b"link key".to_vec(), suppression: b"suppression key".to_vec() }
    }

    #[test]
    fn a_signed_link_verifies_for_its_kind_only() {
        let keys = keys();
        let token = keys.sign_link(LinkKind::Unsubscribe, "contact-1", Some("list-9"), None);
        let claims = keys.verify_link(LinkKind::Unsubscribe, &token).unwrap();
        assert_eq!(claims, LinkClaims { subject: "contact-1".into(), scope: Some("list-9".into()) });
        assert!(keys.verify_link(LinkKind::Confirm, &token).is_none());
    }

    #[test]
    fn a_tampered_or_expired_link_does_not_verify() {
        let keys = keys();
        let token = keys.sign_link(LinkKind::Confirm, "c-1", None, None);
        let (payload, tag) = token.split_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode("c|c-2||0");
        assert!(keys.verify_link(LinkKind::Confirm, &format!("{forged_payload}.{tag}")).is_none());
        assert!(keys.verify_link(LinkKind::Confirm, &format!("{payload}.AAAA")).is_none());
        let expired = keys.sign_link(LinkKind::Confirm, "c-1", None, Some(Utc::now() - chrono::TimeDelta::hours(1)));
        assert!(keys.verify_link(LinkKind::Confirm, &expired).is_none());
    }
}
