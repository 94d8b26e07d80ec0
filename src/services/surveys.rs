//! Post-signup surveys: their definitions, the response a person fills in through a signed
//! link, the `next_question(answers, survey)` hook that picks each question, and the
//! `on_complete(contact, answers)` hook whose attribute and tag updates are checked before
//! they are applied.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::keys::{Keys, LinkKind};
use super::pagination::{Page, PageRequest};
use super::plugins::Scripts;
use super::webhooks;
use crate::domain::ContactId;
use crate::domain::partner::EventType;
use crate::domain::survey::{ProfileUpdates, Question, SurveyDefinition, check_answer};
use crate::domain::{Contact, SurveyId};
use crate::error::{Error, FieldError, Result};
use crate::plugins::{PluginHost, Script, ScriptError};
use crate::storage::models::utc;
use crate::storage::surveys::{self as repo, ResponseRow, SurveyRow};
use crate::storage::{self, Db, DbConnection, contacts};

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";
/// A completion's outcome: `on_complete`'s updates were applied to the contact, or refused.
const APPLIED: &str = "applied";
const REFUSED: &str = "refused";

#[derive(Debug, Clone)]
pub struct Survey {
    pub id: SurveyId,
    pub definition: SurveyDefinition,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn survey(row: SurveyRow) -> Result<Survey> {
    Ok(Survey {
        id: row.id,
        definition: SurveyDefinition {
            name: row.name,
            title: row.title,
            intro: row.intro,
            questions: serde_json::from_str(&row.questions).map_err(Error::internal)?,
            plugin: row.plugin,
        },
        created_at: utc(row.created_at),
        updated_at: utc(row.updated_at),
    })
}

fn check(conn: &mut DbConnection, scripts: &Scripts, definition: &SurveyDefinition) -> Result<()> {
    let mut errors = definition.check();
    if let Some(plugin) = &definition.plugin
        && !super::plugins::exists_in(conn, &scripts.folder, plugin)?
    {
        errors.push(FieldError::new("plugin", format!("there is no plugin {plugin}")));
    }
    if errors.is_empty() { Ok(()) } else { Err(Error::Validation(errors)) }
}

fn row_of(id: SurveyId, definition: &SurveyDefinition, created_at: chrono::NaiveDateTime) -> Result<SurveyRow> {
    Ok(SurveyRow {
        id,
        name: definition.name.clone(),
        title: definition.title.clone(),
        intro: definition.intro.clone(),
        questions: serde_json::to_string(&definition.questions).map_err(Error::internal)?,
        plugin: definition.plugin.clone(),
        created_at,
        updated_at: storage::now(),
    })
}

pub async fn create_survey(db: &Db, scripts: &Scripts, definition: SurveyDefinition) -> Result<Survey> {
    let scripts = scripts.clone();
    db.write(move |conn| {
        check(conn, &scripts, &definition)?;
        let row = row_of(SurveyId::new(), &definition, storage::now())?;
        repo::insert_survey(conn, &row)?;
        survey(row)
    })
    .await
}

pub async fn update_survey(db: &Db, scripts: &Scripts, id: SurveyId, definition: SurveyDefinition) -> Result<Survey> {
    let scripts = scripts.clone();
    db.write(move |conn| {
        let current = repo::find_survey(conn, id)?.ok_or_else(|| not_found(id))?;
        check(conn, &scripts, &definition)?;
        let row = row_of(current.id, &definition, current.created_at)?;
        repo::update_survey(conn, &row)?;
        survey(row)
    })
    .await
}

pub async fn find_survey(db: &Db, id: SurveyId) -> Result<Survey> {
    db.read(move |conn| survey(repo::find_survey(conn, id)?.ok_or_else(|| not_found(id))?)).await
}

pub async fn list_surveys(db: &Db, page: PageRequest) -> Result<Page<Survey>> {
    db.read(move |conn| {
        let rows = repo::list_surveys(conn, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(survey)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.page(rows, |s| s.id.to_string()))
    })
    .await
}

/// Deletes a survey and its answers; forms that offered it stop offering it.
pub async fn delete_survey(db: &Db, id: SurveyId) -> Result<()> {
    db.write(move |conn| {
        if repo::delete_survey(conn, id)? == 0 {
            return Err(not_found(id));
        }
        Ok(())
    })
    .await
}

fn not_found(id: SurveyId) -> Error {
    Error::NotFound(format!("there is no survey {id}"))
}

/// Starts (or resumes) a contact's response to a survey, in the caller's transaction;
/// answers the signed link to it, or `None` when the contact already completed it or the
/// survey no longer exists.
pub fn start_in(
    conn: &mut DbConnection,
    keys: &Keys,
    base_url: &str,
    link_ttl: TimeDelta,
    survey_id: SurveyId,
    contact_id: ContactId,
) -> Result<Option<String>> {
    if repo::find_survey(conn, survey_id)?.is_none() {
        return Ok(None);
    }
    let response = match repo::find_contact_response(conn, survey_id, contact_id)? {
        Some(response) if response.status == COMPLETED => return Ok(None),
        Some(response) => response,
        None => {
            let now = storage::now();
            let row = ResponseRow {
                id: uuid::Uuid::now_v7().to_string(),
                survey_id,
                contact_id,
                answers: "{}".to_owned(),
                status: IN_PROGRESS.to_owned(),
                created_at: now,
                updated_at: now,
                completed_at: None,
                outcome: None,
                updates: None,
                error: None,
            };
            repo::insert_response(conn, &row)?;
            row
        }
    };
    let token = keys.sign_link(LinkKind::Survey, &response.id, None, Some(Utc::now() + link_ttl));
    Ok(Some(format!("{base_url}/s/{token}")))
}

/// Where a person stands in a survey.
#[derive(Debug, Clone)]
pub struct SurveyState {
    pub survey_id: SurveyId,
    pub title: String,
    pub intro: String,
    pub answers: Map<String, Value>,
    /// The question to answer now; `None` once completed.
    pub question: Option<Question>,
    pub completed: bool,
    pub total_questions: usize,
}

/// A survey's questions as scripts see them.
fn survey_for_script(survey: &Survey) -> Value {
    json!({
        "id": survey.id.to_string(),
        "name": survey.definition.name,
        "questions": survey.definition.questions.iter().map(|q| json!({
            "id": q.id, "text": q.text, "kind": q.kind.as_str(), "options": q.options, "required": q.required,
        })).collect::<Vec<_>>(),
    })
}

fn script_failed(error: ScriptError) -> Error {
    tracing::error!(error = %error.describe(), "survey script failed");
    Error::internal(error.describe())
}

/// What a survey link leads to, read at once: the response, its survey, the plugin that
/// picks questions and maps answers, and the contact (for `on_complete`). The scripts then
/// run on it with no connection held.
struct Snapshot {
    response: ResponseRow,
    survey: Survey,
    loaded: Option<Script>,
    contact: Option<Contact>,
}

fn load_snapshot(conn: &mut DbConnection, keys: &Keys, scripts: &Scripts, token: &str) -> Result<Option<Snapshot>> {
    let Some((response, survey)) = load_response(conn, keys, token)? else {
        return Ok(None);
    };
    let loaded = match &survey.definition.plugin {
        Some(plugin) => Some(scripts.load_in(conn, plugin)?),
        None => None,
    };
    let contact = contacts::find_contact(conn, response.contact_id)?;
    Ok(Some(Snapshot { response, survey, loaded, contact }))
}

/// Runs script work off the async executor (it is CPU work, bounded by the sandbox).
async fn off_executor<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(Error::internal)?
}

