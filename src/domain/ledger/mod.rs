//! The consent ledger as a verifiable log: each consent event is one leaf of an RFC 9162
//! Merkle tree ([`merkle`]), whose heads are signed as C2SP checkpoints ([`note`]).
//!
//! A leaf is a canonical byte string: the UTF-8 JSON object [`Leaf`], keys in the order
//! declared here, no whitespace, strings escaped as serde_json writes them. It commits to
//! everything the proof is about, the exact consent text included; personal values (the
//! address, IP, user agent, page) appear only as HMAC-SHA256 digests under a per-event
//! salt, so that erasure can drop the values and the salt and the leaf still verifies,
//! while whoever holds the value and the salt (the person's proof bundle) can check it.

pub mod merkle;
pub mod note;

use serde::{Deserialize, Serialize};

/// The leaf format written now. Leaves say their version first, so that a later format
/// can be told apart.
pub const LEAF_VERSION: u32 = 1;

/// One consent event as a leaf (format version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leaf {
    /// The leaf format: 1.
    pub v: u32,
    pub event_id: String,
    pub contact_id: String,
    /// HMAC-SHA256(salt, the normalised address), hex; empty when none was recorded.
    pub email_digest: String,
    /// `list:<id>` or `partner:<id>`.
    pub purpose: String,
    /// `granted`, `confirmed` or `withdrawn`.
    pub action: String,
    pub basis: String,
    pub requires_confirmation: bool,
    pub method: String,
    pub form_id: Option<String>,
    pub form_version: Option<i32>,
    /// The exact words shown beside the box, or agreed to.
    pub consent_text: Option<String>,
    /// Further evidence as JSON text: the partners shown beside a partner box, a partner's
    /// proof of how it collected a lead.
    pub proof: Option<String>,
    /// The provenance manifest of an imported list.
    pub manifest_id: Option<String>,
    pub ip_digest: String,
    pub user_agent_digest: String,
    pub source_url_digest: String,
    /// `public`, `user:<id>`, `api_key:<id>`, `partner:<id>` or `system`.
    pub actor: String,
    /// RFC 3339, UTC, microseconds.
    pub occurred_at: String,
}

impl Leaf {
    /// The exact bytes hashed into the tree.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings, numbers and options cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn hash(&self) -> merkle::Hash {
        merkle::leaf_hash(&self.to_bytes())
    }

    /// Reads a leaf's bytes (for a proof bundle's decoded fields).
    pub fn parse(bytes: &[u8]) -> Result<Self, super::Invalid> {
        let leaf: Leaf = serde_json::from_slice(bytes).map_err(|e| super::Invalid::new(format!("not a leaf: {e}")))?;
        if leaf.v != LEAF_VERSION {
            return Err(super::Invalid::new(format!("leaf format {} is not known", leaf.v)));
        }
        if leaf.to_bytes() != bytes {
            return Err(super::Invalid::new("the leaf is not in its canonical form"));
        }
        Ok(leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf() -> Leaf {
        Leaf {
            v: LEAF_VERSION,
            event_id: "e".to_owned(),
            contact_id: "c".to_owned(),
            email_digest: "d".to_owned(),
            purpose: "list:x".to_owned(),
            action: "granted".to_owned(),
            basis: "single_opt_in".to_owned(),
            requires_confirmation: true,
            method: "form".to_owned(),
            form_id: None,
            form_version: Some(2),
            consent_text: Some("Send me \"news\"\nmonthly".to_owned()),
            proof: None,
            manifest_id: None,
            ip_digest: String::new(),
            user_agent_digest: String::new(),
            source_url_digest: String::new(),
            actor: "public".to_owned(),
            occurred_at: "2026-12-01T09:00:00.000000Z".to_owned(),
        }
    }

    /// What must never change: every proof ever handed out holds leaves in this format and
    /// hashes of it. A change here breaks them all; a new format takes a new `LEAF_VERSION`
    /// and keeps this one readable.
    #[test]
    fn the_leaf_format_and_its_hash_are_pinned() {
        let bytes = leaf().to_bytes();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            PINNED_LEAF,
            "the leaf format changed: every proof issued would stop verifying"
        );
        assert_eq!(crate::domain::consent::hex(&leaf().hash()), PINNED_LEAF_HASH);
        // The personal fields are HMAC-SHA256 under the event's salt, in lower-case hex.
        assert_eq!(
            crate::domain::consent::personal_digest("0123456789abcdef", Some("203.0.113.7")),
            "e25e7aa15f18e79a3fd02a8fa35b11c2ad014cb9998c114e682d6e9c821ad6b7"
        );
    }

    const PINNED_LEAF: &str = concat!(
        r#"{"v":1,"event_id":"e","contact_id":"c","email_digest":"d","purpose":"list:x","action":"granted","#,
        r#""basis":"single_opt_in","requires_confirmation":true,"method":"form","form_id":null,"form_version":2,"#,
        r#""consent_text":"Send me \"news\"\nmonthly","proof":null,"manifest_id":null,"ip_digest":"","#,
        r#""user_agent_digest":"","source_url_digest":"","actor":"public","occurred_at":"2026-12-01T09:00:00.000000Z"}"#,
    );
    /// SHA-256(0x00 || leaf), RFC 9162's leaf hash, computed outside consento.
    const PINNED_LEAF_HASH: &str = "f5be4ea13e94495f77c0e2cd84e1546776d611f2dc0414dcf9f5e97295b172c6";

    #[test]
    fn a_leaf_is_json_in_a_fixed_order_and_reads_back() {
        let bytes = leaf().to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"v":1,"event_id":"e","contact_id":"c","email_digest":"d","purpose":"list:x""#));
        assert!(text.contains(r#""consent_text":"Send me \"news\"\nmonthly""#));
        assert_eq!(Leaf::parse(&bytes).unwrap(), leaf());
        let spaced = text.replace(",\"contact_id\"", ", \"contact_id\"");
        assert!(Leaf::parse(spaced.as_bytes()).is_err());
    }
}
