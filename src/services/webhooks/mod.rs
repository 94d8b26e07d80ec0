//! Events for partners and integrators: written to an outbox in the transaction that
//! caused them, then delivered by a worker on every instance as signed webhooks
//! (HMAC-SHA256 over timestamp and body), retried with exponential backoff, and
//! dead-lettered after the last attempt until someone retries them.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::outbound::{OutboundPolicy, Refused};
use super::pagination::{Page, PageRequest};
use crate::domain::partner::{DeliveryStatus, EventType, SIGNATURE_HEADER, signature_header};
use crate::domain::{DeliveryId, WebhookId};
use crate::error::{Error, FieldError, Result};
use crate::settings::Settings;
use crate::storage::models::utc;
use crate::storage::partners::PartnerRow;
use crate::storage::webhooks::{self as repo, AttemptRow, DeliveryRow, SubscriptionRow};
use crate::storage::{self, Db, DbConnection, partners};

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

/// One event to one receiver, with its attempts.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    /// `partner:<id>` or `subscription:<id>`.
    pub target: String,
    pub event_id: String,
    pub event_type: String,
    pub lead_id: Option<String>,
    pub payload: Value,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempt_log: Vec<Attempt>,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// The envelope every receiver gets: the same `id` on every attempt, so that a receiver
