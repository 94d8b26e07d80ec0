//! Campaigns: templates, audience, the send policy, and the commands that start, pause,
//! resume and cancel a send. The sending itself is the dispatcher's.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Notify;

use super::keys::Keys;
use super::pagination::{Page, PageRequest};
use super::plugins::{Scripts, script_rejected};
use super::segments::{self, Predicate};
use crate::domain::contact::ContactRecord;
use crate::domain::{CampaignId, CampaignKind, CampaignPurpose, ListId, SegmentId};
use crate::error::{Error, FieldError, Result};
use crate::mail::{self, Draft, Signer, Transport, template};
use crate::plugins::contact::ContactFacts;
use crate::plugins::{Arguments, PluginHost, Script, ScriptContact, ScriptError};
use crate::storage::campaigns::{self as repo, CampaignRow, RecipientRow, recipient, status};
use crate::storage::models::{parse_id, utc};
use crate::storage::{self, Db, DbConnection};

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
    pub status: String,
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
        Ok(Self {
            id: parse_id("campaign id", &row.id)?,
            lists: lists.iter().map(|id| parse_id("list id", id)).collect::<Result<_>>()?,
            segment: row.segment_id.as_deref().map(|id| parse_id("segment id", id)).transpose()?,
            kind: row.kind.parse().map_err(Error::internal)?,
            purpose: row.purpose.parse().map_err(Error::internal)?,
            tracking: Tracking { opens: row.track_opens, clicks: row.track_clicks, individual: row.track_individual },
            name: row.name,
            subject: row.subject,
            from: row.from_address,
            reply_to: row.reply_to,
            html_body: row.html_body,
            text_body: row.text_body,
            policy_plugin: row.policy_plugin,
            complaint_threshold: row.complaint_threshold,
            status: row.status,
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
// Templates

/// A campaign's subject and bodies, compiled once per send, rendered in the template
/// sandbox (see [`crate::mail::template`]).
pub struct Templates {
    env: minijinja::Environment<'static>,
    html: bool,
}

/// One rendered message.
#[derive(Debug, Clone, Serialize)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

impl Templates {
    /// Compiles the three templates; errors name the field and the line.
    pub fn compile(subject: &str, text: &str, html: Option<&str>) -> std::result::Result<Self, Vec<FieldError>> {
        let mut env = template::environment();
        let mut errors = Vec::new();
        let sources = [
            ("subject.txt", "subject", Some(subject)),
            ("text.txt", "text_body", Some(text)),
            ("body.html", "html_body", html),
        ];
        for (name, field, source) in sources {
            if let Some(source) = source
                && let Err(error) = env.add_template_owned(name, source.to_owned())
            {
                errors.push(FieldError::new(field, template::describe(&error)));
            }
        }
        if errors.is_empty() { Ok(Self { env, html: html.is_some() }) } else { Err(errors) }
    }

    /// Renders the three parts, each within the sandbox's fuel and output limits, all
    /// within one deadline.
    pub fn render(&self, context: &minijinja::Value) -> std::result::Result<Rendered, String> {
        let deadline = std::time::Instant::now() + template::DEADLINE;
        let render = |name: &str| {
            self.env
                .get_template(name)
                .map_err(|e| template::describe(&e))
                .and_then(|t| template::render(&t, context, deadline))
                .map_err(|e| format!("{name}: {e}"))
        };
        Ok(Rendered {
            subject: render("subject.txt")?,
            text: render("text.txt")?,
            html: if self.html { Some(render("body.html")?) } else { None },
        })
    }
}

/// The contact as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct MailContact {
    pub id: String,
    pub email: String,
    pub company: Option<String>,
    pub country: Option<String>,
    pub attributes: serde_json::Value,
}

/// What templates may use: `contact`, `campaign`, `unsubscribe_url`, `preferences_url`.
pub fn template_context(
    campaign_name: &str,
    contact: &MailContact,
    unsubscribe: &str,
    preferences: &str,
) -> minijinja::Value {
    minijinja::context! {
        contact => minijinja::Value::from_serialize(contact),
        campaign => minijinja::context! { name => campaign_name },
        // Our own signed URLs: safe as they are (HTML escaping would turn `/` into `&#x2f;`).
        unsubscribe_url => minijinja::Value::from_safe_string(unsubscribe.to_owned()),
        preferences_url => minijinja::Value::from_safe_string(preferences.to_owned()),
    }
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
    let lists: Vec<String> = draft.lists.iter().map(ToString::to_string).collect();
    let segment = draft.segment.map(|id| id.to_string());
    let missing = ctx
        .db
        .read(move |conn| {
            let mut missing = Vec::new();
            for (index, id) in lists.iter().enumerate() {
                if storage::lists::find_list(conn, id)?.is_none() {
                    missing.push(FieldError::new(format!("lists[{index}]"), format!("there is no list {id}")));
                }
            }
            if let Some(id) = segment
                && storage::plugins::find_segment(conn, &id)?.is_none()
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
    id: String,
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
        segment_id: draft.segment.map(|id| id.to_string()),
        kind: draft.kind.as_str().to_owned(),
        purpose: draft.purpose.as_str().to_owned(),
        policy_plugin: draft.policy_plugin,
        track_opens: draft.tracking.opens,
        track_clicks: draft.tracking.clicks,
        track_individual: draft.tracking.individual,
        complaint_threshold: draft.complaint_threshold.unwrap_or(default_threshold),
        status: status::DRAFT.to_owned(),
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
    let row = to_row(CampaignId::new().to_string(), draft, from, ctx.complaint_threshold, storage::now());
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
            let stored = repo::find_campaign(conn, &id.to_string())?.ok_or_else(|| not_found(id))?;
            if !matches!(stored.status.as_str(), status::DRAFT | status::SCHEDULED) {
                return Err(Error::Conflict(format!(
                    "the campaign is {}; only a draft or scheduled one can change",
                    stored.status
                )));
            }
            let mut row = to_row(stored.id.clone(), draft, from, stored.complaint_threshold, now);
            row.status = stored.status;
            row.scheduled_at = stored.scheduled_at;
            row.created_at = stored.created_at;
            repo::update_campaign(conn, &row)?;
            Campaign::try_from(row)
        })
        .await
}

pub async fn find_campaign(db: &Db, id: CampaignId) -> Result<Campaign> {
    db.read(move |conn| repo::find_campaign(conn, &id.to_string())?.ok_or_else(|| not_found(id))?.try_into()).await
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
        let stored = repo::find_campaign(conn, &id.to_string())?.ok_or_else(|| not_found(id))?;
        if !matches!(stored.status.as_str(), status::DRAFT | status::SCHEDULED) {
            return Err(Error::Conflict(format!(
                "the campaign is {}; a campaign that started sending is kept as the record of what was sent",
                stored.status
            )));
        }
        repo::delete_campaign(conn, &stored.id)?;
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
            let mut row = repo::find_campaign(conn, &id.to_string())?.ok_or_else(|| not_found(id))?;
            if !matches!(row.status.as_str(), status::DRAFT | status::SCHEDULED) {
                return Err(Error::Conflict(format!("the campaign is {}; it can be sent once", row.status)));
            }
            row.status = status::SCHEDULED.to_owned();
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

/// Pause, resume or cancel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Cancel,
}

pub async fn command(ctx: &CampaignContext, id: CampaignId, command: Command) -> Result<Campaign> {
    let db = &ctx.db;
    let now = storage::now();
    let campaign = db
        .write(move |conn| {
            let key = id.to_string();
            let row = repo::find_campaign(conn, &key)?.ok_or_else(|| not_found(id))?;
            let moved = match command {
                Command::Pause => repo::transition(
                    conn,
                    &key,
                    &[status::SENDING, status::PREPARING],
                    status::PAUSED,
                    Some("paused by a user"),
                    now,
                )?,
                Command::Resume => repo::transition(conn, &key, &[status::PAUSED], status::SENDING, None, now)?,
                Command::Cancel => {
                    let moved = repo::transition(
                        conn,
                        &key,
                        &[status::DRAFT, status::SCHEDULED, status::PREPARING, status::SENDING, status::PAUSED],
                        status::CANCELLED,
                        Some("cancelled by a user"),
                        now,
                    )?;
                    if moved {
                        repo::cancel_pending(conn, &key)?;
                    }
                    moved
                }
            };
            if !moved {
                return Err(Error::Conflict(format!(
                    "the campaign is {}; it cannot be {}",
                    row.status,
                    match command {
                        Command::Pause => "paused",
                        Command::Resume => "resumed",
                        Command::Cancel => "cancelled",
                    }
                )));
            }
            repo::find_campaign(conn, &key)?.ok_or_else(|| not_found(id))?.try_into()
        })
        .await?;
    ctx.wake.notify_one();
    Ok(campaign)
}

// ---------------------------------------------------------------------------------------
// Audience and policy

/// The policy's answer for one contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub send: bool,
    pub reason: String,
    /// The list whose consent allows the message (its unsubscribe link leaves that list).
    pub list: Option<String>,
}

