//! Bounces and complaints reported by the mail provider, and churn over time.
//!
//! A hard bounce or a complaint suppresses the address at once and withdraws every
//! consent in the ledger (actor `system`, method `hard_bounce` or `complaint`); soft
//! bounces do so once an address has had `soft_bounce_limit` of them within 30 days. A
//! complaint also checks its campaign's complaint rate and pauses the campaign above its
//! threshold.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use serde::Serialize;

use super::keys::Keys;
use crate::domain::CampaignId;
use crate::domain::consent::{Actor, Evidence};
use crate::domain::{CampaignStatus, RecipientStatus};
use crate::domain::{ContactStatus, Email};
use crate::error::{Error, Result};
use crate::storage::campaigns::{self as repo, DeliveryEventRow, Outcome};
use crate::storage::{self, Db, DbConnection, contacts};

crate::domain::consent::string_enum! {
    /// What the provider reports.
    NoticeKind {
        HardBounce = "hard_bounce",
        SoftBounce = "soft_bounce",
        Complaint = "complaint",
    }
}

/// One notification about one address.
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: NoticeKind,
    pub email: Email,
    /// The Message-ID of the message it is about, when the provider gives it.
    pub message_id: Option<String>,
    pub detail: String,
}

/// What a notification did.
#[derive(Debug, Clone, Serialize)]
pub struct NoticeOutcome {
    pub email: String,
    pub kind: String,
    /// The campaign the message belonged to, when known.
    pub campaign_id: Option<CampaignId>,
    pub suppressed: bool,
    /// Set when the campaign paused itself on this complaint.
    pub campaign_paused: bool,
}

/// Records notifications, each in its own transaction.
pub async fn record(db: &Db, keys: &Keys, soft_limit: u32, notices: Vec<Notice>) -> Result<Vec<NoticeOutcome>> {
    let mut outcomes = Vec::with_capacity(notices.len());
    for notice in notices {
        let keys = keys.clone();
        outcomes.push(db.write(move |conn| record_in(conn, &keys, soft_limit, notice)).await?);
    }
    Ok(outcomes)
}

fn record_in(conn: &mut DbConnection, keys: &Keys, soft_limit: u32, notice: Notice) -> Result<NoticeOutcome> {
    let now = storage::now();
    let hash = keys.email_hash(&notice.email.key());
    let by_id = notice
        .message_id
        .as_deref()
        .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'))
        .and_then(|id| id.split('@').next())
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .map(|id| repo::find_recipient(conn, id))
        .transpose()?
        .flatten()
        .filter(|r| r.email.eq_ignore_ascii_case(notice.email.as_str()));
    let recipient = match by_id {
        Some(recipient) => Some(recipient),
        None => repo::find_sent_to(conn, notice.email.as_str())?,
    };
    repo::insert_delivery_event(
        conn,
        &DeliveryEventRow {
            id: uuid::Uuid::now_v7().to_string(),
            kind: notice.kind.as_str().to_owned(),
            email_hash: hash.clone(),
            campaign_id: recipient.as_ref().map(|r| r.campaign_id),
            recipient_id: recipient.as_ref().map(|r| r.id.clone()),
            detail: notice.detail.chars().take(1000).collect(),
            occurred_at: now,
        },
    )?;
    if let Some(recipient) = &recipient {
        let outcome = if notice.kind == NoticeKind::Complaint { Outcome::Complained } else { Outcome::Bounced };
        repo::mark_outcome(conn, &recipient.id, outcome, now)?;
    }
    let suppress = match notice.kind {
        NoticeKind::HardBounce | NoticeKind::Complaint => true,
        NoticeKind::SoftBounce => {
            repo::count_delivery_events(conn, &hash, NoticeKind::SoftBounce.as_str(), now - TimeDelta::days(30))?
                >= i64::from(soft_limit.max(1))
        }
    };
    if suppress {
        let status =
            if notice.kind == NoticeKind::Complaint { ContactStatus::Complained } else { ContactStatus::Bounced };
        let contact = match contacts::find_contact_id_by_email_key(conn, &notice.email.key())? {
            Some(id) => contacts::find_contact(conn, id)?,
            None => None,
        };
        let evidence = Evidence {
            method: notice.kind.as_str().to_owned(),
            source_url: notice.message_id.clone(),
            ..Evidence::default()
        };
        match contact {
            Some(contact) => super::consent::leave_all_in(conn, &hash, &contact, &evidence, &Actor::System, status)?,
            None => storage::consent::insert_suppression(conn, &hash, status.as_str())?,
        }
    }
    let mut campaign_paused = false;
    if notice.kind == NoticeKind::Complaint
        && let Some(recipient) = &recipient
    {
        campaign_paused = pause_on_complaints(conn, recipient.campaign_id, now)?;
    }
    Ok(NoticeOutcome {
        email: notice.email.to_string(),
        kind: notice.kind.as_str().to_owned(),
        campaign_id: recipient.map(|r| r.campaign_id),
        suppressed: suppress,
        campaign_paused,
    })
}

