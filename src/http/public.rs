//! Public pages: the hosted signup form and its JSON submit, double opt-in confirmation,
//! one-click unsubscribe and the preference centre. They work without JavaScript, and a
//! link that is not valid gets the same page whatever the reason.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, get, options, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::AppState;
use super::extract::LimitedBody;
use super::pages::{Frame, locale, request_info};
use crate::domain::ListId;
use crate::domain::form::{RawSubmission, check_submission};
use crate::error::{Error, Result};
use crate::i18n;
use crate::services::brands;
use crate::services::forms::{self, Form};
use crate::services::keys::LinkKind;
use crate::services::preferences::{self, DataAction, DataOutcome, ListState};
use crate::services::signup::{self, LinkState, SubmitOutcome, Submitted};

/// A JSON signup, as a site's own script sends it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct SignupRequest {
    pub email: String,
    /// For B2B forms.
    pub company: Option<String>,
    /// The form's custom fields by name.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
    /// Ids of the lists whose box was ticked.
    #[serde(default)]
    pub consents: Vec<String>,
    /// Ids of the partners whose box was ticked.
    #[serde(default)]
    pub partners: Vec<String>,
    /// The honeypot: leave it out or empty.
    pub website: Option<String>,
}

impl super::extract::RequestBody for SignupRequest {
    const SERVER_OWNED: &'static [&'static str] = &[];
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignupResponse {
    /// `pending_confirmation` (a confirmation mail is on its way, unless one went to the
    /// address in the last 24 hours) or `subscribed`.
    pub status: String,
    /// What to tell the person, in the form's language.
    pub message: String,
    /// The survey the form offers now (`GET|POST` it as JSON, or send the person there).
    pub survey_url: Option<String>,
}

#[utoipa::path(
    tag = "public",
    params(("slug" = String, Path, description = "The form's slug")),
    responses(
        (status = 200, description = "The signup page", content_type = "text/html", body = String),
        (status = 404, description = "No form at this address", content_type = "text/html", body = String),
        (status = 429, description = "Too many requests from this address", content_type = "text/html", body = String),
    )
)]
#[get("/f/{slug}")]
pub async fn show_form(req: HttpRequest, state: web::Data<AppState>, slug: web::Path<String>) -> Result<HttpResponse> {
    let form = forms::find_form_by_slug(&state.db, slug.into_inner()).await?;
    let frame = form_frame(&state, &req, form.as_ref()).await?;
    let Some(form) = form else {
        return state.pages.message(StatusCode::NOT_FOUND, &frame, "not_found_title", &[], &[]);
    };
    if let Err(wait) = state.limiter.check(&req) {
        return too_many_html(&state, &frame, wait);
    }
    let context = FormContext { template: "form.html", preview: false, script_url: None };
    let html =
        render_form(&state, accept_language(&req), &form, &frame, context, &RawSubmission::default(), &[]).await?;
    let mut response = super::pages::html_response(StatusCode::OK, html);
    allow_framing(&mut response, &form);
    Ok(response)
}

/// Which embed snippet to give.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EmbedQuery {
    /// `html` (the default: the form in a shadow root declared in HTML, which keeps its
    /// look on any page and needs no JavaScript), `script` (the same, with a small script
    /// that submits it with fetch and shows the answer in place; the page's origin must be
    /// one of the form's `allowed_origins`) or `iframe` (the hosted page in a frame; the
    /// page's origin must be one of the form's `allowed_origins`).
    #[param(example = "html")]
    pub variant: Option<String>,
}

#[utoipa::path(
    tag = "public",
    params(("slug" = String, Path, description = "The form's slug"), EmbedQuery),
    responses(
        (status = 200, description = "HTML to paste into a page: the form as configured, posting to this server", content_type = "text/plain", body = String),
        (status = 404, description = "No form at this address", body = super::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a variant", body = super::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/f/{slug}/embed")]
