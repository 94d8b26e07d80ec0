//! What a person reads and sees on a branded form, in Chromium: the hosted form, its
//! errors, the confirmation, unsubscribe and preference pages in the language of the
//! person's browser, each naming who is asking; the look a form is given against the
//! default one (the screenshots in the README); and the embed snippet pasted into a page
//! of another site, whose own CSS cannot restyle it, submitting from there.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::helpers::{TestApp, spawn_app};
use crate::pages::create_brand;

const PRIVACY_POLICY: &str = "https://acme.example/privacy";

/// Draws the brand's logo on a canvas and answers it as PNG bytes, as a designer would
/// hand one over: a round badge and the name.
async fn drawn_logo(browser: &Browser) -> Vec<u8> {
    browser.goto("about:blank").await;
    let url = browser
        .execute(
            r"
            const canvas = document.createElement('canvas');
            canvas.width = 360; canvas.height = 96;
            const c = canvas.getContext('2d');
            c.fillStyle = '#7c2d12';
            c.beginPath(); c.arc(48, 48, 44, 0, 2 * Math.PI); c.fill();
            c.fillStyle = '#fff7ed'; c.textAlign = 'center'; c.textBaseline = 'middle';
            c.font = 'bold 52px serif'; c.fillText('A', 48, 52);
            c.fillStyle = '#7c2d12'; c.textAlign = 'left';
            c.font = 'bold 40px serif'; c.fillText('Acme Coffee', 108, 52);
            return canvas.toDataURL('image/png');
            ",
            json!([]),
        )
        .await;
    let url = url.as_str().unwrap();
    let data = url.strip_prefix("data:image/png;base64,").unwrap_or_else(|| panic!("not a PNG: {url}"));
    base64::engine::general_purpose::STANDARD.decode(data).unwrap()
}

/// The brand Acme Coffee (the default when it is the first), with `logo` as its logo.
async fn acme_with_logo(app: &TestApp, logo: Vec<u8>) -> String {
    let brand = create_brand(app, "Acme Coffee").await;
    let id = brand["id"].as_str().unwrap().to_owned();
    let upload = app
        .admin(app.client.put(app.url(&format!("/api/v1/brands/{id}/logo"))))
        .header("content-type", "image/png")
        .body(logo);
    let (status, brand) = app.send(upload).await;
    assert_eq!(status, StatusCode::OK, "{brand}");
    assert!(brand["logo_url"].is_string(), "{brand}");
    id
}

/// A form with a text field, a country field and a consent text linking the privacy
/// policy; `extra` adds to its definition. Answers the id of its list.
async fn newsletter_form(app: &TestApp, slug: &str, words: &Words, extra: Value) -> String {
    let list = app.create_list(&format!("{} ({slug})", words.list)).await;
    let mut definition = json!({
        "slug": slug,
        "name": format!("Newsletter {slug}"),
        "title": words.title,
        "intro": words.intro,
        "opt_in": "double",
        "fields": [
            {"name": "first_name", "label": words.first_name, "type": "text"},
            {"name": "land", "label": words.country, "type": "country"},
        ],
        "consents": [{"list_id": list, "text": words.consent}],
    });
    if let (Value::Object(base), Value::Object(extra)) = (&mut definition, extra) {
        base.extend(extra);
    }
    app.create_form(definition).await;
    list
}

/// What the admin wrote for a form, in one language.
struct Words {
    title: &'static str,
    intro: &'static str,
    list: &'static str,
    first_name: &'static str,
    country: &'static str,
    consent: &'static str,
}

const ENGLISH: Words = Words {
    title: "The Acme Coffee letter",
    intro: "Fresh roasts and brewing tips, once a month.",
    list: "Acme Coffee letter",
    first_name: "First name",
    country: "Country",
    consent: "Send me the Acme Coffee letter once a month. I can unsubscribe at any time. \
              See our [privacy policy](https://acme.example/privacy).",
};

