//! Settings: built-in defaults, then an optional `consento.toml`, then `CONSENTO_*`
//! environment variables, each overriding the one before.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::storage::{Backend, DbOptions, SqliteSync};

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "consento.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A value kept out of logs and `Debug` output.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address and port the HTTP server binds.
    pub listen: String,
    /// Folder for the SQLite database and the mail outbox.
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL; unset: `<data_dir>/consento.db` (SQLite).
    pub database_url: Option<String>,
    /// Public URL used in links; unset: `http://<listen>`.
    pub base_url: Option<String>,
    /// SMTP server URL; unset: mail is written to `<data_dir>/outbox` as .eml files.
    pub smtp_url: Option<Secret>,
    /// Folder of the Rhai plugins loaded at start.
    pub plugins_dir: PathBuf,
    /// Milliseconds one script call may run before it is stopped.
    pub script_deadline_ms: u64,
    /// Operations one script call may make before it is stopped.
    pub script_max_operations: u64,
    /// Sender of system mails (confirmations), e.g. `News <news@example.org>`.
    pub mail_from: String,
    /// SMTP connections kept open.
    pub smtp_pool_size: u32,
    /// Hours a double opt-in link stays valid.
    pub confirmation_ttl_hours: u64,
    /// Confirmation mails one address may receive per 24 hours, however many signups.
    pub confirmation_mails_per_day: u32,
    /// Days after which unconfirmed signups (and their IP addresses) are purged.
    pub unconfirmed_retention_days: u32,
    /// Requests per minute one IP address may make to the public pages.
    pub public_rate_limit_per_minute: u32,
    /// Addresses (IPv6: /64 blocks) the public rate limit remembers at most; past that the
    /// oldest are forgotten, so that memory stays bounded whatever the traffic.
    pub rate_limit_max_keys: usize,
    /// Failed sign-ins one IP address (IPv6: one /64) may make per `login_window_seconds`.
    pub login_attempts_per_ip: u32,
    /// Failed sign-ins to one account per `login_window_seconds`; a success resets them.
    pub login_attempts_per_account: u32,
    /// The window failed sign-ins are counted in, in seconds.
    pub login_window_seconds: u64,
    /// Passwords hashed or checked at once (each takes about 19 MiB); more wait their turn.
    pub password_hash_concurrency: u32,
    /// Host names (or IP addresses) webhooks and partner deliveries may reach although
    /// they are, or resolve to, loopback, private, link-local or metadata addresses.
    /// Empty: no such address is reached.
    pub outbound_allowed_hosts: Vec<String>,
    /// Reverse proxies in front of consento: from these peers only, the client's address
    /// is taken from `X-Forwarded-For` (for rate limits and consent evidence).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// First admin's e-mail, used only while there is no user at all.
    pub admin_email: Option<String>,
    pub admin_password: Option<Secret>,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax, e.g. `info` or `consento=debug,info`.
    pub log: String,
    /// Database connections kept by this instance.
    pub database_pool_size: u32,
    /// SQLite durability: `normal` or `full`.
    pub sqlite_synchronous: SqliteSync,
    /// Milliseconds a SQLite writer waits for the write lock.
    pub sqlite_busy_timeout_ms: u64,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Lifetime of access tokens, in seconds.
    pub token_ttl_seconds: u64,
    /// Seconds to let requests in flight finish on shutdown.
    pub shutdown_timeout_seconds: u64,
    /// Campaign messages sent at once (one SMTP connection each).
    pub send_concurrency: u32,
    /// Campaign recipients claimed and sent per batch.
    pub send_batch_size: u32,
    /// Campaign messages per second this instance sends at most; 0: no limit.
    pub send_rate_per_second: u32,
    /// Campaign messages per sliding hour, all instances together; 0: no limit.
    pub send_rate_per_hour: u32,
    /// Attempts before a campaign message to one recipient is given up.
    pub send_max_attempts: u32,
    /// Seconds a batch claimed by an instance is held; after a crash, its recipients are
    /// sent again once this passes.
    pub send_lease_seconds: u32,
    /// DKIM: the selector published in DNS (`<selector>._domainkey.<domain>`); unset: no signature.
    pub dkim_selector: Option<String>,
    /// DKIM: the signing domain; unset: the domain of the campaign's sender.
    pub dkim_domain: Option<String>,
    /// DKIM: `ed25519` (the key is the base64 of its 32-byte seed) or `rsa` (a PKCS#1 PEM).
    pub dkim_algorithm: DkimAlgorithm,
    /// DKIM private key, inline.
    pub dkim_private_key: Option<Secret>,
    /// Or a file holding it.
    pub dkim_private_key_file: Option<PathBuf>,
    /// Secret the bounce and complaint notifications must carry, at least
    /// [`BOUNCE_SECRET_MIN_LENGTH`] characters: in a header (`Authorization: Bearer …`, or
    /// Basic with the secret as password), or, worse because URLs end up in logs, as
    /// `?secret=…`; unset: the endpoints refuse every notification.
    pub bounce_secret: Option<Secret>,
    /// `SigningCertURL`s of SNS messages trusted besides AWS's own (an https `.pem` of
    /// `sns.<region>.amazonaws.com`); for tests that sign with their own certificate.
    pub sns_trusted_certificate_urls: Vec<String>,
    /// Soft bounces of one address (within 30 days) after which it is suppressed.
    pub soft_bounce_limit: u32,
    /// Complaint rate (complaints / sent) above which a campaign pauses itself.
    pub complaint_rate_threshold: f64,
    /// Largest import file accepted through the API, in bytes.
    pub import_max_bytes: u64,
    /// Attempts to deliver a webhook before it is dead-lettered.
    pub webhook_max_attempts: u32,
    /// Wait before the second attempt, in milliseconds; it doubles with every attempt (at
    /// most six hours).
    pub webhook_backoff_ms: u64,
    /// How long a receiver has to answer, in seconds.
    pub webhook_timeout_seconds: u64,
    /// How long a survey link works, in days.
    pub survey_link_days: u32,
    /// The key that signs the consent ledger's checkpoints, in its C2SP text form
    /// (`PRIVATE+KEY+<name>+<id>+<key>`). Unset: read from `ledger_signing_key_file`.
    pub ledger_signing_key: Option<Secret>,
    /// The file holding that key; unset: `<data_dir>/ledger-signing.key`, generated on the
    /// first start (owner-only permissions). Several instances must share one key.
    pub ledger_signing_key_file: Option<PathBuf>,
    /// Milliseconds between two runs of the sequencer, which gives committed consent
    /// events their leaves and signs a checkpoint: the longest an event waits for its leaf.
    pub ledger_sequence_interval_ms: u64,
    /// A file every new checkpoint is appended to, so that copies are kept outside the
    /// database.
    pub ledger_checkpoint_file: Option<PathBuf>,
    /// Mail each person a consent receipt when they confirm: what they agreed to, in which
    /// words, when, with whom, how to withdraw, and a link to the proof of it.
    pub consent_receipt_mail: bool,
    /// How long a preference-centre link works, in days (each mail carries a fresh one).
    pub preference_link_days: u32,
}

