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

use crate::admin::{Admin, Endpoint};
use crate::config::{Config, ProxyProtocol};
use crate::console::{Console, Recent, Recorder};
use crate::logging::AddressLog;
use crate::metrics::{Metrics, Refusal};
use crate::readiness::Readiness;
use crate::rules::RuleSet;
use crate::session::core::CoreSettings;
use crate::session::{self, SessionContext, stop};
use crate::tls::{ServerTls, UpstreamTlsContext};
use crate::transcript::TranscriptWriter;

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
    #[error("transcript {path}: {source} (check the folder exists and is writable)")]
    Transcript {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Admin(crate::admin::AdminError),
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
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        let key = client_key(ip);
        let mut map = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        if self.total.load(Ordering::Acquire) >= self.max_total {
            return Err(Refusal::TooManySessions);
        }
        let n = map.entry(key).or_insert(0);
        if *n >= self.max_per_client {
            return Err(Refusal::TooManyPerClient);
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
    /// Where `/metrics`, `/healthz`, `/readyz` answer, when configured.
    pub admin_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// Ends the admin endpoint and the background checks, after the drain.
    exit: watch::Sender<bool>,
    pub rules: Arc<ArcSwap<RuleSet>>,
    /// Each TLS listener's certificate, for reloads.
    certificates: Vec<(String, Arc<ServerTls>)>,
    shutdown: watch::Sender<u8>,
    tasks: JoinSet<()>,
    /// Tasks in `tasks` that run until `exit` (admin endpoint, checks).
    background: usize,
    drain: Duration,
}

impl Server {
    /// Binds every listener. Sessions start as connections arrive, on the
    /// runtime of the worker whose listener socket accepted them: each
    /// listener is bound once per worker (`SO_REUSEPORT`) and accepted from
    /// on that worker ([`crate::workers`]). With no workers, everything runs
    /// on the current runtime.
    pub async fn start(
        config: &Config,
        rules: RuleSet,
        workers: &[tokio::runtime::Handle],
    ) -> Result<Server, ServeError> {
        let rules = Arc::new(ArcSwap::from_pointee(rules));
        let (shutdown, shutdown_rx) = watch::channel(stop::RUNNING);
        let admission = Arc::new(Admission {
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            max_total: config.limits.max_sessions,
            max_per_client: config.limits.max_sessions_per_client,
        });
        let metrics = Arc::new(Metrics::new());
        metrics.rules_loaded(rules.load().version());
        let readiness = Arc::new(Readiness::new(
            config.upstreams.iter().map(|u| u.name.clone()),
        ));
        let (exit, exit_rx) = watch::channel(false);
        let transcript = match &config.transcript {
            Some(t) => Some(Arc::new(
                TranscriptWriter::open_bounded(&t.path, t.max_bytes).map_err(|source| {
                    ServeError::Transcript {
                        path: t.path.clone(),
                        source,
                    }
                })?,
            )),
            None => None,
        };
        let ids = Arc::new(AtomicU64::new(session_id_seed()));
        // One bound for every listener's client-leg handshakes (R3).
        let tls_handshakes = Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_tls_handshakes,
        ));
        // The console's memory of live rewrites, when the console is served.
        let recent = config
            .admin
            .as_ref()
            .filter(|a| a.console)
            .map(|_| Arc::new(Recent::new()));
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
            let mut core = CoreSettings::from_config(config, &l.name, &upstream.name);
            core.tls_offered = server_tls.is_some() && !l.tls.as_ref().is_some_and(|t| t.implicit);
            core.require_tls = l.tls.as_ref().is_some_and(|t| t.require_tls);
            let sockets = bind_listeners(l.address, workers.len().max(1)).map_err(|source| {
                ServeError::Bind {
                    name: l.name.clone(),
                    address: l.address,
                    source,
                }
            })?;
            let bound = sockets
                .first()
                .and_then(|s| s.local_addr().ok())
                .unwrap_or(l.address);
            addresses.push((l.name.clone(), bound));
            let ctx = Arc::new(SessionContext {
                listener: l.name.clone(),
                upstream: upstream.clone(),
                timeouts: config.timeouts.clone(),
                limits: config.limits.clone(),
                core: Arc::new(core),
                rules: rules.clone(),
                addresses: AddressLog::new(
                    config.logging.log_addresses,
                    config.logging.hash_key.as_deref(),
                ),
                implicit_tls: l.tls.as_ref().is_some_and(|t| t.implicit),
                server_tls,
                upstream_tls,
                helo: config.helo_for(upstream),
                forwarding: upstream.send_client_address,
                metrics: metrics.clone(),
                readiness: readiness.clone(),
                transcript: transcript.clone(),
                tls_handshakes: tls_handshakes.clone(),
                console: match &recent {
                    Some(r) => Recorder::new(&l.name, r.clone()),
                    None => Recorder::off(),
                },
            });
            let proxy = l
                .proxy_protocol
                .map(|version| Arc::new((version, l.trusted_proxies.clone())));
            tracing::info!(
                listener = %l.name,
                address = %bound,
                upstream = %upstream.name,
                upstream_tls = upstream.tls.policy.as_str(),
                "listening"
            );
            let failures = Arc::new(AcceptFailures::default());
            for (i, socket) in sockets.into_iter().enumerate() {
                let accept = accept_loop(
                    socket,
                    ctx.clone(),
                    proxy.clone(),
                    admission.clone(),
                    ids.clone(),
                    failures.clone(),
                    shutdown_rx.clone(),
                );
                match workers.get(i) {
                    Some(worker) => tasks.spawn_on(accept, worker),
                    None => tasks.spawn(accept),
                };
            }
        }
        let admin_addr = match &config.admin {
            Some(a) => {
                let admin = Admin::bind(a.listen).await.map_err(ServeError::Admin)?;
                let bound = admin.local_addr().unwrap_or(a.listen);
                let console = recent.map(|recent| {
                    Arc::new(Console::new(
                        config,
                        rules.clone(),
                        metrics.clone(),
                        readiness.clone(),
                        recent,
                    ))
                });
                tracing::info!(
                    address = %bound,
                    console = console.is_some(),
                    token = a.token.is_some(),
                    "admin endpoint listening (/metrics, /healthz, /readyz{})",
                    if console.is_some() { ", console on /" } else { "" }
                );
                let endpoint = Endpoint {
                    metrics: metrics.clone(),
                    readiness: readiness.clone(),
                    console,
                    token: a.token.clone(),
                    token_on_probes: a.token_on_probes,
                };
                tasks.spawn(admin.serve(endpoint, exit_rx.clone()));
                Some(bound)
            }
            None => None,
        };
        tasks.spawn(recheck_upstreams(
            config.upstreams.clone(),
            readiness.clone(),
            exit_rx,
        ));
        Ok(Server {
            addresses,
            admin_addr,
            metrics,
            readiness,
            exit,
            rules,
            certificates,
            shutdown,
            background: usize::from(admin_addr.is_some()) + 1,
            tasks,
            drain: config.timeouts.drain,
        })
    }

    /// Replaces the rules for new transactions (F5).
    pub fn swap_rules(&self, rules: RuleSet) {
        self.metrics.rules_reload_ok(rules.version());
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

    /// Shortens the drain deadline (SIGINT in a terminal).
    pub fn limit_drain(&mut self, max: Duration) {
        self.drain = self.drain.min(max);
    }

    /// F6: stops accepting, turns `/readyz` to 503, ends sessions between
    /// transactions with `421 4.3.2`, lets transactions in flight finish
    /// within the drain timeout, then ends the rest with `421 4.3.2`.
    pub async fn shutdown(mut self) {
        self.readiness.set_draining();
        let _ = self.shutdown.send(stop::DRAIN);
        let sessions_done = async {
            // Only session and accept tasks end on DRAIN; the admin endpoint
            // and the checks wait for `exit`.
            while self.tasks.len() > self.background {
                if self.tasks.join_next().await.is_none() {
                    break;
                }
            }
        };
        if tokio::time::timeout(self.drain, sessions_done)
            .await
            .is_err()
        {
            tracing::warn!("drain timeout reached; ending the remaining sessions with 421");
            let _ = self.shutdown.send(stop::FORCE);
            let rest = async {
                while self.tasks.len() > self.background {
                    if self.tasks.join_next().await.is_none() {
                        break;
                    }
                }
            };
            if tokio::time::timeout(Duration::from_secs(2), rest)
                .await
                .is_err()
            {
                self.tasks.abort_all();
            }
        }
        let _ = self.exit.send(true);
        while tokio::time::timeout(Duration::from_secs(2), self.tasks.join_next())
            .await
            .ok()
            .flatten()
            .is_some()
        {}
        self.tasks.abort_all();
    }
}

