//! `/api/v1/contacts`: the address book.

use std::collections::BTreeSet;

use actix_web::{HttpResponse, delete, get, http::header, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::extract::{ApiJson, ApiQuery, Editor, RequestBody, Viewer, parse_id, validation_errors};
use crate::domain::{Contact, ContactId, Country, Email, ListId, Tag, contact::parse_short_text};
use crate::error::{FieldErrors, Result};
use crate::services::contacts::{self as service, ContactChanges, ContactQuery, NewContact};
use crate::services::pagination::PageRequest;

const COMPANY_MAX: usize = 200;

/// A contact to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    /// Trimmed and stored with its domain lower-cased; unique, ignoring case.
    #[schema(value_type = super::values::EmailText, example = "marie.curie@example.org")]
    pub email: String,
    /// Free-form JSON object; absent: none.
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Object, example = json!({"first_name": "Marie"}))]
    pub attributes: Option<Option<Value>>,
    /// Tags: letters, digits, `-`, `_`, `:`, `.`; stored lower-cased.
    #[serde(default)]
    #[schema(value_type = Vec<super::values::TagText>)]
    pub tags: Vec<String>,
    /// Ids of the lists the contact is on.
    #[serde(default)]
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub lists: Vec<String>,
    #[schema(value_type = Option<super::values::ShortText>, inline)]
    pub company: Option<String>,
    /// ISO 3166-1 alpha-2 code.
    #[schema(example = "FR")]
    pub country: Option<String>,
}

impl RequestBody for ContactRequest {
    const SERVER_OWNED: &'static [&'static str] = &["id", "status", "is_role_address", "created_at", "updated_at"];

    fn rule_errors(&self) -> Vec<crate::error::FieldError> {
        validation_errors(parse_new_contact(self.clone()))
    }
}

/// Changes to a contact. Absent fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    #[schema(value_type = Option<super::values::EmailText>, inline)]
    pub email: Option<String>,
    /// A JSON merge patch (RFC 7396) on the attributes: keys set to `null` are removed,
    /// nested objects are merged. Not `null` itself: `{}` changes nothing.
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Object)]
    pub attributes: Option<Option<Value>>,
    /// Replaces all tags.
    #[schema(value_type = Option<Vec<super::values::TagText>>, inline)]
    pub tags: Option<Vec<String>>,
    /// Replaces all list memberships.
    #[schema(value_type = Option<Vec<uuid::Uuid>>)]
    pub lists: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<super::values::ShortText>, inline)]
    pub company: Option<Option<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "super::double_option")]
    #[schema(value_type = Option<String>)]
    pub country: Option<Option<String>>,
}

