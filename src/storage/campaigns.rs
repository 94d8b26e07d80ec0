//! Campaigns, their recipients, and bounce and complaint events.
//!
//! Recipients are claimed in batches with a lease: on PostgreSQL with `FOR UPDATE SKIP
//! LOCKED`, so that several instances take disjoint batches without waiting on each
//! other; on SQLite inside the one write transaction the database allows at a time. A
//! recipient is marked sent only after the SMTP server accepted its message; a lease that
//! runs out (the instance died) makes its recipients claimable again.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamp};

use super::DbConnection;
use super::schema::{campaign_recipients, campaigns, delivery_events};
use crate::domain::{CampaignId, CampaignKind, CampaignPurpose, ContactId, ListId, SegmentId};
use crate::domain::{CampaignStatus, RecipientStatus};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = campaigns, treat_none_as_null = true, treat_none_as_default_value = false)]
pub struct CampaignRow {
    pub id: CampaignId,
    pub name: String,
    pub subject: String,
    pub from_address: String,
    pub reply_to: Option<String>,
    pub html_body: Option<String>,
    pub text_body: String,
    pub lists: String,
    pub segment_id: Option<SegmentId>,
    pub kind: CampaignKind,
    pub purpose: CampaignPurpose,
    pub policy_plugin: Option<String>,
    pub track_opens: bool,
    pub track_clicks: bool,
    pub track_individual: bool,
    pub complaint_threshold: f64,
    pub status: CampaignStatus,
    pub status_reason: Option<String>,
    pub scheduled_at: Option<NaiveDateTime>,
    pub started_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    pub lease_until: Option<NaiveDateTime>,
    pub opens: i64,
    pub clicks: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = campaign_recipients, treat_none_as_default_value = false)]
pub struct RecipientRow {
    pub id: String,
    pub campaign_id: CampaignId,
    pub contact_id: Option<ContactId>,
    pub email: String,
    pub list_id: Option<ListId>,
    pub status: RecipientStatus,
    pub reason: String,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub lease_until: Option<NaiveDateTime>,
    pub sent_at: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub bounced_at: Option<NaiveDateTime>,
    pub complained_at: Option<NaiveDateTime>,
    pub unsubscribed_at: Option<NaiveDateTime>,
    pub opened_at: Option<NaiveDateTime>,
    pub clicked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = delivery_events, treat_none_as_default_value = false)]
pub struct DeliveryEventRow {
    pub id: String,
    pub kind: String,
    pub email_hash: String,
    pub campaign_id: Option<CampaignId>,
    pub recipient_id: Option<String>,
    pub detail: String,
    pub occurred_at: NaiveDateTime,
}

/// A recipient taken for sending.
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub contact_id: Option<ContactId>,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub list_id: Option<ListId>,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub attempts: i32,
}

pub fn insert_campaign(conn: &mut DbConnection, row: &CampaignRow) -> QueryResult<usize> {
    diesel::insert_into(campaigns::table).values(row).execute(conn)
}

pub fn update_campaign(conn: &mut DbConnection, row: &CampaignRow) -> QueryResult<usize> {
    diesel::update(campaigns::table.find(&row.id)).set(row).execute(conn)
}

pub fn find_campaign(conn: &mut DbConnection, id: CampaignId) -> QueryResult<Option<CampaignRow>> {
    campaigns::table.find(id).select(CampaignRow::as_select()).first(conn).optional()
}

pub fn list_campaigns(conn: &mut DbConnection, after: Option<&str>, limit: i64) -> QueryResult<Vec<CampaignRow>> {
    let mut query = campaigns::table.select(CampaignRow::as_select()).into_boxed();
    if let Some(after) = after {
        query = query.filter(campaigns::id.gt(after.to_owned()));
    }
    query.order(campaigns::id.asc()).limit(limit).load(conn)
}

pub fn delete_campaign(conn: &mut DbConnection, id: CampaignId) -> QueryResult<usize> {
    diesel::delete(campaign_recipients::table.filter(campaign_recipients::campaign_id.eq(id))).execute(conn)?;
    diesel::delete(campaigns::table.find(id)).execute(conn)
}

