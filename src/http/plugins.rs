//! `/api/v1/plugins`: Rhai scripts managed through the API (admins), their validation and
//! dry runs.

use actix_web::{HttpResponse, delete, get, http::header, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::extract::{Admin, ApiJson, RequestBody, Viewer};
use crate::error::{Error, FieldErrors, Result};
use crate::services::plugins::{self as service, Origin, Plugin, PluginDraft, check_name, script_rejected};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginRequest {
    /// a-z, 0-9, `-` and `_`.
    #[schema(example = "engaged-b2b")]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The Rhai script.
    #[schema(example = "fn matches(contact) { contact.country == \"FR\" }")]
    pub source: String,
}

impl RequestBody for PluginRequest {
    const SERVER_OWNED: &'static [&'static str] = &["version", "origin", "hooks", "updated_by", "updated_at"];
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginReplaceRequest {
    pub description: Option<String>,
    pub source: String,
}

impl RequestBody for PluginReplaceRequest {
    const SERVER_OWNED: &'static [&'static str] = PluginRequest::SERVER_OWNED;
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginResponse {
    pub name: String,
    /// The manifest's version for folder plugins; a counter for API plugins.
    pub version: String,
    pub description: String,
    /// `built_in` (shipped in the binary), `folder` (in `plugins/`; both read-only here)
    /// or `api`.
    pub origin: String,
    /// The hooks the script defines.
    pub hooks: Vec<String>,
    #[schema(value_type = Object)]
    pub settings: serde_json::Map<String, Value>,
    pub source: String,
    pub updated_by: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl From<Plugin> for PluginResponse {
    fn from(plugin: Plugin) -> Self {
        Self {
            name: plugin.name,
            version: plugin.version,
            description: plugin.description,
            origin: match plugin.origin {
                Origin::BuiltIn => "built_in",
                Origin::Folder => "folder",
                Origin::Api => "api",
            }
            .to_owned(),
            hooks: plugin.hooks,
            settings: plugin.settings.into_iter().collect(),
            source: plugin.source,
            updated_by: plugin.updated_by,
            updated_at: plugin.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    pub items: Vec<PluginResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginVersionResponse {
    pub version: i32,
    pub description: String,
    pub source: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginVersionList {
    /// Oldest first.
    pub items: Vec<PluginVersionResponse>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub source: String,
    /// The name errors should carry.
    pub name: Option<String>,
}

impl RequestBody for ValidateRequest {}

#[derive(Debug, Serialize, ToSchema)]
pub struct ValidateResponse {
    pub valid: bool,
    pub hooks: Vec<String>,
    pub functions: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunRequest {
    /// A script not saved yet…
    pub source: Option<String>,
    /// …or the name of a plugin.
    pub plugin: Option<String>,
    /// The hook to call, e.g. `matches`.
    #[schema(value_type = super::values::HookName)]
    pub hook: String,
    /// Sample arguments, each any JSON value…
    pub args: Option<Vec<Value>>,
    /// …or the number of real contacts to call it with, one by one (at most 100).
    pub contacts: Option<u32>,
}

impl RequestBody for DryRunRequest {}

#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunResult {
    /// The contact the hook ran with, for runs on real contacts.
    pub contact_id: Option<String>,
    /// What the hook answered, as JSON: a boolean, a string, a map…
    pub result: Value,
    pub operations: u64,
    pub elapsed_ms: f64,
}

impl DryRunResult {
    fn new(contact_id: Option<String>, run: service::DryRun) -> Self {
        Self {
            contact_id,
            result: run.result,
            operations: run.stats.operations,
            elapsed_ms: run.stats.elapsed.as_secs_f64() * 1000.0,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunResponse {
    pub results: Vec<DryRunResult>,
}

#[utoipa::path(
    tag = "plugins",
    request_body = PluginRequest,
    responses(
        (status = 201, description = "Stored as version 1 and compiled", body = PluginResponse),
        (status = 409, description = "A plugin with this name exists", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/plugins")]
pub async fn create_plugin(
    admin: Admin,
    state: web::Data<AppState>,
    body: ApiJson<PluginRequest>,
) -> Result<HttpResponse> {
    let request = body.0;
    let mut errors = FieldErrors::new();
    errors.check("name", check_name(&request.name));
    errors.finish(|| Some(()))?;
    let plugin = service::save_plugin(
        &state.db,
        &state.scripts,
        PluginDraft { name: request.name, description: request.description, source: request.source },
        admin.caller.actor().to_string(),
        true,
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/plugins/{}", plugin.name)))
        .json(PluginResponse::from(plugin)))
}

#[utoipa::path(
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    request_body = PluginReplaceRequest,
    responses(
        (status = 200, description = "The new version, in force at once on every instance", body = PluginResponse),
        (status = 409, description = "A built-in or folder plugin: change it in the plugins folder", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[put("/plugins/{name}")]
pub async fn replace_plugin(
    admin: Admin,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: ApiJson<PluginReplaceRequest>,
) -> Result<web::Json<PluginResponse>> {
    let request = body.0;
    let current = service::find_plugin(&state.db, &state.scripts, name.clone()).await?;
    let plugin = service::save_plugin(
        &state.db,
        &state.scripts,
        PluginDraft {
            name: name.into_inner(),
            description: request.description.unwrap_or(current.description),
            source: request.source,
        },
        admin.caller.actor().to_string(),
        false,
    )
    .await?;
    Ok(web::Json(plugin.into()))
}

#[utoipa::path(
    tag = "plugins",
    responses((status = 200, description = "Every plugin, from the folder and the API", body = PluginList)),
    security(("bearer" = []))
)]
#[get("/plugins")]
pub async fn list_plugins(_: Viewer, state: web::Data<AppState>) -> Result<web::Json<PluginList>> {
    let plugins = service::list_plugins(&state.db, &state.scripts).await?;
    Ok(web::Json(PluginList { items: plugins.into_iter().map(Into::into).collect() }))
}

#[utoipa::path(
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The plugin with its source", body = PluginResponse)),
    security(("bearer" = []))
)]
#[get("/plugins/{name}")]
pub async fn get_plugin(
    _: Viewer,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<web::Json<PluginResponse>> {
    let plugin = service::find_plugin(&state.db, &state.scripts, name.into_inner()).await?;
    Ok(web::Json(plugin.into()))
}

#[utoipa::path(
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "Who changed what, when", body = PluginVersionList)),
    security(("bearer" = []))
)]
#[get("/plugins/{name}/versions")]
pub async fn list_plugin_versions(
    _: Viewer,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<web::Json<PluginVersionList>> {
    let versions = service::list_versions(&state.db, name.into_inner()).await?;
    Ok(web::Json(PluginVersionList {
        items: versions
            .into_iter()
            .map(|v| PluginVersionResponse {
                version: v.version,
                description: v.description,
                source: v.source,
                created_by: v.created_by,
                created_at: v.created_at,
            })
            .collect(),
    }))
}

#[utoipa::path(
    tag = "plugins",
    params(("name" = String, Path, description = "The plugin's name")),
    responses(
        (status = 204, description = "Deleted with its versions"),
        (status = 409, description = "A folder plugin, or one a segment uses", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/plugins/{name}")]
pub async fn delete_plugin(_: Admin, state: web::Data<AppState>, name: web::Path<String>) -> Result<HttpResponse> {
    service::delete_plugin(&state.db, &state.scripts.folder, name.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(
    tag = "plugins",
    request_body = ValidateRequest,
    responses(
        (status = 200, description = "The script compiles", body = ValidateResponse),
        (status = 422, description = "It does not: the script, line, column and message", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/plugins/validate")]
pub async fn validate_plugin(
    _: Viewer,
    state: web::Data<AppState>,
    body: ApiJson<ValidateRequest>,
) -> Result<web::Json<ValidateResponse>> {
    let request = body.0;
    let name = request.name.unwrap_or_else(|| "script".to_owned());
    let validation = service::validate(&state.scripts.host, &name, &request.source).map_err(script_rejected)?;
    Ok(web::Json(ValidateResponse { valid: true, hooks: validation.hooks, functions: validation.functions }))
}

#[utoipa::path(
    tag = "plugins",
    request_body = DryRunRequest,
    responses(
        (status = 200, description = "What the hook answered, the operations used and the time taken; nothing was changed", body = DryRunResponse),
        (status = 404, description = "There is no plugin of that name", body = super::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The script failed: the script, line, column and message", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/plugins/dry-run")]
pub async fn dry_run(
    _: Admin,
    state: web::Data<AppState>,
    body: ApiJson<DryRunRequest>,
) -> Result<web::Json<DryRunResponse>> {
    let request = body.0;
    let (name, source) = match (request.source, request.plugin) {
        (Some(source), None) => ("script".to_owned(), source),
        (None, Some(plugin)) => {
            let plugin = service::find_plugin(&state.db, &state.scripts, plugin).await?;
            (plugin.name, plugin.source)
        }
        _ => return Err(Error::field("source", "give either source or plugin")),
    };
    let mut results = Vec::new();
    match (request.args, request.contacts) {
        (Some(args), None) => {
            let run = service::dry_run(state.scripts.host.clone(), name, source, request.hook, args).await?;
            results.push(DryRunResult::new(None, run));
        }
        (None, Some(count)) => {
            let runs =
                service::dry_run_on_contacts(&state.db, state.scripts.host.clone(), name, source, request.hook, count)
                    .await?;
            results = runs
                .into_iter()
                .map(|(contact_id, run)| DryRunResult::new(Some(contact_id.to_string()), run))
                .collect();
        }
        _ => return Err(Error::field("args", "give either args or contacts")),
    }
    Ok(web::Json(DryRunResponse { results }))
}
