//! The public side of consent: signing up through a form, confirming a double opt-in,
//! unsubscribing, the preference centre, and purging signups never confirmed.

use chrono::TimeDelta;
use serde_json::Value;

use super::consent::{apply_event, erase_in, leave_all_in, load_contact_consents, withdraw_in};
use serde_json::json;

use super::forms::Form;
use super::keys::{Keys, LinkKind};
use super::mailer;
use super::plugins::Scripts;
use super::{partners, surveys, webhooks};
use crate::domain::consent::{Actor, ConsentAction, ConsentBasis, ConsentStatus, Evidence, Purpose};
use crate::domain::form::{FormOptIn, ValidSubmission};
use crate::domain::form::{FormSurvey, SurveyMoment};
use crate::domain::partner::EventType;
use crate::domain::{ConfirmationId, ContactId, ContactStatus, ListId};
use crate::error::{Error, Result};
use crate::mail::{self, Draft};
use crate::settings::Settings;
use crate::storage::confirmations::{self, ConfirmationRow};
use crate::storage::consent::{self as ledger, NewConsentEvent};
use crate::storage::models::ContactRow;
use crate::storage::{self, Db, DbConnection, campaigns, contacts, lists, outbox};

pub const CONFIRMATION_MAIL: &str = "confirmation";

/// What the signup flow needs from the settings.
#[derive(Debug, Clone)]
pub struct SignupConfig {
    pub base_url: String,
    pub mail_from: String,
    pub message_domain: String,
    pub confirmation_ttl: TimeDelta,
    pub confirmation_mails_per_day: u32,
    pub survey_link_ttl: TimeDelta,
}

impl SignupConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            base_url: settings.base_url(),
            mail_from: settings.mail_from.clone(),
            message_domain: settings.message_domain(),
            confirmation_ttl: TimeDelta::hours(settings.confirmation_ttl_hours as i64),
            confirmation_mails_per_day: settings.confirmation_mails_per_day,
            survey_link_ttl: TimeDelta::days(i64::from(settings.survey_link_days)),
        }
    }
}

/// Where a public request came from: the evidence kept with what it does.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub source_url: Option<String>,
    pub locale: String,
}

impl RequestInfo {
    pub(crate) fn evidence(&self, method: &str) -> Evidence {
        Evidence {
            method: method.to_owned(),
            ip: self.ip.clone(),
            user_agent: self.user_agent.clone(),
            source_url: self.source_url.clone(),
            ..Evidence::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Subscribed at once (single opt-in, passive, or nothing new).
    Subscribed,
    /// Waiting for the person to confirm by the mailed link.
    PendingConfirmation,
}

/// What a signup came to, and the survey offered next (if the form offers one now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub outcome: SubmitOutcome,
    pub survey_url: Option<String>,
}

/// What a confirmation confirmed, and the survey offered next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    /// The lists (and partners) confirmed.
    pub names: Vec<String>,
    pub survey_url: Option<String>,
}

