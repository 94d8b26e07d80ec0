//! HTTP: the only layer that knows actix-web and utoipa. A handler parses its input,
//! calls one service and maps the answer; every error leaves as problem+json.

pub mod api_keys;
pub mod auth;
pub mod bounces;
pub mod brands;
pub mod campaigns;
pub mod consent;
pub mod console;
pub mod contacts;
pub mod extract;
pub mod forms;
pub mod imports;
pub mod ledger;
pub mod lists;
pub mod ops;
pub mod pages;
pub mod partner_api;
pub mod partners;
pub mod plugins;
pub mod problem;
pub mod public;
pub mod segments;
pub mod suppressions;
pub mod surveys;
pub mod users;
pub mod values;
pub mod webhooks;

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpRequest, HttpResponse, body::MessageBody, web};
use serde::{Deserialize, Deserializer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as OpenApiDoc, PathItem, Ref, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi};
use utoipa_actix_web::{AppExt, UtoipaApp, scope};
use utoipa_swagger_ui::SwaggerUi;

pub use problem::Problem;

use crate::error::Error;
use crate::services::Services;

/// What handlers share: the services context, and what only HTTP needs.
pub struct AppState {
    pub services: Services,
    pub metrics: ops::Metrics,
    pub pages: pages::Pages,
    pub limiter: pages::RateLimiter,
}

/// Handlers read the services' handles (`state.db`, `state.keys`) as their own.
impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

/// `limit` and `cursor` of a collection.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 200.
    #[param(default = 50, minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: the id of the last item it held.
    #[param(format = Uuid)]
    pub cursor: Option<String>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "consento",
        description = "Self-hosted, consent-first email marketing server. Errors are RFC 9457 \
                       `application/problem+json` documents.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later")
    ),
    servers((url = "/", description = "The server that serves this document")),
    components(schemas(Problem, problem::FieldFault)),
    modifiers(&SecurityAndProblems),
    tags(
        (name = "auth", description = "Access tokens"),
        (name = "contacts", description = "The address book"),
        (name = "lists", description = "Lists contacts subscribe to"),
        (name = "users", description = "People who administer consento (admin only)"),
        (name = "api-keys", description = "Keys for integrations (admin only)"),
        (name = "forms", description = "Signup forms; every change is a new version"),
        (name = "brands", description = "Who is asking: the sender's identity on public pages and system mails"),
        (name = "consent", description = "The consent ledger, exports and erasure"),
        (name = "public", description = "Pages and endpoints for the people who sign up"),
        (name = "plugins", description = "Rhai scripts: managed, validated, dry-run"),
        (name = "segments", description = "Rhai predicates over contacts"),
        (name = "campaigns", description = "Templates, audience checks against the send policy, sending, statistics"),
        (name = "imports", description = "Imports with provenance manifests"),
        (name = "deliverability", description = "Bounce and complaint notifications from the mail provider"),
        (name = "partners", description = "Co-registration partners, their keys and the leads exchanged (admin only)"),
        (name = "partner-api", description = "The API partners call with their partner key: leads shared with them, leads they send, events"),
        (name = "webhooks", description = "Event subscriptions and the deliveries of every event, with their attempts (admin only)"),
        (name = "surveys", description = "Post-signup surveys"),
        (name = "operations", description = "Health and metrics"),
    )
)]
struct ApiDoc;

/// Declares the bearer scheme and adds the problem responses every operation can give,
/// derived from what the operation has (security, a body, parameters), so that no
/// handler's documentation can forget one.
struct SecurityAndProblems;

impl Modify for SecurityAndProblems {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "partner_key",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("partner key (cpk_…)").build(),
            ),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT access token or API key").build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in operations_mut(item) {
                let mut add = |status: &str, description: &str| {
                    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
                        ResponseBuilder::new()
                            .description(description)
                            .content(problem::CONTENT_TYPE, Content::new(Some(Ref::from_schema_name("Problem"))))
                            .build()
                            .into()
                    });
                };
                let secured = operation.security.as_ref().is_some_and(|security| !security.is_empty());
                // A public operation says so (`security: []`) rather than leaving it unsaid.
                if operation.security.is_none() {
                    operation.security = Some(Vec::new());
                }
                // A handler without a doc comment is summed up by its name in words.
                if operation.summary.is_none() {
                    operation.summary = operation.operation_id.as_deref().map(summary_of);
                }
                let has_body = operation.request_body.is_some();
                let has_query = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query));
                if secured {
                    add("401", "Missing, expired or invalid credentials");
                    add("403", "The caller's role does not allow this");
                }
                if has_body {
                    add("400", "The body is not valid JSON");
                    add("413", "The body is too large");
                    add("415", "The body is not JSON");
                    add("422", "Fields at fault, each named");
                }
                if has_query {
                    add("400", "The query string is invalid");
                    add("422", "Query parameters at fault, each named");
                }
                if path.contains('{') {
                    add("404", "Nothing has this id");
                }
                add("500", "Internal error; the detail is in the server log only");
            }
        }
        link_created_to_item_operations(openapi);
    }
}

