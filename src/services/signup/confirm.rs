//! The person's click on a confirmation link: the pending grants it names confirmed with
//! the click's evidence, the values waiting with the request applied, the receipt mailed;
//! and the purge of requests never confirmed.

use chrono::TimeDelta;

use super::{CONSENT_RECEIPT_MAIL, RequestInfo, apply_waiting_values, preferences_link, unsubscribe_link};
use crate::domain::ConfirmationId;
use crate::domain::ContactStatus;
use crate::domain::consent::{Actor, ConsentAction, ConsentBasis, ConsentStatus, Evidence, Purpose};
use crate::domain::form::{FormSurvey, SurveyMoment};
use crate::error::Result;
use crate::mail::Draft;
use crate::services::confirmations::SignupConfig;
use crate::services::confirmations::{purpose_name, purpose_names};
use crate::services::consent::{ContactConsents, apply_event, erase_in, load_contact_consents};
use crate::services::keys::{Keys, LinkKind};
use crate::services::{Services, mailer, partners, surveys};
use crate::storage::confirmations::ConfirmationRow;
use crate::storage::consent::NewConsentEvent;
use crate::storage::{Db, DbConnection, confirmations, consent as ledger, contacts};
use crate::{mail, storage};

/// What a press of a confirmation link did, and the survey offered next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    pub state: LinkState,
    pub survey_url: Option<String>,
}

/// What a confirmation link stands for now, as its page says it: so that a link pressed
/// again, or after the person left, never reads "confirmed" when nothing was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// What its own request named waits: pressing confirms these.
    Waiting(Vec<String>),
    /// The press confirmed these.
    Confirmed(Vec<String>),
    /// Its request is in force already (these). `also` is what else of the person's waits
    /// for a confirmation, such as a list asked for on a day the daily cap let no mail go:
    /// the page offers each with an unticked box, and only what the person ticks there is
    /// confirmed.
    AlreadyConfirmed { names: Vec<String>, also: Vec<AlsoWaiting> },
    /// Nothing of its request waits or is in force: the person withdrew since, and the link
    /// no longer confirms anything.
    Withdrawn,
}

/// A list waiting for the person's confirmation, offered on the page of a link already used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlsoWaiting {
    /// `list:<id>`, as the page's box posts it.
    pub purpose: String,
    pub name: String,
    /// The words beside the box when the person asked for it.
    pub text: Option<String>,
}

/// What a link's press confirms: the purposes its own request named that are still
/// pending, and nothing else.
pub(super) fn waiting_purposes(
    current: &[crate::domain::consent::PurposeConsent],
    row: &ConfirmationRow,
) -> Vec<Purpose> {
    pending_of(current, &stored_purposes(row))
}

/// The state of a link whose own request has nothing left to confirm.
pub(super) fn settled_state(
    conn: &mut DbConnection,
    consents: &ContactConsents,
    row: &ConfirmationRow,
    locale: &str,
) -> Result<LinkState> {
    let requested = stored_purposes(row);
    let active: Vec<Purpose> = consents
        .current
        .iter()
        .filter(|c| c.status == ConsentStatus::Active && requested.contains(&c.purpose))
        .map(|c| c.purpose.clone())
        .collect();
    if active.is_empty() {
        return Ok(LinkState::Withdrawn);
    }
    let names = purpose_names(conn, &active, locale)?;
    Ok(LinkState::AlreadyConfirmed { names, also: also_waiting(conn, consents, &requested, locale)? })
}

/// The lists of the person's that wait for a confirmation and that a link's own request
/// did not name. Partners are never offered so: sharing with one is confirmed by the mail
/// that names it.
fn also_waiting(
    conn: &mut DbConnection,
    consents: &ContactConsents,
    requested: &[Purpose],
    locale: &str,
) -> Result<Vec<AlsoWaiting>> {
    let mut also = Vec::new();
    for consent in &consents.current {
        let purpose = &consent.purpose;
        if consent.status != ConsentStatus::Pending
            || requested.contains(purpose)
            || !matches!(purpose, Purpose::List(_))
        {
            continue;
        }
        let Some(name) = purpose_name(conn, purpose, locale)? else {
            continue;
        };
        let text = consents
            .events
            .iter()
            .rev()
            .find(|e| &e.purpose == purpose && e.action == ConsentAction::Granted)
            .and_then(|e| e.evidence.consent_text.clone());
        also.push(AlsoWaiting { purpose: purpose.to_string(), name, text });
    }
    Ok(also)
}

