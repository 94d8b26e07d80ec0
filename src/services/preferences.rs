//! The preference centre: what the holder of a person's preference link sees and may do.
//!
//! A preference link is mailed to the person, but it can be forwarded, and staff can read
//! it through the API; so it is trusted only for what undoes itself or protects the person:
//! unticking lists and leaving everything act at once; ticking a list again starts a
//! double opt-in (the person confirms from their mailbox); downloading or erasing the data
//! needs a fresh single-use link mailed to the address, and a press on its page.
//! A link expires (`preference_link_days`) and stops working once the contact's links
//! are revoked.

use chrono::{TimeDelta, Utc};

use super::Services;
use super::confirmations::{self, Ask};
use super::consent::{self, ContactExport, leave_all_in, load_contact_consents, withdraw_in};
use super::keys::{Keys, LinkKind, PreferenceClaims};
use super::mailer;
use super::signup::RequestInfo;
use crate::domain::consent::{Actor, ConsentStatus, Purpose};
use crate::domain::{Contact, ContactId, ContactStatus, List, ListId};
use crate::error::{Error, Result};
use crate::mail::{self, Draft};
use crate::storage::preferences::{self as repo, DataRequestRow};
use crate::storage::{self, Db, DbConnection, contacts, lists, outbox};

/// The method recorded for what the preference centre does.
pub const METHOD: &str = "preference_centre";
/// The outbox kind of the mails carrying a data request's link (capped per day).
pub const DATA_REQUEST_MAIL: &str = "data_request";

/// The words beside a list's box in the preference centre, in the page's language: the
/// page renders them and a re-ticked box records them, so both are the same words.
pub fn box_text(locale: &str, list_name: &str) -> String {
    crate::i18n::text(locale, "preference_box").replace("{list}", list_name)
}

/// Where a list stands for the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListState {
    Receives,
    /// Ticked again; waiting for the person's confirmation.
    Pending,
    NotReceived,
}

/// One list of the page.
#[derive(Debug, Clone)]
pub struct ListChoice {
    pub list: List,
    pub state: ListState,
    /// The words beside its box.
    pub text: String,
}

/// A person's view of their subscriptions.
#[derive(Debug, Clone)]
pub struct Preferences {
    pub contact: Contact,
    /// Every list the person has been asked about or is on.
    pub lists: Vec<ListChoice>,
}

/// What saving the page did.
#[derive(Debug, Clone)]
pub struct Saved {
    pub preferences: Preferences,
    /// A confirmation mail was requested for lists ticked again.
    pub confirmation_requested: bool,
}

/// What a data request's link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataAction {
    Download,
    Erase,
}

impl DataAction {
    fn as_str(self) -> &'static str {
        match self {
            DataAction::Download => "download",
            DataAction::Erase => "erase",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "download" => Some(DataAction::Download),
            "erase" => Some(DataAction::Erase),
            _ => None,
        }
    }
}

/// What a data request's link did.
#[derive(Debug, Clone)]
pub enum DataOutcome {
    Downloaded(Box<ContactExport>),
    Erased,
}

/// The contact a preference token opens, if the token is genuine, not expired and signed
/// after the contact's links were last revoked.
fn contact_of_token(conn: &mut DbConnection, keys: &Keys, token: &str) -> Result<Option<ContactId>> {
    contact_of_claims(conn, keys.verify_preferences(token))
}

fn contact_of_claims(conn: &mut DbConnection, claims: Option<PreferenceClaims>) -> Result<Option<ContactId>> {
    let Some(claims) = claims else {
        return Ok(None);
    };
    let Ok(id) = claims.contact.parse::<ContactId>() else {
        return Ok(None);
    };
    if let Some(revoked_at) = repo::find_links_revoked_at(conn, id)?
        && claims.issued_at.naive_utc() <= revoked_at
    {
        return Ok(None);
    }
    Ok(Some(id))
}

/// Ends every preference link issued so far for a contact; the next mail carries a new one.
pub async fn revoke_links(db: &Db, id: ContactId) -> Result<()> {
    db.write(move |conn| {
        contacts::find_contact(conn, id)?.ok_or_else(|| Error::NotFound(format!("there is no contact {id}")))?;
        repo::upsert_links_revoked_at(conn, id, storage::now())?;
        Ok(())
    })
    .await
}

/// The proof bundle of the contact a proof link (from a consent receipt) opens; `None`
/// when the link is not genuine, has expired or was revoked with the preference links.
pub async fn consent_proof(db: &Db, keys: &Keys, token: &str) -> Result<Option<super::ledger::ProofBundle>> {
    let claims = keys.verify_proof(token);
    let Some(id) = db.read(move |conn| contact_of_claims(conn, claims)).await? else {
        return Ok(None);
    };
    super::ledger::contact_proof(db, id).await.map(Some)
}

