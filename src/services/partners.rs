//! Co-registration partners: their records and keys, leads shared with the partners a
//! person chose (decided and mapped by the `share` hook), leads received from partners
//! with their proof (`accept_lead` hook; accepted, or reconfirmed by double opt-in), and
//! the withdrawals relayed to every partner that received a lead.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::Services;
use super::auth::hash_api_key;
use super::confirmations::{self, SignupConfig};
use super::consent::{apply_event, load_contact_consents};
use super::keys::Keys;
use super::outbound::OutboundPolicy;
use super::pagination::{Page, PageRequest};
use super::plugins::{FolderPlugins, Scripts, script_rejected};
use super::webhooks::{self, emit_to_partner};
use crate::domain::consent::{Actor, ConsentAction, ConsentBasis, ConsentStatus, Evidence, Purpose};
use crate::domain::contact::{parse_required_text, parse_short_text};
use crate::domain::evidence;
use crate::domain::partner::{EventType, InboundPolicy, LeadDirection, LeadStatus, PartnerStatus};
use crate::domain::{Country, Email, LeadId, ListId, PartnerId};
use crate::error::{Error, FieldError, FieldErrors, Result};
use crate::plugins::{Script, ScriptError};
use crate::storage::consent::{self as ledger, NewConsentEvent};
use crate::storage::models::utc;
use crate::storage::partners::{self as repo, LeadRow, PartnerKeyRow, PartnerRow};
use crate::storage::{self, Db, DbConnection, contacts, lists};

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
        id: storage::models::parse_id("partner id", &row.id)?,
        inbound_policy: row
            .inbound_policy
            .parse()
            .map_err(|_| storage::models::corrupt("inbound policy", &row.inbound_policy))?,
        status: row.status.parse().map_err(|_| storage::models::corrupt("partner status", &row.status))?,
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
    let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let existing = lists::find_existing_list_ids(conn, &texts)?;
    for (i, id) in texts.iter().enumerate() {
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
            id: PartnerId::new().to_string(),
            name: draft.name,
            legal_name: draft.legal_name,
            description: draft.description,
            privacy_policy_url: draft.privacy_policy_url,
            webhook_url: draft.webhook_url,
            webhook_secret: secret,
            inbound_policy: policy.as_str().to_owned(),
            inbound_lists: list_json(&lists)?,
            share_plugin: draft.plugin,
            status: status.as_str().to_owned(),
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
        let current = repo::find_partner(conn, &id.to_string())?.ok_or_else(|| not_found(id))?;
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
            inbound_policy: policy.as_str().to_owned(),
            inbound_lists: list_json(&lists)?,
            share_plugin: draft.plugin,
            status: status.as_str().to_owned(),
            updated_at: storage::now(),
            ..current
        };
        repo::update_partner(conn, &row)?;
        partner(row)
    })
    .await
}

pub async fn find_partner(db: &Db, id: PartnerId) -> Result<Partner> {
    db.read(move |conn| partner(repo::find_partner(conn, &id.to_string())?.ok_or_else(|| not_found(id))?)).await
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
        repo::find_partner(conn, &id.to_string())?.ok_or_else(|| not_found(id))?;
        if repo::count_leads(conn, &id.to_string())? > 0 {
            return Err(Error::Conflict(
                "leads were exchanged with this partner: it is kept as evidence; set its status to inactive".to_owned(),
            ));
        }
        repo::delete_partner(conn, &id.to_string())?;
        Ok(())
    })
    .await
}

fn not_found(id: PartnerId) -> Error {
    Error::NotFound(format!("there is no partner {id}"))
}

/// A partner key; the secret only when just created.
#[derive(Debug, Clone)]
pub struct PartnerKey {
    pub id: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub secret: Option<String>,
}

fn key(row: PartnerKeyRow, secret: Option<String>) -> PartnerKey {
    PartnerKey {
        id: row.id,
        prefix: row.prefix,
        created_at: utc(row.created_at),
        last_used_at: row.last_used_at.map(utc),
        revoked_at: row.revoked_at.map(utc),
        secret,
    }
}

pub async fn create_key(db: &Db, partner_id: PartnerId) -> Result<PartnerKey> {
    let secret = format!(
        "{PARTNER_KEY_PREFIX}{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, super::auth::random_bytes::<32>())
    );
    let row = PartnerKeyRow {
        id: uuid::Uuid::now_v7().to_string(),
        partner_id: partner_id.to_string(),
        prefix: secret.chars().take(12).collect(),
        secret_hash: hash_api_key(&secret),
        created_at: storage::now(),
        last_used_at: None,
        revoked_at: None,
    };
    db.write(move |conn| {
        repo::find_partner(conn, &partner_id.to_string())?.ok_or_else(|| not_found(partner_id))?;
        repo::insert_key(conn, &row)?;
        Ok(key(row, Some(secret)))
    })
    .await
}

