//! People who administer consento, and the keys integrations use.

use chrono::{DateTime, Utc};

use super::{ApiKeyId, Email, Role, UserId};

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub role: Role,
    /// Whether signing in takes a TOTP code after the password.
    pub two_factor: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An API key as listed: never its secret, which is shown once at creation.
#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub role: Role,
    /// The first characters of the secret, to recognise a key.
    pub prefix: String,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}