/// The send policy, compiled, with the campaign as scripts see it.
pub struct Policy {
    script: Script,
    campaign: Arguments,
}

impl Policy {
    pub async fn load(ctx: &CampaignContext, campaign: &Campaign) -> Result<Self> {
        let name = campaign.policy_plugin.clone().unwrap_or_else(|| DEFAULT_POLICY.to_owned());
        let plugin = super::plugins::find_plugin(&ctx.db, &ctx.scripts, name).await?;
        let script = super::plugins::compiled(&ctx.scripts.host, &plugin)?;
        let lists: Vec<String> = campaign.lists.iter().map(ToString::to_string).collect();
        let campaign = Arguments::new(&[json!({
            "id": campaign.id.to_string(),
            "name": campaign.name,
            "kind": campaign.kind.as_str(),
            "purpose": campaign.purpose.as_str(),
            "lists": lists,
        })])
        .map_err(Error::internal)?;
        Ok(Self { script, campaign })
    }

    pub fn decide(&self, host: &PluginHost, contact: ScriptContact) -> std::result::Result<Verdict, ScriptError> {
        let answer =
            self.script.call_with_contact(host, "eligible", &contact, &self.campaign)?.map(|(answer, _)| answer);
        let invalid = |what: &str| {
            self.script.wrong_answer(format!(
                "eligible must answer #{{send: bool, reason: string}}; {what} (for contact {})",
                contact.0.id
            ))
        };
        let answer = answer.filter(|a| a.kind() == "map").ok_or_else(|| invalid("it answered something else"))?;
        let send = answer.get("send").and_then(|v| v.as_bool()).ok_or_else(|| invalid("send is not a bool"))?;
        let reason = answer
            .get("reason")
            .and_then(|v| v.as_text())
            .filter(|r| !r.trim().is_empty())
            .ok_or_else(|| invalid("reason is missing"))?;
        let list = answer.get("list").and_then(|v| v.as_text());
        Ok(Verdict { send, reason, list })
    }
}

