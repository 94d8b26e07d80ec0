//! The consent ledger, consent texts and the suppression list.

use diesel::prelude::*;

use super::models::utc;
use super::schema::{consent_events, consent_leaves, consent_texts, suppressions};
use super::{DbConnection, now};
use crate::domain::consent::{
    ConsentAction, ConsentBasis, ConsentEvent, Evidence, Purpose, personal_digest, sha256_hex,
};
use crate::domain::ledger::{LEAF_VERSION, Leaf};
use crate::domain::{ContactId, FormId};
use crate::error::Result;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = consent_events, treat_none_as_default_value = false)]
pub struct ConsentEventRow {
    pub id: String,
    pub seq: i64,
    pub contact_id: ContactId,
    pub purpose: Purpose,
    pub action: ConsentAction,
    pub basis: ConsentBasis,
    pub requires_confirmation: i32,
    pub method: String,
    pub form_id: Option<FormId>,
    pub form_version: Option<i32>,
    pub consent_text_sha256: Option<String>,
    pub actor: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub source_url: Option<String>,
    pub evidence_salt: Option<String>,
    pub ip_digest: String,
    pub user_agent_digest: String,
    pub source_url_digest: String,
    pub occurred_at: chrono::NaiveDateTime,
    pub prev_hash: String,
    pub hash: String,
    /// The provenance manifest of the import that produced the event.
    pub manifest_id: Option<String>,
    /// Evidence that is neither personal nor a consent text (JSON): the partner list shown,
    /// a partner's proof of how it collected a lead.
    pub proof: Option<String>,
    /// HMAC-SHA256 of the address under `evidence_salt` (empty for events from before it).
    pub email_digest: String,
}

