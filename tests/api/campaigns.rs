//! Campaigns: the send policy decides who receives, a real SMTP server receives signed
//! messages with working one-click unsubscribe, bounces suppress, and neither a crash nor
//! a second dispatcher loses or doubles a recipient.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    MailServer, ReceivedMail, TestApp, TestDatabase, assert_problem, fields_at_fault, spawn_app, spawn_app_with,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dkim");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).unwrap().trim().to_owned()
}

/// A Python with dkimpy (and PyNaCl for ed25519), in a virtualenv under `target/`:
/// `scripts/test` makes it, or the first test that needs it.
pub(crate) fn dkim_python() -> PathBuf {
    static READY: Mutex<bool> = Mutex::new(false);
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv");
    let python = venv.join("bin/python");
    let mut ready = READY.lock().unwrap();
    if !*ready {
        let has = |python: &PathBuf| {
            Command::new(python)
                .args(["-c", "import dkim, nacl"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !has(&python) {
            let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().unwrap();
            assert!(made.success(), "python3 -m venv failed");
            let requirements = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/requirements.txt");
            let pip = Command::new(venv.join("bin/pip")).args(["install", "-q", "-r", requirements]).status().unwrap();
            assert!(pip.success(), "pip install -r tests/requirements.txt failed");
        }
        *ready = true;
    }
    python
}

/// Whether dkimpy, given the public key as DNS would publish it, accepts the message.
fn dkim_verifies(mail: &ReceivedMail, record: &str) -> bool {
    let file = std::env::temp_dir().join(format!("consento-dkim-{}.eml", uuid::Uuid::new_v4()));
    std::fs::write(&file, &mail.raw).unwrap();
    let status = Command::new(dkim_python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dkim_verify.py"))
        .arg(&file)
        .arg(record)
        .status()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    status.success()
}

async fn grant(app: &TestApp, contact: &str, list: &str, basis: &str) {
    if basis == "double_opt_in" {
        // Only the person's confirmation makes one; the API refuses to.
        return app.confirmed_double_opt_in(contact, list).await;
    }
    let (status, body) = app
        .send(app.post(
            &format!("/api/v1/contacts/{contact}/consents"),
            &json!({
                "purpose": format!("list:{list}"),
                "basis": basis,
                "evidence": {"method": "test", "consent_text": "Send me the newsletter"}
            }),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn contact(app: &TestApp, body: Value) -> String {
    app.create_contact(body).await["id"].as_str().unwrap().to_owned()
}

async fn wait_for_status(app: &TestApp, id: &str, wanted: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, campaign) = app.send(app.get(&format!("/api/v1/campaigns/{id}"))).await;
        if campaign["status"] == wanted {
            return campaign;
        }
        assert!(Instant::now() < deadline, "the campaign did not reach {wanted}: {campaign}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signed_app_settings(settings: &mut consento::settings::Settings) {
    settings.dkim_selector = Some("s1".to_owned());
    settings.dkim_domain = Some("consento.test".to_owned());
    settings.dkim_private_key = Some(consento::settings::Secret::new(fixture("ed25519.key")));
    settings.dkim_algorithm = consento::settings::DkimAlgorithm::Ed25519;
}

#[tokio::test]
async fn a_campaign_reaches_exactly_whom_the_policy_allows_signed_and_with_one_click_unsubscribe() {
    let app = spawn_app_with(signed_app_settings).await;
    let list = app.create_list("Newsletter").await;
    let confirmed = contact(&app, json!({"email": "ada@example.org", "attributes": {"first_name": "Ada"}})).await;
    grant(&app, &confirmed, &list, "double_opt_in").await;
    // Contact data must never break a message: a name with a line break and a header.
    let hostile = contact(
        &app,
        json!({"email": "eve@example.org", "attributes": {"first_name": "Eve\r\nBcc: thief@example.net"}}),
    )
    .await;
    grant(&app, &hostile, &list, "double_opt_in").await;
    let passive = contact(&app, json!({"email": "pierre@example.fr", "country": "FR"})).await;
    grant(&app, &passive, &list, "passive_opt_in").await;
    let role = contact(&app, json!({"email": "info@acme.example", "company": "Acme"})).await;
    grant(&app, &role, &list, "b2b_role_address").await;
    let left = contact(&app, json!({"email": "left@example.org"})).await;
    grant(&app, &left, &list, "single_opt_in").await;
    let (status, _) = app
        .send(app.post(
            &format!("/api/v1/contacts/{left}/consents/withdraw"),
            &json!({"purpose": format!("list:{list}"), "method": "phone call"}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let suppressed = contact(&app, json!({"email": "blocked@example.org"})).await;
    grant(&app, &suppressed, &list, "double_opt_in").await;
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{suppressed}/links"))).await;
    let leave_all = app.client.post(links["unsubscribe_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(leave_all.status(), StatusCode::OK);

    // A template error is refused at save, with the field and the line.
    let response = app
        .post(
            "/api/v1/campaigns",
            &json!({"name": "Broken", "subject": "Hi", "text_body": "Hello\n{{ contact.email ", "lists": [list]}),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["text_body"]);
    assert!(problem["errors"][0]["message"].as_str().unwrap().starts_with("line 2"), "{problem}");

    let (status, campaign) = app
        .send(app.post(
            "/api/v1/campaigns",
            &json!({
                "name": "November news",
                "subject": "News for {{ contact.attributes.first_name | default(\"you\") }}",
                "text_body": "Hello {{ contact.attributes.first_name | default(\"there\") }},\nour news.\nLeave: {{ unsubscribe_url }}",
                "html_body": "<html><body><p>Hello {{ contact.attributes.first_name | default(\"there\") }}</p></body></html>",
                "lists": [list],
                "kind": "b2c"
            }),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{campaign}");
    let id = campaign["id"].as_str().unwrap().to_owned();
    assert_eq!(campaign["status"], "draft");

    let (status, preview) =
        app.send(app.post(&format!("/api/v1/campaigns/{id}/preview"), &json!({"contact_id": confirmed}))).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["subject"], "News for Ada");

    let (status, audience) = app.send(app.post(&format!("/api/v1/campaigns/{id}/audience"), &json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{audience}");
    assert_eq!(audience["audience"], 6, "{audience}");
    assert_eq!(audience["eligible"], 2, "{audience}");
    assert_eq!(
        audience["excluded_by_reason"],
        json!({
            "b2b_basis_in_b2c_campaign": 1,
            "passive_opt_in_not_consent": 1,
            "suppressed": 1,
            "unsubscribed": 1
        })
    );

    let (status, sending) = app.send(app.post(&format!("/api/v1/campaigns/{id}/send"), &json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sending}");
    wait_for_status(&app, &id, "sent").await;

    // Exactly the two the policy allows received it.
    let received = app.mail.received();
    let mut recipients: Vec<String> = received.iter().flat_map(|m| m.to.clone()).collect();
    recipients.sort();
    assert_eq!(recipients, ["ada@example.org", "eve@example.org"]);

    // Each exclusion is on record with its reason.
    let (_, excluded) = app.send(app.get(&format!("/api/v1/campaigns/{id}/recipients?status=excluded"))).await;
    let reasons: HashMap<String, String> = excluded["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["email"].as_str().unwrap().to_owned(), r["reason"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(reasons["pierre@example.fr"], "passive_opt_in_not_consent");
    assert_eq!(reasons["info@acme.example"], "b2b_basis_in_b2c_campaign");
    assert_eq!(reasons["left@example.org"], "unsubscribed");
    assert_eq!(reasons["blocked@example.org"], "suppressed");
    let (_, sent) = app.send(app.get(&format!("/api/v1/campaigns/{id}/recipients?status=sent"))).await;
    let message_ids: HashMap<String, String> = sent["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["email"].as_str().unwrap().to_owned(), r["message_id"].as_str().unwrap().to_owned()))
        .collect();

    let ed25519_record = format!("v=DKIM1; k=ed25519; p={}", fixture("ed25519.pub"));
    for mail in &received {
        let to = &mail.to[0];
        assert_eq!(mail.header("Message-ID").as_deref(), Some(message_ids[to].as_str()));
        assert!(mail.header("Date").is_some());
        assert!(mail.header("Content-Type").unwrap().starts_with("multipart/alternative"), "{}", mail.raw);
        assert_eq!(mail.header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));
        let signature = mail.header("DKIM-Signature").expect("signed");
        assert!(signature.contains("a=ed25519-sha256") && signature.contains("d=consento.test"), "{signature}");
        assert!(signature.contains("list-unsubscribe"), "{signature}");
        assert!(dkim_verifies(mail, &ed25519_record), "dkimpy rejects the signature of {}", mail.raw);
        // A tampered body no longer verifies: the check is real.
        let tampered = ReceivedMail { raw: mail.raw.replacen("our news", "our NEWS", 1), ..mail.clone() };
        assert!(!dkim_verifies(&tampered, &ed25519_record));
    }
    let eve = received.iter().find(|m| m.to[0] == "eve@example.org").unwrap();
    assert!(eve.header("Bcc").is_none(), "a header was injected: {}", eve.raw);
    assert_eq!(eve.header("Subject").as_deref(), Some("News for Eve  Bcc: thief@example.net"));

    // The one-click unsubscribe header works as a mailbox provider uses it (RFC 8058).
    let ada = received.iter().find(|m| m.to[0] == "ada@example.org").unwrap();
    let header = ada.header("List-Unsubscribe").unwrap();
    let url = header.trim_start_matches('<').trim_end_matches('>');
    assert!(url.starts_with(&app.url("/unsubscribe/")), "{url}");
    let response = app
        .client
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let consents = app.consents_of(&confirmed).await;
    assert_eq!(consents["current"][0]["status"], "withdrawn", "{consents}");

    let (_, stats) = app.send(app.get(&format!("/api/v1/campaigns/{id}/stats"))).await;
    assert_eq!(stats["sent"], 2, "{stats}");
    assert_eq!(stats["excluded"], 4, "{stats}");
    assert_eq!(stats["unsubscribes"], 1, "{stats}");
    assert_eq!(stats["unsubscribe_rate"], 0.5, "{stats}");

    // A sent campaign is the record of what was sent: it cannot change or go.
    let response = app.delete(&format!("/api/v1/campaigns/{id}")).send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;

    // The same list to businesses: the role address is allowed on the opt-out regime.
    let (_, b2b) = app
        .send(app.post(
            "/api/v1/campaigns",
            &json!({"name": "Trade news", "subject": "Trade", "text_body": "For businesses", "lists": [list], "kind": "b2b"}),
        ))
        .await;
    let (_, audience) =
        app.send(app.post(&format!("/api/v1/campaigns/{}/audience", b2b["id"].as_str().unwrap()), &json!({}))).await;
    assert_eq!(audience["eligible_by_reason"]["b2b_role_address"], 1, "{audience}");
}

#[tokio::test]
async fn rsa_signatures_verify_too() {
    let app = spawn_app_with(|settings| {
        settings.dkim_selector = Some("rsa1".to_owned());
        settings.dkim_private_key_file = Some(PathBuf::from(FIXTURES).join("rsa.pem"));
        settings.dkim_algorithm = consento::settings::DkimAlgorithm::Rsa;
    })
    .await;
    let list = app.create_list("Newsletter").await;
    let id = contact(&app, json!({"email": "rsa@example.org"})).await;
    grant(&app, &id, &list, "double_opt_in").await;
    let (_, campaign) = app
        .send(app.post(
            "/api/v1/campaigns",
            &json!({"name": "RSA", "subject": "Signed", "text_body": "Body", "lists": [list]}),
        ))
        .await;
    let campaign = campaign["id"].as_str().unwrap();
    // A test send goes to the given address only, marked as a test, and records nothing.
    let (status, test) =
        app.send(app.post(&format!("/api/v1/campaigns/{campaign}/test"), &json!({"to": ["proof@example.org"]}))).await;
    assert_eq!(status, StatusCode::OK, "{test}");
    let proof = app.mail.wait_for("proof@example.org", 1).await;
    assert_eq!(proof[0].header("Subject").as_deref(), Some("[Test] Signed"));
    app.send(app.post(&format!("/api/v1/campaigns/{campaign}/send"), &json!({}))).await;
    let mail = app.mail.wait_for("rsa@example.org", 1).await.remove(0);
    let signature = mail.header("DKIM-Signature").unwrap();
    assert!(signature.contains("a=rsa-sha256") && signature.contains("d=consento.test"), "{signature}");
    assert!(dkim_verifies(&mail, &format!("v=DKIM1; k=rsa; p={}", fixture("rsa.pub"))));
}

#[tokio::test]
async fn a_hard_bounce_suppresses_the_address_and_shows_in_the_churn() {
    let certificates = crate::bounces::CertificateServer::start();
    let app = crate::bounces::app_trusting(&certificates).await;
    let list = app.create_list("Newsletter").await;
    let bouncing = contact(&app, json!({"email": "nobody@example.org"})).await;
    grant(&app, &bouncing, &list, "double_opt_in").await;
    let fine = contact(&app, json!({"email": "fine@example.org"})).await;
    grant(&app, &fine, &list, "double_opt_in").await;
    let (_, campaign) =
        app.send(app.post(
            "/api/v1/campaigns",
            &json!({"name": "News", "subject": "News", "text_body": "Hi", "lists": [list]}),
        ))
        .await;
    let id = campaign["id"].as_str().unwrap().to_owned();
    app.send(app.post(&format!("/api/v1/campaigns/{id}/send"), &json!({}))).await;
    wait_for_status(&app, &id, "sent").await;
    let bounced = app.mail.wait_for("nobody@example.org", 1).await.remove(0);
    let message_id = bounced.header("Message-ID").unwrap();

    let notice = json!({"type": "hard_bounce", "email": "nobody@example.org", "message_id": message_id, "detail": "550 5.1.1 no such user"});
    let response = app.client.post(app.url("/webhooks/bounces")).json(&notice).send().await.unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = app
        .client
        .post(app.url("/webhooks/bounces"))
        .bearer_auth("a-bounce-secret-for-the-suite")
        .json(&json!({"type": "bounced", "email": "not an address"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["type", "email"]);

    let (status, outcome) = app
        .send(app.client.post(app.url("/webhooks/bounces")).bearer_auth("a-bounce-secret-for-the-suite").json(&notice))
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["items"][0]["suppressed"], true);
    assert_eq!(outcome["items"][0]["campaign_id"], id.as_str());

    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{bouncing}"))).await;
    assert_eq!(contact["status"], "bounced");
    let consents = app.consents_of(&bouncing).await;
    let last = consents["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["action"].as_str(), last["method"].as_str()),
        (Some("withdrawn"), Some("hard_bounce")),
        "{consents}"
    );

    let (_, stats) = app.send(app.get(&format!("/api/v1/campaigns/{id}/stats"))).await;
    assert_eq!((stats["sent"].as_i64(), stats["bounced"].as_i64()), (Some(2), Some(1)), "{stats}");
    assert_eq!(stats["bounce_rate"], 0.5);
    let (status, churn) = app.send(app.get("/api/v1/stats/churn?period=day")).await;
    assert_eq!(status, StatusCode::OK, "{churn}");
    let today = churn["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(today["start"], chrono::Utc::now().date_naive().to_string());
    assert_eq!((today["sent"].as_i64(), today["hard_bounces"].as_i64()), (Some(2), Some(1)), "{churn}");
    assert_eq!(today["bounce_rate"], 0.5);
    assert_eq!(today["subscribed"], 2);
    assert_eq!(today["left"], 1);

    // The next campaign leaves the address out as suppressed.
    let (_, next) = app
        .send(
            app.post("/api/v1/campaigns", &json!({"name": "Next", "subject": "N", "text_body": "Hi", "lists": [list]})),
        )
        .await;
    let (_, audience) =
        app.send(app.post(&format!("/api/v1/campaigns/{}/audience", next["id"].as_str().unwrap()), &json!({}))).await;
    assert_eq!(audience["excluded_by_reason"], json!({"suppressed": 1}), "{audience}");

    // Amazon SES (through SNS, as text/plain, signed) works the same way; a complaint suppresses.
    let event = json!({
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "fine@example.org"}], "complaintFeedbackType": "abuse"},
        "mail": {"headers": []}
    });
    let ses = crate::bounces::signed_notification(&event, &certificates.url);
    let (status, outcome) = app
        .send(
            app.client
                .post(app.url("/webhooks/ses?secret=a-bounce-secret-for-the-suite"))
                .header("Content-Type", "text/plain; charset=UTF-8")
                .body(ses.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["items"][0]["type"], "complaint");
    let (_, stats) = app.send(app.get(&format!("/api/v1/campaigns/{id}/stats"))).await;
    assert_eq!(stats["complaints"], 1, "{stats}");

    // Erasure takes the address out of the campaign's record; the counts stay.
    let (status, _) = app.send(app.delete(&format!("/api/v1/contacts/{fine}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, recipients) = app.send(app.get(&format!("/api/v1/campaigns/{id}/recipients"))).await;
    assert!(!recipients.to_string().contains("fine@example.org"), "{recipients}");
    let (_, stats) = app.send(app.get(&format!("/api/v1/campaigns/{id}/stats"))).await;
    assert_eq!((stats["sent"].as_i64(), stats["complaints"].as_i64()), (Some(2), Some(1)), "{stats}");
}

#[tokio::test]
async fn two_dispatchers_on_one_database_never_send_to_one_recipient_twice() {
    let app = spawn_app_with(|settings| settings.send_batch_size = 7).await;
    let list = app.create_list("Newsletter").await;
    for n in 0..60 {
        let id = contact(&app, json!({"email": format!("reader{n}@example.org")})).await;
        grant(&app, &id, &list, "double_opt_in").await;
    }
    let (_, campaign) = app
        .send(
            app.post("/api/v1/campaigns", &json!({"name": "Race", "subject": "S", "text_body": "B", "lists": [list]})),
        )
        .await;
    let id: consento::domain::CampaignId = campaign["id"].as_str().unwrap().parse().unwrap();
    // Two more dispatchers (two instances) beside the app's own, all on the same database.
    let dispatcher = || {
        consento::services::dispatcher::Dispatcher::new(
            app.state.campaigns.clone(),
            consento::services::dispatcher::SendOptions::from_settings(&app.state.settings),
        )
    };
    let (one, two) = (dispatcher(), dispatcher());
    app.send(app.post(&format!("/api/v1/campaigns/{id}/send"), &json!({}))).await;
    let (a, b) = tokio::join!(
        consento::services::dispatcher::send_until_done(&one, id),
        consento::services::dispatcher::send_until_done(&two, id)
    );
    a.unwrap();
    b.unwrap();
    wait_for_status(&app, &id.to_string(), "sent").await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for mail in app.mail.received() {
        *counts.entry(mail.to[0].clone()).or_default() += 1;
    }
    assert_eq!(counts.len(), 60);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[tokio::test]
async fn a_dispatcher_killed_mid_campaign_loses_nobody_after_a_restart() {
    use crate::cli::{admin_token, free_port, serve, wait_until_healthy};
    const READERS: usize = 150;
    const BATCH: usize = 10;
    let database = TestDatabase::new();
    let mail = MailServer::start();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let settings = [
        ("CONSENTO_SMTP_URL", format!("smtp://127.0.0.1:{}", mail.port)),
        ("CONSENTO_SEND_BATCH_SIZE", BATCH.to_string()),
        ("CONSENTO_SEND_RATE_PER_SECOND", "100".to_owned()),
        ("CONSENTO_SEND_LEASE_SECONDS", "2".to_owned()),
    ];
    let start = || serve(&database, port, &settings);
    let client = crate::helpers::client();
    let mut server = start();
    wait_until_healthy(&client, &base).await;
    let token = admin_token(&client, &base).await;
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).bearer_auth(&token).json(&body).send();
    let list: Value = post("/api/v1/lists", json!({"name": "Crash"})).await.unwrap().json().await.unwrap();
    let list = list["id"].as_str().unwrap().to_owned();
    for n in 0..READERS {
        let contact: Value = post("/api/v1/contacts", json!({"email": format!("r{n}@example.org")}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = contact["id"].as_str().unwrap();
        let response = post(
            &format!("/api/v1/contacts/{id}/consents"),
            json!({"purpose": format!("list:{list}"), "basis": "single_opt_in", "evidence": {"method": "test", "consent_text": "Yes"}}),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let campaign: Value =
        post("/api/v1/campaigns", json!({"name": "Crash", "subject": "S", "text_body": "B", "lists": [list]}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let id = campaign["id"].as_str().unwrap().to_owned();
    post(&format!("/api/v1/campaigns/{id}/send"), json!({})).await.unwrap();

    // Kill -9 in the middle of the send.
    let deadline = Instant::now() + Duration::from_secs(60);
    while mail.received().len() < READERS / 3 {
        assert!(Instant::now() < deadline, "the send did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Command::new("kill").args(["-KILL", &server.0.id().to_string()]).status().unwrap();
    let _ = server.0.wait();
    let before_restart = mail.received().len();
    assert!(before_restart < READERS, "the campaign finished before the kill");

    server = start();
    wait_until_healthy(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let campaign: Value = client
            .get(format!("{base}/api/v1/campaigns/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if campaign["status"] == "sent" {
            break;
        }
        assert!(Instant::now() < deadline, "the campaign did not finish after the restart: {campaign}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);

    let mut by_address: HashMap<String, Vec<String>> = HashMap::new();
    for mail in mail.received() {
        by_address.entry(mail.to[0].clone()).or_default().push(mail.header("Message-ID").unwrap());
    }
    assert_eq!(by_address.len(), READERS, "someone was lost");
    let duplicates: Vec<&Vec<String>> = by_address.values().filter(|ids| ids.len() > 1).collect();
    assert!(duplicates.len() <= BATCH, "more than the batch in flight was sent twice: {}", duplicates.len());
    for ids in duplicates {
        assert!(ids.iter().all(|id| id == &ids[0]), "a message sent twice changed its Message-ID: {ids:?}");
    }
}

#[tokio::test]
async fn a_campaign_pauses_resumes_and_cancels_and_a_scheduled_one_waits_for_its_time() {
    let app = spawn_app_with(|settings| {
        settings.send_batch_size = 2;
        settings.send_rate_per_second = 20;
    })
    .await;
    let list = app.create_list("Newsletter").await;
    for n in 0..30 {
        let id = contact(&app, json!({"email": format!("slow{n}@example.org")})).await;
        grant(&app, &id, &list, "double_opt_in").await;
    }
    let create = |name: &str| {
        app.send(
            app.post("/api/v1/campaigns", &json!({"name": name, "subject": "S", "text_body": "B", "lists": [list]})),
        )
    };
    let (_, later) = create("Later").await;
    let later = later["id"].as_str().unwrap().to_owned();
    let in_an_hour = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let (status, scheduled) =
        app.send(app.post(&format!("/api/v1/campaigns/{later}/send"), &json!({"scheduled_at": in_an_hour}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{scheduled}");
    assert_eq!(scheduled["status"], "scheduled");

    let (_, now) = create("Now").await;
    let now = now["id"].as_str().unwrap().to_owned();
    app.send(app.post(&format!("/api/v1/campaigns/{now}/send"), &json!({}))).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.mail.received().len() < 4 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, paused) = app.send(app.post(&format!("/api/v1/campaigns/{now}/pause"), &json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["status"], "paused");
    // The batch in flight may finish; nothing starts after it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_pause = app.mail.received().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(app.mail.received().len(), at_pause, "sending went on while paused");
    assert!(at_pause < 30);
    let response = app.post(&format!("/api/v1/campaigns/{now}/pause"), &json!({})).send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;

    let (status, _) = app.send(app.post(&format!("/api/v1/campaigns/{now}/resume"), &json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    wait_for_status(&app, &now, "sent").await;
    assert_eq!(app.mail.received().len(), 30);

    // The scheduled one did not go; cancelled, it never will.
    let (_, later_now) = app.send(app.get(&format!("/api/v1/campaigns/{later}"))).await;
    assert_eq!(later_now["status"], "scheduled");
    let (status, cancelled) = app.send(app.post(&format!("/api/v1/campaigns/{later}/cancel"), &json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(app.mail.received().len(), 30);
}

#[tokio::test]
async fn complaints_above_the_threshold_pause_the_campaign() {
    let app = spawn_app_with(|settings| {
        settings.bounce_secret = Some(consento::settings::Secret::new("another-bounce-secret-of-24+"));
        // One message an hour: the campaign is still being sent when the complaint comes.
        settings.send_rate_per_hour = 1;
    })
    .await;
    let list = app.create_list("Newsletter").await;
    for n in 0..3 {
        let id = contact(&app, json!({"email": format!("angry{n}@example.org")})).await;
        grant(&app, &id, &list, "double_opt_in").await;
    }
    let (_, campaign) = app
        .send(
            app.post(
                "/api/v1/campaigns",
                &json!({"name": "Hourly", "subject": "S", "text_body": "B", "lists": [list]}),
            ),
        )
        .await;
    let id = campaign["id"].as_str().unwrap().to_owned();
    app.send(app.post(&format!("/api/v1/campaigns/{id}/send"), &json!({}))).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.mail.received().is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = app.mail.received().remove(0);
    let (status, outcome) = app
        .send(app.client.post(app.url("/webhooks/bounces")).bearer_auth("another-bounce-secret-of-24+").json(&json!({
            "type": "complaint", "email": first.to[0], "message_id": first.header("Message-ID")
        })))
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["items"][0]["campaign_paused"], true, "{outcome}");
    let (_, campaign) = app.send(app.get(&format!("/api/v1/campaigns/{id}"))).await;
    assert_eq!(campaign["status"], "paused");
    assert!(campaign["status_reason"].as_str().unwrap().contains("complaint rate 100.00%"), "{campaign}");
    assert_eq!(app.mail.received().len(), 1);
}

#[tokio::test]
async fn opens_and_clicks_are_counted_only_when_the_campaign_asks() {
    let app = spawn_app().await;
    let list = app.create_list("Newsletter").await;
    let reader = contact(&app, json!({"email": "reader@example.org"})).await;
    grant(&app, &reader, &list, "double_opt_in").await;
    let html = "<html><body><a href=\"https://shop.example/sale?a=1&amp;b=2\">Sale</a> \
                <a href=\"{{ unsubscribe_url }}\">Leave</a></body></html>";
    let (_, plain) = app
        .send(app.post(
            "/api/v1/campaigns",
            &json!({"name": "Untracked", "subject": "S", "text_body": "B", "html_body": html, "lists": [list]}),
        ))
        .await;
    let (_, tracked) = app
        .send(app.post(
            "/api/v1/campaigns",
            &json!({"name": "Tracked", "subject": "T", "text_body": "B", "html_body": html, "lists": [list],
                    "tracking": {"opens": true, "clicks": true, "individual": true}}),
        ))
        .await;
    for campaign in [&plain, &tracked] {
        let id = campaign["id"].as_str().unwrap();
        app.send(app.post(&format!("/api/v1/campaigns/{id}/send"), &json!({}))).await;
        wait_for_status(&app, id, "sent").await;
    }
    let mails = app.mail.wait_for("reader@example.org", 2).await;
    let html_of = |subject: &str| {
        let mail = mails.iter().find(|m| m.header("Subject").as_deref() == Some(subject)).unwrap();
        decode_html_part(&mail.raw)
    };
    let untracked = html_of("S");
    assert!(untracked.contains("https://shop.example/sale?a=1&amp;b=2") && !untracked.contains("/t/"), "{untracked}");

    let tracked_html = html_of("T");
    assert!(!tracked_html.contains("https://shop.example"), "{tracked_html}");
    assert!(tracked_html.contains(&app.url("/unsubscribe/")), "the unsubscribe link stays direct: {tracked_html}");
    let links: Vec<&str> = tracked_html.split('"').filter(|part| part.starts_with(&app.url("/t/"))).collect();
    assert_eq!(links.len(), 2, "{tracked_html}");
    let (click, open) = (links[0], links[1]);
    let response = app.client.get(open).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/gif");
    let response = app.client.get(click).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "https://shop.example/sale?a=1&b=2");
    let forged = format!("{}x", click);
    assert_eq!(app.client.get(forged).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    let (_, stats) = app.send(app.get(&format!("/api/v1/campaigns/{}/stats", tracked["id"].as_str().unwrap()))).await;
    assert_eq!((stats["opens"].as_i64(), stats["clicks"].as_i64()), (Some(1), Some(1)), "{stats}");
    assert_eq!((stats["unique_opens"].as_i64(), stats["unique_clicks"].as_i64()), (Some(1), Some(1)), "{stats}");
    let (_, stats) = app.send(app.get(&format!("/api/v1/campaigns/{}/stats", plain["id"].as_str().unwrap()))).await;
    assert_eq!((stats["opens"].as_i64(), stats["clicks"].as_i64()), (Some(0), Some(0)), "{stats}");
}

/// The HTML part of a multipart message, decoded.
fn decode_html_part(raw: &str) -> String {
    let start = raw.find("Content-Type: text/html").expect("an HTML part");
    let part = &raw[start..];
    let (head, body) = part.split_once("\r\n\r\n").unwrap();
    let body = body.split("\r\n--").next().unwrap();
    let mail = ReceivedMail { from: String::new(), to: Vec::new(), raw: format!("{head}\r\n\r\n{body}") };
    mail.text()
}
