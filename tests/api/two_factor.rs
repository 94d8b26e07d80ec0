//! Two-factor sign-in: turned on in the console with the app's first code, then asked for
//! after the password in the console and in the API, each code accepted once.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

/// The code an authenticator app shows `at` (seconds) for a base32 secret.
fn code_at(secret: &str, at: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    totp.generate(at).to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// A new user of `role`, signed in to the console, with two-factor sign-in turned on with
/// the code of `at`; answers their e-mail and secret.
async fn user_with_two_factor(app: &TestApp, role: &str, at: u64) -> (String, String) {
    let email = format!("{role}-{}@example.org", uuid::Uuid::new_v4().simple());
    let (status, _) = app
        .send(app.post("/api/v1/users", &json!({"email": email, "password": "a user passphrase", "role": role})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let signed = app.sign_in(&email, "a user passphrase").await;
    let (status, page) = app.console_get("/admin/account", &signed.cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<svg") && page.contains("role=\"img\""), "a QR code for the app: {page}");
    let secret = hidden(&page, "secret");
    let grouped: String =
        secret.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(" ");
    assert!(page.contains(&grouped), "the secret to type in, in groups: {page}");

    let enable = |password: &'static str, code: String| {
        app.console_post("/admin/account/two-factor", Some(&signed.cookie)).form(&[
            ("csrf", signed.csrf.clone()),
            ("action", "enable".to_owned()),
            ("secret", secret.clone()),
            ("password", password.to_owned()),
            ("code", code),
        ])
    };
    let wrong_code = enable("a user passphrase", "000000".to_owned()).send().await.unwrap();
    assert_eq!(wrong_code.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let kept = wrong_code.text().await.unwrap();
    assert_eq!(hidden(&kept, "secret"), secret, "the page keeps the secret the app holds");
    let wrong_password = enable("not the passphrase", code_at(&secret, at)).send().await.unwrap();
    assert_eq!(wrong_password.status(), StatusCode::UNAUTHORIZED);
    let (_, still_off) = app.console_get("/admin/account", &signed.cookie).await;
    assert!(still_off.contains("value=\"enable\""), "{still_off}");

    let enabled = enable("a user passphrase", code_at(&secret, at)).send().await.unwrap();
    assert_eq!(enabled.status(), StatusCode::OK);
    assert!(enabled.text().await.unwrap().contains("Two-factor sign-in is on"));
    // On, it cannot be replaced by another secret without its code (turning it off first).
    let other = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let replaced = app
        .console_post("/admin/account/two-factor", Some(&signed.cookie))
        .form(&[
            ("csrf", signed.csrf.as_str()),
            ("action", "enable"),
            ("secret", other),
            ("password", "a user passphrase"),
            ("code", code_at(other, at).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::CONFLICT);
    (email, secret)
}

#[tokio::test]
async fn the_console_asks_for_the_code_after_the_password_and_takes_each_code_once() {
    let app = spawn_app().await;
    let at = now();
    let (email, secret) = user_with_two_factor(&app, "viewer", at).await;

    let password_step = |password: &'static str| {
        app.console_post("/admin/sign-in", None).form(&[("email", email.clone()), ("password", password.to_owned())])
    };
    assert_eq!(password_step("not the passphrase").send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let response = password_step("a user passphrase").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "the password alone opens no session");
    let waiting = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert!(response.text().await.unwrap().contains("autocomplete=\"one-time-code\""));
    let (status, _) = app.console_get("/admin", &waiting).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "a session waiting for its code opens no page");

    let code_step = |cookie: &str, code: &str| {
        app.console_post("/admin/sign-in/code", Some(cookie)).form(&[("code", code.to_owned())])
    };
    let wrong = code_step(&waiting, "123456").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // The code that turned it on was spent then: the next one (within the drift allowed) opens.
    let spent = code_step(&waiting, &code_at(&secret, at)).send().await.unwrap();
    assert_eq!(spent.status(), StatusCode::UNAUTHORIZED);
    let next = code_at(&secret, at + 30);
    let opened = code_step(&waiting, &next).send().await.unwrap();
    assert_eq!(opened.status(), StatusCode::SEE_OTHER);
    let session = opened.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert_ne!(session, waiting, "the session opened is a new one");
    assert_eq!(app.console_get("/admin", &session).await.0, StatusCode::OK);
    assert_eq!(app.console_get("/admin", &waiting).await.0, StatusCode::SEE_OTHER, "the waiting cookie is spent");

    // The same code once more, in a new sign-in: refused.
    let again = password_step("a user passphrase").send().await.unwrap();
    let waiting = again.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    assert_eq!(code_step(&waiting, &next).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // A code step without a waiting session, or from another site, opens nothing.
    assert_eq!(code_step("consento_session=forged", &next).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let elsewhere = app
        .client
        .post(app.url("/admin/sign-in/code"))
        .header("origin", "https://attacker.example")
        .header("cookie", &waiting)
        .form(&[("code", next.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::FORBIDDEN);

    // Turning it off takes a right code too.
    let signed = crate::console::SignedIn {
        cookie: session.clone(),
        csrf: hidden(&app.console_get("/admin", &session).await.1, "csrf"),
    };
    let off = app
        .console_post("/admin/account/two-factor", Some(&signed.cookie))
        .form(&[
            ("csrf", signed.csrf.as_str()),
            ("action", "disable"),
            ("password", "a user passphrase"),
            ("code", "999999"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), StatusCode::UNAUTHORIZED);
    assert!(app.console_get("/admin/account", &session).await.1.contains("value=\"disable\""), "still on");
}

#[tokio::test]
async fn an_api_token_for_a_user_with_two_factors_takes_the_code_too() {
    let app = spawn_app().await;
    let at = now();
    let (email, secret) = user_with_two_factor(&app, "editor", at).await;
    let token = |code: Option<String>| {
        let mut body = json!({"email": email, "password": "a user passphrase"});
        if let Some(code) = code {
            body["totp_code"] = json!(code);
        }
        app.client.post(app.url("/api/v1/auth/token")).json(&body)
    };
    let (status, problem) = app.send(token(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(problem["detail"].as_str().unwrap().contains("two-factor code"), "{problem}");
    assert_eq!(app.send(token(Some("000000".to_owned()))).await.0, StatusCode::UNAUTHORIZED);
    let (status, issued) = app.send(token(Some(code_at(&secret, at + 30)))).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert!(issued["access_token"].is_string());
    assert_eq!(app.send(token(Some(code_at(&secret, at + 30)))).await.0, StatusCode::UNAUTHORIZED, "a code works once");
    // Others sign in with their password alone, and a stray code changes nothing for them.
    let plain = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .json(&json!({"email": crate::helpers::ADMIN_EMAIL, "password": crate::helpers::ADMIN_PASSWORD, "totp_code": "123456"}));
    assert_eq!(app.send(plain).await.0, StatusCode::OK);

    // A user who lost their app: the operator turns the second factor off from the shell.
    let reset =
        crate::cli::consento(&app.database).args(["user", "reset-two-factor", "--email", &email]).output().unwrap();
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));
    assert!(String::from_utf8_lossy(&reset.stderr).contains("Two-factor sign-in is off"));
    assert_eq!(app.send(token(None)).await.0, StatusCode::OK, "the password alone signs in again");
    let unknown = crate::cli::consento(&app.database)
        .args(["user", "reset-two-factor", "--email", "nobody@example.org"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
}