pub async fn list_keys(db: &Db, partner_id: PartnerId) -> Result<Vec<PartnerKey>> {
    db.read(move |conn| {
        repo::find_partner(conn, &partner_id.to_string())?.ok_or_else(|| not_found(partner_id))?;
        Ok(repo::list_keys(conn, &partner_id.to_string())?.into_iter().map(|row| key(row, None)).collect())
    })
    .await
}

pub async fn revoke_key(db: &Db, partner_id: PartnerId, key_id: String) -> Result<()> {
    db.write(move |conn| {
        if repo::revoke_key(conn, &partner_id.to_string(), &key_id, storage::now())? == 0 {
            return Err(Error::NotFound(format!("partner {partner_id} has no key {key_id}")));
        }
        Ok(())
    })
    .await
}

/// The partner a key belongs to: active, key not revoked; 401 otherwise.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Partner> {
    let refused = || Error::Unauthorized("the partner key is unknown, revoked, or its partner is inactive".to_owned());
    if !secret.starts_with(PARTNER_KEY_PREFIX) {
        return Err(Error::Unauthorized("send a partner key (cpk_…) as `Authorization: Bearer …`".to_owned()));
    }
    let hash = hash_api_key(secret);
    let found = db
        .read(move |conn| {
            let Some(key) = repo::find_key_by_hash(conn, &hash)? else {
                return Ok(None);
            };
            Ok(repo::find_partner(conn, &key.partner_id)?.map(|partner| (key, partner)))
        })
        .await?;
    let Some((key, row)) = found else {
        return Err(refused());
    };
    let partner = partner(row)?;
    if key.revoked_at.is_some() || partner.status != PartnerStatus::Active {
        return Err(refused());
    }
    let now = storage::now();
    if key.last_used_at.is_none_or(|at| now - at > TimeDelta::minutes(1)) {
        db.write(move |conn| Ok(repo::touch_key(conn, &key.id, now)?)).await?;
    }
    Ok(partner)
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
    let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let rows = repo::find_partners(conn, &texts)?;
    Ok(texts
        .iter()
        .filter_map(|id| rows.iter().find(|r| &r.id == id && r.status == PartnerStatus::Active.as_str()).cloned())
        .collect())
}

pub async fn find_form_partners(db: &Db, ids: Vec<PartnerId>) -> Result<Vec<PartnerRow>> {
    db.read(move |conn| form_partners(conn, &ids)).await
}

/// How long the one running a queued lead's `share` hook holds it: longer than a hook may
/// run (the script deadline) with the read and the write around it. A crash leaves the
/// lead to be taken again once this has passed.
const SHARE_LEASE: TimeDelta = TimeDelta::seconds(60);

/// Queued leads one worker takes at once.
const SHARE_BATCH: i64 = 32;

/// A queued lead held, until its lease runs out, by the one that will run its `share` hook.
#[derive(Debug, Clone)]
pub struct ShareClaim {
    lead_id: String,
    lease_until: NaiveDateTime,
}

/// Queues the sharing of a contact with a partner whose consent just became active (a
/// single opt-in signup, or the confirmation of a double opt-in), in the caller's
/// transaction: a `queued` lead is written with the consent, or not at all, so that a lead
/// is never lost. The partner's hook runs after the commit ([`share_claimed`], by the
/// caller, which holds the lead; else [`ShareWorker`] once the lease has run out), because
/// a script must never run inside a write transaction. `None`: nothing to share (the
/// partner is gone or inactive, or the lead is already shared or queued).
pub fn queue_share_in(conn: &mut DbConnection, contact_id: &str, partner_id: &str) -> Result<Option<ShareClaim>> {
    let Some(partner) = repo::find_partner(conn, partner_id)? else {
        return Ok(None);
    };
    if partner.status != PartnerStatus::Active.as_str() {
        return Ok(None);
    }
    let taken = [LeadStatus::Shared.as_str(), LeadStatus::Queued.as_str()];
    let already = repo::list_contact_leads(conn, contact_id, LeadDirection::Outbound.as_str())?
        .into_iter()
        .any(|lead| lead.partner_id == partner.id && taken.contains(&lead.status.as_str()));
    if already {
        return Ok(None);
    }
    let now = storage::now();
    let lease_until = now + SHARE_LEASE;
    let lead_id = LeadId::new().to_string();
    repo::insert_lead(
        conn,
        &LeadRow {
            id: lead_id.clone(),
            partner_id: partner.id,
            contact_id: Some(contact_id.to_owned()),
            direction: LeadDirection::Outbound.as_str().to_owned(),
            partner_lead_id: None,
            status: LeadStatus::Queued.as_str().to_owned(),
            payload: "{}".to_owned(),
            created_at: now,
            updated_at: now,
            lease_until: Some(lease_until),
        },
    )?;
    Ok(Some(ShareClaim { lead_id, lease_until }))
}

