//! Erasure that erases: after `DELETE /api/v1/contacts/{id}`, nothing of the person can be
//! read back from the database's files, not even from free pages or the WAL.

use std::time::{Duration, Instant};

use consento::storage::{Backend, DbConnection};
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app_with};

const ADDRESS: &str = "zelda.quux-erasure-probe@example.org";
const IP: &str = "203.0.113.199";
const USER_AGENT: &str = "ErasureProbe/7.3 (distinctive-agent-string)";

/// Signs the person up on a double opt-in form, from a distinctive address and browser,
/// and confirms; answers their contact id.
async fn sign_up_the_probe(app: &TestApp) -> String {
    let (_, list) = app.form_on_new_list("erasure", "double", json!({})).await;
    let response = app
        .client
        .post(app.url("/f/erasure"))
        .header("user-agent", USER_AGENT)
        .header("x-forwarded-for", IP)
        .form(&[("email", ADDRESS), ("consent", &list), ("website", "")])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let mail = app.mail.wait_for(ADDRESS, 1).await;
    let confirm = mail[0].link(&format!("{}/confirm/", app.address));
    let response =
        app.client.post(confirm).header("user-agent", USER_AGENT).header("x-forwarded-for", IP).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let contact = app.contact_by_email(ADDRESS).await.expect("the person is a contact");
    contact["id"].as_str().unwrap().to_owned()
}

fn files_holding_the_probe(app: &TestApp) -> Vec<String> {
    let mut found = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let path = app.database.data_dir.join(format!("consento.db{suffix}"));
        let Ok(bytes) = std::fs::read(&path) else { continue };
        for needle in [ADDRESS, IP, USER_AGENT] {
            if bytes.windows(needle.len()).any(|window| window == needle.as_bytes()) {
                found.push(format!("{} holds {needle}", path.display()));
            }
        }
    }
    found
}

#[tokio::test]
async fn after_an_erasure_the_sqlite_files_hold_neither_the_address_nor_the_ip_nor_the_user_agent() {
    let app = spawn_app_with(|settings| settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    if app.state.db.backend() != Backend::Sqlite {
        return; // PostgreSQL: see the test below.
    }
    let id = sign_up_the_probe(&app).await;
    // The probe can be found at all: the search below would see it.
    assert!(!files_holding_the_probe(&app).is_empty(), "the signup left nothing in the files to look for");

    let (status, _) = app.send(app.delete(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = files_holding_the_probe(&app);
        if found.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{found:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let erased = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await.0;
    assert_eq!(erased, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sqlite_connections_zero_what_they_delete() {
    let app = spawn_app_with(|_| {}).await;
    if app.state.db.backend() != Backend::Sqlite {
        return;
    }
    let secure_delete = app
        .state
        .db
        .read(|conn: &mut DbConnection| {
            let value = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "(SELECT secure_delete FROM pragma_secure_delete())",
            ))
            .get_result::<i64>(conn)?;
            Ok(value)
        })
        .await
        .unwrap();
    assert_eq!(secure_delete, 1);
}

#[derive(QueryableByName)]
struct Vacuumed {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    tables: i64,
}

#[tokio::test]
async fn after_an_erasure_postgresql_vacuums_the_tables_that_held_the_person() {
    let app = spawn_app_with(|settings| settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    if app.state.db.backend() != Backend::Postgres {
        return;
    }
    let id = sign_up_the_probe(&app).await;
    let db = app.state.db.clone();
    let vacuumed = || {
        db.read(|conn: &mut DbConnection| {
            let row: Vacuumed = diesel::sql_query(
                "SELECT count(*) AS tables FROM pg_stat_user_tables \
                 WHERE relname IN ('contacts', 'consent_events', 'outbox', 'confirmations') AND last_vacuum IS NOT NULL",
            )
            .get_result(conn)?;
            Ok(row.tables)
        })
    };
    assert_eq!(vacuumed().await.unwrap(), 0);
    let (status, _) = app.send(app.delete(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let deadline = Instant::now() + Duration::from_secs(15);
    while vacuumed().await.unwrap() < 4 {
        assert!(Instant::now() < deadline, "the tables were not vacuumed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing of the person is left in any row.
    let left = app
        .state
        .db
        .read(|conn: &mut DbConnection| {
            let row: Vacuumed = diesel::sql_query(format!(
                "SELECT (SELECT count(*) FROM contacts WHERE email = '{ADDRESS}') \
                 + (SELECT count(*) FROM consent_events WHERE ip = '{IP}' OR user_agent = '{USER_AGENT}') AS tables"
            ))
            .get_result(conn)?;
            Ok(row.tables)
        })
        .await
        .unwrap();
    assert_eq!(left, 0);
}
