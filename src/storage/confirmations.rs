//! Double opt-in requests waiting for the person's click.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::confirmations;
use crate::domain::{ConfirmationId, ContactId, FormId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = confirmations, treat_none_as_default_value = false)]
pub struct ConfirmationRow {
    pub id: ConfirmationId,
    pub contact_id: ContactId,
    pub form_id: Option<FormId>,
    pub form_version: Option<i32>,
    /// JSON array of purposes.
    pub purposes: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub confirmed_at: Option<NaiveDateTime>,
    /// JSON of the contact's fields submitted with the request by a person already known:
    /// they apply when the person confirms, not before.
    pub contact_values: Option<String>,
}

pub fn insert_confirmation(conn: &mut DbConnection, row: &ConfirmationRow) -> QueryResult<()> {
    diesel::insert_into(confirmations::table).values(row).execute(conn).map(|_| ())
}

pub fn find_confirmation(conn: &mut DbConnection, id: ConfirmationId) -> QueryResult<Option<ConfirmationRow>> {
    confirmations::table.find(id).select(ConfirmationRow::as_select()).first(conn).optional()
}

/// Marks it used; answers false when it was used already (two clicks at once).
pub fn mark_confirmed(conn: &mut DbConnection, id: ConfirmationId, at: NaiveDateTime) -> QueryResult<bool> {
    let changed = diesel::update(confirmations::table.find(id).filter(confirmations::confirmed_at.is_null()))
        .set(confirmations::confirmed_at.eq(at))
        .execute(conn)?;
    Ok(changed == 1)
}

/// Requests never confirmed and created before `before`.
pub fn list_unconfirmed_before(conn: &mut DbConnection, before: NaiveDateTime) -> QueryResult<Vec<ConfirmationRow>> {
    confirmations::table
        .filter(confirmations::confirmed_at.is_null())
        .filter(confirmations::created_at.lt(before))
        .select(ConfirmationRow::as_select())
        .load(conn)
}

pub fn delete_confirmation(conn: &mut DbConnection, id: ConfirmationId) -> QueryResult<usize> {
    diesel::delete(confirmations::table.find(id)).execute(conn)
}
