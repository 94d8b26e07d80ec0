//! `/webhooks/...`: bounce and complaint notifications from the mail provider, and
//! `/t/{token}`: opens and clicks.

use actix_web::{HttpRequest, HttpResponse, get, http::header, post, web};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{ApiJson, LimitedBody, RequestBody};
use crate::domain::Email;
use crate::error::{Error, FieldError, Result};
use crate::services::bounces::{self, Notice, NoticeKind, NoticeOutcome};
use crate::services::campaigns::tracking::{self, Hit};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SecretQuery {
    /// The `bounce_secret` setting, accepted here for providers that can send no header.
    /// Worse than a header: URLs end up in proxy and provider logs. Amazon SNS can send
    /// a header: put the secret as the password of the URL
    /// (`https://bounces:<secret>@host/webhooks/ses`), which SNS sends as Basic
    /// authentication.
    pub secret: Option<String>,
}

/// The secret a notification carries: `Authorization: Bearer <secret>`, or Basic with the
/// secret as password (any user name), else the `secret` query parameter.
fn given_secret(req: &HttpRequest, query: &SecretQuery) -> Option<String> {
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Some(bearer) = authorization.and_then(|v| v.strip_prefix("Bearer ")) {
        return Some(bearer.trim().to_owned());
    }
    if let Some(basic) = authorization.and_then(|v| v.strip_prefix("Basic ")) {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD.decode(basic.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(_, password)| password.to_owned());
    }
    if query.secret.is_some() {
        tracing::warn!("a bounce notification carried its secret in the URL; prefer the Authorization header");
    }
    query.secret.clone()
}

