//! Imports: CSV or NDJSON files of contacts, with the legal basis to record and, for
//! bought or rented lists, a provenance manifest every consent event points at.
//!
//! A job reads its file in chunks of records. Each chunk is written in one transaction
//! together with the job's progress, so a row is stored whole or not at all, and a job
//! interrupted by a crash resumes after the last chunk committed. Invalid records are
//! reported with their line and reason and do not stop the rest; suppressed addresses are
//! skipped and counted; an address already known, or seen earlier in the file, is merged.

mod decode;
mod manifests;
mod plan;
mod preview;
mod worker;
mod write;

pub use manifests::*;
pub use plan::*;
pub use preview::*;
pub use worker::*;

use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::Services;
use super::pagination::{Page, PageRequest};
use crate::domain::ImportStatus;
use crate::domain::consent::Actor;
use crate::error::{Error, FieldError, Result};
use crate::storage::imports::{self as repo, ImportJobRow};
use crate::storage::{self, Db};

/// Records per transaction.
const CHUNK: usize = 2000;
/// Errors kept in a job's report (the count is exact beyond it).
const MAX_ERRORS: usize = 1000;
/// How long a job stays with an instance without news (each chunk renews it): after a
/// crash, another instance (or the restarted one) takes the job over once it passes.
const LEASE: TimeDelta = TimeDelta::seconds(15);

crate::domain::consent::string_enum! {
    /// The file's format.
    ImportFormat {
        Csv = "csv",
        Ndjson = "ndjson",
    }
}

// ---------------------------------------------------------------------------------------
// Jobs

