//! The console under `/admin`: server-rendered pages for the people who run consento, on
//! the same services as the API (no rule of its own). It works without JavaScript and with
//! every asset in the binary.
//!
//! Pages are not part of the OpenAPI document, which describes the API: they are
//! registered here, outside it.
//!
//! Sign-in opens a session held in an HttpOnly, SameSite cookie (Secure behind HTTPS);
//! every state change is a POST carrying the session's CSRF token, and a POST from
//! another origin is refused whatever it carries.

mod account;
mod auth;
mod builder;
mod contacts;
mod dashboard;
mod forms;
mod imports;
mod lists;

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::AppState;
use super::pages::Frame;
use crate::domain::Role;
use crate::error::Error;
use crate::i18n;
use crate::services::sessions::{self, Session};

/// The session cookie's name.
pub const COOKIE: &str = "consento_session";

/// The policy of every console page: nothing from elsewhere, no framing.
/// Its one script is the console's own (`/admin/console.js`), which every page works
/// without.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; frame-src 'self'; \
                           style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
                           frame-ancestors 'none'";

/// The console's routes.
pub fn scope() -> actix_web::Scope {
    web::scope("/admin")
        .route("", web::get().to(dashboard::show))
        .route("/", web::get().to(dashboard::show))
        .route("/setup", web::get().to(auth::show_setup))
        .route("/setup", web::post().to(auth::setup))
        .route("/sign-in", web::get().to(auth::show_sign_in))
        .route("/sign-in", web::post().to(auth::sign_in))
        .route("/sign-in/code", web::post().to(auth::sign_in_code))
        .route("/sign-out", web::post().to(auth::sign_out))
        .route("/account", web::get().to(account::show))
        .route("/account/two-factor", web::post().to(account::two_factor))
        .route("/contacts", web::get().to(contacts::list))
        .route("/contacts/bulk", web::post().to(contacts::bulk))
        .route("/contacts/{id}", web::get().to(contacts::show))
        .route("/contacts/{id}/proof", web::get().to(contacts::proof))
        .route("/contacts/{id}/export", web::get().to(contacts::export))
        .route("/contacts/{id}/erase", web::get().to(contacts::show_erase))
        .route("/contacts/{id}/erase", web::post().to(contacts::erase))
        .route("/forms", web::get().to(forms::list))
        .route("/forms/new", web::get().to(builder::show_new))
        .route("/forms/new", web::post().to(builder::create))
        .route("/forms/preview", web::post().to(builder::preview))
        .route("/forms/{id}", web::get().to(forms::show))
        .route("/forms/{id}/edit", web::get().to(builder::show_edit))
        .route("/forms/{id}/edit", web::post().to(builder::update))
        .route("/forms/{id}/preview", web::get().to(forms::preview))
        .route("/imports", web::get().to(imports::list))
        .route("/imports", web::post().to(imports::upload))
        .route("/imports/draft/{id}", web::get().to(imports::show_draft))
        .route("/imports/draft/{id}", web::post().to(imports::start))
        .route("/imports/{id}", web::get().to(imports::show))
        .route("/imports/{id}/progress", web::get().to(imports::progress))
        .route("/console.js", web::get().to(script))
        .route("/lists", web::get().to(lists::list))
        .route("/suppressions", web::get().to(lists::show_suppressions))
        .route("/suppressions", web::post().to(lists::add_suppression))
        .route("/suppressions/import", web::post().to(lists::import_suppressions))
}

/// A signed-in user, found from the session cookie. A request without a valid session is
/// sent to the sign-in page (or, before the first admin exists, to the setup page).
pub struct Console {
    pub session: Session,
    pub frame: Frame,
}

impl Console {
    /// `Ok` when the user's role covers `needed`; else the refusal page.
    pub fn require(&self, needed: Role) -> Result<(), Error> {
        self.session.require(needed)
    }

    /// Checks a form's CSRF token against the session's, in constant time.
    pub fn check_csrf(&self, token: &str) -> Result<(), Error> {
        let expected = self.session.csrf_token.as_bytes();
        let given = token.as_bytes();
        let same =
            expected.len() == given.len() && expected.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same { Ok(()) } else { Err(csrf_refused()) }
    }
}

/// How the console names who acted: a user by their e-mail address, anyone else as the
/// ledger records them (`api_key:…`, `partner:…`, `system`).
pub async fn actor_names<'a>(
    state: &AppState,
    actors: impl Iterator<Item = &'a str>,
) -> std::collections::HashMap<String, String> {
    let mut names = std::collections::HashMap::new();
    for actor in actors {
        if names.contains_key(actor) {
            continue;
        }
        let user = actor.strip_prefix("user:").and_then(|id| id.parse::<crate::domain::UserId>().ok());
        let name = match user {
            Some(id) => crate::services::users::find_user(&state.db, id)
                .await
                .map_or_else(|_| actor.to_owned(), |user| user.email.as_str().to_owned()),
            None => actor.to_owned(),
        };
        names.insert(actor.to_owned(), name);
    }
    names
}

/// The refusal of a change whose form carries no valid CSRF token.
pub fn csrf_refused() -> Error {
    Error::Forbidden("the form is out of date or was not sent from the console: reload it and try again".to_owned())
}

/// The console's script: live progress and the drop zone of imports (every page works
/// without it).
async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-content-type-options", "nosniff"))
        .body(include_str!("../assets/console.js"))
}

