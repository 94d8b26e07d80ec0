//! The brands table.

use diesel::prelude::*;

use super::DbConnection;
use super::schema::brands;
use crate::domain::BrandId;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = brands, treat_none_as_default_value = false)]
pub struct BrandRow {
    pub id: BrandId,
    pub name: String,
    pub legal_name: String,
    pub postal_address: String,
    pub privacy_policy_url: String,
    pub accent_color: Option<String>,
    pub background_color: Option<String>,
    pub footer: Option<String>,
    pub logo_type: Option<String>,
    pub is_default: i32,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
}

pub fn insert_brand(conn: &mut DbConnection, row: &BrandRow) -> QueryResult<()> {
    diesel::insert_into(brands::table).values(row).execute(conn).map(|_| ())
}

pub fn find_brand(conn: &mut DbConnection, id: BrandId) -> QueryResult<Option<BrandRow>> {
    brands::table.find(id).select(BrandRow::as_select()).first(conn).optional()
}

pub fn find_default_brand(conn: &mut DbConnection) -> QueryResult<Option<BrandRow>> {
    brands::table.filter(brands::is_default.eq(1)).select(BrandRow::as_select()).first(conn).optional()
}

pub fn list_brands(conn: &mut DbConnection, after: Option<&str>, limit: i64) -> QueryResult<Vec<BrandRow>> {
    let mut query = brands::table.select(BrandRow::as_select()).into_boxed();
    if let Some(after) = after {
        query = query.filter(brands::id.gt(after.to_owned()));
    }
    query.order(brands::id.asc()).limit(limit).load(conn)
}

pub fn update_brand(conn: &mut DbConnection, row: &BrandRow) -> QueryResult<usize> {
    diesel::update(brands::table.find(row.id)).set(row).execute(conn)
}

/// Makes no brand the default (before another becomes it).
pub fn clear_default(conn: &mut DbConnection) -> QueryResult<usize> {
    diesel::update(brands::table.filter(brands::is_default.eq(1))).set(brands::is_default.eq(0)).execute(conn)
}

pub fn delete_brand(conn: &mut DbConnection, id: BrandId) -> QueryResult<usize> {
    diesel::delete(brands::table.find(id)).execute(conn)
}

/// Stores a logo (base64) and its media type; `None` removes it.
pub fn update_logo(conn: &mut DbConnection, id: BrandId, logo: Option<(String, String)>) -> QueryResult<usize> {
    let (logo, media_type) = logo.unzip();
    diesel::update(brands::table.find(id)).set((brands::logo.eq(logo), brands::logo_type.eq(media_type))).execute(conn)
}

/// A brand's logo (base64) and its media type.
pub fn find_logo(conn: &mut DbConnection, id: BrandId) -> QueryResult<Option<(String, String)>> {
    let found: Option<(Option<String>, Option<String>)> =
        brands::table.find(id).select((brands::logo, brands::logo_type)).first(conn).optional()?;
    Ok(found.and_then(|(logo, media_type)| logo.zip(media_type)))
}
