//! `/api/v1/webhooks` and `/api/v1/deliveries`: integrators' subscriptions, delivered
//! signed, retried with backoff, dead-lettered, retried on request.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, fields_at_fault, spawn_app, spawn_app_with};
use crate::receiver::Receiver;

async fn subscribe(app: &TestApp, url: &str, types: &[&str]) -> serde_json::Value {
    let (status, webhook) = app.send(app.post("/api/v1/webhooks", &json!({"url": url, "event_types": types}))).await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    webhook
}

#[tokio::test]
async fn a_receiver_that_fails_three_times_then_recovers_gets_the_event_signed_once_it_recovers() {
    let app = spawn_app_with(|s| {
        s.webhook_backoff_ms = 100;
        s.webhook_max_attempts = 6;
    })
    .await;
    let receiver = Receiver::start(3);
    let webhook = subscribe(&app, &receiver.url, &["contact.created"]).await;
    let contact = app.create_contact(json!({"email": "eve@example.org"})).await;

    let requests = receiver.wait_for_accepted(1).await;
    let all = receiver.requests();
    assert_eq!(all.len(), 4, "three failures, then the delivery");
    assert_eq!(requests.len(), 1);
    let event = requests[0].json();
    assert_eq!(event["type"], "contact.created");
    assert_eq!(event["data"]["contact"]["id"], contact["id"]);
    assert_eq!(event["data"]["contact"]["email"], "eve@example.org");
    let secret = webhook["secret"].as_str().unwrap();
    for request in &all {
        assert!(request.signature_verifies(secret), "every attempt is signed");
        assert_eq!(request.json()["id"], event["id"], "the same event id on every attempt");
    }
    assert!(!all[0].signature_verifies("another secret"));
    let attempts: Vec<&str> = all.iter().map(|r| r.headers["consento-delivery-attempt"].as_str()).collect();
    assert_eq!(attempts, ["1", "2", "3", "4"]);

    let target = format!("subscription:{}", webhook["id"].as_str().unwrap());
    let (_, deliveries) = app.send(app.get(&format!("/api/v1/deliveries?target={target}"))).await;
    let delivery = &deliveries["items"][0];
    assert_eq!((delivery["status"].as_str(), delivery["attempts"].as_i64()), (Some("delivered"), Some(4)));
    let codes: Vec<i64> =
        delivery["attempt_log"].as_array().unwrap().iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [500, 500, 500, 200]);
    // Backoff: each wait at least doubles the one before (100, 200, 400 ms).
    let times: Vec<chrono::DateTime<chrono::Utc>> = delivery["attempt_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attempted_at"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!((times[3] - times[2]).num_milliseconds() >= 400, "{times:?}");
}

