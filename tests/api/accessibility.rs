//! Every public page a person can meet, checked in Chromium by axe-core (from npm, which
//! `scripts/test` installs into target/axe): none may have a serious or critical
//! violation. axe is injected over WebDriver, so the pages keep their own
//! Content-Security-Policy (`default-src 'none'`): scripts WebDriver runs are not the page's.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::helpers::{TestApp, spawn_app_with};
use crate::partners::create_partner;
use crate::surveys::branching_survey;

/// Runs axe over the document and answers its violations, each with the nodes at fault.
const RUN_AXE: &str = r"
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']})
  .then(results => done({
    url: results.url,
    engine: results.testEngine.name + ' ' + results.testEngine.version,
    violations: results.violations.map(rule => ({
      id: rule.id,
      impact: rule.impact,
      help: rule.help,
      helpUrl: rule.helpUrl,
      nodes: rule.nodes.map(node => ({target: node.target.join(' '), html: node.html})),
    })),
  }))
  .catch(error => done({error: String(error)}));
";

/// axe-core as `scripts/test` installs it.
fn axe_source() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/axe/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/test installs axe-core from npm)", path.display()))
}

/// The pages checked so far and the serious or critical violations found on them.
pub(crate) struct Audit {
    axe: String,
    checked: Vec<String>,
    found: Vec<String>,
}

impl Audit {
    pub(crate) fn new() -> Self {
        Self { axe: axe_source(), checked: Vec::new(), found: Vec::new() }
    }

