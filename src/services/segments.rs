//! Segments: a Rhai predicate over a contact, evaluated over the address book in
//! batches, on every core.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::pagination::{Page, PageRequest};
use super::plugins::{Scripts, script_rejected};
use crate::domain::Contact;
use crate::domain::{ContactId, SegmentId};
use crate::error::{Error, Result};
use crate::plugins::contact::ContactFacts;
use crate::plugins::pushdown::{self, SqlConditions};
use crate::plugins::{Arguments, PluginHost, Script, ScriptContact, ScriptError};
use crate::storage::contacts::{self, ScanNeeds};
use crate::storage::models::utc;
use crate::storage::plugins::{self as repo, SegmentRow};
use crate::storage::{self, Db, DbConnection};

const BATCH: i64 = 5000;

#[derive(Debug, Clone)]
pub struct Segment {
    pub id: crate::domain::SegmentId,
    pub name: String,
    pub description: String,
    pub script: Option<String>,
    pub plugin: Option<String>,
    /// The plugin's settings as this segment sets them (over the plugin's defaults).
    pub settings: Settings,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub type Settings = serde_json::Map<String, serde_json::Value>;

/// What a segment tests: its own script, or a plugin's `matches` hook.
#[derive(Debug, Clone)]
pub enum Rule {
    Script(String),
    /// A plugin's `matches` hook, with settings over the plugin's defaults.
    Plugin(String, Settings),
}

#[derive(Debug, Clone)]
pub struct SegmentDraft {
    pub name: String,
    pub description: String,
    pub rule: Rule,
}

fn to_segment(row: SegmentRow) -> Result<Segment> {
    Ok(Segment {
        id: row.id,
        name: row.name,
        description: row.description,
        settings: serde_json::from_str(&row.settings).map_err(Error::internal)?,
        script: row.script,
        plugin: row.plugin,
        created_at: utc(row.created_at),
        updated_at: utc(row.updated_at),
    })
}

/// A compiled predicate, ready for many contacts.
pub struct Predicate {
    name: String,
    /// What is left for the script once SQL tested what it can (a plugin with its
    /// settings); `None`: nothing is left.
    script: Option<Script>,
    conditions: SqlConditions,
    needs: ScanNeeds,
    uses_hook: bool,
}

impl Predicate {
    /// Compiles a rule. Only what the script mentions is loaded for each contact.
    pub async fn compile(db: &Db, scripts: &Scripts, rule: &Rule) -> Result<Self> {
        let host = &scripts.host;
        let (name, source, settings) = match rule {
            Rule::Script(source) => ("segment".to_owned(), source.clone(), Settings::new()),
            Rule::Plugin(plugin, overrides) => {
                let plugin = super::plugins::find_plugin(db, scripts, plugin.clone()).await?;
                let settings = merge_settings(&plugin.settings, overrides)?;
                (plugin.name, plugin.source, settings)
            }
        };
        let with_settings = |script: Script| script.with_settings(&settings).map_err(script_rejected);
        let script = with_settings(host.compile(&name, &source).map_err(script_rejected)?)?;
        let uses_hook = script.defines("matches", 1);
        let (conditions, rest) = match rule {
            Rule::Script(_) if !uses_hook => pushdown::split(&source),
            _ => (SqlConditions::default(), Some(source.clone())),
        };
        let script = match rest {
            Some(rest) if rest == source => Some(script),
            Some(rest) => Some(with_settings(host.compile(&name, &rest).map_err(script_rejected)?)?),
            None => None,
        };
        if matches!(rule, Rule::Plugin(..)) && !uses_hook {
            return Err(Error::field("plugin", format!("the plugin {name} defines no matches(contact) hook")));
        }
        let needs = ScanNeeds {
            tags: source.contains("tags") || source.contains("has_tag"),
            lists: source.contains("lists") || source.contains("in_list"),
            consents: source.contains("consent"),
        };
        Ok(Self { name, script, conditions, needs, uses_hook })
    }

