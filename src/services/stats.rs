//! Counts for `consento stats` and the console's dashboard: what the database holds, at a
//! glance.
//!
//! Counting a million contacts takes a few hundred milliseconds, too long for a page. Where
//! counting is quick (under [`LIVE_UNDER`]), the dashboard counts as it is asked; where it
//! is not, it reads the snapshot the `stats` worker takes again every [`REFRESH`], and says
//! when it was taken (a page finding none, or one too old, takes it itself).

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Result;
pub use crate::storage::stats::Stats;
use crate::storage::{self, Db};

/// How often the worker takes the snapshot again.
pub const REFRESH: Duration = Duration::from_secs(30);
/// Counting quicker than this is done for each page: its figures are exact.
pub const LIVE_UNDER: Duration = Duration::from_millis(50);
/// A snapshot older than this is taken again before it is shown (the worker stopped).
const MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

pub async fn gather(db: &Db) -> Result<Stats> {
    db.read(storage::stats::gather).await
}

/// The counts as they were at `taken_at`.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub stats: Stats,
    pub taken_at: DateTime<Utc>,
    /// How long counting took.
    pub took: Duration,
}

/// The latest snapshot, shared by the worker that takes it and the pages that show it.
#[derive(Debug, Clone, Default)]
pub struct StatsCache(Arc<RwLock<Option<Arc<Snapshot>>>>);

impl StatsCache {
    /// The counts for a page: the latest snapshot where counting is slow (taken now if
    /// there is none or it is too old), else counted now.
    pub async fn latest(&self, db: &Db) -> Result<Arc<Snapshot>> {
        let held = self.0.read().ok().and_then(|held| held.clone());
        match held {
            Some(snapshot) if snapshot.took >= LIVE_UNDER && Utc::now() - snapshot.taken_at < MAX_AGE => Ok(snapshot),
            _ => self.refresh(db).await,
        }
    }

    /// Takes the snapshot again.
    pub async fn refresh(&self, db: &Db) -> Result<Arc<Snapshot>> {
        let (taken_at, started) = (Utc::now(), std::time::Instant::now());
        let stats = gather(db).await?;
        let snapshot = Arc::new(Snapshot { stats, taken_at, took: started.elapsed() });
        if let Ok(mut held) = self.0.write() {
            *held = Some(snapshot.clone());
        }
        Ok(snapshot)
    }

    /// The worker: a new snapshot every [`REFRESH`].
    pub async fn run(self, db: Db) {
        let mut interval = tokio::time::interval(REFRESH);
        loop {
            interval.tick().await;
            if let Err(error) = self.refresh(&db).await {
                tracing::warn!(error = %error, "counting for the dashboard failed");
            }
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = |rows: &[(String, i64)]| rows.iter().map(|(_, n)| n).sum::<i64>();
        let section = |f: &mut fmt::Formatter<'_>, title: &str, rows: &[(String, i64)]| -> fmt::Result {
            writeln!(f, "{title:<24}{:>10}", total(rows))?;
            for (name, count) in rows {
                writeln!(f, "  {name:<22}{count:>10}")?;
            }
            Ok(())
        };
        section(f, "contacts", &self.contacts_by_status)?;
        writeln!(f, "{:<24}{:>10}", "lists", self.lists.len())?;
        for (name, members) in &self.lists {
            writeln!(f, "  {name:<22}{members:>10}")?;
        }
        writeln!(f, "{:<24}{:>10}", "consent events", self.consent_events)?;
        writeln!(f, "{:<24}{:>10}", "suppressed addresses", self.suppressions)?;
        section(f, "campaigns", &self.campaigns_by_status)?;
        writeln!(f, "{:<24}{:>10}", "campaign messages sent", self.messages_sent)?;
        section(f, "imports", &self.imports_by_status)
    }
}
