//! Rows as stored, and their conversion to domain types.
//!
//! A row that does not convert means the database holds what this code never writes; that
//! is an internal error, not the client's.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use super::schema::{api_keys, contact_lists, contact_tags, contacts, lists, server_secrets, users};
use crate::domain::{
    self, ApiKeyId, Contact, ContactId, ContactStatus, Country, Email, List, ListId, OptInMode, Role, Tag, UserId,
};
use crate::error::{Error, Result};

// A row is written whole: `None` clears a column rather than leaving it unchanged.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = contacts, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct ContactRow {
    pub id: ContactId,
    pub email: String,
    pub email_key: String,
    pub attributes: String,
    pub company: Option<String>,
    pub country: Option<String>,
    pub status: ContactStatus,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = contact_tags, treat_none_as_default_value = false)]
pub struct ContactTagRow {
    pub contact_id: ContactId,
    pub tag: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = contact_lists, treat_none_as_default_value = false)]
pub struct ContactListRow {
    pub contact_id: ContactId,
    pub list_id: ListId,
    pub added_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = lists, treat_none_as_default_value = false)]
pub struct ListRow {
    pub id: ListId,
    pub name: String,
    pub description: String,
    pub opt_in: OptInMode,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = users, treat_none_as_default_value = false)]
pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub email_key: String,
    pub password_hash: String,
    pub role: Role,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Moves on when the password changes: tokens of an older generation are refused.
    pub session_generation: i64,
    /// The TOTP secret (base32) of a user who signs in with a second factor.
    pub totp_secret: Option<String>,
    /// The last TOTP time step accepted: a code is accepted once.
    pub totp_last_step: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys, treat_none_as_default_value = false)]
pub struct ApiKeyRow {
    pub id: ApiKeyId,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub secret_hash: String,
    pub created_by: Option<UserId>,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = server_secrets, treat_none_as_default_value = false)]
pub struct ServerSecretRow {
    pub name: String,
    pub value: String,
    pub created_at: NaiveDateTime,
}

pub fn utc(stored: NaiveDateTime) -> DateTime<Utc> {
    stored.and_utc()
}

pub fn corrupt(what: &str, value: &str) -> Error {
    Error::internal(format!("stored {what} {value:?} is not valid"))
}

pub fn parse_id<T: std::str::FromStr>(what: &str, value: &str) -> Result<T> {
    value.parse().map_err(|_| corrupt(what, value))
}

impl ContactRow {
    /// The domain contact, with the tags and list ids loaded beside the row.
    pub fn into_contact(self, tags: Vec<String>, lists: Vec<ListId>) -> Result<Contact> {
        let attributes = match serde_json::from_str(&self.attributes) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(corrupt("contact attributes", &self.attributes)),
        };
        Ok(Contact {
            id: self.id,
            email: Email::from_trusted(self.email),
            attributes,
            tags: tags.into_iter().map(Tag::from_trusted).collect(),
            lists: lists.into_iter().collect(),
            company: self.company,
            country: self.country.map(Country::from_trusted),
            status: self.status,
            created_at: utc(self.created_at),
            updated_at: utc(self.updated_at),
        })
    }
}

impl From<ListRow> for List {
    fn from(row: ListRow) -> Self {
        List {
            id: row.id,
            opt_in: row.opt_in,
            name: row.name,
            description: row.description,
            created_at: utc(row.created_at),
            updated_at: utc(row.updated_at),
        }
    }
}

impl From<UserRow> for domain::User {
    fn from(row: UserRow) -> Self {
        domain::User {
            id: row.id,
            email: Email::from_trusted(row.email),
            role: row.role,
            two_factor: row.totp_secret.is_some(),
            created_at: utc(row.created_at),
            updated_at: utc(row.updated_at),
        }
    }
}

impl From<ApiKeyRow> for domain::ApiKey {
    fn from(row: ApiKeyRow) -> Self {
        domain::ApiKey {
            id: row.id,
            role: row.role,
            created_by: row.created_by,
            name: row.name,
            prefix: row.prefix,
            created_at: utc(row.created_at),
            last_used_at: row.last_used_at.map(utc),
            revoked_at: row.revoked_at.map(utc),
        }
    }
}
