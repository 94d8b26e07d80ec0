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

pub fn delete_user(conn: &mut DbConnection, id: UserId) -> QueryResult<usize> {
    diesel::delete(users::table.find(id)).execute(conn)
}
