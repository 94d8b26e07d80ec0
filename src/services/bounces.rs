//! Bounces and complaints reported by the mail provider, and churn over time.
//!
//! A hard bounce or a complaint suppresses the address at once and withdraws every
//! consent in the ledger (actor `system`, method `hard_bounce` or `complaint`); soft
//! bounces do so once an address has had `soft_bounce_limit` of them within 30 days. A
//! complaint also checks its campaign's complaint rate and pauses the campaign above its
//! threshold.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use serde::Serialize;

use super::keys::Keys;
use crate::domain::consent::{Actor, Evidence};
use crate::domain::{ContactStatus, Email};
use crate::error::{Error, Result};
use crate::storage::campaigns::{self as repo, DeliveryEventRow, Outcome, status};
use crate::storage::{self, Db, DbConnection, contacts};

crate::domain::consent::string_enum! {
    /// What the provider reports.
    NoticeKind {
        HardBounce = "hard_bounce",
        SoftBounce = "soft_bounce",
        Complaint = "complaint",
    }
}

/// One notification about one address.
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: NoticeKind,
    pub email: Email,
    /// The Message-ID of the message it is about, when the provider gives it.
    pub message_id: Option<String>,
    pub detail: String,
}

/// What a notification did.
#[derive(Debug, Clone, Serialize)]
pub struct NoticeOutcome {
    pub email: String,
    pub kind: String,
    /// The campaign the message belonged to, when known.
    pub campaign_id: Option<String>,
    pub suppressed: bool,
    /// Set when the campaign paused itself on this complaint.
    pub campaign_paused: bool,
}

/// Records notifications, each in its own transaction.
pub async fn record(db: &Db, keys: &Keys, soft_limit: u32, notices: Vec<Notice>) -> Result<Vec<NoticeOutcome>> {
    let mut outcomes = Vec::with_capacity(notices.len());
    for notice in notices {
        let keys = keys.clone();
        outcomes.push(db.write(move |conn| record_in(conn, &keys, soft_limit, notice)).await?);
    }
    Ok(outcomes)
}

fn record_in(conn: &mut DbConnection, keys: &Keys, soft_limit: u32, notice: Notice) -> Result<NoticeOutcome> {
    let now = storage::now();
    let hash = keys.email_hash(&notice.email.key());
    let by_id = notice
        .message_id
        .as_deref()
        .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'))
        .and_then(|id| id.split('@').next())
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .map(|id| repo::find_recipient(conn, id))
        .transpose()?
        .flatten()
        .filter(|r| r.email.eq_ignore_ascii_case(notice.email.as_str()));
    let recipient = match by_id {
        Some(recipient) => Some(recipient),
        None => repo::find_sent_to(conn, notice.email.as_str())?,
    };
    repo::insert_delivery_event(
        conn,
        &DeliveryEventRow {
            id: uuid::Uuid::now_v7().to_string(),
            kind: notice.kind.as_str().to_owned(),
            email_hash: hash.clone(),
            campaign_id: recipient.as_ref().map(|r| r.campaign_id.clone()),
            recipient_id: recipient.as_ref().map(|r| r.id.clone()),
            detail: notice.detail.chars().take(1000).collect(),
            occurred_at: now,
        },
    )?;
    if let Some(recipient) = &recipient {
        let outcome = if notice.kind == NoticeKind::Complaint { Outcome::Complained } else { Outcome::Bounced };
        repo::mark_outcome(conn, &recipient.id, outcome, now)?;
    }
    let suppress = match notice.kind {
        NoticeKind::HardBounce | NoticeKind::Complaint => true,
        NoticeKind::SoftBounce => {
            repo::count_delivery_events(conn, &hash, NoticeKind::SoftBounce.as_str(), now - TimeDelta::days(30))?
                >= i64::from(soft_limit.max(1))
        }
    };
    if suppress {
        let status =
            if notice.kind == NoticeKind::Complaint { ContactStatus::Complained } else { ContactStatus::Bounced };
        let contact = match contacts::find_contact_id_by_email_key(conn, &notice.email.key())? {
            Some(id) => contacts::find_contact(conn, &id)?,
            None => None,
        };
        let evidence = Evidence {
            method: notice.kind.as_str().to_owned(),
            source_url: notice.message_id.clone(),
            ..Evidence::default()
        };
        match contact {
            Some(contact) => super::consent::leave_all_in(conn, &hash, &contact, &evidence, &Actor::System, status)?,
            None => storage::consent::insert_suppression(conn, &hash, status.as_str())?,
        }
    }
    let mut campaign_paused = false;
    if notice.kind == NoticeKind::Complaint
        && let Some(recipient) = &recipient
    {
        campaign_paused = pause_on_complaints(conn, &recipient.campaign_id, now)?;
    }
    Ok(NoticeOutcome {
        email: notice.email.to_string(),
        kind: notice.kind.as_str().to_owned(),
        campaign_id: recipient.map(|r| r.campaign_id),
        suppressed: suppress,
        campaign_paused,
    })
}

