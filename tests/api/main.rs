//! The integration suite: one binary, a running server per test. Runs on SQLite, and on
//! PostgreSQL when `CONSENTO_TEST_DATABASE_URL` is set (see `helpers`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accessibility;
mod api_keys;
mod auth;
mod bounces;
mod branded_pages;
mod browser;
mod campaigns;
mod cli;
mod consent;
mod console;
mod contacts;
mod erasure;
mod errors;
mod hardening;
mod helpers;
mod imports;
mod ledger;
mod lists;
mod mail;
mod migrations;
mod openapi;
mod ops;
mod pages;
mod partners;
mod plugins;
mod receiver;
mod segments;
mod signup;
mod storage;
mod suppressions;
mod surveys;
mod templates;
mod users;
mod webhooks;
