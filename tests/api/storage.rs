//! Storage settings a deployment relies on.

use consento::storage::{Backend, DbConnection};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::helpers::spawn_app;

#[tokio::test]
async fn sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout() {
    let app = spawn_app().await;
    if app.state.db.backend() != Backend::Sqlite {
        return; // PostgreSQL keeps its own settings.
    }
    let (journal, foreign_keys, timeout, synchronous) = app
        .state
        .db
        .read(|conn: &mut DbConnection| {
            let text = |conn: &mut DbConnection, query: &str| {
                diesel::select(diesel::dsl::sql::<Text>(&format!("({query})"))).get_result::<String>(conn)
            };
            let number = |conn: &mut DbConnection, query: &str| {
                diesel::select(diesel::dsl::sql::<BigInt>(&format!("({query})"))).get_result::<i64>(conn)
            };
            Ok((
                text(conn, "SELECT journal_mode FROM pragma_journal_mode()")?,
                number(conn, "SELECT foreign_keys FROM pragma_foreign_keys()")?,
                number(conn, "SELECT timeout FROM pragma_busy_timeout()")?,
                number(conn, "SELECT synchronous FROM pragma_synchronous()")?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    assert_eq!(foreign_keys, 1);
    assert_eq!(timeout, 10_000);
    assert_eq!(synchronous, 1, "NORMAL, as documented");
}