/// A language of the test: the browser's, the admin's words, and what consento says in it.
struct Language {
    /// The browser's `Accept-Language`.
    accept: &'static str,
    lang: &'static str,
    slug: &'static str,
    email: &'static str,
    words: Words,
    /// The country the browser's language suggests (code, name), and another's name.
    suggested: (&'static str, &'static str),
    other_country: (&'static str, &'static str),
    // consento's own words, as a person reads them.
    email_label: &'static str,
    choose: &'static str,
    country_suggested: &'static str,
    consents: &'static str,
    subscribe: &'static str,
    sent_by: &'static str,
    privacy_policy: &'static str,
    fix_errors: &'static str,
    no_at: &'static str,
    pending_title: &'static str,
    mail_greeting: &'static str,
    confirm_title: &'static str,
    confirm_button: &'static str,
    confirmed_title: &'static str,
    unsubscribe_title: &'static str,
    unsubscribe_what: &'static str,
    unsubscribe_button: &'static str,
    preferences_title: &'static str,
    save: &'static str,
}

const FRENCH: Language = Language {
    accept: "fr-FR,fr;q=0.9",
    lang: "fr",
    slug: "lettre",
    email: "camille@example.org",
    words: Words {
        title: "La lettre d'Acme Coffee",
        intro: "Nos torréfactions et nos conseils, une fois par mois.",
        list: "Lettre d'Acme Coffee",
        first_name: "Prénom",
        country: "Pays",
        consent: "Envoyez-moi la lettre d'Acme Coffee une fois par mois. Je peux me désabonner à tout moment. \
                  Voir notre [politique de confidentialité](https://acme.example/privacy).",
    },
    suggested: ("FR", "France"),
    other_country: ("DE", "Allemagne"),
    email_label: "Adresse e-mail (obligatoire)",
    choose: "Choisir…",
    country_suggested: "Suggéré par votre navigateur",
    consents: "Choisissez ce que vous recevez",
    subscribe: "S'abonner",
    sent_by: "De la part de Acme Coffee (Acme Coffee Roasters SAS), 12 rue des Fleurs, 75011 Paris, France",
    privacy_policy: "Politique de confidentialité",
    fix_errors: "Veuillez corriger les champs indiqués.",
    no_at: "doit contenir un @, comme nom@exemple.fr",
    pending_title: "Consultez votre boîte mail",
    mail_greeting: "Bonjour,",
    confirm_title: "Confirmez votre abonnement",
    confirm_button: "Confirmer",
    confirmed_title: "Abonnement confirmé",
    unsubscribe_title: "Se désabonner",
    unsubscribe_what: "tous les e-mails de Acme Coffee",
    unsubscribe_button: "Me désabonner",
    preferences_title: "Vos préférences",
    save: "Enregistrer",
};

const GERMAN: Language = Language {
    accept: "de-CH,de;q=0.9",
    lang: "de",
    slug: "newsletter",
    email: "jonas@example.org",
    words: Words {
        title: "Der Newsletter von Acme Coffee",
        intro: "Frische Röstungen und Brühtipps, einmal im Monat.",
        list: "Newsletter von Acme Coffee",
        first_name: "Vorname",
        country: "Land",
        consent: "Senden Sie mir einmal im Monat den Newsletter von Acme Coffee. Ich kann mich jederzeit abmelden. \
                  Siehe unsere [Datenschutzerklärung](https://acme.example/privacy).",
    },
    suggested: ("CH", "Schweiz"),
    other_country: ("FR", "Frankreich"),
    email_label: "E-Mail-Adresse (Pflichtfeld)",
    choose: "Auswählen…",
    country_suggested: "Von Ihrem Browser vorgeschlagen",
    consents: "Wählen Sie, was Sie erhalten",
    subscribe: "Abonnieren",
    sent_by: "Von Acme Coffee (Acme Coffee Roasters SAS), 12 rue des Fleurs, 75011 Paris, France",
    privacy_policy: "Datenschutzerklärung",
    fix_errors: "Bitte korrigieren Sie die markierten Felder.",
    no_at: "muss ein @ enthalten, wie name@beispiel.de",
    pending_title: "Bitte prüfen Sie Ihr Postfach",
    mail_greeting: "Guten Tag,",
    confirm_title: "Bestätigen Sie Ihr Abonnement",
    confirm_button: "Bestätigen",
    confirmed_title: "Abonnement bestätigt",
    unsubscribe_title: "Abmelden",
    unsubscribe_what: "alle E-Mails von Acme Coffee",
    unsubscribe_button: "Abmelden",
    preferences_title: "Ihre Einstellungen",
    save: "Speichern",
};