/// `create_contact` as `Create contact`.
fn summary_of(operation_id: &str) -> String {
    let words = operation_id.replace('_', " ");
    let mut chars = words.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// Links from what a `POST` creates (its 201 answer's `id`) to the operations on
/// `…/{id}`, so that a client or a fuzzer's stateful phase can chain create, read, change
/// and delete.
fn link_created_to_item_operations(openapi: &mut OpenApiDoc) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::link::LinkBuilder;
    let mut links: Vec<(String, Vec<String>)> = Vec::new();
    for (path, item) in &openapi.paths.paths {
        let Some(collection) = path.strip_suffix("/{id}") else { continue };
        let targets: Vec<String> = [&item.get, &item.put, &item.patch, &item.delete]
            .into_iter()
            .flatten()
            .filter_map(|operation| operation.operation_id.clone())
            .collect();
        links.push((collection.to_owned(), targets));
    }
    for (collection, targets) in links {
        let Some(create) = openapi.paths.paths.get_mut(&collection).and_then(|item| item.post.as_mut()) else {
            continue;
        };
        let Some(RefOr::T(created)) = create.responses.responses.get_mut("201") else { continue };
        for target in targets {
            let link = LinkBuilder::new()
                .operation_id(target.clone())
                .parameter("id", "$response.body#/id")
                .description(format!("{} what was created", summary_of(&target)))
                .build();
            created.links.insert(target, RefOr::T(link));
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.options]
        .into_iter()
        .filter_map(Option::as_mut)
}

/// Every documented endpoint. Registering through utoipa-actix-web is what puts an
/// endpoint in the spec, so the spec cannot miss one.
fn register<T>(app: UtoipaApp<T>) -> UtoipaApp<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    app.service(ops::home)
        .service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics)
        .service(public::show_form)
        .service(public::embed_form)
        .service(public::embed_script)
        .service(public::submit_form)
        .service(public::preflight_form)
        .service(public::show_confirmation)
        .service(public::confirm)
        .service(public::show_unsubscribe)
        .service(public::unsubscribe)
        .service(public::show_preferences)
        .service(public::update_preferences)
        .service(public::show_data_request)
        .service(public::carry_out_data_request)
        .service(surveys::show_survey)
        .service(surveys::answer_survey)
        .service(ledger::checkpoint)
        .service(ledger::verifier_key)
        .service(ledger::receipt_proof)
        .service(brands::show_logo)
        .service(bounces::track)
        .service(bounces::generic_bounce)
        .service(bounces::ses_bounce)
        .service(
            scope("/api/v1")
                .service(auth::issue_token)
                .service(imports::export_contacts)
                .service(contacts::create_contact)
                .service(contacts::list_contacts)
                .service(contacts::get_contact)
                .service(contacts::update_contact)
                .service(contacts::delete_contact)
                .service(lists::create_list)
                .service(lists::list_lists)
                .service(lists::get_list)
                .service(lists::count_list)
                .service(lists::update_list)
                .service(lists::delete_list)
                .service(users::create_user)
                .service(users::list_users)
                .service(users::get_user)
                .service(users::update_user)
                .service(users::delete_user)
                .service(api_keys::create_api_key)
                .service(api_keys::list_api_keys)
                .service(api_keys::get_api_key)
                .service(api_keys::revoke_api_key)
                .service(brands::create_brand)
                .service(brands::list_brands)
                .service(brands::get_brand)
                .service(brands::replace_brand)
                .service(brands::delete_brand)
                .service(brands::upload_logo)
                .service(forms::preview_new_form)
                .service(forms::create_form)
                .service(forms::list_forms)
                .service(forms::get_form)
                .service(forms::preview_form)
                .service(forms::list_form_versions)
                .service(forms::update_form)
                .service(forms::delete_form)
                .service(consent::list_consents)
                .service(consent::record_consent)
                .service(consent::withdraw_consent)
                .service(consent::export_contact)
                .service(consent::contact_links)
                .service(ledger::verify_ledger)
                .service(ledger::inclusion_proof)
                .service(ledger::consistency_proof)
                .service(ledger::contact_proof)
                .service(ledger::contact_dpv_record)
                .service(ledger::contact_kantara_receipt)
                .service(consent::revoke_links)
                .service(consent::start_confirmation)
                .service(suppressions::list_suppressions)
                .service(suppressions::add_suppression)
                .service(suppressions::import_suppressions)
                .service(plugins::validate_plugin)
                .service(plugins::dry_run)
                .service(plugins::create_plugin)
                .service(plugins::list_plugins)
                .service(plugins::get_plugin)
                .service(plugins::replace_plugin)
                .service(plugins::list_plugin_versions)
                .service(plugins::delete_plugin)
                .service(segments::evaluate_segment)
                .service(segments::create_segment)
                .service(segments::list_segments)
                .service(segments::get_segment)
                .service(segments::update_segment)
                .service(segments::delete_segment)
                .service(segments::count_segment)
                .service(segments::preview_segment)
                .service(segments::segment_members)
                .service(campaigns::create_campaign)
                .service(campaigns::list_campaigns)
                .service(campaigns::get_campaign)
                .service(campaigns::update_campaign)
                .service(campaigns::delete_campaign)
                .service(campaigns::preview_campaign)
                .service(campaigns::check_audience)
                .service(campaigns::send_campaign)
                .service(campaigns::pause_campaign)
                .service(campaigns::resume_campaign)
                .service(campaigns::cancel_campaign)
                .service(campaigns::test_campaign)
                .service(campaigns::campaign_stats)
                .service(campaigns::list_recipients)
                .service(campaigns::churn)
                .service(imports::create_manifest)
                .service(imports::get_manifest)
                .service(imports::create_import)
                .service(imports::upload_import)
                .service(imports::get_import)
                .service(imports::list_imports)
                .service(partners::create_partner)
                .service(partners::list_partners)
                .service(partners::get_partner)
                .service(partners::update_partner)
                .service(partners::delete_partner)
                .service(partners::create_partner_key)
                .service(partners::list_partner_keys)
                .service(partners::revoke_partner_key)
                .service(partners::list_partner_leads)
                .service(webhooks::create_webhook)
                .service(webhooks::list_webhooks)
                .service(webhooks::get_webhook)
                .service(webhooks::update_webhook)
                .service(webhooks::delete_webhook)
                .service(webhooks::list_deliveries)
                .service(webhooks::get_delivery)
                .service(webhooks::retry_delivery)
                .service(surveys::create_survey)
                .service(surveys::list_surveys)
                .service(surveys::get_survey)
                .service(surveys::update_survey)
                .service(surveys::delete_survey)
                .service(surveys::list_survey_responses),
        )
        .service(
            scope("/partner/v1")
                .service(partner_api::list_shared_leads)
                .service(partner_api::get_lead)
                .service(partner_api::send_lead)
                .service(partner_api::list_events),
        )
}