pub async fn embed_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    query: super::extract::ApiQuery<EmbedQuery>,
) -> Result<HttpResponse> {
    let form = forms::find_form_by_slug(&state.db, slug.into_inner())
        .await?
        .ok_or_else(|| Error::NotFound("there is no form at this address".to_owned()))?;
    let mut frame = form_frame(&state, &req, Some(&form)).await?;
    // The snippet lives on another site: its addresses must name this server.
    let base = &state.signup.base_url;
    if let Some(brand) = frame.brand.as_mut() {
        brand.logo_url = brand.logo_url.take().map(|path| format!("{base}{path}"));
    }
    let snippet = match query.0.variant.as_deref().unwrap_or("html") {
        "iframe" => format!(
            "<!-- consento signup form \"{slug}\": paste it where the form should appear. The frame works on the form's allowed origins only. -->\n\
             <iframe src=\"{base}/f/{slug}\" title=\"{title}\" style=\"width:100%;min-height:44rem;border:0\" loading=\"lazy\"></iframe>\n",
            slug = form.slug,
            title = super::pages::escape_html(&form.definition.title),
        ),
        variant @ ("html" | "script") => {
            let script_url = (variant == "script").then(|| format!("{base}/embed.js"));
            let context = FormContext { template: "embed.html", preview: false, script_url };
            render_form(&state, accept_language(&req), &form, &frame, context, &RawSubmission::default(), &[]).await?
        }
        _ => return Err(Error::field("variant", "must be html, script or iframe")),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((actix_web::http::header::CONTENT_SECURITY_POLICY, super::pages::SNIPPET_CSP))
        .insert_header((actix_web::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(snippet))
}

#[utoipa::path(
    tag = "public",
    responses((status = 200, description = "The script of the `script` embed: it submits each embedded form with fetch and shows the answer in place", content_type = "text/javascript", body = String))
)]
#[get("/embed.js")]
pub async fn embed_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(include_str!("assets/embed.js"))
}

/// Lets the form's own origins frame its hosted page (the `iframe` embed); every other
/// page, and this one for any other site, may not be framed.
fn allow_framing(response: &mut HttpResponse, form: &Form) {
    let origins = &form.definition.allowed_origins;
    if origins.is_empty() {
        return;
    }
    let policy = super::pages::PAGE_CSP.replace(
        "frame-ancestors 'none'",
        &format!(
            "frame-ancestors 'self' {}",
            origins.iter().map(|o| o.trim_end_matches('/')).collect::<Vec<_>>().join(" ")
        ),
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
}

/// The frame of a form's pages: its brand (or the default), its look, and its language
/// (else the browser's).
async fn form_frame(state: &AppState, req: &HttpRequest, form: Option<&Form>) -> Result<Frame> {
    let locale = locale(req, form.and_then(|f| f.definition.locale.as_deref()));
    let brand = brands::brand_for(&state.db, form.and_then(|f| f.definition.brand_id)).await?;
    Ok(Frame::new(locale, brand.as_ref(), form.map(|f| &f.definition.look)))
}

/// A form's hosted page as a person would see it, for an admin: in `locale` (else the
/// form's, else English), never framed by another site and never cached.
pub(super) async fn preview_page(state: &AppState, form: &Form, locale: Option<&str>) -> Result<HttpResponse> {
    if let Some(locale) = locale
        && !i18n::LOCALES.contains(&locale)
    {
        return Err(Error::field("locale", format!("must be one of {}", i18n::LOCALES.join(", "))));
    }
    let locale = locale.or(form.definition.locale.as_deref()).unwrap_or("en").to_owned();
    let brand = brands::brand_for(&state.db, form.definition.brand_id).await?;
    let frame = Frame::new(locale, brand.as_ref(), Some(&form.definition.look));
    let context = FormContext { template: "form.html", preview: true, script_url: None };
    let html = render_form(state, None, form, &frame, context, &RawSubmission::default(), &[]).await?;
    Ok(super::pages::html_response_under(StatusCode::OK, html, super::pages::PREVIEW_CSP))
}

/// The frame of a page with no form nor person behind it: the browser's language and the
/// default brand.
pub(super) async fn default_frame(state: &AppState, req: &HttpRequest) -> Result<Frame> {
    let brand = brands::brand_for(&state.db, None).await?;
    Ok(Frame::new(locale(req, None), brand.as_ref(), None))
}

/// The frame of a person's link page: the language they signed up in (else the
/// browser's) and the brand asking.
async fn link_frame(state: &AppState, req: &HttpRequest, kind: LinkKind, token: &str) -> Result<Frame> {
    let audience = brands::link_audience(&state.db, &state.keys, kind, token).await?;
    let locale = locale(req, audience.locale.as_deref());
    let brand = brands::brand_for(&state.db, audience.brand_id).await?;
    Ok(Frame::new(locale, brand.as_ref(), None))
}

#[utoipa::path(
    tag = "public",
    params(("slug" = String, Path, description = "The form's slug")),
    request_body(content(
        (SignupRequest = "application/json"),
        (String = "application/x-www-form-urlencoded")
    ), description = "The hosted page posts `email`, the custom fields by name, `consent` once per ticked list, and the empty honeypot `website`; a site's script posts JSON."),
    responses(
        (status = 200, description = "Recorded (JSON), or the thank-you page (HTML)", body = SignupResponse),
        (status = 303, description = "Recorded; the form redirects to its thank-you URL"),
        (status = 403, description = "A JSON submit from an origin the form does not allow", body = super::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No form at this address: a page for a browser's post, a problem for JSON", content(
            (super::Problem = "application/problem+json"),
            (String = "text/html"),
        )),
        (status = 413, description = "The body is larger than `max_body_bytes`: a page for a browser's post, a problem for JSON", content(
            (super::Problem = "application/problem+json"),
            (String = "text/html"),
        )),
        (status = 415, description = "Neither form-encoded nor JSON", body = super::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Fields at fault: each named (JSON), or the form with each marked (HTML)", body = super::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this address", body = super::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/f/{slug}")]
pub async fn submit_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    body: std::result::Result<LimitedBody, actix_web::Error>,
) -> Result<HttpResponse> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_json = content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    let form = forms::find_form_by_slug(&state.db, slug.into_inner()).await?;
    let origin = allowed_origin(&req, form.as_ref());
    let outcome = match body {
        Ok(body) => submit(&req, &state, form.as_ref(), is_json, content_type, &body.0, origin.is_some()).await,
        Err(error) => Err(match error.as_error::<Error>() {
            Some(Error::PayloadTooLarge { limit }) => Error::PayloadTooLarge { limit: *limit },
            _ => Error::BadRequest(error.to_string()),
        }),
    };
    // A person's browser gets a page in their language; a site's script (JSON) the problem.
    let outcome = match outcome {
        Err(error) if !is_json => browser_error_page(&req, &state, form.as_ref(), error).await,
        outcome => outcome,
    };
    let mut response = match outcome {
        Ok(response) => response,
        Err(error) => error.error_response(),
    };
    if let Some(origin) = origin {
        add_cors(&mut response, &origin);
    }
    if let Some(form) = &form {
        allow_framing(&mut response, form);
    }
    Ok(response)
}

