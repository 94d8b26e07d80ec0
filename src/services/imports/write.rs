//! Writing a chunk of rows: contacts merged, consent events recorded, suppressed addresses
//! skipped, all in the chunk's one transaction.

use std::collections::{BTreeSet, HashMap};

use super::decode::{Record, Row};
use super::{Plan, Report, RowError};
use crate::domain::ContactId;
use crate::domain::consent::{Actor, ConsentAction, ConsentStatus, Evidence, Purpose, current_consents};
use crate::domain::contact::{MergeRule, Profile};
use crate::domain::{ContactStatus, ListId};
use crate::error::Result;
use crate::services::keys::Keys;
use crate::storage;
use crate::storage::DbConnection;
use crate::storage::consent::NewConsentEvent;
use crate::storage::models::ContactRow;

/// Stores one chunk (in the caller's transaction); answers its counts.
pub(super) fn store_chunk(
    conn: &mut DbConnection,
    keys: &Keys,
    plan: &Plan,
    chunk: &[Record],
    first_seen: &[bool],
) -> Result<Report> {
    use crate::storage::contacts as contacts_repo;
    let mut report = Report::default();
    let valid: Vec<(&Record, &Row, bool)> = chunk
        .iter()
        .zip(first_seen)
        .filter_map(|(record, first)| match &record.row {
            Ok(row) => Some((record, row, *first)),
            Err(reason) => {
                report.invalid += 1;
                report.errors.push(RowError { line: record.line, reason: reason.clone() });
                None
            }
        })
        .collect();
    let email_keys: Vec<String> = valid.iter().map(|(_, row, _)| row.email.key()).collect();
    let hashes: Vec<String> = email_keys.iter().map(|key| keys.email_hash(key)).collect();
    let suppressed = storage::consent::suppressed_among(conn, &hashes)?;
    let mut existing: HashMap<String, ContactRow> = contacts_repo::find_rows_by_email_keys(conn, &email_keys)?
        .into_iter()
        .map(|row| (row.email_key.clone(), row))
        .collect();
    let now = storage::now();
    // The contacts this chunk writes, by address, in the order first met.
    let mut order: Vec<String> = Vec::new();
    let mut pending: HashMap<String, (ContactRow, bool, BTreeSet<String>, BTreeSet<ListId>)> = HashMap::new();
    for ((_, row, first), (key, hash)) in valid.iter().zip(email_keys.iter().zip(&hashes)) {
        if suppressed.contains(hash) {
            report.suppressed += 1;
            continue;
        }
        if let Some(reason) = &row.left {
            // The person left where the file comes from: that is remembered, as here.
            leave_in(conn, hash, existing.remove(key), reason, &plan.actor)?;
            report.suppressed += 1;
            continue;
        }
        if !first {
            report.duplicates += 1;
        }
        let entry = match pending.get_mut(key) {
            Some(entry) => entry,
            None => {
                let (contact, new) = match existing.remove(key) {
                    Some(contact) => {
                        if *first {
                            report.updated += 1;
                        }
                        (contact, false)
                    }
                    None => {
                        if *first {
                            report.imported += 1;
                        }
                        (
                            ContactRow {
                                id: ContactId::new(),
                                email: row.email.to_string(),
                                email_key: key.clone(),
                                attributes: "{}".to_owned(),
                                company: None,
                                country: None,
                                status: ContactStatus::Active,
                                created_at: now,
                                updated_at: now,
                            },
                            true,
                        )
                    }
                };
                order.push(key.clone());
                pending.entry(key.clone()).or_insert((contact, new, BTreeSet::new(), BTreeSet::new()))
            }
        };
        let (contact, _, tags, lists) = entry;
        // The admin's own file: its values replace the stored ones.
        let incoming = Profile {
            attributes: row.attributes.clone(),
            company: row.company.clone(),
            country: row.country.as_ref().map(|c| c.as_str().to_owned()),
        };
        crate::services::contacts::merge_into_row(contact, &incoming, MergeRule::Overwrite);
        contact.updated_at = now;
        tags.extend(row.tags.iter().map(|t| t.as_str().to_owned()));
        lists.extend(row.lists.iter().copied());
    }
    let (mut new_rows, mut changed) = (Vec::new(), Vec::new());
    let mut tag_rows = Vec::new();
    let mut list_rows = Vec::new();
    let mut grants: Vec<(ContactId, ListId, bool)> = Vec::new();
    for key in &order {
        let Some((contact, new, tags, lists)) = pending.remove(key) else {
            continue;
        };
        for tag in tags {
            tag_rows.push((contact.id, tag));
        }
        for list in lists {
            list_rows.push((contact.id, list));
            grants.push((contact.id, list, new));
        }
        if new { new_rows.push(contact) } else { changed.push(contact) }
    }
    contacts_repo::insert_contacts(conn, &new_rows)?;
    for contact in &changed {
        contacts_repo::update_contact(conn, contact)?;
    }
    contacts_repo::add_tags(conn, &tag_rows)?;
    contacts_repo::add_memberships(conn, &list_rows, now)?;
    if let Some(basis) = plan.basis {
        // Consent is recorded only where there is none for the list yet: an import never
        // replaces a stronger basis, and never undoes a withdrawal.
        let known: Vec<ContactId> = grants.iter().filter(|(_, _, new)| !*new).map(|(id, _, _)| *id).collect();
        let mut current: HashMap<ContactId, Vec<(Purpose, ConsentStatus)>> = HashMap::new();
        for (id, events) in storage::consent::list_consent_changes_for_contacts(conn, &known)? {
            current.insert(id, current_consents(&events).into_iter().map(|c| (c.purpose, c.status)).collect());
        }
        let events: Vec<NewConsentEvent> = grants
            .into_iter()
            .filter(|(id, list, _)| {
                current.get(id).is_none_or(|states| !states.iter().any(|(p, _)| *p == Purpose::List(*list)))
            })
            .map(|(contact_id, list, _)| NewConsentEvent {
                contact_id,
                email_key: None,
                purpose: Purpose::List(list),
                action: ConsentAction::Granted,
                basis,
                requires_confirmation: false,
                evidence: plan.evidence.clone(),
                actor: plan.actor.clone(),
            })
            .collect();
        storage::consent::append_events(conn, events)?;
    }
    Ok(report)
}

/// Suppresses an address whose row says the person left and, if it is a contact here,
/// withdraws what it receives as leaving everything does.
pub(super) fn leave_in(
    conn: &mut DbConnection,
    hash: &str,
    contact: Option<ContactRow>,
    reason: &str,
    actor: &str,
) -> Result<()> {
    storage::consent::insert_suppression(conn, hash, reason)?;
    let Some(row) = contact else {
        return Ok(());
    };
    let Some(contact) = storage::contacts::find_contact(conn, row.id)? else {
        return Ok(());
    };
    let status = match reason {
        "bounced" => ContactStatus::Bounced,
        "complained" => ContactStatus::Complained,
        _ => ContactStatus::Unsubscribed,
    };
    // The job keeps its creator as text; the withdrawals name the same actor.
    let actor = match actor.split_once(':') {
        Some(("user", id)) => id.parse().map_or(Actor::System, Actor::User),
        Some(("api_key", id)) => id.parse().map_or(Actor::System, Actor::ApiKey),
        _ => Actor::System,
    };
    let evidence = Evidence { method: "import".to_owned(), ..Evidence::default() };
    crate::services::consent::leave_all_in(conn, hash, &contact, &evidence, &actor, status)
}
