//! A user's own account: two-factor sign-in turned on (with a QR code for the app, or its
//! secret to type) or off, each with the password and a code from the app.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use qrcodegen::{QrCode, QrCodeEcc};

use super::{Console, failure, page_with_status};
use crate::error::Error;
use crate::http::AppState;
use crate::services::two_factor::{self, Enrolment};

/// A QR code as SVG, drawn with one path (dark modules on a light, quiet border).
fn qr_svg(text: &str, label: &str) -> Option<String> {
    let code = QrCode::encode_text(text, QrCodeEcc::Medium).ok()?;
    let size = code.size();
    let border = 4;
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if code.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    let full = size + 2 * border;
    let label = minijinja::HtmlEscape(label).to_string();
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {full} {full}\" width=\"220\" height=\"220\" role=\"img\" \
         aria-label=\"{label}\" shape-rendering=\"crispEdges\"><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\
         <path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

async fn account_page(
    state: &AppState,
    console: &Console,
    status: StatusCode,
    enrolment: Option<Enrolment>,
    error: Option<String>,
    notice: Option<&str>,
) -> HttpResponse {
    let user = &console.session.user;
    // The account as stored now (the session's copy may predate a change on this page).
    let two_factor = match crate::services::users::find_user(&state.db, user.id).await {
        Ok(found) => found.two_factor,
        Err(error) => return failure(state, &console.frame, error),
    };
    let enrolment = if two_factor { None } else { Some(enrolment.unwrap_or_else(|| two_factor::new_enrolment(user))) };
    let locale = &console.frame.locale;
    let qr = enrolment.as_ref().and_then(|e| qr_svg(&e.uri, crate::i18n::text(locale, "admin_2fa_qr")));
    let secret_groups = enrolment.as_ref().map(|e| {
        e.secret.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
    });
    let title = crate::i18n::text(locale, "admin_account");
    let notice = notice.map(|key| crate::i18n::text(locale, key));
    let context = minijinja::context! {
        title, two_factor, qr => qr.map(minijinja::Value::from_safe_string), secret => enrolment.as_ref().map(|e| e.secret.clone()),
        secret_groups, uri => enrolment.as_ref().map(|e| e.uri.clone()), error, notice,
    };
    page_with_status(state, console, status, "account.html", "account", context)
}

pub async fn show(state: web::Data<AppState>, console: Console) -> HttpResponse {
    account_page(&state, &console, StatusCode::OK, None, None, None).await
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct TwoFactorForm {
    #[serde(default)]
    csrf: String,
    /// `enable` or `disable`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    /// The enrolment's secret, shown on the page that posts it.
    #[serde(default)]
    secret: String,
}

/// Turns the second factor on or off: the password and a code from the app each time.
pub async fn two_factor(state: web::Data<AppState>, console: Console, form: web::Form<TwoFactorForm>) -> HttpResponse {
    if let Err(error) = console.check_csrf(&form.csrf) {
        return failure(&state, &console.frame, error);
    }
    let form = form.into_inner();
    let user = &console.session.user;
    let (outcome, notice) = match form.action.as_str() {
        "enable" => {
            let done = two_factor::enable(&state.db, &state.login, user, form.password, &form.secret, &form.code).await;
            (done, "admin_2fa_enabled")
        }
        "disable" => {
            (two_factor::disable(&state.db, &state.login, user, form.password, &form.code).await, "admin_2fa_disabled")
        }
        _ => (Err(Error::field("action", "must be enable or disable")), ""),
    };
    // After a fault, the page keeps the secret being enrolled: the app already holds it.
    let enrolment =
        || (form.action == "enable").then(|| two_factor::enrolment_with_secret(user, &form.secret)).flatten();
    match outcome {
        Ok(()) => {
            tracing::info!(user = %user.id, change = %form.action, "two-factor sign-in changed");
            account_page(&state, &console, StatusCode::OK, None, None, Some(notice)).await
        }
        Err(Error::Unauthorized(message)) => {
            account_page(&state, &console, StatusCode::UNAUTHORIZED, enrolment(), Some(message), None).await
        }
        Err(Error::Validation(faults)) => {
            let message = faults.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ");
            account_page(&state, &console, StatusCode::UNPROCESSABLE_ENTITY, enrolment(), Some(message), None).await
        }
        Err(error) => failure(&state, &console.frame, error),
    }
}
