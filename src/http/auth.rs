//! `/api/v1/auth/token`: sign in with an e-mail and password.

use actix_web::{HttpRequest, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::extract::{ApiJson, RequestBody};
use crate::error::Result;
use crate::services::sessions;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[schema(example = "admin@example.org")]
    pub email: String,
    #[schema(format = Password)]
    pub password: String,
    /// The code of the user's authenticator app, for a user who turned two-factor sign-in
    /// on (in the console); ignored for others.
    #[schema(example = "123456", pattern = "^[0-9 ]{6,7}$")]
    pub totp_code: Option<String>,
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
    responses(
        (status = 200, description = "An access token for `Authorization: Bearer …`", body = TokenResponse),
        (status = 401, description = "The e-mail and password do not match a user (the same answer for an unknown address)",
         body = super::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed sign-ins from this address or to this account; `Retry-After` says when to try again",
         body = super::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Every password check slot stayed busy; try again",
         body = super::Problem, content_type = "application/problem+json"),
    )
)]
#[post("/auth/token")]
pub async fn issue_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: ApiJson<TokenRequest>,
) -> Result<web::Json<TokenResponse>> {
    let request = body.0;
    let ip = super::pages::client_ip(&req);
    let credentials = sessions::Credentials {
        email: &request.email,
        password: request.password,
        totp_code: request.totp_code.as_deref(),
    };
    let token = sessions::issue_token(&state.db, &state.tokens, &state.login, ip, credentials).await?;
    Ok(web::Json(TokenResponse {
        access_token: token.access_token,
        token_type: "Bearer".to_owned(),
        expires_in: token.expires_in,
    }))
}
