//! The public side of consent: signing up through a form, confirming a double opt-in,
//! unsubscribing, the preference centre, and purging signups never confirmed.

use std::sync::Arc;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::consent::{
    ContactConsents, apply_event, apply_event_for, erase_in, leave_all_in, load_contact_consents, withdraw_in,
};

use super::Services;
use super::confirmations::{
    ConfirmationRequest, PreparedConfirmation, SignupConfig, confirmation_link, daily_cap_reached, record_confirmation,
};
use super::forms::Form;
use super::keys::{Keys, LinkKind};
use super::mailer;
use super::{partners, surveys, webhooks};
use crate::domain::consent::{Actor, ConsentAction, ConsentBasis, ConsentStatus, Evidence, Purpose};
use crate::domain::form::{FormOptIn, ValidSubmission};
use crate::domain::form::{FormSurvey, SurveyMoment};
use crate::domain::partner::EventType;
use crate::domain::{ContactId, ContactStatus, ListId};
use crate::error::{Error, Result};
use crate::mail::{self, Draft};
use crate::storage::confirmations::{self, ConfirmationRow};
use crate::storage::consent::{self as ledger, NewConsentEvent};
use crate::storage::models::ContactRow;
use crate::storage::partners::PartnerRow;
use crate::storage::{self, Db, DbConnection, campaigns, contacts, lists};

pub const CONSENT_RECEIPT_MAIL: &str = "consent_receipt";

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
    /// What a single opt-in or passive form answers, for every address (a suppressed one
    /// is in fact asked to confirm: the answer does not tell).
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

/// Records a signup: a `granted` event per ticked box not in force yet, with the form
/// version, the exact words shown, IP and user agent; for double opt-in (or a suppressed
/// address) a confirmation request naming those purposes, whose mail is queued within the
/// per-address daily cap.
///
/// What an anonymous submit may do to a person already known: on a form that asks for a
/// confirmation, nothing until they confirm (the values wait with the request); on a
/// single opt-in form, fill the fields still empty. A survey link is given only to the
/// first signup of a new address on a form that needs no confirmation: anything else
/// would hand a stranger someone's survey. A box already pending from the same form
/// version with the same words records nothing new, so repeated submits cannot grow the
/// ledger. On a single opt-in form every address gets the same answer, so the page tells
/// nobody which addresses were erased or unsubscribed (their submit asks for a confirmation).
///
/// Where the confirmation mail is rendered depends on the database. On SQLite, whose one
/// writer runs every write in turn, it is rendered before the write, from what the state
/// is read to be, and the write checks the state is still that (else it reads and renders
/// again), so that a slow template never holds the writer. On PostgreSQL, where writes do
/// not wait for each other, the state is read, the mail rendered and the signup recorded
/// in one transaction: half the round trips, and nothing read twice.
pub async fn submit(
    services: &Services,
    form: Form,
    submission: ValidSubmission,
    info: RequestInfo,
) -> Result<Submitted> {
    let Services { db, keys, signup: config, scripts, .. } = services;
    let suppression_hash = keys.email_hash(&submission.email.key());
    let signup = Arc::new(SignupInput { form, submission, info, suppression_hash });
    let (submitted, shares) = match db.has_one_writer() {
        true => submit_read_then_write(db, keys, config, &signup).await?,
        false => submit_in_one_transaction(db, keys, config, &signup).await?,
    };
    services.wake.mail.notify_one();
    // After the commit: the partners' `share` hooks run outside the transaction.
    shares.run(db, scripts).await;
    Ok(submitted)
}

/// [`submit`] where writes do not wait for each other: read, render and record in one
/// transaction. Two first submits of one address at once (a double click) race to create
/// the contact; the one that loses is tried again, and finds it.
async fn submit_in_one_transaction(
    db: &Db,
    keys: &Keys,
    config: &SignupConfig,
    signup: &Arc<SignupInput>,
) -> Result<(Submitted, partners::SharesAfterCommit)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let shares = partners::SharesAfterCommit::default();
        let (input, keys, config, queue) = (signup.clone(), keys.clone(), config.clone(), shares.clone());
        let recorded = db
            .write(move |conn| {
                let plan = plan_signup(conn, &input)?;
                let mail = match confirmation_mail_wanted(conn, &config, &input, &plan)? {
                    true => Some(render_confirmation(&keys, &config, &input, &plan.names)?),
                    false => None,
                };
                record_plan(conn, &keys, &config, &queue, &input, &plan, mail)
            })
            .await;
        match recorded {
            Err(Error::Conflict(_)) if attempt < 3 => continue,
            other => return other.map(|submitted| (submitted, shares)),
        }
    }
}

