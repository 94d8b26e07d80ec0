//! Users who sign in to administer consento.

use super::auth::hash_password;
use super::pagination::{Page, PageRequest};
use crate::domain::{Email, Role, User, UserId};
use crate::error::{Error, Result};
use crate::storage::models::UserRow;
use crate::storage::{self, Db, users as repo};

/// A user to create. The password has passed [`super::auth::check_password_rules`].
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password: String,
    pub role: Role,
}

#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub role: Option<Role>,
    pub password: Option<String>,
}

pub async fn create_user(db: &Db, new: NewUser) -> Result<User> {
    let password_hash = hash_password(new.password).await?;
    let now = storage::now();
    let row = UserRow {
        id: UserId::new(),
        email: new.email.as_str().to_owned(),
        email_key: new.email.key(),
        password_hash,
        role: new.role,
        created_at: now,
        updated_at: now,
        session_generation: 0,
        totp_secret: None,
        totp_last_step: None,
    };
    db.write(move |conn| {
        storage::or_conflict(repo::insert_user(conn, &row), || {
            format!("a user with the e-mail {} already exists", row.email)
        })?;
        Ok(User::from(row))
    })
    .await
}

/// Creates the first admin from the settings, only while there is no user at all.
/// Returns whether it did.
pub async fn bootstrap_admin(db: &Db, email: Email, password: String) -> Result<bool> {
    if db.read(|conn| Ok(repo::count_users(conn)?)).await? > 0 {
        return Ok(false);
    }
    match create_user(db, NewUser { email, password, role: Role::Admin }).await {
        Ok(_) => Ok(true),
        // Another instance created it first.
        Err(Error::Conflict(_)) => Ok(false),
        Err(error) => Err(error),
    }
}

pub async fn find_user(db: &Db, id: UserId) -> Result<User> {
    db.read(move |conn| repo::find_user(conn, id)?.map(Into::into).ok_or_else(|| not_found(id))).await
}

pub async fn list_users(db: &Db, page: PageRequest) -> Result<Page<User>> {
    db.read(move |conn| {
        let rows = repo::list_users(conn, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(User::from)
            .collect::<Vec<_>>();
        Ok(page.page(rows, |user| user.id.to_string()))
    })
    .await
}

pub async fn update_user(db: &Db, id: UserId, changes: UserChanges) -> Result<User> {
    let password_hash = match changes.password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    db.write(move |conn| {
        let mut row = repo::find_user(conn, id)?.ok_or_else(|| not_found(id))?;
        if let Some(role) = changes.role {
            if row.role == Role::Admin && role != Role::Admin && repo::count_admins(conn)? <= 1 {
                return Err(Error::Conflict("the last admin cannot be demoted".to_owned()));
            }
            row.role = role;
        }
        if let Some(hash) = password_hash {
            row.password_hash = hash;
            // Every token issued with the old password stops working.
            row.session_generation += 1;
        }
        row.updated_at = storage::now();
        repo::update_user(conn, &row)?;
        Ok(User::from(row))
    })
    .await
}

pub async fn delete_user(db: &Db, id: UserId) -> Result<()> {
    db.write(move |conn| {
        let row = repo::find_user(conn, id)?.ok_or_else(|| not_found(id))?;
        if row.role == Role::Admin && repo::count_admins(conn)? <= 1 {
            return Err(Error::Conflict("the last admin cannot be deleted".to_owned()));
        }
        repo::delete_user(conn, row.id)?;
        Ok(())
    })
    .await
}

fn not_found(id: UserId) -> Error {
    Error::NotFound(format!("there is no user {id}"))
}
