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
    assert_eq!(spec["paths"]["/api/v1/auth/token"]["post"]["security"], serde_json::json!([]));
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

#[tokio::test]
async fn the_spec_types_what_generated_clients_send_and_receive() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let schemas = &spec["components"]["schemas"];
    let token = &spec["paths"]["/api/v1/auth/token"]["post"]["responses"]["401"];
    assert_eq!(token["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem");
    for name in ["ContactRequest", "ContactPatch"] {
        let required = schemas[name]["required"].as_array().cloned().unwrap_or_default();
        assert!(!required.contains(&Value::from("attributes")), "{name} requires attributes");
        assert_eq!(schemas[name]["properties"]["attributes"]["type"], "object", "{name}");
    }
    let upload = &spec["paths"]["/api/v1/imports/{id}/file"]["put"]["requestBody"]["content"];
    for content_type in ["application/octet-stream", "text/csv", "application/x-ndjson"] {
        let schema = &upload[content_type]["schema"];
        assert_eq!(schema["$ref"], "#/components/schemas/FileBody", "{content_type}");
    }
    assert_eq!((&schemas["FileBody"]["type"], &schemas["FileBody"]["format"]), (&"string".into(), &"binary".into()));
    // Any JSON value: no type at all.
    assert!(schemas["DryRunResult"]["properties"]["result"].get("type").is_none());
    assert!(schemas["AnswerRequest"]["properties"]["answer"].get("type").is_none());
}

#[tokio::test]
async fn a_real_form_response_holds_to_its_schema() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let schema = &spec["components"]["schemas"]["FormResponse"];
    assert!(schema.get("allOf").is_none() && schema.get("additionalProperties").is_none(), "{schema}");
    let app = spawn_app().await;
    let (form, _) = app.form_on_new_list("schema", "double", serde_json::json!({})).await;
    let properties = schema["properties"].as_object().unwrap();
    for (key, value) in form.as_object().unwrap() {
        let property = properties.get(key).unwrap_or_else(|| panic!("{key} is not in FormResponse"));
        let types: Vec<&str> = match &property["type"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        assert!(types.contains(&actual), "{key} is {actual}, the schema says {types:?}");
    }
    for key in schema["required"].as_array().unwrap() {
        assert!(form.get(key.as_str().unwrap()).is_some(), "the response lacks {key}");
    }
}

#[tokio::test]
async fn the_spec_lists_the_values_the_server_accepts() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let schemas = &spec["components"]["schemas"];
    let enum_of = |schema: &Value| -> Vec<String> {
        let schema =
            schema.get("oneOf").and_then(|one| one.as_array()?.iter().find(|s| s["type"] != "null")).unwrap_or(schema);
        schema["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("no enum in {schema}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(enum_of(&schemas["UserRequest"]["properties"]["role"]), ["admin", "editor", "viewer"]);
    assert_eq!(enum_of(&schemas["FormBody"]["properties"]["opt_in"]), ["double", "single", "passive"]);
    assert_eq!(enum_of(&schemas["ListPatch"]["properties"]["opt_in"]), ["double", "single"]);
    assert_eq!(enum_of(&schemas["ImportRequest"]["properties"]["format"]), ["csv", "ndjson"]);
    let parameter = |path: &str, name: &str| -> Value {
        spec["paths"][path]["get"]["parameters"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["schema"].clone()
    };
    assert_eq!(enum_of(&parameter("/api/v1/contacts", "status")), ["active", "unsubscribed", "bounced", "complained"]);
    assert_eq!(parameter("/api/v1/contacts", "cursor")["format"], "uuid");
}

#[tokio::test]
async fn what_a_post_creates_links_to_the_operations_on_it() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let links = &spec["paths"]["/api/v1/contacts"]["post"]["responses"]["201"]["links"];
    for operation in ["get_contact", "update_contact", "delete_contact"] {
        assert_eq!(links[operation]["operationId"], operation, "{links}");
        assert_eq!(links[operation]["parameters"]["id"], "$response.body#/id");
    }
    // Every link names an operation of the document.
    let ids: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str())
        .collect();
    let named: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .flat_map(|operation| operation["responses"].as_object().into_iter().flat_map(|r| r.values()))
        .flat_map(|response| response["links"].as_object().into_iter().flat_map(|l| l.values()))
        .map(|link| link["operationId"].as_str().unwrap())
        .collect();
    assert!(named.len() > 30, "{named:?}");
    assert!(named.iter().all(|id| ids.contains(id)), "{named:?}");
}
