//! The consent ledger's use cases: recording and withdrawing consent, the current state,
//! verifying the chain, exporting what is held about a person, and erasure.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::keys::Keys;
use super::webhooks;
use crate::domain::consent::{
    Actor, ConsentAction, ConsentBasis, ConsentEvent, ConsentStatus, Evidence, Purpose, PurposeConsent,
    current_consents,
};
use crate::domain::partner::{EventType, LeadDirection, LeadStatus};
use crate::domain::{CampaignId, Contact, ContactId, ContactStatus, LeadId, PartnerId, RecipientStatus};
use crate::error::{Error, Result};
use crate::storage::consent::{self as ledger, ConsentEventRow, NewConsentEvent};
use crate::storage::{self, Db, DbConnection, contacts, lists, outbox};

/// A contact's ledger and what it adds up to.
#[derive(Debug, Clone)]
pub struct ContactConsents {
    pub events: Vec<ConsentEvent>,
    pub current: Vec<PurposeConsent>,
}

/// A consent obtained on the integrator's own channel.
#[derive(Debug, Clone)]
pub struct RecordedConsent {
    pub purpose: Purpose,
    pub basis: ConsentBasis,
    pub evidence: Evidence,
}

/// Appends an event and keeps list membership in step: on a list while its consent is
/// active, off it once withdrawn. A pending grant changes nothing until confirmed.
pub fn apply_event(conn: &mut DbConnection, event: NewConsentEvent) -> Result<ConsentEventRow> {
    let listeners = webhooks::Listeners::read(conn)?;
    apply_event_for(conn, event, &listeners)
}

/// [`apply_event`], telling the listeners the caller has read already.
pub fn apply_event_for(
    conn: &mut DbConnection,
    event: NewConsentEvent,
    listeners: &webhooks::Listeners,
) -> Result<ConsentEventRow> {
    let list_id = event.purpose.list_id();
    let contact_id = event.contact_id;
    let joins = match event.action {
        ConsentAction::Granted => !event.requires_confirmation,
        ConsentAction::Confirmed => true,
        ConsentAction::Withdrawn => false,
    };
    let leaves = event.action == ConsentAction::Withdrawn;
    let kind = match event.action {
        ConsentAction::Granted => EventType::ConsentGranted,
        ConsentAction::Confirmed => EventType::ConsentConfirmed,
        ConsentAction::Withdrawn => EventType::ConsentWithdrawn,
    };
    let data = json!({
        "contact_id": event.contact_id,
        "purpose": event.purpose.to_string(),
        "basis": event.basis.as_str(),
        "requires_confirmation": event.requires_confirmation,
        "method": event.evidence.method,
    });
    let row = ledger::append_event(conn, event)?;
    listeners.emit(conn, kind, data)?;
    if let Some(list_id) = list_id {
        if joins {
            contacts::add_membership(conn, contact_id, list_id, row.occurred_at)?;
        } else if leaves {
            contacts::remove_membership(conn, contact_id, list_id)?;
        }
    }
    Ok(row)
}

pub fn load_contact_consents(conn: &mut DbConnection, contact_id: ContactId) -> Result<ContactConsents> {
    let events = ledger::list_contact_events(conn, contact_id)?;
    let current = current_consents(&events);
    Ok(ContactConsents { events, current })
}

pub async fn contact_consents(db: &Db, id: ContactId) -> Result<ContactConsents> {
    db.read(move |conn| {
        contacts::find_contact(conn, id)?.ok_or_else(|| contact_not_found(id))?;
        load_contact_consents(conn, id)
    })
    .await
}

/// The bases the API may record: those an integrator can collect on its own channel. A
/// double opt-in happens only by the person confirming (start one with
/// [`super::confirmations::start_for_contact`]); a partner's consent comes with a partner's
/// lead, an import's with its provenance manifest.
pub fn check_api_basis(basis: ConsentBasis) -> std::result::Result<ConsentBasis, String> {
    match basis {
        ConsentBasis::DoubleOptIn => Err("a double opt-in is made only by the person confirming: start one with \
             POST /api/v1/contacts/{id}/confirmations, which mails them the link"
            .to_owned()),
        ConsentBasis::Partner => {
            Err("a partner's consent comes only with the partner's lead (POST /partner/v1/leads) \
             or a form's partner box"
                .to_owned())
        }
        ConsentBasis::Imported => Err("an imported list is recorded by an import with its provenance manifest \
             (POST /api/v1/imports)"
            .to_owned()),
        other => Ok(other),
    }
}

