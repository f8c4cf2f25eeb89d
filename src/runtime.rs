//! Signals and reloads for a running server (docs/protocol.md F5, F6): SIGHUP
//! (and, opt-in, a change to a watched file) re-reads the configuration,
//! the rules and the certificates; SIGTERM and SIGINT start the drain.
//!
//! A reload validates and compiles everything before it swaps anything: an
//! invalid configuration or rule file changes nothing and is logged and
//! counted. Listener and upstream changes cannot be applied to a running
//! process; a reload that finds some says so in the log and applies the rest.
//! Never touches a session.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::server::{RulesSource, Server};

/// Why the server is stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: the full drain.
    Terminate,
    /// SIGINT (Ctrl-C in a terminal): the same drain, shorter.
    Interrupt,
}

/// What a reload reads again.
pub struct Reloader {
    /// The configuration file, when the server was started with one.
    config_path: Option<PathBuf>,
    /// Rule files given on the command line win over the configuration's.
    rules_override: bool,
    /// The configuration in force (listeners and upstreams as started).
    running: Config,
    source: RulesSource,
    seen: Vec<(PathBuf, Option<(u64, SystemTime)>)>,
}

impl Reloader {
    pub fn new(config_path: Option<PathBuf>, rules_override: bool, running: Config) -> Self {
        let source = RulesSource::from_config(&running);
        let mut r = Reloader {
            config_path,
            rules_override,
            running,
            source,
            seen: Vec::new(),
        };
        r.seen = r.fingerprint();
        r
    }

    /// The files a watch looks at: the configuration, every rule file (and
    /// the files of rule folders), every certificate and key.
    fn watched(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.config_path.iter().cloned().collect();
        for p in &self.running.rules {
            if p.is_dir() {
                if let Ok(entries) = std::fs::read_dir(p) {
                    let mut inner: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| {
                            matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                        })
                        .collect();
                    inner.sort();
                    files.extend(inner);
                }
            } else {
                files.push(p.clone());
            }
        }
        for l in &self.running.listeners {
            if let Some(t) = &l.tls {
                files.push(t.cert.clone());
                files.push(t.key.clone());
            }
        }
        files
    }

    fn fingerprint(&self) -> Vec<(PathBuf, Option<(u64, SystemTime)>)> {
        self.watched()
            .into_iter()
            .map(|p| {
                // metadata() follows symlinks: a ConfigMap's `..data` swap
                // changes what the link points at.
                let stamp = std::fs::metadata(&p)
                    .ok()
                    .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
                (p, stamp)
            })
            .collect()
    }

    /// True when a watched file changed since the last look (or reload).
    pub fn changed(&mut self) -> bool {
        let now = self.fingerprint();
        if now != self.seen {
            self.seen = now;
            true
        } else {
            false
        }
    }

    /// Re-reads the configuration (if any), then the certificates and the
    /// rules; swaps what validated. `why` goes to the log.
    pub fn reload(&mut self, server: &Server, why: &str) {
        tracing::info!(reason = why, "reloading");
        if let Some(path) = self.config_path.clone() {
            match Config::load(&path) {
                Ok(new) => {
                    warn_about_restart_only_changes(&self.running, &new, &path);
                    if !self.rules_override {
                        self.source = RulesSource::from_config(&new);
                        self.running.rules = new.rules.clone();
                    }
                }
                Err(e) => {
                    server.metrics.rules_reload_failed();
                    tracing::error!(errors = %e, "configuration reload failed; nothing changed");
                    self.seen = self.fingerprint();
                    return;
                }
            }
        }
        server.reload_certificates();
        match self.source.load() {
            Ok(rules) => {
                let (version, count) = (rules.version().to_string(), rules.len());
                // Swap first: once the log says so, new transactions use it.
                server.swap_rules(rules);
                tracing::info!(rules_version = %version, rules = count, "rules reloaded");
            }
            Err(e) => {
                server.metrics.rules_reload_failed();
                tracing::error!(errors = %e, "rules reload failed; the previous rules stay in force");
            }
        }
        self.seen = self.fingerprint();
    }
}

/// Listener and upstream settings are bound at start: say which changed.
fn warn_about_restart_only_changes(running: &Config, new: &Config, path: &Path) {
    let listeners = |c: &Config| format!("{:?}", c.listeners);
    let upstreams = |c: &Config| format!("{:?}", c.upstreams);
    if listeners(running) != listeners(new) || upstreams(running) != upstreams(new) {
        tracing::warn!(
            config = %path.display(),
            "listener or upstream settings changed: they take effect after a restart; rules and certificates are reloaded now"
        );
    }
    if running.limits != new.limits || running.timeouts != new.timeouts || running.mode != new.mode
    {
        tracing::warn!(
            config = %path.display(),
            "limits, timeouts or mode changed: they take effect after a restart"
        );
    }
}

/// Waits for SIGTERM/SIGINT; reloads on SIGHUP and, with `reload.watch`,
/// when a watched file changes.
pub async fn run_until_stop(
    server: &Server,
    reloader: &mut Reloader,
    watch: Option<Duration>,
) -> Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending::<Stop>().await;
    };
    let mut tick = tokio::time::interval(watch.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: draining"); return Stop::Terminate; }
            _ = int.recv() => { tracing::info!("SIGINT: draining"); return Stop::Interrupt; }
            _ = hup.recv() => reloader.reload(server, "SIGHUP"),
            _ = tick.tick(), if watch.is_some() => {
                if reloader.changed() {
                    reloader.reload(server, "a watched file changed");
                }
            }
        }
    }
}
