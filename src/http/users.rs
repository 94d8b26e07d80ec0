//! `/api/v1/users`: the people who administer consento (admins only).

use actix_web::{HttpResponse, delete, get, http::header, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Admin, ApiJson, ApiQuery, RequestBody, parse_id, validation_errors};
use super::{AppState, PageQuery};
use crate::domain::{Email, User, UserId};
use crate::error::{FieldErrors, Result};
use crate::services::auth::check_password_rules;
use crate::services::pagination::PageRequest;
use crate::services::users::{self as service, NewUser, UserChanges};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    #[schema(value_type = super::values::EmailText)]
    pub email: String,
    /// At least 12 characters.
    #[schema(format = Password, min_length = 12, max_length = 1024)]
    pub password: String,
    #[schema(value_type = super::values::RoleName, inline)]
    pub role: String,
}

impl RequestBody for UserRequest {}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[schema(value_type = Option<super::values::RoleName>, inline)]
    pub role: Option<String>,
    #[schema(format = Password, min_length = 12, max_length = 1024)]
    pub password: Option<String>,
}

impl RequestBody for UserPatch {
    fn rule_errors(&self) -> Vec<crate::error::FieldError> {
        validation_errors(parse_changes(self.clone()))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub email: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.to_string(),
            role: user.role.to_string(),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserResponse>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    tag = "users",
    request_body = UserRequest,
    responses(
        (status = 201, description = "The user was created", body = UserResponse,
         headers(("Location" = String, description = "The user's URL"))),
        (status = 409, description = "A user with this e-mail exists", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/users")]
pub async fn create_user(_: Admin, state: web::Data<AppState>, body: ApiJson<UserRequest>) -> Result<HttpResponse> {
    let request = body.0;
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(&request.email));
    let password = errors.check("password", check_password_rules(&request.password)).map(|()| request.password);
    let role = errors.check("role", request.role.parse());
    let new = errors.finish(|| Some(NewUser { email: email?, password: password?, role: role? }))?;
    let user = service::create_user(&state.db, new).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/users/{}", user.id)))
        .json(UserResponse::from(user)))
}

#[utoipa::path(
    tag = "users",
    params(PageQuery),
    responses((status = 200, description = "One page of users", body = UserPage)),
    security(("bearer" = []))
)]
#[get("/users")]
pub async fn list_users(
    _: Admin,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<UserPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_users(&state.db, page).await?;
    Ok(web::Json(UserPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

#[utoipa::path(
    tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The user", body = UserResponse)),
    security(("bearer" = []))
)]
#[get("/users/{id}")]
pub async fn get_user(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> Result<web::Json<UserResponse>> {
    let id: UserId = parse_id(&id, "user")?;
    Ok(web::Json(service::find_user(&state.db, id).await?.into()))
}

#[utoipa::path(
    tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    request_body = UserPatch,
    responses(
        (status = 200, description = "The user as changed", body = UserResponse),
        (status = 409, description = "The last admin cannot be demoted", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[patch("/users/{id}")]
pub async fn update_user(
    _: Admin,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<UserPatch>,
) -> Result<web::Json<UserResponse>> {
    let id: UserId = parse_id(&id, "user")?;
    let changes = parse_changes(body.0)?;
    Ok(web::Json(service::update_user(&state.db, id, changes).await?.into()))
}

#[utoipa::path(
    tag = "users",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "The user was deleted"),
        (status = 409, description = "The last admin cannot be deleted", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/users/{id}")]
pub async fn delete_user(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    let id: UserId = parse_id(&id, "user")?;
    service::delete_user(&state.db, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A user's changes from a patch: every field at fault named.
fn parse_changes(patch: UserPatch) -> Result<UserChanges> {
    let mut errors = FieldErrors::new();
    let role = patch.role.as_deref().and_then(|r| errors.check("role", r.parse()));
    let password = patch.password.and_then(|p| errors.check("password", check_password_rules(&p)).map(|()| p));
    errors.finish(|| Some(UserChanges { role, password }))
}
