//! `/webhooks/bounces` and `/webhooks/ses`: the bounce secret, preferred in a header, and
//! Amazon SNS messages checked by their signature against a certificate served here.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app_with};

pub const SECRET: &str = "a-bounce-secret-for-the-suite";
const CERTIFICATE: &str = include_str!("fixtures/sns-test-cert.pem");
const KEY: &[u8] = include_bytes!("fixtures/sns-test-key.pk8");

/// Serves the test signing certificate, as SNS serves its own, counting the fetches.
pub struct CertificateServer {
    pub url: String,
    fetches: Arc<AtomicUsize>,
    server: actix_web::dev::ServerHandle,
}

impl CertificateServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url =
            format!("http://127.0.0.1:{}/SimpleNotificationService-test.pem", listener.local_addr().unwrap().port());
        let fetches = Arc::new(AtomicUsize::new(0));
        let counted = fetches.clone();
        let server = HttpServer::new(move || {
            let counted = counted.clone();
            App::new().route(
                "/SimpleNotificationService-test.pem",
                web::get().to(move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async { HttpResponse::Ok().content_type("application/x-pem-file").body(CERTIFICATE) }
                }),
            )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { url, fetches, server: handle }
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for CertificateServer {
    fn drop(&mut self) {
        let handle = self.server.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// An SNS notification carrying `event`, signed (SignatureVersion 2) with the test key.
pub fn signed_notification(event: &Value, certificate_url: &str) -> Value {
    let mut message = json!({
        "Type": "Notification",
        "MessageId": uuid::Uuid::new_v4().to_string(),
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-bounces",
        "Subject": "Amazon SES Email Event Notification",
        "Message": event.to_string(),
        "Timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        "SignatureVersion": "2",
        "SigningCertURL": certificate_url,
    });
    let text = consento::services::bounces::sns::string_to_sign(&message).unwrap();
    let key = ring::signature::RsaKeyPair::from_pkcs8(KEY).unwrap();
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), text.as_bytes(), &mut signature)
        .unwrap();
    message["Signature"] = STANDARD.encode(signature).into();
    message
}

pub fn bounce_event(address: &str) -> Value {
    json!({
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "bouncedRecipients": [{"emailAddress": address}]},
        "mail": {"headers": []}
    })
}

/// An app taking bounces with the suite's secret, trusting `certificates`' URL.
pub async fn app_trusting(certificates: &CertificateServer) -> TestApp {
    let url = certificates.url.clone();
    spawn_app_with(move |settings| {
        settings.bounce_secret = Some(consento::settings::Secret::new(SECRET));
        settings.sns_trusted_certificate_urls = vec![url];
    })
    .await
}

async fn post_ses(app: &TestApp, message: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/webhooks/ses"))
        .bearer_auth(SECRET)
        .header("content-type", "text/plain; charset=UTF-8")
        .body(message.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_signed_sns_notification_is_recorded_and_its_certificate_fetched_once() {
    let certificates = CertificateServer::start();
    let app = app_trusting(&certificates).await;
    for address in ["gone-1@example.org", "gone-2@example.org"] {
        let response = post_ses(&app, &signed_notification(&bounce_event(address), &certificates.url)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let outcome: Value = response.json().await.unwrap();
        assert_eq!(outcome["items"][0]["email"], address, "{outcome}");
        assert_eq!(outcome["items"][0]["type"], "hard_bounce");
    }
    assert_eq!(certificates.fetches(), 1, "the certificate is cached");
}

#[tokio::test]
async fn a_signature_version_1_notification_signed_with_sha1_is_recorded() {
    let certificates = CertificateServer::start();
    let app = app_trusting(&certificates).await;
    let mut message: Value = serde_json::from_str(include_str!("fixtures/sns-v1-notification.json")).unwrap();
    message["SigningCertURL"] = certificates.url.clone().into();
    let response = post_ses(&app, &message).await;
    assert_eq!(response.status(), StatusCode::OK);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(outcome["items"][0]["email"], "gone-v1@example.org", "{outcome}");
}

#[tokio::test]
async fn a_tampered_unsigned_or_foreign_sns_message_is_refused_and_records_nothing() {
    let certificates = CertificateServer::start();
    let app = app_trusting(&certificates).await;
    let victim = app.create_contact(json!({"email": "victim@example.org"})).await;
    let signed = signed_notification(&bounce_event("victim@example.org"), &certificates.url);

    let mut tampered = signed.clone();
    tampered["Message"] = bounce_event("someone-else@example.org").to_string().into();
    let problem = assert_problem(post_ses(&app, &tampered).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(problem["detail"], "the SNS message is not authentic: the signature does not match");

    let mut unsigned = signed.clone();
    unsigned.as_object_mut().unwrap().remove("Signature");
    assert_problem(post_ses(&app, &unsigned).await, StatusCode::UNAUTHORIZED, "unauthorized").await;

    // The same certificate at a URL that is neither trusted nor AWS's is not fetched.
    let elsewhere = certificates.url.replace("127.0.0.1", "localhost");
    let foreign = signed_notification(&bounce_event("victim@example.org"), &elsewhere);
    let problem = assert_problem(post_ses(&app, &foreign).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert!(problem["detail"].as_str().unwrap().contains("is not an https .pem of sns.<region>.amazonaws.com"));
    assert_eq!(certificates.fetches(), 1);

    let mut version = signed.clone();
    version["SignatureVersion"] = "3".into();
    assert_problem(post_ses(&app, &version).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let (_, after) = app.send(app.get(&format!("/api/v1/contacts/{}", victim["id"].as_str().unwrap()))).await;
    assert_eq!(after["status"], victim["status"], "{after}");
    // The genuine message still counts.
    assert_eq!(post_ses(&app, &signed).await.status(), StatusCode::OK);
    let (_, after) = app.send(app.get(&format!("/api/v1/contacts/{}", victim["id"].as_str().unwrap()))).await;
    assert_ne!(after["status"], victim["status"], "{after}");
}

#[tokio::test]
async fn the_bounce_secret_is_taken_from_bearer_or_basic_headers_and_still_from_the_query() {
    let certificates = CertificateServer::start();
    let app = app_trusting(&certificates).await;
    let notice = json!({"type": "soft_bounce", "email": "soft@example.org"});
    let post = || app.client.post(app.url("/webhooks/bounces")).json(&notice);
    assert_eq!(post().bearer_auth(SECRET).send().await.unwrap().status(), StatusCode::OK);
    // As SNS sends it for https://bounces:<secret>@host/…
    assert_eq!(post().basic_auth("bounces", Some(SECRET)).send().await.unwrap().status(), StatusCode::OK);
    let query = app.client.post(app.url(&format!("/webhooks/bounces?secret={SECRET}"))).json(&notice);
    assert_eq!(query.send().await.unwrap().status(), StatusCode::OK);
    for wrong in
        [post().bearer_auth("not-the-secret-but-long-enough"), post().basic_auth(SECRET, Some("wrong")), post()]
    {
        assert_problem(wrong.send().await.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}