/// A time as a leaf writes it: RFC 3339, UTC, microseconds.
pub fn leaf_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl ConsentEventRow {
    /// The leaf this event is in the tree (the exact consent text passed in, as stored).
    pub fn leaf(&self, consent_text: Option<&str>) -> Leaf {
        self.clone().into_leaf(consent_text.map(str::to_owned))
    }

    /// The same leaf, taking the row's values instead of copying them.
    pub fn into_leaf(self, consent_text: Option<String>) -> Leaf {
        Leaf {
            v: LEAF_VERSION,
            occurred_at: leaf_time(utc(self.occurred_at)),
            requires_confirmation: self.requires_confirmation != 0,
            event_id: self.id,
            contact_id: self.contact_id.to_string(),
            email_digest: self.email_digest,
            purpose: self.purpose.to_string(),
            action: self.action.as_str().to_owned(),
            basis: self.basis.as_str().to_owned(),
            method: self.method,
            form_id: self.form_id.map(|id| id.to_string()),
            form_version: self.form_version,
            consent_text,
            proof: self.proof,
            manifest_id: self.manifest_id,
            ip_digest: self.ip_digest,
            user_agent_digest: self.user_agent_digest,
            source_url_digest: self.source_url_digest,
            actor: self.actor,
        }
    }

    pub fn into_event(self, consent_text: Option<String>, leaf_index: Option<i64>) -> Result<ConsentEvent> {
        Ok(ConsentEvent {
            leaf_index,
            purpose: self.purpose,
            action: self.action,
            basis: self.basis,
            requires_confirmation: self.requires_confirmation != 0,
            redacted: self.evidence_salt.is_none(),
            evidence: Evidence {
                method: self.method,
                form_id: self.form_id,
                form_version: self.form_version,
                consent_text,
                ip: self.ip,
                user_agent: self.user_agent,
                source_url: self.source_url,
                manifest_id: self.manifest_id,
                proof: self.proof,
            },
            consent_text_sha256: self.consent_text_sha256,
            actor: self.actor,
            occurred_at: utc(self.occurred_at),
            hash: self.hash,
            id: self.id,
            seq: self.seq,
        })
    }
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewConsentEvent {
    pub contact_id: ContactId,
    /// The contact's address key when the caller holds it; read from the contact if not.
    pub email_key: Option<String>,
    pub purpose: Purpose,
    pub action: ConsentAction,
    pub basis: ConsentBasis,
    pub requires_confirmation: bool,
    pub evidence: Evidence,
    pub actor: String,
}

/// Appends an event. Call inside a write transaction. Nothing here is shared by every
/// writer (no lock, no chain head): the event waits in `consent_unsequenced` until the
/// sequencer gives it its leaf (see [`super::ledger`]).
pub fn append_event(conn: &mut DbConnection, new: NewConsentEvent) -> Result<ConsentEventRow> {
    let mut rows = append_events(conn, vec![new])?;
    rows.pop().ok_or_else(|| crate::error::Error::internal("no event was appended"))
}

/// Appends events in order: event numbers, the addresses for their digests and the texts
/// in one query each, one multi-row insert per 500 events.
pub fn append_events(conn: &mut DbConnection, events: Vec<NewConsentEvent>) -> Result<Vec<ConsentEventRow>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let seqs = next_seqs(conn, events.len())?;
    let unknown: Vec<ContactId> = events.iter().filter(|e| e.email_key.is_none()).map(|e| e.contact_id).collect();
    let addresses = match unknown.is_empty() {
        true => std::collections::HashMap::new(),
        false => contact_addresses(conn, &unknown)?,
    };
    let mut texts: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let occurred_at = now();
    let mut rows = Vec::with_capacity(events.len());
    for (new, seq) in events.into_iter().zip(seqs) {
        let consent_text_sha256 = match &new.evidence.consent_text {
            Some(text) => Some(match texts.get(text) {
                Some(sha) => sha.clone(),
                None => {
                    let sha = insert_consent_text(conn, text)?;
                    texts.insert(text.clone(), sha.clone());
                    sha
                }
            }),
            None => None,
        };
        let salt = crate::domain::consent::hex(&rand_bytes());
        let evidence = new.evidence;
        let consent_text = evidence.consent_text;
        let mut row = ConsentEventRow {
            id: uuid::Uuid::now_v7().to_string(),
            seq,
            email_digest: personal_digest(
                &salt,
                new.email_key.as_deref().or_else(|| addresses.get(&new.contact_id).map(String::as_str)),
            ),
            contact_id: new.contact_id,
            purpose: new.purpose,
            action: new.action,
            basis: new.basis,
            requires_confirmation: i32::from(new.requires_confirmation),
            method: evidence.method,
            form_id: evidence.form_id,
            form_version: evidence.form_version,
            consent_text_sha256,
            actor: new.actor,
            ip_digest: personal_digest(&salt, evidence.ip.as_deref()),
            user_agent_digest: personal_digest(&salt, evidence.user_agent.as_deref()),
            source_url_digest: personal_digest(&salt, evidence.source_url.as_deref()),
            ip: evidence.ip,
            user_agent: evidence.user_agent,
            source_url: evidence.source_url,
            evidence_salt: Some(salt),
            occurred_at,
            // The hash chain's link, kept by the events recorded before the tree.
            prev_hash: String::new(),
            hash: String::new(),
            manifest_id: evidence.manifest_id,
            proof: evidence.proof,
        };
        row.hash = crate::domain::consent::hex(&row.leaf(consent_text.as_deref()).hash());
        rows.push(row);
    }
    let waiting: Vec<(String, i64)> = rows.iter().map(|row| (row.id.clone(), row.seq)).collect();
    for chunk in rows.chunks(500) {
        match (&mut *conn, chunk) {
            // One row (a signup's usual case) is a statement PostgreSQL keeps prepared; a
            // batch's text depends on its length, so it is parsed each time.
            (conn, [row]) => diesel::insert_into(consent_events::table).values(row).execute(conn)?,
            (DbConnection::Postgres(pg), _) => diesel::insert_into(consent_events::table).values(chunk).execute(pg)?,
            (DbConnection::Sqlite(sqlite), _) => {
                diesel::insert_into(consent_events::table).values(chunk).execute(sqlite)?
            }
        };
    }
    super::ledger::insert_unsequenced(conn, &waiting)?;
    Ok(rows)
}

diesel::define_sql_function! {
    /// PostgreSQL's next value of a sequence.
    fn nextval(sequence: diesel::sql_types::Text) -> diesel::sql_types::BigInt;
}

/// Numbers for `count` new events. On PostgreSQL a sequence, which no transaction waits
/// on; on SQLite, whose one writer runs every write in turn, the next after the highest.
fn next_seqs(conn: &mut DbConnection, count: usize) -> Result<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Next {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        seq: i64,
    }
    match conn {
        // One number (a signup's usual case) through a statement PostgreSQL keeps prepared.
        DbConnection::Postgres(pg) if count == 1 => {
            Ok(vec![diesel::select(nextval("consent_event_seq")).get_result(pg)?])
        }
        DbConnection::Postgres(pg) => {
            let query = format!("SELECT nextval('consent_event_seq') AS seq FROM generate_series(1, {count})");
            let mut seqs: Vec<i64> = diesel::sql_query(query).load::<Next>(pg)?.into_iter().map(|n| n.seq).collect();
            seqs.sort_unstable();
            Ok(seqs)
        }
        DbConnection::Sqlite(sqlite) => {
            let highest: Option<i64> =
                consent_events::table.select(diesel::dsl::max(consent_events::seq)).first(sqlite)?;
            let first = highest.unwrap_or(0) + 1;
            Ok((first..).take(count).collect())
        }
    }
}

