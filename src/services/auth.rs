//! Who is calling: password login, access tokens (JWT) and API keys.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::throttle::{WindowCounter, ip_key};
use crate::domain::{ApiKeyId, Email, Role, UserId};
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::storage::{self, Db, api_keys, secrets, users};

/// The only algorithm tokens are signed and accepted with.
const ALGORITHM: Algorithm = Algorithm::HS256;
pub const ISSUER: &str = "consento";
pub const AUDIENCE: &str = "consento:api";
const SIGNING_KEY_NAME: &str = "jwt_signing_key";
/// API key secrets start with this, so that they are recognised (and found by secret
/// scanners) and told apart from access tokens.
pub const API_KEY_PREFIX: &str = "csk_";
/// `last_used_at` is written at most this often per key, not on every request.
const LAST_USED_GRANULARITY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Who made a request, and with which role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub identity: Identity,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    User(UserId),
    ApiKey(ApiKeyId),
}

impl Caller {
    /// `Ok` when the caller's role covers `needed`.
    pub fn require(&self, needed: Role) -> Result<()> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("this action needs the {needed} role; the caller has {}", self.role)))
        }
    }

    /// The caller as the ledger and histories name it: `user:<id>` or `api_key:<id>`.
    pub fn actor(&self) -> crate::domain::consent::Actor {
        match self.identity {
            Identity::User(id) => crate::domain::consent::Actor::User(id),
            Identity::ApiKey(id) => crate::domain::consent::Actor::ApiKey(id),
        }
    }

    pub fn user_id(&self) -> Option<UserId> {
        match self.identity {
            Identity::User(id) => Some(id),
            Identity::ApiKey(_) => None,
        }
    }
}

/// The claims of an access token. All of `sub`, `iss`, `aud` and `exp` are required.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    /// The user's session generation when the token was issued (see
    /// [`crate::storage::models::UserRow::session_generation`]); absent counts as 0.
    #[serde(default, rename = "gen")]
    pub generation: i64,
}

/// An access token as handed to a client.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
}

/// Signs and checks access tokens with the deployment's key.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Tokens {
    /// Loads the signing key from the database, generating it on first start, so that
    /// tokens survive restarts and every instance on the database accepts them.
    pub async fn load(db: &Db, ttl: Duration) -> Result<Self> {
        let key = db
            .read(|conn| {
                Ok(secrets::find_or_insert_secret(conn, SIGNING_KEY_NAME, || {
                    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
                })?)
            })
            .await?;
        let key = URL_SAFE_NO_PAD.decode(key).map_err(Error::internal)?;
        Self::from_key(&key, ttl)
    }

    pub fn from_key(key: &[u8], ttl: Duration) -> Result<Self> {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Ok(Self {
            encoding: EncodingKey::from_secret(key).map_err(Error::internal)?,
            decoding: DecodingKey::from_secret(key).map_err(Error::internal)?,
            validation,
            ttl,
        })
    }

    pub fn issue(&self, user: UserId, generation: i64) -> Result<IssuedToken> {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let claims = Claims {
            sub: user.to_string(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now + self.ttl.as_secs(),
            generation,
        };
        Ok(IssuedToken { access_token: self.sign(&claims)?, expires_in: self.ttl.as_secs() })
    }

    /// Signs any claims with the deployment's key (tests use it to forge bad tokens).
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String> {
        jsonwebtoken::encode(&Header::new(ALGORITHM), claims, &self.encoding).map_err(Error::internal)
    }

    fn verify(&self, token: &str) -> Result<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims).map_err(
            |error| {
                use jsonwebtoken::errors::ErrorKind;
                let reason = match error.kind() {
                    ErrorKind::ExpiredSignature => "the access token has expired",
                    ErrorKind::InvalidAudience => "the access token is not meant for this API",
                    ErrorKind::InvalidIssuer => "the access token was not issued by this server",
                    ErrorKind::InvalidSignature => "the access token's signature does not match",
                    ErrorKind::InvalidAlgorithm => "the access token is not signed with HS256",
                    ErrorKind::MissingRequiredClaim(_) => "the access token lacks a required claim",
                    _ => "the access token is malformed",
                };
                Error::Unauthorized(reason.to_owned())
            },
        )
    }
}