/// Records a signup: the contact (created or updated with the submitted fields), a
/// `granted` event per ticked box with the form version, the exact text, IP and user
/// agent, and for double opt-in (or a suppressed address) a confirmation request whose
/// mail is queued in the same transaction, within the per-address daily cap.
pub async fn submit(
    db: &Db,
    keys: &Keys,
    config: &SignupConfig,
    scripts: &Scripts,
    form: Form,
    submission: ValidSubmission,
    info: RequestInfo,
) -> Result<Submitted> {
    let email_key = submission.email.key();
    let suppression_hash = keys.email_hash(&email_key);
    let config = config.clone();
    let scripts = scripts.clone();
    let keys = keys.clone();
    db.write(move |conn| {
        let now = storage::now();
        let contact_id = upsert_contact(conn, &submission, now)?;
        webhooks::emit(
            conn,
            EventType::FormSubmitted,
            json!({"form_id": form.id.to_string(), "form_slug": form.slug, "form_version": form.version, "contact_id": contact_id}),
        )?;
        let survey_url = match form.definition.survey {
            Some(FormSurvey { survey_id, after: SurveyMoment::Signup }) => {
                surveys::start_in(conn, &keys, &config.base_url, config.survey_link_ttl, survey_id, &contact_id)?
            }
            _ => None,
        };
        let suppressed = ledger::is_suppressed(conn, &suppression_hash)?;
        let needs_confirmation = suppressed || form.definition.opt_in == FormOptIn::Double;
        let current = load_contact_consents(conn, &contact_id)?.current;
        let basis = form.definition.basis_for(&submission.email);
        // Every box ticked, with the exact words beside it: the lists, then each partner
        // (its consent keeps the list of partners shown beside it).
        let shown = partners::form_partners(conn, &form.definition.partners)?;
        let snapshot = json!({"partners_shown": shown.iter().map(partners::shown).collect::<Vec<_>>()}).to_string();
        let lists = submission.consents.iter().map(|c| (Purpose::List(c.list_id), c.text.clone(), None));
        let chosen = shown.iter().filter(|p| submission.partners.iter().any(|id| id.to_string() == p.id));
        let partner_boxes =
            chosen.map(|p| (Purpose::Partner(p.id.clone()), partners::checkbox_text(p), Some(snapshot.clone())));
        let mut pending = Vec::new();
        for (purpose, text, proof) in lists.chain(partner_boxes) {
            let active = current.iter().any(|c| c.purpose == purpose && c.status == ConsentStatus::Active);
            if active && !suppressed {
                continue;
            }
            apply_event(
                conn,
                NewConsentEvent {
                    contact_id: contact_id.clone(),
                    purpose: purpose.clone(),
                    action: ConsentAction::Granted,
                    basis,
                    requires_confirmation: needs_confirmation,
                    evidence: Evidence {
                        form_id: Some(form.id.to_string()),
                        form_version: Some(form.version),
                        consent_text: Some(text),
                        proof,
                        ..info.evidence("form")
                    },
                    actor: Actor::Public.to_string(),
                },
            )?;
            if let (Purpose::Partner(partner_id), false) = (&purpose, needs_confirmation) {
                // The opt-in is complete: the partner gets the lead now.
                partners::share_in(conn, &scripts, &contact_id, partner_id)?;
            }
            pending.push(purpose);
        }
        let submitted = |outcome| Ok(Submitted { outcome, survey_url: survey_url.clone() });
        if !needs_confirmation {
            return submitted(SubmitOutcome::Subscribed);
        }
        if pending.is_empty() {
            return submitted(SubmitOutcome::PendingConfirmation);
        }
        let form_ref = Some((form.id.to_string(), form.version));
        request_confirmation(conn, &keys, &config, &contact_id, form_ref, &pending, &email_key, |conn, confirm_url| {
            let names = list_names(conn, &pending)?;
            let locale = form.definition.locale.clone().unwrap_or(info.locale.clone());
            confirmation_draft(&config, &form, &submission, &names, confirm_url, &locale)
        })?;
        submitted(SubmitOutcome::PendingConfirmation)
    })
    .await
}

