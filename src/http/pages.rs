//! HTML pages for the public: templates, language, security headers, the client's
//! evidence (IP, user agent) and per-IP rate limits.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use minijinja::Environment;
use serde::Serialize;

use crate::domain::brand::{Brand, Color, TEXT_ON_CHOSEN_BACKGROUND};
use crate::domain::form::{FormLayout, FormLook};
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
            ("theme.css", include_str!("templates/theme.css")),
            ("frame_header.html", include_str!("templates/frame_header.html")),
            ("frame_footer.html", include_str!("templates/frame_footer.html")),
            ("embed.html", include_str!("templates/embed.html")),
            ("also_waiting.html", include_str!("templates/also_waiting.html")),
            ("console/base.html", include_str!("console/templates/base.html")),
            ("console/error.html", include_str!("console/templates/error.html")),
            ("console/sign_in.html", include_str!("console/templates/sign_in.html")),
            ("console/setup.html", include_str!("console/templates/setup.html")),
            ("console/dashboard.html", include_str!("console/templates/dashboard.html")),
            ("console/contacts.html", include_str!("console/templates/contacts.html")),
            ("console/contact.html", include_str!("console/templates/contact.html")),
            ("console/lists.html", include_str!("console/templates/lists.html")),
            ("console/sign_in_code.html", include_str!("console/templates/sign_in_code.html")),
            ("console/account.html", include_str!("console/templates/account.html")),
            ("console/imports.html", include_str!("console/templates/imports.html")),
            ("console/import_map.html", include_str!("console/templates/import_map.html")),
            ("console/import.html", include_str!("console/templates/import.html")),
            ("console/forms.html", include_str!("console/templates/forms.html")),
            ("console/form.html", include_str!("console/templates/form.html")),
            ("console/builder.html", include_str!("console/templates/builder.html")),
            ("console/suppressions.html", include_str!("console/templates/suppressions.html")),
            ("console/erase.html", include_str!("console/templates/erase.html")),
        ] {
            env.add_template(name, source).map_err(|e| Error::internal(format!("template {name}: {e}")))?;
        }
        env.set_formatter(html_formatter);
        env.add_filter("consent_html", |text: &str| minijinja::Value::from_safe_string(consent_html(text)));
        Ok(Self { env })
    }

    /// Renders a template to HTML text, in the frame's language and look: the template sees
    /// `frame` (who is asking, the theme) and `t` (the built-in strings) beside `context`.
    pub fn render(&self, name: &str, frame: &Frame, context: impl Serialize) -> Result<String> {
        let context = minijinja::context! {
            frame => frame,
            t => i18n::strings(&frame.locale),
            ..minijinja::Value::from_serialize(context)
        };
        self.env
            .get_template(name)
            .and_then(|template| template.render(context))
            .map_err(|e| Error::internal(format!("template {name}: {e}")))
    }

    /// A page response with the headers every public page carries.
    pub fn page(&self, status: StatusCode, name: &str, frame: &Frame, context: impl Serialize) -> Result<HttpResponse> {
        let html = self.render(name, frame, context)?;
        Ok(html_response(status, html))
    }

    /// A page with a title, paragraphs and an optional list.
    pub fn message(
        &self,
        status: StatusCode,
        frame: &Frame,
        title_key: &str,
        lines: &[&str],
        items: &[String],
    ) -> Result<HttpResponse> {
        self.message_with_link(status, frame, title_key, lines, items, None)
    }

    /// A message page with a link onwards (to a survey, say).
    pub fn message_with_link(
        &self,
        status: StatusCode,
        frame: &Frame,
        title_key: &str,
        lines: &[&str],
        items: &[String],
        link: Option<(&str, &str)>,
    ) -> Result<HttpResponse> {
        let title = i18n::text(&frame.locale, title_key);
        let link = link.map(|(url, text)| minijinja::context! { url, text });
        self.page(status, "message.html", frame, minijinja::context! { title, lines, items, link })
    }

    /// The page for a link that is not valid, whatever the reason (forged, stale, used
    /// for an erased person): the answer is the same, so it reveals nothing.
    pub fn invalid_link(&self, frame: &Frame) -> Result<HttpResponse> {
        let text = i18n::text(&frame.locale, "invalid_text");
        self.message(StatusCode::NOT_FOUND, frame, "invalid_title", &[text], &[])
    }
}

/// Who speaks on a page, in which language, and how the page looks.
#[derive(Debug, Clone, Serialize)]
pub struct Frame {
    pub locale: String,
    pub brand: Option<BrandView>,
    pub theme: Theme,
}

impl Frame {
    /// A page of `brand` (or of nobody yet), in `locale`, in the look of `look` where a
    /// form has one.
    pub fn new(locale: String, brand: Option<&Brand>, look: Option<&FormLook>) -> Self {
        Self { theme: Theme::new(brand, look), brand: brand.map(BrandView::from), locale }
    }
}

/// What a page says of the sender.
#[derive(Debug, Clone, Serialize)]
pub struct BrandView {
    pub name: String,
    pub legal_name: String,
    pub address_lines: Vec<String>,
    pub privacy_policy_url: String,
    pub footer: Option<String>,
    pub logo_url: Option<String>,
}

impl From<&Brand> for BrandView {
    fn from(brand: &Brand) -> Self {
        let profile = &brand.profile;
        Self {
            name: profile.name.clone(),
            legal_name: profile.legal_name.clone(),
            address_lines: profile.postal_address.lines().map(str::to_owned).collect(),
            privacy_policy_url: profile.privacy_policy_url.clone(),
            footer: profile.footer.clone(),
            logo_url: brand.logo.map(|_| super::brands::logo_path(brand.id)),
        }
    }
}

