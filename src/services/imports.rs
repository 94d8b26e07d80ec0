//! Imports: CSV or NDJSON files of contacts, with the legal basis to record and, for
//! bought or rented lists, a provenance manifest every consent event points at.
//!
//! A job reads its file in chunks of records. Each chunk is written in one transaction
//! together with the job's progress, so a row is stored whole or not at all, and a job
//! interrupted by a crash resumes after the last chunk committed. Invalid records are
//! reported with their line and reason and do not stop the rest; suppressed addresses are
//! skipped and counted; an address already known, or seen earlier in the file, is merged.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Services;
use super::keys::Keys;
use super::pagination::{Page, PageRequest};
use crate::domain::consent::{Actor, ConsentAction, ConsentBasis, ConsentStatus, Evidence, Purpose, current_consents};
use crate::domain::contact::parse_short_text;
use crate::domain::{ContactStatus, Country, Email, ListId, Tag};
use crate::error::{Error, FieldError, Result};
use crate::storage::consent::NewConsentEvent;
use crate::storage::imports::{self as repo, ImportJobRow, ManifestRow, status};
use crate::storage::models::ContactRow;
use crate::storage::{self, Db, DbConnection};

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
// Provenance manifests

/// Where a bought, rented or migrated list came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub id: String,
    pub supplier: String,
    pub collected_on: NaiveDate,
    /// The consent text the people saw.
    pub consent_text: String,
    /// Whether that text named us (the sender): without it, the consent is not ours.
    pub brand_named: bool,
    /// The partners listed where the people gave their consent.
    pub partners_shown: Vec<String>,
    pub sha256: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ManifestDraft {
    pub supplier: String,
    pub collected_on: NaiveDate,
    pub consent_text: String,
    pub brand_named: bool,
    #[serde(default)]
    pub partners_shown: Vec<String>,
}

fn to_manifest(row: ManifestRow) -> Result<Manifest> {
    Ok(Manifest {
        collected_on: row.collected_on.parse().map_err(Error::internal)?,
        partners_shown: serde_json::from_str(&row.partners_shown).map_err(Error::internal)?,
        created_at: storage::models::utc(row.created_at),
        id: row.id,
        supplier: row.supplier,
        consent_text: row.consent_text,
        brand_named: row.brand_named,
        sha256: row.sha256,
        created_by: row.created_by,
    })
}

pub async fn create_manifest(db: &Db, draft: ManifestDraft, actor: &Actor) -> Result<Manifest> {
    let mut errors = Vec::new();
    if draft.supplier.trim().is_empty() {
        errors.push(FieldError::new("supplier", "must name who supplied the list"));
    }
    if draft.consent_text.trim().is_empty() {
        errors.push(FieldError::new("consent_text", "must hold the text the people saw when they agreed"));
    }
    if draft.collected_on > Utc::now().date_naive() {
        errors.push(FieldError::new("collected_on", "is in the future"));
    }
    for (index, partner) in draft.partners_shown.iter().enumerate() {
        if partner.trim().is_empty() {
            errors.push(FieldError::new(format!("partners_shown[{index}]"), "must not be empty"));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let canonical = serde_json::to_vec(&draft).map_err(Error::internal)?;
    let row = ManifestRow {
        id: uuid::Uuid::now_v7().to_string(),
        supplier: draft.supplier.trim().to_owned(),
        collected_on: draft.collected_on.to_string(),
        consent_text: draft.consent_text,
        brand_named: draft.brand_named,
        partners_shown: serde_json::to_string(&draft.partners_shown).map_err(Error::internal)?,
        sha256: crate::domain::consent::sha256_hex(&canonical),
        created_by: actor.to_string(),
        created_at: storage::now(),
    };
    db.write(move |conn| {
        repo::insert_manifest(conn, &row)?;
        to_manifest(row)
    })
    .await
}

pub async fn find_manifest(db: &Db, id: String) -> Result<Manifest> {
    db.read(move |conn| {
        let row =
            repo::find_manifest(conn, &id)?.ok_or_else(|| Error::NotFound(format!("there is no manifest {id}")))?;
        to_manifest(row)
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Options

/// What an import does with its file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportOptions {
    /// CSV: the delimiter; detected from the header line when not given.
    pub delimiter: Option<char>,
    /// `utf-8` or `windows-1252` (also for Latin-1); detected when not given.
    pub encoding: Option<String>,
    /// Column (or NDJSON key) → `email`, `company`, `country`, `tags`, `lists`,
    /// `attributes` (a JSON object), `attributes.<name>`, `status`, `suppressed` or
    /// `ignore`. Columns not named here: `email`, `company`, `country`, `tags`, `lists`,
    /// `attributes`, `status`, `suppressed` by their names, `id`, `created_at`,
    /// `updated_at` ignored, any other as an attribute. A row whose `status` says the
    /// person left (`unsubscribed`, `bounced`, `complained`, Mailchimp's `cleaned`) or
    /// whose `suppressed` is true becomes a suppression, never a subscription.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Lists (ids or names) every row joins.
    #[serde(default)]
    pub lists: Vec<String>,
    /// Tags every row gets.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The legal basis recorded for each list a row joins; none: no consent is recorded.
    pub basis: Option<ConsentBasisName>,
    /// The consent text the people saw (for a basis without a manifest).
    pub consent_text: Option<String>,
    /// The provenance manifest (required for the `imported` basis).
    pub manifest_id: Option<String>,
}

/// A basis as written in options (kept as text so options stay readable when stored).
pub type ConsentBasisName = String;

/// Where a column goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Email,
    Company,
    Country,
    Tags,
    Lists,
    Attributes,
    Attribute(String),
    /// `active`, `unsubscribed`, `bounced`, `complained` (and Mailchimp's words).
    Status,
    /// `true` when the address is on the suppression list.
    Suppressed,
    Ignore,
}

impl Target {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "email" => Target::Email,
            "company" => Target::Company,
            "country" => Target::Country,
            "tags" => Target::Tags,
            "lists" => Target::Lists,
            "attributes" => Target::Attributes,
            "status" => Target::Status,
            "suppressed" => Target::Suppressed,
            "ignore" => Target::Ignore,
            other => Target::Attribute(other.strip_prefix("attributes.").filter(|name| !name.is_empty())?.to_owned()),
        })
    }

    fn default_for(column: &str) -> Self {
        match column.trim().to_lowercase().as_str() {
            "email" | "e-mail" | "email_address" => Target::Email,
            "company" => Target::Company,
            "country" => Target::Country,
            "tags" => Target::Tags,
            "lists" => Target::Lists,
            "attributes" => Target::Attributes,
            "status" => Target::Status,
            "suppressed" => Target::Suppressed,
            "id" | "created_at" | "updated_at" => Target::Ignore,
            _ => Target::Attribute(column.trim().to_owned()),
        }
    }
}