/// Pauses a campaign whose complaint rate passed its threshold.
fn pause_on_complaints(conn: &mut DbConnection, campaign_id: &str, now: NaiveDateTime) -> Result<bool> {
    let Some(campaign) = repo::find_campaign(conn, campaign_id)? else {
        return Ok(false);
    };
    if campaign.status != status::SENDING {
        return Ok(false);
    }
    let sent: i64 = repo::count_by_status_and_reason(conn, campaign_id)?
        .into_iter()
        .filter(|(status, _, _)| status == repo::recipient::SENT)
        .map(|(_, _, count)| count)
        .sum();
    let [_, complaints, ..] = repo::count_outcomes(conn, campaign_id)?;
    let rate = if sent > 0 { complaints as f64 / sent as f64 } else { 1.0 };
    if rate <= campaign.complaint_threshold {
        return Ok(false);
    }
    let reason = format!(
        "paused: complaint rate {:.2}% ({complaints} of {sent} sent) is above {:.2}%",
        rate * 100.0,
        campaign.complaint_threshold * 100.0
    );
    tracing::warn!(campaign = %campaign_id, %reason, "campaign paused on complaints");
    Ok(repo::transition(conn, campaign_id, &[status::SENDING], status::PAUSED, Some(&reason), now)?)
}

// ---------------------------------------------------------------------------------------
// Churn over time

crate::domain::consent::string_enum! {
    /// The width of a bucket of churn statistics.
    Period {
        Day = "day",
        Week = "week",
        Month = "month",
    }
}

/// One period's churn.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChurnBucket {
    /// First day of the period (UTC).
    pub start: NaiveDate,
    pub sent: i64,
    /// Consents to lists withdrawn by the people themselves.
    pub unsubscribes: i64,
    pub hard_bounces: i64,
    pub soft_bounces: i64,
    pub complaints: i64,
    /// Consents to lists that took effect (granted without confirmation, or confirmed).
    pub subscribed: i64,
    /// Consents to lists withdrawn, for any reason (unsubscribes, bounces, complaints, erasure).
    pub left: i64,
    /// `subscribed - left`.
    pub net_growth: i64,
    pub unsubscribe_rate: f64,
    pub bounce_rate: f64,
    pub complaint_rate: f64,
}

fn bucket_start(period: Period, at: NaiveDateTime) -> NaiveDate {
    let date = at.date();
    match period {
        Period::Day => date,
        Period::Week => date - TimeDelta::days(i64::from(date.weekday().num_days_from_monday())),
        Period::Month => date.with_day(1).unwrap_or(date),
    }
}

/// Churn between two times, by period, oldest first; periods without activity are left out.
pub async fn churn(db: &Db, period: Period, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<ChurnBucket>> {
    if from >= to {
        return Err(Error::field("from", "must be before `to`"));
    }
    let (from, to) = (from.naive_utc(), to.naive_utc());
    db.read(move |conn| {
        let sent_times = repo::sent_between(conn, from, to)?;
        let delivery = repo::delivery_events_between(conn, from, to)?;
        let changes = storage::consent::list_changes_between(conn, from, to)?;
        let mut table: BTreeMap<NaiveDate, ChurnBucket> = BTreeMap::new();
        for at in sent_times {
            let start = bucket_start(period, at);
            table.entry(start).or_insert_with(|| ChurnBucket { start, ..ChurnBucket::default() }).sent += 1;
        }
        for (kind, at) in delivery {
            let start = bucket_start(period, at);
            let b = table.entry(start).or_insert_with(|| ChurnBucket { start, ..ChurnBucket::default() });
            match kind.as_str() {
                "hard_bounce" => b.hard_bounces += 1,
                "soft_bounce" => b.soft_bounces += 1,
                "complaint" => b.complaints += 1,
                _ => {}
            }
        }
        for (action, requires_confirmation, method, at) in changes {
            let start = bucket_start(period, at);
            let b = table.entry(start).or_insert_with(|| ChurnBucket { start, ..ChurnBucket::default() });
            match action.as_str() {
                "granted" if requires_confirmation == 0 => b.subscribed += 1,
                "confirmed" => b.subscribed += 1,
                "withdrawn" => {
                    b.left += 1;
                    if matches!(method.as_str(), "unsubscribe" | "preferences" | "api") {
                        b.unsubscribes += 1;
                    }
                }
                _ => {}
            }
        }
        Ok(table
            .into_values()
            .map(|mut b| {
                b.net_growth = b.subscribed - b.left;
                let rate = |n: i64| if b.sent > 0 { n as f64 / b.sent as f64 } else { 0.0 };
                b.unsubscribe_rate = rate(b.unsubscribes);
                b.bounce_rate = rate(b.hard_bounces + b.soft_bounces);
                b.complaint_rate = rate(b.complaints);
                b
            })
            .collect())
    })
    .await
}