/// The page a browser's post gets for a fault of the request itself: an unknown form
/// (404) or a body over the limit (413), in the form's language or the browser's. Other
/// errors keep their problem document.
async fn browser_error_page(
    req: &HttpRequest,
    state: &AppState,
    form: Option<&Form>,
    error: Error,
) -> Result<HttpResponse> {
    let frame = form_frame(state, req, form).await?;
    let locale = frame.locale.clone();
    match error {
        Error::NotFound(_) => state.pages.message(
            StatusCode::NOT_FOUND,
            &frame,
            "not_found_title",
            &[i18n::text(&locale, "form_not_found_text")],
            &[],
        ),
        Error::PayloadTooLarge { .. } => state.pages.message(
            StatusCode::PAYLOAD_TOO_LARGE,
            &frame,
            "too_large_title",
            &[i18n::text(&locale, "too_large_text")],
            &[],
        ),
        other => Err(other),
    }
}

async fn submit(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    form: Option<&Form>,
    is_json: bool,
    content_type: &str,
    body: &[u8],
    origin_allowed: bool,
) -> Result<HttpResponse> {
    let Some(form) = form else {
        return Err(Error::NotFound("there is no form at this address".to_owned()));
    };
    let frame = form_frame(state, req, Some(form)).await?;
    let locale = frame.locale.clone();
    if let Err(wait) = state.limiter.check(req) {
        return if is_json {
            Err(Error::TooManyRequests { retry_after: wait })
        } else {
            too_many_html(state, &frame, wait)
        };
    }
    if is_json && req.headers().contains_key(header::ORIGIN) && !origin_allowed {
        return Err(Error::Forbidden("this form does not accept submissions from that origin".to_owned()));
    }
    let raw = if is_json {
        parse_json_submission(body)?
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        parse_form_submission(body)
    } else {
        return Err(Error::UnsupportedMediaType(
            "send the form as application/x-www-form-urlencoded or application/json".to_owned(),
        ));
    };
    let info = request_info(req, locale.clone());
    // Only the partners the page offers (the active ones) may be ticked: one ticked that is
    // no longer offered is refused by name, never dropped in silence.
    let offered = offered_partners(state, form).await?;
    let outcome = if raw.is_honeypot_filled() {
        // Answered as a success, so a bot learns nothing; nothing is stored or sent.
        tracing::info!(form = %form.slug, "honeypot filled: submission dropped");
        let outcome = if form.definition.opt_in == crate::domain::form::FormOptIn::Double {
            SubmitOutcome::PendingConfirmation
        } else {
            SubmitOutcome::Subscribed
        };
        Submitted { outcome, survey_url: None }
    } else {
        match check_submission(&form.definition, &offered, &raw).map_err(|faults| i18n::fault_errors(&locale, &faults))
        {
            Ok(valid) => signup::submit(&state.services, form.clone(), valid, info).await?,
            Err(errors) if is_json => return Err(Error::Validation(errors)),
            Err(errors) => {
                let context = FormContext { template: "form.html", preview: false, script_url: None };
                let html = render_form(state, accept_language(req), form, &frame, context, &raw, &errors).await?;
                return Ok(super::pages::html_response(StatusCode::UNPROCESSABLE_ENTITY, html));
            }
        }
    };
    let Submitted { outcome, survey_url } = outcome;
    // The admin's thank-you text, when there is one, says what happens next on every kind
    // of form. A double opt-in form also says that a mail may have gone already today: the
    // daily cap withholds a second one, and whether it did is not said (it would tell a
    // stranger that the address is known).
    let own_text = Some(form.definition.thank_you_text.trim()).filter(|text| !text.is_empty());
    let (title_key, message) = match (outcome, own_text) {
        (SubmitOutcome::PendingConfirmation, None) => ("pending_title", i18n::text(&locale, "pending_text").to_owned()),
        (SubmitOutcome::PendingConfirmation, Some(text)) => ("pending_title", text.to_owned()),
        (SubmitOutcome::Subscribed, None) => ("thanks_title", i18n::text(&locale, "thanks_text").to_owned()),
        (SubmitOutcome::Subscribed, Some(text)) => ("thanks_title", text.to_owned()),
    };
    let hint = (outcome == SubmitOutcome::PendingConfirmation).then(|| i18n::text(&locale, "pending_hint"));
    if is_json {
        let status = match outcome {
            SubmitOutcome::PendingConfirmation => "pending_confirmation",
            SubmitOutcome::Subscribed => "subscribed",
        };
        return Ok(HttpResponse::Ok().json(SignupResponse { status: status.to_owned(), message, survey_url }));
    }
    if let Some(url) = &form.definition.redirect_url {
        return Ok(HttpResponse::SeeOther().insert_header((header::LOCATION, url.as_str())).finish());
    }
    let invite = i18n::text(&locale, "survey_invite");
    let link = survey_url.as_deref().map(|url| (url, invite));
    let lines: Vec<&str> = [Some(message.as_str()), hint].into_iter().flatten().collect();
    state.pages.message_with_link(StatusCode::OK, &frame, title_key, &lines, &[], link)
}