/// Options checked against the database: lists resolved, the basis parsed, the manifest found.
#[derive(Debug, Clone)]
struct Plan {
    columns: BTreeMap<String, Target>,
    lists: Vec<ListId>,
    tags: Vec<Tag>,
    basis: Option<ConsentBasis>,
    evidence: Evidence,
    /// Every list, by id and by name, for `lists` columns.
    known_lists: HashMap<String, ListId>,
    /// Who the consent events name: the job's creator.
    actor: String,
}

/// Checks options; answers the plan or every fault, each named.
async fn plan(db: &Db, options: &ImportOptions) -> Result<Plan> {
    let mut errors = Vec::new();
    let mut columns = BTreeMap::new();
    for (column, target) in &options.columns {
        match Target::parse(target) {
            Some(target) => {
                columns.insert(column.clone(), target);
            }
            None => errors.push(FieldError::new(
                format!("columns.{column}"),
                "must be email, company, country, tags, lists, attributes, attributes.<name>, status, suppressed or ignore",
            )),
        }
    }
    if let Some(delimiter) = options.delimiter
        && (!delimiter.is_ascii() || delimiter.is_ascii_alphanumeric() || delimiter == '"')
    {
        errors.push(FieldError::new("delimiter", "must be one ASCII punctuation or whitespace character"));
    }
    if let Some(encoding) = &options.encoding
        && encoding_rs::Encoding::for_label(encoding.as_bytes()).is_none()
    {
        errors.push(FieldError::new("encoding", "is not an encoding name (utf-8, windows-1252, iso-8859-1…)"));
    }
    let tags: Vec<Tag> = options
        .tags
        .iter()
        .enumerate()
        .filter_map(|(index, tag)| {
            Tag::parse(tag).map_err(|e| errors.push(FieldError::new(format!("tags[{index}]"), e))).ok()
        })
        .collect();
    let basis = match &options.basis {
        Some(basis) => match basis.parse::<ConsentBasis>() {
            Ok(basis) => Some(basis),
            Err(e) => {
                errors.push(FieldError::new("basis", e));
                None
            }
        },
        None => None,
    };
    let known_lists = db
        .read(|conn| {
            Ok(storage::lists::list_lists(conn, None, i64::MAX)?
                .into_iter()
                .flat_map(|list| {
                    let id: Option<ListId> = list.id.parse().ok();
                    id.map(|id| [(list.id.clone(), id), (list.name.clone(), id)])
                })
                .flatten()
                .collect::<HashMap<String, ListId>>())
        })
        .await?;
    let mut lists = Vec::new();
    for (index, list) in options.lists.iter().enumerate() {
        match known_lists.get(list) {
            Some(id) => lists.push(*id),
            None => errors.push(FieldError::new(format!("lists[{index}]"), format!("there is no list {list}"))),
        }
    }
    let manifest = match &options.manifest_id {
        Some(id) => {
            let id = id.clone();
            let found = db.read(move |conn| Ok(repo::find_manifest(conn, &id)?)).await?;
            if found.is_none() {
                errors.push(FieldError::new("manifest_id", "there is no such manifest"));
            }
            found
        }
        None => None,
    };
    match basis {
        Some(ConsentBasis::Imported) if manifest.is_none() && options.manifest_id.is_none() => errors.push(
            FieldError::new("manifest_id", "a list imported on the `imported` basis needs its provenance manifest"),
        ),
        Some(_) if manifest.is_none() && options.consent_text.as_deref().is_none_or(|t| t.trim().is_empty()) => {
            errors.push(FieldError::new("consent_text", "must hold what the people agreed to (or give a manifest)"))
        }
        Some(_) if lists.is_empty() && !columns.values().any(|t| *t == Target::Lists) => {
            errors.push(FieldError::new("lists", "name the lists the consent is for"))
        }
        None if manifest.is_some() => errors.push(FieldError::new("basis", "a manifest goes with a basis")),
        _ => {}
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let evidence = Evidence {
        method: "import".to_owned(),
        consent_text: manifest.as_ref().map(|m| m.consent_text.clone()).or_else(|| options.consent_text.clone()),
        manifest_id: manifest.map(|m| m.id),
        ..Evidence::default()
    };
    Ok(Plan { columns, lists, tags, basis, evidence, known_lists, actor: String::new() })
}

// ---------------------------------------------------------------------------------------
// Jobs

/// An import job as the API shows it.
#[derive(Debug, Clone)]
pub struct ImportJob {
    pub id: String,
    pub status: String,
    pub format: ImportFormat,
    pub options: ImportOptions,
    pub file_bytes: i64,
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
        self.status == status::AWAITING_FILE
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
        status: row.status,
        file_bytes: row.file_bytes,
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
    let file_bytes = match &file {
        Some(path) => {
            std::fs::metadata(path).map_err(|e| Error::field("file", format!("{}: {e}", path.display())))?.len() as i64
        }
        None => 0,
    };
    let row = ImportJobRow {
        id: uuid::Uuid::now_v7().to_string(),
        status: if file.is_some() { status::QUEUED } else { status::AWAITING_FILE }.to_owned(),
        format: format.as_str().to_owned(),
        options: serde_json::to_string(&options).map_err(Error::internal)?,
        file_path: file.map(|p| p.to_string_lossy().into_owned()),
        file_bytes,
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
    };
    db.write(move |conn| {
        repo::insert_job(conn, &row)?;
        to_job(row)
    })
    .await
}

/// Records the uploaded file of a job waiting for it, and queues the job.
pub async fn attach_file(services: &Services, id: String, path: PathBuf, bytes: i64) -> Result<ImportJob> {
    let db = &services.db;
    let job = db
        .write(move |conn| {
            let mut row = repo::find_job(conn, &id)?.ok_or_else(|| not_found(&id))?;
            if row.status != status::AWAITING_FILE {
                return Err(Error::Conflict(format!("the import is {}; its file was given already", row.status)));
            }
            row.status = status::QUEUED.to_owned();
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
        Ok(page.page(rows, |job| job.id.clone()))
    })
    .await
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("there is no import {id}"))
}

