//! HTML pages for the public: templates, language, security headers, the client's
//! evidence (IP, user agent) and per-IP rate limits.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use minijinja::Environment;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::i18n;
use crate::services::signup::RequestInfo;
use crate::services::throttle::{WindowCounter, ip_key};

/// The page templates, compiled once.
pub struct Pages {
    env: Environment<'static>,
}

impl Pages {
    pub fn new() -> Result<Self> {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("templates/base.html")),
            ("form_body.html", include_str!("templates/form_body.html")),
            ("form.html", include_str!("templates/form.html")),
            ("message.html", include_str!("templates/message.html")),
            ("action.html", include_str!("templates/action.html")),
            ("preferences.html", include_str!("templates/preferences.html")),
            ("survey.html", include_str!("templates/survey.html")),
            ("home.html", include_str!("templates/home.html")),
        ] {
            env.add_template(name, source).map_err(|e| Error::internal(format!("template {name}: {e}")))?;
        }
        Ok(Self { env })
    }

    /// Renders a template to HTML text.
    pub fn render(&self, name: &str, context: impl Serialize) -> Result<String> {
        self.env
            .get_template(name)
            .and_then(|template| template.render(context))
            .map_err(|e| Error::internal(format!("template {name}: {e}")))
    }

    /// A page response with the headers every public page carries.
    pub fn page(&self, status: StatusCode, name: &str, context: impl Serialize) -> Result<HttpResponse> {
        let html = self.render(name, context)?;
        Ok(html_response(status, html))
    }

    /// A page with a title, paragraphs and an optional list.
    pub fn message(
        &self,
        status: StatusCode,
        locale: &str,
        title_key: &str,
        lines: &[&str],
        items: &[String],
    ) -> Result<HttpResponse> {
        self.message_with_link(status, locale, title_key, lines, items, None)
    }

    /// A message page with a link onwards (to a survey, say).
    pub fn message_with_link(
        &self,
        status: StatusCode,
        locale: &str,
        title_key: &str,
        lines: &[&str],
        items: &[String],
        link: Option<(&str, &str)>,
    ) -> Result<HttpResponse> {
        let t = i18n::strings(locale);
        let title = t.get(title_key).copied().unwrap_or_default();
        let link = link.map(|(url, text)| minijinja::context! { url, text });
        self.page(status, "message.html", minijinja::context! { t, title, lines, items, link })
    }

    /// The page for a link that is not valid, whatever the reason (forged, stale, used
    /// for an erased person): the answer is the same, so it reveals nothing.
    pub fn invalid_link(&self, locale: &str) -> Result<HttpResponse> {
        self.message(StatusCode::NOT_FOUND, locale, "invalid_title", &[i18n::text(locale, "invalid_text")], &[])
    }
}

/// The policy of every public page. `frame-ancestors 'none'`: no other site may frame a
/// page, so none can overlay a confirm or unsubscribe button with its own (clickjacking);
/// a form goes on another site by pasting its embed snippet, never in a frame.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'";

/// The embed snippet is text to paste, not a page to frame.
pub const SNIPPET_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

pub fn html_response(status: StatusCode, html: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Links carry tokens: never leak them to another site through Referer. Same-origin
        // referers stay, so a signup records the page it was made on.
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_CSP))
        .body(html)
}

/// The page's language: the form's when it has one, else the browser's preference.
pub fn locale(req: &HttpRequest, preferred: Option<&str>) -> String {
    if let Some(locale) = preferred.filter(|l| i18n::LOCALES.contains(l)) {
        return locale.to_owned();
    }
    let accept = req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    i18n::negotiate(accept).to_owned()
}

/// The client's address: the TCP peer's, unless the peer is a trusted proxy, in which
/// case the nearest address in `X-Forwarded-For` that is not one of the trusted proxies.
/// From anyone else the header is ignored: it can be written by anybody.
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<actix_web::web::Data<super::AppState>>()
        .map(|state| state.settings.trusted_proxies.clone())
        .unwrap_or_default();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()).unwrap_or("");
    let client =
        forwarded.rsplit(',').filter_map(|hop| hop.trim().parse::<IpAddr>().ok()).find(|hop| !trusted.contains(hop));
    Some(client.unwrap_or(peer))
}

/// The evidence of a public request, with the client's address as [`client_ip`] finds it.
pub fn request_info(req: &HttpRequest, locale: String) -> RequestInfo {
    let header_text = |name: header::HeaderName| {
        req.headers().get(name).and_then(|v| v.to_str().ok()).map(|v| v.chars().take(1000).collect::<String>())
    };
    RequestInfo {
        ip: client_ip(req).map(|ip| ip.to_string()),
        user_agent: header_text(header::USER_AGENT),
        source_url: header_text(header::REFERER),
        locale,
    }
}

/// A fixed-window limit of requests per IP address (IPv6 per /64) and minute for the
/// public pages, holding at most `max_keys` addresses (the oldest window goes first).
/// Kept per instance: it protects each instance, and nothing correct depends on it.
pub struct RateLimiter {
    per_minute: u32,
    windows: WindowCounter<IpAddr>,
}

impl RateLimiter {
    pub fn new(per_minute: u32, max_keys: usize) -> Self {
        Self { per_minute: per_minute.max(1), windows: WindowCounter::new(Duration::from_secs(60), max_keys) }
    }

    /// `Ok` to go on, or how many seconds the caller should wait.
    pub fn check(&self, req: &HttpRequest) -> std::result::Result<(), u64> {
        let Some(ip) = client_ip(req) else {
            return Ok(());
        };
        let (count, left) = self.windows.hit(&ip_key(ip), Instant::now());
        if count > self.per_minute { Err(left) } else { Ok(()) }
    }

    /// Addresses held now.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}
