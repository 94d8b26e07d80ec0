//! Rhai plugins: hostile scripts are stopped with a clear error while the server carries
//! on; plugins are stored with versions; validation and dry runs.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app, spawn_app_with};

async fn evaluate(app: &TestApp, script: &str) -> reqwest::Response {
    app.post("/api/v1/segments/evaluate", &json!({"script": script})).send().await.unwrap()
}

/// The message of a script error, which names the script, line and column.
async fn script_error(response: reqwest::Response) -> String {
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(problem["errors"][0]["field"], "source", "{problem}");
    problem["errors"][0]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn hostile_scripts_are_stopped_within_their_deadline_and_the_server_carries_on() {
    // No practical operation limit here, so that the wall-clock deadline is what stops the loop.
    let app = spawn_app_with(|settings| {
        settings.script_deadline_ms = 2000;
        settings.script_max_operations = 1 << 40;
    })
    .await;
    app.create_contact(json!({"email": "target@example.org"})).await;

    // An endless loop runs for its whole deadline; other requests are answered meanwhile.
    let started = Instant::now();
    let looping = async {
        let response = evaluate(&app, "loop { }\ntrue").await;
        (response, started.elapsed())
    };
    let health = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let response = app.client.get(app.url("/healthz")).send().await.unwrap();
        (response.status(), started.elapsed())
    };
    let ((looping, loop_done), (health_status, health_done)) = tokio::join!(looping, health);
    assert_eq!(health_status, StatusCode::OK);
    assert!(health_done < loop_done, "the health check waited for the script ({health_done:?} vs {loop_done:?})");
    assert!(loop_done >= Duration::from_millis(1900), "stopped before its deadline: {loop_done:?}");
    assert!(loop_done < Duration::from_secs(10), "stopped only after {loop_done:?}");
    let message = script_error(looping).await;
    assert!(message.starts_with("script segment, line 1"), "{message}");
    assert!(message.contains("stopped: took longer than 2000 ms"), "{message}");

    let cases = [
        ("fn down(n) { down(n + 1) }\ndown(0)", "line 2"),
        ("let s = \"x\";\nloop { s += s; }", "line 2"),
        ("let a = [];\nloop { a.push(1); }", "line 2"),
        ("let m = #{};\nlet i = 0;\nloop { m[`k${i}`] = i; i += 1; }", "line 3"),
    ];
    for (script, line) in cases {
        let message = script_error(evaluate(&app, script).await).await;
        assert!(message.starts_with(&format!("script segment, {line}")), "{script}: {message}");
    }
}

#[tokio::test]
async fn eval_and_imports_from_outside_the_plugins_folder_are_refused() {
    let app = spawn_app().await;
    app.create_contact(json!({"email": "target@example.org"})).await;
    // With the default limits an endless loop meets the operation limit first.
    let message = script_error(evaluate(&app, "let n = 0;\nloop { n += 1; }").await).await;
    assert!(message.starts_with("script segment, line 2") && message.contains("stopped"), "{message}");

    let message = script_error(evaluate(&app, "eval(\"true\")").await).await;
    assert!(message.contains("line 1, column 1"), "{message}");

    for path in ["../../../etc/passwd", "/etc/passwd", "recent-professionals/../../Cargo"] {
        let script = format!("import \"{path}\" as secret;\ntrue");
        let message = script_error(evaluate(&app, &script).await).await;
        assert!(message.contains("line 1") && message.contains("plugins folder"), "{path}: {message}");
    }
}

