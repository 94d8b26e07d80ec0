//! Console page speed with a large address book: seeds contacts (1,000,000 by default,
//! with tags, lists, countries and consents), starts the server on that database, signs in
//! as a person does and asks each console page many times, one request after another
//! (a person at the console), then by several people at once. Prints p50, p95 and the
//! slowest time of each page, in milliseconds.
//!
//!     cargo bench --bench console                       # SQLite, 1,000,000 contacts
//!     cargo bench --bench console -- --contacts 100000 --requests 50
//!     cargo bench --bench console -- --database postgres://postgres@127.0.0.1/bench
//!
//! The SQLite file is kept in target/bench and reused while it holds the asked number.

mod support;

use std::time::{Duration, Instant};

use consento::settings::{Secret, Settings};
use consento::startup::Application;
use consento::storage::{Db, DbConnection, DbOptions, SqliteSync};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use support::{LISTS, seed};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const ADMIN: &str = "bench@example.org";
const PASSWORD: &str = "a long benchmark passphrase";
/// People using the console at once in the second round.
const CONCURRENT: usize = 4;
/// What the console promises each page: p95 under this.
const TARGET_MS: f64 = 200.0;

fn main() -> BenchResult<()> {
    let mut contacts: usize = 1_000_000;
    let mut requests: usize = 100;
    let mut database: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--contacts" => contacts = args.next().ok_or("--contacts needs a number")?.parse()?,
            "--requests" => requests = args.next().ok_or("--requests needs a number")?.parse()?,
            "--database" => database = Some(args.next().ok_or("--database needs a URL")?),
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&folder)?;
    let url = database.unwrap_or_else(|| folder.join(format!("console-{contacts}.db")).to_string_lossy().into_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(url, folder, contacts, requests))
}

fn scalar(conn: &mut DbConnection, query: &str) -> QueryResult<i64> {
    diesel::select(diesel::dsl::sql::<BigInt>(&format!("({query})"))).get_result(conn)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(url: String, folder: std::path::PathBuf, contacts: usize, requests: usize) -> BenchResult<()> {
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
    let backend = db.backend();
    drop(db);

    let settings = Settings {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: folder.join("console-data"),
        database_url: Some(url),
        admin_email: Some(ADMIN.to_owned()),
        admin_password: Some(Secret::new(PASSWORD.to_owned())),
        log: "warn".to_owned(),
        ..Settings::default()
    };
    let app = Application::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());

    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let signed = client
        .post(format!("{base}/admin/sign-in"))
        .header("origin", &base)
        .form(&[("email", ADMIN), ("password", PASSWORD)])
        .send()
        .await?;
    let cookie = signed
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or("the sign-in gave no session")?
        .to_owned();

    // A contact from the middle of the book, for its page and for a deep page of the list.
    let middle = format!("01b{:05x}-0000-7000-8000-{:012x}", (contacts / 2) >> 20, contacts / 2);
    let pages: Vec<(&str, String)> = vec![
        ("dashboard", "/admin".to_owned()),
        ("contacts", "/admin/contacts".to_owned()),
        ("contacts, deep page", format!("/admin/contacts?cursor={middle}")),
        ("contacts on a list", format!("/admin/contacts?list={}", LISTS[1])),
        ("contacts with a tag", "/admin/contacts?tag=vip".to_owned()),
        ("contacts of a country", "/admin/contacts?country=CH".to_owned()),
        ("contacts, status", "/admin/contacts?status=active".to_owned()),
        ("contacts, address search", format!("/admin/contacts?q=person{}@", contacts / 3)),
        ("a contact", format!("/admin/contacts/{middle}")),
        ("lists", "/admin/lists".to_owned()),
        ("suppressions", "/admin/suppressions".to_owned()),
        ("forms", "/admin/forms".to_owned()),
        ("imports", "/admin/imports".to_owned()),
    ];
    println!(
        "backend: {}, contacts: {contacts}, {requests} requests a page, cores: {}",
        backend.as_str(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("{:<26} {:>9} {:>9} {:>9} {:>9}   {:>9}", "page", "p50 ms", "p95 ms", "max ms", "status", "p95, x4");
    let mut over = Vec::new();
    for (name, path) in &pages {
        let url = format!("{base}{path}");
        let timed = |client: reqwest::Client, url: String, cookie: String| async move {
            let started = Instant::now();
            let response = client.get(&url).header("cookie", &cookie).send().await?;
            let status = response.status().as_u16();
            response.bytes().await?;
            Ok::<_, reqwest::Error>((started.elapsed().as_secs_f64() * 1000.0, status))
        };
        for _ in 0..3 {
            timed(client.clone(), url.clone(), cookie.clone()).await?;
        }
        let mut times = Vec::with_capacity(requests);
        let mut status = 0;
        for _ in 0..requests {
            let (ms, code) = timed(client.clone(), url.clone(), cookie.clone()).await?;
            times.push(ms);
            status = code;
        }
        times.sort_by(f64::total_cmp);
        // The same page asked by several people at once.
        let mut together = Vec::with_capacity(requests);
        for _ in 0..requests.div_ceil(CONCURRENT) {
            let runs: Vec<_> =
                (0..CONCURRENT).map(|_| tokio::spawn(timed(client.clone(), url.clone(), cookie.clone()))).collect();
            for run in runs {
                together.push(run.await??.0);
            }
        }
        together.sort_by(f64::total_cmp);
        let p95 = percentile(&times, 95.0);
        println!(
            "{name:<26} {:>9.1} {:>9.1} {:>9.1} {:>9}   {:>9.1}",
            percentile(&times, 50.0),
            p95,
            times[times.len() - 1],
            status,
            percentile(&together, 95.0)
        );
        if p95 >= TARGET_MS || status != 200 {
            over.push(*name);
        }
    }
    if over.is_empty() {
        println!("every page: p95 under {TARGET_MS} ms, answered 200");
    } else {
        println!("over {TARGET_MS} ms at p95 or not 200: {}", over.join(", "));
    }
    Ok(())
}