impl RequestBody for ContactPatch {
    const SERVER_OWNED: &'static [&'static str] = ContactRequest::SERVER_OWNED;

    fn rule_errors(&self) -> Vec<crate::error::FieldError> {
        validation_errors(parse_changes(self.clone()))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub email: String,
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
    pub tags: Vec<String>,
    /// Ids of the lists the contact is on.
    pub lists: Vec<String>,
    pub company: Option<String>,
    pub country: Option<String>,
    /// `active`, `unsubscribed`, `bounced` or `complained`; set by the server.
    pub status: String,
    /// Whether the address names a function (info@, sales@…) rather than a person.
    pub is_role_address: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Contact> for ContactResponse {
    fn from(contact: Contact) -> Self {
        Self {
            id: contact.id.to_string(),
            is_role_address: contact.email.is_role_address(),
            email: contact.email.to_string(),
            attributes: contact.attributes,
            tags: contact.tags.iter().map(|t| t.as_str().to_owned()).collect(),
            lists: contact.lists.iter().map(ToString::to_string).collect(),
            company: contact.company,
            country: contact.country.map(|c| c.as_str().to_owned()),
            status: contact.status.to_string(),
            created_at: contact.created_at,
            updated_at: contact.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactPage {
    pub items: Vec<ContactResponse>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactListQuery {
    /// Page size, 1 to 200.
    #[param(default = 50, minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: the id of the last item it held.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
    /// Only contacts on this list (id).
    #[param(format = Uuid)]
    pub list: Option<String>,
    /// Only contacts with this tag.
    #[param(value_type = Option<super::values::TagText>, inline)]
    pub tag: Option<String>,
    /// Only contacts with this status.
    #[param(value_type = Option<super::values::ContactStatusName>, inline)]
    pub status: Option<String>,
    /// Only contacts whose address contains this text, ignoring case.
    pub email: Option<String>,
    /// Only contacts of this country (ISO 3166-1 alpha-2, such as `FR`).
    #[param(example = "FR")]
    pub country: Option<String>,
}

#[utoipa::path(
    tag = "contacts",
    request_body = ContactRequest,
    responses(
        (status = 201, description = "The contact was created", body = ContactResponse,
         headers(("Location" = String, description = "The contact's URL"))),
        (status = 409, description = "A contact with this e-mail exists, or the address is suppressed and lists were given", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/contacts")]
pub async fn create_contact(
    _: Editor,
    state: web::Data<AppState>,
    body: ApiJson<ContactRequest>,
) -> Result<HttpResponse> {
    let new = parse_new_contact(body.0)?;
    let contact = service::create_contact(&state.db, &state.keys, new).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/contacts/{}", contact.id)))
        .json(ContactResponse::from(contact)))
}

#[utoipa::path(
    tag = "contacts",
    params(ContactListQuery),
    responses((status = 200, description = "One page of contacts, oldest first", body = ContactPage)),
    security(("bearer" = []))
)]
#[get("/contacts")]
pub async fn list_contacts(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<ContactListQuery>,
) -> Result<web::Json<ContactPage>> {
    let query = query.0;
    let page = PageRequest::parse(query.cursor.as_deref(), query.limit)?;
    let mut errors = FieldErrors::new();
    let filter = ContactQuery {
        list: query
            .list
            .as_deref()
            .and_then(|id| errors.check("list", id.parse::<ListId>().map_err(|_| "must be a list id"))),
        tag: query.tag.as_deref().and_then(|tag| errors.check("tag", Tag::parse(tag))),
        status: query.status.as_deref().and_then(|status| errors.check("status", status.parse())),
        email: query.email.filter(|text| !text.trim().is_empty()).map(|text| text.trim().to_owned()),
        country: query.country.as_deref().and_then(|code| errors.check("country", Country::parse(code))),
        email_prefix: None,
    };
    errors.finish(|| Some(()))?;
    let page = service::list_contacts(&state.db, filter, page).await?;
    Ok(web::Json(ContactPage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 200, description = "The contact", body = ContactResponse)),
    security(("bearer" = []))
)]
#[get("/contacts/{id}")]
pub async fn get_contact(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<ContactResponse>> {
    let id: ContactId = parse_id(&id, "contact")?;
    Ok(web::Json(service::find_contact(&state.db, id).await?.into()))
}

#[utoipa::path(
    tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    request_body(content = ContactPatch, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The contact as changed", body = ContactResponse),
        (status = 409, description = "Another contact has this e-mail", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[patch("/contacts/{id}")]
pub async fn update_contact(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<ContactPatch>,
) -> Result<web::Json<ContactResponse>> {
    let id: ContactId = parse_id(&id, "contact")?;
    let changes = parse_changes(body.0)?;
    Ok(web::Json(service::update_contact(&state.db, &state.keys, id, changes).await?.into()))
}

#[utoipa::path(
    tag = "contacts",
    params(("id" = String, Path, description = "The contact's id")),
    responses((status = 204, description = "The contact was erased (GDPR Art. 17): its data is gone, its ledger events are \
        redacted (the chain still verifies), and a keyed hash of the address stays on the suppression list so that \
        nothing but a confirmed double opt-in brings it back")),
    security(("bearer" = []))
)]
#[delete("/contacts/{id}")]
pub async fn delete_contact(_: Editor, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    let id: ContactId = parse_id(&id, "contact")?;
    crate::services::consent::erase_contact(&state.db, &state.keys, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn parse_new_contact(request: ContactRequest) -> Result<NewContact> {
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(&request.email));
    let attributes = parse_attributes(&mut errors, request.attributes);
    let tags = parse_tags(&mut errors, &request.tags);
    let lists = parse_list_ids(&mut errors, &request.lists);
    let company = parse_company(&mut errors, request.company);
    let country = request.country.as_deref().and_then(|c| errors.check("country", Country::parse(c)));
    errors.finish(|| {
        Some(NewContact { email: email?, attributes: attributes.unwrap_or_default(), tags, lists, company, country })
    })
}

fn parse_changes(patch: ContactPatch) -> Result<ContactChanges> {
    let mut errors = FieldErrors::new();
    let changes = ContactChanges {
        email: patch.email.as_deref().and_then(|e| errors.check("email", Email::parse(e))),
        attributes: parse_attributes(&mut errors, patch.attributes),
        tags: patch.tags.map(|tags| parse_tags(&mut errors, &tags)),
        lists: patch.lists.map(|lists| parse_list_ids(&mut errors, &lists)),
        company: patch.company.map(|company| parse_company(&mut errors, company)),
        country: patch
            .country
            .map(|country| country.as_deref().and_then(|c| errors.check("country", Country::parse(c)))),
    };
    errors.finish(|| Some(changes))
}

/// Attributes absent (`None`), or sent: an object, never `null` (`Some(None)`).
fn parse_attributes(errors: &mut FieldErrors, attributes: Option<Option<Value>>) -> Option<Map<String, Value>> {
    match attributes {
        None => None,
        Some(None) => {
            errors.push("attributes", "must be a JSON object, not null (to remove an attribute, set its key to null)");
            None
        }
        Some(Some(Value::Object(map))) => Some(map),
        Some(_) => {
            errors.push("attributes", "must be a JSON object");
            None
        }
    }
}

fn parse_tags(errors: &mut FieldErrors, tags: &[String]) -> BTreeSet<Tag> {
    tags.iter().enumerate().filter_map(|(i, tag)| errors.check(&format!("tags[{i}]"), Tag::parse(tag))).collect()
}

fn parse_list_ids(errors: &mut FieldErrors, lists: &[String]) -> BTreeSet<ListId> {
    lists
        .iter()
        .enumerate()
        .filter_map(|(i, id)| {
            errors.check(&format!("lists[{i}]"), id.parse::<ListId>().map_err(|_| "must be a list id"))
        })
        .collect()
}

fn parse_company(errors: &mut FieldErrors, company: Option<String>) -> Option<String> {
    company.and_then(|c| errors.check("company", parse_short_text(&c, COMPANY_MAX))).filter(|c| !c.is_empty())
}