/// Records a request to confirm `purposes` (from a form, at its version, or from a partner)
/// and queues its mail, written by `draft` around the confirmation link. However many
/// requests (from however many IPs), an address gets at most `confirmation_mails_per_day`
/// such mails a day: a form cannot be used to bomb someone's inbox.
#[allow(clippy::too_many_arguments)]
pub(crate) fn request_confirmation(
    conn: &mut DbConnection,
    keys: &Keys,
    config: &SignupConfig,
    contact_id: &str,
    form: Option<(String, i32)>,
    purposes: &[Purpose],
    email_key: &str,
    draft: impl FnOnce(&mut DbConnection, &str) -> Result<Draft>,
) -> Result<()> {
    let now = storage::now();
    let confirmation_id = ConfirmationId::new();
    let expires_at = chrono::Utc::now() + config.confirmation_ttl;
    let token = keys.sign_link(LinkKind::Confirm, &confirmation_id.to_string(), None, Some(expires_at));
    let (form_id, form_version) = form.unzip();
    confirmations::insert_confirmation(
        conn,
        &ConfirmationRow {
            id: confirmation_id.to_string(),
            contact_id: contact_id.to_owned(),
            form_id,
            form_version,
            purposes: serde_json::to_string(&purposes.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(Error::internal)?,
            created_at: now,
            expires_at: expires_at.naive_utc(),
            confirmed_at: None,
        },
    )?;
    let since = now - TimeDelta::hours(24);
    if outbox::count_recent(conn, email_key, CONFIRMATION_MAIL, since)? >= i64::from(config.confirmation_mails_per_day)
    {
        tracing::info!("confirmation mail withheld: the address reached its daily cap");
        return Ok(());
    }
    let confirm_url = format!("{}/confirm/{token}", config.base_url);
    let draft = draft(conn, &confirm_url)?;
    mailer::enqueue(conn, CONFIRMATION_MAIL, email_key, &mail::compose(&draft, &config.message_domain, None)?)?;
    Ok(())
}

fn upsert_contact(conn: &mut DbConnection, submission: &ValidSubmission, now: chrono::NaiveDateTime) -> Result<String> {
    match contacts::find_contact_row_by_email_key(conn, &submission.email.key())? {
        Some(mut row) => {
            let mut attributes: Value =
                serde_json::from_str(&row.attributes).unwrap_or(Value::Object(Default::default()));
            super::contacts::merge_patch(&mut attributes, Value::Object(submission.attributes.clone()));
            row.attributes = attributes.to_string();
            if submission.company.is_some() {
                row.company = submission.company.clone();
            }
            row.updated_at = now;
            contacts::update_contact(conn, &row)?;
            webhooks::emit_contact(conn, EventType::ContactUpdated, &row.id)?;
            Ok(row.id)
        }
        None => {
            let row = ContactRow {
                id: ContactId::new().to_string(),
                email: submission.email.as_str().to_owned(),
                email_key: submission.email.key(),
                attributes: Value::Object(submission.attributes.clone()).to_string(),
                company: submission.company.clone(),
                country: None,
                status: ContactStatus::Active.as_str().to_owned(),
                created_at: now,
                updated_at: now,
            };
            contacts::insert_contact(conn, &row, &[], &[])?;
            webhooks::emit_contact(conn, EventType::ContactCreated, &row.id)?;
            Ok(row.id)
        }
    }
}

/// What the person agreed to, in words: list names, and "sharing with <partner>".
fn list_names(conn: &mut DbConnection, purposes: &[Purpose]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for purpose in purposes {
        match purpose {
            Purpose::List(id) => {
                if let Some(list) = lists::find_list(conn, &id.to_string())? {
                    names.push(list.name);
                }
            }
            Purpose::Partner(id) => {
                if let Some(partner) = crate::storage::partners::find_partner(conn, id)? {
                    names.push(format!("sharing with {} ({})", partner.name, partner.legal_name));
                }
            }
        }
    }
    Ok(names)
}

fn confirmation_draft(
    config: &SignupConfig,
    form: &Form,
    submission: &ValidSubmission,
    list_names: &[String],
    confirm_url: &str,
    locale: &str,
) -> Result<Draft> {
    let definition = &form.definition;
    let subject = definition
        .confirmation_subject
        .clone()
        .unwrap_or_else(|| crate::i18n::text(locale, "confirm_mail_subject").to_owned());
    let template = definition
        .confirmation_text
        .clone()
        .unwrap_or_else(|| crate::i18n::text(locale, "confirm_mail_text").to_owned());
    let text = render_mail(&template, list_names, confirm_url, &definition.title)?;
    Ok(Draft {
        from: config.mail_from.clone(),
        to: submission.email.to_string(),
        subject,
        text,
        headers: vec![("Auto-Submitted".to_owned(), "auto-generated".to_owned())],
        ..Draft::default()
    })
}

fn render_mail(template: &str, list_names: &[String], confirm_url: &str, form_title: &str) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("mail", template).map_err(|e| Error::internal(e.to_string()))?;
    let template = env.get_template("mail").map_err(|e| Error::internal(e.to_string()))?;
    template
        .render(minijinja::context! {
            confirm_url => confirm_url,
            lists => list_names.join(", "),
            form_title => form_title,
        })
        .map_err(|e| Error::internal(e.to_string()))
}