/// Every 5 s, tries the servers of upstreams marked unreachable, so
/// `/readyz` recovers without waiting for a client to try (bounded: stops
/// with the server).
async fn recheck_upstreams(
    upstreams: Vec<crate::config::UpstreamConfig>,
    readiness: Arc<Readiness>,
    mut exit: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = exit.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let unreachable: Vec<String> = readiness
            .unreachable_upstreams()
            .into_iter()
            .map(str::to_string)
            .collect();
        for name in unreachable {
            let Some(u) = upstreams.iter().find(|u| u.name == name) else {
                continue;
            };
            for server in &u.servers {
                let attempt = tokio::time::timeout(
                    Duration::from_secs(2),
                    TcpStream::connect(server.as_str()),
                );
                if let Ok(Ok(_)) = attempt.await {
                    readiness.set_upstream_reachable(&name, true);
                    break;
                }
            }
        }
    }
}

fn session_id_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    (t & 0xffff_ffff) << 24
}

/// Connections the kernel has completed and replyfix has not accepted yet
/// (the kernel caps it at `net.core.somaxconn`). std and tokio use 128: a
/// burst larger than that makes the kernel drop handshakes, so honest
/// clients wait for a SYN retransmission (a second or more) and a client
/// that sends nothing first is left with a connection the server never saw.
const LISTEN_BACKLOG: i32 = 1024;

