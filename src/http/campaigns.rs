//! `/api/v1/campaigns`: templates, audience checks, sending, and how it went;
//! `/api/v1/stats/churn`: churn over time.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, delete, get, http::header, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery, Editor, RequestBody, Viewer, parse_id};
use super::{AppState, PageQuery, double_option};
use crate::domain::{CampaignCommand, CampaignId, CampaignKind, CampaignPurpose, ListId, RecipientStatus, SegmentId};
use crate::error::{Error, FieldErrors, Result};
use crate::services::bounces::{self, ChurnBucket, Period};
use crate::services::campaigns::{self as service, AudienceCheck, Campaign, CampaignDraft, CampaignStats, Tracking};
use crate::services::pagination::PageRequest;

#[derive(Debug, Deserialize, Serialize, ToSchema, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct TrackingSettings {
    /// Count opens (an image in the HTML part).
    #[serde(default)]
    pub opens: bool,
    /// Count clicks (links go through consento).
    #[serde(default)]
    pub clicks: bool,
    /// Record who opened and clicked; without it only totals are kept.
    #[serde(default)]
    pub individual: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    #[schema(value_type = super::values::LineText)]
    pub name: String,
    /// A template (minijinja), like the bodies.
    #[schema(value_type = super::values::LineText)]
    pub subject: String,
    /// The sender mailbox, `Name <address>`; default: the `mail_from` setting.
    pub from: Option<String>,
    pub reply_to: Option<String>,
    /// HTML template; `{{ contact.attributes.first_name | default("there") }}`,
    /// `{{ unsubscribe_url }}`, `{{ preferences_url }}` are available.
    pub html_body: Option<String>,
    /// Plain-text template (every message has a text part).
    #[schema(value_type = super::values::NonBlankText)]
    pub text_body: String,
    /// Lists whose consenting members are the audience (ids; at least one).
    #[schema(value_type = Vec<uuid::Uuid>, min_items = 1)]
    pub lists: Vec<String>,
    /// A segment that narrows the audience.
    #[schema(format = Uuid)]
    pub segment_id: Option<String>,
    #[schema(value_type = super::values::CampaignKindName, inline, example = "b2c")]
    #[serde(default = "default_kind")]
    pub kind: String,
    #[schema(value_type = super::values::CampaignPurposeName, inline, example = "marketing")]
    #[serde(default = "default_purpose")]
    pub purpose: String,
    /// The plugin whose `eligible(contact, campaign)` decides; default `send-policy`.
    pub policy_plugin: Option<String>,
    #[serde(default)]
    pub tracking: TrackingSettings,
    /// Complaint rate above which the campaign pauses itself; default the setting (0.003).
    pub complaint_threshold: Option<f64>,
}

fn default_kind() -> String {
    "b2c".to_owned()
}

fn default_purpose() -> String {
    "marketing".to_owned()
}

