//! Exports: contacts as CSV or NDJSON, all or those of a list, a tag or a segment,
//! streamed a batch at a time, so memory stays flat whatever the size. The columns are
//! those an import reads back (lists by name, attributes as one JSON object).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::Stream;

use super::keys::Keys;
use super::plugins::Scripts;
use super::segments::{self, Predicate};
use crate::domain::{Contact, SegmentId};
use crate::domain::{ContactId, ListId};
use crate::error::{Error, Result};
use crate::storage::{self, Db};

const BATCH: i64 = 1000;

crate::domain::consent::string_enum! {
    /// The format of an export.
    ExportFormat {
        Csv = "csv",
        Ndjson = "ndjson",
    }
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Ndjson => "application/x-ndjson",
        }
    }
}

/// Which contacts.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub list: Option<String>,
    pub tag: Option<String>,
    pub segment: Option<SegmentId>,
}

/// `status` and `suppressed` travel with each contact, so that an import elsewhere keeps
/// every opt-out (a row that left becomes a suppression there, never a subscription).
const COLUMNS: [&str; 11] = [
    "id",
    "email",
    "company",
    "country",
    "status",
    "suppressed",
    "tags",
    "lists",
    "attributes",
    "created_at",
    "updated_at",
];

/// The export as a stream of chunks of bytes, one batch of contacts each.
pub async fn export(
    db: &Db,
    keys: &Keys,
    scripts: &Scripts,
    filter: ExportFilter,
    format: ExportFormat,
) -> Result<impl Stream<Item = Result<Vec<u8>>> + use<>> {
    let host = &scripts.host;
    let predicate = match filter.segment {
        Some(id) => {
            let segment = segments::find_segment(db, id).await?;
            Predicate::compile(db, scripts, &segments::rule_of(&segment)?).await?
        }
        None => Predicate::everyone(),
    }
    .narrowed(filter.list, filter.tag.map(|t| t.to_lowercase()));
    let predicate = Arc::new(predicate);
    let list_names: Arc<HashMap<ListId, String>> = Arc::new(
        db.read(|conn| {
            Ok(storage::lists::list_lists(conn, None, i64::MAX)?.into_iter().map(|l| (l.id, l.name)).collect())
        })
        .await?,
    );
    struct State {
        cursor: Option<String>,
        first: bool,
        done: bool,
    }
    let (db, host, keys) = (db.clone(), host.clone(), keys.clone());
    Ok(futures_util::stream::unfold(State { cursor: None, first: true, done: false }, move |mut state| {
        let (db, host, predicate, list_names, keys) =
            (db.clone(), host.clone(), predicate.clone(), list_names.clone(), keys.clone());
        async move {
            if state.done {
                return None;
            }
            let cursor = state.cursor.clone();
            // The segment's script runs between two reads, holding no connection.
            let batch = async {
                let facts = {
                    let predicate = predicate.clone();
                    db.read(move |conn| predicate.batch(conn, cursor.as_deref(), BATCH)).await?
                };
                let last = facts.last().map(|f| f.id.to_string());
                let full = facts.len() as i64 == BATCH;
                let ids: Vec<ContactId> = facts.iter().map(|f| f.id).collect();
                let matched = segments::test_batch(&host, &predicate, facts).await?;
                let ids: Vec<ContactId> =
                    ids.into_iter().zip(matched).filter_map(|(id, kept)| kept.then_some(id)).collect();
                db.read(move |conn| {
                    let contacts = storage::contacts::find_contacts(conn, &ids)?;
                    let hashes: Vec<String> = contacts.iter().map(|c| keys.email_hash(&c.email.key())).collect();
                    let suppressed = storage::consent::suppressed_among(conn, &hashes)?;
                    let flags: Vec<bool> = hashes.iter().map(|h| suppressed.contains(h)).collect();
                    Ok((contacts, flags, last, full))
                })
                .await
            }
            .await;
            let (contacts, suppressed, last, full) = match batch {
                Ok(batch) => batch,
                Err(error) => {
                    state.done = true;
                    return Some((Err(error), state));
                }
            };
            let chunk = write(format, &contacts, &suppressed, &list_names, state.first);
            state.first = false;
            state.cursor = last;
            state.done = !full;
            Some((chunk, state))
        }
    }))
}

