//! The dashboard: what the address book holds, how it grew and shrank over the last 30
//! days, and the ledger's latest checkpoint.

use actix_web::{HttpResponse, web};
use chrono::{TimeDelta, Utc};
use serde::Serialize;

use super::{Console, failure, page};
use crate::http::AppState;
use crate::services::bounces::{self, ChurnBucket, Period};
use crate::services::ledger;

/// One day's bar of the chart, laid out for SVG.
#[derive(Debug, Serialize)]
struct Bar {
    date: String,
    label: String,
    subscribed: i64,
    left: i64,
    x: f64,
    up_height: f64,
    down_height: f64,
}

#[derive(Debug, Serialize)]
struct Chart {
    bars: Vec<Bar>,
    width: f64,
    height: f64,
    axis_y: f64,
    max: i64,
    bar_width: f64,
}

/// A chart of consents that took effect (up) and ended (down) per day: one SVG, drawn
/// here, readable without colour (the two series differ in pattern and each bar has its
/// title), and the same figures in a table beside it.
fn chart(days: &[ChurnBucket], from: chrono::NaiveDate, count: i64) -> Chart {
    let (width, height, bar_width) = (600.0, 160.0, 600.0 / count as f64);
    let max = days.iter().map(|d| d.subscribed.max(d.left)).max().unwrap_or(0).max(1);
    let half = height / 2.0;
    let bars = (0..count)
        .map(|i| {
            let date = from + TimeDelta::days(i);
            let day = days.iter().find(|d| d.start == date);
            let (subscribed, left) = day.map_or((0, 0), |d| (d.subscribed, d.left));
            Bar {
                date: date.to_string(),
                label: date.format("%d %b").to_string(),
                subscribed,
                left,
                x: i as f64 * bar_width,
                up_height: (subscribed as f64 / max as f64) * (half - 4.0),
                down_height: (left as f64 / max as f64) * (half - 4.0),
            }
        })
        .collect();
    Chart { bars, width, height, axis_y: half, max, bar_width }
}

pub async fn show(state: web::Data<AppState>, console: Console) -> HttpResponse {
    let to = Utc::now();
    let from = to - TimeDelta::days(29);
    let gathered = async {
        let snapshot = state.stats.latest(&state.db).await?;
        let days = bounces::churn(&state.db, Period::Day, from, to).await?;
        let checkpoint = ledger::latest_checkpoint(&state.db).await?;
        Ok::<_, crate::error::Error>((snapshot, days, checkpoint))
    };
    let (snapshot, days, checkpoint) = match gathered.await {
        Ok(found) => found,
        Err(error) => return failure(&state, &console.frame, error),
    };
    let totals = &snapshot.stats;
    let contacts: i64 = totals.contacts_by_status.iter().map(|(_, n)| n).sum();
    let sum = |pick: fn(&ChurnBucket) -> i64| days.iter().map(pick).sum::<i64>();
    let churn = minijinja::context! {
        subscribed => sum(|d| d.subscribed), left => sum(|d| d.left), unsubscribes => sum(|d| d.unsubscribes),
        hard_bounces => sum(|d| d.hard_bounces), soft_bounces => sum(|d| d.soft_bounces),
        complaints => sum(|d| d.complaints), sent => sum(|d| d.sent),
    };
    let checkpoint_lines: Vec<String> =
        checkpoint.map(|c| c.lines().take(3).map(str::to_owned).collect()).unwrap_or_default();
    let context = minijinja::context! {
        title => crate::i18n::text(&console.frame.locale, "admin_dashboard"),
        counted_at => (snapshot.took >= crate::services::stats::LIVE_UNDER)
            .then(|| snapshot.taken_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        contacts, by_status => &totals.contacts_by_status, lists => &totals.lists,
        consent_events => totals.consent_events, suppressions => totals.suppressions,
        churn, chart => chart(&days, from.date_naive(), 30), checkpoint => checkpoint_lines,
    };
    page(&state, &console, "dashboard.html", "dashboard", context)
}