#[tokio::test]
async fn a_receiver_that_never_recovers_ends_dead_lettered_and_can_be_retried() {
    let app = spawn_app_with(|s| {
        s.webhook_backoff_ms = 50;
        s.webhook_max_attempts = 3;
    })
    .await;
    let receiver = Receiver::failing();
    subscribe(&app, &receiver.url, &["consent.granted", "contact.deleted"]).await;
    let list = app.create_list("News").await;
    let contact = app.create_contact(json!({"email": "sam@example.org"})).await;
    let id = contact["id"].as_str().unwrap();
    let body = json!({"purpose": format!("list:{list}"), "basis": "single_opt_in", "evidence": {"method": "api", "consent_text": "Yes please"}});
    let (status, event) = app.send(app.post(&format!("/api/v1/contacts/{id}/consents"), &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{event}");

    receiver.wait_for(3).await;
    let dead = wait_for_status(&app, "dead").await;
    assert_eq!(dead["attempts"], 3);
    assert_eq!(dead["event_type"], "consent.granted");
    assert!(dead["last_error"].as_str().unwrap().contains("500"), "{dead}");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(receiver.requests().len(), 3, "a dead delivery is not attempted again by itself");

    let delivery_id = dead["id"].as_str().unwrap();
    receiver.recover();
    let (status, retried) = app.send(app.post(&format!("/api/v1/deliveries/{delivery_id}/retry"), &json!({}))).await;
    assert_eq!((status, retried["status"].as_str()), (StatusCode::OK, Some("pending")), "{retried}");
    let accepted = receiver.wait_for_accepted(1).await;
    assert_eq!(accepted[0].json()["type"], "consent.granted");
    let delivered = wait_for_status(&app, "delivered").await;
    assert_eq!(delivered["id"], dead["id"]);
    let (status, problem) = app.send(app.post(&format!("/api/v1/deliveries/{delivery_id}/retry"), &json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
}

async fn wait_for_status(app: &TestApp, status: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, page) = app.send(app.get(&format!("/api/v1/deliveries?status={status}"))).await;
        if let Some(first) = page["items"].as_array().unwrap().first() {
            return first.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no delivery became {status}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn subscriptions_are_checked_and_only_matching_events_are_sent() {
    let app = spawn_app().await;
    let (status, problem) = app
        .send(app.post(
            "/api/v1/webhooks",
            &json!({"url": "mailto:x", "event_types": ["contact.created", "lead.shared", "nope"]}),
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields_at_fault(&problem), ["url", "event_types[1]", "event_types[2]"]);
    let (status, problem) = app.send(app.get("/api/v1/deliveries?status=lost")).await;
    assert_eq!((status, fields_at_fault(&problem)), (StatusCode::UNPROCESSABLE_ENTITY, vec!["status".to_owned()]));

    let receiver = Receiver::start(0);
    subscribe(&app, &receiver.url, &["contact.deleted"]).await;
    let contact = app.create_contact(json!({"email": "kim@example.org"})).await;
    let id = contact["id"].as_str().unwrap();
    let (status, _) = app.send(app.delete(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let received = receiver.wait_for_accepted(1).await;
    assert_eq!(received[0].json()["type"], "contact.deleted");
    assert_eq!(received[0].json()["data"]["contact_id"], contact["id"]);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(receiver.requests().len(), 1, "contact.created was not asked for");
}

#[tokio::test]
async fn form_submissions_and_finished_campaigns_reach_their_subscriber() {
    let app = spawn_app().await;
    let receiver = Receiver::start(0);
    subscribe(&app, &receiver.url, &["form.submitted", "campaign.sent"]).await;
    let (form, list) = app.form_on_new_list("events", "single", json!({})).await;
    let response = app.submit_form("events", &[("email", "ray@example.org"), ("consent", &list)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let submitted = receiver.wait_for_accepted(1).await[0].json();
    assert_eq!(submitted["type"], "form.submitted");
    assert_eq!(submitted["data"]["form_id"], form["id"]);
    assert_eq!(submitted["data"]["form_version"], 1);

    let body = json!({"name": "News", "subject": "News", "text_body": "Hi", "lists": [list]});
    let (status, campaign) = app.send(app.post("/api/v1/campaigns", &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{campaign}");
    let id = campaign["id"].as_str().unwrap();
    let (status, _) = app.send(app.post(&format!("/api/v1/campaigns/{id}/send"), &json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let sent = receiver.wait_for_accepted(2).await[1].json();
    assert_eq!(sent["type"], "campaign.sent");
    assert_eq!(sent["data"]["campaign_id"], id);
    assert_eq!(sent["data"]["recipients"]["sent"], 1, "{sent}");
}

#[tokio::test]
async fn a_receiver_url_at_an_internal_address_is_refused_with_a_422_in_any_spelling() {
    let app = spawn_app_with(|s| s.outbound_allowed_hosts.clear()).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://[::ffff:127.0.0.1]:9/hook",
        "http://2130706433:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://[fe80::1]/hook",
        "http://localhost:9/hook",
    ] {
        let response = app.post("/api/v1/webhooks", &json!({"url": url, "event_types": ["contact.created"]}));
        let problem =
            assert_problem(response.send().await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(fields_at_fault(&problem), ["url"], "{url}");
        let message = problem["errors"][0]["message"].as_str().unwrap();
        assert!(message.starts_with("must not point at ") && message.contains("outbound_allowed_hosts"), "{message}");
    }
    let partner = json!({
        "name": "Internal", "legal_name": "Internal Ltd", "description": "Deals", "privacy_policy_url": "https://partner.example/privacy",
        "webhook_url": "http://[::ffff:a9fe:a9fe]/leads"
    });
    let problem = assert_problem(
        app.post("/api/v1/partners", &partner).send().await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    assert_eq!(fields_at_fault(&problem), ["webhook_url"]);
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("169.254.169.254, a cloud metadata address"));
    // A public receiver is accepted.
    subscribe(&app, "https://hooks.example.com/consento", &["contact.created"]).await;
}

#[tokio::test]
async fn without_the_allow_setting_a_stored_loopback_url_is_refused_at_connect_time_and_the_delivery_says_why() {
    let app = spawn_app_with(|s| {
        s.outbound_allowed_hosts.clear();
        s.webhook_backoff_ms = 100;
        s.webhook_max_attempts = 2;
    })
    .await;
    let receiver = Receiver::start(0);
    // Stored before the rule existed (or by an instance that allowed it), the URL
    // points at the loopback receiver, written as a decimal integer.
    let webhook = subscribe(&app, "https://hooks.example.com/consento", &["contact.created"]).await;
    let port = receiver.url.trim_start_matches("http://127.0.0.1:").trim_end_matches("/hook").to_owned();
    let id = webhook["id"].as_str().unwrap().to_owned();
    let stored = format!("http://2130706433:{port}/hook");
    app.state
        .db
        .write(move |conn| {
            use diesel::RunQueryDsl;
            diesel::sql_query(format!("UPDATE webhook_subscriptions SET url = '{stored}' WHERE id = '{id}'"))
                .execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
    app.create_contact(json!({"email": "eve@example.org"})).await;
    let delivery = wait_for_status(&app, "dead").await;
    let error = delivery["last_error"].as_str().unwrap();
    assert!(error.contains("refused to connect to 127.0.0.1, a loopback address"), "{error}");
    assert!(receiver.requests().is_empty(), "the receiver was reached");
}
