//! The suppression list's own API: read and searched by address, added to by editors,
//! filled from a previous provider's export.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, fields_at_fault, spawn_app};

#[tokio::test]
async fn an_editor_suppresses_an_address_and_its_contact_leaves_every_list() {
    let app = spawn_app().await;
    let list = app.create_list("News").await;
    let contact = app.create_contact(json!({"email": "phoned@example.org", "lists": [list]})).await;
    let id = contact["id"].as_str().unwrap();

    let viewer = app.user_token("viewer").await;
    let response = app
        .client
        .post(app.url("/api/v1/suppressions"))
        .bearer_auth(&viewer)
        .json(&json!({"email": "phoned@example.org", "reason": "asked by phone"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.post("/api/v1/suppressions", &json!({"email": "nope", "reason": ""})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["email", "reason"]);

    let editor = app.user_token("editor").await;
    let add = |email: &str| {
        app.client
            .post(app.url("/api/v1/suppressions"))
            .bearer_auth(&editor)
            .json(&json!({"email": email, "reason": "asked by phone"}))
    };
    let (status, entry) = app.send(add("Phoned@Example.org")).await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert_eq!(entry["reason"], "asked by phone");
    assert!(!entry.to_string().contains("phoned"), "the list keeps no address: {entry}");
    let (status, again) = app.send(add("phoned@example.org")).await;
    assert_eq!((status, &again["email_hash"]), (StatusCode::OK, &entry["email_hash"]));

    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!((contact["status"].as_str(), &contact["lists"]), (Some("unsubscribed"), &json!([])));
    // A viewer finds it by the address; another address finds nothing.
    let (status, page) =
        app.send(app.client.get(app.url("/api/v1/suppressions?email=PHONED@example.org")).bearer_auth(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["email_hash"], entry["email_hash"]);
    let (_, page) = app.send(app.get("/api/v1/suppressions?email=other@example.org")).await;
    assert_eq!(page["items"], json!([]));
    // The API cannot put the address back; only a confirmed double opt-in does.
    let response = app.patch(&format!("/api/v1/contacts/{id}"), &json!({"lists": [list]})).send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn a_previous_providers_export_of_unsubscribed_addresses_suppresses_each_of_them() {
    let app = spawn_app().await;
    let list = app.create_list("Old list").await;
    app.create_contact(json!({"email": "kept@example.org", "lists": [list]})).await;
    let mailchimp = "\u{feff}\"Email Address\",\"First Name\",\"Last Name\",UNSUB_TIME,UNSUB_CAMPAIGN_TITLE\n\
                     kept@example.org,Kim,K,\"2024-05-01 10:00:00\",Spring\n\
                     gone@example.org,Gil,G,\"2024-05-02 10:00:00\",Spring\n\
                     not an address,X,Y,,\n\
                     GONE@example.org,Gil,G,,\n";
    let editor = app.user_token("editor").await;
    let (status, report) = app
        .send(
            app.client
                .post(app.url("/api/v1/suppressions/import"))
                .bearer_auth(&editor)
                .header("content-type", "text/csv")
                .body(mailchimp),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report, json!({"added": 2, "already_suppressed": 0, "contacts_unsubscribed": 1, "invalid": 1}));
    let kept = app.contact_by_email("kept@example.org").await.unwrap();
    assert_eq!((kept["status"].as_str(), &kept["lists"]), (Some("unsubscribed"), &json!([])));

    // A cleaned export, as plain text, with its own reason.
    let (_, report) = app
        .send(
            app.post("/api/v1/suppressions/import?reason=bounced", &json!(null))
                .body("gone@example.org\nbad@example.org\n"),
        )
        .await;
    assert_eq!(report, json!({"added": 1, "already_suppressed": 1, "contacts_unsubscribed": 0, "invalid": 0}));
    // The body is required: an empty one is named, not counted as an empty list.
    let response = app.post("/api/v1/suppressions/import", &json!(null)).body("\n").send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["body"]);

    // Paged, every entry once.
    let (_, first) = app.send(app.get("/api/v1/suppressions?limit=2")).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app.send(app.get(&format!("/api/v1/suppressions?limit=2&cursor={cursor}"))).await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert!(second["next_cursor"].is_null());
    let reasons: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.iter().filter(|r| **r == "bounced").count(), 1, "{reasons:?}");

    // A signup of a suppressed address, even on a single opt-in form, waits for a confirmed double opt-in.
    let (_, form_list) = app.form_on_new_list("back", "single", json!({})).await;
    let response = app.submit_form("back", &[("email", "gone@example.org"), ("consent", &form_list)]).await;
    // The page answers as for any address (it does not tell that this one was suppressed).
    assert_eq!(response.status(), StatusCode::OK);
    let contact = app.contact_by_email("gone@example.org").await.unwrap();
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    let on_form_list = consents["current"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purpose"] == format!("list:{form_list}"))
        .unwrap()
        .clone();
    assert_eq!(on_form_list["status"], "pending", "{consents}");
    app.mail.wait_for("gone@example.org", 1).await;
}