/// The next question: the `next_question` hook's pick, or (without a plugin, or a plugin
/// without the hook) the first question not answered yet. `None`: the survey is done.
fn next_question(
    host: &PluginHost,
    loaded: Option<&Script>,
    survey: &Survey,
    answers: &Map<String, Value>,
) -> Result<Option<Question>> {
    let in_order = || survey.definition.questions.iter().find(|q| !answers.contains_key(&q.id)).cloned();
    let Some(loaded) = loaded else {
        return Ok(in_order());
    };
    let arguments = [Value::Object(answers.clone()), survey_for_script(survey)];
    let Some((answer, _)) = loaded.call(host, "next_question", &arguments).map_err(script_failed)? else {
        return Ok(in_order());
    };
    if answer.is_nothing() {
        return Ok(None);
    }
    let id = answer.as_text().ok_or_else(|| {
        script_failed(
            loaded.wrong_answer(format!("next_question must answer a question id or (); it answered {answer}")),
        )
    })?;
    match survey.definition.question(&id) {
        Some(question) if !answers.contains_key(&id) => Ok(Some(question.clone())),
        _ => Err(script_failed(loaded.wrong_answer(format!(
            "next_question answered {id:?}, which is not a question of the survey left to answer"
        )))),
    }
}

fn load_response(conn: &mut DbConnection, keys: &Keys, token: &str) -> Result<Option<(ResponseRow, Survey)>> {
    let Some(claims) = keys.verify_link(LinkKind::Survey, token) else {
        return Ok(None);
    };
    let Some(response) = repo::find_response(conn, &claims.subject)? else {
        return Ok(None);
    };
    let Some(row) = repo::find_survey(conn, response.survey_id)? else {
        return Ok(None);
    };
    Ok(Some((response, survey(row)?)))
}

