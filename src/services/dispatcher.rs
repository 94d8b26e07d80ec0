//! The campaign dispatcher: prepares audiences when their time comes, then sends in
//! batches claimed from the database, at the configured rate and concurrency.
//!
//! Crash safety: a recipient is claimed with a lease, marked sent only after the SMTP
//! server accepted its message, and a campaign is finished only when no recipient is left.
//! If the process dies, the leases run out and the recipients of the batch in flight are
//! sent again, with the same Message-ID; nobody is skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use futures_util::StreamExt;
use tokio::sync::{Mutex, Notify};

use super::campaigns::{self, Campaign, CampaignContext, Prepared};
use crate::domain::CampaignId;
use crate::domain::CampaignStatus;
use crate::domain::ContactId;
use crate::error::{Error, Result};
use crate::storage::campaigns::{self as repo, Claimed};
use crate::storage::{self};

/// How the dispatcher sends.
#[derive(Debug, Clone)]
pub struct SendOptions {
    pub concurrency: usize,
    pub batch_size: i64,
    /// Messages per second from this instance; 0: no limit.
    pub per_second: u32,
    /// Messages per sliding hour from all instances; 0: no limit.
    pub per_hour: u32,
    pub max_attempts: i32,
    /// How long a claimed batch is held before others may take it.
    pub lease: TimeDelta,
}

impl SendOptions {
    pub fn from_settings(settings: &crate::settings::Settings) -> Self {
        Self {
            concurrency: settings.send_concurrency.max(1) as usize,
            batch_size: i64::from(settings.send_batch_size.max(1)),
            per_second: settings.send_rate_per_second,
            per_hour: settings.send_rate_per_hour,
            max_attempts: settings.send_max_attempts.max(1) as i32,
            lease: TimeDelta::seconds(settings.send_lease_seconds.max(1) as i64),
        }
    }
}

/// Spaces messages out to a rate (per instance).
struct Pacer {
    interval: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(per_second: u32) -> Self {
        let interval = (per_second > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(per_second)));
        Self { interval, next: Mutex::new(Instant::now()) }
    }

    async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = (*next).max(now);
            *next = at + interval;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }
}

pub struct Dispatcher {
    ctx: CampaignContext,
    options: SendOptions,
    pacer: Pacer,
    wake: Arc<Notify>,
    /// Compiled templates by campaign, rebuilt when the campaign changes.
    prepared: Mutex<HashMap<CampaignId, Arc<Prepared>>>,
}

/// What one round of work did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub prepared: usize,
    pub sent: usize,
    pub failed: usize,
}

impl Round {
    fn idle(&self) -> bool {
        *self == Round::default()
    }
}

impl Dispatcher {
    /// A dispatcher woken by `ctx.wake`.
    pub fn new(ctx: CampaignContext, options: SendOptions) -> Self {
        let pacer = Pacer::new(options.per_second);
        let wake = ctx.wake.clone();
        Self { ctx, options, pacer, wake, prepared: Mutex::new(HashMap::new()) }
    }