/// Why a contact in the audience is not sent to, before any script is asked.
pub const SUPPRESSED: &str = "suppressed";

/// How the audience divides.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AudienceCheck {
    pub audience: u64,
    pub eligible: u64,
    pub excluded: u64,
    /// Contacts excluded, by reason.
    pub excluded_by_reason: BTreeMap<String, u64>,
    /// Contacts allowed, by reason (the basis that allows them).
    pub eligible_by_reason: BTreeMap<String, u64>,
}

/// Walks the audience (the campaign's lists, narrowed by its segment) in batches, in
/// contact id order, with each contact's verdict. Each batch is read and its connection
/// given back before the scripts judge it, off the async threads: a slow segment or send
/// policy (each call up to its deadline) never holds a database connection.
pub struct AudienceWalk {
    db: Db,
    keys: Keys,
    host: Arc<PluginHost>,
    predicate: Arc<Predicate>,
    policy: Arc<Policy>,
    cursor: Option<String>,
    done: bool,
}

impl AudienceWalk {
    pub fn new(ctx: &CampaignContext, predicate: Predicate, policy: Policy) -> Self {
        Self {
            db: ctx.db.clone(),
            keys: ctx.keys.clone(),
            host: ctx.scripts.host.clone(),
            predicate: Arc::new(predicate),
            policy: Arc::new(policy),
            cursor: None,
            done: false,
        }
    }

