//! RFC 9457 problem details: the one place where errors become HTTP responses.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, FieldError};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error, as RFC 9457 `application/problem+json`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable identifier of the kind of problem, such as `urn:consento:problem:validation`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem; the same for every occurrence.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong this time, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For validation problems: every field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldFault>>,
}

/// One field at fault in a request, named by its JSON path (`attributes.age`, `tags[2]`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FieldError)]
pub struct FieldFault {
    /// Where the fault is: a body field path, or a query or path parameter name.
    pub field: String,
    /// What is wrong with it, written for the person who sent it.
    pub message: String,
}

impl From<&FieldError> for FieldFault {
    fn from(error: &FieldError) -> Self {
        Self { field: error.field.clone(), message: error.message.clone() }
    }
}

impl Error {
    /// The problem type's last segment and title.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Error::Validation(_) => ("validation", "The request has invalid fields"),
            Error::BadRequest(_) => ("bad-request", "The request could not be read"),
            Error::Unauthorized(_) => ("unauthorized", "Authentication is required"),
            Error::Forbidden(_) => ("forbidden", "The caller may not do this"),
            Error::NotFound(_) => ("not-found", "Not found"),
            Error::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            Error::Conflict(_) => ("conflict", "The request conflicts with stored data"),
            Error::PayloadTooLarge { .. } => ("payload-too-large", "The request body is too large"),
            Error::TooManyRequests { .. } => ("too-many-requests", "Too many requests"),
            Error::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported content type"),
            Error::Unavailable(_) => ("unavailable", "Service unavailable"),
            Error::Internal(_) => ("internal", "Internal server error"),
        }
    }

    pub fn problem(&self) -> Problem {
        let (slug, title) = self.kind();
        let detail = match self {
            Error::Validation(_) => Some("see `errors` for each field at fault".to_owned()),
            Error::MethodNotAllowed(allowed) => Some(format!("this path accepts {}", allowed.join(", "))),
            // Nothing internal leaves the server; the log has the cause.
            Error::Unavailable(_) => {
                Some("a service this server depends on is unavailable; try again later".to_owned())
            }
            Error::Internal(_) => None,
            other => Some(other.to_string()),
        };
        Problem {
            kind: format!("urn:consento:problem:{slug}"),
            title: title.to_owned(),
            status: self.status_code().as_u16(),
            detail,
            errors: match self {
                Error::Validation(errors) => Some(errors.iter().map(FieldFault::from).collect()),
                _ => None,
            },
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Error::Internal(cause) | Error::Unavailable(cause) = self {
            let at = crate::error::raised_at(cause.as_ref());
            tracing::error!(error = %crate::error::chain(cause.as_ref()), raised_at = at.as_deref(), "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)));
        match self {
            Error::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            Error::MethodNotAllowed(allowed) => {
                response.insert_header((header::ALLOW, allowed.join(", ")));
            }
            Error::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            Error::TooManyRequests { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}
