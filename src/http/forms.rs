//! `/api/v1/forms`: signup forms. Every change makes a new version.

use actix_web::{HttpResponse, delete, get, http::header, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::{ApiJson, ApiQuery, Editor, RequestBody, Viewer, parse_id};
use super::{AppState, PageQuery};
use crate::domain::FormId;
use crate::domain::brand::Color;
use crate::domain::form::{
    ConsentCheckbox, FieldKind, FormDefinition, FormField, FormFont, FormLayout, FormLook, FormOptIn, FormSurvey,
    SurveyMoment,
};
use crate::error::{Error, FieldError, FieldErrors, Result};
use crate::services::forms::{self as service, Form, check_slug};
use crate::services::pagination::PageRequest;

/// A custom field of a form.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldBody {
    /// The attribute it fills: a-z, 0-9 and `_`.
    #[schema(example = "first_name")]
    pub name: String,
    #[schema(value_type = super::values::LineText)]
    pub label: String,
    /// `text`, `number`, `date`, `select`, `multi_select`, `checkbox` or `country`.
    #[serde(rename = "type")]
    #[schema(example = "text")]
    pub kind: String,
    #[serde(default)]
    pub required: bool,
    /// The choices of a select or multi-select.
    #[serde(default)]
    pub options: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_length: Option<u32>,
}

/// One consent checkbox: the list and the exact words beside the box.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentCheckboxBody {
    #[schema(format = Uuid)]
    pub list_id: String,
    #[schema(example = "Send me the monthly newsletter. I can unsubscribe at any time.")]
    pub text: String,
}

/// How a form looks, chosen without writing HTML. Colours left out come from the brand.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookBody {
    /// Buttons, links and focus rings, as `#rrggbb`.
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$", example = "#7c2d12")]
    pub accent_color: Option<String>,
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$", example = "#fffbeb")]
    pub background_color: Option<String>,
    #[schema(pattern = "^#[0-9A-Fa-f]{6}$", example = "#1c1917")]
    pub text_color: Option<String>,
    /// `system` (the default), `serif`, `rounded` or `monospace`: fonts every device has.
    #[schema(example = "system")]
    pub font: Option<String>,
    /// The submit button's words; unset: "Subscribe" in the page's language.
    pub button_label: Option<String>,
    /// `stacked` (the default) or `two_columns`.
    #[schema(example = "stacked")]
    pub layout: Option<String>,
    /// CSS for this form only (it applies inside the form's own element). It may not load
    /// anything (`@import`, `url()`) nor contain `<`.
    pub custom_css: Option<String>,
}

impl LookBody {
    fn from_look(look: &FormLook) -> Self {
        let color = |c: &Option<Color>| c.as_ref().map(|c| c.as_str().to_owned());
        Self {
            accent_color: color(&look.accent_color),
            background_color: color(&look.background_color),
            text_color: color(&look.text_color),
            font: Some(
                match look.font {
                    FormFont::System => "system",
                    FormFont::Serif => "serif",
                    FormFont::Rounded => "rounded",
                    FormFont::Monospace => "monospace",
                }
                .to_owned(),
            ),
            button_label: look.button_label.clone(),
            layout: Some(
                match look.layout {
                    FormLayout::Stacked => "stacked",
                    FormLayout::TwoColumns => "two_columns",
                }
                .to_owned(),
            ),
            custom_css: look.custom_css.clone(),
        }
    }

    fn parse(self, errors: &mut FieldErrors) -> FormLook {
        let mut color = |field: &str, value: Option<String>| {
            value.and_then(|value| errors.check(&format!("look.{field}"), Color::parse(&value)))
        };
        let accent_color = color("accent_color", self.accent_color);
        let background_color = color("background_color", self.background_color);
        let text_color = color("text_color", self.text_color);
        let font = match self.font.as_deref() {
            None | Some("system") => FormFont::System,
            Some("serif") => FormFont::Serif,
            Some("rounded") => FormFont::Rounded,
            Some("monospace") => FormFont::Monospace,
            Some(_) => {
                errors.push("look.font", "must be system, serif, rounded or monospace");
                FormFont::System
            }
        };
        let layout = match self.layout.as_deref() {
            None | Some("stacked") => FormLayout::Stacked,
            Some("two_columns") => FormLayout::TwoColumns,
            Some(_) => {
                errors.push("look.layout", "must be stacked or two_columns");
                FormLayout::Stacked
            }
        };
        let button_label = self.button_label.map(|l| l.trim().to_owned());
        let custom_css = self.custom_css.filter(|css| !css.trim().is_empty());
        FormLook { accent_color, background_color, text_color, font, button_label, layout, custom_css }
    }
}

