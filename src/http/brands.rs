//! `/api/v1/brands`: who is asking, as public pages and system mails show it; and each
//! brand's logo, served to those pages.

use actix_web::http::header;
use actix_web::{HttpResponse, delete, get, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiQuery, Editor, LimitedBody, RequestBody, Viewer, parse_id, validation_errors};
use super::{AppState, PageQuery};
use crate::domain::BrandId;
use crate::domain::brand::{Brand, BrandProfile, Color, parse_brand_text, parse_policy_url};
use crate::error::{Error, FieldError, FieldErrors, Result};
use crate::services::brands::{self as service, BrandDefinition};
use crate::services::pagination::PageRequest;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandRequest {
    /// The name people know the sender by.
    #[schema(value_type = super::values::LineText, example = "Acme Coffee")]
    pub name: String,
    /// The legal entity responsible for the data (the controller).
    #[schema(value_type = super::values::LineText, example = "Acme Coffee Roasters SAS")]
    pub legal_name: String,
    /// The postal address, on one or several lines.
    #[schema(example = "12 rue des Fleurs\n75011 Paris\nFrance")]
    pub postal_address: String,
    #[schema(value_type = super::values::PolicyUrl, example = "https://acme.example/privacy")]
    pub privacy_policy_url: String,
    /// Buttons and links, as `#rrggbb`.
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$", example = "#7c2d12")]
    pub accent_color: Option<String>,
    /// The page's background, as `#rrggbb`.
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$", example = "#fffbeb")]
    pub background_color: Option<String>,
    /// A line at the foot of pages and mails, as written; empty or left out: none.
    #[schema(value_type = Option<super::values::ShortText>)]
    pub footer: Option<String>,
    /// The brand of every page and mail that names none (the first brand is, until another
    /// is made it).
    #[serde(default)]
    pub is_default: bool,
}

