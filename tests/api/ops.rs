//! `/healthz`, `/readyz`, `/metrics` and request ids.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_and_readiness_answer_ok() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let (status, body) = app.send(app.client.get(app.url(path))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"status": "ok"}));
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    let id = uuid::Uuid::now_v7();
    app.get(&format!("/api/v1/contacts/{id}")).send().await.unwrap();
    app.client.get(app.url("/healthz")).send().await.unwrap();
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    assert!(
        text.contains(r#"consento_http_requests_total{method="GET",route="/api/v1/contacts/{id}",status="404"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"consento_http_requests_total{method="GET",route="/healthz",status="200"} 1"#), "{text}");
    assert!(text.contains("consento_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("consento_db_pool_max_connections 8"), "{text}");
    assert!(!text.contains(&id.to_string()), "raw paths must not become labels");
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let response = app.client.get(app.url("/nothing")).send().await.unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
}

#[tokio::test]
async fn a_worker_that_panics_makes_readiness_fail_naming_it_until_it_runs_again() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let app = spawn_app().await;
    let workers = app.state.workers.statuses();
    for name in ["outbox", "dispatcher", "imports", "maintenance", "sequencer", "webhooks", "shares", "stats"] {
        assert!(workers[name].running, "{name} runs: {workers:?}");
    }
    let failed = Arc::new(AtomicBool::new(false));
    app.state.workers.spawn("probe", move || {
        let first = !failed.swap(true, Ordering::SeqCst);
        async move {
            assert!(!first, "the probe's first run fails");
            std::future::pending::<()>().await;
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // What stopped it is for the log and the operator, not for whoever asks the port.
    assert_eq!(app.state.workers.down(), ["probe (it panicked: the probe's first run fails)"]);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let (status, body) = app.send(app.client.get(app.url("/readyz"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.state.workers.statuses()["probe"].restarts, 1);
}

#[tokio::test]
async fn what_a_request_logs_inside_its_database_work_carries_its_request_id() {
    let database = crate::helpers::TestDatabase::new();
    let port = crate::cli::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::env::temp_dir().join(format!("consento-{}.log", uuid::Uuid::new_v4().simple()));
    let env = [("CONSENTO_LOG", "info".to_owned()), ("CONSENTO_LOG_FORMAT", "json".to_owned())];
    let server = crate::cli::serve_logging_to(&database, port, &env, std::fs::File::create(&log).unwrap().into());
    let client = crate::helpers::client();
    crate::cli::wait_until_healthy(&client, &base).await;
    let token = crate::cli::admin_token(&client, &base).await;
    let mut lists = Vec::new();
    for slug in ["first", "second"] {
        lists.push(crate::cli::form_on_new_list(&client, &base, &token, slug, "double").await);
    }
    // The second list's confirmation is past the address's daily cap: the write that
    // decides so logs it, inside the request's span.
    for (slug, list, id) in [("first", &lists[0], "signup-one"), ("second", &lists[1], "signup-two")] {
        let response = client
            .post(format!("{base}/f/{slug}"))
            .header("x-request-id", id)
            .json(&json!({"email": "capped@example.org", "consents": [list]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let withheld: Vec<serde_json::Value> = text
        .lines()
        .filter(|line| line.contains("confirmation mail withheld"))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(!withheld.is_empty(), "{text}");
    for line in withheld {
        assert_eq!(line["span"]["request_id"], "signup-two", "{line}");
    }
}