/// Checks that the page names who is asking as `language` says it: the logo (loaded, its
/// text the brand's name), the imprint and the privacy policy's link; and that the page
/// is in that language.
async fn assert_branded(browser: &Browser, language: &Language, page: &str) {
    let shown = browser
        .execute(
            "const img = document.querySelector('header.sender img');
             return {lang: document.documentElement.lang, alt: img && img.alt,
                     loaded: !!img && img.complete && img.naturalWidth > 0};",
            json!([]),
        )
        .await;
    assert_eq!(shown, json!({"lang": language.lang, "alt": "Acme Coffee", "loaded": true}), "{page}");
    let imprint = browser.text_of("footer.imprint").await;
    assert!(imprint.contains(language.sent_by), "{page}: the imprint reads {imprint:?}");
    assert_eq!(browser.text_of("footer.imprint a").await, language.privacy_policy, "{page}");
    assert_eq!(browser.attribute("footer.imprint a", "href").await.as_deref(), Some(PRIVACY_POLICY), "{page}");
}

/// The text of the option of `code` in a select (the last one: a suggested country is
/// also first).
async fn option_text(browser: &Browser, select: &str, code: &str) -> Value {
    browser
        .execute(
            "const all = document.querySelectorAll(arguments[0] + ' option[value=\"' + arguments[1] + '\"]');
             return all.length ? all[all.length - 1].text : null;",
            json!([select, code]),
        )
        .await
}

