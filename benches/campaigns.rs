//! Campaign sending speed: seeds contacts who agreed (100,000 by default), then sends a
//! personalised, DKIM-signed campaign to a local SMTP server through the real dispatcher
//! (policy check, claims, rendering, signing, SMTP, bookkeeping), and prints messages per
//! second and the peak memory of the process.
//!
//!     cargo bench --bench campaigns                            # 100,000 messages, ed25519
//!     cargo bench --bench campaigns -- --messages 20000 --algorithm rsa
//!     cargo bench --bench campaigns -- --smtp 127.0.0.1:2525   # a server of your own
//!
//! Without `--smtp` it starts postfix's `smtp-sink` (Debian package `postfix`) on a free
//! port. It also times one SMTP connection alone, so that a per-message stall (such as
//! Nagle's algorithm against delayed ACKs, about 40 ms a message) shows at once.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use consento::domain::CampaignId;
use consento::mail::{Signer, Transport};
use consento::plugins::Limits;
use consento::services::campaigns::{self, CampaignContext, CampaignDraft, Tracking};
use consento::services::dispatcher::{Dispatcher, SendOptions, send_until_done};
use consento::services::keys::Keys;
use consento::services::plugins::Scripts;
use consento::settings::DkimAlgorithm;
use consento::storage::{Backend, Db, DbConnection, DbOptions, SqliteSync};
use diesel::connection::SimpleConnection;

const LIST: &str = "01a00000-0000-7000-8000-0000000000c1";

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Options {
    messages: usize,
    database: Option<String>,
    smtp: Option<String>,
    algorithm: Option<DkimAlgorithm>,
    concurrency: usize,
}

fn main() -> BenchResult<()> {
    let mut options = Options { messages: 100_000, database: None, smtp: None, algorithm: None, concurrency: 8 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--messages" => options.messages = value()?.parse()?,
            "--database" => options.database = Some(value()?),
            "--smtp" => options.smtp = Some(value()?),
            "--concurrency" => options.concurrency = value()?.parse()?,
            "--algorithm" => {
                options.algorithm = Some(match value()?.as_str() {
                    "ed25519" => DkimAlgorithm::Ed25519,
                    "rsa" => DkimAlgorithm::Rsa,
                    other => return Err(format!("--algorithm {other}: ed25519 or rsa").into()),
                })
            }
            "--bench" => {}
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(options))
}

