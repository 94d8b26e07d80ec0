//! The api_keys table. Only a hash of each secret is kept.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::models::ApiKeyRow;
use super::schema::api_keys;
use crate::domain::ApiKeyId;

pub fn insert_api_key(conn: &mut DbConnection, row: &ApiKeyRow) -> QueryResult<()> {
    diesel::insert_into(api_keys::table).values(row).execute(conn).map(|_| ())
}

pub fn find_api_key(conn: &mut DbConnection, id: ApiKeyId) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table.find(id).select(ApiKeyRow::as_select()).first(conn).optional()
}

pub fn find_api_key_by_hash(conn: &mut DbConnection, hash: &str) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table.filter(api_keys::secret_hash.eq(hash)).select(ApiKeyRow::as_select()).first(conn).optional()
}

pub fn list_api_keys(conn: &mut DbConnection, after: Option<&str>, limit: i64) -> QueryResult<Vec<ApiKeyRow>> {
    let mut query = api_keys::table.select(ApiKeyRow::as_select()).into_boxed();
    if let Some(after) = after {
        query = query.filter(api_keys::id.gt(after.to_owned()));
    }
    query.order(api_keys::id.asc()).limit(limit).load(conn)
}

pub fn update_last_used(conn: &mut DbConnection, id: ApiKeyId, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(api_keys::table.find(id)).set(api_keys::last_used_at.eq(at)).execute(conn)
}

/// Marks a key revoked; revoking twice keeps the first time.
pub fn revoke_api_key(conn: &mut DbConnection, id: ApiKeyId, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(api_keys::table.find(id).filter(api_keys::revoked_at.is_null()))
        .set(api_keys::revoked_at.eq(at))
        .execute(conn)
}
