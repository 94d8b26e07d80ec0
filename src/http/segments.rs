//! `/api/v1/segments`: Rhai predicates over contacts, and who matches them.

use actix_web::{HttpResponse, delete, get, http::header, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::contacts::{ContactPage, ContactResponse};
use super::extract::{ApiJson, ApiQuery, Editor, RequestBody, Viewer, parse_id};
use super::{AppState, PageQuery};
use crate::domain::SegmentId;
use crate::error::{Error, FieldErrors, Result};
use crate::services::pagination::PageRequest;
use crate::services::segments::{self as service, Rule, Scan, Segment, SegmentDraft};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentRequest {
    #[schema(value_type = super::values::LineText)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// A Rhai expression over `contact` (`contact.country == "FR"`), or a script defining
    /// `fn matches(contact)`.
    pub script: Option<String>,
    /// Or the name of a plugin with a `matches(contact)` hook.
    pub plugin: Option<String>,
    /// The plugin's settings for this segment, over the plugin's defaults.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
}

impl RequestBody for SegmentRequest {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentPatch {
    #[schema(value_type = Option<super::values::LineText>, inline)]
    pub name: Option<String>,
    pub description: Option<String>,
    pub script: Option<String>,
    pub plugin: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
}

impl RequestBody for SegmentPatch {}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub name: String,
    pub description: String,
    pub script: Option<String>,
    pub plugin: Option<String>,
    /// The plugin's settings as this segment sets them.
    #[schema(value_type = Object)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Segment> for SegmentResponse {
    fn from(segment: Segment) -> Self {
        Self {
            id: segment.id.to_string(),
            name: segment.name,
            description: segment.description,
            script: segment.script,
            plugin: segment.plugin,
            settings: segment.settings,
            created_at: segment.created_at,
            updated_at: segment.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentPage {
    pub items: Vec<SegmentResponse>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentCount {
    /// Contacts that match.
    pub count: u64,
    /// Contacts that reached the script: simple conditions of an inline expression
    /// (`contact.country == "FR"`, `contact.has_tag("vip")`, `contact.in_list(…)`,
    /// `contact.status == …` joined by `&&`) are tested by the database first.
    pub scanned: u64,
    pub elapsed_ms: f64,
    /// The first matches (for previews and evaluations).
    pub items: Vec<ContactResponse>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// How many matching contacts to show, up to 200.
    #[param(default = 10, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    pub script: Option<String>,
    pub plugin: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// How many matching contacts to show, up to 200.
    pub limit: Option<u32>,
}

impl RequestBody for EvaluateRequest {}

fn rule(
    script: Option<String>,
    plugin: Option<String>,
    settings: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Rule> {
    match (script, plugin) {
        (Some(_), None) if settings.is_some() => {
            Err(Error::field("settings", "are for a plugin, not an inline script"))
        }
        (Some(script), None) if !script.trim().is_empty() => Ok(Rule::Script(script)),
        (None, Some(plugin)) => Ok(Rule::Plugin(plugin, settings.unwrap_or_default())),
        _ => Err(Error::field("script", "give either a script or a plugin")),
    }
}

fn counted(scan: Scan, contacts: Vec<crate::domain::Contact>) -> SegmentCount {
    SegmentCount {
        count: scan.matched,
        scanned: scan.scanned,
        elapsed_ms: scan.elapsed.as_secs_f64() * 1000.0,
        items: contacts.into_iter().map(Into::into).collect(),
    }
}

fn segment_id(raw: &str) -> Result<SegmentId> {
    parse_id::<SegmentId>(raw, "segment")
}

#[utoipa::path(
    tag = "segments",
    request_body = SegmentRequest,
    responses(
        (status = 201, description = "The segment was created; its script compiles", body = SegmentResponse),
        (status = 409, description = "A segment with this name exists", body = super::Problem, content_type = "application/problem+json"),
        (status = 404, description = "There is no plugin of that name", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/segments")]
pub async fn create_segment(
    _: Editor,
    state: web::Data<AppState>,
    body: ApiJson<SegmentRequest>,
) -> Result<HttpResponse> {
    let request = body.0;
    let mut errors = FieldErrors::new();
    if request.name.trim().is_empty() {
        errors.push("name", "must not be empty");
    }
    let rule = match rule(request.script, request.plugin, request.settings) {
        Ok(rule) => Some(rule),
        Err(Error::Validation(faults)) => {
            faults.into_iter().for_each(|f| errors.push(f.field, f.message));
            None
        }
        Err(other) => return Err(other),
    };
    let draft = errors.finish(|| {
        Some(SegmentDraft { name: request.name.trim().to_owned(), description: request.description, rule: rule? })
    })?;
    let segment = service::create_segment(&state.db, &state.scripts, draft).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/segments/{}", segment.id)))
        .json(SegmentResponse::from(segment)))
}

#[utoipa::path(
    tag = "segments",
    params(PageQuery),
    responses((status = 200, description = "One page of segments", body = SegmentPage)),
    security(("bearer" = []))
)]
#[get("/segments")]
pub async fn list_segments(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<SegmentPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_segments(&state.db, page).await?;
    Ok(web::Json(SegmentPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    tag = "segments",
    params(("id" = String, Path, description = "The segment's id")),
    responses((status = 200, description = "The segment", body = SegmentResponse)),
    security(("bearer" = []))
)]
#[get("/segments/{id}")]
pub async fn get_segment(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<SegmentResponse>> {
    Ok(web::Json(service::find_segment(&state.db, segment_id(&id)?).await?.into()))
}

#[utoipa::path(
    tag = "segments",
    params(("id" = String, Path, description = "The segment's id")),
    request_body = SegmentPatch,
    responses((status = 200, description = "The segment as changed, in force at once", body = SegmentResponse)),
    security(("bearer" = []))
)]
#[patch("/segments/{id}")]
pub async fn update_segment(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<SegmentPatch>,
) -> Result<web::Json<SegmentResponse>> {
    let patch = body.0;
    let rule = match (patch.script, patch.plugin, patch.settings) {
        (None, None, None) => None,
        (None, None, Some(settings)) => {
            // New settings for the plugin the segment already uses.
            let current = service::find_segment(&state.db, segment_id(&id)?).await?;
            let plugin =
                current.plugin.ok_or_else(|| Error::field("settings", "are for a segment bound to a plugin"))?;
            Some(Rule::Plugin(plugin, settings))
        }
        (script, plugin, settings) => Some(rule(script, plugin, settings)?),
    };
    let segment =
        service::update_segment(&state.db, &state.scripts, segment_id(&id)?, patch.name, patch.description, rule)
            .await?;
    Ok(web::Json(segment.into()))
}

#[utoipa::path(
    tag = "segments",
    params(("id" = String, Path, description = "The segment's id")),
    responses((status = 204, description = "The segment was deleted")),
    security(("bearer" = []))
)]
#[delete("/segments/{id}")]
pub async fn delete_segment(_: Editor, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    service::delete_segment(&state.db, segment_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    tag = "segments",
    params(("id" = String, Path, description = "The segment's id")),
    responses(
        (status = 200, description = "How many contacts match", body = SegmentCount),
        (status = 422, description = "The script failed: the script, line, column and message", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/segments/{id}/count")]
pub async fn count_segment(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<SegmentCount>> {
    let segment = service::find_segment(&state.db, segment_id(&id)?).await?;
    let (scan, _) = service::count(&state.db, &state.scripts, &service::rule_of(&segment)?, 0).await?;
    Ok(web::Json(counted(scan, Vec::new())))
}

#[utoipa::path(
    tag = "segments",
    params(("id" = String, Path, description = "The segment's id"), PreviewQuery),
    responses(
        (status = 200, description = "The count and the first matching contacts", body = SegmentCount),
        (status = 422, description = "The script failed: the script, line, column and message", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/segments/{id}/preview")]
pub async fn preview_segment(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: ApiQuery<PreviewQuery>,
) -> Result<web::Json<SegmentCount>> {
    let segment = service::find_segment(&state.db, segment_id(&id)?).await?;
    let limit = query.0.limit.unwrap_or(10).min(200) as usize;
    let (scan, contacts) = service::count(&state.db, &state.scripts, &service::rule_of(&segment)?, limit).await?;
    Ok(web::Json(counted(scan, contacts)))
}

#[utoipa::path(
    tag = "segments",
    params(("id" = String, Path, description = "The segment's id"), PageQuery),
    responses(
        (status = 200, description = "One page of the segment's members", body = ContactPage),
        (status = 422, description = "The script failed: the script, line, column and message", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/segments/{id}/members")]
pub async fn segment_members(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<ContactPage>> {
    let segment = service::find_segment(&state.db, segment_id(&id)?).await?;
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::members(&state.db, &state.scripts, &service::rule_of(&segment)?, page).await?;
    Ok(web::Json(ContactPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    tag = "segments",
    request_body = EvaluateRequest,
    responses(
        (status = 200, description = "How many contacts a script not saved yet matches, and the first of them (editors and admins)", body = SegmentCount),
        (status = 404, description = "There is no plugin of that name", body = super::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The script failed: the script, line, column and message", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/segments/evaluate")]
pub async fn evaluate_segment(
    // A script not saved yet runs over the whole address book: for editors, who may save
    // it anyway. Viewers evaluate the stored segments (count, preview, members).
    _: Editor,
    state: web::Data<AppState>,
    body: ApiJson<EvaluateRequest>,
) -> Result<web::Json<SegmentCount>> {
    let request = body.0;
    let limit = request.limit.unwrap_or(10).min(200) as usize;
    let rule = rule(request.script, request.plugin, request.settings)?;
    let (scan, contacts) = service::count(&state.db, &state.scripts, &rule, limit).await?;
    Ok(web::Json(counted(scan, contacts)))
}
