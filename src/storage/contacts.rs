//! The contacts table and its tag and list memberships.

use std::collections::HashMap;

use diesel::prelude::*;

use super::DbConnection;
use super::models::{ContactListRow, ContactRow, ContactTagRow};
use super::schema::{consent_events, contact_lists, contact_tags, contacts};
use crate::domain::contact::ContactRecord;
use crate::domain::segment::SqlConditions;
use crate::domain::{Contact, ContactId, ContactStatus, ListId};
use crate::error::Result;

/// What a contact listing is narrowed to. Every field is optional.
#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    pub list_id: Option<ListId>,
    pub tag: Option<String>,
    pub status: Option<ContactStatus>,
    /// A piece of the address, matched against the lower-cased address.
    pub email_contains: Option<String>,
    /// An ISO 3166-1 alpha-2 code.
    pub country: Option<String>,
    /// The start of the address, matched against the lower-cased address along its index.
    pub email_prefix: Option<String>,
}

pub fn insert_contact(
    conn: &mut DbConnection,
    row: &ContactRow,
    tags: &[ContactTagRow],
    lists: &[ContactListRow],
) -> QueryResult<()> {
    diesel::insert_into(contacts::table).values(row).execute(conn)?;
    insert_memberships(conn, tags, lists)
}

fn insert_memberships(conn: &mut DbConnection, tags: &[ContactTagRow], lists: &[ContactListRow]) -> QueryResult<()> {
    // One statement per row: MultiConnection does not offer multi-row inserts on SQLite.
    for tag in tags {
        diesel::insert_into(contact_tags::table).values(tag).execute(conn)?;
    }
    for list in lists {
        diesel::insert_into(contact_lists::table).values(list).execute(conn)?;
    }
    Ok(())
}

pub fn find_contact(conn: &mut DbConnection, id: ContactId) -> Result<Option<Contact>> {
    let row = contacts::table.find(id).select(ContactRow::as_select()).first(conn).optional()?;
    match row {
        Some(row) => Ok(with_memberships(conn, vec![row])?.pop()),
        None => Ok(None),
    }
}

pub fn find_contact_id_by_email_key(conn: &mut DbConnection, key: &str) -> QueryResult<Option<ContactId>> {
    contacts::table.filter(contacts::email_key.eq(key)).select(contacts::id).first(conn).optional()
}

/// The filters a contact listing shares, on any boxed query that has the contacts table.
macro_rules! filter_contact_columns {
    ($query:ident, $filter:expr) => {
        if let Some(status) = &$filter.status {
            $query = $query.filter(contacts::status.eq(*status));
        }
        if let Some(country) = &$filter.country {
            $query = $query.filter(contacts::country.eq(country.clone()));
        }
        if let Some(prefix) = &$filter.email_prefix {
            // The range walks the address index; LIKE keeps exactly the addresses starting so.
            let prefix = prefix.to_lowercase();
            $query = $query.filter(contacts::email_key.ge(prefix.clone()));
            $query = $query.filter(contacts::email_key.lt(format!("{prefix}\u{10ffff}")));
            $query = $query.filter(contacts::email_key.like(prefix_pattern(&prefix)).escape('\\'));
        }
        if let Some(text) = &$filter.email_contains {
            $query = $query.filter(contacts::email_key.like(like_pattern(&text.to_lowercase())).escape('\\'));
        }
    };
}

/// The filters of [`filter_contact_columns`], and the tag's.
macro_rules! filter_contacts {
    ($query:ident, $filter:expr) => {
        filter_contact_columns!($query, $filter);
        if let Some(tag) = &$filter.tag {
            $query = $query.filter(contacts::id.eq_any(
                contact_tags::table.filter(contact_tags::tag.eq(tag.clone())).select(contact_tags::contact_id),
            ));
        }
    };
}

