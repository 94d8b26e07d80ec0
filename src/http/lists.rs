//! `/api/v1/lists`: the lists contacts subscribe to.

use actix_web::{HttpResponse, delete, get, http::header, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiQuery, Editor, RequestBody, Viewer, parse_id, validation_errors};
use super::{AppState, PageQuery};
use crate::domain::{List, ListId, ListName, OptInMode, contact::parse_short_text};
use crate::error::{FieldError, FieldErrors, Result};
use crate::services::lists::{self as service, ListChanges, NewList};
use crate::services::pagination::PageRequest;

const DESCRIPTION_MAX: usize = 2000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    #[schema(value_type = super::values::LineText, example = "Newsletter")]
    pub name: String,
    #[serde(default)]
    #[schema(value_type = super::values::ShortText)]
    pub description: String,
    /// `double` (the default) or `single`.
    #[schema(value_type = Option<super::values::ListOptInName>, inline, example = "double")]
    pub opt_in: Option<String>,
}

impl RequestBody for ListRequest {
    fn rule_errors(&self) -> Vec<FieldError> {
        validation_errors(parse_new_list(self))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListPatch {
    #[schema(value_type = Option<super::values::LineText>, inline)]
    pub name: Option<String>,
    #[schema(value_type = Option<super::values::ShortText>, inline)]
    pub description: Option<String>,
    #[schema(value_type = Option<super::values::ListOptInName>, inline)]
    pub opt_in: Option<String>,
}

impl RequestBody for ListPatch {
    fn rule_errors(&self) -> Vec<FieldError> {
        validation_errors(parse_changes(self))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub name: String,
    pub description: String,
    /// `double` or `single`.
    pub opt_in: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<List> for ListResponse {
    fn from(list: List) -> Self {
        Self {
            id: list.id.to_string(),
            name: list.name,
            description: list.description,
            opt_in: list.opt_in.to_string(),
            created_at: list.created_at,
            updated_at: list.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListPage {
    pub items: Vec<ListResponse>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    tag = "lists",
    request_body = ListRequest,
    responses(
        (status = 201, description = "The list was created", body = ListResponse,
         headers(("Location" = String, description = "The list's URL"))),
        (status = 409, description = "A list with this name exists", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/lists")]
pub async fn create_list(_: Editor, state: web::Data<AppState>, body: ApiJson<ListRequest>) -> Result<HttpResponse> {
    let new = parse_new_list(&body.0)?;
    let list = service::create_list(&state.db, new).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/lists/{}", list.id)))
        .json(ListResponse::from(list)))
}

#[utoipa::path(
    tag = "lists",
    params(PageQuery),
    responses((status = 200, description = "One page of lists, oldest first", body = ListPage)),
    security(("bearer" = []))
)]
#[get("/lists")]
pub async fn list_lists(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<ListPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_lists(&state.db, page).await?;
    Ok(web::Json(ListPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListCount {
    #[schema(value_type = String, format = Uuid)]
    pub list_id: String,
    /// Contacts on the list now.
    pub members: i64,
}

#[utoipa::path(
    tag = "lists",
    params(("id" = String, Path, description = "The list's id")),
    responses((status = 200, description = "How many contacts are on the list", body = ListCount)),
    security(("bearer" = []))
)]
#[get("/lists/{id}/count")]
pub async fn count_list(_: Viewer, state: web::Data<AppState>, id: web::Path<String>) -> Result<web::Json<ListCount>> {
    let id: ListId = parse_id(&id, "list")?;
    let members = service::count_members(&state.db, id).await?;
    Ok(web::Json(ListCount { list_id: id.to_string(), members }))
}

#[utoipa::path(
    tag = "lists",
    params(("id" = String, Path, description = "The list's id")),
    responses((status = 200, description = "The list", body = ListResponse)),
    security(("bearer" = []))
)]
#[get("/lists/{id}")]
pub async fn get_list(_: Viewer, state: web::Data<AppState>, id: web::Path<String>) -> Result<web::Json<ListResponse>> {
    let id: ListId = parse_id(&id, "list")?;
    Ok(web::Json(service::find_list(&state.db, id).await?.into()))
}

#[utoipa::path(
    tag = "lists",
    params(("id" = String, Path, description = "The list's id")),
    request_body = ListPatch,
    responses(
        (status = 200, description = "The list as changed", body = ListResponse),
        (status = 409, description = "Another list has this name", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[patch("/lists/{id}")]
pub async fn update_list(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<ListPatch>,
) -> Result<web::Json<ListResponse>> {
    let id: ListId = parse_id(&id, "list")?;
    let changes = parse_changes(&body.0)?;
    Ok(web::Json(service::update_list(&state.db, id, changes).await?.into()))
}

#[utoipa::path(
    tag = "lists",
    params(("id" = String, Path, description = "The list's id")),
    responses((status = 204, description = "The list was deleted; its contacts stay, without it")),
    security(("bearer" = []))
)]
#[delete("/lists/{id}")]
pub async fn delete_list(_: Editor, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    let id: ListId = parse_id(&id, "list")?;
    service::delete_list(&state.db, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A new list from a request: every field at fault named.
fn parse_new_list(request: &ListRequest) -> Result<NewList> {
    let mut errors = FieldErrors::new();
    let name = errors.check("name", ListName::parse(&request.name));
    let description = errors.check("description", parse_short_text(&request.description, DESCRIPTION_MAX));
    let opt_in = request.opt_in.as_deref().map_or(Some(OptInMode::default()), |o| errors.check("opt_in", o.parse()));
    errors.finish(|| Some(NewList { name: name?, description: description?, opt_in: opt_in? }))
}

/// A list's changes from a patch: every field at fault named.
fn parse_changes(patch: &ListPatch) -> Result<ListChanges> {
    let mut errors = FieldErrors::new();
    let changes = ListChanges {
        name: patch.name.as_deref().and_then(|n| errors.check("name", ListName::parse(n))),
        description: patch
            .description
            .as_deref()
            .and_then(|d| errors.check("description", parse_short_text(d, DESCRIPTION_MAX))),
        opt_in: patch.opt_in.as_deref().and_then(|o| errors.check("opt_in", o.parse())),
    };
    errors.finish(|| Some(changes))
}
