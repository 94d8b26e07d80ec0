//! The services context: everything a service may need (the database, keys, scripts,
//! settings, transports, the signup rules) and the wakers of the workers services hand work
//! to, built once at start. Handlers pass it on; a service that queues work wakes the worker
//! itself, so no caller has to remember to.

use std::sync::Arc;

use tokio::sync::Notify;

use super::auth::{LoginGuard, Tokens};
use super::bounces::sns;
use super::campaigns::CampaignContext;
use super::confirmations::SignupConfig;
use super::keys::Keys;
use super::ledger::LedgerKey;
use super::outbound::OutboundPolicy;
use super::plugins::Scripts;
use super::workers::Supervisor;
use crate::settings::Settings;
use crate::storage::Db;

/// What services share (workers get clones of the handles they use).
pub struct Services {
    pub db: Db,
    /// The dashboard's counts, taken again by the `stats` worker.
    pub stats: super::stats::StatsCache,
    pub keys: Keys,
    pub settings: Settings,
    /// The script host and the plugins of the folder and the binary: the one copy.
    pub scripts: Scripts,
    pub signup: SignupConfig,
    /// Signs and checks API tokens.
    pub tokens: Tokens,
    /// Limits on sign-in attempts and on password checks at once.
    pub login: LoginGuard,
    /// Checks Amazon SNS signatures, with its certificate cache.
    pub sns: sns::Verifier,
    /// Where webhooks and partner deliveries may connect.
    pub outbound: OutboundPolicy,
    /// What campaign sending needs beyond the above (the mail transport, the DKIM signer,
    /// the dispatcher's waker).
    pub campaigns: CampaignContext,
    /// The key that signs the consent ledger's checkpoints.
    pub ledger_key: LedgerKey,
    pub wake: Wakers,
    /// The background workers, for readiness.
    pub workers: Supervisor,
}

/// Wakes a worker when a service handed it work; each worker also looks by itself now and
/// then, so a lost wake-up only delays.
#[derive(Clone)]
pub struct Wakers {
    /// The outbox: a mail was queued.
    pub mail: Arc<Notify>,
    /// The import worker: a file arrived.
    pub import: Arc<Notify>,
}
