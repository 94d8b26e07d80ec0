//! Console sessions, and the one-time code that lets the first admin be created.

use diesel::prelude::*;

use super::DbConnection;
use super::models::ServerSecretRow;
use super::schema::{console_sessions, server_secrets};
use crate::domain::UserId;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = console_sessions, treat_none_as_default_value = false)]
pub struct SessionRow {
    /// The SHA-256 of the cookie's secret, in hex.
    pub id: String,
    pub user_id: UserId,
    pub user_generation: i64,
    pub csrf_token: String,
    pub created_at: chrono::NaiveDateTime,
    pub expires_at: chrono::NaiveDateTime,
    pub last_seen_at: chrono::NaiveDateTime,
    /// The password was right; the session opens once the second factor's code is too.
    pub second_factor_pending: bool,
}

/// The secret holding the hash of the first-run setup code.
const SETUP_CODE: &str = "console_setup_code";

pub fn insert_session(conn: &mut DbConnection, row: &SessionRow) -> QueryResult<()> {
    diesel::insert_into(console_sessions::table).values(row).execute(conn).map(|_| ())
}

pub fn find_session(conn: &mut DbConnection, id: &str) -> QueryResult<Option<SessionRow>> {
    console_sessions::table.find(id).select(SessionRow::as_select()).first(conn).optional()
}

pub fn touch_session(conn: &mut DbConnection, id: &str, at: chrono::NaiveDateTime) -> QueryResult<usize> {
    diesel::update(console_sessions::table.find(id)).set(console_sessions::last_seen_at.eq(at)).execute(conn)
}

pub fn delete_session(conn: &mut DbConnection, id: &str) -> QueryResult<usize> {
    diesel::delete(console_sessions::table.find(id)).execute(conn)
}

/// Removes sessions past their end, or idle since `idle_before`.
pub fn delete_stale_sessions(
    conn: &mut DbConnection,
    now: chrono::NaiveDateTime,
    idle_before: chrono::NaiveDateTime,
) -> QueryResult<usize> {
    diesel::delete(
        console_sessions::table
            .filter(console_sessions::expires_at.le(now).or(console_sessions::last_seen_at.lt(idle_before))),
    )
    .execute(conn)
}

/// Replaces the setup code's hash (each start while no user exists prints a new code).
pub fn replace_setup_code(conn: &mut DbConnection, hash: &str) -> QueryResult<()> {
    diesel::delete(server_secrets::table.find(SETUP_CODE)).execute(conn)?;
    let row = ServerSecretRow { name: SETUP_CODE.to_owned(), value: hash.to_owned(), created_at: super::now() };
    diesel::insert_into(server_secrets::table).values(&row).execute(conn).map(|_| ())
}

pub fn find_setup_code(conn: &mut DbConnection) -> QueryResult<Option<String>> {
    super::secrets::find_secret(conn, SETUP_CODE)
}

/// Spends the setup code whose hash is `hash`: `true` for the one caller that did.
pub fn spend_setup_code(conn: &mut DbConnection, hash: &str) -> QueryResult<bool> {
    let deleted = diesel::delete(
        server_secrets::table.filter(server_secrets::name.eq(SETUP_CODE)).filter(server_secrets::value.eq(hash)),
    )
    .execute(conn)?;
    Ok(deleted == 1)
}