/// What the ledger keeps to say that evidence came from the integrator, not from us.
pub const CLAIMED_NOTE: &str = "claimed by the integrator: recorded through the API, not seen by consento";

/// Records a consent an integrator obtained itself, as what it is: method `api`, the caller
/// as actor, and the integrator's evidence (its method, the words, IP, user agent, page)
/// kept as claimed. A suppressed address (it left, or was erased) can come back only by
/// confirming a double opt-in.
pub async fn record_consent(
    db: &Db,
    keys: &Keys,
    id: ContactId,
    consent: RecordedConsent,
    actor: Actor,
) -> Result<ConsentEvent> {
    let basis = check_api_basis(consent.basis).map_err(|message| Error::field("basis", message))?;
    if let Purpose::Partner(_) = consent.purpose {
        return Err(Error::field(
            "purpose",
            "a partner's consent comes only with the partner's lead or a form's partner box",
        ));
    }
    let keys = keys.clone();
    db.write(move |conn| {
        let contact = contacts::find_contact(conn, id)?.ok_or_else(|| contact_not_found(id))?;
        if ledger::is_suppressed(conn, &keys.email_hash(&contact.email.key()))? {
            return Err(Error::Conflict(
                "this address is suppressed (it unsubscribed from everything or was erased); it can come back only \
                 by confirming a double opt-in (POST /api/v1/contacts/{id}/confirmations)"
                    .to_owned(),
            ));
        }
        check_purpose_exists(conn, &consent.purpose)?;
        let claimed_method = consent.evidence.method.clone();
        let proof = json!({"evidence": CLAIMED_NOTE, "claimed_method": claimed_method}).to_string();
        let row = apply_event(
            conn,
            NewConsentEvent {
                contact_id: id,
                email_key: None,
                purpose: consent.purpose,
                action: ConsentAction::Granted,
                basis,
                requires_confirmation: false,
                evidence: Evidence { method: "api".to_owned(), proof: Some(proof), ..consent.evidence },
                actor: actor.to_string(),
            },
        )?;
        event_by_id(conn, id, &row.id)
    })
    .await
}

/// Withdraws the consent for a purpose. Withdrawing what is already withdrawn records
/// nothing new and answers the state as it is.
pub async fn withdraw_consent(
    db: &Db,
    id: ContactId,
    purpose: Purpose,
    evidence: Evidence,
    actor: Actor,
) -> Result<ContactConsents> {
    db.write(move |conn| {
        contacts::find_contact(conn, id)?.ok_or_else(|| contact_not_found(id))?;
        withdraw_in(conn, id, &[purpose], &evidence, &actor)?;
        load_contact_consents(conn, id)
    })
    .await
}

/// Withdraws each of `purposes` that is not withdrawn yet; answers how many were.
pub fn withdraw_in(
    conn: &mut DbConnection,
    contact_id: ContactId,
    purposes: &[Purpose],
    evidence: &Evidence,
    actor: &Actor,
) -> Result<usize> {
    let current = load_contact_consents(conn, contact_id)?.current;
    let mut withdrawn = 0;
    for purpose in purposes {
        let state = current.iter().find(|c| &c.purpose == purpose);
        if state.is_some_and(|s| s.status == ConsentStatus::Withdrawn) {
            continue;
        }
        let basis = state.map_or(ConsentBasis::SingleOptIn, |s| s.basis);
        apply_event(
            conn,
            NewConsentEvent {
                contact_id: contact_id.to_owned(),
                email_key: None,
                purpose: purpose.clone(),
                action: ConsentAction::Withdrawn,
                basis,
                requires_confirmation: false,
                evidence: evidence.clone(),
                actor: actor.to_string(),
            },
        )?;
        if let Some(partner_id) = purpose.partner_id() {
            super::withdrawals::relay_withdrawal(conn, contact_id, Some(partner_id), "consent_withdrawn")?;
        }
        withdrawn += 1;
    }
    // Membership without a recorded consent ends too: the person asked to leave.
    for purpose in purposes {
        if let Some(list_id) = purpose.list_id() {
            contacts::remove_membership(conn, contact_id, list_id)?;
        }
    }
    Ok(withdrawn)
}

