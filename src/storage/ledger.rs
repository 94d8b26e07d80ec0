//! The verifiable log over the consent events: leaves in sequence order, the roots of the
//! tree's perfect subtrees, the events waiting for a leaf, and the signed checkpoints.

use std::collections::HashMap;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use super::consent::ConsentEventRow;
use super::schema::{
    consent_checkpoints, consent_events, consent_leaves, consent_texts, consent_tree_nodes, consent_unsequenced,
};
use super::{DbConnection, now};
use crate::domain::ledger::merkle::{Hash, Subtrees};
use crate::error::{Error, Result};

/// Rows per multi-row insert (well under both backends' bind limits). Multi-row inserts
/// are written per backend: diesel's multi-backend connection does not batch them.
const CHUNK: usize = 500;

pub fn insert_unsequenced(conn: &mut DbConnection, events: &[(String, i64)]) -> Result<()> {
    if let [(id, seq)] = events {
        // One row is a statement PostgreSQL keeps prepared (see `consent::append_events`).
        let row = (consent_unsequenced::event_id.eq(id), consent_unsequenced::seq.eq(seq));
        diesel::insert_into(consent_unsequenced::table).values(row).execute(conn)?;
        return Ok(());
    }
    for chunk in events.chunks(CHUNK) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(id, seq)| (consent_unsequenced::event_id.eq(id), consent_unsequenced::seq.eq(seq)))
            .collect();
        match conn {
            DbConnection::Postgres(pg) => diesel::insert_into(consent_unsequenced::table).values(values).execute(pg)?,
            DbConnection::Sqlite(sqlite) => {
                diesel::insert_into(consent_unsequenced::table).values(values).execute(sqlite)?
            }
        };
    }
    Ok(())
}

/// Runs `work` on one snapshot of the database, so that a walk over the whole log is not
/// confused by leaves the sequencer appends meanwhile: a read-only repeatable-read
/// transaction on PostgreSQL (without parallel workers: the walk's batches are small, and
/// the cores are better spent checking them), a read transaction on SQLite.
pub fn in_snapshot<T>(conn: &mut DbConnection, work: impl FnOnce(&mut DbConnection) -> Result<T>) -> Result<T> {
    conn.transaction(|conn| {
        if let DbConnection::Postgres(pg) = conn {
            pg.batch_execute(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL max_parallel_workers_per_gather = 0",
            )?;
        }
        work(conn)
    })
}

/// Taken by the sequencer for the rest of its transaction, on PostgreSQL: one sequencer at
/// a time across instances, and no event writer ever waits on it. Answers false when
/// another instance holds it. (SQLite has one writer anyway.)
pub fn try_lock_sequencer(conn: &mut DbConnection) -> Result<bool> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    match conn {
        DbConnection::Postgres(pg) => {
            let row: Locked =
                diesel::sql_query("SELECT pg_try_advisory_xact_lock(7366326) AS locked").get_result(pg)?;
            Ok(row.locked)
        }
        DbConnection::Sqlite(_) => Ok(true),
    }
}

/// The events waiting for a leaf, oldest event number first, with their consent texts.
pub fn list_unsequenced(conn: &mut DbConnection, limit: i64) -> Result<Vec<(ConsentEventRow, Option<String>)>> {
    Ok(consent_unsequenced::table
        .inner_join(consent_events::table.on(consent_events::id.eq(consent_unsequenced::event_id)))
        .left_join(consent_texts::table.on(consent_texts::sha256.nullable().eq(consent_events::consent_text_sha256)))
        .order(consent_unsequenced::seq.asc())
        .limit(limit)
        .select((ConsentEventRow::as_select(), consent_texts::text.nullable()))
        .load(conn)?)
}

pub fn count_unsequenced(conn: &mut DbConnection) -> Result<i64> {
    Ok(consent_unsequenced::table.count().get_result(conn)?)
}

pub fn delete_unsequenced(conn: &mut DbConnection, event_ids: &[String]) -> Result<()> {
    for chunk in event_ids.chunks(CHUNK) {
        diesel::delete(consent_unsequenced::table.filter(consent_unsequenced::event_id.eq_any(chunk))).execute(conn)?;
    }
    Ok(())
}

/// How many leaves the tree has.
pub fn tree_size(conn: &mut DbConnection) -> Result<u64> {
    let highest: Option<i64> =
        consent_leaves::table.select(diesel::dsl::max(consent_leaves::leaf_index)).first(conn)?;
    Ok(highest.map_or(0, |index| u64::try_from(index + 1).unwrap_or(0)))
}

pub fn insert_leaves(conn: &mut DbConnection, leaves: &[(i64, String, Hash)]) -> Result<()> {
    for chunk in leaves.chunks(CHUNK) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(index, event_id, hash)| {
                (
                    consent_leaves::leaf_index.eq(index),
                    consent_leaves::event_id.eq(event_id),
                    consent_leaves::leaf_hash.eq(hash.as_slice()),
                )
            })
            .collect();
        match conn {
            DbConnection::Postgres(pg) => diesel::insert_into(consent_leaves::table).values(values).execute(pg)?,
            DbConnection::Sqlite(sqlite) => {
                diesel::insert_into(consent_leaves::table).values(values).execute(sqlite)?
            }
        };
    }
    Ok(())
}

