//! Import speed: a CSV of 1,000,000 contacts (generated once under `target/bench`) imported
//! with a consent per row (list membership and a ledger event), next to the
//! time the `sqlite3` tool takes to `.import` the same file into a bare table: the floor.
//! Prints rows per second and the peak memory of the process.
//!
//!     cargo bench --bench imports
//!     cargo bench --bench imports -- --rows 100000
//!     cargo bench --bench imports -- --database postgres://postgres@127.0.0.1/bench

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use consento::domain::consent::Actor;
use consento::services::imports::{self, ImportFormat, ImportOptions, ImportWorker};
use consento::services::keys::Keys;
use consento::storage::{Db, DbOptions, SqliteSync};
use diesel::connection::SimpleConnection;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BenchResult<()> {
    let mut rows: usize = 1_000_000;
    let mut database: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rows" => rows = args.next().ok_or("--rows needs a number")?.parse()?,
            "--database" => database = Some(args.next().ok_or("--database needs a URL")?),
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&folder)?;
    let file = folder.join(format!("import-{rows}.csv"));
    if !file.is_file() {
        generate(&file, rows)?;
    }
    let size = std::fs::metadata(&file)?.len();
    println!("file: {} ({rows} rows, {:.0} MB)", file.display(), size as f64 / 1e6);

    // The floor: sqlite3 reading the same file into a table with no index, no checks.
    let floor_db = folder.join("import-floor.db");
    let _ = std::fs::remove_file(&floor_db);
    let started = Instant::now();
    let status = Command::new("sqlite3")
        .arg(&floor_db)
        .args([".mode csv", &format!(".import {} people", file.display())])
        .status()
        .map_err(|e| format!("sqlite3 (Debian: apt-get install sqlite3) does not run: {e}"))?;
    if !status.success() {
        return Err("sqlite3 .import failed".into());
    }
    let floor = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&floor_db);

    let url = database.unwrap_or_else(|| {
        let path = folder.join("imports.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        path.to_string_lossy().into_owned()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (with_consent, report) = runtime.block_on(import(url.clone(), file.clone(), true))?;
    if report.imported != rows as i64 {
        return Err(format!("imported {} of {rows}", report.imported).into());
    }
    let (contacts_only, _) = runtime.block_on(import(url, file, false))?;
    println!();
    println!("{:<46} {:>10} {:>12} {:>8}", "", "seconds", "rows/s", "floor×");
    let line = |name: &str, seconds: f64| {
        println!("{name:<46} {seconds:>10.2} {:>12.0} {:>8.1}", rows as f64 / seconds, seconds / floor);
    };
    line("sqlite3 .import (one bare table, no index)", floor);
    line("consento import, contacts only", contacts_only);
    line("consento import, with list and consent event", with_consent);
    println!();
    println!("peak memory (RSS high-water mark of this process): {:.0} MB", support::peak_rss_mb());
    Ok(())
}

/// Imports into an emptied database; with `consent`, every row joins a list with a
/// single opt-in recorded in the ledger.
async fn import(url: String, file: PathBuf, consent: bool) -> BenchResult<(f64, imports::Report)> {
    let db = Db::connect(&DbOptions {
        url,
        pool_size: 4,
        sqlite_synchronous: SqliteSync::Normal,
        busy_timeout: Duration::from_secs(30),
    })?;
    db.migrate().await?;
    db.read(|conn| {
        conn.batch_execute(
            "DELETE FROM import_jobs; DELETE FROM consent_events; DELETE FROM consent_unsequenced; \
             DELETE FROM consent_leaves; DELETE FROM consent_tree_nodes; DELETE FROM consent_checkpoints; \
             DELETE FROM contact_tags; \
             DELETE FROM contact_lists; DELETE FROM contacts; DELETE FROM lists; \
             INSERT INTO lists (id, name, description, opt_in, created_at, updated_at) VALUES \
             ('01a00000-0000-7000-8000-0000000000d1', 'Newsletter', '', 'double', '2024-01-01 00:00:00', '2024-01-01 00:00:00');",
        )?;
        Ok(())
    })
    .await?;
    if consent {
        println!("backend: {}", db.backend().as_str());
    }
    let keys = Keys::load(&db).await?;
    let options = if consent {
        ImportOptions {
            lists: vec!["Newsletter".to_owned()],
            basis: Some("single_opt_in".to_owned()),
            consent_text: Some("Yes, send me the newsletter".to_owned()),
            ..ImportOptions::default()
        }
    } else {
        ImportOptions::default()
    };
    let job = imports::create_job(&db, ImportFormat::Csv, options, Some(file), &Actor::System).await?;
    let worker = ImportWorker::new(db, keys, Arc::new(tokio::sync::Notify::new()));
    let started = Instant::now();
    let job = worker
        .run_one_with(Some(job.id), |report| {
            if report.records % 100_000 == 0 {
                eprint!("\r{} records ", report.records);
            }
        })
        .await?
        .ok_or("the job was not run")?;
    eprintln!();
    if let Some(failure) = job.failure {
        return Err(failure.into());
    }
    Ok((started.elapsed().as_secs_f64(), job.report))
}

fn generate(path: &Path, rows: usize) -> BenchResult<()> {
    let names = ["Ada", "Grace", "Marie", "Alan", "Émile", "Jürgen", "Chiara", "Søren"];
    let countries = ["FR", "DE", "IT", "CH", "BE", "ES"];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "email,first_name,company,country,plan,tags")?;
    for i in 0..rows {
        writeln!(
            out,
            "person{i}@domain{}.example,{},{},{},{},{}",
            i % 997,
            names[i % 8],
            if i % 3 == 0 { format!("Company {}", i % 5000) } else { String::new() },
            countries[i % 6],
            ["free", "pro"][i % 2],
            ["", "vip", "trial", ""][i % 4]
        )?;
    }
    out.flush()?;
    Ok(())
}
