//! Group commit for SQLite. SQLite lets one connection write at a time, and each commit
//! writes every page it touched to the write-ahead log: a signup touches a few pages of a
//! dozen tables and indexes, so committing signups one by one spends most of its time
//! writing the same pages again. Here every write goes to one thread, which takes what is
//! waiting (up to [`MAX_GROUP`] writes), runs each in a savepoint of one transaction, and
//! commits once. A write that fails rolls back to its savepoint alone; each caller hears of
//! its write only after the commit that holds it, so nothing is acknowledged that a crash
//! could lose.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};

use super::{DbConnection, DbPool};
use crate::error::{Error, Result};

/// Writes committed together at most.
const MAX_GROUP: usize = 64;

/// A write as the writer sees it: given a connection inside the group's transaction, it
/// runs in a savepoint; given none, it was not run. Either way it answers how to tell its
/// caller once the group's outcome is known.
type Job = Box<dyn FnOnce(Option<&mut DbConnection>) -> Completion + Send>;
type Completion = Box<dyn FnOnce(std::result::Result<(), &GroupFailure>) + Send>;

/// Why a whole group failed: its caller gets a 503 when the database was busy or
/// unreachable, else a 500.
#[derive(Debug)]
struct GroupFailure {
    message: String,
    unavailable: bool,
}

impl GroupFailure {
    fn of(error: &Error) -> Self {
        Self { message: error.to_string(), unavailable: matches!(error, Error::Unavailable(_)) }
    }

    fn to_error(&self) -> Error {
        let cause: Box<dyn std::error::Error + Send + Sync> =
            format!("the write's group failed: {}", self.message).into();
        if self.unavailable { Error::Unavailable(cause) } else { Error::Internal(cause) }
    }
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread; it ends when the last handle is dropped.
    pub fn start(pool: DbPool) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("sqlite-writer".to_owned()).spawn(move || run(&pool, &queue));
        if let Err(error) = spawned {
            tracing::error!(error = %error, "the SQLite writer thread did not start");
        }
        Self { jobs }
    }

    pub async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel::<Result<T>>();
        // The write logs inside the span of the request (or job) that asked for it.
        let span = tracing::Span::current();
        let job: Job = Box::new(move |conn| {
            // Inside the group's transaction, `transaction` is a savepoint.
            let outcome = conn.map(|conn| span.in_scope(|| conn.transaction(work)));
            Box::new(move |group| {
                let _ = answer.send(match (group, outcome) {
                    (Ok(()), Some(outcome)) => outcome,
                    (Err(failure), _) => Err(failure.to_error()),
                    (Ok(()), None) => Err(Error::internal("a write was not run")),
                });
            })
        });
        self.jobs.send(job).map_err(|_| Error::internal("the SQLite writer has stopped"))?;
        answered.await.map_err(|_| Error::internal("the SQLite writer dropped a write"))?
    }
}

fn run(pool: &DbPool, queue: &mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(pool, group);
    }
}

fn commit_group(pool: &DbPool, group: Vec<Job>) {
    let fail_all = |group: Vec<Job>, failure: GroupFailure| {
        tracing::warn!(error = %failure.message, writes = group.len(), "a group of writes could not run");
        for job in group {
            job(None)(Err(&failure));
        }
    };
    let mut conn = match pool.get() {
        Ok(conn) => conn,
        Err(error) => return fail_all(group, GroupFailure::of(&error.into())),
    };
    let begun = match &mut conn.conn {
        DbConnection::Sqlite(sqlite) => AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE"),
        DbConnection::Postgres(_) => return fail_all(group, GroupFailure::of(&Error::internal("not SQLite"))),
    };
    if let Err(error) = begun {
        return fail_all(group, GroupFailure::of(&error.into()));
    }
    let mut completions = Vec::with_capacity(group.len());
    let mut panicked = false;
    for job in group {
        match std::panic::catch_unwind(AssertUnwindSafe(|| job(Some(&mut conn.conn)))) {
            Ok(completion) => completions.push(completion),
            // The job's answer channel went with it: its caller hears the write was dropped.
            Err(_) => panicked = true,
        }
    }
    let DbConnection::Sqlite(sqlite) = &mut conn.conn else {
        return;
    };
    let committed = if panicked {
        Err(GroupFailure { message: "a write of the group panicked".to_owned(), unavailable: false })
    } else {
        AnsiTransactionManager::commit_transaction(sqlite).map_err(|error| GroupFailure::of(&error.into()))
    };
    // After a panic the connection may be inside a savepoint: it is not rolled back here
    // but dropped, and the pool, seeing a transaction still open, closes it (SQLite then
    // undoes the whole group).
    if committed.is_err()
        && !panicked
        && let Err(error) = AnsiTransactionManager::rollback_transaction(sqlite)
    {
        tracing::error!(error = %error, "rolling back a group of writes failed");
    }
    conn.answered_at = committed.is_ok().then(std::time::Instant::now);
    for completion in completions {
        completion(committed.as_ref().map(|_| ()));
    }
}
