//! What the benchmark programs share.

#![allow(dead_code)]

use consento::storage::{Backend, DbConnection};
use diesel::connection::SimpleConnection;

pub const COUNTRIES: [&str; 8] = ["FR", "DE", "IT", "CH", "BE", "ES", "US", "GB"];
pub const TAGS: [&str; 5] = ["vip", "trial", "newsletter", "b2b", "churn-risk"];
pub const LISTS: [&str; 3] = [
    "01a00000-0000-7000-8000-000000000001",
    "01a00000-0000-7000-8000-000000000002",
    "01a00000-0000-7000-8000-000000000003",
];
pub const DAY: i64 = 86_400;

/// The process's peak resident memory (RSS high-water mark), in MB; 0 where /proc is absent.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Writes the contacts with multi-row INSERTs in large transactions: seeding is not what
/// is measured.
pub fn seed(conn: &mut DbConnection, contacts: usize, backend: Backend) -> Result<(), Box<dyn std::error::Error>> {
    conn.batch_execute(
        "DELETE FROM consent_events; DELETE FROM contact_tags; DELETE FROM contact_lists; DELETE FROM contacts; \
         DELETE FROM lists;",
    )?;
    let now = chrono::Utc::now().timestamp();
    let mut sql = String::from("INSERT INTO lists (id, name, description, opt_in, created_at, updated_at) VALUES ");
    for (i, id) in LISTS.iter().enumerate() {
        sql.push_str(&format!(
            "{}('{id}', 'List {i}', '', 'double', '2024-01-01 00:00:00', '2024-01-01 00:00:00')",
            if i > 0 { "," } else { "" }
        ));
    }
    conn.batch_execute(&sql)?;
    let time = |unix: i64| {
        chrono::DateTime::from_timestamp(unix, 0)
            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
    };
    let mut seq: i64 = 0;
    let chunk = 5_000;
    let mut start = 0;
    while start < contacts {
        let end = (start + chunk).min(contacts);
        let mut people = Vec::with_capacity(end - start);
        let mut tags = Vec::new();
        let mut memberships = Vec::new();
        let mut events = Vec::new();
        for i in start..end {
            let id = format!("01b{:05x}-0000-7000-8000-{:012x}", i >> 20, i);
            let role = i % 20 == 0;
            let email =
                if role { format!("info@company{i}.example") } else { format!("person{i}@domain{}.example", i % 997) };
            let company = if i % 10 < 3 { format!("'Company {}'", i % 5000) } else { "NULL".to_owned() };
            let country = COUNTRIES[(i * 7) % COUNTRIES.len()];
            let created = time(now - ((i as i64 * 7919) % (3 * 365)) * DAY);
            let attributes = format!(
                "{{\"orders\": {}, \"plan\": \"{}\", \"age\": {}}}",
                (i * 13) % 50,
                if i % 4 == 0 { "pro" } else { "free" },
                18 + (i % 60)
            );
            people.push(format!(
                "('{id}', '{email}', '{email}', '{attributes}', {company}, '{country}', 'active', '{created}', '{created}')"
            ));
            for (t, tag) in TAGS.iter().enumerate() {
                if (i + t * 3) % 7 == 0 || (t == 0 && i % 5 == 0) {
                    tags.push(format!("('{id}', '{tag}')"));
                }
            }
            let list = LISTS[i % LISTS.len()];
            memberships.push(format!("('{id}', '{list}', '{created}')"));
            seq += 1;
            let basis = if i % 3 == 0 { "single_opt_in" } else { "double_opt_in" };
            events.push(format!(
                "('{id}e', {seq}, '{id}', 'list:{list}', 'granted', '{basis}', 0, 'form', 'public', '', '', '', '{created}', '', '')"
            ));
        }
        let transaction = match backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        conn.batch_execute(&format!(
            "{transaction};\
             INSERT INTO contacts (id, email, email_key, attributes, company, country, status, created_at, updated_at) VALUES {};\
             INSERT INTO contact_tags (contact_id, tag) VALUES {};\
             INSERT INTO contact_lists (contact_id, list_id, added_at) VALUES {};\
             INSERT INTO consent_events (id, seq, contact_id, purpose, action, basis, requires_confirmation, method, actor, \
               ip_digest, user_agent_digest, source_url_digest, occurred_at, prev_hash, hash) VALUES {};\
             COMMIT;",
            people.join(","),
            tags.join(","),
            memberships.join(","),
            events.join(",")
        ))?;
        start = end;
    }
    conn.batch_execute("ANALYZE")?;
    Ok(())
}
