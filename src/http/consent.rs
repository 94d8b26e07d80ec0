//! `/api/v1/contacts/{id}/consents`, the export, the links for a contact's mails, and
//! the ledger check.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::contacts::ContactResponse;
use super::extract::{ApiJson, Editor, RequestBody, Viewer, parse_id};
use crate::domain::ContactId;
use crate::domain::consent::{ConsentBasis, ConsentEvent, Evidence, Purpose, PurposeConsent};
use crate::error::{FieldErrors, Result};
use crate::services::consent::{self as service, ContactConsents, ContactExport, RecordedConsent};
use crate::services::signup;

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentEventResponse {
    pub id: String,
    /// The event's number, in the order events were written.
    pub seq: i64,
    /// Its leaf in the verifiable log (`GET /api/v1/contacts/{id}/proof`); null for the
    /// second or so until the sequencer gives it one.
    pub leaf_index: Option<i64>,
    /// `list:<id>` or `partner:<id>`.
    pub purpose: String,
    /// `granted`, `confirmed` or `withdrawn`.
    pub action: String,
    pub basis: String,
    /// A grant that waits for the person's confirmation.
    pub requires_confirmation: bool,
    /// How it was collected: `form`, `confirmation`, `api`, `unsubscribe`, `preferences`…
    pub method: String,
    pub form_id: Option<String>,
    pub form_version: Option<i32>,
    /// The exact text the person was shown.
    pub consent_text: Option<String>,
    pub consent_text_sha256: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub source_url: Option<String>,
    /// For an imported list: its provenance manifest (`/api/v1/manifests/{id}`).
    pub manifest_id: Option<String>,
    /// Further evidence: for a partner box, `partners_shown` (the partner list beside it);
    /// for a partner's lead, its proof (`collected_at`, `partner_lead_id`, `partners_shown`…).
    #[schema(value_type = Option<Object>)]
    pub proof: Option<serde_json::Value>,
    /// `public`, `user:<id>`, `api_key:<id>` or `system`.
    pub actor: String,
    pub occurred_at: DateTime<Utc>,
    /// The SHA-256 leaf hash of the event (hex); for events recorded before the
    /// verifiable log, their link in the old hash chain.
    pub hash: String,
    /// The personal fields were erased.
    pub redacted: bool,
}