    /// Everyone: no condition, no script (a campaign without a segment).
    pub fn everyone() -> Self {
        Self {
            name: "audience".to_owned(),
            script: None,
            conditions: SqlConditions::default(),
            needs: ScanNeeds::default(),
            uses_hook: false,
        }
    }

    /// Narrows to a campaign's audience (on one of `lists`, or with consent history for
    /// one) and loads everything a send policy reads.
    pub fn for_audience(mut self, lists: Vec<String>) -> Self {
        self.conditions.audience_lists = lists;
        self.needs = ScanNeeds { tags: true, lists: true, consents: true };
        self
    }

    /// Narrows to a list and a tag, tested by the database (exports).
    pub fn narrowed(mut self, list: Option<String>, tag: Option<String>) -> Self {
        self.conditions.lists.extend(list);
        self.conditions.tags.extend(tag);
        self
    }

    /// The next batch of candidates after `after`, in id order (the SQL conditions applied).
    pub fn batch(&self, conn: &mut DbConnection, after: Option<&str>, limit: i64) -> Result<Vec<ContactFacts>> {
        let scanned = contacts::scan_batch(conn, after, limit, self.needs, &self.conditions)?;
        Ok(scanned.into_iter().map(ContactFacts::from).collect())
    }

    fn test(&self, host: &PluginHost, facts: ContactFacts) -> std::result::Result<bool, ScriptError> {
        self.matches(host, &ScriptContact::new(facts))
    }

    /// Whether a contact matches what is left for the script.
    pub fn matches(&self, host: &PluginHost, contact: &ScriptContact) -> std::result::Result<bool, ScriptError> {
        let Some(script) = &self.script else {
            return Ok(true);
        };
        let answer = if self.uses_hook {
            script.call_with_contact(host, "matches", contact, &Arguments::default())?.map(|(answer, _)| answer)
        } else {
            Some(script.eval_with_contact(host, contact)?)
        };
        let Some(answer) = answer else {
            return Ok(false);
        };
        answer.as_bool().ok_or_else(|| {
            script.wrong_answer(format!(
                "must answer true or false, not {} (for contact {})",
                answer.kind(),
                contact.0.id
            ))
        })
    }
}

/// The result of scanning contacts.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub matched: u64,
    pub scanned: u64,
    /// Ids of the first matches, in id order.
    pub first: Vec<ContactId>,
    /// Where the scan stopped when it stopped early.
    pub stopped_after: Option<ContactId>,
    pub elapsed: Duration,
}

/// Scans contacts after `after`, testing each; keeps the first `keep` matching ids and
/// stops once it has them when `stop_when_kept` (a page of members).
///
/// Each batch is read, its connection given back to the pool, and only then tested: a
/// script's run never holds a database connection, so that slow scripts (each up to its
/// deadline) cannot take the pool from every other request.
pub async fn scan(
    db: &Db,
    host: &Arc<PluginHost>,
    predicate: &Arc<Predicate>,
    after: Option<String>,
    keep: usize,
    stop_when_kept: bool,
) -> Result<Scan> {
    let started = Instant::now();
    let mut scan = Scan::default();
    let mut cursor = after;
    loop {
        let batch = {
            let (predicate, cursor) = (predicate.clone(), cursor.clone());
            db.read(move |conn| predicate.batch(conn, cursor.as_deref(), BATCH)).await?
        };
        let Some(last) = batch.last().map(|f| f.id) else {
            break;
        };
        let full = batch.len() as i64 == BATCH;
        let ids: Vec<ContactId> = batch.iter().map(|f| f.id).collect();
        let verdicts = test_batch(host, predicate, batch).await?;
        for (id, matched) in ids.into_iter().zip(verdicts) {
            scan.scanned += 1;
            if matched {
                scan.matched += 1;
                if scan.first.len() < keep {
                    scan.first.push(id);
                    if stop_when_kept && scan.first.len() == keep {
                        scan.stopped_after = Some(id);
                        scan.elapsed = started.elapsed();
                        return Ok(scan);
                    }
                }
            }
        }
        if !full {
            break;
        }
        if started.elapsed() > super::plugins::SCAN_DEADLINE {
            return Err(Error::field("script", "the segment took too long to evaluate over the address book"));
        }
        cursor = Some(last.to_string());
    }
    scan.elapsed = started.elapsed();
    Ok(scan)
}