/// Checks an admin's confirmation mail template: it must compile, render, and carry the
/// link, or nobody could ever confirm.
pub fn check_mail_template(template: &str) -> std::result::Result<(), String> {
    let mut env = minijinja::Environment::new();
    env.add_template("mail", template).map_err(|e| describe_template_error(&e))?;
    let rendered = env
        .get_template("mail")
        .and_then(|t| t.render(minijinja::context! { confirm_url => "CONFIRM-URL", lists => "L", form_title => "T" }))
        .map_err(|e| describe_template_error(&e))?;
    if !rendered.contains("CONFIRM-URL") {
        return Err("must contain {{ confirm_url }}, the link that confirms".to_owned());
    }
    Ok(())
}

fn describe_template_error(error: &minijinja::Error) -> String {
    match error.line() {
        Some(line) => format!("line {line}: {}", error.detail().unwrap_or(&error.kind().to_string())),
        None => error.to_string(),
    }
}

/// What a confirmation link would confirm, for its page; `None` when the link is not
/// valid, whatever the reason.
pub async fn confirmation_preview(db: &Db, keys: &Keys, token: &str) -> Result<Option<Vec<String>>> {
    let Some(claims) = keys.verify_link(LinkKind::Confirm, token) else {
        return Ok(None);
    };
    db.read(move |conn| {
        let Some(row) = confirmations::find_confirmation(conn, &claims.subject)? else {
            return Ok(None);
        };
        let purposes = pending_purposes(conn, &row.contact_id)?;
        let purposes = if purposes.is_empty() { stored_purposes(&row) } else { purposes };
        Ok(Some(list_names(conn, &purposes)?))
    })
    .await
}

/// Confirms a double opt-in: every purpose still pending for the contact gets a
/// `confirmed` event (`double_opt_in`) with the time, IP and user agent of the click; the
/// address leaves the suppression list. A second use changes nothing and answers the
/// same. `None` when the link is not valid.
pub async fn confirm(
    db: &Db,
    keys: &Keys,
    config: &SignupConfig,
    scripts: &Scripts,
    token: &str,
    info: RequestInfo,
) -> Result<Option<Confirmed>> {
    let Some(claims) = keys.verify_link(LinkKind::Confirm, token) else {
        return Ok(None);
    };
    let keys = keys.clone();
    let config = config.clone();
    let scripts = scripts.clone();
    db.write(move |conn| {
        let Some(row) = confirmations::find_confirmation(conn, &claims.subject)? else {
            return Ok(None);
        };
        let Some(contact) = contacts::find_contact(conn, &row.contact_id)? else {
            return Ok(None);
        };
        let hash = keys.email_hash(&contact.email.key());
        let survey_url = |conn: &mut DbConnection| -> Result<Option<String>> {
            let form = match &row.form_id {
                Some(id) => super::forms::find_in(conn, id)?,
                None => None,
            };
            match form.and_then(|f| f.definition.survey) {
                Some(FormSurvey { survey_id, after: SurveyMoment::Confirmation }) => {
                    surveys::start_in(conn, &keys, &config.base_url, config.survey_link_ttl, survey_id, &row.contact_id)
                }
                _ => Ok(None),
            }
        };
        if row.confirmed_at.is_some() {
            let names = list_names(conn, &stored_purposes(&row))?;
            return Ok(Some(Confirmed { names, survey_url: survey_url(conn)? }));
        }
        let pending = pending_purposes(conn, &row.contact_id)?;
        for purpose in &pending {
            apply_event(
                conn,
                NewConsentEvent {
                    contact_id: row.contact_id.clone(),
                    purpose: purpose.clone(),
                    action: ConsentAction::Confirmed,
                    basis: ConsentBasis::DoubleOptIn,
                    requires_confirmation: false,
                    evidence: Evidence {
                        form_id: row.form_id.clone(),
                        form_version: row.form_version,
                        source_url: None,
                        ..info.evidence("confirmation")
                    },
                    actor: Actor::Public.to_string(),
                },
            )?;
        }
        let now = storage::now();
        confirmations::mark_confirmed(conn, &row.id, now)?;
        contacts::update_status(conn, &row.contact_id, ContactStatus::Active.as_str(), now)?;
        ledger::delete_suppression(conn, &hash)?;
        // The opt-in is complete: partners the person chose get the lead now.
        for purpose in &pending {
            if let Purpose::Partner(partner_id) = purpose {
                partners::share_in(conn, &scripts, &row.contact_id, partner_id)?;
            }
        }
        partners::mark_inbound_confirmed(conn, &row.contact_id)?;
        let names = list_names(conn, if pending.is_empty() { &[] } else { &pending })?;
        let names = if names.is_empty() { list_names(conn, &stored_purposes(&row))? } else { names };
        Ok(Some(Confirmed { names, survey_url: survey_url(conn)? }))
    })
    .await
}