/// can drop a repeat.
fn envelope(event_id: &str, kind: EventType, at: DateTime<Utc>, data: Value) -> Value {
    json!({
        "id": event_id,
        "type": kind.as_str(),
        "created_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
}

fn delivery_row(
    target: String,
    event_id: &str,
    kind: EventType,
    lead_id: Option<&str>,
    payload: &Value,
) -> DeliveryRow {
    let now = storage::now();
    DeliveryRow {
        id: DeliveryId::new().to_string(),
        target,
        event_id: event_id.to_owned(),
        event_type: kind.as_str().to_owned(),
        lead_id: lead_id.map(str::to_owned),
        payload: payload.to_string(),
        status: DeliveryStatus::Pending.as_str().to_owned(),
        attempts: 0,
        next_attempt_at: now,
        lease_until: None,
        last_error: None,
        created_at: now,
        delivered_at: None,
    }
}

/// A contact as events carry it.
pub fn contact_json(contact: &crate::domain::Contact) -> Value {
    json!({
        "id": contact.id.to_string(),
        "email": contact.email.as_str(),
        "company": contact.company,
        "country": contact.country.as_ref().map(|c| c.as_str().to_owned()),
        "attributes": contact.attributes,
        "tags": contact.tags.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>(),
        "lists": contact.lists.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "status": contact.status.as_str(),
    })
}

/// Who listens: the active subscriptions, read once for a write that emits several events
/// (a signup: the form submitted, the contact created, each consent granted), where each
/// emit would read them again. Read inside the write's transaction, as [`emit`] does.
pub struct Listeners {
    subscriptions: Vec<SubscriptionRow>,
}

impl Listeners {
    pub fn read(conn: &mut DbConnection) -> Result<Self> {
        Ok(Self { subscriptions: repo::list_active_subscriptions(conn)? })
    }

    /// The subscriptions that asked for events of this type.
    fn wanting(&self, kind: EventType) -> Vec<&SubscriptionRow> {
        let asked = |s: &&SubscriptionRow| {
            serde_json::from_str::<Vec<String>>(&s.event_types)
                .is_ok_and(|types| types.iter().any(|t| t == kind.as_str()))
        };
        self.subscriptions.iter().filter(asked).collect()
    }

    /// Queues an event for every subscription that asked for its type, in the caller's
    /// transaction: the event exists if and only if what caused it was committed.
    pub fn emit(&self, conn: &mut DbConnection, kind: EventType, data: Value) -> Result<()> {
        let wanted = self.wanting(kind);
        if wanted.is_empty() {
            return Ok(());
        }
        let event_id = uuid::Uuid::now_v7().to_string();
        let payload = envelope(&event_id, kind, Utc::now(), data);
        let rows: Vec<DeliveryRow> = wanted
            .iter()
            .map(|s| delivery_row(format!("subscription:{}", s.id), &event_id, kind, None, &payload))
            .collect();
        repo::insert_deliveries(conn, &rows)?;
        Ok(())
    }

    /// Queues a contact event with the contact as it now is (read only when someone listens).
    pub fn emit_contact(&self, conn: &mut DbConnection, kind: EventType, contact_id: &str) -> Result<()> {
        if self.wanting(kind).is_empty() {
            return Ok(());
        }
        if let Some(contact) = crate::storage::contacts::find_contact(conn, contact_id)? {
            self.emit(conn, kind, json!({"contact": contact_json(&contact)}))?;
        }
        Ok(())
    }
}

/// Queues a contact event with the contact as it now is (read only when someone listens).
pub fn emit_contact(conn: &mut DbConnection, kind: EventType, contact_id: &str) -> Result<()> {
    Listeners::read(conn)?.emit_contact(conn, kind, contact_id)
}

/// Erasure: events still held about the contact keep their type and time, not the person.
pub fn redact_contact(conn: &mut DbConnection, contact_id: &str, lead_ids: &[String]) -> Result<()> {
    for mut row in repo::list_deliveries_mentioning(conn, contact_id, lead_ids)? {
        let payload: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
        row.payload = json!({
            "id": payload.get("id"),
            "type": payload.get("type"),
            "created_at": payload.get("created_at"),
            "data": {"redacted": true, "lead_id": row.lead_id, "reason": payload["data"].get("reason")},
        })
        .to_string();
        repo::update_delivery(conn, &row)?;
    }
    Ok(())
}

/// Queues an event for every active subscription that asked for its type, in the
/// caller's transaction: the event exists if and only if what caused it was committed.
pub fn emit(conn: &mut DbConnection, kind: EventType, data: Value) -> Result<()> {
    Listeners::read(conn)?.emit(conn, kind, data)
}

/// Queues a lead event for a partner: by webhook when it has one, otherwise kept for it
/// to pull (`GET /partner/v1/events`).
pub fn emit_to_partner(
    conn: &mut DbConnection,
    partner: &PartnerRow,
    kind: EventType,
    lead_id: &str,
    data: Value,
) -> Result<()> {
    let event_id = uuid::Uuid::now_v7().to_string();
    let payload = envelope(&event_id, kind, Utc::now(), data);
    let mut row = delivery_row(format!("partner:{}", partner.id), &event_id, kind, Some(lead_id), &payload);
    if partner.webhook_url.is_none() {
        row.status = DeliveryStatus::Pull.as_str().to_owned();
    }
    repo::insert_deliveries(conn, &[row])?;
    Ok(())
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
        id: storage::models::parse_id("webhook id", &row.id)?,
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
        id: WebhookId::new().to_string(),
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
        let current = repo::find_subscription(conn, &id.to_string())?.ok_or_else(|| subscription_not_found(id))?;
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
    db.read(move |conn| {
        subscription(repo::find_subscription(conn, &id.to_string())?.ok_or_else(|| subscription_not_found(id))?)
    })
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
        if repo::delete_subscription(conn, &id.to_string())? == 0 {
            return Err(subscription_not_found(id));
        }
        Ok(())
    })
    .await
}

fn subscription_not_found(id: WebhookId) -> Error {
    Error::NotFound(format!("there is no webhook subscription {id}"))
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub target: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub lead_id: Option<String>,
}

