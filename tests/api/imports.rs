//! Imports with provenance, exports, and the jobs that survive a crash.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestDatabase, assert_problem, fields_at_fault, spawn_app};

/// Creates an import, uploads its file, and waits for the job to end.
async fn import(app: &TestApp, options: Value, file: Vec<u8>) -> Value {
    let (status, job) = app.send(app.post("/api/v1/imports", &options)).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["status"], "awaiting_file");
    let upload = job["upload_url"].as_str().unwrap();
    let (status, queued) = app.send(app.admin(app.client.put(app.url(upload))).body(file)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    wait_for_end(app, job["id"].as_str().unwrap()).await
}

async fn wait_for_end(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, job) = app.send(app.get(&format!("/api/v1/imports/{id}"))).await;
        if job["status"] == "finished" || job["status"] == "failed" {
            return job;
        }
        assert!(Instant::now() < deadline, "the import did not end: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_import_reports_good_bad_duplicate_and_suppressed_rows_exactly() {
    let app = spawn_app().await;
    let list = app.create_list("Customers").await;
    // Known before: one contact to merge, one address that left everything (suppressed).
    app.create_contact(json!({"email": "known@example.org", "attributes": {"plan": "pro"}})).await;
    let gone = app.create_contact(json!({"email": "gone@example.org"})).await;
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{}/links", gone["id"].as_str().unwrap()))).await;
    app.client.post(links["unsubscribe_url"].as_str().unwrap()).send().await.unwrap();

    // A spreadsheet's CSV: semicolons, Windows-1252, a quoted field with the delimiter.
    let csv = "Email;First name;City;Tags\r\n\
               zoe@example.org;Zoë;\"Köln; Altstadt\";vip\r\n\
               not-an-address;Bob;Paris;\r\n\
               known@example.org;Known;Lyon;\r\n\
               ZOE@Example.org;Zoé;Köln;early\r\n\
               gone@example.org;Gone;Rome;\r\n\
               ;Nobody;Bern;\r\n\
               max@example.org;Max;Genève;bad tag!\r\n\
               lea@example.org;Léa;Genève;\r\n";
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(csv);
    assert!(!unmappable);
    let job = import(
        &app,
        json!({"format": "csv", "lists": ["Customers"], "basis": "single_opt_in",
               "consent_text": "Yes, send me the shop's news", "columns": {"First name": "attributes.first_name"}}),
        bytes.into_owned(),
    )
    .await;
    assert_eq!(job["status"], "finished", "{job}");
    let report = &job["report"];
    assert_eq!(
        (
            report["records"].as_i64(),
            report["imported"].as_i64(),
            report["updated"].as_i64(),
            report["duplicates"].as_i64(),
            report["suppressed"].as_i64(),
            report["invalid"].as_i64()
        ),
        (Some(8), Some(2), Some(1), Some(1), Some(1), Some(3)),
        "{report}"
    );
    assert_eq!(
        report["errors"],
        json!([
            {"line": 3, "reason": "email: must contain an @"},
            {"line": 7, "reason": "email: is empty"},
            {"line": 8, "reason": "tags: \"bad tag!\" may hold only letters, digits, '-', '_', ':' and '.'"}
        ])
    );

    // The duplicate merged into the first row; the encoding was read right.
    let zoe = app.contact_by_email("zoe@example.org").await.unwrap();
    assert_eq!(zoe["attributes"], json!({"first_name": "Zoé", "City": "Köln"}));
    assert_eq!(zoe["tags"], json!(["early", "vip"]));
    assert_eq!(zoe["lists"], json!([list]));
    let consents = app.consents_of(zoe["id"].as_str().unwrap()).await;
    let events = consents["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "one consent for one list, however many rows: {consents}");
    assert_eq!((events[0]["basis"].as_str(), events[0]["method"].as_str()), (Some("single_opt_in"), Some("import")));
    assert_eq!(events[0]["consent_text"], "Yes, send me the shop's news");
    // The known contact kept what it had and gained the row's fields.
    let known = app.contact_by_email("known@example.org").await.unwrap();
    assert_eq!(known["attributes"], json!({"plan": "pro", "first_name": "Known", "City": "Lyon"}));
    // The suppressed address was not brought back.
    let gone = app.contact_by_email("gone@example.org").await.unwrap();
    assert_eq!(gone["status"], "unsubscribed");
    assert_eq!(gone["lists"], json!([]));
}

#[tokio::test]
async fn an_imported_list_needs_a_manifest_naming_its_source_and_every_event_points_at_it() {
    let app = spawn_app().await;
    app.create_list("Rented").await;
    let response = app
        .post(
            "/api/v1/imports",
            &json!({"format": "ndjson", "lists": ["Rented"], "basis": "imported", "delimiter": "x"}),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["delimiter", "manifest_id"]);

    let response = app
        .post(
            "/api/v1/manifests",
            &json!({"supplier": "", "collected_on": "2999-01-01", "consent_text": " ", "brand_named": true}),
        )
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["supplier", "consent_text", "collected_on"]);
    let (status, manifest) = app
        .send(app.post(
            "/api/v1/manifests",
            &json!({"supplier": "Lists & Leads Ltd", "collected_on": "2026-09-15",
                    "consent_text": "I agree that Acme and its partners send me offers",
                    "brand_named": true, "partners_shown": ["Acme", "Globex"]}),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{manifest}");
    let manifest_id = manifest["id"].as_str().unwrap();

    let ndjson = "{\"email\": \"a@rented.example\", \"company\": \"A SA\", \"country\": \"FR\", \"score\": 7}\n\
                  {\"email\": \"b@rented.example\", \"tags\": [\"cold\"], \"attributes\": {\"source\": \"fair\"}}\n\
                  not json\n";
    let job = import(
        &app,
        json!({"format": "ndjson", "lists": ["Rented"], "basis": "imported", "manifest_id": manifest_id}),
        ndjson.as_bytes().to_vec(),
    )
    .await;
    assert_eq!((job["report"]["imported"].as_i64(), job["report"]["invalid"].as_i64()), (Some(2), Some(1)), "{job}");
    assert_eq!(job["report"]["errors"][0]["line"], 3);
    for email in ["a@rented.example", "b@rented.example"] {
        let contact = app.contact_by_email(email).await.unwrap();
        let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
        let event = &consents["events"][0];
        assert_eq!(event["basis"], "imported");
        assert_eq!(event["manifest_id"], manifest_id, "{consents}");
        assert_eq!(event["consent_text"], "I agree that Acme and its partners send me offers");
    }
    let a = app.contact_by_email("a@rented.example").await.unwrap();
    assert_eq!((a["company"].as_str(), a["country"].as_str()), (Some("A SA"), Some("FR")));
    assert_eq!(a["attributes"], json!({"score": 7}));
    let (_, stored) = app.send(app.get(&format!("/api/v1/manifests/{manifest_id}"))).await;
    assert_eq!(stored["partners_shown"], json!(["Acme", "Globex"]));
    // The send policy mails an imported list only when its manifest names us.
    let (_, other) = app
        .send(app.post(
            "/api/v1/manifests",
            &json!({"supplier": "Cheap Data", "collected_on": "2026-01-01", "consent_text": "Partners may write to me",
                    "brand_named": false}),
        ))
        .await;
    let job = import(
        &app,
        json!({"format": "ndjson", "lists": ["Rented"], "basis": "imported", "manifest_id": other["id"]}),
        b"{\"email\": \"c@cheap.example\"}\n".to_vec(),
    )
    .await;
    assert_eq!(job["report"]["imported"], 1, "{job}");
    let list = app.contact_by_email("c@cheap.example").await.unwrap()["lists"][0].clone();
    let (_, campaign) = app
        .send(
            app.post(
                "/api/v1/campaigns",
                &json!({"name": "Offers", "subject": "S", "text_body": "B", "lists": [list]}),
            ),
        )
        .await;
    let (_, audience) = app
        .send(app.post(&format!("/api/v1/campaigns/{}/audience", campaign["id"].as_str().unwrap()), &json!({})))
        .await;
    assert_eq!(audience["eligible_by_reason"], json!({"imported_manifest_names_us": 2}), "{audience}");
    assert_eq!(audience["excluded_by_reason"], json!({"imported_manifest_does_not_name_us": 1}), "{audience}");

    // The ledger still verifies with the manifests in it.
    let (_, verified) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(verified["valid"], true, "{verified}");
}

#[tokio::test]
async fn an_export_of_100000_contacts_streams_and_reimports_to_the_same_data() {
    const ROWS: usize = 100_000;
    let source = spawn_app().await;
    source.create_list("Customers").await;
    let mut csv = String::from("email,company,country,tags,plan,visits\n");
    for i in 0..ROWS {
        csv.push_str(&format!(
            "person{i}@example.org,{},{},{},{},{}\n",
            if i % 3 == 0 { format!("Company {}", i % 100) } else { String::new() },
            ["FR", "DE", "IT", ""][i % 4],
            ["vip", "", "trial;vip", ""][i % 4],
            ["free", "pro"][i % 2],
            i % 17
        ));
    }
    let options =
        json!({"format": "csv", "lists": ["Customers"], "basis": "single_opt_in", "consent_text": "Yes to the news"});
    let job = import(&source, options.clone(), csv.into_bytes()).await;
    assert_eq!(job["report"]["imported"], ROWS, "{job}");

    let response = source.get("/api/v1/contacts/export?format=csv").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.content_length().is_none(), "an export is streamed, not built in memory first");
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    let exported = response.bytes().await.unwrap().to_vec();

    let target = spawn_app().await;
    target.create_list("Customers").await;
    let job = import(&target, options, exported.clone()).await;
    assert_eq!((job["report"]["imported"].as_i64(), job["report"]["invalid"].as_i64()), (Some(ROWS as i64), Some(0)));
    let again = target.get("/api/v1/contacts/export?format=csv").send().await.unwrap().bytes().await.unwrap().to_vec();

    // The same data, but for the ids and times the new database gave.
    let content = |export: &[u8]| -> Vec<String> {
        let mut reader = csv::Reader::from_reader(export);
        let mut rows: Vec<String> = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                [1, 2, 3, 4, 5, 6, 7, 8].iter().map(|i| r[*i].to_owned()).collect::<Vec<_>>().join("|")
            })
            .collect();
        rows.sort();
        rows
    };
    let (before, after) = (content(&exported), content(&again));
    assert_eq!(before.len(), ROWS);
    assert!(before.iter().any(|row| row.contains("trial;vip") && row.contains("\"plan\":\"free\"")), "{}", before[1]);
    assert!(before == after, "the re-imported data differs");

    // NDJSON reads back too, filtered by tag.
    let ndjson = source.get("/api/v1/contacts/export?format=ndjson&tag=trial").send().await.unwrap();
    let body = ndjson.text().await.unwrap();
    assert_eq!(body.lines().count(), ROWS / 4);
    let first: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(first["tags"], json!(["trial", "vip"]));
}