impl RequestBody for BrandRequest {
    fn rule_errors(&self) -> Vec<FieldError> {
        validation_errors(parse_definition(self))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BrandResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub name: String,
    pub legal_name: String,
    pub postal_address: String,
    pub privacy_policy_url: String,
    pub accent_color: Option<String>,
    pub background_color: Option<String>,
    pub footer: Option<String>,
    pub is_default: bool,
    /// Where the logo is served, once one is uploaded.
    pub logo_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Brand> for BrandResponse {
    fn from(brand: Brand) -> Self {
        let profile = brand.profile;
        Self {
            id: brand.id.to_string(),
            logo_url: brand.logo.map(|_| logo_path(brand.id)),
            name: profile.name,
            legal_name: profile.legal_name,
            postal_address: profile.postal_address,
            privacy_policy_url: profile.privacy_policy_url,
            accent_color: profile.accent_color.map(|c| c.as_str().to_owned()),
            background_color: profile.background_color.map(|c| c.as_str().to_owned()),
            footer: profile.footer,
            is_default: brand.is_default,
            created_at: brand.created_at,
            updated_at: brand.updated_at,
        }
    }
}

/// Where a brand's logo is served (a path on this server).
pub fn logo_path(id: BrandId) -> String {
    format!("/brands/{id}/logo")
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BrandPage {
    pub items: Vec<BrandResponse>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    tag = "brands",
    request_body = BrandRequest,
    responses(
        (status = 201, description = "The brand was created", body = BrandResponse,
         headers(("Location" = String, description = "The brand's URL"))),
        (status = 409, description = "A brand with this name exists", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/brands")]
pub async fn create_brand(_: Editor, state: web::Data<AppState>, body: ApiJson<BrandRequest>) -> Result<HttpResponse> {
    let definition = parse_definition(&body.0)?;
    let brand = service::create_brand(&state.db, definition).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/brands/{}", brand.id)))
        .json(BrandResponse::from(brand)))
}

#[utoipa::path(
    tag = "brands",
    params(PageQuery),
    responses((status = 200, description = "One page of brands, oldest first", body = BrandPage)),
    security(("bearer" = []))
)]
#[get("/brands")]
pub async fn list_brands(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<BrandPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_brands(&state.db, page).await?;
    Ok(web::Json(BrandPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

#[utoipa::path(
    tag = "brands",
    params(("id" = String, Path, description = "The brand's id")),
    responses((status = 200, description = "The brand", body = BrandResponse)),
    security(("bearer" = []))
)]
#[get("/brands/{id}")]
pub async fn get_brand(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<BrandResponse>> {
    let id: BrandId = parse_id(&id, "brand")?;
    Ok(web::Json(service::find_brand(&state.db, id).await?.into()))
}

#[utoipa::path(
    tag = "brands",
    params(("id" = String, Path, description = "The brand's id")),
    request_body = BrandRequest,
    responses(
        (status = 200, description = "The brand as replaced (its logo stays)", body = BrandResponse),
        (status = 409, description = "Another brand has this name", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[put("/brands/{id}")]
pub async fn replace_brand(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<BrandRequest>,
) -> Result<web::Json<BrandResponse>> {
    let id: BrandId = parse_id(&id, "brand")?;
    let definition = parse_definition(&body.0)?;
    Ok(web::Json(service::replace_brand(&state.db, id, definition).await?.into()))
}

#[utoipa::path(
    tag = "brands",
    params(("id" = String, Path, description = "The brand's id")),
    responses(
        (status = 204, description = "The brand was deleted; forms that named it show the default brand"),
        (status = 409, description = "It is the default brand and others exist", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/brands/{id}")]
pub async fn delete_brand(_: Editor, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    let id: BrandId = parse_id(&id, "brand")?;
    service::delete_brand(&state.db, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// An image's bytes as they are.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ImageBody(pub Vec<u8>);

#[utoipa::path(
    tag = "brands",
    params(("id" = String, Path, description = "The brand's id")),
    request_body(
        description = "The logo's bytes, whatever the Content-Type: a PNG, JPEG, WebP or GIF image of at most 200 KiB, known by its first bytes (SVG is refused: it can carry script)",
        content((ImageBody = "application/octet-stream"))
    ),
    responses(
        (status = 200, description = "The brand, with its logo", body = BrandResponse),
        (status = 413, description = "The body is larger than `max_body_bytes`", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[put("/brands/{id}/logo")]
pub async fn upload_logo(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: LimitedBody,
) -> Result<web::Json<BrandResponse>> {
    let id: BrandId = parse_id(&id, "brand")?;
    Ok(web::Json(service::set_logo(&state.db, id, body.0.to_vec()).await?.into()))
}

#[utoipa::path(
    tag = "public",
    params(("id" = String, Path, description = "The brand's id")),
    responses(
        (status = 200, description = "The brand's logo", content(
            (ImageBody = "image/png"), (ImageBody = "image/jpeg"), (ImageBody = "image/webp"), (ImageBody = "image/gif")
        )),
        (status = 404, description = "No such brand, or it has no logo", body = super::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/brands/{id}/logo")]
pub async fn show_logo(state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    let id: BrandId = parse_id(&id, "brand")?;
    let (bytes, media_type) =
        service::find_logo(&state.db, id).await?.ok_or_else(|| Error::NotFound("this brand has no logo".to_owned()))?;
    Ok(HttpResponse::Ok()
        .content_type(media_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox"))
        .body(bytes))
}

/// A brand from a request: every field at fault named.
fn parse_definition(request: &BrandRequest) -> Result<BrandDefinition> {
    let mut errors = FieldErrors::new();
    let name = errors.check("name", parse_brand_text(&request.name, 200, false));
    let legal_name = errors.check("legal_name", parse_brand_text(&request.legal_name, 200, false));
    let postal_address = errors.check("postal_address", parse_brand_text(&request.postal_address, 500, true));
    let privacy_policy_url = errors.check("privacy_policy_url", parse_policy_url(&request.privacy_policy_url));
    let color = |errors: &mut FieldErrors, field: &str, value: &Option<String>| match value {
        None => Some(None),
        Some(value) => errors.check(field, Color::parse(value)).map(Some),
    };
    let accent_color = color(&mut errors, "accent_color", &request.accent_color);
    let background_color = color(&mut errors, "background_color", &request.background_color);
    let footer = match request.footer.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        None => Some(None),
        Some(footer) => errors.check("footer", parse_brand_text(footer, 500, false)).map(Some),
    };
    errors.finish(|| {
        Some(BrandDefinition {
            profile: BrandProfile {
                name: name?,
                legal_name: legal_name?,
                postal_address: postal_address?,
                privacy_policy_url: privacy_policy_url?,
                accent_color: accent_color?,
                background_color: background_color?,
                footer: footer?,
            },
            is_default: request.is_default,
        })
    })
}
