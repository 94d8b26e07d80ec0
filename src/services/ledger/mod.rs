//! The consent ledger as a verifiable log: the key that signs its checkpoints, the
//! sequencer that gives committed events their leaves, proofs, a person's proof bundle,
//! and verification (of the whole log, and of a bundle offline).
//!
//! Events are written by whoever records them, in their own transactions, with nothing
//! shared by all writers. The sequencer (one at a time across instances) takes what has
//! committed, in event-number order, appends the leaves, stores the completed subtrees,
//! and signs a checkpoint, all in one transaction: a crash leaves either all of it or none.

mod proofs;
mod sequencer;
mod verify;

pub use proofs::*;
pub use sequencer::*;
pub use verify::*;

use std::io::Write;
use std::path::Path;

use crate::domain::ledger::note::{NoteSigner, NoteVerifier};
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::storage::{Db, DbConnection, secrets};

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
