//! Double opt-in requests: the confirmation link, its mail within the daily cap, and the
//! request recorded for the click to find; for a form's signup, a partner's lead, a list
//! re-ticked in the preference centre, or a confirmation the API starts for an integrator.
//! Each of the last two records a pending grant per purpose; only the person's click makes
//! it a double opt-in.

use chrono::TimeDelta;

use super::Services;
use super::consent::{apply_event, load_contact_consents};
use super::keys::{Keys, LinkKind};
use super::mailer;
use crate::domain::ConfirmationId;
use crate::domain::Contact;
use crate::domain::ContactId;
use crate::domain::FormId;
use crate::domain::consent::{Actor, ConsentAction, ConsentBasis, ConsentStatus, Evidence, Purpose};
use crate::error::{Error, Result};
use crate::mail;
use crate::mail::Draft;
use crate::settings::Settings;
use crate::storage::confirmations::{self as repo, ConfirmationRow};
use crate::storage::consent::NewConsentEvent;
use crate::storage::{self, DbConnection, lists, outbox};

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
    pub consent_receipt_mail: bool,
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
            consent_receipt_mail: settings.consent_receipt_mail,
        }
    }
}

/// A confirmation request's id, link and mail, made before the write that records it.
pub(crate) struct PreparedConfirmation {
    pub id: ConfirmationId,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub mail: mail::Composed,
}

/// The id and link of a new confirmation request.
pub(crate) fn confirmation_link(
    keys: &Keys,
    config: &SignupConfig,
) -> (ConfirmationId, chrono::DateTime<chrono::Utc>, String) {
    let id = ConfirmationId::new();
    let expires_at = chrono::Utc::now() + config.confirmation_ttl;
    let token = keys.sign_link(LinkKind::Confirm, &id.to_string(), None, Some(expires_at));
    (id, expires_at, format!("{}/confirm/{token}", config.base_url))
}

/// What a confirmation request records besides its mail.
pub(crate) struct ConfirmationRequest<'a> {
    pub contact_id: ContactId,
    /// The form, at its version, that asked (none for a partner's lead).
    pub form: Option<(FormId, i32)>,
    pub purposes: &'a [Purpose],
    pub email_key: &'a str,
    /// The values the form submitted (JSON), applied once the person confirms.
    pub values: Option<String>,
}

/// Records a request to confirm `purposes` (from a form, at its version, or from a partner)
/// and queues its mail, written by `draft` around the confirmation link. However many
/// requests (from however many IPs), an address gets at most `confirmation_mails_per_day`
/// such mails a day: a form cannot be used to bomb someone's inbox. A request whose mail
/// the cap withholds is not recorded: no link could ever confirm it.
pub(crate) fn request_confirmation(
    conn: &mut DbConnection,
    keys: &Keys,
    config: &SignupConfig,
    request: ConfirmationRequest<'_>,
    draft: impl FnOnce(&mut DbConnection, &str) -> Result<Draft>,
) -> Result<()> {
    if daily_cap_reached(conn, config, request.email_key)? {
        tracing::info!("confirmation mail withheld: the address reached its daily cap");
        return Ok(());
    }
    let (id, expires_at, confirm_url) = confirmation_link(keys, config);
    let mail = mail::compose(&draft(conn, &confirm_url)?, &config.message_domain, None)?;
    record_confirmation(conn, request, PreparedConfirmation { id, expires_at, mail })
}

pub(crate) fn daily_cap_reached(conn: &mut DbConnection, config: &SignupConfig, email_key: &str) -> Result<bool> {
    let since = storage::now() - TimeDelta::hours(24);
    let sent = outbox::count_recent(conn, email_key, CONFIRMATION_MAIL, since)?;
    Ok(sent >= i64::from(config.confirmation_mails_per_day))
}

/// Records a confirmation request and queues its mail; the caller has checked the daily
/// cap in the same transaction.
pub(crate) fn record_confirmation(
    conn: &mut DbConnection,
    request: ConfirmationRequest<'_>,
    prepared: PreparedConfirmation,
) -> Result<()> {
    let (form_id, form_version) = request.form.unzip();
    let purposes = request.purposes.iter().map(ToString::to_string).collect::<Vec<_>>();
    repo::insert_confirmation(
        conn,
        &ConfirmationRow {
            id: prepared.id,
            contact_id: request.contact_id,
            form_id,
            form_version,
            purposes: serde_json::to_string(&purposes).map_err(Error::internal)?,
            created_at: storage::now(),
            expires_at: prepared.expires_at.naive_utc(),
            confirmed_at: None,
            contact_values: request.values,
        },
    )?;
    mailer::enqueue(conn, CONFIRMATION_MAIL, request.email_key, &prepared.mail)
}

