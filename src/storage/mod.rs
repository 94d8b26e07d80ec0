//! Storage: diesel over SQLite or PostgreSQL through one connection type, pooled by r2d2.
//!
//! Everything here is blocking; [`Db::read`] runs it on tokio's blocking pool and
//! [`Db::write`] on PostgreSQL too, so that the async executor never waits on the database.
//! On SQLite, which has one writer at a time anyway, writes go to one writer thread that
//! commits them in groups (see [`writer`]).

mod writer;

pub mod api_keys;
pub mod brands;
pub mod campaigns;
pub mod confirmations;
pub mod consent;
pub mod contacts;
pub mod forms;
pub mod imports;
pub mod ledger;
pub mod lists;
pub mod models;
pub mod outbox;
pub mod partners;
pub mod plugins;
pub mod preferences;
pub mod schema;
pub mod secrets;
pub mod sessions;
mod sql_types;
pub mod stats;
pub mod suppressions;
pub mod surveys;
pub mod users;
pub mod webhooks;

use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, ManageConnection, Pool, PooledConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{Error, Result};

/// One connection type over both backends; the URL picks the variant.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

pub type DbPool = Pool<Manager>;
type Pooled = PooledConnection<Manager>;

/// A connection the pool lends, and when it last did work without an error.
pub struct PoolConnection {
    conn: DbConnection,
    answered_at: Option<Instant>,
}

impl PoolConnection {
    /// Runs work on the connection, noting whether it went without an error: a
    /// connection that failed is checked before it is lent again.
    fn run<T>(&mut self, work: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
        let outcome = work(&mut self.conn);
        self.answered_at = outcome.is_ok().then(Instant::now);
        outcome
    }
}

/// How long after its last answer a connection is lent without being checked first.
const TRUSTED_FOR: Duration = Duration::from_secs(2);

/// diesel's connection manager, except that a connection that has just answered is lent
/// without a `SELECT 1` round trip first (under load that is every checkout); one idle
/// longer, or whose last work failed, is checked, and replaced when it does not answer
/// (the database restarted, the network dropped it).
pub struct Manager(ConnectionManager<DbConnection>);

impl ManageConnection for Manager {
    type Connection = PoolConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> std::result::Result<PoolConnection, Self::Error> {
        Ok(PoolConnection { conn: self.0.connect()?, answered_at: None })
    }

    fn is_valid(&self, conn: &mut PoolConnection) -> std::result::Result<(), Self::Error> {
        if conn.answered_at.is_some_and(|at| at.elapsed() < TRUSTED_FOR) {
            return Ok(());
        }
        self.0.is_valid(&mut conn.conn)?;
        conn.answered_at = Some(Instant::now());
        Ok(())
    }

    fn has_broken(&self, conn: &mut PoolConnection) -> bool {
        self.0.has_broken(&mut conn.conn)
    }
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// How hard SQLite works to keep the last transactions through a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// With WAL, safe against a crash of the process; the last transactions before a power
    /// cut or OS crash may be rolled back, never corrupted. SQLite's advice for WAL.
    Normal,
    /// Every commit reaches the disk before it returns. Slower writes.
    Full,
}

impl SqliteSync {
    fn pragma(self) -> &'static str {
        match self {
            SqliteSync::Normal => "NORMAL",
            SqliteSync::Full => "FULL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub url: String,
    pub pool_size: u32,
    pub sqlite_synchronous: SqliteSync,
    /// How long a SQLite writer waits for the write lock before giving up.
    pub busy_timeout: Duration,
}

/// Per-connection SQLite settings, applied to every connection the pool opens.
#[derive(Debug)]
struct SqlitePragmas {
    synchronous: SqliteSync,
    busy_timeout: Duration,
}

impl CustomizeConnection<PoolConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut PoolConnection) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(conn) = &mut conn.conn {
            // journal_mode is not here: it is set once per database file (see `Db::connect`),
            // and switching it from several new connections at once fails with "locked".
            // secure_delete: what a delete frees is overwritten with zeros, so that an erased
            // person's address and IP do not stay readable in free pages of the file.
            let pragmas = format!(
                "PRAGMA busy_timeout = {}; PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; \
                 PRAGMA secure_delete = ON;",
                self.busy_timeout.as_millis(),
                self.synchronous.pragma()
            );
            conn.batch_execute(&pragmas).map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// The database handle services use. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
    backend: Backend,
    /// SQLite's group-committing writer.
    writer: Option<writer::Writer>,
}