/// The leads a write queued (see [`queue_share_in`]), to share once it has committed: the
/// write's closure fills it, its caller runs it after the commit. Should the write roll
/// back, the leads it names were never written, and sharing them finds nothing to do.
#[derive(Clone, Default)]
pub struct SharesAfterCommit(Arc<std::sync::Mutex<Vec<ShareClaim>>>);

impl SharesAfterCommit {
    /// [`queue_share_in`], keeping the claim for [`SharesAfterCommit::run`].
    pub fn queue_in(&self, conn: &mut DbConnection, contact_id: &str, partner_id: &str) -> Result<()> {
        if let Some(claim) = queue_share_in(conn, contact_id, partner_id)?
            && let Ok(mut claims) = self.0.lock()
        {
            // A poisoned lock loses only the claim: the worker shares the lead once its
            // lease has run out.
            claims.push(claim);
        }
        Ok(())
    }

    /// After the commit: runs the `share` hooks of the leads queued.
    pub async fn run(self, db: &Db, scripts: &Scripts) {
        let claims = self.0.lock().map(|mut claims| std::mem::take(&mut *claims)).unwrap_or_default();
        share_claimed(db, scripts, claims).await;
    }
}

/// Shares the queued leads a request holds, after its commit. A failure is logged, not
/// answered: the person's signup stands, and the worker takes the lead again.
pub async fn share_claimed(db: &Db, scripts: &Scripts, claims: Vec<ShareClaim>) {
    for claim in claims {
        let lead_id = claim.lead_id.clone();
        if let Err(error) = share_one(db, scripts, claim).await {
            tracing::warn!(lead = %lead_id, error = %error, "sharing a lead failed; it will be taken again");
        }
    }
}

/// Takes the queued leads nobody holds (the request that queued them ended first) and
/// shares them; answers how many it took.
pub async fn share_due(db: &Db, scripts: &Scripts) -> Result<usize> {
    let now = storage::now();
    let queued = LeadStatus::Queued.as_str();
    let due = db.read(move |conn| Ok(repo::list_queued_due(conn, queued, now, SHARE_BATCH)?)).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let until = now + SHARE_LEASE;
    let claims = db
        .write(move |conn| {
            let mut claims = Vec::new();
            for id in due {
                if repo::lease_queued(conn, &id, queued, now, until)? {
                    claims.push(ShareClaim { lead_id: id, lease_until: until });
                }
            }
            Ok(claims)
        })
        .await?;
    let count = claims.len();
    share_claimed(db, scripts, claims).await;
    Ok(count)
}

/// Shares what requests left queued (a crash, a failed write), on every instance: the
/// lease decides which one runs each lead.
pub struct ShareWorker {
    db: Db,
    scripts: Scripts,
}

impl ShareWorker {
    pub fn new(db: Db, scripts: Scripts) -> Self {
        Self { db, scripts }
    }

    pub async fn run(self) {
        loop {
            match share_due(&self.db, &self.scripts).await {
                Ok(0) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "sharing queued leads failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                }
            }
        }
    }
}

/// What a queued lead needs to be shared, read before its hook runs.
enum Prepared {
    /// No longer queued: shared, withdrawn or erased meanwhile.
    Gone,
    /// Not to be shared, and why.
    Withhold(String),
    Run {
        loaded: Script,
        lead: Value,
        partner: Value,
    },
}

/// What the hook decided.
enum Decision {
    Share(Value),
    Withhold(String),
}

/// Claim (held), work, record: the lead and what the hook needs are read, the hook runs
/// with no connection held, and the outcome is written only by the holder of the lease.
async fn share_one(db: &Db, scripts: &Scripts, claim: ShareClaim) -> Result<()> {
    let lead_id = claim.lead_id.clone();
    let for_read = scripts.clone();
    let prepared = db.read(move |conn| prepare_share(conn, &for_read, &lead_id)).await?;
    let decision = match prepared {
        Prepared::Gone => return Ok(()),
        Prepared::Withhold(reason) => Decision::Withhold(reason),
        Prepared::Run { loaded, lead, partner } => {
            let host = scripts.host.clone();
            let outcome = tokio::task::spawn_blocking(move || run_share_hook(&host, &loaded, &lead, &partner))
                .await
                .map_err(Error::internal)?;
            match outcome {
                Ok(Some(payload)) => Decision::Share(payload),
                Ok(None) => Decision::Withhold("the share hook withheld it".to_owned()),
                Err(reason) => {
                    tracing::error!(lead = %claim.lead_id, error = %reason, "share hook failed: lead withheld");
                    Decision::Withhold(reason)
                }
            }
        }
    };
    db.write(move |conn| record_share(conn, &claim, decision)).await
}