    /// The next batch's verdicts; `None` once the audience was walked.
    pub async fn next(&mut self) -> Result<Option<Vec<(ContactFacts, Verdict)>>> {
        if self.done {
            return Ok(None);
        }
        let (batch, suppressed) = {
            let (predicate, keys, cursor) = (self.predicate.clone(), self.keys.clone(), self.cursor.clone());
            self.db
                .read(move |conn| {
                    let batch = predicate.batch(conn, cursor.as_deref(), BATCH)?;
                    let hashes: Vec<String> = batch
                        .iter()
                        .map(|f| keys.email_hash(&crate::domain::Email::from_trusted(f.email.clone()).key()))
                        .collect();
                    let suppressed = storage::consent::suppressed_among(conn, &hashes)?;
                    let flags: Vec<bool> = hashes.iter().map(|h| suppressed.contains(h)).collect();
                    Ok((batch, flags))
                })
                .await?
        };
        self.done = batch.len() as i64 != BATCH;
        self.cursor = batch.last().map(|f| f.id.clone());
        if batch.is_empty() {
            return Ok(None);
        }
        let (host, predicate, policy) = (self.host.clone(), self.predicate.clone(), self.policy.clone());
        let verdicts = tokio::task::spawn_blocking(move || judge(&host, &predicate, &policy, batch, suppressed))
            .await
            .map_err(Error::internal)??;
        Ok(Some(verdicts))
    }
}

/// The verdict on each contact of a batch the segment keeps: suppressed addresses are
/// excluded before any script is asked; the send policy decides for the others.
fn judge(
    host: &PluginHost,
    predicate: &Predicate,
    policy: &Policy,
    batch: Vec<ContactFacts>,
    suppressed: Vec<bool>,
) -> Result<Vec<(ContactFacts, Verdict)>> {
    let mut verdicts = Vec::with_capacity(batch.len());
    for (facts, suppressed) in batch.into_iter().zip(suppressed) {
        let contact = ScriptContact::new(facts);
        if !predicate.matches(host, &contact).map_err(script_rejected)? {
            continue;
        }
        let verdict = if suppressed {
            Verdict { send: false, reason: SUPPRESSED.to_owned(), list: None }
        } else {
            policy.decide(host, contact.clone()).map_err(script_rejected)?
        };
        let facts = Arc::try_unwrap(contact.0).unwrap_or_else(|shared| {
            ContactFacts::from(ContactRecord {
                id: shared.id.clone(),
                email: shared.email.clone(),
                lists: shared.lists.clone(),
                ..ContactRecord::default()
            })
        });
        verdicts.push((facts, verdict));
    }
    Ok(verdicts)
}

async fn audience_predicate(ctx: &CampaignContext, campaign: &Campaign) -> Result<Predicate> {
    let lists: Vec<String> = campaign.lists.iter().map(ToString::to_string).collect();
    let predicate = match campaign.segment {
        Some(id) => {
            let segment = segments::find_segment(&ctx.db, id.to_string()).await?;
            Predicate::compile(&ctx.db, &ctx.scripts, &segments::rule_of(&segment)?).await?
        }
        None => Predicate::everyone(),
    };
    Ok(predicate.for_audience(lists))
}

/// Answers, before sending, how many would receive the campaign and why others would not.
pub async fn check_audience(ctx: &CampaignContext, id: CampaignId) -> Result<AudienceCheck> {
    let campaign = find_campaign(&ctx.db, id).await?;
    let predicate = audience_predicate(ctx, &campaign).await?;
    let policy = Policy::load(ctx, &campaign).await?;
    let mut check = AudienceCheck::default();
    let mut walk = AudienceWalk::new(ctx, predicate, policy);
    while let Some(verdicts) = walk.next().await? {
        for (_, verdict) in verdicts {
            check.audience += 1;
            let counts = if verdict.send {
                check.eligible += 1;
                &mut check.eligible_by_reason
            } else {
                check.excluded += 1;
                &mut check.excluded_by_reason
            };
            *counts.entry(verdict.reason).or_default() += 1;
        }
    }
    Ok(check)
}