/// SQLite as bundled is built "serialized": every call, every bound value, every
/// allocation takes a mutex, so that one connection could be shared by threads. consento
/// never does that (the pool lends each connection to one thread at a time), so it asks for
/// multi-thread mode, and turns off the memory statistics that take a global mutex on every
/// allocation. Both are start-time settings: they must come before the first connection.
fn configure_sqlite() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config may not run while SQLite is in use; it runs once, before
        // this process opens any connection (every one is opened through `Db::connect`,
        // after this). Called later (SQLite already initialised), it would only answer
        // SQLITE_MISUSE and change nothing.
        #[allow(unsafe_code)]
        unsafe {
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MULTITHREAD);
            libsqlite3_sys::sqlite3_config(libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS, 0 as std::os::raw::c_int);
        }
    });
}

impl Db {
    /// Opens the pool. A SQLite file's folder must exist.
    pub fn connect(options: &DbOptions) -> Result<Self> {
        let backend = Backend::of_url(&options.url);
        if backend == Backend::Sqlite {
            configure_sqlite();
            // WAL lets readers work while one writer writes; the mode is kept in the file.
            let mut conn = diesel::SqliteConnection::establish(&sqlite_path(&options.url))
                .map_err(|e| Error::Unavailable(Box::new(e)))?;
            conn.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL;",
                options.busy_timeout.as_millis()
            ))?;
        }
        let manager = Manager(ConnectionManager::<DbConnection>::new(sqlite_path(&options.url)));
        let pool = Pool::builder()
            .max_size(options.pool_size)
            // While the database is down a request waits this long for a connection, then
            // answers 503; the pool reconnects by itself once it is back.
            .connection_timeout(Duration::from_secs(3))
            .connection_customizer(Box::new(SqlitePragmas {
                synchronous: options.sqlite_synchronous,
                busy_timeout: options.busy_timeout,
            }))
            .build(manager)
            .map_err(|e| Error::Unavailable(Box::new(e)))?;
        let writer = (backend == Backend::Sqlite).then(|| writer::Writer::start(pool.clone()));
        Ok(Self { pool, backend, writer })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether every write waits for one writer (SQLite). Work that may be slow, such as
    /// rendering an admin's template, is then done before the write rather than inside it.
    pub fn has_one_writer(&self) -> bool {
        self.writer.is_some()
    }

    /// Connections open and idle, for the metrics.
    pub fn pool_state(&self) -> (u32, u32) {
        let state = self.pool.state();
        (state.connections, state.idle_connections)
    }

    pub fn pool_max_size(&self) -> u32 {
        self.pool.max_size()
    }

    /// Applies the migrations not yet applied. Safe to run from several instances at once
    /// on PostgreSQL (an advisory lock serialises them).
    pub async fn migrate(&self) -> Result<()> {
        self.blocking(|conn| {
            match conn {
                DbConnection::Sqlite(conn) => {
                    conn.run_pending_migrations(SQLITE_MIGRATIONS).map_err(Error::Internal)?;
                }
                DbConnection::Postgres(conn) => {
                    conn.batch_execute("SELECT pg_advisory_lock(7366324)")?;
                    let applied = conn.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ());
                    conn.batch_execute("SELECT pg_advisory_unlock(7366324)")?;
                    applied.map_err(Error::Internal)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Runs read-only work on a pooled connection, off the async executor.
    pub async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T> + Send + 'static,
    {
        self.blocking(work).await
    }

    /// Runs work in one write transaction, off the async executor. On SQLite the
    /// transaction begins IMMEDIATE: it takes the write lock at once (waiting up to the
    /// busy timeout), so two writers never deadlock upgrading read locks, which is what
    /// otherwise surfaces as 'database is locked'.
    pub async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T> + Send + 'static,
    {
        match &self.writer {
            Some(writer) => writer.write(work).await,
            None => self.blocking(|conn| write_transaction(conn, work)).await,
        }
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        // The work logs inside the span of the request (or job) that asked for it.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let mut conn: Pooled = pool.get()?;
            conn.run(work)
        })
        .await
        .map_err(Error::internal)?
    }
}

/// The tables an erasure deletes from or redacts.
const ERASURE_TABLES: &str = "contacts, contact_tags, contact_lists, consent_events, confirmations, outbox, \
     campaign_recipients, delivery_events, partner_leads, survey_responses, webhook_deliveries";

#[derive(diesel::QueryableByName)]
struct Checkpoint {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    busy: i32,
}

impl Db {
    /// After an erasure has committed, makes the erased bytes leave the database files, in
    /// the background (it may wait for readers and writers; the erasure is done already).
    ///
    /// SQLite: deleted content is zeroed in the file (`secure_delete`), but the WAL still
    /// holds the pages as they were before; a TRUNCATE checkpoint writes the new pages
    /// into the file and empties the WAL. PostgreSQL: a delete or update leaves the old
    /// row version in the table until VACUUM removes it; the touched tables are vacuumed
    /// (plain VACUUM, which takes no lock that blocks reads or writes).
    pub fn scrub_after_erasure(&self) -> tokio::task::JoinHandle<()> {
        let db = self.clone();
        tokio::spawn(async move {
            let outcome = db
                .blocking(|conn| match conn {
                    DbConnection::Sqlite(conn) => checkpoint_truncate(conn),
                    DbConnection::Postgres(conn) => Ok(conn.batch_execute(&format!("VACUUM {ERASURE_TABLES}"))?),
                })
                .await;
            if let Err(error) = outcome {
                tracing::warn!(error = %error, "the database files could not be scrubbed after an erasure");
            }
        })
    }
}

/// Checkpoints the WAL into the database file and truncates it, trying again a few times
/// while readers hold an older snapshot.
fn checkpoint_truncate(conn: &mut diesel::SqliteConnection) -> Result<()> {
    for attempt in 0..20 {
        let result: Checkpoint = diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").get_result(conn)?;
        if result.busy == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50 * (attempt + 1)));
    }
    Err(Error::internal("the WAL stayed busy: it was not truncated"))
}