    /// Runs until the process ends.
    pub async fn run(self) {
        loop {
            let round = self.round().await;
            match round {
                Ok(round) if !round.idle() => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %error, "campaign dispatch failed; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Prepares what is due, then sends one batch of every campaign being sent.
    pub async fn round(&self) -> Result<Round> {
        let mut round = Round::default();
        round.prepared += self.prepare_due().await?;
        let sending = self.ctx.db.read(|conn| Ok(repo::sending_campaigns(conn)?)).await?;
        for id in sending {
            let (sent, failed) = self.send_batch(id).await?;
            round.sent += sent;
            round.failed += failed;
        }
        Ok(round)
    }

    /// Takes one due campaign, checks its audience against the policy and stores the
    /// recipients, then starts sending. A policy that fails stops the campaign as a draft
    /// with the script's error, so that nobody is mailed on a broken rule.
    async fn prepare_due(&self) -> Result<usize> {
        let now = storage::now();
        if !self.ctx.db.read(move |conn| Ok(repo::preparation_due(conn, now)?)).await? {
            return Ok(0);
        }
        let lease = self.options.lease.max(TimeDelta::minutes(2));
        let claimed = self.ctx.db.write(move |conn| Ok(repo::claim_preparation(conn, now, now + lease)?)).await?;
        let Some(row) = claimed else {
            return Ok(0);
        };
        let campaign = Campaign::try_from(row)?;
        let id = campaign.id;
        tracing::info!(campaign = %id, "preparing the audience");
        match campaigns::prepare_recipients(&self.ctx, &campaign).await {
            Ok(count) => {
                let now = storage::now();
                let moved = self
                    .ctx
                    .db
                    .write(move |conn| {
                        Ok(repo::transition(
                            conn,
                            id,
                            &[CampaignStatus::Preparing],
                            CampaignStatus::Sending,
                            None,
                            now,
                        )?)
                    })
                    .await?;
                tracing::info!(campaign = %campaign.id, recipients = count, started = moved, "audience prepared");
                Ok(1)
            }
            Err(error @ (Error::Validation(_) | Error::NotFound(_))) => {
                let reason = problem_text(&error);
                tracing::error!(campaign = %id, reason = %reason, "the audience could not be prepared");
                let now = storage::now();
                self.ctx
                    .db
                    .write(move |conn| {
                        repo::transition(
                            conn,
                            id,
                            &[CampaignStatus::Preparing],
                            CampaignStatus::Draft,
                            Some(&reason),
                            now,
                        )?;
                        Ok(())
                    })
                    .await?;
                Ok(1)
            }
            Err(error) => Err(error),
        }
    }

    async fn prepared(&self, id: CampaignId) -> Result<Option<Arc<Prepared>>> {
        let row = self.ctx.db.read(move |conn| Ok(repo::find_campaign(conn, id)?)).await?;
        let Some(row) = row.filter(|row| row.status == CampaignStatus::Sending) else {
            return Ok(None);
        };
        let mut cache = self.prepared.lock().await;
        if let Some(prepared) = cache.get(&id)
            && prepared.campaign.updated_at.naive_utc() == row.updated_at
        {
            return Ok(Some(prepared.clone()));
        }
        let prepared = Arc::new(Prepared::new(Campaign::try_from(row)?)?);
        cache.insert(id, prepared.clone());
        Ok(Some(prepared))
    }

    /// Claims, renders, signs and sends one batch of a campaign; answers (sent, failed).
    async fn send_batch(&self, id: CampaignId) -> Result<(usize, usize)> {
        let Some(prepared) = self.prepared(id).await? else {
            return Ok((0, 0));
        };
        let mut limit = self.options.batch_size;
        if self.options.per_hour > 0 {
            let since = storage::now() - TimeDelta::hours(1);
            let sent = self.ctx.db.read(move |conn| Ok(repo::count_sent_since(conn, since)?)).await?;
            limit = limit.min(i64::from(self.options.per_hour) - sent);
            if limit <= 0 {
                return Ok((0, 0));
            }
        }
        let (campaign_id, lease) = (id, self.options.lease);
        let claimed = self
            .ctx
            .db
            .write(move |conn| {
                let now = storage::now();
                Ok(repo::claim_recipients(conn, campaign_id, now, now + lease, limit)?)
            })
            .await?;
        if claimed.is_empty() {
            let (campaign_id, now) = (id, storage::now());
            let finished = self
                .ctx
                .db
                .write(move |conn| {
                    let finished = repo::finish_if_done(conn, campaign_id, now)?;
                    if finished {
                        let counts: serde_json::Map<String, serde_json::Value> =
                            repo::count_by_status_and_reason(conn, campaign_id)?
                                .into_iter()
                                .fold(serde_json::Map::new(), |mut by_status, (status, _, count)| {
                                    let total = by_status.get(status.as_str()).and_then(serde_json::Value::as_i64).unwrap_or(0);
                                    by_status.insert(status.to_string(), (total + count).into());
                                    by_status
                                });
                        super::webhooks::emit(
                            conn,
                            crate::domain::partner::EventType::CampaignSent,
                            serde_json::json!({"campaign_id": campaign_id, "finished_at": crate::storage::models::utc(now), "recipients": counts}),
                        )?;
                    }
                    Ok(finished)
                })
                .await?;
            if finished {
                tracing::info!(campaign = %id, "campaign sent");
                self.prepared.lock().await.remove(&id);
            }
            return Ok((0, 0));
        }
        let ids: Vec<String> = claimed.iter().map(|r| r.id.clone()).collect();
        let messages = self.render(prepared, claimed).await?;
        let sending = futures_util::stream::iter(messages)
            .map(|(recipient, message)| async move {
                let outcome = match message {
                    Ok(mail) => {
                        self.pacer.wait().await;
                        self.ctx.transport.send_raw(&mail.from, &mail.to, mail.raw.as_bytes()).await
                    }
                    Err(error) => Err(crate::mail::SendError { permanent: true, message: error }),
                };
                (recipient, outcome)
            })
            .buffer_unordered(self.options.concurrency)
            .collect::<Vec<_>>();
        let outcomes = self.holding_lease(ids, sending).await;
        self.record(outcomes).await
    }

    /// Runs `work` while extending the lease on `ids` every third of its length, so that a
    /// batch slowed by the SMTP server is not taken over and sent twice.
    async fn holding_lease<T>(&self, ids: Vec<String>, work: impl std::future::Future<Output = T>) -> T {
        let (db, lease) = (self.ctx.db.clone(), self.options.lease);
        let every = (lease / 3).to_std().unwrap_or(Duration::from_secs(1)).max(Duration::from_millis(200));
        let renewal = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let (ids, until) = (ids.clone(), storage::now() + lease);
                if let Err(error) = db.write(move |conn| Ok(repo::extend_lease(conn, &ids, until)?)).await {
                    tracing::warn!(error = %error, "the lease on a batch could not be extended");
                }
            }
        });
        // Stopped when the work ends, or when this future is dropped halfway.
        let _renewal = AbortOnDrop(renewal);
        work.await
    }