/// A form's definition.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FormBody {
    /// The hosted page is `/f/<slug>`.
    #[schema(example = "newsletter")]
    pub slug: String,
    /// For admins; people see the title.
    #[schema(value_type = super::values::LineText)]
    pub name: String,
    /// `en`, `fr`, `de` or `it` for the built-in texts; unset: the browser's language.
    pub locale: Option<String>,
    pub title: String,
    #[serde(default)]
    pub intro: String,
    #[serde(default)]
    pub fields: Vec<FieldBody>,
    pub consents: Vec<ConsentCheckboxBody>,
    #[serde(default = "default_opt_in")]
    #[schema(value_type = super::values::FormOptInName, inline)]
    pub opt_in: String,
    /// Business-to-business: a required company field; addresses are recorded as
    /// `b2b_professional`, or `b2b_role_address` for info@, sales@…
    #[serde(default)]
    pub b2b: bool,
    #[serde(default)]
    pub thank_you_text: String,
    /// Where the hosted page sends people after a successful signup.
    pub redirect_url: Option<String>,
    /// Origins whose scripts may submit JSON (CORS), e.g. `https://www.example.org`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub confirmation_subject: Option<String>,
    /// A template for the confirmation mail's text; it must contain `{{ confirm_url }}`
    /// and may use `{{ lists }}` and `{{ form_title }}`.
    pub confirmation_text: Option<String>,
    /// Co-registration partners (`/api/v1/partners`), each shown with its own unticked box.
    #[serde(default)]
    pub partners: Vec<String>,
    /// A survey (`/api/v1/surveys`) offered after the signup.
    pub survey_id: Option<String>,
    /// `signup` (the page after submitting) or `confirmation` (the page after confirming a
    /// double opt-in); unset: `confirmation` on double opt-in forms, else `signup`.
    pub survey_after: Option<String>,
    /// The brand (`/api/v1/brands`) whose name, address and privacy policy the pages and
    /// mails show; unset: the default brand.
    #[schema(format = Uuid)]
    pub brand_id: Option<String>,
    #[serde(default)]
    pub look: LookBody,
}

fn default_opt_in() -> String {
    "double".to_owned()
}

impl RequestBody for FormBody {
    const SERVER_OWNED: &'static [&'static str] =
        &["id", "version", "hosted_url", "embed_url", "created_at", "updated_at"];
}

/// Changes to a form: a JSON merge patch (RFC 7396) over its definition.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(value_type = Object)]
pub struct FormPatch(pub serde_json::Map<String, Value>);

impl RequestBody for FormPatch {
    const SERVER_OWNED: &'static [&'static str] = FormBody::SERVER_OWNED;
}

/// A form as the server answers it: its definition's fields beside its own. The schema is
/// written out rather than derived: a derived one is `allOf` over the definition, whose
/// `additionalProperties: false` (a request refuses unknown fields) would then refuse the
/// response's own fields under JSON Schema 2020-12.
#[derive(Debug, Serialize)]
pub struct FormResponse {
    pub id: String,
    /// Increases with every change; consent events name the version the person saw.
    pub version: i32,
    pub hosted_url: String,
    pub embed_url: String,
    #[serde(flatten)]
    pub definition: FormBody,
    pub created_at: DateTime<Utc>,
    /// When this version was made.
    pub updated_at: DateTime<Utc>,
    /// What to know before people meet the form: it is saved, but a passive form, a vague
    /// consent text or a missing brand would weaken its consent or its page.
    pub warnings: Vec<super::problem::FieldFault>,
}

impl utoipa::PartialSchema for FormResponse {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, Type};
        let mut object = match FormBody::schema() {
            RefOr::T(Schema::Object(object)) => object,
            _ => Object::new(),
        };
        object.additional_properties = None;
        object.description = Some("A form: its definition, its version and its addresses.".to_owned());
        let warnings = utoipa::openapi::schema::ArrayBuilder::new()
            .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("FieldError")))
            .description(Some(
                "What to know before people meet the form: it is saved, but a passive form, a vague consent text \
                 or a missing brand would weaken its consent or its page.",
            ));
        let own: [(&str, RefOr<Schema>); 7] = [
            ("warnings", warnings.into()),
            (
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .into(),
            ),
            (
                "version",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                    .description(Some("Increases with every change; consent events name the version the person saw."))
                    .into(),
            ),
            ("hosted_url", ObjectBuilder::new().schema_type(Type::String).description(Some("The hosted page")).into()),
            ("embed_url", ObjectBuilder::new().schema_type(Type::String).description(Some("The embed snippet")).into()),
            (
                "created_at",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .into(),
            ),
            (
                "updated_at",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .description(Some("When this version was made."))
                    .into(),
            ),
        ];
        for (name, schema) in own {
            object.properties.insert(name.to_owned(), schema);
            object.required.push(name.to_owned());
        }
        // Every field of the definition is in a response, defaults filled in.
        let all: Vec<String> = object.properties.keys().cloned().collect();
        object.required = all;
        RefOr::T(Schema::Object(object))
    }
}

