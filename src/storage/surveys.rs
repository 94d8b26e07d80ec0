//! Surveys and the answers people gave.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::{survey_responses, surveys};
use crate::domain::{ContactId, SurveyId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = surveys, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct SurveyRow {
    pub id: SurveyId,
    pub name: String,
    pub title: String,
    pub intro: String,
    /// JSON array of questions.
    pub questions: String,
    pub plugin: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = survey_responses, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct ResponseRow {
    pub id: String,
    pub survey_id: SurveyId,
    pub contact_id: ContactId,
    /// JSON object: question id → answer, in the order given.
    pub answers: String,
    pub status: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub completed_at: Option<NaiveDateTime>,
    /// Once completed with a plugin: `applied` or `refused` (what `on_complete` answered
    /// did not pass the checks).
    pub outcome: Option<String>,
    /// JSON: the attribute and tag updates applied.
    pub updates: Option<String>,
    /// Why the updates were refused.
    pub error: Option<String>,
}

pub fn insert_survey(conn: &mut DbConnection, row: &SurveyRow) -> QueryResult<usize> {
    diesel::insert_into(surveys::table).values(row).execute(conn)
}

pub fn update_survey(conn: &mut DbConnection, row: &SurveyRow) -> QueryResult<usize> {
    diesel::update(surveys::table.find(&row.id)).set(row).execute(conn)
}

pub fn find_survey(conn: &mut DbConnection, id: SurveyId) -> QueryResult<Option<SurveyRow>> {
    surveys::table.find(id).select(SurveyRow::as_select()).first(conn).optional()
}

pub fn list_surveys(conn: &mut DbConnection, after: Option<&str>, limit: i64) -> QueryResult<Vec<SurveyRow>> {
    let mut query = surveys::table.select(SurveyRow::as_select()).into_boxed();
    if let Some(after) = after {
        query = query.filter(surveys::id.gt(after.to_owned()));
    }
    query.order(surveys::id.asc()).limit(limit).load(conn)
}

pub fn delete_survey(conn: &mut DbConnection, id: SurveyId) -> QueryResult<usize> {
    diesel::delete(survey_responses::table.filter(survey_responses::survey_id.eq(id))).execute(conn)?;
    diesel::delete(surveys::table.find(id)).execute(conn)
}

pub fn insert_response(conn: &mut DbConnection, row: &ResponseRow) -> QueryResult<usize> {
    diesel::insert_into(survey_responses::table).values(row).execute(conn)
}

pub fn update_response(conn: &mut DbConnection, row: &ResponseRow) -> QueryResult<usize> {
    diesel::update(survey_responses::table.find(&row.id)).set(row).execute(conn)
}

pub fn find_response(conn: &mut DbConnection, id: &str) -> QueryResult<Option<ResponseRow>> {
    survey_responses::table.find(id).select(ResponseRow::as_select()).first(conn).optional()
}

/// A contact's response to a survey, if it started one.
pub fn find_contact_response(
    conn: &mut DbConnection,
    survey_id: SurveyId,
    contact_id: ContactId,
) -> QueryResult<Option<ResponseRow>> {
    survey_responses::table
        .filter(survey_responses::survey_id.eq(survey_id))
        .filter(survey_responses::contact_id.eq(contact_id))
        .select(ResponseRow::as_select())
        .first(conn)
        .optional()
}

pub fn list_contact_responses(conn: &mut DbConnection, contact_id: ContactId) -> QueryResult<Vec<ResponseRow>> {
    survey_responses::table
        .filter(survey_responses::contact_id.eq(contact_id))
        .order(survey_responses::id.asc())
        .select(ResponseRow::as_select())
        .load(conn)
}

pub fn delete_contact_responses(conn: &mut DbConnection, contact_id: ContactId) -> QueryResult<usize> {
    diesel::delete(survey_responses::table.filter(survey_responses::contact_id.eq(contact_id))).execute(conn)
}

/// A survey's responses, a page at a time, oldest first.
pub fn list_survey_responses(
    conn: &mut DbConnection,
    survey_id: SurveyId,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<ResponseRow>> {
    let mut query = survey_responses::table
        .filter(survey_responses::survey_id.eq(survey_id))
        .select(ResponseRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(survey_responses::id.gt(after.to_owned()));
    }
    query.order(survey_responses::id.asc()).limit(limit).load(conn)
}