/// The DKIM signing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DkimAlgorithm {
    Ed25519,
    Rsa,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            base_url: None,
            smtp_url: None,
            plugins_dir: PathBuf::from("./plugins"),
            script_deadline_ms: 2000,
            script_max_operations: 5_000_000,
            mail_from: "consento <consento@localhost>".to_owned(),
            smtp_pool_size: 4,
            confirmation_ttl_hours: 168,
            confirmation_mails_per_day: 1,
            unconfirmed_retention_days: 30,
            public_rate_limit_per_minute: 60,
            rate_limit_max_keys: 100_000,
            login_attempts_per_ip: 20,
            login_attempts_per_account: 5,
            login_window_seconds: 900,
            password_hash_concurrency: 2,
            outbound_allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            admin_email: None,
            admin_password: None,
            log_format: LogFormat::Text,
            log: "info".to_owned(),
            database_pool_size: 8,
            sqlite_synchronous: SqliteSync::Normal,
            sqlite_busy_timeout_ms: 10_000,
            max_body_bytes: 1024 * 1024,
            token_ttl_seconds: 3600,
            shutdown_timeout_seconds: 30,
            send_concurrency: 8,
            send_batch_size: 500,
            send_rate_per_second: 0,
            send_rate_per_hour: 0,
            send_max_attempts: 8,
            send_lease_seconds: 120,
            dkim_selector: None,
            dkim_domain: None,
            dkim_algorithm: DkimAlgorithm::Ed25519,
            dkim_private_key: None,
            dkim_private_key_file: None,
            bounce_secret: None,
            sns_trusted_certificate_urls: Vec::new(),
            soft_bounce_limit: 3,
            complaint_rate_threshold: 0.003,
            import_max_bytes: 2 * 1024 * 1024 * 1024,
            webhook_max_attempts: 10,
            webhook_backoff_ms: 30_000,
            webhook_timeout_seconds: 10,
            survey_link_days: 30,
            ledger_signing_key: None,
            ledger_signing_key_file: None,
            ledger_sequence_interval_ms: 500,
            ledger_checkpoint_file: None,
            consent_receipt_mail: false,
            preference_link_days: crate::services::keys::DEFAULT_PREFERENCE_LINK_DAYS,
        }
    }
}

