//! The admin console: the status page (`/`) and the explain page
//! (`/explain`), server-rendered HTML for people who would rather look than
//! read logs (docs/operations.md, "The console").
//!
//! It owns [`recent`], the bounded memory of live rewrites that sessions
//! write through a [`Recorder`], and the pages' HTML. It reads what the rest
//! of the process already keeps (rules, metrics, readiness, configuration)
//! and judges pasted replies with the library's own explain functions. It
//! must never speak HTTP (that is `admin`), change state, keep what a
//! visitor pasted, or show network text unescaped: every byte from the
//! network goes through `smtp::escape` (L4) and then HTML escaping.

pub mod chart;
pub mod explain_page;
pub mod form;
pub mod html;
pub mod recent;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

pub use self::recent::{Recent, Recorder};
use crate::config::{Config, Mode};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::rules::RuleSet;

/// A listener as the status page lists it.
#[derive(Clone, Debug)]
pub struct ListenerView {
    /// Configured name.
    pub name: String,
    /// Configured address.
    pub address: SocketAddr,
    /// The upstream it relays to.
    pub upstream: String,
}

/// An upstream as the status page lists it.
#[derive(Clone, Debug)]
pub struct UpstreamView {
    /// Configured name.
    pub name: String,
    /// Its servers, in failover order.
    pub servers: Vec<String>,
    /// Its TLS policy as configured (T4).
    pub tls: &'static str,
}

/// What both pages read: shared, read-only but for the live parts behind
/// their own handles (rules, metrics, readiness, recent rewrites).
pub struct Console {
    /// The rewrites sessions record.
    pub recent: Arc<Recent>,
    rules: Arc<ArcSwap<RuleSet>>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    mode: Mode,
    hostname: String,
    listeners: Vec<ListenerView>,
    upstreams: Vec<UpstreamView>,
    started: SystemTime,
    started_mono: Instant,
}

impl Console {
    /// The console of a server started from `config`, reading the server's
    /// live rules, metrics and readiness.
    pub fn new(
        config: &Config,
        rules: Arc<ArcSwap<RuleSet>>,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        recent: Arc<Recent>,
    ) -> Console {
        Console {
            recent,
            rules,
            metrics,
            readiness,
            mode: config.mode,
            hostname: config.hostname.clone(),
            listeners: config
                .listeners
                .iter()
                .map(|l| ListenerView {
                    name: l.name.clone(),
                    address: l.address,
                    upstream: l.upstream.clone(),
                })
                .collect(),
            upstreams: config
                .upstreams
                .iter()
                .map(|u| UpstreamView {
                    name: u.name.clone(),
                    servers: u.servers.clone(),
                    tls: u.tls.policy.as_str(),
                })
                .collect(),
            started: SystemTime::now(),
            started_mono: Instant::now(),
        }
    }

    /// The rule set in force for new transactions.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// The status page (`/`).
    pub fn status_page(&self) -> String {
        status::render(self)
    }

    /// The configured listener names (the explain form's selector).
    pub fn listener_names(&self) -> impl Iterator<Item = &str> {
        self.listeners.iter().map(|l| l.name.as_str())
    }

    /// The upstream a listener relays to, by listener name.
    pub fn upstream_of(&self, listener: &str) -> Option<&str> {
        self.listeners
            .iter()
            .find(|l| l.name == listener)
            .map(|l| l.upstream.as_str())
    }
}

/// The script that refreshes the status page in place every
/// [`REFRESH_SECONDS`] while it is visible; the page works without it.
/// Served as `/console.js` so the pages' Content-Security-Policy can forbid
/// inline scripts.
pub const SCRIPT: &str = include_str!("console.js");

/// How often the status page refreshes itself (with JavaScript).
pub const REFRESH_SECONDS: u32 = 2;
