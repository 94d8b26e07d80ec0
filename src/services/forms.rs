//! Signup forms: every change is a new version, and consent events point at the version
//! the person saw.

use chrono::{DateTime, Utc};

use super::pagination::{Page, PageRequest};
use crate::domain::FormId;
use crate::domain::form::FormDefinition;
use crate::domain::{ListId, PartnerId};
use crate::error::{Error, FieldError, Result};
use crate::storage::forms::{self as repo, FormRow, FormVersionRow};
use crate::storage::models::utc;
use crate::storage::{self, Db, DbConnection, lists};

/// A form at one version.
#[derive(Debug, Clone)]
pub struct Form {
    pub id: FormId,
    pub slug: String,
    pub version: i32,
    pub definition: FormDefinition,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an admin should know of these forms before people meet them (see
/// [`FormDefinition::warnings`]), for each form in order.
pub async fn warnings(db: &Db, forms: Vec<FormDefinition>) -> Result<Vec<Vec<FieldError>>> {
    db.read(move |conn| {
        forms
            .iter()
            .map(|definition| {
                let brand = super::brands::brand_for_in(conn, definition.brand_id)?;
                let mut warnings = definition.warnings(brand.as_ref());
                if let Some(id) = definition.brand_id
                    && !super::brands::exists_in(conn, id)?
                {
                    warnings.push(FieldError::new(
                        "brand_id",
                        format!("the brand {id} was deleted: the pages show the default brand instead"),
                    ));
                }
                Ok(warnings)
            })
            .collect()
    })
    .await
}

/// Checks a slug: what the hosted page's URL ends with.
pub fn check_slug(slug: &str) -> Result<(), &'static str> {
    let valid = !slug.is_empty()
        && slug.len() <= 64
        && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !slug.starts_with('-');
    if valid { Ok(()) } else { Err("must be 1 to 64 characters of a-z, 0-9 and -") }
}

pub async fn create_form(db: &Db, slug: String, definition: FormDefinition, author: String) -> Result<Form> {
    let id = FormId::new();
    let faults = check_templates(&definition).await?;
    db.write(move |conn| {
        check_definition(conn, &definition, faults)?;
        let now = storage::now();
        let form = FormRow { id, slug: slug.clone(), current_version: 1, created_at: now, updated_at: now };
        let version = version_row(form.id, 1, &definition, author, now)?;
        storage::or_conflict(repo::insert_form(conn, &form, &version), || duplicate_slug(&slug))?;
        to_form(form, version)
    })
    .await
}

/// Replaces a form's definition (and slug) with a new version.
pub async fn update_form(
    db: &Db,
    id: FormId,
    slug: Option<String>,
    definition: FormDefinition,
    author: String,
) -> Result<Form> {
    let faults = check_templates(&definition).await?;
    db.write(move |conn| {
        let (form, _) = repo::find_form(conn, id)?.ok_or_else(|| not_found(id))?;
        check_definition(conn, &definition, faults)?;
        let slug = slug.unwrap_or(form.slug);
        let now = storage::now();
        let version = version_row(form.id, form.current_version + 1, &definition, author, now)?;
        storage::or_conflict(repo::insert_version(conn, &version, &slug), || duplicate_slug(&slug))?;
        let (form, version) = repo::find_form(conn, id)?.ok_or_else(|| not_found(id))?;
        to_form(form, version)
    })
    .await
}

pub async fn find_form(db: &Db, id: FormId) -> Result<Form> {
    db.read(move |conn| {
        let (form, version) = repo::find_form(conn, id)?.ok_or_else(|| not_found(id))?;
        to_form(form, version)
    })
    .await
}

/// The current version of a form, inside a transaction.
pub fn find_in(conn: &mut DbConnection, id: FormId) -> Result<Option<Form>> {
    match repo::find_form(conn, id)? {
        Some((form, version)) => Ok(Some(to_form(form, version)?)),
        None => Ok(None),
    }
}

/// The current version of the form published at `slug`.
pub fn find_published(conn: &mut DbConnection, slug: &str) -> Result<Option<Form>> {
    match repo::find_form_by_slug(conn, slug)? {
        Some((form, version)) => Ok(Some(to_form(form, version)?)),
        None => Ok(None),
    }
}

pub async fn find_form_by_slug(db: &Db, slug: String) -> Result<Option<Form>> {
    db.read(move |conn| find_published(conn, &slug)).await
}

pub async fn list_forms(db: &Db, page: PageRequest) -> Result<Page<Form>> {
    db.read(move |conn| {
        let rows = repo::list_forms(conn, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(|(form, version)| to_form(form, version))
            .collect::<Result<Vec<_>>>()?;
        Ok(page.page(rows, |form| form.id.to_string()))
    })
    .await
}

/// Every version of a form, oldest first.
pub async fn list_versions(db: &Db, id: FormId) -> Result<Vec<Form>> {
    db.read(move |conn| {
        let (form, _) = repo::find_form(conn, id)?.ok_or_else(|| not_found(id))?;
        repo::list_versions(conn, form.id)?.into_iter().map(|version| to_form(form.clone(), version)).collect()
    })
    .await
}

/// Deletes a form that never collected consent. Once people signed up through it, its
/// versions are the evidence of what they were shown, and it stays.
pub async fn delete_form(db: &Db, id: FormId) -> Result<()> {
    db.write(move |conn| {
        repo::find_form(conn, id)?.ok_or_else(|| not_found(id))?;
        if crate::storage::consent::count_form_events(conn, id)? > 0 {
            return Err(Error::Conflict(
                "people signed up through this form: its versions are evidence of what they were shown and are kept"
                    .to_owned(),
            ));
        }
        repo::delete_form(conn, id)?;
        Ok(())
    })
    .await
}

/// The faults of a definition's templates, rendered off the request threads and before
/// any transaction: a template is an admin's program, and a write must not wait for it.
async fn check_templates(definition: &FormDefinition) -> Result<Vec<FieldError>> {
    let Some(text) = definition.confirmation_text.clone() else {
        return Ok(Vec::new());
    };
    crate::mail::template::off_the_request("confirmation_text", move || {
        Ok(crate::mail::template::check_confirmation_text(&text)
            .err()
            .map(|error| FieldError::new("confirmation_text", error))
            .into_iter()
            .collect())
    })
    .await
}

/// Checks what a definition refers to, adding the faults its templates were found with.
fn check_definition(
    conn: &mut DbConnection,
    definition: &FormDefinition,
    template_faults: Vec<FieldError>,
) -> Result<()> {
    let mut errors = definition.check();
    let ids: Vec<ListId> = definition.consents.iter().map(|c| c.list_id).collect();
    let existing = lists::find_existing_list_ids(conn, &ids)?;
    for (i, id) in ids.iter().enumerate() {
        if !existing.contains(id) {
            errors.push(FieldError::new(format!("consents[{i}].list_id"), format!("there is no list {id}")));
        }
    }
    let partner_ids: Vec<PartnerId> = definition.partners.clone();
    let known = crate::storage::partners::find_partners(conn, &partner_ids)?;
    for (i, id) in partner_ids.iter().enumerate() {
        if !known.iter().any(|p| p.id == *id) {
            errors.push(FieldError::new(format!("partners[{i}]"), format!("there is no partner {id}")));
        }
    }
    if let Some(survey) = &definition.survey
        && crate::storage::surveys::find_survey(conn, survey.survey_id)?.is_none()
    {
        errors.push(FieldError::new("survey_id", format!("there is no survey {}", survey.survey_id)));
    }
    if let Some(id) = definition.brand_id
        && !super::brands::exists_in(conn, id)?
    {
        errors.push(FieldError::new("brand_id", format!("there is no brand {id}")));
    }
    errors.extend(template_faults);
    if errors.is_empty() { Ok(()) } else { Err(Error::Validation(errors)) }
}

fn version_row(
    form_id: FormId,
    version: i32,
    definition: &FormDefinition,
    author: String,
    now: chrono::NaiveDateTime,
) -> Result<FormVersionRow> {
    Ok(FormVersionRow {
        form_id,
        version,
        definition: serde_json::to_string(definition).map_err(Error::internal)?,
        created_by: author,
        created_at: now,
    })
}

pub fn to_form(form: FormRow, version: FormVersionRow) -> Result<Form> {
    Ok(Form {
        id: form.id,
        slug: form.slug,
        version: version.version,
        definition: serde_json::from_str(&version.definition).map_err(Error::internal)?,
        created_at: utc(form.created_at),
        updated_at: utc(version.created_at),
    })
}

fn duplicate_slug(slug: &str) -> String {
    format!("another form is published at /f/{slug}")
}

fn not_found(id: FormId) -> Error {
    Error::NotFound(format!("there is no form {id}"))
}
