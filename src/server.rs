//! Listeners: bind, accept, enforce the connection limits, start sessions,
//! reload rules on SIGHUP and drain on SIGTERM.
//!
//! Owns the per-process state shared by sessions (the current rule set, the
//! session counts). Never reads or writes SMTP beyond the one-line `421`
//! that refuses a connection over a limit (R3).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, ProxyProtocol};
use crate::logging::AddressLog;
use crate::rules::RuleSet;
use crate::session::core::CoreSettings;
use crate::session::{self, SessionContext};
use crate::smtp::ReplyLimits;
use crate::tls::{ServerTls, UpstreamTlsContext};

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "listener '{name}': cannot listen on {address}: {source} (is another process using it? is the address on this host?)"
    )]
    Bind {
        name: String,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener '{listener}' names upstream '{upstream}', which is not configured")]
    UnknownUpstream { listener: String, upstream: String },
    #[error("listener '{name}': TLS: {source}")]
    ListenerTls {
        name: String,
        source: crate::tls::TlsError,
    },
    #[error("upstream '{name}': TLS: {source}")]
    UpstreamTls {
        name: String,
        source: crate::tls::TlsError,
    },
}

/// Where rules come from, so SIGHUP can read them again (F5).
#[derive(Clone, Debug)]
pub enum RulesSource {
    Builtin,
    Paths(Vec<PathBuf>),
}

impl RulesSource {
    pub fn from_config(config: &Config) -> Self {
        if config.rules.is_empty() {
            RulesSource::Builtin
        } else {
            RulesSource::Paths(config.rules.clone())
        }
    }

    /// Loads and compiles; errors are the rules' own diagnostics.
    pub fn load(&self) -> Result<RuleSet, crate::rules::RulesErrors> {
        match self {
            RulesSource::Builtin => Ok(RuleSet::builtin()),
            RulesSource::Paths(p) => RuleSet::load_paths(p).map(|l| {
                for w in &l.warnings {
                    tracing::warn!(warning = %w, "rules warning");
                }
                l.rules
            }),
        }
    }
}

/// Counts sessions, in total and per client address (per /64 for IPv6).
struct Admission {
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    max_total: usize,
    max_per_client: usize,
}

/// A granted session slot, released on drop.
struct Slot {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.total.fetch_sub(1, Ordering::AcqRel);
        let mut map = self
            .admission
            .per_client
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The address a per-client limit counts: the IPv4 address, or the /64 of
/// an IPv6 address (R3).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Admission {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let key = client_key(ip);
        let mut map = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::Acquire) >= self.max_total {
            return Err("too many sessions");
        }
        let n = map.entry(key).or_insert(0);
        if *n >= self.max_per_client {
            return Err("too many sessions from your address");
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::AcqRel);
        Ok(Slot {
            admission: self.clone(),
            key,
        })
    }
}

/// A running server: its bound addresses and the handles to stop it.
pub struct Server {
    pub addresses: Vec<(String, SocketAddr)>,
    pub rules: Arc<ArcSwap<RuleSet>>,
    /// Each TLS listener's certificate, for reloads.
    certificates: Vec<(String, Arc<ServerTls>)>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    drain: Duration,
}

impl Server {
    /// Binds every listener. Sessions start as connections arrive.
    pub async fn start(config: &Config, rules: RuleSet) -> Result<Server, ServeError> {
        let rules = Arc::new(ArcSwap::from_pointee(rules));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let admission = Arc::new(Admission {
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            max_total: config.limits.max_sessions,
            max_per_client: config.limits.max_sessions_per_client,
        });
        let ids = Arc::new(AtomicU64::new(session_id_seed()));
        let mut tasks = JoinSet::new();
        let mut addresses = Vec::new();
        let mut certificates = Vec::new();
        for l in &config.listeners {
            let upstream = config
                .upstreams
                .iter()
                .find(|u| u.name == l.upstream)
                .ok_or_else(|| ServeError::UnknownUpstream {
                    listener: l.name.clone(),
                    upstream: l.upstream.clone(),
                })?;
            let server_tls = match &l.tls {
                Some(t) => {
                    let loaded = ServerTls::load(&t.cert, &t.key).map_err(|source| {
                        ServeError::ListenerTls {
                            name: l.name.clone(),
                            source,
                        }
                    })?;
                    let loaded = Arc::new(loaded);
                    certificates.push((l.name.clone(), loaded.clone()));
                    Some(loaded)
                }
                None => None,
            };
            let upstream_tls = UpstreamTlsContext::new(&upstream.tls).map_err(|source| {
                ServeError::UpstreamTls {
                    name: upstream.name.clone(),
                    source,
                }
            })?;
            let mut core = core_settings(config, &l.name, &upstream.name);
            core.tls_offered = server_tls.is_some() && !l.tls.as_ref().is_some_and(|t| t.implicit);
            core.require_tls = l.tls.as_ref().is_some_and(|t| t.require_tls);
            let listener =
                TcpListener::bind(l.address)
                    .await
                    .map_err(|source| ServeError::Bind {
                        name: l.name.clone(),
                        address: l.address,
                        source,
                    })?;
            let bound = listener.local_addr().unwrap_or(l.address);
            addresses.push((l.name.clone(), bound));
            let ctx = Arc::new(SessionContext {
                listener: l.name.clone(),
                upstream: upstream.clone(),
                timeouts: config.timeouts.clone(),
                limits: config.limits.clone(),
                core,
                rules: rules.clone(),
                addresses: AddressLog::new(
                    config.logging.log_addresses,
                    config.logging.hash_key.as_deref(),
                ),
                implicit_tls: l.tls.as_ref().is_some_and(|t| t.implicit),
                server_tls,
                upstream_tls,
                helo: upstream
                    .helo_name
                    .clone()
                    .unwrap_or_else(|| config.hostname.clone()),
                forwarding: upstream.send_client_address,
            });
            let proxy = l
                .proxy_protocol
                .map(|version| (version, l.trusted_proxies.clone()));
            tracing::info!(listener = %l.name, address = %bound, upstream = %upstream.name, "listening");
            tasks.spawn(accept_loop(
                listener,
                ctx,
                proxy,
                admission.clone(),
                ids.clone(),
                shutdown_rx.clone(),
            ));
        }
        Ok(Server {
            addresses,
            rules,
            certificates,
            shutdown,
            tasks,
            drain: config.timeouts.drain,
        })
    }

