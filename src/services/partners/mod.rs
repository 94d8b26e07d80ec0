//! Co-registration partners: their records and keys, leads shared with the partners a
//! person chose (decided and mapped by the `share` hook), leads received from partners
//! with their proof (`accept_lead` hook; accepted, or reconfirmed by double opt-in), and
//! the withdrawals relayed to every partner that received a lead.

mod credentials;
mod inbound;
mod leads;
mod sharing;

pub use credentials::*;
pub use inbound::*;
pub use leads::*;
pub use sharing::*;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::outbound::OutboundPolicy;
use super::pagination::{Page, PageRequest};
use super::plugins::FolderPlugins;
use super::webhooks::{self};
use crate::domain::contact::parse_required_text;
use crate::domain::partner::{InboundPolicy, PartnerStatus};
use crate::domain::{ListId, PartnerId};
use crate::error::{Error, FieldErrors, Result};
use crate::storage::models::utc;
use crate::storage::partners::{self as repo, PartnerRow};
use crate::storage::{self, Db, DbConnection, lists};

/// The plugin a partner runs when it names none.
pub const DEFAULT_PLUGIN: &str = "co-registration";

/// The prefix of partner keys (integration keys start with `csk_`).
pub const PARTNER_KEY_PREFIX: &str = "cpk_";

