//! Partners, their keys and the leads exchanged with them.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::{partner_keys, partner_leads, partners};
use crate::domain::{
    ContactId, LeadId, PartnerId, partner::InboundPolicy, partner::LeadDirection, partner::LeadStatus,
    partner::PartnerStatus,
};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = partners, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct PartnerRow {
    pub id: PartnerId,
    pub name: String,
    pub legal_name: String,
    pub description: String,
    pub privacy_policy_url: String,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub inbound_policy: InboundPolicy,
    /// JSON array of list ids a lead from this partner joins.
    pub inbound_lists: String,
    pub share_plugin: Option<String>,
    pub status: PartnerStatus,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = partner_keys, treat_none_as_default_value = false)]
pub struct PartnerKeyRow {
    pub id: String,
    pub partner_id: PartnerId,
    pub prefix: String,
    pub secret_hash: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = partner_leads, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct LeadRow {
    pub id: LeadId,
    pub partner_id: PartnerId,
    pub contact_id: Option<ContactId>,
    pub direction: LeadDirection,
    pub partner_lead_id: Option<String>,
    pub status: LeadStatus,
    /// Outbound: what the share hook mapped; inbound: the lead as received (its proof).
    pub payload: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// A `queued` lead: until when the one running its `share` hook holds it.
    pub lease_until: Option<NaiveDateTime>,
}

pub fn insert_partner(conn: &mut DbConnection, row: &PartnerRow) -> QueryResult<usize> {
    diesel::insert_into(partners::table).values(row).execute(conn)
}

pub fn update_partner(conn: &mut DbConnection, row: &PartnerRow) -> QueryResult<usize> {
    diesel::update(partners::table.find(&row.id)).set(row).execute(conn)
}

pub fn find_partner(conn: &mut DbConnection, id: PartnerId) -> QueryResult<Option<PartnerRow>> {
    partners::table.find(id).select(PartnerRow::as_select()).first(conn).optional()
}

pub fn find_partners(conn: &mut DbConnection, ids: &[PartnerId]) -> QueryResult<Vec<PartnerRow>> {
    partners::table.filter(partners::id.eq_any(ids)).select(PartnerRow::as_select()).load(conn)
}

pub fn list_partners(conn: &mut DbConnection, after: Option<&str>, limit: i64) -> QueryResult<Vec<PartnerRow>> {
    let mut query = partners::table.select(PartnerRow::as_select()).into_boxed();
    if let Some(after) = after {
        query = query.filter(partners::id.gt(after.to_owned()));
    }
    query.order(partners::id.asc()).limit(limit).load(conn)
}

/// Deletes a partner and its keys; refused by the caller while leads name it.
pub fn delete_partner(conn: &mut DbConnection, id: PartnerId) -> QueryResult<usize> {
    diesel::delete(partner_keys::table.filter(partner_keys::partner_id.eq(id))).execute(conn)?;
    diesel::delete(partners::table.find(id)).execute(conn)
}

pub fn count_leads(conn: &mut DbConnection, partner_id: PartnerId) -> QueryResult<i64> {
    partner_leads::table.filter(partner_leads::partner_id.eq(partner_id)).count().get_result(conn)
}

pub fn insert_key(conn: &mut DbConnection, row: &PartnerKeyRow) -> QueryResult<usize> {
    diesel::insert_into(partner_keys::table).values(row).execute(conn)
}

pub fn list_keys(conn: &mut DbConnection, partner_id: PartnerId) -> QueryResult<Vec<PartnerKeyRow>> {
    partner_keys::table
        .filter(partner_keys::partner_id.eq(partner_id))
        .order(partner_keys::id.asc())
        .select(PartnerKeyRow::as_select())
        .load(conn)
}

pub fn find_key_by_hash(conn: &mut DbConnection, hash: &str) -> QueryResult<Option<PartnerKeyRow>> {
    partner_keys::table
        .filter(partner_keys::secret_hash.eq(hash))
        .select(PartnerKeyRow::as_select())
        .first(conn)
        .optional()
}

pub fn revoke_key(conn: &mut DbConnection, partner_id: PartnerId, id: &str, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(partner_keys::table.find(id).filter(partner_keys::partner_id.eq(partner_id)))
        .set(partner_keys::revoked_at.eq(at))
        .execute(conn)
}

pub fn touch_key(conn: &mut DbConnection, id: &str, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(partner_keys::table.find(id)).set(partner_keys::last_used_at.eq(at)).execute(conn)
}

pub fn insert_lead(conn: &mut DbConnection, row: &LeadRow) -> QueryResult<usize> {
    diesel::insert_into(partner_leads::table).values(row).execute(conn)
}

pub fn update_lead(conn: &mut DbConnection, row: &LeadRow) -> QueryResult<usize> {
    diesel::update(partner_leads::table.find(&row.id)).set(row).execute(conn)
}

pub fn find_lead(conn: &mut DbConnection, partner_id: PartnerId, id: LeadId) -> QueryResult<Option<LeadRow>> {
    partner_leads::table
        .find(id)
        .filter(partner_leads::partner_id.eq(partner_id))
        .select(LeadRow::as_select())
        .first(conn)
        .optional()
}

/// The lead a partner sent with its own id.
pub fn find_inbound_lead(conn: &mut DbConnection, partner_id: PartnerId, theirs: &str) -> QueryResult<Option<LeadRow>> {
    partner_leads::table
        .filter(partner_leads::partner_id.eq(partner_id))
        .filter(partner_leads::direction.eq("inbound"))
        .filter(partner_leads::partner_lead_id.eq(theirs))
        .select(LeadRow::as_select())
        .first(conn)
        .optional()
}

/// A contact's leads in one direction, every partner.
pub fn list_contact_leads(
    conn: &mut DbConnection,
    contact_id: ContactId,
    direction: LeadDirection,
) -> QueryResult<Vec<LeadRow>> {
    partner_leads::table
        .filter(partner_leads::contact_id.eq(contact_id))
        .filter(partner_leads::direction.eq(direction))
        .order(partner_leads::id.asc())
        .select(LeadRow::as_select())
        .load(conn)
}

/// A partner's leads in one direction, a page at a time, but those in `except_statuses`.
pub fn list_partner_leads(
    conn: &mut DbConnection,
    partner_id: PartnerId,
    direction: &str,
    except_statuses: &[&str],
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<LeadRow>> {
    let mut query = partner_leads::table
        .filter(partner_leads::partner_id.eq(partner_id))
        .filter(partner_leads::direction.eq(direction))
        .select(LeadRow::as_select())
        .into_boxed();
    if !except_statuses.is_empty() {
        query = query.filter(partner_leads::status.ne_all(except_statuses.to_vec()));
    }
    if let Some(after) = after {
        query = query.filter(partner_leads::id.gt(after.to_owned()));
    }
    query.order(partner_leads::id.asc()).limit(limit).load(conn)
}

/// Erasure: the leads stay as counts, without the contact or its data.
pub fn redact_contact(conn: &mut DbConnection, contact_id: ContactId) -> QueryResult<usize> {
    diesel::update(partner_leads::table.filter(partner_leads::contact_id.eq(contact_id)))
        .set((partner_leads::contact_id.eq(None::<String>), partner_leads::payload.eq("{}")))
        .execute(conn)
}

pub fn find_lead_by_id(conn: &mut DbConnection, id: LeadId) -> QueryResult<Option<LeadRow>> {
    partner_leads::table.find(id).select(LeadRow::as_select()).first(conn).optional()
}

/// Queued leads whose lease ran out (or was never taken): a request that queued them
/// ended before it shared them.
pub fn list_queued_due(
    conn: &mut DbConnection,
    status: LeadStatus,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<LeadId>> {
    partner_leads::table
        .filter(partner_leads::status.eq(status))
        .filter(partner_leads::lease_until.is_null().or(partner_leads::lease_until.lt(now)))
        .order(partner_leads::id.asc())
        .select(partner_leads::id)
        .limit(limit)
        .load(conn)
}

/// Takes a queued lead until `until`, if it is still queued and nobody holds it at `now`;
/// answers whether it was taken. On PostgreSQL the condition is checked again under the
/// row lock, so two instances never both take it.
pub fn lease_queued(
    conn: &mut DbConnection,
    id: LeadId,
    status: LeadStatus,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<bool> {
    let taken = diesel::update(
        partner_leads::table
            .find(id)
            .filter(partner_leads::status.eq(status))
            .filter(partner_leads::lease_until.is_null().or(partner_leads::lease_until.lt(now))),
    )
    .set(partner_leads::lease_until.eq(until))
    .execute(conn)?;
    Ok(taken == 1)
}
