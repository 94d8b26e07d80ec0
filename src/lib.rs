//! consento: a self-hosted, consent-first email marketing server.
//!
//! Data flows one way: `http → services → storage → domain`. `startup` wires it together,
//! `cli` is the command line, `settings` the configuration.

pub mod cli;
pub mod domain;
pub mod error;
pub mod http;
pub mod i18n;
pub mod mail;
pub mod plugins;
pub mod services;
pub mod settings;
pub mod startup;
pub mod storage;
pub mod telemetry;
