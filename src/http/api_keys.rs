//! `/api/v1/api-keys`: keys for integrations (admins only).

use actix_web::{HttpResponse, delete, get, http::header, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Admin, ApiJson, ApiQuery, RequestBody, parse_id};
use super::{AppState, PageQuery};
use crate::domain::{ApiKey, ApiKeyId, contact::parse_short_text};
use crate::error::{FieldErrors, Result};
use crate::services::api_keys as service;
use crate::services::pagination::PageRequest;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRequest {
    /// What the key is for, e.g. "shop sync".
    #[schema(value_type = super::values::LineText)]
    pub name: String,
    #[schema(value_type = super::values::RoleName, inline)]
    pub role: String,
}

impl RequestBody for ApiKeyRequest {
    const SERVER_OWNED: &'static [&'static str] =
        &["id", "prefix", "secret", "created_at", "created_by", "last_used_at", "revoked_at"];
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub name: String,
    pub role: String,
    /// The first characters of the secret, to recognise the key.
    pub prefix: String,
    /// The user who created it.
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Set once the key is revoked; a revoked key is refused.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyResponse {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id.to_string(),
            name: key.name,
            role: key.role.to_string(),
            prefix: key.prefix,
            created_by: key.created_by.map(|id| id.to_string()),
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A new key. `secret` is shown this once and cannot be read again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyResponse {
    #[serde(flatten)]
    pub key: ApiKeyResponse,
    /// Send as `Authorization: Bearer <secret>`.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyPage {
    pub items: Vec<ApiKeyResponse>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    tag = "api-keys",
    request_body = ApiKeyRequest,
    responses(
        (status = 201, description = "The key was created; its secret is in this answer only", body = CreatedApiKeyResponse,
         headers(("Location" = String, description = "The key's URL"))),
    ),
    security(("bearer" = []))
)]
#[post("/api-keys")]
pub async fn create_api_key(
    admin: Admin,
    state: web::Data<AppState>,
    body: ApiJson<ApiKeyRequest>,
) -> Result<HttpResponse> {
    let request = body.0;
    let mut errors = FieldErrors::new();
    let name = errors.check("name", parse_short_text(&request.name, 200));
    if name.as_deref().is_some_and(str::is_empty) {
        errors.push("name", "must not be empty");
    }
    let role = errors.check("role", request.role.parse());
    let (name, role) = errors.finish(|| Some((name?, role?)))?;
    let created = service::create_api_key(&state.db, name, role, admin.caller.user_id()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/api-keys/{}", created.key.id)))
        .json(CreatedApiKeyResponse { key: created.key.into(), secret: created.secret }))
}

#[utoipa::path(
    tag = "api-keys",
    params(PageQuery),
    responses((status = 200, description = "One page of keys, revoked ones included", body = ApiKeyPage)),
    security(("bearer" = []))
)]
#[get("/api-keys")]
pub async fn list_api_keys(
    _: Admin,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<ApiKeyPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_api_keys(&state.db, page).await?;
    Ok(web::Json(ApiKeyPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

#[utoipa::path(
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 200, description = "The key, without its secret", body = ApiKeyResponse)),
    security(("bearer" = []))
)]
#[get("/api-keys/{id}")]
pub async fn get_api_key(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<ApiKeyResponse>> {
    let id: ApiKeyId = parse_id(&id, "API key")?;
    Ok(web::Json(service::find_api_key(&state.db, id).await?.into()))
}

#[utoipa::path(
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id")),
    responses((status = 204, description = "The key was revoked and is refused from now on")),
    security(("bearer" = []))
)]
#[delete("/api-keys/{id}")]
pub async fn revoke_api_key(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    let id: ApiKeyId = parse_id(&id, "API key")?;
    service::revoke_api_key(&state.db, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
