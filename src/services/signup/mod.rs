//! The public side of consent: signing up through a form, confirming a double opt-in,
//! unsubscribing, the preference centre, and purging signups never confirmed.

mod confirm;
mod confirmation_mail;
mod unsubscribe;

pub use confirm::*;
pub use confirmation_mail::*;
pub use unsubscribe::*;

use std::sync::Arc;

use serde_json::json;

use super::consent::{apply_event_for, load_contact_consents};

use super::Services;
use super::confirmations::{
    ConfirmationRequest, PreparedConfirmation, SignupConfig, daily_cap_reached, purpose_names, record_confirmation,
};
use super::forms::Form;
use super::keys::Keys;
use super::{partners, surveys, webhooks};
use crate::domain::ContactId;
use crate::domain::consent::{Actor, ConsentAction, ConsentStatus, Evidence, Purpose};
use crate::domain::contact::{MergeRule, Profile};
use crate::domain::form::{FormOptIn, ValidSubmission};
use crate::domain::form::{FormSurvey, SurveyMoment};
use crate::domain::partner::EventType;
use crate::error::{Error, Result};
use crate::storage::consent::{self as ledger, NewConsentEvent};
use crate::storage::models::ContactRow;
use crate::storage::partners::PartnerRow;
use crate::storage::{self, Db, DbConnection, contacts};

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
    let brand = super::brands::brand_for(db, form.definition.brand_id).await?;
    let signup = Arc::new(SignupInput { form, submission, info, suppression_hash, brand });
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
    /// Who is asking, named at the foot of the confirmation mail.
    brand: Option<crate::domain::brand::Brand>,
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
        let contact_id = |plan: &SignupPlan| plan.contact.as_ref().map(|c| c.id);
        contact_id(self) == contact_id(other)
            && self.needs_confirmation == other.needs_confirmation
            && self.grants == other.grants
            && self.requested == other.requested
            && self.names == other.names
    }
}

fn plan_signup(conn: &mut DbConnection, input: &SignupInput) -> Result<SignupPlan> {
    let SignupInput { form, submission, info, suppression_hash, .. } = input;
    let contact = contacts::find_contact_row_by_email_key(conn, &submission.email.key())?;
    let suppressed = ledger::is_suppressed(conn, suppression_hash)?;
    let needs_confirmation = suppressed || form.definition.opt_in == FormOptIn::Double;
    let consents = match &contact {
        Some(row) => load_contact_consents(conn, row.id)?,
        None => super::consent::ContactConsents { events: Vec::new(), current: Vec::new() },
    };
    let basis = form.definition.basis_for(&submission.email);
    // Every box ticked, with the exact words beside it: the lists, then each partner
    // (its consent keeps the list of partners shown beside it).
    let shown = partners::form_partners(conn, &form.definition.partners)?;
    if let Some(gone) = submission.partners.iter().find(|id| !shown.iter().any(|p| p.id == **id)) {
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
    let chosen = shown.iter().filter(|p| submission.partners.contains(&p.id));
    let partner_boxes = chosen.map(|p| Grant {
        purpose: Purpose::Partner(p.id.to_string()),
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
                        && e.evidence.form_id == Some(form.id)
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
    let values = submitted_profile(submission);
    // Read once for the events this signup emits: the form submitted, the contact created
    // or updated, each consent granted.
    let listeners = webhooks::Listeners::read(conn)?;
    let (contact_id, waiting_values) = match &plan.contact {
        Some(row) if plan.needs_confirmation => (row.id, Some(values)),
        Some(row) => {
            fill_empty_fields(conn, row.clone(), &values, now, &listeners)?;
            (row.id, None)
        }
        None => {
            let id = insert_contact(conn, submission, now, &listeners)?;
            // The language the person signed up in: their later pages and mails speak it.
            super::brands::set_contact_locale_in(conn, id, &info.locale)?;
            (id, None)
        }
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
            surveys::start_in(conn, keys, &config.base_url, config.survey_link_ttl, survey_id, contact_id)?
        }
        _ => None,
    };
    let basis = form.definition.basis_for(&submission.email);
    for grant in &plan.grants {
        apply_event_for(
            conn,
            NewConsentEvent {
                contact_id,
                // The contact was found by this key, or made with it.
                email_key: Some(submission.email.key()),
                purpose: grant.purpose.clone(),
                action: ConsentAction::Granted,
                basis,
                requires_confirmation: plan.needs_confirmation,
                evidence: Evidence {
                    form_id: Some(form.id),
                    form_version: Some(form.version),
                    consent_text: Some(grant.text.clone()),
                    proof: grant.proof.clone(),
                    ..info.evidence("form")
                },
                actor: Actor::Public.to_string(),
            },
            &listeners,
        )?;
        if let (Some(partner_id), false) = (grant.purpose.partner_id(), plan.needs_confirmation) {
            // The opt-in is complete: the partner gets the lead once this commits.
            queue.queue_in(conn, contact_id, partner_id)?;
        }
    }
    if let Some(prepared) = mail {
        let request = ConfirmationRequest {
            contact_id,
            form: Some((form.id, form.version)),
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
fn submitted_profile(submission: &ValidSubmission) -> Profile {
    Profile {
        attributes: submission.attributes.clone(),
        company: submission.company.clone(),
        country: submission.country.as_ref().map(|c| c.as_str().to_owned()),
    }
}

/// A single opt-in submit for a known address fills only what is still empty: a stranger
/// who types someone's address must not rewrite what we hold about them.
fn fill_empty_fields(
    conn: &mut DbConnection,
    mut row: ContactRow,
    incoming: &Profile,
    now: chrono::NaiveDateTime,
    listeners: &webhooks::Listeners,
) -> Result<()> {
    if crate::services::contacts::merge_into_row(&mut row, incoming, MergeRule::FillUnknown) {
        row.updated_at = now;
        contacts::update_contact(conn, &row)?;
        listeners.emit_contact(conn, EventType::ContactUpdated, row.id)?;
    }
    Ok(())
}

/// The person confirmed: the values they submitted with the request are theirs, and
/// replace what was held.
fn apply_waiting_values(conn: &mut DbConnection, contact_id: ContactId, submitted: Profile) -> Result<()> {
    let Some(mut row) = contacts::find_contact_row_by_id(conn, contact_id)? else {
        return Ok(());
    };
    if crate::services::contacts::merge_into_row(&mut row, &submitted, MergeRule::Overwrite) {
        row.updated_at = storage::now();
        contacts::update_contact(conn, &row)?;
        webhooks::emit_contact(conn, EventType::ContactUpdated, row.id)?;
    }
    Ok(())
}

fn insert_contact(
    conn: &mut DbConnection,
    submission: &ValidSubmission,
    now: chrono::NaiveDateTime,
    listeners: &webhooks::Listeners,
) -> Result<ContactId> {
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