/// postfix's smtp-sink on a free port, stopped on drop.
struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sink() -> BenchResult<(String, Sink)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let address = format!("127.0.0.1:{port}");
    let child = Command::new("smtp-sink")
        .args(["-u", "nobody", &address, "1024"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("smtp-sink (Debian: apt-get install postfix) does not start: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(&address).is_err() {
        if Instant::now() > deadline {
            return Err("smtp-sink did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((address, Sink(child)))
}

fn signer(algorithm: DkimAlgorithm) -> BenchResult<Signer> {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dkim");
    let key = match algorithm {
        DkimAlgorithm::Ed25519 => std::fs::read_to_string(fixtures.join("ed25519.key"))?,
        DkimAlgorithm::Rsa => std::fs::read_to_string(fixtures.join("rsa.pem"))?,
    };
    Ok(Signer::new("bench", "consento.test", algorithm, &key)?)
}

async fn run(options: Options) -> BenchResult<()> {
    let (smtp, _sink) = match &options.smtp {
        Some(address) => (address.clone(), None),
        None => {
            let (address, sink) = start_sink()?;
            (address, Some(sink))
        }
    };
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&folder)?;
    let url = options.database.clone().unwrap_or_else(|| {
        let path = folder.join("campaigns.db");
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        path.to_string_lossy().into_owned()
    });
    let db = Db::connect(&DbOptions {
        url,
        pool_size: 8,
        sqlite_synchronous: SqliteSync::Normal,
        busy_timeout: Duration::from_secs(30),
    })?;
    db.migrate().await?;
    let started = Instant::now();
    let (messages, backend) = (options.messages, db.backend());
    db.read(move |conn| seed(conn, messages, backend).map_err(|e| consento::error::Error::internal(e.to_string())))
        .await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "backend: {}, contacts: {messages}, cores: {cores}, smtp: {smtp}, concurrency: {} (seeded in {:.1} s)",
        db.backend().as_str(),
        options.concurrency,
        started.elapsed().as_secs_f64()
    );

    let plugins_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins");
    let scripts = Scripts::load(&plugins_dir, Limits::default())?;
    let keys = Keys::load(&db).await?;
    let context = |algorithm: DkimAlgorithm, connections: usize| -> BenchResult<CampaignContext> {
        Ok(CampaignContext {
            db: db.clone(),
            keys: keys.clone(),
            scripts: scripts.clone(),
            wake: Arc::new(tokio::sync::Notify::new()),
            transport: Transport::smtp(&format!("smtp://{smtp}"), connections as u32)?,
            signer: Some(Arc::new(signer(algorithm)?)),
            base_url: "https://news.consento.test".to_owned(),
            message_domain: "news.consento.test".to_owned(),
            mail_from: "News <news@consento.test>".to_owned(),
            complaint_threshold: 0.003,
        })
    };

    println!();
    println!(
        "{:<10} {:>6} {:>9} {:>10} {:>10} {:>12}",
        "signature", "conns", "messages", "prepare s", "send s", "messages/s"
    );
    // One connection alone, on a slice of the audience: the per-message cost of a connection.
    let single = (messages / 20).clamp(500, 5000);
    measure(&context(DkimAlgorithm::Ed25519, 1)?, 1, single, "ed25519").await?;
    let algorithms = match options.algorithm {
        Some(algorithm) => vec![algorithm],
        None => vec![DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa],
    };
    for algorithm in algorithms {
        let name = match algorithm {
            DkimAlgorithm::Ed25519 => "ed25519",
            DkimAlgorithm::Rsa => "rsa-2048",
        };
        let count =
            if algorithm == DkimAlgorithm::Rsa && options.algorithm.is_none() { messages / 5 } else { messages };
        measure(&context(algorithm, options.concurrency)?, options.concurrency, count, name).await?;
    }
    println!();
    println!("peak memory (RSS high-water mark of this process): {:.0} MB", support::peak_rss_mb());
    Ok(())
}

/// Sends one campaign to the first `count` contacts and prints its figures.
async fn measure(ctx: &CampaignContext, connections: usize, count: usize, name: &str) -> BenchResult<()> {
    // The audience is narrowed to `count` contacts by a segment on an attribute.
    let segment = consento::services::segments::create_segment(
        &ctx.db,
        &ctx.scripts,
        consento::services::segments::SegmentDraft {
            name: format!("first {count} ({name}, {connections})"),
            description: String::new(),
            rule: consento::services::segments::Rule::Script(format!("contact.attr(\"n\") < {count}")),
        },
    )
    .await?;
    let campaign = campaigns::create_campaign(
        ctx,
        CampaignDraft {
            name: format!("bench {name}"),
            subject: "News for {{ contact.attributes.first_name | default(\"you\") }}".to_owned(),
            from: None,
            reply_to: None,
            html_body: Some(
                "<html><body><h1>Hello {{ contact.attributes.first_name }}</h1>\
                 <p>Our news this month, picked for {{ contact.attributes.city }}.</p>\
                 <p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p></body></html>"
                    .to_owned(),
            ),
            text_body: "Hello {{ contact.attributes.first_name }},\n\nour news this month, picked for \
                        {{ contact.attributes.city }}.\n\nUnsubscribe: {{ unsubscribe_url }}\n"
                .to_owned(),
            lists: vec![LIST.parse()?],
            segment: Some(segment.id),
            kind: consento::domain::CampaignKind::B2c,
            purpose: consento::domain::CampaignPurpose::Marketing,
            policy_plugin: None,
            tracking: Tracking::default(),
            complaint_threshold: None,
        },
    )
    .await?;
    let id: CampaignId = campaign.id;
    let options = SendOptions {
        concurrency: connections,
        batch_size: 500,
        per_second: 0,
        per_hour: 0,
        max_attempts: 3,
        lease: chrono::TimeDelta::minutes(2),
    };
    let dispatcher = Dispatcher::new(ctx.clone(), options);
    campaigns::schedule(ctx, id, None).await?;
    let started = Instant::now();
    // The first round prepares the audience (the send policy over every contact).
    let prepared = dispatcher.round().await?;
    let prepare = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let round = send_until_done(&dispatcher, id).await?;
    let send = started.elapsed().as_secs_f64();
    let sent = round.sent + prepared.sent;
    if sent != count {
        return Err(format!("{name}: sent {sent} of {count} ({} failed)", round.failed).into());
    }
    println!(
        "{name:<10} {connections:>6} {sent:>9} {prepare:>10.2} {send:>10.2} {:>12.0}",
        sent as f64 / send.max(1e-9)
    );
    Ok(())
}

/// Contacts with a double opt-in for the list, written with multi-row INSERTs: seeding is
/// not what is measured.
fn seed(conn: &mut DbConnection, contacts: usize, backend: Backend) -> BenchResult<()> {
    conn.batch_execute(&format!(
        "DELETE FROM campaign_recipients; DELETE FROM campaigns; DELETE FROM segments; DELETE FROM consent_events; \
         DELETE FROM contact_lists; DELETE FROM contacts; DELETE FROM lists; \
         INSERT INTO lists (id, name, description, opt_in, created_at, updated_at) \
         VALUES ('{LIST}', 'News', '', 'double', '2024-01-01 00:00:00', '2024-01-01 00:00:00');"
    ))?;
    let names = ["Ada", "Grace", "Marie", "Alan", "Émile", "Jürgen", "Chiara", "Søren"];
    let cities = ["Lyon", "Genève", "Milano", "Köln", "Bruxelles", "Lausanne"];
    let transaction = match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    let mut start = 0;
    while start < contacts {
        let end = (start + 5000).min(contacts);
        let (mut people, mut memberships, mut events) = (Vec::new(), Vec::new(), Vec::new());
        for i in start..end {
            let id = format!("01c{:05x}-0000-7000-8000-{:012x}", i >> 20, i);
            let email = format!("reader{i}@domain{}.example", i % 997);
            let attributes =
                format!("{{\"n\": {i}, \"first_name\": \"{}\", \"city\": \"{}\"}}", names[i % 8], cities[i % 6]);
            people.push(format!(
                "('{id}', '{email}', '{email}', '{attributes}', NULL, 'FR', 'active', '2024-01-01 00:00:00', '2024-01-01 00:00:00')"
            ));
            memberships.push(format!("('{id}', '{LIST}', '2024-01-01 00:00:00')"));
            events.push(format!(
                "('{id}e', {}, '{id}', 'list:{LIST}', 'granted', 'double_opt_in', 0, 'form', 'public', '', '', '', \
                 '2024-01-01 00:00:00', '', '')",
                i + 1
            ));
        }
        conn.batch_execute(&format!(
            "{transaction};\
             INSERT INTO contacts (id, email, email_key, attributes, company, country, status, created_at, updated_at) VALUES {};\
             INSERT INTO contact_lists (contact_id, list_id, added_at) VALUES {};\
             INSERT INTO consent_events (id, seq, contact_id, purpose, action, basis, requires_confirmation, method, actor, \
               ip_digest, user_agent_digest, source_url_digest, occurred_at, prev_hash, hash) VALUES {};\
             COMMIT;",
            people.join(","),
            memberships.join(","),
            events.join(",")
        ))?;
        start = end;
    }
    conn.batch_execute("ANALYZE")?;
    Ok(())
}
