//! Templates admins write (campaigns, a form's confirmation mail) run in a sandbox: a
//! template that would render for ever is answered as its fault, at once, and the server
//! carries on.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, spawn_app};

const NESTED_LOOPS: &str =
    "Hello\n{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}{% endfor %}{% endfor %}";

async fn campaign(app: &TestApp, text_body: &str) -> String {
    let list = app.create_list(&format!("Newsletter {}", uuid::Uuid::new_v4().simple())).await;
    let (status, campaign) = app
        .send(app.post(
            "/api/v1/campaigns",
            &json!({"name": "Heavy", "subject": "S", "text_body": text_body, "lists": [list]}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{campaign}");
    campaign["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_heavy_template_preview_is_refused_quickly_while_the_server_answers() {
    let app = spawn_app().await;
    let id = campaign(&app, NESTED_LOOPS).await;
    let started = Instant::now();
    let preview = || async {
        let response = app.post(&format!("/api/v1/campaigns/{id}/preview"), &json!({})).send().await.unwrap();
        (response, started.elapsed())
    };
    let health = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let asked = Instant::now();
        let response = app.client.get(app.url("/healthz")).send().await.unwrap();
        (response.status(), asked.elapsed())
    };
    let ((first, first_done), (second, second_done), (health, health_took)) =
        tokio::join!(preview(), preview(), health);
    assert_eq!(health, StatusCode::OK);
    assert!(health_took < Duration::from_millis(500), "/healthz took {health_took:?} beside two previews");
    for (response, done) in [(first, first_done), (second, second_done)] {
        assert!(done < Duration::from_secs(4), "a preview took {done:?}");
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(problem["errors"][0]["field"], "template", "{problem}");
        let message = problem["errors"][0]["message"].as_str().unwrap();
        assert!(
            message == "text.txt: line 2: engine ran out of fuel" || message.contains("took longer than 2000 ms"),
            "{message}"
        );
    }

    // A test send of it sends nothing and says why.
    let response =
        app.post(&format!("/api/v1/campaigns/{id}/test"), &json!({"to": ["me@example.org"]})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(problem["errors"][0]["field"], "template", "{problem}");
}

#[tokio::test]
async fn a_template_whose_output_grows_past_the_limit_is_refused() {
    let app = spawn_app().await;
    let id = campaign(&app, "{% for a in range(100000) %}{{ 'x' * 100 }}{% endfor %}").await;
    let response = app.post(&format!("/api/v1/campaigns/{id}/preview"), &json!({})).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert_eq!(message, "text.txt: the output is larger than 1024 KiB");

    // An ordinary template still renders.
    let id = campaign(&app, "{% for a in range(3) %}{{ a }}{% endfor %} {{ unsubscribe_url }}").await;
    let (status, preview) = app.send(app.post(&format!("/api/v1/campaigns/{id}/preview"), &json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert!(preview["text"].as_str().unwrap().starts_with("012 http"), "{preview}");
}

#[tokio::test]
async fn a_heavy_confirmation_mail_template_is_refused_when_the_form_is_saved() {
    let app = spawn_app().await;
    let list = app.create_list("Newsletter").await;
    let started = Instant::now();
    let response = app
        .post(
            "/api/v1/forms",
            &json!({
                "slug": "heavy",
                "name": "Heavy",
                "title": "Our newsletter",
                "consents": [{"list_id": list, "text": "Send me the newsletter."}],
                "opt_in": "double",
                "confirmation_text": format!("{NESTED_LOOPS}\n{{{{ confirm_url }}}}"),
            }),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert!(started.elapsed() < Duration::from_secs(4), "the check took {:?}", started.elapsed());
    assert_eq!(problem["errors"][0]["field"], "confirmation_text", "{problem}");
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(message == "line 2: engine ran out of fuel" || message.contains("took longer than 2000 ms"), "{message}");
    let (_, forms) = app.send(app.get("/api/v1/forms")).await;
    assert_eq!(forms["items"].as_array().map(Vec::len), Some(0), "{forms}");
}