#[derive(Debug, Clone)]
pub struct Partner {
    pub id: PartnerId,
    pub name: String,
    pub legal_name: String,
    pub description: String,
    pub privacy_policy_url: String,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub inbound_policy: InboundPolicy,
    pub inbound_lists: Vec<ListId>,
    pub plugin: Option<String>,
    pub status: PartnerStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A partner as sent.
#[derive(Debug, Clone)]
pub struct PartnerDraft {
    pub name: String,
    pub legal_name: String,
    pub description: String,
    pub privacy_policy_url: String,
    pub webhook_url: Option<String>,
    /// `None` with a webhook URL: keep the current secret, or generate one.
    pub webhook_secret: Option<String>,
    pub inbound_policy: String,
    pub inbound_lists: Vec<String>,
    pub plugin: Option<String>,
    pub status: String,
}

fn partner(row: PartnerRow) -> Result<Partner> {
    let lists: Vec<String> = serde_json::from_str(&row.inbound_lists).map_err(Error::internal)?;
    Ok(Partner {
        id: row.id,
        inbound_policy: row.inbound_policy,
        status: row.status,
        inbound_lists: lists.iter().filter_map(|id| id.parse().ok()).collect(),
        name: row.name,
        legal_name: row.legal_name,
        description: row.description,
        privacy_policy_url: row.privacy_policy_url,
        webhook_url: row.webhook_url,
        webhook_secret: row.webhook_secret,
        plugin: row.share_plugin,
        created_at: utc(row.created_at),
        updated_at: utc(row.updated_at),
    })
}

/// Checks a draft against the rules and what exists (lists, plugin): every fault at once.
fn check_draft(
    conn: &mut DbConnection,
    folder: &FolderPlugins,
    outbound: &OutboundPolicy,
    draft: &PartnerDraft,
) -> Result<(InboundPolicy, PartnerStatus, Vec<ListId>)> {
    let mut errors = FieldErrors::new();
    for (field, value, max) in
        [("name", &draft.name, 200), ("legal_name", &draft.legal_name, 200), ("description", &draft.description, 1000)]
    {
        errors.check(field, parse_required_text(value, max).map(|_| ()));
    }
    errors.check("privacy_policy_url", webhooks::check_url(&draft.privacy_policy_url));
    if let Some(url) = &draft.webhook_url {
        errors.check("webhook_url", outbound.check_receiver_url(url));
    }
    if let Some(secret) = &draft.webhook_secret
        && (secret.len() < 16 || secret.len() > 200)
    {
        errors.push("webhook_secret", "must be 16 to 200 characters");
    }
    let policy =
        errors.check("inbound_policy", draft.inbound_policy.parse::<InboundPolicy>().map_err(|e| e.to_string()));
    let status = errors.check("status", draft.status.parse::<PartnerStatus>().map_err(|e| e.to_string()));
    let mut ids = Vec::new();
    for (i, id) in draft.inbound_lists.iter().enumerate() {
        if let Some(id) =
            errors.check(&format!("inbound_lists[{i}]"), id.parse::<ListId>().map_err(|_| "must be a list id"))
        {
            ids.push(id);
        }
    }
    let existing = lists::find_existing_list_ids(conn, &ids)?;
    for (i, id) in ids.iter().enumerate() {
        if !existing.contains(id) {
            errors.push(format!("inbound_lists[{i}]"), format!("there is no list {id}"));
        }
    }
    if let Some(plugin) = &draft.plugin
        && !super::plugins::exists_in(conn, folder, plugin)?
    {
        errors.push("plugin", format!("there is no plugin {plugin}"));
    }
    errors.finish(|| Some((policy?, status?, ids)))
}

pub async fn create_partner(
    db: &Db,
    folder: Arc<FolderPlugins>,
    outbound: OutboundPolicy,
    draft: PartnerDraft,
) -> Result<Partner> {
    db.write(move |conn| {
        let (policy, status, lists) = check_draft(conn, &folder, &outbound, &draft)?;
        let now = storage::now();
        let secret =
            draft.webhook_url.as_ref().map(|_| draft.webhook_secret.clone().unwrap_or_else(webhooks::generate_secret));
        let row = PartnerRow {
            id: PartnerId::new(),
            name: draft.name,
            legal_name: draft.legal_name,
            description: draft.description,
            privacy_policy_url: draft.privacy_policy_url,
            webhook_url: draft.webhook_url,
            webhook_secret: secret,
            inbound_policy: policy,
            inbound_lists: list_json(&lists)?,
            share_plugin: draft.plugin,
            status,
            created_at: now,
            updated_at: now,
        };
        repo::insert_partner(conn, &row)?;
        partner(row)
    })
    .await
}

fn list_json(lists: &[ListId]) -> Result<String> {
    serde_json::to_string(&lists.iter().map(ToString::to_string).collect::<Vec<_>>()).map_err(Error::internal)
}

pub async fn update_partner(
    db: &Db,
    folder: Arc<FolderPlugins>,
    outbound: OutboundPolicy,
    id: PartnerId,
    draft: PartnerDraft,
) -> Result<Partner> {
    db.write(move |conn| {
        let current = repo::find_partner(conn, id)?.ok_or_else(|| not_found(id))?;
        let (policy, status, lists) = check_draft(conn, &folder, &outbound, &draft)?;
        let secret = match (&draft.webhook_url, draft.webhook_secret) {
            (None, _) => None,
            (Some(_), Some(secret)) => Some(secret),
            (Some(_), None) => Some(current.webhook_secret.clone().unwrap_or_else(webhooks::generate_secret)),
        };
        let row = PartnerRow {
            name: draft.name,
            legal_name: draft.legal_name,
            description: draft.description,
            privacy_policy_url: draft.privacy_policy_url,
            webhook_url: draft.webhook_url,
            webhook_secret: secret,
            inbound_policy: policy,
            inbound_lists: list_json(&lists)?,
            share_plugin: draft.plugin,
            status,
            updated_at: storage::now(),
            ..current
        };
        repo::update_partner(conn, &row)?;
        partner(row)
    })
    .await
}

pub async fn find_partner(db: &Db, id: PartnerId) -> Result<Partner> {
    db.read(move |conn| partner(repo::find_partner(conn, id)?.ok_or_else(|| not_found(id))?)).await
}

pub async fn list_partners(db: &Db, page: PageRequest) -> Result<Page<Partner>> {
    db.read(move |conn| {
        let rows = repo::list_partners(conn, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(partner)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.page(rows, |p| p.id.to_string()))
    })
    .await
}

/// Deletes a partner that never exchanged a lead; one that did stays as evidence (set it
/// `inactive` instead).
pub async fn delete_partner(db: &Db, id: PartnerId) -> Result<()> {
    db.write(move |conn| {
        repo::find_partner(conn, id)?.ok_or_else(|| not_found(id))?;
        if repo::count_leads(conn, id)? > 0 {
            return Err(Error::Conflict(
                "leads were exchanged with this partner: it is kept as evidence; set its status to inactive".to_owned(),
            ));
        }
        repo::delete_partner(conn, id)?;
        Ok(())
    })
    .await
}

fn not_found(id: PartnerId) -> Error {
    Error::NotFound(format!("there is no partner {id}"))
}

/// What a form shows about a partner beside its box, and keeps as the snapshot.
pub fn shown(partner: &PartnerRow) -> Value {
    json!({
        "id": partner.id,
        "name": partner.name,
        "legal_name": partner.legal_name,
        "description": partner.description,
        "privacy_policy_url": partner.privacy_policy_url,
    })
}

/// The words beside a partner's box: what the consent event keeps as its text.
pub fn checkbox_text(partner: &PartnerRow) -> String {
    format!(
        "Share my e-mail address and profile with {} ({}): {} Privacy policy: {}",
        partner.name, partner.legal_name, partner.description, partner.privacy_policy_url
    )
}

/// The active partners of a form, in the form's order.
pub fn form_partners(conn: &mut DbConnection, ids: &[PartnerId]) -> Result<Vec<PartnerRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = repo::find_partners(conn, ids)?;
    Ok(ids
        .iter()
        .filter_map(|id| rows.iter().find(|r| r.id == *id && r.status == PartnerStatus::Active).cloned())
        .collect())
}

pub async fn find_form_partners(db: &Db, ids: Vec<PartnerId>) -> Result<Vec<PartnerRow>> {
    db.read(move |conn| form_partners(conn, &ids)).await
}
