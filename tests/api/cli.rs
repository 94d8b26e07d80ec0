//! The `consento` binary as an operator runs it.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestDatabase;

pub(crate) fn consento(database: &TestDatabase) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_consento"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CONSENTO_DATA_DIR", &database.data_dir)
        .env("CONSENTO_LOG", "warn")
        .current_dir(std::env::temp_dir());
    if let Some(url) = database.url() {
        command.env("CONSENTO_DATABASE_URL", url);
    }
    command
}

fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap()
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `consento serve` process on `port` whose first admin is the suite's admin, with
/// more settings from `env`; killed when dropped.
pub(crate) fn serve(database: &TestDatabase, port: u16, env: &[(&str, String)]) -> Server {
    serve_logging_to(database, port, env, Stdio::null())
}

/// As [`serve`], its log written to `log`.
pub(crate) fn serve_logging_to(database: &TestDatabase, port: u16, env: &[(&str, String)], log: Stdio) -> Server {
    let mut command = consento(database);
    command
        .arg("serve")
        .env("CONSENTO_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONSENTO_PLUGINS_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/plugins"))
        .env("CONSENTO_ADMIN_EMAIL", crate::helpers::ADMIN_EMAIL)
        .env("CONSENTO_ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(log);
    for (key, value) in env {
        command.env(key, value);
    }
    Server(command.spawn().unwrap())
}