/// Moves a campaign from one of `from` to `to`; answers whether it moved.
pub fn transition(
    conn: &mut DbConnection,
    id: CampaignId,
    from: &[CampaignStatus],
    to: CampaignStatus,
    reason: Option<&str>,
    at: NaiveDateTime,
) -> QueryResult<bool> {
    let from: Vec<&str> = from.iter().map(|status| status.as_str()).collect();
    let moved = diesel::update(campaigns::table.find(id).filter(campaigns::status.eq_any(from)))
        .set((campaigns::status.eq(to.as_str()), campaigns::status_reason.eq(reason), campaigns::updated_at.eq(at)))
        .execute(conn)?;
    Ok(moved == 1)
}

/// Whether a campaign waits for its audience to be prepared (checked with a read before
/// taking the write lock to claim it).
pub fn preparation_due(conn: &mut DbConnection, now: NaiveDateTime) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        campaigns::table.filter(
            campaigns::status
                .eq(CampaignStatus::Scheduled)
                .and(campaigns::scheduled_at.le(now))
                .or(campaigns::status.eq(CampaignStatus::Preparing).and(campaigns::lease_until.lt(now))),
        ),
    ))
    .get_result(conn)
}

/// Takes a campaign whose audience is due to be prepared: scheduled and due, or left in
/// preparation by an instance whose lease ran out.
pub fn claim_preparation(
    conn: &mut DbConnection,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<Option<CampaignRow>> {
    let due: Option<CampaignId> = campaigns::table
        .filter(
            campaigns::status
                .eq(CampaignStatus::Scheduled)
                .and(campaigns::scheduled_at.le(now))
                .or(campaigns::status.eq(CampaignStatus::Preparing).and(campaigns::lease_until.lt(now))),
        )
        .select(campaigns::id)
        .order(campaigns::scheduled_at.asc())
        .first(conn)
        .optional()?;
    let Some(id) = due else {
        return Ok(None);
    };
    let claimed = diesel::update(
        campaigns::table.find(id).filter(
            campaigns::status
                .eq(CampaignStatus::Scheduled)
                .or(campaigns::status.eq(CampaignStatus::Preparing).and(campaigns::lease_until.lt(now))),
        ),
    )
    .set((
        campaigns::status.eq(CampaignStatus::Preparing),
        campaigns::lease_until.eq(until),
        campaigns::started_at.eq(now),
        campaigns::updated_at.eq(now),
    ))
    .execute(conn)?;
    if claimed == 0 {
        return Ok(None);
    }
    find_campaign(conn, id)
}

/// Extends the preparation lease; `false` when another instance took it over.
pub fn renew_preparation(conn: &mut DbConnection, id: CampaignId, until: NaiveDateTime) -> QueryResult<bool> {
    let renewed = diesel::update(campaigns::table.find(id).filter(campaigns::status.eq(CampaignStatus::Preparing)))
        .set(campaigns::lease_until.eq(until))
        .execute(conn)?;
    Ok(renewed == 1)
}

/// Ids of the campaigns being sent.
pub fn sending_campaigns(conn: &mut DbConnection) -> QueryResult<Vec<CampaignId>> {
    campaigns::table
        .filter(campaigns::status.eq(CampaignStatus::Sending))
        .select(campaigns::id)
        .order(campaigns::id)
        .load(conn)
}

/// Adds recipients; those already there (a preparation that ran before a crash) are kept.
pub fn insert_recipients(conn: &mut DbConnection, rows: &[RecipientRow]) -> QueryResult<usize> {
    let mut inserted = 0;
    for chunk in rows.chunks(500) {
        inserted += match conn {
            DbConnection::Postgres(pg) => diesel::insert_into(campaign_recipients::table)
                .values(chunk)
                .on_conflict((campaign_recipients::campaign_id, campaign_recipients::contact_id))
                .do_nothing()
                .execute(pg)?,
            DbConnection::Sqlite(sqlite) => {
                diesel::insert_or_ignore_into(campaign_recipients::table).values(chunk).execute(sqlite)?
            }
        };
    }
    Ok(inserted)
}

/// Takes up to `limit` recipients due now and not leased, leasing them until `until`.
pub fn claim_recipients(
    conn: &mut DbConnection,
    campaign_id: CampaignId,
    now: NaiveDateTime,
    until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Claimed>> {
    const SELECT: &str = "SELECT id FROM campaign_recipients WHERE campaign_id = $1 AND status = 'pending' \
         AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2) ORDER BY id LIMIT $4";
    let update = |select: &str| {
        format!(
            "UPDATE campaign_recipients SET lease_until = $3, attempts = attempts + 1 WHERE id IN ({select}) \
             RETURNING id, contact_id, email, list_id, attempts"
        )
    };
    match conn {
        DbConnection::Postgres(pg) => diesel::sql_query(update(&format!("{SELECT} FOR UPDATE SKIP LOCKED")))
            .bind::<Text, _>(campaign_id)
            .bind::<Timestamp, _>(now)
            .bind::<Timestamp, _>(until)
            .bind::<BigInt, _>(limit)
            .load(pg),
        // SQLite numbers its parameters `?N`; `$N` would be a name, numbered by first use.
        DbConnection::Sqlite(sqlite) => diesel::sql_query(update(SELECT).replace('$', "?"))
            .bind::<Text, _>(campaign_id)
            .bind::<Timestamp, _>(now)
            .bind::<Timestamp, _>(until)
            .bind::<BigInt, _>(limit)
            .load(sqlite),
    }
}

/// Marks recipients sent (the SMTP server accepted their messages).
pub fn mark_sent(conn: &mut DbConnection, ids: &[String], at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(campaign_recipients::table.filter(campaign_recipients::id.eq_any(ids)))
        .set((
            campaign_recipients::status.eq(RecipientStatus::Sent),
            campaign_recipients::sent_at.eq(at),
            campaign_recipients::lease_until.eq(None::<NaiveDateTime>),
            campaign_recipients::last_error.eq(None::<String>),
        ))
        .execute(conn)
}

/// A failure: try again at `next`, or, with `next = None`, give up.
pub fn mark_unsent(conn: &mut DbConnection, id: &str, next: Option<NaiveDateTime>, error: &str) -> QueryResult<usize> {
    let target = campaign_recipients::table.find(id);
    match next {
        Some(next) => diesel::update(target)
            .set((
                campaign_recipients::next_attempt_at.eq(next),
                campaign_recipients::lease_until.eq(None::<NaiveDateTime>),
                campaign_recipients::last_error.eq(error),
            ))
            .execute(conn),
        None => diesel::update(target)
            .set((
                campaign_recipients::status.eq(RecipientStatus::Failed),
                campaign_recipients::lease_until.eq(None::<NaiveDateTime>),
                campaign_recipients::last_error.eq(error),
            ))
            .execute(conn),
    }
}

/// Keeps holding recipients still being sent (a slow batch must not be taken over).
pub fn extend_lease(conn: &mut DbConnection, ids: &[String], until: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        campaign_recipients::table
            .filter(campaign_recipients::id.eq_any(ids))
            .filter(campaign_recipients::status.eq(RecipientStatus::Pending)),
    )
    .set(campaign_recipients::lease_until.eq(until))
    .execute(conn)
}

/// Returns leased recipients to the queue (a pause, or a batch not sent).
pub fn release(conn: &mut DbConnection, ids: &[String]) -> QueryResult<usize> {
    diesel::update(campaign_recipients::table.filter(campaign_recipients::id.eq_any(ids)))
        .set(campaign_recipients::lease_until.eq(None::<NaiveDateTime>))
        .execute(conn)
}

/// Recipients still to send (pending, leased or not).
pub fn count_pending(conn: &mut DbConnection, campaign_id: CampaignId) -> QueryResult<i64> {
    campaign_recipients::table
        .filter(campaign_recipients::campaign_id.eq(campaign_id))
        .filter(campaign_recipients::status.eq(RecipientStatus::Pending))
        .count()
        .get_result(conn)
}

/// Finishes a campaign being sent when no recipient is left to send.
pub fn finish_if_done(conn: &mut DbConnection, id: CampaignId, at: NaiveDateTime) -> QueryResult<bool> {
    if count_pending(conn, id)? > 0 {
        return Ok(false);
    }
    let finished = diesel::update(campaigns::table.find(id).filter(campaigns::status.eq(CampaignStatus::Sending)))
        .set((campaigns::status.eq(CampaignStatus::Sent), campaigns::finished_at.eq(at), campaigns::updated_at.eq(at)))
        .execute(conn)?;
    Ok(finished == 1)
}

/// Cancels what is left to send.
pub fn cancel_pending(conn: &mut DbConnection, campaign_id: CampaignId) -> QueryResult<usize> {
    diesel::update(
        campaign_recipients::table
            .filter(campaign_recipients::campaign_id.eq(campaign_id))
            .filter(campaign_recipients::status.eq(RecipientStatus::Pending)),
    )
    .set((
        campaign_recipients::status.eq(RecipientStatus::Cancelled),
        campaign_recipients::lease_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)
}

/// Messages sent since `since`, all campaigns together (the hourly limit).
pub fn count_sent_since(conn: &mut DbConnection, since: NaiveDateTime) -> QueryResult<i64> {
    campaign_recipients::table.filter(campaign_recipients::sent_at.ge(since)).count().get_result(conn)
}

/// Recipients by status and reason.
pub fn count_by_status_and_reason(
    conn: &mut DbConnection,
    campaign_id: CampaignId,
) -> QueryResult<Vec<(RecipientStatus, String, i64)>> {
    campaign_recipients::table
        .filter(campaign_recipients::campaign_id.eq(campaign_id))
        .group_by((campaign_recipients::status, campaign_recipients::reason))
        .select((campaign_recipients::status, campaign_recipients::reason, diesel::dsl::count_star()))
        .load(conn)
}

/// Per campaign: (bounced, complained, unsubscribed, opened, clicked) recipients.
pub fn count_outcomes(conn: &mut DbConnection, campaign_id: CampaignId) -> QueryResult<[i64; 5]> {
    let base = || campaign_recipients::table.filter(campaign_recipients::campaign_id.eq(campaign_id));
    Ok([
        base().filter(campaign_recipients::bounced_at.is_not_null()).count().get_result(conn)?,
        base().filter(campaign_recipients::complained_at.is_not_null()).count().get_result(conn)?,
        base().filter(campaign_recipients::unsubscribed_at.is_not_null()).count().get_result(conn)?,
        base().filter(campaign_recipients::opened_at.is_not_null()).count().get_result(conn)?,
        base().filter(campaign_recipients::clicked_at.is_not_null()).count().get_result(conn)?,
    ])
}

pub fn list_recipients(
    conn: &mut DbConnection,
    campaign_id: CampaignId,
    status: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<RecipientRow>> {
    let mut query = campaign_recipients::table
        .filter(campaign_recipients::campaign_id.eq(campaign_id))
        .select(RecipientRow::as_select())
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(campaign_recipients::status.eq(status.to_owned()));
    }
    if let Some(after) = after {
        query = query.filter(campaign_recipients::id.gt(after.to_owned()));
    }
    query.order(campaign_recipients::id.asc()).limit(limit).load(conn)
}

pub fn find_recipient(conn: &mut DbConnection, id: &str) -> QueryResult<Option<RecipientRow>> {
    campaign_recipients::table.find(id).select(RecipientRow::as_select()).first(conn).optional()
}

/// The recipient a provider's notification is about: by Message-ID local part, else the
/// latest message sent to the address.
pub fn find_sent_to(conn: &mut DbConnection, email: &str) -> QueryResult<Option<RecipientRow>> {
    campaign_recipients::table
        .filter(campaign_recipients::email.eq(email))
        .filter(campaign_recipients::status.eq(RecipientStatus::Sent))
        .order(campaign_recipients::sent_at.desc())
        .select(RecipientRow::as_select())
        .first(conn)
        .optional()
}

/// Sets one outcome time on a recipient, once (the first time counts).
pub fn mark_outcome(conn: &mut DbConnection, id: &str, outcome: Outcome, at: NaiveDateTime) -> QueryResult<bool> {
    use campaign_recipients::dsl as r;
    let target = r::campaign_recipients.find(id);
    let updated = match outcome {
        Outcome::Bounced => {
            diesel::update(target.filter(r::bounced_at.is_null())).set(r::bounced_at.eq(at)).execute(conn)?
        }
        Outcome::Complained => {
            diesel::update(target.filter(r::complained_at.is_null())).set(r::complained_at.eq(at)).execute(conn)?
        }
        Outcome::Unsubscribed => {
            diesel::update(target.filter(r::unsubscribed_at.is_null())).set(r::unsubscribed_at.eq(at)).execute(conn)?
        }
        Outcome::Opened => {
            diesel::update(target.filter(r::opened_at.is_null())).set(r::opened_at.eq(at)).execute(conn)?
        }
        Outcome::Clicked => {
            diesel::update(target.filter(r::clicked_at.is_null())).set(r::clicked_at.eq(at)).execute(conn)?
        }
    };
    Ok(updated == 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Bounced,
    Complained,
    Unsubscribed,
    Opened,
    Clicked,
}

/// Adds to a campaign's aggregate open or click count.
pub fn count_engagement(conn: &mut DbConnection, campaign_id: CampaignId, click: bool) -> QueryResult<usize> {
    let target = campaigns::table.find(campaign_id);
    if click {
        diesel::update(target).set(campaigns::clicks.eq(campaigns::clicks + 1)).execute(conn)
    } else {
        diesel::update(target).set(campaigns::opens.eq(campaigns::opens + 1)).execute(conn)
    }
}

/// Erasure: the recipients of a contact keep their counts, not the address.
pub fn redact_contact(conn: &mut DbConnection, contact_id: ContactId) -> QueryResult<usize> {
    diesel::update(campaign_recipients::table.filter(campaign_recipients::contact_id.eq(contact_id)))
        .set((campaign_recipients::email.eq(""), campaign_recipients::contact_id.eq(None::<String>)))
        .execute(conn)
}

pub fn insert_delivery_event(conn: &mut DbConnection, row: &DeliveryEventRow) -> QueryResult<usize> {
    diesel::insert_into(delivery_events::table).values(row).execute(conn)
}

/// Events of a kind for an address since a time (soft bounces before suppression).
pub fn count_delivery_events(
    conn: &mut DbConnection,
    email_hash: &str,
    kind: &str,
    since: NaiveDateTime,
) -> QueryResult<i64> {
    delivery_events::table
        .filter(delivery_events::email_hash.eq(email_hash))
        .filter(delivery_events::kind.eq(kind))
        .filter(delivery_events::occurred_at.ge(since))
        .count()
        .get_result(conn)
}

/// (kind, time) of the delivery events in a period, for churn over time.
pub fn delivery_events_between(
    conn: &mut DbConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> QueryResult<Vec<(String, NaiveDateTime)>> {
    delivery_events::table
        .filter(delivery_events::occurred_at.ge(from))
        .filter(delivery_events::occurred_at.lt(to))
        .select((delivery_events::kind, delivery_events::occurred_at))
        .load(conn)
}

/// Send times in a period, for churn rates over time.
pub fn sent_between(
    conn: &mut DbConnection,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> QueryResult<Vec<NaiveDateTime>> {
    campaign_recipients::table
        .filter(campaign_recipients::sent_at.ge(from))
        .filter(campaign_recipients::sent_at.lt(to))
        .select(campaign_recipients::sent_at.assume_not_null())
        .load(conn)
}

/// What a person's data export shows of the campaigns addressed to a contact: each
/// recipient row with its campaign's name and subject, oldest first.
pub fn list_contact_recipients(
    conn: &mut DbConnection,
    contact_id: ContactId,
) -> QueryResult<Vec<(RecipientRow, String, String)>> {
    campaign_recipients::table
        .inner_join(campaigns::table)
        .filter(campaign_recipients::contact_id.eq(contact_id))
        .order(campaign_recipients::id.asc())
        .select((RecipientRow::as_select(), campaigns::name, campaigns::subject))
        .load(conn)
}

/// The bounces, complaints and other delivery events recorded for an address (by its
/// keyed hash), oldest first.
pub fn list_address_delivery_events(conn: &mut DbConnection, email_hash: &str) -> QueryResult<Vec<DeliveryEventRow>> {
    delivery_events::table
        .filter(delivery_events::email_hash.eq(email_hash))
        .order(delivery_events::occurred_at.asc())
        .select(DeliveryEventRow::as_select())
        .load(conn)
}