/// The basis a confirmed grant keeps. A confirmation is evidence added to the grant, not
/// a new basis: a consumer's opt-in (single, passive, a partner's lead) confirmed by the
/// link becomes `double_opt_in`, which is what that basis means; a B2B grant stays B2B
/// (a role address confirming is still company data, not a consumer's consent), and so
/// does any basis that is not an opt-in.
pub fn confirmed_basis(granted: ConsentBasis) -> ConsentBasis {
    match granted {
        ConsentBasis::SingleOptIn | ConsentBasis::PassiveOptIn | ConsentBasis::Partner | ConsentBasis::DoubleOptIn => {
            ConsentBasis::DoubleOptIn
        }
        ConsentBasis::B2bProfessional
        | ConsentBasis::B2bRoleAddress
        | ConsentBasis::SoftOptIn
        | ConsentBasis::Imported => granted,
    }
}

/// Confirms a double opt-in: each purpose the link's own request named that is still
/// pending gets a `confirmed` event, with the request's form and version, the basis of the
/// grant it confirms (see [`confirmed_basis`]) and the time, IP and user agent of the
/// click; what someone else asked for with the same address stays pending. The values
/// submitted with the request apply; the address leaves the suppression list.
///
/// Pressed again once its own request is in force, the link confirms those of `chosen`
/// (the boxes the person ticked on its page) that wait among the person's other lists;
/// nothing else. Pressed after the person withdrew what it named, it changes nothing.
/// `None` when the link is not valid.
pub async fn confirm(
    services: &Services,
    token: &str,
    info: RequestInfo,
    chosen: Vec<Purpose>,
) -> Result<Option<Confirmed>> {
    let Services { db, keys, signup: config, scripts, .. } = services;
    let shares = partners::SharesAfterCommit::default();
    let confirmed = confirm_queueing(db, keys, config, shares.clone(), token, info, chosen).await?;
    if config.consent_receipt_mail {
        services.wake.mail.notify_one();
    }
    // After the commit: the partners' `share` hooks run outside the transaction.
    shares.run(db, scripts).await;
    Ok(confirmed)
}

pub(super) async fn confirm_queueing(
    db: &Db,
    keys: &Keys,
    config: &SignupConfig,
    queue: partners::SharesAfterCommit,
    token: &str,
    info: RequestInfo,
    chosen: Vec<Purpose>,
) -> Result<Option<Confirmed>> {
    let Some(claims) = keys.verify_link(LinkKind::Confirm, token) else {
        return Ok(None);
    };
    let keys = keys.clone();
    let config = config.clone();
    db.write(move |conn| {
        let Ok(id) = claims.subject.parse::<ConfirmationId>() else {
            return Ok(None);
        };
        let Some(row) = confirmations::find_confirmation(conn, id)? else {
            return Ok(None);
        };
        let Some(contact) = contacts::find_contact(conn, row.contact_id)? else {
            return Ok(None);
        };
        let survey_url = |conn: &mut DbConnection| -> Result<Option<String>> {
            let form = match row.form_id {
                Some(id) => crate::services::forms::find_in(conn, id)?,
                None => None,
            };
            match form.and_then(|f| f.definition.survey) {
                Some(FormSurvey { survey_id, after: SurveyMoment::Confirmation }) => {
                    surveys::start_in(conn, &keys, &config.base_url, config.survey_link_ttl, survey_id, row.contact_id)
                }
                _ => Ok(None),
            }
        };
        let consents = load_contact_consents(conn, row.contact_id)?;
        let own = waiting_purposes(&consents.current, &row);
        let pressed = if own.is_empty() {
            // Nothing of its own to confirm: only what the person ticked among what else
            // waits, and nothing at all once they withdrew what the link named (that
            // withdrawal, and the suppression it made, stand).
            let state = settled_state(conn, &consents, &row, &info.locale)?;
            let ticked: Vec<Purpose> = match &state {
                LinkState::AlreadyConfirmed { also, .. } => {
                    chosen.into_iter().filter(|p| also.iter().any(|a| a.purpose == p.to_string())).collect()
                }
                _ => Vec::new(),
            };
            if ticked.is_empty() {
                let survey_url = match state {
                    LinkState::Withdrawn => None,
                    _ => survey_url(conn)?,
                };
                return Ok(Some(Confirmed { state, survey_url }));
            }
            Pressed { purposes: ticked, own: false }
        } else {
            Pressed { purposes: own, own: true }
        };
        let link =
            PressedLink { keys: &keys, config: &config, queue: &queue, contact: &contact, row: &row, info: &info };
        let names = confirm_in(conn, &link, &consents, &pressed)?;
        Ok(Some(Confirmed { state: LinkState::Confirmed(names), survey_url: survey_url(conn)? }))
    })
    .await
}

/// What one press confirms: the link's own request, or lists the person ticked on the page
/// of a link already used.
struct Pressed {
    purposes: Vec<Purpose>,
    own: bool,
}