/// A new list and a public form `slug` on it, with that opt-in mode, on the server at
/// `base`; answers the list's id.
pub(crate) async fn form_on_new_list(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    slug: &str,
    opt_in: &str,
) -> String {
    let list: Value = client
        .post(format!("{base}/api/v1/lists"))
        .bearer_auth(token)
        .json(&json!({"name": slug, "opt_in": opt_in}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = list["id"].as_str().unwrap().to_owned();
    let form = json!({"slug": slug, "name": slug, "title": slug, "opt_in": opt_in,
        "consents": [{"list_id": list, "text": format!("Send me the {slug} news.")}]});
    let response = client.post(format!("{base}/api/v1/forms")).bearer_auth(token).json(&form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    list
}

/// Signs the suite's admin in at `base`; answers the access token.
pub(crate) async fn admin_token(client: &reqwest::Client, base: &str) -> String {
    let response: Value = client
        .post(format!("{base}/api/v1/auth/token"))
        .json(&json!({"email": crate::helpers::ADMIN_EMAIL, "password": crate::helpers::ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["access_token"].as_str().unwrap().to_owned()
}

pub(crate) async fn wait_until_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await
            && response.status() == StatusCode::OK
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not become healthy at {base}");
}

#[tokio::test]
async fn help_explains_the_commands() {
    let database = TestDatabase::new();
    let output = run(consento(&database).arg("--help"));
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for command in ["serve", "migrate", "user", "openapi"] {
        assert!(help.contains(command), "{help}");
    }
}

#[tokio::test]
async fn the_openapi_command_prints_the_committed_spec() {
    let database = TestDatabase::new();
    let output = run(consento(&database).arg("openapi"));
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), include_str!("../../openapi/openapi.json"));
}

#[tokio::test]
async fn a_user_created_on_the_command_line_signs_in_to_the_server_which_stops_on_sigterm() {
    let database = TestDatabase::new();
    let password = "a passphrase from the environment";

    let output = run(consento(&database).args(["migrate"]));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let output = run(consento(&database)
        .args(["user", "create", "--email", "ops@example.org", "--role", "admin"])
        .env("CONSENTO_USER_PASSWORD", password));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Created admin user ops@example.org"));

    let again = run(consento(&database)
        .args(["user", "create", "--email", "OPS@example.org"])
        .env("CONSENTO_USER_PASSWORD", password));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let weak = run(consento(&database)
        .args(["user", "create", "--email", "weak@example.org"])
        .env("CONSENTO_USER_PASSWORD", "short"));
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("at least 12 characters"));

    let port = free_port();
    let server = consento(&database)
        .arg("serve")
        .env("CONSENTO_LISTEN", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(server);
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::client();
    wait_until_healthy(&client, &base).await;

    let response = client
        .post(format!("{base}/api/v1/auth/token"))
        .json(&json!({"email": "ops@example.org", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token: Value = response.json().await.unwrap();
    assert_eq!(token["token_type"], "Bearer");

    let status = Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = server.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "the server did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "the server exited with {exit} on SIGTERM");
}

#[tokio::test]
async fn the_first_admin_comes_from_the_environment_on_first_start_only_and_tokens_survive_restarts() {
    let database = TestDatabase::new();
    let port = free_port();
    let start = |password: &str| {
        consento(&database)
            .arg("serve")
            .env("CONSENTO_LISTEN", format!("127.0.0.1:{port}"))
            .env("CONSENTO_ADMIN_EMAIL", "first@example.org")
            .env("CONSENTO_ADMIN_PASSWORD", password)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Server)
            .unwrap()
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::client();
    let sign_in = |password: &'static str| {
        client
            .post(format!("{base}/api/v1/auth/token"))
            .json(&json!({"email": "first@example.org", "password": password}))
            .send()
    };

    let server = start("the very first password");
    wait_until_healthy(&client, &base).await;
    let response = sign_in("the very first password").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token: Value = response.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    drop(server);

    // A later start with another password changes nothing, and the token issued before
    // the restart still works: the signing key was kept.
    let _server = start("a different password");
    wait_until_healthy(&client, &base).await;
    assert_eq!(sign_in("a different password").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in("the very first password").await.unwrap().status(), StatusCode::OK);
    let response = client.get(format!("{base}/api/v1/contacts")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "a token did not survive the restart");
}

#[tokio::test]
async fn the_command_line_imports_exports_checks_plugins_and_counts() {
    let database = TestDatabase::new();
    let folder = std::env::temp_dir().join(format!("consento-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("people.csv");
    std::fs::write(&file, "email,company,plan\nada@example.org,Analytical,pro\noops,,\ngrace@example.org,,free\n")
        .unwrap();

    let output = run(consento(&database).arg("import").arg(&file).arg("--tag").arg("imported-2026"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "refused rows give exit status 3: {stdout}");
    assert!(stdout.contains("imported    2") && stdout.contains("line 3: email: must contain an @"), "{stdout}");

    let output = run(consento(&database).args(["export", "--format", "ndjson", "--tag", "imported-2026"]));
    assert!(output.status.success());
    let lines: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["email"], "ada@example.org");
    assert_eq!(lines[0]["attributes"], json!({"plan": "pro"}));

    let output = run(consento(&database).arg("stats"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["contacts", "2"]), "{stdout}");

    // A folder with one good plugin, one that does not compile, and two whose manifest
    // declares a hook the script does not define (at all, or with its parameters).
    let plugins = folder.join("plugins");
    for (name, hooks, script) in [
        ("good", "[\"matches\"]", "fn matches(contact) { true }"),
        ("broken", "[]", "fn matches(contact) {\n  contact.country ==\n}"),
        ("missing", "[\"eligible\"]", "fn matches(contact) { true }"),
        ("arity", "[\"eligible\"]", "fn eligible(contact) { #{send: true, reason: \"x\"} }"),
    ] {
        std::fs::create_dir_all(plugins.join(name)).unwrap();
        let manifest = format!("name = \"{name}\"\nversion = \"1.0.0\"\nhooks = {hooks}\n");
        std::fs::write(plugins.join(name).join("plugin.toml"), manifest).unwrap();
        std::fs::write(plugins.join(name).join("main.rhai"), script).unwrap();
    }
    let output = run(consento(&database).args(["plugins", "check"]).arg(&plugins));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok     good 1.0.0 (hooks: matches)"), "{stdout}");
    assert!(stdout.contains("error  broken: script broken, line 3"), "{stdout}");
    assert!(
        stdout.contains("error  missing: plugin missing: declares hook eligible but main.rhai does not define eligible(contact, campaign)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("error  arity: plugin arity: declares hook eligible but main.rhai defines eligible(contact) instead of eligible(contact, campaign)"),
        "{stdout}"
    );
    // Without a folder: what the server runs, the built-in plugins first.
    let output = run(consento(&database).args(["plugins", "check"]));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("ok     send-policy 1.0.0 (built in; hooks: eligible)"), "{stdout}");
    let shipped = run(consento(&database).args(["plugins", "check", concat!(env!("CARGO_MANIFEST_DIR"), "/plugins")]));
    assert!(shipped.status.success(), "{}", String::from_utf8_lossy(&shipped.stdout));
    let _ = std::fs::remove_dir_all(&folder);
}

/// The `.eml` files of an outbox folder, oldest name first.
fn outbox_mails(outbox: &std::path::Path) -> Vec<crate::helpers::ReceivedMail> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(outbox)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|raw| crate::helpers::ReceivedMail { from: String::new(), to: Vec::new(), raw })
        .collect()
}

async fn wait_for_outbox(outbox: &std::path::Path, subject: &str) -> crate::helpers::ReceivedMail {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(mail) = outbox_mails(outbox).into_iter().find(|m| m.header("Subject").as_deref() == Some(subject)) {
            return mail;
        }
        assert!(Instant::now() < deadline, "no mail {subject:?} in {}", outbox.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_server_started_in_an_empty_folder_takes_a_signup_to_a_first_campaign_with_the_built_in_send_policy() {
    // The README's first steps, in a folder with no plugins/, no settings and no SMTP:
    // the built-in send policy decides, and mail lands in ./data/outbox.
    let database = TestDatabase::new();
    let folder = std::env::temp_dir().join(format!("consento-empty-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&folder).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut command = consento(&database);
    command
        .arg("serve")
        .env_remove("CONSENTO_DATA_DIR")
        .current_dir(&folder)
        .env("CONSENTO_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONSENTO_ADMIN_EMAIL", crate::helpers::ADMIN_EMAIL)
        .env("CONSENTO_ADMIN_PASSWORD", crate::helpers::ADMIN_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = Server(command.spawn().unwrap());
    let client = crate::helpers::client();
    wait_until_healthy(&client, &base).await;
    let token = admin_token(&client, &base).await;
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).bearer_auth(&token).json(&body).send();

    let list: Value = post("/api/v1/lists", json!({"name": "Newsletter"})).await.unwrap().json().await.unwrap();
    let list = list["id"].as_str().unwrap().to_owned();
    let response = post(
        "/api/v1/forms",
        json!({"slug": "news", "name": "Newsletter signup", "title": "Our newsletter",
               "consents": [{"list_id": list, "text": "Send me the newsletter. I can unsubscribe at any time."}]}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    let signup =
        client.post(format!("{base}/f/news")).form(&[("email", "marie@example.org"), ("consent", &list)]).send().await;
    assert_eq!(signup.unwrap().status(), StatusCode::OK);
    let outbox = folder.join("data/outbox");
    let confirmation = wait_for_outbox(&outbox, "Please confirm your subscription").await;
    let link = confirmation.link(&format!("{base}/confirm/"));
    assert_eq!(client.post(&link).send().await.unwrap().status(), StatusCode::OK);

    let campaign: Value = post(
        "/api/v1/campaigns",
        json!({"name": "First news", "subject": "Our first news", "text_body": "Hello!\nLeave: {{ unsubscribe_url }}",
               "lists": [list]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = campaign["id"].as_str().expect("the campaign is created").to_owned();
    let response = post(&format!("/api/v1/campaigns/{id}/send"), json!({})).await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{}", response.text().await.unwrap());
    let mail = wait_for_outbox(&outbox, "Our first news").await;
    assert!(mail.header("To").unwrap().contains("marie@example.org"), "{}", mail.raw);

    let recipients: Value = client
        .get(format!("{base}/api/v1/campaigns/{id}/recipients?status=sent"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(recipients["items"][0]["reason"], "double_opt_in", "the built-in send-policy decided: {recipients}");
    let _ = std::fs::remove_dir_all(&folder);
}

#[tokio::test]
async fn an_import_off_a_terminal_prints_plain_progress_lines_and_no_info_logs() {
    let database = TestDatabase::new();
    let file = std::env::temp_dir().join(format!("consento-progress-{}.csv", uuid::Uuid::new_v4()));
    std::fs::write(&file, "email\nada@example.org\ngrace@example.org\n").unwrap();
    // No CONSENTO_LOG: the default a person gets.
    let output = run(consento(&database).env_remove("CONSENTO_LOG").arg("import").arg(&file));
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains('\r'), "a redrawn line off a terminal: {stderr:?}");
    assert!(!stderr.contains("INFO"), "log lines among the progress: {stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("2 records (") && last.ends_with("2 new, 0 merged, 0 refused"), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("imported    2"));
}
