//! Leads partners send us: checked, mapped or refused by the `accept_lead` hook, with their
//! proof of consent; accepted, or confirmed by the person first.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{DEFAULT_PLUGIN, Lead, Partner, lead, not_found};
use crate::domain::ContactId;
use crate::domain::consent::{Actor, ConsentAction, ConsentBasis, ConsentStatus, Evidence, Purpose};
use crate::domain::contact::{MergeRule, Profile, parse_required_text, parse_short_text};
use crate::domain::partner::{EventType, InboundPolicy, LeadDirection, LeadStatus};
use crate::domain::{Country, Email, LeadId, evidence};
use crate::error::{Error, FieldError, FieldErrors, Result};
use crate::plugins::{Script, ScriptError};
use crate::services::confirmations::SignupConfig;
use crate::services::consent::{apply_event, load_contact_consents};
use crate::services::keys::Keys;
use crate::services::plugins::script_rejected;
use crate::services::{Services, confirmations, webhooks};
use crate::storage;
use crate::storage::consent::NewConsentEvent;
use crate::storage::partners::{LeadRow, PartnerRow};
use crate::storage::{DbConnection, consent as ledger, contacts, lists, partners as repo};

/// A lead a partner sends, with its proof of consent.
#[derive(Debug, Clone)]
pub struct InboundLead {
    pub partner_lead_id: String,
    pub email: String,
    pub company: Option<String>,
    pub country: Option<String>,
    pub attributes: Map<String, Value>,
    pub consent_text: String,
    pub collected_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub source_url: Option<String>,
    pub method: String,
    pub partners_shown: Vec<String>,
}

/// A lead checked: every fault named at once.
pub(super) struct CheckedLead {
    pub(super) email: Email,
    pub(super) company: Option<String>,
    pub(super) country: Option<Country>,
    pub(super) collected_at: DateTime<Utc>,
    /// The evidence as parsed: the IP in its canonical form.
    pub(super) ip: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) source_url: Option<String>,
}

pub(super) fn check_lead(lead: &InboundLead) -> Result<CheckedLead> {
    let mut errors = FieldErrors::new();
    errors.check("lead_id", parse_required_text(&lead.partner_lead_id, 200).map(|_| ()));
    let email = errors.check("email", Email::parse(lead.email.trim()).map_err(|e| e.to_string()));
    let company = match &lead.company {
        Some(company) => errors.check("company", parse_short_text(company, 200)).map(Some),
        None => Some(None),
    };
    let country = match &lead.country {
        Some(country) => errors.check("country", Country::parse(country).map_err(|e| e.to_string())).map(Some),
        None => Some(None),
    };
    for (name, value) in &lead.attributes {
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            errors.push(format!("attributes.{name}"), "attribute names are 1 to 64 characters of a-z, 0-9 and _");
        } else if value.is_object() {
            errors.push(format!("attributes.{name}"), "must be a string, number, boolean or array");
        }
    }
    errors.check("consent.text", parse_required_text(&lead.consent_text, 5000).map(|_| ()));
    errors.check("consent.method", parse_required_text(&lead.method, 100).map(|_| ()));
    let collected_at = errors.check("consent.collected_at", evidence::parse_past_time(&lead.collected_at, Utc::now()));
    let ip = match &lead.ip {
        Some(ip) => errors.check("consent.ip", evidence::parse_ip(ip)).map(|ip| Some(ip.to_string())),
        None => Some(None),
    };
    let user_agent = match &lead.user_agent {
        Some(agent) => errors.check("consent.user_agent", evidence::parse_user_agent(agent)).map(Some),
        None => Some(None),
    };
    let source_url = match &lead.source_url {
        Some(url) => errors.check("consent.source_url", evidence::parse_source_url(url)).map(|u| Some(u.into_string())),
        None => Some(None),
    };
    for (i, name) in lead.partners_shown.iter().enumerate() {
        errors.check(&format!("consent.partners_shown[{i}]"), parse_short_text(name, 200).map(|_| ()));
    }
    errors.finish(|| {
        Some(CheckedLead {
            email: email?,
            company: company?,
            country: country?,
            collected_at: collected_at?,
            ip: ip?,
            user_agent: user_agent?,
            source_url: source_url?,
        })
    })
}

/// How a received lead was taken.
#[derive(Debug, Clone)]
pub struct Received {
    /// As the partner sees it: `received`, whatever became of it (admins see that).
    pub lead: Lead,
    /// `false` when the same lead id had been sent before (nothing changed).
    pub created: bool,
}

