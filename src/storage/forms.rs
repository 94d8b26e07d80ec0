//! Forms and their versions.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::{form_versions, forms};
use crate::domain::FormId;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = forms, treat_none_as_default_value = false)]
pub struct FormRow {
    pub id: FormId,
    pub slug: String,
    pub current_version: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = form_versions, treat_none_as_default_value = false)]
pub struct FormVersionRow {
    pub form_id: FormId,
    pub version: i32,
    pub definition: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
}

pub fn insert_form(conn: &mut DbConnection, form: &FormRow, version: &FormVersionRow) -> QueryResult<()> {
    diesel::insert_into(forms::table).values(form).execute(conn)?;
    diesel::insert_into(form_versions::table).values(version).execute(conn)?;
    Ok(())
}

/// Adds a version and makes it current.
pub fn insert_version(conn: &mut DbConnection, version: &FormVersionRow, slug: &str) -> QueryResult<()> {
    diesel::insert_into(form_versions::table).values(version).execute(conn)?;
    diesel::update(forms::table.find(&version.form_id))
        .set((
            forms::current_version.eq(version.version),
            forms::slug.eq(slug),
            forms::updated_at.eq(version.created_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find_form(conn: &mut DbConnection, id: FormId) -> QueryResult<Option<(FormRow, FormVersionRow)>> {
    forms::table
        .inner_join(
            form_versions::table
                .on(form_versions::form_id.eq(forms::id).and(form_versions::version.eq(forms::current_version))),
        )
        .filter(forms::id.eq(id))
        .select((FormRow::as_select(), FormVersionRow::as_select()))
        .first(conn)
        .optional()
}

pub fn find_form_by_slug(conn: &mut DbConnection, slug: &str) -> QueryResult<Option<(FormRow, FormVersionRow)>> {
    forms::table
        .inner_join(
            form_versions::table
                .on(form_versions::form_id.eq(forms::id).and(form_versions::version.eq(forms::current_version))),
        )
        .filter(forms::slug.eq(slug))
        .select((FormRow::as_select(), FormVersionRow::as_select()))
        .first(conn)
        .optional()
}

pub fn list_forms(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<(FormRow, FormVersionRow)>> {
    let mut query = forms::table
        .inner_join(
            form_versions::table
                .on(form_versions::form_id.eq(forms::id).and(form_versions::version.eq(forms::current_version))),
        )
        .select((FormRow::as_select(), FormVersionRow::as_select()))
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(forms::id.gt(after.to_owned()));
    }
    query.order(forms::id.asc()).limit(limit).load(conn)
}

pub fn list_versions(conn: &mut DbConnection, form_id: FormId) -> QueryResult<Vec<FormVersionRow>> {
    form_versions::table
        .filter(form_versions::form_id.eq(form_id))
        .order(form_versions::version.asc())
        .select(FormVersionRow::as_select())
        .load(conn)
}

pub fn delete_form(conn: &mut DbConnection, id: FormId) -> QueryResult<usize> {
    diesel::delete(forms::table.find(id)).execute(conn)
}