pub async fn preferences(db: &Db, keys: &Keys, token: &str, locale: &str) -> Result<Option<Preferences>> {
    let (keys, token, locale) = (keys.clone(), token.to_owned(), locale.to_owned());
    db.read(move |conn| match contact_of_token(conn, &keys, &token)? {
        Some(id) => load_preferences(conn, id, &locale),
        None => Ok(None),
    })
    .await
}

fn load_preferences(conn: &mut DbConnection, id: ContactId, locale: &str) -> Result<Option<Preferences>> {
    let Some(contact) = contacts::find_contact(conn, id)? else {
        return Ok(None);
    };
    let current = load_contact_consents(conn, id)?.current;
    let mut list_ids: Vec<ListId> = current.iter().filter_map(|c| c.purpose.list_id()).collect();
    let members: Vec<ListId> = contact.lists.iter().copied().filter(|id| !list_ids.contains(id)).collect();
    list_ids.extend(members);
    let mut shown = Vec::new();
    for list_id in list_ids {
        if let Some(row) = lists::find_list(conn, list_id)? {
            let pending =
                current.iter().any(|c| c.purpose == Purpose::List(list_id) && c.status == ConsentStatus::Pending);
            let state = if contact.lists.contains(&list_id) {
                ListState::Receives
            } else if pending {
                ListState::Pending
            } else {
                ListState::NotReceived
            };
            let list = List::from(row);
            let text = box_text(locale, &list.name);
            shown.push(ListChoice { list, state, text });
        }
    }
    Ok(Some(Preferences { contact, lists: shown }))
}

/// Saves the lists a person chose. Each one unticked is withdrawn at once. Each one ticked
/// that they do not receive is recorded as a `single_opt_in` grant with the words beside
/// its box, waiting for confirmation, and a confirmation mail goes to the address: whoever
/// holds the link cannot subscribe the person (nor bring back someone who left).
pub async fn save_preferences(
    services: &Services,
    token: &str,
    chosen: Vec<ListId>,
    info: RequestInfo,
) -> Result<Option<Saved>> {
    let (keys, config, token) = (services.keys.clone(), services.signup.clone(), token.to_owned());
    let saved = services
        .db
        .write(move |conn| {
            let Some(id) = contact_of_token(conn, &keys, &token)? else {
                return Ok(None);
            };
            let Some(preferences) = load_preferences(conn, id, &info.locale)? else {
                return Ok(None);
            };
            let contact_id = id;
            let evidence = info.evidence(METHOD);
            let mut asks = Vec::new();
            for choice in &preferences.lists {
                let wanted = choice.list.id;
                let wanted = chosen.contains(&wanted);
                match choice.state {
                    ListState::Receives if !wanted => {
                        withdraw_in(conn, contact_id, &[Purpose::List(choice.list.id)], &evidence, &Actor::Public)?;
                    }
                    ListState::NotReceived if wanted => {
                        asks.push(Ask {
                            purpose: Purpose::List(choice.list.id),
                            consent_text: Some(choice.text.clone()),
                        });
                    }
                    _ => {}
                }
            }
            let confirmation_requested = !asks.is_empty();
            if confirmation_requested {
                let asking = confirmations::Asking {
                    contact: &preferences.contact,
                    asks: &asks,
                    evidence: &evidence,
                    actor: &Actor::Public,
                    locale: &info.locale,
                };
                confirmations::start_in(conn, &keys, &config, asking)?;
            }
            let Some(preferences) = load_preferences(conn, id, &info.locale)? else {
                return Ok(None);
            };
            Ok(Some(Saved { preferences, confirmation_requested }))
        })
        .await?;
    if saved.is_some() {
        services.wake.mail.notify_one();
    }
    Ok(saved)
}

/// "Unsubscribe from everything": at once, and the address suppressed. A contact that no
/// longer exists is answered alike.
pub async fn leave_all(db: &Db, keys: &Keys, token: &str, info: RequestInfo) -> Result<bool> {
    let (keys, token) = (keys.clone(), token.to_owned());
    db.write(move |conn| {
        let Some(id) = contact_of_token(conn, &keys, &token)? else {
            return Ok(false);
        };
        let Some(contact) = contacts::find_contact(conn, id)? else {
            return Ok(true);
        };
        let hash = keys.email_hash(&contact.email.key());
        leave_all_in(conn, &hash, &contact, &info.evidence(METHOD), &Actor::Public, ContactStatus::Unsubscribed)?;
        Ok(true)
    })
    .await
}