impl From<ConsentEvent> for ConsentEventResponse {
    fn from(event: ConsentEvent) -> Self {
        Self {
            id: event.id,
            seq: event.seq,
            leaf_index: event.leaf_index,
            purpose: event.purpose.to_string(),
            action: event.action.to_string(),
            basis: event.basis.to_string(),
            requires_confirmation: event.requires_confirmation,
            method: event.evidence.method,
            form_id: event.evidence.form_id,
            form_version: event.evidence.form_version,
            consent_text: event.evidence.consent_text,
            consent_text_sha256: event.consent_text_sha256,
            ip: event.evidence.ip,
            user_agent: event.evidence.user_agent,
            source_url: event.evidence.source_url,
            manifest_id: event.evidence.manifest_id,
            proof: event.evidence.proof.and_then(|proof| serde_json::from_str(&proof).ok()),
            actor: event.actor,
            occurred_at: event.occurred_at,
            hash: event.hash,
            redacted: event.redacted,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PurposeConsentResponse {
    pub purpose: String,
    /// `pending`, `active` or `withdrawn`.
    pub status: String,
    pub basis: String,
    pub granted_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

impl From<PurposeConsent> for PurposeConsentResponse {
    fn from(consent: PurposeConsent) -> Self {
        Self {
            purpose: consent.purpose.to_string(),
            status: consent.status.to_string(),
            basis: consent.basis.to_string(),
            granted_at: consent.granted_at,
            confirmed_at: consent.confirmed_at,
            withdrawn_at: consent.withdrawn_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactConsentsResponse {
    /// The consent per purpose now, derived from the events.
    pub current: Vec<PurposeConsentResponse>,
    /// The contact's ledger events, oldest first.
    pub events: Vec<ConsentEventResponse>,
}

impl From<ContactConsents> for ContactConsentsResponse {
    fn from(consents: ContactConsents) -> Self {
        Self {
            current: consents.current.into_iter().map(Into::into).collect(),
            events: consents.events.into_iter().map(Into::into).collect(),
        }
    }
}

/// Evidence of a consent collected on the integrator's own channel.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRequest {
    /// How it was collected, e.g. `checkout checkbox`.
    pub method: String,
    /// The exact words the person agreed to.
    pub consent_text: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub source_url: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordConsentRequest {
    /// `list:<list id>`.
    pub purpose: String,
    /// One of the legal bases, e.g. `single_opt_in` or `soft_opt_in`.
    pub basis: String,
    pub evidence: EvidenceRequest,
}

impl RequestBody for RecordConsentRequest {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawConsentRequest {
    pub purpose: String,
    /// Where the person asked, e.g. `phone call`; kept as the evidence's method.
    pub method: Option<String>,
}

impl RequestBody for WithdrawConsentRequest {}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExportResponse {
    pub contact_id: String,
    /// The contact was erased: what remains is the redacted ledger.
    pub erased: bool,
    pub contact: Option<ContactResponse>,
    pub consents: ContactConsentsResponse,
    /// The person's survey answers.
    pub survey_responses: Vec<SurveyAnswersResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SurveyAnswersResponse {
    pub survey_id: String,
    /// By question id.
    #[schema(value_type = Object)]
    pub answers: serde_json::Value,
    /// `in_progress` or `completed`.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<ContactExport> for ExportResponse {
    fn from(export: ContactExport) -> Self {
        Self {
            contact_id: export.contact_id.to_string(),
            erased: export.contact.is_none(),
            contact: export.contact.map(Into::into),
            consents: export.consents.into(),
            survey_responses: export
                .survey_responses
                .into_iter()
                .map(|r| SurveyAnswersResponse {
                    survey_id: r.survey_id,
                    answers: r.answers,
                    status: r.status,
                    started_at: r.created_at,
                    completed_at: r.completed_at,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactLinksResponse {
    /// One-click unsubscribe from everything (RFC 8058: POST it).
    pub unsubscribe_url: String,
    pub preferences_url: String,
}

#[utoipa::path(
    tag = "consent",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 200, description = "The contact's consent per purpose and its ledger", body = ContactConsentsResponse)),
    security(("bearer" = []))
)]
#[get("/contacts/{id}/consents")]
pub async fn list_consents(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<ContactConsentsResponse>> {
    let id: ContactId = parse_id(&id, "contact")?;
    Ok(web::Json(service::contact_consents(&state.db, id).await?.into()))
}

#[utoipa::path(
    tag = "consent",
    params(("id" = String, Path, description = "The contact's id")),
    request_body = RecordConsentRequest,
    responses(
        (status = 201, description = "The consent was recorded", body = ConsentEventResponse),
        (status = 409, description = "The address is suppressed: only a confirmed double opt-in brings it back", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/contacts/{id}/consents")]
pub async fn record_consent(
    editor: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<RecordConsentRequest>,
) -> Result<HttpResponse> {
    let id: ContactId = parse_id(&id, "contact")?;
    let request = body.0;
    let mut errors = FieldErrors::new();
    let purpose = errors.check("purpose", request.purpose.parse::<Purpose>());
    let basis = errors.check("basis", request.basis.parse::<ConsentBasis>());
    let evidence = request.evidence;
    if evidence.method.trim().is_empty() {
        errors.push("evidence.method", "must say how the consent was collected");
    }
    if evidence.consent_text.trim().is_empty() {
        errors.push("evidence.consent_text", "must be the exact words the person agreed to");
    }
    let consent = errors.finish(|| {
        Some(RecordedConsent {
            purpose: purpose?,
            basis: basis?,
            evidence: Evidence {
                method: evidence.method.trim().to_owned(),
                consent_text: Some(evidence.consent_text),
                ip: evidence.ip,
                user_agent: evidence.user_agent,
                source_url: evidence.source_url,
                ..Evidence::default()
            },
        })
    })?;
    let event = service::record_consent(&state.db, &state.keys, id, consent, editor.caller.actor()).await?;
    Ok(HttpResponse::Created().json(ConsentEventResponse::from(event)))
}

#[utoipa::path(
    tag = "consent",
    params(("id" = String, Path, description = "The contact's id")),
    request_body = WithdrawConsentRequest,
    responses((status = 200, description = "Withdrawn (withdrawing again records nothing)", body = ContactConsentsResponse)),
    security(("bearer" = []))
)]
#[post("/contacts/{id}/consents/withdraw")]
pub async fn withdraw_consent(
    editor: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<WithdrawConsentRequest>,
) -> Result<web::Json<ContactConsentsResponse>> {
    let id: ContactId = parse_id(&id, "contact")?;
    let request = body.0;
    let purpose = request.purpose.parse::<Purpose>().map_err(|e| crate::error::Error::field("purpose", e))?;
    let evidence = Evidence { method: request.method.unwrap_or_else(|| "api".to_owned()), ..Evidence::default() };
    let consents = service::withdraw_consent(&state.db, id, purpose, evidence, editor.caller.actor()).await?;
    Ok(web::Json(consents.into()))
}

#[utoipa::path(
    tag = "consent",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 200, description = "Everything held about the person (GDPR Art. 15); after erasure, only the redacted ledger", body = ExportResponse)),
    security(("bearer" = []))
)]
#[get("/contacts/{id}/export")]
pub async fn export_contact(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<ExportResponse>> {
    let id: ContactId = parse_id(&id, "contact")?;
    Ok(web::Json(service::export_contact(&state.db, id).await?.into()))
}

#[utoipa::path(
    tag = "consent",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 200, description = "Signed links to put in mails to this contact", body = ContactLinksResponse)),
    security(("bearer" = []))
)]
#[get("/contacts/{id}/links")]
pub async fn contact_links(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<ContactLinksResponse>> {
    let id: ContactId = parse_id(&id, "contact")?;
    crate::services::contacts::find_contact(&state.db, id).await?;
    let base = &state.signup.base_url;
    Ok(web::Json(ContactLinksResponse {
        unsubscribe_url: signup::unsubscribe_url(&state.keys, base, id, None),
        preferences_url: signup::preferences_url(&state.keys, base, id),
    }))
}