impl FromRequest for Console {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
                return Err(actix_web::error::ErrorInternalServerError("no state"));
            };
            let unsigned = |to: &str| actix_web::error::InternalError::from_response("", redirect(to)).into();
            if req.method() == actix_web::http::Method::POST && !same_origin(&req, &state) {
                let frame = frame(&req, None);
                let page = error_page(
                    &state,
                    &frame,
                    StatusCode::FORBIDDEN,
                    "admin_forbidden_title",
                    "the request came from another site",
                );
                return Err(actix_web::error::InternalError::from_response("", page).into());
            }
            let secret = req.cookie(COOKIE).map(|c| c.value().to_owned());
            let session = match secret {
                Some(secret) => sessions::find_session(&state.db, &secret)
                    .await
                    .map_err(actix_web::error::ErrorInternalServerError)?,
                None => None,
            };
            match session {
                Some(session) => Ok(Console { frame: frame(&req, None), session }),
                None if sessions::setup_needed(&state.db).await.unwrap_or(false) => Err(unsigned("/admin/setup")),
                None => Err(unsigned("/admin/sign-in")),
            }
        })
    }
}

/// Whether a POST comes from this server's own pages: its `Origin` (or, without one, its
/// `Referer`) names this server. A browser always sends one of them with a form post.
fn same_origin(req: &HttpRequest, state: &AppState) -> bool {
    let base = state.signup.base_url.trim_end_matches('/');
    let own = |url: &str| url == base || url.starts_with(&format!("{base}/"));
    match req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => own(origin),
        None => req.headers().get(header::REFERER).and_then(|v| v.to_str().ok()).is_some_and(own),
    }
}

/// The console's language: the browser's.
pub fn frame(req: &HttpRequest, brand: Option<&crate::domain::brand::Brand>) -> Frame {
    Frame::new(super::pages::locale(req, None), brand, None)
}

pub fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to.to_owned())).finish()
}

/// A console page's response: private, never cached, never framed.
pub fn html(status: StatusCode, html: String) -> HttpResponse {
    super::pages::html_response_under(status, html, CONSOLE_CSP)
}

/// Renders a console page for a signed-in user: the template sees `user`, `csrf` and `nav`.
pub fn page(state: &AppState, console: &Console, name: &str, nav: &str, context: impl Serialize) -> HttpResponse {
    page_with_status(state, console, StatusCode::OK, name, nav, context)
}

/// [`page`], answered with `status` (a form sent back with its faults).
pub fn page_with_status(
    state: &AppState,
    console: &Console,
    status: StatusCode,
    name: &str,
    nav: &str,
    context: impl Serialize,
) -> HttpResponse {
    let session = &console.session;
    let user = minijinja::context! { email => session.user.email.as_str(), role => session.user.role.to_string(),
    can_edit => session.user.role.allows(Role::Editor), is_admin => session.user.role.allows(Role::Admin) };
    let context =
        minijinja::context! { user, csrf => &session.csrf_token, nav, ..minijinja::Value::from_serialize(context) };
    match state.pages.render(&format!("console/{name}"), &console.frame, context) {
        Ok(body) => html(status, body),
        Err(error) => failure(state, &console.frame, error),
    }
}

/// The page for an error met while serving a console page.
pub fn failure(state: &AppState, frame: &Frame, error: Error) -> HttpResponse {
    match error {
        Error::Unauthorized(_) => redirect("/admin/sign-in"),
        Error::Forbidden(message) => error_page(state, frame, StatusCode::FORBIDDEN, "admin_forbidden_title", &message),
        Error::NotFound(message) => error_page(state, frame, StatusCode::NOT_FOUND, "admin_not_found_title", &message),
        Error::Validation(errors) => {
            let message = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
            error_page(state, frame, StatusCode::UNPROCESSABLE_ENTITY, "admin_invalid_title", &message)
        }
        Error::BadRequest(message) => {
            error_page(state, frame, StatusCode::BAD_REQUEST, "admin_invalid_title", &message)
        }
        Error::Conflict(message) => error_page(state, frame, StatusCode::CONFLICT, "admin_invalid_title", &message),
        Error::PayloadTooLarge { limit } => {
            let message = format!("the file is larger than the {} MiB an import may hold", limit / (1024 * 1024));
            error_page(state, frame, StatusCode::PAYLOAD_TOO_LARGE, "admin_invalid_title", &message)
        }
        Error::TooManyRequests { retry_after } => {
            let message = i18n::text(&frame.locale, "too_many_text");
            let mut response = error_page(state, frame, StatusCode::TOO_MANY_REQUESTS, "too_many_title", message);
            if let Ok(value) = header::HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        other => {
            tracing::error!(error = %other, cause = ?std::error::Error::source(&other), "a console page failed");
            error_page(
                state,
                frame,
                StatusCode::INTERNAL_SERVER_ERROR,
                "admin_error_title",
                i18n::text(&frame.locale, "admin_error_text"),
            )
        }
    }
}

fn error_page(state: &AppState, frame: &Frame, status: StatusCode, title_key: &str, message: &str) -> HttpResponse {
    let title = i18n::text(&frame.locale, title_key);
    match state.pages.render("console/error.html", frame, minijinja::context! { title, message }) {
        Ok(body) => html(status, body),
        Err(_) => HttpResponse::build(status).content_type("text/plain; charset=utf-8").body(message.to_owned()),
    }
}

/// The session cookie for a secret: HttpOnly, SameSite=Lax, for the console's paths
/// only, Secure when the server is reached over HTTPS.
pub fn session_cookie(state: &AppState, secret: &str) -> Cookie<'static> {
    let secure = state.signup.base_url.starts_with("https://");
    Cookie::build(COOKIE, secret.to_owned())
        .path("/admin")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::seconds(sessions::SESSION_LIFETIME.num_seconds()))
        .finish()
}

/// A cookie that removes the session cookie.
pub fn cleared_cookie(state: &AppState) -> Cookie<'static> {
    let mut cookie = session_cookie(state, "");
    cookie.make_removal();
    cookie
}
