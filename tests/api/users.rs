//! `/api/v1/users` and roles.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, fields_at_fault, spawn_app};

#[tokio::test]
async fn a_viewer_reads_but_gets_403_writing() {
    let app = spawn_app().await;
    let viewer = app.user_token("viewer").await;
    let response = app.client.get(app.url("/api/v1/contacts")).bearer_auth(&viewer).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let writes = [
        app.client.post(app.url("/api/v1/contacts")).json(&json!({"email": "a@example.org"})),
        app.client.post(app.url("/api/v1/lists")).json(&json!({"name": "L"})),
        app.client.delete(app.url(&format!("/api/v1/contacts/{}", uuid::Uuid::now_v7()))),
        app.client.get(app.url("/api/v1/users")),
    ];
    for request in writes {
        let response = request.bearer_auth(&viewer).send().await.unwrap();
        let problem = assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
        assert!(problem["detail"].as_str().unwrap().contains("viewer"), "{problem}");
    }
}

#[tokio::test]
async fn an_editor_writes_contacts_but_does_not_manage_users() {
    let app = spawn_app().await;
    let editor = app.user_token("editor").await;
    let response = app
        .client
        .post(app.url("/api/v1/contacts"))
        .bearer_auth(&editor)
        .json(&json!({"email": "by-editor@example.org"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .client
        .post(app.url("/api/v1/users"))
        .bearer_auth(&editor)
        .json(&json!({"email": "x@example.org", "password": "long enough password", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn users_are_created_changed_and_deleted_by_admins() {
    let app = spawn_app().await;
    let (status, user) = app
        .send(
            app.post(
                "/api/v1/users",
                &json!({"email": "Ed@Example.org", "password": "twelve chars!", "role": "editor"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["email"], "Ed@example.org");
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    let id = user["id"].as_str().unwrap();

    let (status, changed) = app.send(app.patch(&format!("/api/v1/users/{id}"), &json!({"role": "viewer"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changed["role"], "viewer");

    let (status, _) = app
        .send(
            app.post(
                "/api/v1/users",
                &json!({"email": "ed@example.org", "password": "twelve chars!", "role": "viewer"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, _) = app.send(app.delete(&format!("/api/v1/users/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let response = app.get(&format!("/api/v1/users/{id}")).send().await.unwrap();
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn the_last_admin_can_be_neither_demoted_nor_deleted() {
    let app = spawn_app().await;
    let (_, users) = app.send(app.get("/api/v1/users")).await;
    let admin_id = users["items"][0]["id"].as_str().unwrap().to_owned();
    let response = app.patch(&format!("/api/v1/users/{admin_id}"), &json!({"role": "editor"})).send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
    let response = app.delete(&format!("/api/v1/users/{admin_id}")).send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn a_weak_password_and_an_unknown_role_are_refused_together() {
    let app = spawn_app().await;
    let response = app
        .post("/api/v1/users", &json!({"email": "not-an-email", "password": "short", "role": "root"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["email", "password", "role"]);
}

#[tokio::test]
async fn changing_a_password_ends_the_sessions_issued_before_and_a_role_change_does_not() {
    let app = spawn_app().await;
    let (status, user) = app
        .send(app.post(
            "/api/v1/users",
            &json!({"email": "ed@example.org", "password": "the first passphrase", "role": "editor"}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().unwrap();
    let old_token = app.token_for("ed@example.org", "the first passphrase").await;
    let contacts = |token: String| app.client.get(app.url("/api/v1/contacts")).bearer_auth(token).send();

    let (status, _) = app.send(app.patch(&format!("/api/v1/users/{id}"), &json!({"role": "viewer"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(contacts(old_token.clone()).await.unwrap().status(), StatusCode::OK);

    let (status, _) =
        app.send(app.patch(&format!("/api/v1/users/{id}"), &json!({"password": "the second passphrase"}))).await;
    assert_eq!(status, StatusCode::OK);
    let problem = assert_problem(contacts(old_token).await.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(problem["detail"], "the access token was issued before the password changed; sign in again");
    let new_token = app.token_for("ed@example.org", "the second passphrase").await;
    assert_eq!(contacts(new_token).await.unwrap().status(), StatusCode::OK);
    // The admin who made the change keeps their own session.
    assert_eq!(contacts(app.admin_token.clone()).await.unwrap().status(), StatusCode::OK);
}
