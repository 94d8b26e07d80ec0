//! Contacts: search and filter, and a contact's page with its consent timeline, the
//! evidence of each event and the proof to download.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{Console, failure, page};
use crate::domain::{ContactId, ContactStatus, Country, ListId, Role, SegmentId, Tag};
use crate::error::{Error, FieldErrors};
use crate::http::AppState;
use crate::http::consent::ConsentEventResponse;
use crate::services::contacts::{self, BulkChange, ContactQuery};
use crate::services::pagination::PageRequest;
use crate::services::{consent, ledger, lists, segments};

#[derive(Debug, Default, Deserialize)]
pub struct ContactFilters {
    /// Part of the address.
    #[serde(default)]
    q: String,
    #[serde(default)]
    list: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    country: String,
    /// A segment's id: its members (the other filters do not apply with it).
    #[serde(default)]
    segment: String,
    cursor: Option<String>,
    /// Set after an erasure, to say it happened.
    erased: Option<String>,
}

impl ContactFilters {
    fn parse(&self) -> Result<ContactQuery, Error> {
        let mut errors = FieldErrors::new();
        let some = |text: &str| Some(text.trim()).filter(|t| !t.is_empty()).map(str::to_owned);
        let list = match some(&self.list) {
            Some(id) => errors.check("list", id.parse::<ListId>().map_err(|_| "must be a list")),
            None => None,
        };
        let tag = match some(&self.tag) {
            Some(tag) => errors.check("tag", Tag::parse(&tag)),
            None => None,
        };
        let status = match some(&self.status) {
            Some(status) => errors.check("status", status.parse::<ContactStatus>()),
            None => None,
        };
        let country = match some(&self.country) {
            Some(code) => errors.check("country", Country::parse(&code)),
            None => None,
        };
        // The search finds addresses by their start, along the address index.
        let email_prefix = some(&self.q);
        errors.finish(|| Some(ContactQuery { list, tag, status, email: None, email_prefix, country }))
    }

    fn segment(&self) -> Result<Option<SegmentId>, Error> {
        match self.segment.trim() {
            "" => Ok(None),
            id => id.parse().map(Some).map_err(|_| Error::field("segment", "must be a segment")),
        }
    }

