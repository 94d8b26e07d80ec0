//! Proofs read from the stored tree: inclusion, consistency, and a person's proof bundle.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::stored_verifier;
use crate::domain::ContactId;
use crate::domain::consent::personal_digest;
use crate::domain::ledger::merkle::Hash;
use crate::domain::ledger::{Leaf, merkle};
use crate::error::{Error, Result};
use crate::storage::consent::ConsentEventRow;
use crate::storage::ledger::StoredTree;
use crate::storage::{Db, DbConnection, contacts, ledger as tree};

/// The latest signed checkpoint, as published.
pub async fn latest_checkpoint(db: &Db) -> Result<Option<String>> {
    db.read(|conn| Ok(tree::latest_checkpoint(conn)?.map(|c| c.note))).await
}

/// The size of the latest checkpoint: proofs are given for trees up to it.
pub(super) fn signed_size(conn: &mut DbConnection) -> Result<u64> {
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
        let contact = contacts::find_contact(conn, id)?;
        let rows = crate::storage::consent::list_contact_event_rows(conn, id)?;
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

pub(super) fn personal_values(row: &ConsentEventRow, email: Option<&str>) -> Option<PersonalValues> {
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
