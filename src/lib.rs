//! replyfix: an SMTP proxy that rewrites misleading replies — above all the
//! misused `530` — into accurate codes, per YAML rules, and passes everything
//! else through byte-exact.
//!
//! The crate is laid out as the design card says (docs/architecture.md):
//! [`smtp`] is the wire, [`rules`] decides ([`explain`] shows a decision
//! offline), [`config`] loads settings,
//! [`session`] relays one connection (a sans-IO core and a thin async
//! driver), [`server`] accepts connections.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod conn;
pub mod console;
pub mod demo;
pub mod explain;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod readiness;
pub mod rules;
pub mod runtime;
pub mod server;
pub mod session;
pub mod smtp;
pub mod tls;
pub mod transcript;
pub mod upstream;
pub mod workers;
mod yaml;
