//! The leads exchanged with partners, as admins and partners read them, and the partner
//! events a partner pulls.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::partner::{LeadDirection, LeadStatus};
use crate::domain::{LeadId, PartnerId};
use crate::error::{Error, Result};
use crate::services::pagination::{Page, PageRequest};
use crate::storage::models::utc;
use crate::storage::partners::LeadRow;
use crate::storage::{Db, partners as repo};

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
    pub(super) fn for_partner(self) -> Self {
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
pub(super) const UNSEEN_BY_PARTNER: [LeadStatus; 2] = [LeadStatus::Queued, LeadStatus::Withheld];

pub(super) fn lead(row: LeadRow) -> Result<Lead> {
    Ok(Lead {
        id: row.id,
        direction: row.direction,
        partner_lead_id: row.partner_lead_id,
        status: row.status,
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
            partner_id,
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
        let lead = lead(repo::find_lead(conn, partner_id, id)?.ok_or_else(not_found)?)?;
        if lead.direction == LeadDirection::Outbound && UNSEEN_BY_PARTNER.contains(&lead.status) {
            return Err(not_found());
        }
        Ok(lead.for_partner())
    })
    .await
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
        let page = page.page(rows, |row| row.id.to_string());
        let items = page.items.iter().map(|row| serde_json::from_str(&row.payload).unwrap_or(Value::Null)).collect();
        Ok(Page { items, next_cursor: page.next_cursor })
    })
    .await
}