    /// The filters as a query string (a page's links and forms keep them).
    fn query_string(&self, cursor: Option<&str>) -> String {
        let mut pairs = vec![
            ("q", self.q.as_str()),
            ("list", self.list.as_str()),
            ("tag", self.tag.as_str()),
            ("status", self.status.as_str()),
            ("country", self.country.as_str()),
            ("segment", self.segment.as_str()),
        ];
        if let Some(cursor) = cursor {
            pairs.push(("cursor", cursor));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

const PAGE_SIZE: u32 = 50;

pub async fn list(state: web::Data<AppState>, console: Console, filters: web::Query<ContactFilters>) -> HttpResponse {
    contacts_page(&state, &console, &filters, None).await
}

/// What a bulk change did, said above the contacts.
struct BulkNotice {
    message: String,
    /// The form to go on with the contacts after the last one changed.
    more: Option<BulkForm>,
}

async fn contacts_page(
    state: &AppState,
    console: &Console,
    filters: &ContactFilters,
    bulk: Option<BulkNotice>,
) -> HttpResponse {
    let found = async {
        let query = filters.parse()?;
        let segment = filters.segment()?;
        let page = PageRequest::parse(filters.cursor.as_deref(), Some(PAGE_SIZE))?;
        let contacts = match segment {
            Some(id) => {
                let rule = segments::rule_of(&segments::find_segment(&state.db, id).await?)?;
                segments::members(&state.db, &state.scripts, &rule, page).await?
            }
            None => contacts::list_contacts(&state.db, query, page).await?,
        };
        let lists = lists::list_lists(&state.db, PageRequest::parse(None, Some(200))?).await?;
        let segments = segments::list_segments(&state.db, PageRequest::parse(None, Some(200))?).await?;
        Ok::<_, Error>((contacts, lists, segments))
    };
    let (contacts, lists, segment_page) = match found.await {
        Ok(found) => found,
        Err(error) => return failure(state, &console.frame, error),
    };
    let rows: Vec<minijinja::Value> = contacts
        .items
        .iter()
        .map(|c| {
            minijinja::context! {
                id => c.id.to_string(), email => c.email.as_str(), status => c.status.to_string(),
                country => c.country.as_ref().map(|c| c.as_str().to_owned()),
                tags => c.tags.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>(),
                lists => c.lists.len(), created_at => c.created_at.format("%Y-%m-%d %H:%M").to_string(),
            }
        })
        .collect();
    let list_options: Vec<minijinja::Value> =
        lists.items.iter().map(|l| minijinja::context! { id => l.id.to_string(), name => &l.name }).collect();
    let segment_options: Vec<minijinja::Value> =
        segment_page.items.iter().map(|s| minijinja::context! { id => s.id.to_string(), name => &s.name }).collect();
    let next = contacts.next_cursor.map(|cursor| format!("/admin/contacts?{}", filters.query_string(Some(&cursor))));
    let countries: Vec<minijinja::Value> = crate::i18n::countries(&console.frame.locale)
        .into_iter()
        .map(|c| minijinja::context! { code => c.code, name => c.name })
        .collect();
    let (bulk_message, bulk_more) = match bulk {
        Some(notice) => (Some(notice.message), notice.more.map(|more| more.fields())),
        None => (None, None),
    };
    let context = minijinja::context! {
        title => crate::i18n::text(&console.frame.locale, "admin_contacts"),
        rows, lists => list_options, segments => segment_options, countries, next,
        filters => minijinja::context! { q => &filters.q, list => &filters.list, tag => &filters.tag, status => &filters.status,
            country => &filters.country, segment => &filters.segment },
        statuses => ["active", "unsubscribed", "bounced", "complained"], erased => filters.erased.is_some(),
        bulk_message, bulk_more, bulk_limit => BULK_LIMIT,
    };
    page(state, console, "contacts.html", "contacts", context)
}

/// Contacts one bulk change goes through in a request; more go on from a button.
const BULK_LIMIT: u64 = 10_000;

/// A bulk change as posted: the filters it applies to, the change, where to start.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BulkForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    filters: BulkFilters,
    /// `add_tag`, `remove_tag`, `add_list` or `remove_list`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    bulk_tag: String,
    #[serde(default)]
    bulk_list: String,
    /// Go on after this contact (a change that stopped at the limit).
    after: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct BulkFilters {
    #[serde(default)]
    q: String,
    #[serde(default)]
    list: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    country: String,
}

impl BulkForm {
    fn contact_filters(&self) -> ContactFilters {
        let f = &self.filters;
        ContactFilters {
            q: f.q.clone(),
            list: f.list.clone(),
            tag: f.tag.clone(),
            status: f.status.clone(),
            country: f.country.clone(),
            ..ContactFilters::default()
        }
    }

    fn change(&self) -> Result<BulkChange, Error> {
        let tag = || Tag::parse(self.bulk_tag.trim()).map_err(|e| Error::field("bulk_tag", e));
        let list = || self.bulk_list.trim().parse::<ListId>().map_err(|_| Error::field("bulk_list", "choose a list"));
        match self.action.as_str() {
            "add_tag" => Ok(BulkChange::AddTag(tag()?)),
            "remove_tag" => Ok(BulkChange::RemoveTag(tag()?)),
            "add_list" => Ok(BulkChange::AddToList(list()?)),
            "remove_list" => Ok(BulkChange::RemoveFromList(list()?)),
            _ => Err(Error::field("action", "must be add_tag, remove_tag, add_list or remove_list")),
        }
    }

    /// The hidden inputs of the form that goes on.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let f = &self.filters;
        vec![
            ("q", f.q.clone()),
            ("list", f.list.clone()),
            ("tag", f.tag.clone()),
            ("status", f.status.clone()),
            ("country", f.country.clone()),
            ("action", self.action.clone()),
            ("bulk_tag", self.bulk_tag.clone()),
            ("bulk_list", self.bulk_list.clone()),
            ("after", self.after.clone().unwrap_or_default()),
        ]
    }
}

/// Makes one change to every contact the filters find (an editor's act), through the
/// contacts service's rules; the page says what it did.
pub async fn bulk(state: web::Data<AppState>, console: Console, form: web::Form<BulkForm>) -> HttpResponse {
    if let Err(error) = console.check_csrf(&form.csrf).and_then(|()| console.require(Role::Editor)) {
        return failure(&state, &console.frame, error);
    }
    let form = form.into_inner();
    let filters = form.contact_filters();
    let outcome = async {
        let query = filters.parse()?;
        let change = form.change()?;
        let after = form.after.clone().filter(|a| !a.trim().is_empty());
        if let Some(after) = &after {
            after.parse::<ContactId>().map_err(|_| Error::field("after", "must be a contact"))?;
        }
        contacts::bulk_change(&state.db, &state.keys, query, change, after, BULK_LIMIT).await
    };
    match outcome.await {
        Ok(outcome) => {
            tracing::info!(user = %console.session.user.id, action = %form.action, changed = outcome.changed, "bulk change");
            let locale = &console.frame.locale;
            let mut message = crate::i18n::text(locale, "admin_bulk_done")
                .replace("{changed}", &outcome.changed.to_string())
                .replace("{found}", &outcome.found.to_string());
            if outcome.suppressed > 0 {
                message.push(' ');
                message.push_str(
                    &crate::i18n::text(locale, "admin_bulk_suppressed")
                        .replace("{count}", &outcome.suppressed.to_string()),
                );
            }
            let more = outcome.next_cursor.map(|cursor| BulkForm { after: Some(cursor), ..form.clone() });
            contacts_page(&state, &console, &filters, Some(BulkNotice { message, more })).await
        }
        Err(error) => failure(&state, &console.frame, error),
    }
}

pub async fn show(state: web::Data<AppState>, console: Console, id: web::Path<String>) -> HttpResponse {
    let found = async {
        let id: ContactId = crate::http::extract::parse_id(&id, "contact")?;
        consent::export_contact(&state.db, &state.keys, id).await
    };
    let export = match found.await {
        Ok(export) => export,
        Err(error) => return failure(&state, &console.frame, error),
    };
    let Some(contact) = export.contact.as_ref() else {
        return failure(&state, &console.frame, Error::NotFound("this contact was erased".to_owned()));
    };
    let mut list_names = Vec::new();
    for list in &contact.lists {
        if let Ok(found) = lists::find_list(&state.db, *list).await {
            list_names.push(found.name);
        }
    }
    let events: Vec<ConsentEventResponse> = export.consents.events.iter().cloned().rev().map(Into::into).collect();
    let current: Vec<minijinja::Value> = export
        .consents
        .current
        .iter()
        .map(|c| {
            minijinja::context! {
                purpose => c.purpose.to_string(), status => c.status.to_string(), basis => c.basis.to_string(),
                granted_at => c.granted_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            }
        })
        .collect();
    let campaigns: Vec<minijinja::Value> = export
        .campaigns
        .iter()
        .map(|c| {
            minijinja::context! {
                name => &c.name, subject => &c.subject, status => c.status.to_string(), reason => &c.reason,
                sent_at => c.sent_at.map(|t| t.format("%Y-%m-%d %H:%M").to_string()),
            }
        })
        .collect();
    let context = minijinja::context! {
        title => contact.email.as_str(),
        contact => minijinja::context! {
            id => contact.id.to_string(), email => contact.email.as_str(), status => contact.status.to_string(),
            company => &contact.company, country => contact.country.as_ref().map(|c| c.as_str().to_owned()),
            tags => contact.tags.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>(),
            attributes => serde_json::to_string_pretty(&contact.attributes).unwrap_or_default(),
            has_attributes => !contact.attributes.is_empty(),
            created_at => contact.created_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        },
        lists => list_names, current, events, campaigns, surveys => export.survey_responses.len(),
    };
    page(&state, &console, "contact.html", "contacts", context)
}

/// The contact's proof bundle as a file to keep or hand to a regulator.
pub async fn proof(state: web::Data<AppState>, console: Console, id: web::Path<String>) -> HttpResponse {
    let found = async {
        let id: ContactId = crate::http::extract::parse_id(&id, "contact")?;
        ledger::contact_proof(&state.db, id).await.map(|bundle| (id, bundle))
    };
    match found.await {
        Ok((id, bundle)) => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"consent-proof-{id}.json\"")))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(crate::http::ledger::ProofBundleResponse::from(bundle)),
        Err(error) => failure(&state, &console.frame, error),
    }
}