fn delivery(row: DeliveryRow, attempts: Vec<AttemptRow>) -> Result<Delivery> {
    let pending = row.status == DeliveryStatus::Pending.as_str();
    Ok(Delivery {
        id: storage::models::parse_id("delivery id", &row.id)?,
        payload: serde_json::from_str(&row.payload).unwrap_or(Value::Null),
        target: row.target,
        event_id: row.event_id,
        event_type: row.event_type,
        lead_id: row.lead_id,
        status: row.status,
        attempts: row.attempts,
        next_attempt_at: pending.then(|| utc(row.next_attempt_at)),
        last_error: row.last_error,
        created_at: utc(row.created_at),
        delivered_at: row.delivered_at.map(utc),
        attempt_log: attempts
            .into_iter()
            .map(|a| Attempt {
                attempted_at: utc(a.attempted_at),
                duration_ms: a.duration_ms,
                status_code: a.status_code,
                error: a.error,
            })
            .collect(),
    })
}

fn with_attempts(conn: &mut DbConnection, rows: Vec<DeliveryRow>) -> Result<Vec<Delivery>> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut attempts = repo::list_attempts(conn, &ids)?;
    rows.into_iter()
        .map(|row| {
            let (mine, rest): (Vec<AttemptRow>, Vec<AttemptRow>) =
                std::mem::take(&mut attempts).into_iter().partition(|a| a.delivery_id == row.id);
            attempts = rest;
            delivery(row, mine)
        })
        .collect()
}

pub async fn list_deliveries(db: &Db, filter: DeliveryFilter, page: PageRequest) -> Result<Page<Delivery>> {
    db.read(move |conn| {
        let rows = repo::list_deliveries(
            conn,
            filter.target.as_deref(),
            filter.status.map(DeliveryStatus::as_str),
            filter.lead_id.as_deref(),
            page.after.as_deref(),
            page.fetch_limit(),
        )?;
        let page = page.page(rows, |row| row.id.clone());
        let items = with_attempts(conn, page.items)?;
        Ok(Page { items, next_cursor: page.next_cursor })
    })
    .await
}

pub async fn find_delivery(db: &Db, id: DeliveryId) -> Result<Delivery> {
    db.read(move |conn| {
        let row = repo::find_delivery(conn, &id.to_string())?.ok_or_else(|| delivery_not_found(id))?;
        Ok(with_attempts(conn, vec![row])?.remove(0))
    })
    .await
}

/// Sends a dead delivery again: a fresh round of attempts, starting now.
pub async fn retry_delivery(db: &Db, id: DeliveryId) -> Result<Delivery> {
    db.write(move |conn| {
        let mut row = repo::find_delivery(conn, &id.to_string())?.ok_or_else(|| delivery_not_found(id))?;
        if row.status != DeliveryStatus::Dead.as_str() {
            return Err(Error::Conflict(format!("the delivery is {}; only a dead delivery is retried", row.status)));
        }
        row.status = DeliveryStatus::Pending.as_str().to_owned();
        row.attempts = 0;
        row.next_attempt_at = storage::now();
        row.lease_until = None;
        repo::update_delivery(conn, &row)?;
        Ok(with_attempts(conn, vec![row])?.remove(0))
    })
    .await
}

fn delivery_not_found(id: DeliveryId) -> Error {
    Error::NotFound(format!("there is no delivery {id}"))
}

/// How deliveries are attempted.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryOptions {
    pub max_attempts: u32,
    pub backoff: Duration,
    pub timeout: Duration,
}

impl DeliveryOptions {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            max_attempts: settings.webhook_max_attempts.max(1),
            backoff: Duration::from_millis(settings.webhook_backoff_ms),
            timeout: Duration::from_secs(settings.webhook_timeout_seconds.max(1)),
        }
    }

    /// The wait after the `attempts`-th failed attempt: the backoff, doubled each time,
    /// at most six hours.
    pub fn wait_after(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(Duration::from_secs(6 * 3600))
    }
}

/// Deliveries taken at once by one instance.
const BATCH: i64 = 32;

/// The delivery worker: one per instance; instances share the outbox through leases.
pub struct WebhookWorker {
    db: Db,
    client: reqwest::Client,
    options: DeliveryOptions,
    policy: OutboundPolicy,
}

