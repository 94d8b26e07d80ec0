//! The suppression list as a resource: listed (by keyed hash; searched by hashing the
//! address asked for with the same key), added to one address at a time, or filled from a
//! previous provider's export of its unsubscribed and cleaned addresses.
//!
//! A suppressed address is never mailed again and no import or partner lead brings it
//! back; only the person confirming a double opt-in does. Adding an address that is a
//! contact also ends its subscriptions, as unsubscribing from everything would.

use chrono::{DateTime, Utc};

use super::consent::leave_all_in;
use super::keys::Keys;
use super::pagination::{DEFAULT_LIMIT, MAX_LIMIT, Page};
use crate::domain::consent::{Actor, Evidence};
use crate::domain::contact::parse_required_text;
use crate::domain::{ContactStatus, Email};
use crate::error::{Error, Result};
use crate::storage::suppressions::{self as repo, SuppressionRow};
use crate::storage::{Db, DbConnection, consent as ledger, contacts};

/// Addresses written per transaction in an import, so a long file never holds the writer.
const IMPORT_CHUNK: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// The keyed hash of the normalised address: the list keeps nothing personal.
    pub email_hash: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

impl From<SuppressionRow> for Suppression {
    fn from(row: SuppressionRow) -> Self {
        Self { email_hash: row.email_hash, reason: row.reason, created_at: row.created_at.and_utc() }
    }
}

/// A reason as given: short text, e.g. `unsubscribed`, `bounced`, `complained`, `manual`.
pub fn parse_reason(text: &str) -> std::result::Result<String, String> {
    parse_required_text(text, 100).map_err(|e| e.to_string())
}

/// What a contact's status becomes when its address is suppressed for `reason`.
fn status_for(reason: &str) -> ContactStatus {
    match reason {
        "bounced" | "cleaned" => ContactStatus::Bounced,
        "complained" | "abuse" => ContactStatus::Complained,
        _ => ContactStatus::Unsubscribed,
    }
}

/// One page of the list, in hash order; with `email`, only that address's entry.
pub async fn list(
    db: &Db,
    keys: &Keys,
    email: Option<Email>,
    cursor: Option<String>,
    limit: Option<u32>,
) -> Result<Page<Suppression>> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::field("limit", format!("must be between 1 and {MAX_LIMIT}")));
    }
    let after = cursor.as_deref().filter(|c| !c.is_empty()).map(decode_cursor).transpose()?;
    let hash = email.map(|email| keys.email_hash(&email.key()));
    let rows = db
        .read(move |conn| Ok(repo::list_suppressions(conn, hash.as_deref(), after.as_deref(), i64::from(limit) + 1)?))
        .await?;
    let more = rows.len() > limit as usize;
    let mut items: Vec<Suppression> = rows.into_iter().map(Into::into).collect();
    items.truncate(limit as usize);
    let next_cursor = if more { items.last().map(|last| last.email_hash.clone()) } else { None };
    Ok(Page { items, next_cursor })
}

/// Suppresses an address (answers its entry, and whether it is new). An entry already
/// there keeps its first reason: the first reason is the one that happened.
pub async fn add(db: &Db, keys: &Keys, email: Email, reason: String, actor: Actor) -> Result<(Suppression, bool)> {
    let keys = keys.clone();
    db.write(move |conn| {
        let hash = keys.email_hash(&email.key());
        let added = suppress_in(conn, &hash, &email, &reason, &actor)?;
        let row = repo::find_suppression(conn, &hash)?.ok_or_else(|| Error::internal("a suppression vanished"))?;
        Ok((row.into(), added))
    })
    .await
}

/// Counts of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Addresses newly suppressed.
    pub added: u64,
    /// Addresses suppressed already (or twice in the file).
    pub already_suppressed: u64,
    /// Of those added, the contacts whose subscriptions ended.
    pub contacts_unsubscribed: u64,
    /// Lines without an address that can be mailed (the header excepted).
    pub invalid: u64,
}

/// Reads a previous provider's export: CSV with a header naming the address column
/// (`Email Address`, `email`, `e-mail`…: Mailchimp's unsubscribed and cleaned exports
/// are such), or text with one address per line. Each address is suppressed for `reason`.
pub async fn import(db: &Db, keys: &Keys, body: &[u8], reason: String, actor: Actor) -> Result<ImportReport> {
    let (addresses, invalid) = read_addresses(body);
    let mut report = ImportReport { invalid, ..ImportReport::default() };
    for chunk in addresses.chunks(IMPORT_CHUNK) {
        let (keys, chunk, reason, actor) = (keys.clone(), chunk.to_vec(), reason.clone(), actor.clone());
        let counts = db
            .write(move |conn| {
                let mut counts = ImportReport::default();
                for email in &chunk {
                    let hash = keys.email_hash(&email.key());
                    if ledger::is_suppressed(conn, &hash)? {
                        counts.already_suppressed += 1;
                        continue;
                    }
                    let had_contact = contacts::find_contact_row_by_email_key(conn, &email.key())?.is_some();
                    suppress_in(conn, &hash, email, &reason, &actor)?;
                    counts.added += 1;
                    counts.contacts_unsubscribed += u64::from(had_contact);
                }
                Ok(counts)
            })
            .await?;
        report.added += counts.added;
        report.already_suppressed += counts.already_suppressed;
        report.contacts_unsubscribed += counts.contacts_unsubscribed;
    }
    Ok(report)
}

