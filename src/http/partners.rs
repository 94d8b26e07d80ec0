//! `/api/v1/partners`: co-registration partners, their keys and the leads exchanged with
//! them. Admins only: partners receive people's data.

use actix_web::{HttpResponse, delete, get, http::header, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{Admin, ApiJson, ApiQuery, RequestBody, parse_id};
use crate::domain::PartnerId;
use crate::domain::partner::LeadDirection;
use crate::error::{Error, Result};
use crate::services::pagination::PageRequest;
use crate::services::partners::{self as service, Lead, LeadAudience, Partner, PartnerDraft, PartnerKey};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerRequest {
    /// The name people see beside the partner's box.
    #[schema(value_type = super::values::LineText, example = "Acme Travel")]
    pub name: String,
    /// The controller that receives the data.
    #[schema(value_type = super::values::LineText, example = "Acme Travel SAS")]
    pub legal_name: String,
    /// What the partner will use the data for, as people see it on the form.
    #[schema(value_type = super::values::LineText, example = "Travel deals by e-mail, about twice a month.")]
    pub description: String,
    #[schema(value_type = super::values::HttpUrl, example = "https://acme.example/privacy")]
    pub privacy_policy_url: String,
    /// Where leads and withdrawals are POSTed, signed; unset: the partner pulls them.
    #[schema(value_type = Option<super::values::HttpUrl>, inline)]
    pub webhook_url: Option<String>,
    /// The HMAC secret of the webhook (16 to 200 characters); unset with a URL: one is
    /// generated (or the current one kept).
    pub webhook_secret: Option<String>,
    #[serde(default = "default_policy")]
    #[schema(value_type = super::values::InboundPolicyName, inline)]
    pub inbound_policy: String,
    /// The lists a lead from this partner joins.
    #[serde(default)]
    pub inbound_lists: Vec<String>,
    /// The plugin whose `share` and `accept_lead` hooks run for this partner; unset: the
    /// shipped `co-registration` plugin.
    pub plugin: Option<String>,
    #[serde(default = "default_status")]
    #[schema(value_type = super::values::PartnerStatusName, inline)]
    pub status: String,
}

fn default_policy() -> String {
    "reconfirm".to_owned()
}

fn default_status() -> String {
    "active".to_owned()
}

impl RequestBody for PartnerRequest {}

impl From<PartnerRequest> for PartnerDraft {
    fn from(request: PartnerRequest) -> Self {
        Self {
            name: request.name,
            legal_name: request.legal_name,
            description: request.description,
            privacy_policy_url: request.privacy_policy_url,
            webhook_url: request.webhook_url,
            webhook_secret: request.webhook_secret,
            inbound_policy: request.inbound_policy,
            inbound_lists: request.inbound_lists,
            plugin: request.plugin,
            status: request.status,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub name: String,
    pub legal_name: String,
    pub description: String,
    pub privacy_policy_url: String,
    pub webhook_url: Option<String>,
    /// The secret the partner verifies signatures with (`Consento-Signature`).
    pub webhook_secret: Option<String>,
    pub inbound_policy: String,
    pub inbound_lists: Vec<String>,
    pub plugin: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Partner> for PartnerResponse {
    fn from(partner: Partner) -> Self {
        Self {
            id: partner.id.to_string(),
            name: partner.name,
            legal_name: partner.legal_name,
            description: partner.description,
            privacy_policy_url: partner.privacy_policy_url,
            webhook_url: partner.webhook_url,
            webhook_secret: partner.webhook_secret,
            inbound_policy: partner.inbound_policy.to_string(),
            inbound_lists: partner.inbound_lists.iter().map(ToString::to_string).collect(),
            plugin: partner.plugin,
            status: partner.status.to_string(),
            created_at: partner.created_at,
            updated_at: partner.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerPage {
    pub items: Vec<PartnerResponse>,
    pub next_cursor: Option<String>,
}

fn partner_id(raw: &str) -> Result<PartnerId> {
    parse_id(raw, "partner")
}

#[utoipa::path(
    tag = "partners",
    request_body = PartnerRequest,
    responses((status = 201, description = "The partner was created", body = PartnerResponse,
               headers(("Location" = String, description = "The partner's URL")))),
    security(("bearer" = []))
)]
#[post("/partners")]
pub async fn create_partner(
    _: Admin,
    state: web::Data<AppState>,
    body: ApiJson<PartnerRequest>,
) -> Result<HttpResponse> {
    let partner =
        service::create_partner(&state.db, state.scripts.folder.clone(), state.outbound.clone(), body.0.into()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/partners/{}", partner.id)))
        .json(PartnerResponse::from(partner)))
}

#[utoipa::path(
    tag = "partners",
    params(super::PageQuery),
    responses((status = 200, description = "One page of partners, oldest first", body = PartnerPage)),
    security(("bearer" = []))
)]
#[get("/partners")]
pub async fn list_partners(
    _: Admin,
    state: web::Data<AppState>,
    query: ApiQuery<super::PageQuery>,
) -> Result<web::Json<PartnerPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_partners(&state.db, page).await?;
    Ok(web::Json(PartnerPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    tag = "partners",
    params(("id" = String, Path, description = "The partner's id")),
    responses((status = 200, description = "The partner", body = PartnerResponse)),
    security(("bearer" = []))
)]
#[get("/partners/{id}")]
pub async fn get_partner(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<PartnerResponse>> {
    Ok(web::Json(service::find_partner(&state.db, partner_id(&id)?).await?.into()))
}

#[utoipa::path(
    tag = "partners",
    params(("id" = String, Path, description = "The partner's id")),
    request_body = PartnerRequest,
    responses((status = 200, description = "The partner as replaced", body = PartnerResponse)),
    security(("bearer" = []))
)]
#[put("/partners/{id}")]
pub async fn update_partner(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<PartnerRequest>,
) -> Result<web::Json<PartnerResponse>> {
    let id = partner_id(&id)?;
    let partner =
        service::update_partner(&state.db, state.scripts.folder.clone(), state.outbound.clone(), id, body.0.into())
            .await?;
    Ok(web::Json(partner.into()))
}

#[utoipa::path(
    tag = "partners",
    params(("id" = String, Path, description = "The partner's id")),
    responses(
        (status = 204, description = "Deleted, with its keys"),
        (status = 409, description = "Leads were exchanged with it: it is kept as evidence (set it inactive)", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/partners/{id}")]
pub async fn delete_partner(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    service::delete_partner(&state.db, partner_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerKeyResponse {
    pub id: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// The key itself: shown once, when created.
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<PartnerKey> for PartnerKeyResponse {
    fn from(key: PartnerKey) -> Self {
        Self {
            id: key.id,
            prefix: key.prefix,
            secret: key.secret,
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerKeyList {
    pub items: Vec<PartnerKeyResponse>,
}

#[utoipa::path(
    tag = "partners",
    params(("id" = String, Path, description = "The partner's id")),
    responses((status = 201, description = "A key for `/partner/v1` (`Authorization: Bearer cpk_…`); the secret is shown this once", body = PartnerKeyResponse)),
    security(("bearer" = []))
)]
#[post("/partners/{id}/keys")]
pub async fn create_partner_key(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    let key = service::create_key(&state.db, partner_id(&id)?).await?;
    Ok(HttpResponse::Created().json(PartnerKeyResponse::from(key)))
}

#[utoipa::path(
    tag = "partners",
    params(("id" = String, Path, description = "The partner's id")),
    responses((status = 200, description = "The partner's keys, without their secrets", body = PartnerKeyList)),
    security(("bearer" = []))
)]
#[get("/partners/{id}/keys")]
pub async fn list_partner_keys(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<PartnerKeyList>> {
    let keys = service::list_keys(&state.db, partner_id(&id)?).await?;
    Ok(web::Json(PartnerKeyList { items: keys.into_iter().map(Into::into).collect() }))
}

#[utoipa::path(
    tag = "partners",
    params(
        ("id" = String, Path, description = "The partner's id"),
        ("key_id" = String, Path, description = "The key's id"),
    ),
    responses((status = 204, description = "Revoked: the key stops working at once")),
    security(("bearer" = []))
)]
#[delete("/partners/{id}/keys/{key_id}")]
pub async fn revoke_partner_key(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (id, key_id) = path.into_inner();
    service::revoke_key(&state.db, partner_id(&id)?, key_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A lead exchanged with a partner.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeadResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// The partner's own id of a lead it sent.
    pub partner_lead_id: Option<String>,
    /// Outbound: `queued` (its `share` hook has yet to run), `shared`, `withheld`,
    /// `withdrawn`. Inbound, as admins see it: `accepted`, `pending_confirmation`,
    /// `declined`; as the partner sees it: `received`, whatever became of it.
    pub status: String,
    /// Outbound: what was shared (or why it was withheld); inbound: the proof received.
    #[schema(value_type = Object)]
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Lead> for LeadResponse {
    fn from(lead: Lead) -> Self {
        Self {
            id: lead.id.to_string(),
            partner_lead_id: lead.partner_lead_id,
            status: lead.status.to_string(),
            payload: lead.payload,
            created_at: lead.created_at,
            updated_at: lead.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LeadPage {
    pub items: Vec<LeadResponse>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeadQuery {
    /// `outbound` (shared with the partner, the default) or `inbound` (received from it).
    #[param(value_type = Option<super::values::DirectionName>, inline)]
    pub direction: Option<String>,
    #[param(default = 50, minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: the id of the last item it held.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

#[utoipa::path(
    tag = "partners",
    params(("id" = String, Path, description = "The partner's id"), LeadQuery),
    responses((status = 200, description = "Leads exchanged with the partner, oldest first; `GET /api/v1/deliveries?lead_id=` shows each delivery attempt", body = LeadPage)),
    security(("bearer" = []))
)]
#[get("/partners/{id}/leads")]
pub async fn list_partner_leads(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: ApiQuery<LeadQuery>,
) -> Result<web::Json<LeadPage>> {
    let query = query.0;
    let direction = match query.direction.as_deref() {
        None => LeadDirection::Outbound,
        Some(direction) => {
            direction.parse().map_err(|e: crate::domain::Invalid| Error::field("direction", e.to_string()))?
        }
    };
    let page = PageRequest::parse(query.cursor.as_deref(), query.limit)?;
    let page = service::list_leads(&state.db, partner_id(&id)?, direction, LeadAudience::Admin, page).await?;
    Ok(web::Json(LeadPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}