fn prepare_share(conn: &mut DbConnection, scripts: &Scripts, lead_id: &str) -> Result<Prepared> {
    let Some(row) = repo::find_lead_by_id(conn, lead_id)? else {
        return Ok(Prepared::Gone);
    };
    let Some(contact_id) = row.contact_id.filter(|_| row.status == LeadStatus::Queued.as_str()) else {
        return Ok(Prepared::Gone);
    };
    let Some(partner) = repo::find_partner(conn, &row.partner_id)? else {
        return Ok(Prepared::Withhold("the partner no longer exists".to_owned()));
    };
    if partner.status != PartnerStatus::Active.as_str() {
        return Ok(Prepared::Withhold("the partner was made inactive before the lead was shared".to_owned()));
    }
    let Some(contact) = contacts::find_contact(conn, &contact_id)? else {
        return Ok(Prepared::Withhold("the contact no longer exists".to_owned()));
    };
    let consents = load_contact_consents(conn, &contact_id)?;
    let purpose = Purpose::Partner(partner.id.clone());
    if !consents.current.iter().any(|c| c.purpose == purpose && c.status == ConsentStatus::Active) {
        return Ok(Prepared::Withhold("the person's consent to this partner is no longer active".to_owned()));
    }
    let grant = consents.events.iter().rev().find(|e| e.purpose == purpose && e.action == ConsentAction::Granted);
    let confirmation =
        consents.events.iter().rev().find(|e| e.purpose == purpose && e.action == ConsentAction::Confirmed);
    // The partners the person saw beside this one, as the form showed them (the snapshot
    // the consent keeps as its proof): what a partner needs to prove the consent it uses.
    let partners_shown = grant
        .and_then(|e| e.evidence.proof.as_deref())
        .and_then(|proof| serde_json::from_str::<Value>(proof).ok())
        .and_then(|proof| proof.get("partners_shown").cloned())
        .unwrap_or_else(|| json!([]));
    let lead = json!({
        "email": contact.email.as_str(),
        "company": contact.company,
        "country": contact.country.map(|c| c.as_str().to_owned()),
        "attributes": contact.attributes,
        "tags": contact.tags.iter().map(|t| t.as_str().to_owned()).collect::<Vec<_>>(),
        "consent": {
            "purpose": purpose.to_string(),
            "text": grant.and_then(|e| e.evidence.consent_text.clone()),
            "granted_at": grant.map(|e| e.occurred_at.to_rfc3339()),
            "confirmed_at": confirmation.map(|e| e.occurred_at.to_rfc3339()),
            "double_opt_in": confirmation.is_some(),
            "form_id": grant.and_then(|e| e.evidence.form_id.clone()),
            "form_version": grant.and_then(|e| e.evidence.form_version),
            "source_url": grant.and_then(|e| e.evidence.source_url.clone()),
            "ip": grant.and_then(|e| e.evidence.ip.clone()),
            "user_agent": grant.and_then(|e| e.evidence.user_agent.clone()),
            "partners_shown": partners_shown,
        },
    });
    let plugin = partner.share_plugin.clone().unwrap_or_else(|| DEFAULT_PLUGIN.to_owned());
    let loaded = match scripts.load_in(conn, &plugin) {
        Ok(loaded) => loaded,
        Err(error) => return Ok(Prepared::Withhold(format!("script {plugin}: {error}"))),
    };
    let partner = json!({"id": partner.id, "name": partner.name, "legal_name": partner.legal_name});
    Ok(Prepared::Run { loaded, lead, partner })
}

/// Writes what the hook decided, if the lead is still queued and held by this claim
/// (another instance that took it after the lease ran out records instead: never both).
fn record_share(conn: &mut DbConnection, claim: &ShareClaim, decision: Decision) -> Result<()> {
    let Some(mut lead) = repo::find_lead_by_id(conn, &claim.lead_id)? else {
        return Ok(());
    };
    if lead.status != LeadStatus::Queued.as_str() || lead.lease_until != Some(claim.lease_until) {
        return Ok(());
    }
    let (status, payload) = match decision {
        Decision::Share(payload) => (LeadStatus::Shared, payload),
        Decision::Withhold(reason) => (LeadStatus::Withheld, json!({"reason": reason})),
    };
    lead.status = status.as_str().to_owned();
    lead.payload = payload.to_string();
    lead.lease_until = None;
    lead.updated_at = storage::now();
    repo::update_lead(conn, &lead)?;
    if status == LeadStatus::Shared
        && let Some(partner) = repo::find_partner(conn, &lead.partner_id)?
    {
        emit_to_partner(conn, &partner, EventType::LeadShared, &lead.id, json!({"lead_id": lead.id, "lead": payload}))?;
    }
    Ok(())
}