/// Records a partner's lead. Idempotent by the partner's lead id. The partner's
/// `accept_lead` hook may map it or refuse it (422 with its reason); it runs between a read
/// and the write, never inside a write transaction. A suppressed address is
/// never reactivated: the lead is `declined` and nothing about the person changes. With
/// `accept` the lead's lists are granted on the `partner` basis with the proof; with
/// `reconfirm` they wait for the person to confirm a mail that says where the address came from.
pub async fn receive_lead(services: &Services, partner: Partner, lead: InboundLead) -> Result<Received> {
    let Services { db, keys, signup: config, scripts, .. } = services;
    // Checked before anything is read, and again after the hook mapped it.
    check_lead(&lead)?;
    let partner_id = partner.id;
    // Read: a lead sent before, the partner as it is now and its plugin.
    let (theirs, for_read) = (lead.partner_lead_id.clone(), scripts.clone());
    let known = db
        .read(move |conn| {
            if let Some(existing) = repo::find_inbound_lead(conn, partner_id, &theirs)? {
                return Ok(Err(existing));
            }
            let row = repo::find_partner(conn, partner_id)?.ok_or_else(|| not_found(partner.id))?;
            let plugin = row.share_plugin.clone().unwrap_or_else(|| DEFAULT_PLUGIN.to_owned());
            Ok(Ok((for_read.load_in(conn, &plugin)?, row)))
        })
        .await?;
    let (loaded, row) = match known {
        Err(existing) => return Ok(Received { lead: self::lead(existing)?.for_partner(), created: false }),
        Ok(found) => found,
    };
    // Work: the hook runs with no transaction open.
    let host = scripts.host.clone();
    let lead = tokio::task::spawn_blocking(move || run_accept_hook(&host, &loaded, &row, lead))
        .await
        .map_err(Error::internal)??;
    // Record.
    let keys = keys.clone();
    let config = config.clone();
    let received = db
        .write(move |conn| {
            let partner_id = partner.id;
            // Sent twice at once: the first one written is the lead.
            if let Some(existing) = repo::find_inbound_lead(conn, partner_id, &lead.partner_lead_id)? {
                return Ok(Received { lead: self::lead(existing)?.for_partner(), created: false });
            }
            let row = repo::find_partner(conn, partner_id)?.ok_or_else(|| not_found(partner.id))?;
            // What the hook answered is checked like what the partner sent.
            let checked = check_lead(&lead)?;
            let now = storage::now();
            let proof = json!({
                "partner_id": partner_id,
                "partner_lead_id": lead.partner_lead_id,
                "collected_at": checked.collected_at.to_rfc3339(),
                "method": lead.method,
                "partners_shown": lead.partners_shown,
            });
            let suppressed = ledger::is_suppressed(conn, &keys.email_hash(&checked.email.key()))?;
            let mut lead_row = LeadRow {
                id: LeadId::new(),
                partner_id,
                contact_id: None,
                direction: LeadDirection::Inbound,
                partner_lead_id: Some(lead.partner_lead_id.clone()),
                status: LeadStatus::Declined,
                payload: proof.to_string(),
                created_at: now,
                updated_at: now,
                lease_until: None,
            };
            if suppressed {
                repo::insert_lead(conn, &lead_row)?;
                return Ok(Received { lead: self::lead(lead_row)?.for_partner(), created: true });
            }
            let contact_id = upsert_lead_contact(conn, &checked, &lead, now)?;
            lead_row.contact_id = Some(contact_id);
            let reconfirm = partner.inbound_policy == InboundPolicy::Reconfirm;
            let current = load_contact_consents(conn, contact_id)?.current;
            let mut pending = Vec::new();
            for list in &partner.inbound_lists {
                let purpose = Purpose::List(*list);
                if current.iter().any(|c| c.purpose == purpose && c.status != ConsentStatus::Pending) {
                    // Never replace a consent already recorded, nor undo a withdrawal.
                    continue;
                }
                apply_event(
                    conn,
                    NewConsentEvent {
                        contact_id,
                        email_key: None,
                        purpose: purpose.clone(),
                        action: ConsentAction::Granted,
                        basis: ConsentBasis::Partner,
                        requires_confirmation: reconfirm,
                        evidence: Evidence {
                            method: "partner".to_owned(),
                            consent_text: Some(lead.consent_text.clone()),
                            ip: checked.ip.clone(),
                            user_agent: checked.user_agent.clone(),
                            source_url: checked.source_url.clone(),
                            proof: Some(proof.to_string()),
                            ..Evidence::default()
                        },
                        actor: Actor::Partner(partner.id).to_string(),
                    },
                )?;
                pending.push(purpose);
            }
            lead_row.status = if reconfirm && !pending.is_empty() {
                send_reconfirmation(conn, &keys, &config, &row, &checked, contact_id, &pending)?;
                LeadStatus::PendingConfirmation
            } else {
                LeadStatus::Accepted
            };
            repo::insert_lead(conn, &lead_row)?;
            Ok(Received { lead: self::lead(lead_row)?.for_partner(), created: true })
        })
        .await?;
    services.wake.mail.notify_one();
    Ok(received)
}

