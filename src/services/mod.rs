//! Use cases and their rules. Services call storage; they know nothing of HTTP.

pub mod api_keys;
pub mod auth;
pub mod bounces;
pub mod campaigns;
pub mod consent;
pub mod contacts;
pub mod dispatcher;
pub mod exports;
pub mod forms;
pub mod imports;
pub mod keys;
pub mod lists;
pub mod mailer;
pub mod pagination;
pub mod plugins;
pub mod segments;
pub mod signup;
pub mod stats;
pub mod tracking;
pub mod users;

/// Whether the database answers, for readiness probes: 503 when it does not.
pub async fn check_ready(db: &crate::storage::Db) -> crate::error::Result<()> {
    use crate::error::Error;
    db.read(crate::storage::ping).await.map_err(|error| match error {
        Error::Unavailable(cause) | Error::Internal(cause) => Error::Unavailable(cause),
        other => other,
    })
}