/// The recipients of a campaign, with each one's verdict: stored when the send starts,
/// so that who was excluded and why stays on record. Safe to repeat (rows already there
/// are kept).
pub async fn prepare_recipients(ctx: &CampaignContext, campaign: &Campaign) -> Result<u64> {
    let predicate = audience_predicate(ctx, campaign).await?;
    let policy = Policy::load(ctx, campaign).await?;
    let campaign_id = campaign.id.to_string();
    let lists: Vec<String> = campaign.lists.iter().map(ToString::to_string).collect();
    // Each batch of rows is written in its own short transaction, so that a long
    // preparation does not hold SQLite's write lock.
    let mut total = 0u64;
    let mut walk = AudienceWalk::new(ctx, predicate, policy);
    while let Some(verdicts) = walk.next().await? {
        let now = storage::now();
        let rows: Vec<RecipientRow> = verdicts
            .into_iter()
            .map(|(facts, verdict)| {
                let list = verdict.list.clone().filter(|l| lists.contains(l)).or_else(|| {
                    verdict
                        .send
                        .then(|| lists.iter().find(|l| facts.lists.contains(l)).or(lists.first()).cloned())
                        .flatten()
                });
                let facts = facts.into_record();
                RecipientRow {
                    id: uuid::Uuid::now_v7().to_string(),
                    campaign_id: campaign_id.clone(),
                    contact_id: Some(facts.id),
                    email: facts.email,
                    list_id: list,
                    status: if verdict.send { recipient::PENDING } else { recipient::EXCLUDED }.to_owned(),
                    reason: verdict.reason,
                    attempts: 0,
                    next_attempt_at: now,
                    lease_until: None,
                    sent_at: None,
                    last_error: None,
                    bounced_at: None,
                    complained_at: None,
                    unsubscribed_at: None,
                    opened_at: None,
                    clicked_at: None,
                }
            })
            .collect();
        total += rows.len() as u64;
        ctx.db.write(move |conn| Ok(repo::insert_recipients(conn, &rows)?)).await?;
    }
    Ok(total)
}

// ---------------------------------------------------------------------------------------
// Rendering one message

/// A campaign ready to render messages.
pub struct Prepared {
    pub campaign: Campaign,
    pub templates: Templates,
}

impl Prepared {
    pub fn new(campaign: Campaign) -> Result<Self> {
        let templates = Templates::compile(&campaign.subject, &campaign.text_body, campaign.html_body.as_deref())
            .map_err(Error::Validation)?;
        Ok(Self { campaign, templates })
    }

    /// The templates rendered for a contact, with the unsubscribe link they were given.
    fn render_for(
        &self,
        ctx: &CampaignContext,
        contact: &MailContact,
        list: Option<&str>,
        recipient_id: Option<&str>,
    ) -> std::result::Result<(Rendered, String), String> {
        let unsubscribe = super::signup::unsubscribe_link(&ctx.keys, &ctx.base_url, &contact.id, list, recipient_id);
        let preferences = super::signup::preferences_link(&ctx.keys, &ctx.base_url, &contact.id);
        let context = template_context(&self.campaign.name, contact, &unsubscribe, &preferences);
        Ok((self.templates.render(&context)?, unsubscribe))
    }