fn state_of(host: &PluginHost, snapshot: &Snapshot) -> Result<SurveyState> {
    let answers: Map<String, Value> = serde_json::from_str(&snapshot.response.answers).unwrap_or_default();
    let completed = snapshot.response.status == COMPLETED;
    let question =
        if completed { None } else { next_question(host, snapshot.loaded.as_ref(), &snapshot.survey, &answers)? };
    Ok(state_with(&snapshot.survey, answers, question, completed))
}

fn state_with(
    survey: &Survey,
    answers: Map<String, Value>,
    question: Option<Question>,
    completed: bool,
) -> SurveyState {
    SurveyState {
        survey_id: survey.id,
        title: survey.definition.title.clone(),
        intro: survey.definition.intro.clone(),
        answers,
        question,
        completed,
        total_questions: survey.definition.questions.len(),
    }
}

/// The survey behind a link, where the person stands; `None` for a link not valid.
pub async fn state(db: &Db, keys: &Keys, scripts: &Scripts, token: String) -> Result<Option<SurveyState>> {
    let (keys, for_read) = (keys.clone(), scripts.clone());
    let Some(snapshot) = db.read(move |conn| load_snapshot(conn, &keys, &for_read, &token)).await? else {
        return Ok(None);
    };
    let host = scripts.host.clone();
    off_executor(move || state_of(&host, &snapshot)).await.map(Some)
}

/// What an answer comes to, worked out from a snapshot before anything is written.
enum Plan {
    /// The survey was completed already: nothing to write.
    Done(SurveyState),
    Record {
        answers: Map<String, Value>,
        next: Option<Question>,
        /// Once the last answer is in: what `on_complete` answered, checked (`None`: there
        /// is no `on_complete` to run).
        completion: Option<Completion>,
    },
}

/// The updates of `on_complete` that passed the checks, or why they were refused.
type Completion = std::result::Result<ProfileUpdates, String>;

/// How many times an answer is worked out again when the response changed meanwhile (the
/// same link answered from two tabs at once).
const ANSWER_ATTEMPTS: usize = 3;