#[tokio::test]
async fn a_branded_form_speaks_the_language_of_each_persons_browser_from_the_form_to_the_preference_page() {
    let app = spawn_app().await;
    let logo = drawn_logo(&Browser::start().await).await;
    let brand = acme_with_logo(&app, logo).await;
    let mut lists = Vec::new();
    for language in [&FRENCH, &GERMAN] {
        // No `locale`: the page speaks the browser's language.
        lists.push(newsletter_form(&app, language.slug, &language.words, json!({"brand_id": brand})).await);
    }

    let mut preferences = Vec::new();
    for (language, list) in [&FRENCH, &GERMAN].into_iter().zip(&lists) {
        let browser = Browser::start_in(language.accept).await;
        browser.goto(&app.url(&format!("/f/{}", language.slug))).await;
        browser.wait_for_text(language.words.title).await;
        assert_branded(&browser, language, "form").await;
        assert_eq!(browser.text_of("h1").await, language.words.title);
        assert_eq!(browser.text_of("label[for=f-email]").await, language.email_label);
        assert_eq!(browser.text_of("label[for=f-first_name]").await, language.words.first_name);
        assert_eq!(browser.text_of("#f-consent legend").await, language.consents);
        assert_eq!(browser.text_of("button[type=submit]").await, language.subscribe);
        let consent = browser.text_of("#f-consent label").await;
        assert!(consent.starts_with(&language.words.consent[..30]), "{consent}");
        assert_eq!(browser.attribute("#f-consent label a", "href").await.as_deref(), Some(PRIVACY_POLICY));
        let country = browser
            .execute(
                "const select = document.querySelector('#f-land'), group = select.querySelector('optgroup');
                 return {first: select.options[0].text, chosen: select.value, group: group && group.label,
                         suggested: group && group.querySelector('option').text};",
                json!([]),
            )
            .await;
        assert_eq!(
            country,
            json!({"first": language.choose, "chosen": "", "group": language.country_suggested,
                "suggested": language.suggested.1}),
            "the browser's country is suggested, never chosen"
        );
        let (other, other_name) = language.other_country;
        assert_eq!(option_text(&browser, "#f-land", other).await, other_name);
        browser.screenshot_page(&format!("branded-form-{}", language.lang)).await;

        // An address without an @: the page says what is wrong, in the person's language,
        // and keeps what they entered.
        let (email, suggested) = (language.email, language.suggested.0);
        browser.type_into("#f-email", &email.replace('@', ".")).await;
        browser.type_into("#f-first_name", "Kim").await;
        browser.click("#f-land optgroup option").await;
        browser.click(&format!("input[name=consent][value='{list}']")).await;
        browser.click("button[type=submit]").await;
        browser.wait_for_text(language.fix_errors).await;
        assert_eq!(browser.text_of("#e-email").await, language.no_at);
        let summary = browser.text_of("#summary").await;
        let expected = format!("{}: {}", language.email_label.split(" (").next().unwrap(), language.no_at);
        assert!(summary.contains(language.fix_errors) && summary.contains(&expected), "{summary}");
        let kept = browser
            .execute(
                "return [document.querySelector('#f-first_name').value, document.querySelector('#f-land').value,
                         document.querySelector('input[name=consent]').checked];",
                json!([]),
            )
            .await;
        assert_eq!(kept, json!(["Kim", suggested, true]));
        assert_branded(&browser, language, "form with an error").await;
        browser.screenshot_page(&format!("branded-form-{}-error", language.lang)).await;

        browser.clear("#f-email").await;
        browser.type_into("#f-email", email).await;
        browser.click("button[type=submit]").await;
        browser.wait_for_text(language.pending_title).await;
        assert_eq!(browser.text_of("h1").await, language.pending_title);
        assert_branded(&browser, language, "check your inbox").await;

        let mail = &app.mail.wait_for(email, 1).await[0];
        let text = mail.text();
        for line in [
            language.mail_greeting,
            "Acme Coffee (Acme Coffee Roasters SAS)",
            "12 rue des Fleurs",
            &format!("{}: {PRIVACY_POLICY}", language.privacy_policy),
        ] {
            assert!(text.contains(line), "the confirmation mail says {line:?}: {text}");
        }
        browser.goto(&mail.link(&format!("{}/confirm/", app.address))).await;
        browser.wait_for_text(language.confirm_title).await;
        assert_eq!(browser.text_of("h1").await, language.confirm_title);
        assert_eq!(browser.text_of("main li").await, format!("{} ({})", language.words.list, language.slug));
        assert_eq!(browser.text_of("button[type=submit]").await, language.confirm_button);
        assert_branded(&browser, language, "confirmation").await;
        browser.click("button[type=submit]").await;
        browser.wait_for_text(language.confirmed_title).await;
        assert_branded(&browser, language, "confirmed").await;

        let contact = app.contact_by_email(email).await.unwrap();
        assert_eq!(contact["attributes"], json!({"first_name": "Kim"}));
        assert_eq!((&contact["country"], &contact["lists"]), (&json!(suggested), &json!([list])));
        let id = contact["id"].as_str().unwrap();
        let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{id}/links"))).await;
        browser.goto(links["unsubscribe_url"].as_str().unwrap()).await;
        browser.wait_for_text(language.unsubscribe_title).await;
        assert_eq!(browser.text_of("h1").await, language.unsubscribe_title);
        assert_eq!(browser.text_of("main li").await, language.unsubscribe_what);
        assert_eq!(browser.text_of("button[type=submit]").await, language.unsubscribe_button);
        assert_branded(&browser, language, "unsubscribe").await;
        let url = links["preferences_url"].as_str().unwrap().to_owned();
        browser.goto(&url).await;
        browser.wait_for_text(language.preferences_title).await;
        assert_eq!(browser.text_of("h1").await, language.preferences_title);
        assert_eq!(browser.text_of("button[value=save]").await, language.save);
        assert!(browser.text_of("main").await.contains(email));
        assert_branded(&browser, language, "preferences").await;
        preferences.push(url);
    }

    // Opened later in a browser set to another language, a person's page still speaks
    // theirs: the French person's preferences in the German browser.
    let browser = Browser::start_in(GERMAN.accept).await;
    browser.goto(&preferences[0]).await;
    browser.wait_for_text(FRENCH.preferences_title).await;
    assert_branded(&browser, &FRENCH, "preferences in another browser").await;
}