/// Contacts after `after` in id order (creation order), at most `limit`.
pub fn list_contacts(
    conn: &mut DbConnection,
    filter: &ContactFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Contact>> {
    if let Some(list_id) = &filter.list_id {
        return list_members(conn, *list_id, filter, after, limit);
    }
    if let Some(tag) = &filter.tag {
        return tagged(conn, tag, filter, after, limit);
    }
    let mut query = contacts::table.select(ContactRow::as_select()).into_boxed();
    if let Some(after) = after {
        query = query.filter(contacts::id.gt(after.to_owned()));
    }
    filter_contacts!(query, filter);
    let rows = query.order(contacts::id.asc()).limit(limit).load(conn)?;
    with_memberships(conn, rows)
}

/// A page of a list's members: walked along the list's index (list, contact) in contact
/// order, so a page costs the same at the start or in the middle of a million members.
fn list_members(
    conn: &mut DbConnection,
    list_id: ListId,
    filter: &ContactFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Contact>> {
    let mut query = contact_lists::table
        .inner_join(contacts::table.on(contacts::id.eq(contact_lists::contact_id)))
        .filter(contact_lists::list_id.eq(list_id))
        .select(ContactRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(contact_lists::contact_id.gt(after.to_owned()));
    }
    filter_contacts!(query, filter);
    let rows = query.order(contact_lists::contact_id.asc()).limit(limit).load(conn)?;
    with_memberships(conn, rows)
}

/// A page of the contacts with a tag: walked along the tag's index (tag, contact) in
/// contact order, as a list's members are.
fn tagged(
    conn: &mut DbConnection,
    tag: &str,
    filter: &ContactFilter,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Contact>> {
    let mut query = contact_tags::table
        .inner_join(contacts::table.on(contacts::id.eq(contact_tags::contact_id)))
        .filter(contact_tags::tag.eq(tag.to_owned()))
        .select(ContactRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(contact_tags::contact_id.gt(after.to_owned()));
    }
    filter_contact_columns!(query, filter);
    let rows = query.order(contact_tags::contact_id.asc()).limit(limit).load(conn)?;
    with_memberships(conn, rows)
}

pub fn update_contact(conn: &mut DbConnection, row: &ContactRow) -> QueryResult<usize> {
    diesel::update(contacts::table.find(&row.id)).set(row).execute(conn)
}

/// Replaces a contact's tags and lists with the given ones.
pub fn replace_memberships(
    conn: &mut DbConnection,
    contact_id: ContactId,
    tags: Option<&[ContactTagRow]>,
    lists: Option<&[ContactListRow]>,
) -> QueryResult<()> {
    if let Some(tags) = tags {
        diesel::delete(contact_tags::table.filter(contact_tags::contact_id.eq(contact_id))).execute(conn)?;
        insert_memberships(conn, tags, &[])?;
    }
    if let Some(lists) = lists {
        // Keep the date a contact joined a list it stays on.
        let kept: Vec<ListId> = lists.iter().map(|l| l.list_id).collect();
        diesel::delete(
            contact_lists::table
                .filter(contact_lists::contact_id.eq(contact_id))
                .filter(contact_lists::list_id.ne_all(kept)),
        )
        .execute(conn)?;
        let present: Vec<ListId> = contact_lists::table
            .filter(contact_lists::contact_id.eq(contact_id))
            .select(contact_lists::list_id)
            .load(conn)?;
        let added: Vec<ContactListRow> = lists.iter().filter(|l| !present.contains(&l.list_id)).cloned().collect();
        insert_memberships(conn, &[], &added)?;
    }
    Ok(())
}

pub fn delete_contact(conn: &mut DbConnection, id: ContactId) -> QueryResult<usize> {
    diesel::delete(contacts::table.find(id)).execute(conn)
}

/// Loads the tags and lists of a page of contacts in two queries.
fn with_memberships(conn: &mut DbConnection, rows: Vec<ContactRow>) -> Result<Vec<Contact>> {
    let ids: Vec<ContactId> = rows.iter().map(|r| r.id).collect();
    let mut tags: HashMap<ContactId, Vec<String>> = HashMap::new();
    for (contact_id, tag) in contact_tags::table
        .filter(contact_tags::contact_id.eq_any(&ids))
        .select((contact_tags::contact_id, contact_tags::tag))
        .load::<(ContactId, String)>(conn)?
    {
        tags.entry(contact_id).or_default().push(tag);
    }
    let mut lists: HashMap<ContactId, Vec<ListId>> = HashMap::new();
    for (contact_id, list_id) in contact_lists::table
        .filter(contact_lists::contact_id.eq_any(&ids))
        .select((contact_lists::contact_id, contact_lists::list_id))
        .load::<(ContactId, ListId)>(conn)?
    {
        lists.entry(contact_id).or_default().push(list_id);
    }
    rows.into_iter()
        .map(|row| {
            let contact_tags = tags.remove(&row.id).unwrap_or_default();
            let contact_lists = lists.remove(&row.id).unwrap_or_default();
            row.into_contact(contact_tags, contact_lists)
        })
        .collect()
}

/// A LIKE pattern matching `text` anywhere, with LIKE's wildcards in `text` taken literally.
fn like_pattern(text: &str) -> String {
    format!("%{}", prefix_pattern(text))
}

/// A LIKE pattern matching what starts with `text`, its wildcards taken literally.
fn prefix_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Puts a contact on a list if it is not on it yet.
pub fn add_membership(
    conn: &mut DbConnection,
    contact_id: ContactId,
    list_id: ListId,
    at: chrono::NaiveDateTime,
) -> QueryResult<()> {
    let present: i64 = contact_lists::table
        .filter(contact_lists::contact_id.eq(contact_id))
        .filter(contact_lists::list_id.eq(list_id))
        .count()
        .get_result(conn)?;
    if present == 0 {
        let row = ContactListRow { contact_id, list_id, added_at: at };
        diesel::insert_into(contact_lists::table).values(&row).execute(conn)?;
    }
    Ok(())
}

pub fn remove_membership(conn: &mut DbConnection, contact_id: ContactId, list_id: ListId) -> QueryResult<usize> {
    diesel::delete(
        contact_lists::table
            .filter(contact_lists::contact_id.eq(contact_id))
            .filter(contact_lists::list_id.eq(list_id)),
    )
    .execute(conn)
}

pub fn update_status(
    conn: &mut DbConnection,
    contact_id: ContactId,
    status: ContactStatus,
    at: chrono::NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(contacts::table.find(contact_id))
        .set((contacts::status.eq(status), contacts::updated_at.eq(at)))
        .execute(conn)
}

/// Contacts by address key (imports merge by address).
pub fn find_rows_by_email_keys(conn: &mut DbConnection, keys: &[String]) -> QueryResult<Vec<ContactRow>> {
    let mut found = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(500) {
        found.extend(
            contacts::table.filter(contacts::email_key.eq_any(chunk)).select(ContactRow::as_select()).load(conn)?,
        );
    }
    Ok(found)
}

/// New contacts, several rows per statement.
pub fn insert_contacts(conn: &mut DbConnection, rows: &[ContactRow]) -> QueryResult<()> {
    for chunk in rows.chunks(500) {
        match conn {
            DbConnection::Postgres(pg) => diesel::insert_into(contacts::table).values(chunk).execute(pg)?,
            DbConnection::Sqlite(sqlite) => diesel::insert_into(contacts::table).values(chunk).execute(sqlite)?,
        };
    }
    Ok(())
}

/// Tags (contact id, tag), those already there kept.
pub fn add_tags(conn: &mut DbConnection, rows: &[(ContactId, String)]) -> QueryResult<()> {
    let rows: Vec<ContactTagRow> =
        rows.iter().map(|(contact_id, tag)| ContactTagRow { contact_id: *contact_id, tag: tag.clone() }).collect();
    for chunk in rows.chunks(500) {
        match conn {
            DbConnection::Postgres(pg) => {
                diesel::insert_into(contact_tags::table).values(chunk).on_conflict_do_nothing().execute(pg)?
            }
            DbConnection::Sqlite(sqlite) => {
                diesel::insert_or_ignore_into(contact_tags::table).values(chunk).execute(sqlite)?
            }
        };
    }
    Ok(())
}

/// Memberships (contact id, list id), those already there kept.
pub fn add_memberships(
    conn: &mut DbConnection,
    rows: &[(ContactId, ListId)],
    at: chrono::NaiveDateTime,
) -> QueryResult<()> {
    let rows: Vec<ContactListRow> =
        rows.iter().map(|&(contact_id, list_id)| ContactListRow { contact_id, list_id, added_at: at }).collect();
    for chunk in rows.chunks(500) {
        match conn {
            DbConnection::Postgres(pg) => {
                diesel::insert_into(contact_lists::table).values(chunk).on_conflict_do_nothing().execute(pg)?
            }
            DbConnection::Sqlite(sqlite) => {
                diesel::insert_or_ignore_into(contact_lists::table).values(chunk).execute(sqlite)?
            }
        };
    }
    Ok(())
}

pub fn find_contact_row_by_id(conn: &mut DbConnection, id: ContactId) -> QueryResult<Option<ContactRow>> {
    contacts::table.find(id).select(ContactRow::as_select()).first(conn).optional()
}

pub fn find_contact_row_by_email_key(conn: &mut DbConnection, key: &str) -> QueryResult<Option<ContactRow>> {
    contacts::table.filter(contacts::email_key.eq(key)).select(ContactRow::as_select()).first(conn).optional()
}

/// What a scan for a script needs besides the contact row.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanNeeds {
    pub tags: bool,
    pub lists: bool,
    pub consents: bool,
}

/// One batch of contacts in id order, for scripts, loading only what the script uses.
pub fn scan_batch(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
    needs: ScanNeeds,
    conditions: &SqlConditions,
) -> Result<Vec<ContactRecord>> {
    type Row = (ContactId, String, String, Option<String>, Option<String>, ContactStatus, chrono::NaiveDateTime);
    let mut query = contacts::table
        .select((
            contacts::id,
            contacts::email,
            contacts::attributes,
            contacts::company,
            contacts::country,
            contacts::status,
            contacts::created_at,
        ))
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(contacts::id.gt(after.to_owned()));
    }
    query = apply_conditions(query, conditions);
    let rows: Vec<Row> = query.order(contacts::id.asc()).limit(limit).load(conn)?;
    let ids: Vec<ContactId> = rows.iter().map(|r| r.0).collect();
    let mut tags: HashMap<ContactId, Vec<String>> = HashMap::new();
    if needs.tags && !ids.is_empty() {
        for (id, tag) in contact_tags::table
            .filter(contact_tags::contact_id.eq_any(&ids))
            .select((contact_tags::contact_id, contact_tags::tag))
            .load::<(ContactId, String)>(conn)?
        {
            tags.entry(id).or_default().push(tag);
        }
    }
    let mut lists: HashMap<ContactId, Vec<String>> = HashMap::new();
    if needs.lists && !ids.is_empty() {
        for (id, list) in contact_lists::table
            .filter(contact_lists::contact_id.eq_any(&ids))
            .select((contact_lists::contact_id, contact_lists::list_id))
            .load::<(ContactId, ListId)>(conn)?
        {
            lists.entry(id).or_default().push(list.to_string());
        }
    }
    let mut consents: HashMap<ContactId, Vec<(String, String, String, i64)>> = HashMap::new();
    let mut with_manifest: Vec<(ContactId, String, String)> = Vec::new();
    if needs.consents && !ids.is_empty() {
        for (id, events) in super::consent::list_consent_changes_for_contacts(conn, &ids)? {
            let current = crate::domain::consent::current_consents(&events);
            for consent in &current {
                if let Some(manifest) = &consent.manifest_id {
                    with_manifest.push((id, consent.purpose.to_string(), manifest.clone()));
                }
            }
            let state = current
                .into_iter()
                .map(|c| (c.purpose.to_string(), c.status.to_string(), c.basis.to_string(), c.granted_at.timestamp()))
                .collect();
            consents.insert(id, state);
        }
    }
    let mut naming_us: HashMap<ContactId, Vec<String>> = HashMap::new();
    if !with_manifest.is_empty() {
        let manifests: Vec<String> = with_manifest
            .iter()
            .map(|(_, _, m)| m.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let named = super::consent::manifests_naming_us(conn, &manifests)?;
        for (id, purpose, manifest) in with_manifest {
            if named.contains(&manifest) {
                naming_us.entry(id).or_default().push(purpose);
            }
        }
    }
    Ok(rows
        .into_iter()
        .map(|(id, email, attributes, company, country, status, created_at)| {
            let is_role_address = crate::domain::Email::from_trusted(email.clone()).is_role_address();
            ContactRecord {
                tags: tags.remove(&id).unwrap_or_default(),
                lists: lists.remove(&id).unwrap_or_default(),
                consents: consents.remove(&id).unwrap_or_default(),
                consents_naming_us: naming_us.remove(&id).unwrap_or_default(),
                id,
                email,
                company,
                country,
                status: status.to_string(),
                is_role_address,
                created_at: created_at.and_utc().timestamp(),
                attributes_json: attributes,
            }
        })
        .collect())
}

/// What a message needs of a contact: (id, email, attributes JSON, company, country).
pub type MailRow = (ContactId, String, String, Option<String>, Option<String>);

pub fn find_for_mail(conn: &mut DbConnection, ids: &[ContactId]) -> QueryResult<Vec<MailRow>> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        found.extend(
            contacts::table
                .filter(contacts::id.eq_any(chunk))
                .select((contacts::id, contacts::email, contacts::attributes, contacts::company, contacts::country))
                .load::<MailRow>(conn)?,
        );
    }
    Ok(found)
}

