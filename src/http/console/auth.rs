//! First run, sign-in and sign-out.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{Console, cleared_cookie, failure, frame, html, redirect, session_cookie};
use crate::domain::Email;
use crate::error::Error;
use crate::http::AppState;
use crate::http::pages::{Frame, client_ip};
use crate::i18n;
use crate::services::sessions;

#[derive(Debug, Default, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

fn render(state: &AppState, frame: &Frame, status: StatusCode, name: &str, context: minijinja::Value) -> HttpResponse {
    match state.pages.render(&format!("console/{name}"), frame, context) {
        Ok(body) => html(status, body),
        Err(error) => failure(state, frame, error),
    }
}

pub async fn show_setup(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let frame = frame(&req, None);
    match sessions::setup_needed(&state.db).await {
        Ok(true) => render(&state, &frame, StatusCode::OK, "setup.html", minijinja::context! { email => "" }),
        Ok(false) => redirect("/admin/sign-in"),
        Err(error) => failure(&state, &frame, error),
    }
}

pub async fn setup(req: HttpRequest, state: web::Data<AppState>, form: web::Form<SetupForm>) -> HttpResponse {
    let frame = frame(&req, None);
    if !super::same_origin(&req, &state) {
        return failure(&state, &frame, Error::Forbidden("the request came from another site".to_owned()));
    }
    let form = form.into_inner();
    let again = |state: &AppState, status: StatusCode, error: String| {
        render(state, &frame, status, "setup.html", minijinja::context! { email => &form.email, error })
    };
    let email = match Email::parse(&form.email) {
        Ok(email) => email,
        Err(e) => {
            return again(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{}: {e}", i18n::text(&frame.locale, "email")),
            );
        }
    };
    match sessions::complete_setup(&state.db, &state.login, client_ip(&req), &form.code, email, form.password.clone())
        .await
    {
        Ok(opened) => {
            tracing::info!(user = %opened.session.user.id, "the first admin was created from the console");
            let mut response = redirect("/admin");
            let _ = response.add_cookie(&session_cookie(&state, &opened.secret));
            response
        }
        Err(Error::Forbidden(message)) => again(&state, StatusCode::FORBIDDEN, message),
        Err(Error::Validation(errors)) => {
            let message = errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
            again(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{}: {message}", i18n::text(&frame.locale, "admin_password")),
            )
        }
        Err(error) => failure(&state, &frame, error),
    }
}

pub async fn show_sign_in(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let frame = frame(&req, None);
    if sessions::setup_needed(&state.db).await.unwrap_or(false) {
        return redirect("/admin/setup");
    }
    render(&state, &frame, StatusCode::OK, "sign_in.html", minijinja::context! { email => "" })
}

pub async fn sign_in(req: HttpRequest, state: web::Data<AppState>, form: web::Form<SignInForm>) -> HttpResponse {
    let frame = frame(&req, None);
    if !super::same_origin(&req, &state) {
        return failure(&state, &frame, Error::Forbidden("the request came from another site".to_owned()));
    }
    let form = form.into_inner();
    match sessions::sign_in(&state.db, &state.login, client_ip(&req), &form.email, form.password).await {
        Ok(sessions::SignIn::Opened(opened)) => {
            let mut response = redirect("/admin");
            let _ = response.add_cookie(&session_cookie(&state, &opened.secret));
            response
        }
        Ok(sessions::SignIn::CodeNeeded(waiting)) => {
            let mut response = render(&state, &frame, StatusCode::OK, "sign_in_code.html", minijinja::context! {});
            let _ = response.add_cookie(&session_cookie(&state, &waiting.secret));
            response
        }
        Err(Error::Unauthorized(_)) => {
            let error = i18n::text(&frame.locale, "admin_sign_in_refused");
            render(
                &state,
                &frame,
                StatusCode::UNAUTHORIZED,
                "sign_in.html",
                minijinja::context! { email => &form.email, error },
            )
        }
        Err(error) => failure(&state, &frame, error),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

/// The second step of a sign-in with two factors: the code, under the waiting session's
/// cookie; a right one opens a new session.
pub async fn sign_in_code(req: HttpRequest, state: web::Data<AppState>, form: web::Form<CodeForm>) -> HttpResponse {
    let frame = frame(&req, None);
    if !super::same_origin(&req, &state) {
        return failure(&state, &frame, Error::Forbidden("the request came from another site".to_owned()));
    }
    let secret = req.cookie(super::COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    match sessions::complete_second_factor(&state.db, &state.login, &secret, &form.code).await {
        Ok(opened) => {
            let mut response = redirect("/admin");
            let _ = response.add_cookie(&session_cookie(&state, &opened.secret));
            response
        }
        Err(Error::Unauthorized(error)) => {
            render(&state, &frame, StatusCode::UNAUTHORIZED, "sign_in_code.html", minijinja::context! { error })
        }
        Err(error) => failure(&state, &frame, error),
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(
    req: HttpRequest,
    state: web::Data<AppState>,
    console: Console,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    if let Err(error) = console.check_csrf(&form.csrf) {
        return failure(&state, &console.frame, error);
    }
    if let Some(cookie) = req.cookie(super::COOKIE)
        && let Err(error) = sessions::sign_out(&state.db, cookie.value()).await
    {
        return failure(&state, &console.frame, error);
    }
    let mut response = redirect("/admin/sign-in");
    let _ = response.add_cookie(&cleared_cookie(&state));
    response
}
