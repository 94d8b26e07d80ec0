//! Keys for links in mails and pages, and for the suppression list's address hashes.
//! Both are generated once and kept in the database, so every instance shares them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
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
    /// Carry out a person's request to download or erase their data (single use).
    DataRequest,
    /// Download the proof of one's consent (mailed in a consent receipt).
    Proof,
}

impl LinkKind {
    fn tag(self) -> &'static str {
        match self {
            LinkKind::Confirm => "c",
            LinkKind::Unsubscribe => "u",
            LinkKind::Preferences => "p",
            LinkKind::Track => "t",
            LinkKind::Survey => "s",
            LinkKind::DataRequest => "d",
            LinkKind::Proof => "r",
        }
    }
}

/// What a verified link carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    pub subject: String,
    pub scope: Option<String>,
}

/// How long a preference link works unless configured (`preference_link_days`).
pub const DEFAULT_PREFERENCE_LINK_DAYS: u32 = 90;

/// A preference link as verified: whose it is and when it was signed, so that a link
/// signed before the contact's links were revoked can be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreferenceClaims {
    pub contact: String,
    pub issued_at: DateTime<Utc>,
}

/// Cheap to clone (two 32-byte keys), so a transaction can take its own copy.
#[derive(Clone)]
pub struct Keys {
    link: Vec<u8>,
    suppression: Vec<u8>,
    preference_link_ttl: TimeDelta,
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
        Ok(Self {
            link: decode(link)?,
            suppression: decode(suppression)?,
            preference_link_ttl: TimeDelta::days(i64::from(DEFAULT_PREFERENCE_LINK_DAYS)),
        })
    }

    /// How long the preference links signed from now on work.
    pub fn with_preference_link_days(mut self, days: u32) -> Self {
        self.preference_link_ttl = TimeDelta::days(i64::from(days));
        self
    }

    /// A preference-centre token for a contact: it expires (each mail carries a fresh one,
    /// so a person who reads their mail always holds a working link) and names the moment
    /// it was signed, in microseconds, which revocation compares against.
    pub fn sign_preferences(&self, contact: &str) -> String {
        self.sign_personal(LinkKind::Preferences, contact)
    }

    /// The claims of a preference token that is genuine and not expired (revocation is
    /// the caller's check: it needs the database).
    pub fn verify_preferences(&self, token: &str) -> Option<PreferenceClaims> {
        self.verify_personal(LinkKind::Preferences, token)
    }

    /// A token that opens a contact's consent proof: it lives and is revoked as the
    /// preference links are.
    pub fn sign_proof(&self, contact: &str) -> String {
        self.sign_personal(LinkKind::Proof, contact)
    }

    pub fn verify_proof(&self, token: &str) -> Option<PreferenceClaims> {
        self.verify_personal(LinkKind::Proof, token)
    }

    fn sign_personal(&self, kind: LinkKind, contact: &str) -> String {
        let now = Utc::now();
        let issued = now.timestamp_micros().to_string();
        self.sign_link(kind, contact, Some(&issued), Some(now + self.preference_link_ttl))
    }

    fn verify_personal(&self, kind: LinkKind, token: &str) -> Option<PreferenceClaims> {
        let claims = self.verify_link(kind, token)?;
        let issued_at = DateTime::from_timestamp_micros(claims.scope?.parse().ok()?)?;
        Some(PreferenceClaims { contact: claims.subject, issued_at })
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
        Keys {
            link: b"link key".to_vec(),
            suppression: b"suppression key".to_vec(),
            preference_link_ttl: TimeDelta::days(90),
        }
    }

    #[test]
    fn a_preference_link_expires_and_names_when_it_was_signed() {
        let keys = keys();
        let before = Utc::now();
        let claims = keys.verify_preferences(&keys.sign_preferences("c-1")).unwrap();
        assert_eq!(claims.contact, "c-1");
        assert!(claims.issued_at >= before - TimeDelta::milliseconds(1) && claims.issued_at <= Utc::now());
        let expired = keys.clone().with_preference_link_days(0);
        let token = expired.sign_preferences("c-1");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(expired.verify_preferences(&token).is_none(), "a link of 0 days is dead within the second");
        // An old link without its signing time (as mailed before links expired) is refused.
        let old = keys.sign_link(LinkKind::Preferences, "c-1", None, None);
        assert!(keys.verify_preferences(&old).is_none());
    }

    #[test]
    fn a_proof_link_and_a_preference_link_open_only_their_own_page() {
        let keys = keys();
        let proof = keys.sign_proof("c-1");
        let preferences = keys.sign_preferences("c-1");
        assert_eq!(keys.verify_proof(&proof).unwrap().contact, "c-1");
        assert!(keys.verify_preferences(&proof).is_none(), "a receipt's proof link cannot change preferences");
        assert!(keys.verify_proof(&preferences).is_none(), "a newsletter's preference link cannot download proofs");
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
