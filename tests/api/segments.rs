//! Segments: created through the API, counted and listed, changed without a restart.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app};

async fn seed(app: &TestApp) -> String {
    let list = app.create_list("Customers").await;
    for i in 0..12 {
        let country = if i % 3 == 0 { "FR" } else { "DE" };
        let tags = if i % 2 == 0 { json!(["vip"]) } else { json!([]) };
        app.create_contact(json!({
            "email": format!("person{i:02}@example.org"),
            "country": country,
            "tags": tags,
            "lists": if i < 6 { json!([list]) } else { json!([]) },
            "attributes": {"orders": i},
            "company": if i % 4 == 0 { Value::String("ACME".into()) } else { Value::Null },
        }))
        .await;
    }
    list
}

#[tokio::test]
async fn a_segment_counts_and_lists_its_members_and_follows_a_changed_script() {
    let app = spawn_app().await;
    let list = seed(&app).await;
    let (status, segment) = app
        .send(app.post(
            "/api/v1/segments",
            &json!({"name": "French VIPs", "script": "contact.country == \"FR\" && contact.has_tag(\"vip\")"}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{segment}");
    let id = segment["id"].as_str().unwrap().to_owned();

    let (_, count) = app.send(app.get(&format!("/api/v1/segments/{id}/count"))).await;
    assert_eq!(count["count"], 2, "{count}"); // person00 and person06
    assert_eq!(count["scanned"], 2, "both conditions go to the database; no contact reaches Rhai in vain");

    let (_, preview) = app.send(app.get(&format!("/api/v1/segments/{id}/preview?limit=1"))).await;
    assert_eq!(preview["count"], 2);
    assert_eq!(preview["items"].as_array().unwrap().len(), 1);
    assert_eq!(preview["items"][0]["email"], "person00@example.org");

    // A changed script is in force at once: no restart.
    let script = format!("fn matches(contact) {{ contact.in_list(\"{list}\") && contact.attr(\"orders\") >= 2 }}");
    let (status, _) = app.send(app.patch(&format!("/api/v1/segments/{id}"), &json!({"script": script}))).await;
    assert_eq!(status, StatusCode::OK);
    let mut emails = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let (status, page) = app.send(app.get(&format!("/api/v1/segments/{id}/members?limit=3{cursor}"))).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        emails.extend(page["items"].as_array().unwrap().iter().map(|c| c["email"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(
        emails,
        ["person02@example.org", "person03@example.org", "person04@example.org", "person05@example.org"]
    );
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn a_segment_on_a_plugin_follows_the_plugins_new_version() {
    let app = spawn_app().await;
    seed(&app).await;
    let (status, _) = app
        .send(app.post(
            "/api/v1/plugins",
            &json!({"name": "by-country", "source": "fn matches(contact) { contact.country == \"FR\" }"}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, segment) =
        app.send(app.post("/api/v1/segments", &json!({"name": "By country", "plugin": "by-country"}))).await;
    let id = segment["id"].as_str().unwrap();
    let (_, count) = app.send(app.get(&format!("/api/v1/segments/{id}/count"))).await;
    assert_eq!(count["count"], 4);

    app.send(
        app.admin(app.client.put(app.url("/api/v1/plugins/by-country")))
            .json(&json!({"source": "fn matches(contact) { contact.country == \"DE\" }"})),
    )
    .await;
    let (_, count) = app.send(app.get(&format!("/api/v1/segments/{id}/count"))).await;
    assert_eq!(count["count"], 8);

    // The folder's example plugin, with its settings.
    let (status, folder) =
        app.send(app.post("/api/v1/segments", &json!({"name": "Recent pros", "plugin": "recent-professionals"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{folder}");
    let (_, count) = app.send(app.get(&format!("/api/v1/segments/{}/count", folder["id"].as_str().unwrap()))).await;
    assert_eq!(count["count"], 3, "person00, 04 and 08 have a company");

    let response = app.delete("/api/v1/plugins/by-country").send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn consent_is_part_of_what_a_script_sees() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("seg", "single", json!({})).await;
    app.submit_form("seg", &[("email", "agreed@example.org"), ("consent", &list)]).await;
    app.create_contact(json!({"email": "silent@example.org"})).await;
    let script =
        format!("contact.has_consent(\"list:{list}\") && contact.consent_basis(\"list:{list}\") == \"single_opt_in\"");
    let (status, result) = app.send(app.post("/api/v1/segments/evaluate", &json!({"script": script}))).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["count"], 1);
    assert_eq!(result["items"][0]["email"], "agreed@example.org");
}

#[tokio::test]
async fn a_segment_needs_a_rule_that_compiles_and_answers_a_boolean() {
    let app = spawn_app().await;
    app.create_contact(json!({"email": "a@example.org"})).await;
    let response =
        app.post("/api/v1/segments", &json!({"name": "Broken", "script": "contact.country =="})).send().await.unwrap();
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    let response = app.post("/api/v1/segments", &json!({"name": "Nothing"})).send().await.unwrap();
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    let response = app.post("/api/v1/segments/evaluate", &json!({"script": "contact.email"})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("must answer true or false"), "{problem}");
}

#[tokio::test]
async fn a_segment_sets_its_plugins_settings() {
    let app = spawn_app().await;
    seed(&app).await;
    let (status, segment) = app
        .send(app.post(
            "/api/v1/segments",
            &json!({"name": "Nobody recent", "plugin": "recent-professionals", "settings": {"max_days": -1}}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{segment}");
    assert_eq!(segment["settings"], json!({"max_days": -1}));
    let id = segment["id"].as_str().unwrap();
    let (_, count) = app.send(app.get(&format!("/api/v1/segments/{id}/count"))).await;
    assert_eq!(count["count"], 0, "nobody joined less than -1 days ago");

    let (status, _) =
        app.send(app.patch(&format!("/api/v1/segments/{id}"), &json!({"settings": {"max_days": 30}}))).await;
    assert_eq!(status, StatusCode::OK);
    let (_, count) = app.send(app.get(&format!("/api/v1/segments/{id}/count"))).await;
    assert_eq!(count["count"], 3);

    let response = app
        .post(
            "/api/v1/segments",
            &json!({"name": "Bad", "plugin": "recent-professionals", "settings": {"max_days": "soon", "colour": 1}}),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    let mut fields: Vec<String> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_owned()).collect();
    fields.sort();
    assert_eq!(fields, ["settings.colour", "settings.max_days"]);
}

#[tokio::test]
async fn a_viewer_counts_stored_segments_but_may_not_run_a_script_of_their_own() {
    let app = spawn_app().await;
    seed(&app).await;
    let (status, segment) =
        app.send(app.post("/api/v1/segments", &json!({"name": "French", "script": "contact.country == \"FR\""}))).await;
    assert_eq!(status, StatusCode::CREATED, "{segment}");
    let id = segment["id"].as_str().unwrap();
    let viewer = app.user_token("viewer").await;

    let response =
        app.client.get(app.url(&format!("/api/v1/segments/{id}/count"))).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let count: Value = response.json().await.unwrap();
    assert_eq!(count["count"], 4, "{count}");

    // A script of their own would run over the whole address book: refused, and not run.
    let response = app
        .client
        .post(app.url("/api/v1/segments/evaluate"))
        .bearer_auth(&viewer)
        .json(&json!({"script": "contact.email.contains(\"person0\")"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    let editor = app.user_token("editor").await;
    let response = app
        .client
        .post(app.url("/api/v1/segments/evaluate"))
        .bearer_auth(&editor)
        .json(&json!({"script": "contact.email.contains(\"person0\")"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let evaluated: Value = response.json().await.unwrap();
    assert_eq!(evaluated["count"], 10, "{evaluated}");
}
