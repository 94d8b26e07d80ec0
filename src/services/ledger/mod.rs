//! The consent ledger as a verifiable log: the key that signs its checkpoints, the
//! sequencer that gives committed events their leaves, proofs, a person's proof bundle,
//! and verification (of the whole log, and of a bundle offline).
//!
//! Events are written by whoever records them, in their own transactions, with nothing
//! shared by all writers. The sequencer (one at a time across instances) takes what has
//! committed, in event-number order, appends the leaves, stores the completed subtrees,
//! and signs a checkpoint, all in one transaction: a crash leaves either all of it or none.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::ContactId;
use crate::domain::consent::personal_digest;
use crate::domain::ledger::Leaf;
use crate::domain::ledger::merkle::{self, CompactRange, Hash, perfect_subtrees};
use crate::domain::ledger::note::{Checkpoint, NoteSigner, NoteVerifier, split_notes};
use crate::domain::partner::EventType;
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::storage::consent::ConsentEventRow;
use crate::storage::ledger::{self as tree, LeafWithEvent, StoredTree};
use crate::storage::{Db, DbConnection, contacts, secrets};

/// Events given their leaves in one sequencer transaction at most.
const SEQUENCE_BATCH: i64 = 5000;
/// Leaves read at a time by verification.
const VERIFY_BATCH: i64 = 5000;
/// Where the public half of the signing key is kept, so that every instance checks it
/// signs with the same key, and verification needs nothing but the database.
const VERIFIER_SECRET: &str = "ledger_verifier_key";

/// The key that signs checkpoints. Never in the database: from a setting, a file, or
/// generated on first start into the data folder (readable by its owner only).
#[derive(Clone, Debug)]
pub struct LedgerKey {
    signer: NoteSigner,
}

impl LedgerKey {
    pub fn load(settings: &Settings) -> Result<Self> {
        if let Some(text) = &settings.ledger_signing_key {
            let signer =
                NoteSigner::parse(text.expose()).map_err(|e| Error::internal(format!("ledger_signing_key: {e}")))?;
            return Ok(Self { signer });
        }
        let path = settings.ledger_signing_key_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let signer = NoteSigner::parse(&text)
                    .map_err(|e| Error::internal(format!("the ledger signing key {}: {e}", path.display())))?;
                Ok(Self { signer })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let signer = NoteSigner::new(&default_origin(&settings.base_url()), rand::random())
                    .map_err(|e| Error::internal(format!("the ledger's origin: {e}")))?;
                write_private(&path, &signer.to_private_text())?;
                tracing::info!(path = %path.display(), key = %signer.verifier().to_text(), "generated the ledger signing key");
                Ok(Self { signer })
            }
            Err(error) => {
                Err(Error::internal(format!("cannot read the ledger signing key {}: {error}", path.display())))
            }
        }
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// The checkpoints' origin line: the key's name.
    pub fn origin(&self) -> String {
        self.signer.verifier().name().to_owned()
    }
}

