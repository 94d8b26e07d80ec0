//! Provenance manifests and import jobs.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::{import_jobs, provenance_manifests};
use crate::domain::ImportStatus;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = provenance_manifests, treat_none_as_default_value = false)]
pub struct ManifestRow {
    pub id: String,
    pub supplier: String,
    pub collected_on: String,
    pub consent_text: String,
    pub brand_named: bool,
    /// JSON array of the partner names shown.
    pub partners_shown: String,
    pub sha256: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = import_jobs, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct ImportJobRow {
    pub id: String,
    pub status: ImportStatus,
    pub format: String,
    pub options: String,
    pub file_path: Option<String>,
    pub file_bytes: i64,
    /// Records of the file done (imported, skipped or refused), committed with them.
    pub records_done: i64,
    pub imported: i64,
    pub updated: i64,
    pub duplicates: i64,
    pub suppressed: i64,
    pub invalid: i64,
    /// JSON array of `{"line", "reason"}`.
    pub errors: String,
    pub failure: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    /// The file's records as counted before the run began (its lines, less a CSV header):
    /// what the progress is measured against.
    pub records_expected: Option<i64>,
}

pub fn insert_manifest(conn: &mut DbConnection, row: &ManifestRow) -> QueryResult<usize> {
    diesel::insert_into(provenance_manifests::table).values(row).execute(conn)
}

pub fn find_manifest(conn: &mut DbConnection, id: &str) -> QueryResult<Option<ManifestRow>> {
    provenance_manifests::table.find(id).select(ManifestRow::as_select()).first(conn).optional()
}

pub fn insert_job(conn: &mut DbConnection, row: &ImportJobRow) -> QueryResult<usize> {
    diesel::insert_into(import_jobs::table).values(row).execute(conn)
}

pub fn update_job(conn: &mut DbConnection, row: &ImportJobRow) -> QueryResult<usize> {
    diesel::update(import_jobs::table.find(&row.id)).set(row).execute(conn)
}

/// The files of the jobs that have not finished (queued, running, or failed and kept).
pub fn unfinished_job_files(conn: &mut DbConnection) -> QueryResult<Vec<String>> {
    import_jobs::table
        .filter(import_jobs::status.ne(ImportStatus::Finished))
        .filter(import_jobs::file_path.is_not_null())
        .select(import_jobs::file_path.assume_not_null())
        .load(conn)
}

pub fn find_job(conn: &mut DbConnection, id: &str) -> QueryResult<Option<ImportJobRow>> {
    import_jobs::table.find(id).select(ImportJobRow::as_select()).first(conn).optional()
}

pub fn list_jobs(conn: &mut DbConnection, after: Option<&str>, limit: i64) -> QueryResult<Vec<ImportJobRow>> {
    let mut query = import_jobs::table.select(ImportJobRow::as_select()).into_boxed();
    if let Some(after) = after {
        query = query.filter(import_jobs::id.gt(after.to_owned()));
    }
    query.order(import_jobs::id.asc()).limit(limit).load(conn)
}

/// Whether a job waits to be run (checked with a read before taking the write lock).
pub fn job_due(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        import_jobs::table.filter(
            import_jobs::status
                .eq(ImportStatus::Queued)
                .or(import_jobs::status.eq(ImportStatus::Running).and(import_jobs::lease_until.lt(now))),
        ),
    ))
    .get_result(conn)
}

/// Takes a job to run: queued, or running under a lease that ran out (its instance died).
pub fn claim_job(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<Option<ImportJobRow>> {
    let claimable = || {
        import_jobs::status
            .eq(ImportStatus::Queued)
            .or(import_jobs::status.eq(ImportStatus::Running).and(import_jobs::lease_until.lt(now)))
    };
    let Some(id) = import_jobs::table
        .filter(claimable())
        .select(import_jobs::id)
        .order(import_jobs::id.asc())
        .first::<String>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let claimed = diesel::update(import_jobs::table.find(&id).filter(claimable()))
        .set((import_jobs::status.eq(ImportStatus::Running), import_jobs::lease_until.eq(until)))
        .execute(conn)?;
    if claimed == 0 {
        return Ok(None);
    }
    find_job(conn, &id)
}

/// Takes one job by id (the command line runs its own job).
pub fn claim_job_by_id(
    conn: &mut DbConnection,
    id: &str,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<Option<ImportJobRow>> {
    let claimed = diesel::update(
        import_jobs::table.find(id).filter(
            import_jobs::status
                .eq(ImportStatus::Queued)
                .or(import_jobs::status.eq(ImportStatus::Running).and(import_jobs::lease_until.lt(now))),
        ),
    )
    .set((import_jobs::status.eq(ImportStatus::Running), import_jobs::lease_until.eq(until)))
    .execute(conn)?;
    if claimed == 0 {
        return Ok(None);
    }
    find_job(conn, id)
}
