//! Use cases and their rules. Services call storage; they know nothing of HTTP.

pub mod api_keys;
pub mod auth;
pub mod consent;
pub mod contacts;
pub mod forms;
pub mod keys;
pub mod lists;
pub mod mailer;
pub mod pagination;
pub mod plugins;
pub mod segments;
pub mod signup;
pub mod users;
