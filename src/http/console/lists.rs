//! Lists with their counts, and the suppression list: search it by address, add an address
//! with a reason.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{Console, failure, page, page_with_status};
use crate::domain::{Email, Role};
use crate::error::{Error, FieldErrors};
use crate::http::AppState;
use crate::services::pagination::PageRequest;
use crate::services::{lists, suppressions};

pub async fn list(state: web::Data<AppState>, console: Console) -> HttpResponse {
    let found = async {
        let page = lists::list_lists(&state.db, PageRequest::parse(None, Some(200))?).await?;
        // The dashboard's counts where counting is slow; a list newer than them is counted.
        let snapshot = state.stats.latest(&state.db).await?;
        let counted: std::collections::HashMap<&str, i64> =
            snapshot.stats.lists.iter().map(|(name, members)| (name.as_str(), *members)).collect();
        let mut rows = Vec::new();
        for list in page.items {
            let members = match counted.get(list.name.as_str()) {
                Some(members) => *members,
                None => lists::count_members(&state.db, list.id).await?,
            };
            rows.push(minijinja::context! {
                name => list.name, description => list.description, opt_in => list.opt_in.to_string(), members,
                id => list.id.to_string(),
            });
        }
        let counted_at = (snapshot.took >= crate::services::stats::LIVE_UNDER)
            .then(|| snapshot.taken_at.format("%Y-%m-%d %H:%M:%S UTC").to_string());
        Ok::<_, Error>((rows, counted_at))
    };
    match found.await {
        Ok((rows, counted_at)) => {
            let title = crate::i18n::text(&console.frame.locale, "admin_lists");
            page(&state, &console, "lists.html", "lists", minijinja::context! { title, rows, counted_at })
        }
        Err(error) => failure(&state, &console.frame, error),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct SuppressionSearch {
    #[serde(default)]
    email: String,
    cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SuppressionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    reason: String,
}

async fn suppressions_page(
    state: &AppState,
    console: &Console,
    search: &SuppressionSearch,
    notice: Option<String>,
    form_error: Option<(StatusCode, String)>,
) -> HttpResponse {
    let found = async {
        let email = match search.email.trim() {
            "" => None,
            text => Some(Email::parse(text).map_err(|e| Error::field("email", e))?),
        };
        suppressions::list(&state.db, &state.keys, email, search.cursor.clone(), Some(50)).await
    };
    let entries = match found.await {
        Ok(entries) => entries,
        Err(error) => return failure(state, &console.frame, error),
    };
    let rows: Vec<minijinja::Value> = entries
        .items
        .iter()
        .map(|s| {
            minijinja::context! {
                hash => &s.email_hash, reason => &s.reason, created_at => s.created_at.format("%Y-%m-%d %H:%M").to_string(),
            }
        })
        .collect();
    let next = entries.next_cursor.map(|cursor| format!("/admin/suppressions?cursor={cursor}"));
    let (status, error) = form_error.map_or((StatusCode::OK, None), |(status, error)| (status, Some(error)));
    let title = crate::i18n::text(&console.frame.locale, "admin_suppressions");
    let context = minijinja::context! { title, rows, next, search => &search.email, notice, error, searched => !search.email.trim().is_empty() };
    page_with_status(state, console, status, "suppressions.html", "suppressions", context)
}

pub async fn show_suppressions(
    state: web::Data<AppState>,
    console: Console,
    search: web::Query<SuppressionSearch>,
) -> HttpResponse {
    suppressions_page(&state, &console, &search, None, None).await
}

#[derive(Debug, Default, Deserialize)]
pub struct SuppressionImportForm {
    #[serde(default)]
    csrf: String,
    /// A previous provider's export pasted (CSV with a header naming the address column),
    /// or one address a line.
    #[serde(default)]
    addresses: String,
    #[serde(default)]
    reason: String,
}

/// Suppresses many addresses at once (an export of the tool this replaces, pasted), each
/// as suppressing one does.
pub async fn import_suppressions(
    state: web::Data<AppState>,
    console: Console,
    body: crate::http::extract::LimitedBody,
) -> HttpResponse {
    // Read within the server's body limit (an export holds thousands of addresses).
    let form: SuppressionImportForm = serde_urlencoded::from_bytes(&body.0).unwrap_or_default();
    if let Err(error) = console.check_csrf(&form.csrf).and_then(|()| console.require(Role::Editor)) {
        return failure(&state, &console.frame, error);
    }
    let search = SuppressionSearch::default();
    let reason = match suppressions::parse_reason(&form.reason) {
        Ok(reason) => reason,
        Err(message) => {
            let error = Some((StatusCode::UNPROCESSABLE_ENTITY, format!("reason: {message}")));
            return suppressions_page(&state, &console, &search, None, error).await;
        }
    };
    if form.addresses.trim().is_empty() {
        let message = crate::i18n::text(&console.frame.locale, "admin_suppress_many_empty").to_owned();
        return suppressions_page(&state, &console, &search, None, Some((StatusCode::UNPROCESSABLE_ENTITY, message)))
            .await;
    }
    let actor = crate::domain::consent::Actor::User(console.session.user.id);
    match suppressions::import(&state.db, &state.keys, form.addresses.as_bytes(), reason, actor).await {
        Ok(report) => {
            let notice = crate::i18n::text(&console.frame.locale, "admin_suppress_many_done")
                .replace("{added}", &report.added.to_string())
                .replace("{already}", &report.already_suppressed.to_string())
                .replace("{invalid}", &report.invalid.to_string())
                .replace("{unsubscribed}", &report.contacts_unsubscribed.to_string());
            suppressions_page(&state, &console, &search, Some(notice), None).await
        }
        Err(error) => failure(&state, &console.frame, error),
    }
}

/// Suppresses an address by hand (an editor's act, recorded with who did it).
pub async fn add_suppression(
    state: web::Data<AppState>,
    console: Console,
    form: web::Form<SuppressionForm>,
) -> HttpResponse {
    if let Err(error) = console.check_csrf(&form.csrf).and_then(|()| console.require(Role::Editor)) {
        return failure(&state, &console.frame, error);
    }
    let mut errors = FieldErrors::new();
    let email = errors.check("email", Email::parse(&form.email));
    let reason = errors.check("reason", suppressions::parse_reason(&form.reason));
    let search = SuppressionSearch::default();
    let parsed = errors.finish(|| Some((email?, reason?)));
    let (email, reason) = match parsed {
        Ok(parsed) => parsed,
        Err(Error::Validation(faults)) => {
            let message = faults.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; ");
            return suppressions_page(
                &state,
                &console,
                &search,
                None,
                Some((StatusCode::UNPROCESSABLE_ENTITY, message)),
            )
            .await;
        }
        Err(error) => return failure(&state, &console.frame, error),
    };
    let actor = crate::domain::consent::Actor::User(console.session.user.id);
    match suppressions::add(&state.db, &state.keys, email, reason, actor).await {
        Ok((_, added)) => {
            let key = if added { "admin_suppression_added" } else { "admin_suppression_already" };
            let notice = crate::i18n::text(&console.frame.locale, key).to_owned();
            suppressions_page(&state, &console, &search, Some(notice), None).await
        }
        Err(error) => failure(&state, &console.frame, error),
    }
}