/// Pauses a campaign whose complaint rate passed its threshold.
fn pause_on_complaints(conn: &mut DbConnection, campaign_id: CampaignId, now: NaiveDateTime) -> Result<bool> {
    let Some(campaign) = repo::find_campaign(conn, campaign_id)? else {
        return Ok(false);
    };
    if campaign.status != CampaignStatus::Sending {
        return Ok(false);
    }
    let sent: i64 = repo::count_by_status_and_reason(conn, campaign_id)?
        .into_iter()
        .filter(|(status, _, _)| *status == RecipientStatus::Sent)
        .map(|(_, _, count)| count)
        .sum();
    let [_, complaints, ..] = repo::count_outcomes(conn, campaign_id)?;
    let rate = if sent > 0 { complaints as f64 / sent as f64 } else { 1.0 };
    if rate <= campaign.complaint_threshold {
        return Ok(false);
    }
    let reason = format!(
        "paused: complaint rate {:.2}% ({complaints} of {sent} sent) is above {:.2}%",
        rate * 100.0,
        campaign.complaint_threshold * 100.0
    );
    tracing::warn!(campaign = %campaign_id, %reason, "campaign paused on complaints");
    Ok(repo::transition(conn, campaign_id, &[CampaignStatus::Sending], CampaignStatus::Paused, Some(&reason), now)?)
}

// ---------------------------------------------------------------------------------------
// Churn over time

crate::domain::consent::string_enum! {
    /// The width of a bucket of churn statistics.
    Period {
        Day = "day",
        Week = "week",
        Month = "month",
    }
}

/// One period's churn.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChurnBucket {
    /// First day of the period (UTC).
    pub start: NaiveDate,
    pub sent: i64,
    /// Consents to lists withdrawn by the people themselves.
    pub unsubscribes: i64,
    pub hard_bounces: i64,
    pub soft_bounces: i64,
    pub complaints: i64,
    /// Consents to lists that took effect (granted without confirmation, or confirmed).
    pub subscribed: i64,
    /// Consents to lists withdrawn, for any reason (unsubscribes, bounces, complaints, erasure).
    pub left: i64,
    /// `subscribed - left`.
    pub net_growth: i64,
    pub unsubscribe_rate: f64,
    pub bounce_rate: f64,
    pub complaint_rate: f64,
}

fn bucket_start(period: Period, at: NaiveDateTime) -> NaiveDate {
    let date = at.date();
    match period {
        Period::Day => date,
        Period::Week => date - TimeDelta::days(i64::from(date.weekday().num_days_from_monday())),
        Period::Month => date.with_day(1).unwrap_or(date),
    }
}

