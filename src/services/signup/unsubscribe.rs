//! Unsubscribe and preference links, and the one-click unsubscribe (RFC 8058) they lead to.

use super::RequestInfo;
use crate::domain::consent::{Actor, Purpose};
use crate::domain::{ContactId, ContactStatus, ListId};
use crate::error::Result;
use crate::services::consent::{leave_all_in, withdraw_in};
use crate::services::keys::{Keys, LinkKind};
use crate::storage;
use crate::storage::{Db, campaigns, contacts, lists};

/// What an unsubscribe link leaves: one list (or everything), and, in a campaign's
/// message, the recipient it was sent to (`<list>:<recipient>`), so the campaign counts it.
pub(super) struct UnsubscribeScope {
    pub(super) list: Option<ListId>,
    pub(super) recipient: Option<String>,
}

impl UnsubscribeScope {
    fn encode(list: Option<&str>, recipient: Option<&str>) -> Option<String> {
        match (list, recipient) {
            (list, Some(recipient)) => Some(format!("{}:{recipient}", list.unwrap_or(""))),
            (Some(list), None) => Some(list.to_owned()),
            (None, None) => None,
        }
    }

    fn parse(scope: Option<&str>) -> Self {
        let (list, recipient) = match scope {
            Some(scope) => scope.split_once(':').map_or((scope, None), |(list, recipient)| (list, Some(recipient))),
            None => ("", None),
        };
        Self { list: list.parse().ok(), recipient: recipient.filter(|r| !r.is_empty()).map(str::to_owned) }
    }
}

/// The signed link that unsubscribes a contact from one list (or, without a list, from
/// everything). It does not expire: an old mail's link must keep working.
pub fn unsubscribe_url(keys: &Keys, base_url: &str, contact: ContactId, list: Option<ListId>) -> String {
    let list = list.map(|id| id.to_string());
    unsubscribe_link(keys, base_url, contact, list.as_deref(), None)
}

/// As [`unsubscribe_url`]; in a campaign's message, `recipient` names the recipient it went
/// to, so that the campaign counts the unsubscribe.
pub fn unsubscribe_link(
    keys: &Keys,
    base_url: &str,
    contact: ContactId,
    list: Option<&str>,
    recipient: Option<&str>,
) -> String {
    let scope = UnsubscribeScope::encode(list, recipient);
    format!(
        "{base_url}/unsubscribe/{}",
        keys.sign_link(LinkKind::Unsubscribe, &contact.to_string(), scope.as_deref(), None)
    )
}

/// A fresh preference link: it expires (`preference_link_days`) and works until the
/// contact's links are revoked; every mail builds a new one, so a reader always holds one.
pub fn preferences_link(keys: &Keys, base_url: &str, contact: ContactId) -> String {
    format!("{base_url}/preferences/{}", keys.sign_preferences(&contact.to_string()))
}

/// What an unsubscribe link is about: `Some(Some(name))` for one list, `Some(None)` for
/// everything, `None` for a link that is not valid.
pub async fn unsubscribe_preview(db: &Db, keys: &Keys, token: &str) -> Result<Option<Option<String>>> {
    let Some(claims) = keys.verify_link(LinkKind::Unsubscribe, token) else {
        return Ok(None);
    };
    match UnsubscribeScope::parse(claims.scope.as_deref()).list {
        None => Ok(Some(None)),
        Some(list) => db.read(move |conn| Ok(Some(lists::find_list(conn, list)?.map(|l| l.name)))).await,
    }
}

/// Unsubscribes, at once and idempotently. A contact that no longer exists is answered
/// as unsubscribed too, so the answer reveals nothing. `false` for a link not valid.
pub async fn unsubscribe(db: &Db, keys: &Keys, token: &str, info: RequestInfo) -> Result<bool> {
    let Some(claims) = keys.verify_link(LinkKind::Unsubscribe, token) else {
        return Ok(false);
    };
    let Ok(contact_id) = claims.subject.parse::<ContactId>() else {
        return Ok(false);
    };
    let contact = db.read(move |conn| contacts::find_contact(conn, contact_id)).await?;
    let Some(contact) = contact else {
        return Ok(true);
    };
    let UnsubscribeScope { list: scope, recipient } = UnsubscribeScope::parse(claims.scope.as_deref());
    let leave_all = scope.is_none().then(|| keys.email_hash(&contact.email.key()));
    db.write(move |conn| {
        let evidence = info.evidence("unsubscribe");
        if let Some(recipient) = &recipient {
            campaigns::mark_outcome(conn, recipient, campaigns::Outcome::Unsubscribed, storage::now())?;
        }
        match (scope, leave_all) {
            (Some(list), _) => {
                withdraw_in(conn, contact.id, &[Purpose::List(list)], &evidence, &Actor::Public)?;
            }
            (None, Some(hash)) => {
                leave_all_in(conn, &hash, &contact, &evidence, &Actor::Public, ContactStatus::Unsubscribed)?
            }
            (None, None) => {}
        }
        Ok(true)
    })
    .await
}

// The preference centre's use cases are in `preferences.rs`.
