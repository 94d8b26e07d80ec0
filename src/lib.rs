//! consento: a self-hosted, consent-first email marketing server.
//!
//! Data flows one way: `http → services → storage → domain`.

pub mod domain;
pub mod error;
pub mod services;
pub mod settings;
pub mod storage;
