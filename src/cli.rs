//! The command line: `serve`, `migrate`, `user create`, `openapi`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::domain::{Email, Role};
use crate::error::{Error, Result};
use crate::services::auth::check_password_rules;
use crate::services::users::{self, NewUser};
use crate::settings::Settings;
use crate::startup::{Application, open_database};

/// The environment variable `user create` reads the password from.
pub const PASSWORD_ENV: &str = "CONSENTO_USER_PASSWORD";

#[derive(Debug, Parser)]
#[command(
    name = "consento",
    version,
    about = "Self-hosted, consent-first email marketing server",
    long_about = "Self-hosted, consent-first email marketing server.\n\n\
        Start with `consento serve`: with no configuration it listens on 127.0.0.1:8080, keeps \
        its data in ./data (SQLite) and writes outgoing mail to ./data/outbox. Settings come \
        from consento.toml and CONSENTO_* environment variables; see the README.",
    after_help = "First steps:\n  CONSENTO_USER_PASSWORD='a long passphrase' consento user create --email you@example.org --role admin\n  consento serve"
)]
pub struct Cli {
    /// TOML settings file [default: ./consento.toml if it exists]
    #[arg(long, global = true, env = "CONSENTO_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (applies pending migrations first)
    Serve,
    /// Apply pending database migrations and exit
    Migrate,
    /// Manage users who sign in to the API
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Print the OpenAPI document (JSON) to standard output
    Openapi,
    /// Check the consent ledger
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Check the whole ledger's hash chain; exits non-zero and names the first event
    /// that does not match if it was tampered with
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from CONSENTO_USER_PASSWORD, or asked for
    /// at the terminal; never from an argument, where other users could see it.
    Create {
        /// The user's e-mail address, used to sign in
        #[arg(long)]
        email: String,
        /// What the user may do: viewer reads, editor also writes, admin also manages
        /// users and API keys
        #[arg(long, value_enum, default_value_t = RoleArg::Admin)]
        role: RoleArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Editor,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Editor => Role::Editor,
            RoleArg::Viewer => Role::Viewer,
        }
    }
}

pub async fn run(command: Command, settings: Settings) -> Result<()> {
    match command {
        Command::Serve => Application::build(settings).await?.run_until_stopped().await.map_err(Error::internal),
        Command::Migrate => {
            open_database(&settings).await?;
            eprintln!("The database is up to date.");
            Ok(())
        }
        Command::User { command: UserCommand::Create { email, role } } => {
            let email = Email::parse(&email).map_err(|e| Error::field("--email", e))?;
            let password = read_password()?;
            check_password_rules(&password).map_err(|e| Error::field("password", e))?;
            let db = open_database(&settings).await?;
            let user = users::create_user(&db, NewUser { email, password, role: role.into() }).await?;
            eprintln!("Created {} user {} ({}).", user.role, user.email, user.id);
            Ok(())
        }
        Command::Openapi => {
            print!("{}", crate::http::openapi_json());
            Ok(())
        }
        Command::Consent { command: ConsentCommand::Verify } => {
            let db = open_database(&settings).await?;
            let report = crate::services::consent::verify_chain(&db).await?;
            match report.first_mismatch {
                None => {
                    println!("The consent ledger is intact: {} events checked.", report.events_checked);
                    Ok(())
                }
                Some(mismatch) => Err(Error::Conflict(format!(
                    "the consent ledger was altered: event {} ({}) {}; {} events before it are intact",
                    mismatch.seq, mismatch.event_id, mismatch.reason, report.events_checked
                ))),
            }
        }
    }
}

fn read_password() -> Result<String> {
    if let Ok(password) = std::env::var(PASSWORD_ENV) {
        return Ok(password);
    }
    let first = rpassword::prompt_password("Password: ")
        .map_err(|e| Error::internal(format!("cannot read a password from the terminal ({e}); set {PASSWORD_ENV}")))?;
    let second = rpassword::prompt_password("Password again: ").map_err(Error::internal)?;
    if first != second {
        return Err(Error::field("password", "the two passwords differ"));
    }
    Ok(first)
}
