//! The application's one error type. `http::problem` turns it into RFC 9457
//! `application/problem+json`; everything below the HTTP layer returns it.

use std::fmt;

/// One field at fault in a request, named by its JSON path (`attributes.age`, `tags[2]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Where the fault is: a body field path, or a query or path parameter name.
    pub field: String,
    /// What is wrong with it, written for the person who sent it.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl fmt::Display) -> Self {
        Self { field: field.into(), message: message.to_string() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request was understood but some fields are wrong (422).
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// The request could not be read: malformed JSON, a bad query string (400).
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or credentials that do not hold (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the role the action needs (403).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists, the method does not; carries the methods that do (405).
    #[error("method not allowed")]
    MethodNotAllowed(Vec<String>),
    /// The request clashes with what is stored, such as a duplicate e-mail (409).
    #[error("{0}")]
    Conflict(String),
    /// Too many requests from one client; try again after the given seconds (429).
    #[error("too many requests; try again in {retry_after} seconds")]
    TooManyRequests { retry_after: u64 },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A dependency such as the database cannot be reached (503). The cause is logged,
    /// never sent.
    #[error("a dependency is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else (500). The cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// A validation error about one field.
    pub fn field(field: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
    }

    /// An internal error, with the place in the source that raised it (for the log).
    #[track_caller]
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Internal(Box::new(Raised { at: std::panic::Location::caller(), cause: cause.into() }))
    }
}

impl From<diesel::result::Error> for Error {
    /// A database fault, raised where `?` met it.
    #[track_caller]
    fn from(error: diesel::result::Error) -> Self {
        if is_unavailable(&error) { Error::Unavailable(Box::new(error)) } else { Error::internal(error) }
    }
}

/// An internal error's cause and the place in the source that raised it. It reads as its
/// cause: the place is for the log ([`raised_at`]), never for a client.
#[derive(Debug)]
pub struct Raised {
    at: &'static std::panic::Location<'static>,
    cause: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.cause.fmt(f)
    }
}

impl std::error::Error for Raised {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.source()
    }
}

/// Where an internal error was raised (`src/….rs:line:column`), when it says.
pub fn raised_at(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    cause.downcast_ref::<Raised>().map(|raised| raised.at.to_string())
}

/// Whether a database error means the database cannot serve now (restarting, shutting
/// down, the connection lost, SQLite busy past its timeout) rather than a fault of ours:
/// the client gets 503 and retries, and the pool replaces the broken connection.
fn is_unavailable(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error as Diesel};
    match error {
        Diesel::DatabaseError(DatabaseErrorKind::ClosedConnection, _) | Diesel::BrokenTransactionManager => true,
        Diesel::DatabaseError(_, info) => {
            let message = info.message();
            [
                "terminating connection",
                "server closed the connection",
                "the database system is shutting down",
                "the database system is starting up",
                "the database system is in recovery mode",
                "no connection to the server",
                "could not send data to server",
                "database is locked",
            ]
            .iter()
            .any(|phrase| message.contains(phrase))
        }
        _ => false,
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        Error::Unavailable(Box::new(error))
    }
}

/// Collects field errors while a request is parsed, so that all faults are reported at
/// once rather than the first only.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl fmt::Display) {
        self.0.push(FieldError::new(field, message));
    }

    /// The parsed value, or `None` after recording why it failed.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(field, error);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else the validation error.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T> {
        if self.0.is_empty() {
            value().ok_or_else(|| Error::internal("a parsed field is missing without an error"))
        } else {
            Err(Error::Validation(self.0))
        }
    }
}

/// An error and its causes on one line, `outer: inner: innermost`, for logs and messages.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod raised_tests {
    use super::*;

    fn cause(error: &Error) -> &(dyn std::error::Error + 'static) {
        match error {
            Error::Internal(cause) => cause.as_ref(),
            other => panic!("not internal: {other:?}"),
        }
    }

    #[test]
    fn an_internal_error_names_where_it_was_raised_and_reads_as_its_cause() {
        let (error, line) = (Error::internal("the disk is full"), line!());
        let at = raised_at(cause(&error)).unwrap();
        assert!(at.starts_with(&format!("{}:{line}:", file!())), "{at}");
        assert_eq!(chain(cause(&error)), "the disk is full");

        fn query() -> Result<()> {
            Err(diesel::result::Error::NotFound)?
        }
        let at = raised_at(cause(&query().unwrap_err())).unwrap();
        assert!(at.starts_with(&format!("{}:{}:", file!(), line!() - 3)), "{at}");
    }
}