#[tokio::test]
async fn a_script_that_does_not_compile_is_refused_with_its_line_and_column() {
    let app = spawn_app().await;
    let response = app
        .post("/api/v1/plugins", &json!({"name": "broken", "source": "fn matches(contact) {\n  contact.country ==\n}"}))
        .send()
        .await
        .unwrap();
    let message = script_error(response).await;
    assert!(message.starts_with("script broken, line 3, column 1"), "{message}");

    let response =
        app.post("/api/v1/plugins/validate", &json!({"name": "draft", "source": "let x = ;"})).send().await.unwrap();
    let message = script_error(response).await;
    assert!(message.starts_with("script draft, line 1, column 9"), "{message}");

    let (status, valid) = app
        .send(app.post(
            "/api/v1/plugins/validate",
            &json!({"source": "fn matches(contact) { true }\nfn helper(a, b) { a }"}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(valid["hooks"], json!(["matches"]));
    assert_eq!(valid["functions"], json!(["helper(a, b)", "matches(contact)"]));
}

#[tokio::test]
async fn plugins_are_versioned_and_listed_with_the_folders_own() {
    let app = spawn_app().await;
    let (status, created) = app
        .send(app.post(
            "/api/v1/plugins",
            &json!({"name": "french", "description": "People in France", "source": "fn matches(contact) { contact.country == \"FR\" }"}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], "1");
    assert_eq!(created["hooks"], json!(["matches"]));
    assert!(created["updated_by"].as_str().unwrap().starts_with("user:"));

    let (status, replaced) = app
        .send(
            app.admin(app.client.put(app.url("/api/v1/plugins/french")))
                .json(&json!({"source": "fn matches(contact) { contact.country == \"BE\" }"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["version"], "2");
    assert_eq!(replaced["description"], "People in France");
    let (_, versions) = app.send(app.get("/api/v1/plugins/french/versions")).await;
    assert_eq!(versions["items"].as_array().unwrap().len(), 2);
    assert!(versions["items"][0]["source"].as_str().unwrap().contains("FR"));

    let (_, listed) = app.send(app.get("/api/v1/plugins")).await;
    let names: Vec<&str> = listed["items"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"french") && names.contains(&"recent-professionals"), "{names:?}");
    let (_, folder) = app.send(app.get("/api/v1/plugins/recent-professionals")).await;
    assert_eq!(folder["origin"], "folder");
    assert_eq!(folder["settings"]["max_days"], 365);

    let response = app.post("/api/v1/plugins", &json!({"name": "french", "source": "true"})).send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
    let response = app.delete("/api/v1/plugins/recent-professionals").send().await.unwrap();
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
    let (status, _) = app.send(app.delete("/api/v1/plugins/french")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let editor = app.user_token("editor").await;
    let response = app
        .client
        .post(app.url("/api/v1/plugins"))
        .bearer_auth(&editor)
        .json(&json!({"name": "mine", "source": "true"}))
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_dry_run_answers_the_result_the_operations_and_the_time_and_changes_nothing() {
    let app = spawn_app().await;
    app.create_contact(json!({"email": "info@acme.example", "country": "FR", "tags": ["vip"]})).await;
    app.create_contact(json!({"email": "jane@acme.example", "country": "DE"})).await;
    let source = "fn matches(contact) { contact.country == \"FR\" && contact.has_tag(\"vip\") }\n\
                  fn double(x) { #{ value: x.n * 2, label: `n=${x.n}` } }";

    let (status, run) = app
        .send(app.post("/api/v1/plugins/dry-run", &json!({"source": source, "hook": "double", "args": [{"n": 21}]})))
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["results"][0]["result"], json!({"value": 42, "label": "n=21"}));
    assert!(run["results"][0]["operations"].as_u64().unwrap() > 0);
    assert!(run["results"][0]["elapsed_ms"].as_f64().unwrap() >= 0.0);

    let (status, run) = app
        .send(app.post("/api/v1/plugins/dry-run", &json!({"source": source, "hook": "matches", "contacts": 10})))
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    let verdicts: Vec<Value> = run["results"].as_array().unwrap().iter().map(|r| r["result"].clone()).collect();
    assert_eq!(verdicts, [json!(true), json!(false)]);

    let response = app
        .post(
            "/api/v1/plugins/dry-run",
            &json!({"source": "fn boom(x) { x.missing.deeper }", "hook": "boom", "args": [1]}),
        )
        .send()
        .await
        .unwrap();
    let message = script_error(response).await;
    assert!(message.starts_with("script script, line 1"), "{message}");
}

/// Stores `source` as a plugin and a segment bound to it; answers what counting it answers.
async fn count_with_plugin(app: &TestApp, name: &str, source: &str) -> reqwest::Response {
    let (status, plugin) = app.send(app.post("/api/v1/plugins", &json!({"name": name, "source": source}))).await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let (status, segment) = app.send(app.post("/api/v1/segments", &json!({"name": name, "plugin": name}))).await;
    assert_eq!(status, StatusCode::CREATED, "{segment}");
    app.get(&format!("/api/v1/segments/{}/count", segment["id"].as_str().unwrap())).send().await.unwrap()
}

#[tokio::test]
async fn a_script_that_calls_sleep_fails_at_once_naming_the_script_and_line() {
    let app = spawn_app().await;
    app.create_contact(json!({"email": "target@example.org"})).await;
    let started = Instant::now();

    // In a segment's hook, as the abuse was found: `loop { sleep(1); }` would never end.
    let response = count_with_plugin(&app, "sleepy", "fn matches(contact) {\n  loop { sleep(1); }\n}").await;
    let message = script_error(response).await;
    assert!(message.starts_with("script sleepy, line 2, column 10"), "{message}");
    assert!(message.contains("sleep() is not available"), "{message}");

    // Inline, with a float, and by name through a function pointer.
    for script in ["let n = 1;\nsleep(0.5);\ntrue", "let f = Fn(\"sleep\");\nf.call(1);\ntrue"] {
        let message = script_error(evaluate(&app, script).await).await;
        assert!(message.starts_with("script segment, line 2"), "{script}: {message}");
        assert!(message.contains("sleep() is not available"), "{script}: {message}");
    }
    assert!(started.elapsed() < Duration::from_secs(3), "the scripts slept: {:?}", started.elapsed());
}

#[tokio::test]
async fn a_hook_that_loops_stops_at_its_deadline_naming_the_script_line_and_column() {
    let app = spawn_app_with(|settings| {
        settings.script_deadline_ms = 1000;
        settings.script_max_operations = 1 << 40;
    })
    .await;
    app.create_contact(json!({"email": "target@example.org"})).await;
    let started = Instant::now();
    let response =
        count_with_plugin(&app, "looping", "fn matches(contact) {\n  let n = 0;\n  loop {\n    n += 1;\n  }\n}").await;
    let elapsed = started.elapsed();
    let message = script_error(response).await;
    // The last statement reached: the loop, or the assignment inside it.
    assert!(
        message.starts_with("script looping, line 3, column 3:")
            || message.starts_with("script looping, line 4, column 7:"),
        "{message}"
    );
    assert!(message.contains("stopped: took longer than 1000 ms"), "{message}");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(6), "{elapsed:?}");
}

#[tokio::test]
async fn limits_met_inside_a_hook_name_the_line_and_column() {
    // The limits under test are operations, sizes and depth: a deadline far off keeps a slow
    // machine from meeting it first.
    let app = spawn_app_with(|settings| {
        settings.script_max_operations = 100_000;
        settings.script_deadline_ms = 30_000;
    })
    .await;
    app.create_contact(json!({"email": "target@example.org"})).await;
    let cases = [
        (
            "counting",
            "fn matches(contact) {\n  let n = 0;\n  while true {\n    n += 1;\n  }\n}",
            "more than 100000 operations",
        ),
        ("growing", "fn matches(contact) {\n  let s = \"x\";\n  loop { s += s; }\n}", "too large"),
        ("deep", "fn down(n) { down(n + 1) }\nfn matches(contact) {\n  down(0)\n}", "Stack overflow"),
    ];
    for (name, source, what) in cases {
        let message = script_error(count_with_plugin(&app, name, source).await).await;
        let prefix = format!("script {name}, line ");
        assert!(message.starts_with(&prefix), "{name}: {message}");
        assert!(message.contains(", column ") && message.contains(what), "{name}: {message}");
        assert!(!message.starts_with(&format!("{prefix}1, column 1:")), "{name} names no real place: {message}");
    }
}

#[tokio::test]
async fn scripts_that_run_to_their_deadline_hold_no_database_connection() {
    // Two connections, four scripts running at once: were each to hold a connection while
    // it runs, nothing else could read until they end.
    let app = spawn_app_with(|settings| {
        settings.database_pool_size = 2;
        settings.script_deadline_ms = 3000;
        settings.script_max_operations = 1 << 40;
    })
    .await;
    app.create_contact(json!({"email": "target@example.org"})).await;
    let started = Instant::now();
    let scripts = futures_util::future::join_all((0..4).map(|_| evaluate(&app, "loop { }\ntrue")));
    let read = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, contacts) = app.send(app.get("/api/v1/contacts")).await;
        (status, contacts, started.elapsed())
    };
    let (answers, (status, contacts, read_done)) = tokio::join!(scripts, read);
    assert_eq!(status, StatusCode::OK, "{contacts}");
    assert_eq!(contacts["items"][0]["email"], "target@example.org");
    assert!(read_done < Duration::from_millis(2500), "the read waited for the scripts: {read_done:?}");
    for answer in answers {
        assert!(script_error(answer).await.contains("took longer than 3000 ms"));
    }
}

#[tokio::test]
async fn a_send_policy_that_runs_to_its_deadline_holds_no_database_connection() {
    // As above, for a campaign's audience: two connections, four audience checks whose
    // send policy loops until the deadline stops it.
    let app = spawn_app_with(|settings| {
        settings.database_pool_size = 2;
        settings.script_deadline_ms = 3000;
        settings.script_max_operations = 1 << 40;
    })
    .await;
    let (_, list) = app.form_on_new_list("stall", "single", json!({})).await;
    let response = app.submit_form("stall", &[("email", "target@example.org"), ("consent", &list)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (status, plugin) = app
        .send(app.post(
            "/api/v1/plugins",
            &json!({"name": "stalling-policy", "source": "fn eligible(contact, campaign) { loop { } }"}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let (status, campaign) = app
        .send(app.post(
            "/api/v1/campaigns",
            &json!({"name": "Stalled", "subject": "News", "text_body": "Leave: {{ unsubscribe_url }}",
                    "lists": [list], "kind": "b2c", "policy_plugin": "stalling-policy"}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{campaign}");
    let path = format!("/api/v1/campaigns/{}/audience", campaign["id"].as_str().unwrap());
    let started = Instant::now();
    let checks = futures_util::future::join_all((0..4).map(|_| app.post(&path, &json!({})).send()));
    let read = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, contacts) = app.send(app.get("/api/v1/contacts")).await;
        (status, contacts, started.elapsed())
    };
    let (answers, (status, contacts, read_done)) = tokio::join!(checks, read);
    assert_eq!(status, StatusCode::OK, "{contacts}");
    assert_eq!(contacts["items"][0]["email"], "target@example.org");
    assert!(read_done < Duration::from_millis(2500), "the read waited for the send policy: {read_done:?}");
    for answer in answers {
        let problem = assert_problem(answer.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert!(problem.to_string().contains("took longer than 3000 ms"), "{problem}");
    }
}
