//! The sequencer: one at a time across instances, it gives committed events their leaves in
//! order, stores the completed subtrees and signs a checkpoint, in one transaction.

use base64::Engine as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::{LedgerKey, SEQUENCE_BATCH};
use crate::domain::ledger::merkle;
use crate::domain::ledger::merkle::{CompactRange, perfect_subtrees};
use crate::domain::ledger::note::Checkpoint;
use crate::domain::partner::EventType;
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::storage::ledger::StoredTree;
use crate::storage::{Db, DbConnection, ledger as tree};

/// What one sequencer run did.
#[derive(Debug, Clone)]
pub struct Sequenced {
    pub tree_size: u64,
    pub note: String,
    /// It took a full batch: more may be waiting.
    pub full: bool,
}

/// Gives waiting events their leaves and signs a checkpoint of the grown tree (or of the
/// tree as it is, when none was signed yet). Call inside a write transaction.
pub fn sequence_in(conn: &mut DbConnection, key: &LedgerKey, limit: i64) -> Result<Option<Sequenced>> {
    if !tree::try_lock_sequencer(conn)? {
        return Ok(None);
    }
    let size = tree::tree_size(conn)?;
    let waiting = tree::list_unsequenced(conn, limit)?;
    let signed = tree::latest_checkpoint(conn)?;
    if waiting.is_empty() && signed.as_ref().is_some_and(|c| u64::try_from(c.tree_size).ok() == Some(size)) {
        return Ok(None);
    }
    let mut range = {
        let mut stored = StoredTree::new(conn);
        let mut peaks = Vec::new();
        for (level, index) in perfect_subtrees(size) {
            peaks.push(merkle::Subtrees::perfect(&mut stored, level, index)?);
        }
        CompactRange::from_peaks(size, peaks).ok_or_else(|| Error::internal("the tree's peaks do not add up"))?
    };
    let full = i64::try_from(waiting.len()).unwrap_or(i64::MAX) >= limit;
    let mut leaves = Vec::with_capacity(waiting.len());
    let mut nodes = Vec::new();
    let mut sequenced = Vec::with_capacity(waiting.len());
    for (row, text) in &waiting {
        let hash = row.leaf(text.as_deref()).hash();
        if row.prev_hash.is_empty() && row.hash != crate::domain::consent::hex(&hash) {
            tracing::warn!(event_id = %row.id, "a consent event changed between its writing and its leaf");
        }
        let index = i64::try_from(range.size()).map_err(Error::internal)?;
        leaves.push((index, row.id.clone(), hash));
        nodes.extend(range.push(hash));
        sequenced.push(row.id.clone());
    }
    tree::insert_leaves(conn, &leaves)?;
    tree::insert_nodes(conn, &nodes)?;
    tree::delete_unsequenced(conn, &sequenced)?;
    let checkpoint = Checkpoint { origin: key.origin(), size: range.size(), root: range.root() };
    let note = key.signer.sign(&checkpoint.body());
    tree::insert_checkpoint(conn, checkpoint.size, &checkpoint.root, &note)?;
    crate::services::webhooks::emit(
        conn,
        EventType::ConsentCheckpoint,
        json!({"tree_size": checkpoint.size, "root_hash": STANDARD.encode(checkpoint.root), "checkpoint": note}),
    )?;
    Ok(Some(Sequenced { tree_size: checkpoint.size, note, full }))
}

/// Runs the sequencer every `interval` on every instance (one at a time does the work).
pub struct Sequencer {
    pub(super) db: Db,
    pub(super) key: LedgerKey,
    pub(super) interval: Duration,
    pub(super) checkpoint_file: Option<PathBuf>,
}

impl Sequencer {
    pub fn new(db: Db, key: LedgerKey, settings: &Settings) -> Self {
        Self {
            db,
            key,
            interval: Duration::from_millis(settings.ledger_sequence_interval_ms.max(10)),
            checkpoint_file: settings.ledger_checkpoint_file.clone(),
        }
    }

    /// One run: answers whether more events may be waiting.
    pub async fn run_once(&self) -> Result<bool> {
        let key = self.key.clone();
        let Some(sequenced) = self.db.write(move |conn| sequence_in(conn, &key, SEQUENCE_BATCH)).await? else {
            return Ok(false);
        };
        if let Some(path) = &self.checkpoint_file {
            append_checkpoint(path, &sequenced.note);
        }
        Ok(sequenced.full)
    }

    pub async fn run(self) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            loop {
                match self.run_once().await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(error) => {
                        tracing::warn!(error = %error, "sequencing the consent ledger failed; trying again");
                        break;
                    }
                }
            }
        }
    }
}

/// Appends a checkpoint to the file kept for auditors; a failure is logged, not fatal (the
/// checkpoint is kept in the database and sent to webhook subscribers as well).
pub(super) fn append_checkpoint(path: &Path, note: &str) {
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(format!("{note}\n").as_bytes()));
    if let Err(error) = written {
        tracing::error!(path = %path.display(), error = %error, "cannot append the checkpoint to the checkpoint file");
    }
}