/// [`submit`] for a database with one writer: the read and the rendering outside it.
async fn submit_read_then_write(
    db: &Db,
    keys: &Keys,
    config: &SignupConfig,
    signup: &Arc<SignupInput>,
) -> Result<(Submitted, partners::SharesAfterCommit)> {
    for _ in 0..3 {
        let (input, read_config) = (signup.clone(), config.clone());
        let (plan, wanted) = db
            .read(move |conn| {
                let plan = plan_signup(conn, &input)?;
                let wanted = confirmation_mail_wanted(conn, &read_config, &input, &plan)?;
                Ok((plan, wanted))
            })
            .await?;
        // A mail the daily cap withholds is not rendered (the write checks the cap again).
        let mail = match wanted {
            true => Some(prepare_confirmation(keys, config, signup, &plan.names).await?),
            false => None,
        };
        let shares = partners::SharesAfterCommit::default();
        let (input, keys, config, queue) = (signup.clone(), keys.clone(), config.clone(), shares.clone());
        let recorded = db
            .write(move |conn| {
                let fresh = plan_signup(conn, &input)?;
                if !fresh.same_as(&plan) {
                    return Ok(None);
                }
                // The cap again: another request for the address may have been mailed since.
                let mail = match mail {
                    Some(mail) if confirmation_mail_wanted(conn, &config, &input, &plan)? => Some(mail),
                    _ => None,
                };
                record_plan(conn, &keys, &config, &queue, &input, &plan, mail).map(Some)
            })
            .await?;
        if let Some(submitted) = recorded {
            return Ok((submitted, shares));
        }
    }
    Err(Error::Unavailable("the signup's consent state kept changing while it was recorded".into()))
}

/// Whether a signup planned so is to be mailed a confirmation request now: it asks for
/// one, and the address has not reached its daily cap (which is logged).
fn confirmation_mail_wanted(
    conn: &mut DbConnection,
    config: &SignupConfig,
    input: &SignupInput,
    plan: &SignupPlan,
) -> Result<bool> {
    if !plan.requests_confirmation() {
        return Ok(false);
    }
    let capped = daily_cap_reached(conn, config, &input.submission.email.key())?;
    if capped {
        tracing::info!("confirmation mail withheld: the address reached its daily cap");
    }
    Ok(!capped)
}

/// A submit, as the read and the write of [`submit`] both see it.
struct SignupInput {
    form: Form,
    submission: ValidSubmission,
    info: RequestInfo,
    suppression_hash: String,
}

/// A box ticked that gets a `granted` event: its purpose, the words beside it, and for a
/// partner the list of partners shown.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    purpose: Purpose,
    text: String,
    proof: Option<String>,
}

/// What a submit will record, decided from the state it was read in.
#[derive(Debug, Clone)]
struct SignupPlan {
    contact: Option<ContactRow>,
    needs_confirmation: bool,
    grants: Vec<Grant>,
    /// What the confirmation request names: every ticked purpose not in force yet.
    requested: Vec<Purpose>,
    /// The requested purposes in words, for the mail.
    names: Vec<String>,
}

impl SignupPlan {
    fn requests_confirmation(&self) -> bool {
        self.needs_confirmation && !self.requested.is_empty()
    }

    /// Whether `other` (read again inside the write) records the same as this plan, whose
    /// mail was rendered already.
    fn same_as(&self, other: &SignupPlan) -> bool {
        let contact_id = |plan: &SignupPlan| plan.contact.as_ref().map(|c| c.id.clone());
        contact_id(self) == contact_id(other)
            && self.needs_confirmation == other.needs_confirmation
            && self.grants == other.grants
            && self.requested == other.requested
            && self.names == other.names
    }
}