#[utoipa::path(
    tag = "public",
    params(("slug" = String, Path, description = "The form's slug")),
    responses((status = 204, description = "CORS preflight: allowed for the form's origins"))
)]
#[options("/f/{slug}")]
pub async fn preflight_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse> {
    let form = forms::find_form_by_slug(&state.db, slug.into_inner()).await?;
    let mut response = HttpResponse::NoContent().finish();
    if let Some(origin) = allowed_origin(&req, form.as_ref()) {
        add_cors(&mut response, &origin);
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    Ok(response)
}

fn allowed_origin(req: &HttpRequest, form: Option<&Form>) -> Option<String> {
    let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
    let form = form?;
    form.definition
        .allowed_origins
        .iter()
        .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
        .then(|| origin.to_owned())
}

fn add_cors(response: &mut HttpResponse, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

fn parse_form_submission(body: &[u8]) -> RawSubmission {
    let mut raw = RawSubmission::default();
    for (name, value) in form_urlencoded::parse(body) {
        raw.values.entry(name.into_owned()).or_default().push(value.into_owned());
    }
    raw
}

fn parse_json_submission(body: &[u8]) -> Result<RawSubmission> {
    // Valid JSON that is not a signup (no email, consents not a list) is a 422 naming
    // each field, as for the API; only JSON that does not parse is a 400.
    let request: SignupRequest = super::extract::parse_body(body)?;
    let mut raw = RawSubmission::default();
    raw.values.insert("email".into(), vec![request.email]);
    if let Some(company) = request.company {
        raw.values.insert("company".into(), vec![company]);
    }
    if let Some(website) = request.website {
        raw.values.insert(crate::domain::form::HONEYPOT_FIELD.into(), vec![website]);
    }
    raw.values.insert("consent".into(), request.consents);
    raw.values.insert("partner".into(), request.partners);
    for (name, value) in request.fields {
        let values = match value {
            Value::Null => vec![],
            Value::Bool(true) => vec!["on".to_owned()],
            Value::Bool(false) => vec!["off".to_owned()],
            Value::String(text) => vec![text],
            Value::Array(items) => {
                items.into_iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect()
            }
            other => vec![other.to_string()],
        };
        raw.values.insert(name, values);
    }
    Ok(raw)
}

async fn offered_partners(state: &AppState, form: &Form) -> Result<Vec<crate::domain::PartnerId>> {
    if form.definition.partners.is_empty() {
        return Ok(Vec::new());
    }
    let shown = crate::services::partners::find_form_partners(&state.db, form.definition.partners.clone()).await?;
    Ok(shown.iter().map(|p| p.id).collect())
}

/// Which rendering of a form, and what it needs beside the form.
struct FormContext {
    template: &'static str,
    /// A preview for an admin: the form posts nowhere.
    preview: bool,
    /// The embed's script, for the `script` snippet.
    script_url: Option<String>,
}

async fn render_form(
    state: &AppState,
    accept_language: Option<&str>,
    form: &Form,
    frame: &Frame,
    context: FormContext,
    raw: &RawSubmission,
    errors: &[crate::error::FieldError],
) -> Result<String> {
    let locale = frame.locale.as_str();
    let definition = &form.definition;
    let values: Map<String, Value> =
        raw.values.iter().map(|(k, v)| (k.clone(), Value::String(v.first().cloned().unwrap_or_default()))).collect();
    let multi: Map<String, Value> = raw
        .values
        .iter()
        .map(|(k, v)| (k.clone(), Value::Array(v.iter().cloned().map(Value::String).collect())))
        .collect();
    let ticked: Vec<String> = if raw.values.is_empty() && definition.opt_in == crate::domain::form::FormOptIn::Passive {
        definition.consents.iter().map(|c| c.list_id.to_string()).collect()
    } else {
        raw.all("consent").to_vec()
    };
    let error_map: Map<String, Value> =
        errors.iter().map(|e| (e.field.clone(), Value::String(e.message.clone()))).collect();
    let mut labels: Map<String, Value> =
        definition.fields.iter().map(|f| (f.name.clone(), Value::String(f.label.clone()))).collect();
    for (field, key) in [("email", "email"), ("company", "company"), ("consent", "consents")] {
        labels.insert(field.into(), Value::String(i18n::text(locale, key).to_owned()));
    }
    let action = format!("{}/f/{}", state.signup.base_url, form.slug);
    let partners: Vec<Value> = if definition.partners.is_empty() {
        Vec::new()
    } else {
        crate::services::partners::find_form_partners(&state.db, definition.partners.clone())
            .await?
            .iter()
            .map(|partner| {
                // The words beside the box are the ones the ledger keeps if it is ticked.
                let text = signup::partner_consent_text(locale, partner);
                let mut shown = crate::services::partners::shown(partner);
                shown["text_before_link"] = Value::String(text.lead);
                shown
            })
            .collect()
    };
    let ticked_partners = raw.all("partner").to_vec();
    let has_country = definition.fields.iter().any(|f| f.kind == crate::domain::form::FieldKind::Country);
    let countries = if has_country { i18n::countries(locale) } else { Vec::new() };
    let suggested_country = if has_country { accept_language.and_then(|a| suggested_country(a, locale)) } else { None };
    let FormContext { template, preview, script_url } = context;
    let action = if preview { "#".to_owned() } else { action };
    state.pages.render(
        template,
        frame,
        minijinja::context! {
            form => definition, title => &definition.title, action, values, multi, ticked,
            errors => error_map, labels, partners, ticked_partners, countries, suggested_country,
            preview, script_url, slug => &form.slug,
        },
    )
}

fn accept_language(req: &HttpRequest) -> Option<&str> {
    req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok())
}

/// The country a browser's language suggests (`fr-CH`: Switzerland), offered first in the
/// select and never chosen for the person: it decides which rules apply to their consent.
fn suggested_country(accept_language: &str, locale: &str) -> Option<i18n::CountryName> {
    let first = accept_language.split(',').next()?.split(';').next()?.trim();
    let region = first.split(['-', '_']).nth(1)?;
    let country = crate::domain::Country::parse(region).ok()?;
    i18n::countries(locale).into_iter().find(|c| c.code == country.as_str())
}

fn too_many_html(state: &AppState, frame: &Frame, wait: u64) -> Result<HttpResponse> {
    let mut response = state.pages.message(
        StatusCode::TOO_MANY_REQUESTS,
        frame,
        "too_many_title",
        &[i18n::text(&frame.locale, "too_many_text")],
        &[],
    )?;
    if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Ok(response)
}

#[utoipa::path(
    tag = "public",
    params(("token" = String, Path, description = "The token from the confirmation mail")),
    responses(
        (status = 200, description = "A page whose button confirms (a GET never confirms: link scanners open links)", content_type = "text/html", body = String),
        (status = 404, description = "The link is not valid or has expired", content_type = "text/html", body = String),
    )
)]
#[get("/confirm/{token}")]
pub async fn show_confirmation(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    let frame = link_frame(&state, &req, LinkKind::Confirm, &token).await?;
    let locale = frame.locale.clone();
    if let Err(wait) = state.limiter.check(&req) {
        return too_many_html(&state, &frame, wait);
    }
    match signup::confirmation_preview(&state.db, &state.keys, &token, &locale).await? {
        None => state.pages.invalid_link(&frame),
        Some(link_state) => settled_link_page(&state, &frame, &req, &link_state, None),
    }
}

