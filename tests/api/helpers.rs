//! A running consento per test: its own port, its own fresh database (SQLite in a
//! temporary folder, or a new PostgreSQL database when `CONSENTO_TEST_DATABASE_URL`
//! names a server), and an admin with a token.

use std::path::PathBuf;

use actix_web::web;
use consento::domain::{Email, Role};
use consento::http::AppState;
use consento::services::users::{self, NewUser};
use consento::settings::Settings;
use consento::startup::Application;
use diesel::{Connection, PgConnection, RunQueryDsl};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

/// The PostgreSQL server to test against, as a URL to an existing database (such as
/// `postgres://postgres@127.0.0.1:5432/postgres`). Unset: SQLite.
pub const POSTGRES_ENV: &str = "CONSENTO_TEST_DATABASE_URL";

pub const ADMIN_EMAIL: &str = "admin@example.org";
pub const ADMIN_PASSWORD: &str = "an admin passphrase";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: web::Data<AppState>,
    pub admin_token: String,
    /// Kept for its drop: the folder and database go when the test ends.
    _database: TestDatabase,
}

/// A data folder and, when testing PostgreSQL, a database, both new and removed on drop.
pub struct TestDatabase {
    pub data_dir: PathBuf,
    postgres: Option<PostgresDatabase>,
}

impl TestDatabase {
    pub fn new() -> Self {
        let data_dir = std::env::temp_dir().join(format!("consento-test-{}", uuid::Uuid::new_v4()));
        let postgres = std::env::var(POSTGRES_ENV).ok().filter(|url| !url.is_empty()).map(PostgresDatabase::create);
        Self { data_dir, postgres }
    }

    /// The database URL to configure; `None` means the default SQLite file in the data folder.
    pub fn url(&self) -> Option<String> {
        self.postgres.as_ref().map(|db| db.url.clone())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some(postgres) = self.postgres.take() {
            postgres.drop_database();
        }
    }
}

pub async fn spawn_app() -> TestApp {
    let database = TestDatabase::new();
    let settings = Settings {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: database.data_dir.clone(),
        database_url: database.url(),
        log: std::env::var("TEST_LOG").unwrap_or_else(|_| "off".to_owned()),
        ..Settings::default()
    };
    consento::telemetry::init(&settings.log, settings.log_format);
    let app = Application::build(settings).await.expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());

    let email = Email::parse(ADMIN_EMAIL).unwrap();
    users::create_user(&state.db, NewUser { email, password: ADMIN_PASSWORD.to_owned(), role: Role::Admin })
        .await
        .expect("the admin is created");
    let mut app =
        TestApp { address, client: reqwest::Client::new(), state, admin_token: String::new(), _database: database };
    app.admin_token = app.token_for(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn token_for(&self, email: &str, password: &str) -> String {
        let response = self
            .client
            .post(self.url("/api/v1/auth/token"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "sign-in of {email} failed");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A user with `role`, signed in; answers their token.
    pub async fn user_token(&self, role: &str) -> String {
        let email = format!("{role}-{}@example.org", uuid::Uuid::new_v4().simple());
        let password = "a user passphrase";
        let (status, body) = self
            .send(self.admin(self.client.post(self.url("/api/v1/users"))).json(&json!({
                "email": email, "password": password, "role": role
            })))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.token_for(&email, password).await
    }

    pub fn admin(&self, request: RequestBuilder) -> RequestBuilder {
        request.bearer_auth(&self.admin_token)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.admin(self.client.get(self.url(path)))
    }

    pub fn post(&self, path: &str, body: &Value) -> RequestBuilder {
        self.admin(self.client.post(self.url(path))).json(body)
    }

    pub fn patch(&self, path: &str, body: &Value) -> RequestBuilder {
        self.admin(self.client.patch(self.url(path))).json(body)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.admin(self.client.delete(self.url(path)))
    }

    /// Sends a request; answers the status and the JSON body (`null` when empty).
    pub async fn send(&self, request: RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, body_json(response).await)
    }

    pub async fn create_list(&self, name: &str) -> String {
        let (status, body) = self.send(self.post("/api/v1/lists", &json!({"name": name}))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn create_contact(&self, body: Value) -> Value {
        let (status, body) = self.send(self.post("/api/v1/contacts", &body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}

pub async fn body_json(response: Response) -> Value {
    let text = response.text().await.unwrap();
    if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

/// Asserts a problem document: its status, its type's last segment, and its media type.
pub async fn assert_problem(response: Response, status: StatusCode, kind: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body = body_json(response).await;
    assert_eq!(body["type"], format!("urn:consento:problem:{kind}"), "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(body["title"].is_string(), "{body}");
    body
}

/// The fields named in a validation problem.
pub fn fields_at_fault(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| errors.iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// A database of its own on the PostgreSQL server, dropped with the test.
struct PostgresDatabase {
    server_url: String,
    name: String,
    url: String,
}

impl PostgresDatabase {
    fn create(server_url: String) -> Self {
        let name = format!("consento_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::establish(&server_url).expect("the PostgreSQL test server answers");
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).unwrap();
        let base = server_url.rsplit_once('/').map_or(server_url.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Self { server_url, name, url }
    }

    fn drop_database(self) {
        if let Ok(mut conn) = PgConnection::establish(&self.server_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn);
        }
    }
}
