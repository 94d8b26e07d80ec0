//! Counts for `consento stats`: what the database holds, at a glance.

use diesel::dsl::count_star;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::{
    campaign_recipients, campaigns, consent_events, contact_lists, contacts, import_jobs, lists, suppressions,
};
use crate::error::Result;

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

pub fn gather(conn: &mut DbConnection) -> Result<Stats> {
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
}
