//! `/api/v1/webhooks` (integrators' event subscriptions) and `/api/v1/deliveries` (every
//! event to every receiver, its attempts, and the retry of a dead one). Admins only.
//!
//! Every webhook request is a POST of `{"id", "type", "created_at", "data"}` with
//! `Consento-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the
//! receiver's secret; receivers should refuse a `t` more than 300 seconds away from their
//! clock, and drop an `id` they have seen (a delivery may repeat after a timeout).

use actix_web::{HttpResponse, delete, get, http::header, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::extract::{Admin, ApiJson, ApiQuery, RequestBody, parse_id};
use super::{AppState, PageQuery};
use crate::domain::partner::DeliveryStatus;
use crate::domain::{DeliveryId, WebhookId};
use crate::error::{Error, Result};
use crate::services::pagination::PageRequest;
use crate::services::webhooks::{self as service, Delivery, DeliveryFilter, Subscription, SubscriptionDraft};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    #[schema(example = "https://crm.example.org/hooks/consento")]
    pub url: String,
    /// The signing secret (16 to 200 characters); unset: generated (on change: kept).
    #[schema(min_length = 16, max_length = 200)]
    pub secret: Option<String>,
    /// The events to receive.
    #[schema(value_type = Vec<super::values::SubscribableEventName>, inline, example = json!(["contact.created", "consent.withdrawn"]))]
    pub event_types: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// Default `true`.
    #[serde(default = "active")]
    pub active: bool,
}

fn active() -> bool {
    true
}

impl RequestBody for WebhookRequest {}

impl From<WebhookRequest> for SubscriptionDraft {
    fn from(request: WebhookRequest) -> Self {
        Self {
            url: request.url,
            secret: request.secret,
            event_types: request.event_types,
            description: request.description,
            active: request.active,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub url: String,
    /// The secret signatures are made with.
    pub secret: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Subscription> for WebhookResponse {
    fn from(s: Subscription) -> Self {
        Self {
            id: s.id.to_string(),
            url: s.url,
            secret: s.secret,
            event_types: s.event_types.iter().map(ToString::to_string).collect(),
            description: s.description,
            active: s.active,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookPage {
    pub items: Vec<WebhookResponse>,
    pub next_cursor: Option<String>,
}

fn webhook_id(raw: &str) -> Result<WebhookId> {
    parse_id(raw, "webhook")
}

#[utoipa::path(
    tag = "webhooks",
    request_body = WebhookRequest,
    responses((status = 201, description = "Subscribed: matching events from now on are delivered", body = WebhookResponse,
               headers(("Location" = String, description = "The subscription's URL")))),
    security(("bearer" = []))
)]
#[post("/webhooks")]
pub async fn create_webhook(
    _: Admin,
    state: web::Data<AppState>,
    body: ApiJson<WebhookRequest>,
) -> Result<HttpResponse> {
    let subscription = service::create_subscription(&state.db, &state.outbound, body.0.into()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/webhooks/{}", subscription.id)))
        .json(WebhookResponse::from(subscription)))
}

#[utoipa::path(
    tag = "webhooks",
    params(PageQuery),
    responses((status = 200, description = "One page of subscriptions, oldest first", body = WebhookPage)),
    security(("bearer" = []))
)]
#[get("/webhooks")]
pub async fn list_webhooks(
    _: Admin,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<WebhookPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_subscriptions(&state.db, page).await?;
    Ok(web::Json(WebhookPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 200, description = "The subscription", body = WebhookResponse)),
    security(("bearer" = []))
)]
#[get("/webhooks/{id}")]
pub async fn get_webhook(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<WebhookResponse>> {
    Ok(web::Json(service::find_subscription(&state.db, webhook_id(&id)?).await?.into()))
}

#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "The subscription's id")),
    request_body = WebhookRequest,
    responses((status = 200, description = "The subscription as replaced", body = WebhookResponse)),
    security(("bearer" = []))
)]
#[put("/webhooks/{id}")]
pub async fn update_webhook(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<WebhookRequest>,
) -> Result<web::Json<WebhookResponse>> {
    Ok(web::Json(
        service::update_subscription(&state.db, &state.outbound, webhook_id(&id)?, body.0.into()).await?.into(),
    ))
}

#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 204, description = "Deleted; its deliveries not yet made end dead")),
    security(("bearer" = []))
)]
#[delete("/webhooks/{id}")]
pub async fn delete_webhook(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    service::delete_subscription(&state.db, webhook_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptResponse {
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// What the receiver answered; none when it could not be reached.
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// `partner:<id>` or `subscription:<id>`.
    pub target: String,
    /// The event's id: the same on every attempt.
    pub event_id: String,
    pub event_type: String,
    /// The partner lead it is about, for lead events.
    pub lead_id: Option<String>,
    /// The body POSTed.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// `pending`, `delivered`, `dead` (every attempt failed; retry it) or `pull` (the
    /// partner has no webhook and pulls it).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<AttemptResponse>,
}

impl From<Delivery> for DeliveryResponse {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id.to_string(),
            target: d.target,
            event_id: d.event_id,
            event_type: d.event_type.to_string(),
            lead_id: d.lead_id.map(|v| v.to_string()),
            payload: d.payload,
            status: d.status.to_string(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
            attempt_log: d
                .attempt_log
                .into_iter()
                .map(|a| AttemptResponse {
                    attempted_at: a.attempted_at,
                    duration_ms: a.duration_ms,
                    status_code: a.status_code,
                    error: a.error,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryResponse>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// `pending`, `delivered`, `dead` or `pull`.
    #[param(value_type = Option<super::values::DeliveryStatusName>, inline)]
    pub status: Option<String>,
    /// `partner:<id>` or `subscription:<id>`.
    pub target: Option<String>,
    /// Deliveries about one partner lead.
    pub lead_id: Option<String>,
    #[param(default = 50, minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: the id of the last item it held.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

#[utoipa::path(
    tag = "webhooks",
    params(DeliveryQuery),
    responses((status = 200, description = "Deliveries, oldest first, each with its attempts", body = DeliveryPage)),
    security(("bearer" = []))
)]
#[get("/deliveries")]
pub async fn list_deliveries(
    _: Admin,
    state: web::Data<AppState>,
    query: ApiQuery<DeliveryQuery>,
) -> Result<web::Json<DeliveryPage>> {
    let query = query.0;
    let status = match query.status.as_deref() {
        None => None,
        Some(status) => Some(status.parse::<DeliveryStatus>().map_err(|e| Error::field("status", e.to_string()))?),
    };
    let filter = DeliveryFilter { target: query.target, status, lead_id: query.lead_id };
    let page = PageRequest::parse(query.cursor.as_deref(), query.limit)?;
    let page = service::list_deliveries(&state.db, filter, page).await?;
    Ok(web::Json(DeliveryPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "The delivery's id")),
    responses((status = 200, description = "The delivery and its attempts", body = DeliveryResponse)),
    security(("bearer" = []))
)]
#[get("/deliveries/{id}")]
pub async fn get_delivery(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<DeliveryResponse>> {
    let id: DeliveryId = parse_id(&id, "delivery")?;
    Ok(web::Json(service::find_delivery(&state.db, id).await?.into()))
}

#[utoipa::path(
    tag = "webhooks",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "Pending again: a fresh round of attempts starts now", body = DeliveryResponse),
        (status = 409, description = "The delivery is not dead", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/deliveries/{id}/retry")]
pub async fn retry_delivery(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<DeliveryResponse>> {
    let id: DeliveryId = parse_id(&id, "delivery")?;
    Ok(web::Json(service::retry_delivery(&state.db, id).await?.into()))
}
