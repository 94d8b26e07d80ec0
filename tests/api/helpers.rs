//! A running consento per test: its own port, its own fresh database (SQLite in a
//! temporary folder, or a new PostgreSQL database when `CONSENTO_TEST_DATABASE_URL`
//! names a server), and an admin with a token.

use std::io;
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

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
    pub mail: MailServer,
    /// Removed when the test ends.
    pub database: TestDatabase,
    /// The first-run code the server printed at start, while it had no user.
    pub setup_code: Option<String>,
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
    spawn_app_with(|_| {}).await
}

/// A test app with some settings changed. Its mail goes to a real SMTP server of its own.
pub async fn spawn_app_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    let mut app = spawn_app_without_users_with(change).await;
    let email = Email::parse(ADMIN_EMAIL).unwrap();
    users::create_user(&app.state.db, NewUser { email, password: ADMIN_PASSWORD.to_owned(), role: Role::Admin })
        .await
        .expect("the admin is created");
    app.admin_token = app.token_for(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    app
}

/// A server on its first run: no user yet, so its console asks for the setup code.
pub async fn spawn_app_without_users() -> TestApp {
    spawn_app_without_users_with(|_| {}).await
}

pub async fn spawn_app_without_users_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    let database = TestDatabase::new();
    let mail = MailServer::start();
    let mut settings = Settings {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: database.data_dir.clone(),
        database_url: database.url(),
        smtp_url: Some(consento::settings::Secret::new(format!("smtp://127.0.0.1:{}", mail.port))),
        mail_from: "News <news@consento.test>".to_owned(),
        log: std::env::var("TEST_LOG").unwrap_or_else(|_| "off".to_owned()),
        // Events get their leaves within a few milliseconds, so tests need not wait long.
        ledger_sequence_interval_ms: 20,
        // The suite's webhook receivers listen on loopback, which is refused by default.
        outbound_allowed_hosts: vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        ..Settings::default()
    };
    change(&mut settings);
    consento::telemetry::init(&settings.log, settings.log_format);
    let app = Application::build(settings).await.expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let setup_code = app.setup_code().map(str::to_owned);
    tokio::spawn(app.run_until_stopped());
    TestApp { address, client: client(), state, admin_token: String::new(), mail, database, setup_code }
}

/// An HTTP client that opens a connection per request: a kept-alive connection the
/// server closes after its idle timeout can otherwise be reused at that very moment, and
/// the request fails with "connection closed before message completed".
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(0).build().unwrap()
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

    /// Waits until every consent event recorded so far has its leaf in a signed
    /// checkpoint; answers the ledger's check (`GET /api/v1/consent/verify`).
    pub async fn ledger_sequenced(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, report) = self.send(self.get("/api/v1/consent/verify")).await;
            assert_eq!(status, StatusCode::OK, "{report}");
            if report["events_waiting"] == 0 && report["checkpoint_size"].is_u64() {
                return report;
            }
            assert!(Instant::now() < deadline, "the ledger was not sequenced: {report}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

/// A message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    pub raw: String,
}

impl ReceivedMail {
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    }

    /// The text body, decoded from quoted-printable or base64.
    pub fn text(&self) -> String {
        let (_, body) = self.raw.split_once("\r\n\r\n").unwrap_or(("", &self.raw));
        match self.header("Content-Transfer-Encoding").as_deref() {
            Some("base64") => {
                let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(compact).unwrap()).unwrap()
            }
            Some("quoted-printable") => decode_quoted_printable(body),
            _ => body.to_owned(),
        }
    }

    /// The first link in the text that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> String {
        let text = self.text();
        let start = text.find(prefix).unwrap_or_else(|| panic!("no {prefix} link in {text}"));
        text[start..].split_whitespace().next().unwrap().to_owned()
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=' && i + 3 <= bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|hex| u8::from_str_radix(hex, 16).ok()))
            .flatten();
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A real SMTP server on a free port of this machine, keeping what it receives.
pub struct MailServer {
    pub port: u16,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
}

