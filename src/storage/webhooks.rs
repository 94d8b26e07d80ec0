//! Webhook subscriptions, the outbox of events to deliver, and every delivery attempt.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::{delivery_attempts, webhook_deliveries, webhook_subscriptions};
use crate::domain::{ContactId, DeliveryId, LeadId, WebhookId, partner::DeliveryStatus, partner::EventType};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = webhook_subscriptions, treat_none_as_default_value = false)]
pub struct SubscriptionRow {
    pub id: WebhookId,
    pub url: String,
    pub secret: String,
    /// JSON array of event types.
    pub event_types: String,
    pub description: String,
    pub active: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = webhook_deliveries, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct DeliveryRow {
    pub id: DeliveryId,
    /// `partner:<id>` or `subscription:<id>`.
    pub target: String,
    pub event_id: String,
    pub event_type: EventType,
    pub lead_id: Option<LeadId>,
    /// The event as sent: `{"id", "type", "created_at", "data"}`.
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub lease_until: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub delivered_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = delivery_attempts, treat_none_as_default_value = false)]
pub struct AttemptRow {
    pub id: String,
    pub delivery_id: DeliveryId,
    pub attempted_at: NaiveDateTime,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

pub fn insert_subscription(conn: &mut DbConnection, row: &SubscriptionRow) -> QueryResult<usize> {
    diesel::insert_into(webhook_subscriptions::table).values(row).execute(conn)
}

pub fn update_subscription(conn: &mut DbConnection, row: &SubscriptionRow) -> QueryResult<usize> {
    diesel::update(webhook_subscriptions::table.find(&row.id)).set(row).execute(conn)
}

pub fn find_subscription(conn: &mut DbConnection, id: WebhookId) -> QueryResult<Option<SubscriptionRow>> {
    webhook_subscriptions::table.find(id).select(SubscriptionRow::as_select()).first(conn).optional()
}

pub fn list_subscriptions(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<SubscriptionRow>> {
    let mut query = webhook_subscriptions::table.select(SubscriptionRow::as_select()).into_boxed();
    if let Some(after) = after {
        query = query.filter(webhook_subscriptions::id.gt(after.to_owned()));
    }
    query.order(webhook_subscriptions::id.asc()).limit(limit).load(conn)
}

pub fn list_active_subscriptions(conn: &mut DbConnection) -> QueryResult<Vec<SubscriptionRow>> {
    webhook_subscriptions::table
        .filter(webhook_subscriptions::active.eq(true))
        .select(SubscriptionRow::as_select())
        .load(conn)
}

pub fn delete_subscription(conn: &mut DbConnection, id: WebhookId) -> QueryResult<usize> {
    diesel::delete(webhook_subscriptions::table.find(id)).execute(conn)
}

pub fn insert_deliveries(conn: &mut DbConnection, rows: &[DeliveryRow]) -> QueryResult<usize> {
    let mut inserted = 0;
    for row in rows {
        inserted += diesel::insert_into(webhook_deliveries::table).values(row).execute(conn)?;
    }
    Ok(inserted)
}

pub fn update_delivery(conn: &mut DbConnection, row: &DeliveryRow) -> QueryResult<usize> {
    diesel::update(webhook_deliveries::table.find(&row.id)).set(row).execute(conn)
}

pub fn find_delivery(conn: &mut DbConnection, id: DeliveryId) -> QueryResult<Option<DeliveryRow>> {
    webhook_deliveries::table.find(id).select(DeliveryRow::as_select()).first(conn).optional()
}

/// Deliveries, newest last, filtered by target, status and lead.
pub fn list_deliveries(
    conn: &mut DbConnection,
    target: Option<&str>,
    status: Option<&str>,
    lead_id: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<DeliveryRow>> {
    let mut query = webhook_deliveries::table.select(DeliveryRow::as_select()).into_boxed();
    if let Some(target) = target {
        query = query.filter(webhook_deliveries::target.eq(target.to_owned()));
    }
    if let Some(status) = status {
        query = query.filter(webhook_deliveries::status.eq(status.to_owned()));
    }
    if let Some(lead_id) = lead_id {
        query = query.filter(webhook_deliveries::lead_id.eq(lead_id.to_owned()));
    }
    if let Some(after) = after {
        query = query.filter(webhook_deliveries::id.gt(after.to_owned()));
    }
    query.order(webhook_deliveries::id.asc()).limit(limit).load(conn)
}

/// Pending, its time come, and not leased by a live instance.
macro_rules! due {
    ($now:expr) => {
        webhook_deliveries::status
            .eq("pending")
            .and(webhook_deliveries::next_attempt_at.le($now))
            .and(webhook_deliveries::lease_until.is_null().or(webhook_deliveries::lease_until.lt($now)))
    };
}

/// Whether any delivery is due: a read, so that idle instances never take the write lock.
pub fn any_due(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<bool> {
    let first: Option<String> =
        webhook_deliveries::table.filter(due!(now)).select(webhook_deliveries::id).first(conn).optional()?;
    Ok(first.is_some())
}

/// Leases up to `limit` due deliveries until `until`; another instance skips them.
pub fn claim_due(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<DeliveryRow>> {
    let ids: Vec<DeliveryId> = webhook_deliveries::table
        .filter(due!(now))
        .order(webhook_deliveries::next_attempt_at.asc())
        .select(webhook_deliveries::id)
        .limit(limit)
        .load(conn)?;
    let mut claimed = Vec::new();
    for id in ids {
        // The condition again: on PostgreSQL another instance may have taken it meanwhile.
        let taken = diesel::update(webhook_deliveries::table.find(id).filter(due!(now)))
            .set(webhook_deliveries::lease_until.eq(until))
            .execute(conn)?;
        if taken == 1
            && let Some(row) = find_delivery(conn, id)?
        {
            claimed.push(row);
        }
    }
    Ok(claimed)
}

/// Deliveries whose payload names the contact, or that carry one of its leads.
pub fn list_deliveries_mentioning(
    conn: &mut DbConnection,
    contact_id: ContactId,
    lead_ids: &[LeadId],
) -> QueryResult<Vec<DeliveryRow>> {
    webhook_deliveries::table
        .filter(
            webhook_deliveries::payload
                .like(format!("%{contact_id}%"))
                .or(webhook_deliveries::lead_id.eq_any(lead_ids)),
        )
        .select(DeliveryRow::as_select())
        .load(conn)
}

pub fn insert_attempt(conn: &mut DbConnection, row: &AttemptRow) -> QueryResult<usize> {
    diesel::insert_into(delivery_attempts::table).values(row).execute(conn)
}

pub fn list_attempts(conn: &mut DbConnection, delivery_ids: &[DeliveryId]) -> QueryResult<Vec<AttemptRow>> {
    delivery_attempts::table
        .filter(delivery_attempts::delivery_id.eq_any(delivery_ids))
        .order(delivery_attempts::id.asc())
        .select(AttemptRow::as_select())
        .load(conn)
}