/// The page of a confirmation link with nothing left to confirm: what is true now.
fn settled_link_page(
    state: &AppState,
    frame: &Frame,
    req: &HttpRequest,
    link_state: &LinkState,
    survey_url: Option<&str>,
) -> Result<HttpResponse> {
    let locale = frame.locale.as_str();
    let survey = survey_url.map(|url| (url, i18n::text(locale, "survey_invite")));
    match link_state {
        LinkState::Waiting(names) => {
            action_page(state, frame, "confirm_title", "confirm_text", "confirm_button", names, req)
        }
        LinkState::AlreadyConfirmed { names, also } if !also.is_empty() => {
            let link = survey.map(|(url, text)| minijinja::context! { url, text });
            let title = i18n::text(locale, "already_confirmed_title");
            let context = minijinja::context! { title, names, also, link, action => req.path() };
            state.pages.page(StatusCode::OK, "also_waiting.html", frame, context)
        }
        LinkState::Confirmed(names) => state.pages.message_with_link(
            StatusCode::OK,
            frame,
            "confirmed_title",
            &[i18n::text(locale, "confirmed_text")],
            names,
            survey,
        ),
        LinkState::AlreadyConfirmed { names, .. } => state.pages.message_with_link(
            StatusCode::OK,
            frame,
            "already_confirmed_title",
            &[i18n::text(locale, "already_confirmed_text")],
            names,
            survey,
        ),
        LinkState::Withdrawn => state.pages.message(
            StatusCode::OK,
            frame,
            "withdrawn_link_title",
            &[i18n::text(locale, "withdrawn_link_text")],
            &[],
        ),
    }
}

