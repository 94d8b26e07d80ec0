//! The OpenAPI document: served, committed, and in step.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[tokio::test]
async fn the_committed_spec_is_what_the_server_serves() {
    let app = spawn_app().await;
    let (status, served) = app.send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(status, StatusCode::OK);
    let committed: Value = serde_json::from_str(COMMITTED).unwrap();
    assert!(
        committed == served && COMMITTED == consento::http::openapi_json(),
        "openapi/openapi.json is stale: regenerate it with `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn the_spec_documents_every_endpoint_with_its_errors_and_security() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let create = &spec["paths"]["/api/v1/contacts"]["post"];
    for status in ["201", "400", "401", "403", "409", "413", "415", "422", "500"] {
        assert!(create["responses"][status].is_object(), "POST /api/v1/contacts lacks {status}");
    }
    assert_eq!(
        create["responses"]["422"]["content"]["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/Problem"
    );
    assert_eq!(create["security"][0]["bearer"], serde_json::json!([]));
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert!(spec["paths"]["/api/v1/auth/token"]["post"]["security"].is_null());
    for path in ["/healthz", "/readyz", "/metrics", "/api/v1/lists/{id}", "/api/v1/api-keys/{id}", "/api/v1/users/{id}"]
    {
        assert!(spec["paths"][path].is_object(), "{path} is not documented");
    }
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_server_itself() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    let response = app.client.get(app.url("/docs/swagger-ui-bundle.js")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().len() > 100_000, "the Swagger UI bundle is vendored");
}
