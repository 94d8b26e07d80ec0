//! The contact as scripts see it: a custom type with getters, so that evaluating a
//! predicate over many contacts builds no map per contact. Attributes are parsed only
//! when a script reads them.

use std::sync::{Arc, OnceLock};

use rhai::{Array, Dynamic, Engine, ImmutableString};

use crate::domain::contact::ContactRecord;

/// What a script may know about a contact: the record, and its attributes as a Rhai map
/// once a script has read them.
#[derive(Debug, Default)]
pub struct ContactFacts {
    record: ContactRecord,
    parsed: OnceLock<rhai::Map>,
}

impl From<ContactRecord> for ContactFacts {
    fn from(record: ContactRecord) -> Self {
        Self { record, parsed: OnceLock::new() }
    }
}

impl ContactFacts {
    /// The record, given back once scripts are done with it.
    pub fn into_record(self) -> ContactRecord {
        self.record
    }
}

impl std::ops::Deref for ContactFacts {
    type Target = ContactRecord;

    fn deref(&self) -> &ContactRecord {
        &self.record
    }
}

impl ContactFacts {
    fn attributes(&self) -> &rhai::Map {
        self.parsed.get_or_init(|| {
            serde_json::from_str::<serde_json::Value>(&self.attributes_json)
                .ok()
                .and_then(|value| rhai::serde::to_dynamic(value).ok())
                .and_then(|dynamic| dynamic.try_cast::<rhai::Map>())
                .unwrap_or_default()
        })
    }

    fn domain(&self) -> &str {
        self.email.rsplit_once('@').map_or("", |(_, domain)| domain)
    }
}

/// A contact handed to a script; cheap to clone.
#[derive(Debug, Clone)]
pub struct ScriptContact(pub Arc<ContactFacts>);

impl ScriptContact {
    pub fn new(facts: ContactFacts) -> Self {
        Self(Arc::new(facts))
    }
}

fn text(value: &str) -> Dynamic {
    Dynamic::from(ImmutableString::from(value))
}

fn optional(value: &Option<String>) -> Dynamic {
    value.as_deref().map_or(Dynamic::UNIT, text)
}

fn strings(values: &[String]) -> Array {
    values.iter().map(|v| text(v)).collect()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Registers the contact type and the helpers every script may call.
pub fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<ScriptContact>("Contact")
        .register_get("id", |c: &mut ScriptContact| text(&c.0.id.to_string()))
        .register_get("email", |c: &mut ScriptContact| text(&c.0.email))
        .register_get("domain", |c: &mut ScriptContact| text(c.0.domain()))
        .register_get("company", |c: &mut ScriptContact| optional(&c.0.company))
        .register_get("country", |c: &mut ScriptContact| optional(&c.0.country))
        .register_get("status", |c: &mut ScriptContact| text(&c.0.status))
        .register_get("is_role_address", |c: &mut ScriptContact| c.0.is_role_address)
        .register_get("created_at", |c: &mut ScriptContact| c.0.created_at)
        .register_get("tags", |c: &mut ScriptContact| strings(&c.0.tags))
        .register_get("lists", |c: &mut ScriptContact| strings(&c.0.lists))
        .register_get("attributes", |c: &mut ScriptContact| c.0.attributes().clone())
        .register_fn("attr", |c: &mut ScriptContact, name: &str| {
            c.0.attributes().get(name).cloned().unwrap_or(Dynamic::UNIT)
        })
        .register_fn("has_tag", |c: &mut ScriptContact, tag: &str| c.0.tags.iter().any(|t| t.eq_ignore_ascii_case(tag)))
        .register_fn("in_list", |c: &mut ScriptContact, list: &str| c.0.lists.iter().any(|l| l == list))
        .register_fn("has_consent", |c: &mut ScriptContact, purpose: &str| {
            c.0.consents.iter().any(|(p, status, _, _)| p == purpose && status == "active")
        })
        .register_fn("consent_basis", |c: &mut ScriptContact, purpose: &str| {
            c.0.consents.iter().find(|(p, _, _, _)| p == purpose).map_or(Dynamic::UNIT, |(_, _, basis, _)| text(basis))
        })
        .register_fn("consent_status", |c: &mut ScriptContact, purpose: &str| {
            c.0.consents
                .iter()
                .find(|(p, _, _, _)| p == purpose)
                .map_or(Dynamic::UNIT, |(_, status, _, _)| text(status))
        })
        .register_fn("consent_names_us", |c: &mut ScriptContact, purpose: &str| {
            c.0.consents_naming_us.iter().any(|p| p == purpose)
        })
        .register_fn("to_string", |c: &mut ScriptContact| format!("Contact({})", c.0.email))
        .register_fn("now", now)
        .register_fn("days_since", |at: i64| (now() - at).div_euclid(86_400))
        .register_fn("domain_of", |email: &str| email.rsplit_once('@').map_or(String::new(), |(_, d)| d.to_lowercase()))
        .register_fn("is_role_address", |email: &str| {
            crate::domain::Email::parse(email).is_ok_and(|email| email.is_role_address())
        });
}