/// `count` listening sockets on `address`, with [`LISTEN_BACKLOG`] and
/// `SO_REUSEADDR`, as std sockets: each worker registers its own with its
/// runtime. With more than one, they share the port through
/// `SO_REUSEPORT`; a plain bind first claims the address, so a port that
/// another process (another replyfix included) listens on is refused
/// ("Address already in use") instead of silently shared, and port 0 picks
/// one port for all of them.
fn bind_listeners(
    address: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Socket, Type};
    let socket = |at: SocketAddr, reuseport: bool| -> std::io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(at), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        if reuseport {
            socket.set_reuse_port(true)?;
        }
        socket.bind(&at.into())?;
        Ok(socket)
    };
    let listen = |socket: Socket| -> std::io::Result<std::net::TcpListener> {
        socket.listen(LISTEN_BACKLOG)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    if count <= 1 {
        return Ok(vec![listen(socket(address, false)?)?]);
    }
    let at = {
        // Bound, never listening: the check and the port, then closed.
        let probe = socket(address, false)?;
        probe.local_addr()?.as_socket().unwrap_or(address)
    };
    (0..count).map(|_| listen(socket(at, true)?)).collect()
}

/// Failed accepts on one listener, shared by its workers' accept loops, so
/// that running out of descriptors is logged at most once a second per
/// listener however many workers retry (each failure is still counted in
/// `replyfix_accept_errors_total`).
#[derive(Default)]
struct AcceptFailures {
    /// Failures since the last line logged.
    unlogged: AtomicU64,
    /// When the next line may be logged, in ms after `since`.
    next_ms: AtomicU64,
    since: std::sync::OnceLock<std::time::Instant>,
}

