//! Extractors: the JSON body, the caller, and errors of path and query parsing, all
//! answering with problem details.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::AppState;
use crate::domain::Role;
use crate::error::{Error, FieldError};
use crate::services::auth::{self, Caller};

/// A request body type: JSON, with the fields only the server may set.
pub trait RequestBody: DeserializeOwned {
    /// Fields a client reads but may not write (`id`, timestamps…); sending one is a
    /// validation error rather than being silently ignored.
    const SERVER_OWNED: &'static [&'static str] = &["id", "created_at", "updated_at"];

    /// What the handler's own checks would find wrong with the fields that did read,
    /// reported with the type errors of the others so that one answer names every fault.
    fn rule_errors(&self) -> Vec<FieldError> {
        Vec::new()
    }
}

/// The fields a parse found at fault, for [`RequestBody::rule_errors`].
pub fn validation_errors<T>(parsed: crate::error::Result<T>) -> Vec<FieldError> {
    match parsed {
        Err(crate::error::Error::Validation(errors)) => errors,
        _ => Vec::new(),
    }
}

/// A JSON request body. Unlike `web::Json` every failure is a problem document: a wrong
/// content type (415), a body over the limit (413), malformed JSON (400, with line and
/// column), and fields of the wrong type, missing, unknown or server-owned (422, each named).
pub struct ApiJson<T>(pub T);

impl<T: RequestBody + 'static> FromRequest for ApiJson<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<web::Data<AppState>>().map_or(1024 * 1024, |s| s.settings.max_body_bytes);
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let declared_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            check_json_content_type(content_type.as_deref())?;
            if declared_length.is_some_and(|length| length > limit) {
                return Err(Error::PayloadTooLarge { limit }.into());
            }
            let body = read_limited(&mut payload, limit).await?;
            parse_body::<T>(&body).map(ApiJson).map_err(Into::into)
        })
    }
}

/// Reads a body of at most `limit` bytes; more is a 413 problem.
async fn read_limited(payload: &mut Payload, limit: usize) -> Result<web::BytesMut, Error> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Error::BadRequest(format!("the body could not be read: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A raw body of any type, within the size limit (413 problem beyond it), for the public
/// pages that take both form posts and JSON.
pub struct LimitedBody(pub web::Bytes);

impl FromRequest for LimitedBody {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<web::Data<AppState>>().map_or(1024 * 1024, |s| s.settings.max_body_bytes);
        let mut payload = payload.take();
        Box::pin(async move {
            let body = read_limited(&mut payload, limit).await?;
            Ok(LimitedBody(body.freeze()))
        })
    }
}

fn check_json_content_type(content_type: Option<&str>) -> Result<(), Error> {
    let Some(content_type) = content_type else {
        return Err(Error::UnsupportedMediaType("send the body as application/json".to_owned()));
    };
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(format!("the body is {essence}; send it as application/json")))
    }
}

/// A JSON body already read: 400 when it does not parse, 422 naming every field at fault.
pub fn parse_body<T: RequestBody>(body: &[u8]) -> Result<T, Error> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::BadRequest(format!(
            "the body is not valid JSON: {} (line {}, column {})",
            strip_position(&e.to_string()),
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(mut fields) = value else {
        return Err(Error::field("body", "must be a JSON object"));
    };
    let order = serde_json::from_slice::<KeyOrder>(body).map(|k| k.0).unwrap_or_default();
    let mut faults: Vec<FieldError> = T::SERVER_OWNED
        .iter()
        .filter(|name| fields.remove(**name).is_some())
        .map(|name| FieldError::new(*name, "is set by the server and cannot be written"))
        .collect();
    // serde stops at the first fault: take the field at fault out and read again, until the
    // rest reads, so that every field of the wrong type (or unknown) is named at once.
    let parsed = loop {
        match serde_path_to_error::deserialize::<_, T>(Value::Object(fields.clone())) {
            Ok(parsed) => break Some(parsed),
            Err(error) => {
                let path = error.path().to_string();
                let message = strip_position(&error.inner().to_string());
                let fault = describe_serde_error(&path, &message);
                let top = top_field(&fault.field).to_owned();
                let removed = fields.remove(&top).is_some();
                // A required field taken out for its type is not also missing.
                let taken_out = fault.message == "is required" && faults.iter().any(|f| top_field(&f.field) == top);
                if !taken_out {
                    faults.push(fault);
                }
                if !removed {
                    break None;
                }
            }
        }
    };
    match parsed {
        Some(parsed) if faults.is_empty() => Ok(parsed),
        parsed => {
            // With the type errors, the rule errors of the fields that did read.
            if let Some(parsed) = parsed {
                let at_fault: Vec<String> = faults.iter().map(|f| f.field.clone()).collect();
                faults.extend(parsed.rule_errors().into_iter().filter(|f| !at_fault.contains(&f.field)));
            }
            let position = |field: &str| order.iter().position(|key| key == top_field(field)).unwrap_or(usize::MAX);
            faults.sort_by_key(|fault| position(&fault.field));
            Err(Error::Validation(faults))
        }
    }
}

/// The keys of a JSON object in the order they were sent (`serde_json::Map` sorts them),
/// so that faults are named in the order of the body.
struct KeyOrder(Vec<String>);

impl<'de> serde::Deserialize<'de> for KeyOrder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = KeyOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<KeyOrder, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(key);
                }
                Ok(KeyOrder(keys))
            }
        }
        deserializer.deserialize_map(Keys)
    }
}

