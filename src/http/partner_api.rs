//! `/partner/v1`: what a partner calls with its partner key. It sees only its own leads:
//! those shared with it, those it sent, and its events.

use actix_web::{HttpResponse, get, http::header, post, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiQuery, PartnerCaller, RequestBody, parse_id};
use super::partners::{LeadPage, LeadResponse};
use super::{AppState, PageQuery};
use crate::domain::partner::LeadDirection;
use crate::error::Result;
use crate::services::pagination::PageRequest;
use crate::services::partners::{self as service, InboundLead, LeadAudience};

#[utoipa::path(
    tag = "partner-api",
    params(PageQuery),
    responses((status = 200, description = "The leads shared with the calling partner, oldest first: `status` is `shared`, or `withdrawn` once the person withdrew (stop using it)", body = LeadPage)),
    security(("partner_key" = []))
)]
#[get("/leads")]
pub async fn list_shared_leads(
    caller: PartnerCaller,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<LeadPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page =
        service::list_leads(&state.db, caller.0.id, LeadDirection::Outbound, LeadAudience::Partner, page).await?;
    Ok(web::Json(LeadPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

#[utoipa::path(
    tag = "partner-api",
    params(("id" = String, Path, description = "The lead's id (ours)")),
    responses((status = 200, description = "A lead shared with, or sent by, the calling partner", body = LeadResponse)),
    security(("partner_key" = []))
)]
#[get("/leads/{id}")]
pub async fn get_lead(
    caller: PartnerCaller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<LeadResponse>> {
    let lead = service::find_lead(&state.db, caller.0.id, parse_id(&id, "lead")?).await?;
    Ok(web::Json(lead.into()))
}

/// How the partner collected the lead: the proof consento keeps with the consent.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentProof {
    /// The exact words the person agreed to.
    pub text: String,
    /// When (RFC 3339).
    pub collected_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The page the person was on.
    pub source_url: Option<String>,
    /// How: `web_form`, `phone`, `paper`…
    pub method: String,
    /// The names of every partner shown to the person beside ours.
    #[serde(default)]
    pub partners_shown: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundLeadRequest {
    /// The partner's own id of the lead: sending it again changes nothing.
    #[schema(example = "acme-000123")]
    pub lead_id: String,
    #[schema(example = "ada@example.org")]
    pub email: String,
    pub company: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    pub consent: ConsentProof,
}

impl RequestBody for InboundLeadRequest {
    const SERVER_OWNED: &'static [&'static str] = &["id", "status", "created_at", "updated_at"];
}

#[utoipa::path(
    tag = "partner-api",
    request_body = InboundLeadRequest,
    responses(
        (status = 201, description = "Received: `accepted`, `pending_confirmation` (the person gets a mail saying where the address came from; nothing counts until they confirm) or `declined` (the address opted out before: nothing changes)", body = LeadResponse,
         headers(("Location" = String, description = "The lead's URL"))),
        (status = 200, description = "This lead id was sent before: the lead as it stands", body = LeadResponse),
    ),
    security(("partner_key" = []))
)]
#[post("/leads")]
pub async fn send_lead(
    caller: PartnerCaller,
    state: web::Data<AppState>,
    body: ApiJson<InboundLeadRequest>,
) -> Result<HttpResponse> {
    let request = body.0;
    let lead = InboundLead {
        partner_lead_id: request.lead_id,
        email: request.email,
        company: request.company,
        country: request.country,
        attributes: request.attributes,
        consent_text: request.consent.text,
        collected_at: request.consent.collected_at,
        ip: request.consent.ip,
        user_agent: request.consent.user_agent,
        source_url: request.consent.source_url,
        method: request.consent.method,
        partners_shown: request.consent.partners_shown,
    };
    let received = service::receive_lead(&state.services, caller.0, lead).await?;
    let body = LeadResponse::from(received.lead);
    Ok(if received.created {
        HttpResponse::Created().insert_header((header::LOCATION, format!("/partner/v1/leads/{}", body.id))).json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// Events as webhooks carry them: `{"id", "type", "created_at", "data"}`, oldest first
    /// (`lead.shared`, `lead.withdrawn`).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    tag = "partner-api",
    params(PageQuery),
    responses((status = 200, description = "The calling partner's events, whether or not it has a webhook; keep `next_cursor` to resume", body = EventPage)),
    security(("partner_key" = []))
)]
#[get("/events")]
pub async fn list_events(
    caller: PartnerCaller,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<EventPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_events(&state.db, caller.0.id, page).await?;
    Ok(web::Json(EventPage { items: page.items, next_cursor: page.next_cursor }))
}