impl ToSchema for FormResponse {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        <FormBody as ToSchema>::schemas(schemas);
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FormPage {
    pub items: Vec<FormResponse>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FormVersionsResponse {
    /// Every version, oldest first.
    pub items: Vec<FormResponse>,
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Text => "text",
        FieldKind::Number => "number",
        FieldKind::Date => "date",
        FieldKind::Select => "select",
        FieldKind::MultiSelect => "multi_select",
        FieldKind::Checkbox => "checkbox",
        FieldKind::Country => "country",
    }
}

fn parse_kind(name: &str) -> Result<FieldKind, &'static str> {
    Ok(match name {
        "text" => FieldKind::Text,
        "number" => FieldKind::Number,
        "date" => FieldKind::Date,
        "select" => FieldKind::Select,
        "multi_select" => FieldKind::MultiSelect,
        "checkbox" => FieldKind::Checkbox,
        "country" => FieldKind::Country,
        _ => return Err("must be one of text, number, date, select, multi_select, checkbox, country"),
    })
}

impl FormBody {
    pub(crate) fn from_form(form: &Form) -> Self {
        let d = &form.definition;
        Self {
            slug: form.slug.clone(),
            name: d.name.clone(),
            locale: d.locale.clone(),
            title: d.title.clone(),
            intro: d.intro.clone(),
            fields: d
                .fields
                .iter()
                .map(|f| FieldBody {
                    name: f.name.clone(),
                    label: f.label.clone(),
                    kind: kind_name(f.kind).to_owned(),
                    required: f.required,
                    options: f.options.clone(),
                    min: f.min,
                    max: f.max,
                    max_length: f.max_length,
                })
                .collect(),
            consents: d
                .consents
                .iter()
                .map(|c| ConsentCheckboxBody { list_id: c.list_id.to_string(), text: c.text.clone() })
                .collect(),
            opt_in: match d.opt_in {
                FormOptIn::Double => "double",
                FormOptIn::Single => "single",
                FormOptIn::Passive => "passive",
            }
            .to_owned(),
            b2b: d.b2b,
            thank_you_text: d.thank_you_text.clone(),
            redirect_url: d.redirect_url.clone(),
            allowed_origins: d.allowed_origins.clone(),
            confirmation_subject: d.confirmation_subject.clone(),
            confirmation_text: d.confirmation_text.clone(),
            partners: d.partners.iter().map(ToString::to_string).collect(),
            survey_id: d.survey.map(|s| s.survey_id.to_string()),
            survey_after: d.survey.map(|s| {
                match s.after {
                    SurveyMoment::Signup => "signup",
                    SurveyMoment::Confirmation => "confirmation",
                }
                .to_owned()
            }),
            brand_id: d.brand_id.map(|id| id.to_string()),
            look: LookBody::from_look(&d.look),
        }
    }

