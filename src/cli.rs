//! The command line: `serve`, `migrate`, `user create`, `openapi`, `consent verify`,
//! `import`, `export`, `plugins check`, `stats`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::domain::{Email, Role};
use crate::error::{Error, Result};
use crate::services::auth::check_password_rules;
use crate::services::imports;
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
    /// Import contacts from a CSV or NDJSON file, with the legal basis to record.
    /// Exit status: 0 every row taken, 3 finished with refused rows, 1 failed.
    Import {
        /// The file (CSV with a header line, or one JSON object a line)
        file: PathBuf,
        /// csv or ndjson [default: from the file's extension]
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// CSV delimiter [default: detected]
        #[arg(long)]
        delimiter: Option<char>,
        /// utf-8, windows-1252, iso-8859-1… [default: detected]
        #[arg(long)]
        encoding: Option<String>,
        /// A list (id or name) every row joins; repeat for several
        #[arg(long = "list", value_name = "LIST")]
        lists: Vec<String>,
        /// A tag every row gets; repeat for several
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// The legal basis to record for each list (double_opt_in, single_opt_in, soft_opt_in,
        /// b2b_professional, b2b_role_address, imported…); none: no consent is recorded
        #[arg(long)]
        basis: Option<String>,
        /// What the people agreed to (for a basis other than imported)
        #[arg(long)]
        consent_text: Option<String>,
        /// The provenance manifest of a bought or rented list, as a JSON file:
        /// {"supplier", "collected_on", "consent_text", "brand_named", "partners_shown"}
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
        /// Where a column goes: COLUMN=email|company|country|tags|lists|attributes|attributes.NAME|ignore
        #[arg(long = "map", value_name = "COLUMN=TARGET")]
        columns: Vec<String>,
    },
    /// Export contacts as CSV or NDJSON (the columns an import reads back)
    Export {
        #[arg(long, value_enum, default_value_t = FormatArg::Csv)]
        format: FormatArg,
        /// Only the contacts on this list (id)
        #[arg(long)]
        list: Option<String>,
        /// Only the contacts with this tag
        #[arg(long)]
        tag: Option<String>,
        /// Only the contacts this segment matches (id)
        #[arg(long)]
        segment: Option<String>,
        /// Write here instead of standard output
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check Rhai plugins
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Print counts: contacts by status, lists, consents, suppressions, campaigns, imports
    Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Csv,
    Ndjson,
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Compile every plugin (plugins/<name>/plugin.toml and main.rhai), check that each hook
    /// its plugin.toml declares is defined with the hook's parameters, and report each;
    /// exits non-zero if any fails
    Check {
        /// Check only this folder [default: the built-in plugins and the plugins_dir folder]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Check the whole ledger: every leaf recomputed from the stored events and texts, the
    /// tree against the latest signed checkpoint; exits non-zero and names the first event
    /// that does not match
    Verify {
        /// Also prove the log extends the checkpoints in this file (signed notes kept
        /// outside the database, such as the ledger_checkpoint_file); may be repeated
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
    },
    /// Check a proof bundle (GET /api/v1/contacts/{id}/proof) offline, without the database
    VerifyBundle {
        /// The bundle (JSON)
        file: PathBuf,
        /// The verifier key to trust (`GET /consent/key`); without it, the bundle's own
        #[arg(long)]
        key: Option<String>,
    },
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
    /// Turn a user's two-factor sign-in off (they lost their authenticator app): they sign
    /// in with their password alone until they turn it on again
    ResetTwoFactor {
        /// The user's e-mail address
        #[arg(long)]
        email: String,
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

/// Runs a command; answers the exit status.
pub async fn run(command: Command, settings: Settings) -> Result<u8> {
    match command {
        Command::Import { file, format, delimiter, encoding, lists, tags, basis, consent_text, manifest, columns } => {
            let format = format.unwrap_or_else(|| {
                let extension = file.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
                if matches!(extension.as_str(), "ndjson" | "jsonl") { FormatArg::Ndjson } else { FormatArg::Csv }
            });
            let mut mapping = std::collections::BTreeMap::new();
            for column in columns {
                let (name, target) = column
                    .split_once('=')
                    .ok_or_else(|| Error::field("--map", format!("{column:?} is not COLUMN=TARGET")))?;
                mapping.insert(name.to_owned(), target.to_owned());
            }
            let options = imports::ImportOptions {
                delimiter,
                encoding,
                columns: mapping,
                lists,
                tags,
                basis,
                consent_text,
                manifest_id: None,
            };
            import(settings, file, format, options, manifest).await
        }
        Command::Export { format, list, tag, segment, output } => {
            export(settings, format, list, tag, segment, output).await?;
            Ok(0)
        }
        Command::Plugins { command: PluginsCommand::Check { dir } } => {
            use crate::services::plugins::{FolderPlugins, Origin};
            // A folder named on the command line is checked alone (its author's check);
            // otherwise what the server would run: the built-in plugins and the folder's.
            let (folder, with_built_in) = match dir {
                Some(dir) => (dir, false),
                None => (settings.plugins_dir.clone(), true),
            };
            let host = crate::plugins::PluginHost::new(&folder, settings.script_limits());
            let mut outcomes = if with_built_in { FolderPlugins::built_in(&host) } else { Vec::new() };
            let from_folder = FolderPlugins::check(&folder, &host);
            if from_folder.is_empty() && !with_built_in {
                eprintln!("no plugin in {} (a plugin is a folder with plugin.toml and main.rhai)", folder.display());
                return Ok(1);
            }
            let replaced: Vec<String> =
                from_folder.iter().filter_map(|(_, p)| p.as_ref().ok().map(|p| p.name.clone())).collect();
            outcomes.extend(from_folder);
            let mut failed = 0;
            for (folder, outcome) in outcomes {
                match outcome {
                    Ok(plugin) => {
                        let hooks = if plugin.hooks.is_empty() { "none".to_owned() } else { plugin.hooks.join(", ") };
                        let origin = match plugin.origin {
                            Origin::BuiltIn if replaced.contains(&plugin.name) => {
                                "built in, replaced by the folder's; "
                            }
                            Origin::BuiltIn => "built in; ",
                            Origin::Folder | Origin::Api => "",
                        };
                        println!("ok     {} {} ({origin}hooks: {hooks})", plugin.name, plugin.version)
                    }
                    Err(error) => {
                        failed += 1;
                        let detail = match &error {
                            Error::Internal(cause) => cause.to_string(),
                            other => other.to_string(),
                        };
                        println!("error  {folder}: {detail}");
                    }
                }
            }
            Ok(u8::from(failed > 0))
        }
        Command::Stats => {
            let db = open_database(&settings).await?;
            let stats = crate::services::stats::gather(&db).await?;
            print!("{stats}");
            Ok(0)
        }
        Command::Serve => {
            Application::build(settings).await?.run_until_stopped().await.map_err(Error::internal)?;
            Ok(0)
        }
        Command::Migrate => {
            open_database(&settings).await?;
            eprintln!("The database is up to date.");
            Ok(0)
        }
        Command::User { command: UserCommand::Create { email, role } } => {
            let email = Email::parse(&email).map_err(|e| Error::field("--email", e))?;
            let password = read_password()?;
            check_password_rules(&password).map_err(|e| Error::field("password", e))?;
            let db = open_database(&settings).await?;
            let user = users::create_user(&db, NewUser { email, password, role: role.into() }).await?;
            eprintln!("Created {} user {} ({}).", user.role, user.email, user.id);
            Ok(0)
        }
        Command::User { command: UserCommand::ResetTwoFactor { email } } => {
            let email = Email::parse(&email).map_err(|e| Error::field("--email", e))?;
            let db = open_database(&settings).await?;
            crate::services::two_factor::reset_by_email(&db, &email).await?;
            eprintln!("Two-factor sign-in is off for {email}.");
            Ok(0)
        }
        Command::Openapi => {
            print!("{}", crate::http::openapi_json());
            Ok(0)
        }
        Command::Consent { command: ConsentCommand::Verify { checkpoint } } => {
            let mut kept = Vec::new();
            for path in &checkpoint {
                kept.extend(crate::services::ledger::read_kept_checkpoints(path)?);
            }
            let db = open_database(&settings).await?;
            let report = crate::services::ledger::verify(&db, kept).await?;
            match report.first_mismatch {
                None => {
                    println!(
                        "The consent ledger is intact: {} events checked against the checkpoint of size {}{}; {} \
                         waiting for their leaf.",
                        report.events_checked,
                        report.checkpoint_size.unwrap_or(0),
                        match report.kept_checkpoints_checked {
                            0 => String::new(),
                            n => format!(" and {n} kept checkpoint(s)"),
                        },
                        report.events_waiting
                    );
                    Ok(0)
                }
                Some(mismatch) => {
                    let leaf = mismatch.leaf_index.map(|i| format!("leaf {i}")).unwrap_or_default();
                    let event = mismatch.event_id.map(|id| format!("event {id}")).unwrap_or_default();
                    let at = [leaf, event].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join(", ");
                    let at = if at.is_empty() { String::new() } else { format!("{at}: ") };
                    Err(Error::Conflict(format!(
                        "the consent ledger was altered: {at}{}; {} events before it are intact",
                        mismatch.reason, report.events_checked
                    )))
                }
            }
        }
        Command::Consent { command: ConsentCommand::VerifyBundle { file, key } } => {
            let text =
                std::fs::read_to_string(&file).map_err(|e| Error::field("FILE", format!("{}: {e}", file.display())))?;
            let report = crate::services::ledger::verify_bundle(&text, key.as_deref())?;
            if report.problems.is_empty() {
                println!(
                    "The proof bundle holds: {} events included in the signed tree of {} leaves.",
                    report.events_checked, report.tree_size
                );
                Ok(0)
            } else {
                Err(Error::Conflict(format!("the proof bundle does not hold: {}", report.problems.join("; "))))
            }
        }
    }
}

async fn import(
    settings: Settings,
    file: PathBuf,
    format: FormatArg,
    mut options: imports::ImportOptions,
    manifest: Option<PathBuf>,
) -> Result<u8> {
    let file = std::fs::canonicalize(&file).map_err(|e| Error::field("FILE", format!("{}: {e}", file.display())))?;
    let db = open_database(&settings).await?;
    let keys = crate::services::keys::Keys::load(&db).await?.with_preference_link_days(settings.preference_link_days);
    let actor = crate::domain::consent::Actor::System;
    if let Some(path) = manifest {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::field("--manifest", format!("{}: {e}", path.display())))?;
        let draft: imports::ManifestDraft =
            serde_json::from_str(&text).map_err(|e| Error::field("--manifest", format!("{}: {e}", path.display())))?;
        let manifest = imports::create_manifest(&db, draft, &actor).await?;
        eprintln!("Stored the provenance manifest {} ({}).", manifest.id, manifest.supplier);
        options.manifest_id = Some(manifest.id);
    }
    let format = match format {
        FormatArg::Csv => imports::ImportFormat::Csv,
        FormatArg::Ndjson => imports::ImportFormat::Ndjson,
    };
    let job = imports::create_job(&db, format, options, Some(file.clone()), &actor).await?;
    let started = std::time::Instant::now();
    let worker = imports::ImportWorker::new(db, keys, std::sync::Arc::new(tokio::sync::Notify::new()));
    let mut progress = Progress::new();
    let job = worker
        .run_one_with(Some(job.id.clone()), |report| {
            let rate = report.records as f64 / started.elapsed().as_secs_f64().max(1e-9);
            progress.update(format!(
                "{} records ({:.0}/s): {} new, {} merged, {} refused",
                report.records, rate, report.imported, report.updated, report.invalid
            ));
        })
        .await?
        .ok_or_else(|| Error::internal("the import was taken by another process"))?;
    progress.finish();
    let report = &job.report;
    println!(
        "import {}: {} in {:.1} s\n  records     {}\n  imported    {}\n  updated     {}\n  duplicates  {}\n  suppressed  {}\n  invalid     {}",
        job.id,
        job.status,
        started.elapsed().as_secs_f64(),
        report.records,
        report.imported,
        report.updated,
        report.duplicates,
        report.suppressed,
        report.invalid
    );
    for error in &report.errors {
        println!("  line {}: {}", error.line, error.reason);
    }
    if let Some(failure) = &job.failure {
        eprintln!("consento: the import failed: {failure}");
        return Ok(1);
    }
    Ok(if report.invalid > 0 { 3 } else { 0 })
}

async fn export(
    settings: Settings,
    format: FormatArg,
    list: Option<String>,
    tag: Option<String>,
    segment: Option<String>,
    output: Option<PathBuf>,
) -> Result<()> {
    use futures_util::StreamExt;
    use std::io::Write;
    let db = open_database(&settings).await?;
    let scripts = crate::services::plugins::Scripts::load(&settings.plugins_dir, settings.script_limits())?;
    let segment =
        segment.map(|s| s.parse().map_err(|_| Error::field("--segment", "is not a segment id"))).transpose()?;
    let filter = crate::services::exports::ExportFilter { list, tag, segment };
    let format = match format {
        FormatArg::Csv => crate::services::exports::ExportFormat::Csv,
        FormatArg::Ndjson => crate::services::exports::ExportFormat::Ndjson,
    };
    let mut out: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| Error::field("--output", format!("{}: {e}", path.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let keys = crate::services::keys::Keys::load(&db).await?;
    let stream = crate::services::exports::export(&db, &keys, &scripts, filter, format).await?;
    futures_util::pin_mut!(stream);
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?).map_err(Error::internal)?;
    }
    out.flush().map_err(Error::internal)?;
    Ok(())
}

/// A long command's progress, on standard error (the report goes to standard output): a
/// line redrawn in place on a terminal, otherwise (a file, CI) a plain line at most once a
/// second and the last one at the end, so that a log keeps readable lines.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { last_shown: Option<std::time::Instant>, pending: Option<String> },
}

impl Progress {
    fn new() -> Self {
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            Progress::Bar(bar)
        } else {
            Progress::Lines { last_shown: None, pending: None }
        }
    }

    fn update(&mut self, text: String) {
        match self {
            Progress::Bar(bar) => bar.set_message(text),
            Progress::Lines { last_shown, pending } => {
                if last_shown.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1)) {
                    eprintln!("{text}");
                    *last_shown = Some(std::time::Instant::now());
                    *pending = None;
                } else {
                    *pending = Some(text);
                }
            }
        }
    }

    fn finish(self) {
        match self {
            Progress::Bar(bar) => {
                let last = bar.message();
                bar.finish_and_clear();
                if !last.is_empty() {
                    eprintln!("{last}");
                }
            }
            Progress::Lines { pending, .. } => {
                if let Some(text) = pending {
                    eprintln!("{text}");
                }
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