/// The notification must carry the configured secret; without one configured, nothing is
/// accepted.
fn authorize(state: &AppState, req: &HttpRequest, query: &SecretQuery) -> Result<()> {
    let Some(expected) = &state.settings.bounce_secret else {
        return Err(Error::Forbidden("bounce notifications are off: set bounce_secret to accept them".to_owned()));
    };
    let given = given_secret(req, query).unwrap_or_default();
    let matches = given.len() == expected.expose().len()
        && given.bytes().zip(expected.expose().bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if matches {
        Ok(())
    } else {
        Err(Error::Unauthorized("the notification does not carry the bounce secret".to_owned()))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BounceNotice {
    /// `hard_bounce`, `soft_bounce` or `complaint`.
    #[serde(rename = "type")]
    #[schema(example = "hard_bounce")]
    pub kind: String,
    pub email: String,
    /// The Message-ID of the bounced message, when known: it names the campaign.
    pub message_id: Option<String>,
    /// The provider's diagnostic, kept with the event.
    #[serde(default)]
    pub detail: String,
}

impl RequestBody for BounceNotice {
    const SERVER_OWNED: &'static [&'static str] = &[];
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BounceOutcome {
    pub email: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub campaign_id: Option<String>,
    /// Whether the address is now suppressed (hard bounce, complaint, or too many soft bounces).
    pub suppressed: bool,
    /// Whether the campaign paused itself on its complaint rate.
    pub campaign_paused: bool,
}

impl From<NoticeOutcome> for BounceOutcome {
    fn from(o: NoticeOutcome) -> Self {
        Self {
            email: o.email,
            kind: o.kind,
            campaign_id: o.campaign_id.map(|v| v.to_string()),
            suppressed: o.suppressed,
            campaign_paused: o.campaign_paused,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BounceResponse {
    pub items: Vec<BounceOutcome>,
}

#[utoipa::path(
    tag = "deliverability",
    params(SecretQuery),
    request_body = BounceNotice,
    responses(
        (status = 200, description = "Recorded", body = BounceResponse),
        (status = 401, description = "The secret is missing or wrong", body = super::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No bounce secret is configured", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/webhooks/bounces")]
pub async fn generic_bounce(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<SecretQuery>,
    body: ApiJson<BounceNotice>,
) -> Result<web::Json<BounceResponse>> {
    authorize(&state, &req, &query)?;
    let notice = body.0;
    let kind = notice.kind.parse::<NoticeKind>().map_err(|e| Error::field("type", e));
    let email = Email::parse(&notice.email).map_err(|e| Error::field("email", e));
    let (kind, email) = match (kind, email) {
        (Ok(kind), Ok(email)) => (kind, email),
        (kind, email) => {
            let errors = [kind.err(), email.err()]
                .into_iter()
                .flatten()
                .flat_map(|e| match e {
                    Error::Validation(errors) => errors,
                    _ => Vec::new(),
                })
                .collect();
            return Err(Error::Validation(errors));
        }
    };
    let notices = vec![Notice { kind, email, message_id: notice.message_id, detail: notice.detail }];
    record(&state, notices).await
}

async fn record(state: &AppState, notices: Vec<Notice>) -> Result<web::Json<BounceResponse>> {
    let outcomes = bounces::record(&state.db, &state.keys, state.settings.soft_bounce_limit, notices).await?;
    Ok(web::Json(BounceResponse { items: outcomes.into_iter().map(Into::into).collect() }))
}

/// Reads an Amazon SES notification delivered by SNS (the SNS envelope, its `Message`
/// holding the SES event).
fn ses_notices(body: &[u8]) -> Result<Option<Vec<Notice>>> {
    let invalid = |field: &str, message: &str| Error::Validation(vec![FieldError::new(field, message)]);
    let envelope: Value =
        serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("the body is not JSON: {e}")))?;
    match envelope.get("Type").and_then(Value::as_str) {
        Some("Notification") => {}
        Some("SubscriptionConfirmation") => {
            let url = envelope.get("SubscribeURL").and_then(Value::as_str).unwrap_or("");
            tracing::warn!(subscribe_url = %url, "SNS asks to confirm the subscription: open this URL once");
            return Ok(None);
        }
        Some(_) => return Ok(None),
        None => return Err(invalid("Type", "is missing: this is not an SNS message")),
    }
    let message = envelope.get("Message").and_then(Value::as_str).ok_or_else(|| invalid("Message", "is missing"))?;
    let event: Value =
        serde_json::from_str(message).map_err(|e| invalid("Message", &format!("is not an SES event: {e}")))?;
    let kind = event.get("notificationType").or_else(|| event.get("eventType")).and_then(Value::as_str);
    let message_id = event.pointer("/mail/headers").and_then(Value::as_array).and_then(|headers| {
        headers
            .iter()
            .find(|h| h.get("name").and_then(Value::as_str).is_some_and(|n| n.eq_ignore_ascii_case("Message-ID")))
            .and_then(|h| h.get("value").and_then(Value::as_str))
            .map(str::to_owned)
    });
    let (kind, recipients, detail) = match kind {
        Some("Bounce") => {
            let bounce = event.get("bounce").ok_or_else(|| invalid("Message.bounce", "is missing"))?;
            let kind = match bounce.get("bounceType").and_then(Value::as_str) {
                Some("Permanent") => NoticeKind::HardBounce,
                _ => NoticeKind::SoftBounce,
            };
            (kind, bounce.get("bouncedRecipients"), bounce.get("bounceSubType").and_then(Value::as_str).unwrap_or(""))
        }
        Some("Complaint") => {
            let complaint = event.get("complaint").ok_or_else(|| invalid("Message.complaint", "is missing"))?;
            let detail = complaint.get("complaintFeedbackType").and_then(Value::as_str).unwrap_or("");
            (NoticeKind::Complaint, complaint.get("complainedRecipients"), detail)
        }
        _ => return Ok(None),
    };
    let notices = recipients
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("emailAddress").and_then(Value::as_str))
        .filter_map(|address| {
            let address = address.rsplit_once('<').map_or(address, |(_, a)| a.trim_end_matches('>'));
            Email::parse(address).ok()
        })
        .map(|email| Notice { kind, email, message_id: message_id.clone(), detail: format!("ses: {detail}") })
        .collect();
    Ok(Some(notices))
}

#[utoipa::path(
    tag = "deliverability",
    params(SecretQuery),
    request_body(content((String = "text/plain"), (serde_json::Value = "application/json")), description = "An Amazon SNS message (SNS sends it as text/plain; its text is JSON) carrying an SES bounce or complaint notification; its signature (SignatureVersion 1 or 2) is checked against the certificate of its SigningCertURL, which must be an https `.pem` of `sns.<region>.amazonaws.com`"),
    responses(
        (status = 200, description = "Recorded (a subscription confirmation is logged with its URL, for an admin to open)", body = BounceResponse),
        (status = 401, description = "The secret is missing or wrong, or the SNS signature does not verify", body = super::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The signing certificate could not be fetched; SNS retries", body = super::Problem, content_type = "application/problem+json"),
        (status = 403, description = "No bounce secret is configured", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/webhooks/ses")]
pub async fn ses_bounce(
    state: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<SecretQuery>,
    body: LimitedBody,
) -> Result<web::Json<BounceResponse>> {
    authorize(&state, &req, &query)?;
    let envelope: Value =
        serde_json::from_slice(&body.0).map_err(|e| Error::BadRequest(format!("the body is not JSON: {e}")))?;
    state.sns.verify(&envelope).await?;
    match ses_notices(&body.0)? {
        Some(notices) => record(&state, notices).await,
        None => Ok(web::Json(BounceResponse { items: Vec::new() })),
    }
}

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];

#[utoipa::path(
    tag = "public",
    params(("token" = String, Path, description = "A tracking token from a campaign message")),
    responses(
        (status = 200, description = "An open: a 1×1 image", content_type = "image/gif", body = Vec<u8>),
        (status = 302, description = "A click: on to the link's address"),
        (status = 404, description = "The token is not valid", body = super::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/{token}")]
pub async fn track(state: web::Data<AppState>, token: web::Path<String>) -> Result<HttpResponse> {
    match tracking::record(&state.db, &state.keys, &token).await? {
        Some(Hit::Open) => Ok(HttpResponse::Ok()
            .content_type("image/gif")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(PIXEL)),
        Some(Hit::Click(url)) => Ok(HttpResponse::Found().insert_header((header::LOCATION, url)).finish()),
        None => Err(Error::NotFound("this tracking link is not valid".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ses_permanent_bounce_names_its_recipients_and_message() {
        let event = serde_json::json!({
            "notificationType": "Bounce",
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                       "bouncedRecipients": [{"emailAddress": "Gone <gone@example.org>"}]},
            "mail": {"headers": [{"name": "Message-ID", "value": "<abc@x>"}]}
        });
        let body = serde_json::json!({"Type": "Notification", "Message": event.to_string()}).to_string();
        let notices = ses_notices(body.as_bytes()).unwrap().unwrap();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].kind, NoticeKind::HardBounce);
        assert_eq!(notices[0].email.as_str(), "gone@example.org");
        assert_eq!(notices[0].message_id.as_deref(), Some("<abc@x>"));
    }

    #[test]
    fn an_sns_message_without_a_type_is_refused() {
        assert!(ses_notices(br#"{"Message": "{}"}"#).is_err());
        assert!(
            ses_notices(br#"{"Type": "SubscriptionConfirmation", "SubscribeURL": "https://sns"}"#).unwrap().is_none()
        );
    }

    proptest::proptest! {
        /// Whatever a notification body holds, reading it answers (never panics).
        #[test]
        fn any_body_is_answered(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300), message in ".{0,200}") {
            let _ = ses_notices(&body);
            let wrapped = serde_json::json!({"Type": "Notification", "Message": message}).to_string();
            let _ = ses_notices(wrapped.as_bytes());
        }
    }
}