#[utoipa::path(
    tag = "public",
    params(("token" = String, Path, description = "The token from the confirmation mail")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Nothing on a first press. On the page of a link already used, `purpose` once per box the person ticked (`list:<id>`): only those of the lists waiting are confirmed."),
    responses(
        (status = 200, description = "Confirmed; or, pressed again or after the person left, a page saying what holds now (nothing changes)", content_type = "text/html", body = String),
        (status = 404, description = "The link is not valid or has expired", content_type = "text/html", body = String),
    )
)]
#[post("/confirm/{token}")]
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: LimitedBody,
) -> Result<HttpResponse> {
    let frame = link_frame(&state, &req, LinkKind::Confirm, &token).await?;
    let locale = frame.locale.clone();
    if let Err(wait) = state.limiter.check(&req) {
        return too_many_html(&state, &frame, wait);
    }
    let info = request_info(&req, locale.clone());
    // The boxes ticked on the page of a link already used (nothing on a first press).
    let chosen = parse_form_submission(&body.0).all("purpose").iter().filter_map(|p| p.parse().ok()).collect();
    match signup::confirm(&state.services, &token, info, chosen).await? {
        None => state.pages.invalid_link(&frame),
        Some(confirmed) => settled_link_page(&state, &frame, &req, &confirmed.state, confirmed.survey_url.as_deref()),
    }
}

