//! `/api/v1/partners` and `/partner/v1`: co-registration partners, leads shared with the
//! partners a person chose, leads received with their proof, withdrawals relayed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, fields_at_fault, spawn_app, spawn_app_with};
use crate::receiver::Receiver;

/// Creates a partner through the API.
pub async fn create_partner(app: &TestApp, name: &str, extra: Value) -> Value {
    let mut body = json!({
        "name": name,
        "legal_name": format!("{name} SAS"),
        "description": format!("Offers from {name}, twice a month."),
        "privacy_policy_url": format!("https://{}.example/privacy", name.to_lowercase()),
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut body, extra) {
        base.extend(extra);
    }
    let (status, partner) = app.send(app.post("/api/v1/partners", &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{partner}");
    partner
}

/// A new key for a partner: its secret.
pub async fn partner_key(app: &TestApp, partner: &Value) -> String {
    let (status, key) =
        app.send(app.post(&format!("/api/v1/partners/{}/keys", partner["id"].as_str().unwrap()), &json!({}))).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    key["secret"].as_str().unwrap().to_owned()
}

/// A request to the partner API with a partner key.
pub fn as_partner(app: &TestApp, key: &str, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(key)
}

fn lead(lead_id: &str, email: &str) -> Value {
    json!({
        "lead_id": lead_id,
        "email": email,
        "country": "FR",
        "attributes": {"first_name": "Ada"},
        "consent": {
            "text": "I agree that Acme shares my address with consento's newsletter.",
            "collected_at": "2026-11-29T10:00:00Z",
            "ip": "203.0.113.7",
            "user_agent": "Mozilla/5.0",
            "source_url": "https://acme.example/contest",
            "method": "web_form",
            "partners_shown": ["consento", "Globex"],
        },
    })
}

#[tokio::test]
async fn a_partner_reaches_only_its_own_leads_and_only_the_partner_api() {
    let app = spawn_app().await;
    let acme = create_partner(&app, "Acme", json!({})).await;
    let globex = create_partner(&app, "Globex", json!({})).await;
    let (acme_key, globex_key) = (partner_key(&app, &acme).await, partner_key(&app, &globex).await);
    let (_, list) = app.form_on_new_list("coreg", "single", json!({"partners": [acme["id"], globex["id"]]})).await;
    let response = app
        .submit_form(
            "coreg",
            &[("email", "lin@example.org"), ("consent", &list), ("partner", acme["id"].as_str().unwrap())],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let (status, leads) = app.send(as_partner(&app, &acme_key, reqwest::Method::GET, "/partner/v1/leads")).await;
    assert_eq!(status, StatusCode::OK, "{leads}");
    let items = leads["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{leads}");
    assert_eq!(items[0]["status"], "shared");
    // The shipped plugin sends the address and the proof, not the whole profile.
    assert_eq!(items[0]["payload"]["email"], "lin@example.org");
    assert_eq!(items[0]["payload"]["consent"]["double_opt_in"], false);
    assert!(items[0]["payload"]["consent"]["text"].as_str().unwrap().contains("Acme"));
    assert!(items[0]["payload"].get("attributes").is_none(), "{leads}");
    let lead_id = items[0]["id"].as_str().unwrap();

    let (_, theirs) = app.send(as_partner(&app, &globex_key, reqwest::Method::GET, "/partner/v1/leads")).await;
    assert_eq!(theirs["items"], json!([]));
    let path = format!("/partner/v1/leads/{lead_id}");
    let (status, _) = app.send(as_partner(&app, &globex_key, reqwest::Method::GET, &path)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another partner's lead does not exist for Globex");
    let (status, mine) = app.send(as_partner(&app, &acme_key, reqwest::Method::GET, &path)).await;
    assert_eq!((status, mine["id"].as_str()), (StatusCode::OK, Some(lead_id)));

    // A partner key opens nothing else; an admin token does not open the partner API.
    let (status, _) = app.send(as_partner(&app, &acme_key, reqwest::Method::GET, "/api/v1/contacts")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.send(app.get("/partner/v1/leads")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The ledger holds the partner consent with the list of partners shown.
    let contact = app.contact_by_email("lin@example.org").await.unwrap();
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    let partner_event = consents["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["purpose"] == format!("partner:{}", acme["id"].as_str().unwrap()))
        .cloned()
        .unwrap();
    let shown: Vec<&str> = partner_event["proof"]["partners_shown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(shown, ["Acme", "Globex"]);
    assert!(
        consents["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["purpose"] != format!("partner:{}", globex["id"].as_str().unwrap()))
    );

    // A revoked key stops at once.
    let (_, keys) = app.send(app.get(&format!("/api/v1/partners/{}/keys", acme["id"].as_str().unwrap()))).await;
    let key_id = keys["items"][0]["id"].as_str().unwrap();
    let (status, _) =
        app.send(app.delete(&format!("/api/v1/partners/{}/keys/{key_id}", acme["id"].as_str().unwrap()))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.send(as_partner(&app, &acme_key, reqwest::Method::GET, "/partner/v1/leads")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_reconfirmed_lead_counts_only_once_the_person_confirms_and_twice_sent_is_one_contact() {
    let app = spawn_app().await;
    let list = app.create_list("Partner leads").await;
    let acme = create_partner(&app, "Acme", json!({"inbound_policy": "reconfirm", "inbound_lists": [list]})).await;
    let key = partner_key(&app, &acme).await;

    let send = |body: Value| {
        let request = as_partner(&app, &key, reqwest::Method::POST, "/partner/v1/leads").json(&body);
        app.send(request)
    };
    let (status, first) = send(lead("acme-1", "ada@example.org")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "pending_confirmation");
    let (status, again) = send(lead("acme-1", "ada@example.org")).await;
    assert_eq!(status, StatusCode::OK, "the same lead again changes nothing: {again}");
    assert_eq!(again["id"], first["id"]);

    let contact = app.contact_by_email("ada@example.org").await.unwrap();
    assert_eq!(contact["lists"], json!([]), "nothing counts before the confirmation");
    let (_, all) = app.send(app.get("/api/v1/contacts?email=ada@example.org")).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 1);

    let mail = &app.mail.wait_for("ada@example.org", 1).await[0];
    let text = mail.text();
    assert!(
        text.contains("Acme SAS") && text.contains("2026-11-29"),
        "the mail says where the address came from: {text}"
    );
    let link = mail.link(&format!("{}/confirm/", app.address));
    let response = app.client.post(&link).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let contact = app.contact_by_email("ada@example.org").await.unwrap();
    assert_eq!(contact["lists"], json!([list]));
    assert_eq!(contact["attributes"]["first_name"], "Ada");
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    let events = consents["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{consents}");
    assert_eq!(
        (events[0]["basis"].as_str(), events[0]["requires_confirmation"].as_bool()),
        (Some("partner"), Some(true))
    );
    assert_eq!(events[0]["actor"], format!("partner:{}", acme["id"].as_str().unwrap()));
    assert_eq!(events[0]["proof"]["partner_lead_id"], "acme-1");
    assert_eq!(events[0]["proof"]["partners_shown"], json!(["consento", "Globex"]));
    assert_eq!(events[0]["source_url"], "https://acme.example/contest");
    assert_eq!(events[1]["action"], "confirmed");
    let (_, lead) = app
        .send(as_partner(
            &app,
            &key,
            reqwest::Method::GET,
            &format!("/partner/v1/leads/{}", first["id"].as_str().unwrap()),
        ))
        .await;
    assert_eq!(lead["status"], "accepted");
    let (_, report) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(report["valid"], true);
}

#[tokio::test]
async fn a_lead_is_checked_field_by_field_and_a_suppressed_address_stays_suppressed() {
    let app = spawn_app().await;
    let list = app.create_list("Partner leads").await;
    let acme = create_partner(&app, "Acme", json!({"inbound_policy": "accept", "inbound_lists": [list]})).await;
    let key = partner_key(&app, &acme).await;
    let post = |body: Value| app.send(as_partner(&app, &key, reqwest::Method::POST, "/partner/v1/leads").json(&body));

    let mut bad = lead("", "not an address");
    bad["consent"]["collected_at"] = json!("yesterday");
    bad["consent"]["text"] = json!("");
    let (status, problem) = post(bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(fields_at_fault(&problem), ["lead_id", "email", "consent.text", "consent.collected_at"]);

    // Accepted at once on the partner basis.
    let (status, accepted) = post(lead("acme-7", "grace@example.org")).await;
    assert_eq!((status, accepted["status"].as_str()), (StatusCode::CREATED, Some("accepted")));
    assert_eq!(app.contact_by_email("grace@example.org").await.unwrap()["lists"], json!([list]));

    // Someone who left everything is not brought back by a partner.
    let gone = app.create_contact(json!({"email": "left@example.org"})).await;
    let id = gone["id"].as_str().unwrap();
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{id}/links"))).await;
    let response = app.client.post(links["unsubscribe_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, declined) = post(lead("acme-8", "LEFT@example.org")).await;
    assert_eq!((status, declined["status"].as_str()), (StatusCode::CREATED, Some("declined")), "{declined}");
    let contact = app.contact_by_email("left@example.org").await.unwrap();
    assert_eq!(contact["status"], "unsubscribed");
    assert_eq!(contact["lists"], json!([]));
    assert!(app.consents_of(id).await["events"].as_array().unwrap().iter().all(|e| e["basis"] != "partner"));
}

#[tokio::test]
async fn the_accept_lead_hook_can_refuse_a_lead_with_its_reason() {
    let app = spawn_app().await;
    let source =
        r#"fn accept_lead(lead, partner) { if lead.country != "FR" { throw "we take leads from France only"; } lead }"#;
    let (status, plugin) =
        app.send(app.post("/api/v1/plugins", &json!({"name": "france-only", "source": source}))).await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let acme = create_partner(&app, "Acme", json!({"inbound_policy": "accept", "plugin": "france-only"})).await;
    let key = partner_key(&app, &acme).await;
    let mut body = lead("acme-9", "hans@example.org");
    body["country"] = json!("DE");
    let (status, problem) =
        app.send(as_partner(&app, &key, reqwest::Method::POST, "/partner/v1/leads").json(&body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "lead");
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("France only"), "{problem}");
    assert!(app.contact_by_email("hans@example.org").await.is_none());
}

#[tokio::test]
async fn unsubscribing_relays_lead_withdrawn_to_the_partner_that_received_the_lead() {
    let app = spawn_app_with(|s| s.webhook_backoff_ms = 50).await;
    let (acme_hook, globex_hook) = (Receiver::start(0), Receiver::start(0));
    let acme = create_partner(&app, "Acme", json!({"webhook_url": acme_hook.url})).await;
    let globex = create_partner(&app, "Globex", json!({"webhook_url": globex_hook.url})).await;
    let (_, list) = app.form_on_new_list("relay", "single", json!({"partners": [acme["id"], globex["id"]]})).await;
    app.submit_form(
        "relay",
        &[("email", "mo@example.org"), ("consent", &list), ("partner", acme["id"].as_str().unwrap())],
    )
    .await;
    let shared = acme_hook.wait_for_accepted(1).await;
    assert_eq!(shared[0].json()["type"], "lead.shared");
    let lead_id = shared[0].json()["data"]["lead_id"].as_str().unwrap().to_owned();

    let contact = app.contact_by_email("mo@example.org").await.unwrap();
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{}/links", contact["id"].as_str().unwrap()))).await;
    let response = app.client.post(links["unsubscribe_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let received = acme_hook.wait_for_accepted(2).await;
    let withdrawn = received[1].json();
    assert_eq!(withdrawn["type"], "lead.withdrawn");
    assert_eq!(withdrawn["data"]["lead_id"], lead_id);
    assert!(received[1].signature_verifies(acme["webhook_secret"].as_str().unwrap()));
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(globex_hook.requests().is_empty(), "the partner not chosen hears nothing");

    // The pull API tells the same story.
    let key = partner_key(&app, &acme).await;
    let (_, leads) = app.send(as_partner(&app, &key, reqwest::Method::GET, "/partner/v1/leads")).await;
    assert_eq!(leads["items"][0]["status"], "withdrawn");
    let (_, events) = app.send(as_partner(&app, &key, reqwest::Method::GET, "/partner/v1/events")).await;
    let types: Vec<&str> = events["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["lead.shared", "lead.withdrawn"]);
    // Every attempt is logged with the lead.
    let (_, deliveries) = app.send(app.get(&format!("/api/v1/deliveries?lead_id={lead_id}"))).await;
    let items = deliveries["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(
        items.iter().all(|d| d["status"] == "delivered" && d["attempt_log"][0]["status_code"] == 200),
        "{deliveries}"
    );
}

#[tokio::test]
async fn partners_are_validated_and_one_that_received_leads_is_kept() {
    let app = spawn_app().await;
    let body = json!({
        "name": "", "legal_name": "X", "description": "d", "privacy_policy_url": "ftp://x",
        "webhook_url": "not a url", "inbound_policy": "sometimes", "inbound_lists": ["nope"],
    });
    let (status, problem) = app.send(app.post("/api/v1/partners", &body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        fields_at_fault(&problem),
        ["name", "privacy_policy_url", "webhook_url", "inbound_policy", "inbound_lists[0]"]
    );
    let editor = app.user_token("editor").await;
    let response = app.client.get(app.url("/api/v1/partners")).bearer_auth(editor).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN, "partners are for admins");

    let list = app.create_list("Leads").await;
    let acme = create_partner(&app, "Acme", json!({"inbound_policy": "accept", "inbound_lists": [list]})).await;
    let key = partner_key(&app, &acme).await;
    app.send(as_partner(&app, &key, reqwest::Method::POST, "/partner/v1/leads").json(&lead("a-1", "x@example.org")))
        .await;
    let (status, _) = app.send(app.delete(&format!("/api/v1/partners/{}", acme["id"].as_str().unwrap()))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let unused = create_partner(&app, "Unused", json!({})).await;
    let (status, _) = app.send(app.delete(&format!("/api/v1/partners/{}", unused["id"].as_str().unwrap()))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn erasure_tells_the_partner_without_repeating_the_address_and_withdrawing_one_partner_tells_only_it() {
    let app = spawn_app_with(|s| s.webhook_backoff_ms = 50).await;
    let (acme_hook, globex_hook) = (Receiver::start(0), Receiver::start(0));
    let acme = create_partner(&app, "Acme", json!({"webhook_url": acme_hook.url})).await;
    let globex = create_partner(&app, "Globex", json!({"webhook_url": globex_hook.url})).await;
    let (acme_id, globex_id) = (acme["id"].as_str().unwrap(), globex["id"].as_str().unwrap());
    let (_, list) = app.form_on_new_list("both", "single", json!({"partners": [acme_id, globex_id]})).await;
    app.submit_form(
        "both",
        &[("email", "al@example.org"), ("consent", &list), ("partner", acme_id), ("partner", globex_id)],
    )
    .await;
    acme_hook.wait_for_accepted(1).await;
    globex_hook.wait_for_accepted(1).await;
    let contact = app.contact_by_email("al@example.org").await.unwrap();
    let id = contact["id"].as_str().unwrap();

    let body = json!({"purpose": format!("partner:{globex_id}"), "method": "phone call"});
    let (status, _) = app.send(app.post(&format!("/api/v1/contacts/{id}/consents/withdraw"), &body)).await;
    assert_eq!(status, StatusCode::OK);
    let globex_events = globex_hook.wait_for_accepted(2).await;
    assert_eq!(globex_events[1].json()["type"], "lead.withdrawn");
    assert_eq!(globex_events[1].json()["data"]["reason"], "consent_withdrawn");

    let (status, _) = app.send(app.delete(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let acme_events = acme_hook.wait_for_accepted(2).await;
    let erased = acme_events[1].json();
    assert_eq!((erased["type"].as_str(), erased["data"]["reason"].as_str()), (Some("lead.withdrawn"), Some("erased")));
    assert_eq!(erased["data"]["lead_id"], acme_events[0].json()["data"]["lead_id"]);
    assert!(!String::from_utf8_lossy(&acme_events[1].body).contains("al@example.org"), "{erased}");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(globex_hook.requests().len(), 2, "Globex had been told already");
    // What is kept about the deliveries no longer holds the address either.
    let (_, deliveries) = app.send(app.get("/api/v1/deliveries")).await;
    assert!(!deliveries.to_string().contains("al@example.org"), "{deliveries}");
}