/// `accept_lead(lead, partner)`: answers the lead (possibly mapped), or throws a reason.
pub(super) fn run_accept_hook(
    host: &crate::plugins::PluginHost,
    loaded: &Script,
    partner: &PartnerRow,
    lead: InboundLead,
) -> Result<InboundLead> {
    let plugin = loaded.name();
    let as_json = json!({
        "lead_id": lead.partner_lead_id,
        "email": lead.email,
        "company": lead.company,
        "country": lead.country,
        "attributes": lead.attributes,
    });
    let arguments = [as_json, json!({"id": partner.id, "name": partner.name})];
    let answer = match loaded.call(host, "accept_lead", &arguments) {
        Ok(Some((answer, _))) => answer,
        Ok(None) => return Ok(lead),
        Err(ScriptError { thrown: Some(reason), .. }) => {
            return Err(Error::Validation(vec![FieldError::new("lead", format!("refused: {reason}"))]));
        }
        Err(error) => return Err(script_rejected(error)),
    };
    let Some(Value::Object(mapped)) = answer.to_json() else {
        return Err(Error::internal(format!("script {plugin}: accept_lead must answer the lead map")));
    };
    let text = |key: &str| mapped.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(InboundLead {
        email: text("email").unwrap_or(lead.email),
        company: text("company").or(lead.company),
        country: text("country").or(lead.country),
        attributes: mapped.get("attributes").and_then(Value::as_object).cloned().unwrap_or(lead.attributes),
        ..lead
    })
}

pub(super) fn upsert_lead_contact(
    conn: &mut DbConnection,
    checked: &CheckedLead,
    lead: &InboundLead,
    now: chrono::NaiveDateTime,
) -> Result<ContactId> {
    match contacts::find_contact_row_by_email_key(conn, &checked.email.key())? {
        Some(mut row) => {
            // A partner's data fills what we do not know; it never overwrites.
            let incoming = Profile {
                attributes: lead.attributes.clone(),
                company: checked.company.clone(),
                country: checked.country.as_ref().map(|c| c.as_str().to_owned()),
            };
            if crate::services::contacts::merge_into_row(&mut row, &incoming, MergeRule::FillUnknown) {
                row.updated_at = now;
                contacts::update_contact(conn, &row)?;
                webhooks::emit_contact(conn, EventType::ContactUpdated, row.id)?;
            }
            Ok(row.id)
        }
        None => {
            let listeners = webhooks::Listeners::read(conn)?;
            crate::services::contacts::insert_new_in(
                conn,
                &checked.email,
                &lead.attributes,
                checked.company.clone(),
                checked.country.as_ref(),
                now,
                &listeners,
            )
        }
    }
}

/// The double opt-in mail for a partner's lead: it names the partner, where and when the
/// address was given, and the lists, so that the person knows where we got it.
pub(super) fn send_reconfirmation(
    conn: &mut DbConnection,
    keys: &Keys,
    config: &SignupConfig,
    partner: &PartnerRow,
    checked: &CheckedLead,
    contact_id: ContactId,
    pending: &[Purpose],
) -> Result<()> {
    let request = confirmations::ConfirmationRequest {
        contact_id,
        form: None,
        purposes: pending,
        email_key: &checked.email.key(),
        values: None,
    };
    confirmations::request_confirmation(conn, keys, config, request, |conn, confirm_url| {
        let mut names = Vec::new();
        for purpose in pending {
            if let Some(id) = purpose.list_id()
                && let Some(list) = lists::find_list(conn, id)?
            {
                names.push(list.name);
            }
        }
        let text = format!(
            "You gave your e-mail address to {} ({}) on {} and agreed to hear from us.\n\n\
             We will send you: {}.\n\n\
             If that was you and you want it, confirm here:\n{confirm_url}\n\n\
             If not, ignore this message: nothing is sent to you unless you confirm, and we keep your address \
             for no longer than it takes to let the request expire.\n",
            partner.legal_name,
            partner.name,
            checked.collected_at.format("%Y-%m-%d"),
            names.join(", "),
        );
        Ok(crate::mail::Draft {
            from: config.mail_from.clone(),
            to: checked.email.to_string(),
            subject: format!("Please confirm: your address came to us from {}", partner.name),
            text,
            headers: vec![("Auto-Submitted".to_owned(), "auto-generated".to_owned())],
            ..crate::mail::Draft::default()
        })
    })
}

/// After a confirmation: the contact's inbound leads waiting for it are accepted.
pub fn mark_inbound_confirmed(conn: &mut DbConnection, contact_id: ContactId) -> Result<()> {
    for mut lead in repo::list_contact_leads(conn, contact_id, LeadDirection::Inbound)? {
        if lead.status == LeadStatus::PendingConfirmation {
            lead.status = LeadStatus::Accepted;
            lead.updated_at = storage::now();
            repo::update_lead(conn, &lead)?;
        }
    }
    Ok(())
}
