//! Signing in: to the API for an access token, and to the console for a session held in
//! a cookie, each with its CSRF token (both with the second factor of a user who has one);
//! and the first run, where a one-time code printed in the server's log lets the first
//! admin be created (so whoever reaches the port first cannot take the server).

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;
use sha2::{Digest, Sha256};

use super::auth::{IssuedToken, LoginGuard, Tokens, check_credentials, hash_password, random_bytes};
use crate::domain::{Email, Role, User};
use crate::error::{Error, Result};
use crate::storage::models::UserRow;
use crate::storage::sessions::{self as repo, SessionRow};
use crate::storage::{self, Db, users};

/// How long a session lasts at most, however busy.
pub const SESSION_LIFETIME: TimeDelta = TimeDelta::hours(12);
/// How long the code of a second factor may be given after the password.
pub const SECOND_FACTOR_WAIT: TimeDelta = TimeDelta::minutes(5);
/// How long a session lasts without a request.
pub const SESSION_IDLE: TimeDelta = TimeDelta::hours(2);
/// `last_seen_at` is written at most this often per session.
const TOUCH_GRANULARITY: TimeDelta = TimeDelta::seconds(60);

/// A session just opened: the cookie's secret (given once) and the session.
#[derive(Debug, Clone)]
pub struct Opened {
    pub secret: String,
    pub session: Session,
}

/// A signed-in user, as each console request finds them.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    /// The token every state-changing form of this session carries.
    pub csrf_token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl Session {
    /// `Ok` when the user's role covers `needed`.
    pub fn require(&self, needed: Role) -> Result<()> {
        if self.user.role.allows(needed) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("this needs the {needed} role; you have {}", self.user.role)))
        }
    }
}

fn session_id(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a right password opens: the session, or (for a user with a second factor) a
/// session waiting for the code, whose cookie opens nothing else.
#[derive(Debug, Clone)]
pub enum SignIn {
    Opened(Opened),
    CodeNeeded(Opened),
}

fn open_in(conn: &mut storage::DbConnection, user: UserRow) -> Result<Opened> {
    open_row(conn, user, false)
}

fn open_row(conn: &mut storage::DbConnection, user: UserRow, pending: bool) -> Result<Opened> {
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let now = storage::now();
    let row = SessionRow {
        id: session_id(&secret),
        user_id: user.id,
        user_generation: user.session_generation,
        csrf_token: URL_SAFE_NO_PAD.encode(random_bytes::<24>()),
        created_at: now,
        expires_at: now + if pending { SECOND_FACTOR_WAIT } else { SESSION_LIFETIME },
        last_seen_at: now,
        second_factor_pending: pending,
    };
    repo::insert_session(conn, &row)?;
    let session = Session {
        csrf_token: row.csrf_token,
        expires_at: crate::storage::models::utc(row.expires_at),
        user: User::from(user),
    };
    Ok(Opened { secret, session })
}

/// What a sign-in to the API gives.
pub struct Credentials<'a> {
    pub email: &'a str,
    pub password: String,
    /// The second factor's code, for a user who has one.
    pub totp_code: Option<&'a str>,
}

/// Checks an e-mail and password (and the second factor's code, for a user who has one)
/// and issues an access token. `ip` is the client's address, for the per-address limit.
pub async fn issue_token(
    db: &Db,
    tokens: &Tokens,
    guard: &LoginGuard,
    ip: Option<IpAddr>,
    credentials: Credentials<'_>,
) -> Result<IssuedToken> {
    let user = check_credentials(db, guard, ip, credentials.email, credentials.password).await?;
    if user.totp_secret.is_some() {
        super::two_factor::check_code(db, guard, user.id, credentials.totp_code).await?;
    }
    tokens.issue(user.id, user.session_generation)
}

/// Signs in with an e-mail and password, within the login limits.
pub async fn sign_in(db: &Db, guard: &LoginGuard, ip: Option<IpAddr>, email: &str, password: String) -> Result<SignIn> {
    let user = check_credentials(db, guard, ip, email, password).await?;
    let pending = user.totp_secret.is_some();
    let opened = db.write(move |conn| open_row(conn, user, pending)).await?;
    Ok(if pending { SignIn::CodeNeeded(opened) } else { SignIn::Opened(opened) })
}

/// Opens the session a right password began, with the code of the user's second factor:
/// a new session (a new cookie), the waiting one gone. 401 with a wrong or spent code, or
/// when the wait is over.
pub async fn complete_second_factor(db: &Db, guard: &LoginGuard, secret: &str, code: &str) -> Result<Opened> {
    let id = session_id(secret);
    let found = {
        let id = id.clone();
        db.read(move |conn| Ok(repo::find_session(conn, &id)?)).await?
    };
    let now = storage::now();
    let Some(row) = found.filter(|row| row.second_factor_pending && row.expires_at > now) else {
        return Err(Error::Unauthorized("the sign-in took too long: enter the e-mail and password again".to_owned()));
    };
    super::two_factor::check_code(db, guard, row.user_id, Some(code)).await?;
    db.write(move |conn| {
        repo::delete_session(conn, &id)?;
        let user = users::find_user(conn, row.user_id)?
            .filter(|user| user.session_generation == row.user_generation)
            .ok_or_else(|| Error::Unauthorized("the account changed meanwhile: sign in again".to_owned()))?;
        open_in(conn, user)
    })
    .await
}

