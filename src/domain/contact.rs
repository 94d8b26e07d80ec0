//! Contacts: their status and tags.

use std::fmt;
use std::str::FromStr;

use super::{ContactId, Invalid};

/// Whether an address may be mailed at all. Only the server changes it: unsubscribes,
/// bounces and complaints move a contact out of `active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactStatus {
    Active,
    Unsubscribed,
    Bounced,
    Complained,
}

impl ContactStatus {
    pub const ALL: [ContactStatus; 4] =
        [ContactStatus::Active, ContactStatus::Unsubscribed, ContactStatus::Bounced, ContactStatus::Complained];

    pub fn as_str(self) -> &'static str {
        match self {
            ContactStatus::Active => "active",
            ContactStatus::Unsubscribed => "unsubscribed",
            ContactStatus::Bounced => "bounced",
            ContactStatus::Complained => "complained",
        }
    }
}

impl fmt::Display for ContactStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContactStatus {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContactStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| Invalid::new("must be one of active, unsubscribed, bounced, complained"))
    }
}

/// A tag: 1 to 64 characters of letters, digits, `-`, `_`, `:` or `.`, lower-cased, so
/// that `VIP` and `vip` are one tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let tag = input.trim().to_lowercase();
        if tag.is_empty() || tag.chars().count() > 64 {
            return Err(Invalid::new("must be 1 to 64 characters"));
        }
        if !tag.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')) {
            return Err(Invalid::new("may hold only letters, digits, '-', '_', ':' and '.'"));
        }
        Ok(Self(tag))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }
}

/// Company names and similar free text: trimmed, at most `max` characters, no control
/// characters (they end up in mail headers and pages).
pub fn parse_short_text(input: &str, max: usize) -> Result<String, Invalid> {
    let text = input.trim();
    if text.chars().count() > max {
        return Err(Invalid::new(format!("must be at most {max} characters")));
    }
    if text.chars().any(char::is_control) {
        return Err(Invalid::new("must not contain control characters"));
    }
    Ok(text.to_owned())
}

/// As [`parse_short_text`], and not empty.
pub fn parse_required_text(input: &str, max: usize) -> Result<String, Invalid> {
    let text = parse_short_text(input, max)?;
    if text.is_empty() { Err(Invalid::new("must not be empty")) } else { Ok(text) }
}

/// A contact as the services see it.
#[derive(Debug, Clone)]
pub struct Contact {
    pub id: super::ContactId,
    pub email: super::Email,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub tags: std::collections::BTreeSet<Tag>,
    pub lists: std::collections::BTreeSet<super::ListId>,
    pub company: Option<String>,
    pub country: Option<super::Country>,
    pub status: ContactStatus,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A contact as a scan reads it for scripts (segments, the send policy): only what the
/// script uses is loaded, the rest is empty.
#[derive(Debug, Default)]
pub struct ContactRecord {
    pub id: ContactId,
    pub email: String,
    pub company: Option<String>,
    pub country: Option<String>,
    pub status: String,
    pub is_role_address: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// The attributes as stored (JSON text).
    pub attributes_json: String,
    pub tags: Vec<String>,
    pub lists: Vec<String>,
    /// Per purpose: (purpose, status, basis, unix seconds of the grant).
    pub consents: Vec<(String, String, String, i64)>,
    /// Purposes whose consent in force came with a provenance manifest that names us.
    pub consents_naming_us: Vec<String>,
}

/// Whose values win when new ones meet a known contact's profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeRule {
    /// A form or a partner: fill what is unknown, never overwrite, so that whoever types an
    /// address into a form (or a partner) cannot rewrite that person's profile.
    FillUnknown,
    /// The admin's own import: the file's values replace the stored ones.
    Overwrite,
}

/// A contact's profile as stored: attributes, company and country (ISO code).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub company: Option<String>,
    pub country: Option<String>,
}

impl Profile {
    /// Takes in `incoming` by `rule` (an incoming field that is absent changes nothing);
    /// answers whether anything changed.
    pub fn merge(&mut self, incoming: &Profile, rule: MergeRule) -> bool {
        let mut changed = false;
        for (name, value) in &incoming.attributes {
            let replace = match self.attributes.get(name) {
                None => true,
                Some(known) => rule == MergeRule::Overwrite && known != value,
            };
            if replace {
                self.attributes.insert(name.clone(), value.clone());
                changed = true;
            }
        }
        for (known, new) in [(&mut self.company, &incoming.company), (&mut self.country, &incoming.country)] {
            let replace = match (&*known, new) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(known), Some(new)) => rule == MergeRule::Overwrite && known != new,
            };
            if replace {
                *known = new.clone();
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(attributes: serde_json::Value, company: Option<&str>, country: Option<&str>) -> Profile {
        Profile {
            attributes: attributes.as_object().cloned().unwrap_or_default(),
            company: company.map(str::to_owned),
            country: country.map(str::to_owned),
        }
    }

    #[test]
    fn a_form_or_a_partner_fills_what_is_unknown_and_an_import_overwrites() {
        let known = profile(serde_json::json!({"city": "Turin"}), Some("Acme"), None);
        let incoming = profile(serde_json::json!({"city": "Rome", "size": "m"}), Some("Other"), Some("IT"));
        let mut filled = known.clone();
        assert!(filled.merge(&incoming, MergeRule::FillUnknown));
        assert_eq!(filled, profile(serde_json::json!({"city": "Turin", "size": "m"}), Some("Acme"), Some("IT")));
        let mut overwritten = known.clone();
        assert!(overwritten.merge(&incoming, MergeRule::Overwrite));
        assert_eq!(overwritten, incoming);
        // Nothing new: nothing changed, whatever the rule; an absent field keeps the known one.
        let mut same = known.clone();
        assert!(!same.merge(&known, MergeRule::Overwrite));
        assert!(!same.merge(&Profile::default(), MergeRule::Overwrite));
        assert_eq!(same, known);
    }
}