/// The OpenAPI document, as served at `/openapi.json` and committed in `openapi/`.
pub fn openapi() -> OpenApiDoc {
    let (_, mut spec) = register(App::new().into_utoipa_app().openapi(ApiDoc::openapi())).split_for_parts();
    // Modifiers run when ApiDoc is built, before the routes join it: run again now.
    SecurityAndProblems.modify(&mut spec);
    spec
}

/// The spec as pretty JSON with a final newline, the form committed to the repository.
pub fn openapi_json() -> String {
    let json = openapi().to_pretty_json().unwrap_or_default();
    // utoipa's `Link` writes its fields in snake case (`operation_id`), which OpenAPI spells
    // `operationId`; no other object of the document has that key.
    let mut json = json.replace("\"operation_id\": ", "\"operationId\": ");
    json.push('\n');
    json
}

/// The whole application for one worker.
pub fn app(
    state: web::Data<AppState>,
    routes: web::Data<RouteTable>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Error = actix_web::Error,
        InitError = (),
        Response = ServiceResponse<impl MessageBody>,
    >,
> {
    let spec: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap_or_default();
    let app = App::new()
        .wrap(actix_web::middleware::from_fn(ops::telemetry))
        .app_data(state)
        .app_data(routes)
        .app_data(extract::path_config())
        .into_utoipa_app()
        .openapi(ApiDoc::openapi());
    register(app)
        .into_app()
        .service(SwaggerUi::new("/docs/{_:.*}").external_url_unchecked("/openapi.json", spec))
        .service(web::redirect("/docs", "/docs/"))
        .service(console::scope())
        .default_service(web::to(fallback))
}

/// The methods each documented path accepts, to tell 404 from 405.
pub struct RouteTable(Vec<(Vec<String>, Vec<String>)>);

impl RouteTable {
    pub fn from_spec(spec: &OpenApiDoc) -> Self {
        let mut routes: Vec<(Vec<String>, Vec<String>)> = spec
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path.split('/').map(str::to_owned).collect();
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter(|(_, present)| *present)
                .map(|(method, _)| method.to_owned())
                .collect();
                (segments, methods)
            })
            .collect();
        routes.push((vec![String::new(), "openapi.json".to_owned()], vec!["GET".to_owned()]));
        Self(routes)
    }

    fn allowed(&self, path: &str) -> Option<&[String]> {
        let wanted: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .find(|(segments, _)| {
                segments.len() == wanted.len()
                    && segments
                        .iter()
                        .zip(&wanted)
                        .all(|(pattern, actual)| (pattern.starts_with('{') && !actual.is_empty()) || pattern == actual)
            })
            .map(|(_, methods)| methods.as_slice())
    }
}

/// Requests no route took: 405 with `Allow` when the path exists, else 404.
async fn fallback(req: HttpRequest, routes: web::Data<RouteTable>) -> Result<HttpResponse, Error> {
    Err(match routes.allowed(req.path()) {
        Some(methods) => Error::MethodNotAllowed(methods.to_vec()),
        None => Error::NotFound(format!("nothing is at {}", req.path())),
    })
}
