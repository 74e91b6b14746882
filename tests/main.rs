//! Black-box integration tests: each starts the real server on 127.0.0.1:0 (through `broker::serve`)
//! and drives it over HTTP. One binary, so CI links once.

mod common;
mod support;

mod admin;
mod auth_admin;
mod auth_matrix;
mod bench_smoke;
mod clamd;
mod cli;
mod cli_access;
mod cli_transfer;
mod config_errors;
mod conformance;
mod crash_under_load;
mod endpoints;
mod errors;
mod events;
mod hardening_connections;
mod hardening_input;
mod hardening_tus;
mod headers;
mod issuers;
mod json_input;
mod lifecycle;
mod metrics;
mod multipart;
mod notifications;
mod purge;
mod ranges;
mod restart;
mod robustness;
mod scanning;
mod search;
mod statistics;
mod storage;
mod tokens;
mod tus;
mod tus_checksums;
mod tus_clients;
mod tus_concat;
mod tus_crash;
mod tus_finalize;
mod tus_sessions;
mod webhook_receiver;
mod webhooks;