/// Contacts by id, in id order, with their memberships.
pub fn find_contacts(conn: &mut DbConnection, ids: &[ContactId]) -> Result<Vec<Contact>> {
    let rows = contacts::table
        .filter(contacts::id.eq_any(ids))
        .order(contacts::id.asc())
        .select(ContactRow::as_select())
        .load(conn)?;
    with_memberships(conn, rows)
}

type BoxedContacts<'a, S> = contacts::BoxedQuery<'a, super::MultiBackend, S>;

/// Narrows a contacts query to rows meeting every condition.
fn apply_conditions<'a, S>(mut query: BoxedContacts<'a, S>, conditions: &SqlConditions) -> BoxedContacts<'a, S> {
    for country in &conditions.countries {
        query = query.filter(contacts::country.eq(country.clone()));
    }
    for status in &conditions.statuses {
        query = query.filter(contacts::status.eq(status.clone()));
    }
    // Correlated EXISTS rather than IN (subquery): each row is looked up by the primary
    // key, where IN would rebuild the whole subquery for every batch of a scan.
    for tag in &conditions.tags {
        query = query.filter(diesel::dsl::exists(
            contact_tags::table
                .filter(contact_tags::contact_id.eq(contacts::id))
                .filter(contact_tags::tag.eq(tag.clone())),
        ));
    }
    for list in &conditions.lists {
        query = query.filter(diesel::dsl::exists(
            contact_lists::table
                .filter(contact_lists::contact_id.eq(contacts::id))
                .filter(contact_lists::list_id.eq(list.clone())),
        ));
    }
    if !conditions.audience_lists.is_empty() {
        let purposes: Vec<String> = conditions.audience_lists.iter().map(|list| format!("list:{list}")).collect();
        query = query.filter(
            diesel::dsl::exists(
                contact_lists::table
                    .filter(contact_lists::contact_id.eq(contacts::id))
                    .filter(contact_lists::list_id.eq_any(conditions.audience_lists.clone())),
            )
            .or(diesel::dsl::exists(
                consent_events::table
                    .filter(consent_events::contact_id.eq(contacts::id))
                    .filter(consent_events::purpose.eq_any(purposes)),
            )),
        );
    }
    query
}

/// How many contacts meet every condition, counted by the database.
pub fn count_matching(conn: &mut DbConnection, conditions: &SqlConditions) -> Result<i64> {
    let query = apply_conditions(contacts::table.into_boxed(), conditions);
    Ok(query.count().get_result(conn)?)
}

/// The language a contact signed up in, if one is known.
pub fn find_contact_locale(conn: &mut DbConnection, id: ContactId) -> QueryResult<Option<String>> {
    let found: Option<Option<String>> = contacts::table.find(id).select(contacts::locale).first(conn).optional()?;
    Ok(found.flatten())
}

pub fn update_contact_locale(conn: &mut DbConnection, id: ContactId, locale: &str) -> QueryResult<usize> {
    diesel::update(contacts::table.find(id)).set(contacts::locale.eq(locale)).execute(conn)
}
