//! API keys for integrations: created and revoked by admins, secret shown once.

use super::auth::{generate_api_key, hash_api_key};
use super::pagination::{Page, PageRequest};
use crate::domain::{ApiKey, ApiKeyId, Role, UserId};
use crate::error::{Error, Result};
use crate::storage::models::ApiKeyRow;
use crate::storage::{self, Db, api_keys as repo};

/// How many characters of a secret are kept in clear to recognise the key.
const PREFIX_LENGTH: usize = 12;

/// A key just created, with the only copy of its secret.
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub secret: String,
}

pub async fn create_api_key(db: &Db, name: String, role: Role, created_by: Option<UserId>) -> Result<CreatedApiKey> {
    let secret = generate_api_key();
    let row = ApiKeyRow {
        id: ApiKeyId::new(),
        name,
        role,
        prefix: secret.chars().take(PREFIX_LENGTH).collect(),
        secret_hash: hash_api_key(&secret),
        created_by,
        created_at: storage::now(),
        last_used_at: None,
        revoked_at: None,
    };
    let key = db
        .write(move |conn| {
            repo::insert_api_key(conn, &row)?;
            Ok(ApiKey::from(row))
        })
        .await?;
    Ok(CreatedApiKey { key, secret })
}

pub async fn find_api_key(db: &Db, id: ApiKeyId) -> Result<ApiKey> {
    db.read(move |conn| repo::find_api_key(conn, id)?.map(Into::into).ok_or_else(|| not_found(id))).await
}

pub async fn list_api_keys(db: &Db, page: PageRequest) -> Result<Page<ApiKey>> {
    db.read(move |conn| {
        let rows = repo::list_api_keys(conn, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(ApiKey::from)
            .collect::<Vec<_>>();
        Ok(page.page(rows, |key| key.id.to_string()))
    })
    .await
}

/// Revokes a key: it stops working at once and stays listed, with the time it was revoked.
pub async fn revoke_api_key(db: &Db, id: ApiKeyId) -> Result<()> {
    db.write(move |conn| {
        repo::find_api_key(conn, id)?.ok_or_else(|| not_found(id))?;
        repo::revoke_api_key(conn, id, storage::now())?;
        Ok(())
    })
    .await
}

fn not_found(id: ApiKeyId) -> Error {
    Error::NotFound(format!("there is no API key {id}"))
}