/// Everything held about the person, as the API's export gives it, to download.
pub async fn export(state: web::Data<AppState>, console: Console, id: web::Path<String>) -> HttpResponse {
    let found = async {
        let id: ContactId = crate::http::extract::parse_id(&id, "contact")?;
        consent::export_contact(&state.db, &state.keys, id).await.map(|export| (id, export))
    };
    match found.await {
        Ok((id, export)) => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"contact-{id}.json\"")))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(crate::http::consent::ExportResponse::from(export)),
        Err(error) => failure(&state, &console.frame, error),
    }
}

/// The page that asks to confirm an erasure: the address typed again.
pub async fn show_erase(state: web::Data<AppState>, console: Console, id: web::Path<String>) -> HttpResponse {
    let found = async {
        console.require(crate::domain::Role::Editor)?;
        let id: ContactId = crate::http::extract::parse_id(&id, "contact")?;
        contacts::find_contact(&state.db, id).await
    };
    match found.await {
        Ok(contact) => {
            let title = crate::i18n::text(&console.frame.locale, "admin_erase_title");
            let context = minijinja::context! { title, id => contact.id.to_string(), email => contact.email.as_str(), error => false };
            page(&state, &console, "erase.html", "contacts", context)
        }
        Err(error) => failure(&state, &console.frame, error),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct EraseForm {
    #[serde(default)]
    csrf: String,
    /// The address, typed again.
    #[serde(default)]
    confirm: String,
}

/// Erases a person once their address is typed again: their data goes, their ledger
/// events keep no personal field, the address stays suppressed.
pub async fn erase(
    state: web::Data<AppState>,
    console: Console,
    id: web::Path<String>,
    form: web::Form<EraseForm>,
) -> HttpResponse {
    let found = async {
        console.check_csrf(&form.csrf)?;
        console.require(crate::domain::Role::Editor)?;
        let id: ContactId = crate::http::extract::parse_id(&id, "contact")?;
        contacts::find_contact(&state.db, id).await
    };
    let contact = match found.await {
        Ok(contact) => contact,
        Err(error) => return failure(&state, &console.frame, error),
    };
    let typed = crate::domain::Email::parse(&form.confirm).map(|e| e.key()).unwrap_or_default();
    if typed != contact.email.key() {
        let title = crate::i18n::text(&console.frame.locale, "admin_erase_title");
        let context =
            minijinja::context! { title, id => contact.id.to_string(), email => contact.email.as_str(), error => true };
        let status = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
        return super::page_with_status(&state, &console, status, "erase.html", "contacts", context);
    }
    match consent::erase_contact(&state.db, &state.keys, contact.id).await {
        Ok(()) => {
            tracing::info!(contact = %contact.id, user = %console.session.user.id, "a contact was erased from the console");
            super::redirect("/admin/contacts?erased=1")
        }
        Err(error) => failure(&state, &console.frame, error),
    }
}