/// What limits sign-ins: failed attempts per client address and per account in a
/// window, and how many passwords are checked at once (each Argon2 check holds about
/// 19 MiB, so unbounded concurrency is unbounded memory).
pub struct LoginGuard {
    per_ip: WindowCounter<IpAddr>,
    per_account: WindowCounter<String>,
    ip_limit: u32,
    account_limit: u32,
    hashing: tokio::sync::Semaphore,
}

/// Accounts and addresses the sign-in counters remember at most.
const LOGIN_KEYS: usize = 100_000;
/// How long a sign-in waits for its turn to check a password before answering 503.
const HASHING_WAIT: Duration = Duration::from_secs(10);

impl LoginGuard {
    pub fn from_settings(settings: &Settings) -> Self {
        let window = Duration::from_secs(settings.login_window_seconds.max(1));
        Self {
            per_ip: WindowCounter::new(window, LOGIN_KEYS),
            per_account: WindowCounter::new(window, LOGIN_KEYS),
            ip_limit: settings.login_attempts_per_ip.max(1),
            account_limit: settings.login_attempts_per_account.max(1),
            hashing: tokio::sync::Semaphore::new(settings.password_hash_concurrency.max(1) as usize),
        }
    }

    /// The slots for checking passwords (tests hold them to see a sign-in wait its turn).
    pub fn password_checks(&self) -> &tokio::sync::Semaphore {
        &self.hashing
    }

    /// Counts an attempt before its password is checked, so that concurrent attempts
    /// cannot all slip under the limit; a success takes it back ([`LoginGuard::succeeded`]).
    pub(crate) fn attempt(&self, ip: Option<IpAddr>, account: &str) -> Result<()> {
        let now = Instant::now();
        let ip = ip.map(ip_key);
        // Over either limit: refused before any hashing, and not counted again, so that
        // the wait announced is the wait needed.
        let (ip_count, ip_wait) = ip.map_or((0, 0), |ip| self.per_ip.peek(&ip, now));
        let (account_count, account_wait) = self.per_account.peek(&account.to_owned(), now);
        let mut wait = 0;
        if ip_count >= self.ip_limit {
            wait = ip_wait;
        }
        if account_count >= self.account_limit {
            wait = wait.max(account_wait);
        }
        if wait > 0 {
            return Err(Error::TooManyRequests { retry_after: wait });
        }
        if let Some(ip) = ip {
            self.per_ip.hit(&ip, now);
        }
        self.per_account.hit(&account.to_owned(), now);
        Ok(())
    }

    /// The account starts afresh (a second factor's code was right).
    pub(crate) fn forgive(&self, account: &str) {
        self.per_account.reset(&account.to_owned());
    }

    /// A success: the account starts afresh, and the address gets its attempt back.
    fn succeeded(&self, ip: Option<IpAddr>, account: &str) {
        self.per_account.reset(&account.to_owned());
        if let Some(ip) = ip {
            self.per_ip.undo(&ip_key(ip));
        }
    }
}