/// Leaves everything: every purpose withdrawn, the status `unsubscribed` (or `bounced`,
/// `complained`: `status`), the address suppressed (under `suppression_hash`, its keyed hash).
pub fn leave_all_in(
    conn: &mut DbConnection,
    suppression_hash: &str,
    contact: &Contact,
    evidence: &Evidence,
    actor: &Actor,
    status: ContactStatus,
) -> Result<()> {
    let contact_id = contact.id;
    let mut purposes: Vec<Purpose> = load_contact_consents(conn, contact_id)?
        .current
        .into_iter()
        .filter(|c| c.status != ConsentStatus::Withdrawn)
        .map(|c| c.purpose)
        .collect();
    let members: Vec<Purpose> =
        contact.lists.iter().map(|id| Purpose::List(*id)).filter(|p| !purposes.contains(p)).collect();
    purposes.extend(members);
    // Partners hear why first (`unsubscribed`, or `bounced`, `complained`), so that the
    // partner purposes withdrawn next do not tell them `consent_withdrawn` instead.
    super::withdrawals::relay_withdrawal(conn, contact_id, None, status.as_str())?;
    withdraw_in(conn, contact_id, &purposes, evidence, actor)?;
    contacts::update_status(conn, contact_id, status, storage::now())?;
    ledger::insert_suppression(conn, suppression_hash, status.as_str())?;
    Ok(())
}

/// Everything held about a person. After erasure `contact` is `None`, the events hold
/// nothing personal, and nothing else is left.
#[derive(Debug, Clone)]
pub struct ContactExport {
    pub contact_id: ContactId,
    pub contact: Option<Contact>,
    pub consents: ContactConsents,
    pub survey_responses: Vec<super::surveys::ResponseExport>,
    /// The campaigns addressed to the person, with what was recorded of each (sent,
    /// opened, clicked, bounced…), oldest first.
    pub campaigns: Vec<CampaignReceived>,
    /// Bounces, complaints and other delivery events recorded for the address.
    pub delivery_events: Vec<DeliveryEvent>,
    /// Leads exchanged with partners about the person: what was shared with whom, and
    /// what partners sent us.
    pub partner_leads: Vec<PartnerLead>,
}

