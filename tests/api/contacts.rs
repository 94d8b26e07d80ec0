//! `/api/v1/contacts`: CRUD, normalisation, filters, pagination, duplicates, concurrency.

use std::collections::BTreeSet;

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, fields_at_fault, spawn_app};

async fn all_pages(app: &TestApp, query: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/contacts?{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, body) = app.send(app.get(&path)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        items.extend(body["items"].as_array().unwrap().iter().cloned());
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (items, pages),
        }
    }
}

fn emails(items: &[Value]) -> BTreeSet<String> {
    items.iter().map(|c| c["email"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_contact_is_created_normalised_and_read_back() {
    let app = spawn_app().await;
    let list = app.create_list("Newsletter").await;
    let response = app
        .post(
            "/api/v1/contacts",
            &json!({
                "email": "  Marie.Curie@Example.ORG ",
                "attributes": {"first_name": "Marie", "prizes": 2},
                "tags": ["Physics", "chemistry", "physics"],
                "lists": [list],
                "company": "Institut du Radium",
                "country": "fr"
            }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/contacts/{}", created["id"].as_str().unwrap()));
    assert_eq!(created["email"], "Marie.Curie@example.org");
    assert_eq!(created["tags"], json!(["chemistry", "physics"]));
    assert_eq!(created["lists"], json!([list]));
    assert_eq!(created["country"], "FR");
    assert_eq!(created["status"], "active");
    assert_eq!(created["is_role_address"], false);
    assert_eq!(created["attributes"], json!({"first_name": "Marie", "prizes": 2}));
    assert_eq!(created["created_at"], created["updated_at"]);

    let (status, read) = app.send(app.get(&location)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, created);
}

#[tokio::test]
async fn role_addresses_are_detected() {
    let app = spawn_app().await;
    for (email, role) in [
        ("info@acme.example", true),
        ("Contact@acme.example", true),
        ("sales+eu@acme.example", true),
        ("jane@acme.example", false),
    ] {
        let contact = app.create_contact(json!({"email": email})).await;
        assert_eq!(contact["is_role_address"], role, "{email}");
    }
}

#[tokio::test]
async fn a_duplicate_email_gets_409_whatever_its_case() {
    let app = spawn_app().await;
    let first = app.create_contact(json!({"email": "dup@example.org"})).await;
    for email in ["dup@example.org", " DUP@Example.org"] {
        let response = app.post("/api/v1/contacts", &json!({"email": email})).send().await.unwrap();
        let problem = assert_problem(response, StatusCode::CONFLICT, "conflict").await;
        assert!(problem["detail"].as_str().unwrap().contains(first["id"].as_str().unwrap()), "{problem}");
    }
    // Changing another contact to that address is a conflict too.
    let other = app.create_contact(json!({"email": "other@example.org"})).await;
    let response = app
        .patch(&format!("/api/v1/contacts/{}", other["id"].as_str().unwrap()), &json!({"email": "Dup@example.org"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn a_patch_merges_attributes_and_replaces_tags_and_lists() {
    let app = spawn_app().await;
    let news = app.create_list("News").await;
    let offers = app.create_list("Offers").await;
    let contact = app
        .create_contact(json!({
            "email": "p@example.org",
            "attributes": {"name": {"first": "Ada", "last": "Lovelace"}, "age": 36, "city": "London"},
            "tags": ["a", "b"],
            "lists": [news],
            "company": "Analytical Engines",
        }))
        .await;
    let id = contact["id"].as_str().unwrap();
    let (status, changed) = app
        .send(
            app.admin(app.client.patch(app.url(&format!("/api/v1/contacts/{id}"))))
                .header("content-type", "application/merge-patch+json")
                .body(
                    json!({
                        "attributes": {"name": {"last": "King"}, "age": null, "title": "Countess"},
                        "tags": ["c"],
                        "lists": [offers],
                        "company": null,
                        "country": "GB"
                    })
                    .to_string(),
                ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        changed["attributes"],
        json!({"name": {"first": "Ada", "last": "King"}, "city": "London", "title": "Countess"})
    );
    assert_eq!(changed["tags"], json!(["c"]));
    assert_eq!(changed["lists"], json!([offers]));
    assert_eq!(changed["company"], Value::Null);
    assert_eq!(changed["country"], "GB");
    assert_eq!(changed["email"], "p@example.org");
    assert_eq!(changed["created_at"], contact["created_at"]);
    assert_ne!(changed["updated_at"], contact["updated_at"]);

    let (_, read) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(read, changed);
}

#[tokio::test]
async fn a_deleted_contact_is_gone() {
    let app = spawn_app().await;
    let contact = app.create_contact(json!({"email": "gone@example.org", "tags": ["x"]})).await;
    let path = format!("/api/v1/contacts/{}", contact["id"].as_str().unwrap());
    let (status, body) = app.send(app.delete(&path)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(body, Value::Null);
    assert_problem(app.get(&path).send().await.unwrap(), StatusCode::NOT_FOUND, "not-found").await;
    assert_problem(app.delete(&path).send().await.unwrap(), StatusCode::NOT_FOUND, "not-found").await;
    // The address is free again.
    app.create_contact(json!({"email": "gone@example.org"})).await;
}

#[tokio::test]
async fn listing_pages_through_every_contact_once() {
    let app = spawn_app().await;
    let mut expected = BTreeSet::new();
    for i in 0..23 {
        let email = format!("page{i:02}@example.org");
        app.create_contact(json!({"email": email})).await;
        expected.insert(email);
    }
    let (items, pages) = all_pages(&app, "limit=5").await;
    assert_eq!(pages, 5);
    assert_eq!(items.len(), 23);
    assert_eq!(emails(&items), expected);
    // Oldest first.
    assert_eq!(items[0]["email"], "page00@example.org");
    assert_eq!(items[22]["email"], "page22@example.org");

    let (_, first) = app.send(app.get("/api/v1/contacts")).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 23);
    assert!(first["next_cursor"].is_null());
}

#[tokio::test]
async fn listing_filters_by_list_tag_status_and_email_text() {
    let app = spawn_app().await;
    let news = app.create_list("News").await;
    let offers = app.create_list("Offers").await;
    for i in 0..7 {
        app.create_contact(json!({"email": format!("news{i}@alpha.example"), "lists": [news], "tags": ["vip"]})).await;
    }
    for i in 0..4 {
        app.create_contact(json!({"email": format!("offer{i}@beta.example"), "lists": [offers], "tags": ["trial"]}))
            .await;
    }
    let left = app.create_contact(json!({"email": "left_1%@beta.example", "lists": [news, offers]})).await;

    let (items, pages) = all_pages(&app, &format!("list={news}&limit=3")).await;
    assert_eq!(items.len(), 8);
    assert_eq!(pages, 3);
    assert!(items.iter().all(|c| c["lists"].as_array().unwrap().contains(&json!(news))));

    let (items, _) = all_pages(&app, "tag=trial").await;
    assert_eq!(emails(&items), (0..4).map(|i| format!("offer{i}@beta.example")).collect());
    let (items, _) = all_pages(&app, "tag=VIP&limit=2").await;
    assert_eq!(items.len(), 7);

    let (items, _) = all_pages(&app, "email=BETA.example").await;
    assert_eq!(items.len(), 5);
    // LIKE wildcards in the text are taken literally.
    let (items, _) = all_pages(&app, "email=_1%25").await;
    assert_eq!(emails(&items), BTreeSet::from(["left_1%@beta.example".to_owned()]));

    // Status is the server's to change; set one as an unsubscribe would.
    let left_id = left["id"].as_str().unwrap().to_owned();
    app.state
        .db
        .write(move |conn| {
            use consento::storage::schema::contacts;
            diesel::update(contacts::table.find(left_id)).set(contacts::status.eq("unsubscribed")).execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
    let (items, _) = all_pages(&app, "status=unsubscribed").await;
    assert_eq!(emails(&items), BTreeSet::from(["left_1%@beta.example".to_owned()]));
    let (items, _) = all_pages(&app, "status=active").await;
    assert_eq!(items.len(), 11);

    // Filters combine.
    let (items, _) = all_pages(&app, &format!("list={offers}&status=active&email=offer3")).await;
    assert_eq!(emails(&items), BTreeSet::from(["offer3@beta.example".to_owned()]));
}

#[tokio::test]
async fn bad_filters_and_cursors_are_named() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/contacts?status=gone&list=nope&tag=a%20b").send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["list", "tag", "status"]);

    for query in ["limit=0", "limit=201", "limit=many", "cursor=bm90IGEgY3Vyc29y", "cursor="] {
        let response = app.get(&format!("/api/v1/contacts?{query}")).send().await.unwrap();
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        let field = query.split('=').next().unwrap();
        assert_eq!(fields_at_fault(&problem), [field], "{query}: {problem}");
    }
    // A cursor is an id, as the document says: any UUID is a place to start after.
    let (status, page) = app.send(app.get(&format!("/api/v1/contacts?cursor={}", uuid::Uuid::now_v7()))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"], json!([]));
}

#[tokio::test]
async fn invalid_fields_are_all_named() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/v1/contacts",
            &json!({
                "email": "not an address",
                "attributes": [1, 2],
                "tags": ["ok", "not ok!"],
                "lists": ["not-a-uuid"],
                "country": "Neverland",
                "company": "bad\u{7}name"
            }),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["email", "attributes", "tags[1]", "lists[0]", "company", "country"]);
    let (_, listed) = app.send(app.get("/api/v1/contacts")).await;
    assert_eq!(listed["items"], json!([]), "nothing may be stored from a refused request");
}

#[tokio::test]
async fn an_unknown_list_is_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    let missing = uuid::Uuid::now_v7().to_string();
    let response =
        app.post("/api/v1/contacts", &json!({"email": "x@example.org", "lists": [missing]})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["lists"]);
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains(&missing));
    let (_, listed) = app.send(app.get("/api/v1/contacts")).await;
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn fields_the_server_owns_are_refused() {
    let app = spawn_app().await;
    // Sent as text: the faults are named in the body's order.
    let response = app
        .admin(app.client.post(app.url("/api/v1/contacts")))
        .header("content-type", "application/json")
        .body(r#"{"email": "x@example.org", "id": "mine", "status": "active", "created_at": "2020-01-01T00:00:00Z"}"#)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["id", "status", "created_at"]);
    assert_eq!(problem["errors"][0]["message"], "is set by the server and cannot be written");

    let contact = app.create_contact(json!({"email": "y@example.org"})).await;
    let response = app
        .patch(&format!("/api/v1/contacts/{}", contact["id"].as_str().unwrap()), &json!({"status": "unsubscribed"}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["status"]);
}

#[tokio::test]
async fn fifty_concurrent_creations_all_succeed() {
    let app = spawn_app().await;
    let list = app.create_list("Busy").await;
    let requests = (0..50).map(|i| {
        app.post("/api/v1/contacts", &json!({"email": format!("c{i}@example.org"), "tags": ["load"], "lists": [list]}))
            .send()
    });
    let responses = futures_util::future::join_all(requests).await;
    for response in responses {
        let response = response.unwrap();
        let status = response.status();
        assert_eq!(status, StatusCode::CREATED, "{}", response.text().await.unwrap());
    }
    let (items, _) = all_pages(&app, &format!("list={list}&limit=200")).await;
    assert_eq!(items.len(), 50);
}

#[tokio::test]
async fn attributes_may_be_left_out_but_never_be_null() {
    let app = spawn_app().await;
    let contact = app.create_contact(json!({"email": "bare@example.org"})).await;
    assert_eq!(contact["attributes"], json!({}));
    let id = contact["id"].as_str().unwrap();
    let (status, changed) = app.send(app.patch(&format!("/api/v1/contacts/{id}"), &json!({"tags": ["x"]}))).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["attributes"], json!({}));

    // The document types attributes as an object: null is refused, in a patch and at creation.
    let response = app.patch(&format!("/api/v1/contacts/{id}"), &json!({"attributes": null})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["attributes"]);
    let response =
        app.post("/api/v1/contacts", &json!({"email": "null@example.org", "attributes": null})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["attributes"]);
}
