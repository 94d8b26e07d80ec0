//! `/api/v1/lists`.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_problem, fields_at_fault, spawn_app};

#[tokio::test]
async fn a_list_is_created_read_changed_and_deleted() {
    let app = spawn_app().await;
    let response = app
        .post("/api/v1/lists", &json!({"name": " Weekly news ", "description": "Every Monday"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let list: serde_json::Value = response.json().await.unwrap();
    assert_eq!(list["name"], "Weekly news");
    assert_eq!(list["opt_in"], "double", "double opt-in is the default");
    assert_eq!(location, format!("/api/v1/lists/{}", list["id"].as_str().unwrap()));

    let (_, read) = app.send(app.get(&location)).await;
    assert_eq!(read, list);

    let (status, changed) =
        app.send(app.patch(&location, &json!({"opt_in": "single", "description": "Mondays"}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changed["opt_in"], "single");
    assert_eq!(changed["description"], "Mondays");
    assert_eq!(changed["name"], "Weekly news");

    let (status, _) = app.send(app.delete(&location)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_problem(app.get(&location).send().await.unwrap(), StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn deleting_a_list_keeps_its_contacts() {
    let app = spawn_app().await;
    let list = app.create_list("Temporary").await;
    let contact = app.create_contact(json!({"email": "stays@example.org", "lists": [list]})).await;
    let (status, _) = app.send(app.delete(&format!("/api/v1/lists/{list}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, read) = app.send(app.get(&format!("/api/v1/contacts/{}", contact["id"].as_str().unwrap()))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["lists"], json!([]));
}

#[tokio::test]
async fn list_names_are_unique() {
    let app = spawn_app().await;
    app.create_list("Offers").await;
    let response = app.post("/api/v1/lists", &json!({"name": "Offers"})).send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn lists_page_with_a_cursor() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create_list(&format!("List {i}")).await;
    }
    let (_, first) = app.send(app.get("/api/v1/lists?limit=3")).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = app.send(app.get(&format!("/api/v1/lists?limit=3&cursor={cursor}"))).await;
    let names: Vec<&str> = second["items"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["List 3", "List 4"]);
    assert!(second["next_cursor"].is_null());
}

#[tokio::test]
async fn a_list_needs_a_name_and_a_known_opt_in_mode() {
    let app = spawn_app().await;
    let response = app.post("/api/v1/lists", &json!({"name": "", "opt_in": "triple"})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["name", "opt_in"]);
    let response = app.post("/api/v1/lists", &json!({"description": "no name"})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(problem["errors"], json!([{"field": "name", "message": "is required"}]));
}

#[tokio::test]
async fn a_list_counts_its_members() {
    let app = spawn_app().await;
    let list = app.create_list("Counted").await;
    let other = app.create_list("Other").await;
    for email in ["a@example.org", "b@example.org"] {
        app.create_contact(json!({"email": email, "lists": [list]})).await;
    }
    app.create_contact(json!({"email": "c@example.org", "lists": [other]})).await;
    let (status, count) = app.send(app.get(&format!("/api/v1/lists/{list}/count"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count, json!({"list_id": list, "members": 2}));
    let (status, _) = app.send(app.get(&format!("/api/v1/lists/{}/count", uuid::Uuid::now_v7()))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
