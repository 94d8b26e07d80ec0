//! Plugins stored through the API, their versions, and segments.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::{plugin_versions, plugins, segments};
use crate::domain::SegmentId;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = plugins, treat_none_as_default_value = false)]
pub struct PluginRow {
    pub name: String,
    pub version: i32,
    pub description: String,
    pub source: String,
    pub updated_by: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = plugin_versions, treat_none_as_default_value = false)]
pub struct PluginVersionRow {
    pub name: String,
    pub version: i32,
    pub description: String,
    pub source: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = segments, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct SegmentRow {
    pub id: SegmentId,
    pub name: String,
    pub description: String,
    pub script: Option<String>,
    pub plugin: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Settings for the plugin, as a JSON object.
    pub settings: String,
}

/// Stores a plugin's new version (the first when `row.version` is 1) and its history row.
pub fn save_plugin(conn: &mut DbConnection, row: &PluginRow) -> QueryResult<()> {
    if row.version == 1 {
        diesel::insert_into(plugins::table).values(row).execute(conn)?;
    } else {
        diesel::update(plugins::table.find(&row.name)).set(row).execute(conn)?;
    }
    let history = PluginVersionRow {
        name: row.name.clone(),
        version: row.version,
        description: row.description.clone(),
        source: row.source.clone(),
        created_by: row.updated_by.clone(),
        created_at: row.updated_at,
    };
    diesel::insert_into(plugin_versions::table).values(&history).execute(conn)?;
    Ok(())
}

pub fn find_plugin(conn: &mut DbConnection, name: &str) -> QueryResult<Option<PluginRow>> {
    plugins::table.find(name).select(PluginRow::as_select()).first(conn).optional()
}

pub fn list_plugins(conn: &mut DbConnection) -> QueryResult<Vec<PluginRow>> {
    plugins::table.order(plugins::name.asc()).select(PluginRow::as_select()).load(conn)
}

pub fn list_plugin_versions(conn: &mut DbConnection, name: &str) -> QueryResult<Vec<PluginVersionRow>> {
    plugin_versions::table
        .filter(plugin_versions::name.eq(name))
        .order(plugin_versions::version.asc())
        .select(PluginVersionRow::as_select())
        .load(conn)
}

pub fn delete_plugin(conn: &mut DbConnection, name: &str) -> QueryResult<usize> {
    diesel::delete(plugin_versions::table.filter(plugin_versions::name.eq(name))).execute(conn)?;
    diesel::delete(plugins::table.find(name)).execute(conn)
}

pub fn count_segments_using(conn: &mut DbConnection, plugin: &str) -> QueryResult<i64> {
    segments::table.filter(segments::plugin.eq(plugin)).count().get_result(conn)
}

pub fn insert_segment(conn: &mut DbConnection, row: &SegmentRow) -> QueryResult<()> {
    diesel::insert_into(segments::table).values(row).execute(conn).map(|_| ())
}

pub fn update_segment(conn: &mut DbConnection, row: &SegmentRow) -> QueryResult<usize> {
    diesel::update(segments::table.find(&row.id)).set(row).execute(conn)
}

pub fn find_segment(conn: &mut DbConnection, id: SegmentId) -> QueryResult<Option<SegmentRow>> {
    segments::table.find(id).select(SegmentRow::as_select()).first(conn).optional()
}

pub fn list_segments(conn: &mut DbConnection, after: Option<&str>, limit: i64) -> QueryResult<Vec<SegmentRow>> {
    let mut query = segments::table.select(SegmentRow::as_select()).into_boxed();
    if let Some(after) = after {
        query = query.filter(segments::id.gt(after.to_owned()));
    }
    query.order(segments::id.asc()).limit(limit).load(conn)
}

pub fn delete_segment(conn: &mut DbConnection, id: SegmentId) -> QueryResult<usize> {
    diesel::delete(segments::table.find(id)).execute(conn)
}
