use std::process::ExitCode;

use clap::Parser;
use consento::cli::{self, Cli};
use consento::error::Error;
use consento::settings::Settings;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("consento: invalid settings: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(message) = settings.validate() {
        eprintln!("consento: invalid settings: {message}");
        return ExitCode::from(2);
    }
    // A command's progress and report are its output: its log shows warnings and errors
    // unless a log level was chosen (CONSENTO_LOG or `log` in the settings file).
    let log = match cli.command {
        cli::Command::Serve => settings.log.clone(),
        _ if std::env::var_os("CONSENTO_LOG").is_none() && settings.log == Settings::default().log => "warn".to_owned(),
        _ => settings.log.clone(),
    };
    consento::telemetry::init(&log, settings.log_format);
    match cli::run(cli.command, settings).await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("consento: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line; for validation errors, each field.
fn describe(error: &Error) -> String {
    if let Error::Validation(fields) = error {
        return fields.iter().map(|f| format!("{} {}", f.field, f.message)).collect::<Vec<_>>().join("; ");
    }
    consento::error::chain(error)
}
