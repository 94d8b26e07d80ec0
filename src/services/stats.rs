//! Counts for `consento stats`: what the database holds, at a glance.

use std::fmt;

use crate::error::Result;
pub use crate::storage::stats::Stats;
use crate::storage::{self, Db};

pub async fn gather(db: &Db) -> Result<Stats> {
    db.read(storage::stats::gather).await
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