    /// The message to one recipient. `recipient_id` is `None` for previews and tests (no
    /// tracking, links that name no recipient).
    pub fn compose(
        &self,
        ctx: &CampaignContext,
        contact: &MailContact,
        to: &str,
        list: Option<&str>,
        recipient_id: Option<&str>,
        subject_prefix: &str,
    ) -> std::result::Result<mail::Composed, String> {
        let (mut rendered, unsubscribe) = self.render_for(ctx, contact, list, recipient_id)?;
        if let (Some(html), Some(recipient)) = (rendered.html.as_mut(), recipient_id) {
            let subject = if self.campaign.tracking.individual { recipient } else { "" };
            *html = super::tracking::instrument(ctx, &self.campaign, subject, html);
        }
        if !rendered.text.contains(&unsubscribe) {
            rendered.text.push_str(&format!("\n\n--\nUnsubscribe: {unsubscribe}\n"));
        }
        let draft = Draft {
            from: self.campaign.from.clone(),
            to: to.to_owned(),
            subject: format!("{subject_prefix}{}", rendered.subject),
            text: rendered.text,
            html: rendered.html,
            reply_to: self.campaign.reply_to.clone(),
            message_id: recipient_id.map(|id| format!("<{id}@{}>", ctx.message_domain)),
            headers: vec![
                ("List-Unsubscribe".to_owned(), format!("<{unsubscribe}>")),
                ("List-Unsubscribe-Post".to_owned(), "List-Unsubscribe=One-Click".to_owned()),
                ("List-Id".to_owned(), format!("<{}.{}>", self.campaign.id, ctx.message_domain)),
                ("Precedence".to_owned(), "bulk".to_owned()),
            ],
        };
        mail::compose(&draft, &ctx.message_domain, ctx.signer.as_deref()).map_err(|e| e.to_string())
    }
}

/// Contacts as templates see them, by id.
pub fn load_mail_contacts(conn: &mut DbConnection, ids: &[String]) -> Result<BTreeMap<String, MailContact>> {
    Ok(storage::contacts::find_for_mail(conn, ids)?
        .into_iter()
        .map(|(id, email, attributes, company, country)| {
            let attributes = serde_json::from_str(&attributes).unwrap_or(serde_json::Value::Object(Default::default()));
            (id.clone(), MailContact { id, email, company, country, attributes })
        })
        .collect())
}

/// A stand-in for previews without a contact.
fn sample_contact() -> MailContact {
    MailContact {
        id: uuid::Uuid::nil().to_string(),
        email: "someone@example.org".to_owned(),
        company: None,
        country: None,
        attributes: serde_json::json!({}),
    }
}

/// A campaign ready to render, and the contact to render it for (or a sample).
async fn prepared_for(
    ctx: &CampaignContext,
    id: CampaignId,
    contact: Option<String>,
) -> Result<(Prepared, MailContact)> {
    let prepared = Prepared::new(find_campaign(&ctx.db, id).await?)?;
    let contact = match contact {
        Some(contact_id) => {
            ctx.db
                .read(move |conn| {
                    load_mail_contacts(conn, std::slice::from_ref(&contact_id))?
                        .pop_first()
                        .map(|(_, c)| c)
                        .ok_or_else(|| Error::field("contact_id", format!("there is no contact {contact_id}")))
                })
                .await?
        }
        None => sample_contact(),
    };
    Ok((prepared, contact))
}

/// Renders the campaign for one contact (or a sample), as it would be sent.
pub async fn preview(
    ctx: &CampaignContext,
    id: CampaignId,
    contact: Option<String>,
) -> Result<(Rendered, MailContact)> {
    let (prepared, contact) = prepared_for(ctx, id, contact).await?;
    let ctx = ctx.clone();
    // Off the request threads: a template is an admin's program.
    template::off_the_request("template", move || {
        let list = prepared.campaign.lists.first().map(ToString::to_string);
        let (rendered, _) =
            prepared.render_for(&ctx, &contact, list.as_deref(), None).map_err(|e| Error::field("template", e))?;
        Ok((rendered, contact))
    })
    .await
}

