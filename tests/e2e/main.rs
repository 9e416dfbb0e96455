//! End-to-end acceptance of the trio: real nats-server (one per test, on a
//! free port with a temporary store), real Postgres (a database per test),
//! the real `hookline` binary, and loopback HTTP receivers.

mod auth;
mod catalog;
mod cluster;
mod common;
mod compaction;
mod console;
mod console_api;
mod console_browser;
mod delivery;
mod engine;
mod errors;
mod fault_suite;
mod faults;
mod filters;
mod health;
mod ingest;
mod intake;
mod limits;
mod log;
mod nats_accounts;
mod notices;
mod ops;
mod otel;
mod replicas;
mod retry_store;
mod secrets;
mod ssrf;
mod startup;
mod subscriptions;
mod tenant_delete;
mod tls;
