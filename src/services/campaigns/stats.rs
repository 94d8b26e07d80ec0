//! What a campaign's send did: its counts and its recipients.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::not_found;
use crate::domain::{CampaignId, RecipientStatus};
use crate::domain::{ContactId, ListId};
use crate::error::{Error, Result};
use crate::services::pagination::{Page, PageRequest};
use crate::storage::campaigns::RecipientRow;
use crate::storage::{Db, campaigns as repo};

/// How a campaign went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CampaignStats {
    pub audience: i64,
    pub excluded: i64,
    pub excluded_by_reason: BTreeMap<String, i64>,
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub bounced: i64,
    pub complaints: i64,
    pub unsubscribes: i64,
    /// Aggregate counts (every open and click, when tracked).
    pub opens: i64,
    pub clicks: i64,
    /// Recipients who opened or clicked (only with individual tracking).
    pub unique_opens: i64,
    pub unique_clicks: i64,
    pub bounce_rate: f64,
    pub complaint_rate: f64,
    pub unsubscribe_rate: f64,
}

pub async fn stats(db: &Db, id: CampaignId) -> Result<CampaignStats> {
    db.read(move |conn| {
        let campaign = repo::find_campaign(conn, id)?.ok_or_else(|| not_found(id))?;
        let mut stats = CampaignStats { opens: campaign.opens, clicks: campaign.clicks, ..CampaignStats::default() };
        for (status, reason, count) in repo::count_by_status_and_reason(conn, id)? {
            stats.audience += count;
            match status {
                RecipientStatus::Excluded => {
                    stats.excluded += count;
                    *stats.excluded_by_reason.entry(reason).or_default() += count;
                }
                RecipientStatus::Pending => stats.pending += count,
                RecipientStatus::Sent => stats.sent += count,
                RecipientStatus::Failed => stats.failed += count,
                RecipientStatus::Cancelled => stats.cancelled += count,
            }
        }
        let [bounced, complaints, unsubscribes, opened, clicked] = repo::count_outcomes(conn, id)?;
        stats.bounced = bounced;
        stats.complaints = complaints;
        stats.unsubscribes = unsubscribes;
        stats.unique_opens = opened;
        stats.unique_clicks = clicked;
        let rate = |n: i64| if stats.sent > 0 { n as f64 / stats.sent as f64 } else { 0.0 };
        stats.bounce_rate = rate(bounced);
        stats.complaint_rate = rate(complaints);
        stats.unsubscribe_rate = rate(unsubscribes);
        Ok(stats)
    })
    .await
}

pub async fn list_recipients(
    db: &Db,
    id: CampaignId,
    status: Option<RecipientStatus>,
    page: PageRequest,
) -> Result<Page<Recipient>> {
    db.read(move |conn| {
        repo::find_campaign(conn, id)?.ok_or_else(|| not_found(id))?;
        let status = status.map(RecipientStatus::as_str);
        let rows = repo::list_recipients(conn, id, status, page.after.as_deref(), page.fetch_limit())?;
        let page = page.page(rows, |r| r.id.to_string());
        let items = page.items.into_iter().map(Recipient::try_from).collect::<Result<_>>()?;
        Ok(Page { items, next_cursor: page.next_cursor })
    })
    .await
}

/// A campaign's recipient: its verdict and what became of its message.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub id: String,
    pub contact_id: Option<ContactId>,
    pub email: String,
    pub list_id: Option<ListId>,
    pub status: RecipientStatus,
    pub reason: String,
    pub attempts: i32,
    pub sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub bounced_at: Option<DateTime<Utc>>,
    pub complained_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
    pub opened_at: Option<DateTime<Utc>>,
    pub clicked_at: Option<DateTime<Utc>>,
}

impl TryFrom<RecipientRow> for Recipient {
    type Error = Error;

    fn try_from(row: RecipientRow) -> Result<Self> {
        let at = |time: Option<chrono::NaiveDateTime>| time.map(|t| t.and_utc());
        let status = row.status;
        Ok(Self {
            id: row.id,
            contact_id: row.contact_id,
            email: row.email,
            list_id: row.list_id,
            status,
            reason: row.reason,
            attempts: row.attempts,
            sent_at: at(row.sent_at),
            last_error: row.last_error,
            bounced_at: at(row.bounced_at),
            complained_at: at(row.complained_at),
            unsubscribed_at: at(row.unsubscribed_at),
            opened_at: at(row.opened_at),
            clicked_at: at(row.clicked_at),
        })
    }
}