/// Setting names, as TOML keys and as `CONSENTO_<NAME>` environment variables.
const KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "base_url",
    "smtp_url",
    "plugins_dir",
    "script_deadline_ms",
    "script_max_operations",
    "mail_from",
    "smtp_pool_size",
    "confirmation_ttl_hours",
    "confirmation_mails_per_day",
    "unconfirmed_retention_days",
    "public_rate_limit_per_minute",
    "rate_limit_max_keys",
    "login_attempts_per_ip",
    "login_attempts_per_account",
    "login_window_seconds",
    "password_hash_concurrency",
    "outbound_allowed_hosts",
    "trusted_proxies",
    "admin_email",
    "admin_password",
    "log_format",
    "log",
    "database_pool_size",
    "sqlite_synchronous",
    "sqlite_busy_timeout_ms",
    "max_body_bytes",
    "token_ttl_seconds",
    "shutdown_timeout_seconds",
    "send_concurrency",
    "send_batch_size",
    "send_rate_per_second",
    "send_rate_per_hour",
    "send_max_attempts",
    "send_lease_seconds",
    "dkim_selector",
    "dkim_domain",
    "dkim_algorithm",
    "dkim_private_key",
    "dkim_private_key_file",
    "bounce_secret",
    "sns_trusted_certificate_urls",
    "soft_bounce_limit",
    "complaint_rate_threshold",
    "import_max_bytes",
    "webhook_max_attempts",
    "webhook_backoff_ms",
    "webhook_timeout_seconds",
    "survey_link_days",
    "ledger_signing_key",
    "ledger_signing_key_file",
    "ledger_sequence_interval_ms",
    "ledger_checkpoint_file",
    "consent_receipt_mail",
    "preference_link_days",
];

/// The shortest bounce secret accepted: anything shorter could be guessed.
pub const BOUNCE_SECRET_MIN_LENGTH: usize = 24;

impl Settings {
    /// Checks what the types cannot: a message naming the setting at fault.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(secret) = &self.bounce_secret
            && secret.expose().chars().count() < BOUNCE_SECRET_MIN_LENGTH
        {
            return Err(format!(
                "bounce_secret (CONSENTO_BOUNCE_SECRET) must be at least {BOUNCE_SECRET_MIN_LENGTH} characters; \
                 generate one with `openssl rand -hex 32`"
            ));
        }
        Ok(())
    }

    /// Loads the settings. `config` names a TOML file that must exist; without it
    /// `consento.toml` in the working directory is read if present.
    pub fn load(config: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        figment = match config {
            Some(path) => figment.merge(Toml::file_exact(path)),
            None => figment.merge(Toml::file(DEFAULT_CONFIG_FILE)),
        };
        // Only known names, so that other CONSENTO_* variables (such as the password
        // `user create` reads) are not taken for misspelt settings.
        figment = figment.merge(Env::prefixed("CONSENTO_").only(KEYS));
        figment.extract().map_err(Box::new)
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => self.data_dir.join("consento.db").to_string_lossy().into_owned(),
        }
    }

    pub fn backend(&self) -> Backend {
        Backend::of_url(&self.database_url())
    }

    pub fn base_url(&self) -> String {
        match &self.base_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The domain of the base URL, for Message-IDs.
    pub fn message_domain(&self) -> String {
        let base = self.base_url();
        let host = base.split("://").nth(1).unwrap_or(&base);
        let host = host.split(['/', ':']).next().unwrap_or("localhost");
        if host.is_empty() { "localhost".to_owned() } else { host.to_owned() }
    }

    pub fn script_limits(&self) -> crate::plugins::Limits {
        crate::plugins::Limits {
            max_operations: self.script_max_operations,
            deadline: std::time::Duration::from_millis(self.script_deadline_ms),
            ..crate::plugins::Limits::default()
        }
    }

    /// Where uploaded import files wait for their job.
    pub fn imports_dir(&self) -> PathBuf {
        self.data_dir.join("imports")
    }

    /// Where the key that signs the ledger's checkpoints is kept.
    pub fn ledger_signing_key_file(&self) -> PathBuf {
        self.ledger_signing_key_file.clone().unwrap_or_else(|| self.data_dir.join("ledger-signing.key"))
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.data_dir.join("outbox")
    }

    pub fn db_options(&self) -> DbOptions {
        DbOptions {
            url: self.database_url(),
            pool_size: self.database_pool_size.max(1),
            sqlite_synchronous: self.sqlite_synchronous,
            busy_timeout: std::time::Duration::from_millis(self.sqlite_busy_timeout_ms),
        }
    }
}
