//! Imports in four steps: a file uploaded (chosen, or dropped on the page), its columns
//! mapped beside a preview of its first rows, the lists, basis and manifest chosen, then
//! the job's progress, live, and its report with every refused row.
//!
//! The file is kept as a draft until the import starts; the job is made through the same
//! service and checks as the API's, and the manifest of a bought or rented list is stored
//! with it in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use futures_util::StreamExt;
use serde::Deserialize;

use super::{Console, failure, page, page_with_status, redirect};
use crate::domain::Role;
use crate::domain::consent::{Actor, ConsentBasis};
use crate::error::{Error, FieldError};
use crate::http::AppState;
use crate::http::extract::parse_id;
use crate::services::imports::{
    self as service, COLUMN_TARGETS, FilePreview, ImportFormat, ImportJob, ImportOptions, ManifestDraft, NewImport,
};
use crate::services::lists;
use crate::services::pagination::PageRequest;

/// The bases an import may record (a partner's leads come through the partner API).
fn import_bases() -> impl Iterator<Item = &'static str> {
    ConsentBasis::ALL.iter().filter(|b| **b != ConsentBasis::Partner).map(|b| b.as_str())
}

fn format_of(name: &str) -> ImportFormat {
    let name = name.to_ascii_lowercase();
    if name.ends_with(".ndjson") || name.ends_with(".jsonl") { ImportFormat::Ndjson } else { ImportFormat::Csv }
}

/// Where a draft's file waits: `draft-<id>.upload`, removed by the job once it finishes.
fn draft_path(state: &AppState, draft: uuid::Uuid) -> PathBuf {
    state.settings.imports_dir().join(format!("draft-{draft}.upload"))
}

