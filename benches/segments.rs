//! Segment evaluation speed: seeds contacts (1,000,000 by default) with attributes, tags,
//! lists and consents, then times `count` for a simple, a medium and a complex Rhai
//! predicate next to the same selection written as plain SQL on the same database.
//!
//!     cargo bench --bench segments                      # SQLite, 1,000,000 contacts
//!     cargo bench --bench segments -- --contacts 100000
//!     cargo bench --bench segments -- --database postgres://postgres@127.0.0.1/bench
//!
//! The SQLite file is kept in target/bench and reused while it holds the asked number.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use consento::plugins::{Limits, PluginHost};
use consento::services::plugins::{FolderPlugins, Scripts};
use consento::services::segments::{Rule, count};
use consento::storage::{Backend, Db, DbConnection, DbOptions, SqliteSync};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use support::{DAY, LISTS, seed};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BenchResult<()> {
    let mut contacts: usize = 1_000_000;
    let mut database: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--contacts" => contacts = args.next().ok_or("--contacts needs a number")?.parse()?,
            "--database" => database = Some(args.next().ok_or("--database needs a URL")?),
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let url = database.unwrap_or_else(|| {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        let _ = std::fs::create_dir_all(&folder);
        folder.join(format!("segments-{contacts}.db")).to_string_lossy().into_owned()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(url, contacts))
}

async fn run(url: String, contacts: usize) -> BenchResult<()> {
    let db = Db::connect(&DbOptions {
        url: url.clone(),
        pool_size: 4,
        sqlite_synchronous: SqliteSync::Normal,
        busy_timeout: Duration::from_secs(30),
    })?;
    db.migrate().await?;
    let present: i64 = db.read(|conn| Ok(scalar(conn, "SELECT COUNT(*) FROM contacts")?)).await?;
    if present as usize != contacts {
        let started = Instant::now();
        let backend = db.backend();
        db.read(move |conn| seed(conn, contacts, backend).map_err(|e| consento::error::Error::internal(e.to_string())))
            .await?;
        println!("seeded {contacts} contacts in {:.1} s", started.elapsed().as_secs_f64());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("backend: {}, contacts: {contacts}, cores: {cores}", db.backend().as_str());

    let host = Arc::new(PluginHost::new(std::path::Path::new("/nonexistent"), Limits::default()));
    let scripts = Scripts { host, folder: Arc::new(FolderPlugins::default()) };
    let list = LISTS[0];
    let cutoff = chrono::Utc::now().timestamp() - 730 * DAY;
    let cutoff_sql = match db.backend() {
        Backend::Sqlite => format!("datetime({cutoff}, 'unixepoch')"),
        Backend::Postgres => format!("to_timestamp({cutoff}) AT TIME ZONE 'UTC'"),
    };
    let orders = match db.backend() {
        Backend::Sqlite => "CAST(json_extract(c.attributes, '$.orders') AS INTEGER)".to_owned(),
        Backend::Postgres => "(c.attributes::jsonb->>'orders')::int".to_owned(),
    };
    let cases = [
        (
            "simple",
            "contact.country == \"FR\"".to_owned(),
            "SELECT COUNT(*) FROM contacts c WHERE c.country = 'FR'".to_owned(),
        ),
        (
            "simple*",
            "fn matches(contact) { contact.country == \"FR\" }".to_owned(),
            "SELECT COUNT(*) FROM contacts c WHERE c.country = 'FR'".to_owned(),
        ),
        (
            "medium",
            "contact.has_tag(\"vip\") && contact.attr(\"orders\") >= 10".to_owned(),
            format!(
                "SELECT COUNT(*) FROM contacts c WHERE EXISTS (SELECT 1 FROM contact_tags t \
                 WHERE t.contact_id = c.id AND t.tag = 'vip') AND {orders} >= 10"
            ),
        ),
        (
            "complex",
            format!(
                "fn matches(contact) {{\n\
                   let professional = contact.company != () && !contact.is_role_address;\n\
                   (professional || contact.country in [\"FR\", \"BE\", \"CH\"])\n\
                     && contact.has_consent(\"list:{list}\")\n\
                     && contact.created_at >= {cutoff}\n\
                 }}"
            ),
            format!(
                "SELECT COUNT(*) FROM contacts c WHERE \
                 ((c.company IS NOT NULL AND substr(c.email, 1, 5) <> 'info@') OR c.country IN ('FR', 'BE', 'CH')) \
                 AND EXISTS (SELECT 1 FROM consent_events e WHERE e.contact_id = c.id \
                 AND e.purpose = 'list:{list}' AND e.action IN ('granted', 'confirmed')) \
                 AND c.created_at >= {cutoff_sql}"
            ),
        ),
    ];
    println!();
    println!("simple* is the simple predicate written as a function: no pushdown, every contact through Rhai.");
    println!("{:<8} {:>10} {:>10} {:>10} {:>10} {:>7}", "predicate", "rhai n", "rhai s", "sql n", "sql s", "ratio");
    for (name, script, sql) in cases {
        let started = Instant::now();
        let (scan, _) = count(&db, &scripts, &Rule::Script(script), 0).await?;
        let rhai_time = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let sql_count: i64 = db.read(move |conn| Ok(scalar(conn, &sql)?)).await?;
        let sql_time = started.elapsed().as_secs_f64();
        println!(
            "{name:<8} {:>10} {:>10.3} {:>10} {:>10.3} {:>6.1}x{}",
            scan.matched,
            rhai_time,
            sql_count,
            sql_time,
            rhai_time / sql_time.max(1e-9),
            if scan.matched as i64 == sql_count { "" } else { "  (counts differ!)" }
        );
    }
    Ok(())
}

fn scalar(conn: &mut DbConnection, query: &str) -> QueryResult<i64> {
    diesel::select(diesel::dsl::sql::<BigInt>(&format!("({query})"))).get_result(conn)
}
