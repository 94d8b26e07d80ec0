//! `/api/v1/surveys` (defining surveys) and `/s/{token}` (a person answering one: a page
//! that works without JavaScript, or JSON for sites that draw their own).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, delete, get, http::header, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiQuery, Editor, LimitedBody, RequestBody, Viewer, parse_id};
use super::{AppState, PageQuery};
use crate::domain::SurveyId;
use crate::domain::survey::{Question, QuestionKind, SurveyDefinition, answer_values};
use crate::error::{Error, FieldErrors, Result};
use crate::i18n;
use crate::services::pagination::PageRequest;
use crate::services::surveys::{self as service, Survey, SurveyState};

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionBody {
    /// What answers and scripts call it: a-z, 0-9 and `_`.
    #[schema(example = "pets")]
    pub id: String,
    #[schema(example = "Do you have pets?")]
    pub text: String,
    /// `single_choice`, `multiple_choice`, `text`, `number`, `rating` or `yes_no`.
    #[serde(rename = "type")]
    #[schema(example = "single_choice")]
    pub kind: String,
    #[serde(default)]
    pub required: bool,
    /// The choices of a single or multiple choice.
    #[serde(default)]
    pub options: Vec<String>,
    /// Bounds of a number; a rating runs from `min` (default 1) to `max` (default 5).
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl From<&Question> for QuestionBody {
    fn from(q: &Question) -> Self {
        Self {
            id: q.id.clone(),
            text: q.text.clone(),
            kind: q.kind.as_str().to_owned(),
            required: q.required,
            options: q.options.clone(),
            min: q.min,
            max: q.max,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SurveyRequest {
    /// For admins.
    #[schema(value_type = super::values::LineText)]
    pub name: String,
    /// What people see as the heading.
    #[schema(value_type = super::values::LineText)]
    pub title: String,
    #[serde(default)]
    pub intro: String,
    pub questions: Vec<QuestionBody>,
    /// A plugin whose `next_question(answers, survey)` picks each question (unset: in
    /// order) and whose `on_complete(contact, answers)` returns
    /// `#{attributes: #{}, tags: []}` to apply to the contact.
    pub plugin: Option<String>,
}

impl RequestBody for SurveyRequest {}

impl SurveyRequest {
    fn parse(self) -> Result<SurveyDefinition> {
        let mut errors = FieldErrors::new();
        let mut questions = Vec::new();
        for (i, q) in self.questions.into_iter().enumerate() {
            if let Some(kind) = errors.check(&format!("questions[{i}].type"), q.kind.parse::<QuestionKind>()) {
                questions.push(Question {
                    id: q.id,
                    text: q.text,
                    kind,
                    required: q.required,
                    options: q.options,
                    min: q.min,
                    max: q.max,
                });
            }
        }
        let definition =
            SurveyDefinition { name: self.name, title: self.title, intro: self.intro, questions, plugin: self.plugin };
        for error in definition.check() {
            errors.push(error.field, error.message);
        }
        errors.finish(|| Some(definition))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SurveyResponse {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub name: String,
    pub title: String,
    pub intro: String,
    pub questions: Vec<QuestionBody>,
    pub plugin: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Survey> for SurveyResponse {
    fn from(survey: Survey) -> Self {
        let d = survey.definition;
        Self {
            id: survey.id.to_string(),
            questions: d.questions.iter().map(Into::into).collect(),
            name: d.name,
            title: d.title,
            intro: d.intro,
            plugin: d.plugin,
            created_at: survey.created_at,
            updated_at: survey.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SurveyPage {
    pub items: Vec<SurveyResponse>,
    pub next_cursor: Option<String>,
}

fn survey_id(raw: &str) -> Result<SurveyId> {
    parse_id(raw, "survey")
}

#[utoipa::path(
    tag = "surveys",
    request_body = SurveyRequest,
    responses((status = 201, description = "The survey was created; attach it to a form with `survey_id`", body = SurveyResponse,
               headers(("Location" = String, description = "The survey's URL")))),
    security(("bearer" = []))
)]
#[post("/surveys")]
pub async fn create_survey(
    _: Editor,
    state: web::Data<AppState>,
    body: ApiJson<SurveyRequest>,
) -> Result<HttpResponse> {
    let survey = service::create_survey(&state.db, &state.scripts, body.0.parse()?).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/surveys/{}", survey.id)))
        .json(SurveyResponse::from(survey)))
}

#[utoipa::path(
    tag = "surveys",
    params(PageQuery),
    responses((status = 200, description = "One page of surveys, oldest first", body = SurveyPage)),
    security(("bearer" = []))
)]
#[get("/surveys")]
pub async fn list_surveys(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<SurveyPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_surveys(&state.db, page).await?;
    Ok(web::Json(SurveyPage { items: page.items.into_iter().map(Into::into).collect(), next_cursor: page.next_cursor }))
}

#[utoipa::path(
    tag = "surveys",
    params(("id" = String, Path, description = "The survey's id")),
    responses((status = 200, description = "The survey", body = SurveyResponse)),
    security(("bearer" = []))
)]
#[get("/surveys/{id}")]
pub async fn get_survey(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<SurveyResponse>> {
    Ok(web::Json(service::find_survey(&state.db, survey_id(&id)?).await?.into()))
}

#[utoipa::path(
    tag = "surveys",
    params(("id" = String, Path, description = "The survey's id")),
    request_body = SurveyRequest,
    responses((status = 200, description = "The survey as replaced", body = SurveyResponse)),
    security(("bearer" = []))
)]
#[put("/surveys/{id}")]
pub async fn update_survey(
    _: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<SurveyRequest>,
) -> Result<web::Json<SurveyResponse>> {
    let id = survey_id(&id)?;
    Ok(web::Json(service::update_survey(&state.db, &state.scripts, id, body.0.parse()?).await?.into()))
}

#[utoipa::path(
    tag = "surveys",
    params(("id" = String, Path, description = "The survey's id")),
    responses((status = 204, description = "Deleted, with its answers")),
    security(("bearer" = []))
)]
#[delete("/surveys/{id}")]
pub async fn delete_survey(_: Editor, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    service::delete_survey(&state.db, survey_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A person's response, as admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SurveyResponseItem {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    #[schema(value_type = String, format = Uuid)]
    pub contact_id: String,
    /// `in_progress` or `completed`.
    pub status: String,
    /// The answers so far, by question id.
    #[schema(value_type = Object)]
    pub answers: Value,
    /// What the completion came to with a plugin: `applied` (its `on_complete` updates were
    /// made to the contact, see `updates`) or `refused` (they did not pass the checks, see
    /// `error`: nothing was changed); `null` before completion or without a plugin.
    pub outcome: Option<String>,
    /// `{"attributes": {}, "tags": []}` as applied.
    #[schema(value_type = Option<Object>)]
    pub updates: Option<Value>,
    /// Why the updates were refused.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<service::ResponseView> for SurveyResponseItem {
    fn from(r: service::ResponseView) -> Self {
        Self {
            id: r.id,
            contact_id: r.contact_id.to_string(),
            status: r.status,
            answers: r.answers,
            outcome: r.outcome,
            updates: r.updates,
            error: r.error,
            created_at: r.created_at,
            completed_at: r.completed_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SurveyResponsePage {
    pub items: Vec<SurveyResponseItem>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    tag = "surveys",
    params(("id" = String, Path, description = "The survey's id"), PageQuery),
    responses((status = 200, description = "The survey's responses, oldest first, each with what its completion came to", body = SurveyResponsePage)),
    security(("bearer" = []))
)]
#[get("/surveys/{id}/responses")]
pub async fn list_survey_responses(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<SurveyResponsePage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_responses(&state.db, survey_id(&id)?, page).await?;
    Ok(web::Json(SurveyResponsePage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Where a person stands in a survey (the JSON form of `/s/{token}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SurveyStateResponse {
    #[schema(value_type = String, format = Uuid)]
    pub survey_id: String,
    pub title: String,
    pub intro: String,
    /// The question to answer now; `null` once completed.
    pub question: Option<QuestionBody>,
    pub completed: bool,
    /// The answers so far, by question id.
    #[schema(value_type = Object)]
    pub answers: Map<String, Value>,
    pub total_questions: usize,
}

impl From<SurveyState> for SurveyStateResponse {
    fn from(state: SurveyState) -> Self {
        Self {
            survey_id: state.survey_id.to_string(),
            title: state.title,
            intro: state.intro,
            question: state.question.as_ref().map(Into::into),
            completed: state.completed,
            answers: state.answers,
            total_questions: state.total_questions,
        }
    }
}

/// An answer, as a site's script sends it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    /// The question answered: the one asked now.
    pub question_id: String,
    /// A string, number, boolean, or an array of strings for a multiple choice; `null` to
    /// skip a question that is not required.
    pub answer: Value,
}

fn wants_json(req: &HttpRequest) -> bool {
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

fn invalid_link() -> Error {
    Error::NotFound("this survey link is not valid or has expired".to_owned())
}

#[utoipa::path(
    tag = "public",
    params(("token" = String, Path, description = "The token of the survey link")),
    responses(
        (status = 200, description = "The question to answer now (a page, or JSON with `Accept: application/json`)", content(
            (SurveyStateResponse = "application/json"),
            (String = "text/html"),
        )),
        (status = 404, description = "The link is not valid or has expired (a page, or a problem for JSON)", content(
            (super::Problem = "application/problem+json"),
            (String = "text/html"),
        )),
    )
)]
#[get("/s/{token}")]
pub async fn show_survey(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse> {
    let survey = service::state(&state.db, &state.keys, &state.scripts, token.clone()).await?;
    if wants_json(&req) {
        let survey = survey.ok_or_else(invalid_link)?;
        return Ok(HttpResponse::Ok().json(SurveyStateResponse::from(survey)));
    }
    let frame = super::public::default_frame(&state, &req).await?;
    match survey {
        None => state.pages.invalid_link(&frame),
        Some(survey) => survey_page(&state, &frame, &token, survey, None),
    }
}

fn survey_page(
    state: &AppState,
    frame: &super::pages::Frame,
    token: &str,
    survey: SurveyState,
    error: Option<String>,
) -> Result<HttpResponse> {
    let Some(question) = survey.question.as_ref() else {
        return state.pages.message(
            StatusCode::OK,
            frame,
            "survey_done_title",
            &[i18n::text(&frame.locale, "survey_done_text")],
            &[],
        );
    };
    let (rating_min, rating_max) = question.rating_range();
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    state.pages.page(
        status,
        "survey.html",
        frame,
        minijinja::context! {
            title => survey.title,
            intro => survey.intro,
            first => survey.answers.is_empty(),
            question => question,
            rating_min, rating_max,
            error,
            action => format!("{}/s/{token}", state.signup.base_url),
        },
    )
}

#[utoipa::path(
    tag = "public",
    params(("token" = String, Path, description = "The token of the survey link")),
    request_body(content(
        (AnswerRequest = "application/json"),
        (String = "application/x-www-form-urlencoded")
    ), description = "The page posts `question_id` and `answer` (once per ticked choice); a site's script posts JSON."),
    responses(
        (status = 200, description = "Recorded: the next question, or completed (JSON; a page for a form post)", content(
            (SurveyStateResponse = "application/json"),
            (String = "text/html"),
        )),
        (status = 303, description = "Recorded: on to the next question (page)"),
        (status = 404, description = "The link is not valid or has expired (a page, or a problem for JSON)", content(
            (super::Problem = "application/problem+json"),
            (String = "text/html"),
        )),
        (status = 415, description = "Neither form-encoded nor JSON", body = super::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The answer does not fit the question (JSON: `answer` or `question_id` named; page: shown beside it)", content(
            (super::Problem = "application/problem+json"),
            (String = "text/html"),
        )),
    )
)]
#[post("/s/{token}")]
pub async fn answer_survey(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Path<String>,
    body: LimitedBody,
) -> Result<HttpResponse> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_json = content_type.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    let (question_id, values) = if is_json {
        let request: AnswerRequest = serde_json::from_slice(&body.0).map_err(|e| {
            Error::BadRequest(format!("the body is not an answer: {e} (line {}, column {})", e.line(), e.column()))
        })?;
        (request.question_id, answer_values(&request.answer))
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let mut question_id = String::new();
        let mut values = Vec::new();
        for (name, value) in form_urlencoded::parse(&body.0) {
            match name.as_ref() {
                "question_id" => question_id = value.into_owned(),
                "answer" => values.push(value.into_owned()),
                _ => {}
            }
        }
        (question_id, values)
    } else {
        return Err(Error::UnsupportedMediaType(
            "send the answer as application/x-www-form-urlencoded or application/json".to_owned(),
        ));
    };
    let outcome = service::answer(&state.db, &state.keys, &state.scripts, token.clone(), question_id, values).await;
    if is_json {
        let survey = outcome?.ok_or_else(invalid_link)?;
        return Ok(HttpResponse::Ok().json(SurveyStateResponse::from(survey)));
    }
    let frame = super::public::default_frame(&state, &req).await?;
    match outcome {
        Ok(None) => state.pages.invalid_link(&frame),
        Ok(Some(_)) => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("{}/s/{token}", state.signup.base_url)))
            .finish()),
        Err(Error::Validation(errors)) => {
            let message = errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
            match service::state(&state.db, &state.keys, &state.scripts, token.clone()).await? {
                Some(survey) => survey_page(&state, &frame, &token, survey, Some(message)),
                None => state.pages.invalid_link(&frame),
            }
        }
        Err(error) => Err(error),
    }
}
