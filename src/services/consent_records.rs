//! A contact's consents as records a regulator's tools read: an ISO/IEC TS 27560 consent
//! record in the W3C Data Privacy Vocabulary (JSON-LD), and a Kantara Consent Receipt
//! v1.1. Both are views of the same ledger events as the proof bundle, and point at their
//! leaves, so that what they say can be checked against the signed log.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::domain::ContactId;
use crate::domain::consent::{ConsentBasis, ConsentEvent, ConsentStatus, Purpose, PurposeConsent};
use crate::error::{Error, Result};
use crate::storage::{Db, DbConnection, contacts, lists, partners};

/// Who collects the consent: named in every record.
#[derive(Debug, Clone)]
pub struct Controller {
    pub name: String,
    pub email: String,
    pub url: String,
}

impl Controller {
    /// From the sender of system mail (`Name <address>`) and the public URL.
    pub fn from_settings(settings: &crate::settings::Settings) -> Self {
        let (name, email) = match crate::mail::parse_mailbox(&settings.mail_from) {
            Ok((name, email)) => (name.unwrap_or_else(|| email.clone()), email),
            Err(_) => (settings.mail_from.clone(), settings.mail_from.clone()),
        };
        Self { name, email, url: settings.base_url() }
    }
}

/// What the records need, read once.
struct Facts {
    contact_id: ContactId,
    country: Option<String>,
    events: Vec<ConsentEvent>,
    current: Vec<PurposeConsent>,
    names: HashMap<Purpose, String>,
}

fn facts(conn: &mut DbConnection, id: ContactId) -> Result<Facts> {
    let contact = contacts::find_contact(conn, id)?;
    let consents = super::consent::load_contact_consents(conn, id)?;
    if contact.is_none() && consents.events.is_empty() {
        return Err(Error::NotFound(format!("there is no contact {id}")));
    }
    let mut names = HashMap::new();
    for consent in &consents.current {
        let name = match &consent.purpose {
            Purpose::List(list) => lists::find_list(conn, *list)?.map(|l| l.name),
            Purpose::Partner(_) => match consent.purpose.partner_id() {
                Some(partner) => partners::find_partner(conn, partner)?.map(|p| format!("sharing with {}", p.name)),
                None => None,
            },
        };
        names.insert(consent.purpose.clone(), name.unwrap_or_else(|| consent.purpose.to_string()));
    }
    Ok(Facts {
        contact_id: id,
        country: contact.and_then(|c| c.country.map(|c| c.as_str().to_owned())),
        events: consents.events,
        current: consents.current,
        names,
    })
}

/// The DPV consent status of a purpose's consent now.
fn dpv_status(status: ConsentStatus) -> &'static str {
    match status {
        ConsentStatus::Pending => "dpv:ConsentRequested",
        ConsentStatus::Active => "dpv:ConsentGiven",
        ConsentStatus::Withdrawn => "dpv:ConsentWithdrawn",
    }
}

/// The kind of consent (or other legal basis) a basis stands for. A pre-ticked box left
/// ticked is implied consent, which the GDPR does not accept (Planet49).
fn dpv_basis(basis: ConsentBasis) -> &'static str {
    match basis {
        ConsentBasis::DoubleOptIn => "dpv:ExplicitlyExpressedConsent",
        ConsentBasis::SingleOptIn | ConsentBasis::Partner | ConsentBasis::Imported => "dpv:ExpressedConsent",
        ConsentBasis::PassiveOptIn => "dpv:ImpliedConsent",
        ConsentBasis::SoftOptIn | ConsentBasis::B2bProfessional | ConsentBasis::B2bRoleAddress => {
            "dpv:LegitimateInterest"
        }
    }
}

/// The events of a purpose, oldest first.
fn events_of<'a>(facts: &'a Facts, purpose: &'a Purpose) -> impl Iterator<Item = &'a ConsentEvent> + 'a {
    facts.events.iter().filter(move |e| &e.purpose == purpose)
}

/// The grant (or confirmation) that made the consent what it is: the latest event that
/// gave it, with the words shown.
fn indication<'a>(facts: &'a Facts, purpose: &'a Purpose) -> Option<&'a ConsentEvent> {
    events_of(facts, purpose).filter(|e| e.action != crate::domain::consent::ConsentAction::Withdrawn).last()
}

fn leaves(facts: &Facts, purpose: &Purpose) -> Vec<Value> {
    events_of(facts, purpose).map(|e| json!({"event_id": e.id, "leaf_index": e.leaf_index})).collect()
}

