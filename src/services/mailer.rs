//! System mail: queued in the outbox inside the transaction that causes it, then sent by
//! a worker with retries, so that neither a crash nor an SMTP outage loses a message.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::Notify;

use crate::error::Result;
use crate::mail::{Composed, Transport};
use crate::storage::outbox::{self, OutboxRow};
use crate::storage::{self, Db, DbConnection};

/// Attempts before a mail is given up.
const MAX_ATTEMPTS: i32 = 12;
/// How long a worker holds a mail it is sending.
const LEASE: TimeDelta = TimeDelta::minutes(2);
const BATCH: i64 = 64;
/// How long a woken worker waits for more mail before it claims: a burst of signups is
/// then claimed and marked sent a batch at a time, not in a few statements (and commits)
/// per mail. Far below what a person waiting for their confirmation mail notices.
const GATHER: Duration = Duration::from_millis(50);

/// Queues a mail; call inside the write transaction of what causes it.
pub fn enqueue(conn: &mut DbConnection, kind: &str, recipient_key: &str, mail: &Composed) -> Result<()> {
    let now = storage::now();
    outbox::insert_mail(
        conn,
        &OutboxRow {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kind.to_owned(),
            recipient: mail.to.clone(),
            recipient_key: recipient_key.to_owned(),
            sender: mail.from.clone(),
            message: mail.raw.clone(),
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            locked_until: None,
            sent_at: None,
            failed_at: None,
            last_error: None,
        },
    )?;
    Ok(())
}

/// Sends what the outbox holds. Every instance runs one; leases keep them apart.
pub struct OutboxWorker {
    db: Db,
    transport: Transport,
    wake: Arc<Notify>,
    poll: Duration,
}

impl OutboxWorker {
    pub fn new(db: Db, transport: Transport, wake: Arc<Notify>) -> Self {
        Self { db, transport, wake, poll: Duration::from_secs(2) }
    }

    /// Runs until the process ends: sends what is due, then sleeps until woken (a mail
    /// was queued here) or the poll interval passes (a mail queued by another instance,
    /// or a retry coming due).
    pub async fn run(self) {
        loop {
            if let Err(error) = self.send_due().await {
                tracing::warn!(error = %error, "the outbox could not be processed; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll) => {}
                () = self.wake.notified() => tokio::time::sleep(GATHER).await,
            }
        }
    }

    /// Sends every mail due now; answers how many were sent. A batch is claimed in one
    /// transaction, sent concurrently, and its outcomes recorded in one transaction, so
    /// that a burst of signups costs the database few writes.
    pub async fn send_due(&self) -> Result<usize> {
        let mut sent = 0;
        loop {
            let now = storage::now();
            let due = self.db.read(move |conn| Ok(outbox::find_due(conn, now, BATCH)?)).await?;
            if due.is_empty() {
                return Ok(sent);
            }
            let claimed = self.db.write(move |conn| Ok(outbox::claim(conn, &due, now, now + LEASE)?)).await?;
            let attempts = claimed.into_iter().map(|mail| async move {
                let outcome = self.transport.send_raw(&mail.sender, &mail.recipient, mail.message.as_bytes()).await;
                (mail, outcome)
            });
            let outcomes = futures_util::future::join_all(attempts).await;
            sent += outcomes.iter().filter(|(_, outcome)| outcome.is_ok()).count();
            self.db.write(move |conn| record(conn, outcomes)).await?;
        }
    }
}

/// Records what became of each attempt: sent (all of those in one statement), given up,
/// or retried later with backoff.
fn record(
    conn: &mut DbConnection,
    outcomes: Vec<(OutboxRow, std::result::Result<(), crate::mail::SendError>)>,
) -> Result<()> {
    let now = storage::now();
    let mut sent = Vec::with_capacity(outcomes.len());
    for (mail, outcome) in outcomes {
        let attempts = mail.attempts + 1;
        match outcome {
            Ok(()) => {
                tracing::info!(mail = %mail.id, kind = %mail.kind, "mail sent");
                sent.push(mail.id);
            }
            Err(error) if error.permanent || attempts >= MAX_ATTEMPTS => {
                tracing::error!(mail = %mail.id, error = %error, attempts, "mail given up");
                outbox::mark_failed(conn, &mail.id, attempts, now, &error.to_string())?;
            }
            Err(error) => {
                let delay =
                    TimeDelta::seconds(5 * 2_i64.pow(attempts.clamp(1, 10) as u32 - 1)).min(TimeDelta::hours(1));
                tracing::warn!(mail = %mail.id, error = %error, attempts, retry_in_s = delay.num_seconds(), "mail not sent");
                outbox::mark_retry(conn, &mail.id, attempts, now + delay, &error.to_string())?;
            }
        }
    }
    if !sent.is_empty() {
        outbox::mark_sent(conn, &sent, now)?;
    }
    Ok(())
}
