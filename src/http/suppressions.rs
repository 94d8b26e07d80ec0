//! `/api/v1/suppressions`: the addresses never to be mailed again, kept as keyed hashes.
//! Viewers read (and search by address); editors add, one by one or from a previous
//! provider's export.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{ApiJson, ApiQuery, Editor, LimitedBody, RequestBody, Viewer};
use crate::domain::Email;
use crate::error::{Error, FieldErrors, Result};
use crate::services::suppressions::{self as service, ImportReport, Suppression};

#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionResponse {
    /// The keyed hash of the normalised address (the list keeps nothing personal).
    pub email_hash: String,
    /// Why: `unsubscribed`, `bounced`, `complained`, `erased`, or what an editor gave.
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

impl From<Suppression> for SuppressionResponse {
    fn from(s: Suppression) -> Self {
        Self { email_hash: s.email_hash, reason: s.reason, created_at: s.created_at }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionPage {
    pub items: Vec<SuppressionResponse>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuppressionQuery {
    /// Only this address's entry (hashed with the server's key to look it up).
    #[param(value_type = Option<super::values::EmailText>, inline)]
    pub email: Option<String>,
    /// Page size, 1 to 200.
    #[param(default = 50, minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: the keyed hash of the last entry it held.
    #[param(pattern = "^([0-9a-fA-F]{64})?$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSuppressionRequest {
    #[schema(value_type = super::values::EmailText)]
    pub email: String,
    /// Why, e.g. `unsubscribed` (by phone, by letter…), `bounced`, `complained`.
    #[schema(value_type = super::values::LineText)]
    pub reason: String,
}

impl RequestBody for AddSuppressionRequest {}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportSuppressionsQuery {
    /// The reason recorded for every address of the file.
    #[param(default = "unsubscribed")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportSuppressionsResponse {
    /// Addresses newly suppressed.
    pub added: u64,
    /// Addresses already suppressed, or repeated in the file.
    pub already_suppressed: u64,
    /// Of those added, contacts whose subscriptions ended.
    pub contacts_unsubscribed: u64,
    /// Lines without an address that can be mailed (the header excepted).
    pub invalid: u64,
}

impl From<ImportReport> for ImportSuppressionsResponse {
    fn from(r: ImportReport) -> Self {
        Self {
            added: r.added,
            already_suppressed: r.already_suppressed,
            contacts_unsubscribed: r.contacts_unsubscribed,
            invalid: r.invalid,
        }
    }
}

#[utoipa::path(
    tag = "consent",
    params(SuppressionQuery),
    responses((status = 200, description = "One page of the suppression list, in hash order", body = SuppressionPage)),
    security(("bearer" = []))
)]
#[get("/suppressions")]
pub async fn list_suppressions(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<SuppressionQuery>,
) -> Result<web::Json<SuppressionPage>> {
    let query = query.0;
    let email = query.email.map(|e| Email::parse(&e).map_err(|e| Error::field("email", e))).transpose()?;
    let page = service::list(&state.db, &state.keys, email, query.cursor, query.limit).await?;
    Ok(web::Json(SuppressionPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    tag = "consent",
    request_body = AddSuppressionRequest,
    responses(
        (status = 201, description = "Suppressed; a contact with this address leaves every list", body = SuppressionResponse),
        (status = 200, description = "Suppressed already: the entry as it was", body = SuppressionResponse),
    ),
    security(("bearer" = []))
)]
#[post("/suppressions")]
pub async fn add_suppression(
    editor: Editor,
    state: web::Data<AppState>,
    body: ApiJson<AddSuppressionRequest>,
) -> Result<HttpResponse> {
    let request = body.0;
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(&request.email));
    let reason = errors.check("reason", service::parse_reason(&request.reason));
    let (email, reason) = errors.finish(|| Some((email?, reason?)))?;
    let (entry, added) = service::add(&state.db, &state.keys, email, reason, editor.caller.actor()).await?;
    let mut response = if added { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(response.json(SuppressionResponse::from(entry)))
}

#[utoipa::path(
    tag = "consent",
    params(ImportSuppressionsQuery),
    request_body(content = super::values::NonBlankText, content_type = "text/csv", description = "A previous provider's export: CSV whose header names the address column (`Email Address`, `email`, `e-mail`…, as Mailchimp's unsubscribed and cleaned exports), or text with one address per line"),
    responses((status = 200, description = "What the file came to", body = ImportSuppressionsResponse)),
    security(("bearer" = []))
)]
#[post("/suppressions/import")]
pub async fn import_suppressions(
    editor: Editor,
    state: web::Data<AppState>,
    query: ApiQuery<ImportSuppressionsQuery>,
    body: LimitedBody,
) -> Result<web::Json<ImportSuppressionsResponse>> {
    let reason = query.0.reason.unwrap_or_else(|| "unsubscribed".to_owned());
    let reason = service::parse_reason(&reason).map_err(|e| Error::field("reason", e))?;
    // The body is required, as the document says: an empty one is a mistake, not a list.
    if body.0.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::field("body", "is empty: send the export (CSV, or one address a line)"));
    }
    let report = service::import(&state.db, &state.keys, &body.0, reason, editor.caller.actor()).await?;
    Ok(web::Json(report.into()))
}
