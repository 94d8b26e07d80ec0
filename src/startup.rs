//! Wiring: from settings to a running server, in one place.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use actix_web::dev::Server;
use actix_web::{HttpServer, web};

use crate::domain::Email;
use crate::error::{Error, Result};
use crate::http::pages::{Pages, RateLimiter};
use crate::http::{self, AppState, RouteTable, ops::Metrics};
use crate::mail::{Signer, Transport};
use crate::services::campaigns::CampaignContext;
use crate::services::confirmations::SignupConfig;
use crate::services::dispatcher::{Dispatcher, SendOptions};
use crate::services::imports::ImportWorker;
use crate::services::keys::Keys;
use crate::services::ledger::{self, LedgerKey, Sequencer};
use crate::services::mailer::OutboxWorker;
use crate::services::outbound::OutboundPolicy;
use crate::services::partners::ShareWorker;
use crate::services::plugins::Scripts;
use crate::services::signup;
use crate::services::webhooks::{DeliveryOptions, WebhookWorker};
use crate::services::workers::Supervisor;
use crate::services::{Services, Wakers, auth::Tokens, users};
use crate::settings::Settings;
use crate::storage::{Backend, Db};

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    setup_code: Option<String>,
}

impl Application {
    /// Opens the database (applying migrations), loads the signing key, creates the first
    /// admin if asked to, and binds the listener. The server starts on
    /// [`Application::run_until_stopped`].
    pub async fn build(mut settings: Settings) -> Result<Self> {
        settings.validate().map_err(Error::internal)?;
        let listener = TcpListener::bind(&settings.listen)
            .map_err(|e| Error::internal(format!("cannot listen on {}: {e}", settings.listen)))?;
        let address = listener.local_addr().map_err(Error::internal)?;
        if settings.base_url.is_none() {
            // Links must carry the port actually bound (`listen` may ask for port 0).
            settings.base_url = Some(format!("http://{address}"));
        }
        let db = open_database(&settings).await?;
        let tokens = Tokens::load(&db, Duration::from_secs(settings.token_ttl_seconds)).await?;
        let keys = Keys::load(&db).await?.with_preference_link_days(settings.preference_link_days);
        let ledger_key = LedgerKey::load(&settings)?;
        ledger::register_key(&db, &ledger_key).await?;
        bootstrap_admin(&db, &settings).await?;
        // With no user at all, the console's first page creates the first admin, with a
        // code only the server's log shows: reaching the port first is not enough.
        let setup_code = crate::services::sessions::prepare_setup_code(&db).await?;
        if let Some(code) = &setup_code {
            let url = format!("{}/admin/setup", settings.base_url());
            tracing::warn!(setup_code = %code, "no user yet: open {url} and enter the setup code {code} to create the first admin");
        }
        let scripts = Scripts::load(&settings.plugins_dir, settings.script_limits())?;
        let transport = mail_transport(&settings)?;
        let mail_wake = Arc::new(Notify::new());
        let workers = Supervisor::new();
        {
            let (db, transport, wake) = (db.clone(), transport.clone(), mail_wake.clone());
            workers.spawn("outbox", move || OutboxWorker::new(db.clone(), transport.clone(), wake.clone()).run());
        }
        let campaigns = CampaignContext {
            db: db.clone(),
            keys: keys.clone(),
            scripts: scripts.clone(),
            transport: match &settings.smtp_url {
                // Campaigns get their own connections, as many as they send at once.
                Some(url) => Transport::smtp(url.expose(), settings.send_concurrency)?,
                None => transport,
            },
            signer: dkim_signer(&settings)?.map(Arc::new),
            base_url: settings.base_url(),
            message_domain: settings.message_domain(),
            mail_from: settings.mail_from.clone(),
            complaint_threshold: settings.complaint_rate_threshold,
            wake: Arc::new(Notify::new()),
        };
        {
            let (campaigns, options) = (campaigns.clone(), SendOptions::from_settings(&settings));
            workers.spawn("dispatcher", move || Dispatcher::new(campaigns.clone(), options.clone()).run());
        }
        let import_wake = Arc::new(Notify::new());
        {
            let (db, keys, wake) = (db.clone(), keys.clone(), import_wake.clone());
            workers.spawn("imports", move || ImportWorker::new(db.clone(), keys.clone(), wake.clone()).run());
        }
        {
            let (db, days, imports) = (db.clone(), settings.unconfirmed_retention_days, settings.imports_dir());
            workers.spawn("maintenance", move || maintenance(db.clone(), days, imports.clone()));
        }
        {
            let (db, key, settings) = (db.clone(), ledger_key.clone(), settings.clone());
            workers.spawn("sequencer", move || Sequencer::new(db.clone(), key.clone(), &settings).run());
        }
        let outbound = OutboundPolicy::from_settings(&settings);
        {
            let (options, outbound) = (DeliveryOptions::from_settings(&settings), outbound.clone());
            // Built once here so that a bad setting stops the start, then once per restart.
            WebhookWorker::new(db.clone(), options, outbound.clone())?;
            let db = db.clone();
            workers.spawn("webhooks", move || {
                let worker = WebhookWorker::new(db.clone(), options, outbound.clone());
                async move {
                    match worker {
                        Ok(worker) => worker.run().await,
                        Err(error) => tracing::error!(%error, "the webhook worker cannot start"),
                    }
                }
            });
        }
        {
            let (db, scripts) = (db.clone(), scripts.clone());
            workers.spawn("shares", move || ShareWorker::new(db.clone(), scripts.clone()).run());
        }

        let port = address.port();
        let shutdown_timeout = settings.shutdown_timeout_seconds;
        tracing::info!(
            address = %address,
            base_url = %settings.base_url(),
            database = db.backend().as_str(),
            "consento is listening"
        );
        let stats = crate::services::stats::StatsCache::default();
        {
            let (db, stats) = (db.clone(), stats.clone());
            workers.spawn("stats", move || stats.clone().run(db.clone()));
        }
        let services = Services {
            stats,
            db,
            tokens,
            login: crate::services::auth::LoginGuard::from_settings(&settings),
            outbound,
            sns: crate::services::bounces::sns::Verifier::new(settings.sns_trusted_certificate_urls.clone())?,
            keys,
            signup: SignupConfig::from_settings(&settings),
            scripts,
            campaigns,
            ledger_key,
            wake: Wakers { mail: mail_wake, import: import_wake },
            workers,
            settings,
        };
        let state = web::Data::new(AppState {
            limiter: RateLimiter::new(
                services.settings.public_rate_limit_per_minute,
                services.settings.rate_limit_max_keys,
            ),
            services,
            pages: Pages::new()?,
            metrics: Metrics::new(),
        });
        let routes = web::Data::new(RouteTable::from_spec(&http::openapi()));
        let app_state = state.clone();
        // actix-web stops gracefully on SIGTERM and SIGINT: it stops accepting, lets
        // requests in flight finish (up to the timeout), then returns.
        let server = HttpServer::new(move || http::app(app_state.clone(), routes.clone()))
            .listen(listener)
            .map_err(Error::internal)?
            .shutdown_timeout(shutdown_timeout)
            .run();
        Ok(Self { port, server, state, setup_code })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state, for tests that need the token signer or the database.
    /// The first-run setup code printed in the log at start, while no user existed.
    pub fn setup_code(&self) -> Option<&str> {
        self.setup_code.as_deref()
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Connects to the configured database and brings its schema up to date. For SQLite the
/// data directory is created first.
pub async fn open_database(settings: &Settings) -> Result<Db> {
    if settings.backend() == Backend::Sqlite {
        std::fs::create_dir_all(&settings.data_dir).map_err(|e| {
            Error::internal(format!("cannot create the data directory {}: {e}", settings.data_dir.display()))
        })?;
    }
    let db = Db::connect(&settings.db_options())?;
    db.migrate().await?;
    Ok(db)
}

/// SMTP when a URL is set, otherwise `.eml` files in the data directory's outbox.
fn mail_transport(settings: &Settings) -> Result<Transport> {
    match &settings.smtp_url {
        Some(url) => Transport::smtp(url.expose(), settings.smtp_pool_size),
        None => {
            let outbox = settings.outbox_dir();
            std::fs::create_dir_all(&outbox)
                .map_err(|e| Error::internal(format!("cannot create the outbox {}: {e}", outbox.display())))?;
            Ok(Transport::folder(&outbox))
        }
    }
}

/// The DKIM signer the settings describe, if any; a key that does not load stops the start.
pub fn dkim_signer(settings: &Settings) -> Result<Option<Signer>> {
    let Some(selector) = &settings.dkim_selector else {
        return Ok(None);
    };
    let key = match (&settings.dkim_private_key, &settings.dkim_private_key_file) {
        (Some(key), _) => key.expose().to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| Error::internal(format!("cannot read the DKIM key {}: {e}", path.display())))?,
        (None, None) => {
            return Err(Error::internal("dkim_selector is set but neither dkim_private_key nor dkim_private_key_file"));
        }
    };
    let domain = match &settings.dkim_domain {
        Some(domain) => domain.clone(),
        None => settings
            .mail_from
            .parse::<lettre::message::Mailbox>()
            .map(|mailbox| mailbox.email.domain().to_owned())
            .map_err(|e| Error::internal(format!("mail_from: {e}")))?,
    };
    Signer::new(selector, &domain, settings.dkim_algorithm, &key).map(Some)
}

/// Periodic housekeeping: purging signups never confirmed (and their IP addresses), ended
/// console sessions, and uploaded files whose import never started.
async fn maintenance(db: Db, retention_days: u32, imports_dir: std::path::PathBuf) {
    let mut interval = tokio::time::interval(Duration::from_secs(3600));
    loop {
        interval.tick().await;
        match signup::purge_unconfirmed(&db, retention_days).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged signups never confirmed"),
            Err(error) => tracing::warn!(error = %error, "purging unconfirmed signups failed"),
        }
        if let Err(error) = crate::services::sessions::purge_ended(&db).await {
            tracing::warn!(error = %error, "purging ended console sessions failed");
        }
        match crate::services::imports::files_in_use(&db).await {
            Ok(in_use) => {
                let folder = imports_dir.clone();
                let removed =
                    tokio::task::spawn_blocking(move || crate::services::imports::purge_drafts(&folder, &in_use))
                        .await
                        .unwrap_or(0);
                if removed > 0 {
                    tracing::info!(removed, "removed uploaded files whose import never started");
                }
            }
            Err(error) => tracing::warn!(error = %error, "listing the imports' files failed"),
        }
    }
}

async fn bootstrap_admin(db: &Db, settings: &Settings) -> Result<()> {
    let (Some(email), Some(password)) = (&settings.admin_email, &settings.admin_password) else {
        return Ok(());
    };
    let email = Email::parse(email).map_err(|e| Error::internal(format!("CONSENTO_ADMIN_EMAIL {e}")))?;
    crate::services::auth::check_password_rules(password.expose())
        .map_err(|e| Error::internal(format!("CONSENTO_ADMIN_PASSWORD {e}")))?;
    if users::bootstrap_admin(db, email.clone(), password.expose().to_owned()).await? {
        tracing::info!(email = %email, "created the first admin from the settings");
    }
    Ok(())
}
