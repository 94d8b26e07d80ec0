//! The webhook worker: it claims due deliveries, signs and posts each outside any
//! transaction, and records the outcome with its retry schedule.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};

use crate::domain::partner::{DeliveryStatus, SIGNATURE_HEADER, signature_header};
use crate::error::{Error, Result};
use crate::services::outbound::{OutboundPolicy, Refused};
use crate::settings::Settings;
use crate::storage;
use crate::storage::partners::PartnerRow;
use crate::storage::webhooks::{AttemptRow, DeliveryRow};
use crate::storage::{Db, DbConnection, partners, webhooks as repo};

/// How deliveries are attempted.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryOptions {
    pub max_attempts: u32,
    pub backoff: Duration,
    pub timeout: Duration,
}

impl DeliveryOptions {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            max_attempts: settings.webhook_max_attempts.max(1),
            backoff: Duration::from_millis(settings.webhook_backoff_ms),
            timeout: Duration::from_secs(settings.webhook_timeout_seconds.max(1)),
        }
    }

    /// The wait after the `attempts`-th failed attempt: the backoff, doubled each time,
    /// at most six hours.
    pub fn wait_after(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(Duration::from_secs(6 * 3600))
    }
}

/// Deliveries taken at once by one instance.
pub(super) const BATCH: i64 = 32;

/// The delivery worker: one per instance; instances share the outbox through leases.
pub struct WebhookWorker {
    pub(super) db: Db,
    pub(super) client: reqwest::Client,
    pub(super) options: DeliveryOptions,
    pub(super) policy: OutboundPolicy,
}

/// Where a delivery goes, read when it is attempted (a changed URL or secret applies to
/// events still waiting).
pub(super) enum Destination {
    Url {
        url: String,
        secret: String,
    },
    /// A partner without a webhook pulls its events.
    Pull,
    Gone(&'static str),
}

pub(super) fn destination(conn: &mut DbConnection, target: &str) -> Result<Destination> {
    Ok(match target.split_once(':') {
        Some(("subscription", id)) => {
            match id.parse().ok().map(|id| repo::find_subscription(conn, id)).transpose()?.flatten() {
                Some(s) => Destination::Url { url: s.url, secret: s.secret },
                None => Destination::Gone("the subscription was deleted"),
            }
        }
        Some(("partner", id)) => {
            match id.parse().ok().map(|id| partners::find_partner(conn, id)).transpose()?.flatten() {
                Some(PartnerRow { webhook_url: Some(url), webhook_secret: Some(secret), .. }) => {
                    Destination::Url { url, secret }
                }
                Some(_) => Destination::Pull,
                None => Destination::Gone("the partner was deleted"),
            }
        }
        _ => Destination::Gone("unknown target"),
    })
}

/// What one attempt came to.
pub(super) struct Outcome {
    pub(super) delivery: DeliveryRow,
    pub(super) started: chrono::NaiveDateTime,
    pub(super) elapsed: Duration,
    pub(super) status_code: Option<u16>,
    pub(super) error: Option<String>,
    /// Set when there is nowhere to send it.
    pub(super) final_status: Option<DeliveryStatus>,
}

impl WebhookWorker {
    /// The client follows no redirect (a receiver could otherwise send it anywhere) and
    /// connects only where `policy` allows, checked on the addresses DNS answers.
    pub fn new(db: Db, options: DeliveryOptions, policy: OutboundPolicy) -> Result<Self> {
        let builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("consento/", env!("CARGO_PKG_VERSION")));
        let client = policy.client(builder).map_err(Error::internal)?;
        Ok(Self { db, client, options, policy })
    }