/// Runs queued imports, and those whose instance died, one at a time. Every instance runs one.
pub struct ImportWorker {
    db: Db,
    keys: Keys,
    wake: Arc<tokio::sync::Notify>,
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
                row.status = if failure.is_some() { status::FAILED } else { status::FINISHED }.to_owned();
                row.failure = failure;
                row.finished_at = Some(now);
                row.lease_until = None;
                repo::update_job(conn, &row)?;
                Ok(row)
            })
            .await?;
        tracing::info!(import = %id, status = %row.status, records = row.records_done, "import ended");
        // An uploaded file is a copy kept for the job: it goes once the job is done.
        if row.status == status::FINISHED
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
    if row.started_at.is_none() {
        let job = id.clone();
        db.write(move |conn| {
            if let Some(mut row) = repo::find_job(conn, &job)? {
                row.started_at = Some(storage::now());
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
fn mark_seen(seen: &mut HashSet<u64>, chunk: &[Record]) -> Vec<bool> {
    chunk
        .iter()
        .map(|record| match &record.row {
            Ok(row) => seen.insert(short_hash(&row.email.key())),
            Err(_) => true,
        })
        .collect()
}

fn short_hash(text: &str) -> u64 {
    use std::hash::Hasher;
    // SipHash with fixed keys: the same address gives the same hash in every run.
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// Adds a chunk's counts to the job, with its progress, in the chunk's transaction.
fn advance_job(conn: &mut DbConnection, id: &str, done: &Report, last_index: u64) -> Result<Report> {
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

// ---------------------------------------------------------------------------------------
// Reading

/// One record of the file: its index (1-based, for resuming), its line, and the row or
/// why it is refused.
struct Record {
    index: u64,
    line: u64,
    row: std::result::Result<Row, String>,
}

/// A valid row.
#[derive(Debug, Clone)]
struct Row {
    email: Email,
    company: Option<String>,
    country: Option<Country>,
    tags: Vec<Tag>,
    lists: Vec<ListId>,
    attributes: Map<String, Value>,
    /// The person left (the reason, as the suppression records it): the row suppresses
    /// the address and subscribes nothing.
    left: Option<String>,
    /// The file's `suppressed` column said so.
    suppressed: bool,
}

/// Reads the file in chunks, skipping the first `skip` records (done before a restart);
/// `each` answers false to stop.
fn read_records(
    path: &Path,
    format: ImportFormat,
    options: &ImportOptions,
    plan: &Plan,
    skip: u64,
    mut each: impl FnMut(Vec<Record>) -> bool,
) -> Result<()> {
    let open = || std::fs::File::open(path).map_err(|e| Error::internal(format!("{}: {e}", path.display())));
    let mut head = Vec::with_capacity(64 * 1024);
    open()?.take(64 * 1024).read_to_end(&mut head).map_err(Error::internal)?;
    let file = open()?;
    let encoding = match &options.encoding {
        Some(label) => encoding_rs::Encoding::for_label(label.as_bytes()).unwrap_or(encoding_rs::UTF_8),
        None => detect_encoding(&head),
    };
    let text = BufReader::with_capacity(256 * 1024, Decoding::new(file, encoding));
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut push = |record: Record, chunk: &mut Vec<Record>| -> bool {
        if record.index > skip {
            chunk.push(record);
        }
        if chunk.len() >= CHUNK { each(std::mem::replace(chunk, Vec::with_capacity(CHUNK))) } else { true }
    };
    match format {
        ImportFormat::Csv => {
            let delimiter = options.delimiter.map_or_else(|| detect_delimiter(&head), |d| d as u8);
            let mut reader =
                csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).from_reader(text);
            let headers: Vec<String> = reader
                .headers()
                .map_err(|e| Error::field("file", format!("the header line cannot be read: {e}")))?
                .iter()
                .map(|h| h.trim_start_matches('\u{feff}').trim().to_owned())
                .collect();
            let targets: Vec<Target> = headers
                .iter()
                .map(|h| plan.columns.get(h).cloned().unwrap_or_else(|| Target::default_for(h)))
                .collect();
            if !targets.contains(&Target::Email) {
                return Err(Error::field("columns", "no column holds the e-mail address (name one `email`)"));
            }
            // With CRLF line ends the csv crate puts a record's start on the `\n` ending the
            // line before, one line early.
            let crlf = u64::from(head.windows(2).any(|pair| pair == b"\r\n"));
            let mut record = csv::StringRecord::new();
            let mut index = 0u64;
            loop {
                let line = reader.position().line() + 1;
                match reader.read_record(&mut record) {
                    Ok(false) => break,
                    Ok(true) => {
                        index += 1;
                        if index <= skip {
                            continue;
                        }
                        let line = record.position().map_or(line, |p| p.line() + crlf);
                        let fields = targets
                            .iter()
                            .zip(record.iter())
                            .map(|(t, v)| (t, Value::String(super::exports::spreadsheet_unsafe(v).to_owned())));
                        let row = to_row(fields, plan);
                        let row = if record.len() > targets.len() {
                            Err(format!("has {} fields, the header {}", record.len(), targets.len()))
                        } else {
                            row
                        };
                        if !push(Record { index, line, row }, &mut chunk) {
                            return Ok(());
                        }
                    }
                    Err(error) => {
                        index += 1;
                        let row = Err(format!("cannot be read: {error}"));
                        if !push(Record { index, line, row }, &mut chunk) {
                            return Ok(());
                        }
                        if !matches!(error.kind(), csv::ErrorKind::Utf8 { .. } | csv::ErrorKind::UnequalLengths { .. })
                        {
                            break;
                        }
                    }
                }
            }
        }
        ImportFormat::Ndjson => {
            for (number, line) in text.lines().enumerate() {
                let index = number as u64 + 1;
                if index <= skip {
                    continue;
                }
                let line_text = line.map_err(|e| Error::internal(format!("line {index}: {e}")))?;
                if line_text.trim().is_empty() {
                    continue;
                }
                let row = match serde_json::from_str::<Map<String, Value>>(&line_text) {
                    Ok(object) => {
                        let targets: Vec<(Target, Value)> = object
                            .into_iter()
                            .map(|(key, value)| {
                                (plan.columns.get(&key).cloned().unwrap_or_else(|| Target::default_for(&key)), value)
                            })
                            .collect();
                        if targets.iter().any(|(t, _)| *t == Target::Email) {
                            to_row(targets.iter().map(|(t, v)| (t, v.clone())), plan)
                        } else {
                            Err("email: is missing".to_owned())
                        }
                    }
                    Err(e) => Err(format!("is not a JSON object: {e}")),
                };
                if !push(Record { index, line: index, row }, &mut chunk) {
                    return Ok(());
                }
            }
        }
    }
    if !chunk.is_empty() {
        each(chunk);
    }
    Ok(())
}

/// UTF-8 (with or without a byte-order mark) when the start of the file is valid UTF-8,
/// otherwise Windows-1252 (a superset of Latin-1, what spreadsheets write in western Europe).
fn detect_encoding(head: &[u8]) -> &'static encoding_rs::Encoding {
    if let Some((encoding, _)) = encoding_rs::Encoding::for_bom(head) {
        return encoding;
    }
    match std::str::from_utf8(head) {
        Ok(_) => encoding_rs::UTF_8,
        // A multi-byte character cut by the end of the sample is still UTF-8.
        Err(e) if e.error_len().is_none() && head.len() >= 64 * 1024 - 4 => encoding_rs::UTF_8,
        Err(_) => encoding_rs::WINDOWS_1252,
    }
}

/// The most frequent of `,` `;` tab `|` on the header line, outside quotes.
fn detect_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or(head);
    let mut counts = [0usize; 4];
    let candidates = [b',', b';', b'\t', b'|'];
    let mut quoted = false;
    for byte in line {
        if *byte == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(at) = candidates.iter().position(|c| c == byte) {
            counts[at] += 1;
        }
    }
    let best = (0..4).max_by_key(|i| (counts[*i], usize::from(*i == 0))).unwrap_or(0);
    if counts[best] == 0 { b',' } else { candidates[best] }
}

/// Reads bytes in an encoding as UTF-8.
struct Decoding<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    input: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    /// The decoder saw the end (it must not be called again).
    finished: bool,
}

impl<R: Read> Decoding<R> {
    fn new(inner: R, encoding: &'static encoding_rs::Encoding) -> Self {
        Self {
            inner,
            decoder: encoding.new_decoder_with_bom_removal(),
            input: vec![0; 64 * 1024],
            start: 0,
            end: 0,
            eof: false,
            finished: false,
        }
    }
}

impl<R: Read> Read for Decoding<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.len() < 4 {
            return Err(std::io::Error::other("the read buffer must hold at least 4 bytes"));
        }
        loop {
            if self.finished {
                return Ok(0);
            }
            if self.start == self.end && !self.eof {
                let read = self.inner.read(&mut self.input)?;
                self.start = 0;
                self.end = read;
                self.eof = read == 0;
            }
            let (result, read, written, _) =
                self.decoder.decode_to_utf8(&self.input[self.start..self.end], out, self.eof);
            self.start += read;
            // At the end, the decoder is done once it has written all it held back; it must
            // not be called again.
            self.finished = self.eof && result == encoding_rs::CoderResult::InputEmpty;
            if written > 0 || self.finished {
                return Ok(written);
            }
        }
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.clone()).filter(|t| !t.trim().is_empty()),
        other => Some(other.to_string()),
    }
}

