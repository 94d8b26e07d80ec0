//! Withdrawals passed on: when a person withdraws consent to share, leaves everything or is
//! erased, each partner that received their lead is told once (`lead.withdrawn`), and a
//! lead not shared yet is withheld.

use chrono::Utc;
use serde_json::{Value, json};

use super::webhooks::emit_to_partner;
use crate::domain::ContactId;
use crate::domain::PartnerId;
use crate::domain::partner::{EventType, LeadDirection, LeadStatus};
use crate::error::Result;
use crate::storage::partners as repo;
use crate::storage::{self, DbConnection};

/// Tells partners that received a contact's lead that the person withdrew (`partner`:
/// only that one; `None`: every partner, as on unsubscribing from everything or erasure),
/// each once, with `reason`. A lead still queued is not shared at all (the partner never
/// had it, so it is not told either).
pub fn relay_withdrawal(
    conn: &mut DbConnection,
    contact_id: ContactId,
    partner: Option<PartnerId>,
    reason: &str,
) -> Result<()> {
    let leads = repo::list_contact_leads(conn, contact_id, LeadDirection::Outbound)?;
    for mut lead in leads {
        if partner.is_some_and(|p| p != lead.partner_id) {
            continue;
        }
        if lead.status == LeadStatus::Queued {
            lead.status = LeadStatus::Withheld;
            lead.payload =
                json!({"reason": format!("the person withdrew before it was shared ({reason})")}).to_string();
            lead.lease_until = None;
            lead.updated_at = storage::now();
            repo::update_lead(conn, &lead)?;
            continue;
        }
        if lead.status != LeadStatus::Shared {
            continue;
        }
        let Some(row) = repo::find_partner(conn, lead.partner_id)? else {
            continue;
        };
        lead.status = LeadStatus::Withdrawn;
        lead.updated_at = storage::now();
        repo::update_lead(conn, &lead)?;
        let email = serde_json::from_str::<Value>(&lead.payload).ok().and_then(|p| p.get("email").cloned());
        emit_to_partner(
            conn,
            &row,
            EventType::LeadWithdrawn,
            lead.id,
            json!({"lead_id": lead.id, "email": email, "reason": reason, "withdrawn_at": Utc::now().to_rfc3339()}),
        )?;
    }
    Ok(())
}
