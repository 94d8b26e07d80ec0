//! Brands: the sender's identity on public pages and system mails. A form names its brand;
//! everything else (and a form that names none) shows the default brand.

use base64::Engine;

use super::keys::{Keys, LinkKind};
use super::pagination::{Page, PageRequest};
use crate::domain::brand::{Brand, BrandProfile, Color, LogoType};
use crate::domain::form::FormDefinition;
use crate::domain::{BrandId, ContactId};
use crate::error::{Error, Result};
use crate::storage::brands::{self as repo, BrandRow};
use crate::storage::models::utc;
use crate::storage::{self, Db, DbConnection, confirmations};

/// A brand as a new or replacing definition.
#[derive(Debug, Clone)]
pub struct BrandDefinition {
    pub profile: BrandProfile,
    pub is_default: bool,
}

pub async fn create_brand(db: &Db, definition: BrandDefinition) -> Result<Brand> {
    db.write(move |conn| {
        let now = storage::now();
        // The first brand is the default until another is made it.
        let is_default = definition.is_default || repo::find_default_brand(conn)?.is_none();
        if is_default {
            repo::clear_default(conn)?;
        }
        let row = to_row(BrandId::new(), &definition.profile, is_default, None, now, now);
        storage::or_conflict(repo::insert_brand(conn, &row), || duplicate_name(&row.name))?;
        to_brand(row)
    })
    .await
}

pub async fn find_brand(db: &Db, id: BrandId) -> Result<Brand> {
    db.read(move |conn| to_brand(repo::find_brand(conn, id)?.ok_or_else(|| not_found(id))?)).await
}

pub async fn list_brands(db: &Db, page: PageRequest) -> Result<Page<Brand>> {
    db.read(move |conn| {
        let rows = repo::list_brands(conn, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(to_brand)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.page(rows, |brand| brand.id.to_string()))
    })
    .await
}

/// Replaces a brand's definition; its logo stays. The default brand stays the default
/// until another brand is made it.
pub async fn replace_brand(db: &Db, id: BrandId, definition: BrandDefinition) -> Result<Brand> {
    db.write(move |conn| {
        let old = repo::find_brand(conn, id)?.ok_or_else(|| not_found(id))?;
        let is_default = definition.is_default || old.is_default == 1;
        if is_default && old.is_default == 0 {
            repo::clear_default(conn)?;
        }
        let row = to_row(id, &definition.profile, is_default, old.logo_type, old.created_at, storage::now());
        storage::or_conflict(repo::update_brand(conn, &row), || duplicate_name(&row.name))?;
        to_brand(row)
    })
    .await
}

/// Deletes a brand. Forms that named it show the default brand from then on; the default
/// brand itself cannot go while others exist (make another the default first).
pub async fn delete_brand(db: &Db, id: BrandId) -> Result<()> {
    db.write(move |conn| {
        let row = repo::find_brand(conn, id)?.ok_or_else(|| not_found(id))?;
        if row.is_default == 1 && repo::list_brands(conn, None, 2)?.len() > 1 {
            return Err(Error::Conflict(
                "this is the default brand: make another brand the default before deleting it".to_owned(),
            ));
        }
        repo::delete_brand(conn, id)?;
        Ok(())
    })
    .await
}

/// Stores a brand's logo, refused unless it is a PNG, JPEG, WebP or GIF within the size.
pub async fn set_logo(db: &Db, id: BrandId, bytes: Vec<u8>) -> Result<Brand> {
    let logo_type = LogoType::sniff(&bytes).map_err(|e| Error::field("logo", e))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    db.write(move |conn| {
        if repo::update_logo(conn, id, Some((encoded, logo_type.media_type().to_owned())))? == 0 {
            return Err(not_found(id));
        }
        to_brand(repo::find_brand(conn, id)?.ok_or_else(|| not_found(id))?)
    })
    .await
}

/// A brand's logo: its bytes and media type.
pub async fn find_logo(db: &Db, id: BrandId) -> Result<Option<(Vec<u8>, &'static str)>> {
    let found = db.read(move |conn| Ok(repo::find_logo(conn, id)?)).await?;
    Ok(found.and_then(|(encoded, media_type)| {
        let logo_type = LogoType::from_media_type(&media_type)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        Some((bytes, logo_type.media_type()))
    }))
}

/// The brand of a page or mail: the one named, if it still exists, else the default.
pub fn brand_for_in(conn: &mut DbConnection, named: Option<BrandId>) -> Result<Option<Brand>> {
    if let Some(id) = named
        && let Some(row) = repo::find_brand(conn, id)?
    {
        return to_brand(row).map(Some);
    }
    repo::find_default_brand(conn)?.map(to_brand).transpose()
}

pub async fn brand_for(db: &Db, named: Option<BrandId>) -> Result<Option<Brand>> {
    db.read(move |conn| brand_for_in(conn, named)).await
}

/// Whether a brand exists, for a form that names it.
pub fn exists_in(conn: &mut DbConnection, id: BrandId) -> Result<bool> {
    Ok(repo::find_brand(conn, id)?.is_some())
}