fn plan_signup(conn: &mut DbConnection, input: &SignupInput) -> Result<SignupPlan> {
    let SignupInput { form, submission, info, suppression_hash } = input;
    let contact = contacts::find_contact_row_by_email_key(conn, &submission.email.key())?;
    let suppressed = ledger::is_suppressed(conn, suppression_hash)?;
    let needs_confirmation = suppressed || form.definition.opt_in == FormOptIn::Double;
    let consents = match &contact {
        Some(row) => load_contact_consents(conn, &row.id)?,
        None => super::consent::ContactConsents { events: Vec::new(), current: Vec::new() },
    };
    let basis = form.definition.basis_for(&submission.email);
    // Every box ticked, with the exact words beside it: the lists, then each partner
    // (its consent keeps the list of partners shown beside it).
    let shown = partners::form_partners(conn, &form.definition.partners)?;
    if let Some(gone) = submission.partners.iter().find(|id| !shown.iter().any(|p| p.id == id.to_string())) {
        return Err(Error::field(
            "partner",
            format!("{gone} is no longer offered on this form: nothing was shared with it"),
        ));
    }
    let snapshot = json!({"partners_shown": shown.iter().map(partners::shown).collect::<Vec<_>>()}).to_string();
    let lists = submission.consents.iter().map(|c| Grant {
        purpose: Purpose::List(c.list_id),
        text: c.text.clone(),
        proof: None,
    });
    let chosen = shown.iter().filter(|p| submission.partners.iter().any(|id| id.to_string() == p.id));
    let partner_boxes = chosen.map(|p| Grant {
        purpose: Purpose::Partner(p.id.clone()),
        text: partner_consent_text(&info.locale, p).text(),
        proof: Some(snapshot.clone()),
    });
    let mut grants = Vec::new();
    let mut requested = Vec::new();
    for grant in lists.chain(partner_boxes) {
        let status = consents.current.iter().find(|c| c.purpose == grant.purpose).map(|c| c.status);
        if status == Some(ConsentStatus::Active) && !suppressed {
            continue;
        }
        if needs_confirmation {
            requested.push(grant.purpose.clone());
            let last_grant =
                consents.events.iter().rev().find(|e| e.purpose == grant.purpose && e.action == ConsentAction::Granted);
            let already_asked = status == Some(ConsentStatus::Pending)
                && last_grant.is_some_and(|e| {
                    e.requires_confirmation
                        && e.basis == basis
                        && e.evidence.form_id.as_deref() == Some(form.id.to_string().as_str())
                        && e.evidence.form_version == Some(form.version)
                        && e.evidence.consent_text.as_deref() == Some(grant.text.as_str())
                        && e.evidence.proof == grant.proof
                });
            if already_asked {
                continue;
            }
        }
        grants.push(grant);
    }
    let names = if needs_confirmation { purpose_names(conn, &requested, &info.locale)? } else { Vec::new() };
    Ok(SignupPlan { contact, needs_confirmation, grants, requested, names })
}

/// The words beside a partner's box, as the page shows them and the ledger keeps them.
pub fn partner_consent_text(locale: &str, partner: &PartnerRow) -> crate::i18n::PartnerConsentText {
    crate::i18n::PartnerConsentText::new(
        locale,
        &partner.name,
        &partner.legal_name,
        &partner.description,
        &partner.privacy_policy_url,
    )
}

/// Records what a signup was planned to record, with its confirmation mail if any.
#[allow(clippy::too_many_arguments)]
fn record_plan(
    conn: &mut DbConnection,
    keys: &Keys,
    config: &SignupConfig,
    queue: &partners::SharesAfterCommit,
    input: &SignupInput,
    plan: &SignupPlan,
    mail: Option<PreparedConfirmation>,
) -> Result<Submitted> {
    let SignupInput { form, submission, info, .. } = input;
    let now = storage::now();
    let values = ContactValues::of(submission);
    // Read once for the events this signup emits: the form submitted, the contact created
    // or updated, each consent granted.
    let listeners = webhooks::Listeners::read(conn)?;
    let (contact_id, waiting_values) = match &plan.contact {
        Some(row) if plan.needs_confirmation => (row.id.clone(), Some(values)),
        Some(row) => {
            fill_empty_fields(conn, row.clone(), &values, now, &listeners)?;
            (row.id.clone(), None)
        }
        None => (insert_contact(conn, submission, now, &listeners)?, None),
    };
    listeners.emit(
        conn,
        EventType::FormSubmitted,
        json!({"form_id": form.id.to_string(), "form_slug": form.slug, "form_version": form.version, "contact_id": contact_id}),
    )?;
    let survey_url = match form.definition.survey {
        Some(FormSurvey { survey_id, after: SurveyMoment::Signup })
            if plan.contact.is_none() && form.definition.opt_in != FormOptIn::Double =>
        {
            surveys::start_in(conn, keys, &config.base_url, config.survey_link_ttl, survey_id, &contact_id)?
        }
        _ => None,
    };
    let basis = form.definition.basis_for(&submission.email);
    for grant in &plan.grants {
        apply_event_for(
            conn,
            NewConsentEvent {
                contact_id: contact_id.clone(),
                // The contact was found by this key, or made with it.
                email_key: Some(submission.email.key()),
                purpose: grant.purpose.clone(),
                action: ConsentAction::Granted,
                basis,
                requires_confirmation: plan.needs_confirmation,
                evidence: Evidence {
                    form_id: Some(form.id.to_string()),
                    form_version: Some(form.version),
                    consent_text: Some(grant.text.clone()),
                    proof: grant.proof.clone(),
                    ..info.evidence("form")
                },
                actor: Actor::Public.to_string(),
            },
            &listeners,
        )?;
        if let (Purpose::Partner(partner_id), false) = (&grant.purpose, plan.needs_confirmation) {
            // The opt-in is complete: the partner gets the lead once this commits.
            queue.queue_in(conn, &contact_id, partner_id)?;
        }
    }
    if let Some(prepared) = mail {
        let request = ConfirmationRequest {
            contact_id: &contact_id,
            form: Some((form.id.to_string(), form.version)),
            purposes: &plan.requested,
            email_key: &submission.email.key(),
            values: waiting_values.map(|v| serde_json::to_string(&v)).transpose().map_err(Error::internal)?,
        };
        record_confirmation(conn, request, prepared)?;
    }
    // The same answer whether the address was new, known, unsubscribed or erased.
    let outcome = match form.definition.opt_in {
        FormOptIn::Double => SubmitOutcome::PendingConfirmation,
        FormOptIn::Single | FormOptIn::Passive => SubmitOutcome::Subscribed,
    };
    Ok(Submitted { outcome, survey_url })
}

