//! Ledger speed: 1,000,000 consent events written (in batches, as an import writes them),
//! given their leaves by the sequencer, then the whole log checked as `consento consent
//! verify` checks it. Prints each phase's time and rate, and the peak memory.
//!
//!     cargo bench --bench ledger
//!     cargo bench --bench ledger -- --events 100000
//!     cargo bench --bench ledger -- --database postgres://postgres@127.0.0.1/bench
//!     cargo bench --bench ledger -- --database postgres://… --verify-only   (the log the last run left)

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use consento::domain::consent::{ConsentAction, ConsentBasis, Evidence, Purpose};
use consento::domain::ledger::note::NoteSigner;
use consento::services::ledger::{self, LedgerKey};
use consento::settings::{Secret, Settings};
use consento::storage::consent::{NewConsentEvent, append_events};
use consento::storage::{Db, DbOptions, SqliteSync};
use diesel::connection::SimpleConnection;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const WRITE_BATCH: usize = 5000;

fn main() -> BenchResult<()> {
    let mut events: usize = 1_000_000;
    let mut database: Option<String> = None;
    let mut verify_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => events = args.next().ok_or("--events needs a number")?.parse()?,
            "--database" => database = Some(args.next().ok_or("--database needs a URL")?),
            "--verify-only" => verify_only = true,
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&folder)?;
    let url = database.unwrap_or_else(|| {
        let path = folder.join("ledger.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        path.to_string_lossy().into_owned()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let db = Db::connect(&DbOptions {
            url,
            pool_size: 4,
            sqlite_synchronous: SqliteSync::Normal,
            busy_timeout: Duration::from_secs(30),
        })?;
        db.migrate().await?;
        match verify_only {
            true => verify_again(&db).await,
            false => run(&db, events).await,
        }
    })
}

/// Times `consent verify` over the log a previous run left in the database.
async fn verify_again(db: &Db) -> BenchResult<()> {
    let started = Instant::now();
    let report = ledger::verify(db, Vec::new()).await?;
    let verified = started.elapsed().as_secs_f64();
    if let Some(mismatch) = report.first_mismatch {
        return Err(format!("the ledger does not verify: {mismatch:?}").into());
    }
    let events = report.events_checked as f64;
    println!("backend: {}, {events} events", db.backend().as_str());
    println!("consento consent verify (every leaf, tree)   {verified:>10.2} {:>12.0}", events / verified);
    Ok(())
}

async fn run(db: &Db, events: usize) -> BenchResult<()> {
    db.read(|conn| {
        conn.batch_execute(
            "DELETE FROM consent_unsequenced; DELETE FROM consent_leaves; DELETE FROM consent_tree_nodes; \
             DELETE FROM consent_checkpoints; DELETE FROM consent_events; \
             DELETE FROM server_secrets WHERE name = 'ledger_verifier_key';",
        )?;
        Ok(())
    })
    .await?;
    println!("backend: {}, {events} events", db.backend().as_str());

    let started = Instant::now();
    let list: Purpose = "list:01a00000-0000-7000-8000-0000000000d1".parse()?;
    for start in (0..events).step_by(WRITE_BATCH) {
        let batch: Vec<NewConsentEvent> = (start..events.min(start + WRITE_BATCH))
            .map(|i| NewConsentEvent {
                contact_id: uuid::Uuid::from_u128(0x01a0_0000_0000_7000_8000_0000_0000_0000 + i as u128).into(),
                email_key: None,
                purpose: list.clone(),
                action: ConsentAction::Granted,
                basis: ConsentBasis::SingleOptIn,
                requires_confirmation: false,
                evidence: Evidence {
                    method: "form".to_owned(),
                    consent_text: Some("Yes, send me the newsletter. I can unsubscribe at any time.".to_owned()),
                    ip: Some(format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255)),
                    user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Bench/1.0".to_owned()),
                    source_url: Some("https://www.example.org/newsletter".to_owned()),
                    ..Evidence::default()
                },
                actor: "public".to_owned(),
            })
            .collect();
        db.write(move |conn| append_events(conn, batch).map(|_| ())).await?;
    }
    let written = started.elapsed().as_secs_f64();

    let signer = NoteSigner::new("bench.example/consent", rand::random())?;
    let settings = Settings { ledger_signing_key: Some(Secret::new(signer.to_private_text())), ..Settings::default() };
    let key = LedgerKey::load(&settings)?;
    let started = Instant::now();
    loop {
        let key = key.clone();
        let sequenced = db.write(move |conn| ledger::sequence_in(conn, &key, 5000)).await?;
        match sequenced {
            Some(s) if s.full => continue,
            _ => break,
        }
    }
    let sequenced = started.elapsed().as_secs_f64();

    // `consent verify` reads the verifier key from the database, as the server stores it.
    ledger::register_key(db, &key).await?;
    let started = Instant::now();
    let report = ledger::verify(db, Vec::new()).await?;
    let verified = started.elapsed().as_secs_f64();
    if let Some(mismatch) = report.first_mismatch {
        return Err(format!("the ledger does not verify: {mismatch:?}").into());
    }
    if report.events_checked != events as u64 {
        return Err(format!("verified {} of {events} events", report.events_checked).into());
    }
    println!();
    println!("{:<44} {:>10} {:>12}", "", "seconds", "events/s");
    let line = |name: &str, seconds: f64| println!("{name:<44} {seconds:>10.2} {:>12.0}", events as f64 / seconds);
    line("write the events (batches of 5,000)", written);
    line("sequence them (leaves, subtrees, checkpoint)", sequenced);
    line("consento consent verify (every leaf, tree)", verified);
    println!();
    println!("peak memory (RSS high-water mark of this process): {:.0} MB", support::peak_rss_mb());
    Ok(())
}
