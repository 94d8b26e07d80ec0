//! Leads shared with partners a person chose: queued with the signup or the confirmation,
//! shaped by the partner's `share` hook outside any transaction, delivered once.

use std::sync::Arc;

use chrono::{NaiveDateTime, TimeDelta};
use serde_json::{Value, json};

use super::DEFAULT_PLUGIN;
use crate::domain::LeadId;
use crate::domain::consent::{ConsentAction, ConsentStatus, Purpose};
use crate::domain::partner::{EventType, LeadDirection, LeadStatus, PartnerStatus};
use crate::domain::{ContactId, PartnerId};
use crate::error::{Error, Result};
use crate::plugins::Script;
use crate::services::consent::load_contact_consents;
use crate::services::plugins::Scripts;
use crate::services::webhooks::emit_to_partner;
use crate::storage;
use crate::storage::partners::LeadRow;
use crate::storage::{Db, DbConnection, contacts, partners as repo};

/// How long the one running a queued lead's `share` hook holds it: longer than a hook may
/// run (the script deadline) with the read and the write around it. A crash leaves the
/// lead to be taken again once this has passed.
pub(super) const SHARE_LEASE: TimeDelta = TimeDelta::seconds(60);

/// Queued leads one worker takes at once.
pub(super) const SHARE_BATCH: i64 = 32;

/// A queued lead held, until its lease runs out, by the one that will run its `share` hook.
#[derive(Debug, Clone)]
pub struct ShareClaim {
    pub(super) lead_id: LeadId,
    pub(super) lease_until: NaiveDateTime,
}

/// Queues the sharing of a contact with a partner whose consent just became active (a
/// single opt-in signup, or the confirmation of a double opt-in), in the caller's
/// transaction: a `queued` lead is written with the consent, or not at all, so that a lead
/// is never lost. The partner's hook runs after the commit ([`share_claimed`], by the
/// caller, which holds the lead; else [`ShareWorker`] once the lease has run out), because
/// a script must never run inside a write transaction. `None`: nothing to share (the
/// partner is gone or inactive, or the lead is already shared or queued).
pub fn queue_share_in(
    conn: &mut DbConnection,
    contact_id: ContactId,
    partner_id: PartnerId,
) -> Result<Option<ShareClaim>> {
    let Some(partner) = repo::find_partner(conn, partner_id)? else {
        return Ok(None);
    };
    if partner.status != PartnerStatus::Active {
        return Ok(None);
    }
    let taken = [LeadStatus::Shared.as_str(), LeadStatus::Queued.as_str()];
    let already = repo::list_contact_leads(conn, contact_id, LeadDirection::Outbound)?
        .into_iter()
        .any(|lead| lead.partner_id == partner.id && taken.contains(&lead.status.as_str()));
    if already {
        return Ok(None);
    }
    let now = storage::now();
    let lease_until = now + SHARE_LEASE;
    let lead_id = LeadId::new();
    repo::insert_lead(
        conn,
        &LeadRow {
            id: lead_id,
            partner_id: partner.id,
            contact_id: Some(contact_id.to_owned()),
            direction: LeadDirection::Outbound,
            partner_lead_id: None,
            status: LeadStatus::Queued,
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
    pub fn queue_in(&self, conn: &mut DbConnection, contact_id: ContactId, partner_id: PartnerId) -> Result<()> {
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
        let lead_id = claim.lead_id;
        if let Err(error) = share_one(db, scripts, claim).await {
            tracing::warn!(lead = %lead_id, error = %error, "sharing a lead failed; it will be taken again");
        }
    }
}

/// Takes the queued leads nobody holds (the request that queued them ended first) and
/// shares them; answers how many it took.
pub async fn share_due(db: &Db, scripts: &Scripts) -> Result<usize> {
    let now = storage::now();
    let queued = LeadStatus::Queued;
    let due = db.read(move |conn| Ok(repo::list_queued_due(conn, queued, now, SHARE_BATCH)?)).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let until = now + SHARE_LEASE;
    let claims = db
        .write(move |conn| {
            let mut claims = Vec::new();
            for id in due {
                if repo::lease_queued(conn, id, queued, now, until)? {
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
    pub(super) db: Db,
    pub(super) scripts: Scripts,
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
pub(super) enum Prepared {
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
pub(super) enum Decision {
    Share(Value),
    Withhold(String),
}

/// Claim (held), work, record: the lead and what the hook needs are read, the hook runs
/// with no connection held, and the outcome is written only by the holder of the lease.
pub(super) async fn share_one(db: &Db, scripts: &Scripts, claim: ShareClaim) -> Result<()> {
    let lead_id = claim.lead_id;
    let for_read = scripts.clone();
    let prepared = db.read(move |conn| prepare_share(conn, &for_read, lead_id)).await?;
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

pub(super) fn prepare_share(conn: &mut DbConnection, scripts: &Scripts, lead_id: LeadId) -> Result<Prepared> {
    let Some(row) = repo::find_lead_by_id(conn, lead_id)? else {
        return Ok(Prepared::Gone);
    };
    let Some(contact_id) = row.contact_id.filter(|_| row.status == LeadStatus::Queued) else {
        return Ok(Prepared::Gone);
    };
    let Some(partner) = repo::find_partner(conn, row.partner_id)? else {
        return Ok(Prepared::Withhold("the partner no longer exists".to_owned()));
    };
    if partner.status != PartnerStatus::Active {
        return Ok(Prepared::Withhold("the partner was made inactive before the lead was shared".to_owned()));
    }
    let Some(contact) = contacts::find_contact(conn, contact_id)? else {
        return Ok(Prepared::Withhold("the contact no longer exists".to_owned()));
    };
    let consents = load_contact_consents(conn, contact_id)?;
    let purpose = Purpose::Partner(partner.id.to_string());
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
            "form_id": grant.and_then(|e| e.evidence.form_id),
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
pub(super) fn record_share(conn: &mut DbConnection, claim: &ShareClaim, decision: Decision) -> Result<()> {
    let Some(mut lead) = repo::find_lead_by_id(conn, claim.lead_id)? else {
        return Ok(());
    };
    if lead.status != LeadStatus::Queued || lead.lease_until != Some(claim.lease_until) {
        return Ok(());
    }
    let (status, payload) = match decision {
        Decision::Share(payload) => (LeadStatus::Shared, payload),
        Decision::Withhold(reason) => (LeadStatus::Withheld, json!({"reason": reason})),
    };
    lead.status = status;
    lead.payload = payload.to_string();
    lead.lease_until = None;
    lead.updated_at = storage::now();
    repo::update_lead(conn, &lead)?;
    if status == LeadStatus::Shared
        && let Some(partner) = repo::find_partner(conn, lead.partner_id)?
    {
        emit_to_partner(conn, &partner, EventType::LeadShared, lead.id, json!({"lead_id": lead.id, "lead": payload}))?;
    }
    Ok(())
}

/// Runs `share(lead, partner)`: `Ok(Some(map))` to share, `Ok(None)` to withhold,
/// `Err(reason)` when the script failed or answered something other than a map.
pub(super) fn run_share_hook(
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
