//! The consent ledger as a verifiable log: a person's proof checked by a verifier that is
//! not consento, tampering caught and named, kept checkpoints that catch a rebuilt log,
//! and no leaf lost or given twice across crashes and instances.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::campaigns::dkim_python;
use crate::helpers::{TestApp, TestDatabase, fields_at_fault, spawn_app, spawn_app_with};

/// A contact on a new list, subscribed through a single opt-in form (one event).
async fn signed_up(app: &TestApp, email: &str) -> String {
    let slug = format!("f{}", uuid::Uuid::new_v4().simple());
    let (_, list) = app.form_on_new_list(&slug, "single", json!({})).await;
    let response = app.submit_form(&slug, &[("email", email), ("consent", &list)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.contact_by_email(email).await.unwrap()["id"].as_str().unwrap().to_owned()
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("consento-{}-{name}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, contents).unwrap();
    path
}

/// Runs the independent Python verifier; answers whether it accepted, and what it said.
fn python_verifier(args: &[&str]) -> (bool, String) {
    let output = Command::new(dkim_python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ledger_verify.py"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

fn consento(app: &TestApp) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_consento"));
    command.env("CONSENTO_DATA_DIR", &app.database.data_dir).env("CONSENTO_LOG", "off");
    if let Some(url) = app.database.url() {
        command.env("CONSENTO_DATABASE_URL", url);
    }
    command
}

async fn public_text(app: &TestApp, path: &str) -> String {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    response.text().await.unwrap()
}

async fn execute(app: &TestApp, sql: &'static str, bind: String) {
    app.state
        .db
        .write(move |conn| {
            diesel::sql_query(sql).bind::<diesel::sql_types::Text, _>(bind).execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_persons_proof_bundle_is_checked_by_an_independent_verifier() {
    let app = spawn_app().await;
    let id = signed_up(&app, "Proven.Person@Example.org").await;
    signed_up(&app, "someone.else@example.org").await;
    let (status, event) = app
        .send(app.post(
            &format!("/api/v1/contacts/{id}/consents/withdraw"),
            &json!({"purpose": app.consents_of(&id).await["current"][0]["purpose"], "method": "phone call"}),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{event}");
    let report = app.ledger_sequenced().await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["events_checked"], 3);

    // Each event's answer says its leaf.
    let events = app.consents_of(&id).await["events"].clone();
    assert_eq!(events[0]["leaf_index"], 0);
    assert_eq!(events[1]["leaf_index"], 2);

    let key = public_text(&app, "/consent/key").await;
    let checkpoint = public_text(&app, "/consent/checkpoint").await;
    assert!(checkpoint.contains("\n3\n"), "{checkpoint}");
    let (status, bundle) = app.send(app.get(&format!("/api/v1/contacts/{id}/proof"))).await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    assert_eq!(bundle["checkpoint"], checkpoint.as_str());
    assert_eq!(bundle["verifier_key"], key.trim());
    assert_eq!(bundle["events"].as_array().unwrap().len(), 2);
    let granted = &bundle["events"][0];
    assert_eq!(granted["fields"]["action"], "granted");
    assert_eq!(granted["fields"]["consent_text"], "Send me the newsletter. I can unsubscribe at any time.");
    assert_eq!(granted["personal"]["email"], "proven.person@example.org");
    assert_eq!(granted["personal"]["ip"], "127.0.0.1");
    assert_eq!(bundle["events"][1]["fields"]["method"], "phone call");

    let file = temp_file("bundle.json", bundle.to_string().as_bytes());
    let (accepted, said) = python_verifier(&["bundle", file.to_str().unwrap(), key.trim()]);
    assert!(accepted, "{said}");
    let status = consento(&app).args(["consent", "verify-bundle"]).arg(&file).status().unwrap();
    assert!(status.success());

    // A bundle whose words were changed, or that claims another key, does not hold.
    let mut forged = bundle.clone();
    forged["events"][0]["fields"]["consent_text"] = json!("Share my address with anyone.");
    let forged_file = temp_file("forged.json", forged.to_string().as_bytes());
    let (accepted, said) = python_verifier(&["bundle", forged_file.to_str().unwrap(), key.trim()]);
    assert!(!accepted && said.contains("decoded fields"), "{said}");
    let output = consento(&app).args(["consent", "verify-bundle"]).arg(&forged_file).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("leaf 0"), "{output:?}");
    let mut reindexed = bundle.clone();
    reindexed["events"][0]["leaf_index"] = json!(1);
    let reindexed_file = temp_file("reindexed.json", reindexed.to_string().as_bytes());
    let (accepted, said) = python_verifier(&["bundle", reindexed_file.to_str().unwrap(), key.trim()]);
    assert!(!accepted && said.contains("not included"), "{said}");
    let other_key = "other.example/consent+7a6e4f3c+ASoRuRqnEyLW1ZEEHQj6c52ZUi5Ypkf8nq2dvZYanLc5";
    let (accepted, _) = python_verifier(&["bundle", file.to_str().unwrap(), other_key]);
    assert!(!accepted);
    for path in [file, forged_file, reindexed_file] {
        let _ = std::fs::remove_file(path);
    }
}

#[tokio::test]
async fn a_consistency_proof_between_two_checkpoints_is_checked_by_an_independent_verifier() {
    let app = spawn_app().await;
    for i in 0..3 {
        signed_up(&app, &format!("early{i}@example.org")).await;
    }
    app.ledger_sequenced().await;
    let old = public_text(&app, "/consent/checkpoint").await;
    for i in 0..4 {
        signed_up(&app, &format!("late{i}@example.org")).await;
    }
    app.ledger_sequenced().await;
    let new = public_text(&app, "/consent/checkpoint").await;
    assert!(old.contains("\n3\n") && new.contains("\n7\n"), "{old}{new}");
    let key = public_text(&app, "/consent/key").await;

    let (status, proof) = app.send(app.get("/api/v1/consent/proof/consistency?from=3&to=7")).await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert!(!proof["hashes"].as_array().unwrap().is_empty());
    let old_file = temp_file("old.note", old.as_bytes());
    let new_file = temp_file("new.note", new.as_bytes());
    let proof_file = temp_file("proof.json", proof.to_string().as_bytes());
    let args = |proof: &Path| {
        vec![
            "consistency".to_owned(),
            old_file.to_string_lossy().into_owned(),
            new_file.to_string_lossy().into_owned(),
            proof.to_string_lossy().into_owned(),
            key.trim().to_owned(),
        ]
    };
    let run = |args: Vec<String>| python_verifier(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (accepted, said) = run(args(&proof_file));
    assert!(accepted, "{said}");
    // The proof between other sizes does not prove these two checkpoints.
    let (_, wrong) = app.send(app.get("/api/v1/consent/proof/consistency?from=2&to=7")).await;
    let wrong_file = temp_file("wrong.json", wrong.to_string().as_bytes());
    let (accepted, _) = run(args(&wrong_file));
    assert!(!accepted);

    // Inclusion proofs are served for signed trees only, and say which parameter is wrong.
    let (status, problem) = app.send(app.get("/api/v1/consent/proof/inclusion?leaf_index=0&tree_size=99")).await;
    assert_eq!((status, fields_at_fault(&problem)), (StatusCode::UNPROCESSABLE_ENTITY, vec!["tree_size".to_owned()]));
    let (status, problem) = app.send(app.get("/api/v1/consent/proof/inclusion?leaf_index=7&tree_size=7")).await;
    assert_eq!((status, fields_at_fault(&problem)), (StatusCode::UNPROCESSABLE_ENTITY, vec!["leaf_index".to_owned()]));
    let (status, proof) = app.send(app.get("/api/v1/consent/proof/inclusion?leaf_index=4&tree_size=7")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(proof["hashes"].as_array().unwrap().len(), 3);
    // A viewer may read proofs; nobody unauthenticated may.
    let response = app.client.get(app.url("/api/v1/consent/proof/consistency?from=3&to=7")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    for path in [old_file, new_file, proof_file, wrong_file] {
        let _ = std::fs::remove_file(path);
    }
}

#[tokio::test]
async fn deleting_the_newest_event_a_withdrawal_is_caught_and_named() {
    let app = spawn_app().await;
    let id = signed_up(&app, "changed.mind@example.org").await;
    let purpose = app.consents_of(&id).await["current"][0]["purpose"].clone();
    app.send(app.post(&format!("/api/v1/contacts/{id}/consents/withdraw"), &json!({"purpose": purpose}))).await;
    app.ledger_sequenced().await;
    let events = app.consents_of(&id).await["events"].clone();
    let withdrawal = events[1]["id"].as_str().unwrap().to_owned();

    // Someone with database access deletes the withdrawal: the person reads as subscribed.
    execute(&app, "DELETE FROM consent_events WHERE id = $1", withdrawal.clone()).await;
    let (_, report) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_mismatch"]["event_id"], withdrawal.as_str());
    assert_eq!(report["first_mismatch"]["leaf_index"], 1);
    assert!(report["first_mismatch"]["reason"].as_str().unwrap().contains("deleted"), "{report}");

    // Deleting its leaf too leaves the tree shorter than what was signed.
    execute(&app, "DELETE FROM consent_leaves WHERE event_id = $1", withdrawal).await;
    let (_, report) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(report["valid"], false);
    assert!(report["first_mismatch"]["reason"].as_str().unwrap().contains("leaves were deleted"), "{report}");
}

#[tokio::test]
async fn deleting_a_middle_event_with_its_leaf_is_caught_and_named() {
    let app = spawn_app().await;
    for i in 0..3 {
        signed_up(&app, &format!("p{i}@example.org")).await;
    }
    app.ledger_sequenced().await;
    let middle = app.contact_by_email("p1@example.org").await.unwrap()["id"].as_str().unwrap().to_owned();
    let event = app.consents_of(&middle).await["events"][0]["id"].as_str().unwrap().to_owned();
    execute(&app, "DELETE FROM consent_leaves WHERE event_id = $1", event.clone()).await;
    execute(&app, "DELETE FROM consent_events WHERE id = $1", event).await;
    let (_, report) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_mismatch"]["leaf_index"], 1);
    assert_eq!(report["first_mismatch"]["reason"], "leaf 1 is missing");
    assert_eq!(report["events_checked"], 1);
}

#[tokio::test]
async fn rewriting_the_words_a_person_agreed_to_is_caught_and_named() {
    let app = spawn_app().await;
    signed_up(&app, "first@example.org").await;
    let id = signed_up(&app, "reader@example.org").await;
    app.ledger_sequenced().await;
    let event = app.consents_of(&id).await["events"][0].clone();
    let sha = event["consent_text_sha256"].as_str().unwrap().to_owned();
    execute(
        &app,
        "UPDATE consent_texts SET text = 'Send me the newsletter and share my address.' WHERE sha256 = $1",
        sha,
    )
    .await;
    let (_, report) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(report["valid"], false);
    // Both events showed the same words; the first one to use them is named.
    assert_eq!(report["first_mismatch"]["leaf_index"], 0);
    assert!(report["first_mismatch"]["reason"].as_str().unwrap().contains("consent text"), "{report}");
    let output = consento(&app).args(["consent", "verify"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("leaf 0"), "{output:?}");
}

#[tokio::test]
async fn an_event_written_around_the_log_is_caught_and_named() {
    let app = spawn_app().await;
    signed_up(&app, "first@example.org").await;
    let id = signed_up(&app, "never.agreed@example.org").await;
    app.ledger_sequenced().await;
    let (_, report) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(report["valid"], true, "{report}");
    let event = app.consents_of(&id).await["events"][0]["id"].as_str().unwrap().to_owned();

    // Someone with database access adds a consent beside the log: a copy of a real event,
    // with no leaf and not waiting for one.
    execute(
        &app,
        "INSERT INTO consent_events (id, seq, contact_id, purpose, action, basis, requires_confirmation, method, \
         form_id, form_version, consent_text_sha256, actor, ip, user_agent, source_url, evidence_salt, ip_digest, \
         user_agent_digest, source_url_digest, occurred_at, prev_hash, hash, manifest_id, proof, email_digest) \
         SELECT 'forged-' || id, seq + 1000000, contact_id, purpose, action, basis, requires_confirmation, method, \
         form_id, form_version, consent_text_sha256, actor, ip, user_agent, source_url, evidence_salt, ip_digest, \
         user_agent_digest, source_url_digest, occurred_at, prev_hash, hash, manifest_id, proof, email_digest \
         FROM consent_events WHERE id = $1",
        event.clone(),
    )
    .await;
    let (_, report) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_mismatch"]["event_id"], format!("forged-{event}"));
    assert!(report["first_mismatch"]["reason"].as_str().unwrap().contains("neither in the tree"), "{report}");
    assert_eq!(report["events_checked"], 2);
}

/// What someone with the database (and `key`) can do: throw the tree away and rebuild it
/// from the events as they are now, signed with `key`, recording `verifier` as the log's.
async fn rebuild(app: &TestApp, key: consento::services::ledger::LedgerKey, verifier: Option<String>) {
    loop {
        let (key, verifier) = (key.clone(), verifier.clone());
        let rebuilt = app
            .state
            .db
            .write(move |conn| {
                for table in ["consent_leaves", "consent_tree_nodes", "consent_checkpoints", "consent_unsequenced"] {
                    diesel::sql_query(format!("DELETE FROM {table}")).execute(conn)?;
                }
                diesel::sql_query("INSERT INTO consent_unsequenced (event_id, seq) SELECT id, seq FROM consent_events")
                    .execute(conn)?;
                if let Some(verifier) = verifier {
                    diesel::sql_query("UPDATE server_secrets SET value = $1 WHERE name = 'ledger_verifier_key'")
                        .bind::<diesel::sql_types::Text, _>(verifier)
                        .execute(conn)?;
                }
                // The running instance's sequencer may hold the turn: undo and try again.
                match consento::services::ledger::sequence_in(conn, &key, 1000)? {
                    Some(_) => Ok(()),
                    None => Err(consento::error::Error::Conflict("the sequencer is busy".to_owned())),
                }
            })
            .await;
        if rebuilt.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_kept_checkpoint_catches_a_log_rebuilt_from_scratch_with_a_new_key() {
    let checkpoints = std::env::temp_dir().join(format!("consento-checkpoints-{}", uuid::Uuid::new_v4().simple()));
    let file = checkpoints.clone();
    let app = spawn_app_with(move |s| s.ledger_checkpoint_file = Some(file)).await;
    for i in 0..3 {
        signed_up(&app, &format!("kept{i}@example.org")).await;
    }
    app.ledger_sequenced().await;
    let kept = std::fs::read_to_string(&checkpoints).unwrap();
    assert!(kept.contains("\n3\n"), "{kept}");
    let verified = consento(&app).args(["consent", "verify", "--checkpoint"]).arg(&checkpoints).output().unwrap();
    assert!(verified.status.success(), "{verified:?}");

    // Someone with the database removes one person's consent and rebuilds the whole log,
    // signed with a key of their own.
    let victim = app.contact_by_email("kept1@example.org").await.unwrap()["id"].as_str().unwrap().to_owned();
    execute(&app, "DELETE FROM consent_events WHERE contact_id = $1", victim).await;
    let new_key = consento::domain::ledger::note::NoteSigner::new("forged.example/consent", [9; 32]).unwrap();
    let settings = consento::settings::Settings {
        ledger_signing_key: Some(consento::settings::Secret::new(new_key.to_private_text())),
        ..consento::settings::Settings::default()
    };
    let forged = consento::services::ledger::LedgerKey::load(&settings).unwrap();
    let verifier = new_key.verifier().to_text();
    rebuild(&app, forged, Some(verifier)).await;
    // On its own, the rebuilt log is consistent with itself…
    let alone = consento(&app).args(["consent", "verify"]).output().unwrap();
    assert!(alone.status.success(), "{alone:?}");
    // …but not with the checkpoint kept outside the database.
    let output = consento(&app).args(["consent", "verify", "--checkpoint"]).arg(&checkpoints).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not signed by this log's key"), "{stderr}");
    let _ = std::fs::remove_file(checkpoints);
}

#[tokio::test]
async fn a_kept_checkpoint_catches_a_rewritten_past_signed_with_the_same_key() {
    let app = spawn_app().await;
    for i in 0..4 {
        signed_up(&app, &format!("past{i}@example.org")).await;
    }
    app.ledger_sequenced().await;
    let kept = temp_file("kept.note", public_text(&app, "/consent/checkpoint").await.as_bytes());
    signed_up(&app, "later@example.org").await;
    app.ledger_sequenced().await;

    // Whoever also holds the signing key drops the second event and signs the rebuilt tree.
    let victim = app.contact_by_email("past1@example.org").await.unwrap()["id"].as_str().unwrap().to_owned();
    execute(&app, "DELETE FROM consent_events WHERE contact_id = $1", victim).await;
    rebuild(&app, app.state.ledger_key.clone(), None).await;
    let output = consento(&app).args(["consent", "verify", "--checkpoint"]).arg(&kept).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the first 4 leaves do not have the root of the kept checkpoint of size 4"), "{stderr}");
    let _ = std::fs::remove_file(kept);
}

#[tokio::test]
async fn a_stored_time_that_cannot_be_read_is_named_not_an_internal_error() {
    let app = spawn_app().await;
    if app.database.url().is_some() {
        // PostgreSQL's timestamp column holds nothing but times.
        return;
    }
    signed_up(&app, "fine@example.org").await;
    let id = signed_up(&app, "garbled@example.org").await;
    app.ledger_sequenced().await;
    let event = app.consents_of(&id).await["events"][0]["id"].as_str().unwrap().to_owned();
    execute(&app, "UPDATE consent_events SET occurred_at = 'not a time' WHERE id = $1", event.clone()).await;
    let (status, report) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_mismatch"]["event_id"], event.as_str());
    assert!(report["first_mismatch"]["reason"].as_str().unwrap().contains("cannot be read"), "{report}");
}

#[tokio::test]
async fn every_new_checkpoint_reaches_webhook_subscribers() {
    let app = spawn_app().await;
    let receiver = crate::receiver::Receiver::start(0);
    let (status, webhook) = app
        .send(app.post("/api/v1/webhooks", &json!({"url": receiver.url, "event_types": ["consent.checkpoint"]})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    signed_up(&app, "watched@example.org").await;
    let report = app.ledger_sequenced().await;
    let size = report["checkpoint_size"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        let found = receiver
            .requests()
            .into_iter()
            .map(|r| r.json())
            .find(|e| e["type"] == "consent.checkpoint" && e["data"]["tree_size"] == size);
        if let Some(event) = found {
            break event;
        }
        assert!(Instant::now() < deadline, "no checkpoint event for size {size}: {:?}", receiver.requests());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event["data"]["checkpoint"], public_text(&app, "/consent/checkpoint").await.as_str());
}

/// Signs people up through the public form of a `consento serve` at `base`, 16 at a time,
/// until the server stops answering; answers the addresses whose signup was acknowledged.
async fn signups_until_it_dies(base: &str, slug: &str, list: &str) -> Vec<String> {
    let client = crate::helpers::client();
    let mut workers = Vec::new();
    for worker in 0..16 {
        let (client, url, list) = (client.clone(), format!("{base}/f/{slug}"), list.to_owned());
        workers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                let email = format!("burst{worker}-{i}@example.org");
                let sent = client.post(&url).json(&json!({"email": email, "consents": [list]})).send().await;
                match sent {
                    Ok(response) if response.status().is_success() => acknowledged.push(email),
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    let mut acknowledged = Vec::new();
    for worker in workers {
        acknowledged.extend(worker.await.unwrap());
    }
    acknowledged
}

#[tokio::test]
async fn kill_9_during_a_signup_burst_loses_no_acknowledged_event_and_gives_no_leaf_twice() {
    let database = TestDatabase::new();
    let port = crate::cli::free_port();
    let base = format!("http://127.0.0.1:{port}");
    // A slow sequencer first, so that the kill finds acknowledged events still waiting.
    let slow = [
        ("CONSENTO_LEDGER_SEQUENCE_INTERVAL_MS", "1500".to_owned()),
        ("CONSENTO_PUBLIC_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
    ];
    let mut server = crate::cli::serve(&database, port, &slow);
    let client = crate::helpers::client();
    crate::cli::wait_until_healthy(&client, &base).await;
    let token = crate::cli::admin_token(&client, &base).await;
    let list = crate::cli::form_on_new_list(&client, &base, &token, "burst", "single").await;

    let signups = tokio::spawn({
        let base = base.clone();
        let list = list.clone();
        async move { signups_until_it_dies(&base, "burst", &list).await }
    });
    tokio::time::sleep(Duration::from_millis(2000)).await;
    Command::new("kill").args(["-KILL", &server.0.id().to_string()]).status().unwrap();
    let _ = server.0.wait();
    let acknowledged = signups.await.unwrap();

    let env = [
        ("CONSENTO_LEDGER_SEQUENCE_INTERVAL_MS", "5".to_owned()),
        ("CONSENTO_PUBLIC_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
    ];
    server = crate::cli::serve(&database, port, &env);
    crate::cli::wait_until_healthy(&client, &base).await;
    let token = crate::cli::admin_token(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report: Value = client
            .get(format!("{base}/api/v1/consent/verify"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if report["events_waiting"] == 0 {
            break report;
        }
        assert!(Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(report["valid"], true, "{report}");
    assert!(report["events_checked"].as_u64().unwrap() >= acknowledged.len() as u64, "{report}");
    assert!(acknowledged.len() > 16, "too few signups before the kill: {}", acknowledged.len());
    for email in &acknowledged {
        let page: Value = client
            .get(format!("{base}/api/v1/contacts?email={email}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = page["items"][0]["id"].as_str().unwrap_or_else(|| panic!("{email} was acknowledged and lost"));
        let consents: Value = client
            .get(format!("{base}/api/v1/contacts/{id}/consents"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(consents["events"][0]["leaf_index"].is_u64(), "{email} has no leaf: {consents}");
    }
    drop(server);
}

#[tokio::test]
async fn two_instances_on_one_database_sequence_every_event_once() {
    let first = spawn_app().await;
    // A second instance on the same database and signing key, on its own port.
    let mut settings = first.state.settings.clone();
    settings.listen = "127.0.0.1:0".to_owned();
    settings.base_url = None;
    settings.ledger_signing_key_file = Some(first.database.data_dir.join("ledger-signing.key"));
    let second = consento::startup::Application::build(settings).await.unwrap();
    let second_address = format!("http://127.0.0.1:{}", second.port());
    tokio::spawn(second.run_until_stopped());

    let slug = "shared";
    let (_, list) = first.form_on_new_list(slug, "single", json!({})).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let base = if i % 2 == 0 { first.address.clone() } else { second_address.clone() };
        let email = format!("both{i}@example.org");
        let client = first.client.clone();
        let list = list.clone();
        tasks.push(async move {
            client.post(format!("{base}/f/{slug}")).form(&[("email", email.as_str()), ("consent", &list)]).send().await
        });
    }
    for response in futures_util::future::join_all(tasks).await {
        assert_eq!(response.unwrap().status(), StatusCode::OK);
    }
    let report = first.ledger_sequenced().await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["events_checked"], 40);
    assert_eq!(report["checkpoint_size"], 40);
}

#[tokio::test]
async fn a_regulator_reads_the_consents_as_dpv_records_and_a_kantara_receipt() {
    let app = spawn_app().await;
    let (_, passive_list) = app.form_on_new_list("passive", "passive", json!({})).await;
    let response = app.submit_form("passive", &[("email", "ticked@example.org"), ("consent", &passive_list)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = app.contact_by_email("ticked@example.org").await.unwrap()["id"].as_str().unwrap().to_owned();
    let (_, list) = app.form_on_new_list("active", "single", json!({})).await;
    app.submit_form("active", &[("email", "ticked@example.org"), ("consent", &list)]).await;
    app.send(
        app.post(&format!("/api/v1/contacts/{id}/consents/withdraw"), &json!({"purpose": format!("list:{list}")})),
    )
    .await;
    app.ledger_sequenced().await;

    let response = app
        .client
        .get(app.url(&format!("/api/v1/contacts/{id}/proof/dpv")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/ld+json"));
    let record: Value = response.json().await.unwrap();
    assert_eq!(record["@context"]["dpv"], "https://w3id.org/dpv#");
    let graph = record["@graph"].as_array().unwrap();
    assert_eq!(graph.len(), 2, "{record}");
    let of = |list: &str| graph.iter().find(|r| r["@id"].as_str().unwrap().ends_with(list)).unwrap().clone();
    let passive = of(&passive_list);
    assert_eq!(passive["@type"], "dpv:ConsentRecord");
    assert_eq!(passive["dpv:hasConsentStatus"]["@id"], "dpv:ConsentGiven");
    assert_eq!(passive["dpv:hasLegalBasis"]["@id"], "dpv:ImpliedConsent", "a pre-ticked box is implied consent");
    assert_eq!(passive["dpv:isIndicatedBy"]["@id"], format!("urn:consento:contact:{id}"));
    assert_eq!(passive["dpv:hasNotice"]["dct:description"], "Send me the newsletter. I can unsubscribe at any time.");
    assert!(passive["dpv:isIndicatedAtTime"]["@value"].is_string());
    assert!(passive["dct:source"][0]["leaf_index"].is_u64(), "{passive}");
    let withdrawn = of(&list);
    assert_eq!(withdrawn["dpv:hasConsentStatus"]["@id"], "dpv:ConsentWithdrawn");
    assert_eq!(withdrawn["dpv:hasLegalBasis"]["@id"], "dpv:ExpressedConsent");
    assert!(withdrawn["dpv:hasWithdrawalTime"]["@value"].is_string());

    let (status, receipt) = app.send(app.get(&format!("/api/v1/contacts/{id}/proof/kantara"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(receipt["version"], "KI-CR-v1.1.0");
    assert_eq!(receipt["piiControllers"][0]["piiController"], "News");
    let purposes = receipt["services"][0]["purposes"].as_array().unwrap();
    let types: Vec<&str> = purposes.iter().map(|p| p["consentType"].as_str().unwrap()).collect();
    assert!(types.contains(&"IMPLICIT") && types.contains(&"EXPLICIT"), "{receipt}");
}

#[tokio::test]
async fn a_person_who_confirms_gets_a_receipt_whose_proof_link_an_independent_verifier_accepts() {
    let app = spawn_app_with(|settings| settings.consent_receipt_mail = true).await;
    let (_, list) = app.form_on_new_list("receipt", "double", json!({})).await;
    let response = app.submit_form("receipt", &[("email", "kept@example.org"), ("consent", &list)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let link = app.mail.wait_for("kept@example.org", 1).await[0].link(&format!("{}/confirm/", app.address));
    assert_eq!(app.client.post(&link).send().await.unwrap().status(), StatusCode::OK);

    let receipt = app.mail.wait_for("kept@example.org", 2).await.pop().unwrap();
    assert_eq!(receipt.header("Subject").unwrap(), "Your consent receipt");
    let text = receipt.text();
    assert!(text.contains("List for receipt"), "{text}");
    assert!(text.contains("\u{201c}Send me the newsletter. I can unsubscribe at any time.\u{201d}"), "{text}");
    assert!(text.contains("Recorded by: News <news@consento.test>"), "{text}");
    assert!(text.contains(&format!("{}/unsubscribe/", app.address)), "{text}");
    assert!(text.contains(&format!("{}/preferences/", app.address)), "{text}");

    // The proof link answers the person's own bundle, which holds once the events have
    // their leaves, checked without consento.
    app.ledger_sequenced().await;
    let proof = receipt.link(&format!("{}/consent/receipt/", app.address));
    let response = app.client.get(&proof).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let bundle: Value = response.json().await.unwrap();
    let actions: Vec<&str> =
        bundle["events"].as_array().unwrap().iter().map(|e| e["fields"]["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["granted", "confirmed"]);
    assert_eq!(bundle["events"][0]["personal"]["email"], "kept@example.org");
    let key = public_text(&app, "/consent/key").await;
    let file = temp_file("receipt.json", bundle.to_string().as_bytes());
    let (accepted, said) = python_verifier(&["bundle", file.to_str().unwrap(), key.trim()]);
    let _ = std::fs::remove_file(file);
    assert!(accepted, "{said}");

    // A forged token, or the person's links revoked, and the link opens nothing.
    let forged = format!("{}x", proof.trim_end_matches(|c: char| c != '.'));
    assert_eq!(app.client.get(&forged).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    let id = app.contact_by_email("kept@example.org").await.unwrap()["id"].as_str().unwrap().to_owned();
    let (status, body) = app.send(app.post(&format!("/api/v1/contacts/{id}/links/revoke"), &json!({}))).await;
    assert!(status.is_success(), "{status} {body}");
    assert_eq!(app.client.get(&proof).send().await.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_the_setting_a_confirmation_mails_no_receipt() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("noreceipt", "double", json!({})).await;
    app.submit_form("noreceipt", &[("email", "quiet@example.org"), ("consent", &list)]).await;
    let link = app.mail.wait_for("quiet@example.org", 1).await[0].link(&format!("{}/confirm/", app.address));
    assert_eq!(app.client.post(&link).send().await.unwrap().status(), StatusCode::OK);
    // A mail queued at the confirmation would be sent by now: a later signup's mail
    // arrives after it.
    let (_, other) = app.form_on_new_list("after", "double", json!({})).await;
    app.submit_form("after", &[("email", "later@example.org"), ("consent", &other)]).await;
    app.mail.wait_for("later@example.org", 1).await;
    let to_quiet: Vec<_> =
        app.mail.received().into_iter().filter(|m| m.to.iter().any(|t| t == "quiet@example.org")).collect();
    assert_eq!(to_quiet.len(), 1, "only the confirmation request");
}