/// "Send me a link to download (or delete) my data": records a single-use request and
/// mails its link to the address, within the daily cap of confirmation mails. `false` for
/// a preference link that is not valid.
pub async fn request_data(services: &Services, token: &str, action: DataAction, locale: &str) -> Result<bool> {
    let (keys, config) = (services.keys.clone(), services.signup.clone());
    let (token, locale) = (token.to_owned(), locale.to_owned());
    let valid = services
        .db
        .write(move |conn| {
            let Some(id) = contact_of_token(conn, &keys, &token)? else {
                return Ok(false);
            };
            let Some(contact) = contacts::find_contact(conn, id)? else {
                return Ok(false);
            };
            let now = storage::now();
            let expires_at = Utc::now() + config.confirmation_ttl;
            let request = DataRequestRow {
                id: uuid::Uuid::now_v7().to_string(),
                contact_id: id,
                action: action.as_str().to_owned(),
                created_at: now,
                expires_at: expires_at.naive_utc(),
                used_at: None,
            };
            repo::insert_data_request(conn, &request)?;
            let email_key = contact.email.key();
            let since = now - TimeDelta::hours(24);
            if outbox::count_recent(conn, &email_key, DATA_REQUEST_MAIL, since)?
                >= i64::from(config.confirmation_mails_per_day.max(1))
            {
                tracing::info!("data request mail withheld: the address reached its daily cap");
                return Ok(true);
            }
            let link_token = keys.sign_link(LinkKind::DataRequest, &request.id, None, Some(expires_at));
            let link = format!("{}/data-requests/{link_token}", config.base_url);
            let subject = match action {
                DataAction::Download => "download_mail_subject",
                DataAction::Erase => "erase_mail_subject",
            };
            let mut text = crate::i18n::text(&locale, "data_mail_text").replace("{link}", &link);
            if let Some(brand) = super::brands::brand_for_in(conn, None)? {
                text.push_str(&super::brands::mail_footer(&brand, &locale));
            }
            let draft = Draft {
                from: config.mail_from.clone(),
                to: contact.email.to_string(),
                subject: crate::i18n::text(&locale, subject).to_owned(),
                text,
                headers: vec![("Auto-Submitted".to_owned(), "auto-generated".to_owned())],
                ..Draft::default()
            };
            mailer::enqueue(
                conn,
                DATA_REQUEST_MAIL,
                &email_key,
                &mail::compose(&draft, &config.message_domain, None)?,
            )?;
            Ok(true)
        })
        .await?;
    services.wake.mail.notify_one();
    Ok(valid)
}

/// The request a data-request token names, if it is genuine, unused and its contact still
/// exists; `None` alike for every other case.
fn open_request(conn: &mut DbConnection, keys: &Keys, token: &str) -> Result<Option<(DataRequestRow, DataAction)>> {
    let Some(claims) = keys.verify_link(LinkKind::DataRequest, token) else {
        return Ok(None);
    };
    let Some(row) = repo::find_data_request(conn, &claims.subject)? else {
        return Ok(None);
    };
    let action = DataAction::parse(&row.action);
    match action {
        Some(action) if row.used_at.is_none() && row.expires_at > storage::now() => Ok(Some((row, action))),
        _ => Ok(None),
    }
}

/// What a data-request link would do, for its page (a GET does nothing).
pub async fn data_request_preview(db: &Db, keys: &Keys, token: &str) -> Result<Option<DataAction>> {
    let (keys, token) = (keys.clone(), token.to_owned());
    db.read(move |conn| Ok(open_request(conn, &keys, &token)?.map(|(_, action)| action))).await
}

/// Carries out a data request, once: the link is spent before the work, so a second press
/// (or a copy of the link) finds nothing.
pub async fn carry_out(db: &Db, keys: &Keys, token: &str) -> Result<Option<DataOutcome>> {
    let (read_keys, token) = (keys.clone(), token.to_owned());
    let claimed = db
        .write(move |conn| {
            let Some((row, action)) = open_request(conn, &read_keys, &token)? else {
                return Ok(None);
            };
            if !repo::mark_data_request_used(conn, &row.id, storage::now())? {
                return Ok(None);
            }
            let id: ContactId = row.contact_id;
            Ok(Some((id, action)))
        })
        .await?;
    let Some((id, action)) = claimed else {
        return Ok(None);
    };
    match action {
        DataAction::Download => match consent::export_contact(db, keys, id).await {
            Ok(export) if export.contact.is_some() => Ok(Some(DataOutcome::Downloaded(Box::new(export)))),
            Ok(_) | Err(Error::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        },
        DataAction::Erase => match consent::erase_contact(db, keys, id).await {
            Ok(()) | Err(Error::NotFound(_)) => Ok(Some(DataOutcome::Erased)),
            Err(error) => Err(error),
        },
    }
}
