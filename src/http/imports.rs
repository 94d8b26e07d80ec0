//! `/api/v1/manifests`, `/api/v1/imports` and `/api/v1/contacts/export`.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, http::header, post, put, web};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery, Editor, RequestBody, Viewer, parse_id};
use super::{AppState, PageQuery};
use crate::domain::SegmentId;
use crate::error::{Error, Result};
use crate::services::exports::{self, ExportFilter, ExportFormat};
use crate::services::imports::{
    self as service, ImportFormat, ImportJob, ImportOptions, Manifest, ManifestDraft, RowError,
};
use crate::services::pagination::PageRequest;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestRequest {
    /// Who supplied the list.
    #[schema(value_type = super::values::LineText)]
    pub supplier: String,
    /// When the consents were collected.
    #[schema(value_type = String, format = Date)]
    pub collected_on: NaiveDate,
    /// The consent text the people saw.
    #[schema(value_type = super::values::NonBlankText)]
    pub consent_text: String,
    /// Whether that text named us, the sender. Without it the consent is not ours to use
    /// (the default send policy then allows only a re-permission campaign).
    pub brand_named: bool,
    /// The partners listed where the people agreed.
    #[serde(default)]
    #[schema(value_type = Vec<super::values::LineText>)]
    pub partners_shown: Vec<String>,
}

impl RequestBody for ManifestRequest {}

#[derive(Debug, Serialize, ToSchema)]
pub struct ManifestResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub supplier: String,
    #[schema(value_type = String, format = Date)]
    pub collected_on: NaiveDate,
    pub consent_text: String,
    pub brand_named: bool,
    pub partners_shown: Vec<String>,
    /// SHA-256 of the manifest as given.
    pub sha256: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl From<Manifest> for ManifestResponse {
    fn from(m: Manifest) -> Self {
        Self {
            id: m.id,
            supplier: m.supplier,
            collected_on: m.collected_on,
            consent_text: m.consent_text,
            brand_named: m.brand_named,
            partners_shown: m.partners_shown,
            sha256: m.sha256,
            created_by: m.created_by,
            created_at: m.created_at,
        }
    }
}

#[utoipa::path(
    tag = "imports",
    request_body = ManifestRequest,
    responses((status = 201, description = "The manifest, to name in imports of that list", body = ManifestResponse)),
    security(("bearer" = []))
)]
#[post("/manifests")]
pub async fn create_manifest(
    editor: Editor,
    state: web::Data<AppState>,
    body: ApiJson<ManifestRequest>,
) -> Result<HttpResponse> {
    let request = body.0;
    let draft = ManifestDraft {
        supplier: request.supplier,
        collected_on: request.collected_on,
        consent_text: request.consent_text,
        brand_named: request.brand_named,
        partners_shown: request.partners_shown,
    };
    let manifest = service::create_manifest(&state.db, draft, &editor.caller.actor()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/manifests/{}", manifest.id)))
        .json(ManifestResponse::from(manifest)))
}