/// The contact's own fields a submit carries. For a person already known they wait with
/// the confirmation request and apply when the person confirms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ContactValues {
    attributes: Map<String, Value>,
    company: Option<String>,
    country: Option<String>,
}

impl ContactValues {
    fn of(submission: &ValidSubmission) -> Self {
        Self {
            attributes: submission.attributes.clone(),
            company: submission.company.clone(),
            country: submission.country.as_ref().map(|c| c.as_str().to_owned()),
        }
    }
}

/// A single opt-in submit for a known address fills only what is still empty: a stranger
/// who types someone's address must not rewrite what we hold about them.
fn fill_empty_fields(
    conn: &mut DbConnection,
    mut row: ContactRow,
    values: &ContactValues,
    now: chrono::NaiveDateTime,
    listeners: &webhooks::Listeners,
) -> Result<()> {
    let mut attributes: Map<String, Value> = serde_json::from_str(&row.attributes).unwrap_or_default();
    let mut changed = false;
    for (name, value) in &values.attributes {
        if !attributes.contains_key(name) {
            attributes.insert(name.clone(), value.clone());
            changed = true;
        }
    }
    if row.company.is_none() && values.company.is_some() {
        row.company = values.company.clone();
        changed = true;
    }
    if row.country.is_none() && values.country.is_some() {
        row.country = values.country.clone();
        changed = true;
    }
    if changed {
        row.attributes = Value::Object(attributes).to_string();
        row.updated_at = now;
        contacts::update_contact(conn, &row)?;
        listeners.emit_contact(conn, EventType::ContactUpdated, &row.id)?;
    }
    Ok(())
}

/// The person confirmed: the values they submitted with the request are theirs, and apply.
fn apply_waiting_values(conn: &mut DbConnection, contact_id: &str, values: ContactValues) -> Result<()> {
    let Some(mut row) = contacts::find_contact_row_by_id(conn, contact_id)? else {
        return Ok(());
    };
    let mut attributes: Value = serde_json::from_str(&row.attributes).unwrap_or(Value::Object(Map::new()));
    super::contacts::merge_patch(&mut attributes, Value::Object(values.attributes));
    row.attributes = attributes.to_string();
    row.company = values.company.or(row.company);
    row.country = values.country.or(row.country);
    row.updated_at = storage::now();
    contacts::update_contact(conn, &row)?;
    webhooks::emit_contact(conn, EventType::ContactUpdated, &row.id)
}

fn insert_contact(
    conn: &mut DbConnection,
    submission: &ValidSubmission,
    now: chrono::NaiveDateTime,
    listeners: &webhooks::Listeners,
) -> Result<String> {
    super::contacts::insert_new_in(
        conn,
        &submission.email,
        &submission.attributes,
        submission.company.clone(),
        submission.country.as_ref(),
        now,
        listeners,
    )
}