#[utoipa::path(
    tag = "public",
    params(("token" = String, Path, description = "The token from the mail's unsubscribe link")),
    responses(
        (status = 200, description = "A page whose button unsubscribes (a GET never unsubscribes)", content_type = "text/html", body = String),
        (status = 404, description = "The link is not valid", content_type = "text/html", body = String),
    )
)]
#[get("/unsubscribe/{token}")]
pub async fn show_unsubscribe(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    let frame = link_frame(&state, &req, LinkKind::Unsubscribe, &token).await?;
    let locale = frame.locale.clone();
    if let Err(wait) = state.limiter.check(&req) {
        return too_many_html(&state, &frame, wait);
    }
    match signup::unsubscribe_preview(&state.db, &state.keys, &token).await? {
        None => state.pages.invalid_link(&frame),
        Some(list) => {
            // Leaving everything leaves every brand's mail: a brand is named only when it
            // is the one there is.
            let sole = match &frame.brand {
                Some(brand) if brands::count_brands(&state.db).await? == 1 => Some(brand.name.clone()),
                _ => None,
            };
            let what = list.unwrap_or_else(|| match sole {
                Some(name) => i18n::text(&locale, "all_mail_from").replace("{sender}", &name),
                None => i18n::text(&locale, "all_mail").to_owned(),
            });
            action_page(&state, &frame, "unsubscribe_title", "unsubscribe_from", "unsubscribe_button", &[what], &req)
        }
    }
}

#[utoipa::path(
    tag = "public",
    params(("token" = String, Path, description = "The token from the mail's unsubscribe link")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`List-Unsubscribe=One-Click` (RFC 8058), form-encoded or multipart; any body is accepted"),
    responses(
        (status = 200, description = "Unsubscribed, within this request; repeating it changes nothing", content_type = "text/html", body = String),
        (status = 404, description = "The link is not valid", content_type = "text/html", body = String),
    )
)]
#[post("/unsubscribe/{token}")]
pub async fn unsubscribe(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    // No rate limit here: mailbox providers send one-click unsubscribes for many people
    // from few addresses, and the signed token already bounds what a request can do.
    let frame = link_frame(&state, &req, LinkKind::Unsubscribe, &token).await?;
    let locale = frame.locale.clone();
    let info = request_info(&req, locale.clone());
    if signup::unsubscribe(&state.db, &state.keys, &token, info).await? {
        state.pages.message(
            StatusCode::OK,
            &frame,
            "unsubscribed_title",
            &[i18n::text(&locale, "unsubscribed_text")],
            &[],
        )
    } else {
        state.pages.invalid_link(&frame)
    }
}

fn action_page(
    state: &AppState,
    frame: &Frame,
    title_key: &str,
    text_key: &str,
    button_key: &str,
    items: &[String],
    req: &HttpRequest,
) -> Result<HttpResponse> {
    let text = |key| i18n::text(&frame.locale, key);
    let empty: Map<String, Value> = Map::new();
    state.pages.page(
        StatusCode::OK,
        "action.html",
        frame,
        minijinja::context! {
            title => text(title_key), text => text(text_key), button => text(button_key), items,
            action => req.path(), hidden => empty,
        },
    )
}

#[derive(Debug, Serialize)]
struct ListChoice {
    id: String,
    name: String,
    /// The words beside the box, as the ledger records them when the box is ticked again.
    text: String,
    receives: bool,
    pending: bool,
}

#[utoipa::path(
    tag = "public",
    params(("token" = String, Path, description = "The token from a mail's preferences link")),
    responses(
        (status = 200, description = "The preference centre", content_type = "text/html", body = String),
        (status = 404, description = "The link is not valid, has expired or was revoked", content_type = "text/html", body = String),
    )
)]
#[get("/preferences/{token}")]
pub async fn show_preferences(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    let frame = link_frame(&state, &req, LinkKind::Preferences, &token).await?;
    let locale = frame.locale.clone();
    if let Err(wait) = state.limiter.check(&req) {
        return too_many_html(&state, &frame, wait);
    }
    match preferences::preferences(&state.db, &state.keys, &token, &locale).await? {
        None => state.pages.invalid_link(&frame),
        Some(preferences) => preferences_page(&state, &frame, &req, preferences, None),
    }
}