/// A cell as a spreadsheet may open it: one starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return would run as a formula (CSV injection: a company named
/// `=HYPERLINK(…)` or `=cmd|…` executing on an admin's machine), so it is prefixed with
/// `'`, which spreadsheets show as text and do not display.
pub fn spreadsheet_safe(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{cell}") } else { cell }
}

/// The cell [`spreadsheet_safe`] was given, so that an export imports back as it was.
pub fn spreadsheet_unsafe(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

fn write(
    format: ExportFormat,
    contacts: &[Contact],
    suppressed: &[bool],
    list_names: &HashMap<ListId, String>,
    header: bool,
) -> Result<Vec<u8>> {
    let lists_of = |contact: &Contact| -> Vec<String> {
        contact.lists.iter().map(|id| list_names.get(id).cloned().unwrap_or_else(|| id.to_string())).collect()
    };
    let tags_of = |contact: &Contact| -> Vec<String> { contact.tags.iter().map(|t| t.as_str().to_owned()).collect() };
    match format {
        ExportFormat::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::with_capacity(contacts.len() * 160));
            if header {
                writer.write_record(COLUMNS).map_err(Error::internal)?;
            }
            for (contact, suppressed) in contacts.iter().zip(suppressed) {
                let cells = [
                    contact.id.to_string(),
                    contact.email.to_string(),
                    contact.company.clone().unwrap_or_default(),
                    contact.country.as_ref().map(|c| c.as_str().to_owned()).unwrap_or_default(),
                    contact.status.as_str().to_owned(),
                    suppressed.to_string(),
                    tags_of(contact).join(";"),
                    lists_of(contact).join(";"),
                    serde_json::Value::Object(contact.attributes.clone()).to_string(),
                    contact.created_at.to_rfc3339(),
                    contact.updated_at.to_rfc3339(),
                ];
                writer.write_record(cells.map(spreadsheet_safe)).map_err(Error::internal)?;
            }
            writer.into_inner().map_err(|e| Error::internal(e.to_string()))
        }
        ExportFormat::Ndjson => {
            let mut out = Vec::with_capacity(contacts.len() * 200);
            for (contact, suppressed) in contacts.iter().zip(suppressed) {
                let line = serde_json::json!({
                    "id": contact.id.to_string(),
                    "email": contact.email.to_string(),
                    "company": contact.company,
                    "country": contact.country.as_ref().map(|c| c.as_str().to_owned()),
                    "status": contact.status.as_str(),
                    "suppressed": suppressed,
                    "tags": tags_of(contact),
                    "lists": lists_of(contact),
                    "attributes": contact.attributes,
                    "created_at": contact.created_at,
                    "updated_at": contact.updated_at,
                });
                serde_json::to_writer(&mut out, &line).map_err(Error::internal)?;
                out.push(b'\n');
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{spreadsheet_safe, spreadsheet_unsafe};

    #[test]
    fn cells_a_spreadsheet_would_run_are_prefixed_and_others_kept() {
        for formula in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://x\")"] {
            assert_eq!(spreadsheet_safe(formula.to_owned()), format!("'{formula}"));
        }
        for plain in ["", "ACME", "a=b", "1-2", "'already", "{\"a\":1}"] {
            assert_eq!(spreadsheet_safe(plain.to_owned()), plain);
        }
        for cell in ["=1+1", "-x", "plain", "'quoted", ""] {
            assert_eq!(spreadsheet_unsafe(&spreadsheet_safe(cell.to_owned())), cell);
        }
    }
}
