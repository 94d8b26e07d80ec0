//! The mail outbox: messages written in the transaction that causes them, sent later by
//! the worker, which claims each with a lease so that several instances never send one
//! twice at once.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::outbox;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = outbox, treat_none_as_default_value = false)]
pub struct OutboxRow {
    pub id: String,
    pub kind: String,
    pub recipient: String,
    pub recipient_key: String,
    pub sender: String,
    pub message: String,
    pub created_at: NaiveDateTime,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub locked_until: Option<NaiveDateTime>,
    pub sent_at: Option<NaiveDateTime>,
    pub failed_at: Option<NaiveDateTime>,
    pub last_error: Option<String>,
}

pub fn insert_mail(conn: &mut DbConnection, row: &OutboxRow) -> QueryResult<()> {
    diesel::insert_into(outbox::table).values(row).execute(conn).map(|_| ())
}

/// How many mails of `kind` went (or wait to go) to an address since `since`.
pub fn count_recent(
    conn: &mut DbConnection,
    recipient_key: &str,
    kind: &str,
    since: NaiveDateTime,
) -> QueryResult<i64> {
    outbox::table
        .filter(outbox::recipient_key.eq(recipient_key))
        .filter(outbox::kind.eq(kind))
        .filter(outbox::created_at.ge(since))
        .count()
        .get_result(conn)
}

/// Ids of mails due now and not leased by anyone.
pub fn find_due(conn: &mut DbConnection, now: NaiveDateTime, limit: i64) -> QueryResult<Vec<String>> {
    outbox::table
        .filter(outbox::sent_at.is_null())
        .filter(outbox::failed_at.is_null())
        .filter(outbox::next_attempt_at.le(now))
        .filter(outbox::locked_until.is_null().or(outbox::locked_until.lt(now)))
        .order(outbox::next_attempt_at.asc())
        .select(outbox::id)
        .limit(limit)
        .load(conn)
}

/// Takes the lease on each of these mails that nobody holds; answers the mails this caller
/// got, in one statement. The conditional update is atomic on both backends, so two
/// workers never both win a mail.
pub fn claim(
    conn: &mut DbConnection,
    ids: &[String],
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<Vec<OutboxRow>> {
    diesel::update(
        outbox::table
            .filter(outbox::id.eq_any(ids))
            .filter(outbox::sent_at.is_null())
            .filter(outbox::failed_at.is_null())
            .filter(outbox::locked_until.is_null().or(outbox::locked_until.lt(now))),
    )
    .set(outbox::locked_until.eq(until))
    .returning(outbox::all_columns)
    .get_results(conn)
}

/// Marks these mails sent, in one statement.
pub fn mark_sent(conn: &mut DbConnection, ids: &[String], at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
        .set((
            outbox::sent_at.eq(at),
            outbox::locked_until.eq(None::<NaiveDateTime>),
            outbox::last_error.eq(None::<String>),
        ))
        .execute(conn)
}

pub fn mark_retry(
    conn: &mut DbConnection,
    id: &str,
    attempts: i32,
    next: NaiveDateTime,
    error: &str,
) -> QueryResult<usize> {
    diesel::update(outbox::table.find(id))
        .set((
            outbox::attempts.eq(attempts),
            outbox::next_attempt_at.eq(next),
            outbox::locked_until.eq(None::<NaiveDateTime>),
            outbox::last_error.eq(error),
        ))
        .execute(conn)
}

pub fn mark_failed(
    conn: &mut DbConnection,
    id: &str,
    attempts: i32,
    at: NaiveDateTime,
    error: &str,
) -> QueryResult<usize> {
    diesel::update(outbox::table.find(id))
        .set((
            outbox::attempts.eq(attempts),
            outbox::failed_at.eq(at),
            outbox::locked_until.eq(None::<NaiveDateTime>),
            outbox::last_error.eq(error),
        ))
        .execute(conn)
}

/// Removes every mail to an address (erasure: the outbox holds the address and the text).
pub fn delete_for_recipient(conn: &mut DbConnection, recipient_key: &str) -> QueryResult<usize> {
    diesel::delete(outbox::table.filter(outbox::recipient_key.eq(recipient_key))).execute(conn)
}