fn job_view(job: &ImportJob, names: &HashMap<String, String>) -> minijinja::Value {
    let report = &job.report;
    let expected = job.records_expected.map(|e| e.max(report.records));
    let percent = match (job.status, expected) {
        (crate::domain::ImportStatus::Finished, _) => Some(100),
        (_, Some(expected)) if expected > 0 => Some(report.records * 100 / expected),
        _ => None,
    };
    minijinja::context! {
        id => &job.id, status => job.status.to_string(), format => job.format.to_string(),
        done => matches!(job.status, crate::domain::ImportStatus::Finished | crate::domain::ImportStatus::Failed),
        records => report.records, expected, percent, imported => report.imported, updated => report.updated,
        duplicates => report.duplicates, suppressed => report.suppressed, invalid => report.invalid,
        errors => report.errors.iter().map(|e| minijinja::context! { line => e.line, reason => &e.reason }).collect::<Vec<_>>(),
        more_errors => (report.invalid as usize).saturating_sub(report.errors.len()),
        failure => &job.failure, created_by => names.get(&job.created_by).unwrap_or(&job.created_by),
        created_at => job.created_at.format("%Y-%m-%d %H:%M").to_string(),
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
}

/// The imports, newest first on each page, and the upload of a new one.
pub async fn list(state: web::Data<AppState>, console: Console, query: web::Query<ListQuery>) -> HttpResponse {
    imports_page(&state, &console, query.cursor.as_deref(), None).await
}

async fn imports_page(
    state: &AppState,
    console: &Console,
    cursor: Option<&str>,
    error: Option<String>,
) -> HttpResponse {
    let found = async { service::list_jobs(&state.db, PageRequest::parse(cursor, Some(50))?).await };
    let jobs = match found.await {
        Ok(jobs) => jobs,
        Err(error) => return failure(state, &console.frame, error),
    };
    let names = super::actor_names(state, jobs.items.iter().map(|j| j.created_by.as_str())).await;
    let rows: Vec<minijinja::Value> = jobs.items.iter().rev().map(|job| job_view(job, &names)).collect();
    let next = jobs.next_cursor.map(|cursor| format!("/admin/imports?cursor={cursor}"));
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let title = crate::i18n::text(&console.frame.locale, "admin_imports");
    let context =
        minijinja::context! { title, rows, next, error, max_mib => state.settings.import_max_bytes / (1024 * 1024) };
    page_with_status(state, console, status, "imports.html", "imports", context)
}

/// Receives a file posted from the upload form (`csrf` first, then `file`) as a draft.
pub async fn upload(state: web::Data<AppState>, console: Console, mut body: Multipart) -> HttpResponse {
    if let Err(error) = console.require(Role::Editor) {
        return failure(&state, &console.frame, error);
    }
    let draft = uuid::Uuid::new_v4();
    let path = draft_path(&state, draft);
    let mut checked = false;
    let mut received: Option<String> = None;
    while let Some(field) = body.next().await {
        let mut field = match field {
            Ok(field) => field,
            Err(error) => {
                return failure(&state, &console.frame, Error::BadRequest(format!("the upload broke off: {error}")));
            }
        };
        match field.name() {
            Some("csrf") => {
                let mut token = Vec::new();
                while let Some(Ok(chunk)) = field.next().await {
                    token.extend_from_slice(&chunk);
                    if token.len() > 256 {
                        break;
                    }
                }
                if let Err(error) = console.check_csrf(&String::from_utf8_lossy(&token)) {
                    return failure(&state, &console.frame, error);
                }
                checked = true;
            }
            // The token comes before the file in the form: a file without it is not read.
            Some("file") if checked && received.is_none() => {
                let name =
                    field.content_disposition().and_then(|d| d.get_filename()).map(str::to_owned).unwrap_or_default();
                match crate::http::imports::receive_file(&state, &path, &mut field).await {
                    Ok(0) => {
                        let _ = tokio::fs::remove_file(&path).await;
                        let message = crate::i18n::text(&console.frame.locale, "admin_import_no_file").to_owned();
                        return imports_page(&state, &console, None, Some(message)).await;
                    }
                    Ok(_) => received = Some(name),
                    Err(error) => return failure(&state, &console.frame, error),
                }
            }
            _ => {
                // Whatever else the form holds is read and dropped.
                while let Some(Ok(_)) = field.next().await {}
            }
        }
    }
    if !checked {
        return failure(&state, &console.frame, super::csrf_refused());
    }
    match received {
        Some(name) => {
            let format = format_of(&name);
            let name: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
            redirect(&format!("/admin/imports/draft/{draft}?format={format}&name={name}"))
        }
        None => {
            let message = crate::i18n::text(&console.frame.locale, "admin_import_no_file").to_owned();
            imports_page(&state, &console, None, Some(message)).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DraftQuery {
    #[serde(default)]
    format: String,
    #[serde(default)]
    name: String,
}

fn parse_draft(id: &str, state: &AppState) -> Result<(uuid::Uuid, PathBuf), Error> {
    let draft = parse_id::<uuid::Uuid>(id, "draft import")?;
    let path = draft_path(state, draft);
    if !path.is_file() {
        return Err(Error::NotFound(
            "the uploaded file is no longer here (an import started from it, or it was never sent): upload it again"
                .to_owned(),
        ));
    }
    Ok((draft, path))
}

/// The mapping page of a draft: its columns beside its first rows, lists, basis, manifest.
pub async fn show_draft(
    state: web::Data<AppState>,
    console: Console,
    id: web::Path<String>,
    query: web::Query<DraftQuery>,
) -> HttpResponse {
    if let Err(error) = console.require(Role::Editor) {
        return failure(&state, &console.frame, error);
    }
    let form = MappingForm { format: query.format.clone(), name: query.name.clone(), ..MappingForm::default() };
    draft_page(&state, &console, &id, &form, Vec::new()).await
}

/// What the mapping page posts (repeated names gathered: every list ticked).
#[derive(Debug, Default)]
struct MappingForm {
    csrf: String,
    format: String,
    name: String,
    /// Column name → target, as chosen.
    columns: BTreeMap<String, String>,
    lists: Vec<String>,
    tags: String,
    basis: String,
    consent_text: String,
    manifest: HashMap<String, String>,
    brand_named: bool,
}

impl MappingForm {
    fn from_body(body: &[u8]) -> Self {
        let mut form = MappingForm::default();
        let mut names: HashMap<String, String> = HashMap::new();
        let mut targets: HashMap<String, String> = HashMap::new();
        for (key, value) in form_urlencoded::parse(body) {
            let value = value.replace("\r\n", "\n");
            match key.as_ref() {
                "csrf" => form.csrf = value,
                "format" => form.format = value,
                "name" => form.name = value,
                "lists" => form.lists.push(value),
                "tags" => form.tags = value,
                "basis" => form.basis = value,
                "consent_text" => form.consent_text = value,
                "manifest.brand_named" => form.brand_named = true,
                key => {
                    if let Some(rest) = key.strip_prefix("manifest.") {
                        form.manifest.insert(rest.to_owned(), value);
                    } else if let Some(rest) = key.strip_prefix("column.").and_then(|r| r.strip_suffix(".name")) {
                        names.insert(rest.to_owned(), value);
                    } else if let Some(rest) = key.strip_prefix("column.").and_then(|r| r.strip_suffix(".target")) {
                        targets.insert(rest.to_owned(), value);
                    }
                }
            }
        }
        form.columns = names.into_iter().filter_map(|(i, name)| Some((name, targets.remove(&i)?))).collect();
        form
    }

    fn manifest_value(&self, name: &str) -> String {
        self.manifest.get(name).map(|v| v.trim().to_owned()).unwrap_or_default()
    }

    /// The manifest asked for: with the `imported` basis, or whenever one of its inputs is
    /// filled; its date as typed, or the fault of it.
    fn manifest(&self) -> Result<Option<ManifestDraft>, FieldError> {
        let filled = ["supplier", "collected_on", "consent_text", "partners_shown"]
            .iter()
            .any(|name| !self.manifest_value(name).is_empty());
        if !filled && self.basis != ConsentBasis::Imported.as_str() {
            return Ok(None);
        }
        let date = self.manifest_value("collected_on");
        let collected_on = date
            .parse::<chrono::NaiveDate>()
            .map_err(|_| FieldError::new("manifest.collected_on", "must be a date (YYYY-MM-DD)"))?;
        Ok(Some(ManifestDraft {
            supplier: self.manifest_value("supplier"),
            collected_on,
            consent_text: self.manifest_value("consent_text"),
            brand_named: self.brand_named,
            partners_shown: self
                .manifest_value("partners_shown")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        }))
    }

    fn options(&self) -> ImportOptions {
        let some = |text: &str| Some(text.trim().to_owned()).filter(|t| !t.is_empty());
        ImportOptions {
            delimiter: None,
            encoding: None,
            columns: self.columns.clone(),
            lists: self.lists.clone(),
            tags: self.tags.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect(),
            basis: some(&self.basis),
            consent_text: some(&self.consent_text),
            manifest_id: None,
        }
    }
}

async fn draft_page(
    state: &AppState,
    console: &Console,
    id: &str,
    form: &MappingForm,
    errors: Vec<FieldError>,
) -> HttpResponse {
    let format = form.format.parse::<ImportFormat>().unwrap_or(ImportFormat::Csv);
    let found = async {
        let (draft, path) = parse_draft(id, state)?;
        let preview =
            tokio::task::spawn_blocking(move || service::preview_file(&path, format)).await.map_err(Error::internal)?;
        let lists = lists::list_lists(&state.db, PageRequest::parse(None, Some(200))?).await?;
        Ok::<_, Error>((draft, preview, lists))
    };
    let (draft, preview, lists) = match found.await {
        Ok(found) => found,
        Err(error) => return failure(state, &console.frame, error),
    };
    let (preview, file_error) = match preview {
        Ok(preview) => (preview, None),
        Err(Error::Validation(faults)) => (
            FilePreview { columns: Vec::new(), rows: Vec::new(), delimiter: None, encoding: "" },
            Some(faults.iter().map(|f| f.message.clone()).collect::<Vec<_>>().join("; ")),
        ),
        Err(error) => return failure(state, &console.frame, error),
    };
    let columns: Vec<minijinja::Value> = preview
        .columns
        .iter()
        .map(|c| {
            let chosen = form.columns.get(&c.name).cloned().unwrap_or_else(|| c.target.clone());
            let attribute = format!("attributes.{}", c.name);
            minijinja::context! { name => &c.name, chosen, attribute }
        })
        .collect();
    let list_options: Vec<minijinja::Value> = lists
        .items
        .iter()
        .map(|l| {
            let id = l.id.to_string();
            minijinja::context! { checked => form.lists.contains(&id), id, name => &l.name, opt_in => l.opt_in.to_string() }
        })
        .collect();
    let errors: BTreeMap<String, String> = errors.into_iter().map(|e| (e.field, e.message)).collect();
    let status =
        if errors.is_empty() && file_error.is_none() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let manifest: BTreeMap<&str, String> = ["supplier", "collected_on", "consent_text", "partners_shown"]
        .into_iter()
        .map(|name| (name, form.manifest_value(name)))
        .collect();
    let title = crate::i18n::text(&console.frame.locale, "admin_import_map");
    let context = minijinja::context! {
        title, draft => draft.to_string(), file_name => &form.name, format => format.to_string(), file_error,
        columns, rows => preview.rows, delimiter => preview.delimiter.map(|d| if d == '\t' { "tab".to_owned() } else { d.to_string() }),
        encoding => preview.encoding, targets => COLUMN_TARGETS, lists => list_options, bases => import_bases().collect::<Vec<_>>(),
        tags => &form.tags, basis => &form.basis, consent_text => &form.consent_text, manifest, brand_named => form.brand_named,
        errors,
    };
    page_with_status(state, console, status, "import_map.html", "imports", context)
}

/// Starts the import of a draft as mapped; the page comes back with every fault beside its
/// input, or the job's page opens.
pub async fn start(
    state: web::Data<AppState>,
    console: Console,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let form = MappingForm::from_body(&body);
    if let Err(error) = console.check_csrf(&form.csrf).and_then(|()| console.require(Role::Editor)) {
        return failure(&state, &console.frame, error);
    }
    let (draft, path) = match parse_draft(&id, &state) {
        Ok(found) => found,
        Err(error) => return failure(&state, &console.frame, error),
    };
    let manifest = match form.manifest() {
        Ok(manifest) => manifest,
        Err(fault) => return draft_page(&state, &console, &id, &form, vec![fault]).await,
    };
    // The draft becomes the job's file by a rename, which only one request can make: a
    // form sent twice starts one import.
    let taken = path.with_file_name(format!("started-{draft}.upload"));
    if std::fs::rename(&path, &taken).is_err() {
        return failure(&state, &console.frame, Error::Conflict("this file's import has started already".to_owned()));
    }
    let new = NewImport {
        format: form.format.parse::<ImportFormat>().unwrap_or(ImportFormat::Csv),
        options: form.options(),
        manifest,
        file: taken.clone(),
    };
    let started = service::start_import(&state.services, new, &Actor::User(console.session.user.id)).await;
    if started.is_err() {
        // Nothing started: the draft waits again for its mapping.
        let _ = std::fs::rename(&taken, &path);
    }
    match started {
        Ok(job) => redirect(&format!("/admin/imports/{}", job.id)),
        Err(Error::Validation(faults)) => draft_page(&state, &console, &id, &form, faults).await,
        Err(error) => failure(&state, &console.frame, error),
    }
}

/// An import's page: its progress while it runs (the page's script follows it live), then
/// its report.
pub async fn show(state: web::Data<AppState>, console: Console, id: web::Path<String>) -> HttpResponse {
    let found = async {
        let id = parse_id::<uuid::Uuid>(&id, "import")?.to_string();
        service::find_job(&state.db, id).await
    };
    match found.await {
        Ok(job) => {
            let title = crate::i18n::text(&console.frame.locale, "admin_import");
            let names = super::actor_names(&state, std::iter::once(job.created_by.as_str())).await;
            let job = job_view(&job, &names);
            page(&state, &console, "import.html", "imports", minijinja::context! { title, job })
        }
        Err(error) => failure(&state, &console.frame, error),
    }
}

/// An import's progress, for the page's script.
pub async fn progress(state: web::Data<AppState>, console: Console, id: web::Path<String>) -> HttpResponse {
    let found = async {
        let id = parse_id::<uuid::Uuid>(&id, "import")?.to_string();
        service::find_job(&state.db, id).await
    };
    match found.await {
        Ok(job) => {
            let report = &job.report;
            HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(serde_json::json!({
                "status": job.status.to_string(),
                "records": report.records,
                "expected": job.records_expected,
                "imported": report.imported,
                "updated": report.updated,
                "duplicates": report.duplicates,
                "suppressed": report.suppressed,
                "invalid": report.invalid,
            }))
        }
        Err(error) => failure(&state, &console.frame, error),
    }
}