/// An import job as the API shows it.
#[derive(Debug, Clone)]
pub struct ImportJob {
    pub id: String,
    pub status: ImportStatus,
    pub format: ImportFormat,
    pub options: ImportOptions,
    pub file_bytes: i64,
    /// The file's records as counted when the run began (by its lines: a quoted value
    /// spanning lines counts more); `None` before.
    pub records_expected: Option<i64>,
    pub report: Report,
    pub failure: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl ImportJob {
    /// Whether the job waits for its file (which may be given once).
    pub fn awaits_file(&self) -> bool {
        self.status.accepts_file()
    }
}

/// What an import did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Records of the file done.
    pub records: i64,
    /// New contacts.
    pub imported: i64,
    /// Contacts that existed and were merged with the row.
    pub updated: i64,
    /// Rows whose address came earlier in the same file (merged into it).
    pub duplicates: i64,
    /// Rows skipped: the address is suppressed (unsubscribed, bounced, erased).
    pub suppressed: i64,
    /// Rows refused, with their line and reason in `errors`.
    pub invalid: i64,
    pub errors: Vec<RowError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

fn to_job(row: ImportJobRow) -> Result<ImportJob> {
    let status = row.status;
    Ok(ImportJob {
        format: row.format.parse().map_err(Error::internal)?,
        options: serde_json::from_str(&row.options).map_err(Error::internal)?,
        report: Report {
            records: row.records_done,
            imported: row.imported,
            updated: row.updated,
            duplicates: row.duplicates,
            suppressed: row.suppressed,
            invalid: row.invalid,
            errors: serde_json::from_str(&row.errors).map_err(Error::internal)?,
        },
        id: row.id,
        status,
        file_bytes: row.file_bytes,
        records_expected: row.records_expected,
        failure: row.failure,
        created_by: row.created_by,
        created_at: storage::models::utc(row.created_at),
        started_at: row.started_at.map(storage::models::utc),
        finished_at: row.finished_at.map(storage::models::utc),
    })
}

/// Creates a job; its file comes next (`attach_file`), or is named now (`file`, for the
/// command line, which reads it where it is).
pub async fn create_job(
    db: &Db,
    format: ImportFormat,
    options: ImportOptions,
    file: Option<PathBuf>,
    actor: &Actor,
) -> Result<ImportJob> {
    plan(db, &options).await?;
    let row = job_row(format, &options, file, actor)?;
    db.write(move |conn| {
        repo::insert_job(conn, &row)?;
        to_job(row)
    })
    .await
}

/// An import of a file already received, with the manifest of its list when it has none
/// yet: the manifest and the job are stored together or not at all, and the job is queued.
pub struct NewImport {
    pub format: ImportFormat,
    pub options: ImportOptions,
    /// The provenance of a bought or rented list, stored with the job (its id fills
    /// `options.manifest_id`).
    pub manifest: Option<ManifestDraft>,
    pub file: PathBuf,
}

/// Starts [`NewImport`]: every fault of the options and the manifest at once (a manifest's
/// under `manifest.`), else the queued job.
pub async fn start_import(services: &Services, new: NewImport, actor: &Actor) -> Result<ImportJob> {
    let NewImport { format, mut options, manifest, file } = new;
    let mut errors = Vec::new();
    let manifest = match manifest.map(|draft| manifest_row(draft, actor)) {
        Some(Ok(row)) => {
            options.manifest_id = Some(row.id.clone());
            Some(row)
        }
        Some(Err(Error::Validation(faults))) => {
            errors.extend(faults.into_iter().map(|f| FieldError::new(format!("manifest.{}", f.field), f.message)));
            None
        }
        Some(Err(other)) => return Err(other),
        None => None,
    };
    // Without a valid manifest the plan misses it too: that fault is said once, above.
    let manifest_faulty = !errors.is_empty();
    match plan_given(&services.db, &options, manifest.as_ref()).await {
        Ok(_) => {}
        Err(Error::Validation(faults)) => {
            errors.extend(faults.into_iter().filter(|f| !(manifest_faulty && f.field == "manifest_id")))
        }
        Err(other) => return Err(other),
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let row = job_row(format, &options, Some(file), actor)?;
    let job = services
        .db
        .write(move |conn| {
            if let Some(manifest) = &manifest {
                repo::insert_manifest(conn, manifest)?;
            }
            repo::insert_job(conn, &row)?;
            to_job(row)
        })
        .await?;
    services.wake.import.notify_one();
    Ok(job)
}

fn job_row(
    format: ImportFormat,
    options: &ImportOptions,
    file: Option<PathBuf>,
    actor: &Actor,
) -> Result<ImportJobRow> {
    let file_bytes = match &file {
        Some(path) => {
            std::fs::metadata(path).map_err(|e| Error::field("file", format!("{}: {e}", path.display())))?.len() as i64
        }
        None => 0,
    };
    Ok(ImportJobRow {
        id: uuid::Uuid::now_v7().to_string(),
        status: ImportStatus::new_job(file.is_some()),
        format: format.as_str().to_owned(),
        options: serde_json::to_string(options).map_err(Error::internal)?,
        file_path: file.map(|p| p.to_string_lossy().into_owned()),
        file_bytes,
        records_expected: None,
        records_done: 0,
        imported: 0,
        updated: 0,
        duplicates: 0,
        suppressed: 0,
        invalid: 0,
        errors: "[]".to_owned(),
        failure: None,
        lease_until: None,
        created_by: actor.to_string(),
        created_at: storage::now(),
        started_at: None,
        finished_at: None,
    })
}

/// Records the uploaded file of a job waiting for it, and queues the job.
pub async fn attach_file(services: &Services, id: String, path: PathBuf, bytes: i64) -> Result<ImportJob> {
    let db = &services.db;
    let job = db
        .write(move |conn| {
            let mut row = repo::find_job(conn, &id)?.ok_or_else(|| not_found(&id))?;
            if !row.status.accepts_file() {
                return Err(Error::Conflict(format!("the import is {}; its file was given already", row.status)));
            }
            row.status = ImportStatus::Queued;
            row.file_path = Some(path.to_string_lossy().into_owned());
            row.file_bytes = bytes;
            repo::update_job(conn, &row)?;
            to_job(row)
        })
        .await?;
    services.wake.import.notify_one();
    Ok(job)
}

pub async fn find_job(db: &Db, id: String) -> Result<ImportJob> {
    db.read(move |conn| to_job(repo::find_job(conn, &id)?.ok_or_else(|| not_found(&id))?)).await
}

pub async fn list_jobs(db: &Db, page: PageRequest) -> Result<Page<ImportJob>> {
    db.read(move |conn| {
        let rows = repo::list_jobs(conn, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(to_job)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.page(rows, |job| job.id.to_string()))
    })
    .await
}

/// How long an uploaded file waits for its import to start (the console's drafts).
pub const DRAFT_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes the drafts in `folder` (`draft-*.upload`, files uploaded whose import never
/// started) older than [`DRAFT_LIFETIME`]; answers how many went. A draft an import started
/// from is the job's file, which the job removes once it finishes.
pub fn purge_drafts(folder: &std::path::Path, jobs_files: &std::collections::HashSet<String>) -> usize {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age > DRAFT_LIFETIME);
        let draft = name.starts_with("draft-") && name.ends_with(".upload");
        if draft
            && old
            && !jobs_files.contains(&path.to_string_lossy().into_owned())
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// The files of the jobs not finished yet (a draft one of them started from is kept).
pub async fn files_in_use(db: &Db) -> Result<std::collections::HashSet<String>> {
    db.read(|conn| Ok(repo::unfinished_job_files(conn)?.into_iter().collect())).await
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("there is no import {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_drafts_no_import_started_from_are_removed() {
        let folder = std::env::temp_dir().join(format!("consento-drafts-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&folder).unwrap();
        let old = std::time::SystemTime::now() - DRAFT_LIFETIME - std::time::Duration::from_secs(60);
        let file = |name: &str, modified: Option<std::time::SystemTime>| {
            let path = folder.join(name);
            let handle = std::fs::File::create(&path).unwrap();
            if let Some(at) = modified {
                handle.set_modified(at).unwrap();
            }
            path
        };
        let abandoned = file("draft-1.upload", Some(old));
        let fresh = file("draft-2.upload", None);
        let started = file("draft-3.upload", Some(old));
        let job_file = file("0190-job.upload", Some(old));
        let in_use = std::collections::HashSet::from([started.to_string_lossy().into_owned()]);
        assert_eq!(purge_drafts(&folder, &in_use), 1);
        assert!(!abandoned.exists());
        assert!(fresh.exists() && started.exists() && job_file.exists());
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