/// `host[:port]/consent` of the base URL: a schema-less URL, as C2SP origins are.
fn default_origin(base_url: &str) -> String {
    let without_scheme = base_url.split_once("://").map_or(base_url, |(_, rest)| rest);
    let origin = format!("{}/consent", without_scheme.trim_end_matches('/'));
    origin.chars().filter(|c| !c.is_whitespace() && *c != '+').collect()
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)
            .map_err(|e| Error::internal(format!("cannot create {}: {e}", folder.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| Error::internal(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::internal(format!("cannot write {}: {e}", path.display())))
}

/// Records the key's public half in the database on first start; afterwards refuses a
/// key that is not the one the log's checkpoints are signed with.
pub async fn register_key(db: &Db, key: &LedgerKey) -> Result<()> {
    let ours = key.verifier().to_text();
    let mine = ours.clone();
    let stored = db.read(move |conn| Ok(secrets::find_or_insert_secret(conn, VERIFIER_SECRET, || mine)?)).await?;
    if stored != ours {
        return Err(Error::internal(format!(
            "this instance's ledger signing key ({ours}) is not the key this database's checkpoints are signed with \
             ({stored}): give every instance the same key (ledger_signing_key_file or ledger_signing_key)"
        )));
    }
    Ok(())
}

/// The log's verifier key as the database records it.
pub fn stored_verifier(conn: &mut DbConnection) -> Result<Option<NoteVerifier>> {
    match secrets::find_secret(conn, VERIFIER_SECRET)? {
        Some(text) => NoteVerifier::parse(&text)
            .map(Some)
            .map_err(|e| Error::internal(format!("the stored ledger verifier key: {e}"))),
        None => Ok(None),
    }
}

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
    super::webhooks::emit(
        conn,
        EventType::ConsentCheckpoint,
        json!({"tree_size": checkpoint.size, "root_hash": STANDARD.encode(checkpoint.root), "checkpoint": note}),
    )?;
    Ok(Some(Sequenced { tree_size: checkpoint.size, note, full }))
}

/// Runs the sequencer every `interval` on every instance (one at a time does the work).
pub struct Sequencer {
    db: Db,
    key: LedgerKey,
    interval: Duration,
    checkpoint_file: Option<PathBuf>,
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
fn append_checkpoint(path: &Path, note: &str) {
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(format!("{note}\n").as_bytes()));
    if let Err(error) = written {
        tracing::error!(path = %path.display(), error = %error, "cannot append the checkpoint to the checkpoint file");
    }
}

/// The latest signed checkpoint, as published.
pub async fn latest_checkpoint(db: &Db) -> Result<Option<String>> {
    db.read(|conn| Ok(tree::latest_checkpoint(conn)?.map(|c| c.note))).await
}

/// The size of the latest checkpoint: proofs are given for trees up to it.
fn signed_size(conn: &mut DbConnection) -> Result<u64> {
    Ok(tree::latest_checkpoint(conn)?.and_then(|c| u64::try_from(c.tree_size).ok()).unwrap_or(0))
}

pub async fn inclusion_proof(db: &Db, leaf_index: u64, tree_size: u64) -> Result<Vec<Hash>> {
    db.read(move |conn| {
        let signed = signed_size(conn)?;
        if tree_size == 0 || tree_size > signed {
            return Err(Error::field(
                "tree_size",
                format!("must be between 1 and the latest checkpoint's size ({signed})"),
            ));
        }
        if leaf_index >= tree_size {
            return Err(Error::field("leaf_index", format!("must be less than tree_size ({tree_size})")));
        }
        merkle::inclusion_proof(&mut StoredTree::new(conn), leaf_index, tree_size)
    })
    .await
}

pub async fn consistency_proof(db: &Db, from: u64, to: u64) -> Result<Vec<Hash>> {
    db.read(move |conn| {
        let signed = signed_size(conn)?;
        if to > signed {
            return Err(Error::field("to", format!("must be at most the latest checkpoint's size ({signed})")));
        }
        if from > to {
            return Err(Error::field("from", format!("must be at most to ({to})")));
        }
        merkle::consistency_proof(&mut StoredTree::new(conn), from, to)
    })
    .await
}

/// A person's consent, proven: everything needed to check it without consento.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProofBundle {
    /// `consento-proof-bundle/1`.
    pub format: String,
    pub contact_id: String,
    /// The signed checkpoint (C2SP signed note) every inclusion proof leads to.
    pub checkpoint: String,
    /// The C2SP verifier key that signed it.
    pub verifier_key: String,
    pub tree_size: u64,
    pub events: Vec<BundleEvent>,
    /// Events recorded but not yet in a signed checkpoint (ask again in a second).
    pub pending_event_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleEvent {
    pub leaf_index: u64,
    /// Base64 of the exact leaf bytes.
    pub leaf: String,
    /// Base64 hashes, from the leaf upwards (RFC 9162 §2.1.3).
    pub inclusion_proof: Vec<String>,
    /// The leaf, decoded.
    pub fields: Leaf,
    /// The personal values the leaf holds as digests, with the salt that checks them;
    /// absent once erased.
    pub personal: Option<PersonalValues>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersonalValues {
    pub salt: String,
    /// The normalised address the digest was made of, if it is still the contact's.
    pub email: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub source_url: Option<String>,
}

pub const BUNDLE_FORMAT: &str = "consento-proof-bundle/1";

pub async fn contact_proof(db: &Db, id: ContactId) -> Result<ProofBundle> {
    db.read(move |conn| {
        let contact = contacts::find_contact(conn, &id.to_string())?;
        let rows = crate::storage::consent::list_contact_event_rows(conn, &id.to_string())?;
        if contact.is_none() && rows.is_empty() {
            return Err(Error::NotFound(format!("there is no contact {id}")));
        }
        let verifier = stored_verifier(conn)?.ok_or_else(|| Error::internal("the ledger has no verifier key yet"))?;
        let checkpoint = tree::latest_checkpoint(conn)?
            .ok_or_else(|| Error::Unavailable("the ledger has signed no checkpoint yet".into()))?;
        let size = u64::try_from(checkpoint.tree_size).map_err(Error::internal)?;
        let email = contact.map(|c| c.email.key());
        let ids: Vec<String> = rows.iter().map(|(row, _)| row.id.clone()).collect();
        let indexes = tree::leaf_indexes(conn, &ids)?;
        let mut events = Vec::new();
        let mut pending = Vec::new();
        let mut stored = StoredTree::new(conn);
        for (row, text) in rows {
            let Some(index) = indexes.get(&row.id).and_then(|i| u64::try_from(*i).ok()).filter(|i| *i < size) else {
                pending.push(row.id);
                continue;
            };
            let leaf = row.leaf(text.as_deref());
            let bytes = leaf.to_bytes();
            if merkle::Subtrees::perfect(&mut stored, 0, index)? != merkle::leaf_hash(&bytes) {
                return Err(Error::internal(format!(
                    "event {} no longer matches its leaf {index}: run `consento consent verify`",
                    row.id
                )));
            }
            let proof = merkle::inclusion_proof(&mut stored, index, size)?;
            events.push(BundleEvent {
                leaf_index: index,
                leaf: STANDARD.encode(&bytes),
                inclusion_proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
                personal: personal_values(&row, email.as_deref()),
                fields: leaf,
            });
        }
        Ok(ProofBundle {
            format: BUNDLE_FORMAT.to_owned(),
            contact_id: id.to_string(),
            checkpoint: checkpoint.note,
            verifier_key: verifier.to_text(),
            tree_size: size,
            events,
            pending_event_ids: pending,
        })
    })
    .await
}

fn personal_values(row: &ConsentEventRow, email: Option<&str>) -> Option<PersonalValues> {
    let salt = row.evidence_salt.clone()?;
    let email = email.filter(|e| personal_digest(&salt, Some(e)) == row.email_digest).map(str::to_owned);
    Some(PersonalValues {
        email,
        ip: row.ip.clone(),
        user_agent: row.user_agent.clone(),
        source_url: row.source_url.clone(),
        salt,
    })
}

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
struct Target {
    what: String,
    checkpoint: Checkpoint,
}

/// Recomputes every leaf from the stored events and texts, rebuilds the tree, and checks
/// it against the latest signed checkpoint and against each checkpoint in `kept` (signed
/// notes kept outside the database): the first thing that does not match is named.
pub async fn verify(db: &Db, kept: Vec<String>) -> Result<LedgerReport> {
    db.read(move |conn| tree::in_snapshot(conn, |conn| verify_in(conn, &kept))).await
}

fn verify_in(conn: &mut DbConnection, kept: &[String]) -> Result<LedgerReport> {
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
struct Walk {
    range: CompactRange,
    mismatch: Option<LedgerMismatch>,
}

/// Recomputes each leaf from its stored event and text, in the tree's order, and checks
/// each target checkpoint's root as the tree reaches its size.
fn walk(batches: std::sync::mpsc::Receiver<Vec<LeafWithEvent>>, signed: u64, targets: &[Target]) -> Walk {
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
fn personal_mismatch(row: &ConsentEventRow) -> Option<String> {
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
