//! Imports in the console, as an editor runs one from a browser's forms: the upload, the
//! mapping beside the file's first rows, the manifest of a bought list, the live progress
//! and the report.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::console::SignedIn;
use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, spawn_app};

const BOUNDARY: &str = "consento-test-boundary";

/// A browser's multipart body: `csrf` (when given) then the file, in the form's order.
fn upload_body(csrf: Option<&str>, name: &str, file: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(csrf) = csrf {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

impl TestApp {
    /// Uploads a file from the imports page; answers the response.
    pub async fn console_upload(
        &self,
        signed: &SignedIn,
        csrf: Option<&str>,
        name: &str,
        file: &[u8],
    ) -> reqwest::Response {
        self.console_post("/admin/imports", Some(&signed.cookie))
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(upload_body(csrf, name, file))
            .send()
            .await
            .unwrap()
    }

    /// Signs in a new user of `role` in the console.
    pub async fn console_user(&self, role: &str) -> SignedIn {
        let email = format!("{role}-{}@example.org", uuid::Uuid::new_v4().simple());
        let (status, body) = self
            .send(self.post("/api/v1/users", &json!({"email": email, "password": "a user passphrase", "role": role})))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.sign_in(&email, "a user passphrase").await
    }
}

fn location(response: &reqwest::Response) -> String {
    response.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

async fn wait_for_end(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
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
async fn an_editor_maps_a_files_columns_beside_its_first_rows_imports_a_bought_list_and_reads_the_report() {
    let app = spawn_app().await;
    let list = app.create_list("Fair leads").await;
    let editor = app.console_user("editor").await;
    let csv = "E-mail;Firma;Lieblingsfarbe;Herkunft\r\n\
               ada@example.org;Engines Ltd;grün;fair\r\n\
               not-an-address;Nobody;rot;fair\r\n\
               bob@example.org;;blau;fair\r\n";
    let uploaded = app.console_upload(&editor, Some(&editor.csrf), "Messe 2026.csv", csv.as_bytes()).await;
    assert_eq!(uploaded.status(), StatusCode::SEE_OTHER);
    let draft = location(&uploaded);
    assert!(draft.starts_with("/admin/imports/draft/") && draft.contains("format=csv"), "{draft}");

    // The mapping page: each column with where it goes, beside the file's first rows.
    let (status, map) = app.console_get(&draft, &editor.cookie).await;
    assert_eq!(status, StatusCode::OK, "{map}");
    for shown in [
        "Messe 2026.csv",
        "<code>;</code>",
        "<th scope=\"col\">Lieblingsfarbe</th>",
        "<td>grün</td>",
        "<td>Engines Ltd</td>",
    ] {
        assert!(map.contains(shown), "the mapping page shows {shown:?}: {map}");
    }
    assert!(map.contains("<option value=\"email\" selected>email</option>"), "E-mail is taken for the address: {map}");
    assert!(map.contains("<option value=\"attributes.Firma\" selected>"), "an unknown column is an attribute: {map}");

    let action = draft.split('?').next().unwrap().to_owned();
    let mapping = |basis: &str, supplier: &str| {
        vec![
            ("csrf", editor.csrf.clone()),
            ("format", "csv".to_owned()),
            ("name", "Messe 2026.csv".to_owned()),
            ("column.0.name", "E-mail".to_owned()),
            ("column.0.target", "email".to_owned()),
            ("column.1.name", "Firma".to_owned()),
            ("column.1.target", "company".to_owned()),
            ("column.2.name", "Lieblingsfarbe".to_owned()),
            ("column.2.target", "attributes.colour".to_owned()),
            ("column.3.name", "Herkunft".to_owned()),
            ("column.3.target", "ignore".to_owned()),
            ("lists", list.clone()),
            ("tags", "fair-2026, cold".to_owned()),
            ("basis", basis.to_owned()),
            ("manifest.supplier", supplier.to_owned()),
            ("manifest.collected_on", "2026-03-14".to_owned()),
            ("manifest.consent_text", "I agree that Engines Ltd and its partners send me offers".to_owned()),
            ("manifest.brand_named", "true".to_owned()),
            ("manifest.partners_shown", "Engines Ltd\r\nGlobex\r\n".to_owned()),
        ]
    };

    // A bought list without its supplier: refused, the fault beside its input, nothing stored.
    let refused = app.console_post(&action, Some(&editor.cookie)).form(&mapping("imported", "")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = refused.text().await.unwrap();
    assert!(page.contains("id=\"e-manifest-supplier\">must name who supplied the list"), "{page}");
    assert!(page.contains("value=\"fair-2026, cold\""), "what was typed stays: {page}");
    let (_, jobs) = app.send(app.get("/api/v1/imports")).await;
    assert_eq!(jobs["items"], json!([]), "no job was made");

    let started = app
        .console_post(&action, Some(&editor.cookie))
        .form(&mapping("imported", "Fair Org GmbH"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::SEE_OTHER, "{}", started.text().await.unwrap());
    let job_page = location(&started);
    let id = job_page.trim_start_matches("/admin/imports/").to_owned();
    let job = wait_for_end(&app, &id).await;
    assert_eq!(job["status"], "finished", "{job}");
    assert_eq!(job["records_expected"], 3);

    let (_, progress) =
        app.send(app.client.get(app.url(&format!("{job_page}/progress"))).header("cookie", &editor.cookie)).await;
    assert_eq!((progress["status"].as_str(), progress["records"].as_i64()), (Some("finished"), Some(3)), "{progress}");
    let (_, report) = app.console_get(&job_page, &editor.cookie).await;
    for shown in ["finished", "value=\"100\"", "<tr><td>3</td><td>email: must contain an @</td></tr>", "<dd>editor-"] {
        assert!(report.contains(shown), "the report shows {shown:?}: {report}");
    }
    assert!(!report.contains("data-import-progress"), "a finished job is not followed: {report}");

    let ada = app.contact_by_email("ada@example.org").await.unwrap();
    assert_eq!(ada["company"], "Engines Ltd");
    assert_eq!(ada["attributes"], json!({"colour": "grün"}), "Herkunft was ignored");
    let tags: Vec<&str> = ada["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tags.contains(&"fair-2026") && tags.contains(&"cold"), "{tags:?}");
    let consents = app.consents_of(ada["id"].as_str().unwrap()).await;
    let event = &consents["events"][0];
    assert_eq!(event["basis"], "imported");
    assert_eq!(event["consent_text"], "I agree that Engines Ltd and its partners send me offers");
    let manifest_id = event["manifest_id"].as_str().unwrap();
    let (_, manifest) = app.send(app.get(&format!("/api/v1/manifests/{manifest_id}"))).await;
    assert_eq!(
        (manifest["supplier"].as_str(), manifest["collected_on"].as_str(), manifest["brand_named"].as_bool()),
        (Some("Fair Org GmbH"), Some("2026-03-14"), Some(true))
    );
    assert_eq!(manifest["partners_shown"], json!(["Engines Ltd", "Globex"]));
    assert_eq!(manifest["created_by"].as_str().map(|c| c.starts_with("user:")), Some(true), "{manifest}");

    // The draft was the job's file: it cannot be started twice.
    let again = app
        .console_post(&action, Some(&editor.cookie))
        .form(&mapping("imported", "Fair Org GmbH"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let (_, listed) = app.console_get("/admin/imports", &editor.cookie).await;
    assert!(listed.contains(&format!("href=\"/admin/imports/{id}\"")), "{listed}");
}

#[tokio::test]
async fn a_running_import_is_followed_live_by_the_consoles_own_script() {
    let app = spawn_app().await;
    let admin = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mut csv = String::from("email\n");
    for i in 0..3000 {
        csv.push_str(&format!("person{i}@example.org\n"));
    }
    let uploaded = app.console_upload(&admin, Some(&admin.csrf), "people.csv", csv.as_bytes()).await;
    let draft = location(&uploaded);
    let action = draft.split('?').next().unwrap().to_owned();
    let started = app
        .console_post(&action, Some(&admin.cookie))
        .form(&[
            ("csrf", admin.csrf.as_str()),
            ("format", "csv"),
            ("column.0.name", "email"),
            ("column.0.target", "email"),
        ])
        .send()
        .await
        .unwrap();
    let job_page = location(&started);
    let (_, page) = app.console_get(&job_page, &admin.cookie).await;
    if !page.contains("finished") {
        assert!(page.contains(&format!("data-import-progress=\"{job_page}/progress\"")), "{page}");
    }
    assert!(page.contains("<script src=\"/admin/console.js\" defer></script>"), "{page}");
    let script = app.client.get(app.url("/admin/console.js")).send().await.unwrap();
    assert_eq!(script.headers()["content-type"], "text/javascript; charset=utf-8");
    assert!(script.text().await.unwrap().contains("data-import-progress"));
    let job = wait_for_end(&app, job_page.trim_start_matches("/admin/imports/")).await;
    assert_eq!((job["report"]["imported"].as_i64(), job["records_expected"].as_i64()), (Some(3000), Some(3000)));
}

#[tokio::test]
async fn a_viewer_cannot_import_and_an_upload_without_the_csrf_token_is_refused_unread() {
    let app = spawn_app().await;
    let viewer = app.console_user("viewer").await;
    let (_, imports) = app.console_get("/admin/imports", &viewer.cookie).await;
    assert!(!imports.contains("enctype=\"multipart/form-data\""), "a viewer is offered no upload: {imports}");
    let refused = app.console_upload(&viewer, Some(&viewer.csrf), "a.csv", b"email\na@example.org\n").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let editor = app.console_user("editor").await;
    let without = app.console_upload(&editor, None, "a.csv", b"email\na@example.org\n").await;
    assert_eq!(without.status(), StatusCode::FORBIDDEN);
    let wrong = app.console_upload(&editor, Some("not-the-token"), "a.csv", b"email\na@example.org\n").await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let elsewhere = app
        .client
        .post(app.url("/admin/imports"))
        .header("origin", "https://attacker.example")
        .header("cookie", &editor.cookie)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(upload_body(Some(&editor.csrf), "a.csv", b"email\na@example.org\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
    let empty = app.console_upload(&editor, Some(&editor.csrf), "a.csv", b"").await;
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.text().await.unwrap().contains("none was sent, or it was empty"));

    // A draft's id is only ever a UUID: nothing else names a file.
    let (status, _) = app.console_get("/admin/imports/draft/..%2F..%2Fconsento.db", &editor.cookie).await;
    assert!(status == StatusCode::NOT_FOUND || status == StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    let (status, _) = app.console_get(&format!("/admin/imports/draft/{}", uuid::Uuid::new_v4()), &editor.cookie).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, jobs) = app.send(app.get("/api/v1/imports")).await;
    assert_eq!(jobs["items"], json!([]));
}
