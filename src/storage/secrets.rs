//! Server secrets generated once and shared by every instance on the same database,
//! such as the token signing key.

use diesel::prelude::*;

use super::models::ServerSecretRow;
use super::schema::server_secrets;
use super::{DbConnection, is_unique_violation, now};

/// The secret called `name`, if there is one.
pub fn find_secret(conn: &mut DbConnection, name: &str) -> QueryResult<Option<String>> {
    server_secrets::table.find(name).select(server_secrets::value).first::<String>(conn).optional()
}

/// The secret called `name`, created from `generate` if there is none yet. When two
/// instances start at once, the one that inserts second reads the first one's secret.
pub fn find_or_insert_secret(
    conn: &mut DbConnection,
    name: &str,
    generate: impl FnOnce() -> String,
) -> QueryResult<String> {
    let existing = server_secrets::table.find(name).select(server_secrets::value).first::<String>(conn).optional()?;
    if let Some(value) = existing {
        return Ok(value);
    }
    let row = ServerSecretRow { name: name.to_owned(), value: generate(), created_at: now() };
    match diesel::insert_into(server_secrets::table).values(&row).execute(conn) {
        Ok(_) => Ok(row.value),
        Err(error) if is_unique_violation(&error) => {
            server_secrets::table.find(name).select(server_secrets::value).first(conn)
        }
        Err(error) => Err(error),
    }
}