/// How many brands there are: with one, "all our e-mails" are that brand's.
pub async fn count_brands(db: &Db) -> Result<usize> {
    db.read(|conn| Ok(repo::list_brands(conn, None, 2)?.len())).await
}

/// Records the language a person speaks: the one of the page they signed up or confirmed on.
pub fn set_contact_locale_in(conn: &mut DbConnection, id: ContactId, locale: &str) -> Result<()> {
    if crate::domain::form::LOCALES.contains(&locale) {
        crate::storage::contacts::update_contact_locale(conn, id, locale)?;
    }
    Ok(())
}

/// The lines at the foot of a system mail: who sent it, from where, and their privacy
/// policy, in the mail's language.
pub fn mail_footer(brand: &Brand, locale: &str) -> String {
    let profile = &brand.profile;
    let mut footer = format!(
        "\n\n-- \n{} ({})\n{}\n{}: {}\n",
        profile.name,
        profile.legal_name,
        profile.postal_address,
        crate::i18n::text(locale, "privacy_policy"),
        profile.privacy_policy_url
    );
    if let Some(line) = &profile.footer {
        footer.push_str(line);
        footer.push('\n');
    }
    footer
}

fn to_row(
    id: BrandId,
    profile: &BrandProfile,
    is_default: bool,
    logo_type: Option<String>,
    created_at: chrono::NaiveDateTime,
    updated_at: chrono::NaiveDateTime,
) -> BrandRow {
    BrandRow {
        id,
        name: profile.name.clone(),
        legal_name: profile.legal_name.clone(),
        postal_address: profile.postal_address.clone(),
        privacy_policy_url: profile.privacy_policy_url.clone(),
        accent_color: profile.accent_color.as_ref().map(|c| c.as_str().to_owned()),
        background_color: profile.background_color.as_ref().map(|c| c.as_str().to_owned()),
        footer: profile.footer.clone(),
        logo_type,
        is_default: i32::from(is_default),
        created_at,
        updated_at,
    }
}

fn to_brand(row: BrandRow) -> Result<Brand> {
    let color = |value: Option<String>| value.and_then(|c| Color::parse(&c).ok());
    Ok(Brand {
        id: row.id,
        logo: row.logo_type.as_deref().and_then(LogoType::from_media_type),
        profile: BrandProfile {
            name: row.name,
            legal_name: row.legal_name,
            postal_address: row.postal_address,
            privacy_policy_url: row.privacy_policy_url,
            accent_color: color(row.accent_color),
            background_color: color(row.background_color),
            footer: row.footer,
        },
        is_default: row.is_default == 1,
        created_at: utc(row.created_at),
        updated_at: utc(row.updated_at),
    })
}

fn duplicate_name(name: &str) -> String {
    format!("a brand named {name:?} already exists")
}

fn not_found(id: BrandId) -> Error {
    Error::NotFound(format!("there is no brand {id}"))
}

/// Whom a person's link speaks to: their language, if known, and the brand asking (the
/// form's, for a confirmation; else that of the form they last signed up on; else the
/// default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkAudience {
    pub locale: Option<String>,
    pub brand_id: Option<BrandId>,
}

/// The audience of a link, read without acting on it; the default for a link that is not
/// valid (its page says so in the browser's language, and reveals nothing).
pub async fn link_audience(db: &Db, keys: &Keys, kind: LinkKind, token: &str) -> Result<LinkAudience> {
    let subject = match kind {
        LinkKind::Preferences => keys.verify_preferences(token).map(|claims| claims.contact),
        _ => keys.verify_link(kind, token).map(|claims| claims.subject),
    };
    let Some(subject) = subject else {
        return Ok(LinkAudience::default());
    };
    db.read(move |conn| {
        let (contact, form) = match kind {
            LinkKind::Confirm => match subject.parse().ok().map(|id| confirmations::find_confirmation(conn, id)) {
                Some(found) => found?.map_or((None, None), |row| (Some(row.contact_id), row.form_id)),
                None => (None, None),
            },
            LinkKind::DataRequest => {
                (crate::storage::preferences::find_data_request(conn, &subject)?.map(|row| row.contact_id), None)
            }
            _ => (subject.parse::<ContactId>().ok(), None),
        };
        // Without a form of its own, the link speaks for the form the person last signed
        // up or confirmed on.
        let form = match (form, contact) {
            (None, Some(contact)) => crate::storage::consent::find_latest_form_of_contact(conn, contact)?,
            (form, _) => form,
        };
        let brand_id = match form {
            Some(id) => crate::storage::forms::find_form(conn, id)?
                .and_then(|(_, version)| serde_json::from_str::<FormDefinition>(&version.definition).ok())
                .and_then(|definition| definition.brand_id),
            None => None,
        };
        let locale = match contact {
            Some(id) => crate::storage::contacts::find_contact_locale(conn, id)?,
            None => None,
        };
        Ok(LinkAudience { locale, brand_id })
    })
    .await
}