/// A page's colours and type, as CSS values: the form's look, else the brand's colours,
/// else the built-in theme (which follows the system's light or dark mode).
#[derive(Debug, Clone, Serialize)]
pub struct Theme {
    pub accent: String,
    /// The words on an accent-coloured button: white or black, whichever reads.
    pub on_accent: String,
    pub background: String,
    pub text: String,
    /// `light` once a colour is chosen (the page keeps it), else `light dark`.
    pub color_scheme: &'static str,
    pub font: &'static str,
    pub two_columns: bool,
    pub button_label: Option<String>,
    pub custom_css: Option<String>,
}

impl Theme {
    pub fn new(brand: Option<&Brand>, look: Option<&FormLook>) -> Self {
        let from_brand = |pick: fn(&Brand) -> Option<&Color>| brand.and_then(pick).cloned();
        let accent =
            look.and_then(|l| l.accent_color.clone()).or_else(|| from_brand(|b| b.profile.accent_color.as_ref()));
        let background = look
            .and_then(|l| l.background_color.clone())
            .or_else(|| from_brand(|b| b.profile.background_color.as_ref()));
        let text = look.and_then(|l| l.text_color.clone());
        let chosen = background.is_some() || text.is_some();
        let on_accent = accent.as_ref().map_or("#ffffff", Color::text_on).to_owned();
        Self {
            accent: accent.map_or_else(|| "#1d4ed8".to_owned(), |c| c.as_str().to_owned()),
            on_accent,
            text: text.map_or_else(
                || if background.is_some() { TEXT_ON_CHOSEN_BACKGROUND.to_owned() } else { "CanvasText".to_owned() },
                |c| c.as_str().to_owned(),
            ),
            background: background.map_or_else(|| "Canvas".to_owned(), |c| c.as_str().to_owned()),
            color_scheme: if chosen { "light" } else { "light dark" },
            font: look.map_or(crate::domain::form::FormFont::System, |l| l.font).stack(),
            two_columns: look.is_some_and(|l| l.layout == FormLayout::TwoColumns),
            button_label: look.and_then(|l| l.button_label.clone()),
            custom_css: look.and_then(|l| l.custom_css.clone()),
        }
    }
}

/// Text made safe for HTML, in an element or a quoted attribute: `&`, `<`, `>`, `"` and
/// `'` escaped, and nothing else (an address reads as written).
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// HTML-escapes what a template prints, as minijinja does, except `/`: an address or a
/// date reads as written in the page's source (and in the embed snippet people copy).
fn html_formatter(
    out: &mut minijinja::Output<'_>,
    state: &minijinja::State<'_, '_>,
    value: &minijinja::Value,
) -> std::result::Result<(), minijinja::Error> {
    if state.auto_escape() == minijinja::AutoEscape::Html && !value.is_safe() && !value.is_none() {
        return out
            .write_str(&escape_html(&value.to_string()))
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()));
    }
    minijinja::escape_formatter(out, state, value)
}

/// A consent text as the page shows it: the small Markdown an admin may write (links,
/// emphasis, strong) becomes HTML; anything else is shown as the text it is. Links go to
/// http(s) and mailto addresses only, and open in a new tab so the form keeps its state.
/// The ledger keeps the text as written, whose words and link targets are what was shown.
pub fn consent_html(text: &str) -> String {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let escape =
        |text: &str| text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let mut html = String::new();
    let mut links = Vec::new();
    for event in Parser::new(text) {
        match event {
            Event::Text(text) | Event::Code(text) | Event::Html(text) | Event::InlineHtml(text) => {
                html.push_str(&escape(&text));
            }
            Event::SoftBreak | Event::HardBreak => html.push(' '),
            Event::Start(Tag::Emphasis) => html.push_str("<em>"),
            Event::End(TagEnd::Emphasis) => html.push_str("</em>"),
            Event::Start(Tag::Strong) => html.push_str("<strong>"),
            Event::End(TagEnd::Strong) => html.push_str("</strong>"),
            Event::Start(Tag::Link { dest_url, .. }) => {
                let url = dest_url.trim();
                let safe = ["https://", "http://", "mailto:"].iter().any(|p| url.to_ascii_lowercase().starts_with(p));
                if safe {
                    html.push_str(&format!("<a href=\"{}\" target=\"_blank\" rel=\"noopener\">", escape(url)));
                }
                links.push(safe);
            }
            Event::End(TagEnd::Link) if links.pop().unwrap_or(false) => html.push_str("</a>"),
            Event::End(TagEnd::Paragraph) if !html.is_empty() => html.push(' '),
            _ => {}
        }
    }
    html.trim_end().to_owned()
}

/// The policy of every public page. `frame-ancestors 'none'`: no other site may frame a
/// page, so none can overlay a confirm or unsubscribe button with its own (clickjacking);
/// a form goes on another site by pasting its embed snippet, never in a frame.
pub const PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A preview's: as a public page's, except that the console's pages may frame it (the
/// builder shows it beside the form), and that it posts nowhere.
pub const PREVIEW_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; \
                               form-action 'none'; frame-ancestors 'self'";

/// The embed snippet is text to paste, not a page to frame.
pub const SNIPPET_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

pub fn html_response(status: StatusCode, html: String) -> HttpResponse {
    html_response_under(status, html, PAGE_CSP)
}

/// A page with the headers every page of this server carries, under `policy`.
pub fn html_response_under(status: StatusCode, html: String, policy: &'static str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Links carry tokens: never leak them to another site through Referer. Same-origin
        // referers stay, so a signup records the page it was made on.
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::CONTENT_SECURITY_POLICY, policy))
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