/// Sends the campaign, as rendered for a contact (or a sample), to test addresses; the
/// subject says it is a test. Nothing is recorded as sent.
pub async fn test_send(
    ctx: &CampaignContext,
    id: CampaignId,
    to: Vec<String>,
    contact: Option<String>,
) -> Result<usize> {
    let mut errors = Vec::new();
    for (index, address) in to.iter().enumerate() {
        if crate::domain::Email::parse(address).is_err() {
            errors.push(FieldError::new(format!("to[{index}]"), "is not an e-mail address"));
        }
    }
    if to.is_empty() || to.len() > 20 {
        errors.push(FieldError::new("to", "must hold between 1 and 20 addresses"));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let (prepared, contact) = prepared_for(ctx, id, contact).await?;
    let composing = ctx.clone();
    let mails = template::off_the_request("template", move || {
        let list = prepared.campaign.lists.first().map(ToString::to_string);
        to.iter()
            .map(|address| {
                prepared
                    .compose(&composing, &contact, address, list.as_deref(), None, "[Test] ")
                    .map_err(|e| Error::field("template", e))
            })
            .collect::<Result<Vec<_>>>()
    })
    .await?;
    let count = mails.len();
    for mail in mails {
        ctx.transport
            .send_raw(&mail.from, &mail.to, mail.raw.as_bytes())
            .await
            .map_err(|e| Error::Unavailable(format!("the SMTP server refused the test message: {e}").into()))?;
    }
    Ok(count)
}

// ---------------------------------------------------------------------------------------
// Statistics

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
        let key = id.to_string();
        let campaign = repo::find_campaign(conn, &key)?.ok_or_else(|| not_found(id))?;
        let mut stats = CampaignStats { opens: campaign.opens, clicks: campaign.clicks, ..CampaignStats::default() };
        for (status, reason, count) in repo::count_by_status_and_reason(conn, &key)? {
            stats.audience += count;
            match status.as_str() {
                recipient::EXCLUDED => {
                    stats.excluded += count;
                    *stats.excluded_by_reason.entry(reason).or_default() += count;
                }
                recipient::PENDING => stats.pending += count,
                recipient::SENT => stats.sent += count,
                recipient::FAILED => stats.failed += count,
                _ => stats.cancelled += count,
            }
        }
        let [bounced, complaints, unsubscribes, opened, clicked] = repo::count_outcomes(conn, &key)?;
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
    status: Option<String>,
    page: PageRequest,
) -> Result<Page<Recipient>> {
    db.read(move |conn| {
        let key = id.to_string();
        repo::find_campaign(conn, &key)?.ok_or_else(|| not_found(id))?;
        let rows = repo::list_recipients(conn, &key, status.as_deref(), page.after.as_deref(), page.fetch_limit())?;
        Ok(page.page(rows, |r| r.id.clone()).map(Recipient::from))
    })
    .await
}

/// A campaign's recipient: its verdict and what became of its message.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub id: String,
    pub contact_id: Option<String>,
    pub email: String,
    pub list_id: Option<String>,
    pub status: String,
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

impl From<RecipientRow> for Recipient {
    fn from(row: RecipientRow) -> Self {
        let at = |time: Option<chrono::NaiveDateTime>| time.map(|t| t.and_utc());
        Self {
            id: row.id,
            contact_id: row.contact_id,
            email: row.email,
            list_id: row.list_id,
            status: row.status,
            reason: row.reason,
            attempts: row.attempts,
            sent_at: at(row.sent_at),
            last_error: row.last_error,
            bounced_at: at(row.bounced_at),
            complained_at: at(row.complained_at),
            unsubscribed_at: at(row.unsubscribed_at),
            opened_at: at(row.opened_at),
            clicked_at: at(row.clicked_at),
        }
    }
}

fn not_found(id: CampaignId) -> Error {
    Error::NotFound(format!("there is no campaign {id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever a template or a contact's attributes hold, compiling and rendering
        /// answer (an error names the field and line); nothing panics.
        #[test]
        fn any_template_and_contact_are_answered(source in ".{0,80}", value in ".{0,40}") {
            let text = format!("Hello {{{{ contact.attributes.name }}}} {source}");
            if let Ok(templates) = Templates::compile(&source, &text, Some(&source)) {
                let contact = MailContact {
                    id: "id".to_owned(),
                    email: "a@example.org".to_owned(),
                    company: None,
                    country: None,
                    attributes: serde_json::json!({"name": value}),
                };
                let _ = templates.render(&template_context("C", &contact, "https://u", "https://p"));
            } else if let Err(errors) = Templates::compile(&source, &text, Some(&source)) {
                proptest::prop_assert!(errors.iter().all(|e| ["subject", "text_body", "html_body"].contains(&e.field.as_str())));
            }
        }
    }
}