/// Runs `share(lead, partner)`: `Ok(Some(map))` to share, `Ok(None)` to withhold,
/// `Err(reason)` when the script failed or answered something other than a map.
fn run_share_hook(
    host: &crate::plugins::PluginHost,
    loaded: &Script,
    lead: &Value,
    partner: &Value,
) -> std::result::Result<Option<Value>, String> {
    let plugin = loaded.name();
    let answer = loaded.call(host, "share", &[lead.clone(), partner.clone()]).map_err(|e| e.describe())?;
    let Some((answer, _)) = answer else {
        return Err(format!("script {plugin}: defines no share(lead, partner)"));
    };
    if answer.is_nothing() {
        return Ok(None);
    }
    match answer.to_json() {
        Some(Value::Object(map)) => Ok(Some(Value::Object(map))),
        _ => Err(format!("script {plugin}: share must answer a map of the fields to send, or () to withhold")),
    }
}

/// A lead exchanged with a partner.
#[derive(Debug, Clone)]
pub struct Lead {
    pub id: LeadId,
    pub direction: LeadDirection,
    pub partner_lead_id: Option<String>,
    pub status: LeadStatus,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Lead {
    /// The lead as its partner may see it: of a lead it sent, only that it was received
    /// (and when), so that its answers are the same for an address we accepted, one that
    /// had opted out and one already subscribed. Admins see the real status.
    fn for_partner(self) -> Self {
        match self.direction {
            LeadDirection::Inbound => Lead { status: LeadStatus::Received, updated_at: self.created_at, ..self },
            LeadDirection::Outbound => self,
        }
    }
}

/// Who looks at a partner's leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadAudience {
    /// Everything, as it stands: leads queued or withheld too, and what became of leads
    /// received.
    Admin,
    /// The partner itself: the leads it was given, and of those it sent, that they arrived.
    Partner,
}

/// Outbound leads a partner never sees: not (yet) shared with it.
const UNSEEN_BY_PARTNER: [LeadStatus; 2] = [LeadStatus::Queued, LeadStatus::Withheld];

fn lead(row: LeadRow) -> Result<Lead> {
    Ok(Lead {
        id: storage::models::parse_id("lead id", &row.id)?,
        direction: row.direction.parse().map_err(|_| storage::models::corrupt("lead direction", &row.direction))?,
        partner_lead_id: row.partner_lead_id,
        status: row.status.parse().map_err(|_| storage::models::corrupt("lead status", &row.status))?,
        payload: serde_json::from_str(&row.payload).unwrap_or(Value::Null),
        created_at: utc(row.created_at),
        updated_at: utc(row.updated_at),
    })
}

