//! Forms: each with its warnings, its hosted page and preview in every language, the embed
//! code to copy, and its versions with what each changed. (Editing them here comes next;
//! the API edits them now.)

use actix_web::{HttpResponse, web};

use super::{Console, failure, page};
use crate::domain::FormId;
use crate::error::Error;
use crate::http::AppState;
use crate::services::forms;
use crate::services::pagination::PageRequest;

pub async fn list(state: web::Data<AppState>, console: Console) -> HttpResponse {
    let found = async {
        let page = forms::list_forms(&state.db, PageRequest::parse(None, Some(200))?).await?;
        let warnings = forms::warnings(&state.db, page.items.iter().map(|f| f.definition.clone()).collect()).await?;
        Ok::<_, Error>((page.items, warnings))
    };
    let (items, warnings) = match found.await {
        Ok(found) => found,
        Err(error) => return failure(&state, &console.frame, error),
    };
    let rows: Vec<minijinja::Value> = items
        .iter()
        .zip(&warnings)
        .map(|(form, warnings)| {
            minijinja::context! {
                id => form.id.to_string(), name => &form.definition.name, slug => &form.slug, version => form.version,
                opt_in => format!("{:?}", form.definition.opt_in).to_lowercase(), warnings => warnings.len(),
                updated_at => form.updated_at.format("%Y-%m-%d %H:%M").to_string(),
            }
        })
        .collect();
    let title = crate::i18n::text(&console.frame.locale, "admin_forms");
    page(&state, &console, "forms.html", "forms", minijinja::context! { title, rows })
}

/// The top-level settings of a definition that differ from the one before.
fn changed_settings(before: &serde_json::Value, after: &serde_json::Value) -> Vec<String> {
    let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|key| before.get(*key) != after.get(*key)).cloned().collect()
}

#[derive(Debug, serde::Deserialize)]
pub struct ShowQuery {
    saved: Option<String>,
}

pub async fn show(
    state: web::Data<AppState>,
    console: Console,
    id: web::Path<String>,
    query: web::Query<ShowQuery>,
) -> HttpResponse {
    let found = async {
        let id: FormId = crate::http::extract::parse_id(&id, "form")?;
        let form = forms::find_form(&state.db, id).await?;
        let versions = forms::list_versions(&state.db, id).await?;
        let warnings = forms::warnings(&state.db, vec![form.definition.clone()]).await?;
        Ok::<_, Error>((form, versions, warnings))
    };
    let (form, versions, mut warnings) = match found.await {
        Ok(found) => found,
        Err(error) => return failure(&state, &console.frame, error),
    };
    let base = &state.signup.base_url;
    let mut history = Vec::new();
    let mut before = serde_json::Value::Null;
    for version in &versions {
        let after = serde_json::to_value(&version.definition).unwrap_or_default();
        let changed = if before.is_null() { Vec::new() } else { changed_settings(&before, &after) };
        history.push(minijinja::context! {
            version => version.version, at => version.updated_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            slug => &version.slug, changed,
        });
        before = after;
    }
    history.reverse();
    let embed = |variant: &str| format!("{base}/f/{}/embed?variant={variant}", form.slug);
    let consents: Vec<minijinja::Value> = form
        .definition
        .consents
        .iter()
        .map(|c| minijinja::context! { list_id => c.list_id.to_string(), text => &c.text })
        .collect();
    let fields: Vec<minijinja::Value> = form
        .definition
        .fields
        .iter()
        .map(|f| minijinja::context! { name => &f.name, label => &f.label, kind => format!("{:?}", f.kind).to_lowercase(), required => f.required })
        .collect();
    let context = minijinja::context! {
        title => &form.definition.name,
        form => minijinja::context! {
            id => form.id.to_string(), name => &form.definition.name, slug => &form.slug, version => form.version,
            title => &form.definition.title, opt_in => format!("{:?}", form.definition.opt_in).to_lowercase(),
            locale => &form.definition.locale, allowed_origins => &form.definition.allowed_origins,
            hosted_url => format!("{base}/f/{}", form.slug),
        },
        warnings => warnings.drain(..).next().unwrap_or_default().iter().map(|w| minijinja::context! { field => &w.field, message => &w.message }).collect::<Vec<_>>(),
        consents, fields, history, saved => query.saved.is_some(),
        locales => crate::i18n::LOCALES,
        embeds => [("html", embed("html")), ("script", embed("script")), ("iframe", embed("iframe"))],
    };
    page(&state, &console, "form.html", "forms", context)
}

/// The hosted page as a person will see it, in the language asked for: the API's preview,
/// for a signed-in user.
pub async fn preview(
    state: web::Data<AppState>,
    console: Console,
    id: web::Path<String>,
    query: web::Query<PreviewQuery>,
) -> HttpResponse {
    let found = async {
        let id: FormId = crate::http::extract::parse_id(&id, "form")?;
        let form = forms::find_form(&state.db, id).await?;
        crate::http::public::preview_page(&state, &form, query.locale.as_deref()).await
    };
    match found.await {
        Ok(response) => response,
        Err(error) => failure(&state, &console.frame, error),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct PreviewQuery {
    locale: Option<String>,
}