    /// Replaces the rules for new transactions (F5).
    pub fn swap_rules(&self, rules: RuleSet) {
        self.rules.store(Arc::new(rules));
    }

    /// Reads every listener's certificate again; a broken file keeps the
    /// previous certificate (logged). Handshakes in flight are not touched.
    pub fn reload_certificates(&self) -> usize {
        let mut failed = 0;
        for (name, tls) in &self.certificates {
            match tls.reload() {
                Ok(()) => tracing::info!(listener = %name, "certificate reloaded"),
                Err(e) => {
                    failed += 1;
                    tracing::error!(listener = %name, error = %e, "certificate reload failed; the previous certificate stays in use");
                }
            }
        }
        failed
    }

    /// Stops accepting, lets sessions finish within the drain timeout (F6).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::sleep(self.drain);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = self.tasks.join_next() => if next.is_none() { break },
                _ = &mut deadline => {
                    tracing::warn!("drain timeout reached; closing remaining sessions");
                    self.tasks.abort_all();
                    break;
                }
            }
        }
    }
}

/// The core settings every session of a listener starts from.
pub fn core_settings(config: &Config, listener: &str, upstream: &str) -> CoreSettings {
    let l = &config.limits;
    CoreSettings {
        hostname: config.hostname.clone(),
        listener: listener.to_string(),
        upstream: upstream.to_string(),
        client: None,
        mode: config.mode,
        bare_line_endings: config.bare_line_endings,
        max_command_line: l.max_command_line,
        max_sasl_line: l.max_sasl_line,
        max_pipeline: l.max_pipeline,
        max_errors: l.max_errors,
        max_message_size: l.max_message_size,
        max_drain: l
            .max_message_size
            .unwrap_or(64 * 1024 * 1024)
            .max(1024 * 1024),
        reply_limits: ReplyLimits {
            max_line: l.max_reply_line,
            max_reply: l.max_reply,
            ..ReplyLimits::default()
        },
        tls_offered: false,
        require_tls: false,
    }
}

fn session_id_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    (t & 0xffff_ffff) << 24
}

/// A listener's PROXY protocol setting: version and trusted peers.
type ProxyIn = Option<(ProxyProtocol, Vec<ipnet::IpNet>)>;

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<SessionContext>,
    proxy: ProxyIn,
    admission: Arc<Admission>,
    ids: Arc<AtomicU64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (ctx, admission, rx, proxy) =
                    (ctx.clone(), admission.clone(), shutdown.clone(), proxy.clone());
                let id = format!("{:x}", ids.fetch_add(1, Ordering::Relaxed));
                sessions.spawn(async move {
                    admit_and_run(stream, peer, ctx, admission, proxy, id, rx).await;
                });
                // Reap finished sessions so the set stays small.
                while sessions.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    // Sessions see the same shutdown signal and end between transactions.
    while sessions.join_next().await.is_some() {}
}

/// Reads the PROXY header when the listener expects one (the real client
/// address then counts for limits, rules and logs), applies the session
/// limits (R3), and runs the session.
async fn admit_and_run(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<SessionContext>,
    admission: Arc<Admission>,
    proxy: ProxyIn,
    id: String,
    shutdown: watch::Receiver<bool>,
) {
    let local = stream.local_addr().unwrap_or(peer);
    let client = match &proxy {
        None => peer,
        Some((version, trusted)) => {
            let deadline = ctx.timeouts.tls_handshake;
            match crate::proxy::read_header(&mut stream, peer, *version, trusted, deadline).await {
                Ok(client) => client,
                Err(e) => {
                    tracing::info!(peer = %peer, reason = e.reason(), error = %e, "connection refused");
                    return;
                }
            }
        }
    };
    match admission.admit(client.ip()) {
        Ok(slot) => {
            session::run(stream, client, local, ctx, id, shutdown).await;
            drop(slot);
        }
        Err(why) => {
            tracing::info!(client = %client, reason = why, "connection refused");
            refuse(stream, ctx.core.hostname.clone(), why).await;
        }
    }
}

async fn refuse(mut stream: TcpStream, host: String, why: &'static str) {
    let line = format!("421 4.7.0 {host} {why}, try again later\r\n");
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(line.as_bytes())).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_counted_per_slash_64_r3() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_key(v4), v4);
    }

    #[test]
    fn admission_limits_total_and_per_client_r3() {
        let adm = Arc::new(Admission {
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            max_total: 3,
            max_per_client: 2,
        });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = adm.admit(a).unwrap();
        let _s2 = adm.admit(a).unwrap();
        assert!(adm.admit(a).is_err());
        let _s3 = adm.admit(b).unwrap();
        assert!(adm.admit(b).is_err(), "total limit");
        drop(s1);
        assert!(adm.admit(a).is_ok());
    }
}