    /// Renders and signs on the blocking pool (RSA signatures take a millisecond each).
    async fn render(
        &self,
        prepared: Arc<Prepared>,
        claimed: Vec<Claimed>,
    ) -> Result<Vec<(Claimed, std::result::Result<crate::mail::Composed, String>)>> {
        let ids: Vec<ContactId> = claimed.iter().filter_map(|r| r.contact_id).collect();
        let contacts = self.ctx.db.read(move |conn| campaigns::load_mail_contacts(conn, &ids)).await?;
        let ctx = self.ctx.clone();
        let threads = crate::threads::cores();
        tokio::task::spawn_blocking(move || {
            let compose = |recipient: Claimed| {
                let contact = recipient.contact_id.as_ref().and_then(|id| contacts.get(id));
                let message = match contact {
                    Some(contact) => prepared.compose(
                        &ctx,
                        contact,
                        &contact.email,
                        recipient.list_id.map(|id| id.to_string()).as_deref(),
                        Some(&recipient.id),
                        "",
                    ),
                    None => Err("the contact no longer exists".to_owned()),
                };
                (recipient, message)
            };
            // Signing (RSA above all) is the costly part: one slice of the batch per core.
            crate::threads::map_on_cores(claimed, threads, compose)
                .ok_or_else(|| Error::internal("rendering a batch failed"))
        })
        .await
        .map_err(Error::internal)?
    }

    /// Marks what the SMTP server accepted as sent, schedules retries, gives up on the
    /// permanent failures, all in one transaction.
    async fn record(
        &self,
        outcomes: Vec<(Claimed, std::result::Result<(), crate::mail::SendError>)>,
    ) -> Result<(usize, usize)> {
        let max_attempts = self.options.max_attempts;
        self.ctx
            .db
            .write(move |conn| {
                let now = storage::now();
                let mut sent = Vec::new();
                let mut failed = 0;
                for (recipient, outcome) in outcomes {
                    match outcome {
                        Ok(()) => sent.push(recipient.id),
                        Err(error) if error.permanent || recipient.attempts >= max_attempts => {
                            failed += 1;
                            tracing::warn!(recipient = %recipient.id, error = %error, "message given up");
                            repo::mark_unsent(conn, &recipient.id, None, &error.message)?;
                        }
                        Err(error) => {
                            let delay = TimeDelta::seconds(30 * 2_i64.pow(recipient.attempts.clamp(1, 8) as u32 - 1));
                            tracing::info!(recipient = %recipient.id, error = %error, retry_in_s = delay.num_seconds(), "message not sent; will retry");
                            repo::mark_unsent(conn, &recipient.id, Some(now + delay), &error.message)?;
                        }
                    }
                }
                repo::mark_sent(conn, &sent, now)?;
                Ok((sent.len(), failed))
            })
            .await
    }
}

/// A task stopped when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn problem_text(error: &Error) -> String {
    match error {
        Error::Validation(errors) => {
            errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    }
}

/// Sends a campaign to the end from this process (the benchmark and tests use it; the
/// server runs [`Dispatcher::run`]).
pub async fn send_until_done(dispatcher: &Dispatcher, id: CampaignId) -> Result<Round> {
    let mut total = Round::default();
    loop {
        let round = dispatcher.round().await?;
        total.prepared += round.prepared;
        total.sent += round.sent;
        total.failed += round.failed;
        let campaign = campaigns::find_campaign(&dispatcher.ctx.db, id).await?;
        if !campaign.status.is_in_flight() {
            return Ok(total);
        }
        if round.idle() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
