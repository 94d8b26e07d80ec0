//! Counts for `consento stats`: what the database holds, at a glance.

use std::fmt;

use diesel::dsl::count_star;
use diesel::prelude::*;

use crate::error::Result;
use crate::storage::Db;
use crate::storage::schema::{
    campaign_recipients, campaigns, consent_events, contact_lists, contacts, import_jobs, lists, suppressions,
};

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub contacts_by_status: Vec<(String, i64)>,
    pub lists: Vec<(String, i64)>,
    pub consent_events: i64,
    pub suppressions: i64,
    pub campaigns_by_status: Vec<(String, i64)>,
    pub messages_sent: i64,
    pub imports_by_status: Vec<(String, i64)>,
}

pub async fn gather(db: &Db) -> Result<Stats> {
    db.read(|conn| {
        Ok(Stats {
            contacts_by_status: contacts::table
                .group_by(contacts::status)
                .select((contacts::status, count_star()))
                .order(contacts::status)
                .load(conn)?,
            lists: lists::table
                .left_join(contact_lists::table.on(contact_lists::list_id.eq(lists::id)))
                .group_by(lists::name)
                .select((lists::name, diesel::dsl::count(contact_lists::contact_id.nullable())))
                .order(lists::name)
                .load(conn)?,
            consent_events: consent_events::table.count().get_result(conn)?,
            suppressions: suppressions::table.count().get_result(conn)?,
            campaigns_by_status: campaigns::table
                .group_by(campaigns::status)
                .select((campaigns::status, count_star()))
                .order(campaigns::status)
                .load(conn)?,
            messages_sent: campaign_recipients::table
                .filter(campaign_recipients::sent_at.is_not_null())
                .count()
                .get_result(conn)?,
            imports_by_status: import_jobs::table
                .group_by(import_jobs::status)
                .select((import_jobs::status, count_star()))
                .order(import_jobs::status)
                .load(conn)?,
        })
    })
    .await
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
