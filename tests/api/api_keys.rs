//! `/api/v1/api-keys`: create, use, list, revoke.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn an_api_key_is_shown_once_works_and_stops_working_when_revoked() {
    let app = spawn_app().await;
    let (status, created) =
        app.send(app.post("/api/v1/api-keys", &json!({"name": "shop sync", "role": "editor"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("csk_"));
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(created["role"], "editor");

    // The key writes, as an editor.
    let (status, body) = app
        .send(
            app.client
                .post(app.url("/api/v1/contacts"))
                .bearer_auth(&secret)
                .json(&json!({"email": "via-key@example.org"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Listed and read without its secret, with its last use recorded.
    let (_, listed) = app.send(app.get("/api/v1/api-keys")).await;
    let listed_key = &listed["items"][0];
    assert_eq!(listed_key["id"], id.as_str());
    assert!(listed_key.get("secret").is_none());
    assert!(listed_key["last_used_at"].is_string());
    let (_, read) = app.send(app.get(&format!("/api/v1/api-keys/{id}"))).await;
    assert!(read.get("secret").is_none());
    assert!(read["revoked_at"].is_null());

    // Revoked: refused at once, still listed with the time.
    let (status, _) = app.send(app.delete(&format!("/api/v1/api-keys/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let response = app.client.get(app.url("/api/v1/contacts")).bearer_auth(&secret).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(problem["detail"], "the API key is unknown or revoked");
    let (_, read) = app.send(app.get(&format!("/api/v1/api-keys/{id}"))).await;
    assert!(read["revoked_at"].is_string());
}

#[tokio::test]
async fn a_viewer_key_reads_but_cannot_write() {
    let app = spawn_app().await;
    let (_, created) = app.send(app.post("/api/v1/api-keys", &json!({"name": "reporting", "role": "viewer"}))).await;
    let secret = created["secret"].as_str().unwrap();
    let response = app.client.get(app.url("/api/v1/lists")).bearer_auth(secret).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .client
        .post(app.url("/api/v1/lists"))
        .bearer_auth(secret)
        .json(&json!({"name": "Not allowed"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn an_unknown_key_is_refused() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/api/v1/lists")).bearer_auth("csk_not-a-key").send().await.unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn only_admins_manage_keys() {
    let app = spawn_app().await;
    let editor = app.user_token("editor").await;
    let response = app
        .client
        .post(app.url("/api/v1/api-keys"))
        .bearer_auth(&editor)
        .json(&json!({"name": "sneaky", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    let response = app.client.get(app.url("/api/v1/api-keys")).bearer_auth(&editor).send().await.unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_key_needs_a_name_and_a_known_role() {
    let app = spawn_app().await;
    let response = app.post("/api/v1/api-keys", &json!({"name": " ", "role": "owner"})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(crate::helpers::fields_at_fault(&problem), ["name", "role"]);
}