/// Renders a form's confirmation mail off the async workers and outside any transaction:
/// the template is the admin's, and may be slow.
async fn prepare_confirmation(
    keys: &Keys,
    config: &SignupConfig,
    input: &Arc<SignupInput>,
    names: &[String],
) -> Result<PreparedConfirmation> {
    let (keys, input, config, names) = (keys.clone(), input.clone(), config.clone(), names.to_vec());
    tokio::task::spawn_blocking(move || render_confirmation(&keys, &config, &input, &names))
        .await
        .map_err(Error::internal)?
}

/// A new confirmation request's link, and its mail rendered from the form's template
/// (within the sandbox's limits). Blocking.
fn render_confirmation(
    keys: &Keys,
    config: &SignupConfig,
    input: &SignupInput,
    names: &[String],
) -> Result<PreparedConfirmation> {
    let (id, expires_at, confirm_url) = confirmation_link(keys, config);
    let draft = confirmation_draft(config, &input.form, &input.submission, names, &confirm_url, &input.info.locale)?;
    let mail = mail::compose(&draft, &config.message_domain, None)?;
    Ok(PreparedConfirmation { id, expires_at, mail })
}

/// What the person is asked to agree to, in words in their language: list names, and
/// "sharing with <partner>".
fn purpose_names(conn: &mut DbConnection, purposes: &[Purpose], locale: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for purpose in purposes {
        names.extend(purpose_name(conn, purpose, locale)?);
    }
    Ok(names)
}

/// A list's name, or "sharing with <partner>"; `None` when it no longer exists.
fn purpose_name(conn: &mut DbConnection, purpose: &Purpose, locale: &str) -> Result<Option<String>> {
    Ok(match purpose {
        Purpose::List(id) => lists::find_list(conn, &id.to_string())?.map(|list| list.name),
        Purpose::Partner(id) => crate::storage::partners::find_partner(conn, id)?.map(|partner| {
            let sharing = crate::i18n::text(locale, "sharing_with");
            format!("{sharing} {} ({})", partner.name, partner.legal_name)
        }),
    })
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
    // The admin's template, within the sandbox's limits (its check at save used the same).
    let mut env = crate::mail::template::environment();
    env.add_template("mail", template).map_err(|e| Error::internal(e.to_string()))?;
    let template = env.get_template("mail").map_err(|e| Error::internal(e.to_string()))?;
    let context = minijinja::context! {
        confirm_url => confirm_url,
        lists => list_names.join(", "),
        form_title => form_title,
    };
    crate::mail::template::render(&template, &context, std::time::Instant::now() + crate::mail::template::DEADLINE)
        .map_err(Error::internal)
}

