//! Two-factor sign-in with time-based one-time codes (RFC 6238: HMAC-SHA-1, six digits,
//! thirty-second steps, one step of clock drift either way), as every authenticator app
//! reads them. A code is accepted once: the step it belongs to is spent with it.

use chrono::Utc;

use super::auth::{LoginGuard, check_credentials, random_bytes};
use crate::domain::{User, UserId};
use crate::error::{Error, Result};
use crate::storage::{Db, users};

/// What an authenticator app is given when the second factor is turned on.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The secret, in base32 (to type in by hand).
    pub secret: String,
    /// The `otpauth://` address a QR code carries.
    pub uri: String,
}

fn totp(secret: &str) -> Result<totp_rs::Totp> {
    let secret =
        totp_rs::Secret::try_from_base32(secret).map_err(|_| Error::field("secret", "is not a base32 TOTP secret"))?;
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .build()
        .map_err(|_| Error::field("secret", "is not a TOTP secret of at least 128 bits"))
}

/// A new secret for `user`, not stored until a code from it confirms it ([`enable`]).
pub fn new_enrolment(user: &User) -> Enrolment {
    enrolment_with(user, totp_rs::Secret::new(Box::new(random_bytes::<20>())).to_base32())
}

/// The enrolment of a secret given again (a page sent back after a wrong code), if it is
/// one.
pub fn enrolment_with_secret(user: &User, secret: &str) -> Option<Enrolment> {
    totp(secret).ok().map(|_| enrolment_with(user, secret.to_owned()))
}

fn enrolment_with(user: &User, secret: String) -> Enrolment {
    let label: String =
        form_urlencoded::byte_serialize(format!("consento:{}", user.email.as_str()).as_bytes()).collect();
    let uri = format!("otpauth://totp/{label}?secret={secret}&issuer=consento&algorithm=SHA1&digits=6&period=30");
    Enrolment { secret, uri }
}

/// The step a code belongs to, if it is the secret's code now (within a step's drift).
fn step_of(secret: &str, code: &str) -> Result<Option<i64>> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(totp(secret)?.check(&code, Utc::now().timestamp().max(0) as u64).map(|step| step as i64))
}

fn wrong_code() -> Error {
    Error::Unauthorized("the code is wrong or was used already: enter the one your app shows now".to_owned())
}

/// Checks a code of `user`'s second factor and spends it, within the login limits; `Ok`
/// also for a user without one.
pub async fn check_code(db: &Db, guard: &LoginGuard, user: UserId, code: Option<&str>) -> Result<()> {
    let Some(secret) = db.read(move |conn| Ok(users::find_user(conn, user)?)).await?.and_then(|u| u.totp_secret) else {
        return Ok(());
    };
    let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
        return Err(Error::Unauthorized(
            "this account signs in with a two-factor code as well: give the code its app shows".to_owned(),
        ));
    };
    let account = format!("totp {user}");
    guard.attempt(None, &account)?;
    let Some(step) = step_of(&secret, code)? else {
        return Err(wrong_code());
    };
    if db.write(move |conn| Ok(users::spend_totp_step(conn, user, step)?)).await? {
        guard.forgive(&account);
        Ok(())
    } else {
        Err(wrong_code())
    }
}

/// Turns the second factor on with the secret of an enrolment, once the password and a
/// code from the app prove it is the user, and their app, asking.
pub async fn enable(
    db: &Db,
    guard: &LoginGuard,
    user: &User,
    password: String,
    secret: &str,
    code: &str,
) -> Result<()> {
    let stored = check_credentials(db, guard, None, user.email.as_str(), password).await?;
    // A second factor on already is replaced only by turning it off first, with its code.
    if stored.totp_secret.is_some() {
        return Err(Error::Conflict("two-factor sign-in is on already: turn it off first, with a code".to_owned()));
    }
    let step = step_of(secret, code)?.ok_or_else(|| Error::field("code", "is not the code the app shows now"))?;
    let (id, secret) = (user.id, secret.to_owned());
    db.write(move |conn| Ok(users::set_totp(conn, id, Some(&secret), Some(step))?)).await.map(|_| ())
}

/// Turns the second factor off, with the password and a current code.
pub async fn disable(db: &Db, guard: &LoginGuard, user: &User, password: String, code: &str) -> Result<()> {
    check_credentials(db, guard, None, user.email.as_str(), password).await?;
    check_code(db, guard, user.id, Some(code)).await?;
    let id = user.id;
    db.write(move |conn| Ok(users::set_totp(conn, id, None, None)?)).await.map(|_| ())
}

/// Turns a user's second factor off without a code (the operator's act, for a user who
/// lost their app): they sign in with their password alone until they turn it on again.
pub async fn reset_by_email(db: &Db, email: &crate::domain::Email) -> Result<()> {
    let (key, shown) = (email.key(), email.to_string());
    db.write(move |conn| {
        let user = users::find_user_by_email_key(conn, &key)?
            .ok_or_else(|| Error::NotFound(format!("there is no user {shown}")))?;
        users::set_totp(conn, user.id, None, None)?;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_of_now_is_accepted_with_its_step_and_others_are_not() {
        let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
        let now = Utc::now().timestamp() as u64;
        let code = totp(secret).unwrap().generate(now).to_string();
        assert_eq!(step_of(secret, &code).unwrap(), Some((now / 30) as i64));
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert!(step_of(secret, &spaced).unwrap().is_some(), "spaces as apps show them are allowed");
        let old = totp(secret).unwrap().generate(now - 300).to_string();
        assert!(old == code || step_of(secret, &old).unwrap().is_none(), "a code of five minutes ago is refused");
        assert_eq!(step_of(secret, "12345").unwrap(), None);
        assert_eq!(step_of(secret, "abcdef").unwrap(), None);
    }

    #[test]
    fn an_enrolment_is_a_fresh_160_bit_secret_in_an_otpauth_address() {
        let user = User {
            id: UserId::new(),
            email: crate::domain::Email::parse("ada@example.org").unwrap(),
            role: crate::domain::Role::Admin,
            two_factor: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        let (a, b) = (new_enrolment(&user), new_enrolment(&user));
        assert_ne!(a.secret, b.secret);
        assert_eq!(totp_rs::Secret::try_from_base32(&a.secret).unwrap().as_bytes().len(), 20);
        assert!(a.uri.starts_with("otpauth://totp/consento%3Aada%40example.org?secret="), "{}", a.uri);
    }
}