/// Tests a batch read earlier (its connection given back), off the async threads and on
/// every core; the verdicts come back in the batch's order.
pub(crate) async fn test_batch(
    host: &Arc<PluginHost>,
    predicate: &Arc<Predicate>,
    batch: Vec<ContactFacts>,
) -> Result<Vec<bool>> {
    if predicate.script.is_none() {
        return Ok(vec![true; batch.len()]);
    }
    let threads = crate::threads::cores();
    let (host, predicate) = (host.clone(), predicate.clone());
    tokio::task::spawn_blocking(move || evaluate(&host, &predicate, batch, threads))
        .await
        .map_err(Error::internal)?
        .map_err(script_rejected)
}

/// Tests a batch on every core; the verdicts come back in the batch's order. The first
/// failure stops the batch: contacts not yet tested are skipped, so that a script that
/// fails (at its deadline, say) fails once, not once per contact.
fn evaluate(
    host: &PluginHost,
    predicate: &Predicate,
    batch: Vec<ContactFacts>,
    threads: usize,
) -> std::result::Result<Vec<bool>, ScriptError> {
    let failed = AtomicBool::new(false);
    let verdicts = crate::threads::map_on_cores(batch, threads, |facts| {
        if failed.load(Ordering::Relaxed) {
            return None;
        }
        let verdict = predicate.test(host, facts);
        if verdict.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        Some(verdict)
    })
    .ok_or_else(|| ScriptError::new(&predicate.name, "the evaluation failed"))?;
    if let Some(error) = verdicts.iter().flatten().find_map(|verdict| verdict.as_ref().err()) {
        return Err(error.clone());
    }
    Ok(verdicts.into_iter().flatten().flatten().collect())
}

pub async fn create_segment(db: &Db, scripts: &Scripts, draft: SegmentDraft) -> Result<Segment> {
    Predicate::compile(db, scripts, &draft.rule).await?;
    let now = storage::now();
    let (script, plugin, settings) = split_rule(draft.rule);
    let row = SegmentRow {
        id: crate::domain::SegmentId::new(),
        name: draft.name,
        description: draft.description,
        script,
        plugin,
        settings,
        created_at: now,
        updated_at: now,
    };
    db.write(move |conn| {
        storage::or_conflict(repo::insert_segment(conn, &row), || duplicate_name(&row.name))?;
        to_segment(row)
    })
    .await
}

pub async fn update_segment(
    db: &Db,
    scripts: &Scripts,
    id: SegmentId,
    name: Option<String>,
    description: Option<String>,
    rule: Option<Rule>,
) -> Result<Segment> {
    if let Some(rule) = &rule {
        Predicate::compile(db, scripts, rule).await?;
    }
    db.write(move |conn| {
        let mut row = repo::find_segment(conn, id)?.ok_or_else(|| not_found(id))?;
        if let Some(name) = name {
            row.name = name;
        }
        if let Some(description) = description {
            row.description = description;
        }
        if let Some(rule) = rule {
            (row.script, row.plugin, row.settings) = split_rule(rule);
        }
        row.updated_at = storage::now();
        storage::or_conflict(repo::update_segment(conn, &row), || duplicate_name(&row.name))?;
        to_segment(row)
    })
    .await
}

pub async fn find_segment(db: &Db, id: SegmentId) -> Result<Segment> {
    db.read(move |conn| to_segment(repo::find_segment(conn, id)?.ok_or_else(|| not_found(id))?)).await
}

pub async fn list_segments(db: &Db, page: PageRequest) -> Result<Page<Segment>> {
    db.read(move |conn| {
        let rows = repo::list_segments(conn, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(to_segment)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.page(rows, |segment| segment.id.to_string()))
    })
    .await
}

