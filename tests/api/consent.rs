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
async fn a_persons_links_are_for_editors_and_a_viewer_is_refused_them() {
    let app = spawn_app().await;
    let (id, _) = subscribed(&app, "linked@example.org").await;
    let viewer = app.user_token("viewer").await;
    let path = format!("/api/v1/contacts/{id}/links");
    let response = app.client.get(app.url(&path)).bearer_auth(&viewer).send().await.unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.client.post(app.url(&format!("{path}/revoke"))).bearer_auth(&viewer).send().await.unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    let editor = app.user_token("editor").await;
    let (status, links) = app.send(app.client.get(app.url(&path)).bearer_auth(&editor)).await;
    assert_eq!(status, StatusCode::OK, "{links}");
    let expires: chrono::DateTime<chrono::Utc> = links["preferences_expires_at"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((89.9..=90.1).contains(&days), "a preference link lives 90 days by default, not {days}");
}

#[tokio::test]
async fn a_revoked_preference_link_opens_nothing_and_a_fresh_one_does() {
    let app = spawn_app().await;
    let (id, list) = subscribed(&app, "revoked@example.org").await;
    let old = links(&app, &id).await["preferences_url"].as_str().unwrap().to_owned();
    assert_eq!(app.client.get(&old).send().await.unwrap().status(), StatusCode::OK);

    let (status, _) = app.send(app.post(&format!("/api/v1/contacts/{id}/links/revoke"), &json!({}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.client.get(&old).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let response = app.client.post(&old).form(&[("action", "leave_all")]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = app.client.post(&old).form(&[("action", "save")]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!((contact["status"].as_str(), &contact["lists"]), (Some("active"), &json!([list])), "nothing changed");

    let fresh = links(&app, &id).await["preferences_url"].as_str().unwrap().to_owned();
    assert_ne!(fresh, old);
    assert_eq!(app.client.get(&fresh).send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_preference_link_expires_after_the_configured_days() {
    let app = crate::helpers::spawn_app_with(|settings| settings.preference_link_days = 0).await;
    let (id, _) = subscribed(&app, "expired@example.org").await;
    let url = links(&app, &id).await["preferences_url"].as_str().unwrap().to_owned();
    // A link of 0 days dies with the second it was signed in.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let response = app.client.post(&url).form(&[("action", "request_erase")]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(app.contact_by_email("expired@example.org").await.is_some());
}

#[tokio::test]
async fn the_preference_centre_unticks_at_once_and_a_ticked_list_waits_for_the_persons_confirmation() {
    let app = spawn_app().await;
    let (id, list) = subscribed(&app, "prefs@example.org").await;
    let url = links(&app, &id).await["preferences_url"].as_str().unwrap().to_owned();
    let page = app.client.get(&url).send().await.unwrap().text().await.unwrap();
    let (_, shown) = app.send(app.get(&format!("/api/v1/lists/{list}"))).await;
    let name = shown["name"].as_str().unwrap().to_owned();
    let words = format!("Send me {name}. I can unsubscribe at any time.");
    assert!(page.contains("prefs@example.org") && page.contains(&format!("value=\"{list}\" checked")), "{page}");
    assert!(page.contains(&words), "the words beside the box: {page}");

    // Untick the list: withdrawn at once.
    let response = app.client.post(&url).form(&[("action", "save")]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let consents = app.consents_of(&id).await;
    assert_eq!(consents["current"][0]["status"], "withdrawn");
    assert_eq!(consents["events"][1]["method"], "preference_centre");

    // Tick it again: recorded as what happened, and nothing is received before the person confirms.
    let page = app.client.post(&url).form(&[("action", "save"), ("list", &list)]).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("open its link to confirm"));
    let consents = app.consents_of(&id).await;
    assert_eq!(consents["current"][0]["status"], "pending");
    let event = &consents["events"][2];
    assert_eq!(
        (event["action"].as_str(), event["basis"].as_str(), event["method"].as_str(), event["actor"].as_str()),
        (Some("granted"), Some("single_opt_in"), Some("preference_centre"), Some("public"))
    );
    assert_eq!(event["consent_text"], words, "the ledger keeps the words the page showed");
    assert_eq!(event["ip"], "127.0.0.1");
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(contact["lists"], json!([]));

    // The person confirms from their mailbox: only now are they on the list, by double opt-in.
    let mail = &app.mail.wait_for("prefs@example.org", 1).await[0];
    assert!(mail.text().contains(&name), "{}", mail.text());
    app.client.post(mail.link(&format!("{}/confirm/", app.address))).send().await.unwrap();
    let consents = app.consents_of(&id).await;
    assert_eq!(consents["current"][0]["status"], "active");
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(contact["lists"], json!([list]));
}

#[tokio::test]
async fn whoever_holds_a_preference_link_cannot_bring_back_someone_who_left() {
    let app = spawn_app().await;
    let (id, list) = subscribed(&app, "left@example.org").await;
    // An editor reads the link through the API and uses it as if they were the person.
    let url = links(&app, &id).await["preferences_url"].as_str().unwrap().to_owned();
    let response = app.client.post(&url).form(&[("action", "leave_all")]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(contact["status"], "unsubscribed");
    assert_eq!(app.consents_of(&id).await["events"][1]["method"], "preference_centre");

    app.client.post(&url).form(&[("action", "save"), ("list", &list)]).send().await.unwrap();
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!((contact["status"].as_str(), &contact["lists"]), (Some("unsubscribed"), &json!([])));
    let consents = app.consents_of(&id).await;
    assert_eq!(consents["current"][0]["status"], "pending");
    assert!(consents["events"].as_array().unwrap().iter().all(|e| e["basis"] != "double_opt_in"));
    // The only way back is the person's click in the mail sent to their own address.
    let mails = app.mail.wait_for("left@example.org", 1).await;
    assert_eq!(mails[0].to, ["left@example.org"]);
}

#[tokio::test]
async fn erasure_needs_a_single_use_link_mailed_to_the_address_and_a_press_on_its_page() {
    let app = spawn_app().await;
    let (id, _) = subscribed(&app, "erase-me@example.org").await;
    let url = links(&app, &id).await["preferences_url"].as_str().unwrap().to_owned();
    let page = app.client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Send me a link to delete all my data"), "{page}");

    // Whoever holds the preference link only gets a mail sent to the person.
    for action in ["request_erase", "erase"] {
        let response = app.client.post(&url).form(&[("action", action)]).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.text().await.unwrap().contains("Check your inbox"));
    }
    assert!(app.contact_by_email("erase-me@example.org").await.is_some(), "nothing is erased yet");
    let mails = app.mail.wait_for("erase-me@example.org", 1).await;
    assert_eq!(mails.len(), 1, "one such mail a day");
    let link = mails[0].link(&format!("{}/data-requests/", app.address));

    // Opening the link (a mail scanner does) shows a button and erases nothing.
    let page = app.client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Delete all my data"));
    assert!(app.contact_by_email("erase-me@example.org").await.is_some());

    let erased = app.client.post(&link).send().await.unwrap();
    assert_eq!(erased.status(), StatusCode::OK);
    assert!(erased.text().await.unwrap().contains("Your data is deleted"));
    assert!(app.contact_by_email("erase-me@example.org").await.is_none());
    assert_eq!(app.client.post(&link).send().await.unwrap().status(), StatusCode::NOT_FOUND, "used once");
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let forged = app.client.get(format!("{link}x")).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_data_download_is_mailed_as_a_single_use_link_and_holds_what_the_person_did() {
    let app = spawn_app().await;
    let (id, _) = subscribed(&app, "download@example.org").await;
    let url = links(&app, &id).await["preferences_url"].as_str().unwrap().to_owned();
    let response = app.client.post(&url).form(&[("action", "request_download")]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let link = app.mail.wait_for("download@example.org", 1).await[0].link(&format!("{}/data-requests/", app.address));
    let page = app.client.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Download my data"), "{page}");

    let download = app.client.post(&link).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert!(download.headers()["content-disposition"].to_str().unwrap().contains("attachment"));
    let data: Value = download.json().await.unwrap();
    assert_eq!(data["contact"]["email"], "download@example.org");
    assert_eq!(data["consents"]["events"].as_array().unwrap().len(), 1);
    assert_eq!(app.client.post(&link).send().await.unwrap().status(), StatusCode::NOT_FOUND, "used once");
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
    // Recorded as what it is: through the API, on the integrator's word.
    assert_eq!(event["method"], "api");
    assert_eq!(event["proof"]["claimed_method"], "checkout checkbox");
    assert!(event["proof"]["evidence"].as_str().unwrap().contains("claimed by the integrator"), "{event}");
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

#[tokio::test]
async fn the_api_cannot_record_a_double_opt_in_a_partner_or_an_import_and_says_what_to_do_instead() {
    let app = spawn_app().await;
    let list = app.create_list("Promotions").await;
    let contact = app.create_contact(json!({"email": "victim@example.org"})).await;
    let id = contact["id"].as_str().unwrap();
    let path = format!("/api/v1/contacts/{id}/consents");
    let evidence = json!({"method": "web", "consent_text": "Yes", "ip": "198.51.100.7", "user_agent": "Mozilla/5.0"});
    for (basis, hint) in [("double_opt_in", "/confirmations"), ("partner", "partner"), ("imported", "/imports")] {
        let response = app
            .post(&path, &json!({"purpose": format!("list:{list}"), "basis": basis, "evidence": evidence}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(fields_at_fault(&problem), ["basis"], "{problem}");
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains(hint), "{problem}");
    }
    // Evidence is checked where it comes in.
    let response = app
        .post(
            &path,
            &json!({"purpose": format!("list:{list}"), "basis": "single_opt_in",
                    "evidence": {"method": "web", "consent_text": "Yes", "ip": "999.1.1.1", "source_url": "javascript:alert(1)"}}),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["evidence.ip", "evidence.source_url"]);
    let consents = app.consents_of(id).await;
    assert_eq!(consents["events"], json!([]), "nothing was recorded");
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(contact["lists"], json!([]));
}

#[tokio::test]
async fn the_api_starts_a_double_opt_in_that_only_the_persons_click_completes() {
    let app = spawn_app().await;
    let list = app.create_list("Weekly").await;
    let contact = app.create_contact(json!({"email": "asked@example.org"})).await;
    let id = contact["id"].as_str().unwrap();
    let path = format!("/api/v1/contacts/{id}/confirmations");

    let response =
        app.post(&path, &json!({"purposes": ["partner:acme", "list:nope"], "locale": "xx"})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["purposes[1]", "locale"], "{problem}");
    let response = app.post(&path, &json!({"purposes": ["partner:acme"]})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["purposes[0]"], "{problem}");

    let (status, started) =
        app.send(app.post(&path, &json!({"purposes": [format!("list:{list}")], "locale": "fr"}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["pending"], json!([format!("list:{list}")]));
    let consents = app.consents_of(id).await;
    let event = &consents["events"][0];
    assert_eq!(consents["current"][0]["status"], "pending");
    assert_eq!((event["method"].as_str(), event["basis"].as_str()), (Some("api"), Some("single_opt_in")));
    assert!(event["actor"].as_str().unwrap().starts_with("user:"));
    let words = event["consent_text"].as_str().unwrap();
    assert!(
        words.contains("Weekly") && words.contains("[confirmation link]"),
        "the mail's words, without its secret: {words}"
    );
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(contact["lists"], json!([]), "nothing is received before the person confirms");

    let mail = &app.mail.wait_for("asked@example.org", 1).await[0];
    assert!(mail.text().contains("merci de confirmer"), "{}", mail.text());
    app.client.post(mail.link(&format!("{}/confirm/", app.address))).send().await.unwrap();
    let consents = app.consents_of(id).await;
    assert_eq!(consents["current"][0]["status"], "active");
    assert_eq!(consents["events"][1]["action"], "confirmed");
    assert_eq!(consents["events"][1]["actor"], "public", "the person confirmed, not the caller");
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(contact["lists"], json!([list]));

    let (_, again) = app.send(app.post(&path, &json!({"purposes": [format!("list:{list}")]}))).await;
    assert_eq!(
        (again["pending"].clone(), again["already_active"].clone()),
        (json!([]), json!([format!("list:{list}")]))
    );
}

#[tokio::test]
async fn the_persons_export_holds_the_campaigns_they_received_what_was_recorded_and_the_partners_told() {
    let app = spawn_app().await;
    let acme = crate::partners::create_partner(&app, "Acme", json!({})).await;
    let acme_id = acme["id"].as_str().unwrap();
    let (_, list) = app.form_on_new_list("coreg-export", "single", json!({"partners": [acme_id]})).await;
    let response = app
        .submit_form("coreg-export", &[("email", "reader@example.org"), ("consent", &list), ("partner", acme_id)])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = app.contact_by_email("reader@example.org").await.unwrap()["id"].as_str().unwrap().to_owned();
    app.confirmed_double_opt_in(&id, &list).await;

    let html = "<html><body><p>Hello</p><a href=\"{{ unsubscribe_url }}\">Leave</a></body></html>";
    let (_, campaign) = app
        .send(app.post(
            "/api/v1/campaigns",
            &json!({"name": "Winter sale", "subject": "Our winter sale", "text_body": "B", "html_body": html,
                    "lists": [list], "tracking": {"opens": true, "clicks": false, "individual": true}}),
        ))
        .await;
    let campaign_id = campaign["id"].as_str().unwrap();
    app.send(app.post(&format!("/api/v1/campaigns/{campaign_id}/send"), &json!({}))).await;
    let mail = &app.mail.wait_for("reader@example.org", 1).await[0];
    let raw = mail.raw.replace("=\r\n", "").replace("=3D", "=");
    let open = raw.split('"').find(|part| part.starts_with(&app.url("/t/"))).expect("an open pixel").to_owned();
    assert_eq!(app.client.get(&open).send().await.unwrap().status(), StatusCode::OK);

    let (_, export) = app.send(app.get(&format!("/api/v1/contacts/{id}/export"))).await;
    let received = &export["campaigns"];
    assert_eq!(received.as_array().unwrap().len(), 1, "{export}");
    assert_eq!(
        (received[0]["campaign_id"].as_str(), received[0]["name"].as_str(), received[0]["subject"].as_str()),
        (Some(campaign_id), Some("Winter sale"), Some("Our winter sale"))
    );
    assert!(received[0]["sent_at"].is_string() && received[0]["opened_at"].is_string(), "{received}");
    assert!(received[0]["clicked_at"].is_null());
    let leads = export["partner_leads"].as_array().unwrap();
    assert_eq!(leads.len(), 1, "{export}");
    assert_eq!((leads[0]["partner_name"].as_str(), leads[0]["direction"].as_str()), (Some("Acme"), Some("outbound")));
    assert!(leads[0]["payload"].to_string().contains("reader@example.org"), "what Acme received: {}", leads[0]);
    assert_eq!(export["delivery_events"], json!([]));

    // After erasure nothing of it is left to export.
    app.send(app.delete(&format!("/api/v1/contacts/{id}"))).await;
    let (_, export) = app.send(app.get(&format!("/api/v1/contacts/{id}/export"))).await;
    assert_eq!((export["campaigns"].clone(), export["partner_leads"].clone()), (json!([]), json!([])), "{export}");
}