#[tokio::test]
async fn an_import_killed_mid_way_resumes_after_a_restart_and_writes_no_row_twice() {
    use crate::cli::{admin_token, free_port, serve, wait_until_healthy};
    const ROWS: usize = 40_000;
    let database = TestDatabase::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let start = || serve(&database, port, &[]);
    let client = crate::helpers::client();
    let mut server = start();
    wait_until_healthy(&client, &base).await;
    let token = admin_token(&client, &base).await;
    client.post(format!("{base}/api/v1/lists")).bearer_auth(&token).json(&json!({"name": "Big"})).send().await.unwrap();
    let job: Value = client
        .post(format!("{base}/api/v1/imports"))
        .bearer_auth(&token)
        .json(&json!({"format": "csv", "lists": ["Big"], "basis": "double_opt_in", "consent_text": "Confirmed elsewhere"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    let mut csv = String::from("email,n\n");
    for i in 0..ROWS {
        csv.push_str(&format!("row{i}@example.org,{i}\n"));
    }
    let response =
        client.put(format!("{base}/api/v1/imports/{id}/file")).bearer_auth(&token).body(csv).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job_now = || async {
        client
            .get(format!("{base}/api/v1/imports/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    // Kill -9 once some chunks are in, well before the end.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = job_now().await;
        let records = job["report"]["records"].as_i64().unwrap();
        assert!(job["status"] != "finished", "the import finished before the kill");
        if records > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the import did not start: {job}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Command::new("kill").args(["-KILL", &server.0.id().to_string()]).status().unwrap();
    let _ = server.0.wait();

    server = start();
    wait_until_healthy(&client, &base).await;
    let deadline = Instant::now() + Duration::from_secs(300);
    let job = loop {
        let job = job_now().await;
        if job["status"] == "finished" || job["status"] == "failed" {
            break job;
        }
        assert!(Instant::now() < deadline, "the import did not finish after the restart: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(server);
    let report = &job["report"];
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(
        (report["records"].as_i64(), report["imported"].as_i64()),
        (Some(ROWS as i64), Some(ROWS as i64)),
        "{job}"
    );
    assert_eq!((report["updated"].as_i64(), report["duplicates"].as_i64()), (Some(0), Some(0)), "{job}");

    // Every row once, each with exactly one consent event: nothing half-written or doubled.
    let db = consento::storage::Db::connect(&consento::storage::DbOptions {
        url: database.url().unwrap_or_else(|| database.data_dir.join("consento.db").to_string_lossy().into_owned()),
        pool_size: 1,
        sqlite_synchronous: consento::storage::SqliteSync::Normal,
        busy_timeout: Duration::from_secs(10),
    })
    .unwrap();
    let (contacts, events, members) = db
        .read(|conn| {
            use consento::storage::schema::{consent_events, contact_lists, contacts};
            use diesel::prelude::*;
            Ok((
                contacts::table.count().get_result::<i64>(conn)?,
                consent_events::table.count().get_result::<i64>(conn)?,
                contact_lists::table.count().get_result::<i64>(conn)?,
            ))
        })
        .await
        .unwrap();
    assert_eq!((contacts, events, members), (ROWS as i64, ROWS as i64, ROWS as i64));
}

#[tokio::test]
async fn an_exported_unsubscribed_contact_stays_unsubscribed_when_imported_on_a_fresh_instance() {
    let source = spawn_app().await;
    let list = source.create_list("Customers").await;
    let stays = source.create_contact(json!({"email": "stays@example.org", "lists": [list]})).await;
    let leaves = source.create_contact(json!({"email": "leaves@example.org", "lists": [list]})).await;
    let (_, links) =
        source.send(source.get(&format!("/api/v1/contacts/{}/links", leaves["id"].as_str().unwrap()))).await;
    source.client.post(links["unsubscribe_url"].as_str().unwrap()).send().await.unwrap();
    assert!(stays["id"].is_string());

    for format in ["csv", "ndjson"] {
        let exported = source.get(&format!("/api/v1/contacts/export?format={format}")).send().await.unwrap();
        let exported = exported.bytes().await.unwrap().to_vec();
        let text = String::from_utf8_lossy(&exported).to_string();
        assert!(text.contains("unsubscribed") && text.contains("suppressed"), "{text}");

        let target = spawn_app().await;
        target.create_list("Customers").await;
        let options =
            json!({"format": format, "lists": ["Customers"], "basis": "single_opt_in", "consent_text": "Yes"});
        let job = import(&target, options, exported).await;
        assert_eq!(job["status"], "finished", "{job}");
        assert_eq!(
            (job["report"]["imported"].as_i64(), job["report"]["suppressed"].as_i64()),
            (Some(1), Some(1)),
            "{job}"
        );
        assert!(target.contact_by_email("leaves@example.org").await.is_none(), "never a subscription");
        let (_, found) = target.send(target.get("/api/v1/suppressions?email=leaves@example.org")).await;
        assert_eq!(found["items"][0]["reason"], "unsubscribed", "{format}: {found}");
        let kept = target.contact_by_email("stays@example.org").await.unwrap();
        assert_eq!(kept["status"], "active");
    }
}

#[tokio::test]
async fn a_row_whose_status_says_the_person_left_unsubscribes_the_contact_already_here() {
    let app = spawn_app().await;
    let list = app.create_list("Customers").await;
    let known = app.create_contact(json!({"email": "known@example.org", "lists": [list]})).await;
    let csv = "email,status\nknown@example.org,unsubscribed\nclean@example.org,cleaned\nnew@example.org,subscribed\nodd@example.org,maybe\n";
    let options = json!({"format": "csv", "lists": ["Customers"], "basis": "single_opt_in", "consent_text": "Yes"});
    let job = import(&app, options, csv.as_bytes().to_vec()).await;
    let report = &job["report"];
    assert_eq!(
        (report["imported"].as_i64(), report["suppressed"].as_i64(), report["invalid"].as_i64()),
        (Some(1), Some(2), Some(1)),
        "{job}"
    );
    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{}", known["id"].as_str().unwrap()))).await;
    assert_eq!((contact["status"].as_str(), &contact["lists"]), (Some("unsubscribed"), &json!([])));
    let (_, found) = app.send(app.get("/api/v1/suppressions?email=clean@example.org")).await;
    assert_eq!(found["items"][0]["reason"], "bounced");
    assert!(app.contact_by_email("clean@example.org").await.is_none());
}