#[utoipa::path(
    tag = "imports",
    params(("id" = String, Path, description = "The manifest's id")),
    responses((status = 200, description = "The manifest", body = ManifestResponse)),
    security(("bearer" = []))
)]
#[get("/manifests/{id}")]
pub async fn get_manifest(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<ManifestResponse>> {
    let id = parse_id::<uuid::Uuid>(&id, "manifest")?.to_string();
    Ok(web::Json(service::find_manifest(&state.db, id).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    #[schema(value_type = super::values::FileFormatName, inline, example = "csv")]
    pub format: String,
    /// CSV delimiter; detected from the header line when absent.
    pub delimiter: Option<char>,
    /// `utf-8`, `windows-1252`, `iso-8859-1`…; detected when absent.
    pub encoding: Option<String>,
    /// Column → `email`, `company`, `country`, `tags`, `lists`, `attributes`,
    /// `attributes.<name>` or `ignore`. Unnamed columns go by their names (`email`,
    /// `company`…), others become attributes.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Lists (ids or names) every row joins.
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub lists: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Vec<super::values::TagText>)]
    pub tags: Vec<String>,
    /// The legal basis to record for each list a row joins (none: no consent recorded).
    pub basis: Option<String>,
    /// What the people agreed to, for a basis other than `imported`.
    pub consent_text: Option<String>,
    /// The provenance manifest; required with the `imported` basis.
    pub manifest_id: Option<String>,
}

impl RequestBody for ImportRequest {}

#[derive(Debug, Serialize, ToSchema)]
pub struct RowErrorResponse {
    /// Line of the file where the record starts.
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    /// Records of the file done so far.
    pub records: i64,
    /// New contacts.
    pub imported: i64,
    /// Known contacts merged with their row.
    pub updated: i64,
    /// Rows whose address came earlier in the file (merged into it).
    pub duplicates: i64,
    /// Rows skipped: the address is suppressed.
    pub suppressed: i64,
    /// Rows refused.
    pub invalid: i64,
    /// The refused rows' lines and reasons (the first 1,000).
    pub errors: Vec<RowErrorResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// `awaiting_file`, `queued`, `running`, `finished` or `failed`.
    pub status: String,
    pub format: String,
    /// Where to `PUT` the file while the status is `awaiting_file`.
    pub upload_url: String,
    pub file_bytes: i64,
    /// The file's records as counted when the run began, to measure `report.records`
    /// against (by its lines: a quoted value spanning lines counts more); null before.
    pub records_expected: Option<i64>,
    pub report: ImportReport,
    /// Why a failed import stopped.
    pub failure: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<ImportJob> for ImportResponse {
    fn from(job: ImportJob) -> Self {
        Self {
            upload_url: format!("/api/v1/imports/{}/file", job.id),
            id: job.id,
            status: job.status.to_string(),
            format: job.format.to_string(),
            file_bytes: job.file_bytes,
            records_expected: job.records_expected,
            report: ImportReport {
                records: job.report.records,
                imported: job.report.imported,
                updated: job.report.updated,
                duplicates: job.report.duplicates,
                suppressed: job.report.suppressed,
                invalid: job.report.invalid,
                errors: job
                    .report
                    .errors
                    .into_iter()
                    .map(|RowError { line, reason }| RowErrorResponse { line, reason })
                    .collect(),
            },
            failure: job.failure,
            created_by: job.created_by,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportPage {
    pub items: Vec<ImportResponse>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    tag = "imports",
    request_body = ImportRequest,
    responses((status = 201, description = "The import, waiting for its file at `upload_url`", body = ImportResponse)),
    security(("bearer" = []))
)]
#[post("/imports")]
pub async fn create_import(
    editor: Editor,
    state: web::Data<AppState>,
    body: ApiJson<ImportRequest>,
) -> Result<HttpResponse> {
    let request = body.0;
    let format = request.format.parse::<ImportFormat>().map_err(|e| Error::field("format", e))?;
    let options = ImportOptions {
        delimiter: request.delimiter,
        encoding: request.encoding,
        columns: request.columns,
        lists: request.lists,
        tags: request.tags,
        basis: request.basis,
        consent_text: request.consent_text,
        manifest_id: request.manifest_id,
    };
    let job = service::create_job(&state.db, format, options, None, &editor.caller.actor()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/imports/{}", job.id)))
        .json(ImportResponse::from(job)))
}

/// A file's bytes as they are (the body of an upload, not JSON).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileBody(pub Vec<u8>);

#[utoipa::path(
    tag = "imports",
    params(("id" = String, Path, description = "The import's id")),
    request_body(
        description = "The file, as it is (CSV or NDJSON), in any of these content types",
        content(
            (FileBody = "application/octet-stream"),
            (FileBody = "text/csv"),
            (FileBody = "application/x-ndjson"),
        )
    ),
    responses(
        (status = 202, description = "Stored; the import is queued", body = ImportResponse),
        (status = 409, description = "The import has its file already", body = super::Problem, content_type = "application/problem+json"),
        (status = 413, description = "The file is larger than `import_max_bytes`", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[put("/imports/{id}/file")]
pub async fn upload_import(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    mut payload: web::Payload,
) -> Result<HttpResponse> {
    let id = parse_id::<uuid::Uuid>(&id, "import")?.to_string();
    let job = service::find_job(&state.db, id.clone()).await?;
    if !job.awaits_file() {
        return Err(Error::Conflict(format!("the import is {}; its file was given already", job.status)));
    }
    let path = state.settings.imports_dir().join(format!("{id}.upload"));
    let written = receive_file(&state, &path, &mut payload).await?;
    let job = service::attach_file(&state.services, id, path, written as i64).await?;
    Ok(HttpResponse::Accepted().json(ImportResponse::from(job)))
}

/// Writes an uploaded file to `path`, up to `import_max_bytes` (beyond, nothing is kept);
/// answers its size.
pub(crate) async fn receive_file<E: std::fmt::Display>(
    state: &AppState,
    path: &std::path::Path,
    body: &mut (impl futures_util::Stream<Item = std::result::Result<web::Bytes, E>> + Unpin),
) -> Result<u64> {
    if let Some(folder) = path.parent() {
        tokio::fs::create_dir_all(folder).await.map_err(Error::internal)?;
    }
    let mut file = tokio::fs::File::create(path).await.map_err(Error::internal)?;
    let limit = state.settings.import_max_bytes;
    let mut written: u64 = 0;
    let outcome = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::BadRequest(format!("the upload broke off: {e}")))?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(Error::PayloadTooLarge { limit: limit as usize });
            }
            file.write_all(&chunk).await.map_err(Error::internal)?;
        }
        file.sync_all().await.map_err(Error::internal)
    }
    .await;
    if let Err(error) = outcome {
        drop(file);
        let _ = tokio::fs::remove_file(path).await;
        return Err(error);
    }
    Ok(written)
}

#[utoipa::path(
    tag = "imports",
    params(("id" = String, Path, description = "The import's id")),
    responses((status = 200, description = "The import, its progress and its report", body = ImportResponse)),
    security(("bearer" = []))
)]
#[get("/imports/{id}")]
pub async fn get_import(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<ImportResponse>> {
    let id = parse_id::<uuid::Uuid>(&id, "import")?.to_string();
    Ok(web::Json(service::find_job(&state.db, id).await?.into()))
}

#[utoipa::path(
    tag = "imports",
    params(PageQuery),
    responses((status = 200, description = "One page of imports", body = ImportPage)),
    security(("bearer" = []))
)]
#[get("/imports")]
pub async fn list_imports(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<ImportPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_jobs(&state.db, page).await?;
    Ok(web::Json(ImportPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (default) or `ndjson`.
    #[param(value_type = Option<super::values::FileFormatName>, inline)]
    pub format: Option<String>,
    /// Only the contacts on this list (id).
    #[param(format = Uuid)]
    pub list: Option<String>,
    /// Only the contacts with this tag.
    pub tag: Option<String>,
    /// Only the contacts this segment matches (id).
    #[param(format = Uuid)]
    pub segment: Option<String>,
}

#[utoipa::path(
    tag = "contacts",
    params(ExportQuery),
    responses(
        (status = 200, description = "The contacts, streamed: CSV (`id,email,company,country,status,tags,lists,attributes,created_at,updated_at`, lists by name, tags and lists joined by `;`, attributes as JSON) or one JSON object a line; an import reads either back", content_type = "text/csv", body = String),
        (status = 404, description = "No list or segment has the id given", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[get("/contacts/export")]
pub async fn export_contacts(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<ExportQuery>,
) -> Result<HttpResponse> {
    let query = query.0;
    let format =
        query.format.as_deref().unwrap_or("csv").parse::<ExportFormat>().map_err(|e| Error::field("format", e))?;
    let segment = match &query.segment {
        Some(id) => Some(id.parse::<SegmentId>().map_err(|_| Error::field("segment", "is not a segment id"))?),
        None => None,
    };
    let list = match &query.list {
        Some(id) => {
            Some(id.parse::<crate::domain::ListId>().map_err(|_| Error::field("list", "is not a list id"))?.to_string())
        }
        None => None,
    };
    let filter = ExportFilter { list, tag: query.tag, segment };
    let stream = exports::export(&state.db, &state.keys, &state.scripts, filter, format).await?;
    let extension = if format == ExportFormat::Csv { "csv" } else { "ndjson" };
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"contacts.{extension}\"")))
        .streaming(stream.map(|chunk| chunk.map(web::Bytes::from))))
}