    /// The slug and the definition, or every fault at once.
    pub(crate) fn parse(self) -> Result<(String, FormDefinition)> {
        let mut errors = FieldErrors::new();
        let slug = errors.check("slug", check_slug(&self.slug)).map(|()| self.slug.clone());
        let opt_in = errors.check(
            "opt_in",
            match self.opt_in.as_str() {
                "double" => Ok(FormOptIn::Double),
                "single" => Ok(FormOptIn::Single),
                "passive" => Ok(FormOptIn::Passive),
                _ => Err("must be double, single or passive"),
            },
        );
        let mut fields = Vec::new();
        for (i, field) in self.fields.into_iter().enumerate() {
            if let Some(kind) = errors.check(&format!("fields[{i}].type"), parse_kind(&field.kind)) {
                fields.push(FormField {
                    name: field.name,
                    label: field.label,
                    kind,
                    required: field.required,
                    options: field.options,
                    min: field.min,
                    max: field.max,
                    max_length: field.max_length,
                });
            }
        }
        let mut consents = Vec::new();
        for (i, consent) in self.consents.into_iter().enumerate() {
            if let Some(list_id) = errors
                .check(&format!("consents[{i}].list_id"), consent.list_id.parse().map_err(|_| "must be a list id"))
            {
                consents.push(ConsentCheckbox { list_id, text: consent.text });
            }
        }
        let mut partners = Vec::new();
        for (i, partner) in self.partners.iter().enumerate() {
            if let Some(id) =
                errors.check(&format!("partners[{i}]"), partner.parse().map_err(|_| "must be a partner id"))
            {
                partners.push(id);
            }
        }
        let after = errors.check(
            "survey_after",
            match (self.survey_after.as_deref(), opt_in) {
                (Some("signup"), _) => Ok(SurveyMoment::Signup),
                (Some("confirmation"), _) => Ok(SurveyMoment::Confirmation),
                (Some(_), _) => Err("must be signup or confirmation"),
                (None, Some(FormOptIn::Double)) => Ok(SurveyMoment::Confirmation),
                (None, _) => Ok(SurveyMoment::Signup),
            },
        );
        let survey = match &self.survey_id {
            Some(id) => errors
                .check("survey_id", id.parse().map_err(|_| "must be a survey id"))
                .and_then(|survey_id| after.map(|after| FormSurvey { survey_id, after })),
            None => None,
        };
        let brand_id = match &self.brand_id {
            Some(id) => errors.check("brand_id", id.parse().map_err(|_| "must be a brand id")),
            None => None,
        };
        let look = self.look.parse(&mut errors);
        let definition = FormDefinition {
            brand_id,
            look,
            partners,
            survey,
            name: self.name,
            locale: self.locale,
            title: self.title,
            intro: self.intro,
            fields,
            consents,
            opt_in: opt_in.unwrap_or(FormOptIn::Double),
            b2b: self.b2b,
            thank_you_text: self.thank_you_text,
            redirect_url: self.redirect_url,
            allowed_origins: self.allowed_origins,
            confirmation_subject: self.confirmation_subject,
            confirmation_text: None,
        };
        // The definition's own rules; the template and the lists are checked by the service.
        for error in definition.check() {
            if !error.field.starts_with("consents[") || !error.field.ends_with("list_id") {
                errors.push(error.field, error.message);
            }
        }
        let definition = FormDefinition { confirmation_text: self.confirmation_text, ..definition };
        errors.finish(|| Some((slug?, definition)))
    }
}

impl FormResponse {
    fn new(form: Form, base_url: &str, warnings: Vec<FieldError>) -> Self {
        Self {
            warnings: warnings.iter().map(Into::into).collect(),
            id: form.id.to_string(),
            version: form.version,
            hosted_url: format!("{base_url}/f/{}", form.slug),
            embed_url: format!("{base_url}/f/{}/embed", form.slug),
            definition: FormBody::from_form(&form),
            created_at: form.created_at,
            updated_at: form.updated_at,
        }
    }
}

#[utoipa::path(
    tag = "forms",
    request_body = FormBody,
    responses(
        (status = 201, description = "The form was created, at version 1", body = FormResponse,
         headers(("Location" = String, description = "The form's URL"))),
        (status = 409, description = "Another form has this slug", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[post("/forms")]
pub async fn create_form(editor: Editor, state: web::Data<AppState>, body: ApiJson<FormBody>) -> Result<HttpResponse> {
    let (slug, definition) = body.0.parse()?;
    let form = service::create_form(&state.db, slug, definition, editor.caller.actor().to_string()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/forms/{}", form.id)))
        .json(one_response(&state, form).await?))
}

/// The answers for forms, each with its warnings.
async fn responses(state: &AppState, forms: Vec<Form>) -> Result<Vec<FormResponse>> {
    let definitions = forms.iter().map(|f| f.definition.clone()).collect();
    let warnings = service::warnings(&state.db, definitions).await?;
    let base = &state.signup.base_url;
    Ok(forms.into_iter().zip(warnings).map(|(form, warnings)| FormResponse::new(form, base, warnings)).collect())
}

async fn one_response(state: &AppState, form: Form) -> Result<FormResponse> {
    let mut answers = responses(state, vec![form]).await?;
    answers.pop().ok_or_else(|| Error::internal("a form without its answer"))
}

/// The language of a preview.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// The page's language for a form without its own (`en`, `fr`, `de`, `it`, `es`, `pt`,
    /// `nl`, `pl`); unset: the form's, else English.
    #[param(example = "fr")]
    pub locale: Option<String>,
}

#[utoipa::path(
    tag = "forms",
    params(PreviewQuery),
    request_body = FormBody,
    responses((status = 200, description = "The hosted page as a person will see it, for a definition not saved yet", content_type = "text/html", body = String)),
    security(("bearer" = []))
)]
#[post("/forms/preview")]
pub async fn preview_new_form(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<PreviewQuery>,
    body: ApiJson<FormBody>,
) -> Result<HttpResponse> {
    let (slug, definition) = body.0.parse()?;
    let now = Utc::now();
    let form = Form { id: FormId::new(), slug, version: 0, definition, created_at: now, updated_at: now };
    super::public::preview_page(&state, &form, query.0.locale.as_deref()).await
}

