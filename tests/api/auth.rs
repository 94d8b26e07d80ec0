//! `POST /api/v1/auth/token` and what the API does with the tokens it gets.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consento::services::auth::{AUDIENCE, Claims, ISSUER, Tokens};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, assert_problem, spawn_app};

fn now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

async fn status_with_token(app: &crate::helpers::TestApp, token: &str) -> reqwest::Response {
    app.client.get(app.url("/api/v1/contacts")).bearer_auth(token).send().await.unwrap()
}

/// The claims of a token, read without checking it.
fn claims_of(token: &str) -> Claims {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    serde_json::from_value(claims).unwrap()
}

#[tokio::test]
async fn a_token_is_issued_for_the_right_password() {
    let app = spawn_app().await;
    let (status, body) = app
        .send(app.client.post(app.url("/api/v1/auth/token")).json(&json!({
            "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD
        })))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap();
    let claims = claims_of(token);
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.aud, AUDIENCE);
    assert_eq!(claims.exp - claims.iat, 3600);
    assert_eq!(status_with_token(&app, token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_gets_401() {
    let app = spawn_app().await;
    for (email, password) in [(ADMIN_EMAIL, "not the password"), ("nobody@example.org", ADMIN_PASSWORD)] {
        let response = app
            .client
            .post(app.url("/api/v1/auth/token"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert_eq!(problem["detail"], "the e-mail or password is wrong");
    }
}

#[tokio::test]
async fn requests_without_credentials_get_401_with_a_challenge() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/api/v1/contacts")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;

    let response = app
        .client
        .get(app.url("/api/v1/contacts"))
        .header("authorization", "Basic YWRtaW46YWRtaW4=")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let app = spawn_app().await;
    let mut claims = claims_of(&app.admin_token);
    claims.iat = now() - 7200;
    claims.exp = now() - 3600;
    let token = app.state.tokens.sign(&claims).unwrap();
    let problem = assert_problem(status_with_token(&app, &token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(problem["detail"], "the access token has expired");
}

#[tokio::test]
async fn a_token_for_another_audience_or_issuer_is_refused() {
    let app = spawn_app().await;
    let mut claims = claims_of(&app.admin_token);
    claims.aud = "another-api".to_owned();
    let token = app.state.tokens.sign(&claims).unwrap();
    let problem = assert_problem(status_with_token(&app, &token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(problem["detail"], "the access token is not meant for this API");

    let mut claims = claims_of(&app.admin_token);
    claims.iss = "someone-else".to_owned();
    let token = app.state.tokens.sign(&claims).unwrap();
    assert_problem(status_with_token(&app, &token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_token_missing_a_required_claim_is_refused() {
    let app = spawn_app().await;
    let claims = claims_of(&app.admin_token);
    // No `aud` at all: must not be taken as "any audience".
    let token = app
        .state
        .tokens
        .sign(&json!({"sub": claims.sub, "iss": claims.iss, "exp": claims.exp, "iat": claims.iat}))
        .unwrap();
    assert_problem(status_with_token(&app, &token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // No `exp`: must not live for ever.
    let token = app.state.tokens.sign(&json!({"sub": claims.sub, "iss": claims.iss, "aud": claims.aud})).unwrap();
    assert_problem(status_with_token(&app, &token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let app = spawn_app().await;
    let claims = claims_of(&app.admin_token);
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    for token in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
        assert_problem(status_with_token(&app, &token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_refused() {
    let app = spawn_app().await;
    let claims = claims_of(&app.admin_token);
    let forger = Tokens::from_key(b"a key that is not the server's key", std::time::Duration::from_secs(60)).unwrap();
    let token = forger.sign(&claims).unwrap();
    let problem = assert_problem(status_with_token(&app, &token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(problem["detail"], "the access token's signature does not match");

    // A real token with one character of its signature changed.
    let mut tampered = app.admin_token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_problem(status_with_token(&app, &tampered).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_deleted_users_token_stops_working() {
    let app = spawn_app().await;
    let token = app.user_token("editor").await;
    assert_eq!(status_with_token(&app, &token).await.status(), StatusCode::OK);
    let (_, users) = app.send(app.get("/api/v1/users?limit=200")).await;
    let editor = users["items"].as_array().unwrap().iter().find(|u| u["role"] == "editor").unwrap();
    let (status, _) = app.send(app.delete(&format!("/api/v1/users/{}", editor["id"].as_str().unwrap()))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_problem(status_with_token(&app, &token).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn sign_in(app: &crate::helpers::TestApp, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/token"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_account_with_too_many_failed_sign_ins_gets_429_with_retry_after_even_with_the_right_password() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.login_attempts_per_account = 3;
        settings.login_attempts_per_ip = 100;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(sign_in(&app, ADMIN_EMAIL, "not the password").await.status(), StatusCode::UNAUTHORIZED);
    }
    let response = sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait > 0 && wait <= 900, "Retry-After {wait}");
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "too-many-requests").await;
    // The same address typed otherwise is the same account.
    let response = sign_in(&app, "ADMIN@example.org", ADMIN_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another account from the same address is not locked by it.
    let token = app.user_token("viewer").await;
    assert_eq!(status_with_token(&app, &token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_success_resets_the_account_count() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.login_attempts_per_account = 3;
        settings.login_attempts_per_ip = 100;
    })
    .await;
    for _ in 0..3 {
        for _ in 0..2 {
            assert_eq!(sign_in(&app, ADMIN_EMAIL, "not the password").await.status(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn one_address_failing_on_many_accounts_gets_429_and_unknown_accounts_count_too() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.login_attempts_per_account = 100;
        settings.login_attempts_per_ip = 4;
    })
    .await;
    for i in 0..4 {
        let response = sign_in(&app, &format!("nobody-{i}@example.org"), "a guessed password").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "too-many-requests").await;
}

#[tokio::test]
async fn successful_sign_ins_do_not_use_up_the_address_limit() {
    let app = crate::helpers::spawn_app_with(|settings| settings.login_attempts_per_ip = 2).await;
    for _ in 0..5 {
        assert_eq!(sign_in(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_sign_in_waits_for_a_free_password_check_slot() {
    let app = crate::helpers::spawn_app_with(|settings| settings.password_hash_concurrency = 1).await;
    let held = app.state.login.password_checks().acquire().await.unwrap();
    let pending = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url("/api/v1/auth/token"));
        async move {
            client.post(url).json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})).send().await.unwrap()
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!pending.is_finished(), "the sign-in checked its password while every slot was taken");
    drop(held);
    let response = pending.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
