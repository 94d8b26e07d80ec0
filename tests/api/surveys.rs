//! `/api/v1/surveys` and `/s/{token}`: a survey after signup, branching by script, whose
//! last answer updates the contact.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, fields_at_fault, spawn_app, spawn_app_with};

/// Branches: dog owners are asked the size of their dog; everyone the frequency.
pub const BRANCHING: &str = r#"
fn next_question(answers, survey) {
    if !answers.contains("pets") { return "pets"; }
    if answers.pets == "dogs" && !answers.contains("dog_size") { return "dog_size"; }
    if !answers.contains("frequency") { return "frequency"; }
    ()
}

fn on_complete(contact, answers) {
    let tags = [];
    if answers.pets == "dogs" { tags.push("dog-owner"); }
    #{
        attributes: #{ pet: answers.pets, dog_size: answers.dog_size, mails_per_month: answers.frequency },
        tags: tags,
    }
}
"#;

/// A plugin with the branching hooks and a survey that uses it: the survey's id.
pub async fn branching_survey(app: &TestApp) -> String {
    let (status, plugin) =
        app.send(app.post("/api/v1/plugins", &json!({"name": "pet-survey", "source": BRANCHING}))).await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let body = json!({
        "name": "Pets",
        "title": "A little about you",
        "intro": "Three questions at most.",
        "plugin": "pet-survey",
        "questions": [
            {"id": "pets", "text": "Which pets do you have?", "type": "single_choice", "required": true, "options": ["cats", "dogs", "none"]},
            {"id": "dog_size", "text": "How big is your dog?", "type": "single_choice", "options": ["small", "large"]},
            {"id": "frequency", "text": "How many mails a month would you like?", "type": "rating", "required": true},
        ],
    });
    let (status, survey) = app.send(app.post("/api/v1/surveys", &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{survey}");
    survey["id"].as_str().unwrap().to_owned()
}

async fn get_json(app: &TestApp, url: &str) -> (StatusCode, Value) {
    let response = app.client.get(url).header("accept", "application/json").send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn answer(app: &TestApp, url: &str, question: &str, answer: Value) -> (StatusCode, Value) {
    let response = app.client.post(url).json(&json!({"question_id": question, "answer": answer})).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_json_survey_after_signup_branches_checks_answers_and_updates_the_contact() {
    let app = spawn_app().await;
    let survey = branching_survey(&app).await;
    let (_, list) = app.form_on_new_list("pets", "single", json!({"survey_id": survey})).await;
    let response = app
        .client
        .post(app.url("/f/pets"))
        .json(&json!({"email": "zoe@example.org", "consents": [list]}))
        .send()
        .await
        .unwrap();
    let signup: Value = response.json().await.unwrap();
    assert_eq!(signup["status"], "subscribed");
    let url = signup["survey_url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{}/s/", app.address)), "{url}");

    let (status, state) = get_json(&app, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((state["question"]["id"].as_str(), state["completed"].as_bool()), (Some("pets"), Some(false)));
    assert_eq!(state["question"]["options"], json!(["cats", "dogs", "none"]));

    let (status, problem) = answer(&app, &url, "pets", json!("fish")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields_at_fault(&problem), ["answer"]);
    let (status, problem) = answer(&app, &url, "frequency", json!(3)).await;
    assert_eq!((status, fields_at_fault(&problem)), (StatusCode::UNPROCESSABLE_ENTITY, vec!["question_id".to_owned()]));

    let (status, state) = answer(&app, &url, "pets", json!("cats")).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["question"]["id"], "frequency", "no dog: the dog question is skipped");
    let (status, problem) = answer(&app, &url, "frequency", json!(6)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["message"], "must be a whole number from 1 to 5");
    let (_, state) = answer(&app, &url, "frequency", json!(2)).await;
    assert_eq!(state["completed"], true, "{state}");
    assert_eq!(state["answers"], json!({"pets": "cats", "frequency": 2}));

    let contact = app.contact_by_email("zoe@example.org").await.unwrap();
    assert_eq!(contact["attributes"], json!({"pet": "cats", "mails_per_month": 2}));
    assert_eq!(contact["tags"], json!([]));
    // Answers go with the person's data export, and with erasure.
    let id = contact["id"].as_str().unwrap();
    let (_, export) = app.send(app.get(&format!("/api/v1/contacts/{id}/export"))).await;
    assert_eq!(export["survey_responses"][0]["answers"], json!({"pets": "cats", "frequency": 2}));
    assert_eq!(export["survey_responses"][0]["status"], "completed");
    let (status, _) = app.send(app.delete(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, export) = app.send(app.get(&format!("/api/v1/contacts/{id}/export"))).await;
    assert_eq!(export["survey_responses"], json!([]));
    let (status, _) = get_json(&app, &url).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the link of an erased person leads nowhere");
}

#[tokio::test]
async fn surveys_are_validated_and_a_forged_link_is_not_found() {
    let app = spawn_app().await;
    let body = json!({
        "name": "S", "title": "", "plugin": "missing",
        "questions": [
            {"id": "Bad Id", "text": "Q", "type": "single_choice", "options": ["only one"]},
            {"id": "q2", "text": "Q2", "type": "essay"},
        ],
    });
    let (status, problem) = app.send(app.post("/api/v1/surveys", &body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields_at_fault(&problem), ["questions[1].type", "title", "questions[0].id", "questions[0].options"]);
    let fixed = json!({"name": "S", "title": "T", "plugin": "missing", "questions": [{"id": "q", "text": "Q", "type": "text"}]});
    let (status, problem) = app.send(app.post("/api/v1/surveys", &fixed)).await;
    assert_eq!((status, fields_at_fault(&problem)), (StatusCode::UNPROCESSABLE_ENTITY, vec!["plugin".to_owned()]));
    let response = app.client.get(app.url("/s/forged.token")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (status, problem) = get_json(&app, &app.url("/s/forged.token")).await;
    assert_eq!((status, problem["status"].as_i64()), (StatusCode::NOT_FOUND, Some(404)));
}

/// A plugin with `source` and a one-question survey that uses it; a person signed up and
/// handed its link. Answers the survey's id and the link.
async fn one_question_survey(app: &TestApp, plugin: &str, source: &str) -> (String, String) {
    let (status, body) = app.send(app.post("/api/v1/plugins", &json!({"name": plugin, "source": source}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let body = json!({
        "name": "Colour", "title": "One question", "plugin": plugin,
        "questions": [{"id": "colour", "text": "Your favourite colour?", "type": "text", "required": true}],
    });
    let (status, survey) = app.send(app.post("/api/v1/surveys", &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{survey}");
    let survey = survey["id"].as_str().unwrap().to_owned();
    let (_, list) = app.form_on_new_list(plugin, "single", json!({"survey_id": survey})).await;
    let signup: Value = app
        .client
        .post(app.url(&format!("/f/{plugin}")))
        .json(&json!({"email": format!("{plugin}@example.org"), "consents": [list]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (survey, signup["survey_url"].as_str().unwrap().to_owned())
}

async fn responses_of(app: &TestApp, survey: &str) -> Vec<Value> {
    let (status, page) = app.send(app.get(&format!("/api/v1/surveys/{survey}/responses"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_refused_completion_is_shown_to_the_admin_and_a_dry_run_refuses_it_alike() {
    let app = spawn_app().await;
    let refused = r#"fn on_complete(contact, answers) { #{ attributes: #{ colour: #{ name: answers.colour } }, tags: ["painter"] } }"#;
    let (survey, url) = one_question_survey(&app, "refused", refused).await;

    // The dry run refuses what the completion will refuse, with the same reason.
    let dry =
        json!({"plugin": "refused", "hook": "on_complete", "args": [{"email": "x@example.org"}, {"colour": "blue"}]});
    let (status, problem) = app.send(app.post("/api/v1/plugins/dry-run", &dry)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(fields_at_fault(&problem), ["result"]);
    let reason = problem["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(reason.contains("attribute colour"), "{reason}");

    let (status, state) = answer(&app, &url, "colour", json!("blue")).await;
    assert_eq!((status, state["completed"].as_bool()), (StatusCode::OK, Some(true)), "the person is done: {state}");
    let contact = app.contact_by_email("refused@example.org").await.unwrap();
    assert_eq!((contact["attributes"].clone(), contact["tags"].clone()), (json!({}), json!([])), "nothing applied");
    let responses = responses_of(&app, &survey).await;
    assert_eq!(responses.len(), 1);
    assert_eq!(
        (responses[0]["status"].as_str(), responses[0]["outcome"].as_str(), responses[0]["error"].as_str()),
        (Some("completed"), Some("refused"), Some(reason.as_str()))
    );
    assert_eq!(responses[0]["answers"], json!({"colour": "blue"}));
    assert_eq!(responses[0]["contact_id"], contact["id"]);

    // What passes the checks passes both, and the response says what was applied.
    let accepted =
        r#"fn on_complete(contact, answers) { #{ attributes: #{ colour: answers.colour }, tags: ["painter"] } }"#;
    let (survey, url) = one_question_survey(&app, "accepted", accepted).await;
    let dry =
        json!({"plugin": "accepted", "hook": "on_complete", "args": [{"email": "x@example.org"}, {"colour": "red"}]});
    let (status, run) = app.send(app.post("/api/v1/plugins/dry-run", &dry)).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    answer(&app, &url, "colour", json!("red")).await;
    let responses = responses_of(&app, &survey).await;
    assert_eq!(responses[0]["outcome"], "applied");
    assert_eq!(responses[0]["updates"], json!({"attributes": {"colour": "red"}, "tags": ["painter"]}));
    assert_eq!(responses[0]["error"], Value::Null);
    assert_eq!(app.contact_by_email("accepted@example.org").await.unwrap()["tags"], json!(["painter"]));
}

#[tokio::test]
async fn a_slow_survey_hook_holds_up_no_other_write_and_its_refusal_is_recorded() {
    let app = spawn_app_with(|s| {
        s.script_deadline_ms = 1500;
        s.script_max_operations = u64::MAX;
    })
    .await;
    let endless = "fn on_complete(contact, answers) { let n = 0; loop { n += 1; } }";
    let (survey, url) = one_question_survey(&app, "endless", endless).await;

    let client = app.client.clone();
    let clock = std::time::Instant::now();
    let answering = tokio::spawn(async move {
        let response =
            client.post(url).json(&json!({"question_id": "colour", "answer": "green"})).send().await.unwrap();
        (response.status(), clock.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let other = std::time::Instant::now();
    app.create_list("Written while the hook runs").await;
    let (other_took, other_done) = (other.elapsed(), clock.elapsed());
    let (status, answer_took) = answering.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(answer_took >= std::time::Duration::from_millis(1400), "the hook ran to its deadline: {answer_took:?}");
    assert!(other_done < answer_took, "the other write ended while the hook ran");
    assert!(other_took < std::time::Duration::from_millis(700), "the other write waited {other_took:?}");
    let responses = responses_of(&app, &survey).await;
    assert_eq!(responses[0]["outcome"], "refused");
    assert!(responses[0]["error"].as_str().unwrap().contains("took longer"), "{responses:?}");
}
