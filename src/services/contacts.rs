//! The address book: creating, changing, finding and deleting contacts.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::keys::Keys;
use super::pagination::{Page, PageRequest};
use super::webhooks;
use crate::domain::contact::{MergeRule, Profile};
use crate::domain::partner::EventType;
use crate::domain::{Contact, ContactId, ContactStatus, Country, Email, ListId, Tag};
use crate::error::{Error, FieldError, Result};
use crate::storage::contacts::{self as repo, ContactFilter};
use crate::storage::models::{ContactListRow, ContactRow, ContactTagRow};
use crate::storage::{self, Db, DbConnection, lists};

/// A contact to create, parsed.
#[derive(Debug, Clone)]
pub struct NewContact {
    pub email: Email,
    pub attributes: Map<String, Value>,
    pub tags: BTreeSet<Tag>,
    pub lists: BTreeSet<ListId>,
    pub company: Option<String>,
    pub country: Option<Country>,
}

/// Changes to a contact, parsed. `None` leaves a field as it is; for `company` and
/// `country`, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct ContactChanges {
    pub email: Option<Email>,
    /// A JSON merge patch (RFC 7396) applied to the attributes.
    pub attributes: Option<Map<String, Value>>,
    pub tags: Option<BTreeSet<Tag>>,
    pub lists: Option<BTreeSet<ListId>>,
    pub company: Option<Option<String>>,
    pub country: Option<Option<Country>>,
}

/// A listing's filters, parsed.
#[derive(Debug, Clone, Default)]
pub struct ContactQuery {
    pub list: Option<ListId>,
    pub tag: Option<Tag>,
    pub status: Option<ContactStatus>,
    pub email: Option<String>,
    /// The start of the address (along its index: quick over any number of contacts).
    pub email_prefix: Option<String>,
    pub country: Option<Country>,
}

impl ContactQuery {
    fn filter(self) -> ContactFilter {
        ContactFilter {
            list_id: self.list,
            tag: self.tag.map(|tag| tag.as_str().to_owned()),
            status: self.status,
            email_contains: self.email,
            country: self.country.map(|c| c.as_str().to_owned()),
            email_prefix: self.email_prefix,
        }
    }
}

/// One change made to every contact a query finds.
#[derive(Debug, Clone)]
pub enum BulkChange {
    AddTag(Tag),
    RemoveTag(Tag),
    AddToList(ListId),
    RemoveFromList(ListId),
}

/// What a bulk change did, and where it stopped when more contacts remain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Contacts the query found (up to the limit).
    pub found: u64,
    /// Contacts changed (the others had the change already).
    pub changed: u64,
    /// Contacts left off a list because their address is suppressed.
    pub suppressed: u64,
    /// The contacts after this one remain, when the limit was reached.
    pub next_cursor: Option<String>,
}

/// Contacts a bulk change goes through per transaction.
const BULK_CHUNK: i64 = 500;

/// Makes one change to the contacts `query` finds, after `after`, at most `limit` of them,
/// by the rules of [`update_contact`]: a suppressed address is not put on a list (it is
/// counted), and each change is announced to webhooks. Each chunk of contacts is changed
/// in one transaction.
pub async fn bulk_change(
    db: &Db,
    keys: &Keys,
    query: ContactQuery,
    change: BulkChange,
    after: Option<String>,
    limit: u64,
) -> Result<BulkOutcome> {
    if let BulkChange::AddToList(list) | BulkChange::RemoveFromList(list) = &change {
        let wanted = BTreeSet::from([*list]);
        db.read(move |conn| check_lists_exist(conn, &wanted)).await?;
    }
    let filter = query.filter();
    let mut outcome = BulkOutcome::default();
    let mut after = after;
    loop {
        let room = (limit - outcome.found).min(BULK_CHUNK as u64) as i64;
        let (filter, change, keys, from) = (filter.clone(), change.clone(), keys.clone(), after.clone());
        let (found, changed, suppressed, last) = db
            .write(move |conn| {
                let contacts = repo::list_contacts(conn, &filter, from.as_deref(), room)?;
                let (mut changed, mut suppressed) = (0u64, 0u64);
                let now = storage::now();
                for contact in &contacts {
                    let (mut tags, mut lists) = (contact.tags.clone(), contact.lists.clone());
                    let done = match &change {
                        BulkChange::AddTag(tag) => tags.insert(tag.clone()),
                        BulkChange::RemoveTag(tag) => tags.remove(tag),
                        BulkChange::AddToList(list) if !lists.contains(list) => {
                            let hash = keys.email_hash(&contact.email.key());
                            match ensure_not_suppressed(conn, &hash) {
                                Ok(()) => {}
                                Err(Error::Conflict(_)) => {
                                    suppressed += 1;
                                    continue;
                                }
                                Err(other) => return Err(other),
                            }
                            lists.insert(*list)
                        }
                        BulkChange::AddToList(_) => false,
                        BulkChange::RemoveFromList(list) => lists.remove(list),
                    };
                    if !done {
                        continue;
                    }
                    let tag_rows = (tags != contact.tags).then(|| tag_rows(contact.id, &tags));
                    let list_rows = (lists != contact.lists).then(|| list_rows(contact.id, &lists, now));
                    repo::replace_memberships(conn, contact.id, tag_rows.as_deref(), list_rows.as_deref())?;
                    let updated = repo::find_contact(conn, contact.id)?
                        .ok_or_else(|| Error::internal("a changed contact vanished"))?;
                    webhooks::emit(
                        conn,
                        EventType::ContactUpdated,
                        json!({"contact": webhooks::contact_json(&updated)}),
                    )?;
                    changed += 1;
                }
                Ok((contacts.len() as u64, changed, suppressed, contacts.last().map(|c| c.id.to_string())))
            })
            .await?;
        outcome.found += found;
        outcome.changed += changed;
        outcome.suppressed += suppressed;
        after = last;
        if (found as i64) < room || after.is_none() {
            return Ok(outcome);
        }
        if outcome.found >= limit {
            // More may follow: the next run starts after the last contact seen.
            outcome.next_cursor = after;
            return Ok(outcome);
        }
    }
}