/// Several values: a JSON array, or text split on `;` (or `,`).
fn values_of(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items.iter().filter_map(text_of).collect(),
        other => text_of(other)
            .map(|text| {
                let separator = if text.contains(';') { ';' } else { ',' };
                text.split(separator).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
            })
            .unwrap_or_default(),
    }
}

/// Checks one record; every fault of the row in one reason.
fn to_row<'a>(fields: impl Iterator<Item = (&'a Target, Value)>, plan: &Plan) -> std::result::Result<Row, String> {
    let mut faults = Vec::new();
    let mut email = None;
    let mut row = Row {
        email: Email::from_trusted(String::new()),
        company: None,
        country: None,
        tags: plan.tags.clone(),
        lists: plan.lists.clone(),
        attributes: Map::new(),
        left: None,
        suppressed: false,
    };
    for (target, value) in fields {
        match target {
            Target::Email => match text_of(&value).map(|t| Email::parse(&t)) {
                Some(Ok(parsed)) => email = Some(parsed),
                Some(Err(e)) => faults.push(format!("email: {e}")),
                None => faults.push("email: is empty".to_owned()),
            },
            Target::Company => {
                if let Some(text) = text_of(&value) {
                    match parse_short_text(&text, 200) {
                        Ok(company) => row.company = Some(company),
                        Err(e) => faults.push(format!("company: {e}")),
                    }
                }
            }
            Target::Country => {
                if let Some(text) = text_of(&value) {
                    match Country::parse(&text) {
                        Ok(country) => row.country = Some(country),
                        Err(e) => faults.push(format!("country: {e}")),
                    }
                }
            }
            Target::Tags => {
                for tag in values_of(&value) {
                    match Tag::parse(&tag) {
                        Ok(tag) if !row.tags.contains(&tag) => row.tags.push(tag),
                        Ok(_) => {}
                        Err(e) => faults.push(format!("tags: {tag:?} {e}")),
                    }
                }
            }
            Target::Lists => {
                for list in values_of(&value) {
                    match plan.known_lists.get(&list) {
                        Some(id) if !row.lists.contains(id) => row.lists.push(*id),
                        Some(_) => {}
                        None => faults.push(format!("lists: there is no list {list}")),
                    }
                }
            }
            Target::Attributes => match value {
                Value::Object(map) => row.attributes.extend(map),
                Value::String(text) if text.trim().is_empty() => {}
                Value::String(text) => match serde_json::from_str::<Map<String, Value>>(&text) {
                    Ok(map) => row.attributes.extend(map),
                    Err(_) => faults.push("attributes: is not a JSON object".to_owned()),
                },
                Value::Null => {}
                _ => faults.push("attributes: is not a JSON object".to_owned()),
            },
            Target::Attribute(name) => {
                if !matches!(&value, Value::Null) && !matches!(&value, Value::String(s) if s.is_empty()) {
                    row.attributes.insert(name.clone(), value);
                }
            }
            Target::Status => {
                if let Some(text) = text_of(&value) {
                    match text.trim().to_lowercase().as_str() {
                        "" | "active" | "subscribed" | "pending" | "transactional" => {}
                        "unsubscribed" | "archived" => row.left = Some("unsubscribed".to_owned()),
                        "bounced" | "cleaned" => row.left = Some("bounced".to_owned()),
                        "complained" => row.left = Some("complained".to_owned()),
                        other => faults.push(format!(
                            "status: {other:?} is not active, subscribed, unsubscribed, bounced, cleaned or complained"
                        )),
                    }
                }
            }
            Target::Suppressed => match &value {
                Value::Bool(flag) => row.suppressed = *flag,
                other => match text_of(other).map(|t| t.trim().to_lowercase()).as_deref() {
                    None | Some("" | "false" | "0" | "no") => {}
                    Some("true" | "1" | "yes") => row.suppressed = true,
                    Some(other) => faults.push(format!("suppressed: {other:?} is not true or false")),
                },
            },
            Target::Ignore => {}
        }
    }
    if row.suppressed && row.left.is_none() {
        row.left = Some("unsubscribed".to_owned());
    }
    match email {
        Some(email) if faults.is_empty() => {
            row.email = email;
            Ok(row)
        }
        None if faults.is_empty() => Err("email: is missing".to_owned()),
        _ => Err(faults.join("; ")),
    }
}