#[derive(Debug, Clone)]
pub struct CampaignReceived {
    pub campaign_id: CampaignId,
    pub name: String,
    pub subject: String,
    /// The recipient's state: `queued`, `sent`, `excluded`, `failed`…
    pub status: RecipientStatus,
    /// Why it was excluded, if it was.
    pub reason: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub opened_at: Option<DateTime<Utc>>,
    pub clicked_at: Option<DateTime<Utc>>,
    pub bounced_at: Option<DateTime<Utc>>,
    pub complained_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct DeliveryEvent {
    pub kind: String,
    pub campaign_id: Option<CampaignId>,
    pub detail: String,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct PartnerLead {
    pub partner_id: PartnerId,
    pub partner_name: Option<String>,
    /// `outbound`: we shared the person's details with the partner; `inbound`: the
    /// partner sent them to us.
    pub direction: LeadDirection,
    pub status: LeadStatus,
    /// What was shared (outbound) or received (inbound).
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

pub async fn export_contact(db: &Db, keys: &Keys, id: ContactId) -> Result<ContactExport> {
    let keys = keys.clone();
    db.read(move |conn| export_in(conn, &keys, id)).await
}

pub fn export_in(conn: &mut DbConnection, keys: &Keys, id: ContactId) -> Result<ContactExport> {
    let contact = contacts::find_contact(conn, id)?;
    let consents = load_contact_consents(conn, id)?;
    if contact.is_none() && consents.events.is_empty() {
        return Err(contact_not_found(id));
    }
    let survey_responses = super::surveys::export_in(conn, id)?;
    let utc = |at: Option<chrono::NaiveDateTime>| at.map(|at| at.and_utc());
    let campaigns = crate::storage::campaigns::list_contact_recipients(conn, id)?
        .into_iter()
        .map(|(row, name, subject)| CampaignReceived {
            campaign_id: row.campaign_id,
            name,
            subject,
            status: row.status,
            reason: row.reason,
            sent_at: utc(row.sent_at),
            opened_at: utc(row.opened_at),
            clicked_at: utc(row.clicked_at),
            bounced_at: utc(row.bounced_at),
            complained_at: utc(row.complained_at),
            unsubscribed_at: utc(row.unsubscribed_at),
        })
        .collect();
    // Delivery events are kept by the address's keyed hash; after erasure there is no
    // address to look them up by, and they name nobody.
    let delivery_events = match &contact {
        Some(contact) => {
            crate::storage::campaigns::list_address_delivery_events(conn, &keys.email_hash(&contact.email.key()))?
                .into_iter()
                .map(|row| DeliveryEvent {
                    kind: row.kind,
                    campaign_id: row.campaign_id,
                    detail: row.detail,
                    occurred_at: row.occurred_at.and_utc(),
                })
                .collect()
        }
        None => Vec::new(),
    };
    let mut partner_leads = Vec::new();
    for direction in [LeadDirection::Outbound, LeadDirection::Inbound] {
        for lead in crate::storage::partners::list_contact_leads(conn, id, direction)? {
            let partner_name = crate::storage::partners::find_partner(conn, lead.partner_id)?.map(|p| p.name);
            partner_leads.push(PartnerLead {
                partner_id: lead.partner_id,
                partner_name,
                direction: lead.direction,
                status: lead.status,
                payload: serde_json::from_str(&lead.payload).unwrap_or(serde_json::Value::String(lead.payload)),
                created_at: lead.created_at.and_utc(),
            });
        }
    }
    Ok(ContactExport { contact_id: id, contact, consents, survey_responses, campaigns, delivery_events, partner_leads })
}

/// Erasure: the contact and everything personal go; the ledger keeps its events with the
/// personal fields redacted (the chain still verifies); a keyed hash of the address stays
/// on the suppression list so that no import or partner brings it back.
pub async fn erase_contact(db: &Db, keys: &Keys, id: ContactId) -> Result<()> {
    let keys = keys.clone();
    db.write(move |conn| {
        let contact = contacts::find_contact(conn, id)?.ok_or_else(|| contact_not_found(id))?;
        ledger::insert_suppression(conn, &keys.email_hash(&contact.email.key()), "erased")?;
        erase_in(conn, &contact)
    })
    .await?;
    db.scrub_after_erasure();
    Ok(())
}

/// Removes a contact and redacts its ledger, without suppressing the address (for
/// signups never confirmed, which gave no consent to remember).
pub fn erase_in(conn: &mut DbConnection, contact: &Contact) -> Result<()> {
    let contact_id = contact.id;
    // Partners that received the lead are told before the lead loses its contact.
    super::withdrawals::relay_withdrawal(conn, contact_id, None, "erased")?;
    let leads = crate::storage::partners::list_contact_leads(conn, contact_id, LeadDirection::Outbound)?;
    let lead_ids: Vec<LeadId> = leads.into_iter().map(|lead| lead.id).collect();
    crate::storage::partners::redact_contact(conn, contact_id)?;
    crate::storage::surveys::delete_contact_responses(conn, contact_id)?;
    webhooks::redact_contact(conn, contact_id, &lead_ids)?;
    ledger::redact_contact_events(conn, contact_id)?;
    outbox::delete_for_recipient(conn, &contact.email.key())?;
    // Campaigns keep their counts, not the address.
    crate::storage::campaigns::redact_contact(conn, contact_id)?;
    contacts::delete_contact(conn, contact_id)?;
    webhooks::emit(conn, EventType::ContactDeleted, json!({"contact_id": contact_id}))?;
    Ok(())
}

fn event_by_id(conn: &mut DbConnection, contact_id: ContactId, event_id: &str) -> Result<ConsentEvent> {
    ledger::list_contact_events(conn, contact_id)?
        .into_iter()
        .find(|e| e.id == event_id)
        .ok_or_else(|| Error::internal("an appended event vanished"))
}

fn check_purpose_exists(conn: &mut DbConnection, purpose: &Purpose) -> Result<()> {
    if let Purpose::List(id) = purpose
        && lists::find_list(conn, *id)?.is_none()
    {
        return Err(Error::field("purpose", format!("there is no list {id}")));
    }
    Ok(())
}

fn contact_not_found(id: ContactId) -> Error {
    Error::NotFound(format!("there is no contact {id}"))
}