/// Checks an e-mail and password, within the login limits: the user they are, or 401
/// (the same answer, taking as long, whether the address is known or not).
pub async fn check_credentials(
    db: &Db,
    guard: &LoginGuard,
    ip: Option<IpAddr>,
    email: &str,
    password: String,
) -> Result<crate::storage::models::UserRow> {
    let refused = || Error::Unauthorized("the e-mail or password is wrong".to_owned());
    // Malformed addresses are counted under their trimmed, lowercased text, so that they
    // too are limited per account.
    let key = Email::parse(email).map(|email| email.key()).unwrap_or_else(|_| email.trim().to_lowercase());
    guard.attempt(ip, &key)?;
    let user = {
        let key = key.clone();
        db.read(move |conn| Ok(users::find_user_by_email_key(conn, &key)?)).await?
    };
    // Without a user, verify against a dummy hash anyway, so that the answer takes as
    // long whether the address is known or not.
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let permit = tokio::time::timeout(HASHING_WAIT, guard.hashing.acquire())
        .await
        .map_err(|_| Error::Unavailable("every password check slot stayed busy".into()))?
        .map_err(Error::internal)?;
    let matches = verify_password(password, hash).await?;
    drop(permit);
    match user {
        Some(user) if matches => {
            guard.succeeded(ip, &key);
            Ok(user)
        }
        _ => Err(refused()),
    }
}

/// Resolves a bearer credential (an access token or an API key) to a caller. The role
/// is read from the database on every request, so a demoted or deleted user, or a
/// revoked key, loses access at once.
pub async fn authenticate(db: &Db, tokens: &Tokens, bearer: &str) -> Result<Caller> {
    if bearer.starts_with(API_KEY_PREFIX) {
        return authenticate_api_key(db, bearer).await;
    }
    let claims = tokens.verify(bearer)?;
    let gone = || Error::Unauthorized("the access token's user no longer exists".to_owned());
    let user_id: UserId = claims.sub.parse().map_err(|_| gone())?;
    let user = db.read(move |conn| Ok(users::find_user(conn, user_id)?)).await?.ok_or_else(gone)?;
    if claims.generation != user.session_generation {
        return Err(Error::Unauthorized(
            "the access token was issued before the password changed; sign in again".to_owned(),
        ));
    }
    let role = user.role;
    Ok(Caller { identity: Identity::User(user_id), role })
}

async fn authenticate_api_key(db: &Db, secret: &str) -> Result<Caller> {
    let hash = hash_api_key(secret);
    let key = db.read(move |conn| Ok(api_keys::find_api_key_by_hash(conn, &hash)?)).await?;
    let key = match key {
        Some(key) if key.revoked_at.is_none() => key,
        _ => return Err(Error::Unauthorized("the API key is unknown or revoked".to_owned())),
    };
    let caller = Caller { identity: Identity::ApiKey(key.id), role: key.role };
    // Reads stay reads: the write lock is taken only when the last use is stale.
    let now = storage::now();
    if key.last_used_at.is_none_or(|at| now - at > LAST_USED_GRANULARITY) {
        db.write(move |conn| Ok(api_keys::update_last_used(conn, key.id, now)?)).await?;
    }
    Ok(caller)
}

/// A new API key secret: the prefix and 32 random bytes.
pub fn generate_api_key() -> String {
    format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// API key secrets are 256 random bits, so a fast hash is enough to store them: unlike
/// a password there is nothing to guess, and every request must look the key up.
pub fn hash_api_key(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Checks a new password's strength; the rules are length only, as NIST SP 800-63B advises.
pub fn check_password_rules(password: &str) -> std::result::Result<(), &'static str> {
    let length = password.chars().count();
    if length < 12 {
        Err("must be at least 12 characters")
    } else if length > 1024 {
        Err("must be at most 1024 characters")
    } else {
        Ok(())
    }
}

/// An argon2id hash of a password, computed off the async executor.
pub async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| Error::internal(e.to_string()))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| Error::internal(e.to_string()))
    })
    .await
    .map_err(Error::internal)?
}

async fn verify_password(password: String, hash: Option<String>) -> Result<bool> {
    const DUMMY: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2VgyTn4Jk7D4qeBl1B2JEqFm9oA1pdVO6ywY9lPbG1E";
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let stored = hash.unwrap_or_else(|| DUMMY.to_owned());
        let parsed = PasswordHash::new(&stored).map_err(|e| Error::internal(e.to_string()))?;
        let matches = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        Ok(known && matches)
    })
    .await
    .map_err(Error::internal)?
}