#[utoipa::path(
    tag = "public",
    params(("token" = String, Path, description = "The token from a mail's preferences link")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`action` = `save` (with `list` once per list to receive; a list ticked again waits for the person's confirmation by mail), `leave_all`, `request_download` or `request_erase` (a single-use link is mailed to the address)"),
    responses(
        (status = 200, description = "The page after the action", content_type = "text/html", body = String),
        (status = 404, description = "The link is not valid, has expired or was revoked", content_type = "text/html", body = String),
    )
)]
#[post("/preferences/{token}")]
pub async fn update_preferences(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: LimitedBody,
) -> Result<HttpResponse> {
    let body = body.0;
    let frame = link_frame(&state, &req, LinkKind::Preferences, &token).await?;
    let locale = frame.locale.clone();
    if let Err(wait) = state.limiter.check(&req) {
        return too_many_html(&state, &frame, wait);
    }
    let fields = parse_form_submission(&body);
    let info = request_info(&req, locale.clone());
    let data_action = match fields.first("action").unwrap_or("save") {
        "leave_all" => {
            return if preferences::leave_all(&state.db, &state.keys, &token, info).await? {
                state.pages.message(
                    StatusCode::OK,
                    &frame,
                    "unsubscribed_title",
                    &[i18n::text(&locale, "unsubscribed_text")],
                    &[],
                )
            } else {
                state.pages.invalid_link(&frame)
            };
        }
        "request_download" | "download" => DataAction::Download,
        "request_erase" | "erase" => DataAction::Erase,
        _ => {
            let chosen: Vec<ListId> = fields.all("list").iter().filter_map(|id| id.parse().ok()).collect();
            return match preferences::save_preferences(&state.services, &token, chosen, info).await? {
                None => state.pages.invalid_link(&frame),
                Some(saved) => {
                    let notice = if saved.confirmation_requested { "preference_confirm_sent" } else { "saved" };
                    preferences_page(&state, &frame, &req, saved.preferences, Some(i18n::text(&locale, notice)))
                }
            };
        }
    };
    if preferences::request_data(&state.services, &token, data_action, &locale).await? {
        state.pages.message(StatusCode::OK, &frame, "pending_title", &[i18n::text(&locale, "request_sent_text")], &[])
    } else {
        state.pages.invalid_link(&frame)
    }
}

fn preferences_page(
    state: &AppState,
    frame: &Frame,
    req: &HttpRequest,
    preferences: preferences::Preferences,
    notice: Option<&str>,
) -> Result<HttpResponse> {
    let lists: Vec<ListChoice> = preferences
        .lists
        .into_iter()
        .map(|choice| ListChoice {
            id: choice.list.id.to_string(),
            name: choice.list.name,
            text: choice.text,
            receives: choice.state == ListState::Receives,
            pending: choice.state == ListState::Pending,
        })
        .collect();
    state.pages.page(
        StatusCode::OK,
        "preferences.html",
        frame,
        minijinja::context! {
            title => i18n::text(&frame.locale, "preferences_title"), lists, notice,
            email => preferences.contact.email.to_string(), action => req.path(),
        },
    )
}

#[utoipa::path(
    tag = "public",
    params(("token" = String, Path, description = "The token from the mail a data request sent")),
    responses(
        (status = 200, description = "A page whose button downloads or erases the data (a GET never acts)", content_type = "text/html", body = String),
        (status = 404, description = "The link is not valid, has expired or was used", content_type = "text/html", body = String),
    )
)]
#[get("/data-requests/{token}")]
pub async fn show_data_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    let frame = link_frame(&state, &req, LinkKind::DataRequest, &token).await?;
    if let Err(wait) = state.limiter.check(&req) {
        return too_many_html(&state, &frame, wait);
    }
    match preferences::data_request_preview(&state.db, &state.keys, &token).await? {
        None => state.pages.invalid_link(&frame),
        Some(DataAction::Download) => {
            action_page(&state, &frame, "download_title", "download_text", "download", &[], &req)
        }
        Some(DataAction::Erase) => action_page(&state, &frame, "erase_title", "erase_text", "erase", &[], &req),
    }
}

#[utoipa::path(
    tag = "public",
    params(("token" = String, Path, description = "The token from the mail a data request sent")),
    responses(
        (status = 200, description = "The data as a JSON download, or the page saying it is erased; the link is spent", content_type = "application/json", body = super::consent::ExportResponse),
        (status = 404, description = "The link is not valid, has expired or was used", content_type = "text/html", body = String),
    )
)]
#[post("/data-requests/{token}")]
pub async fn carry_out_data_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    let frame = link_frame(&state, &req, LinkKind::DataRequest, &token).await?;
    let locale = frame.locale.clone();
    if let Err(wait) = state.limiter.check(&req) {
        return too_many_html(&state, &frame, wait);
    }
    match preferences::carry_out(&state.db, &state.keys, &token).await? {
        None => state.pages.invalid_link(&frame),
        Some(DataOutcome::Erased) => {
            state.pages.message(StatusCode::OK, &frame, "erased_title", &[i18n::text(&locale, "erased_text")], &[])
        }
        Some(DataOutcome::Downloaded(export)) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((header::CONTENT_DISPOSITION, "attachment; filename=\"my-data.json\""))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(super::consent::ExportResponse::from(*export))),
    }
}