/// The normalised addresses of these contacts, by id.
fn contact_addresses(
    conn: &mut DbConnection,
    contact_ids: &[ContactId],
) -> Result<std::collections::HashMap<ContactId, String>> {
    use super::schema::contacts;
    let mut ids: Vec<ContactId> = contact_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut found = std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        found.extend(
            contacts::table.filter(contacts::id.eq_any(chunk)).select((contacts::id, contacts::email_key)).load::<(
                ContactId,
                String,
            )>(
                conn
            )?,
        );
    }
    Ok(found)
}

fn rand_bytes() -> [u8; 16] {
    rand::random()
}

/// Stores a consent text once; answers its SHA-256.
fn insert_consent_text(conn: &mut DbConnection, text: &str) -> Result<String> {
    let sha256 = sha256_hex(text.as_bytes());
    let known: i64 = consent_texts::table.filter(consent_texts::sha256.eq(&sha256)).count().get_result(conn)?;
    if known == 0 {
        // Two writers may bring the same new text at once (no lock orders them any more).
        let values = (consent_texts::sha256.eq(&sha256), consent_texts::text.eq(text));
        match conn {
            DbConnection::Postgres(pg) => {
                diesel::insert_into(consent_texts::table).values(values).on_conflict_do_nothing().execute(pg)?
            }
            DbConnection::Sqlite(sqlite) => {
                diesel::insert_into(consent_texts::table).values(values).on_conflict_do_nothing().execute(sqlite)?
            }
        };
    }
    Ok(sha256)
}

/// A contact's events in ledger order, with the consent texts.
pub fn list_contact_events(conn: &mut DbConnection, contact_id: ContactId) -> Result<Vec<ConsentEvent>> {
    let rows: Vec<(ConsentEventRow, Option<String>, Option<i64>)> = consent_events::table
        .left_join(consent_texts::table.on(consent_texts::sha256.nullable().eq(consent_events::consent_text_sha256)))
        .left_join(consent_leaves::table.on(consent_leaves::event_id.eq(consent_events::id)))
        .filter(consent_events::contact_id.eq(contact_id))
        .order(consent_events::seq.asc())
        .select((ConsentEventRow::as_select(), consent_texts::text.nullable(), consent_leaves::leaf_index.nullable()))
        .load(conn)?;
    rows.into_iter().map(|(row, text, leaf_index)| row.into_event(text, leaf_index)).collect()
}

/// A contact's stored events in order, with their consent texts (for its proof bundle).
pub fn list_contact_event_rows(
    conn: &mut DbConnection,
    contact_id: ContactId,
) -> Result<Vec<(ConsentEventRow, Option<String>)>> {
    Ok(consent_events::table
        .left_join(consent_texts::table.on(consent_texts::sha256.nullable().eq(consent_events::consent_text_sha256)))
        .filter(consent_events::contact_id.eq(contact_id))
        .order(consent_events::seq.asc())
        .select((ConsentEventRow::as_select(), consent_texts::text.nullable()))
        .load(conn)?)
}

/// Erases the personal fields of a contact's events (and the salts that could test a
/// guess against the digests); the digests stay, so the chain still verifies.
pub fn redact_contact_events(conn: &mut DbConnection, contact_id: ContactId) -> Result<usize> {
    Ok(diesel::update(consent_events::table.filter(consent_events::contact_id.eq(contact_id)))
        .set(redaction())
        .execute(conn)?)
}

/// Redacts the personal fields of the given events.
pub fn redact_events(conn: &mut DbConnection, ids: &[String]) -> Result<usize> {
    Ok(diesel::update(consent_events::table.filter(consent_events::id.eq_any(ids))).set(redaction()).execute(conn)?)
}

#[allow(clippy::type_complexity)]
fn redaction() -> (
    diesel::dsl::Eq<consent_events::ip, Option<String>>,
    diesel::dsl::Eq<consent_events::user_agent, Option<String>>,
    diesel::dsl::Eq<consent_events::source_url, Option<String>>,
    diesel::dsl::Eq<consent_events::evidence_salt, Option<String>>,
) {
    (
        consent_events::ip.eq(None),
        consent_events::user_agent.eq(None),
        consent_events::source_url.eq(None),
        consent_events::evidence_salt.eq(None),
    )
}

pub fn is_suppressed(conn: &mut DbConnection, email_hash: &str) -> Result<bool> {
    let count: i64 = suppressions::table.filter(suppressions::email_hash.eq(email_hash)).count().get_result(conn)?;
    Ok(count > 0)
}

