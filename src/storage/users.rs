//! The users table.

use diesel::prelude::*;

use super::DbConnection;
use super::models::UserRow;
use super::schema::users;
use crate::domain::UserId;

pub fn insert_user(conn: &mut DbConnection, row: &UserRow) -> QueryResult<()> {
    diesel::insert_into(users::table).values(row).execute(conn).map(|_| ())
}

pub fn find_user(conn: &mut DbConnection, id: UserId) -> QueryResult<Option<UserRow>> {
    users::table.find(id).select(UserRow::as_select()).first(conn).optional()
}

pub fn find_user_by_email_key(conn: &mut DbConnection, key: &str) -> QueryResult<Option<UserRow>> {
    users::table.filter(users::email_key.eq(key)).select(UserRow::as_select()).first(conn).optional()
}

pub fn list_users(conn: &mut DbConnection, after: Option<&str>, limit: i64) -> QueryResult<Vec<UserRow>> {
    let mut query = users::table.select(UserRow::as_select()).into_boxed();
    if let Some(after) = after {
        query = query.filter(users::id.gt(after.to_owned()));
    }
    query.order(users::id.asc()).limit(limit).load(conn)
}

pub fn count_users(conn: &mut DbConnection) -> QueryResult<i64> {
    users::table.count().get_result(conn)
}

pub fn count_admins(conn: &mut DbConnection) -> QueryResult<i64> {
    users::table.filter(users::role.eq("admin")).count().get_result(conn)
}

pub fn update_user(conn: &mut DbConnection, row: &UserRow) -> QueryResult<usize> {
    diesel::update(users::table.find(&row.id)).set(row).execute(conn)
}

/// Turns the second factor on (a secret, and the step of the code that confirmed it) or off.
pub fn set_totp(conn: &mut DbConnection, id: UserId, secret: Option<&str>, step: Option<i64>) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set((users::totp_secret.eq(secret), users::totp_last_step.eq(step)))
        .execute(conn)
}

/// Records a TOTP step as used, when it is later than the last one used: false when it is
/// not (the code was used already), so that two requests cannot both spend one code.
pub fn spend_totp_step(conn: &mut DbConnection, id: UserId, step: i64) -> QueryResult<bool> {
    let updated = diesel::update(
        users::table.find(id).filter(users::totp_last_step.is_null().or(users::totp_last_step.lt(step))),
    )
    .set(users::totp_last_step.eq(step))
    .execute(conn)?;
    Ok(updated == 1)
}

pub fn delete_user(conn: &mut DbConnection, id: UserId) -> QueryResult<usize> {
    diesel::delete(users::table.find(id)).execute(conn)
}