pub async fn dpv_record(db: &Db, id: ContactId, controller: Controller) -> Result<Value> {
    let facts = db.read(move |conn| facts(conn, id)).await?;
    let subject = format!("urn:consento:contact:{}", facts.contact_id);
    let graph: Vec<Value> = facts
        .current
        .iter()
        .map(|consent| {
            let shown = indication(&facts, &consent.purpose);
            let notice = shown.and_then(|e| e.evidence.consent_text.as_ref()).map(|text| {
                json!({
                    "@type": "dpv:ConsentNotice",
                    "dct:description": text,
                    "dct:identifier": shown.and_then(|e| e.consent_text_sha256.clone()),
                    "dct:hasVersion": shown.and_then(|e| e.evidence.form_version),
                    "dct:source": shown.and_then(|e| e.evidence.form_id).map(|f| format!("urn:consento:form:{f}")),
                })
            });
            let mut record = json!({
                "@id": format!("urn:consento:consent-record:{}:{}", facts.contact_id, consent.purpose),
                "@type": "dpv:ConsentRecord",
                "dpv:hasDataSubject": {"@id": subject, "@type": "dpv:DataSubject"},
                "dpv:hasDataController": {
                    "@type": "dpv:DataController",
                    "foaf:name": controller.name,
                    "dpv:hasContact": format!("mailto:{}", controller.email),
                    "foaf:homepage": controller.url,
                },
                "dpv:hasPurpose": {
                    "@id": format!("urn:consento:purpose:{}", consent.purpose),
                    "@type": "dpv:Purpose",
                    "dct:description": facts.names.get(&consent.purpose),
                },
                "dpv:hasConsentStatus": {"@id": dpv_status(consent.status)},
                "dpv:hasLegalBasis": {"@id": dpv_basis(consent.basis), "dct:identifier": consent.basis.as_str()},
                "dpv:isIndicatedBy": {"@id": shown.map_or_else(|| subject.clone(), |e| indicated_by(&e.actor, &subject))},
                "dpv:isIndicatedAtTime": {"@type": "xsd:dateTime", "@value": consent.confirmed_at.unwrap_or(consent.granted_at).to_rfc3339()},
                "dpv:hasNotice": notice,
                "dpv:hasRight": {
                    "@id": "eu-gdpr:A7-3",
                    "dct:description": "Withdraw at any time: the unsubscribe link in every mail, the preference centre, or by writing to the controller.",
                },
                "dct:source": leaves(&facts, &consent.purpose),
            });
            if let Some(country) = &facts.country {
                record["dpv:hasJurisdiction"] = json!({"@id": format!("loc:{country}")});
            }
            if let Some(withdrawn) = consent.withdrawn_at {
                record["dpv:hasWithdrawalTime"] = json!({"@type": "xsd:dateTime", "@value": withdrawn.to_rfc3339()});
            }
            record
        })
        .collect();
    Ok(json!({
        "@context": {
            "dpv": "https://w3id.org/dpv#",
            "eu-gdpr": "https://w3id.org/dpv/legal/eu/gdpr#",
            "loc": "https://w3id.org/dpv/loc#",
            "dct": "http://purl.org/dc/terms/",
            "foaf": "http://xmlns.com/foaf/0.1/",
            "xsd": "http://www.w3.org/2001/XMLSchema#",
        },
        "@graph": graph,
    }))
}

/// The data subject indicated the consent through a public page; anyone else recorded it.
fn indicated_by(actor: &str, subject: &str) -> String {
    if actor == "public" { subject.to_owned() } else { format!("urn:consento:actor:{actor}") }
}

pub async fn kantara_receipt(db: &Db, id: ContactId, controller: Controller) -> Result<Value> {
    let facts = db.read(move |conn| facts(conn, id)).await?;
    let latest = facts.events.iter().map(|e| e.occurred_at).max();
    let purposes: Vec<Value> = facts
        .current
        .iter()
        .map(|consent| {
            let partner = match &consent.purpose {
                Purpose::Partner(_) => facts.names.get(&consent.purpose).cloned(),
                Purpose::List(_) => None,
            };
            json!({
                "purpose": facts.names.get(&consent.purpose),
                "purposeCategory": ["marketing e-mail"],
                "consentType": if consent.basis == ConsentBasis::PassiveOptIn { "IMPLICIT" } else { "EXPLICIT" },
                "piiCategory": ["e-mail address"],
                "primaryPurpose": partner.is_none(),
                "termination": "until withdrawn: the unsubscribe link in every mail or the preference centre",
                "thirdPartyDisclosure": partner.is_some(),
                "thirdPartyName": partner,
                "status": consent.status.as_str(),
                "legalBasis": consent.basis.as_str(),
                "consentText": indication(&facts, &consent.purpose).and_then(|e| e.evidence.consent_text.clone()),
                "ledgerLeaves": leaves(&facts, &consent.purpose),
            })
        })
        .collect();
    Ok(json!({
        "version": "KI-CR-v1.1.0",
        "jurisdiction": facts.country.clone().unwrap_or_default(),
        "consentTimestamp": latest.map_or(0, |t| t.timestamp()),
        "collectionMethod": facts.events.first().map(|e| e.evidence.method.clone()).unwrap_or_default(),
        "consentReceiptID": format!("urn:consento:receipt:{}:{}", facts.contact_id, facts.events.len()),
        "language": "en",
        "piiPrincipalId": format!("urn:consento:contact:{}", facts.contact_id),
        "piiControllers": [{
            "piiController": controller.name,
            "contact": controller.email,
            "email": controller.email,
            "piiControllerUrl": controller.url,
        }],
        "policyUrl": controller.url,
        "services": [{"service": "e-mail", "purposes": purposes}],
        "sensitive": false,
        "spiCat": [],
    }))
}