/// What a confirmation link would confirm, for its page, in the page's language; `None`
/// when the link is not valid, whatever the reason.
pub async fn confirmation_preview(db: &Db, keys: &Keys, token: &str, locale: &str) -> Result<Option<Vec<String>>> {
    let Some(claims) = keys.verify_link(LinkKind::Confirm, token) else {
        return Ok(None);
    };
    let locale = locale.to_owned();
    db.read(move |conn| {
        let Some(row) = confirmations::find_confirmation(conn, &claims.subject)? else {
            return Ok(None);
        };
        let requested = stored_purposes(&row);
        let pending = pending_of(&load_contact_consents(conn, &row.contact_id)?.current, &requested);
        let purposes = if pending.is_empty() { requested } else { pending };
        Ok(Some(purpose_names(conn, &purposes, &locale)?))
    })
    .await
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
/// submitted with the request apply; the address leaves the suppression list. A second
/// use changes nothing and answers the same. `None` when the link is not valid.
pub async fn confirm(services: &Services, token: &str, info: RequestInfo) -> Result<Option<Confirmed>> {
    let Services { db, keys, signup: config, scripts, .. } = services;
    let shares = partners::SharesAfterCommit::default();
    let confirmed = confirm_queueing(db, keys, config, shares.clone(), token, info).await?;
    if config.consent_receipt_mail {
        services.wake.mail.notify_one();
    }
    // After the commit: the partners' `share` hooks run outside the transaction.
    shares.run(db, scripts).await;
    Ok(confirmed)
}

async fn confirm_queueing(
    db: &Db,
    keys: &Keys,
    config: &SignupConfig,
    queue: partners::SharesAfterCommit,
    token: &str,
    info: RequestInfo,
) -> Result<Option<Confirmed>> {
    let Some(claims) = keys.verify_link(LinkKind::Confirm, token) else {
        return Ok(None);
    };
    let keys = keys.clone();
    let config = config.clone();
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
        let requested = stored_purposes(&row);
        if row.confirmed_at.is_some() {
            let names = purpose_names(conn, &requested, &info.locale)?;
            return Ok(Some(Confirmed { names, survey_url: survey_url(conn)? }));
        }
        let consents = load_contact_consents(conn, &row.contact_id)?;
        let pending = pending_of(&consents.current, &requested);
        for purpose in &pending {
            let basis = confirmed_basis(granted_basis(&consents, purpose, &row));
            apply_event(
                conn,
                NewConsentEvent {
                    contact_id: row.contact_id.clone(),
                    email_key: None,
                    purpose: purpose.clone(),
                    action: ConsentAction::Confirmed,
                    basis,
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
        if let Some(values) = row.contact_values.as_deref().and_then(|v| serde_json::from_str(v).ok()) {
            apply_waiting_values(conn, &row.contact_id, values)?;
        }
        contacts::update_status(conn, &row.contact_id, ContactStatus::Active.as_str(), now)?;
        ledger::delete_suppression(conn, &hash)?;
        // The opt-in is complete: partners the person chose get the lead once this commits.
        for purpose in &pending {
            if let Purpose::Partner(partner_id) = purpose {
                queue.queue_in(conn, &row.contact_id, partner_id)?;
            }
        }
        partners::mark_inbound_confirmed(conn, &row.contact_id)?;
        if pending.is_empty() {
            let names = purpose_names(conn, &requested, &info.locale)?;
            return Ok(Some(Confirmed { names, survey_url: survey_url(conn)? }));
        }
        let named = pending
            .iter()
            .map(|purpose| Ok((purpose, purpose_name(conn, purpose, &info.locale)?)))
            .collect::<Result<Vec<_>>>()?;
        if config.consent_receipt_mail {
            let agreed: Vec<(String, Option<String>)> = named
                .iter()
                .map(|(purpose, name)| {
                    let text = confirmed_grant(&consents, purpose, &row).and_then(|e| e.evidence.consent_text.clone());
                    (name.clone().unwrap_or_default(), text)
                })
                .collect();
            let receipt = receipt_draft(&keys, &config, &contact, &agreed, now, &info.locale);
            let mail = mail::compose(&receipt, &config.message_domain, None)?;
            mailer::enqueue(conn, CONSENT_RECEIPT_MAIL, &contact.email.key(), &mail)?;
        }
        let names = named.into_iter().filter_map(|(_, name)| name).collect();
        Ok(Some(Confirmed { names, survey_url: survey_url(conn)? }))
    })
    .await
}

/// The consent receipt mailed at confirmation (when `consent_receipt_mail` is on): what the
/// person agreed to, in the exact words shown, when, with whom, how to withdraw, and a link
/// to the proof of it, which any verifier checks against the signed ledger. Built-in words
/// only (no admin template), so composing it inside the confirmation's write is bounded.
fn receipt_draft(
    keys: &Keys,
    config: &SignupConfig,
    contact: &crate::domain::Contact,
    agreed: &[(String, Option<String>)],
    at: chrono::NaiveDateTime,
    locale: &str,
) -> Draft {
    let text = |key| crate::i18n::text(locale, key);
    let id = &contact.id.to_string();
    let mut body = format!("{}\n\n{}\n", text("receipt_intro"), text("receipt_agreed"));
    for (name, words) in agreed {
        body.push_str(&format!("\n- {name}"));
        if let Some(words) = words {
            body.push_str(&format!("\n  \u{201c}{words}\u{201d}"));
        }
        body.push('\n');
    }
    let proof = format!("{}/consent/receipt/{}", config.base_url, keys.sign_proof(id));
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
fn pending_of(current: &[crate::domain::consent::PurposeConsent], requested: &[Purpose]) -> Vec<Purpose> {
    current
        .iter()
        .filter(|c| c.status == ConsentStatus::Pending && requested.contains(&c.purpose))
        .map(|c| c.purpose.clone())
        .collect()
}

/// The grant a request asked to confirm: the last pending grant of the purpose from the
/// request's form and version (from anywhere, for a partner's lead).
fn confirmed_grant<'a>(
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
fn granted_basis(consents: &ContactConsents, purpose: &Purpose, row: &ConfirmationRow) -> ConsentBasis {
    confirmed_grant(consents, purpose, row)
        .map(|e| e.basis)
        .or_else(|| consents.current.iter().find(|c| &c.purpose == purpose).map(|c| c.basis))
        .unwrap_or(ConsentBasis::SingleOptIn)
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
