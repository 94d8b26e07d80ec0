//! The ledger after signup: one-click unsubscribe, the preference centre, erasure and
//! export, the hash chain's check, the integrator's consent API, purging.

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, fields_at_fault, spawn_app};

/// A contact subscribed through a single opt-in form; answers (contact id, list id).
async fn subscribed(app: &TestApp, email: &str) -> (String, String) {
    let slug = format!("f{}", uuid::Uuid::new_v4().simple());
    let (_, list) = app.form_on_new_list(&slug, "single", json!({})).await;
    let response = app.submit_form(&slug, &[("email", email), ("consent", &list)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let contact = app.contact_by_email(email).await.unwrap();
    (contact["id"].as_str().unwrap().to_owned(), list)
}

async fn links(app: &TestApp, contact_id: &str) -> Value {
    let (status, links) = app.send(app.get(&format!("/api/v1/contacts/{contact_id}/links"))).await;
    assert_eq!(status, StatusCode::OK);
    links
}

#[tokio::test]
async fn one_click_unsubscribe_takes_effect_within_the_request_and_only_once() {
    let app = spawn_app().await;
    let (id, list) = subscribed(&app, "leaver@example.org").await;
    let url = links(&app, &id).await["unsubscribe_url"].as_str().unwrap().to_owned();

    // A GET (a link scanner) shows a page and changes nothing.
    let page = app.client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(app.consents_of(&id).await["current"][0]["status"], "active");

    // RFC 8058: what a mailbox provider sends, no cookies, no auth.
    let response = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "answered without a redirect");
    let consents = app.consents_of(&id).await;
    assert_eq!(consents["current"][0]["status"], "withdrawn");
    let events = consents["events"].as_array().unwrap().len();
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(contact["status"], "unsubscribed");
    assert_eq!(contact["lists"], json!([]));
    assert_eq!(consents["events"][events - 1]["method"], "unsubscribe");

    let again = app
        .client
        .post(&url)
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body("--XyZ\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--XyZ--\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        app.consents_of(&id).await["events"].as_array().unwrap().len(),
        events,
        "the second POST changes nothing"
    );

    // Suppressed: the API cannot put the address back on a list…
    let response = app.patch(&format!("/api/v1/contacts/{id}"), &json!({"lists": [list]})).send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
    // …and a new signup, even on a single opt-in form, waits for a confirmed double opt-in
    // (the page answers as for any address, so it does not tell who left).
    let (_, other_list) = app.form_on_new_list("comeback", "single", json!({})).await;
    let response = app.submit_form("comeback", &[("email", "leaver@example.org"), ("consent", &other_list)]).await;
    assert!(response.text().await.unwrap().contains("You are subscribed"));
    let consents = app.consents_of(&id).await;
    let comeback =
        consents["current"].as_array().unwrap().iter().find(|c| c["purpose"] == format!("list:{other_list}"));
    assert_eq!(comeback.unwrap()["status"], "pending");
    let mail = &app.mail.wait_for("leaver@example.org", 1).await[0];
    let confirm = mail.link(&format!("{}/confirm/", app.address));
    app.client.post(&confirm).send().await.unwrap();
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(contact["status"], "active");
    assert_eq!(contact["lists"], json!([other_list]));
}

#[tokio::test]
async fn an_unsubscribe_link_for_an_erased_contact_answers_like_any_other() {
    let app = spawn_app().await;
    let (id, _) = subscribed(&app, "gone@example.org").await;
    let url = links(&app, &id).await["unsubscribe_url"].as_str().unwrap().to_owned();
    let (status, _) = app.send(app.delete(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let response = app.client.post(&url).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let forged = app.client.post(format!("{url}x")).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_preference_centre_changes_lists_exports_and_erases() {
    let app = spawn_app().await;
    let (id, list) = subscribed(&app, "prefs@example.org").await;
    let url = links(&app, &id).await["preferences_url"].as_str().unwrap().to_owned();
    let page = app.client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("prefs@example.org") && page.contains(&format!("value=\"{list}\" checked")), "{page}");

    // Untick the list.
    let response = app.client.post(&url).form(&[("action", "save")]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.consents_of(&id).await["current"][0]["status"], "withdrawn");
    // Tick it again: the link came to the person's mailbox, so it counts as confirmed.
    app.client.post(&url).form(&[("action", "save"), ("list", &list)]).send().await.unwrap();
    let consents = app.consents_of(&id).await;
    assert_eq!(consents["current"][0]["status"], "active");
    assert_eq!(consents["current"][0]["basis"], "double_opt_in");

    let download = app.client.post(&url).form(&[("action", "download")]).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert!(download.headers()["content-disposition"].to_str().unwrap().contains("attachment"));
    let data: Value = download.json().await.unwrap();
    assert_eq!(data["contact"]["email"], "prefs@example.org");
    assert_eq!(data["consents"]["events"].as_array().unwrap().len(), 3);

    let erased = app.client.post(&url).form(&[("action", "erase")]).send().await.unwrap();
    assert_eq!(erased.status(), StatusCode::OK);
    assert!(app.contact_by_email("prefs@example.org").await.is_none());
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn after_erasure_the_export_holds_nothing_personal_and_the_chain_still_verifies() {
    let app = spawn_app().await;
    let (id, _) = subscribed(&app, "Erase.Me@Example.org").await;
    let (_, export) = app.send(app.get(&format!("/api/v1/contacts/{id}/export"))).await;
    assert_eq!(export["contact"]["email"], "Erase.Me@example.org");
    assert_eq!(export["consents"]["events"][0]["ip"], "127.0.0.1");

    let (status, _) = app.send(app.delete(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, export) = app.send(app.get(&format!("/api/v1/contacts/{id}/export"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(export["erased"], true);
    assert!(export["contact"].is_null());
    let text = export.to_string().to_lowercase();
    for personal in ["erase.me", "example.org", "127.0.0.1", "testbrowser", "www.example.org"] {
        assert!(!text.contains(personal), "{personal} is still in {export}");
    }
    let event = &export["consents"]["events"][0];
    assert_eq!(event["redacted"], true);
    assert!(event["consent_text"].is_string(), "the wording agreed to is not personal and stays");

    let report = app.ledger_sequenced().await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["events_checked"], 1);

    // A new signup of the same address needs a fresh, confirmed double opt-in (the page
    // answers as for any address, so it does not tell that this one was erased).
    let (_, list) = app.form_on_new_list("again", "single", json!({})).await;
    let response = app.submit_form("again", &[("email", "erase.me@example.org"), ("consent", &list)]).await;
    assert!(response.text().await.unwrap().contains("You are subscribed"));
    let contact = app.contact_by_email("erase.me@example.org").await.unwrap();
    assert_eq!(app.consents_of(contact["id"].as_str().unwrap()).await["current"][0]["status"], "pending");
    app.mail.wait_for("erase.me@example.org", 1).await;
}

#[tokio::test]
async fn changing_one_ledger_row_is_detected_and_named() {
    let app = spawn_app().await;
    subscribed(&app, "one@example.org").await;
    let (id, _) = subscribed(&app, "two@example.org").await;
    subscribed(&app, "three@example.org").await;
    let report = app.ledger_sequenced().await;
    assert_eq!(report["valid"], true);
    assert_eq!(report["events_checked"], 3);

    // Someone with database access turns a passive opt-in into a single one, say.
    let tampered: String = app
        .state
        .db
        .write(move |conn| {
            use consento::storage::schema::consent_events;
            let event: String = consent_events::table
                .filter(consent_events::contact_id.eq(&id))
                .select(consent_events::id)
                .first(conn)?;
            diesel::update(consent_events::table.find(&event))
                .set(consent_events::basis.eq("double_opt_in"))
                .execute(conn)?;
            Ok(event)
        })
        .await
        .unwrap();
    let (_, report) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_mismatch"]["event_id"], tampered.as_str());
    assert_eq!(report["first_mismatch"]["leaf_index"], 1);
    assert_eq!(report["events_checked"], 1);

    // The command line says the same, and fails.
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_consento"));
    command.args(["consent", "verify"]).env("CONSENTO_DATA_DIR", &app.database.data_dir).env("CONSENTO_LOG", "off");
    if let Some(url) = app.database.url() {
        command.env("CONSENTO_DATABASE_URL", url);
    }
    let output = command.output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&tampered) && stderr.contains("leaf 1"), "{stderr}");
}

#[tokio::test]
async fn an_integrator_records_consent_with_evidence_and_withdraws_it() {
    let app = spawn_app().await;
    let list = app.create_list("Shop news").await;
    let contact = app.create_contact(json!({"email": "buyer@example.org"})).await;
    let id = contact["id"].as_str().unwrap();
    let path = format!("/api/v1/contacts/{id}/consents");

    let response = app
        .post(&path, &json!({"purpose": "list:nope", "basis": "maybe", "evidence": {"method": "", "consent_text": ""}}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["purpose", "basis", "evidence.method", "evidence.consent_text"]);

    let (status, event) = app
        .send(app.post(
            &path,
            &json!({
                "purpose": format!("list:{list}"),
                "basis": "soft_opt_in",
                "evidence": {"method": "checkout checkbox", "consent_text": "Keep me posted about similar products", "ip": "203.0.113.9"}
            }),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    assert_eq!(event["basis"], "soft_opt_in");
    assert!(event["actor"].as_str().unwrap().starts_with("user:"));
    assert_eq!(event["ip"], "203.0.113.9");
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(contact["lists"], json!([list]));

    let (status, consents) = app
        .send(
            app.post(&format!("{path}/withdraw"), &json!({"purpose": format!("list:{list}"), "method": "phone call"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(consents["current"][0]["status"], "withdrawn");
    assert_eq!(consents["events"][1]["method"], "phone call");
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(contact["lists"], json!([]));
}

#[tokio::test]
async fn signups_never_confirmed_are_purged_with_their_ip_addresses() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("slow", "double", json!({})).await;
    app.submit_form("slow", &[("email", "never@example.org"), ("consent", &list)]).await;
    let contact = app.contact_by_email("never@example.org").await.unwrap();
    let id = contact["id"].as_str().unwrap().to_owned();

    assert_eq!(consento::services::signup::purge_unconfirmed(&app.state.db, 30).await.unwrap(), 0);
    app.state
        .db
        .write(|conn| {
            use consento::storage::schema::confirmations;
            let long_ago = chrono::Utc::now().naive_utc() - chrono::TimeDelta::days(31);
            diesel::update(confirmations::table).set(confirmations::created_at.eq(long_ago)).execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(consento::services::signup::purge_unconfirmed(&app.state.db, 30).await.unwrap(), 1);
    assert!(app.contact_by_email("never@example.org").await.is_none());
    let (_, export) = app.send(app.get(&format!("/api/v1/contacts/{id}/export"))).await;
    assert_eq!(export["consents"]["events"][0]["ip"], Value::Null);
    assert_eq!(export["consents"]["events"][0]["redacted"], true);
    let (_, report) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(report["valid"], true);
}

#[tokio::test]
async fn a_form_change_is_a_new_version_and_events_name_the_one_seen() {
    let app = spawn_app().await;
    let (form, list) = app.form_on_new_list("versioned", "single", json!({})).await;
    let id = form["id"].as_str().unwrap();
    assert_eq!(form["version"], 1);
    assert_eq!(form["hosted_url"], format!("{}/f/versioned", app.address));

    let (status, changed) = app
        .send(
            app.patch(&format!("/api/v1/forms/{id}"), &json!({"consents": [{"list_id": list, "text": "New wording"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["version"], 2);
    assert_eq!(changed["title"], "Our newsletter");
    let (_, versions) = app.send(app.get(&format!("/api/v1/forms/{id}/versions"))).await;
    let texts: Vec<&str> =
        versions["items"].as_array().unwrap().iter().map(|v| v["consents"][0]["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["Send me the newsletter. I can unsubscribe at any time.", "New wording"]);

    app.submit_form("versioned", &[("email", "v2@example.org"), ("consent", &list)]).await;
    let contact = app.contact_by_email("v2@example.org").await.unwrap();
    let event = &app.consents_of(contact["id"].as_str().unwrap()).await["events"][0];
    assert_eq!(event["form_version"], 2);
    assert_eq!(event["consent_text"], "New wording");

    let response = app.delete(&format!("/api/v1/forms/{id}")).send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
    let (unused, _) = app.form_on_new_list("unused", "double", json!({})).await;
    let (status, _) = app.send(app.delete(&format!("/api/v1/forms/{}", unused["id"].as_str().unwrap()))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_form_definition_is_checked_whole() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/v1/forms",
            &json!({
                "slug": "Bad Slug",
                "name": "x",
                "title": "t",
                "opt_in": "maybe",
                "fields": [{"name": "email", "label": "E", "type": "text"}, {"name": "c", "label": "C", "type": "colour"}],
                "consents": [{"list_id": uuid::Uuid::now_v7().to_string(), "text": "t"}],
                "redirect_url": "javascript:alert(1)",
                "confirmation_text": "no link here {{ oops"
            }),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    let fields = fields_at_fault(&problem);
    for field in ["slug", "opt_in", "fields[1].type", "fields[0].name", "redirect_url"] {
        assert!(fields.contains(&field.to_owned()), "{field} not named in {problem}");
    }
}