// ---------------------------------------------------------------------------------------
// Writing

/// Stores one chunk (in the caller's transaction); answers its counts.
fn store_chunk(
    conn: &mut DbConnection,
    keys: &Keys,
    plan: &Plan,
    chunk: &[Record],
    first_seen: &[bool],
) -> Result<Report> {
    use crate::storage::contacts as contacts_repo;
    let mut report = Report::default();
    let valid: Vec<(&Record, &Row, bool)> = chunk
        .iter()
        .zip(first_seen)
        .filter_map(|(record, first)| match &record.row {
            Ok(row) => Some((record, row, *first)),
            Err(reason) => {
                report.invalid += 1;
                report.errors.push(RowError { line: record.line, reason: reason.clone() });
                None
            }
        })
        .collect();
    let email_keys: Vec<String> = valid.iter().map(|(_, row, _)| row.email.key()).collect();
    let hashes: Vec<String> = email_keys.iter().map(|key| keys.email_hash(key)).collect();
    let suppressed = storage::consent::suppressed_among(conn, &hashes)?;
    let mut existing: HashMap<String, ContactRow> = contacts_repo::find_rows_by_email_keys(conn, &email_keys)?
        .into_iter()
        .map(|row| (row.email_key.clone(), row))
        .collect();
    let now = storage::now();
    // The contacts this chunk writes, by address, in the order first met.
    let mut order: Vec<String> = Vec::new();
    let mut pending: HashMap<String, (ContactRow, bool, BTreeSet<String>, BTreeSet<ListId>)> = HashMap::new();
    for ((_, row, first), (key, hash)) in valid.iter().zip(email_keys.iter().zip(&hashes)) {
        if suppressed.contains(hash) {
            report.suppressed += 1;
            continue;
        }
        if let Some(reason) = &row.left {
            // The person left where the file comes from: that is remembered, as here.
            leave_in(conn, hash, existing.remove(key), reason, &plan.actor)?;
            report.suppressed += 1;
            continue;
        }
        if !first {
            report.duplicates += 1;
        }
        let entry = match pending.get_mut(key) {
            Some(entry) => entry,
            None => {
                let (contact, new) = match existing.remove(key) {
                    Some(contact) => {
                        if *first {
                            report.updated += 1;
                        }
                        (contact, false)
                    }
                    None => {
                        if *first {
                            report.imported += 1;
                        }
                        (
                            ContactRow {
                                id: uuid::Uuid::now_v7().to_string(),
                                email: row.email.to_string(),
                                email_key: key.clone(),
                                attributes: "{}".to_owned(),
                                company: None,
                                country: None,
                                status: "active".to_owned(),
                                created_at: now,
                                updated_at: now,
                            },
                            true,
                        )
                    }
                };
                order.push(key.clone());
                pending.entry(key.clone()).or_insert((contact, new, BTreeSet::new(), BTreeSet::new()))
            }
        };
        let (contact, _, tags, lists) = entry;
        if !row.attributes.is_empty() {
            let mut attributes: Map<String, Value> = serde_json::from_str(&contact.attributes).unwrap_or_default();
            attributes.extend(row.attributes.clone());
            contact.attributes = Value::Object(attributes).to_string();
        }
        if let Some(company) = &row.company {
            contact.company = Some(company.clone());
        }
        if let Some(country) = &row.country {
            contact.country = Some(country.as_str().to_owned());
        }
        contact.updated_at = now;
        tags.extend(row.tags.iter().map(|t| t.as_str().to_owned()));
        lists.extend(row.lists.iter().copied());
    }
    let (mut new_rows, mut changed) = (Vec::new(), Vec::new());
    let mut tag_rows = Vec::new();
    let mut list_rows = Vec::new();
    let mut grants: Vec<(String, ListId, bool)> = Vec::new();
    for key in &order {
        let Some((contact, new, tags, lists)) = pending.remove(key) else {
            continue;
        };
        for tag in tags {
            tag_rows.push((contact.id.clone(), tag));
        }
        for list in lists {
            list_rows.push((contact.id.clone(), list.to_string()));
            grants.push((contact.id.clone(), list, new));
        }
        if new { new_rows.push(contact) } else { changed.push(contact) }
    }
    contacts_repo::insert_contacts(conn, &new_rows)?;
    for contact in &changed {
        contacts_repo::update_contact(conn, contact)?;
    }
    contacts_repo::add_tags(conn, &tag_rows)?;
    contacts_repo::add_memberships(conn, &list_rows, now)?;
    if let Some(basis) = plan.basis {
        // Consent is recorded only where there is none for the list yet: an import never
        // replaces a stronger basis, and never undoes a withdrawal.
        let known: Vec<&str> = grants.iter().filter(|(_, _, new)| !*new).map(|(id, _, _)| id.as_str()).collect();
        let mut current: HashMap<String, Vec<(Purpose, ConsentStatus)>> = HashMap::new();
        for (id, events) in storage::consent::list_consent_changes_for_contacts(conn, &known)? {
            current.insert(id, current_consents(&events).into_iter().map(|c| (c.purpose, c.status)).collect());
        }
        let events: Vec<NewConsentEvent> = grants
            .into_iter()
            .filter(|(id, list, _)| {
                current.get(id).is_none_or(|states| !states.iter().any(|(p, _)| *p == Purpose::List(*list)))
            })
            .map(|(contact_id, list, _)| NewConsentEvent {
                contact_id,
                email_key: None,
                purpose: Purpose::List(list),
                action: ConsentAction::Granted,
                basis,
                requires_confirmation: false,
                evidence: plan.evidence.clone(),
                actor: plan.actor.clone(),
            })
            .collect();
        storage::consent::append_events(conn, events)?;
    }
    Ok(report)
}

