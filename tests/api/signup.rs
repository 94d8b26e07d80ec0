//! Signing up through a form: double opt-in with a real SMTP server, passive and B2B
//! forms, the honeypot, validation, CORS, rate limits and the confirmation-mail cap.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, body_json, fields_at_fault, spawn_app, spawn_app_with};
use crate::partners::create_partner;
use crate::surveys::branching_survey;

#[tokio::test]
async fn double_opt_in_records_single_then_double_opt_in_with_the_evidence() {
    let app = spawn_app().await;
    let (form, list) = app.form_on_new_list("news", "double", json!({})).await;
    let page = app.client.get(app.url("/f/news")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Send me the newsletter. I can unsubscribe at any time."));
    assert!(!html.contains("checked"), "boxes of a double opt-in form start unticked");

    let response = app.submit_form("news", &[("email", "Ada@Example.org"), ("consent", &list), ("website", "")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("Check your inbox"));

    let contact = app.contact_by_email("Ada@example.org").await.expect("the contact is stored");
    let id = contact["id"].as_str().unwrap();
    assert_eq!(contact["lists"], json!([]), "not on the list before confirming");
    let consents = app.consents_of(id).await;
    assert_eq!(consents["current"][0]["status"], "pending");

    let mail = &app.mail.wait_for("Ada@example.org", 1).await[0];
    assert_eq!(mail.from, "news@consento.test");
    assert_eq!(mail.header("Subject").unwrap(), "Please confirm your subscription");
    assert!(mail.header("Message-ID").is_some());
    let link = mail.link(&format!("{}/confirm/", app.address));

    // Opening the link (as a mail scanner would) confirms nothing.
    let page = app.client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("method=\"post\"") && page.contains("List for news"), "{page}");
    assert_eq!(app.consents_of(id).await["current"][0]["status"], "pending");

    let confirmed = app.client.post(&link).header("user-agent", "TestBrowser/2.0").send().await.unwrap();
    assert_eq!(confirmed.status(), StatusCode::OK);
    assert!(confirmed.text().await.unwrap().contains("Subscription confirmed"));

    let consents = app.consents_of(id).await;
    assert_eq!(consents["current"][0]["status"], "active");
    assert_eq!(consents["current"][0]["basis"], "double_opt_in");
    let events = consents["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let (granted, confirmation) = (&events[0], &events[1]);
    assert_eq!(granted["action"], "granted");
    assert_eq!(granted["basis"], "single_opt_in");
    assert_eq!(granted["requires_confirmation"], true);
    assert_eq!(granted["form_id"], form["id"]);
    assert_eq!(granted["form_version"], 1);
    assert_eq!(granted["consent_text"], "Send me the newsletter. I can unsubscribe at any time.");
    assert_eq!(
        granted["consent_text_sha256"],
        consento::domain::consent::sha256_hex(b"Send me the newsletter. I can unsubscribe at any time.")
    );
    assert_eq!(granted["ip"], "127.0.0.1");
    assert_eq!(granted["user_agent"], "TestBrowser/1.0");
    assert_eq!(granted["source_url"], "https://www.example.org/newsletter");
    assert_eq!(granted["actor"], "public");
    assert_eq!(confirmation["action"], "confirmed");
    assert_eq!(confirmation["basis"], "double_opt_in");
    assert_eq!(confirmation["user_agent"], "TestBrowser/2.0");
    assert_eq!(confirmation["ip"], "127.0.0.1");
    assert_eq!(confirmation["form_version"], 1);

    let (_, contact) = app.send(app.get(&format!("/api/v1/contacts/{id}"))).await;
    assert_eq!(contact["lists"], json!([list]));

    // The link is single-use: pressing again changes nothing.
    let again = app.client.post(&link).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(app.consents_of(id).await["events"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_forged_or_foreign_confirmation_link_gets_the_same_page() {
    let app = spawn_app().await;
    let forged = app.client.get(app.url("/confirm/bm90LWEtdG9rZW4.AAAAAAAAAAAAAAAAAAAAAA")).send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::NOT_FOUND);
    let forged_page = forged.text().await.unwrap();
    let garbage = app.client.post(app.url("/confirm/garbage")).send().await.unwrap();
    assert_eq!(garbage.status(), StatusCode::NOT_FOUND);
    assert_eq!(garbage.text().await.unwrap(), forged_page);
}

#[tokio::test]
async fn a_passive_form_records_passive_opt_in_without_a_mail() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("passive", "passive", json!({})).await;
    let html = app.client.get(app.url("/f/passive")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("checked"), "a passive form's boxes come pre-ticked");
    let response = app.submit_form("passive", &[("email", "pat@example.org"), ("consent", &list)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let contact = app.contact_by_email("pat@example.org").await.unwrap();
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    assert_eq!(consents["events"][0]["basis"], "passive_opt_in");
    assert_eq!(consents["current"][0]["status"], "active");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(app.mail.received().is_empty(), "a passive form sends no confirmation");
}

#[tokio::test]
async fn a_b2b_form_records_role_and_professional_addresses_as_such() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("b2b", "single", json!({"b2b": true})).await;
    let missing_company = app.submit_form("b2b", &[("email", "info@acme.example"), ("consent", &list)]).await;
    assert_eq!(missing_company.status(), StatusCode::UNPROCESSABLE_ENTITY);
    for (email, basis) in [("info@acme.example", "b2b_role_address"), ("marie.curie@acme.example", "b2b_professional")]
    {
        let response = app.submit_form("b2b", &[("email", email), ("company", "ACME"), ("consent", &list)]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let contact = app.contact_by_email(email).await.unwrap();
        assert_eq!(contact["company"], "ACME");
        let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
        assert_eq!(consents["events"][0]["basis"], basis, "{email}");
    }
}

#[tokio::test]
async fn a_filled_honeypot_looks_like_success_but_stores_and_sends_nothing() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("trap", "double", json!({})).await;
    let response =
        app.submit_form("trap", &[("email", "bot@example.org"), ("consent", &list), ("website", "http://spam")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("Check your inbox"));
    assert!(app.contact_by_email("bot@example.org").await.is_none());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(app.mail.received().is_empty());
}

#[tokio::test]
async fn a_bad_submit_returns_the_form_with_each_fault_marked_or_422_naming_each_field() {
    let app = spawn_app().await;
    let fields = json!({"fields": [
        {"name": "age", "label": "Age", "type": "number", "min": 16, "max": 120, "required": true},
        {"name": "topics", "label": "Topics", "type": "multi_select", "options": ["rust", "mail"]},
    ]});
    app.form_on_new_list("strict", "single", fields).await;
    let response = app.submit_form("strict", &[("email", "not-an-address"), ("age", "9"), ("topics", "cooking")]).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    for marker in [
        "id=\"e-email\"",
        "id=\"e-age\"",
        "id=\"e-topics\"",
        "id=\"e-consent\"",
        "aria-invalid=\"true\"",
        "value=\"not-an-address\"",
    ] {
        assert!(html.contains(marker), "{marker} missing from {html}");
    }

    let response = app
        .client
        .post(app.url("/f/strict"))
        .json(&json!({"email": "x", "fields": {"age": "old"}, "consents": []}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["email", "age", "consent"]);
}

#[tokio::test]
async fn json_submits_are_accepted_from_the_forms_origins_only() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("cors", "single", json!({"allowed_origins": ["https://shop.example"]})).await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/f/cors"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "https://shop.example");

    let response = app
        .client
        .post(app.url("/f/cors"))
        .header("origin", "https://shop.example")
        .json(&json!({"email": "shopper@example.org", "consents": [list]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["access-control-allow-origin"], "https://shop.example");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "subscribed");

    let response = app
        .client
        .post(app.url("/f/cors"))
        .header("origin", "https://evil.example")
        .json(&json!({"email": "victim@example.org", "consents": [list]}))
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(app.contact_by_email("victim@example.org").await.is_none());
}

#[tokio::test]
async fn a_hundred_submits_for_one_address_send_one_confirmation_mail() {
    let app = spawn_app_with(|settings| settings.public_rate_limit_per_minute = 1000).await;
    let (_, list) = app.form_on_new_list("bomb", "double", json!({})).await;
    for _ in 0..100 {
        let response = app.submit_form("bomb", &[("email", "target@example.org"), ("consent", &list)]).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    app.mail.wait_for("target@example.org", 1).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let mails = app.mail.received();
    assert_eq!(mails.len(), 1, "the daily cap is one confirmation mail per address");
    let contact = app.contact_by_email("target@example.org").await.unwrap();
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    assert_eq!(
        consents["events"].as_array().unwrap().len(),
        1,
        "a submit that changes nothing records nothing: {consents}"
    );
    assert_eq!(consents["current"][0]["status"], "pending");
}

#[tokio::test]
async fn public_pages_are_rate_limited_per_address() {
    let app = spawn_app_with(|settings| settings.public_rate_limit_per_minute = 5).await;
    app.form_on_new_list("busy", "double", json!({})).await;
    for _ in 0..5 {
        assert_eq!(app.client.get(app.url("/f/busy")).send().await.unwrap().status(), StatusCode::OK);
    }
    let limited = app.client.get(app.url("/f/busy")).send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    let json = app.client.post(app.url("/f/busy")).json(&json!({"email": "a@example.org"})).send().await.unwrap();
    assert_problem(json, StatusCode::TOO_MANY_REQUESTS, "too-many-requests").await;
}

#[tokio::test]
async fn pages_speak_the_forms_language_or_the_browsers() {
    let app = spawn_app().await;
    app.form_on_new_list("fr", "double", json!({"locale": "fr"})).await;
    app.form_on_new_list("any", "double", json!({})).await;
    let french = app.client.get(app.url("/f/fr")).header("accept-language", "de").send().await.unwrap();
    let html = french.text().await.unwrap();
    assert!(html.contains("lang=\"fr\"") && html.contains("S'abonner") || html.contains("S&#x27;abonner"), "{html}");
    let german = app.client.get(app.url("/f/any")).header("accept-language", "de-CH,de;q=0.9").send().await.unwrap();
    assert!(german.text().await.unwrap().contains("Abonnieren"));
    let italian = app.client.get(app.url("/f/any")).header("accept-language", "it").send().await.unwrap();
    assert!(italian.text().await.unwrap().contains("Iscriviti"));
}

#[tokio::test]
async fn the_embed_snippet_posts_to_this_server() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("snippet", "double", json!({})).await;
    let response = app.client.get(app.url("/f/snippet/embed")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Templates escape `/` in attributes as `&#x2f;`, which browsers read as `/`.
    let snippet = response.text().await.unwrap().replace("&#x2f;", "/");
    assert!(snippet.contains(&format!("action=\"{}/f/snippet\"", app.address)), "{snippet}");
    assert!(snippet.contains(&list));
    assert!(snippet.contains("name=\"website\""), "the honeypot travels with the snippet");
}

#[tokio::test]
async fn an_oversized_public_submit_is_a_413_and_stores_nothing() {
    let app = spawn_app_with(|settings| settings.max_body_bytes = 4096).await;
    let (_, list) = app.form_on_new_list("big", "single", json!({})).await;
    let padding = "x".repeat(5000);
    let response =
        app.submit_form("big", &[("email", "big@example.org"), ("consent", &list), ("note", &padding)]).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.text().await.unwrap().contains("Too much to send"), "a page for the browser's post");
    assert!(app.contact_by_email("big@example.org").await.is_none());
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_clients() {
    let app = spawn_app_with(|settings| {
        settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        settings.public_rate_limit_per_minute = 2;
    })
    .await;
    let (_, list) = app.form_on_new_list("proxied", "single", json!({})).await;
    let submit = |email: &'static str, forwarded: &'static str| {
        app.client
            .post(app.url("/f/proxied"))
            .header("x-forwarded-for", forwarded)
            .form(&[("email", email), ("consent", list.as_str())])
            .send()
    };
    let response = submit("one@example.org", "198.51.100.1, 203.0.113.7").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let contact = app.contact_by_email("one@example.org").await.unwrap();
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    assert_eq!(consents["events"][0]["ip"], "203.0.113.7", "the address the proxy saw, not one the client wrote");

    // Each client has its own budget, though all come through the one proxy.
    assert_eq!(submit("two@example.org", "203.0.113.7").await.unwrap().status(), StatusCode::OK);
    assert_eq!(submit("three@example.org", "203.0.113.7").await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(submit("four@example.org", "203.0.113.8").await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn a_forwarded_address_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("direct", "single", json!({})).await;
    app.client
        .post(app.url("/f/direct"))
        .header("x-forwarded-for", "203.0.113.7")
        .form(&[("email", "direct@example.org"), ("consent", list.as_str())])
        .send()
        .await
        .unwrap();
    let contact = app.contact_by_email("direct@example.org").await.unwrap();
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    assert_eq!(consents["events"][0]["ip"], "127.0.0.1");
}

#[tokio::test]
async fn a_role_address_that_confirms_on_a_b2b_double_opt_in_form_keeps_its_b2b_basis() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("b2b-double", "double", json!({"b2b": true})).await;
    for (email, basis) in [("info@acme.example", "b2b_role_address"), ("marie.curie@acme.example", "b2b_professional")]
    {
        let response =
            app.submit_form("b2b-double", &[("email", email), ("company", "ACME"), ("consent", &list)]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let link = app.mail.wait_for(email, 1).await[0].link(&format!("{}/confirm/", app.address));
        assert_eq!(app.client.post(&link).send().await.unwrap().status(), StatusCode::OK);
        let contact = app.contact_by_email(email).await.unwrap();
        let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
        let current = &consents["current"][0];
        assert_eq!(current["status"], "active", "{email}");
        assert_eq!(current["basis"], basis, "{email}: the confirmation is evidence, not a consumer's opt-in");
        assert!(current["confirmed_at"].is_string(), "{current}");
        let confirmed = &consents["events"][1];
        assert_eq!((confirmed["action"].as_str(), confirmed["basis"].as_str()), (Some("confirmed"), Some(basis)));
    }
}

/// The visible words of a partner's box on a page, as a person reads them.
fn partner_box_text(html: &str, partner_id: &str) -> String {
    let input = html.find(&format!("value=\"{partner_id}\"")).unwrap_or_else(|| panic!("no box for {partner_id}"));
    let marker = "<span class=\"partner-text\">";
    let rest = &html[input..];
    let rest = &rest[rest.find(marker).unwrap() + marker.len()..];
    let span = &rest[..rest.find("</span>").unwrap()];
    let mut text = String::new();
    let mut in_tag = false;
    for c in span.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    [("&#x27;", "'"), ("&#39;", "'"), ("&#x2f;", "/"), ("&quot;", "\""), ("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")]
        .iter()
        .fold(text, |text, (entity, c)| text.replace(entity, c))
}

#[tokio::test]
async fn a_partner_box_records_the_words_the_page_showed_in_the_pages_language() {
    let app = spawn_app().await;
    let acme = create_partner(&app, "Acme", json!({"description": "L'offre d'Acme & co."})).await;
    let id = acme["id"].as_str().unwrap();
    for (slug, extra, accept_language, opening) in [
        ("coreg-it", json!({"partners": [id], "locale": "it"}), "en", "Condividi il mio indirizzo e-mail"),
        ("coreg-fr", json!({"partners": [id]}), "fr-CH,fr;q=0.9", "Transmettre mon adresse e-mail"),
    ] {
        let (_, list) = app.form_on_new_list(slug, "single", extra).await;
        let page = app.client.get(app.url(&format!("/f/{slug}"))).header("accept-language", accept_language);
        let html = page.send().await.unwrap().text().await.unwrap();
        let shown = partner_box_text(&html, id);
        assert!(shown.starts_with(opening) && shown.contains("L'offre d'Acme & co."), "{shown}");
        assert!(shown.ends_with("https://acme.example/privacy"), "{shown}");

        let email = format!("{slug}@example.org");
        let response = app
            .client
            .post(app.url(&format!("/f/{slug}")))
            .header("accept-language", accept_language)
            .form(&[("email", email.as_str()), ("consent", list.as_str()), ("partner", id)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let contact = app.contact_by_email(&email).await.unwrap();
        let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
        let events = consents["events"].as_array().unwrap();
        let partner_event = events.iter().find(|e| e["purpose"] == format!("partner:{id}")).unwrap();
        assert_eq!(partner_event["consent_text"], shown.as_str(), "the ledger keeps the words the page showed");
        assert_eq!(partner_event["consent_text_sha256"], consento::domain::consent::sha256_hex(shown.as_bytes()));
        let list_event = events.iter().find(|e| e["purpose"] == format!("list:{list}")).unwrap();
        assert!(html.contains("Send me the newsletter. I can unsubscribe at any time."));
        assert_eq!(list_event["consent_text"], "Send me the newsletter. I can unsubscribe at any time.");
    }
}

#[tokio::test]
async fn a_confirmation_link_confirms_only_what_its_own_request_named() {
    let app = spawn_app().await;
    let (own_form, news) = app.form_on_new_list("own", "double", json!({})).await;
    let (_, promos) = app.form_on_new_list("other", "double", json!({})).await;
    let email = "eve.target@example.org";
    app.submit_form("own", &[("email", email), ("consent", &news)]).await;
    let link = app.mail.wait_for(email, 1).await[0].link(&format!("{}/confirm/", app.address));
    // Someone else asks for another list with the same address; the daily cap withholds its mail.
    let other = app.submit_form("other", &[("email", email), ("consent", &promos)]).await;
    assert_eq!(other.status(), StatusCode::OK);

    let page = app.client.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("List for own") && !page.contains("List for other"), "{page}");
    let confirmed = app.client.post(&link).send().await.unwrap().text().await.unwrap();
    assert!(confirmed.contains("List for own") && !confirmed.contains("List for other"), "{confirmed}");

    let contact = app.contact_by_email(email).await.unwrap();
    assert_eq!(contact["lists"], json!([news]), "only the list the person asked for");
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    let status = |list: &str| {
        let purpose = format!("list:{list}");
        consents["current"].as_array().unwrap().iter().find(|c| c["purpose"] == purpose.as_str()).unwrap()["status"]
            .clone()
    };
    assert_eq!((status(&news), status(&promos)), (json!("active"), json!("pending")));
    let confirmations: Vec<&Value> =
        consents["events"].as_array().unwrap().iter().filter(|e| e["action"] == "confirmed").collect();
    assert_eq!(confirmations.len(), 1, "{consents}");
    assert_eq!(confirmations[0]["purpose"], format!("list:{news}"));
    assert_eq!(confirmations[0]["form_id"], own_form["id"]);
    assert_eq!(confirmations[0]["form_version"], 1);
}

#[tokio::test]
async fn a_country_field_fills_the_contacts_own_country() {
    let app = spawn_app().await;
    let fields = json!({"fields": [
        {"name": "land", "label": "Country", "type": "country"},
        {"name": "first_name", "label": "First name", "type": "text"},
    ]});
    let (_, list) = app.form_on_new_list("where", "single", fields).await;
    let response = app
        .submit_form(
            "where",
            &[("email", "ada@example.org"), ("land", "fr"), ("first_name", "Ada"), ("consent", &list)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let contact = app.contact_by_email("ada@example.org").await.unwrap();
    assert_eq!(contact["country"], "FR", "{contact}");
    assert_eq!(contact["attributes"], json!({"first_name": "Ada"}));
    let (status, segment) =
        app.send(app.post("/api/v1/segments", &json!({"name": "French", "script": "contact.country == \"FR\""}))).await;
    assert_eq!(status, StatusCode::CREATED, "{segment}");
    let (_, count) = app.send(app.get(&format!("/api/v1/segments/{}/count", segment["id"].as_str().unwrap()))).await;
    assert_eq!(count["count"], 1, "segments see the country: {count}");
}

#[tokio::test]
async fn a_partner_no_longer_active_is_not_offered_and_ticking_it_is_refused_by_name() {
    let app = spawn_app().await;
    let acme = create_partner(&app, "Acme", json!({})).await;
    let globex = create_partner(&app, "Globex", json!({"status": "inactive"})).await;
    let (acme_id, globex_id) = (acme["id"].as_str().unwrap(), globex["id"].as_str().unwrap());
    let (_, list) = app.form_on_new_list("coreg", "single", json!({"partners": [acme_id, globex_id]})).await;
    let html = app.client.get(app.url("/f/coreg")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Acme SAS") && !html.contains("Globex"), "an inactive partner is never shown: {html}");

    let response = app
        .client
        .post(app.url("/f/coreg"))
        .json(&json!({"email": "carl@example.org", "consents": [list], "partners": [globex_id]}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    assert_eq!(fields_at_fault(&problem), ["partner"]);
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains(globex_id), "{problem}");
    let page =
        app.submit_form("coreg", &[("email", "carl@example.org"), ("consent", &list), ("partner", globex_id)]).await;
    assert_eq!(page.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text().await.unwrap().contains("id=\"e-partner\""));
    assert!(app.contact_by_email("carl@example.org").await.is_none(), "nothing is recorded");

    let ok = app.submit_form("coreg", &[("email", "carl@example.org"), ("consent", &list), ("partner", acme_id)]).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let contact = app.contact_by_email("carl@example.org").await.unwrap();
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    assert!(consents["current"].as_array().unwrap().iter().any(|c| c["purpose"] == format!("partner:{acme_id}")));
}

#[tokio::test]
async fn an_anonymous_submit_for_a_known_address_changes_nothing_until_the_person_confirms() {
    let app = spawn_app().await;
    let fields = json!({"fields": [
        {"name": "first_name", "label": "First name", "type": "text"},
        {"name": "land", "label": "Country", "type": "country"},
    ]});
    let (_, list) = app.form_on_new_list("known", "double", fields).await;
    let known = json!({"email": "marie@example.org", "attributes": {"first_name": "Marie"}, "company": "Curie SA", "country": "PL"});
    app.create_contact(known).await;
    let response = app
        .submit_form(
            "known",
            &[
                ("email", "marie@example.org"),
                ("first_name", "Maria"),
                ("company", "Institut Curie"),
                ("land", "FR"),
                ("consent", &list),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let before = app.contact_by_email("marie@example.org").await.unwrap();
    assert_eq!(before["attributes"], json!({"first_name": "Marie"}), "nothing changes before the person confirms");
    assert_eq!((before["company"].as_str(), before["country"].as_str()), (Some("Curie SA"), Some("PL")));

    let link = app.mail.wait_for("marie@example.org", 1).await[0].link(&format!("{}/confirm/", app.address));
    assert_eq!(app.client.post(&link).send().await.unwrap().status(), StatusCode::OK);
    let after = app.contact_by_email("marie@example.org").await.unwrap();
    assert_eq!(after["attributes"], json!({"first_name": "Maria"}), "the person confirmed: the values are theirs");
    assert_eq!((after["company"].as_str(), after["country"].as_str()), (Some("Institut Curie"), Some("FR")));
}

async fn json_signup(app: &TestApp, slug: &str, body: Value) -> Value {
    let response = app.client.post(app.url(&format!("/f/{slug}"))).json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_single_opt_in_submit_for_a_known_address_only_fills_empty_fields_and_gets_no_survey_link() {
    let app = spawn_app().await;
    let survey = branching_survey(&app).await;
    let fields = json!({"survey_id": survey, "fields": [
        {"name": "first_name", "label": "First name", "type": "text"},
        {"name": "city", "label": "City", "type": "text"},
    ]});
    let (_, list) = app.form_on_new_list("quick", "single", fields).await;
    let known = app
        .create_contact(
            json!({"email": "marie@example.org", "attributes": {"first_name": "Marie"}, "company": "Curie SA"}),
        )
        .await;
    // The person's own survey, half answered.
    let first = json_signup(&app, "quick", json!({"email": "new@example.org", "consents": [list]})).await;
    assert!(first["survey_url"].is_string(), "a new address's first signup may answer the survey: {first}");

    let body = json!({"email": "marie@example.org", "company": "Evil Corp", "fields": {"first_name": "Mallory", "city": "Paris"}, "consents": [list]});
    let answer = json_signup(&app, "quick", body).await;
    assert_eq!(answer["status"], "subscribed");
    assert_eq!(answer["survey_url"], Value::Null, "a stranger is not handed the person's survey");
    let contact = app.contact_by_email("marie@example.org").await.unwrap();
    assert_eq!(contact["id"], known["id"]);
    assert_eq!(contact["attributes"], json!({"first_name": "Marie", "city": "Paris"}), "only empty fields are filled");
    assert_eq!(contact["company"], "Curie SA");
}

#[tokio::test]
async fn a_single_opt_in_form_answers_the_same_for_a_new_a_known_and_an_erased_address() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("same", "single", json!({})).await;
    app.create_contact(json!({"email": "known@example.org"})).await;
    let erased = app.create_contact(json!({"email": "erased@example.org"})).await;
    let (status, _) = app.send(app.delete(&format!("/api/v1/contacts/{}", erased["id"].as_str().unwrap()))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let mut json_answers = Vec::new();
    let mut pages = Vec::new();
    for name in ["new", "known", "erased"] {
        let email = format!("{name}@example.org");
        json_answers.push(json_signup(&app, "same", json!({"email": email, "consents": [list]})).await);
        let page = app.submit_form("same", &[("email", &format!("{name}.page@example.org")), ("consent", &list)]).await;
        assert_eq!(page.status(), StatusCode::OK);
        pages.push(page.text().await.unwrap());
    }
    assert!(json_answers.iter().all(|a| a == &json_answers[0]), "{json_answers:?}");
    assert_eq!(json_answers[0]["status"], "subscribed");
    assert!(pages.iter().all(|p| p == &pages[0]));

    // The admin sees what really happened: the erased address must confirm to come back.
    let back = app.contact_by_email("erased@example.org").await.unwrap();
    let consents = app.consents_of(back["id"].as_str().unwrap()).await;
    assert_eq!(consents["current"][0]["status"], "pending");
    assert!(app.mail.wait_for("erased@example.org", 1).await[0].text().contains("/confirm/"));
    let new = app.contact_by_email("new@example.org").await.unwrap();
    assert_eq!(app.consents_of(new["id"].as_str().unwrap()).await["current"][0]["status"], "active");
}

#[tokio::test]
async fn a_slow_confirmation_template_never_holds_the_writer() {
    let app = spawn_app().await;
    let (_, quick_list) = app.form_on_new_list("quick", "single", json!({})).await;
    // As slow a template as the sandbox's fuel lets through (the largest loop the form's
    // check accepts), with the link the check asks for.
    let slow_list = app.create_list("Slow").await;
    let mut accepted = None;
    // Down to small loops: on a slow machine (or a busy one) the large ones meet the deadline.
    for n in [1400, 1100, 900, 700, 550, 400, 300, 220, 160, 120] {
        let slow = format!(
            "{{% for i in range({n}) %}}{{% for j in range({n}) %}}{{% endfor %}}{{% endfor %}}{{{{ confirm_url }}}}"
        );
        let started = std::time::Instant::now();
        let (status, _) = app
            .send(app.post(
                "/api/v1/forms",
                &json!({"slug": "slow", "name": "Slow", "title": "Slow", "opt_in": "double", "confirmation_text": slow,
                        "consents": [{"list_id": slow_list, "text": "Send me the slow news."}]}),
            ))
            .await;
        if status == StatusCode::CREATED {
            accepted = Some(started.elapsed());
            break;
        }
    }
    let render = accepted.expect("no slow template was accepted");
    assert!(render >= std::time::Duration::from_millis(80), "the template must be slow for this test: {render:?}");

    let slow_submit = {
        let (client, url, list) = (app.client.clone(), app.url("/f/slow"), slow_list.clone());
        tokio::spawn(
            async move { client.post(url).form(&[("email", "slow@example.org"), ("consent", &list)]).send().await },
        )
    };
    tokio::time::sleep(render / 4).await;
    let started = std::time::Instant::now();
    let quick = app.submit_form("quick", &[("email", "quick@example.org"), ("consent", &quick_list)]).await;
    let waited = started.elapsed();
    assert_eq!(quick.status(), StatusCode::OK);
    assert!(waited < render / 2, "another signup waited {waited:?} while a {render:?} template rendered");
    assert_eq!(slow_submit.await.unwrap().unwrap().status(), StatusCode::OK);
    assert!(app.mail.wait_for("slow@example.org", 1).await[0].text().contains("/confirm/"));
}

#[tokio::test]
async fn json_that_is_not_a_signup_is_a_422_naming_each_field() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("news", "single", json!({})).await;
    let post =
        |body: String| app.client.post(app.url("/f/news")).header("content-type", "application/json").body(body).send();
    let cases = [
        (format!(r#"{{"fields": {{}}, "consents": ["{list}"]}}"#), vec!["email"]),
        (r#"{"email": "ada@example.org", "consents": "all"}"#.to_owned(), vec!["consents"]),
        (r#"{"fields": {}, "consents": "all", "partners": 3}"#.to_owned(), vec!["consents", "partners", "email"]),
    ];
    for (body, fields) in cases {
        let problem =
            assert_problem(post(body.clone()).await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(fields_at_fault(&problem), fields, "{body}: {problem}");
    }
    // Only JSON that does not parse is a 400.
    assert_problem(post("{\"email\": ".to_owned()).await.unwrap(), StatusCode::BAD_REQUEST, "bad-request").await;
    assert!(app.contact_by_email("ada@example.org").await.is_none());
}

#[tokio::test]
async fn a_browser_post_to_an_unknown_form_or_too_large_gets_a_page_in_its_language() {
    let app = spawn_app_with(|settings| settings.max_body_bytes = 4096).await;
    let (_, list) = app.form_on_new_list("nouvelles", "single", json!({"locale": "fr"})).await;

    let response = app
        .client
        .post(app.url("/f/nowhere"))
        .header("accept-language", "de-CH, de;q=0.9")
        .form(&[("email", "ada@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.contains("Seite nicht gefunden") && page.contains("kein Anmeldeformular"), "{page}");

    let long = "x".repeat(8000);
    let response = app
        .client
        .post(app.url("/f/nouvelles"))
        .form(&[("email", "ada@example.org"), ("consent", &list), ("website", ""), ("first_name", &long)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let page = response.text().await.unwrap();
    assert!(page.contains("Envoi trop volumineux") && page.contains("Raccourcissez"), "{page}");
    assert!(app.contact_by_email("ada@example.org").await.is_none());

    // A site's script posting JSON keeps its problem documents.
    let response = app.client.post(app.url("/f/nowhere")).json(&json!({"email": "ada@example.org"})).send().await;
    assert_problem(response.unwrap(), StatusCode::NOT_FOUND, "not-found").await;
    let body = json!({"email": "ada@example.org", "consents": [list], "fields": {"first_name": long}});
    let response = app.client.post(app.url("/f/nouvelles")).json(&body).send().await.unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
}

#[tokio::test]
async fn a_double_click_on_a_new_address_records_one_person_and_answers_every_click() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("clicks", "double", json!({})).await;
    // The same new address, submitted eight times at once (a double click, a retrying
    // browser): on PostgreSQL the submits race to create the contact.
    let clicks = (0..8).map(|_| {
        app.client
            .post(app.url("/f/clicks"))
            .json(&json!({"email": "quick.fingers@example.org", "consents": [list]}))
            .send()
    });
    for response in futures_util::future::join_all(clicks).await {
        let response = response.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.text().await);
    }
    let contact = app.contact_by_email("quick.fingers@example.org").await.unwrap();
    let (_, page) = app.send(app.get("/api/v1/contacts?limit=100")).await;
    let matching = page["items"].as_array().unwrap().iter().filter(|c| c["email"] == "quick.fingers@example.org");
    assert_eq!(matching.count(), 1);
    // However many clicks, one pending grant: repeated submits do not grow the ledger.
    let events = app.consents_of(contact["id"].as_str().unwrap()).await["events"].clone();
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
}

#[tokio::test]
async fn a_confirmation_link_pressed_after_the_person_left_says_so_and_changes_nothing() {
    let app = spawn_app().await;
    let (_, list) = app.form_on_new_list("left", "double", json!({})).await;
    let email = "gone.since@example.org";
    app.submit_form("left", &[("email", email), ("consent", &list)]).await;
    let link = app.mail.wait_for(email, 1).await[0].link(&format!("{}/confirm/", app.address));
    let confirmed = app.client.post(&link).send().await.unwrap().text().await.unwrap();
    assert!(confirmed.contains("Subscription confirmed"), "{confirmed}");

    // Pressed again while subscribed: nothing new, and the page says so.
    let again = app.client.post(&link).send().await.unwrap().text().await.unwrap();
    assert!(again.contains("Already confirmed") && again.contains("List for left"), "{again}");
    assert!(!again.contains("Subscription confirmed"), "{again}");

    let id = app.contact_by_email(email).await.unwrap()["id"].as_str().unwrap().to_owned();
    let (_, links) = app.send(app.get(&format!("/api/v1/contacts/{id}/links"))).await;
    let unsubscribe = links["unsubscribe_url"].as_str().unwrap();
    assert_eq!(app.client.post(unsubscribe).send().await.unwrap().status(), StatusCode::OK);

    for page in [
        app.client.get(&link).send().await.unwrap().text().await.unwrap(),
        app.client.post(&link).send().await.unwrap().text().await.unwrap(),
    ] {
        assert!(page.contains("You are not subscribed"), "{page}");
        assert!(!page.contains("confirmed"), "{page}");
    }
    // Someone else then signs the address up again (no mail goes: the daily cap); the old
    // link still confirms nothing, whatever is posted to it.
    let (_, other) = app.form_on_new_list("again", "double", json!({})).await;
    app.submit_form("again", &[("email", email), ("consent", &other)]).await;
    let purpose = format!("list:{other}");
    let page =
        app.client.post(&link).form(&[("purpose", purpose.as_str())]).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("You are not subscribed") && !page.contains("List for again"), "{page}");
    let contact = app.contact_by_email(email).await.unwrap();
    assert_eq!(contact["status"], "unsubscribed", "the old link undid nothing: {contact}");
    assert_eq!(contact["lists"], json!([]));
    let (_, suppressed) = app.send(app.get(&format!("/api/v1/suppressions?email={email}"))).await;
    assert_eq!(suppressed["items"].as_array().map(Vec::len), Some(1), "still suppressed: {suppressed}");
}

#[tokio::test]
async fn a_subscriber_adding_a_second_list_the_same_day_is_told_the_truth_and_the_earlier_link_adds_it() {
    let app = spawn_app().await;
    let (_, news) = app.form_on_new_list("first", "double", json!({})).await;
    let (_, offers) = app.form_on_new_list("second", "double", json!({})).await;
    let email = "twice.today@example.org";
    app.submit_form("first", &[("email", email), ("consent", &news)]).await;
    let link = app.mail.wait_for(email, 1).await[0].link(&format!("{}/confirm/", app.address));
    app.client.post(&link).send().await.unwrap();

    // The daily cap lets no second confirmation mail go. The page says that one may have
    // gone and what to do; it does not say whether one did (that would tell a stranger the
    // address is known): a new address reads the same.
    let page = app.submit_form("second", &[("email", email), ("consent", &offers)]).await.text().await.unwrap();
    assert!(page.contains("We send at most one confirmation e-mail to an address in 24 hours"), "{page}");
    let stranger = app.submit_form("second", &[("email", "new.one@example.org"), ("consent", &offers)]).await;
    assert_eq!(stranger.text().await.unwrap(), page.replace(email, "new.one@example.org"));
    let json = app.client.post(app.url("/f/second")).json(&json!({"email": email, "consents": [offers]}));
    assert_eq!(body_json(json.send().await.unwrap()).await["status"], "pending_confirmation");
    assert_eq!(app.mail.received().iter().filter(|m| m.to.iter().any(|to| to == email)).count(), 1);

    // The link the person confirmed before proves the mailbox: its page offers the new list
    // with an unticked box and its words; a press without the box ticked confirms nothing.
    let shown = app.client.get(&link).send().await.unwrap().text().await.unwrap();
    assert!(shown.contains("Already confirmed") && shown.contains("Also waiting for your confirmation"), "{shown}");
    let offered = format!("name=\"purpose\" value=\"list:{offers}\">");
    assert!(shown.contains(&offered) && shown.contains("List for second"), "an unticked box: {shown}");
    let untouched = app.client.post(&link).send().await.unwrap().text().await.unwrap();
    assert!(untouched.contains("Already confirmed"), "{untouched}");
    let contact = app.contact_by_email(email).await.unwrap();
    assert_eq!(contact["lists"], json!([news]), "nothing ticked, nothing confirmed");

    // Ticked, it is confirmed at once, as a double opt-in that names the link's page.
    let purpose = format!("list:{offers}");
    let pressed = app.client.post(&link).form(&[("purpose", purpose.as_str())]).send().await.unwrap();
    let pressed = pressed.text().await.unwrap();
    assert!(pressed.contains("Subscription confirmed") && pressed.contains("List for second"), "{pressed}");
    let contact = app.contact_by_email(email).await.unwrap();
    let mut lists: Vec<String> =
        contact["lists"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
    lists.sort();
    let mut expected = vec![news.clone(), offers.clone()];
    expected.sort();
    assert_eq!(lists, expected);
    let consents = app.consents_of(contact["id"].as_str().unwrap()).await;
    let confirmed = consents["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "confirmed" && e["purpose"] == purpose.as_str())
        .cloned()
        .unwrap();
    assert_eq!(confirmed["basis"], "double_opt_in");
    assert!(confirmed["proof"]["confirmed_on_page_of"].is_string(), "{confirmed}");
}

#[tokio::test]
async fn a_double_opt_in_form_shows_its_own_thank_you_text() {
    let app = spawn_app().await;
    let extra = json!({"thank_you_text": "Almost there: one click in the mail we just sent and you are in."});
    let (_, list) = app.form_on_new_list("thanks", "double", extra).await;
    let page =
        app.submit_form("thanks", &[("email", "thanked@example.org"), ("consent", &list)]).await.text().await.unwrap();
    assert!(page.contains("Almost there: one click in the mail we just sent and you are in."), "{page}");
    assert!(!page.contains("We have sent you an e-mail with a link"), "{page}");
}
