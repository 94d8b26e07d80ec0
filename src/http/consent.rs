//! `/api/v1/contacts/{id}/consents`, the export, the links for a contact's mails, and
//! the ledger check.

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::contacts::ContactResponse;
use super::extract::{ApiJson, Editor, RequestBody, Viewer, parse_id};
use crate::domain::ContactId;
use crate::domain::consent::{ConsentBasis, ConsentEvent, Evidence, Purpose, PurposeConsent};
use crate::domain::contact::{parse_required_text, parse_short_text};
use crate::domain::evidence as evidence_rules;
use crate::error::{FieldErrors, Result};
use crate::services::consent::{self as service, ContactConsents, ContactExport, RecordedConsent};
use crate::services::{confirmations, preferences, signup};

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
            form_id: event.evidence.form_id.map(|v| v.to_string()),
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

/// Evidence of a consent collected on the integrator's own channel. It is recorded as
/// claimed: the event's method is `api`, its actor the caller, and its `proof` says the
/// evidence is the integrator's (`claimed_method` keeps the method given here).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRequest {
    /// How it was collected, e.g. `checkout checkbox`.
    #[schema(value_type = super::values::LineText)]
    pub method: String,
    /// The exact words the person agreed to.
    #[schema(value_type = super::values::NonBlankText)]
    pub consent_text: String,
    /// The person's IP address as the integrator saw it (IPv4 or IPv6).
    pub ip: Option<String>,
    #[schema(value_type = Option<super::values::ShortText>, inline)]
    pub user_agent: Option<String>,
    /// The page where it was collected (`http://` or `https://`).
    pub source_url: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordConsentRequest {
    /// `list:<list id>`.
    #[schema(
        pattern = "^(list:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|partner:.{1,64})$"
    )]
    pub purpose: String,
    #[schema(value_type = super::values::RecordableBasisName, inline)]
    pub basis: String,
    pub evidence: EvidenceRequest,
}