/// The top-level field of a path (`consents` of `consents[0].list_id`).
fn top_field(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or_default()
}

/// Turns serde's messages into a field and a message a person can act on.
fn describe_serde_error(path: &str, message: &str) -> FieldError {
    let join = |name: &str| {
        if path == "." || path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
    };
    if let Some(name) = backticked(message, "missing field `") {
        return FieldError::new(join(name), "is required");
    }
    if let Some(name) = backticked(message, "unknown field `") {
        // serde_path_to_error's path already ends with the unknown field.
        let field = if path.ends_with(name) { path.to_owned() } else { join(name) };
        return FieldError::new(field, "is not a field of this request");
    }
    let field = if path == "." || path.is_empty() { "body".to_owned() } else { path.to_owned() };
    FieldError::new(field, message)
}

fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// serde_json appends " at line L column C"; the caller reports the position itself.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// A caller whose role covers `R`. Put it first among a handler's arguments: without
/// credentials the answer is 401, with too small a role 403.
pub struct Authorized<R: NeededRole> {
    pub caller: Caller,
    role: PhantomData<R>,
}

pub trait NeededRole {
    const ROLE: Role;
}

pub struct ViewerRole;
pub struct EditorRole;
pub struct AdminRole;

impl NeededRole for ViewerRole {
    const ROLE: Role = Role::Viewer;
}
impl NeededRole for EditorRole {
    const ROLE: Role = Role::Editor;
}
impl NeededRole for AdminRole {
    const ROLE: Role = Role::Admin;
}

/// Any authenticated caller: reads.
pub type Viewer = Authorized<ViewerRole>;
/// Editors and admins: writes to the address book.
pub type Editor = Authorized<EditorRole>;
/// Admins: users and keys.
pub type Admin = Authorized<AdminRole>;

impl<R: NeededRole + 'static> FromRequest for Authorized<R> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let bearer = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| Error::internal("application state is missing"))?;
            let bearer = bearer?;
            let caller = auth::authenticate(&state.db, &state.tokens, &bearer).await?;
            caller.require(R::ROLE)?;
            Ok(Authorized { caller, role: PhantomData })
        })
    }
}

/// A co-registration partner, by its partner key: it reaches only `/partner/v1` and only
/// its own leads.
pub struct PartnerCaller(pub crate::services::partners::Partner);

impl FromRequest for PartnerCaller {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let bearer = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| Error::internal("application state is missing"))?;
            let partner = crate::services::partners::authenticate(&state.db, &bearer?).await?;
            Ok(PartnerCaller(partner))
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Result<String, Error> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or_else(|| {
        Error::Unauthorized("send an access token or API key as `Authorization: Bearer …`".to_owned())
    })?;
    let value = value.to_str().unwrap_or("");
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Error::Unauthorized("the Authorization header must be `Bearer <token>`".to_owned()));
    }
    Ok(token.trim().to_owned())
}

/// Query parameters. Unlike `web::Query`, a parameter of the wrong type is a 422 that
/// names the parameter (`limit: invalid digit found in string`).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned> FromRequest for ApiQuery<T> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let pairs = form_urlencoded_pairs(req.query_string());
        let deserializer = serde_urlencoded::Deserializer::new(pairs);
        std::future::ready(serde_path_to_error::deserialize(deserializer).map(ApiQuery).map_err(|error| {
            let path = error.path().to_string();
            Error::Validation(vec![describe_serde_error(&path, &error.inner().to_string())]).into()
        }))
    }
}

fn form_urlencoded_pairs(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// Path parameters that do not parse (an id that is not a UUID) name nothing that
/// exists: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, req| Error::NotFound(format!("nothing is at {}", req.path())).into())
}

/// A path id of any kind, parsed.
pub fn parse_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, Error> {
    raw.parse().map_err(|_| Error::NotFound(format!("there is no {what} {raw}")))
}
