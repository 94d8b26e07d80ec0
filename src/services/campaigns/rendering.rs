//! One message of a campaign, rendered for a contact: for sending, for a preview and for
//! a test send.

use std::collections::BTreeMap;

use super::{Campaign, CampaignContext, MailContact, Rendered, Templates, find_campaign, template_context};
use crate::domain::CampaignId;
use crate::domain::ContactId;
use crate::error::{Error, FieldError, Result};
use crate::mail::{Draft, template};
use crate::storage::DbConnection;
use crate::{mail, storage};

/// A campaign ready to render messages.
pub struct Prepared {
    pub campaign: Campaign,
    pub templates: Templates,
}

impl Prepared {
    pub fn new(campaign: Campaign) -> Result<Self> {
        let templates = Templates::compile(&campaign.subject, &campaign.text_body, campaign.html_body.as_deref())
            .map_err(Error::Validation)?;
        Ok(Self { campaign, templates })
    }

    /// The templates rendered for a contact, with the unsubscribe link they were given.
    fn render_for(
        &self,
        ctx: &CampaignContext,
        contact: &MailContact,
        list: Option<&str>,
        recipient_id: Option<&str>,
    ) -> std::result::Result<(Rendered, String), String> {
        let unsubscribe =
            crate::services::signup::unsubscribe_link(&ctx.keys, &ctx.base_url, contact.id, list, recipient_id);
        let preferences = crate::services::signup::preferences_link(&ctx.keys, &ctx.base_url, contact.id);
        let context = template_context(&self.campaign.name, contact, &unsubscribe, &preferences);
        Ok((self.templates.render(&context)?, unsubscribe))
    }

    /// The message to one recipient. `recipient_id` is `None` for previews and tests (no
    /// tracking, links that name no recipient).
    pub fn compose(
        &self,
        ctx: &CampaignContext,
        contact: &MailContact,
        to: &str,
        list: Option<&str>,
        recipient_id: Option<&str>,
        subject_prefix: &str,
    ) -> std::result::Result<mail::Composed, String> {
        let (mut rendered, unsubscribe) = self.render_for(ctx, contact, list, recipient_id)?;
        if let (Some(html), Some(recipient)) = (rendered.html.as_mut(), recipient_id) {
            let subject = if self.campaign.tracking.individual { recipient } else { "" };
            *html = super::tracking::instrument(ctx, &self.campaign, subject, html);
        }
        if !rendered.text.contains(&unsubscribe) {
            rendered.text.push_str(&format!("\n\n--\nUnsubscribe: {unsubscribe}\n"));
        }
        let draft = Draft {
            from: self.campaign.from.clone(),
            to: to.to_owned(),
            subject: format!("{subject_prefix}{}", rendered.subject),
            text: rendered.text,
            html: rendered.html,
            reply_to: self.campaign.reply_to.clone(),
            message_id: recipient_id.map(|id| format!("<{id}@{}>", ctx.message_domain)),
            headers: vec![
                ("List-Unsubscribe".to_owned(), format!("<{unsubscribe}>")),
                ("List-Unsubscribe-Post".to_owned(), "List-Unsubscribe=One-Click".to_owned()),
                ("List-Id".to_owned(), format!("<{}.{}>", self.campaign.id, ctx.message_domain)),
                ("Precedence".to_owned(), "bulk".to_owned()),
            ],
        };
        mail::compose(&draft, &ctx.message_domain, ctx.signer.as_deref()).map_err(|e| e.to_string())
    }
}

/// Contacts as templates see them, by id.
pub fn load_mail_contacts(conn: &mut DbConnection, ids: &[ContactId]) -> Result<BTreeMap<ContactId, MailContact>> {
    Ok(storage::contacts::find_for_mail(conn, ids)?
        .into_iter()
        .map(|(id, email, attributes, company, country)| {
            let attributes = serde_json::from_str(&attributes).unwrap_or(serde_json::Value::Object(Default::default()));
            (id, MailContact { id, email, company, country, attributes })
        })
        .collect())
}

/// A stand-in for previews without a contact.
fn sample_contact() -> MailContact {
    MailContact {
        id: ContactId::from(uuid::Uuid::nil()),
        email: "someone@example.org".to_owned(),
        company: None,
        country: None,
        attributes: serde_json::json!({}),
    }
}

/// A campaign ready to render, and the contact to render it for (or a sample).
async fn prepared_for(
    ctx: &CampaignContext,
    id: CampaignId,
    contact: Option<String>,
) -> Result<(Prepared, MailContact)> {
    let prepared = Prepared::new(find_campaign(&ctx.db, id).await?)?;
    let contact = match contact {
        Some(contact_id) => {
            let parsed = contact_id.parse::<ContactId>();
            let missing = move || Error::field("contact_id", format!("there is no contact {contact_id}"));
            let Ok(id) = parsed else {
                return Err(missing());
            };
            ctx.db
                .read(move |conn| load_mail_contacts(conn, &[id])?.pop_first().map(|(_, c)| c).ok_or_else(missing))
                .await?
        }
        None => sample_contact(),
    };
    Ok((prepared, contact))
}

/// Renders the campaign for one contact (or a sample), as it would be sent.
pub async fn preview(
    ctx: &CampaignContext,
    id: CampaignId,
    contact: Option<String>,
) -> Result<(Rendered, MailContact)> {
    let (prepared, contact) = prepared_for(ctx, id, contact).await?;
    let ctx = ctx.clone();
    // Off the request threads: a template is an admin's program.
    template::off_the_request("template", move || {
        let list = prepared.campaign.lists.first().map(ToString::to_string);
        let (rendered, _) =
            prepared.render_for(&ctx, &contact, list.as_deref(), None).map_err(|e| Error::field("template", e))?;
        Ok((rendered, contact))
    })
    .await
}

/// Sends the campaign, as rendered for a contact (or a sample), to test addresses; the
/// subject says it is a test. Nothing is recorded as sent.
pub async fn test_send(
    ctx: &CampaignContext,
    id: CampaignId,
    to: Vec<String>,
    contact: Option<String>,
) -> Result<usize> {
    let mut errors = Vec::new();
    for (index, address) in to.iter().enumerate() {
        if crate::domain::Email::parse(address).is_err() {
            errors.push(FieldError::new(format!("to[{index}]"), "is not an e-mail address"));
        }
    }
    if to.is_empty() || to.len() > 20 {
        errors.push(FieldError::new("to", "must hold between 1 and 20 addresses"));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let (prepared, contact) = prepared_for(ctx, id, contact).await?;
    let composing = ctx.clone();
    let mails = template::off_the_request("template", move || {
        let list = prepared.campaign.lists.first().map(ToString::to_string);
        to.iter()
            .map(|address| {
                prepared
                    .compose(&composing, &contact, address, list.as_deref(), None, "[Test] ")
                    .map_err(|e| Error::field("template", e))
            })
            .collect::<Result<Vec<_>>>()
    })
    .await?;
    let count = mails.len();
    for mail in mails {
        ctx.transport
            .send_raw(&mail.from, &mail.to, mail.raw.as_bytes())
            .await
            .map_err(|e| Error::Unavailable(format!("the SMTP server refused the test message: {e}").into()))?;
    }
    Ok(count)
}
