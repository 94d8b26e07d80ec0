//! The console's first hour, in Chromium as its people use it: the first admin made with
//! the code from the log, a form built without HTML, a person signing up in a second
//! window and confirming from the mail, their proof read in the console, a bought list
//! imported with its provenance, two-factor sign-in turned on, and sign-out and sign-in
//! again with the code. axe checks each console page met on the way.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::accessibility::Audit;
use crate::browser::Browser;
use crate::helpers::spawn_app_without_users;

const EMAIL: &str = "owner@example.org";
const PASSWORD: &str = "a long owner passphrase";

#[tokio::test]
async fn an_owner_sets_up_the_console_builds_a_form_finds_the_person_who_signed_up_and_imports_a_bought_list() {
    let mut app = spawn_app_without_users().await;
    let code = app.setup_code.clone().expect("a first run prints a setup code in the log");
    let browser = Browser::start().await;
    browser.resize(1280, 900).await;
    let mut audit = Audit::new();

    // First run: the console asks for the code from the server's log.
    browser.goto(&app.url("/")).await;
    browser.wait_for_text("Create the first admin").await;
    browser.type_into("#code", &code).await;
    browser.type_into("#email", EMAIL).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Consents over the last 30 days").await;
    browser.click("header.top button[type=submit]").await;

    // Sign in: a wrong password is refused, the right one opens the dashboard.
    browser.wait_for_text("Sign in").await;
    browser.type_into("#email", EMAIL).await;
    browser.type_into("#password", "not the passphrase at all").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("The e-mail or password is wrong.").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Consents over the last 30 days").await;

    // The list the consent box is for (lists are made through the API in this part).
    let token = app.token_for(EMAIL, PASSWORD).await;
    app.admin_token = token.clone();
    let (_, list) = app
        .send(
            app.client
                .post(app.url("/api/v1/lists"))
                .bearer_auth(&token)
                .json(&json!({"name": "Garden letter", "opt_in": "double"})),
        )
        .await;
    let list = list["id"].as_str().unwrap().to_owned();

    // A form with a custom field and a consent box, built on one page.
    browser.click("nav a[href='/admin/forms']").await;
    browser.goto(&app.url("/admin/forms/new")).await;
    browser.wait_for_text("The look").await;
    browser.type_into("#name", "Garden letter signup").await;
    browser.type_into("#slug", "garden").await;
    browser.type_into("#title", "The garden letter").await;
    browser.click(&format!("#consents-0-list option[value='{list}']")).await;
    browser.type_into("#consents-0-text", "Send me the garden letter each month. I can unsubscribe at any time.").await;
    browser.type_into("#fields-0-label", "Garden size").await;
    browser.type_into("#fields-0-name", "garden_size").await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_text("Saved: this is the form").await;
    audit.check(&browser, "console form saved").await;

    // Its preview, as the person will see it.
    let preview = browser.attribute("a[href$='/preview?locale=en']", "href").await.unwrap();
    browser.goto(&app.url(&preview)).await;
    let shown = browser.wait_for_text("Garden size").await;
    assert!(shown.contains("Send me the garden letter each month."), "{shown}");

    // A person signs up in a second window and confirms from the mail they receive.
    let console = browser.window().await;
    let person = browser.new_window().await;
    browser.switch_to(&person).await;
    browser.goto(&app.url("/f/garden")).await;
    browser.wait_for_text("The garden letter").await;
    browser.type_into("#f-email", "rosa@example.org").await;
    browser.type_into("#f-garden_size", "40 m²").await;
    browser.click("input[name=consent]").await;
    browser.click("form button[type=submit]").await;
    browser.wait_for_text("Check your inbox").await;
    let mail = app.mail.wait_for("rosa@example.org", 1).await;
    let link = mail[0].link(&format!("{}/confirm/", app.address));
    browser.goto(&link).await;
    browser.wait_for_text("Confirm your subscription").await;
    browser.click("form button[type=submit]").await;
    browser.wait_for_text("Subscription confirmed").await;
    app.ledger_sequenced().await;

    // Back in the console: the person, their timeline and their proof.
    browser.switch_to(&console).await;
    browser.goto(&app.url("/admin/contacts")).await;
    browser.type_into("#q", "rosa").await;
    browser.click(".filters button[type=submit]").await;
    browser.wait_for_text("rosa@example.org").await;
    browser.click("td a").await;
    browser.wait_for_text("Consent timeline").await;
    let timeline = browser.text_of("ol.timeline").await;
    for shown in ["confirmed", "granted", "double_opt_in", "Send me the garden letter each month."] {
        assert!(timeline.contains(shown), "the timeline reads {shown:?}: {timeline}");
    }
    let profile = browser.text_of("main").await;
    assert!(profile.contains("40 m²"), "the custom field's answer: {profile}");
    let proof = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(document.querySelector('a[download]').href).then(r => r.json()).then(done, e => done(String(e)));",
            json!([]),
        )
        .await;
    let events = proof.to_string();
    assert!(events.contains("Send me the garden letter each month.") && events.contains("confirmed"), "{proof}");

    // A bought list, imported with its provenance; the page follows the job to its end.
    let file = std::env::temp_dir().join(format!("fair-{}.csv", uuid::Uuid::new_v4()));
    std::fs::write(&file, "email,Firma\nbert@example.org,Bloom GmbH\nnot an address,\ncleo@example.org,\n").unwrap();
    browser.click("nav a[href='/admin/imports']").await;
    browser.wait_for_text("Import a file").await;
    audit.check(&browser, "console imports").await;
    browser.choose_file("#file", &file).await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_text("Map the columns").await;
    audit.check(&browser, "console import mapping").await;
    assert!(browser.source().await.contains("<td>Bloom GmbH</td>"), "the first rows are shown");
    browser.click("select[name='column.1.target'] option[value=company]").await;
    browser.click(&format!("input[name=lists][value='{list}']")).await;
    browser.click("#basis option[value=imported]").await;
    browser.type_into("#manifest-supplier", "Flower Fair Ltd").await;
    browser.execute("document.getElementById('manifest-collected_on').value = '2026-04-01';", json!([])).await;
    browser.type_into("#manifest-consent_text", "Yes, the garden letter may write to me.").await;
    browser.click("#manifest-brand_named").await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_text("Progress").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !browser.source().await.contains("id=\"report\"") {
        assert!(Instant::now() < deadline, "the import page never showed its report");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = browser.text_of("main").await;
    assert!(report.contains("finished") && report.contains("email: must not contain spaces"), "{report}");
    assert_eq!(browser.text_of("[data-figure=imported]").await, "2");
    audit.check(&browser, "console import report").await;
    std::fs::remove_file(&file).ok();
    let bert = app.contact_by_email("bert@example.org").await.unwrap();
    assert_eq!(bert["company"], "Bloom GmbH");

    // Two-factor sign-in, turned on with the app's first code.
    browser.click("header.top a[href='/admin/account']").await;
    browser.wait_for_text("Two-factor sign-in").await;
    audit.check(&browser, "console account").await;
    let secret = browser.attribute("input[name=secret]", "value").await.unwrap();
    let code_at = |at: u64| {
        let secret = totp_rs::Secret::try_from_base32(&secret).unwrap();
        totp_rs::Builder::new().with_secret(secret).build().unwrap().generate(at).to_string()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    browser.type_into("#password", PASSWORD).await;
    browser.type_into("#code", &code_at(now)).await;
    browser.click("main form button[type=submit]").await;
    browser.wait_for_text("Two-factor sign-in is on").await;

    // Sign out: the console is closed to this browser; signing in again takes the code.
    browser.click("header.top button[type=submit]").await;
    browser.wait_for_text("Sign in").await;
    browser.goto(&app.url("/admin/contacts")).await;
    browser.wait_for_text("Sign in").await;
    browser.type_into("#email", EMAIL).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Enter your code").await;
    audit.check(&browser, "console sign-in code").await;
    browser.type_into("#code", &code_at(now + 30)).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Consents over the last 30 days").await;
    if let Some(report) = audit.report() {
        panic!("{report}");
    }
}
