//! A form's confirmation mail: rendered from the admin's template in the sandbox, with
//! the names of what the person is asked to agree to in their language.

use std::sync::Arc;

use super::{LinkState, SignupInput, settled_state, waiting_purposes};
use crate::domain::ConfirmationId;
use crate::domain::form::ValidSubmission;
use crate::error::{Error, Result};
use crate::mail;
use crate::mail::Draft;
use crate::services::confirmations::{PreparedConfirmation, SignupConfig, confirmation_link, purpose_names};
use crate::services::consent::load_contact_consents;
use crate::services::forms::Form;
use crate::services::keys::{Keys, LinkKind};
use crate::storage::{Db, confirmations};

/// Renders a form's confirmation mail off the async workers and outside any transaction:
/// the template is the admin's, and may be slow.
pub(super) async fn prepare_confirmation(
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
pub(super) fn render_confirmation(
    keys: &Keys,
    config: &SignupConfig,
    input: &SignupInput,
    names: &[String],
) -> Result<PreparedConfirmation> {
    let (id, expires_at, confirm_url) = confirmation_link(keys, config);
    let mut draft =
        confirmation_draft(config, &input.form, &input.submission, names, &confirm_url, &input.info.locale)?;
    if let Some(brand) = &input.brand {
        draft.text.push_str(&crate::services::brands::mail_footer(brand, &input.info.locale));
    }
    let mail = mail::compose(&draft, &config.message_domain, None)?;
    Ok(PreparedConfirmation { id, expires_at, mail })
}

pub(super) fn confirmation_draft(
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

pub(super) fn render_mail(
    template: &str,
    list_names: &[String],
    confirm_url: &str,
    form_title: &str,
) -> Result<String> {
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
pub async fn confirmation_preview(db: &Db, keys: &Keys, token: &str, locale: &str) -> Result<Option<LinkState>> {
    let Some(claims) = keys.verify_link(LinkKind::Confirm, token) else {
        return Ok(None);
    };
    let locale = locale.to_owned();
    db.read(move |conn| {
        let Ok(id) = claims.subject.parse::<ConfirmationId>() else {
            return Ok(None);
        };
        let Some(row) = confirmations::find_confirmation(conn, id)? else {
            return Ok(None);
        };
        let consents = load_contact_consents(conn, row.contact_id)?;
        let waiting = waiting_purposes(&consents.current, &row);
        if waiting.is_empty() {
            return Ok(Some(settled_state(conn, &consents, &row, &locale)?));
        }
        Ok(Some(LinkState::Waiting(purpose_names(conn, &waiting, &locale)?)))
    })
    .await
}