/// Suppresses `hash` (answers whether it is new) and, when the address is a contact,
/// withdraws everything it receives, as leaving everything does.
fn suppress_in(conn: &mut DbConnection, hash: &str, email: &Email, reason: &str, actor: &Actor) -> Result<bool> {
    if ledger::is_suppressed(conn, hash)? {
        return Ok(false);
    }
    ledger::insert_suppression(conn, hash, reason)?;
    if let Some(row) = contacts::find_contact_row_by_email_key(conn, &email.key())?
        && let Some(contact) = contacts::find_contact(conn, row.id)?
    {
        let evidence = Evidence { method: "suppression".to_owned(), ..Evidence::default() };
        leave_all_in(conn, hash, &contact, &evidence, actor, status_for(reason))?;
    }
    Ok(true)
}

/// Addresses of an export, once each in file order, and the count of lines without one.
fn read_addresses(body: &[u8]) -> (Vec<Email>, u64) {
    let text = String::from_utf8_lossy(body);
    let text = text.trim_start_matches('\u{feff}');
    let first_line = text.lines().next().unwrap_or("");
    let delimiter = [b',', b';', b'\t'].into_iter().max_by_key(|d| first_line.bytes().filter(|b| b == d).count());
    let delimiter = delimiter.filter(|d| first_line.as_bytes().contains(d)).unwrap_or(b',');
    let mut reader =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(text.as_bytes());
    let mut records = reader.records();
    let header: Option<Vec<String>> = match records.next() {
        Some(Ok(record)) => Some(record.iter().map(|cell| cell.trim().to_lowercase()).collect()),
        _ => None,
    };
    let column = header.as_ref().and_then(|cells| {
        cells.iter().position(|cell| {
            matches!(
                cell.as_str(),
                "email" | "e-mail" | "email address" | "e-mail address" | "email_address" | "address"
            )
        })
    });
    let mut seen = std::collections::HashSet::new();
    let mut addresses = Vec::new();
    let mut invalid = 0;
    {
        let mut take = |cell: Option<&str>| match cell.map(|c| Email::parse(c.trim().trim_matches('"'))) {
            Some(Ok(email)) => {
                if seen.insert(email.key()) {
                    addresses.push(email);
                }
            }
            _ => invalid += 1,
        };
        // Without a header naming the column, the first line is an address like the others.
        if column.is_none()
            && let Some(cells) = &header
        {
            take(cells.first().map(String::as_str));
        }
        for record in records {
            match record {
                Ok(record) if record.iter().all(|cell| cell.trim().is_empty()) => {}
                Ok(record) => take(record.get(column.unwrap_or(0))),
                Err(_) => take(None),
            }
        }
    }
    (addresses, invalid)
}

/// A page ends at an entry's keyed hash (the key the list is ordered by), which is the
/// cursor; the next page starts after it.
fn decode_cursor(cursor: &str) -> Result<String> {
    if cursor.len() != 64 || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::field("cursor", "is not a cursor this server issued"));
    }
    Ok(cursor.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailchimp_export_is_read_by_its_address_column() {
        let csv = "\u{feff}\"Email Address\",\"First Name\",UNSUB_TIME\n\"a@example.org\",Ann,2024-01-01\nb@example.org,Bo,x\nnot an address,C,y\nA@Example.org,Ann,z\n";
        let (addresses, invalid) = read_addresses(csv.as_bytes());
        let keys: Vec<String> = addresses.iter().map(Email::key).collect();
        assert_eq!(keys, ["a@example.org", "b@example.org"]);
        assert_eq!(invalid, 1);
    }

    #[test]
    fn plain_text_is_one_address_per_line_from_the_first() {
        let (addresses, invalid) = read_addresses(b"one@example.org\n\ntwo@example.org\nnope\n");
        let keys: Vec<String> = addresses.iter().map(Email::key).collect();
        assert_eq!(keys, ["one@example.org", "two@example.org"]);
        assert_eq!(invalid, 1);
    }
}