/// Suppresses an address whose row says the person left and, if it is a contact here,
/// withdraws what it receives as leaving everything does.
fn leave_in(conn: &mut DbConnection, hash: &str, contact: Option<ContactRow>, reason: &str, actor: &str) -> Result<()> {
    storage::consent::insert_suppression(conn, hash, reason)?;
    let Some(row) = contact else {
        return Ok(());
    };
    let Some(contact) = storage::contacts::find_contact(conn, &row.id)? else {
        return Ok(());
    };
    let status = match reason {
        "bounced" => ContactStatus::Bounced,
        "complained" => ContactStatus::Complained,
        _ => ContactStatus::Unsubscribed,
    };
    // The job keeps its creator as text; the withdrawals name the same actor.
    let actor = match actor.split_once(':') {
        Some(("user", id)) => id.parse().map_or(Actor::System, Actor::User),
        Some(("api_key", id)) => id.parse().map_or(Actor::System, Actor::ApiKey),
        _ => Actor::System,
    };
    let evidence = Evidence { method: "import".to_owned(), ..Evidence::default() };
    super::consent::leave_all_in(conn, hash, &contact, &evidence, &actor, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(csv: &str) -> Vec<u64> {
        let path = std::env::temp_dir().join(format!("consento-lines-{}.csv", uuid::Uuid::new_v4()));
        std::fs::write(&path, csv).unwrap();
        let plan = Plan {
            columns: BTreeMap::new(),
            lists: Vec::new(),
            tags: Vec::new(),
            basis: None,
            evidence: Evidence::default(),
            known_lists: HashMap::new(),
            actor: String::new(),
        };
        let mut lines = Vec::new();
        read_records(&path, ImportFormat::Csv, &ImportOptions::default(), &plan, 0, |chunk| {
            lines.extend(chunk.iter().map(|r| r.line));
            true
        })
        .unwrap();
        let _ = std::fs::remove_file(&path);
        lines
    }

    #[test]
    fn records_are_numbered_by_the_line_they_start_on_counting_the_header() {
        assert_eq!(lines_of("email\na@x.org\nb@x.org\n"), [2, 3]);
        assert_eq!(lines_of("email\r\na@x.org\r\nb@x.org\r\n"), [2, 3]);
        assert_eq!(lines_of("email,note\na@x.org,\"two\nlines\"\nb@x.org,\n"), [2, 4]);
    }

    #[test]
    fn the_delimiter_and_the_encoding_are_detected() {
        assert_eq!(detect_delimiter(b"email;name;\"a,b\"\n"), b';');
        assert_eq!(detect_delimiter(b"email\tname\n"), b'\t');
        assert_eq!(detect_delimiter(b"email\n"), b',');
        assert_eq!(detect_encoding("Zoë".as_bytes()), encoding_rs::UTF_8);
        assert_eq!(detect_encoding(b"Zo\xeb"), encoding_rs::WINDOWS_1252);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever bytes a file holds, reading it answers: each record is a row or a
        /// reason, numbered in order; nothing panics.
        #[test]
        fn any_file_is_read_without_panicking(
            body in proptest::collection::vec(proptest::prop_oneof![
                proptest::num::u8::ANY,
                proptest::strategy::Just(b'\n'),
                proptest::strategy::Just(b','),
                proptest::strategy::Just(b'"'),
                proptest::strategy::Just(b'@'),
            ], 0..400),
            ndjson in proptest::bool::ANY,
        ) {
            let path = std::env::temp_dir().join(format!("consento-any-{}.txt", uuid::Uuid::new_v4()));
            let mut file = b"email,name\n".to_vec();
            file.extend(&body);
            std::fs::write(&path, &file).unwrap();
            let plan = Plan {
                columns: BTreeMap::new(),
                lists: Vec::new(),
                tags: Vec::new(),
                basis: None,
                evidence: Evidence::default(),
                known_lists: HashMap::new(),
                actor: String::new(),
            };
            let format = if ndjson { ImportFormat::Ndjson } else { ImportFormat::Csv };
            let mut indexes = Vec::new();
            let _ = read_records(&path, format, &ImportOptions::default(), &plan, 0, |chunk| {
                indexes.extend(chunk.iter().map(|r| r.index));
                true
            });
            let _ = std::fs::remove_file(&path);
            proptest::prop_assert!(indexes.windows(2).all(|pair| pair[0] < pair[1]));
        }
    }
}
