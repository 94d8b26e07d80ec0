//! Verification: the whole log recomputed from the stored rows and texts against the
//! latest and the kept checkpoints; a proof bundle checked offline.

use base64::Engine as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;

use super::{BUNDLE_FORMAT, ProofBundle, VERIFY_BATCH, stored_verifier};
use crate::domain::consent::personal_digest;
use crate::domain::ledger::merkle::{CompactRange, Hash};
use crate::domain::ledger::note::{Checkpoint, NoteVerifier, split_notes};
use crate::domain::ledger::{Leaf, merkle};
use crate::error::{Error, Result};
use crate::storage::consent::ConsentEventRow;
use crate::storage::ledger::LeafWithEvent;
use crate::storage::{Db, DbConnection, ledger as tree};

/// The outcome of checking the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerReport {
    pub events_checked: u64,
    /// Events recorded and waiting for their leaf (a second at most, normally).
    pub events_waiting: u64,
    /// The size of the latest signed checkpoint.
    pub checkpoint_size: Option<u64>,
    /// Checkpoints kept elsewhere that the log was proven to extend.
    pub kept_checkpoints_checked: usize,
    pub first_mismatch: Option<LedgerMismatch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerMismatch {
    pub leaf_index: Option<u64>,
    pub event_id: Option<String>,
    pub reason: String,
}

impl LedgerMismatch {
    fn of(leaf_index: Option<u64>, event_id: Option<&str>, reason: impl Into<String>) -> Self {
        Self { leaf_index, event_id: event_id.map(str::to_owned), reason: reason.into() }
    }
}

/// A checkpoint whose root the walk compares when it reaches the checkpoint's size.
pub(super) struct Target {
    pub(super) what: String,
    pub(super) checkpoint: Checkpoint,
}

/// Recomputes every leaf from the stored events and texts, rebuilds the tree, and checks
/// it against the latest signed checkpoint and against each checkpoint in `kept` (signed
/// notes kept outside the database): the first thing that does not match is named.
pub async fn verify(db: &Db, kept: Vec<String>) -> Result<LedgerReport> {
    db.read(move |conn| tree::in_snapshot(conn, |conn| verify_in(conn, &kept))).await
}

pub(super) fn verify_in(conn: &mut DbConnection, kept: &[String]) -> Result<LedgerReport> {
    let mut report = LedgerReport {
        events_checked: 0,
        events_waiting: u64::try_from(tree::count_unsequenced(conn)?).unwrap_or(0),
        checkpoint_size: None,
        kept_checkpoints_checked: 0,
        first_mismatch: None,
    };
    let fail = |mut report: LedgerReport, mismatch: LedgerMismatch| {
        report.first_mismatch = Some(mismatch);
        Ok(report)
    };
    let latest = tree::latest_checkpoint(conn)?;
    let verifier = stored_verifier(conn)?;
    let mut targets = Vec::new();
    if let Some(latest) = &latest {
        let Some(verifier) = &verifier else {
            return fail(report, LedgerMismatch::of(None, None, "the database holds checkpoints but no verifier key"));
        };
        match Checkpoint::open(&latest.note, verifier) {
            Ok(checkpoint) if i64::try_from(checkpoint.size).ok() == Some(latest.tree_size) => {
                report.checkpoint_size = Some(checkpoint.size);
                targets.push(Target { what: "the latest checkpoint".to_owned(), checkpoint });
            }
            Ok(_) => {
                return fail(report, LedgerMismatch::of(None, None, "the latest checkpoint's note and row disagree"));
            }
            Err(error) => {
                return fail(
                    report,
                    LedgerMismatch::of(None, None, format!("the latest checkpoint does not verify: {error}")),
                );
            }
        }
    }
    for note in kept {
        let opened = match &verifier {
            Some(verifier) => Checkpoint::open(note, verifier),
            None => Err(crate::domain::Invalid::new("the database has no verifier key")),
        };
        match opened {
            Ok(checkpoint) => {
                targets.push(Target { what: format!("the kept checkpoint of size {}", checkpoint.size), checkpoint })
            }
            Err(error) => {
                let key = verifier.as_ref().map_or_else(String::new, |v| format!(" ({})", v.to_text()));
                return fail(
                    report,
                    LedgerMismatch::of(
                        None,
                        None,
                        format!(
                            "a kept checkpoint is not signed by this log's key{key}: the log was rebuilt or its key \
                             replaced ({error})"
                        ),
                    ),
                );
            }
        }
    }
    let signed = report.checkpoint_size.unwrap_or(0);
    // The walk recomputes leaves on a second thread while this one reads the next batch.
    let walked = std::thread::scope(|scope| -> Result<Walk> {
        let (batches, received) = std::sync::mpsc::sync_channel::<Vec<LeafWithEvent>>(2);
        let walker = scope.spawn(|| walk(received, signed, &targets));
        let mut from = 0;
        loop {
            let batch = tree::list_leaves_with_events(conn, from, VERIFY_BATCH)?;
            let Some(last) = batch.last().map(|(index, ..)| *index) else {
                break;
            };
            from = last + 1;
            if batches.send(batch).is_err() {
                break; // the walk stopped at a mismatch
            }
        }
        drop(batches);
        walker.join().map_err(|_| Error::internal("the ledger's walk panicked"))
    })?;
    report.events_checked = walked.range.size();
    if let Some(mismatch) = walked.mismatch {
        return fail(report, mismatch);
    }
    let range = walked.range;
    if let Some(short) = targets.iter().find(|t| t.checkpoint.size > range.size()) {
        return fail(
            report,
            LedgerMismatch::of(
                Some(range.size()),
                None,
                format!(
                    "the log holds {} leaves but {} covers {}: leaves were deleted",
                    range.size(),
                    short.what,
                    short.checkpoint.size
                ),
            ),
        );
    }
    report.kept_checkpoints_checked = kept.len();
    if let Some(outside) = tree::find_event_outside_log(conn, range.size())? {
        return fail(
            report,
            LedgerMismatch::of(None, Some(&outside), "this event is neither in the tree nor waiting for its leaf"),
        );
    }
    Ok(report)
}

