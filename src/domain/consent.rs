//! Consent: legal bases, purposes, ledger events, the personal digests the verifiable log
//! commits to, and the current state derived from the events.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::{ApiKeyId, FormId, Invalid, ListId, PartnerId, UserId};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::Invalid;

            fn from_str(s: &str) -> Result<Self, $crate::domain::Invalid> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    $crate::domain::Invalid::new(format!("must be one of {}", names.join(", ")))
                })
            }
        }
    };
}

pub(crate) use string_enum;

string_enum! {
    /// Why we may mail someone for a purpose (see the table in the design notes).
    ConsentBasis {
        DoubleOptIn = "double_opt_in",
        SingleOptIn = "single_opt_in",
        PassiveOptIn = "passive_opt_in",
        SoftOptIn = "soft_opt_in",
        B2bProfessional = "b2b_professional",
        B2bRoleAddress = "b2b_role_address",
        Imported = "imported",
        Partner = "partner",
    }
}

string_enum! {
    /// What an event does to the consent for its purpose.
    ConsentAction {
        Granted = "granted",
        Confirmed = "confirmed",
        Withdrawn = "withdrawn",
    }
}

string_enum! {
    /// The consent for one purpose, as derived from its events.
    ConsentStatus {
        /// Asked for, waiting for the person to confirm by the link mailed to them.
        Pending = "pending",
        Active = "active",
        Withdrawn = "withdrawn",
    }
}

/// What a consent is for: a list, or a co-registration partner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    List(ListId),
    Partner(String),
}

impl Purpose {
    pub fn list_id(&self) -> Option<ListId> {
        match self {
            Purpose::List(id) => Some(*id),
            Purpose::Partner(_) => None,
        }
    }

    /// The partner a partner purpose names, when it names one the way this server writes
    /// partner ids (a purpose sent by a client may name anything).
    pub fn partner_id(&self) -> Option<PartnerId> {
        match self {
            Purpose::List(_) => None,
            Purpose::Partner(id) => id.parse().ok(),
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Purpose::List(id) => write!(f, "list:{id}"),
            Purpose::Partner(id) => write!(f, "partner:{id}"),
        }
    }
}

impl FromStr for Purpose {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        let invalid = || Invalid::new("must be list:<list id> or partner:<partner id>");
        match s.split_once(':') {
            Some(("list", id)) => id.parse().map(Purpose::List).map_err(|_| invalid()),
            Some(("partner", id)) if !id.is_empty() && id.len() <= 64 => Ok(Purpose::Partner(id.to_owned())),
            _ => Err(invalid()),
        }
    }
}

/// Who recorded an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The person, through a public page (form, confirmation, unsubscribe).
    Public,
    User(UserId),
    ApiKey(ApiKeyId),
    /// consento itself (purges, bounces).
    System,
    /// A co-registration partner, through its API key.
    Partner(super::PartnerId),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Public => f.write_str("public"),
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::ApiKey(id) => write!(f, "api_key:{id}"),
            Actor::System => f.write_str("system"),
            Actor::Partner(id) => write!(f, "partner:{id}"),
        }
    }
}

/// What was shown and how it was collected: the proof GDPR Art. 7(1) asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// `form`, `api`, `confirmation`, `unsubscribe`, `preferences`, `import`, `partner`…
    pub method: String,
    pub form_id: Option<FormId>,
    pub form_version: Option<i32>,
    /// The exact consent text the person saw.
    pub consent_text: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub source_url: Option<String>,
    /// The provenance manifest of an import (bought, rented or migrated lists).
    pub manifest_id: Option<String>,
    /// Evidence that is neither personal nor a consent text, as JSON: the partner list
    /// shown beside a partner box, a partner's proof of how it collected a lead.
    pub proof: Option<String>,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// A keyed digest of a personal value. The event's leaf holds the digest, not the value,
/// so that erasing the value (and its salt) later keeps the leaf verifiable, while the
/// salt keeps small value spaces (IPv4 addresses) from being guessed from the digest.
pub fn personal_digest(salt: &str, value: Option<&str>) -> String {
    match value {
        None => String::new(),
        Some(value) => match Hmac::<Sha256>::new_from_slice(salt.as_bytes()) {
            Ok(mut mac) => {
                mac.update(value.as_bytes());
                hex(&mac.finalize().into_bytes())
            }
            Err(_) => String::new(),
        },
    }
}

/// One event as the services see it.
#[derive(Debug, Clone)]
pub struct ConsentEvent {
    pub id: String,
    pub seq: i64,
    /// Its position in the verifiable log, once the sequencer gave it one.
    pub leaf_index: Option<i64>,
    pub purpose: Purpose,
    pub action: ConsentAction,
    pub basis: ConsentBasis,
    pub requires_confirmation: bool,
    pub evidence: Evidence,
    pub consent_text_sha256: Option<String>,
    pub actor: String,
    pub occurred_at: DateTime<Utc>,
    pub hash: String,
    /// Whether the personal fields were erased.
    pub redacted: bool,
}

/// The consent for one purpose now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeConsent {
    pub purpose: Purpose,
    pub status: ConsentStatus,
    /// The basis of the grant in force (a confirmed consumer grant: `double_opt_in`; a B2B basis stays B2B).
    pub basis: ConsentBasis,
    pub granted_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub withdrawn_at: Option<DateTime<Utc>>,
    /// The provenance manifest of the grant in force, for an imported list.
    pub manifest_id: Option<String>,
}

/// The state a purpose starts in with its first event.
fn first(event: &ConsentEvent, status: ConsentStatus) -> PurposeConsent {
    PurposeConsent {
        purpose: event.purpose.clone(),
        status,
        basis: event.basis,
        granted_at: event.occurred_at,
        confirmed_at: None,
        withdrawn_at: None,
        manifest_id: event.evidence.manifest_id.clone(),
    }
}

/// Folds a contact's events (in ledger order) into the consent per purpose.
pub fn current_consents(events: &[ConsentEvent]) -> Vec<PurposeConsent> {
    let mut state: BTreeMap<Purpose, PurposeConsent> = BTreeMap::new();
    for event in events {
        let at = event.occurred_at;
        match event.action {
            ConsentAction::Granted => {
                let status = if event.requires_confirmation { ConsentStatus::Pending } else { ConsentStatus::Active };
                // A new request for what is already confirmed does not undo the confirmation.
                if let Some(current) = state.get(&event.purpose)
                    && current.status == ConsentStatus::Active
                    && status == ConsentStatus::Pending
                {
                    continue;
                }
                state.insert(event.purpose.clone(), first(event, status));
            }
            ConsentAction::Confirmed => {
                let entry = state.entry(event.purpose.clone()).or_insert_with(|| first(event, ConsentStatus::Active));
                entry.status = ConsentStatus::Active;
                entry.basis = event.basis;
                entry.confirmed_at = Some(at);
                entry.withdrawn_at = None;
            }
            ConsentAction::Withdrawn => {
                let entry =
                    state.entry(event.purpose.clone()).or_insert_with(|| first(event, ConsentStatus::Withdrawn));
                entry.status = ConsentStatus::Withdrawn;
                entry.withdrawn_at = Some(at);
            }
        }
    }
    state.into_values().collect()
}