    pub async fn run(self) {
        loop {
            match self.deliver_due().await {
                Ok(0) => tokio::time::sleep(Duration::from_millis(250)).await,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "webhook deliveries failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Attempts every due delivery (a batch); answers how many were attempted.
    pub async fn deliver_due(&self) -> Result<usize> {
        let now = storage::now();
        if !self.db.read(move |conn| Ok(repo::any_due(conn, now)?)).await? {
            return Ok(0);
        }
        let lease = TimeDelta::from_std(self.options.timeout * 2 + Duration::from_secs(30)).unwrap_or(TimeDelta::MAX);
        let claimed = self
            .db
            .write(move |conn| {
                let rows = repo::claim_due(conn, now, now + lease, BATCH)?;
                let mut claimed = Vec::new();
                for row in rows {
                    let destination = destination(conn, &row.target)?;
                    claimed.push((row, destination));
                }
                Ok(claimed)
            })
            .await?;
        let count = claimed.len();
        let attempts = claimed.into_iter().map(|(row, destination)| self.attempt(row, destination));
        let outcomes = futures_util::future::join_all(attempts).await;
        let options = self.options;
        self.db
            .write(move |conn| {
                for outcome in outcomes {
                    record(conn, outcome, &options)?;
                }
                Ok(())
            })
            .await?;
        Ok(count)
    }

    async fn attempt(&self, delivery: DeliveryRow, destination: Destination) -> Outcome {
        let started = storage::now();
        let clock = Instant::now();
        let (url, secret) = match destination {
            Destination::Url { url, secret } => (url, secret),
            Destination::Pull => {
                return Outcome {
                    delivery,
                    started,
                    elapsed: clock.elapsed(),
                    status_code: None,
                    error: None,
                    final_status: Some(DeliveryStatus::Pull),
                };
            }
            Destination::Gone(why) => {
                return Outcome {
                    delivery,
                    started,
                    elapsed: clock.elapsed(),
                    status_code: None,
                    error: Some(why.to_owned()),
                    final_status: Some(DeliveryStatus::Dead),
                };
            }
        };
        // An address written in the URL is not resolved, so the resolver cannot refuse it.
        if let Err(refused) = self.policy.check_connect(&url) {
            return Outcome {
                delivery,
                started,
                elapsed: clock.elapsed(),
                status_code: None,
                error: Some(refused.0),
                final_status: None,
            };
        }
        let body = delivery.payload.clone().into_bytes();
        let timestamp = Utc::now().timestamp();
        let response = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature_header(&secret, timestamp, &body))
            .header("Consento-Event-Id", &delivery.event_id)
            .header("Consento-Event-Type", delivery.event_type.as_str())
            .header("Consento-Delivery-Attempt", (delivery.attempts + 1).to_string())
            .body(body)
            .send()
            .await;
        let (status_code, error) = match response {
            Ok(response) if response.status().is_success() => (Some(response.status().as_u16()), None),
            Ok(response) => {
                let status = response.status();
                (Some(status.as_u16()), Some(format!("the receiver answered {status}")))
            }
            Err(error) => (None, Some(describe_http_error(&error))),
        };
        Outcome { delivery, started, elapsed: clock.elapsed(), status_code, error, final_status: None }
    }
}

pub(super) fn describe_http_error(error: &reqwest::Error) -> String {
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        if let Some(refused) = inner.downcast_ref::<Refused>() {
            return refused.0.clone();
        }
        cause = inner.source();
    }
    if error.is_timeout() {
        "the receiver did not answer in time".to_owned()
    } else if error.is_connect() {
        "could not connect to the receiver".to_owned()
    } else {
        crate::error::chain(error)
    }
}

pub(super) fn record(conn: &mut DbConnection, outcome: Outcome, options: &DeliveryOptions) -> Result<()> {
    let Outcome { mut delivery, started, elapsed, status_code, error, final_status } = outcome;
    let now = storage::now();
    delivery.lease_until = None;
    match final_status {
        Some(DeliveryStatus::Pull) => {
            delivery.status = DeliveryStatus::Pull;
            repo::update_delivery(conn, &delivery)?;
            return Ok(());
        }
        Some(status) => {
            delivery.status = status;
            delivery.last_error = error.clone();
        }
        None => {
            delivery.attempts += 1;
            match &error {
                None => {
                    delivery.status = DeliveryStatus::Delivered;
                    delivery.delivered_at = Some(now);
                    delivery.last_error = None;
                }
                Some(message) if delivery.attempts as u32 >= options.max_attempts => {
                    tracing::warn!(delivery = %delivery.id, target = %delivery.target, error = %message, "webhook dead-lettered");
                    delivery.status = DeliveryStatus::Dead;
                    delivery.last_error = Some(message.clone());
                }
                Some(message) => {
                    let wait =
                        TimeDelta::from_std(options.wait_after(delivery.attempts as u32)).unwrap_or(TimeDelta::MAX);
                    delivery.next_attempt_at = now + wait;
                    delivery.last_error = Some(message.clone());
                }
            }
        }
    }
    repo::update_delivery(conn, &delivery)?;
    repo::insert_attempt(
        conn,
        &AttemptRow {
            id: uuid::Uuid::now_v7().to_string(),
            delivery_id: delivery.id,
            attempted_at: started,
            duration_ms: elapsed.as_millis().min(i64::MAX as u128) as i64,
            status_code: status_code.map(i32::from),
            error,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_the_backoff_up_to_six_hours() {
        let options =
            DeliveryOptions { max_attempts: 10, backoff: Duration::from_secs(30), timeout: Duration::from_secs(10) };
        assert_eq!(options.wait_after(1), Duration::from_secs(30));
        assert_eq!(options.wait_after(2), Duration::from_secs(60));
        assert_eq!(options.wait_after(4), Duration::from_secs(240));
        assert_eq!(options.wait_after(40), Duration::from_secs(6 * 3600));
    }
}