pub fn insert_nodes(conn: &mut DbConnection, nodes: &[(u32, u64, Hash)]) -> Result<()> {
    for chunk in nodes.chunks(CHUNK) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(level, index, hash)| {
                (
                    consent_tree_nodes::level.eq(i32::try_from(*level).unwrap_or(i32::MAX)),
                    consent_tree_nodes::node_index.eq(i64::try_from(*index).unwrap_or(i64::MAX)),
                    consent_tree_nodes::hash.eq(hash.as_slice()),
                )
            })
            .collect();
        match conn {
            DbConnection::Postgres(pg) => diesel::insert_into(consent_tree_nodes::table).values(values).execute(pg)?,
            DbConnection::Sqlite(sqlite) => {
                diesel::insert_into(consent_tree_nodes::table).values(values).execute(sqlite)?
            }
        };
    }
    Ok(())
}

fn to_hash(bytes: &[u8]) -> Result<Hash> {
    Hash::try_from(bytes).map_err(|_| Error::internal("a stored tree hash is not 32 bytes"))
}

/// The stored tree, read one perfect subtree at a time (each read remembered for the
/// rest of the proof).
pub struct StoredTree<'a> {
    conn: &'a mut DbConnection,
    seen: HashMap<(u32, u64), Hash>,
}

impl<'a> StoredTree<'a> {
    pub fn new(conn: &'a mut DbConnection) -> Self {
        Self { conn, seen: HashMap::new() }
    }
}

impl Subtrees for StoredTree<'_> {
    type Error = Error;

    fn perfect(&mut self, level: u32, index: u64) -> Result<Hash> {
        if let Some(hash) = self.seen.get(&(level, index)) {
            return Ok(*hash);
        }
        let position = i64::try_from(index).map_err(Error::internal)?;
        let stored: Option<Vec<u8>> = if level == 0 {
            consent_leaves::table.find(position).select(consent_leaves::leaf_hash).first(self.conn).optional()?
        } else {
            let level = i32::try_from(level).map_err(Error::internal)?;
            consent_tree_nodes::table
                .find((level, position))
                .select(consent_tree_nodes::hash)
                .first(self.conn)
                .optional()?
        };
        let hash = to_hash(
            &stored.ok_or_else(|| Error::internal(format!("the tree has no node at level {level}, index {index}")))?,
        )?;
        self.seen.insert((level, index), hash);
        Ok(hash)
    }
}

/// A signed checkpoint as kept.
#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub tree_size: i64,
    pub root_hash: Vec<u8>,
    pub note: String,
}