/// What a person sees of a page's look: computed colours and fonts of the title, the
/// button and the page, and what the header and footer hold.
async fn look_of_page(browser: &Browser) -> Value {
    browser
        .execute(
            "const style = selector => getComputedStyle(document.querySelector(selector));
             const img = document.querySelector('header.sender img');
             return {
               background: style('body').backgroundColor, text: style('body').color,
               titleFont: style('h1').fontFamily, button: style('button[type=submit]').backgroundColor,
               buttonText: style('button[type=submit]').color,
               buttonLabel: document.querySelector('button[type=submit]').innerText,
               logo: img ? img.complete && img.naturalWidth : null,
               imprint: !!document.querySelector('footer.imprint'),
             };",
            json!([]),
        )
        .await
}

#[tokio::test]
async fn a_forms_brand_and_look_show_in_chromium_against_the_default_one() {
    let app = spawn_app().await;
    let browser = Browser::start_in("en-GB,en;q=0.9").await;
    newsletter_form(&app, "plain", &ENGLISH, json!({})).await;
    browser.goto(&app.url("/f/plain")).await;
    browser.wait_for_text(ENGLISH.title).await;
    let plain = look_of_page(&browser).await;
    browser.screenshot_page("form-default").await;
    assert_eq!(plain["button"], "rgb(29, 78, 216)", "the built-in accent: {plain}");
    assert!(plain["titleFont"].as_str().unwrap().starts_with("system-ui"), "{plain}");
    assert_eq!((&plain["logo"], &plain["imprint"]), (&Value::Null, &json!(false)), "no brand, none shown: {plain}");

    let logo = drawn_logo(&browser).await;
    let brand = acme_with_logo(&app, logo).await;
    let look = json!({"accent_color": "#7c2d12", "background_color": "#fff7ed", "text_color": "#1c1917",
        "font": "serif", "button_label": "Count me in"});
    newsletter_form(&app, "acme", &ENGLISH, json!({"brand_id": brand, "look": look})).await;
    browser.goto(&app.url("/f/acme")).await;
    browser.wait_for_text(ENGLISH.title).await;
    let branded = look_of_page(&browser).await;
    browser.screenshot_page("form-branded").await;
    assert_eq!(
        branded,
        json!({
            "background": "rgb(255, 247, 237)", "text": "rgb(28, 25, 23)",
            "titleFont": "Georgia, \"Times New Roman\", serif", "button": "rgb(124, 45, 18)",
            "buttonText": "rgb(255, 255, 255)", "buttonLabel": "Count me in", "logo": 360, "imprint": true,
        })
    );
    let imprint = browser.text_of("footer.imprint").await;
    assert!(
        imprint.contains("From Acme Coffee (Acme Coffee Roasters SAS), 12 rue des Fleurs, 75011 Paris, France"),
        "{imprint}"
    );
    assert_eq!(browser.text_of("footer.imprint a").await, "Privacy policy");
    assert_eq!(browser.attribute("footer.imprint a", "href").await.as_deref(), Some(PRIVACY_POLICY));
}

/// Another site: pages served at `http://localhost:<port>`, another origin than the app's
/// (`http://127.0.0.1:<port>`) by host and port, as a shop's site that pastes the embed.
struct OtherSite {
    origin: String,
    pages: Arc<Mutex<HashMap<String, String>>>,
    server: actix_web::dev::ServerHandle,
}

