//! Events for partners and integrators: written to an outbox in the transaction that
//! caused them, then delivered by a worker on every instance as signed webhooks
//! (HMAC-SHA256 over timestamp and body), retried with exponential backoff, and
//! dead-lettered after the last attempt until someone retries them.

mod deliveries;
mod events;
mod worker;

pub use deliveries::*;
pub use events::*;
pub use worker::*;

use chrono::{DateTime, Utc};

use super::outbound::OutboundPolicy;
use super::pagination::{Page, PageRequest};
use crate::domain::WebhookId;
use crate::domain::partner::EventType;
use crate::error::{Error, FieldError, Result};
use crate::storage::models::utc;
use crate::storage::webhooks::{self as repo, SubscriptionRow};
use crate::storage::{self, Db};

/// An integrator's subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: WebhookId,
    pub url: String,
    pub secret: String,
    pub event_types: Vec<EventType>,
    pub description: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A subscription as sent.
#[derive(Debug, Clone)]
pub struct SubscriptionDraft {
    pub url: String,
    /// `None`: keep the current one (or, for a new subscription, generate one).
    pub secret: Option<String>,
    pub event_types: Vec<String>,
    pub description: String,
    pub active: bool,
}

fn parse_event_types(types: &[String]) -> std::result::Result<Vec<EventType>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    if types.is_empty() {
        errors.push(FieldError::new("event_types", "must name at least one event type"));
    }
    for (i, name) in types.iter().enumerate() {
        match name.parse::<EventType>() {
            Ok(kind) if kind.is_for_integrators() => parsed.push(kind),
            _ => {
                let names: Vec<&str> =
                    EventType::ALL.iter().filter(|k| k.is_for_integrators()).map(|k| k.as_str()).collect();
                errors
                    .push(FieldError::new(format!("event_types[{i}]"), format!("must be one of {}", names.join(", "))));
            }
        }
    }
    if errors.is_empty() { Ok(parsed) } else { Err(errors) }
}

/// A receiver URL: http(s), with a host.
pub fn check_url(url: &str) -> std::result::Result<(), &'static str> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => Ok(()),
        _ => Err("must be an http:// or https:// URL"),
    }
}

/// A new secret for signing: 32 random bytes, hex.
pub fn generate_secret() -> String {
    format!("whsec_{}", crate::domain::consent::hex(&super::auth::random_bytes::<32>()))
}

fn check_secret(secret: &str) -> std::result::Result<(), &'static str> {
    let length = secret.chars().count();
    if !(16..=200).contains(&length) { Err("must be 16 to 200 characters") } else { Ok(()) }
}

fn subscription(row: SubscriptionRow) -> Result<Subscription> {
    let types: Vec<String> = serde_json::from_str(&row.event_types).map_err(Error::internal)?;
    Ok(Subscription {
        id: row.id,
        url: row.url,
        secret: row.secret,
        event_types: types.iter().filter_map(|t| t.parse().ok()).collect(),
        description: row.description,
        active: row.active,
        created_at: utc(row.created_at),
        updated_at: utc(row.updated_at),
    })
}

fn check_draft(policy: &OutboundPolicy, draft: &SubscriptionDraft) -> Result<Vec<EventType>> {
    let mut errors = Vec::new();
    if let Err(message) = policy.check_receiver_url(&draft.url) {
        errors.push(FieldError::new("url", message));
    }
    if let Some(Err(message)) = draft.secret.as_deref().map(check_secret) {
        errors.push(FieldError::new("secret", message));
    }
    match parse_event_types(&draft.event_types) {
        Ok(types) if errors.is_empty() => Ok(types),
        Ok(_) => Err(Error::Validation(errors)),
        Err(more) => {
            errors.extend(more);
            Err(Error::Validation(errors))
        }
    }
}

pub async fn create_subscription(db: &Db, policy: &OutboundPolicy, draft: SubscriptionDraft) -> Result<Subscription> {
    let types = check_draft(policy, &draft)?;
    let now = storage::now();
    let row = SubscriptionRow {
        id: WebhookId::new(),
        url: draft.url,
        secret: draft.secret.unwrap_or_else(generate_secret),
        event_types: serde_json::to_string(&types.iter().map(|t| t.as_str()).collect::<Vec<_>>())
            .map_err(Error::internal)?,
        description: draft.description,
        active: draft.active,
        created_at: now,
        updated_at: now,
    };
    db.write(move |conn| {
        repo::insert_subscription(conn, &row)?;
        subscription(row)
    })
    .await
}

pub async fn update_subscription(
    db: &Db,
    policy: &OutboundPolicy,
    id: WebhookId,
    draft: SubscriptionDraft,
) -> Result<Subscription> {
    let types = check_draft(policy, &draft)?;
    db.write(move |conn| {
        let current = repo::find_subscription(conn, id)?.ok_or_else(|| subscription_not_found(id))?;
        let row = SubscriptionRow {
            url: draft.url,
            secret: draft.secret.unwrap_or(current.secret.clone()),
            event_types: serde_json::to_string(&types.iter().map(|t| t.as_str()).collect::<Vec<_>>())
                .map_err(Error::internal)?,
            description: draft.description,
            active: draft.active,
            updated_at: storage::now(),
            ..current
        };
        repo::update_subscription(conn, &row)?;
        subscription(row)
    })
    .await
}

pub async fn find_subscription(db: &Db, id: WebhookId) -> Result<Subscription> {
    db.read(move |conn| subscription(repo::find_subscription(conn, id)?.ok_or_else(|| subscription_not_found(id))?))
        .await
}

pub async fn list_subscriptions(db: &Db, page: PageRequest) -> Result<Page<Subscription>> {
    db.read(move |conn| {
        let rows = repo::list_subscriptions(conn, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(subscription)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.page(rows, |s| s.id.to_string()))
    })
    .await
}

/// Deletes a subscription; its deliveries still pending end dead (nowhere to go).
pub async fn delete_subscription(db: &Db, id: WebhookId) -> Result<()> {
    db.write(move |conn| {
        if repo::delete_subscription(conn, id)? == 0 {
            return Err(subscription_not_found(id));
        }
        Ok(())
    })
    .await
}

fn subscription_not_found(id: WebhookId) -> Error {
    Error::NotFound(format!("there is no webhook subscription {id}"))
}
