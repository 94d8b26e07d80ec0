//! The events services emit: each becomes one delivery per subscription that asked for its
//! type (or to a partner), written in the same transaction as what it tells.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::domain::partner::{DeliveryStatus, EventType};
use crate::domain::{ContactId, DeliveryId, LeadId};
use crate::error::Result;
use crate::storage;
use crate::storage::partners::PartnerRow;
use crate::storage::webhooks::{DeliveryRow, SubscriptionRow};
use crate::storage::{DbConnection, webhooks as repo};

/// The envelope every receiver gets: the same `id` on every attempt, so that a receiver
/// can drop a repeat.
pub(super) fn envelope(event_id: &str, kind: EventType, at: DateTime<Utc>, data: Value) -> Value {
    json!({
        "id": event_id,
        "type": kind.as_str(),
        "created_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
}

pub(super) fn delivery_row(
    target: String,
    event_id: &str,
    kind: EventType,
    lead_id: Option<LeadId>,
    payload: &Value,
) -> DeliveryRow {
    let now = storage::now();
    DeliveryRow {
        id: DeliveryId::new(),
        target,
        event_id: event_id.to_owned(),
        event_type: kind,
        lead_id,
        payload: payload.to_string(),
        status: DeliveryStatus::Pending,
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
    pub(super) subscriptions: Vec<SubscriptionRow>,
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
    pub fn emit_contact(&self, conn: &mut DbConnection, kind: EventType, contact_id: ContactId) -> Result<()> {
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
pub fn emit_contact(conn: &mut DbConnection, kind: EventType, contact_id: ContactId) -> Result<()> {
    Listeners::read(conn)?.emit_contact(conn, kind, contact_id)
}

/// Erasure: events still held about the contact keep their type and time, not the person.
pub fn redact_contact(conn: &mut DbConnection, contact_id: ContactId, lead_ids: &[LeadId]) -> Result<()> {
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
    lead_id: LeadId,
    data: Value,
) -> Result<()> {
    let event_id = uuid::Uuid::now_v7().to_string();
    let payload = envelope(&event_id, kind, Utc::now(), data);
    let mut row = delivery_row(format!("partner:{}", partner.id), &event_id, kind, Some(lead_id), &payload);
    if partner.webhook_url.is_none() {
        row.status = DeliveryStatus::Pull;
    }
    repo::insert_deliveries(conn, &[row])?;
    Ok(())
}