/// The link pressed, whose person and request a press confirms for.
struct PressedLink<'a> {
    keys: &'a Keys,
    config: &'a SignupConfig,
    queue: &'a partners::SharesAfterCommit,
    contact: &'a crate::domain::Contact,
    row: &'a ConfirmationRow,
    info: &'a RequestInfo,
}

/// Records the confirmation of `pressed` and what follows it: the person is active and no
/// longer suppressed, the values waiting with the request apply (on its first press only),
/// the partners chosen get the lead, and the receipt goes out. The names confirmed.
fn confirm_in(
    conn: &mut DbConnection,
    link: &PressedLink<'_>,
    consents: &ContactConsents,
    pressed: &Pressed,
) -> Result<Vec<String>> {
    let PressedLink { keys, config, queue, contact, row, info } = *link;
    for purpose in &pressed.purposes {
        let basis = confirmed_basis(granted_basis(consents, purpose, row));
        let grant = confirmed_grant(consents, purpose, row);
        // A list confirmed from the page of a link already used says which link it was.
        let proof =
            (!pressed.own).then(|| serde_json::json!({ "confirmed_on_page_of": row.id.to_string() }).to_string());
        apply_event(
            conn,
            NewConsentEvent {
                contact_id: row.contact_id,
                email_key: None,
                purpose: purpose.clone(),
                action: ConsentAction::Confirmed,
                basis,
                requires_confirmation: false,
                evidence: Evidence {
                    // The form the person saw when asking for this purpose.
                    form_id: grant.map_or(row.form_id, |g| g.evidence.form_id),
                    form_version: grant.map_or(row.form_version, |g| g.evidence.form_version),
                    source_url: None,
                    proof,
                    ..info.evidence("confirmation")
                },
                actor: Actor::Public.to_string(),
            },
        )?;
    }
    let now = storage::now();
    if row.confirmed_at.is_none() {
        confirmations::mark_confirmed(conn, row.id, now)?;
        // The values submitted with the request apply once, at its first press.
        if let Some(values) = row.contact_values.as_deref().and_then(|v| serde_json::from_str(v).ok()) {
            apply_waiting_values(conn, row.contact_id, values)?;
        }
    }
    contacts::update_status(conn, row.contact_id, ContactStatus::Active, now)?;
    ledger::delete_suppression(conn, &keys.email_hash(&contact.email.key()))?;
    // The person's own act: the page they confirmed on speaks their language.
    crate::services::brands::set_contact_locale_in(conn, row.contact_id, &info.locale)?;
    // The opt-in is complete: partners the person chose get the lead once this commits.
    for purpose in &pressed.purposes {
        if let Some(partner_id) = purpose.partner_id() {
            queue.queue_in(conn, row.contact_id, partner_id)?;
        }
    }
    partners::mark_inbound_confirmed(conn, row.contact_id)?;
    let named = pressed
        .purposes
        .iter()
        .map(|purpose| Ok((purpose, purpose_name(conn, purpose, &info.locale)?)))
        .collect::<Result<Vec<_>>>()?;
    if config.consent_receipt_mail {
        let agreed: Vec<(String, Option<String>)> = named
            .iter()
            .map(|(purpose, name)| {
                let text = confirmed_grant(consents, purpose, row).and_then(|e| e.evidence.consent_text.clone());
                (name.clone().unwrap_or_default(), text)
            })
            .collect();
        let mut receipt = receipt_draft(keys, config, contact, &agreed, now, &info.locale);
        let form_brand = match row.form_id {
            Some(id) => crate::services::forms::find_in(conn, id)?.and_then(|f| f.definition.brand_id),
            None => None,
        };
        if let Some(brand) = crate::services::brands::brand_for_in(conn, form_brand)? {
            receipt.text.push_str(&crate::services::brands::mail_footer(&brand, &info.locale));
        }
        let mail = mail::compose(&receipt, &config.message_domain, None)?;
        mailer::enqueue(conn, CONSENT_RECEIPT_MAIL, &contact.email.key(), &mail)?;
    }
    Ok(named.into_iter().filter_map(|(_, name)| name).collect())
}