/// How far the walk over the leaves came: the tree of every leaf that matched, and what
/// stopped it.
pub(super) struct Walk {
    pub(super) range: CompactRange,
    pub(super) mismatch: Option<LedgerMismatch>,
}

/// Recomputes each leaf from its stored event and text, in the tree's order, and checks
/// each target checkpoint's root as the tree reaches its size.
pub(super) fn walk(batches: std::sync::mpsc::Receiver<Vec<LeafWithEvent>>, signed: u64, targets: &[Target]) -> Walk {
    let mut range = CompactRange::default();
    let stop = |range: CompactRange, mismatch: LedgerMismatch| Walk { range, mismatch: Some(mismatch) };
    let check_targets = |range: &CompactRange| -> Option<LedgerMismatch> {
        targets.iter().filter(|t| t.checkpoint.size == range.size()).find(|t| t.checkpoint.root != range.root()).map(|t| {
            LedgerMismatch::of(
                None,
                None,
                format!(
                    "the first {} leaves do not have the root of {}: events before it were changed, removed or reordered",
                    range.size(),
                    t.what
                ),
            )
        })
    };
    if let Some(mismatch) = check_targets(&range) {
        return stop(range, mismatch);
    }
    for batch in batches {
        for (index, event_id, stored_hash, event) in batch {
            let next = range.size();
            if u64::try_from(index).ok() != Some(next) {
                return stop(range, LedgerMismatch::of(Some(next), None, format!("leaf {next} is missing")));
            }
            let at = Some(next);
            if next >= signed {
                return stop(
                    range,
                    LedgerMismatch::of(at, Some(&event_id), "this leaf is beyond the latest signed checkpoint"),
                );
            }
            let (row, text) = match event {
                None => {
                    return stop(range, LedgerMismatch::of(at, Some(&event_id), "the event of this leaf was deleted"));
                }
                Some(Err(error)) => {
                    return stop(
                        range,
                        LedgerMismatch::of(at, Some(&event_id), format!("the stored event cannot be read: {error}")),
                    );
                }
                Some(Ok(found)) => found,
            };
            if let Some(reason) = personal_mismatch(&row) {
                return stop(range, LedgerMismatch::of(at, Some(&event_id), reason));
            }
            let hash = row.into_leaf(text).hash();
            if stored_hash.as_slice() != hash.as_slice() {
                return stop(
                    range,
                    LedgerMismatch::of(
                        at,
                        Some(&event_id),
                        "the stored event no longer matches its leaf: its fields or its consent text were changed",
                    ),
                );
            }
            range.push(hash);
            if let Some(mismatch) = check_targets(&range) {
                return stop(range, mismatch);
            }
        }
    }
    Walk { range, mismatch: None }
}

