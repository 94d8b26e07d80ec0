//! The form builder: a form's settings, fields and consent boxes, edited on one page
//! without writing HTML or JSON. Saving makes a new version through the same service and
//! the same checks as the API; every fault is named beside its input, and the warnings of
//! a passive or vague form show on the form's page.
//!
//! The page works without JavaScript: it always offers one empty field row and one empty
//! consent row; saving with them filled adds them, and the page comes back with a new
//! empty row.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::{Console, failure, page_with_status, redirect};
use crate::domain::{FormId, Role};
use crate::error::{Error, FieldError};
use crate::http::AppState;
use crate::http::forms::{ConsentCheckboxBody, FieldBody, FormBody, LookBody};
use crate::services::forms::{self, Form};
use crate::services::pagination::PageRequest;
use crate::services::{brands, lists, partners, surveys};

/// The most rows of each kind a form may have here.
const MAX_FIELDS: usize = 100;
const MAX_CONSENTS: usize = 50;
const MAX_PARTNERS: usize = 50;

/// The builder's inputs, as the browser posts them: repeated rows come as `fields[0].name`
/// and so on, read once into a map (the first value of each name).
#[derive(Debug, Default)]
pub struct BuilderForm {
    values: std::collections::HashMap<String, String>,
}

impl BuilderForm {
    fn from_body(body: &[u8]) -> Self {
        let mut values = std::collections::HashMap::new();
        for (key, value) in form_urlencoded::parse(body) {
            // A browser's textarea sends \r\n: the words kept are the words typed.
            values.entry(key.into_owned()).or_insert_with(|| value.replace("\r\n", "\n"));
        }
        Self { values }
    }

    fn get(&self, name: &str) -> String {
        self.values.get(name).map(|v| v.trim().to_owned()).unwrap_or_default()
    }

    fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn optional(&self, name: &str) -> Option<String> {
        Some(self.get(name)).filter(|v| !v.is_empty())
    }

    /// Refuses more rows than a form may have, before anything is built from them.
    fn check_rows(&self) -> Result<(), Error> {
        for (prefix, max) in [("fields", MAX_FIELDS), ("consents", MAX_CONSENTS)] {
            let rows = self.rows(prefix);
            if rows.len() > max || rows.iter().any(|i| *i >= 10 * max) {
                return Err(Error::field(prefix, format!("a form may have at most {max} of these")));
            }
        }
        if self.partners().len() > MAX_PARTNERS {
            return Err(Error::field("partners", format!("a form may have at most {MAX_PARTNERS} partners")));
        }
        Ok(())
    }

