//! Lists: the purposes contacts subscribe to.

use super::pagination::{Page, PageRequest};
use crate::domain::{List, ListId, ListName, OptInMode};
use crate::error::{Error, Result};
use crate::storage::models::ListRow;
use crate::storage::{self, Db, lists as repo};

#[derive(Debug, Clone)]
pub struct NewList {
    pub name: ListName,
    pub description: String,
    pub opt_in: OptInMode,
}

#[derive(Debug, Clone, Default)]
pub struct ListChanges {
    pub name: Option<ListName>,
    pub description: Option<String>,
    pub opt_in: Option<OptInMode>,
}

pub async fn create_list(db: &Db, new: NewList) -> Result<List> {
    let now = storage::now();
    let row = ListRow {
        id: ListId::new(),
        name: new.name.into_inner(),
        description: new.description,
        opt_in: new.opt_in,
        created_at: now,
        updated_at: now,
    };
    db.write(move |conn| {
        storage::or_conflict(repo::insert_list(conn, &row), || duplicate_name(&row.name))?;
        Ok(List::from(row))
    })
    .await
}

pub async fn find_list(db: &Db, id: ListId) -> Result<List> {
    db.read(move |conn| repo::find_list(conn, id)?.map(Into::into).ok_or_else(|| not_found(id))).await
}

/// How many contacts are on the list now.
pub async fn count_members(db: &Db, id: ListId) -> Result<i64> {
    db.read(move |conn| {
        repo::find_list(conn, id)?.ok_or_else(|| not_found(id))?;
        Ok(repo::count_members(conn, id)?)
    })
    .await
}

pub async fn list_lists(db: &Db, page: PageRequest) -> Result<Page<List>> {
    db.read(move |conn| {
        let rows = repo::list_lists(conn, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(List::from)
            .collect::<Vec<_>>();
        Ok(page.page(rows, |list| list.id.to_string()))
    })
    .await
}

pub async fn update_list(db: &Db, id: ListId, changes: ListChanges) -> Result<List> {
    db.write(move |conn| {
        let mut row = repo::find_list(conn, id)?.ok_or_else(|| not_found(id))?;
        if let Some(name) = changes.name {
            row.name = name.into_inner();
        }
        if let Some(description) = changes.description {
            row.description = description;
        }
        if let Some(opt_in) = changes.opt_in {
            row.opt_in = opt_in;
        }
        row.updated_at = storage::now();
        storage::or_conflict(repo::update_list(conn, &row), || duplicate_name(&row.name))?;
        Ok(List::from(row))
    })
    .await
}

/// Deletes a list; its memberships go with it, the contacts stay.
pub async fn delete_list(db: &Db, id: ListId) -> Result<()> {
    let deleted = db.write(move |conn| Ok(repo::delete_list(conn, id)?)).await?;
    if deleted == 0 { Err(not_found(id)) } else { Ok(()) }
}

fn duplicate_name(name: &str) -> String {
    format!("a list named {name:?} already exists")
}

fn not_found(id: ListId) -> Error {
    Error::NotFound(format!("there is no list {id}"))
}