#[utoipa::path(
    tag = "forms",
    params(("id" = String, Path, description = "The form's id"), PreviewQuery),
    responses((status = 200, description = "The hosted page as a person sees it now", content_type = "text/html", body = String)),
    security(("bearer" = []))
)]
#[get("/forms/{id}/preview")]
pub async fn preview_form(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: ApiQuery<PreviewQuery>,
) -> Result<HttpResponse> {
    let id: FormId = parse_id(&id, "form")?;
    let form = service::find_form(&state.db, id).await?;
    super::public::preview_page(&state, &form, query.0.locale.as_deref()).await
}

#[utoipa::path(
    tag = "forms",
    params(PageQuery),
    responses((status = 200, description = "One page of forms, at their current versions", body = FormPage)),
    security(("bearer" = []))
)]
#[get("/forms")]
pub async fn list_forms(
    _: Viewer,
    state: web::Data<AppState>,
    query: ApiQuery<PageQuery>,
) -> Result<web::Json<FormPage>> {
    let page = PageRequest::parse(query.0.cursor.as_deref(), query.0.limit)?;
    let page = service::list_forms(&state.db, page).await?;
    Ok(web::Json(FormPage { items: responses(&state, page.items).await?, next_cursor: page.next_cursor }))
}

#[utoipa::path(
    tag = "forms",
    params(("id" = String, Path, description = "The form's id")),
    responses((status = 200, description = "The form at its current version", body = FormResponse)),
    security(("bearer" = []))
)]
#[get("/forms/{id}")]
pub async fn get_form(_: Viewer, state: web::Data<AppState>, id: web::Path<String>) -> Result<web::Json<FormResponse>> {
    let id: FormId = parse_id(&id, "form")?;
    Ok(web::Json(one_response(&state, service::find_form(&state.db, id).await?).await?))
}

#[utoipa::path(
    tag = "forms",
    params(("id" = String, Path, description = "The form's id")),
    responses((status = 200, description = "Every version of the form, oldest first", body = FormVersionsResponse)),
    security(("bearer" = []))
)]
#[get("/forms/{id}/versions")]
pub async fn list_form_versions(
    _: Viewer,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<FormVersionsResponse>> {
    let id: FormId = parse_id(&id, "form")?;
    let versions = service::list_versions(&state.db, id).await?;
    Ok(web::Json(FormVersionsResponse { items: responses(&state, versions).await? }))
}

#[utoipa::path(
    tag = "forms",
    params(("id" = String, Path, description = "The form's id")),
    request_body(content = FormPatch, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The form at its new version", body = FormResponse),
        (status = 409, description = "Another form has this slug", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[patch("/forms/{id}")]
pub async fn update_form(
    editor: Editor,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: ApiJson<FormPatch>,
) -> Result<web::Json<FormResponse>> {
    let id: FormId = parse_id(&id, "form")?;
    let current = service::find_form(&state.db, id).await?;
    let mut merged = serde_json::to_value(FormBody::from_form(&current)).map_err(Error::internal)?;
    crate::services::contacts::merge_patch(&mut merged, Value::Object(body.0.0));
    let changed: FormBody = serde_path_to_error::deserialize(merged)
        .map_err(|e| Error::field(e.path().to_string(), e.inner().to_string()))?;
    let (slug, definition) = changed.parse()?;
    let form = service::update_form(&state.db, id, Some(slug), definition, editor.caller.actor().to_string()).await?;
    Ok(web::Json(one_response(&state, form).await?))
}

#[utoipa::path(
    tag = "forms",
    params(("id" = String, Path, description = "The form's id")),
    responses(
        (status = 204, description = "The form and its versions were deleted"),
        (status = 409, description = "The form collected consent: its versions are evidence and stay", body = super::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[delete("/forms/{id}")]
pub async fn delete_form(_: Editor, state: web::Data<AppState>, id: web::Path<String>) -> Result<HttpResponse> {
    let id: FormId = parse_id(&id, "form")?;
    service::delete_form(&state.db, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
