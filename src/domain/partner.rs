//! Co-registration partners and the events consento delivers to partners and
//! integrators: their kinds, and the signature a receiver checks.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::consent::{hex, string_enum};

string_enum! {
    /// What happens to a lead a partner sends.
    InboundPolicy {
        /// Recorded at once on the `partner` basis, with the partner's proof.
        Accept = "accept",
        /// Counted only once the person confirms a double opt-in mail that says where the
        /// address came from.
        Reconfirm = "reconfirm",
    }
}

string_enum! {
    PartnerStatus {
        /// Shown on forms, receives leads, may send leads.
        Active = "active",
        /// Hidden from forms; its key is refused; nothing more is shared with it, but
        /// withdrawals still reach it.
        Inactive = "inactive",
    }
}

string_enum! {
    /// Which way a lead went.
    LeadDirection {
        Outbound = "outbound",
        Inbound = "inbound",
    }
}

string_enum! {
    /// Where a lead stands.
    LeadStatus {
        /// To be shared (outbound): written with the consent that allows it; the partner's
        /// `share` hook runs after that commit and records `shared` or `withheld`. Partners
        /// do not see it.
        Queued = "queued",
        /// Shared with the partner (outbound).
        Shared = "shared",
        /// The person withdrew (outbound: the partner was told).
        Withdrawn = "withdrawn",
        /// Recorded on the partner basis (inbound, `accept`).
        Accepted = "accepted",
        /// Waiting for the person's confirmation (inbound, `reconfirm`).
        PendingConfirmation = "pending_confirmation",
        /// Not recorded: the address is suppressed (inbound).
        Declined = "declined",
        /// Not shared: the partner's share hook withheld it or failed, or the person withdrew
        /// before it was shared (outbound; the payload says why).
        Withheld = "withheld",
        /// What a partner is told of every lead it sent (inbound), whatever became of it:
        /// whether an address was accepted, declined (it had opted out) or already known is
        /// for admins only, or a partner could probe who is on our lists.
        Received = "received",
    }
}

string_enum! {
    /// The events consento delivers.
    EventType {
        ContactCreated = "contact.created",
        ContactUpdated = "contact.updated",
        ContactDeleted = "contact.deleted",
        ConsentGranted = "consent.granted",
        ConsentConfirmed = "consent.confirmed",
        ConsentWithdrawn = "consent.withdrawn",
        FormSubmitted = "form.submitted",
        CampaignSent = "campaign.sent",
        SurveyCompleted = "survey.completed",
        /// A new signed checkpoint of the consent ledger, to keep outside the database.
        ConsentCheckpoint = "consent.checkpoint",
        /// To a partner: a lead it may use (the person chose it).
        LeadShared = "lead.shared",
        /// To a partner: the person withdrew; stop using the lead.
        LeadWithdrawn = "lead.withdrawn",
    }
}

impl EventType {
    /// The events an integrator may subscribe to (lead events go to partners only).
    pub fn is_for_integrators(self) -> bool {
        !matches!(self, EventType::LeadShared | EventType::LeadWithdrawn)
    }
}

string_enum! {
    /// Where a delivery stands.
    DeliveryStatus {
        /// Waiting for its next attempt.
        Pending = "pending",
        Delivered = "delivered",
        /// Every attempt failed; retried only when someone asks.
        Dead = "dead",
        /// For a partner without a webhook: it pulls the event.
        Pull = "pull",
    }
}

/// The name of the signature header of every webhook request.
pub const SIGNATURE_HEADER: &str = "Consento-Signature";

/// How old a signed timestamp a receiver should accept, in seconds.
pub const REPLAY_WINDOW_SECONDS: i64 = 300;

/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>`.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", signature(secret, timestamp, body))
}

pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            hex(&mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length.
        Err(_) => String::new(),
    }
}

/// What a receiver does: the header parses, the timestamp is within the replay window of
/// `now`, and the signature matches (compared in constant time).
pub fn verify_signature(secret: &str, header: &str, body: &[u8], now: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value.to_owned()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return false;
    };
    if (now - timestamp).abs() > REPLAY_WINDOW_SECONDS {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    signatures.iter().any(|candidate| {
        let bytes: Option<Vec<u8>> = (0..candidate.len())
            .step_by(2)
            .map(|i| candidate.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
            .collect();
        bytes.is_some_and(|bytes| {
            bytes.len() == expected.len()
                && bytes.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_within_the_window_and_not_when_anything_changes() {
        let header = signature_header("s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(verify_signature("s3cret", &header, b"{\"a\":1}", 1_700_000_100));
        assert!(!verify_signature("s3cret", &header, b"{\"a\":2}", 1_700_000_100));
        assert!(!verify_signature("other", &header, b"{\"a\":1}", 1_700_000_100));
        assert!(!verify_signature("s3cret", &header, b"{\"a\":1}", 1_700_000_000 + REPLAY_WINDOW_SECONDS + 1));
        assert!(!verify_signature("s3cret", "t=1700000000", b"{\"a\":1}", 1_700_000_000));
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: python3 -c "import hmac,hashlib;
        // print(hmac.new(b'key',b'42.body',hashlib.sha256).hexdigest())"
        assert_eq!(signature("key", 42, b"body"), "b62a8bcafebc3dda9022b563e771f54e72a1eef3fd12e7bd2713899387cc26f8");
    }
}
