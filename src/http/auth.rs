//! `/api/v1/auth/token`: sign in with an e-mail and password.

use actix_web::{post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::extract::{ApiJson, RequestBody};
use crate::error::Result;
use crate::services::auth;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[schema(example = "admin@example.org")]
    pub email: String,
    #[schema(format = Password)]
    pub password: String,
}

impl RequestBody for TokenRequest {
    const SERVER_OWNED: &'static [&'static str] = &[];
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the token expires.
    #[schema(example = 3600)]
    pub expires_in: u64,
}

#[utoipa::path(
    tag = "auth",
    request_body = TokenRequest,
    responses((status = 200, description = "An access token for `Authorization: Bearer …`", body = TokenResponse))
)]
#[post("/auth/token")]
pub async fn issue_token(state: web::Data<AppState>, body: ApiJson<TokenRequest>) -> Result<web::Json<TokenResponse>> {
    let request = body.0;
    let token = auth::issue_token(&state.db, &state.tokens, &request.email, request.password).await?;
    Ok(web::Json(TokenResponse {
        access_token: token.access_token,
        token_type: "Bearer".to_owned(),
        expires_in: token.expires_in,
    }))
}