/// Churn between two times, by period, oldest first; periods without activity are left out.
pub async fn churn(db: &Db, period: Period, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<ChurnBucket>> {
    if from >= to {
        return Err(Error::field("from", "must be before `to`"));
    }
    let (from, to) = (from.naive_utc(), to.naive_utc());
    db.read(move |conn| {
        let sent_times = repo::sent_between(conn, from, to)?;
        let delivery = repo::delivery_events_between(conn, from, to)?;
        let changes = storage::consent::list_changes_between(conn, from, to)?;
        let mut table: BTreeMap<NaiveDate, ChurnBucket> = BTreeMap::new();
        for at in sent_times {
            let start = bucket_start(period, at);
            table.entry(start).or_insert_with(|| ChurnBucket { start, ..ChurnBucket::default() }).sent += 1;
        }
        for (kind, at) in delivery {
            let start = bucket_start(period, at);
            let b = table.entry(start).or_insert_with(|| ChurnBucket { start, ..ChurnBucket::default() });
            match kind.as_str() {
                "hard_bounce" => b.hard_bounces += 1,
                "soft_bounce" => b.soft_bounces += 1,
                "complaint" => b.complaints += 1,
                _ => {}
            }
        }
        for (action, requires_confirmation, method, at) in changes {
            let start = bucket_start(period, at);
            let b = table.entry(start).or_insert_with(|| ChurnBucket { start, ..ChurnBucket::default() });
            match action.as_str() {
                "granted" if requires_confirmation == 0 => b.subscribed += 1,
                "confirmed" => b.subscribed += 1,
                "withdrawn" => {
                    b.left += 1;
                    if matches!(method.as_str(), "unsubscribe" | "preferences" | "api") {
                        b.unsubscribes += 1;
                    }
                }
                _ => {}
            }
        }
        Ok(table
            .into_values()
            .map(|mut b| {
                b.net_growth = b.subscribed - b.left;
                let rate = |n: i64| if b.sent > 0 { n as f64 / b.sent as f64 } else { 0.0 };
                b.unsubscribe_rate = rate(b.unsubscribes);
                b.bounce_rate = rate(b.hard_bounces + b.soft_bounces);
                b.complaint_rate = rate(b.complaints);
                b
            })
            .collect())
    })
    .await
}

/// Amazon SNS message signatures (SignatureVersion 1: RSA with SHA-1; 2: RSA with
/// SHA-256), checked before a notification counts: the bounce secret alone travels in a
/// URL SNS is configured with, which leaks more easily than a key AWS keeps.
///
/// The signing certificate is fetched from the message's `SigningCertURL`, only over
/// https from a host `sns.<region>.amazonaws.com` (or `.amazonaws.com.cn`), and cached.
pub mod sns {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::Value;

    use crate::error::{Error, Result};

    /// Certificates kept at most; SNS uses one per region at a time.
    const CACHE_SIZE: usize = 32;

    /// Checks SNS messages; one per server, sharing its certificate cache.
    pub struct Verifier {
        client: reqwest::Client,
        /// `SigningCertURL`s trusted although not AWS's (tests serve their own).
        trusted_urls: Vec<String>,
        /// The RSA public key (PKCS#1 DER) of each certificate URL fetched.
        keys: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    }

    fn refused(reason: impl Into<String>) -> Error {
        Error::Unauthorized(format!("the SNS message is not authentic: {}", reason.into()))
    }

    impl Verifier {
        pub fn new(trusted_urls: Vec<String>) -> Result<Self> {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(Error::internal)?;
            Ok(Self { client, trusted_urls, keys: Mutex::new(HashMap::new()) })
        }

        /// `Ok` when `message` (an SNS envelope) carries a valid signature by AWS.
        pub async fn verify(&self, message: &Value) -> Result<()> {
            let field = |name: &str| message.get(name).and_then(Value::as_str);
            let digest = match field("SignatureVersion") {
                Some("1") => &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
                Some("2") => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                Some(other) => return Err(refused(format!("SignatureVersion {other} is not known"))),
                None => return Err(refused("it has no SignatureVersion")),
            };
            let signature = field("Signature")
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or_else(|| refused("its Signature is missing or not base64"))?;
            let text = string_to_sign(message).ok_or_else(|| refused("a signed field is missing"))?;
            let url = field("SigningCertURL").ok_or_else(|| refused("it has no SigningCertURL"))?;
            let key = self.key(url).await?;
            ring::signature::UnparsedPublicKey::new(digest, key.as_slice())
                .verify(text.as_bytes(), &signature)
                .map_err(|_| refused("the signature does not match"))
        }

        async fn key(&self, url: &str) -> Result<Arc<Vec<u8>>> {
            if !self.trusted_urls.iter().any(|trusted| trusted == url) {
                check_certificate_url(url).map_err(refused)?;
            }
            if let Some(key) = self.keys.lock().ok().and_then(|keys| keys.get(url).cloned()) {
                return Ok(key);
            }
            let response = self.client.get(url).send().await.map_err(|e| {
                tracing::warn!(url, error = %e, "the SNS signing certificate could not be fetched");
                Error::Unavailable(Box::new(e))
            })?;
            if !response.status().is_success() {
                return Err(refused(format!("its signing certificate answered {}", response.status())));
            }
            let pem = response.text().await.map_err(|e| Error::Unavailable(Box::new(e)))?;
            let key =
                Arc::new(public_key_of_pem(&pem).ok_or_else(|| refused("its signing certificate is unreadable"))?);
            if let Ok(mut keys) = self.keys.lock() {
                if keys.len() >= CACHE_SIZE {
                    keys.clear();
                }
                keys.insert(url.to_owned(), key.clone());
            }
            Ok(key)
        }
    }

    /// A certificate URL is AWS's: https, host `sns.<region>.amazonaws.com[.cn]`, a `.pem`.
    pub fn check_certificate_url(url: &str) -> std::result::Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|_| "its SigningCertURL is not a URL".to_owned())?;
        let host = parsed.host_str().unwrap_or("");
        let region = host
            .strip_suffix(".amazonaws.com")
            .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
            .and_then(|rest| rest.strip_prefix("sns."));
        let region_ok = region.is_some_and(|r| {
            !r.is_empty() && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if parsed.scheme() != "https" || !region_ok || parsed.port().is_some() || !parsed.path().ends_with(".pem") {
            return Err(format!("its SigningCertURL {url} is not an https .pem of sns.<region>.amazonaws.com"));
        }
        Ok(())
    }

    /// The text SNS signs: named fields, each as `name\nvalue\n`, in this order (AWS:
    /// "Verifying the signatures of Amazon SNS messages"). `None` when one is missing.
    pub fn string_to_sign(message: &Value) -> Option<String> {
        let kind = message.get("Type")?.as_str()?;
        let names: &[&str] = match kind {
            "Notification" => &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
                &["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
            }
            _ => return None,
        };
        let mut text = String::new();
        for name in names {
            match message.get(*name).and_then(Value::as_str) {
                Some(value) => {
                    text.push_str(name);
                    text.push('\n');
                    text.push_str(value);
                    text.push('\n');
                }
                // A notification's subject is optional; everything else is required.
                None if *name == "Subject" => {}
                None => return None,
            }
        }
        Some(text)
    }

    /// The RSA public key (PKCS#1 `RSAPublicKey` DER, as ring takes it) of a PEM certificate.
    pub fn public_key_of_pem(pem: &str) -> Option<Vec<u8>> {
        let body: String = pem
            .lines()
            .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE-----"))
            .skip(1)
            .take_while(|line| !line.starts_with("-----END CERTIFICATE-----"))
            .collect();
        let der = STANDARD.decode(body.trim()).ok()?;
        public_key_of_der(&der)
    }

    /// Walks `Certificate → tbsCertificate → subjectPublicKeyInfo → subjectPublicKey`.
    fn public_key_of_der(der: &[u8]) -> Option<Vec<u8>> {
        let (certificate, _) = tlv(der, 0x30)?;
        let (tbs, _) = tlv(certificate, 0x30)?;
        let mut rest = tbs;
        // The optional [0] version, then serial, signature algorithm, issuer, validity, subject.
        if rest.first() == Some(&0xa0) {
            rest = skip(rest)?;
        }
        for _ in 0..5 {
            rest = skip(rest)?;
        }
        let (spki, _) = tlv(rest, 0x30)?;
        let algorithm = skip(spki)?;
        let (bits, _) = tlv(algorithm, 0x03)?;
        // A BIT STRING starts with its count of unused bits, 0 for a key.
        match bits.split_first() {
            Some((0, key)) => Some(key.to_vec()),
            _ => None,
        }
    }

    /// The contents of the element at the start of `input` if its tag is `tag`, and what follows it.
    fn tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&found, rest) = input.split_first()?;
        if found != tag {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b))
        };
        (rest.len() >= length).then(|| rest.split_at(length))
    }

    fn skip(input: &[u8]) -> Option<&[u8]> {
        let tag = *input.first()?;
        tlv(input, tag).map(|(_, rest)| rest)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn only_https_pem_urls_of_sns_hosts_are_fetched() {
            for url in [
                "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
                "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
            ] {
                assert!(check_certificate_url(url).is_ok(), "{url}");
            }
            for url in [
                "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
                "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
                "https://evil.example/sns.eu-west-1.amazonaws.com/cert.pem",
                "https://sns..amazonaws.com/cert.pem",
                "https://s3.eu-west-1.amazonaws.com/cert.pem",
                "https://sns.eu-west-1.amazonaws.com:8443/cert.pem",
                "https://sns.eu-west-1.amazonaws.com/cert.txt",
                "https://user@sns.eu_west.amazonaws.com/cert.pem",
            ] {
                assert!(check_certificate_url(url).is_err(), "{url}");
            }
        }

        #[test]
        fn the_string_to_sign_follows_the_documented_order_and_skips_a_missing_subject() {
            let message = serde_json::json!({
                "Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "hello",
                "Timestamp": "2026-12-01T10:00:00.000Z", "SignatureVersion": "2"
            });
            assert_eq!(
                string_to_sign(&message).unwrap(),
                "Message\nhello\nMessageId\nm\nTimestamp\n2026-12-01T10:00:00.000Z\nTopicArn\nt\nType\nNotification\n"
            );
            let mut confirmation = message.clone();
            confirmation["Type"] = "SubscriptionConfirmation".into();
            assert!(string_to_sign(&confirmation).is_none(), "SubscribeURL and Token are required");
        }
    }
}