impl AcceptFailures {
    /// Records one failure; returns how many to log (this one included)
    /// when a line is due.
    fn due(&self) -> Option<u64> {
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        let now = self
            .since
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now < next
            || self
                .next_ms
                .compare_exchange(next, now + 1000, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        Some(self.unlogged.swap(0, Ordering::Relaxed))
    }
}

/// A listener's PROXY protocol setting: version and trusted peers.
type ProxyIn = Option<Arc<(ProxyProtocol, Vec<ipnet::IpNet>)>>;

async fn accept_loop(
    listener: std::net::TcpListener,
    ctx: Arc<SessionContext>,
    proxy: ProxyIn,
    admission: Arc<Admission>,
    ids: Arc<AtomicU64>,
    failures: Arc<AcceptFailures>,
    mut shutdown: watch::Receiver<u8>,
) {
    // Registered with the runtime this loop runs on (its worker's).
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(listener = %ctx.listener, error = %e, "cannot register the listener");
            return;
        }
    };
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() != stop::RUNNING {
                    break;
                }
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: the connection stays queued in
                        // the kernel; back off instead of spinning, count it.
                        ctx.metrics.accept_error();
                        if let Some(failures) = failures.due() {
                            tracing::warn!(listener = %ctx.listener, error = %e, failures, "accept failed; retrying in 100 ms");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let id = format!("{:x}", ids.fetch_add(1, Ordering::Relaxed));
                let (ctx, rx) = (ctx.clone(), shutdown.clone());
                // Without PROXY in, admitted here and the session's own
                // future spawned (a wrapper would keep a copy of every
                // argument in each idle session's memory).
                match &proxy {
                    None => match admit(&admission, &ctx, peer) {
                        Ok(slot) => sessions.spawn(session::run(stream, peer, ctx, id, rx, slot)),
                        Err(text) => sessions.spawn(refuse(stream, ctx.core.hostname.clone(), text)),
                    },
                    Some(proxy) => sessions.spawn(read_proxy_and_run(
                        stream,
                        peer,
                        ctx,
                        admission.clone(),
                        proxy.clone(),
                        id,
                        rx,
                    )),
                };
                // Reap finished sessions so the set stays small.
                while sessions.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    // Sessions see the same shutdown signal and end between transactions.
    while sessions.join_next().await.is_some() {}
}

/// Applies the session limits (R3) to a client: its slot, or the refusal
/// text after counting and logging it.
fn admit(
    admission: &Arc<Admission>,
    ctx: &SessionContext,
    client: SocketAddr,
) -> Result<Slot, &'static str> {
    admission.admit(client.ip()).map_err(|why| {
        ctx.metrics.refused(why);
        let text = match why {
            Refusal::TooManyPerClient => "too many sessions from your address",
            _ => "too many sessions",
        };
        tracing::info!(client = %client, reason = text, "connection refused");
        text
    })
}

/// A listener with PROXY protocol in: reads the header (the real client
/// address then counts for limits, rules and logs), applies the session
/// limits, and runs the session.
async fn read_proxy_and_run(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<SessionContext>,
    admission: Arc<Admission>,
    proxy: Arc<(ProxyProtocol, Vec<ipnet::IpNet>)>,
    id: String,
    shutdown: watch::Receiver<u8>,
) {
    let (version, trusted) = &*proxy;
    let deadline = ctx.timeouts.tls_handshake;
    let read = crate::proxy::read_header(&mut stream, peer, *version, trusted, deadline);
    // Boxed: its state is large and ends before the session starts.
    let client = match Box::pin(read).await {
        Ok(client) => client,
        Err(e) => {
            ctx.metrics.refused(match e {
                crate::proxy::ProxyError::Untrusted(_) => Refusal::UntrustedProxy,
                _ => Refusal::BadProxyHeader,
            });
            tracing::info!(peer = %peer, reason = e.reason(), error = %e, "connection refused");
            return;
        }
    };
    match admit(&admission, &ctx, client) {
        Ok(slot) => session::run(stream, client, ctx, id, shutdown, slot).await,
        Err(text) => refuse(stream, ctx.core.hostname.clone(), text).await,
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

    #[test]
    fn accept_failures_are_logged_once_a_second_with_the_count_r3() {
        let f = AcceptFailures::default();
        assert_eq!(f.due(), Some(1), "the first failure is logged");
        for _ in 0..5 {
            assert_eq!(f.due(), None, "within the second: counted, not logged");
        }
        // A second later (the deadline moved back instead of sleeping).
        f.next_ms.store(0, Ordering::Relaxed);
        assert_eq!(f.due(), Some(6), "the line says how many since the last");
    }

    #[test]
    fn workers_share_one_port_and_a_taken_port_is_refused() {
        let sockets = bind_listeners("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert!(ports.iter().all(|&p| p == ports[0] && p != 0), "{ports:?}");
        // Another process's replyfix (or anything) on the same port.
        let again = bind_listeners(sockets[0].local_addr().unwrap(), 3);
        assert_eq!(
            again.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::AddrInUse)
        );
        let single = bind_listeners(sockets[0].local_addr().unwrap(), 1);
        assert_eq!(
            single.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::AddrInUse)
        );
    }
}