fn pending_purposes(conn: &mut DbConnection, contact_id: &str) -> Result<Vec<Purpose>> {
    Ok(load_contact_consents(conn, contact_id)?
        .current
        .into_iter()
        .filter(|c| c.status == ConsentStatus::Pending)
        .map(|c| c.purpose)
        .collect())
}

fn stored_purposes(row: &ConfirmationRow) -> Vec<Purpose> {
    serde_json::from_str::<Vec<String>>(&row.purposes)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// What an unsubscribe link leaves: one list (or everything), and, in a campaign's
/// message, the recipient it was sent to (`<list>:<recipient>`), so the campaign counts it.
struct UnsubscribeScope {
    list: Option<ListId>,
    recipient: Option<String>,
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
    unsubscribe_link(keys, base_url, &contact.to_string(), list.as_deref(), None)
}

/// As [`unsubscribe_url`]; in a campaign's message, `recipient` names the recipient it went
/// to, so that the campaign counts the unsubscribe.
pub fn unsubscribe_link(
    keys: &Keys,
    base_url: &str,
    contact: &str,
    list: Option<&str>,
    recipient: Option<&str>,
) -> String {
    let scope = UnsubscribeScope::encode(list, recipient);
    format!("{base_url}/unsubscribe/{}", keys.sign_link(LinkKind::Unsubscribe, contact, scope.as_deref(), None))
}

pub fn preferences_url(keys: &Keys, base_url: &str, contact: ContactId) -> String {
    preferences_link(keys, base_url, &contact.to_string())
}

/// A fresh preference link: it expires (`preference_link_days`) and works until the
/// contact's links are revoked; every mail builds a new one, so a reader always holds one.
pub fn preferences_link(keys: &Keys, base_url: &str, contact: &str) -> String {
    format!("{base_url}/preferences/{}", keys.sign_preferences(contact))
}

/// What an unsubscribe link is about: `Some(Some(name))` for one list, `Some(None)` for
/// everything, `None` for a link that is not valid.
pub async fn unsubscribe_preview(db: &Db, keys: &Keys, token: &str) -> Result<Option<Option<String>>> {
    let Some(claims) = keys.verify_link(LinkKind::Unsubscribe, token) else {
        return Ok(None);
    };
    match UnsubscribeScope::parse(claims.scope.as_deref()).list {
        None => Ok(Some(None)),
        Some(list) => db.read(move |conn| Ok(Some(lists::find_list(conn, &list.to_string())?.map(|l| l.name)))).await,
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
    let contact = db.read(move |conn| contacts::find_contact(conn, &contact_id.to_string())).await?;
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
                withdraw_in(conn, &contact.id.to_string(), &[Purpose::List(list)], &evidence, &Actor::Public)?;
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

/// Purges signups never confirmed within `retention_days`: a contact with no consent in
/// force goes entirely (the address is not suppressed: it never agreed to anything); one
/// with other consents keeps them, and its unconfirmed requests lose their personal fields.
pub async fn purge_unconfirmed(db: &Db, retention_days: u32) -> Result<usize> {
    let cutoff = storage::now() - TimeDelta::days(i64::from(retention_days));
    db.write(move |conn| {
        let stale = confirmations::list_unconfirmed_before(conn, cutoff)?;
        let mut purged = 0;
        for row in stale {
            if let Some(contact) = contacts::find_contact(conn, &row.contact_id)? {
                let consents = load_contact_consents(conn, &row.contact_id)?;
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
            confirmations::delete_confirmation(conn, &row.id)?;
            purged += 1;
        }
        Ok(purged)
    })
    .await
}