pub fn insert_checkpoint(conn: &mut DbConnection, size: u64, root: &Hash, note: &str) -> Result<()> {
    diesel::insert_into(consent_checkpoints::table)
        .values((
            consent_checkpoints::tree_size.eq(i64::try_from(size).map_err(Error::internal)?),
            consent_checkpoints::root_hash.eq(root.as_slice()),
            consent_checkpoints::note.eq(note),
            consent_checkpoints::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn latest_checkpoint(conn: &mut DbConnection) -> Result<Option<CheckpointRow>> {
    Ok(consent_checkpoints::table
        .order(consent_checkpoints::tree_size.desc())
        .select((consent_checkpoints::tree_size, consent_checkpoints::root_hash, consent_checkpoints::note))
        .first::<(i64, Vec<u8>, String)>(conn)
        .optional()?
        .map(|(tree_size, root_hash, note)| CheckpointRow { tree_size, root_hash, note }))
}

/// Leaves from `from_index` on, in order: (index, event id, leaf hash).
pub fn list_leaves_from(conn: &mut DbConnection, from_index: i64, limit: i64) -> Result<Vec<(i64, String, Vec<u8>)>> {
    Ok(consent_leaves::table
        .filter(consent_leaves::leaf_index.ge(from_index))
        .order(consent_leaves::leaf_index.asc())
        .limit(limit)
        .select((consent_leaves::leaf_index, consent_leaves::event_id, consent_leaves::leaf_hash))
        .load(conn)?)
}

/// A leaf in the order of the tree, with its event and consent text as stored (`None`:
/// the event was deleted).
pub type LeafWithEvent = (i64, String, Vec<u8>, Option<StoredEvent>);

/// `limit` leaves from `from_index` on, each with its event and text, in one query (a
/// leaf whose event was deleted comes with none). A batch holding an event whose fields
/// cannot be read is read again event by event, so that the answer names it.
pub fn list_leaves_with_events(conn: &mut DbConnection, from_index: i64, limit: i64) -> Result<Vec<LeafWithEvent>> {
    let joined = consent_leaves::table
        .left_join(consent_events::table.on(consent_events::id.eq(consent_leaves::event_id)))
        .left_join(consent_texts::table.on(consent_texts::sha256.nullable().eq(consent_events::consent_text_sha256)))
        .filter(consent_leaves::leaf_index.ge(from_index))
        .order(consent_leaves::leaf_index.asc())
        .limit(limit)
        .select((
            consent_leaves::leaf_index,
            consent_leaves::event_id,
            consent_leaves::leaf_hash,
            consent_events::all_columns.nullable(),
            consent_texts::text.nullable(),
        ))
        .load::<(i64, String, Vec<u8>, Option<ConsentEventRow>, Option<String>)>(conn);
    match joined {
        Ok(rows) => Ok(rows
            .into_iter()
            .map(|(index, id, hash, event, text)| (index, id, hash, event.map(|row| Ok((row, text)))))
            .collect()),
        Err(diesel::result::Error::DeserializationError(_)) => {
            let leaves = list_leaves_from(conn, from_index, limit)?;
            let ids: Vec<String> = leaves.iter().map(|(_, id, _)| id.clone()).collect();
            let mut by_id = find_events_with_texts(conn, &ids)?;
            Ok(leaves
                .into_iter()
                .map(|(index, id, hash)| {
                    let event = by_id.remove(&id);
                    (index, id, hash, event)
                })
                .collect())
        }
        Err(error) => Err(error.into()),
    }
}

/// An event with its consent text, or why its stored fields cannot be read.
pub type StoredEvent = std::result::Result<(ConsentEventRow, Option<String>), String>;

/// These events with their consent texts, by id. An event whose stored fields cannot be
/// read is answered as the error naming it.
pub fn find_events_with_texts(conn: &mut DbConnection, ids: &[String]) -> Result<HashMap<String, StoredEvent>> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let query = |conn: &mut DbConnection, ids: &[String]| {
            consent_events::table
                .left_join(
                    consent_texts::table.on(consent_texts::sha256.nullable().eq(consent_events::consent_text_sha256)),
                )
                .filter(consent_events::id.eq_any(ids))
                .select((ConsentEventRow::as_select(), consent_texts::text.nullable()))
                .load::<(ConsentEventRow, Option<String>)>(conn)
        };
        match query(conn, chunk) {
            Ok(rows) => found.extend(rows.into_iter().map(|(row, text)| (row.id.clone(), Ok((row, text))))),
            // One unreadable row fails the whole read: read them one by one to name it.
            Err(diesel::result::Error::DeserializationError(_)) => {
                for id in chunk {
                    match query(conn, std::slice::from_ref(id)) {
                        Ok(rows) => found.extend(rows.into_iter().map(|(row, text)| (row.id.clone(), Ok((row, text))))),
                        Err(diesel::result::Error::DeserializationError(error)) => {
                            found.insert(id.clone(), Err(error.to_string()));
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(found)
}

pub fn count_events(conn: &mut DbConnection) -> Result<i64> {
    Ok(consent_events::table.count().get_result(conn)?)
}

/// An event that is neither in the tree nor waiting for its leaf, given that the tree's
/// `leaves` leaves each have their own event (the verify walk checked that, and a leaf's
/// event id is unique). The events are counted against those leaves and the waiting
/// events that exist and have no leaf: equal counts mean there is none, and only when
/// they differ is the event searched for, to name it. (A search over every event is an
/// anti-join that takes PostgreSQL seconds over a million; the counts take a fraction.)
pub fn find_event_outside_log(conn: &mut DbConnection, leaves: u64) -> Result<Option<String>> {
    use diesel::dsl::{exists, not};
    let events: i64 = consent_events::table.count().get_result(conn)?;
    let event = consent_events::table.filter(consent_events::id.eq(consent_unsequenced::event_id));
    let leaf = consent_leaves::table.filter(consent_leaves::event_id.eq(consent_unsequenced::event_id));
    let waiting: i64 =
        consent_unsequenced::table.filter(exists(event)).filter(not(exists(leaf))).count().get_result(conn)?;
    let accounted = leaves.saturating_add(u64::try_from(waiting).unwrap_or(0));
    if u64::try_from(events).is_ok_and(|events| events == accounted) {
        return Ok(None);
    }
    // NOT EXISTS, which both databases run as an anti-join on the event_id indexes (a
    // `NOT IN` over a million leaves is quadratic on PostgreSQL).
    let in_tree = consent_leaves::table.filter(consent_leaves::event_id.eq(consent_events::id));
    let waiting = consent_unsequenced::table.filter(consent_unsequenced::event_id.eq(consent_events::id));
    Ok(consent_events::table
        .filter(not(exists(in_tree)))
        .filter(not(exists(waiting)))
        .select(consent_events::id)
        .first(conn)
        .optional()?)
}

/// The leaf index of each of these events that has one.
pub fn leaf_indexes(conn: &mut DbConnection, event_ids: &[String]) -> Result<HashMap<String, i64>> {
    let mut found = HashMap::new();
    for chunk in event_ids.chunks(CHUNK) {
        found.extend(
            consent_leaves::table
                .filter(consent_leaves::event_id.eq_any(chunk))
                .select((consent_leaves::event_id, consent_leaves::leaf_index))
                .load::<(String, i64)>(conn)?,
        );
    }
    Ok(found)
}
