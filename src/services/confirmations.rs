//! Double opt-in requests that do not come from a form: a list re-ticked in the preference
//! centre, or a confirmation the API starts for an integrator. Each records a pending
//! grant per purpose and mails the person the same confirmation link a form's signup
//! gets (within the same daily cap); only the person's click makes it a double opt-in.

use super::Services;
use super::consent::{apply_event, load_contact_consents};
use super::keys::Keys;
use super::signup::{SignupConfig, request_confirmation};
use crate::domain::Contact;
use crate::domain::consent::{Actor, ConsentAction, ConsentBasis, ConsentStatus, Evidence, Purpose};
use crate::error::{Error, Result};
use crate::mail::Draft;
use crate::storage::consent::NewConsentEvent;
use crate::storage::{DbConnection, lists, partners};

/// What the ledger keeps in place of the link in the mail's words: the link is a secret.
const LINK_PLACEHOLDER: &str = "[confirmation link]";

/// One purpose to confirm, with the words the person was shown for it; `None`: the words
/// are those of the confirmation mail.
#[derive(Debug, Clone)]
pub struct Ask {
    pub purpose: Purpose,
    pub consent_text: Option<String>,
}

/// What a request came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    /// Purposes now waiting for the person's click.
    pub pending: Vec<Purpose>,
    /// Purposes already in force: nothing to confirm.
    pub already_active: Vec<Purpose>,
}

/// Records a pending grant for each purpose not already in force (basis `single_opt_in`
/// for a person, or `b2b_role_address` for a role address: what the request is, until a
/// confirmation adds its evidence), and queues the confirmation mail in `locale`.
#[allow(clippy::too_many_arguments)]
pub fn start_in(
    conn: &mut DbConnection,
    keys: &Keys,
    config: &SignupConfig,
    contact: &Contact,
    asks: &[Ask],
    evidence: &Evidence,
    actor: &Actor,
    locale: &str,
) -> Result<Started> {
    let contact_id = contact.id.to_string();
    let current = load_contact_consents(conn, &contact_id)?.current;
    let mut started = Started::default();
    let mut new_asks = Vec::new();
    for ask in asks {
        if current.iter().any(|c| c.purpose == ask.purpose && c.status == ConsentStatus::Active) {
            started.already_active.push(ask.purpose.clone());
        } else if !started.pending.contains(&ask.purpose) {
            started.pending.push(ask.purpose.clone());
            new_asks.push(ask);
        }
    }
    if new_asks.is_empty() {
        return Ok(started);
    }
    let names = purpose_names(conn, &started.pending)?;
    let template = crate::i18n::text(locale, "confirm_mail_text");
    let mail_words = render(template, &names, LINK_PLACEHOLDER)?;
    let basis = if contact.email.is_role_address() { ConsentBasis::B2bRoleAddress } else { ConsentBasis::SingleOptIn };
    for ask in new_asks {
        apply_event(
            conn,
            NewConsentEvent {
                contact_id: contact_id.clone(),
                email_key: None,
                purpose: ask.purpose.clone(),
                action: ConsentAction::Granted,
                basis,
                requires_confirmation: true,
                evidence: Evidence {
                    consent_text: Some(ask.consent_text.clone().unwrap_or_else(|| mail_words.clone())),
                    ..evidence.clone()
                },
                actor: actor.to_string(),
            },
        )?;
    }
    let to = contact.email.to_string();
    request_confirmation(
        conn,
        keys,
        config,
        &contact_id,
        None,
        &started.pending,
        &contact.email.key(),
        |_, confirm_url| {
            Ok(Draft {
                from: config.mail_from.clone(),
                to,
                subject: crate::i18n::text(locale, "confirm_mail_subject").to_owned(),
                text: render(template, &names, confirm_url)?,
                headers: vec![("Auto-Submitted".to_owned(), "auto-generated".to_owned())],
                ..Draft::default()
            })
        },
    )?;
    Ok(started)
}

fn render(template: &str, names: &[String], confirm_url: &str) -> Result<String> {
    let env = minijinja::Environment::new();
    env.render_str(template, minijinja::context! { lists => names.join(", "), confirm_url, form_title => "" })
        .map_err(|e| Error::internal(e.to_string()))
}

/// A purpose in words: a list's name, or "sharing with <partner>".
fn purpose_names(conn: &mut DbConnection, purposes: &[Purpose]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for purpose in purposes {
        match purpose {
            Purpose::List(id) => {
                if let Some(list) = lists::find_list(conn, &id.to_string())? {
                    names.push(list.name);
                }
            }
            Purpose::Partner(id) => {
                if let Some(partner) = partners::find_partner(conn, id)? {
                    names.push(format!("sharing with {} ({})", partner.name, partner.legal_name));
                }
            }
        }
    }
    Ok(names)
}

/// The API's way to a double opt-in: the integrator names the lists, the person gets the
/// confirmation mail, and only their click confirms. A list that does not exist is named;
/// a partner's consent comes only from a partner box or a partner's lead.
pub async fn start_for_contact(
    services: &Services,
    id: crate::domain::ContactId,
    purposes: Vec<Purpose>,
    actor: Actor,
    locale: String,
) -> Result<Started> {
    let (keys, config) = (services.keys.clone(), services.signup.clone());
    let started = services
        .db
        .write(move |conn| {
            let contact = crate::storage::contacts::find_contact(conn, &id.to_string())?
                .ok_or_else(|| Error::NotFound(format!("there is no contact {id}")))?;
            let mut errors = crate::error::FieldErrors::new();
            if purposes.is_empty() {
                errors.push("purposes", "must name at least one list (`list:<id>`)");
            }
            for (index, purpose) in purposes.iter().enumerate() {
                match purpose {
                    Purpose::List(list) if lists::find_list(conn, &list.to_string())?.is_none() => {
                        errors.push(format!("purposes[{index}]"), format!("there is no list {list}"));
                    }
                    Purpose::List(_) => {}
                    Purpose::Partner(_) => errors.push(
                        format!("purposes[{index}]"),
                        "a partner consent comes only from a form's partner box or a partner's lead",
                    ),
                }
            }
            errors.finish(|| Some(()))?;
            let asks: Vec<Ask> = purposes.into_iter().map(|purpose| Ask { purpose, consent_text: None }).collect();
            let evidence = Evidence { method: "api".to_owned(), ..Evidence::default() };
            start_in(conn, &keys, &config, &contact, &asks, &evidence, &actor, &locale)
        })
        .await?;
    services.wake.mail.notify_one();
    Ok(started)
}