    /// The partners ticked (`partners[<id>]`), in id order.
    fn partners(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .values
            .keys()
            .filter_map(|k| k.strip_prefix("partners[")?.strip_suffix(']'))
            .map(str::to_owned)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The row numbers posted for `prefix` (`fields`, `consents`), in order.
    fn rows(&self, prefix: &str) -> Vec<usize> {
        let mut rows: Vec<usize> = self
            .values
            .keys()
            .filter_map(|k| k.strip_prefix(&format!("{prefix}["))?.split(']').next()?.parse().ok())
            .collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }

    /// The definition the page describes, as the API's body: rows left empty are no rows.
    fn body(&self) -> FormBody {
        let fields = self
            .rows("fields")
            .into_iter()
            .filter(|i| {
                !self.get(&format!("fields[{i}].name")).is_empty()
                    || !self.get(&format!("fields[{i}].label")).is_empty()
            })
            .filter(|i| !self.has(&format!("fields[{i}].remove")))
            .map(|i| {
                let at = |name: &str| self.get(&format!("fields[{i}].{name}"));
                FieldBody {
                    name: at("name"),
                    label: at("label"),
                    kind: Some(at("type")).filter(|t| !t.is_empty()).unwrap_or_else(|| "text".to_owned()),
                    required: self.has(&format!("fields[{i}].required")),
                    options: at("options")
                        .split(',')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    min: None,
                    max: None,
                    max_length: None,
                }
            })
            .collect();
        let consents = self
            .rows("consents")
            .into_iter()
            .filter(|i| !self.get(&format!("consents[{i}].list_id")).is_empty())
            .filter(|i| !self.has(&format!("consents[{i}].remove")))
            .map(|i| ConsentCheckboxBody {
                list_id: self.get(&format!("consents[{i}].list_id")),
                text: self.get(&format!("consents[{i}].text")),
            })
            .collect();
        let origins = self.get("allowed_origins");
        FormBody {
            slug: self.get("slug"),
            name: self.get("name"),
            locale: self.optional("locale"),
            title: self.get("title"),
            intro: self.get("intro"),
            fields,
            consents,
            opt_in: Some(self.get("opt_in")).filter(|o| !o.is_empty()).unwrap_or_else(|| "double".to_owned()),
            b2b: self.has("b2b"),
            thank_you_text: self.get("thank_you_text"),
            redirect_url: self.optional("redirect_url"),
            allowed_origins: origins.lines().map(str::trim).filter(|o| !o.is_empty()).map(str::to_owned).collect(),
            confirmation_subject: None,
            confirmation_text: None,
            partners: self.partners(),
            survey_id: self.optional("survey_id"),
            survey_after: self.optional("survey_after"),
            brand_id: self.optional("brand_id"),
            look: LookBody {
                accent_color: self.optional("look.accent_color"),
                background_color: self.optional("look.background_color"),
                text_color: self.optional("look.text_color"),
                font: self.optional("look.font"),
                button_label: self.optional("look.button_label"),
                layout: self.optional("look.layout"),
                custom_css: self.optional("look.custom_css"),
            },
        }
    }
}

/// What the builder shows: the definition being edited, each fault by input, and the
/// choices the selects offer.
async fn builder_page(
    state: &AppState,
    console: &Console,
    form: Option<&Form>,
    body: &FormBody,
    errors: &[FieldError],
) -> HttpResponse {
    let choices = async {
        let lists = lists::list_lists(&state.db, PageRequest::parse(None, Some(200))?).await?;
        let brands = brands::list_brands(&state.db, PageRequest::parse(None, Some(200))?).await?;
        let partners = partners::list_partners(&state.db, PageRequest::parse(None, Some(200))?).await?;
        let surveys = surveys::list_surveys(&state.db, PageRequest::parse(None, Some(200))?).await?;
        Ok::<_, Error>((lists.items, brands.items, partners.items, surveys.items))
    };
    let (lists, brands, partners, surveys) = match choices.await {
        Ok(found) => found,
        Err(error) => return failure(state, &console.frame, error),
    };
    // The rows as they are, then one empty row of each to add.
    let mut fields: Vec<minijinja::Value> = body
        .fields
        .iter()
        .map(|f| minijinja::context! { name => &f.name, label => &f.label, kind => &f.kind, required => f.required, options => f.options.join(", ") })
        .collect();
    fields.push(minijinja::context! { name => "", label => "", kind => "text", required => false, options => "", empty => true });
    let mut consents: Vec<minijinja::Value> =
        body.consents.iter().map(|c| minijinja::context! { list_id => &c.list_id, text => &c.text }).collect();
    consents.push(minijinja::context! { list_id => "", text => "", empty => true });
    let errors: std::collections::BTreeMap<String, String> =
        errors.iter().map(|e| (e.field.clone(), e.message.clone())).collect();
    let title = match form {
        Some(form) => form.definition.name.clone(),
        None => crate::i18n::text(&console.frame.locale, "admin_new_form").to_owned(),
    };
    let context = minijinja::context! {
        title, id => form.map(|f| f.id.to_string()), version => form.map(|f| f.version),
        body, fields, consents, errors,
        lists => lists.iter().map(|l| minijinja::context! { id => l.id.to_string(), name => &l.name }).collect::<Vec<_>>(),
        brands => brands.iter().map(|b| minijinja::context! { id => b.id.to_string(), name => &b.profile.name }).collect::<Vec<_>>(),
        partners => partners.iter().map(|p| {
            let id = p.id.to_string();
            minijinja::context! { checked => body.partners.contains(&id), id, name => &p.name, legal_name => &p.legal_name,
                privacy_policy_url => &p.privacy_policy_url }
        }).collect::<Vec<_>>(),
        surveys => surveys.iter().map(|s| minijinja::context! { id => s.id.to_string(), name => &s.definition.name }).collect::<Vec<_>>(),
        locales => crate::i18n::LOCALES,
        kinds => ["text", "number", "date", "select", "multi_select", "checkbox", "country"],
        fonts => ["system", "serif", "rounded", "monospace"],
    };
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    page_with_status(state, console, status, "builder.html", "forms", context)
}

pub async fn show_new(state: web::Data<AppState>, console: Console) -> HttpResponse {
    if let Err(error) = console.require(Role::Editor) {
        return failure(&state, &console.frame, error);
    }
    let body = BuilderForm::default().body();
    builder_page(&state, &console, None, &body, &[]).await
}

pub async fn show_edit(state: web::Data<AppState>, console: Console, id: web::Path<String>) -> HttpResponse {
    let found = async {
        console.require(Role::Editor)?;
        let id: FormId = crate::http::extract::parse_id(&id, "form")?;
        forms::find_form(&state.db, id).await
    };
    match found.await {
        Ok(form) => {
            let body = FormBody::from_form(&form);
            builder_page(&state, &console, Some(&form), &body, &[]).await
        }
        Err(error) => failure(&state, &console.frame, error),
    }
}

/// The builder's form as the person will see it, unsaved, in the language chosen: what the
/// preview beside the builder shows. Faults are listed in its place.
pub async fn preview(
    state: web::Data<AppState>,
    console: Console,
    body: crate::http::extract::LimitedBody,
) -> HttpResponse {
    let posted = BuilderForm::from_body(&body.0);
    if let Err(error) = console.check_csrf(&posted.get("csrf")).and_then(|()| posted.check_rows()) {
        return failure(&state, &console.frame, error);
    }
    let shown = async {
        let mut body = posted.body();
        if let Some(id) = posted.optional("form_id") {
            let existing = forms::find_form(&state.db, crate::http::extract::parse_id(&id, "form")?).await?;
            keep_unshown_settings(&mut body, &FormBody::from_form(&existing));
        }
        let (slug, definition) = body.parse()?;
        let now = chrono::Utc::now();
        let form = Form { id: FormId::new(), slug, version: 0, definition, created_at: now, updated_at: now };
        crate::http::public::preview_page(&state, &form, posted.optional("preview_locale").as_deref()).await
    };
    match shown.await {
        Ok(response) => response,
        // The faults show in the preview's frame, which a console page's policy forbids.
        Err(error) => {
            let mut response = failure(&state, &console.frame, error);
            response.headers_mut().insert(
                actix_web::http::header::CONTENT_SECURITY_POLICY,
                actix_web::http::header::HeaderValue::from_static(crate::http::pages::PREVIEW_CSP),
            );
            response
        }
    }
}

/// Saves a new form, or a new version of one: the same parse and checks as the API.
async fn save(state: &AppState, console: &Console, existing: Option<Form>, posted: &[u8]) -> HttpResponse {
    let posted = BuilderForm::from_body(posted);
    if let Err(error) = console.check_csrf(&posted.get("csrf")).and_then(|()| console.require(Role::Editor)) {
        return failure(state, &console.frame, error);
    }
    if let Err(error) = posted.check_rows() {
        return failure(state, &console.frame, error);
    }
    let mut body = posted.body();
    if let Some(form) = &existing {
        keep_unshown_settings(&mut body, &FormBody::from_form(form));
    }
    let author = format!("user:{}", console.session.user.id);
    let saved = async {
        let (slug, definition) = body.clone().parse()?;
        match &existing {
            Some(form) => forms::update_form(&state.db, form.id, Some(slug), definition, author).await,
            None => forms::create_form(&state.db, slug, definition, author).await,
        }
    };
    match saved.await {
        Ok(form) => redirect(&format!("/admin/forms/{}?saved=1", form.id)),
        Err(Error::Validation(errors)) => builder_page(state, console, existing.as_ref(), &body, &errors).await,
        Err(Error::Conflict(message)) => {
            let errors = [FieldError::new("slug", message)];
            builder_page(state, console, existing.as_ref(), &body, &errors).await
        }
        Err(error) => failure(state, &console.frame, error),
    }
}

pub async fn create(
    state: web::Data<AppState>,
    console: Console,
    body: crate::http::extract::LimitedBody,
) -> HttpResponse {
    save(&state, &console, None, &body.0).await
}

pub async fn update(
    state: web::Data<AppState>,
    console: Console,
    id: web::Path<String>,
    body: crate::http::extract::LimitedBody,
) -> HttpResponse {
    let found = async {
        let id: FormId = crate::http::extract::parse_id(&id, "form")?;
        forms::find_form(&state.db, id).await
    };
    match found.await {
        Ok(form) => save(&state, &console, Some(form), &body.0).await,
        Err(error) => failure(&state, &console.frame, error),
    }
}

/// What the builder does not show stays as it was: partners, the survey, the confirmation
/// mail's words, and the limits of fields kept by name. A save here never drops a setting
/// made through the API.
fn keep_unshown_settings(body: &mut FormBody, before: &FormBody) {
    body.confirmation_subject.clone_from(&before.confirmation_subject);
    body.confirmation_text.clone_from(&before.confirmation_text);
    for field in &mut body.fields {
        if let Some(old) = before.fields.iter().find(|old| old.name == field.name) {
            (field.min, field.max, field.max_length) = (old.min, old.max, old.max_length);
        }
    }
}
