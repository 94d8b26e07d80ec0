//! Use cases and their rules. Services call storage; they know nothing of HTTP.

pub mod api_keys;
pub mod auth;
pub mod bounces;
pub mod brands;
pub mod campaigns;
pub mod confirmations;
pub mod consent;
pub mod consent_records;
pub mod contacts;
pub mod context;
pub mod dispatcher;
pub mod exports;
pub mod forms;
pub mod imports;
pub mod keys;
pub mod ledger;
pub mod lists;
pub mod mailer;
pub mod outbound;
pub mod pagination;
pub mod partners;
pub mod plugins;
pub mod preferences;
pub mod segments;
pub mod sessions;
pub mod signup;
pub mod stats;
pub mod suppressions;
pub mod surveys;
pub mod throttle;
pub mod two_factor;
pub mod users;
pub mod webhooks;
pub mod withdrawals;
pub mod workers;

/// Whether the database answers, for readiness probes: 503 when it does not.
pub async fn check_ready(db: &crate::storage::Db, workers: &workers::Supervisor) -> crate::error::Result<()> {
    use crate::error::Error;
    db.read(crate::storage::ping).await.map_err(|error| match error {
        Error::Unavailable(cause) | Error::Internal(cause) => Error::Unavailable(cause),
        other => other,
    })?;
    let down = workers.down();
    if down.is_empty() {
        Ok(())
    } else {
        Err(Error::Unavailable(format!("workers stopped and about to be started again: {}", down.join(", ")).into()))
    }
}

pub use context::{Services, Wakers};
