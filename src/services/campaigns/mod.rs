//! Campaigns: what one is, saving it, and the commands that start, pause, resume and
//! cancel a send; its templates, audience (with the send policy), rendering, tracking and
//! figures in the modules below. The sending itself is the dispatcher's.

mod audience;
mod rendering;
mod stats;
mod templates;
pub mod tracking;

pub use audience::*;
pub use rendering::*;
pub use stats::*;
pub use templates::*;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::keys::Keys;
use super::pagination::{Page, PageRequest};
use super::plugins::Scripts;
use crate::domain::{CampaignCommand, CampaignId, CampaignKind, CampaignPurpose, CampaignStatus, ListId, SegmentId};
use crate::error::{Error, FieldError, Result};
use crate::mail::{Signer, Transport};
use crate::storage::campaigns::{self as repo, CampaignRow};
use crate::storage::models::{parse_id, utc};
use crate::storage::{self, Db};

/// The plugin whose `eligible` hook decides when a campaign names none.
pub const DEFAULT_POLICY: &str = "send-policy";
const BATCH: i64 = 2000;

/// Opens and clicks, off unless asked for; aggregate unless `individual`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracking {
    pub opens: bool,
    pub clicks: bool,
    pub individual: bool,
}

#[derive(Debug, Clone)]
pub struct Campaign {
    pub id: CampaignId,
    pub name: String,
    pub subject: String,
    pub from: String,
    pub reply_to: Option<String>,
    pub html_body: Option<String>,
    pub text_body: String,
    pub lists: Vec<ListId>,
    pub segment: Option<SegmentId>,
    pub kind: CampaignKind,
    pub purpose: CampaignPurpose,
    pub policy_plugin: Option<String>,
    pub tracking: Tracking,
    pub complaint_threshold: f64,
    pub status: CampaignStatus,
    pub status_reason: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub opens: i64,
    pub clicks: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<CampaignRow> for Campaign {
    type Error = Error;

    fn try_from(row: CampaignRow) -> Result<Self> {
        let lists: Vec<String> = serde_json::from_str(&row.lists).map_err(Error::internal)?;
        let status = row.status;
        Ok(Self {
            id: row.id,
            lists: lists.iter().map(|id| parse_id("list id", id)).collect::<Result<_>>()?,
            segment: row.segment_id,
            kind: row.kind,
            purpose: row.purpose,
            tracking: Tracking { opens: row.track_opens, clicks: row.track_clicks, individual: row.track_individual },
            name: row.name,
            subject: row.subject,
            from: row.from_address,
            reply_to: row.reply_to,
            html_body: row.html_body,
            text_body: row.text_body,
            policy_plugin: row.policy_plugin,
            complaint_threshold: row.complaint_threshold,
            status,
            status_reason: row.status_reason,
            scheduled_at: row.scheduled_at.map(utc),
            started_at: row.started_at.map(utc),
            finished_at: row.finished_at.map(utc),
            opens: row.opens,
            clicks: row.clicks,
            created_at: utc(row.created_at),
            updated_at: utc(row.updated_at),
        })
    }
}

/// What an editor writes; everything but the name has a default.
#[derive(Debug, Clone)]
pub struct CampaignDraft {
    pub name: String,
    pub subject: String,
    pub from: Option<String>,
    pub reply_to: Option<String>,
    pub html_body: Option<String>,
    pub text_body: String,
    pub lists: Vec<ListId>,
    pub segment: Option<SegmentId>,
    pub kind: CampaignKind,
    pub purpose: CampaignPurpose,
    pub policy_plugin: Option<String>,
    pub tracking: Tracking,
    pub complaint_threshold: Option<f64>,
}

impl CampaignDraft {
    pub fn of(campaign: &Campaign) -> Self {
        Self {
            name: campaign.name.clone(),
            subject: campaign.subject.clone(),
            from: Some(campaign.from.clone()),
            reply_to: campaign.reply_to.clone(),
            html_body: campaign.html_body.clone(),
            text_body: campaign.text_body.clone(),
            lists: campaign.lists.clone(),
            segment: campaign.segment,
            kind: campaign.kind,
            purpose: campaign.purpose,
            policy_plugin: campaign.policy_plugin.clone(),
            tracking: campaign.tracking,
            complaint_threshold: Some(campaign.complaint_threshold),
        }
    }
}

/// Shared by the campaign commands and the dispatcher.
#[derive(Clone)]
pub struct CampaignContext {
    pub db: Db,
    pub keys: Keys,
    pub scripts: Scripts,
    /// Wakes the dispatcher when a campaign was scheduled or resumed.
    pub wake: Arc<Notify>,
    pub transport: Transport,
    pub signer: Option<Arc<Signer>>,
    pub base_url: String,
    pub message_domain: String,
    pub mail_from: String,
    pub complaint_threshold: f64,
}

// ---------------------------------------------------------------------------------------
// Saving

fn check_draft(draft: &CampaignDraft, mail_from: &str) -> Result<String> {
    let mut errors = Vec::new();
    if draft.name.trim().is_empty() {
        errors.push(FieldError::new("name", "must not be empty"));
    }
    if draft.subject.trim().is_empty() {
        errors.push(FieldError::new("subject", "must not be empty"));
    }
    if draft.text_body.trim().is_empty() {
        errors.push(FieldError::new("text_body", "must not be empty: every message carries a plain-text part"));
    }
    if draft.lists.is_empty() {
        errors.push(FieldError::new("lists", "must name at least one list"));
    }
    let from = draft.from.clone().unwrap_or_else(|| mail_from.to_owned());
    if let Err(e) = crate::mail::parse_mailbox(&from) {
        errors.push(FieldError::new("from", format!("is not a mailbox: {e}")));
    }
    if let Some(reply_to) = &draft.reply_to
        && let Err(e) = crate::mail::parse_mailbox(reply_to)
    {
        errors.push(FieldError::new("reply_to", format!("is not a mailbox: {e}")));
    }
    if let Some(threshold) = draft.complaint_threshold
        && !(0.0..=1.0).contains(&threshold)
    {
        errors.push(FieldError::new("complaint_threshold", "must be between 0 and 1"));
    }
    if let Err(template_errors) = Templates::compile(&draft.subject, &draft.text_body, draft.html_body.as_deref()) {
        errors.extend(template_errors);
    }
    if errors.is_empty() { Ok(from) } else { Err(Error::Validation(errors)) }
}

/// Lists and segment must exist, the policy plugin must define `eligible`.
async fn check_references(ctx: &CampaignContext, draft: &CampaignDraft) -> Result<()> {
    let lists: Vec<ListId> = draft.lists.to_vec();
    let segment = draft.segment;
    let missing = ctx
        .db
        .read(move |conn| {
            let mut missing = Vec::new();
            for (index, id) in lists.iter().enumerate() {
                if storage::lists::find_list(conn, *id)?.is_none() {
                    missing.push(FieldError::new(format!("lists[{index}]"), format!("there is no list {id}")));
                }
            }
            if let Some(id) = segment
                && storage::plugins::find_segment(conn, id)?.is_none()
            {
                missing.push(FieldError::new("segment_id", format!("there is no segment {id}")));
            }
            Ok(missing)
        })
        .await?;
    if !missing.is_empty() {
        return Err(Error::Validation(missing));
    }
    let policy = draft.policy_plugin.clone().unwrap_or_else(|| DEFAULT_POLICY.to_owned());
    let plugin = super::plugins::find_plugin(&ctx.db, &ctx.scripts, policy.clone())
        .await
        .map_err(|_| Error::field("policy_plugin", format!("there is no plugin {policy}")))?;
    if !plugin.hooks.iter().any(|hook| hook == "eligible") {
        return Err(Error::field(
            "policy_plugin",
            format!("the plugin {policy} defines no eligible(contact, campaign) hook"),
        ));
    }
    Ok(())
}

fn to_row(
    id: CampaignId,
    draft: CampaignDraft,
    from: String,
    default_threshold: f64,
    now: chrono::NaiveDateTime,
) -> CampaignRow {
    CampaignRow {
        id,
        name: draft.name.trim().to_owned(),
        subject: draft.subject,
        from_address: from,
        reply_to: draft.reply_to,
        html_body: draft.html_body,
        text_body: draft.text_body,
        lists: serde_json::to_string(&draft.lists.iter().map(ToString::to_string).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".to_owned()),
        segment_id: draft.segment,
        kind: draft.kind,
        purpose: draft.purpose,
        policy_plugin: draft.policy_plugin,
        track_opens: draft.tracking.opens,
        track_clicks: draft.tracking.clicks,
        track_individual: draft.tracking.individual,
        complaint_threshold: draft.complaint_threshold.unwrap_or(default_threshold),
        status: CampaignStatus::Draft,
        status_reason: None,
        scheduled_at: None,
        started_at: None,
        finished_at: None,
        lease_until: None,
        opens: 0,
        clicks: 0,
        created_at: now,
        updated_at: now,
    }
}

pub async fn create_campaign(ctx: &CampaignContext, draft: CampaignDraft) -> Result<Campaign> {
    let from = check_draft(&draft, &ctx.mail_from)?;
    check_references(ctx, &draft).await?;
    let row = to_row(CampaignId::new(), draft, from, ctx.complaint_threshold, storage::now());
    ctx.db
        .write(move |conn| {
            repo::insert_campaign(conn, &row)?;
            Campaign::try_from(row)
        })
        .await
}

/// Changes a campaign that has not started sending.
pub async fn update_campaign(
    ctx: &CampaignContext,
    id: CampaignId,
    change: impl FnOnce(&mut CampaignDraft),
) -> Result<Campaign> {
    let current = find_campaign(&ctx.db, id).await?;
    let mut draft = CampaignDraft::of(&current);
    change(&mut draft);
    let from = check_draft(&draft, &ctx.mail_from)?;
    check_references(ctx, &draft).await?;
    let now = storage::now();
    ctx.db
        .write(move |conn| {
            let stored = repo::find_campaign(conn, id)?.ok_or_else(|| not_found(id))?;
            if !stored.status.is_editable() {
                return Err(Error::Conflict(format!(
                    "the campaign is {}; only a draft or scheduled one can change",
                    stored.status
                )));
            }
            let mut row = to_row(stored.id, draft, from, stored.complaint_threshold, now);
            row.status = stored.status;
            row.scheduled_at = stored.scheduled_at;
            row.created_at = stored.created_at;
            repo::update_campaign(conn, &row)?;
            Campaign::try_from(row)
        })
        .await
}

pub async fn find_campaign(db: &Db, id: CampaignId) -> Result<Campaign> {
    db.read(move |conn| repo::find_campaign(conn, id)?.ok_or_else(|| not_found(id))?.try_into()).await
}

pub async fn list_campaigns(db: &Db, page: PageRequest) -> Result<Page<Campaign>> {
    db.read(move |conn| {
        let rows = repo::list_campaigns(conn, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(Campaign::try_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.page(rows, |c| c.id.to_string()))
    })
    .await
}

/// Deletes a campaign that never sent; a sent one is the record of what went to whom.
pub async fn delete_campaign(db: &Db, id: CampaignId) -> Result<()> {
    db.write(move |conn| {
        let stored = repo::find_campaign(conn, id)?.ok_or_else(|| not_found(id))?;
        if !stored.status.is_editable() {
            return Err(Error::Conflict(format!(
                "the campaign is {}; a campaign that started sending is kept as the record of what was sent",
                stored.status
            )));
        }
        repo::delete_campaign(conn, stored.id)?;
        Ok(())
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Commands

/// Sends now (`at = None`) or at a time: the audience is checked against the policy when
/// the time comes.
pub async fn schedule(ctx: &CampaignContext, id: CampaignId, at: Option<DateTime<Utc>>) -> Result<Campaign> {
    let db = &ctx.db;
    let now = storage::now();
    let at = at.map_or(now, |at| at.naive_utc());
    let campaign = db
        .write(move |conn| {
            let mut row = repo::find_campaign(conn, id)?.ok_or_else(|| not_found(id))?;
            if !row.status.is_editable() {
                return Err(Error::Conflict(format!("the campaign is {}; it can be sent once", row.status)));
            }
            row.status = CampaignStatus::Scheduled;
            row.scheduled_at = Some(at);
            row.status_reason = None;
            row.updated_at = now;
            repo::update_campaign(conn, &row)?;
            Campaign::try_from(row)
        })
        .await?;
    ctx.wake.notify_one();
    Ok(campaign)
}

/// Pauses, resumes or cancels a campaign, from where the command applies.
pub async fn command(ctx: &CampaignContext, id: CampaignId, command: CampaignCommand) -> Result<Campaign> {
    let db = &ctx.db;
    let now = storage::now();
    let campaign = db
        .write(move |conn| {
            let row = repo::find_campaign(conn, id)?.ok_or_else(|| not_found(id))?;
            let (from, to) = command.transition();
            let reason = match command {
                CampaignCommand::Pause => Some("paused by a user"),
                CampaignCommand::Resume => None,
                CampaignCommand::Cancel => Some("cancelled by a user"),
            };
            let moved = repo::transition(conn, id, from, to, reason, now)?;
            if moved && to == CampaignStatus::Cancelled {
                repo::cancel_pending(conn, id)?;
            }
            if !moved {
                return Err(Error::Conflict(format!(
                    "the campaign is {}; it cannot be {}",
                    row.status,
                    command.done()
                )));
            }
            repo::find_campaign(conn, id)?.ok_or_else(|| not_found(id))?.try_into()
        })
        .await?;
    ctx.wake.notify_one();
    Ok(campaign)
}

fn not_found(id: CampaignId) -> Error {
    Error::NotFound(format!("there is no campaign {id}"))
}
