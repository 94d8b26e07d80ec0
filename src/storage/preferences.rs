//! What guards the preference centre: when a contact's links were last revoked, and the
//! single-use requests to download or erase a person's data.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::{contact_link_revocations, data_requests};
use crate::domain::ContactId;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = data_requests, treat_none_as_default_value = false)]
pub struct DataRequestRow {
    pub id: String,
    pub contact_id: ContactId,
    /// `download` or `erase`.
    pub action: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

pub fn find_links_revoked_at(conn: &mut DbConnection, contact_id: ContactId) -> QueryResult<Option<NaiveDateTime>> {
    contact_link_revocations::table.find(contact_id).select(contact_link_revocations::revoked_at).first(conn).optional()
}

/// Links signed up to `at` stop working.
pub fn upsert_links_revoked_at(conn: &mut DbConnection, contact_id: ContactId, at: NaiveDateTime) -> QueryResult<()> {
    let changed = diesel::update(contact_link_revocations::table.find(contact_id))
        .set(contact_link_revocations::revoked_at.eq(at))
        .execute(conn)?;
    if changed == 0 {
        diesel::insert_into(contact_link_revocations::table)
            .values((contact_link_revocations::contact_id.eq(contact_id), contact_link_revocations::revoked_at.eq(at)))
            .execute(conn)?;
    }
    Ok(())
}

pub fn insert_data_request(conn: &mut DbConnection, row: &DataRequestRow) -> QueryResult<()> {
    diesel::insert_into(data_requests::table).values(row).execute(conn).map(|_| ())
}

pub fn find_data_request(conn: &mut DbConnection, id: &str) -> QueryResult<Option<DataRequestRow>> {
    data_requests::table.find(id).select(DataRequestRow::as_select()).first(conn).optional()
}

/// Marks it used; answers false when it was used already (two clicks at once).
pub fn mark_data_request_used(conn: &mut DbConnection, id: &str, at: NaiveDateTime) -> QueryResult<bool> {
    let changed = diesel::update(data_requests::table.find(id).filter(data_requests::used_at.is_null()))
        .set(data_requests::used_at.eq(at))
        .execute(conn)?;
    Ok(changed == 1)
}
