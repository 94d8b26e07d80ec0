//! The lists table.

use diesel::prelude::*;

use super::DbConnection;
use super::models::ListRow;
use super::schema::{contact_lists, lists};
use crate::domain::ListId;

pub fn insert_list(conn: &mut DbConnection, row: &ListRow) -> QueryResult<()> {
    diesel::insert_into(lists::table).values(row).execute(conn).map(|_| ())
}

pub fn find_list(conn: &mut DbConnection, id: ListId) -> QueryResult<Option<ListRow>> {
    lists::table.find(id).select(ListRow::as_select()).first(conn).optional()
}

/// Which of `ids` name an existing list.
pub fn find_existing_list_ids(conn: &mut DbConnection, ids: &[ListId]) -> QueryResult<Vec<ListId>> {
    lists::table.filter(lists::id.eq_any(ids)).select(lists::id).load(conn)
}

pub fn list_lists(conn: &mut DbConnection, after: Option<&str>, limit: i64) -> QueryResult<Vec<ListRow>> {
    let mut query = lists::table.select(ListRow::as_select()).into_boxed();
    if let Some(after) = after {
        query = query.filter(lists::id.gt(after.to_owned()));
    }
    query.order(lists::id.asc()).limit(limit).load(conn)
}

pub fn update_list(conn: &mut DbConnection, row: &ListRow) -> QueryResult<usize> {
    diesel::update(lists::table.find(&row.id)).set(row).execute(conn)
}

pub fn delete_list(conn: &mut DbConnection, id: ListId) -> QueryResult<usize> {
    diesel::delete(lists::table.find(id)).execute(conn)
}

/// How many contacts are on a list (an index count).
pub fn count_members(conn: &mut DbConnection, id: ListId) -> QueryResult<i64> {
    contact_lists::table.filter(contact_lists::list_id.eq(id)).count().get_result(conn)
}
