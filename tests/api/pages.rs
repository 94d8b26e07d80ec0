//! What a person reads on the public pages and in system mails, and what the admin who set
//! the form up chooses: who is asking (brands), the form's look, its embed snippet, the
//! country select, the person's language, and the warnings a weak form gets.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, body_json, fields_at_fault, spawn_app};

/// The smallest valid PNG (one transparent pixel).
const PIXEL_PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\x0f\0\0\x01\x01\0\x05\x18\xd8N\0\0\0\0IEND\xaeB`\x82";

pub async fn create_brand(app: &TestApp, name: &str) -> Value {
    let body = json!({
        "name": name,
        "legal_name": format!("{name} Roasters SAS"),
        "postal_address": "12 rue des Fleurs\n75011 Paris\nFrance",
        "privacy_policy_url": "https://acme.example/privacy",
        "accent_color": "#7C2D12",
        "footer": "You get this because you asked for it.",
    });
    let (status, brand) = app.send(app.post("/api/v1/brands", &body)).await;
    assert_eq!(status, StatusCode::CREATED, "{brand}");
    brand
}

async fn page(app: &TestApp, path: &str, language: &str) -> (StatusCode, String) {
    let response = app.client.get(app.url(path)).header("accept-language", language).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_branded_form_names_who_is_asking_on_its_pages_and_in_its_mails() {
    let app = spawn_app().await;
    let brand = create_brand(&app, "Acme Coffee").await;
    assert_eq!(brand["is_default"], true, "the first brand is the default: {brand}");
    let id = brand["id"].as_str().unwrap();
    let extra = json!({"brand_id": id, "locale": "fr"});
    let (_, list) = app.form_on_new_list("acme", "double", extra).await;

    let (status, form) = page(&app, "/f/acme", "en").await;
    assert_eq!(status, StatusCode::OK);
    for shown in [
        "Acme Coffee (Acme Coffee Roasters SAS)",
        "12 rue des Fleurs, 75011 Paris, France",
        "href=\"https://acme.example/privacy\"",
        "Politique de confidentialité",
        "--accent: #7c2d12",
    ] {
        assert!(form.contains(shown), "the form shows {shown:?}: {form}");
    }
    let email = "branded@example.org";
    let thanks = app.submit_form("acme", &[("email", email), ("consent", &list)]).await.text().await.unwrap();
    assert!(thanks.contains("Acme Coffee Roasters SAS"), "{thanks}");
    let mail = &app.mail.wait_for(email, 1).await[0];
    let text = mail.text();
    assert!(text.contains("Acme Coffee (Acme Coffee Roasters SAS)"), "{text}");
    assert!(text.contains("Politique de confidentialité: https://acme.example/privacy"), "{text}");

    let link = mail.link(&format!("{}/confirm/", app.address));
    let confirm = app.client.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(confirm.contains("Acme Coffee Roasters SAS") && confirm.contains("Confirmez"), "{confirm}");
    app.client.post(&link).send().await.unwrap();
    let contact = app.contact_by_email(email).await.unwrap();
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{}/links", contact["id"].as_str().unwrap()))).await;
    let unsubscribe = app.client.get(links["unsubscribe_url"].as_str().unwrap()).send().await.unwrap();
    let unsubscribe = unsubscribe.text().await.unwrap();
    assert!(
        unsubscribe.contains("tous les e-mails de Acme Coffee"),
        "whose mail, in the person's language: {unsubscribe}"
    );
    let preferences = app.client.get(links["preferences_url"].as_str().unwrap()).send().await.unwrap();
    assert!(preferences.text().await.unwrap().contains("https://acme.example/privacy"));
}

#[tokio::test]
async fn a_brand_logo_is_a_raster_image_served_to_its_pages() {
    let app = spawn_app().await;
    let brand = create_brand(&app, "Logo Co").await;
    let id = brand["id"].as_str().unwrap();
    let upload = |bytes: &'static [u8], kind: &str| {
        app.admin(app.client.put(app.url(&format!("/api/v1/brands/{id}/logo"))))
            .header("content-type", kind.to_owned())
            .body(bytes)
    };
    let svg = upload(b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>", "image/svg+xml");
    let problem = assert_problem(svg.send().await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["logo"]);
    let (status, brand) = app.send(upload(PIXEL_PNG, "image/png")).await;
    assert_eq!(status, StatusCode::OK, "{brand}");
    let logo_url = brand["logo_url"].as_str().unwrap().to_owned();
    let logo = app.client.get(app.url(&logo_url)).send().await.unwrap();
    assert_eq!(logo.headers()["content-type"], "image/png");
    assert_eq!(logo.bytes().await.unwrap().as_ref(), PIXEL_PNG);

    app.form_on_new_list("logo", "single", json!({})).await;
    let (_, form) = page(&app, "/f/logo", "en").await;
    assert!(form.contains(&format!("<img src=\"{logo_url}\" alt=\"Logo Co\">")), "{form}");
}

#[tokio::test]
async fn brands_name_every_field_at_fault_and_keep_one_default() {
    let app = spawn_app().await;
    let bad = json!({"name": " ", "legal_name": "X", "postal_address": "", "privacy_policy_url": "javascript:alert(1)",
        "accent_color": "red"});
    let problem = assert_problem(
        app.post("/api/v1/brands", &bad).send().await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    let mut fields = fields_at_fault(&problem);
    fields.sort();
    assert_eq!(fields, ["accent_color", "name", "postal_address", "privacy_policy_url"], "{problem}");

    let first = create_brand(&app, "First").await;
    let second = create_brand(&app, "Second").await;
    assert_eq!((first["is_default"].as_bool(), second["is_default"].as_bool()), (Some(true), Some(false)));
    let mut body = second.clone();
    for key in ["id", "logo_url", "created_at", "updated_at"] {
        body.as_object_mut().unwrap().remove(key);
    }
    body["is_default"] = json!(true);
    let (status, made) = app
        .send(
            app.admin(app.client.put(app.url(&format!("/api/v1/brands/{}", second["id"].as_str().unwrap()))))
                .json(&body),
        )
        .await;
    assert_eq!((status, made["is_default"].as_bool()), (StatusCode::OK, Some(true)), "{made}");
    let (_, first) = app.send(app.get(&format!("/api/v1/brands/{}", first["id"].as_str().unwrap()))).await;
    assert_eq!(first["is_default"], false, "one default at a time");
    let delete = app.delete(&format!("/api/v1/brands/{}", second["id"].as_str().unwrap())).send().await.unwrap();
    assert_problem(delete, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn a_consent_text_may_link_the_privacy_policy_and_the_ledger_keeps_the_words_as_written() {
    let app = spawn_app().await;
    let list = app.create_list("Offers").await;
    let text = "Send me *weekly* offers. See our [privacy policy](https://acme.example/privacy). \
                <script>alert(1)</script> [no](javascript:alert(2))";
    app.create_form(json!({"slug": "linked", "name": "Linked", "title": "Offers", "opt_in": "single",
        "consents": [{"list_id": list, "text": text}]}))
        .await;
    let (_, form) = page(&app, "/f/linked", "en").await;
    assert!(form.contains("<em>weekly</em>"), "{form}");
    assert!(
        form.contains("<a href=\"https://acme.example/privacy\" target=\"_blank\" rel=\"noopener\">privacy policy</a>"),
        "{form}"
    );
    assert!(!form.contains("<script>alert(1)") && form.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{form}");
    assert!(!form.contains("javascript:"), "only http(s) and mailto links: {form}");

    app.submit_form("linked", &[("email", "reader@example.org"), ("consent", &list)]).await;
    let contact = app.contact_by_email("reader@example.org").await.unwrap();
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    assert_eq!(consents["events"][0]["consent_text"], text, "the words as the admin wrote them");
}

#[tokio::test]
async fn saving_a_passive_vague_or_unbranded_form_answers_with_warnings() {
    let app = spawn_app().await;
    let list = app.create_list("Deals").await;
    let weak = json!({"slug": "weak", "name": "Weak", "title": "Deals", "opt_in": "passive",
        "consents": [{"list_id": list, "text": "Yes!"}]});
    let form = app.create_form(weak).await;
    let warned: Vec<&str> = form["warnings"].as_array().unwrap().iter().map(|w| w["field"].as_str().unwrap()).collect();
    assert_eq!(warned, ["opt_in", "consents[0].text", "brand_id"], "{form}");
    assert!(form["warnings"][0]["message"].as_str().unwrap().contains("Planet49"));

    let brand = create_brand(&app, "Plain").await;
    let good = json!({"slug": "good", "name": "Good", "title": "Deals", "opt_in": "double", "brand_id": brand["id"],
        "consents": [{"list_id": list, "text": "Send me the weekly deals by e-mail."}]});
    let form = app.create_form(good).await;
    assert_eq!(form["warnings"], json!([]), "{form}");
    let (_, weak) = app.send(app.get("/api/v1/forms?limit=10")).await;
    assert_eq!(weak["items"][0]["warnings"].as_array().map(Vec::len), Some(2), "the default brand now speaks: {weak}");
}

#[tokio::test]
async fn a_forms_look_shows_on_its_page_and_css_that_could_escape_or_load_is_refused() {
    let app = spawn_app().await;
    let look = json!({"look": {"accent_color": "#FDE047", "background_color": "#1c1917", "text_color": "#fafaf9",
        "font": "serif", "button_label": "Count me in", "layout": "two_columns",
        "custom_css": "h1 { letter-spacing: .05em; }"}});
    let (form, _) = app.form_on_new_list("looks", "single", look).await;
    assert_eq!(form["look"]["accent_color"], "#fde047");
    let (_, html) = page(&app, "/f/looks", "en").await;
    for shown in [
        "--accent: #fde047",
        "--on-accent: #000000",
        "--bg: #1c1917",
        "Georgia",
        ">Count me in</button>",
        "grid-template-columns: 1fr 1fr",
        ".consento-form { h1 { letter-spacing: .05em; } }",
    ] {
        assert!(html.contains(shown), "{shown:?} in {html}");
    }
    for css in
        ["</style><script>alert(1)</script>", "body { background: url(https://evil.example/x) }", "@import 'x.css';"]
    {
        let patch = json!({"look": {"custom_css": css}});
        let response =
            app.patch(&format!("/api/v1/forms/{}", form["id"].as_str().unwrap()), &patch).send().await.unwrap();
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(fields_at_fault(&problem), ["look.custom_css"], "{css}: {problem}");
    }
    let patch = json!({"look": {"accent_color": "blue", "font": "comic"}});
    let response = app.patch(&format!("/api/v1/forms/{}", form["id"].as_str().unwrap()), &patch).send().await.unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    let mut fields = fields_at_fault(&problem);
    fields.sort();
    assert_eq!(fields, ["look.accent_color", "look.font"]);
}

#[tokio::test]
async fn the_country_field_is_a_select_of_names_in_the_pages_language_suggested_but_never_chosen() {
    let app = spawn_app().await;
    let fields = json!({"fields": [{"name": "land", "label": "Pays", "type": "country", "required": true}]});
    let (_, list) = app.form_on_new_list("pays", "single", fields).await;
    let (_, html) = page(&app, "/f/pays", "fr-CH,fr;q=0.9").await;
    assert!(html.contains("<select id=\"f-land\" name=\"land\""), "{html}");
    assert!(
        html.contains(
            "<optgroup label=\"Suggéré par votre navigateur\"><option value=\"CH\">Suisse</option></optgroup>"
        ),
        "{html}"
    );
    assert!(html.contains("<option value=\"DE\" >Allemagne</option>"), "{html}");
    assert!(!html.contains("selected"), "nothing is chosen for the person: {html}");
    assert!(html.find(">Allemagne<").unwrap() < html.find(">Autriche<").unwrap(), "sorted by name");

    let response =
        app.submit_form("pays", &[("email", "suisse@example.org"), ("land", "CH"), ("consent", &list)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.contact_by_email("suisse@example.org").await.unwrap()["country"], "CH");
    // A page sent back with an error keeps the person's choice.
    let again = app.submit_form("pays", &[("email", "not-an-address"), ("land", "AT"), ("consent", &list)]).await;
    let again = again.text().await.unwrap();
    assert!(again.contains("<option value=\"AT\" selected>"), "{again}");
}

#[tokio::test]
async fn the_embed_snippet_carries_the_forms_look_and_intro_and_reads_as_written() {
    let app = spawn_app().await;
    let extra = json!({"intro": "One mail a month, no more.", "allowed_origins": ["https://shop.example"],
        "look": {"accent_color": "#7c2d12"}});
    app.form_on_new_list("snip", "double", extra).await;
    let snippet = app.client.get(app.url("/f/snip/embed")).send().await.unwrap().text().await.unwrap();
    assert!(snippet.contains("<template shadowrootmode=\"open\">"), "{snippet}");
    assert!(snippet.contains(":host { all: initial;"), "the host page's styles stay out: {snippet}");
    assert!(snippet.contains("--accent: #7c2d12") && snippet.contains("One mail a month, no more."), "{snippet}");
    assert!(snippet.contains(&format!("action=\"{}/f/snip\"", app.address)), "{snippet}");
    assert!(!snippet.contains("&#x2f;"), "addresses read as written: {snippet}");
    assert!(!snippet.contains("<script"), "the plain snippet needs no script: {snippet}");

    let script = app.client.get(app.url("/f/snip/embed?variant=script")).send().await.unwrap().text().await.unwrap();
    assert!(script.contains(&format!("<script src=\"{}/embed.js\" defer></script>", app.address)), "{script}");
    let js = app.client.get(app.url("/embed.js")).send().await.unwrap();
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(js.text().await.unwrap().contains("fetch(form.action"));
    let frame = app.client.get(app.url("/f/snip/embed?variant=iframe")).send().await.unwrap().text().await.unwrap();
    assert!(frame.contains(&format!("<iframe src=\"{}/f/snip\"", app.address)), "{frame}");
    let bad = app.client.get(app.url("/f/snip/embed?variant=flash")).send().await.unwrap();
    assert_eq!(
        fields_at_fault(&assert_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation").await),
        ["variant"]
    );

    // The hosted page may be framed by the form's own origins, and only by them.
    let hosted = app.client.get(app.url("/f/snip")).send().await.unwrap();
    let csp = hosted.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'self' https://shop.example"), "{csp}");
}

#[tokio::test]
async fn later_pages_speak_the_language_the_person_signed_up_in() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("lang", "single", json!({})).await;
    let signup = app
        .client
        .post(app.url("/f/lang"))
        .header("accept-language", "it-IT,it;q=0.9")
        .form(&[("email", "italiana@example.org"), ("consent", list.as_str())])
        .send()
        .await
        .unwrap();
    assert!(signup.text().await.unwrap().contains("Grazie"));
    let contact = app.contact_by_email("italiana@example.org").await.unwrap();
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{}/links", contact["id"].as_str().unwrap()))).await;
    for key in ["unsubscribe_url", "preferences_url"] {
        let url = links[key].as_str().unwrap();
        let html = app.client.get(url).header("accept-language", "en").send().await.unwrap().text().await.unwrap();
        assert!(html.contains("<html lang=\"it\">"), "{key} speaks Italian to an English browser: {html}");
    }
    let json = app.client.post(app.url("/f/lang")).json(&json!({"email": "x@example.org", "consents": [list]}));
    assert_eq!(body_json(json.send().await.unwrap()).await["status"], "subscribed");
}

#[tokio::test]
async fn an_admin_previews_a_form_as_a_person_will_see_it_before_and_after_saving() {
    let app = spawn_app().await;
    let list = app.create_list("Preview list").await;
    let definition = json!({"slug": "draft", "name": "Draft", "title": "Unsaved title", "opt_in": "double",
        "fields": [{"name": "land", "label": "Land", "type": "country"}],
        "look": {"accent_color": "#7c2d12", "button_label": "Ja, gerne"},
        "consents": [{"list_id": list, "text": "Schickt mir den Newsletter."}]});
    let viewer = app.user_token("viewer").await;
    let response = app
        .client
        .post(app.url("/api/v1/forms/preview?locale=de"))
        .bearer_auth(&viewer)
        .json(&definition)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = response.text().await.unwrap();
    for shown in ["<html lang=\"de\">", "Unsaved title", ">Ja, gerne</button>", "--accent: #7c2d12", ">Deutschland<"] {
        assert!(html.contains(shown), "{shown:?}: {html}");
    }
    assert_eq!(app.client.get(app.url("/f/draft")).send().await.unwrap().status(), StatusCode::NOT_FOUND, "not saved");

    let form = app.create_form(definition).await;
    let path = format!("/api/v1/forms/{}/preview?locale=it", form["id"].as_str().unwrap());
    let html = app.admin(app.client.get(app.url(&path))).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("<html lang=\"it\">") && html.contains(">Germania<"), "{html}");
    let bad = app.admin(app.client.get(app.url(&path.replace("=it", "=xx")))).send().await.unwrap();
    assert_eq!(fields_at_fault(&assert_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation").await), ["locale"]);
    let anonymous = app.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn colours_that_read_poorly_are_warned_of() {
    let app = spawn_app().await;
    create_brand(&app, "Readable").await;
    let look = json!({"look": {"background_color": "#777777", "accent_color": "#787878"}});
    let (form, _) = app.form_on_new_list("grey", "double", look).await;
    let warned: Vec<&str> = form["warnings"].as_array().unwrap().iter().map(|w| w["field"].as_str().unwrap()).collect();
    assert_eq!(warned, ["look.text_color", "look.accent_color"], "{form}");
}

#[tokio::test]
async fn a_signup_page_names_each_fault_in_the_pages_language() {
    let app = spawn_app().await;
    let fields = json!({"locale": "fr", "fields": [
        {"name": "age", "label": "Âge", "type": "number", "min": 18, "max": 120},
        {"name": "cgu", "label": "J'accepte les conditions", "type": "checkbox", "required": true},
    ]});
    app.form_on_new_list("erreurs", "double", fields).await;
    let page = app.submit_form("erreurs", &[("email", "sans-arobase"), ("age", "7")]).await;
    assert_eq!(page.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = page.text().await.unwrap();
    for message in [
        "doit contenir un @",
        "doit être entre 18 et 120",
        "doit être cochée",
        "cochez au moins une case pour vous abonner",
        "Veuillez corriger les champs indiqués.",
    ] {
        assert!(page.contains(message), "{message:?}: {page}");
    }
    // A site's script gets the same words, for the person it shows them to.
    let json =
        app.client.post(app.url("/f/erreurs")).json(&json!({"email": "x@", "consents": []})).send().await.unwrap();
    let problem = assert_problem(json, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    let messages: Vec<&str> =
        problem["errors"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert!(messages.contains(&"cochez au moins une case pour vous abonner"), "{problem}");
}