/// Changes to list consents in a period: (action, requires_confirmation, method, time).
pub fn list_changes_between(
    conn: &mut DbConnection,
    from: chrono::NaiveDateTime,
    to: chrono::NaiveDateTime,
) -> Result<Vec<(String, i32, String, chrono::NaiveDateTime)>> {
    Ok(consent_events::table
        .filter(consent_events::purpose.like("list:%"))
        .filter(consent_events::occurred_at.ge(from))
        .filter(consent_events::occurred_at.lt(to))
        .select((
            consent_events::action,
            consent_events::requires_confirmation,
            consent_events::method,
            consent_events::occurred_at,
        ))
        .load(conn)?)
}

/// Of these provenance manifests, those whose consent text named us (the sender).
pub fn manifests_naming_us(conn: &mut DbConnection, ids: &[String]) -> Result<std::collections::HashSet<String>> {
    use super::schema::provenance_manifests;
    if ids.is_empty() {
        return Ok(std::collections::HashSet::new());
    }
    Ok(provenance_manifests::table
        .filter(provenance_manifests::id.eq_any(ids))
        .filter(provenance_manifests::brand_named.eq(true))
        .select(provenance_manifests::id)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// Which of these keyed hashes are suppressed.
pub fn suppressed_among(conn: &mut DbConnection, email_hashes: &[String]) -> Result<std::collections::HashSet<String>> {
    let mut found = std::collections::HashSet::new();
    for chunk in email_hashes.chunks(500) {
        found.extend(
            suppressions::table
                .filter(suppressions::email_hash.eq_any(chunk))
                .select(suppressions::email_hash)
                .load::<String>(conn)?,
        );
    }
    Ok(found)
}

pub fn insert_suppression(conn: &mut DbConnection, email_hash: &str, reason: &str) -> Result<()> {
    if !is_suppressed(conn, email_hash)? {
        diesel::insert_into(suppressions::table)
            .values((
                suppressions::email_hash.eq(email_hash),
                suppressions::reason.eq(reason),
                suppressions::created_at.eq(now()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn delete_suppression(conn: &mut DbConnection, email_hash: &str) -> Result<usize> {
    Ok(diesel::delete(suppressions::table.filter(suppressions::email_hash.eq(email_hash))).execute(conn)?)
}

pub fn count_form_events(conn: &mut DbConnection, form_id: FormId) -> Result<i64> {
    Ok(consent_events::table.filter(consent_events::form_id.eq(form_id)).count().get_result(conn)?)
}

/// Only what deriving the current consent needs, for scans over many contacts: six
/// columns instead of the whole evidence.
pub fn list_consent_changes_for_contacts(
    conn: &mut DbConnection,
    contact_ids: &[ContactId],
) -> Result<std::collections::HashMap<ContactId, Vec<ConsentEvent>>> {
    type Change = (ContactId, Purpose, ConsentAction, ConsentBasis, i32, chrono::NaiveDateTime, Option<String>);
    let rows: Vec<Change> = consent_events::table
        .filter(consent_events::contact_id.eq_any(contact_ids))
        .order((consent_events::contact_id.asc(), consent_events::seq.asc()))
        .select((
            consent_events::contact_id,
            consent_events::purpose,
            consent_events::action,
            consent_events::basis,
            consent_events::requires_confirmation,
            consent_events::occurred_at,
            consent_events::manifest_id,
        ))
        .load(conn)?;
    let mut grouped: std::collections::HashMap<ContactId, Vec<ConsentEvent>> = std::collections::HashMap::new();
    for (contact_id, purpose, action, basis, requires_confirmation, occurred_at, manifest_id) in rows {
        let event = ConsentEvent {
            id: String::new(),
            seq: 0,
            leaf_index: None,
            purpose,
            action,
            basis,
            requires_confirmation: requires_confirmation != 0,
            evidence: Evidence { manifest_id, ..Evidence::default() },
            consent_text_sha256: None,
            actor: String::new(),
            occurred_at: utc(occurred_at),
            hash: String::new(),
            redacted: false,
        };
        grouped.entry(contact_id).or_default().push(event);
    }
    Ok(grouped)
}

/// The form of a contact's latest consent event that came through one: the form whose
/// brand speaks to them.
pub fn find_latest_form_of_contact(conn: &mut DbConnection, id: ContactId) -> QueryResult<Option<FormId>> {
    let found: Option<Option<String>> = consent_events::table
        .filter(consent_events::contact_id.eq(id))
        .filter(consent_events::form_id.is_not_null())
        .order(consent_events::seq.desc())
        .select(consent_events::form_id)
        .first(conn)
        .optional()?;
    Ok(found.flatten().and_then(|id| id.parse().ok()))
}