impl RequestBody for CampaignRequest {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignPatch {
    #[schema(value_type = Option<super::values::LineText>, inline)]
    pub name: Option<String>,
    #[schema(value_type = Option<super::values::LineText>, inline)]
    pub subject: Option<String>,
    pub from: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub reply_to: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub html_body: Option<Option<String>>,
    #[schema(value_type = Option<super::values::NonBlankText>, inline)]
    pub text_body: Option<String>,
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    pub lists: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub segment_id: Option<Option<String>>,
    #[schema(value_type = Option<super::values::CampaignKindName>, inline)]
    pub kind: Option<String>,
    #[schema(value_type = Option<super::values::CampaignPurposeName>, inline)]
    pub purpose: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub policy_plugin: Option<Option<String>>,
    pub tracking: Option<TrackingSettings>,
    pub complaint_threshold: Option<f64>,
}

impl RequestBody for CampaignPatch {}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub name: String,
    pub subject: String,
    pub from: String,
    pub reply_to: Option<String>,
    pub html_body: Option<String>,
    pub text_body: String,
    pub lists: Vec<String>,
    pub segment_id: Option<String>,
    pub kind: String,
    pub purpose: String,
    pub policy_plugin: Option<String>,
    pub tracking: TrackingSettings,
    pub complaint_threshold: f64,
    /// `draft`, `scheduled`, `preparing`, `sending`, `paused`, `sent` or `cancelled`.
    pub status: String,
    /// Why the campaign is in its status (paused on complaints, a policy error…).
    pub status_reason: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Campaign> for CampaignResponse {
    fn from(c: Campaign) -> Self {
        Self {
            id: c.id.to_string(),
            name: c.name,
            subject: c.subject,
            from: c.from,
            reply_to: c.reply_to,
            html_body: c.html_body,
            text_body: c.text_body,
            lists: c.lists.iter().map(ToString::to_string).collect(),
            segment_id: c.segment.map(|id| id.to_string()),
            kind: c.kind.to_string(),
            purpose: c.purpose.to_string(),
            policy_plugin: c.policy_plugin,
            tracking: TrackingSettings {
                opens: c.tracking.opens,
                clicks: c.tracking.clicks,
                individual: c.tracking.individual,
            },
            complaint_threshold: c.complaint_threshold,
            status: c.status.to_string(),
            status_reason: c.status_reason,
            scheduled_at: c.scheduled_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignPage {
    pub items: Vec<CampaignResponse>,
    pub next_cursor: Option<String>,
}

fn campaign_id(raw: &str) -> Result<CampaignId> {
    parse_id::<CampaignId>(raw, "campaign")
}

/// Checks the fields of a request that have a fixed form; the service checks the rest.
fn parse_lists(errors: &mut FieldErrors, lists: &[String]) -> Vec<ListId> {
    lists
        .iter()
        .enumerate()
        .filter_map(|(index, id)| {
            errors.check(&format!("lists[{index}]"), id.parse::<ListId>().map_err(|_| "is not a list id"))
        })
        .collect()
}

fn parse_segment(errors: &mut FieldErrors, segment: Option<&str>) -> Option<SegmentId> {
    segment.and_then(|id| errors.check("segment_id", id.parse::<SegmentId>().map_err(|_| "is not a segment id")))
}

fn tracking(settings: TrackingSettings) -> Tracking {
    Tracking { opens: settings.opens, clicks: settings.clicks, individual: settings.individual }
}

#[utoipa::path(
    tag = "campaigns",
    request_body = CampaignRequest,
    responses((status = 201, description = "The campaign, as a draft; its templates compile", body = CampaignResponse)),
    security(("bearer" = []))
)]
#[post("/campaigns")]
pub async fn create_campaign(
    _: Editor,
    state: web::Data<AppState>,
    body: ApiJson<CampaignRequest>,
) -> Result<HttpResponse> {
    let request = body.0;
    let mut errors = FieldErrors::new();
    let lists = parse_lists(&mut errors, &request.lists);
    let segment = parse_segment(&mut errors, request.segment_id.as_deref());
    let kind = errors.check("kind", request.kind.parse::<CampaignKind>());
    let purpose = errors.check("purpose", request.purpose.parse::<CampaignPurpose>());
    let draft = errors.finish(|| {
        Some(CampaignDraft {
            name: request.name,
            subject: request.subject,
            from: request.from,
            reply_to: request.reply_to,
            html_body: request.html_body,
            text_body: request.text_body,
            lists,
            segment,
            kind: kind?,
            purpose: purpose?,
            policy_plugin: request.policy_plugin,
            tracking: tracking(request.tracking),
            complaint_threshold: request.complaint_threshold,
        })
    })?;
    let campaign = service::create_campaign(&state.campaigns, draft).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/campaigns/{}", campaign.id)))
        .json(CampaignResponse::from(campaign)))
}

#[utoipa::path(
    tag = "campaigns",
    params(PageQuery),
    responses((status = 200, description = "One page of campaigns", body = CampaignPage)),
    security(("bearer" = []))
)]
#[get("/campaigns")]
pub async fn list_campaigns(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<CampaignPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_campaigns(&state.db, page).await?;
    Ok(web::Json(CampaignPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    responses((status = 200, description = "The campaign", body = CampaignResponse)),
    security(("bearer" = []))
)]
#[get("/campaigns/{id}")]
pub async fn get_campaign(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<CampaignResponse>> {
    Ok(web::Json(service::find_campaign(&state.db, campaign_id(&id)?).await?.into()))
}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    request_body = CampaignPatch,
    responses(
        (status = 200, description = "The campaign as changed", body = CampaignResponse),
        (status = 409, description = "The campaign started sending; it can no longer change", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[patch("/campaigns/{id}")]
pub async fn update_campaign(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<CampaignPatch>,
) -> Result<web::Json<CampaignResponse>> {
    let id = campaign_id(&id)?;
    let patch = body.0;
    let mut errors = FieldErrors::new();
    let lists = patch.lists.as_deref().map(|lists| parse_lists(&mut errors, lists));
    let segment = patch.segment_id.as_ref().map(|segment| parse_segment(&mut errors, segment.as_deref()));
    let kind = patch.kind.as_deref().map(|kind| errors.check("kind", kind.parse::<CampaignKind>()));
    let purpose = patch.purpose.as_deref().map(|p| errors.check("purpose", p.parse::<CampaignPurpose>()));
    errors.finish(|| Some(()))?;
    let campaign = service::update_campaign(&state.campaigns, id, move |draft| {
        if let Some(name) = patch.name {
            draft.name = name;
        }
        if let Some(subject) = patch.subject {
            draft.subject = subject;
        }
        if let Some(from) = patch.from {
            draft.from = Some(from);
        }
        if let Some(reply_to) = patch.reply_to {
            draft.reply_to = reply_to;
        }
        if let Some(html) = patch.html_body {
            draft.html_body = html;
        }
        if let Some(text) = patch.text_body {
            draft.text_body = text;
        }
        if let Some(lists) = lists {
            draft.lists = lists;
        }
        if let Some(segment) = segment {
            draft.segment = segment;
        }
        if let Some(Some(kind)) = kind {
            draft.kind = kind;
        }
        if let Some(Some(purpose)) = purpose {
            draft.purpose = purpose;
        }
        if let Some(policy) = patch.policy_plugin {
            draft.policy_plugin = policy;
        }
        if let Some(settings) = patch.tracking {
            draft.tracking = tracking(settings);
        }
        if let Some(threshold) = patch.complaint_threshold {
            draft.complaint_threshold = Some(threshold);
        }
    })
    .await?;
    Ok(web::Json(campaign.into()))
}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "The campaign started sending and is kept as the record of what was sent", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/campaigns/{id}")]
pub async fn delete_campaign(_: Editor, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    service::delete_campaign(&state.db, campaign_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// The contact to render for; default a sample contact with no attributes.
    pub contact_id: Option<String>,
}

impl RequestBody for PreviewRequest {}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewResponse {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Whom it was rendered for.
    pub contact_id: String,
}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    request_body = PreviewRequest,
    responses((status = 200, description = "The campaign rendered for the contact", body = PreviewResponse)),
    security(("bearer" = []))
)]
#[post("/campaigns/{id}/preview")]
pub async fn preview_campaign(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<PreviewRequest>,
) -> Result<web::Json<PreviewResponse>> {
    let (rendered, contact) = service::preview(&state.campaigns, campaign_id(&id)?, body.0.contact_id).await?;
    Ok(web::Json(PreviewResponse {
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        contact_id: contact.id.to_string(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AudienceResponse {
    /// Contacts on the campaign's lists (or with consent history for them), in its segment.
    pub audience: u64,
    /// Who would receive it.
    pub eligible: u64,
    pub excluded: u64,
    /// Excluded contacts by the policy's reason (`suppressed` before any script).
    pub excluded_by_reason: BTreeMap<String, u64>,
    /// Eligible contacts by the policy's reason (the basis that allows them).
    pub eligible_by_reason: BTreeMap<String, u64>,
}

impl From<AudienceCheck> for AudienceResponse {
    fn from(check: AudienceCheck) -> Self {
        Self {
            audience: check.audience,
            eligible: check.eligible,
            excluded: check.excluded,
            excluded_by_reason: check.excluded_by_reason,
            eligible_by_reason: check.eligible_by_reason,
        }
    }
}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    responses((status = 200, description = "Who would receive the campaign now, and why the others would not", body = AudienceResponse)),
    security(("bearer" = []))
)]
#[post("/campaigns/{id}/audience")]
pub async fn check_audience(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<AudienceResponse>> {
    Ok(web::Json(service::check_audience(&state.campaigns, campaign_id(&id)?).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// When to send; default now. The audience is checked against the policy then.
    pub scheduled_at: Option<DateTime<Utc>>,
}

impl RequestBody for SendRequest {}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    request_body = SendRequest,
    responses(
        (status = 202, description = "Scheduled; the dispatcher prepares and sends it", body = CampaignResponse),
        (status = 409, description = "The campaign was sent already, or is being sent", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/campaigns/{id}/send")]
pub async fn send_campaign(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<SendRequest>,
) -> Result<HttpResponse> {
    let campaign = service::schedule(&state.campaigns, campaign_id(&id)?, body.0.scheduled_at).await?;
    Ok(HttpResponse::Accepted().json(CampaignResponse::from(campaign)))
}

async fn run_command(state: &AppState, id: &str, command: CampaignCommand) -> Result<web::Json<CampaignResponse>> {
    let campaign = service::command(&state.campaigns, campaign_id(id)?, command).await?;
    Ok(web::Json(campaign.into()))
}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    responses(
        (status = 200, description = "Paused: no new batch starts (the one in flight finishes)", body = CampaignResponse),
        (status = 409, description = "The campaign is not being sent", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/campaigns/{id}/pause")]
pub async fn pause_campaign(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<CampaignResponse>> {
    run_command(&state, &id, CampaignCommand::Pause).await
}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    responses(
        (status = 200, description = "Sending again", body = CampaignResponse),
        (status = 409, description = "The campaign is not paused", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/campaigns/{id}/resume")]
pub async fn resume_campaign(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<CampaignResponse>> {
    run_command(&state, &id, CampaignCommand::Resume).await
}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    responses(
        (status = 200, description = "Cancelled: recipients not yet sent to are not sent to", body = CampaignResponse),
        (status = 409, description = "The campaign is finished", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/campaigns/{id}/cancel")]
pub async fn cancel_campaign(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<CampaignResponse>> {
    run_command(&state, &id, CampaignCommand::Cancel).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSendRequest {
    /// Up to 20 addresses.
    #[schema(value_type = Vec<super::values::EmailText>)]
    pub to: Vec<String>,
    /// The contact to render for; default a sample contact.
    pub contact_id: Option<String>,
}

impl RequestBody for TestSendRequest {}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestSendResponse {
    /// Messages the SMTP server accepted.
    pub sent: usize,
}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    request_body = TestSendRequest,
    responses(
        (status = 200, description = "Sent, with `[Test]` before the subject; nothing is recorded", body = TestSendResponse),
        (status = 503, description = "The SMTP server refused", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/campaigns/{id}/test")]
pub async fn test_campaign(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<TestSendRequest>,
) -> Result<web::Json<TestSendResponse>> {
    let request = body.0;
    let sent = service::test_send(&state.campaigns, campaign_id(&id)?, request.to, request.contact_id).await?;
    Ok(web::Json(TestSendResponse { sent }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    /// Recipients checked against the policy.
    pub audience: i64,
    pub excluded: i64,
    pub excluded_by_reason: BTreeMap<String, i64>,
    /// Not yet sent (or waiting for a retry).
    pub pending: i64,
    pub sent: i64,
    /// Given up (refused for good, or out of attempts).
    pub failed: i64,
    pub cancelled: i64,
    pub bounced: i64,
    pub complaints: i64,
    pub unsubscribes: i64,
    /// Every open and click counted (when tracked).
    pub opens: i64,
    pub clicks: i64,
    /// Recipients who opened or clicked (individual tracking only).
    pub unique_opens: i64,
    pub unique_clicks: i64,
    /// Of the messages sent.
    pub bounce_rate: f64,
    pub complaint_rate: f64,
    pub unsubscribe_rate: f64,
}

impl From<CampaignStats> for StatsResponse {
    fn from(s: CampaignStats) -> Self {
        Self {
            audience: s.audience,
            excluded: s.excluded,
            excluded_by_reason: s.excluded_by_reason,
            pending: s.pending,
            sent: s.sent,
            failed: s.failed,
            cancelled: s.cancelled,
            bounced: s.bounced,
            complaints: s.complaints,
            unsubscribes: s.unsubscribes,
            opens: s.opens,
            clicks: s.clicks,
            unique_opens: s.unique_opens,
            unique_clicks: s.unique_clicks,
            bounce_rate: s.bounce_rate,
            complaint_rate: s.complaint_rate,
            unsubscribe_rate: s.unsubscribe_rate,
        }
    }
}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id")),
    responses((status = 200, description = "How the campaign went", body = StatsResponse)),
    security(("bearer" = []))
)]
#[get("/campaigns/{id}/stats")]
pub async fn campaign_stats(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<StatsResponse>> {
    Ok(web::Json(service::stats(&state.db, campaign_id(&id)?).await?.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecipientQuery {
    /// `pending`, `sent`, `failed`, `excluded` or `cancelled`.
    #[param(value_type = Option<super::values::RecipientStatusName>, inline)]
    pub status: Option<String>,
    #[param(default = 50, minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: the id of the last item it held.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub contact_id: Option<String>,
    /// Empty once the contact was erased.
    pub email: String,
    /// The list whose consent allowed the message.
    pub list_id: Option<String>,
    pub status: String,
    /// The policy's reason: why excluded, or what allows the message.
    pub reason: String,
    pub attempts: i32,
    /// The Message-ID the message carries (the same on every attempt).
    pub message_id: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub bounced_at: Option<DateTime<Utc>>,
    pub complained_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub opened_at: Option<DateTime<Utc>>,
    pub clicked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientPage {
    pub items: Vec<RecipientResponse>,
    pub next_cursor: Option<String>,
}

fn recipient(row: service::Recipient, domain: &str) -> RecipientResponse {
    RecipientResponse {
        message_id: format!("<{}@{domain}>", row.id),
        id: row.id,
        contact_id: row.contact_id.map(|v| v.to_string()),
        email: row.email,
        list_id: row.list_id.map(|v| v.to_string()),
        status: row.status.to_string(),
        reason: row.reason,
        attempts: row.attempts,
        sent_at: row.sent_at,
        last_error: row.last_error,
        bounced_at: row.bounced_at,
        complained_at: row.complained_at,
        unsubscribed_at: row.unsubscribed_at,
        opened_at: row.opened_at,
        clicked_at: row.clicked_at,
    }
}

#[utoipa::path(
    tag = "campaigns",
    params(("id" = String, Path, description = "The campaign's id"), RecipientQuery),
    responses((status = 200, description = "Recipients with their verdicts and outcomes", body = RecipientPage)),
    security(("bearer" = []))
)]
#[get("/campaigns/{id}/recipients")]
pub async fn list_recipients(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: ApiQuery<RecipientQuery>,
) -> Result<web::Json<RecipientPage>> {
    let query = query.0;
    let status = match &query.status {
        Some(status) => Some(status.parse::<RecipientStatus>().map_err(|e| Error::field("status", e.to_string()))?),
        None => None,
    };
    let page = PageRequest::parse(query.cursor.as_deref(), query.limit)?;
    let page = service::list_recipients(&state.db, campaign_id(&id)?, status, page).await?;
    let domain = state.settings.message_domain();
    Ok(web::Json(RecipientPage {
        items: page.items.into_iter().map(|row| recipient(row, &domain)).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChurnQuery {
    /// `day`, `week` or `month`.
    #[param(default = "day")]
    pub period: Option<String>,
    /// Start (RFC 3339); default 30 days ago.
    pub from: Option<DateTime<Utc>>,
    /// End, excluded (RFC 3339); default now.
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChurnPoint {
    /// First day of the period.
    #[schema(value_type = String, format = Date)]
    pub start: chrono::NaiveDate,
    pub sent: i64,
    pub unsubscribes: i64,
    pub hard_bounces: i64,
    pub soft_bounces: i64,
    pub complaints: i64,
    /// List consents that took effect.
    pub subscribed: i64,
    /// List consents withdrawn, for any reason.
    pub left: i64,
    pub net_growth: i64,
    /// Of the messages sent in the period.
    pub unsubscribe_rate: f64,
    pub bounce_rate: f64,
    pub complaint_rate: f64,
}

impl From<ChurnBucket> for ChurnPoint {
    fn from(b: ChurnBucket) -> Self {
        Self {
            start: b.start,
            sent: b.sent,
            unsubscribes: b.unsubscribes,
            hard_bounces: b.hard_bounces,
            soft_bounces: b.soft_bounces,
            complaints: b.complaints,
            subscribed: b.subscribed,
            left: b.left,
            net_growth: b.net_growth,
            unsubscribe_rate: b.unsubscribe_rate,
            bounce_rate: b.bounce_rate,
            complaint_rate: b.complaint_rate,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChurnResponse {
    pub period: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Periods with any activity, oldest first.
    pub items: Vec<ChurnPoint>,
}

#[utoipa::path(
    tag = "campaigns",
    params(ChurnQuery),
    responses((status = 200, description = "Unsubscribe, bounce and complaint rates and list growth per period", body = ChurnResponse)),
    security(("bearer" = []))
)]
#[get("/stats/churn")]
pub async fn churn(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<ChurnQuery>,
) -> Result<web::Json<ChurnResponse>> {
    let query = query.0;
    let period = query.period.as_deref().unwrap_or("day").parse::<Period>().map_err(|e| Error::field("period", e))?;
    let to = query.to.unwrap_or_else(Utc::now);
    let from = query.from.unwrap_or(to - chrono::TimeDelta::days(30));
    let items = bounces::churn(&state.db, period, from, to).await?;
    Ok(web::Json(ChurnResponse {
        period: period.to_string(),
        from,
        to,
        items: items.into_iter().map(Into::into).collect(),
    }))
}