/// Records the answer to the question asked now and moves on; the last answer completes
/// the survey: `on_complete` runs and its updates are applied to the contact, or refused
/// (and the response says why). `None` for a link not valid. A wrong answer is a 422 naming
/// `answer`. The scripts run between a read and the write, never inside a write.
pub async fn answer(
    db: &Db,
    keys: &Keys,
    scripts: &Scripts,
    token: String,
    question_id: String,
    values: Vec<String>,
) -> Result<Option<SurveyState>> {
    for _ in 0..ANSWER_ATTEMPTS {
        let (keys, for_read, token) = (keys.clone(), scripts.clone(), token.clone());
        let Some(snapshot) = db.read(move |conn| load_snapshot(conn, &keys, &for_read, &token)).await? else {
            return Ok(None);
        };
        let (host, question_id, values) = (scripts.host.clone(), question_id.clone(), values.clone());
        let (snapshot, plan) = off_executor(move || {
            let plan = plan_answer(&host, &snapshot, &question_id, &values)?;
            Ok((snapshot, plan))
        })
        .await?;
        let plan = match plan {
            Plan::Done(state) => return Ok(Some(state)),
            plan => plan,
        };
        if let Some(state) = db.write(move |conn| record_answer(conn, &snapshot, plan)).await? {
            return Ok(Some(state));
        }
    }
    Err(Error::Conflict("this survey was being answered elsewhere at the same time; load it again".to_owned()))
}

fn plan_answer(host: &PluginHost, snapshot: &Snapshot, question_id: &str, values: &[String]) -> Result<Plan> {
    let current = state_of(host, snapshot)?;
    if current.completed {
        return Ok(Plan::Done(current));
    }
    let mut answers = current.answers;
    let Some(question) = current.question else {
        // The script has nothing more to ask: the survey completes with the answers given.
        let completion = run_on_complete(host, snapshot, &answers);
        return Ok(Plan::Record { answers, next: None, completion });
    };
    if question.id != question_id {
        return Err(Error::field("question_id", format!("the question asked now is {}", question.id)));
    }
    let value = check_answer(&question, values).map_err(|message| Error::field("answer", message))?;
    answers.insert(question.id.clone(), value);
    let next = next_question(host, snapshot.loaded.as_ref(), &snapshot.survey, &answers)?;
    let completion = if next.is_none() { run_on_complete(host, snapshot, &answers) } else { None };
    Ok(Plan::Record { answers, next, completion })
}

/// `on_complete(contact, answers)`, its answer checked; `None` without a plugin or contact.
fn run_on_complete(host: &PluginHost, snapshot: &Snapshot, answers: &Map<String, Value>) -> Option<Completion> {
    let (loaded, contact) = (snapshot.loaded.as_ref()?, snapshot.contact.as_ref()?);
    let arguments = [webhooks::contact_json(contact), Value::Object(answers.clone())];
    Some(loaded.call(host, "on_complete", &arguments).map_err(|e| e.describe()).and_then(|answer| {
        answer.map_or(Ok(ProfileUpdates::default()), |(answer, _)| {
            ProfileUpdates::from_answer(loaded.name(), answer.to_json())
        })
    }))
}

/// Writes what the plan worked out, if the response is still as it was read; `None` when
/// it changed meanwhile (the caller works it out again).
fn record_answer(conn: &mut DbConnection, snapshot: &Snapshot, plan: Plan) -> Result<Option<SurveyState>> {
    let Plan::Record { answers, next, completion } = plan else {
        return Ok(None);
    };
    let Some(mut response) = repo::find_response(conn, &snapshot.response.id)? else {
        return Ok(None);
    };
    if response.answers != snapshot.response.answers || response.status != snapshot.response.status {
        return Ok(None);
    }
    let survey = &snapshot.survey;
    response.answers = Value::Object(answers.clone()).to_string();
    response.updated_at = storage::now();
    if let Some(question) = next {
        repo::update_response(conn, &response)?;
        return Ok(Some(state_with(survey, answers, Some(question), false)));
    }
    complete(conn, response, survey, answers, completion).map(Some)
}

