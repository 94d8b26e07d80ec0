//! The signup flow in a real browser: headless Chromium driven over WebDriver
//! (chromedriver), mail received by a real SMTP server. `Browser` is shared with the
//! accessibility test.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};
use crate::partners::create_partner;
use crate::receiver::Receiver;
use crate::surveys::branching_survey;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const SHADOW_ROOT: &str = "shadow-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session through chromedriver's W3C WebDriver API.
pub(crate) struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    profile: std::path::PathBuf,
}

impl Browser {
    pub(crate) async fn start() -> Self {
        Self::launch(None).await
    }

    /// A session whose browser asks for pages in `languages` (an `Accept-Language` value
    /// such as `fr-FR,fr`), as the browser of a person who set those languages does.
    pub(crate) async fn start_in(languages: &str) -> Self {
        Self::launch(Some(languages)).await
    }

    async fn launch(languages: Option<&str>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/test installs it: Debian packages chromium, chromium-driver)");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = http.get(format!("{base}/status")).send().await
                && response.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("consento-chromium-{}", uuid::Uuid::new_v4()));
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let mut capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // axe-core takes a few seconds over a page; the default of 30 s leaves room.
            "timeouts": {"script": 60_000},
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=420,900", format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}});
        if let Some(languages) = languages {
            capabilities["capabilities"]["alwaysMatch"]["goog:chromeOptions"]["prefs"] =
                json!({"intl.accept_languages": languages});
        }
        let response: Value =
            http.post(format!("{base}/session")).json(&capabilities).send().await.unwrap().json().await.unwrap();
        let session = response["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {response}"));
        Self { http, session: format!("{base}/session/{session}"), driver, profile }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(response["value"].get("error").is_none(), "WebDriver {path}: {response}");
        response["value"].clone()
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub(crate) async fn find(&self, css: &str) -> String {
        let found =
            self.command(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_owned()
    }

    /// An element of the shadow root of the element `host` (WebDriver's shadow root
    /// commands: how a person's clicks and keys reach a form embedded in a shadow root).
    pub(crate) async fn find_in_shadow(&self, host: &str, css: &str) -> String {
        let host = self.find(host).await;
        let root = self.command(reqwest::Method::GET, &format!("/element/{host}/shadow"), None).await;
        let root = root[SHADOW_ROOT].as_str().unwrap_or_else(|| panic!("no shadow root: {root}")).to_owned();
        let found = self
            .command(
                reqwest::Method::POST,
                &format!("/shadow/{root}/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css} in the shadow root: {found}")).to_owned()
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.type_into_element(&element, text).await;
    }

    /// Types into the element of that id (from `find` or `find_in_shadow`).
    pub(crate) async fn type_into_element(&self, element: &str, text: &str) {
        self.command(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({"text": text}))).await;
    }

    /// Empties a text field.
    pub(crate) async fn clear(&self, css: &str) {
        let element = self.find(css).await;
        self.clear_element(&element).await;
    }

    pub(crate) async fn clear_element(&self, element: &str) {
        self.command(reqwest::Method::POST, &format!("/element/{element}/clear"), Some(json!({}))).await;
    }

    pub(crate) async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.click_element(&element).await;
    }

    pub(crate) async fn click_element(&self, element: &str) {
        self.command(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    /// The text of an element as the browser renders it.
    pub(crate) async fn text_of(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.text_of_element(&element).await
    }

    pub(crate) async fn text_of_element(&self, element: &str) -> String {
        self.command(reqwest::Method::GET, &format!("/element/{element}/text"), None).await.as_str().unwrap().to_owned()
    }

    /// An attribute of an element as written in the page, if it has it.
    pub(crate) async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let element = self.find(css).await;
        let value = self.command(reqwest::Method::GET, &format!("/element/{element}/attribute/{name}"), None).await;
        value.as_str().map(str::to_owned)
    }

    /// The address of the page the browser shows.
    pub(crate) async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None).await.as_str().unwrap().to_owned()
    }

    pub(crate) async fn source(&self) -> String {
        self.command(reqwest::Method::GET, "/source", None).await.as_str().unwrap().to_owned()
    }

    /// Waits until the page holds `text`.
    pub(crate) async fn wait_for_text(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let source = self.source().await;
            if source.contains(text) {
                return source;
            }
            assert!(Instant::now() < deadline, "the page never showed {text:?}: {source}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` as the body of a function in the page, with `args` as its `arguments`;
    /// answers what it returns. Scripts run this way are not the page's, so its
    /// Content-Security-Policy does not apply to them.
    pub(crate) async fn execute(&self, script: &str, args: Value) -> Value {
        self.command(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// As `execute`, for a script that answers by calling its last argument, the callback
    /// WebDriver adds (within the session's script timeout).
    pub(crate) async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.command(reqwest::Method::POST, "/execute/async", Some(json!({"script": script, "args": args}))).await
    }

    /// The handle of the window commands go to.
    pub(crate) async fn window(&self) -> String {
        self.command(reqwest::Method::GET, "/window", None).await.as_str().unwrap().to_owned()
    }

    /// Opens a second window (as a person opens one beside the first), and answers its
    /// handle; commands still go to the current one until [`Browser::switch_to`].
    pub(crate) async fn new_window(&self) -> String {
        let opened = self.command(reqwest::Method::POST, "/window/new", Some(json!({"type": "window"}))).await;
        opened["handle"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn switch_to(&self, handle: &str) {
        self.command(reqwest::Method::POST, "/window", Some(json!({"handle": handle}))).await;
    }

    /// Chooses a file for a file input, as a person picks it in the file dialog.
    pub(crate) async fn choose_file(&self, css: &str, path: &std::path::Path) {
        let element = self.find(css).await;
        self.type_into_element(&element, &path.display().to_string()).await;
    }

    /// Resizes the window (a desktop's, for pages made for one).
    pub(crate) async fn resize(&self, width: u32, height: u32) {
        self.command(reqwest::Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    /// Saves a screenshot under target/screenshots, for people to look at.
    pub(crate) async fn screenshot(&self, name: &str) {
        let png = self.command(reqwest::Method::GET, "/screenshot", None).await;
        save_screenshot(name, png.as_str().unwrap());
    }

    /// As `screenshot`, of the whole page rather than the window (Chromium's own command,
    /// through chromedriver).
    pub(crate) async fn screenshot_page(&self, name: &str) {
        let cdp = |cmd: &str, params: Value| {
            self.command(reqwest::Method::POST, "/goog/cdp/execute", Some(json!({"cmd": cmd, "params": params})))
        };
        let metrics = cdp("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let clip = json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
        let png =
            cdp("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true, "clip": clip})).await;
        save_screenshot(name, png["data"].as_str().unwrap());
    }
}

/// Writes a base64 PNG to target/screenshots/<name>.png.
fn save_screenshot(name: &str, base64_png: &str) {
    let bytes = base64::engine::general_purpose::STANDARD.decode(base64_png).unwrap();
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join(format!("{name}.png")), bytes).unwrap();
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Chromium outlives a killed chromedriver: end the processes of this session's profile.
        let _ = Command::new("pkill").arg("-f").arg(self.profile.as_os_str()).status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[tokio::test]
async fn a_person_signs_up_in_a_browser_confirms_from_the_mail_and_the_ledger_proves_it() {
    let app = spawn_app().await;
    let fields = json!({
        "intro": "News about consento, once a month.",
        "fields": [{"name": "first_name", "label": "First name", "type": "text"}]
    });
    let (form, list) = app.form_on_new_list("browser", "double", fields).await;

    let browser = Browser::start().await;
    browser.goto(&app.url("/f/browser")).await;
    browser.wait_for_text("Our newsletter").await;
    browser.type_into("#f-email", "grace.hopper@example.org").await;
    browser.type_into("#f-first_name", "Grace").await;
    browser.click(&format!("input[name=consent][value='{list}']")).await;
    browser.screenshot("signup-form").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your inbox").await;

    let mail = &app.mail.wait_for("grace.hopper@example.org", 1).await[0];
    let link = mail.link(&format!("{}/confirm/", app.address));
    browser.goto(&link).await;
    browser.wait_for_text("Confirm your subscription").await;
    browser.screenshot("confirm-page").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Subscription confirmed").await;

    let contact = app.contact_by_email("grace.hopper@example.org").await.unwrap();
    assert_eq!(contact["attributes"]["first_name"], "Grace");
    assert_eq!(contact["lists"], json!([list]));
    let (status, consents) =
        app.send(app.get(&format!("/api/v1/contacts/{}/consents", contact["id"].as_str().unwrap()))).await;
    assert_eq!(status, StatusCode::OK);
    let events = consents["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{consents}");
    let (granted, confirmed) = (&events[0], &events[1]);
    assert_eq!((granted["action"].as_str(), granted["basis"].as_str()), (Some("granted"), Some("single_opt_in")));
    assert_eq!((confirmed["action"].as_str(), confirmed["basis"].as_str()), (Some("confirmed"), Some("double_opt_in")));
    for event in events {
        assert_eq!(event["form_id"], form["id"]);
        assert_eq!(event["form_version"], 1);
        assert_eq!(event["ip"], "127.0.0.1");
        assert!(event["user_agent"].as_str().unwrap().contains("Chrome"), "{event}");
    }
    assert_eq!(
        granted["consent_text_sha256"],
        consento::domain::consent::sha256_hex(b"Send me the newsletter. I can unsubscribe at any time.")
    );
    assert_eq!(granted["source_url"], app.url("/f/browser"));
    let (_, report) = app.send(app.get("/api/v1/consent/verify")).await;
    assert_eq!(report["valid"], true);
}

/// Maps what Acme receives: its own field names, nothing else.
const ACME_SHARE: &str = r#"
fn share(lead, partner) {
    #{ contact_email: lead.email, opted_in_at: lead.consent.confirmed_at, double_opt_in: lead.consent.double_opt_in, source: "consento" }
}
"#;

#[tokio::test]
async fn a_person_ticks_one_of_two_partners_confirms_and_answers_a_branching_survey_in_a_browser() {
    let app = spawn_app_with(|s| s.webhook_backoff_ms = 100).await;
    let (acme_hook, globex_hook) = (Receiver::start(0), Receiver::start(0));
    let (status, plugin) =
        app.send(app.post("/api/v1/plugins", &json!({"name": "acme-share", "source": ACME_SHARE}))).await;
    assert_eq!(status, StatusCode::CREATED, "{plugin}");
    let acme = create_partner(&app, "Acme", json!({"webhook_url": acme_hook.url, "plugin": "acme-share"})).await;
    let globex = create_partner(&app, "Globex", json!({"webhook_url": globex_hook.url})).await;
    let survey = branching_survey(&app).await;
    let extra = json!({"partners": [acme["id"], globex["id"]], "survey_id": survey});
    let (_, list) = app.form_on_new_list("coreg", "double", extra).await;

    let browser = Browser::start().await;
    browser.goto(&app.url("/f/coreg")).await;
    browser.wait_for_text("Globex SAS").await;
    browser.type_into("#f-email", "ines@example.org").await;
    browser.click(&format!("input[name=consent][value='{list}']")).await;
    let acme_box = format!("input[name=partner][value='{}']", acme["id"].as_str().unwrap());
    let acme_words = browser.text_of(&format!("{acme_box} ~ span.partner-text")).await;
    browser.click(&acme_box).await;
    browser.screenshot("coreg-form").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your inbox").await;
    assert!(acme_hook.requests().is_empty(), "nothing is shared before the confirmation");

    let mail = &app.mail.wait_for("ines@example.org", 1).await[0];
    assert!(mail.text().contains("sharing with Acme (Acme SAS)"), "{}", mail.text());
    browser.goto(&mail.link(&format!("{}/confirm/", app.address))).await;
    browser.wait_for_text("Confirm your subscription").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Subscription confirmed").await;
    browser.click("#next-link").await;
    browser.wait_for_text("Which pets do you have?").await;
    browser.screenshot("survey-question").await;
    browser.click("input[name=answer][value='dogs']").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("How big is your dog?").await;
    browser.click("input[name=answer][value='large']").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("How many mails a month").await;
    browser.click("input[name=answer][value='4']").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Thank you for your answers").await;

    let received = acme_hook.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let received_now = acme_hook.requests();
    assert_eq!(received_now.len(), 1, "exactly one webhook: {received_now:?}");
    let request = &received[0];
    assert!(request.signature_verifies(acme["webhook_secret"].as_str().unwrap()));
    let event = request.json();
    assert_eq!(event["type"], "lead.shared");
    let lead = &event["data"]["lead"];
    assert_eq!(lead["contact_email"], "ines@example.org");
    assert_eq!(lead["double_opt_in"], true);
    assert_eq!(lead["source"], "consento");
    assert!(lead["opted_in_at"].is_string(), "{lead}");
    assert_eq!(lead.as_object().unwrap().len(), 4, "only what the hook mapped: {lead}");
    assert!(globex_hook.requests().is_empty(), "the partner not ticked gets nothing");

    let contact = app.contact_by_email("ines@example.org").await.unwrap();
    assert_eq!(contact["attributes"], json!({"pet": "dogs", "dog_size": "large", "mails_per_month": 4}));
    assert_eq!(contact["tags"], json!(["dog-owner"]));
    assert_eq!(contact["lists"], json!([list]));
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    let purpose = format!("partner:{}", acme["id"].as_str().unwrap());
    let granted = consents["events"].as_array().unwrap().iter().find(|e| e["purpose"] == purpose.as_str()).unwrap();
    assert_eq!(granted["consent_text"], acme_words.as_str(), "the ledger keeps the words the browser showed");
}