    /// Runs axe over the page the browser shows, named `page` in the report; answers the
    /// violations of every impact, as axe gives them.
    pub(crate) async fn check(&mut self, browser: &Browser, page: &str) -> Vec<Value> {
        browser.execute(&self.axe, json!([])).await;
        let results = browser.execute_async(RUN_AXE, json!([])).await;
        assert!(results["error"].is_null(), "axe failed on {page}: {results}");
        assert!(results["engine"].as_str().is_some_and(|e| e.starts_with("axe-core ")), "{results}");
        let url = results["url"].as_str().unwrap_or_default();
        let violations = results["violations"].as_array().cloned().unwrap_or_default();
        for rule in &violations {
            if !matches!(rule["impact"].as_str(), Some("serious" | "critical")) {
                continue;
            }
            let nodes: Vec<String> = rule["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|node| {
                    format!(
                        "      {}  {}",
                        node["target"].as_str().unwrap_or("?"),
                        node["html"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            self.found.push(format!(
                "{page} ({url}): {} [{}] {} ({})\n{}",
                rule["id"].as_str().unwrap_or("?"),
                rule["impact"].as_str().unwrap_or("?"),
                rule["help"].as_str().unwrap_or("?"),
                rule["helpUrl"].as_str().unwrap_or("?"),
                nodes.join("\n"),
            ));
        }
        self.checked.push(format!("{page} ({url})"));
        violations
    }

    /// What the test says when violations were found: each with its page, rule, impact,
    /// help and the nodes at fault.
    pub(crate) fn report(&self) -> Option<String> {
        (!self.found.is_empty()).then(|| {
            format!(
                "{} serious or critical accessibility violation(s) on {} page(s) checked:\n\n{}\n\npages checked:\n  {}",
                self.found.len(),
                self.checked.len(),
                self.found.join("\n\n"),
                self.checked.join("\n  "),
            )
        })
    }
}

/// A double opt-in form with a field of each kind a person fills in, a partner's box and
/// a survey after the confirmation.
async fn full_form(app: &TestApp) -> String {
    let partner = create_partner(app, "Acme", json!({})).await;
    let survey = branching_survey(app).await;
    let extra = json!({
        "intro": "News about consento, once a month.",
        "b2b": true,
        "fields": [
            {"name": "first_name", "label": "First name", "type": "text", "required": true},
            {"name": "role", "label": "Role", "type": "select", "options": ["Developer", "Marketing"], "required": true},
            {"name": "land", "label": "Country", "type": "country"},
            {"name": "topics", "label": "Topics", "type": "multi_select", "options": ["rust", "mail"]},
            {"name": "terms", "label": "I have read the terms", "type": "checkbox", "required": true},
        ],
        "partners": [partner["id"]],
        "survey_id": survey,
    });
    let (_, list) = app.form_on_new_list("everything", "double", extra).await;
    list
}

/// The link of the `nth` data request mailed to `email` (from 1), once it arrived.
async fn data_request_link(app: &TestApp, email: &str, nth: usize) -> String {
    let prefix = format!("{}/data-requests/", app.address);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mails = app.mail.wait_for(email, 1).await;
        if let Some(mail) = mails.iter().filter(|mail| mail.text().contains(&prefix)).nth(nth - 1) {
            return mail.link(&prefix);
        }
        assert!(Instant::now() < deadline, "data request mail {nth} to {email} did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_public_page_has_no_serious_or_critical_accessibility_violation() {
    // Two data requests in a day: a download, then an erasure.
    let app = spawn_app_with(|s| s.confirmation_mails_per_day = 2).await;
    let list = full_form(&app).await;
    let email = "grace.hopper@example.org";
    let browser = Browser::start().await;
    let mut audit = Audit::new();

    browser.goto(&app.url("/")).await;
    browser.wait_for_text("Sign in").await;
    audit.check(&browser, "console sign-in (the root leads there)").await;

    browser.goto(&app.url("/f/everything")).await;
    browser.wait_for_text("Our newsletter").await;
    browser.find("input[name=partner]").await;
    audit.check(&browser, "signup form").await;

    browser.click("button[type=submit]").await;
    browser.wait_for_text("Please correct the marked fields.").await;
    audit.check(&browser, "signup form with errors").await;

    browser.type_into("#f-email", email).await;
    browser.type_into("#f-company", "Navy").await;
    browser.type_into("#f-first_name", "Grace").await;
    browser.click("#f-role option[value='Developer']").await;
    browser.type_into("#f-land", "US").await;
    browser.click("#f-terms").await;
    browser.click(&format!("input[name=consent][value='{list}']")).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your inbox").await;
    audit.check(&browser, "check your inbox").await;

    let mails = app.mail.wait_for(email, 1).await;
    browser.goto(&mails[0].link(&format!("{}/confirm/", app.address))).await;
    browser.wait_for_text("Confirm your subscription").await;
    audit.check(&browser, "confirmation").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Subscription confirmed").await;
    audit.check(&browser, "subscription confirmed").await;

    browser.click("#next-link").await;
    browser.wait_for_text("Which pets do you have?").await;
    audit.check(&browser, "survey question").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("class=\"error\"").await;
    audit.check(&browser, "survey question with an error").await;
    for (answer, next) in
        [("dogs", "How big is your dog?"), ("large", "How many mails"), ("4", "Thank you for your answers")]
    {
        browser.click(&format!("input[name=answer][value='{answer}']")).await;
        browser.click("button[type=submit]").await;
        browser.wait_for_text(next).await;
    }
    audit.check(&browser, "survey done").await;

    let contact = app.contact_by_email(email).await.unwrap();
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{}/links", contact["id"].as_str().unwrap()))).await;
    let preferences = links["preferences_url"].as_str().unwrap();
    browser.goto(preferences).await;
    browser.wait_for_text("Your preferences").await;
    audit.check(&browser, "preference centre").await;
    browser.click("button[value=save]").await;
    browser.wait_for_text("Your preferences are saved.").await;
    audit.check(&browser, "preferences saved").await;
    browser.click("button[value=request_download]").await;
    browser.wait_for_text("carry out your request").await;
    audit.check(&browser, "data request sent").await;
    browser.goto(&data_request_link(&app, email, 1).await).await;
    browser.wait_for_text("Download your data").await;
    audit.check(&browser, "data download").await;

    browser.goto(links["unsubscribe_url"].as_str().unwrap()).await;
    browser.wait_for_text("Stop receiving").await;
    audit.check(&browser, "unsubscribe").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("You are unsubscribed").await;
    audit.check(&browser, "unsubscribed").await;

    browser.goto(preferences).await;
    browser.wait_for_text("Your preferences").await;
    browser.click("button[value=request_erase]").await;
    browser.wait_for_text("carry out your request").await;
    browser.goto(&data_request_link(&app, email, 2).await).await;
    browser.wait_for_text("Delete your data").await;
    audit.check(&browser, "data erasure").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Your data is deleted").await;
    audit.check(&browser, "data deleted").await;

    browser.goto(&app.url("/confirm/not-a-token")).await;
    browser.wait_for_text("This link is not valid").await;
    audit.check(&browser, "invalid link").await;

    browser.goto(&app.url("/f/no-such-form")).await;
    browser.wait_for_text("Page not found").await;
    audit.check(&browser, "unknown form").await;

    // The console, as the admin meets it: a wrong password, then its pages.
    browser.goto(&app.url("/admin/sign-in")).await;
    browser.type_into("#email", crate::helpers::ADMIN_EMAIL).await;
    browser.type_into("#password", "not the password").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("The e-mail or password is wrong.").await;
    audit.check(&browser, "console sign-in refused").await;
    browser.type_into("#password", crate::helpers::ADMIN_PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Consents over the last 30 days").await;
    audit.check(&browser, "console dashboard").await;
    // The person above erased their data: another contact, with a consent of its own.
    let (_, reader) = app.send(app.post("/api/v1/contacts", &json!({"email": "console.reader@example.org"}))).await;
    let id = reader["id"].as_str().unwrap();
    let consent =
        json!({"purpose": format!("list:{list}"), "basis": "single_opt_in", "consent_text": "Send me the newsletter."});
    app.send(app.post(&format!("/api/v1/contacts/{id}/consents"), &consent)).await;
    browser.goto(&app.url("/admin/contacts?q=console.reader")).await;
    browser.wait_for_text("console.reader@example.org").await;
    audit.check(&browser, "console contacts").await;
    browser.click("td a").await;
    browser.wait_for_text("Consent timeline").await;
    audit.check(&browser, "console contact").await;
    browser.goto(&app.url("/admin/lists")).await;
    browser.wait_for_text("Opt-in").await;
    audit.check(&browser, "console lists").await;
    browser.goto(&app.url("/admin/suppressions")).await;
    browser.wait_for_text("Suppress an address").await;
    audit.check(&browser, "console suppression list").await;
    browser.goto(&app.url("/admin/forms")).await;
    browser.wait_for_text("Warnings").await;
    audit.check(&browser, "console forms").await;
    browser.click("td a").await;
    browser.wait_for_text("Embed it").await;
    audit.check(&browser, "console form").await;
    browser.click("main a.button").await;
    browser.wait_for_text("The look").await;
    audit.check(&browser, "console form builder").await;
    browser.goto(&app.url(&format!("/admin/contacts/{id}/erase"))).await;
    browser.wait_for_text("This cannot be undone.").await;
    audit.check(&browser, "console erasure").await;

    if let Some(report) = audit.report() {
        panic!("{report}");
    }
}

#[tokio::test]
async fn the_console_setup_page_has_no_serious_or_critical_accessibility_violation() {
    let app = crate::helpers::spawn_app_without_users().await;
    let browser = Browser::start().await;
    let mut audit = Audit::new();
    browser.goto(&app.url("/admin")).await;
    browser.wait_for_text("Create the first admin").await;
    audit.check(&browser, "console setup").await;
    browser.type_into("#code", "WRONG").await;
    browser.type_into("#email", "first@example.org").await;
    browser.type_into("#password", "a long first passphrase").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("the setup code is wrong").await;
    audit.check(&browser, "console setup refused").await;
    if let Some(report) = audit.report() {
        panic!("{report}");
    }
}

#[tokio::test]
async fn axe_reports_a_violation_it_is_shown() {
    let browser = Browser::start().await;
    let mut audit = Audit::new();
    let page = "<!doctype html><html lang=en><head><title>Faulty</title></head><body><main>\
                <h1>Faulty</h1><img src=x.png><button></button></main></body></html>";
    browser.goto(&format!("data:text/html,{}", percent_encoded(page))).await;
    browser.wait_for_text("Faulty").await;
    let violations = audit.check(&browser, "faulty page").await;
    let ids: Vec<&str> = violations.iter().filter_map(|v| v["id"].as_str()).collect();
    assert!(ids.contains(&"image-alt") && ids.contains(&"button-name"), "{violations:?}");
    assert_eq!(audit.found.len(), 2, "both are critical: {:?}", audit.found);
    let message = audit.report().expect("the audit fails");
    for shown in ["faulty page", "image-alt [critical]", "button-name [critical]", "<img src=\"x.png\">", "<button>"] {
        assert!(message.contains(shown), "{shown:?} is not in {message}");
    }
}

/// Percent-encodes what a data: URL may not hold as it is.
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"<>/=-_.!".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