/// Personal values still held must match the digests the leaf commits to.
pub(super) fn personal_mismatch(row: &ConsentEventRow) -> Option<String> {
    let personal = [
        ("ip", row.ip.as_deref(), &row.ip_digest),
        ("user_agent", row.user_agent.as_deref(), &row.user_agent_digest),
        ("source_url", row.source_url.as_deref(), &row.source_url_digest),
    ];
    for (name, value, digest) in personal {
        match (&row.evidence_salt, value) {
            (Some(salt), value) if &personal_digest(salt, value) != digest => {
                return Some(format!("its {name} does not match the digest its leaf holds"));
            }
            (None, Some(_)) => return Some(format!("its {name} is present although the event was erased")),
            _ => {}
        }
    }
    None
}

/// The checkpoints in a file kept outside the database (one or more signed notes).
pub fn read_kept_checkpoints(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::internal(format!("cannot read {}: {e}", path.display())))?;
    let notes = split_notes(&text);
    if notes.is_empty() {
        return Err(Error::internal(format!("{} holds no signed checkpoint", path.display())));
    }
    Ok(notes)
}

/// The outcome of checking a proof bundle offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    pub tree_size: u64,
    pub events_checked: usize,
    /// Every fault found (empty: the bundle proves what it says).
    pub problems: Vec<String>,
}

/// Checks a proof bundle with nothing but its own contents (and, when given, the verifier
/// key the caller trusts): the checkpoint's signature, each leaf's inclusion, that the
/// decoded fields are the leaf's, and the personal values against their digests.
pub fn verify_bundle(text: &str, trusted_key: Option<&str>) -> Result<BundleReport> {
    let bundle: ProofBundle =
        serde_json::from_str(text).map_err(|e| Error::BadRequest(format!("not a proof bundle: {e}")))?;
    let mut problems = Vec::new();
    if bundle.format != BUNDLE_FORMAT {
        problems.push(format!("format {:?} is not {BUNDLE_FORMAT}", bundle.format));
    }
    let key = trusted_key.unwrap_or(&bundle.verifier_key);
    if trusted_key.is_some_and(|k| k.trim() != bundle.verifier_key.trim()) {
        problems.push("the bundle names another verifier key than the one trusted".to_owned());
    }
    let verifier = NoteVerifier::parse(key).map_err(|e| Error::BadRequest(format!("verifier key: {e}")))?;
    let checkpoint = match Checkpoint::open(&bundle.checkpoint, &verifier) {
        Ok(checkpoint) => Some(checkpoint),
        Err(error) => {
            problems.push(format!("the checkpoint does not verify: {error}"));
            None
        }
    };
    if let Some(checkpoint) = &checkpoint
        && checkpoint.size != bundle.tree_size
    {
        problems.push(format!("tree_size {} is not the checkpoint's {}", bundle.tree_size, checkpoint.size));
    }
    for event in &bundle.events {
        let at = format!("leaf {}", event.leaf_index);
        let Ok(bytes) = STANDARD.decode(&event.leaf) else {
            problems.push(format!("{at}: the leaf is not base64"));
            continue;
        };
        match Leaf::parse(&bytes) {
            Ok(leaf) if leaf == event.fields => {}
            Ok(_) => problems.push(format!("{at}: the decoded fields are not the leaf's")),
            Err(error) => problems.push(format!("{at}: {error}")),
        }
        let proof: Option<Vec<Hash>> = event
            .inclusion_proof
            .iter()
            .map(|h| STANDARD.decode(h).ok().and_then(|h| Hash::try_from(h.as_slice()).ok()))
            .collect();
        match (proof, &checkpoint) {
            (None, _) => problems.push(format!("{at}: the inclusion proof holds a hash that is not base64 SHA-256")),
            (Some(proof), Some(checkpoint)) => {
                if !merkle::verify_inclusion(
                    &merkle::leaf_hash(&bytes),
                    event.leaf_index,
                    checkpoint.size,
                    &proof,
                    &checkpoint.root,
                ) {
                    problems.push(format!("{at}: the inclusion proof does not lead to the checkpoint's root"));
                }
            }
            (Some(_), None) => {}
        }
        if let Some(personal) = &event.personal {
            let fields = &event.fields;
            let checks = [
                ("email", personal.email.as_deref(), &fields.email_digest),
                ("ip", personal.ip.as_deref(), &fields.ip_digest),
                ("user_agent", personal.user_agent.as_deref(), &fields.user_agent_digest),
                ("source_url", personal.source_url.as_deref(), &fields.source_url_digest),
            ];
            for (name, value, digest) in checks {
                if value.is_some() && &personal_digest(&personal.salt, value) != digest {
                    problems.push(format!("{at}: its {name} does not match the digest in the leaf"));
                }
            }
        }
    }
    Ok(BundleReport { tree_size: bundle.tree_size, events_checked: bundle.events.len(), problems })
}