/// What the ledger keeps in place of the link in the mail's words: the link is a secret.
const LINK_PLACEHOLDER: &str = "[confirmation link]";

/// One purpose to confirm, with the words the person was shown for it; `None`: the words
/// are those of the confirmation mail.
#[derive(Debug, Clone)]
pub struct Ask {
    pub purpose: Purpose,
    pub consent_text: Option<String>,
}

/// A person asked to confirm: what (each purpose with its words), on what evidence, by
/// whom, and in which language the mail is written.
#[derive(Debug, Clone, Copy)]
pub struct Asking<'a> {
    pub contact: &'a Contact,
    pub asks: &'a [Ask],
    pub evidence: &'a Evidence,
    pub actor: &'a Actor,
    pub locale: &'a str,
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
pub fn start_in(conn: &mut DbConnection, keys: &Keys, config: &SignupConfig, asking: Asking<'_>) -> Result<Started> {
    let Asking { contact, asks, evidence, actor, locale } = asking;
    let contact_id = contact.id;
    let current = load_contact_consents(conn, contact_id)?.current;
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
    let names = purpose_names(conn, &started.pending, locale)?;
    let template = crate::i18n::text(locale, "confirm_mail_text");
    let mail_words = render(template, &names, LINK_PLACEHOLDER)?;
    let basis = if contact.email.is_role_address() { ConsentBasis::B2bRoleAddress } else { ConsentBasis::SingleOptIn };
    for ask in new_asks {
        apply_event(
            conn,
            NewConsentEvent {
                contact_id,
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
    let request = ConfirmationRequest {
        contact_id,
        form: None,
        purposes: &started.pending,
        email_key: &contact.email.key(),
        values: None,
    };
    request_confirmation(conn, keys, config, request, |conn, confirm_url| {
        let mut text = render(template, &names, confirm_url)?;
        if let Some(brand) = super::brands::brand_for_in(conn, None)? {
            text.push_str(&super::brands::mail_footer(&brand, locale));
        }
        Ok(Draft {
            from: config.mail_from.clone(),
            to,
            subject: crate::i18n::text(locale, "confirm_mail_subject").to_owned(),
            text,
            headers: vec![("Auto-Submitted".to_owned(), "auto-generated".to_owned())],
            ..Draft::default()
        })
    })?;
    Ok(started)
}

fn render(template: &str, names: &[String], confirm_url: &str) -> Result<String> {
    let env = minijinja::Environment::new();
    env.render_str(template, minijinja::context! { lists => names.join(", "), confirm_url, form_title => "" })
        .map_err(|e| Error::internal(e.to_string()))
}

/// What the person is asked to agree to, in words in their language: list names, and
/// "sharing with <partner>".
pub(crate) fn purpose_names(conn: &mut DbConnection, purposes: &[Purpose], locale: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for purpose in purposes {
        names.extend(purpose_name(conn, purpose, locale)?);
    }
    Ok(names)
}

/// A list's name, or "sharing with <partner>"; `None` when it no longer exists.
pub(crate) fn purpose_name(conn: &mut DbConnection, purpose: &Purpose, locale: &str) -> Result<Option<String>> {
    Ok(match purpose {
        Purpose::List(id) => lists::find_list(conn, *id)?.map(|list| list.name),
        Purpose::Partner(_) => {
            purpose.partner_id().map(|id| crate::storage::partners::find_partner(conn, id)).transpose()?.flatten().map(
                |partner| {
                    let sharing = crate::i18n::text(locale, "sharing_with");
                    format!("{sharing} {} ({})", partner.name, partner.legal_name)
                },
            )
        }
    })
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
            let contact = crate::storage::contacts::find_contact(conn, id)?
                .ok_or_else(|| Error::NotFound(format!("there is no contact {id}")))?;
            let mut errors = crate::error::FieldErrors::new();
            if purposes.is_empty() {
                errors.push("purposes", "must name at least one list (`list:<id>`)");
            }
            for (index, purpose) in purposes.iter().enumerate() {
                match purpose {
                    Purpose::List(list) if lists::find_list(conn, *list)?.is_none() => {
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
            let asking = Asking { contact: &contact, asks: &asks, evidence: &evidence, actor: &actor, locale: &locale };
            start_in(conn, &keys, &config, asking)
        })
        .await?;
    services.wake.mail.notify_one();
    Ok(started)
}