pub async fn create_contact(db: &Db, keys: &Keys, new: NewContact) -> Result<Contact> {
    let id = ContactId::new();
    let suppression_hash = keys.email_hash(&new.email.key());
    db.write(move |conn| {
        check_lists_exist(conn, &new.lists)?;
        if !new.lists.is_empty() {
            ensure_not_suppressed(conn, &suppression_hash)?;
        }
        ensure_email_free(conn, &new.email, None)?;
        let now = storage::now();
        let row = ContactRow {
            id,
            email: new.email.as_str().to_owned(),
            email_key: new.email.key(),
            attributes: Value::Object(new.attributes).to_string(),
            company: new.company,
            country: new.country.map(|c| c.as_str().to_owned()),
            status: ContactStatus::Active,
            created_at: now,
            updated_at: now,
        };
        let tags = tag_rows(row.id, &new.tags);
        let lists = list_rows(row.id, &new.lists, now);
        storage::or_conflict(repo::insert_contact(conn, &row, &tags, &lists), duplicate_email)?;
        let contact = repo::find_contact(conn, row.id)?.ok_or_else(|| Error::internal("a created contact vanished"))?;
        webhooks::emit(conn, EventType::ContactCreated, json!({"contact": webhooks::contact_json(&contact)}))?;
        Ok(contact)
    })
    .await
}

/// Merges `incoming` into a stored contact by `rule` (a form or a partner fills what is
/// unknown, an import overwrites); answers whether it changed, for the caller to save it.
/// The one place where new values meet a known contact.
pub fn merge_into_row(row: &mut ContactRow, incoming: &Profile, rule: MergeRule) -> bool {
    let mut profile = Profile {
        attributes: serde_json::from_str(&row.attributes).unwrap_or_default(),
        company: row.company.take(),
        country: row.country.take(),
    };
    let changed = profile.merge(incoming, rule);
    row.company = profile.company;
    row.country = profile.country;
    if changed {
        row.attributes = Value::Object(profile.attributes).to_string();
    }
    changed
}

/// Inserts a new active contact with no lists or tags (a signup's or a partner's lead)
/// and tells subscribers; answers its id. Call inside a write transaction.
pub fn insert_new_in(
    conn: &mut DbConnection,
    email: &Email,
    attributes: &Map<String, Value>,
    company: Option<String>,
    country: Option<&Country>,
    now: chrono::NaiveDateTime,
    listeners: &webhooks::Listeners,
) -> Result<ContactId> {
    let row = ContactRow {
        id: ContactId::new(),
        email: email.as_str().to_owned(),
        email_key: email.key(),
        attributes: Value::Object(attributes.clone()).to_string(),
        company,
        country: country.map(|c| c.as_str().to_owned()),
        status: ContactStatus::Active,
        created_at: now,
        updated_at: now,
    };
    // Two first signups of one address at once: the later answers a conflict, which the
    // caller may try again (it then finds the contact).
    storage::or_conflict(repo::insert_contact(conn, &row, &[], &[]), duplicate_email)?;
    listeners.emit_contact(conn, EventType::ContactCreated, row.id)?;
    Ok(row.id)
}

pub async fn find_contact(db: &Db, id: ContactId) -> Result<Contact> {
    db.read(move |conn| repo::find_contact(conn, id)?.ok_or_else(|| not_found(id))).await
}

