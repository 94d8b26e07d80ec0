//! Provenance manifests: where a bought or rented list came from, on what terms, shown to
//! whom; every consent event an import records points at one.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::consent::Actor;
use crate::error::{Error, FieldError, Result};
use crate::storage;
use crate::storage::imports::ManifestRow;
use crate::storage::{Db, imports as repo};

/// Where a bought, rented or migrated list came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub id: String,
    pub supplier: String,
    pub collected_on: NaiveDate,
    /// The consent text the people saw.
    pub consent_text: String,
    /// Whether that text named us (the sender): without it, the consent is not ours.
    pub brand_named: bool,
    /// The partners listed where the people gave their consent.
    pub partners_shown: Vec<String>,
    pub sha256: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ManifestDraft {
    pub supplier: String,
    pub collected_on: NaiveDate,
    pub consent_text: String,
    pub brand_named: bool,
    #[serde(default)]
    pub partners_shown: Vec<String>,
}

pub(super) fn to_manifest(row: ManifestRow) -> Result<Manifest> {
    Ok(Manifest {
        collected_on: row.collected_on.parse().map_err(Error::internal)?,
        partners_shown: serde_json::from_str(&row.partners_shown).map_err(Error::internal)?,
        created_at: storage::models::utc(row.created_at),
        id: row.id,
        supplier: row.supplier,
        consent_text: row.consent_text,
        brand_named: row.brand_named,
        sha256: row.sha256,
        created_by: row.created_by,
    })
}

pub async fn create_manifest(db: &Db, draft: ManifestDraft, actor: &Actor) -> Result<Manifest> {
    let row = manifest_row(draft, actor)?;
    db.write(move |conn| {
        repo::insert_manifest(conn, &row)?;
        to_manifest(row)
    })
    .await
}

/// A draft checked, as the row to store; else every fault, each named.
pub(super) fn manifest_row(draft: ManifestDraft, actor: &Actor) -> Result<ManifestRow> {
    let mut errors = Vec::new();
    if draft.supplier.trim().is_empty() {
        errors.push(FieldError::new("supplier", "must name who supplied the list"));
    }
    if draft.consent_text.trim().is_empty() {
        errors.push(FieldError::new("consent_text", "must hold the text the people saw when they agreed"));
    }
    if draft.collected_on > Utc::now().date_naive() {
        errors.push(FieldError::new("collected_on", "is in the future"));
    }
    for (index, partner) in draft.partners_shown.iter().enumerate() {
        if partner.trim().is_empty() {
            errors.push(FieldError::new(format!("partners_shown[{index}]"), "must not be empty"));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let canonical = serde_json::to_vec(&draft).map_err(Error::internal)?;
    Ok(ManifestRow {
        id: uuid::Uuid::now_v7().to_string(),
        supplier: draft.supplier.trim().to_owned(),
        collected_on: draft.collected_on.to_string(),
        consent_text: draft.consent_text,
        brand_named: draft.brand_named,
        partners_shown: serde_json::to_string(&draft.partners_shown).map_err(Error::internal)?,
        sha256: crate::domain::consent::sha256_hex(&canonical),
        created_by: actor.to_string(),
        created_at: storage::now(),
    })
}

pub async fn find_manifest(db: &Db, id: String) -> Result<Manifest> {
    db.read(move |conn| {
        let row =
            repo::find_manifest(conn, &id)?.ok_or_else(|| Error::NotFound(format!("there is no manifest {id}")))?;
        to_manifest(row)
    })
    .await
}
