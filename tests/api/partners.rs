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

/// The statuses of the leads a partner sent, as admins see them, oldest first.
async fn inbound_statuses(app: &TestApp, partner: &Value) -> Vec<String> {
    let path = format!("/api/v1/partners/{}/leads?direction=inbound", partner["id"].as_str().unwrap());
    let (status, leads) = app.send(app.get(&path)).await;
    assert_eq!(status, StatusCode::OK, "{leads}");
    leads["items"].as_array().unwrap().iter().map(|l| l["status"].as_str().unwrap().to_owned()).collect()
}

/// The outbound leads of a partner, as admins see them, oldest first.
async fn outbound_leads(app: &TestApp, partner: &Value) -> Vec<Value> {
    let path = format!("/api/v1/partners/{}/leads", partner["id"].as_str().unwrap());
    let (status, leads) = app.send(app.get(&path)).await;
    assert_eq!(status, StatusCode::OK, "{leads}");
    leads["items"].as_array().unwrap().clone()
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
    assert_eq!(first["status"], "received", "the partner learns only that the lead arrived");
    assert_eq!(inbound_statuses(&app, &acme).await, ["pending_confirmation"]);
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
    assert_eq!(lead["status"], "received", "nor whether the person confirmed");
    assert_eq!(inbound_statuses(&app, &acme).await, ["accepted"]);
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
    assert_eq!((status, accepted["status"].as_str()), (StatusCode::CREATED, Some("received")));
    assert_eq!(inbound_statuses(&app, &acme).await, ["accepted"]);
    assert_eq!(app.contact_by_email("grace@example.org").await.unwrap()["lists"], json!([list]));

    // Someone who left everything is not brought back by a partner.
    let gone = app.create_contact(json!({"email": "left@example.org"})).await;
    let id = gone["id"].as_str().unwrap();
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{id}/links"))).await;
    let response = app.client.post(links["unsubscribe_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, declined) = post(lead("acme-8", "LEFT@example.org")).await;
    assert_eq!((status, declined["status"].as_str()), (StatusCode::CREATED, Some("received")), "{declined}");
    assert_eq!(inbound_statuses(&app, &acme).await, ["accepted", "declined"]);
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
    assert_eq!(withdrawn["data"]["reason"], "unsubscribed", "the documented reason, not consent_withdrawn");
    assert!(received[1].signature_verifies(acme["webhook_secret"].as_str().unwrap()));
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(globex_hook.requests().is_empty(), "the partner not chosen hears nothing");
    assert_eq!(acme_hook.requests().len(), 2, "the partner hears it once");

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

#[tokio::test]
async fn a_partner_receives_the_list_of_partners_the_person_was_shown_beside_it() {
    let app = spawn_app_with(|s| s.webhook_backoff_ms = 50).await;
    let acme_hook = Receiver::start(0);
    let acme = create_partner(&app, "Acme", json!({"webhook_url": acme_hook.url})).await;
    let globex = create_partner(&app, "Globex", json!({})).await;
    let (acme_id, globex_id) = (acme["id"].as_str().unwrap(), globex["id"].as_str().unwrap());
    let (_, list) = app.form_on_new_list("shown", "single", json!({"partners": [acme_id, globex_id]})).await;
    app.submit_form("shown", &[("email", "ines@example.org"), ("consent", &list), ("partner", acme_id)]).await;

    let shared = acme_hook.wait_for_accepted(1).await;
    let consent = &shared[0].json()["data"]["lead"]["consent"];
    let shown = consent["partners_shown"].as_array().unwrap_or_else(|| panic!("no partners_shown: {consent}"));
    let names: Vec<(&str, &str)> =
        shown.iter().map(|p| (p["name"].as_str().unwrap(), p["legal_name"].as_str().unwrap())).collect();
    assert_eq!(names, [("Acme", "Acme SAS"), ("Globex", "Globex SAS")]);
    assert_eq!(shown[1]["privacy_policy_url"], "https://globex.example/privacy");
    // The same in the pull API.
    let key = partner_key(&app, &acme).await;
    let (_, leads) = app.send(as_partner(&app, &key, reqwest::Method::GET, "/partner/v1/leads")).await;
    assert_eq!(&leads["items"][0]["payload"]["consent"]["partners_shown"], &Value::Array(shown.clone()));

    // A partner's own `share` hook gets it in `lead.consent` too.
    let source = r#"fn share(lead, partner) { #{ email: lead.email, shown: lead.consent.partners_shown.len() } }"#;
    let (status, plugin) =
        app.send(app.post("/api/v1/plugins", &json!({"name": "count-shown", "source": source}))).await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let initech = create_partner(&app, "Initech", json!({"plugin": "count-shown"})).await;
    let initech_id = initech["id"].as_str().unwrap();
    let (_, list) =
        app.form_on_new_list("three", "single", json!({"partners": [acme_id, globex_id, initech_id]})).await;
    app.submit_form("three", &[("email", "joe@example.org"), ("consent", &list), ("partner", initech_id)]).await;
    let leads = outbound_leads(&app, &initech).await;
    assert_eq!(leads[0]["payload"], json!({"email": "joe@example.org", "shown": 3}));
}

#[tokio::test]
async fn leaving_everything_in_the_preference_centre_tells_each_partner_unsubscribed_once() {
    let app = spawn_app_with(|s| s.webhook_backoff_ms = 50).await;
    let (acme_hook, globex_hook) = (Receiver::start(0), Receiver::start(0));
    let acme = create_partner(&app, "Acme", json!({"webhook_url": acme_hook.url})).await;
    let globex = create_partner(&app, "Globex", json!({"webhook_url": globex_hook.url})).await;
    let (acme_id, globex_id) = (acme["id"].as_str().unwrap(), globex["id"].as_str().unwrap());
    let (_, list) = app.form_on_new_list("leave", "single", json!({"partners": [acme_id, globex_id]})).await;
    app.submit_form(
        "leave",
        &[("email", "kai@example.org"), ("consent", &list), ("partner", acme_id), ("partner", globex_id)],
    )
    .await;
    acme_hook.wait_for_accepted(1).await;
    globex_hook.wait_for_accepted(1).await;
    let contact = app.contact_by_email("kai@example.org").await.unwrap();
    let id = contact["id"].as_str().unwrap();
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{id}/links"))).await;
    let response = app
        .client
        .post(links["preferences_url"].as_str().unwrap())
        .form(&[("action", "leave_all")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    for hook in [&acme_hook, &globex_hook] {
        let received = hook.wait_for_accepted(2).await;
        let told = received[1].json();
        assert_eq!(
            (told["type"].as_str(), told["data"]["reason"].as_str()),
            (Some("lead.withdrawn"), Some("unsubscribed"))
        );
    }
    // Erasing the person afterwards tells them nothing more: they were told already.
    let (status, _) = app.send(app.delete(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!((acme_hook.requests().len(), globex_hook.requests().len()), (2, 2), "each partner is told once");
}

#[tokio::test]
async fn a_leads_evidence_is_validated_and_each_faulty_field_named() {
    let app = spawn_app().await;
    let list = app.create_list("Partner leads").await;
    let acme = create_partner(&app, "Acme", json!({"inbound_policy": "accept", "inbound_lists": [list]})).await;
    let key = partner_key(&app, &acme).await;
    let post = |body: Value| app.send(as_partner(&app, &key, reqwest::Method::POST, "/partner/v1/leads").json(&body));

    let mut bad = lead("acme-20", "eve@example.org");
    bad["consent"]["ip"] = json!("999.1.1.1");
    bad["consent"]["collected_at"] = json!((chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339());
    bad["consent"]["source_url"] = json!("/contest");
    bad["consent"]["user_agent"] = json!("Mozilla\r\nX-Injected: 1");
    let (status, problem) = post(bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        fields_at_fault(&problem),
        ["consent.collected_at", "consent.ip", "consent.user_agent", "consent.source_url"]
    );
    assert!(problem.to_string().contains("must not be in the future"), "{problem}");
    assert!(app.contact_by_email("eve@example.org").await.is_none(), "nothing is recorded");

    for (field, value) in
        [("ip", "1.2.3"), ("source_url", "javascript:alert(1)"), ("source_url", "ftp://acme.example/")]
    {
        let mut bad = lead("acme-21", "eve@example.org");
        bad["consent"][field] = json!(value);
        let (status, problem) = post(bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{value}: {problem}");
        assert_eq!(fields_at_fault(&problem), [format!("consent.{field}")]);
    }

    // An IPv6 address is evidence too, kept in its canonical form.
    let mut good = lead("acme-22", "eve@example.org");
    good["consent"]["ip"] = json!("2001:DB8:0::7");
    let (status, _) = post(good).await;
    assert_eq!(status, StatusCode::CREATED);
    let contact = app.contact_by_email("eve@example.org").await.unwrap();
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    assert_eq!(consents["events"][0]["ip"], "2001:db8::7");
}

#[tokio::test]
async fn a_partner_gets_the_same_answer_for_a_new_a_subscribed_and_a_suppressed_address() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("direct", "single", json!({})).await;
    let acme = create_partner(&app, "Acme", json!({"inbound_policy": "reconfirm", "inbound_lists": [list]})).await;
    let key = partner_key(&app, &acme).await;
    let post = |body: Value| app.send(as_partner(&app, &key, reqwest::Method::POST, "/partner/v1/leads").json(&body));
    // Already subscribed to the list (through a form), and gone (unsubscribed from everything).
    app.submit_form("direct", &[("email", "sub@example.org"), ("consent", &list)]).await;
    assert_eq!(app.contact_by_email("sub@example.org").await.unwrap()["lists"], json!([list]));
    let gone = app.create_contact(json!({"email": "gone@example.org"})).await;
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{}/links", gone["id"].as_str().unwrap()))).await;
    app.client.post(links["unsubscribe_url"].as_str().unwrap()).send().await.unwrap();

    let mut answers = Vec::new();
    for (i, email) in ["new@example.org", "sub@example.org", "gone@example.org"].into_iter().enumerate() {
        let (status, body) = post(lead(&format!("probe-{i}"), email)).await;
        let path = format!("/partner/v1/leads/{}", body["id"].as_str().unwrap());
        let (_, later) = app.send(as_partner(&app, &key, reqwest::Method::GET, &path)).await;
        answers.push((status, body, later));
    }
    // What tells one answer from another is only what the partner sent itself.
    let strip = |mut body: Value| {
        for field in ["id", "partner_lead_id", "created_at", "updated_at"] {
            body.as_object_mut().unwrap().remove(field);
        }
        body["payload"].as_object_mut().unwrap().remove("partner_lead_id");
        body
    };
    for (status, body, later) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "received");
        assert_eq!(strip(body.clone()), strip(answers[0].1.clone()));
        assert_eq!(strip(later.clone()), strip(answers[0].1.clone()));
        assert_eq!(later["updated_at"], later["created_at"]);
    }
    // The admin sees what really became of each.
    assert_eq!(inbound_statuses(&app, &acme).await, ["pending_confirmation", "accepted", "declined"]);
    assert_eq!(app.mail.wait_for("new@example.org", 1).await.len(), 1);
}

/// A `share` hook that runs until the script deadline stops it.
const ENDLESS_SHARE: &str = "fn share(lead, partner) { let n = 0; loop { n += 1; } }";

#[tokio::test]
async fn a_slow_share_hook_holds_up_no_other_write_and_the_admin_sees_why_the_lead_was_withheld() {
    let app = spawn_app_with(|s| {
        s.script_deadline_ms = 1500;
        s.script_max_operations = u64::MAX;
    })
    .await;
    let (status, plugin) =
        app.send(app.post("/api/v1/plugins", &json!({"name": "endless", "source": ENDLESS_SHARE}))).await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let acme = create_partner(&app, "Acme", json!({"plugin": "endless"})).await;
    let acme_id = acme["id"].as_str().unwrap().to_owned();
    let (_, list) = app.form_on_new_list("slow", "single", json!({"partners": [acme_id]})).await;

    let (client, url) = (app.client.clone(), app.url("/f/slow"));
    let clock = std::time::Instant::now();
    let signup = tokio::spawn(async move {
        let fields = [("email", "lea@example.org"), ("consent", list.as_str()), ("partner", acme_id.as_str())];
        let response = client.post(url).form(&fields).send().await.unwrap();
        (response.status(), clock.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let other = std::time::Instant::now();
    app.create_list("Written while the hook runs").await;
    let (other_took, other_done) = (other.elapsed(), clock.elapsed());
    let (status, signup_took) = signup.await.unwrap();
    assert_eq!(status, StatusCode::OK, "the signup stands");
    assert!(signup_took >= std::time::Duration::from_millis(1400), "the hook ran to its deadline: {signup_took:?}");
    assert!(other_done < signup_took, "the other write ended while the hook ran");
    assert!(other_took < std::time::Duration::from_millis(700), "the other write waited {other_took:?}");

    let leads = outbound_leads(&app, &acme).await;
    assert_eq!(leads.len(), 1, "{leads:?}");
    assert_eq!(leads[0]["status"], "withheld");
    assert!(leads[0]["payload"]["reason"].as_str().unwrap().contains("took longer"), "{leads:?}");
    let key = partner_key(&app, &acme).await;
    let (_, theirs) = app.send(as_partner(&app, &key, reqwest::Method::GET, "/partner/v1/leads")).await;
    assert_eq!(theirs["items"], json!([]), "the partner sees nothing of it");
}

#[tokio::test]
async fn a_slow_accept_lead_hook_holds_up_no_other_write() {
    let app = spawn_app_with(|s| {
        s.script_deadline_ms = 1500;
        s.script_max_operations = u64::MAX;
    })
    .await;
    let source = "fn accept_lead(lead, partner) { let n = 0; loop { n += 1; } }";
    let (status, plugin) = app.send(app.post("/api/v1/plugins", &json!({"name": "endless", "source": source}))).await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let acme = create_partner(&app, "Acme", json!({"plugin": "endless"})).await;
    let key = partner_key(&app, &acme).await;

    let request =
        as_partner(&app, &key, reqwest::Method::POST, "/partner/v1/leads").json(&lead("slow-1", "ola@example.org"));
    let clock = std::time::Instant::now();
    let sent = tokio::spawn(async move {
        let response = request.send().await.unwrap();
        (response.status(), clock.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let other = std::time::Instant::now();
    app.create_list("Written while the hook runs").await;
    let (other_took, other_done) = (other.elapsed(), clock.elapsed());
    let (status, sent_took) = sent.await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "the script was stopped");
    assert!(other_done < sent_took, "the other write ended while the hook ran ({other_done:?}, {sent_took:?})");
    assert!(other_took < std::time::Duration::from_millis(700), "the other write waited {other_took:?}");
    assert!(app.contact_by_email("ola@example.org").await.is_none());
}

#[tokio::test]
async fn a_lead_left_queued_by_a_crash_is_shared_by_the_worker_and_only_once() {
    use consento::storage::schema::partner_leads;
    use diesel::prelude::*;

    let app = spawn_app_with(|s| s.webhook_backoff_ms = 50).await;
    let hook = Receiver::start(0);
    // At first the partner's hook withholds every lead.
    let (status, plugin) = app
        .send(app.post("/api/v1/plugins", &json!({"name": "gate", "source": "fn share(lead, partner) { () }"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let acme = create_partner(&app, "Acme", json!({"webhook_url": hook.url, "plugin": "gate"})).await;
    let acme_id = acme["id"].as_str().unwrap().to_owned();
    let (_, list) = app.form_on_new_list("crash", "single", json!({"partners": [acme_id]})).await;
    app.submit_form("crash", &[("email", "max@example.org"), ("consent", &list), ("partner", &acme_id)]).await;
    assert_eq!(outbound_leads(&app, &acme).await[0]["status"], "withheld");
    let source = json!({"source": "fn share(lead, partner) { #{ email: lead.email } }"});
    let (status, _) = app.send(app.admin(app.client.put(app.url("/api/v1/plugins/gate"))).json(&source)).await;
    assert_eq!(status, StatusCode::OK);

    // A confirming transaction queued the lead and committed; the request then died
    // before running the hook. Its lease is over.
    let contact_id = app.contact_by_email("max@example.org").await.unwrap()["id"].as_str().unwrap().parse().unwrap();
    let partner_id = acme_id.parse().unwrap();
    let claim = app
        .state
        .db
        .write(move |conn| {
            let claim = consento::services::partners::queue_share_in(conn, contact_id, partner_id)?;
            let past = consento::storage::now() - chrono::TimeDelta::minutes(5);
            diesel::update(partner_leads::table.filter(partner_leads::status.eq("queued")))
                .set(partner_leads::lease_until.eq(Some(past)))
                .execute(conn)?;
            Ok(claim)
        })
        .await
        .unwrap()
        .expect("a lead is queued");
    let key = partner_key(&app, &acme).await;
    let received = hook.wait_for_accepted(1).await;
    assert_eq!(received[0].json()["type"], "lead.shared");
    assert_eq!(received[0].json()["data"]["lead"], json!({"email": "max@example.org"}));

    // The request that held the lead comes back late: it records nothing.
    consento::services::partners::share_claimed(&app.state.db, &app.state.scripts, vec![claim]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(hook.requests().len(), 1, "shared once");
    let statuses: Vec<Value> = outbound_leads(&app, &acme).await.iter().map(|l| l["status"].clone()).collect();
    assert_eq!(statuses, [json!("withheld"), json!("shared")]);
    let (_, theirs) = app.send(as_partner(&app, &key, reqwest::Method::GET, "/partner/v1/leads")).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 1, "{theirs}");
}
