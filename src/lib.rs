//! consento: a self-hosted, consent-first email marketing server.
//!
//! Data flows one way: `http → services → {storage, plugins, mail} → domain`, which a test
//! holds (`layers`). `startup` wires it together, `cli` is the command line, `settings` the
//! configuration, `threads` the threads CPU work runs on.

pub mod cli;
pub mod domain;
pub mod error;
pub mod http;
pub mod i18n;
#[cfg(test)]
mod layers;
pub mod mail;
pub mod plugins;
pub mod services;
pub mod settings;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod threads;
