//! Problem documents for requests the API cannot take.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, fields_at_fault, spawn_app};

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    for path in ["/nothing-here", "/api/v1/nothing", "/api/v1/contacts/a/b"] {
        let response = app.get(path).send().await.unwrap();
        let problem = assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
        assert_eq!(problem["detail"], format!("nothing is at {path}"));
    }
}

#[tokio::test]
async fn an_id_that_names_nothing_is_a_404_problem() {
    let app = spawn_app().await;
    for path in ["/api/v1/contacts/not-a-uuid", &format!("/api/v1/contacts/{}", uuid::Uuid::now_v7())] {
        let response = app.get(path).send().await.unwrap();
        assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    }
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_with_allow() {
    let app = spawn_app().await;
    let response = app.admin(app.client.put(app.url("/api/v1/contacts"))).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, POST");
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;

    let path = format!("/api/v1/contacts/{}", uuid::Uuid::now_v7());
    let response = app.admin(app.client.post(app.url(&path))).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, PATCH, DELETE");
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;

    let response = app.client.delete(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET");
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
}

#[tokio::test]
async fn malformed_json_is_a_400_problem_with_its_position() {
    let app = spawn_app().await;
    let response = app
        .admin(app.client.post(app.url("/api/v1/contacts")))
        .header("content-type", "application/json")
        .body("{\n  \"email\": \"a@example.org\",\n  oops\n}")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::BAD_REQUEST, "bad-request").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("line 3, column 3"), "{detail}");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = spawn_app().await;
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut request = app.admin(app.client.post(app.url("/api/v1/lists"))).body(r#"{"name": "x"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type").await;
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = spawn_app().await;
    let huge = "x".repeat(app.state.settings.max_body_bytes + 1);
    let response = app
        .post("/api/v1/contacts", &json!({"email": "big@example.org", "attributes": {"blob": huge}}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
    let (_, listed) = app.send(app.get("/api/v1/contacts")).await;
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn wrong_types_missing_and_unknown_fields_are_422_problems_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"email": 42}), "email"),
        (json!({}), "email"),
        (json!({"email": "a@example.org", "nickname": "x"}), "nickname"),
        (json!({"email": "a@example.org", "tags": "vip"}), "tags"),
        (json!({"email": "a@example.org", "tags": ["ok", 5]}), "tags[1]"),
        (json!(["a@example.org"]), "body"),
    ];
    for (body, field) in cases {
        let response = app.post("/api/v1/contacts", &body).send().await.unwrap();
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
}

/// A JSON body sent as written (`json!` would sort its keys), as the admin.
fn raw_json(app: &crate::helpers::TestApp, method: reqwest::Method, path: &str, body: &str) -> reqwest::RequestBuilder {
    app.admin(app.client.request(method, app.url(path)))
        .header("content-type", "application/json")
        .body(body.to_owned())
}

#[tokio::test]
async fn one_answer_names_every_field_at_fault_type_errors_and_rule_errors_together() {
    let app = spawn_app().await;
    // The issue's example: two type errors and a rule error, each named, in the body's order.
    let body = r#"{"email": "ada@example.org", "tags": 5, "country": "France", "company": 7, "id": "mine"}"#;
    let response = raw_json(&app, reqwest::Method::POST, "/api/v1/contacts", body).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["tags", "country", "company", "id"], "{problem}");
    assert_eq!(problem["errors"][1]["message"], "must be an ISO 3166-1 alpha-2 country code, such as FR or DE");

    // A required field of the wrong type is named once, beside the others.
    let body = r#"{"email": 42, "lists": ["not-a-list"], "nickname": "x", "attributes": []}"#;
    let response = raw_json(&app, reqwest::Method::POST, "/api/v1/contacts", body).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["email", "nickname"], "{problem}");

    // A patch alike.
    let contact = app.create_contact(json!({"email": "grace@example.org"})).await;
    let id = contact["id"].as_str().unwrap();
    let body = r#"{"email": "not an address", "tags": [1], "country": "Neverland"}"#;
    let response =
        raw_json(&app, reqwest::Method::PATCH, &format!("/api/v1/contacts/{id}"), body).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["email", "tags[0]", "country"], "{problem}");
    let (_, listed) = app.send(app.get("/api/v1/contacts")).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "nothing is stored from a refused request");
}

#[tokio::test]
async fn a_list_request_names_its_rule_errors_beside_its_type_errors() {
    let app = spawn_app().await;
    let body = r#"{"name": "   ", "opt_in": 5}"#;
    let response = raw_json(&app, reqwest::Method::POST, "/api/v1/lists", body).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["name", "opt_in"], "{problem}");
    assert_eq!(problem["errors"][0]["message"], "must not be empty");

    let list = app.create_list("Weekly").await;
    let body = r#"{"name": "", "description": 7, "opt_in": "sometimes"}"#;
    let response = raw_json(&app, reqwest::Method::PATCH, &format!("/api/v1/lists/{list}"), body).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["name", "description", "opt_in"], "{problem}");
    let (_, stored) = app.send(app.get(&format!("/api/v1/lists/{list}"))).await;
    assert_eq!(stored["name"], "Weekly", "nothing is changed by a refused patch");
}

#[tokio::test]
async fn a_user_patch_names_a_short_password_beside_a_role_of_the_wrong_type() {
    let app = spawn_app().await;
    let (status, user) = app
        .send(app.post(
            "/api/v1/users",
            &json!({"email": "viewer@example.org", "password": "a long enough passphrase", "role": "viewer"}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().unwrap();
    let body = r#"{"role": 5, "password": "short"}"#;
    let response = raw_json(&app, reqwest::Method::PATCH, &format!("/api/v1/users/{id}"), body).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["role", "password"], "{problem}");
    let (_, stored) = app.send(app.get(&format!("/api/v1/users/{id}"))).await;
    assert_eq!(stored["role"], "viewer", "nothing is changed by a refused patch");
}