impl OtherSite {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://localhost:{}", listener.local_addr().unwrap().port());
        let pages: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let shared = pages.clone();
        let server = HttpServer::new(move || {
            let shared = shared.clone();
            App::new().default_service(web::to(move |req: HttpRequest| {
                let page = shared.lock().unwrap().get(req.path()).cloned();
                async move {
                    match page {
                        Some(html) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html),
                        None => HttpResponse::NotFound().finish(),
                    }
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { origin, pages, server: handle }
    }

    /// Serves at `path` a page of the site, with its own stylesheet `css`, holding `snippet`.
    fn publish(&self, path: &str, css: &str, snippet: &str) -> String {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Acme Coffee shop</title><style>{css}</style></head>\n<body>\
             <h1>Our beans</h1><p>Fresh from the roaster, every week.</p>\
             <form class=\"search\" action=\"/search\"><input name=\"q\" aria-label=\"Search\"><button>Search</button></form>\n\
             {snippet}\n<p>© Acme Coffee</p></body></html>\n"
        );
        self.pages.lock().unwrap().insert(path.to_owned(), html);
        format!("{}{path}", self.origin)
    }
}

impl Drop for OtherSite {
    fn drop(&mut self) {
        let server = self.server.clone();
        tokio::spawn(async move { server.stop(false).await });
    }
}

/// A site's stylesheet at its worst for anything pasted into it: rules on every element,
/// on buttons, forms, fields and labels, most `!important`, and theme variables named as
/// the form's own.
const HOSTILE_CSS: &str = r#"
:root { --accent: #00ff00; --bg: #ffff00; --text: #ff00ff; --font: "Comic Sans MS", cursive; }
* { font-family: "Comic Sans MS", cursive !important; color: #f0f !important; }
body { background: #e0f2fe; margin: 1rem; }
button { background: #0f0 !important; color: #000 !important; border-radius: 0 !important; font-size: 1.6rem !important; }
form { border: 5px dashed red; padding: 1rem; }
input, select { background: #ff0 !important; border: 3px dotted blue !important; }
label { text-transform: uppercase; letter-spacing: .3em; }
h1, h2 { text-decoration: underline wavy red; }
"#;

/// The embed's look as the browser computes it inside its shadow root, and the site's
/// own button's (the site's CSS is in force on the site).
const EMBED_LOOK: &str = "
const host = document.querySelector('.consento-embed');
const root = host && host.shadowRoot;
if (!root) return {error: 'no shadow root'};
const style = selector => getComputedStyle(root.querySelector(selector));
const form = root.querySelector('form').getBoundingClientRect();
const img = root.querySelector('header.sender img');
return {
  siteButton: getComputedStyle(document.querySelector('form.search button')).backgroundColor,
  visible: form.width > 200 && form.height > 200,
  background: style('.consento-root').backgroundColor,
  text: style('label[for=f-email]').color,
  textSize: style('label[for=f-email]').fontSize,
  padding: style('.consento-root').paddingTop,
  labelCase: style('label[for=f-email]').textTransform,
  font: style('button[type=submit]').fontFamily,
  button: style('button[type=submit]').backgroundColor,
  buttonText: style('button[type=submit]').color,
  buttonCorners: style('button[type=submit]').borderTopLeftRadius,
  formBorder: style('form').borderTopStyle,
  fieldBackground: style('#f-email').backgroundColor,
  logo: img ? img.complete && img.naturalWidth : null,
};
";

/// What the embed must look like on any site: as configured in `embedded_form`.
fn configured_look() -> Value {
    json!({
        "siteButton": "rgb(0, 255, 0)", "visible": true,
        "background": "rgb(255, 247, 237)", "text": "rgb(28, 25, 23)", "textSize": "16px", "padding": "20px",
        "labelCase": "none",
        "font": "Georgia, \"Times New Roman\", serif", "button": "rgb(124, 45, 18)",
        "buttonText": "rgb(255, 255, 255)", "buttonCorners": "6.4px", "formBorder": "none",
        "fieldBackground": "rgb(255, 255, 255)", "logo": 360,
    })
}

/// A branded form with its look (dark red accent, cream background, serif), and the id of
/// its list.
async fn embedded_form(app: &TestApp, browser: &Browser, slug: &str, extra: Value) -> String {
    let logo = drawn_logo(browser).await;
    let brand = acme_with_logo(app, logo).await;
    let look = json!({"accent_color": "#7c2d12", "background_color": "#fff7ed", "text_color": "#1c1917",
        "font": "serif"});
    let mut extra = extra;
    extra["brand_id"] = json!(brand);
    extra["look"] = look;
    newsletter_form(app, slug, &ENGLISH, extra).await
}

/// The embed snippet of a form, as the admin copies it, in `language`.
async fn snippet(app: &TestApp, path: &str, language: &str) -> String {
    let response = app.client.get(app.url(path)).header("accept-language", language).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

/// Runs `script` in the page until it answers something else than `null`.
async fn wait_for_script(browser: &Browser, script: &str, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = browser.execute(script, json!([])).await;
        if !answer.is_null() {
            return answer;
        }
        assert!(Instant::now() < deadline, "never: {what}; the page: {}", browser.source().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_embed_on_another_sites_page_keeps_its_look_against_the_sites_css_and_posts_to_the_thank_you_page() {
    let app = spawn_app().await;
    let browser = Browser::start_in("en-GB,en;q=0.9").await;
    let list = embedded_form(&app, &browser, "shop", json!({})).await;
    let site = OtherSite::start();
    let page = site.publish("/beans", HOSTILE_CSS, &snippet(&app, "/f/shop/embed", "en").await);

    browser.goto(&page).await;
    browser.wait_for_text("Our beans").await;
    assert_eq!(browser.execute(EMBED_LOOK, json!([])).await, configured_look());
    browser.screenshot_page("embed-on-another-site").await;

    let email = browser.find_in_shadow(".consento-embed", "#f-email").await;
    browser.type_into_element(&email, "ada@example.org").await;
    let name = browser.find_in_shadow(".consento-embed", "#f-first_name").await;
    browser.type_into_element(&name, "Ada").await;
    let consent = browser.find_in_shadow(".consento-embed", "input[name=consent]").await;
    browser.click_element(&consent).await;
    let button = browser.find_in_shadow(".consento-embed", "button[type=submit]").await;
    assert_eq!(browser.text_of_element(&button).await, "Subscribe");
    browser.click_element(&button).await;

    browser.wait_for_text("Check your inbox").await;
    assert_eq!(browser.url().await, app.url("/f/shop"), "the form posted to the app, whose page answers");
    assert!(browser.text_of("footer.imprint").await.contains("Acme Coffee Roasters SAS"));
    let contact = app.contact_by_email("ada@example.org").await.expect("the signup is recorded");
    assert_eq!(contact["attributes"], json!({"first_name": "Ada"}));
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    let granted = &consents["events"][0];
    assert_eq!(
        (granted["action"].as_str(), granted["purpose"].as_str()),
        (Some("granted"), Some(&*format!("list:{list}")))
    );
    assert_eq!(granted["source_url"], format!("{}/", site.origin), "the site it was made on: {granted}");
}

#[tokio::test]
async fn the_script_embed_on_another_sites_page_answers_in_place_in_the_persons_language() {
    let app = spawn_app().await;
    let browser = Browser::start_in("de-DE,de;q=0.9").await;
    let site = OtherSite::start();
    let list = embedded_form(&app, &browser, "laden", json!({"allowed_origins": [site.origin]})).await;
    let page = site.publish("/bohnen", HOSTILE_CSS, &snippet(&app, "/f/laden/embed?variant=script", "de-DE,de").await);

    browser.goto(&page).await;
    browser.wait_for_text("Our beans").await;
    wait_for_script(
        &browser,
        "const form = document.querySelector('.consento-embed').shadowRoot.querySelector('form');
         return form.dataset.enhanced === '1' ? true : null;",
        "the script enhanced the form",
    )
    .await;
    assert_eq!(browser.execute(EMBED_LOOK, json!([])).await, configured_look());

    let email = browser.find_in_shadow(".consento-embed", "#f-email").await;
    browser.type_into_element(&email, "lena.example.org").await;
    let consent = browser.find_in_shadow(".consento-embed", "input[name=consent]").await;
    browser.click_element(&consent).await;
    let button = browser.find_in_shadow(".consento-embed", "button[type=submit]").await;
    assert_eq!(browser.text_of_element(&button).await, "Abonnieren");
    browser.click_element(&button).await;
    let error = wait_for_script(
        &browser,
        "const error = document.querySelector('.consento-embed').shadowRoot.querySelector('#e-email');
         return error && error.innerText;",
        "the error shows beside the field",
    )
    .await;
    assert_eq!(error, "muss ein @ enthalten, wie name@beispiel.de");
    assert_eq!(browser.url().await, page, "the person stays on the site");

    browser.clear_element(&email).await;
    browser.type_into_element(&email, "lena@example.org").await;
    browser.click_element(&button).await;
    let result = wait_for_script(
        &browser,
        "const result = document.querySelector('.consento-embed').shadowRoot.querySelector('.result');
         return result && {text: result.innerText, border: getComputedStyle(result).borderTopColor};",
        "the answer shows in place",
    )
    .await;
    assert_eq!(
        result,
        json!({"text": "Wir haben Ihnen eine E-Mail mit einem Link geschickt. Öffnen Sie ihn, um Ihr Abonnement zu bestätigen.",
            "border": "rgb(124, 45, 18)"})
    );
    assert_eq!(browser.url().await, page, "the person stays on the site");
    assert!(browser.text_of("h1").await.contains("Our beans"));
    browser.screenshot_page("embed-script-answered").await;

    let contact = app.contact_by_email("lena@example.org").await.expect("the signup is recorded");
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    let granted = &consents["events"][0];
    assert_eq!(granted["purpose"], format!("list:{list}"));
    assert_eq!(granted["source_url"], format!("{}/", site.origin), "{granted}");
    let mail = &app.mail.wait_for("lena@example.org", 1).await[0];
    assert!(mail.text().contains("Guten Tag,"), "the mail speaks the person's language: {}", mail.text());
}

/// The embed's look (as `EMBED_LOOK` computes it) on a page of another site whose
/// stylesheet is `css`.
async fn embed_look_under(css: &str) -> Value {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    embedded_form(&app, &browser, "shop", json!({})).await;
    let site = OtherSite::start();
    let page = site.publish("/beans", css, &snippet(&app, "/f/shop/embed", "en").await);
    browser.goto(&page).await;
    browser.wait_for_text("Our beans").await;
    browser.execute(EMBED_LOOK, json!([])).await
}

#[tokio::test]
async fn the_embed_keeps_its_sizes_on_a_site_that_sets_a_smaller_root_font_size() {
    // The "62.5% trick" (1rem = 10px) is common on sites.
    let css = format!("{HOSTILE_CSS}\nhtml {{ font-size: 62.5%; }} body {{ font-size: 1.6rem; }}");
    assert_eq!(embed_look_under(&css).await, configured_look());
}

#[tokio::test]
async fn the_embed_keeps_its_colours_and_font_on_a_site_that_sets_variables_of_the_same_names() {
    let css = format!(
        "{HOSTILE_CSS}\n*, ::before, ::after {{ --accent: #00ff00; --bg: #ffff00; --text: #ff00ff; --font: monospace; }}"
    );
    assert_eq!(embed_look_under(&css).await, configured_look());
}

#[tokio::test]
async fn the_unsubscribe_and_preference_pages_name_the_brand_of_the_form_the_person_signed_up_on() {
    let app = spawn_app().await;
    create_brand(&app, "Consento Demo").await;
    let logo = drawn_logo(&Browser::start().await).await;
    let brand = acme_with_logo(&app, logo).await;
    let list = newsletter_form(&app, FRENCH.slug, &FRENCH.words, json!({"brand_id": brand})).await;
    let signup = app
        .client
        .post(app.url(&format!("/f/{}", FRENCH.slug)))
        .header("accept-language", FRENCH.accept)
        .form(&[("email", FRENCH.email), ("consent", &list)])
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), StatusCode::OK);
    let mail = &app.mail.wait_for(FRENCH.email, 1).await[0];
    let confirm = mail.link(&format!("{}/confirm/", app.address));
    app.client.post(&confirm).send().await.unwrap();

    let browser = Browser::start_in(FRENCH.accept).await;
    browser.goto(&confirm).await;
    browser.wait_for_text("Déjà confirmé").await;
    assert_branded(&browser, &FRENCH, "confirmation").await;
    let contact = app.contact_by_email(FRENCH.email).await.unwrap();
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{}/links", contact["id"].as_str().unwrap()))).await;
    browser.goto(links["unsubscribe_url"].as_str().unwrap()).await;
    browser.wait_for_text(FRENCH.unsubscribe_title).await;
    // Leaving everything leaves both brands' mail: with two, the page names neither.
    assert_eq!(browser.text_of("main li").await, "tous nos e-mails");
    assert_branded(&browser, &FRENCH, "unsubscribe").await;
    browser.goto(links["preferences_url"].as_str().unwrap()).await;
    browser.wait_for_text(FRENCH.preferences_title).await;
    assert_branded(&browser, &FRENCH, "preferences").await;
}
