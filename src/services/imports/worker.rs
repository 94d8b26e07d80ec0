//! The import worker: it takes queued jobs (and those whose instance died), reads each
//! file in chunks and writes each chunk with the job's progress in one transaction.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::decode::{Record, read_records};
use super::write::store_chunk;
use super::{
    ImportFormat, ImportJob, ImportOptions, LEASE, MAX_ERRORS, Report, RowError, count_records, not_found, plan, to_job,
};
use crate::domain::ImportStatus;
use crate::error::{Error, Result};
use crate::services::keys::Keys;
use crate::storage;
use crate::storage::imports::ImportJobRow;
use crate::storage::{Db, DbConnection, imports as repo};

/// Runs queued imports, and those whose instance died, one at a time. Every instance runs one.
pub struct ImportWorker {
    pub(super) db: Db,
    pub(super) keys: Keys,
    pub(super) wake: Arc<tokio::sync::Notify>,
}

impl ImportWorker {
    pub fn new(db: Db, keys: Keys, wake: Arc<tokio::sync::Notify>) -> Self {
        Self { db, keys, wake }
    }

    pub async fn run(self) {
        loop {
            match self.run_one(None).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(error) => tracing::warn!(error = %error, "import failed; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Takes a job (this one, or any due) and runs it to the end; `None`: nothing to do.
    pub async fn run_one(&self, id: Option<String>) -> Result<Option<ImportJob>> {
        self.run_one_with(id, |_| {}).await
    }

    /// As [`ImportWorker::run_one`], telling `progress` after every chunk.
    pub async fn run_one_with(&self, id: Option<String>, progress: impl FnMut(&Report)) -> Result<Option<ImportJob>> {
        let now = storage::now();
        if id.is_none() && !self.db.read(move |conn| Ok(repo::job_due(conn, now)?)).await? {
            return Ok(None);
        }
        let claimed = self
            .db
            .write(move |conn| {
                Ok(match &id {
                    Some(id) => repo::claim_job_by_id(conn, id, now, now + LEASE)?,
                    None => repo::claim_job(conn, now, now + LEASE)?,
                })
            })
            .await?;
        let Some(row) = claimed else {
            return Ok(None);
        };
        let id = row.id.clone();
        tracing::info!(import = %id, resume_after = row.records_done, "import started");
        let outcome = run_job(&self.db, &self.keys, row, progress).await;
        let now = storage::now();
        let failure = outcome.err().map(|e| match e {
            Error::Validation(errors) => {
                errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
            }
            other => {
                tracing::error!(import = %id, error = %other, "import failed");
                other.to_string()
            }
        });
        let job_id = id.clone();
        let row = self
            .db
            .write(move |conn| {
                let mut row = repo::find_job(conn, &job_id)?.ok_or_else(|| not_found(&job_id))?;
                row.status = ImportStatus::after_run(failure.is_some());
                row.failure = failure;
                row.finished_at = Some(now);
                row.lease_until = None;
                repo::update_job(conn, &row)?;
                Ok(row)
            })
            .await?;
        tracing::info!(import = %id, status = %row.status, records = row.records_done, "import ended");
        // An uploaded file is a copy kept for the job: it goes once the job is done.
        if row.status == ImportStatus::Finished
            && let Some(path) = row.file_path.as_deref().filter(|path| path.ends_with(".upload"))
            && let Err(error) = std::fs::remove_file(path)
        {
            tracing::warn!(import = %id, error = %error, "the uploaded file could not be removed");
        }
        Ok(Some(to_job(row)?))
    }
}

/// Runs a claimed job from where it stopped; `progress` hears the records done so far.
pub async fn run_job(db: &Db, keys: &Keys, row: ImportJobRow, mut progress: impl FnMut(&Report)) -> Result<()> {
    let format: ImportFormat = row.format.parse().map_err(Error::internal)?;
    let options: ImportOptions = serde_json::from_str(&row.options).map_err(Error::internal)?;
    let mut plan = plan(db, &options).await?;
    plan.actor = row.created_by.clone();
    let plan = Arc::new(plan);
    let path = PathBuf::from(row.file_path.clone().ok_or_else(|| Error::internal("the import has no file"))?);
    let skip = row.records_done.max(0) as u64;
    let id = row.id.clone();
    if row.started_at.is_none() || row.records_expected.is_none() {
        let counted = path.clone();
        let expected =
            tokio::task::spawn_blocking(move || count_records(&counted, format)).await.map_err(Error::internal)??;
        let job = id.clone();
        db.write(move |conn| {
            if let Some(mut row) = repo::find_job(conn, &job)? {
                row.started_at = row.started_at.or(Some(storage::now()));
                row.records_expected = Some(expected as i64);
                repo::update_job(conn, &row)?;
            }
            Ok(())
        })
        .await?;
    }
    // The file is read and parsed on a blocking thread while the chunks before are written.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Result<Vec<Record>>>(2);
    let reader_plan = plan.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let outcome =
            read_records(&path, format, &options, &reader_plan, skip, |chunk| sender.blocking_send(Ok(chunk)).is_ok());
        if let Err(error) = outcome {
            let _ = sender.blocking_send(Err(error));
        }
    });
    let mut seen: HashSet<u64> = HashSet::new();
    while let Some(chunk) = receiver.recv().await {
        let chunk = chunk?;
        let (plan, keys, job) = (plan.clone(), keys.clone(), id.clone());
        let first_seen = mark_seen(&mut seen, &chunk);
        let report = db
            .write(move |conn| {
                let done = store_chunk(conn, &keys, &plan, &chunk, &first_seen)?;
                advance_job(conn, &job, &done, chunk.last().map_or(0, |r| r.index))
            })
            .await?;
        progress(&report);
    }
    reader.await.map_err(Error::internal)?;
    Ok(())
}

/// For each record, whether its address is new to this run of the job (a short hash per
/// address keeps the memory small: 8 bytes a row).
pub(super) fn mark_seen(seen: &mut HashSet<u64>, chunk: &[Record]) -> Vec<bool> {
    chunk
        .iter()
        .map(|record| match &record.row {
            Ok(row) => seen.insert(short_hash(&row.email.key())),
            Err(_) => true,
        })
        .collect()
}

pub(super) fn short_hash(text: &str) -> u64 {
    use std::hash::Hasher;
    // SipHash with fixed keys: the same address gives the same hash in every run.
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// Adds a chunk's counts to the job, with its progress, in the chunk's transaction.
pub(super) fn advance_job(conn: &mut DbConnection, id: &str, done: &Report, last_index: u64) -> Result<Report> {
    let mut row = repo::find_job(conn, id)?.ok_or_else(|| not_found(id))?;
    row.records_done = row.records_done.max(last_index as i64);
    row.imported += done.imported;
    row.updated += done.updated;
    row.duplicates += done.duplicates;
    row.suppressed += done.suppressed;
    row.invalid += done.invalid;
    let mut errors: Vec<RowError> = serde_json::from_str(&row.errors).map_err(Error::internal)?;
    let room = MAX_ERRORS.saturating_sub(errors.len());
    errors.extend(done.errors.iter().take(room).cloned());
    row.errors = serde_json::to_string(&errors).map_err(Error::internal)?;
    row.lease_until = Some(storage::now() + LEASE);
    repo::update_job(conn, &row)?;
    to_job(row).map(|job| job.report)
}