/// Where a delivery goes, read when it is attempted (a changed URL or secret applies to
/// events still waiting).
enum Destination {
    Url {
        url: String,
        secret: String,
    },
    /// A partner without a webhook pulls its events.
    Pull,
    Gone(&'static str),
}

fn destination(conn: &mut DbConnection, target: &str) -> Result<Destination> {
    Ok(match target.split_once(':') {
        Some(("subscription", id)) => match repo::find_subscription(conn, id)? {
            Some(s) => Destination::Url { url: s.url, secret: s.secret },
            None => Destination::Gone("the subscription was deleted"),
        },
        Some(("partner", id)) => match partners::find_partner(conn, id)? {
            Some(PartnerRow { webhook_url: Some(url), webhook_secret: Some(secret), .. }) => {
                Destination::Url { url, secret }
            }
            Some(_) => Destination::Pull,
            None => Destination::Gone("the partner was deleted"),
        },
        _ => Destination::Gone("unknown target"),
    })
}

/// What one attempt came to.
struct Outcome {
    delivery: DeliveryRow,
    started: chrono::NaiveDateTime,
    elapsed: Duration,
    status_code: Option<u16>,
    error: Option<String>,
    /// Set when there is nowhere to send it.
    final_status: Option<DeliveryStatus>,
}

impl WebhookWorker {
    /// The client follows no redirect (a receiver could otherwise send it anywhere) and
    /// connects only where `policy` allows, checked on the addresses DNS answers.
    pub fn new(db: Db, options: DeliveryOptions, policy: OutboundPolicy) -> Result<Self> {
        let builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("consento/", env!("CARGO_PKG_VERSION")));
        let client = policy.client(builder).map_err(Error::internal)?;
        Ok(Self { db, client, options, policy })
    }

