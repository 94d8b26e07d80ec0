//! Use cases and their rules. Services call storage; they know nothing of HTTP.

pub mod api_keys;
pub mod auth;
pub mod contacts;
pub mod lists;
pub mod pagination;
pub mod users;