pub async fn delete_segment(db: &Db, id: SegmentId) -> Result<()> {
    let deleted = db.write(move |conn| Ok(repo::delete_segment(conn, id)?));
    if deleted.await? == 0 { Err(not_found(id)) } else { Ok(()) }
}

/// The rule a stored segment holds. Read at each use, so that a changed script (or
/// plugin) takes effect at once, on every instance.
pub fn rule_of(segment: &Segment) -> Result<Rule> {
    match (&segment.script, &segment.plugin) {
        (Some(script), _) => Ok(Rule::Script(script.clone())),
        (None, Some(plugin)) => Ok(Rule::Plugin(plugin.clone(), segment.settings.clone())),
        (None, None) => Err(Error::internal("a segment without a rule")),
    }
}

/// Counts the contacts a rule matches, with the first `sample` of them.
pub async fn count(db: &Db, scripts: &Scripts, rule: &Rule, sample: usize) -> Result<(Scan, Vec<Contact>)> {
    let host = &scripts.host;
    let predicate = Arc::new(Predicate::compile(db, scripts, rule).await?);
    let found = if predicate.script.is_none() {
        // Everything was pushed down: the database counts.
        let started = Instant::now();
        let counted = predicate.clone();
        let matched = db.read(move |conn| contacts::count_matching(conn, &counted.conditions)).await?.max(0) as u64;
        let mut found =
            if sample > 0 { scan(db, host, &predicate, None, sample, true).await? } else { Scan::default() };
        found.matched = matched;
        found.scanned = matched;
        found.elapsed = started.elapsed();
        found
    } else {
        scan(db, host, &predicate, None, sample, false).await?
    };
    let first = found.first.clone();
    let contacts = db.read(move |conn| contacts::find_contacts(conn, &first)).await?;
    Ok((found, contacts))
}

/// One page of a segment's members.
pub async fn members(db: &Db, scripts: &Scripts, rule: &Rule, page: PageRequest) -> Result<Page<Contact>> {
    let host = &scripts.host;
    let predicate = Arc::new(Predicate::compile(db, scripts, rule).await?);
    let limit = page.limit as usize;
    let found = scan(db, host, &predicate, page.after.clone(), limit + 1, true).await?;
    let contacts = db.read(move |conn| contacts::find_contacts(conn, &found.first)).await?;
    Ok(page.page(contacts, |contact| contact.id.to_string()))
}

fn split_rule(rule: Rule) -> (Option<String>, Option<String>, String) {
    match rule {
        Rule::Script(script) => (Some(script), None, "{}".to_owned()),
        Rule::Plugin(plugin, settings) => (None, Some(plugin), serde_json::Value::Object(settings).to_string()),
    }
}

/// The plugin's settings with a binding's values over them. Where the plugin declares its
/// settings (folder plugins), a binding may set only those, with values of the same type.
fn merge_settings(
    defaults: &std::collections::BTreeMap<String, serde_json::Value>,
    overrides: &Settings,
) -> Result<Settings> {
    let mut merged: Settings = defaults.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut errors = Vec::new();
    for (key, value) in overrides {
        match defaults.get(key) {
            None if !defaults.is_empty() => {
                errors.push(crate::error::FieldError::new(format!("settings.{key}"), "is not a setting of this plugin"))
            }
            Some(default) if std::mem::discriminant(default) != std::mem::discriminant(value) => {
                errors.push(crate::error::FieldError::new(
                    format!("settings.{key}"),
                    format!("must be of the same type as {default}"),
                ))
            }
            _ => {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    if errors.is_empty() { Ok(merged) } else { Err(Error::Validation(errors)) }
}

fn duplicate_name(name: &str) -> String {
    format!("a segment named {name:?} exists")
}

fn not_found(id: SegmentId) -> Error {
    Error::NotFound(format!("there is no segment {id}"))
}