fn write_transaction<T>(conn: &mut DbConnection, work: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
    if let DbConnection::Sqlite(sqlite) = conn {
        AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
        let outcome = work(conn);
        let DbConnection::Sqlite(sqlite) = conn else {
            return Err(Error::internal("the connection changed backend inside a transaction"));
        };
        return match outcome {
            Ok(value) => {
                AnsiTransactionManager::commit_transaction(sqlite)?;
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback) = AnsiTransactionManager::rollback_transaction(sqlite) {
                    tracing::error!(error = %rollback, "rollback failed");
                }
                Err(error)
            }
        };
    }
    conn.transaction(work)
}

/// diesel's SQLite connection takes a path or a `file:` URI, not `sqlite://`.
fn sqlite_path(url: &str) -> String {
    url.strip_prefix("sqlite://").unwrap_or(url).to_owned()
}

/// Whether an error is a unique-constraint violation (a duplicate).
fn is_unique_violation(error: &diesel::result::Error) -> bool {
    matches!(error, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
}

/// A write's outcome, with a broken unique constraint answered as a conflict (409) saying
/// what already exists (`duplicate`).
pub fn or_conflict<T>(outcome: QueryResult<T>, duplicate: impl FnOnce() -> String) -> Result<T> {
    outcome.map_err(|error| if is_unique_violation(&error) { Error::Conflict(duplicate()) } else { error.into() })
}

/// Checks the database answers, for readiness probes.
pub fn ping(conn: &mut DbConnection) -> Result<()> {
    conn.batch_execute("SELECT 1")?;
    Ok(())
}

/// Current UTC time at microsecond precision, the precision both backends keep.
pub fn now() -> chrono::NaiveDateTime {
    let now = chrono::Utc::now().naive_utc();
    chrono::DurationRound::duration_trunc(now, chrono::TimeDelta::microseconds(1)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    /// The migrations of a folder: each one's name, and the files it holds.
    fn migrations(backend: &str) -> Vec<(String, Vec<String>)> {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
        let mut found: Vec<(String, Vec<String>)> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
            .flatten()
            .filter(|entry| entry.path().is_dir())
            .map(|entry| {
                let mut files: Vec<String> = std::fs::read_dir(entry.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|file| file.file_name().to_string_lossy().into_owned())
                    .collect();
                files.sort();
                (entry.file_name().to_string_lossy().into_owned(), files)
            })
            .collect();
        found.sort();
        found
    }

    /// One schema on two databases: every migration exists for both, under the same name,
    /// each with its way up and down, so that neither database can be ahead of the other.
    #[test]
    fn the_sqlite_and_postgresql_migrations_are_the_same_steps() {
        let sqlite = migrations("sqlite");
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, migrations("postgres"));
        for (name, files) in &sqlite {
            assert_eq!(files, &["down.sql", "up.sql"], "migration {name}");
        }
    }
}