    pub async fn run(self) {
        loop {
            match self.deliver_due().await {
                Ok(0) => tokio::time::sleep(Duration::from_millis(250)).await,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "webhook deliveries failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Attempts every due delivery (a batch); answers how many were attempted.
    pub async fn deliver_due(&self) -> Result<usize> {
        let now = storage::now();
        if !self.db.read(move |conn| Ok(repo::any_due(conn, now)?)).await? {
            return Ok(0);
        }
        let lease = TimeDelta::from_std(self.options.timeout * 2 + Duration::from_secs(30)).unwrap_or(TimeDelta::MAX);
        let claimed = self
            .db
            .write(move |conn| {
                let rows = repo::claim_due(conn, now, now + lease, BATCH)?;
                let mut claimed = Vec::new();
                for row in rows {
                    let destination = destination(conn, &row.target)?;
                    claimed.push((row, destination));
                }
                Ok(claimed)
            })
            .await?;
        let count = claimed.len();
        let attempts = claimed.into_iter().map(|(row, destination)| self.attempt(row, destination));
        let outcomes = futures_util::future::join_all(attempts).await;
        let options = self.options;
        self.db
            .write(move |conn| {
                for outcome in outcomes {
                    record(conn, outcome, &options)?;
                }
                Ok(())
            })
            .await?;
        Ok(count)
    }

    async fn attempt(&self, delivery: DeliveryRow, destination: Destination) -> Outcome {
        let started = storage::now();
        let clock = Instant::now();
        let (url, secret) = match destination {
            Destination::Url { url, secret } => (url, secret),
            Destination::Pull => {
                return Outcome {
                    delivery,
                    started,
                    elapsed: clock.elapsed(),
                    status_code: None,
                    error: None,
                    final_status: Some(DeliveryStatus::Pull),
                };
            }
            Destination::Gone(why) => {
                return Outcome {
                    delivery,
                    started,
                    elapsed: clock.elapsed(),
                    status_code: None,
                    error: Some(why.to_owned()),
                    final_status: Some(DeliveryStatus::Dead),
                };
            }
        };
        // An address written in the URL is not resolved, so the resolver cannot refuse it.
        if let Err(refused) = self.policy.check_connect(&url) {
            return Outcome {
                delivery,
                started,
                elapsed: clock.elapsed(),
                status_code: None,
                error: Some(refused.0),
                final_status: None,
            };
        }
        let body = delivery.payload.clone().into_bytes();
        let timestamp = Utc::now().timestamp();
        let response = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature_header(&secret, timestamp, &body))
            .header("Consento-Event-Id", &delivery.event_id)
            .header("Consento-Event-Type", &delivery.event_type)
            .header("Consento-Delivery-Attempt", (delivery.attempts + 1).to_string())
            .body(body)
            .send()
            .await;
        let (status_code, error) = match response {
            Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
            Ok(response) => {
                let status = response.status();
                (Some(status.as_u16()), Some(format!("the receiver answered {status}")))
            }
            Err(error) => (None, Some(describe_http_error(&error))),
        };
        Outcome { delivery, started, elapsed: clock.elapsed(), status_code, error, final_status: None }
    }
}

fn describe_http_error(error: &reqwest::Error) -> String {
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        if let Some(refused) = inner.downcast_ref::<Refused>() {
            return refused.0.clone();
        }
        cause = inner.source();
    }
    if error.is_timeout() {
        "the receiver did not answer in time".to_owned()
    } else if error.is_connect() {
        "could not connect to the receiver".to_owned()
    } else {
        crate::error::chain(error)
    }
}

fn record(conn: &mut DbConnection, outcome: Outcome, options: &DeliveryOptions) -> Result<()> {
    let Outcome { mut delivery, started, elapsed, status_code, error, final_status } = outcome;
    let now = storage::now();
    delivery.lease_until = None;
    match final_status {
        Some(DeliveryStatus::Pull) => {
            delivery.status = DeliveryStatus::Pull.as_str().to_owned();
            repo::update_delivery(conn, &delivery)?;
            return Ok(());
        }
        Some(status) => {
            delivery.status = status.as_str().to_owned();
            delivery.last_error = error.clone();
        }
        None => {
            delivery.attempts += 1;
            match &error {
                None => {
                    delivery.status = DeliveryStatus::Delivered.as_str().to_owned();
                    delivery.delivered_at = Some(now);
                    delivery.last_error = None;
                }
                Some(message) if delivery.attempts as u32 >= options.max_attempts => {
                    tracing::warn!(delivery = %delivery.id, target = %delivery.target, error = %message, "webhook dead-lettered");
                    delivery.status = DeliveryStatus::Dead.as_str().to_owned();
                    delivery.last_error = Some(message.clone());
                }
                Some(message) => {
                    let wait =
                        TimeDelta::from_std(options.wait_after(delivery.attempts as u32)).unwrap_or(TimeDelta::MAX);
                    delivery.next_attempt_at = now + wait;
                    delivery.last_error = Some(message.clone());
                }
            }
        }
    }
    repo::update_delivery(conn, &delivery)?;
    repo::insert_attempt(
        conn,
        &AttemptRow {
            id: uuid::Uuid::now_v7().to_string(),
            delivery_id: delivery.id.clone(),
            attempted_at: started,
            duration_ms: elapsed.as_millis().min(i64::MAX as u128) as i64,
            status_code: status_code.map(i32::from),
            error,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_the_backoff_up_to_six_hours() {
        let options =
            DeliveryOptions { max_attempts: 10, backoff: Duration::from_secs(30), timeout: Duration::from_secs(10) };
        assert_eq!(options.wait_after(1), Duration::from_secs(30));
        assert_eq!(options.wait_after(2), Duration::from_secs(60));
        assert_eq!(options.wait_after(4), Duration::from_secs(240));
        assert_eq!(options.wait_after(40), Duration::from_secs(6 * 3600));
    }
}
