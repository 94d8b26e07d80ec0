//! A partner's API keys: made, listed, revoked, and the one a partner's call is
//! authenticated with.

use chrono::{DateTime, TimeDelta, Utc};

use super::{PARTNER_KEY_PREFIX, Partner, not_found, partner};
use crate::domain::PartnerId;
use crate::domain::partner::PartnerStatus;
use crate::error::{Error, Result};
use crate::services::auth::hash_api_key;
use crate::storage;
use crate::storage::models::utc;
use crate::storage::partners::PartnerKeyRow;
use crate::storage::{Db, partners as repo};

/// A partner key; the secret only when just created.
#[derive(Debug, Clone)]
pub struct PartnerKey {
    pub id: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub secret: Option<String>,
}

pub(super) fn key(row: PartnerKeyRow, secret: Option<String>) -> PartnerKey {
    PartnerKey {
        id: row.id,
        prefix: row.prefix,
        created_at: utc(row.created_at),
        last_used_at: row.last_used_at.map(utc),
        revoked_at: row.revoked_at.map(utc),
        secret,
    }
}

pub async fn create_key(db: &Db, partner_id: PartnerId) -> Result<PartnerKey> {
    let secret = format!(
        "{PARTNER_KEY_PREFIX}{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            crate::services::auth::random_bytes::<32>()
        )
    );
    let row = PartnerKeyRow {
        id: uuid::Uuid::now_v7().to_string(),
        partner_id,
        prefix: secret.chars().take(12).collect(),
        secret_hash: hash_api_key(&secret),
        created_at: storage::now(),
        last_used_at: None,
        revoked_at: None,
    };
    db.write(move |conn| {
        repo::find_partner(conn, partner_id)?.ok_or_else(|| not_found(partner_id))?;
        repo::insert_key(conn, &row)?;
        Ok(key(row, Some(secret)))
    })
    .await
}

pub async fn list_keys(db: &Db, partner_id: PartnerId) -> Result<Vec<PartnerKey>> {
    db.read(move |conn| {
        repo::find_partner(conn, partner_id)?.ok_or_else(|| not_found(partner_id))?;
        Ok(repo::list_keys(conn, partner_id)?.into_iter().map(|row| key(row, None)).collect())
    })
    .await
}

pub async fn revoke_key(db: &Db, partner_id: PartnerId, key_id: String) -> Result<()> {
    db.write(move |conn| {
        if repo::revoke_key(conn, partner_id, &key_id, storage::now())? == 0 {
            return Err(Error::NotFound(format!("partner {partner_id} has no key {key_id}")));
        }
        Ok(())
    })
    .await
}

/// The partner a key belongs to: active, key not revoked; 401 otherwise.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Partner> {
    let refused = || Error::Unauthorized("the partner key is unknown, revoked, or its partner is inactive".to_owned());
    if !secret.starts_with(PARTNER_KEY_PREFIX) {
        return Err(Error::Unauthorized("send a partner key (cpk_…) as `Authorization: Bearer …`".to_owned()));
    }
    let hash = hash_api_key(secret);
    let found = db
        .read(move |conn| {
            let Some(key) = repo::find_key_by_hash(conn, &hash)? else {
                return Ok(None);
            };
            Ok(repo::find_partner(conn, key.partner_id)?.map(|partner| (key, partner)))
        })
        .await?;
    let Some((key, row)) = found else {
        return Err(refused());
    };
    let partner = partner(row)?;
    if key.revoked_at.is_some() || partner.status != PartnerStatus::Active {
        return Err(refused());
    }
    let now = storage::now();
    if key.last_used_at.is_none_or(|at| now - at > TimeDelta::minutes(1)) {
        db.write(move |conn| Ok(repo::touch_key(conn, &key.id, now)?)).await?;
    }
    Ok(partner)
}
