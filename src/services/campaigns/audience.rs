//! Who a campaign goes to: its lists narrowed by its segment, each contact judged by the
//! send policy's `eligible` hook, and the recipients prepared from that walk.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::{BATCH, Campaign, CampaignContext, DEFAULT_POLICY, find_campaign};
use crate::domain::contact::ContactRecord;
use crate::domain::{CampaignId, RecipientStatus};
use crate::error::{Error, Result};
use crate::plugins::contact::ContactFacts;
use crate::plugins::{Answer, Arguments, PluginHost, Script, ScriptContact, ScriptError};
use crate::services::keys::Keys;
use crate::services::plugins::script_rejected;
use crate::services::segments;
use crate::services::segments::Predicate;
use crate::storage;
use crate::storage::campaigns::RecipientRow;
use crate::storage::{Db, campaigns as repo};

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
        let plugin = crate::services::plugins::find_plugin(&ctx.db, &ctx.scripts, name).await?;
        let script = crate::services::plugins::compiled(&ctx.scripts.host, &plugin)?;
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
        let answer = answer.filter(Answer::is_map).ok_or_else(|| invalid("it answered something else"))?;
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
        self.cursor = batch.last().map(|f| f.id.to_string());
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
                id: shared.id,
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
            let segment = segments::find_segment(&ctx.db, id).await?;
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
    let campaign_id = campaign.id;
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
                    campaign_id,
                    contact_id: Some(facts.id),
                    email: facts.email,
                    list_id: list.and_then(|id| id.parse().ok()),
                    status: if verdict.send { RecipientStatus::Pending } else { RecipientStatus::Excluded },
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