impl RequestBody for RecordConsentRequest {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawConsentRequest {
    #[schema(
        pattern = "^(list:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|partner:.{1,64})$"
    )]
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
    /// The campaigns addressed to the person and what was recorded of each.
    pub campaigns: Vec<CampaignReceivedResponse>,
    /// Bounces, complaints and other delivery events recorded for the address.
    pub delivery_events: Vec<DeliveryEventResponse>,
    /// Leads exchanged with partners: whom the person's details were shared with, and
    /// which partners sent them.
    pub partner_leads: Vec<PartnerLeadResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignReceivedResponse {
    pub campaign_id: String,
    pub name: String,
    pub subject: String,
    /// The recipient's state: `queued`, `sent`, `excluded`, `failed`…
    pub status: String,
    /// Why it was excluded, if it was.
    pub reason: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub opened_at: Option<DateTime<Utc>>,
    pub clicked_at: Option<DateTime<Utc>>,
    pub bounced_at: Option<DateTime<Utc>>,
    pub complained_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryEventResponse {
    /// `hard_bounce`, `soft_bounce`, `complaint`…
    pub kind: String,
    pub campaign_id: Option<String>,
    pub detail: String,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerLeadResponse {
    pub partner_id: String,
    pub partner_name: Option<String>,
    /// `outbound` (shared with the partner) or `inbound` (received from it).
    pub direction: String,
    pub status: String,
    /// What was shared or received.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
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
                    survey_id: r.survey_id.to_string(),
                    answers: r.answers,
                    status: r.status,
                    started_at: r.created_at,
                    completed_at: r.completed_at,
                })
                .collect(),
            campaigns: export
                .campaigns
                .into_iter()
                .map(|c| CampaignReceivedResponse {
                    campaign_id: c.campaign_id.to_string(),
                    name: c.name,
                    subject: c.subject,
                    status: c.status.to_string(),
                    reason: c.reason,
                    sent_at: c.sent_at,
                    opened_at: c.opened_at,
                    clicked_at: c.clicked_at,
                    bounced_at: c.bounced_at,
                    complained_at: c.complained_at,
                    unsubscribed_at: c.unsubscribed_at,
                })
                .collect(),
            delivery_events: export
                .delivery_events
                .into_iter()
                .map(|e| DeliveryEventResponse {
                    kind: e.kind,
                    campaign_id: e.campaign_id.map(|v| v.to_string()),
                    detail: e.detail,
                    occurred_at: e.occurred_at,
                })
                .collect(),
            partner_leads: export
                .partner_leads
                .into_iter()
                .map(|l| PartnerLeadResponse {
                    partner_id: l.partner_id.to_string(),
                    partner_name: l.partner_name,
                    direction: l.direction.to_string(),
                    status: l.status.to_string(),
                    payload: l.payload,
                    created_at: l.created_at,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactLinksResponse {
    /// One-click unsubscribe from everything (RFC 8058: POST it). It does not expire.
    pub unsubscribe_url: String,
    /// The preference centre, until `preferences_expires_at` or until the links are revoked.
    pub preferences_url: String,
    pub preferences_expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartConfirmationRequest {
    /// `list:<list id>`, one per list the person is asked to confirm.
    #[schema(value_type = Vec<super::values::PurposeText>)]
    pub purposes: Vec<String>,
    /// The mail's language: `en`, `fr`, `de` or `it` (default `en`).
    pub locale: Option<String>,
}

impl RequestBody for StartConfirmationRequest {}

#[derive(Debug, Serialize, ToSchema)]
pub struct StartConfirmationResponse {
    /// Purposes now waiting for the person to confirm from the mail.
    pub pending: Vec<String>,
    /// Purposes already in force: nothing was asked for them.
    pub already_active: Vec<String>,
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
        (status = 201, description = "The consent was recorded, as claimed by the integrator (method `api`)", body = ConsentEventResponse),
        (status = 409, description = "The address is suppressed: only a confirmed double opt-in brings it back", body = super::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Fields at fault, each named: e.g. `basis` `double_opt_in`, which only the person's confirmation makes", body = super::Problem, content_type = "application/problem+json"),
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
    let basis = basis.and_then(|basis| errors.check("basis", service::check_api_basis(basis)));
    let evidence = request.evidence;
    let method = errors.check("evidence.method", parse_required_text(&evidence.method, 200));
    if evidence.consent_text.trim().is_empty() {
        errors.push("evidence.consent_text", "must be the exact words the person agreed to");
    }
    // The same rules as every other place evidence comes in (partner leads, forms).
    let ip = evidence.ip.map(|ip| errors.check("evidence.ip", evidence_rules::parse_ip(&ip).map(|ip| ip.to_string())));
    let user_agent = evidence.user_agent.map(|ua| errors.check("evidence.user_agent", parse_short_text(&ua, 1000)));
    let source_url = evidence.source_url.map(|url| {
        errors.check(
            "evidence.source_url",
            evidence_rules::parse_source_url(&url).map(evidence_rules::SourceUrl::into_string),
        )
    });
    let consent = errors.finish(|| {
        Some(RecordedConsent {
            purpose: purpose?,
            basis: basis?,
            evidence: Evidence {
                method: method?,
                consent_text: Some(evidence.consent_text),
                ip: ip.map(|ip| ip.ok_or(())).transpose().ok()?,
                user_agent: user_agent.map(|ua| ua.ok_or(())).transpose().ok()?,
                source_url: source_url.map(|url| url.ok_or(())).transpose().ok()?,
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
    Ok(web::Json(service::export_contact(&state.db, &state.keys, id).await?.into()))
}

#[utoipa::path(
    tag = "consent",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 200, description = "Signed links to put in mails to this contact (editors and admins: they act for the person)", body = ContactLinksResponse)),
    security(("bearer" = []))
)]
#[get("/contacts/{id}/links")]
pub async fn contact_links(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<ContactLinksResponse>> {
    let id: ContactId = parse_id(&id, "contact")?;
    crate::services::contacts::find_contact(&state.db, id).await?;
    let base = &state.signup.base_url;
    Ok(web::Json(ContactLinksResponse {
        unsubscribe_url: signup::unsubscribe_url(&state.keys, base, id, None),
        preferences_url: signup::preferences_link(&state.keys, base, id),
        preferences_expires_at: Utc::now() + TimeDelta::days(i64::from(state.settings.preference_link_days)),
    }))
}

#[utoipa::path(
    tag = "consent",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 204, description = "Every preference link issued so far for this contact stops working; the next mail carries a new one")),
    security(("bearer" = []))
)]
#[post("/contacts/{id}/links/revoke")]
pub async fn revoke_links(_: Editor, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    let id: ContactId = parse_id(&id, "contact")?;
    preferences::revoke_links(&state.db, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    tag = "consent",
    params(("id" = String, Path, description = "The contact's id")),
    request_body = StartConfirmationRequest,
    responses(
        (status = 202, description = "A pending grant per list and the confirmation mail queued (at most `confirmation_mails_per_day` a day per address); the person's click makes the double opt-in", body = StartConfirmationResponse),
        (status = 422, description = "Fields at fault, each named", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/contacts/{id}/confirmations")]
pub async fn start_confirmation(
    editor: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<StartConfirmationRequest>,
) -> Result<HttpResponse> {
    let id: ContactId = parse_id(&id, "contact")?;
    let request = body.0;
    let mut errors = FieldErrors::new();
    let purposes: Vec<Option<Purpose>> = request
        .purposes
        .iter()
        .enumerate()
        .map(|(index, purpose)| errors.check(&format!("purposes[{index}]"), purpose.parse::<Purpose>()))
        .collect();
    let locale = request.locale.unwrap_or_else(|| "en".to_owned());
    if !crate::i18n::LOCALES.contains(&locale.as_str()) {
        errors.push("locale", format!("must be one of {}", crate::i18n::LOCALES.join(", ")));
    }
    let purposes = errors.finish(|| purposes.into_iter().collect::<Option<Vec<_>>>())?;
    let started =
        confirmations::start_for_contact(&state.services, id, purposes, editor.caller.actor(), locale).await?;
    Ok(HttpResponse::Accepted().json(StartConfirmationResponse {
        pending: started.pending.iter().map(ToString::to_string).collect(),
        already_active: started.already_active.iter().map(ToString::to_string).collect(),
    }))
}