/// Completes a response: the updates of `on_complete` (checked before) applied to the
/// contact; `survey.completed` queued. Updates that did not pass the checks are not applied:
/// the answers are kept, and the response records the refusal and its reason
/// (`outcome: refused`, `error`) for admins to see.
fn complete(
    conn: &mut DbConnection,
    mut response: ResponseRow,
    survey: &Survey,
    answers: Map<String, Value>,
    completion: Option<Completion>,
) -> Result<SurveyState> {
    let now = storage::now();
    let mut applied = Value::Null;
    match completion {
        Some(Ok(updates)) => {
            apply_updates(conn, response.contact_id, &updates, now)?;
            applied = updates.as_json();
            response.outcome = Some(APPLIED.to_owned());
            response.updates = Some(applied.to_string());
        }
        Some(Err(fault)) => {
            tracing::warn!(survey = %survey.id, error = %fault, "survey updates refused");
            response.outcome = Some(REFUSED.to_owned());
            response.error = Some(fault);
        }
        None => {}
    }
    response.status = COMPLETED.to_owned();
    response.completed_at = Some(now);
    response.updated_at = now;
    repo::update_response(conn, &response)?;
    webhooks::emit(
        conn,
        EventType::SurveyCompleted,
        json!({
            "survey_id": survey.id.to_string(),
            "contact_id": response.contact_id,
            "answers": answers,
            "updates": applied,
            "outcome": response.outcome,
            "error": response.error,
        }),
    )?;
    Ok(state_with(survey, answers, None, true))
}

fn apply_updates(
    conn: &mut DbConnection,
    contact_id: ContactId,
    updates: &ProfileUpdates,
    now: chrono::NaiveDateTime,
) -> Result<()> {
    if updates.attributes.is_empty() && updates.tags.is_empty() {
        return Ok(());
    }
    if let Some(mut row) = contacts::find_contact_row_by_id(conn, contact_id)? {
        let mut attributes: Value = serde_json::from_str(&row.attributes).unwrap_or(Value::Object(Map::new()));
        super::contacts::merge_patch(&mut attributes, Value::Object(updates.attributes.clone()));
        row.attributes = attributes.to_string();
        row.updated_at = now;
        contacts::update_contact(conn, &row)?;
        let tags: Vec<(ContactId, String)> =
            updates.tags.iter().map(|tag| (contact_id, tag.as_str().to_owned())).collect();
        contacts::add_tags(conn, &tags)?;
        webhooks::emit_contact(conn, EventType::ContactUpdated, contact_id)?;
    }
    Ok(())
}

/// A response as admins see it: the answers, and what its completion came to.
#[derive(Debug, Clone)]
pub struct ResponseView {
    pub id: String,
    pub contact_id: ContactId,
    pub status: String,
    pub answers: Value,
    /// `applied` or `refused`; `None` until completed, or without a plugin.
    pub outcome: Option<String>,
    pub updates: Option<Value>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A survey's responses, a page at a time, oldest first.
pub async fn list_responses(db: &Db, id: SurveyId, page: PageRequest) -> Result<Page<ResponseView>> {
    db.read(move |conn| {
        repo::find_survey(conn, id)?.ok_or_else(|| not_found(id))?;
        let rows = repo::list_survey_responses(conn, id, page.after.as_deref(), page.fetch_limit())?
            .into_iter()
            .map(|row| ResponseView {
                answers: serde_json::from_str(&row.answers).unwrap_or(Value::Null),
                updates: row.updates.as_deref().and_then(|u| serde_json::from_str(u).ok()),
                id: row.id,
                contact_id: row.contact_id,
                status: row.status,
                outcome: row.outcome,
                error: row.error,
                created_at: utc(row.created_at),
                completed_at: row.completed_at.map(utc),
            })
            .collect();
        Ok(page.page(rows, |r: &ResponseView| r.id.clone()))
    })
    .await
}

/// A contact's answers, for the data export.
#[derive(Debug, Clone)]
pub struct ResponseExport {
    pub survey_id: SurveyId,
    pub answers: Value,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

pub fn export_in(conn: &mut DbConnection, contact_id: ContactId) -> Result<Vec<ResponseExport>> {
    Ok(repo::list_contact_responses(conn, contact_id)?
        .into_iter()
        .map(|row| ResponseExport {
            survey_id: row.survey_id,
            answers: serde_json::from_str(&row.answers).unwrap_or(Value::Null),
            status: row.status,
            created_at: utc(row.created_at),
            completed_at: row.completed_at.map(utc),
        })
        .collect())
}