/// The leads exchanged with a partner in one direction, a page at a time, as `audience`
/// may see them.
pub async fn list_leads(
    db: &Db,
    partner_id: PartnerId,
    direction: LeadDirection,
    audience: LeadAudience,
    page: PageRequest,
) -> Result<Page<Lead>> {
    db.read(move |conn| {
        let hidden: Vec<&str> = match (audience, direction) {
            (LeadAudience::Partner, LeadDirection::Outbound) => UNSEEN_BY_PARTNER.iter().map(|s| s.as_str()).collect(),
            _ => Vec::new(),
        };
        let rows = repo::list_partner_leads(
            conn,
            &partner_id.to_string(),
            direction.as_str(),
            &hidden,
            page.after.as_deref(),
            page.fetch_limit(),
        )?
        .into_iter()
        .map(|row| {
            let lead = lead(row)?;
            Ok(if audience == LeadAudience::Partner { lead.for_partner() } else { lead })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(page.page(rows, |l| l.id.to_string()))
    })
    .await
}

/// A lead exchanged with this partner (either way), as the partner sees it; another
/// partner's, or one not shared with it, is not found.
pub async fn find_lead(db: &Db, partner_id: PartnerId, id: LeadId) -> Result<Lead> {
    db.read(move |conn| {
        let not_found = || Error::NotFound(format!("there is no lead {id}"));
        let lead = lead(repo::find_lead(conn, &partner_id.to_string(), &id.to_string())?.ok_or_else(not_found)?)?;
        if lead.direction == LeadDirection::Outbound && UNSEEN_BY_PARTNER.contains(&lead.status) {
            return Err(not_found());
        }
        Ok(lead.for_partner())
    })
    .await
}

/// A lead a partner sends, with its proof of consent.
#[derive(Debug, Clone)]
pub struct InboundLead {
    pub partner_lead_id: String,
    pub email: String,
    pub company: Option<String>,
    pub country: Option<String>,
    pub attributes: Map<String, Value>,
    pub consent_text: String,
    pub collected_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub source_url: Option<String>,
    pub method: String,
    pub partners_shown: Vec<String>,
}

/// A lead checked: every fault named at once.
struct CheckedLead {
    email: Email,
    company: Option<String>,
    country: Option<Country>,
    collected_at: DateTime<Utc>,
    /// The evidence as parsed: the IP in its canonical form.
    ip: Option<String>,
    user_agent: Option<String>,
    source_url: Option<String>,
}

fn check_lead(lead: &InboundLead) -> Result<CheckedLead> {
    let mut errors = FieldErrors::new();
    errors.check("lead_id", parse_required_text(&lead.partner_lead_id, 200).map(|_| ()));
    let email = errors.check("email", Email::parse(lead.email.trim()).map_err(|e| e.to_string()));
    let company = match &lead.company {
        Some(company) => errors.check("company", parse_short_text(company, 200)).map(Some),
        None => Some(None),
    };
    let country = match &lead.country {
        Some(country) => errors.check("country", Country::parse(country).map_err(|e| e.to_string())).map(Some),
        None => Some(None),
    };
    for (name, value) in &lead.attributes {
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            errors.push(format!("attributes.{name}"), "attribute names are 1 to 64 characters of a-z, 0-9 and _");
        } else if value.is_object() {
            errors.push(format!("attributes.{name}"), "must be a string, number, boolean or array");
        }
    }
    errors.check("consent.text", parse_required_text(&lead.consent_text, 5000).map(|_| ()));
    errors.check("consent.method", parse_required_text(&lead.method, 100).map(|_| ()));
    let collected_at = errors.check("consent.collected_at", evidence::parse_past_time(&lead.collected_at, Utc::now()));
    let ip = match &lead.ip {
        Some(ip) => errors.check("consent.ip", evidence::parse_ip(ip)).map(|ip| Some(ip.to_string())),
        None => Some(None),
    };
    let user_agent = match &lead.user_agent {
        Some(agent) => errors.check("consent.user_agent", evidence::parse_user_agent(agent)).map(Some),
        None => Some(None),
    };
    let source_url = match &lead.source_url {
        Some(url) => errors.check("consent.source_url", evidence::parse_source_url(url)).map(|u| Some(u.into_string())),
        None => Some(None),
    };
    for (i, name) in lead.partners_shown.iter().enumerate() {
        errors.check(&format!("consent.partners_shown[{i}]"), parse_short_text(name, 200).map(|_| ()));
    }
    errors.finish(|| {
        Some(CheckedLead {
            email: email?,
            company: company?,
            country: country?,
            collected_at: collected_at?,
            ip: ip?,
            user_agent: user_agent?,
            source_url: source_url?,
        })
    })
}

/// How a received lead was taken.
#[derive(Debug, Clone)]
pub struct Received {
    /// As the partner sees it: `received`, whatever became of it (admins see that).
    pub lead: Lead,
    /// `false` when the same lead id had been sent before (nothing changed).
    pub created: bool,
}

/// Records a partner's lead. Idempotent by the partner's lead id. The partner's
/// `accept_lead` hook may map it or refuse it (422 with its reason); it runs between a read
/// and the write, never inside a write transaction. A suppressed address is
/// never reactivated: the lead is `declined` and nothing about the person changes. With
/// `accept` the lead's lists are granted on the `partner` basis with the proof; with
/// `reconfirm` they wait for the person to confirm a mail that says where the address came from.
pub async fn receive_lead(services: &Services, partner: Partner, lead: InboundLead) -> Result<Received> {
    let Services { db, keys, signup: config, scripts, .. } = services;
    // Checked before anything is read, and again after the hook mapped it.
    check_lead(&lead)?;
    let partner_id = partner.id.to_string();
    // Read: a lead sent before, the partner as it is now and its plugin.
    let (theirs, for_read) = (lead.partner_lead_id.clone(), scripts.clone());
    let known = db
        .read(move |conn| {
            if let Some(existing) = repo::find_inbound_lead(conn, &partner_id, &theirs)? {
                return Ok(Err(existing));
            }
            let row = repo::find_partner(conn, &partner_id)?.ok_or_else(|| not_found(partner.id))?;
            let plugin = row.share_plugin.clone().unwrap_or_else(|| DEFAULT_PLUGIN.to_owned());
            Ok(Ok((for_read.load_in(conn, &plugin)?, row)))
        })
        .await?;
    let (loaded, row) = match known {
        Err(existing) => return Ok(Received { lead: self::lead(existing)?.for_partner(), created: false }),
        Ok(found) => found,
    };
    // Work: the hook runs with no transaction open.
    let host = scripts.host.clone();
    let lead = tokio::task::spawn_blocking(move || run_accept_hook(&host, &loaded, &row, lead))
        .await
        .map_err(Error::internal)??;
    // Record.
    let keys = keys.clone();
    let config = config.clone();
    let received = db
        .write(move |conn| {
            let partner_id = partner.id.to_string();
            // Sent twice at once: the first one written is the lead.
            if let Some(existing) = repo::find_inbound_lead(conn, &partner_id, &lead.partner_lead_id)? {
                return Ok(Received { lead: self::lead(existing)?.for_partner(), created: false });
            }
            let row = repo::find_partner(conn, &partner_id)?.ok_or_else(|| not_found(partner.id))?;
            // What the hook answered is checked like what the partner sent.
            let checked = check_lead(&lead)?;
            let now = storage::now();
            let proof = json!({
                "partner_id": partner_id,
                "partner_lead_id": lead.partner_lead_id,
                "collected_at": checked.collected_at.to_rfc3339(),
                "method": lead.method,
                "partners_shown": lead.partners_shown,
            });
            let suppressed = ledger::is_suppressed(conn, &keys.email_hash(&checked.email.key()))?;
            let mut lead_row = LeadRow {
                id: LeadId::new().to_string(),
                partner_id: partner_id.clone(),
                contact_id: None,
                direction: LeadDirection::Inbound.as_str().to_owned(),
                partner_lead_id: Some(lead.partner_lead_id.clone()),
                status: LeadStatus::Declined.as_str().to_owned(),
                payload: proof.to_string(),
                created_at: now,
                updated_at: now,
                lease_until: None,
            };
            if suppressed {
                repo::insert_lead(conn, &lead_row)?;
                return Ok(Received { lead: self::lead(lead_row)?.for_partner(), created: true });
            }
            let contact_id = upsert_lead_contact(conn, &checked, &lead, now)?;
            lead_row.contact_id = Some(contact_id.clone());
            let reconfirm = partner.inbound_policy == InboundPolicy::Reconfirm;
            let current = load_contact_consents(conn, &contact_id)?.current;
            let mut pending = Vec::new();
            for list in &partner.inbound_lists {
                let purpose = Purpose::List(*list);
                if current.iter().any(|c| c.purpose == purpose && c.status != ConsentStatus::Pending) {
                    // Never replace a consent already recorded, nor undo a withdrawal.
                    continue;
                }
                apply_event(
                    conn,
                    NewConsentEvent {
                        contact_id: contact_id.clone(),
                        email_key: None,
                        purpose: purpose.clone(),
                        action: ConsentAction::Granted,
                        basis: ConsentBasis::Partner,
                        requires_confirmation: reconfirm,
                        evidence: Evidence {
                            method: "partner".to_owned(),
                            consent_text: Some(lead.consent_text.clone()),
                            ip: checked.ip.clone(),
                            user_agent: checked.user_agent.clone(),
                            source_url: checked.source_url.clone(),
                            proof: Some(proof.to_string()),
                            ..Evidence::default()
                        },
                        actor: Actor::Partner(partner.id).to_string(),
                    },
                )?;
                pending.push(purpose);
            }
            lead_row.status = if reconfirm && !pending.is_empty() {
                send_reconfirmation(conn, &keys, &config, &row, &checked, &contact_id, &pending)?;
                LeadStatus::PendingConfirmation
            } else {
                LeadStatus::Accepted
            }
            .as_str()
            .to_owned();
            repo::insert_lead(conn, &lead_row)?;
            Ok(Received { lead: self::lead(lead_row)?.for_partner(), created: true })
        })
        .await?;
    services.wake.mail.notify_one();
    Ok(received)
}

/// `accept_lead(lead, partner)`: answers the lead (possibly mapped), or throws a reason.
fn run_accept_hook(
    host: &crate::plugins::PluginHost,
    loaded: &Script,
    partner: &PartnerRow,
    lead: InboundLead,
) -> Result<InboundLead> {
    let plugin = loaded.name();
    let as_json = json!({
        "lead_id": lead.partner_lead_id,
        "email": lead.email,
        "company": lead.company,
        "country": lead.country,
        "attributes": lead.attributes,
    });
    let arguments = [as_json, json!({"id": partner.id, "name": partner.name})];
    let answer = match loaded.call(host, "accept_lead", &arguments) {
        Ok(Some((answer, _))) => answer,
        Ok(None) => return Ok(lead),
        Err(ScriptError { thrown: Some(reason), .. }) => {
            return Err(Error::Validation(vec![FieldError::new("lead", format!("refused: {reason}"))]));
        }
        Err(error) => return Err(script_rejected(error)),
    };
    let Some(Value::Object(mapped)) = answer.to_json() else {
        return Err(Error::internal(format!("script {plugin}: accept_lead must answer the lead map")));
    };
    let text = |key: &str| mapped.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(InboundLead {
        email: text("email").unwrap_or(lead.email),
        company: text("company").or(lead.company),
        country: text("country").or(lead.country),
        attributes: mapped.get("attributes").and_then(Value::as_object).cloned().unwrap_or(lead.attributes),
        ..lead
    })
}

fn upsert_lead_contact(
    conn: &mut DbConnection,
    checked: &CheckedLead,
    lead: &InboundLead,
    now: chrono::NaiveDateTime,
) -> Result<String> {
    match contacts::find_contact_row_by_email_key(conn, &checked.email.key())? {
        Some(mut row) => {
            // A partner's data fills what we do not know; it never overwrites.
            let mut attributes: Map<String, Value> = serde_json::from_str(&row.attributes).unwrap_or_default();
            for (name, value) in &lead.attributes {
                attributes.entry(name.clone()).or_insert_with(|| value.clone());
            }
            row.attributes = Value::Object(attributes).to_string();
            row.company = row.company.or(checked.company.clone());
            row.country = row.country.or(checked.country.as_ref().map(|c| c.as_str().to_owned()));
            row.updated_at = now;
            contacts::update_contact(conn, &row)?;
            webhooks::emit_contact(conn, EventType::ContactUpdated, &row.id)?;
            Ok(row.id)
        }
        None => {
            let listeners = webhooks::Listeners::read(conn)?;
            super::contacts::insert_new_in(
                conn,
                &checked.email,
                &lead.attributes,
                checked.company.clone(),
                checked.country.as_ref(),
                now,
                &listeners,
            )
        }
    }
}

/// The double opt-in mail for a partner's lead: it names the partner, where and when the
/// address was given, and the lists, so that the person knows where we got it.
fn send_reconfirmation(
    conn: &mut DbConnection,
    keys: &Keys,
    config: &SignupConfig,
    partner: &PartnerRow,
    checked: &CheckedLead,
    contact_id: &str,
    pending: &[Purpose],
) -> Result<()> {
    confirmations::request_confirmation(
        conn,
        keys,
        config,
        contact_id,
        None,
        pending,
        &checked.email.key(),
        |conn, confirm_url| {
            let mut names = Vec::new();
            for purpose in pending {
                if let Some(id) = purpose.list_id()
                    && let Some(list) = lists::find_list(conn, &id.to_string())?
                {
                    names.push(list.name);
                }
            }
            let text = format!(
                "You gave your e-mail address to {} ({}) on {} and agreed to hear from us.\n\n\
             We will send you: {}.\n\n\
             If that was you and you want it, confirm here:\n{confirm_url}\n\n\
             If not, ignore this message: nothing is sent to you unless you confirm, and we keep your address \
             for no longer than it takes to let the request expire.\n",
                partner.legal_name,
                partner.name,
                checked.collected_at.format("%Y-%m-%d"),
                names.join(", "),
            );
            Ok(crate::mail::Draft {
                from: config.mail_from.clone(),
                to: checked.email.to_string(),
                subject: format!("Please confirm: your address came to us from {}", partner.name),
                text,
                headers: vec![("Auto-Submitted".to_owned(), "auto-generated".to_owned())],
                ..crate::mail::Draft::default()
            })
        },
    )
}

/// After a confirmation: the contact's inbound leads waiting for it are accepted.
pub fn mark_inbound_confirmed(conn: &mut DbConnection, contact_id: &str) -> Result<()> {
    for mut lead in repo::list_contact_leads(conn, contact_id, LeadDirection::Inbound.as_str())? {
        if lead.status == LeadStatus::PendingConfirmation.as_str() {
            lead.status = LeadStatus::Accepted.as_str().to_owned();
            lead.updated_at = storage::now();
            repo::update_lead(conn, &lead)?;
        }
    }
    Ok(())
}

/// The partner events (shares and withdrawals) for a partner to pull, oldest first.
pub async fn list_events(db: &Db, partner_id: PartnerId, page: PageRequest) -> Result<Page<Value>> {
    db.read(move |conn| {
        let target = format!("partner:{partner_id}");
        let rows = crate::storage::webhooks::list_deliveries(
            conn,
            Some(&target),
            None,
            None,
            page.after.as_deref(),
            page.fetch_limit(),
        )?;
        let page = page.page(rows, |row| row.id.clone());
        let items = page.items.iter().map(|row| serde_json::from_str(&row.payload).unwrap_or(Value::Null)).collect();
        Ok(Page { items, next_cursor: page.next_cursor })
    })
    .await
}