#[derive(Clone)]
struct Collector {
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl mailin_embedded::Handler for Collector {
    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> mailin_embedded::Response {
        self.from = from.to_owned();
        self.to = to.to_vec();
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let mail = ReceivedMail {
            from: self.from.clone(),
            to: self.to.clone(),
            raw: String::from_utf8_lossy(&self.data).into_owned(),
        };
        self.received.lock().unwrap().push(mail);
        mailin_embedded::response::OK
    }

    fn helo(&mut self, _ip: IpAddr, _domain: &str) -> mailin_embedded::Response {
        mailin_embedded::response::OK
    }
}

impl MailServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let collector = Collector { received: received.clone(), from: String::new(), to: Vec::new(), data: Vec::new() };
        let mut server = mailin_embedded::Server::new(collector);
        // A thread per connection: enough for every connection a test opens at once, as a real
        // server would take them.
        server.with_name("mail.test").with_num_threads(64).with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Self { port, received }
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) until `count` messages to `to` arrived; answers them all.
    pub async fn wait_for(&self, to: &str, count: usize) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mails: Vec<ReceivedMail> =
                self.received().into_iter().filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(to))).collect();
            if mails.len() >= count {
                return mails;
            }
            assert!(Instant::now() < deadline, "{count} mail(s) to {to} did not arrive; got {}", mails.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl TestApp {
    /// Creates a form through the API from a partial definition (slug, lists…).
    pub async fn create_form(&self, definition: Value) -> Value {
        let (status, body) = self.send(self.post("/api/v1/forms", &definition)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// A form on one new list, with the given opt-in mode and extra definition fields.
    pub async fn form_on_new_list(&self, slug: &str, opt_in: &str, extra: Value) -> (Value, String) {
        let list = self.create_list(&format!("List for {slug}")).await;
        let mut definition = json!({
            "slug": slug,
            "name": format!("Form {slug}"),
            "title": "Our newsletter",
            "consents": [{"list_id": list, "text": "Send me the newsletter. I can unsubscribe at any time."}],
            "opt_in": opt_in,
        });
        if let (Value::Object(base), Value::Object(extra)) = (&mut definition, extra) {
            base.extend(extra);
        }
        (self.create_form(definition).await, list)
    }

    /// Posts the hosted page's form as a browser would.
    pub async fn submit_form(&self, slug: &str, fields: &[(&str, &str)]) -> Response {
        self.client
            .post(self.url(&format!("/f/{slug}")))
            .header("user-agent", "TestBrowser/1.0")
            .header("referer", "https://www.example.org/newsletter")
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// Records a list's double opt-in as the person's confirmation would: no API may, so
    /// tests about something else (campaigns) write it as the confirmation does.
    pub async fn confirmed_double_opt_in(&self, contact_id: &str, list_id: &str) {
        use consento::domain::consent::{ConsentAction, ConsentBasis, Evidence, Purpose};
        let (contact_id, purpose) = (contact_id.parse().unwrap(), Purpose::List(list_id.parse().unwrap()));
        self.state
            .db
            .write(move |conn| {
                consento::services::consent::apply_event(
                    conn,
                    consento::storage::consent::NewConsentEvent {
                        contact_id,
                        email_key: None,
                        purpose,
                        action: ConsentAction::Confirmed,
                        basis: ConsentBasis::DoubleOptIn,
                        requires_confirmation: false,
                        evidence: Evidence { method: "confirmation".to_owned(), ..Evidence::default() },
                        actor: "public".to_owned(),
                    },
                )?;
                Ok(())
            })
            .await
            .unwrap();
    }

    pub async fn consents_of(&self, contact_id: &str) -> Value {
        let (status, body) = self.send(self.get(&format!("/api/v1/contacts/{contact_id}/consents"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn contact_by_email(&self, email: &str) -> Option<Value> {
        let (_, body) = self.send(self.get(&format!("/api/v1/contacts?email={email}"))).await;
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["email"].as_str().unwrap().eq_ignore_ascii_case(email.trim()))
            .cloned()
    }
}