pub async fn list_contacts(db: &Db, query: ContactQuery, page: PageRequest) -> Result<Page<Contact>> {
    let filter = query.filter();
    db.read(move |conn| {
        let rows = repo::list_contacts(conn, &filter, page.after.as_deref(), page.fetch_limit())?;
        Ok(page.page(rows, |contact| contact.id.to_string()))
    })
    .await
}

pub async fn update_contact(db: &Db, keys: &Keys, id: ContactId, changes: ContactChanges) -> Result<Contact> {
    let keys = keys.clone();
    db.write(move |conn| {
        let current = repo::find_contact(conn, id)?.ok_or_else(|| not_found(id))?;
        let suppression_hash = keys.email_hash(&changes.email.as_ref().unwrap_or(&current.email).key());
        if let Some(lists) = &changes.lists {
            check_lists_exist(conn, lists)?;
            if lists.iter().any(|list| !current.lists.contains(list)) {
                ensure_not_suppressed(conn, &suppression_hash)?;
            }
        }
        let now = storage::now();
        if let Some(email) = &changes.email {
            ensure_email_free(conn, email, Some(id))?;
        }
        let email = changes.email.unwrap_or(current.email);
        let mut attributes = Value::Object(current.attributes);
        if let Some(patch) = changes.attributes {
            merge_patch(&mut attributes, Value::Object(patch));
        }
        let row = ContactRow {
            id,
            email: email.as_str().to_owned(),
            email_key: email.key(),
            attributes: attributes.to_string(),
            company: changes.company.unwrap_or(current.company),
            country: changes.country.unwrap_or(current.country).map(|c| c.as_str().to_owned()),
            status: current.status,
            created_at: current.created_at.naive_utc(),
            updated_at: now,
        };
        storage::or_conflict(repo::update_contact(conn, &row), duplicate_email)?;
        let tags = changes.tags.map(|tags| tag_rows(row.id, &tags));
        let lists = changes.lists.map(|lists| list_rows(row.id, &lists, now));
        repo::replace_memberships(conn, row.id, tags.as_deref(), lists.as_deref())?;
        let contact =
            repo::find_contact(conn, row.id)?.ok_or_else(|| Error::internal("an updated contact vanished"))?;
        webhooks::emit(conn, EventType::ContactUpdated, json!({"contact": webhooks::contact_json(&contact)}))?;
        Ok(contact)
    })
    .await
}

/// Applies a JSON merge patch (RFC 7396): `null` removes a key, objects merge key by
/// key, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(&key);
            } else {
                merge_patch(target.entry(key).or_insert(Value::Null), value);
            }
        }
    }
}

/// Lists are for people who may be mailed; a suppressed address (it left everything, or
/// was erased) comes back only through a double opt-in it confirms.
fn ensure_not_suppressed(conn: &mut DbConnection, suppression_hash: &str) -> Result<()> {
    if crate::storage::consent::is_suppressed(conn, suppression_hash)? {
        return Err(Error::Conflict(
            "this address is suppressed (it unsubscribed from everything or was erased): it cannot be put on lists; \
             it can come back only by confirming a double opt-in through a form"
                .to_owned(),
        ));
    }
    Ok(())
}

fn check_lists_exist(conn: &mut DbConnection, wanted: &BTreeSet<ListId>) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let ids: Vec<ListId> = wanted.iter().copied().collect();
    let existing = lists::find_existing_list_ids(conn, &ids)?;
    let errors: Vec<FieldError> = ids
        .iter()
        .filter(|id| !existing.contains(id))
        .map(|id| FieldError::new("lists", format!("there is no list {id}")))
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(Error::Validation(errors)) }
}

/// A 409 naming the contact that already has this address (other than `except`).
fn ensure_email_free(conn: &mut DbConnection, email: &Email, except: Option<ContactId>) -> Result<()> {
    match repo::find_contact_id_by_email_key(conn, &email.key())? {
        Some(existing) if Some(existing) != except => {
            Err(Error::Conflict(format!("a contact with the e-mail {email} already exists: {existing}")))
        }
        _ => Ok(()),
    }
}

/// A unique violation that slipped past [`ensure_email_free`] (two requests at once).
fn duplicate_email() -> String {
    "a contact with this e-mail already exists".to_owned()
}

fn tag_rows(contact_id: ContactId, tags: &BTreeSet<Tag>) -> Vec<ContactTagRow> {
    tags.iter().map(|tag| ContactTagRow { contact_id, tag: tag.as_str().to_owned() }).collect()
}

fn list_rows(contact_id: ContactId, lists: &BTreeSet<ListId>, now: chrono::NaiveDateTime) -> Vec<ContactListRow> {
    lists.iter().map(|&list_id| ContactListRow { contact_id, list_id, added_at: now }).collect()
}

fn not_found(id: ContactId) -> Error {
    Error::NotFound(format!("there is no contact {id}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::merge_patch;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, json!({"a": "z", "c": {"f": null}, "n": [1]}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}, "n": [1]}));
    }
}