/// The consent receipt mailed at confirmation (when `consent_receipt_mail` is on): what the
/// person agreed to, in the exact words shown, when, with whom, how to withdraw, and a link
/// to the proof of it, which any verifier checks against the signed ledger. Built-in words
/// only (no admin template), so composing it inside the confirmation's write is bounded.
pub(super) fn receipt_draft(
    keys: &Keys,
    config: &SignupConfig,
    contact: &crate::domain::Contact,
    agreed: &[(String, Option<String>)],
    at: chrono::NaiveDateTime,
    locale: &str,
) -> Draft {
    let text = |key| crate::i18n::text(locale, key);
    let id = contact.id;
    let mut body = format!("{}\n\n{}\n", text("receipt_intro"), text("receipt_agreed"));
    for (name, words) in agreed {
        body.push_str(&format!("\n- {name}"));
        if let Some(words) = words {
            body.push_str(&format!("\n  \u{201c}{words}\u{201d}"));
        }
        body.push('\n');
    }
    let proof = format!("{}/consent/receipt/{}", config.base_url, keys.sign_proof(&id.to_string()));
    body.push_str(&format!(
        "\n{}: {} UTC\n{}: {}\n\n{}\n{}\n\n{}\n{}\n\n{}\n{}\n",
        text("receipt_when"),
        at.format("%Y-%m-%d %H:%M:%S"),
        text("receipt_who"),
        config.mail_from,
        text("receipt_withdraw"),
        unsubscribe_link(keys, &config.base_url, id, None, None),
        text("receipt_preferences"),
        preferences_link(keys, &config.base_url, id),
        text("receipt_proof"),
        proof,
    ));
    Draft {
        from: config.mail_from.clone(),
        to: contact.email.to_string(),
        subject: text("receipt_subject").to_owned(),
        text: body,
        headers: vec![("Auto-Submitted".to_owned(), "auto-generated".to_owned())],
        ..Draft::default()
    }
}

/// Those of `requested` still pending.
pub(super) fn pending_of(current: &[crate::domain::consent::PurposeConsent], requested: &[Purpose]) -> Vec<Purpose> {
    current
        .iter()
        .filter(|c| c.status == ConsentStatus::Pending && requested.contains(&c.purpose))
        .map(|c| c.purpose.clone())
        .collect()
}

/// The grant a request asked to confirm: the last pending grant of the purpose from the
/// request's form and version (from anywhere, for a partner's lead).
pub(super) fn confirmed_grant<'a>(
    consents: &'a ContactConsents,
    purpose: &Purpose,
    row: &ConfirmationRow,
) -> Option<&'a crate::domain::consent::ConsentEvent> {
    let grants = || {
        consents
            .events
            .iter()
            .rev()
            .filter(|e| &e.purpose == purpose && e.action == ConsentAction::Granted && e.requires_confirmation)
    };
    let from_request = grants().find(|e| {
        row.form_id.is_none() || (e.evidence.form_id == row.form_id && e.evidence.form_version == row.form_version)
    });
    from_request.or_else(|| grants().next())
}

/// The basis of that grant; else the basis in force.
pub(super) fn granted_basis(consents: &ContactConsents, purpose: &Purpose, row: &ConfirmationRow) -> ConsentBasis {
    confirmed_grant(consents, purpose, row)
        .map(|e| e.basis)
        .or_else(|| consents.current.iter().find(|c| &c.purpose == purpose).map(|c| c.basis))
        .unwrap_or(ConsentBasis::SingleOptIn)
}

pub(super) fn stored_purposes(row: &ConfirmationRow) -> Vec<Purpose> {
    serde_json::from_str::<Vec<String>>(&row.purposes)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Purges signups never confirmed within `retention_days`: a contact with no consent in
/// force goes entirely (the address is not suppressed: it never agreed to anything); one
/// with other consents keeps them, and its unconfirmed requests lose their personal fields.
pub async fn purge_unconfirmed(db: &Db, retention_days: u32) -> Result<usize> {
    let cutoff = storage::now() - TimeDelta::days(i64::from(retention_days));
    db.write(move |conn| {
        let stale = confirmations::list_unconfirmed_before(conn, cutoff)?;
        let mut purged = 0;
        for row in stale {
            if let Some(contact) = contacts::find_contact(conn, row.contact_id)? {
                let consents = load_contact_consents(conn, row.contact_id)?;
                if consents.current.iter().all(|c| c.status != ConsentStatus::Active) {
                    erase_in(conn, &contact)?;
                } else {
                    let pending: Vec<Purpose> = consents
                        .current
                        .iter()
                        .filter(|c| c.status == ConsentStatus::Pending)
                        .map(|c| c.purpose.clone())
                        .collect();
                    let ids: Vec<String> = consents
                        .events
                        .iter()
                        .filter(|e| e.requires_confirmation && pending.contains(&e.purpose))
                        .map(|e| e.id.clone())
                        .collect();
                    ledger::redact_events(conn, &ids)?;
                }
            }
            confirmations::delete_confirmation(conn, row.id)?;
            purged += 1;
        }
        Ok(purged)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirmation_keeps_a_b2b_basis_and_makes_a_consumers_opt_in_double() {
        for basis in [ConsentBasis::B2bProfessional, ConsentBasis::B2bRoleAddress] {
            assert_eq!(confirmed_basis(basis), basis);
        }
        for basis in [ConsentBasis::SingleOptIn, ConsentBasis::PassiveOptIn, ConsentBasis::Partner] {
            assert_eq!(confirmed_basis(basis), ConsentBasis::DoubleOptIn);
        }
    }
}
