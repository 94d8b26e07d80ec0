//! Reading the suppression list page by page (its writes stay with the ledger, in
//! `consent.rs`).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::suppressions;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = suppressions)]
pub struct SuppressionRow {
    pub email_hash: String,
    pub reason: String,
    pub created_at: NaiveDateTime,
}

/// Up to `limit` entries after the hash `after`, in hash order (the key: a page never
/// shifts when entries are added meanwhile); only `email_hash` when given.
pub fn list_suppressions(
    conn: &mut DbConnection,
    email_hash: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<SuppressionRow>> {
    let mut query =
        suppressions::table.select(SuppressionRow::as_select()).order(suppressions::email_hash).into_boxed();
    if let Some(hash) = email_hash {
        query = query.filter(suppressions::email_hash.eq(hash.to_owned()));
    }
    if let Some(after) = after {
        query = query.filter(suppressions::email_hash.gt(after.to_owned()));
    }
    query.limit(limit).load(conn)
}

pub fn find_suppression(conn: &mut DbConnection, email_hash: &str) -> QueryResult<Option<SuppressionRow>> {
    suppressions::table.find(email_hash).select(SuppressionRow::as_select()).first(conn).optional()
}
