//! Deliveries and their attempts, as admins read and retry them.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::DeliveryId;
use crate::domain::partner::DeliveryStatus;
use crate::domain::{LeadId, partner::EventType};
use crate::error::{Error, Result};
use crate::services::pagination::{Page, PageRequest};
use crate::storage;
use crate::storage::models::utc;
use crate::storage::webhooks::{AttemptRow, DeliveryRow};
use crate::storage::{Db, DbConnection, webhooks as repo};

/// One event to one receiver, with its attempts.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    /// `partner:<id>` or `subscription:<id>`.
    pub target: String,
    pub event_id: String,
    pub event_type: EventType,
    pub lead_id: Option<LeadId>,
    pub payload: Value,
    pub status: DeliveryStatus,
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

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub target: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub lead_id: Option<String>,
}

pub(super) fn delivery(row: DeliveryRow, attempts: Vec<AttemptRow>) -> Result<Delivery> {
    let pending = row.status == DeliveryStatus::Pending;
    Ok(Delivery {
        id: row.id,
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

pub(super) fn with_attempts(conn: &mut DbConnection, rows: Vec<DeliveryRow>) -> Result<Vec<Delivery>> {
    let ids: Vec<DeliveryId> = rows.iter().map(|r| r.id).collect();
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
        let page = page.page(rows, |row| row.id.to_string());
        let items = with_attempts(conn, page.items)?;
        Ok(Page { items, next_cursor: page.next_cursor })
    })
    .await
}

pub async fn find_delivery(db: &Db, id: DeliveryId) -> Result<Delivery> {
    db.read(move |conn| {
        let row = repo::find_delivery(conn, id)?.ok_or_else(|| delivery_not_found(id))?;
        Ok(with_attempts(conn, vec![row])?.remove(0))
    })
    .await
}

/// Sends a dead delivery again: a fresh round of attempts, starting now.
pub async fn retry_delivery(db: &Db, id: DeliveryId) -> Result<Delivery> {
    db.write(move |conn| {
        let mut row = repo::find_delivery(conn, id)?.ok_or_else(|| delivery_not_found(id))?;
        if row.status != DeliveryStatus::Dead {
            return Err(Error::Conflict(format!("the delivery is {}; only a dead delivery is retried", row.status)));
        }
        row.status = DeliveryStatus::Pending;
        row.attempts = 0;
        row.next_attempt_at = storage::now();
        row.lease_until = None;
        repo::update_delivery(conn, &row)?;
        Ok(with_attempts(conn, vec![row])?.remove(0))
    })
    .await
}

pub(super) fn delivery_not_found(id: DeliveryId) -> Error {
    Error::NotFound(format!("there is no delivery {id}"))
}
