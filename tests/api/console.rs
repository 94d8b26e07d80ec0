//! The console under `/admin`: first run, sign-in, sessions and CSRF, and what its pages
//! show, as the people who run consento use it (a browser's form posts, its cookie).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, spawn_app, spawn_app_without_users};

/// A signed-in browser: its session cookie and the CSRF token its pages carry.
pub struct SignedIn {
    pub cookie: String,
    pub csrf: String,
}

/// The `Set-Cookie` of a response, whole.
fn set_cookie(response: &reqwest::Response) -> String {
    response.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// The CSRF token of a page's forms.
fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").expect("a form with its CSRF token") + 19;
    html[start..].split('"').next().unwrap().to_owned()
}

impl TestApp {
    /// A POST as a browser sends it from a console page: form-encoded, from this origin.
    pub fn console_post(&self, path: &str, cookie: Option<&str>) -> reqwest::RequestBuilder {
        let request = self.client.post(self.url(path)).header("origin", &self.address);
        match cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request,
        }
    }

    pub async fn console_get(&self, path: &str, cookie: &str) -> (StatusCode, String) {
        let response = self.client.get(self.url(path)).header("cookie", cookie).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> SignedIn {
        let response = self
            .console_post("/admin/sign-in", None)
            .form(&[("email", email), ("password", password)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{}", response.text().await.unwrap());
        let cookie = cookie_pair(&set_cookie(&response));
        let (status, html) = self.console_get("/admin", &cookie).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        SignedIn { csrf: csrf_of(&html), cookie }
    }
}

#[tokio::test]
async fn the_root_leads_to_the_console_whose_sign_in_page_points_to_the_api() {
    let app = spawn_app().await;
    let root = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!((root.status(), root.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/admin"));
    let console = app.client.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(
        (console.status(), console.headers()["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/admin/sign-in")
    );
    let page = app.client.get(app.url("/admin/sign-in")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<h1>Sign in</h1>") && html.contains("autocomplete=\"current-password\""), "{html}");
    for link in ["/docs/", "/openapi.json", "/healthz"] {
        assert!(html.contains(&format!("href=\"{link}\"")), "{link}: {html}");
        assert_eq!(app.client.get(app.url(link)).send().await.unwrap().status(), StatusCode::OK, "{link}");
    }
}

#[tokio::test]
async fn the_first_admin_is_created_only_with_the_setup_code_from_the_servers_log() {
    let app = spawn_app_without_users().await;
    let code = app.setup_code.clone().expect("a first run prints a setup code");
    let to = app.client.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(to.headers()["location"], "/admin/setup", "no user yet: the console asks for the setup");
    let page = app.client.get(app.url("/admin/setup")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("setup code"), "{page}");

    let setup = |code: String| {
        app.console_post("/admin/setup", None).form(&[
            ("code", code.as_str()),
            ("email", "first@example.org"),
            ("password", "a long first passphrase"),
        ])
    };
    // Whoever reaches the port first without the code takes nothing.
    let wrong = setup("AAAA-BBBB-CCCC-DDDD-EEEE".to_owned()).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert!(wrong.text().await.unwrap().contains("the setup code is wrong or was used"));
    let (status, _) = app
        .send(
            app.client
                .post(app.url("/api/v1/auth/token"))
                .json(&json!({"email": "first@example.org", "password": "a long first passphrase"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no user was made");

    // The code as typed by a person (lower case, without dashes) works, once.
    let typed = code.replace('-', "").to_lowercase();
    let done = setup(typed.clone()).send().await.unwrap();
    assert_eq!((done.status(), done.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/admin"));
    let cookie = set_cookie(&done);
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/admin"] {
        assert!(cookie.contains(attribute), "{attribute}: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP on loopback: {cookie}");
    let (status, dashboard) = app.console_get("/admin", &cookie_pair(&cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        dashboard.contains("first@example.org</a> <span class=\"muted\">(admin)")
            && dashboard.contains("<h1>Dashboard</h1>"),
        "{dashboard}"
    );
    let again = setup(code).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::FORBIDDEN, "the code works once");
    let page = app.client.get(app.url("/admin/setup")).send().await.unwrap();
    assert_eq!(page.headers()["location"], "/admin/sign-in", "the setup page is gone once an admin exists");
}

#[tokio::test]
async fn sign_in_refuses_a_wrong_password_and_sign_out_ends_the_session() {
    let app = spawn_app().await;
    let wrong = app
        .console_post("/admin/sign-in", None)
        .form(&[("email", ADMIN_EMAIL), ("password", "not the password")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong).is_empty(), "no session for a wrong password");
    let page = wrong.text().await.unwrap();
    assert!(page.contains("The e-mail or password is wrong.") && page.contains(ADMIN_EMAIL), "{page}");

    let session = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    // A POST without the page's CSRF token changes nothing; neither does one from another site.
    let forged =
        app.console_post("/admin/sign-out", Some(&session.cookie)).form(&[("csrf", "guessed")]).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let elsewhere = app
        .client
        .post(app.url("/admin/sign-out"))
        .header("origin", "https://evil.example")
        .header("cookie", &session.cookie)
        .form(&[("csrf", session.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.console_get("/admin", &session.cookie).await.0, StatusCode::OK, "still signed in");

    let out = app
        .console_post("/admin/sign-out", Some(&session.cookie))
        .form(&[("csrf", session.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!((out.status(), out.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/admin/sign-in"));
    assert!(set_cookie(&out).contains("Max-Age=0"), "the cookie is removed");
    let after = app.client.get(app.url("/admin")).header("cookie", &session.cookie).send().await.unwrap();
    assert_eq!(after.headers()["location"], "/admin/sign-in", "the old cookie opens nothing");
}

#[tokio::test]
async fn a_session_ends_when_idle_too_long_and_when_the_password_changes() {
    let app = spawn_app().await;
    let session = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    app.state
        .db
        .write(|conn| {
            use consento::storage::schema::console_sessions;
            use diesel::prelude::*;
            let long_ago = consento::storage::now() - chrono::TimeDelta::hours(3);
            diesel::update(console_sessions::table).set(console_sessions::last_seen_at.eq(long_ago)).execute(conn)?;
            Ok(())
        })
        .await
        .unwrap();
    let idle = app.client.get(app.url("/admin")).header("cookie", &session.cookie).send().await.unwrap();
    assert_eq!(idle.headers()["location"], "/admin/sign-in", "idle for three hours");

    let viewer_token = app.user_token("viewer").await;
    let (_, me) = app.send(app.client.get(app.url("/api/v1/users?limit=10")).bearer_auth(&app.admin_token)).await;
    let viewer = me["items"].as_array().unwrap().iter().find(|u| u["role"] == "viewer").unwrap().clone();
    let email = viewer["email"].as_str().unwrap().to_owned();
    let session = app.sign_in(&email, "a user passphrase").await;
    let (status, page) = app.console_get("/admin/contacts", &session.cookie).await;
    assert_eq!(status, StatusCode::OK, "a viewer reads: {page}");
    assert!(page.contains(&format!("{email}</a> <span class=\"muted\">(viewer)")), "{page}");
    let id = viewer["id"].as_str().unwrap();
    let (status, _) =
        app.send(app.patch(&format!("/api/v1/users/{id}"), &json!({"password": "another long passphrase"}))).await;
    assert_eq!(status, StatusCode::OK);
    let changed = app.client.get(app.url("/admin")).header("cookie", &session.cookie).send().await.unwrap();
    assert_eq!(changed.headers()["location"], "/admin/sign-in", "a new password ends the old sessions");
    drop(viewer_token);
}

#[tokio::test]
async fn a_contacts_page_shows_its_consent_timeline_with_the_evidence_and_its_proof_downloads() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("timeline", "double", json!({})).await;
    let email = "ada.timeline@example.org";
    app.submit_form("timeline", &[("email", email), ("consent", &list)]).await;
    let link = app.mail.wait_for(email, 1).await[0].link(&format!("{}/confirm/", app.address));
    app.client.post(&link).header("user-agent", "ConfirmingBrowser/2.0").send().await.unwrap();
    app.ledger_sequenced().await;

    let session = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, found) = app.console_get("/admin/contacts?q=ada.time", &session.cookie).await;
    assert_eq!(status, StatusCode::OK);
    let id = app.contact_by_email(email).await.unwrap()["id"].as_str().unwrap().to_owned();
    assert!(found.contains(&format!("<a href=\"/admin/contacts/{id}\">{email}</a>")), "{found}");
    let (_, none) = app.console_get("/admin/contacts?q=nobody-here", &session.cookie).await;
    assert!(none.contains("No contact matches."), "{none}");
    let (status, bad) = app.console_get("/admin/contacts?status=sleeping", &session.cookie).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert!(bad.contains("status"), "the page names the filter at fault: {bad}");

    let (status, page) = app.console_get(&format!("/admin/contacts/{id}"), &session.cookie).await;
    assert_eq!(status, StatusCode::OK);
    for shown in [
        "confirmed",
        "granted",
        "double_opt_in",
        "single_opt_in",
        "“Send me the newsletter. I can unsubscribe at any time.”",
        "TestBrowser/1.0",
        "ConfirmingBrowser/2.0",
        "https://www.example.org/newsletter",
        "127.0.0.1",
        "List for timeline",
        "public",
    ] {
        assert!(page.contains(shown), "the timeline shows {shown:?}: {page}");
    }
    let proof = app
        .client
        .get(app.url(&format!("/admin/contacts/{id}/proof")))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(proof.status(), StatusCode::OK);
    assert!(proof.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let bundle: serde_json::Value = proof.json().await.unwrap();
    assert_eq!(bundle["format"], "consento-proof-bundle/1");
    assert_eq!(bundle["events"].as_array().map(Vec::len), Some(2), "{bundle}");

    let anonymous = app.client.get(app.url(&format!("/admin/contacts/{id}"))).send().await.unwrap();
    assert_eq!(anonymous.headers()["location"], "/admin/sign-in", "nobody reads a contact without signing in");
}

#[tokio::test]
async fn a_viewer_reads_lists_and_suppressions_and_is_refused_every_change() {
    let app = spawn_app().await;
    let list = app.create_list("Console list").await;
    let contact = app.create_contact(json!({"email": "kept@example.org"})).await;
    let id = contact["id"].as_str().unwrap();
    let viewer_token = app.user_token("viewer").await;
    let (_, users) = app.send(app.get("/api/v1/users?limit=10")).await;
    let email = users["items"].as_array().unwrap().iter().find(|u| u["role"] == "viewer").unwrap()["email"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(viewer_token);
    let viewer = app.sign_in(&email, "a user passphrase").await;

    let (status, lists) = app.console_get("/admin/lists", &viewer.cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(lists.contains(&format!("<a href=\"/admin/contacts?list={list}\">Console list</a>")), "{lists}");
    let (_, suppressions) = app.console_get("/admin/suppressions", &viewer.cookie).await;
    assert!(
        !suppressions.contains("action=\"/admin/suppressions\" method")
            && !suppressions.contains("Suppress an address"),
        "a viewer is not offered the change: {suppressions}"
    );
    let (_, contact_page) = app.console_get(&format!("/admin/contacts/{id}"), &viewer.cookie).await;
    assert!(!contact_page.contains("Erase this person"), "{contact_page}");

    // Posted anyway, with a valid token, each change is refused and nothing changes.
    let suppress = app
        .console_post("/admin/suppressions", Some(&viewer.cookie))
        .form(&[("csrf", viewer.csrf.as_str()), ("email", "kept@example.org"), ("reason", "manual")])
        .send()
        .await
        .unwrap();
    assert_eq!(suppress.status(), StatusCode::FORBIDDEN);
    let erase = app
        .console_post(&format!("/admin/contacts/{id}/erase"), Some(&viewer.cookie))
        .form(&[("csrf", viewer.csrf.as_str()), ("confirm", "kept@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(erase.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.console_get(&format!("/admin/contacts/{id}/erase"), &viewer.cookie).await.0, StatusCode::FORBIDDEN);
    assert!(app.contact_by_email("kept@example.org").await.is_some());
    let (_, found) = app.send(app.get("/api/v1/suppressions?email=kept@example.org")).await;
    assert_eq!(found["items"], json!([]));
}

#[tokio::test]
async fn an_editor_suppresses_an_address_and_erases_a_person_only_after_typing_it_again() {
    let app = spawn_app().await;
    let admin = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let added = app
        .console_post("/admin/suppressions", Some(&admin.cookie))
        .form(&[("csrf", admin.csrf.as_str()), ("email", "Phoned.In@example.org"), ("reason", "manual")])
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK);
    assert!(added.text().await.unwrap().contains("The address is suppressed."));
    let (_, found) = app.console_get("/admin/suppressions?email=phoned.in@example.org", &admin.cookie).await;
    assert!(found.contains("<td>manual</td>"), "{found}");
    let bad = app
        .console_post("/admin/suppressions", Some(&admin.cookie))
        .form(&[("csrf", admin.csrf.as_str()), ("email", "not an address"), ("reason", "manual")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await.unwrap().contains("email: "), "the field at fault is named");

    let contact = app.create_contact(json!({"email": "leaving@example.org"})).await;
    let id = contact["id"].as_str().unwrap();
    let (status, ask) = app.console_get(&format!("/admin/contacts/{id}/erase"), &admin.cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ask.contains("This cannot be undone.") && ask.contains("leaving@example.org"), "{ask}");
    let mistyped = app
        .console_post(&format!("/admin/contacts/{id}/erase"), Some(&admin.cookie))
        .form(&[("csrf", admin.csrf.as_str()), ("confirm", "leavin@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(mistyped.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(app.contact_by_email("leaving@example.org").await.is_some(), "nothing erased on a mistyped address");
    let export = app
        .client
        .get(app.url(&format!("/admin/contacts/{id}/export")))
        .header("cookie", &admin.cookie)
        .send()
        .await
        .unwrap();
    assert!(export.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert_eq!(export.json::<serde_json::Value>().await.unwrap()["contact"]["email"], "leaving@example.org");
    let erased = app
        .console_post(&format!("/admin/contacts/{id}/erase"), Some(&admin.cookie))
        .form(&[("csrf", admin.csrf.as_str()), ("confirm", "LEAVING@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        (erased.status(), erased.headers()["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/admin/contacts?erased=1")
    );
    assert!(app.contact_by_email("leaving@example.org").await.is_none());
    let (_, found) = app.send(app.get("/api/v1/suppressions?email=leaving@example.org")).await;
    assert_eq!(found["items"].as_array().map(Vec::len), Some(1), "the address stays suppressed");
}

#[tokio::test]
async fn an_admin_signs_in_in_a_browser_finds_a_person_and_reads_their_consent_timeline() {
    use crate::browser::Browser;
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("coffee", "double", json!({"title": "The coffee letter"})).await;
    for (email, agent) in [("grace@example.org", "Firefox/140.0"), ("alan@example.org", "Safari/18.4")] {
        let response = app
            .client
            .post(app.url("/f/coffee"))
            .header("user-agent", agent)
            .header("referer", "https://www.example.org/newsletter")
            .form(&[("email", email), ("consent", list.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let link = app.mail.wait_for(email, 1).await[0].link(&format!("{}/confirm/", app.address));
        app.client.post(&link).header("user-agent", agent).send().await.unwrap();
    }
    app.ledger_sequenced().await;

    let browser = Browser::start().await;
    browser.resize(1280, 900).await;
    browser.goto(&app.url("/")).await;
    browser.wait_for_text("Sign in").await;
    browser.type_into("#email", ADMIN_EMAIL).await;
    browser.type_into("#password", "a wrong passphrase").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("The e-mail or password is wrong.").await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Consents over the last 30 days").await;
    assert_eq!(browser.text_of(".cards .card:first-child .figure").await, "2", "two contacts");
    browser.screenshot_page("console-dashboard").await;

    browser.click("nav a[href='/admin/contacts']").await;
    browser.wait_for_text("grace@example.org").await;
    browser.type_into("#q", "grace").await;
    browser.click(".filters button[type=submit]").await;
    browser.wait_for_text("E-mail starts with").await;
    let listed = browser.text_of("table tbody").await;
    assert!(listed.contains("grace@example.org") && !listed.contains("alan@example.org"), "{listed}");
    browser.click("td a").await;
    browser.wait_for_text("Consent timeline").await;
    let timeline = browser.text_of("ol.timeline").await;
    for shown in [
        "confirmed",
        "granted",
        "double_opt_in",
        "Firefox/140.0",
        "Send me the newsletter. I can unsubscribe at any time.",
        "https://www.example.org/newsletter",
    ] {
        assert!(timeline.contains(shown), "the timeline reads {shown:?}: {timeline}");
    }
    browser.screenshot_page("console-contact-timeline").await;

    browser.click("nav a[href='/admin/forms']").await;
    browser.wait_for_text("Form coffee").await;
    browser.click("td a").await;
    browser.wait_for_text("Embed it").await;
    browser.click("main a.button").await;
    browser.wait_for_text("The look").await;
    browser.screenshot_page("console-form-builder").await;

    browser.click("header.top button[type=submit]").await;
    browser.wait_for_text("Sign in").await;
    browser.goto(&app.url("/admin/contacts")).await;
    browser.wait_for_text("Sign in").await;
}

#[tokio::test]
async fn a_forms_page_shows_its_warnings_its_previews_its_embed_code_and_what_each_version_changed() {
    let app = spawn_app().await;
    let (form, _) = app.form_on_new_list("weak", "passive", json!({"name": "Weak form"})).await;
    let id = form["id"].as_str().unwrap();
    let (status, _) = app.send(app.patch(&format!("/api/v1/forms/{id}"), &json!({"title": "A better title"}))).await;
    assert_eq!(status, StatusCode::OK);
    let viewer_token = app.user_token("viewer").await;
    drop(viewer_token);
    let session = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;

    let (status, list) = app.console_get("/admin/forms", &session.cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list.contains(&format!("<a href=\"/admin/forms/{id}\">Weak form</a>")) && list.contains("<strong>2</strong>"),
        "{list}"
    );
    let (status, page) = app.console_get(&format!("/admin/forms/{id}"), &session.cookie).await;
    assert_eq!(status, StatusCode::OK);
    for shown in [
        "Planet49",
        "<strong>brand_id</strong>",
        &format!("{}/f/weak/embed?variant=script", app.address),
        "Version 2",
        "Changed: title",
        "The first version.",
        &format!("/admin/forms/{id}/preview?locale=pl"),
    ] {
        assert!(page.contains(shown), "{shown:?}: {page}");
    }
    let (status, preview) = app.console_get(&format!("/admin/forms/{id}/preview?locale=pl"), &session.cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(preview.contains("<html lang=\"pl\">") && preview.contains("A better title"), "{preview}");
    assert!(preview.contains("action=\"#\""), "a preview posts nowhere: {preview}");
}

#[tokio::test]
async fn an_editor_builds_a_form_with_a_field_and_a_consent_box_without_writing_json() {
    let app = spawn_app().await;
    let list = app.create_list("Monthly letter").await;
    let session = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (status, blank) = app.console_get("/admin/forms/new", &session.cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(blank.contains("name=\"fields[0].label\"") && blank.contains("name=\"consents[0].list_id\""), "{blank}");

    // Saved with faults: each is named beside its input, and nothing is made.
    let faulty = app
        .console_post("/admin/forms/new", Some(&session.cookie))
        .form(&[
            ("csrf", session.csrf.as_str()),
            ("name", "Letter"),
            ("slug", "Not A Slug"),
            ("title", "Our letter"),
            ("opt_in", "double"),
            ("consents[0].list_id", ""),
            ("consents[0].text", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(faulty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let faulty = faulty.text().await.unwrap();
    assert!(faulty.contains("id=\"e-slug\"") && faulty.contains("must hold at least one list"), "{faulty}");
    assert!(faulty.contains("value=\"Our letter\""), "what was typed is kept: {faulty}");
    let (_, forms) = app.send(app.get("/api/v1/forms")).await;
    assert_eq!(forms["items"], json!([]));

    let saved = app
        .console_post("/admin/forms/new", Some(&session.cookie))
        .form(&[
            ("csrf", session.csrf.as_str()),
            ("name", "Letter"),
            ("slug", "letter"),
            ("title", "Our letter"),
            ("opt_in", "double"),
            ("fields[0].label", "First name"),
            ("fields[0].name", "first_name"),
            ("fields[0].type", "text"),
            ("fields[0].required", "on"),
            ("consents[0].list_id", list.as_str()),
            ("consents[0].text", "Send me the monthly letter. I can unsubscribe at any time."),
            ("look.accent_color", "#7c2d12"),
            ("look.button_label", "Count me in"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::SEE_OTHER, "{}", saved.text().await.unwrap());
    let (_, forms) = app.send(app.get("/api/v1/forms")).await;
    let form = &forms["items"][0];
    assert_eq!((form["slug"].as_str(), form["version"].as_i64()), (Some("letter"), Some(1)));
    assert_eq!(form["fields"][0]["name"], "first_name");
    assert_eq!(form["fields"][0]["required"], true);
    assert_eq!(form["consents"][0]["list_id"], list.as_str());
    assert_eq!(form["look"]["button_label"], "Count me in");
    let hosted = app.client.get(app.url("/f/letter")).send().await.unwrap().text().await.unwrap();
    assert!(hosted.contains("First name") && hosted.contains(">Count me in</button>"), "{hosted}");

    // Edited: the row removed goes, a new version is made, the page says what changed.
    let id = form["id"].as_str().unwrap();
    let (status, edit) = app.console_get(&format!("/admin/forms/{id}/edit"), &session.cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        edit.contains("value=\"first_name\"") && edit.contains("name=\"fields[1].label\""),
        "an empty row to add: {edit}"
    );
    let edited = app
        .console_post(&format!("/admin/forms/{id}/edit"), Some(&session.cookie))
        .form(&[
            ("csrf", session.csrf.as_str()),
            ("name", "Letter"),
            ("slug", "letter"),
            ("title", "Our monthly letter"),
            ("opt_in", "double"),
            ("fields[0].label", "First name"),
            ("fields[0].name", "first_name"),
            ("fields[0].remove", "on"),
            ("consents[0].list_id", list.as_str()),
            ("consents[0].text", "Send me the monthly letter. I can unsubscribe at any time."),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), StatusCode::SEE_OTHER);
    let (_, page) = app.console_get(&format!("/admin/forms/{id}"), &session.cookie).await;
    assert!(page.contains("Version 2") && page.contains("Changed: fields, look, title"), "{page}");

    // A viewer is offered no builder and may not post one.
    let _ = app.user_token("viewer").await;
    let (_, users) = app.send(app.get("/api/v1/users?limit=10")).await;
    let email = users["items"].as_array().unwrap().iter().find(|u| u["role"] == "viewer").unwrap()["email"]
        .as_str()
        .unwrap()
        .to_owned();
    let viewer = app.sign_in(&email, "a user passphrase").await;
    assert_eq!(app.console_get("/admin/forms/new", &viewer.cookie).await.0, StatusCode::FORBIDDEN);
    let refused = app
        .console_post(&format!("/admin/forms/{id}/edit"), Some(&viewer.cookie))
        .form(&[
            ("csrf", viewer.csrf.as_str()),
            ("name", "Hijacked"),
            ("slug", "letter"),
            ("title", "x"),
            ("consents[0].list_id", list.as_str()),
            ("consents[0].text", "Send me the monthly letter please."),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let (_, form) = app.send(app.get(&format!("/api/v1/forms/{id}"))).await;
    assert_eq!(form["version"], 2, "the viewer changed nothing");
}

#[tokio::test]
async fn a_builder_save_keeps_what_only_the_api_sets() {
    let app = spawn_app().await;
    let extra = json!({
        "confirmation_subject": "Please confirm, coffee lover",
        "confirmation_text": "Open {{ confirm_url }} to get {{ lists }}.",
        "fields": [{"name": "nickname", "label": "Nickname", "type": "text", "max_length": 20}],
    });
    let (form, list) = app.form_on_new_list("kept", "double", extra).await;
    let id = form["id"].as_str().unwrap();
    let session = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let saved = app
        .console_post(&format!("/admin/forms/{id}/edit"), Some(&session.cookie))
        .form(&[
            ("csrf", session.csrf.as_str()),
            ("name", "Form kept"),
            ("slug", "kept"),
            ("title", "A new title"),
            ("opt_in", "double"),
            ("fields[0].label", "Nickname"),
            ("fields[0].name", "nickname"),
            ("fields[0].type", "text"),
            ("consents[0].list_id", list.as_str()),
            ("consents[0].text", "Send me the newsletter.\r\nI can unsubscribe at any time."),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let (_, form) = app.send(app.get(&format!("/api/v1/forms/{id}"))).await;
    assert_eq!(form["title"], "A new title");
    assert_eq!(form["confirmation_subject"], "Please confirm, coffee lover", "{form}");
    assert_eq!(form["confirmation_text"], "Open {{ confirm_url }} to get {{ lists }}.");
    assert_eq!(form["fields"][0]["max_length"], 20);
    assert_eq!(
        form["consents"][0]["text"], "Send me the newsletter.\nI can unsubscribe at any time.",
        "line breaks as typed"
    );

    // Rows past a form's limit are refused before anything is built from them.
    let many: Vec<(String, String)> = (0..150).map(|i| (format!("fields[{i}].label"), format!("Q{i}"))).collect();
    let mut posted: Vec<(String, String)> = vec![("csrf".into(), session.csrf.clone()), ("slug".into(), "kept".into())];
    posted.extend(many);
    let refused =
        app.console_post(&format!("/admin/forms/{id}/edit"), Some(&session.cookie)).form(&posted).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn wrong_setup_codes_from_one_address_never_lock_out_the_right_one() {
    let app = crate::helpers::spawn_app_without_users_with(|settings| {
        settings.login_attempts_per_account = 2;
        settings.login_attempts_per_ip = 2;
        settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let code = app.setup_code.clone().unwrap();
    let setup = |code: &str, from: &str| {
        app.console_post("/admin/setup", None).header("x-forwarded-for", from.to_owned()).form(&[
            ("code", code),
            ("email", "first@example.org"),
            ("password", "a long first passphrase"),
        ])
    };
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(setup("WRONG-WRONG-WRONG", "203.0.113.9").send().await.unwrap().status());
    }
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS), "the guessing address is stopped: {statuses:?}");
    let right = setup(&code, "198.51.100.7").send().await.unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER, "the operator is not locked out");
}

#[tokio::test]
async fn an_editor_filters_contacts_by_country_and_segment_and_changes_all_it_finds_at_once() {
    let app = spawn_app().await;
    let list = app.create_list("Fair 2026").await;
    for (email, country) in [("ana@example.org", "FR"), ("luc@example.org", "FR"), ("jan@example.org", "DE")] {
        app.create_contact(json!({"email": email, "country": country})).await;
    }
    let gone = app.create_contact(json!({"email": "gone@example.org", "country": "FR"})).await;
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{}/links", gone["id"].as_str().unwrap()))).await;
    app.client.post(links["unsubscribe_url"].as_str().unwrap()).send().await.unwrap();
    let (_, segment) = app
        .send(app.post("/api/v1/segments", &json!({"name": "Germans", "script": "contact.country == \"DE\""})))
        .await;
    let segment = segment["id"].as_str().unwrap();
    let editor = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;

    // The search finds addresses by their start.
    let (_, starting) = app.console_get("/admin/contacts?q=an", &editor.cookie).await;
    assert!(starting.contains("ana@example.org") && !starting.contains("jan@example.org"), "{starting}");
    let (_, french) = app.console_get("/admin/contacts?country=FR", &editor.cookie).await;
    assert!(french.contains("<option value=\"FR\" selected>France</option>"), "{french}");
    assert!(french.contains("ana@example.org") && !french.contains("jan@example.org"), "{french}");
    let (_, germans) = app.console_get(&format!("/admin/contacts?segment={segment}"), &editor.cookie).await;
    assert!(germans.contains("jan@example.org") && !germans.contains("ana@example.org"), "{germans}");
    assert!(!germans.contains("action=\"/admin/contacts/bulk\""), "no bulk change on a segment: {germans}");
    let (status, _) = app.console_get("/admin/contacts?country=France", &editor.cookie).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let bulk = |fields: Vec<(&str, String)>| {
        let mut form = vec![("csrf", editor.csrf.clone())];
        form.extend(fields);
        app.console_post("/admin/contacts/bulk", Some(&editor.cookie)).form(&form)
    };
    let tagged = bulk(vec![("country", "FR".into()), ("action", "add_tag".into()), ("bulk_tag", "salon".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(tagged.status(), StatusCode::OK);
    assert!(tagged.text().await.unwrap().contains("Changed 3 of the 3 contacts found."));
    for (email, tagged) in [("ana@example.org", true), ("luc@example.org", true), ("jan@example.org", false)] {
        let contact = app.contact_by_email(email).await.unwrap();
        assert_eq!(contact["tags"].as_array().unwrap().contains(&json!("salon")), tagged, "{contact}");
    }
    let listed = bulk(vec![("tag", "salon".into()), ("action", "add_list".into()), ("bulk_list", list.clone())])
        .send()
        .await
        .unwrap();
    let page = listed.text().await.unwrap();
    assert!(
        page.contains("Changed 2 of the 3 contacts found.") && page.contains("1 were not put on the list"),
        "{page}"
    );
    let gone = app.contact_by_email("gone@example.org").await.unwrap();
    assert_eq!(gone["lists"], json!([]), "a suppressed address is never put on a list");
    let ana = app.contact_by_email("ana@example.org").await.unwrap();
    assert_eq!(ana["lists"], json!([list]));
    let untagged = bulk(vec![("action", "remove_tag".into()), ("bulk_tag", "salon".into())]).send().await.unwrap();
    assert!(untagged.text().await.unwrap().contains("Changed 3 of the 4 contacts found."));

    // A viewer, a form without its token, a bad change: refused, nothing changed.
    let viewer = app.console_user("viewer").await;
    let as_viewer = app
        .console_post("/admin/contacts/bulk", Some(&viewer.cookie))
        .form(&[("csrf", viewer.csrf.as_str()), ("action", "add_tag"), ("bulk_tag", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(as_viewer.status(), StatusCode::FORBIDDEN);
    let without = app
        .console_post("/admin/contacts/bulk", Some(&editor.cookie))
        .form(&[("action", "add_tag"), ("bulk_tag", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), StatusCode::FORBIDDEN);
    let bad = bulk(vec![("action", "add_tag".into()), ("bulk_tag", "not a tag!".into())]).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, tagged_x) = app.send(app.get("/api/v1/contacts?tag=x")).await;
    assert_eq!(tagged_x["items"], json!([]));
}

#[tokio::test]
async fn the_builder_shows_its_unsaved_form_beside_it_in_the_language_chosen() {
    let app = spawn_app().await;
    let list = app.create_list("Weekly letter").await;
    let session = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, builder) = app.console_get("/admin/forms/new", &session.cookie).await;
    assert!(builder.contains("<iframe name=\"preview\""), "{builder}");
    assert!(builder.contains("formaction=\"/admin/forms/preview\" formtarget=\"preview\""), "{builder}");

    let unsaved = |csrf: &str, locale: &str| {
        app.console_post("/admin/forms/preview", Some(&session.cookie)).form(&[
            ("csrf", csrf),
            ("name", "Weekly"),
            ("slug", "weekly"),
            ("title", "The weekly letter"),
            ("opt_in", "double"),
            ("fields[0].label", "Favourite plant"),
            ("fields[0].name", "plant"),
            ("consents[0].list_id", list.as_str()),
            ("consents[0].text", "Send me the weekly letter."),
            ("preview_locale", locale),
        ])
    };
    let shown = unsaved(&session.csrf, "de").send().await.unwrap();
    assert_eq!(shown.status(), StatusCode::OK);
    let policy = shown.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("frame-ancestors 'self'") && policy.contains("form-action 'none'"), "{policy}");
    let page = shown.text().await.unwrap();
    assert!(page.contains("<html lang=\"de\"") && page.contains("Favourite plant"), "{page}");
    assert!(page.contains("Send me the weekly letter."), "{page}");
    let (_, forms) = app.send(app.get("/api/v1/forms")).await;
    assert_eq!(forms["items"], json!([]), "a preview saves nothing");

    assert_eq!(unsaved("not-the-token", "en").send().await.unwrap().status(), StatusCode::FORBIDDEN);
    // An unfinished form's faults show in the frame too.
    let unfinished = app
        .console_post("/admin/forms/preview", Some(&session.cookie))
        .form(&[("csrf", session.csrf.as_str()), ("name", "Half"), ("slug", "half")])
        .send()
        .await
        .unwrap();
    assert_eq!(unfinished.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let policy = unfinished.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("frame-ancestors 'self'"), "{policy}");
    assert!(unfinished.text().await.unwrap().contains("must hold at least one list"));
    let console_page =
        app.client.get(app.url("/admin/forms/new")).header("cookie", &session.cookie).send().await.unwrap();
    let policy = console_page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("frame-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
}

#[tokio::test]
async fn an_editor_suppresses_a_pasted_export_at_once_and_its_contacts_leave_everything() {
    let app = spawn_app().await;
    let list = app.create_list("Monthly").await;
    let kept = app.create_contact(json!({"email": "leaving@example.org", "lists": [list]})).await;
    let editor = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, page) = app.console_get("/admin/suppressions", &editor.cookie).await;
    assert!(page.contains("action=\"/admin/suppressions/import\""), "{page}");

    let export = "Email Address,First Name\r\nleaving@example.org,Lea\r\nnobody@example.org,\r\nnot an address,\r\nNOBODY@example.org,\r\n";
    let pasted = app
        .console_post("/admin/suppressions/import", Some(&editor.cookie))
        .form(&[("csrf", editor.csrf.as_str()), ("addresses", export), ("reason", "unsubscribed")])
        .send()
        .await
        .unwrap();
    assert_eq!(pasted.status(), StatusCode::OK);
    let page = pasted.text().await.unwrap();
    assert!(
        page.contains("2 addresses suppressed (1 of them contacts, who left everything), 0 suppressed already, 1 lines without an address."),
        "{page}"
    );
    let contact = app.contact_by_email("leaving@example.org").await.unwrap();
    assert_eq!((contact["status"].as_str(), contact["lists"].clone()), (Some("unsubscribed"), json!([])), "{kept}");
    let (_, found) = app.send(app.get("/api/v1/suppressions?email=nobody@example.org")).await;
    assert_eq!(found["items"].as_array().unwrap().len(), 1);

    // A long export (beyond a form post's default 16 KiB) is read whole.
    let long: String = (0..1000).map(|i| format!("person{i}@long-export.example\n")).collect();
    let pasted = app
        .console_post("/admin/suppressions/import", Some(&editor.cookie))
        .form(&[("csrf", editor.csrf.as_str()), ("addresses", long.as_str()), ("reason", "bounced")])
        .send()
        .await
        .unwrap();
    assert_eq!(pasted.status(), StatusCode::OK);
    assert!(pasted.text().await.unwrap().contains("1000 addresses suppressed"));

    let empty = app
        .console_post("/admin/suppressions/import", Some(&editor.cookie))
        .form(&[("csrf", editor.csrf.as_str()), ("addresses", "  "), ("reason", "unsubscribed")])
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let viewer = app.console_user("viewer").await;
    let refused = app
        .console_post("/admin/suppressions/import", Some(&viewer.cookie))
        .form(&[("csrf", viewer.csrf.as_str()), ("addresses", "other@example.org"), ("reason", "manual")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let (_, other) = app.send(app.get("/api/v1/suppressions?email=other@example.org")).await;
    assert_eq!(other["items"], json!([]));
}

#[tokio::test]
async fn the_builder_puts_partners_and_a_survey_on_a_form_and_a_save_without_them_takes_them_off() {
    let app = spawn_app().await;
    let list = app.create_list("Offers").await;
    let acme = crate::partners::create_partner(&app, "Acme", json!({})).await;
    let globex = crate::partners::create_partner(&app, "Globex", json!({})).await;
    let survey = crate::surveys::branching_survey(&app).await;
    let (acme, globex) = (acme["id"].as_str().unwrap().to_owned(), globex["id"].as_str().unwrap().to_owned());
    let session = app.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, blank) = app.console_get("/admin/forms/new", &session.cookie).await;
    assert!(
        blank.contains(&format!("name=\"partners[{acme}]\""))
            && blank.contains("Acme SAS, https://acme.example/privacy"),
        "{blank}"
    );
    assert!(
        blank.contains(&format!("<option value=\"{survey}\" >Pets</option>"))
            || blank.contains(&format!("value=\"{survey}\"")),
        "{blank}"
    );

    let partner_key = format!("partners[{acme}]");
    let base = vec![
        ("csrf", session.csrf.clone()),
        ("name", "Offers".to_owned()),
        ("slug", "offers".to_owned()),
        ("title", "Offers".to_owned()),
        ("opt_in", "double".to_owned()),
        ("consents[0].list_id", list.clone()),
        ("consents[0].text", "Send me the offers.".to_owned()),
    ];
    let mut with = base.clone();
    with.push((partner_key.as_str(), "on".to_owned()));
    with.push(("survey_id", survey.clone()));
    with.push(("survey_after", "signup".to_owned()));
    let saved = app.console_post("/admin/forms/new", Some(&session.cookie)).form(&with).send().await.unwrap();
    assert_eq!(saved.status(), StatusCode::SEE_OTHER, "{}", saved.text().await.unwrap());
    let (_, forms) = app.send(app.get("/api/v1/forms")).await;
    let form = forms["items"][0].clone();
    assert_eq!(form["partners"], json!([acme]), "only the partner ticked: {form}");
    assert_eq!((form["survey_id"].as_str(), form["survey_after"].as_str()), (Some(survey.as_str()), Some("signup")));
    let hosted = app.client.get(app.url("/f/offers")).send().await.unwrap().text().await.unwrap();
    assert!(hosted.contains(&format!("name=\"partner\" value=\"{acme}\"")) && !hosted.contains(&globex), "{hosted}");
    let id = form["id"].as_str().unwrap();
    let (_, edit) = app.console_get(&format!("/admin/forms/{id}/edit"), &session.cookie).await;
    assert!(edit.contains(&format!("name=\"partners[{acme}]\" value=\"on\" checked")), "{edit}");

    // Saved with every box unticked and no survey: the form has neither any more.
    let cleared =
        app.console_post(&format!("/admin/forms/{id}/edit"), Some(&session.cookie)).form(&base).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::SEE_OTHER);
    let (_, form) = app.send(app.get(&format!("/api/v1/forms/{id}"))).await;
    assert_eq!(form["partners"], json!([]), "{form}");
    assert!(form["survey_id"].is_null(), "{form}");

    // A partner that does not exist is named, as the API names it.
    let mut unknown = base.clone();
    let ghost = format!("partners[{}]", uuid::Uuid::now_v7());
    unknown.push((ghost.as_str(), "on".to_owned()));
    let refused = app
        .console_post(&format!("/admin/forms/{id}/edit"), Some(&session.cookie))
        .form(&unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