/// The session a cookie's secret opens, if it is still open; its last use is recorded.
pub async fn find_session(db: &Db, secret: &str) -> Result<Option<Session>> {
    let id = session_id(secret);
    let found = {
        let id = id.clone();
        db.read(move |conn| {
            let Some(row) = repo::find_session(conn, &id)? else {
                return Ok(None);
            };
            let user = users::find_user(conn, row.user_id)?;
            Ok(Some((row, user)))
        })
        .await?
    };
    let Some((row, Some(user))) = found else {
        return Ok(None);
    };
    // A session still waiting for its second factor opens nothing.
    if row.second_factor_pending {
        return Ok(None);
    }
    let now = storage::now();
    let open =
        row.expires_at > now && row.last_seen_at + SESSION_IDLE > now && row.user_generation == user.session_generation;
    if !open {
        db.write(move |conn| Ok(repo::delete_session(conn, &id)?)).await?;
        return Ok(None);
    }
    if now - row.last_seen_at > TOUCH_GRANULARITY {
        let id = id.clone();
        db.write(move |conn| Ok(repo::touch_session(conn, &id, now)?)).await?;
    }
    Ok(Some(Session {
        csrf_token: row.csrf_token,
        expires_at: crate::storage::models::utc(row.expires_at),
        user: User::from(user),
    }))
}

/// Ends the session a cookie's secret opened.
pub async fn sign_out(db: &Db, secret: &str) -> Result<()> {
    let id = session_id(secret);
    db.write(move |conn| Ok(repo::delete_session(conn, &id)?)).await.map(|_| ())
}

/// Removes the sessions that have ended (past their lifetime or idle too long).
pub async fn purge_ended(db: &Db) -> Result<usize> {
    let now = storage::now();
    db.write(move |conn| Ok(repo::delete_stale_sessions(conn, now, now - SESSION_IDLE)?)).await
}

/// Whether the console must first create its admin: no user exists.
pub async fn setup_needed(db: &Db) -> Result<bool> {
    Ok(db.read(|conn| Ok(users::count_users(conn)?)).await? == 0)
}

/// At start, while no user exists: a new one-time setup code, whose hash is stored (any
/// instance on the database accepts it); the caller prints it in the log. `None` once a
/// user exists.
pub async fn prepare_setup_code(db: &Db) -> Result<Option<String>> {
    if !setup_needed(db).await? {
        return Ok(None);
    }
    let bytes = random_bytes::<10>();
    // Ten random bytes as five groups of four letters and digits people can type.
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let letters: String = bytes
        .iter()
        .flat_map(|b| [ALPHABET[(b >> 3) as usize], ALPHABET[(b & 0x1f) as usize]])
        .map(char::from)
        .collect();
    let code =
        letters.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-");
    let hash = setup_hash(&code);
    db.write(move |conn| Ok(repo::replace_setup_code(conn, &hash)?)).await?;
    Ok(Some(code))
}

fn setup_hash(code: &str) -> String {
    let normalised: String =
        code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_uppercase();
    hex(&Sha256::digest(normalised.as_bytes()))
}

/// Creates the first admin with the setup code from the log, and signs them in. Refused
/// (403) with a wrong or spent code, or once a user exists; the code works once.
pub async fn complete_setup(
    db: &Db,
    guard: &LoginGuard,
    ip: Option<IpAddr>,
    code: &str,
    email: Email,
    password: String,
) -> Result<Opened> {
    let refused =
        || Error::Forbidden("the setup code is wrong or was used: read the one in the server's log".to_owned());
    if !setup_needed(db).await? {
        return Err(refused());
    }
    // Tries are limited per address (an 80-bit code is not guessed by trying): one that
    // tries wrong codes locks out only itself, never the operator.
    if let Some(ip) = ip {
        guard.attempt(Some(ip), &format!("console-setup {ip}"))?;
    }
    let hash = setup_hash(code);
    let stored = {
        let hash = hash.clone();
        db.read(move |conn| Ok(repo::find_setup_code(conn)?.is_some_and(|stored| stored == hash))).await?
    };
    if !stored {
        return Err(refused());
    }
    super::auth::check_password_rules(&password).map_err(|message| Error::field("password", message))?;
    let password_hash = hash_password(password).await?;
    db.write(move |conn| {
        let refused =
            || Error::Forbidden("the setup code is wrong or was used: read the one in the server's log".to_owned());
        if users::count_users(conn)? > 0 || !repo::spend_setup_code(conn, &hash)? {
            return Err(refused());
        }
        let now = storage::now();
        let row = UserRow {
            id: crate::domain::UserId::new(),
            email: email.as_str().to_owned(),
            email_key: email.key(),
            password_hash,
            role: Role::Admin,
            created_at: now,
            updated_at: now,
            session_generation: 0,
            totp_secret: None,
            totp_last_step: None,
        };
        users::insert_user(conn, &row)?;
        open_in(conn, row)
    })
    .await
}
