//! One relayed SMTP session: the async driver around [`core::Core`].
//!
//! The driver owns the two connections, the deadlines, the TLS handshakes
//! and the write side of backpressure; every protocol decision is the
//! core's. Each loop turn writes what the core produced (all of it, so a
//! slow reader holds back the other side: R2), logs the core's events,
//! starts a client-leg handshake when the core asks (T1), then waits for
//! whichever comes first: bytes from the upstream, bytes from the client
//! (only while the core wants them: the DATA, AUTH and STARTTLS gates), a
//! deadline (F3, R3), or shutdown (F6).
//!
//! It must never decide what a byte means, never log message content or
//! SASL data (L1, L2), and never wait without a deadline.

pub mod core;

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep, sleep_until, timeout};
use tokio_rustls::TlsAcceptor;

use self::core::{Core, CoreSettings, EndReason, Event, Rewrite, UpstreamWait};
use crate::config::{ClientAddressForwarding, Limits, Timeouts, UpstreamConfig};
use crate::conn::{Conn, ReadOutcome, received};
use crate::logging::AddressLog;
use crate::metrics::{Metrics, TlsLeg};
use crate::readiness::Readiness;
use crate::rules::RuleSet;
use crate::smtp::escape::escape;
use crate::tls::{ServerTls, TlsInfo, UpstreamTlsContext};
use crate::transcript::TranscriptWriter;
use crate::upstream::{self, ClientAddress, SetupTimeouts, UpstreamFailure};

/// What every session of one listener shares.
pub struct SessionContext {
    pub listener: String,
    pub upstream: UpstreamConfig,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// The core settings without the client address (shared: a session
    /// keeps only its own facts).
    pub core: Arc<CoreSettings>,
    pub rules: Arc<ArcSwap<RuleSet>>,
    pub addresses: AddressLog,
    /// The client leg's certificate, when TLS is configured.
    pub server_tls: Option<Arc<ServerTls>>,
    /// TLS from the first byte on the client leg (port 465 style).
    pub implicit_tls: bool,
    pub upstream_tls: UpstreamTlsContext,
    /// The name replyfix sends in its own EHLO to the upstream; `None`: the
    /// address literal of replyfix's end of each connection (RFC 5321
    /// 4.1.4).
    pub helo: Option<String>,
    /// How the upstream learns the client's address.
    pub forwarding: ClientAddressForwarding,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// Where judged replies are recorded for `replyfix replay`, if anywhere.
    pub transcript: Option<Arc<TranscriptWriter>>,
    /// Client-leg TLS handshakes in progress, all listeners together
    /// (`limits.max_tls_handshakes`).
    pub tls_handshakes: Arc<tokio::sync::Semaphore>,
    /// Where rewrites are recorded for the admin console's status page.
    pub console: crate::console::Recorder,
}

/// The server's stop signal, as sessions see it (F6).
pub mod stop {
    /// Serving.
    pub const RUNNING: u8 = 0;
    /// Stop accepting; end sessions between transactions.
    pub const DRAIN: u8 = 1;
    /// The drain deadline passed: end every session now.
    pub const FORCE: u8 = 2;
}

/// TLS facts for the session log line.
#[derive(Default)]
struct LegTls {
    client: Option<TlsInfo>,
    upstream: Option<TlsInfo>,
}

/// Runs one session to its end. Never panics: a panic inside the core ends
/// this session with `451 4.3.0` (F4).
/// `peer` is the client's real address (after a PROXY header, if any);
/// `local` the address it connected to.
///
/// A plain `fn` returning the future, not an `async fn`: every idle session
/// holds this future, and an `async fn` keeps a second copy of its
/// arguments in it.
/// `held` is kept until the session ends (the server's admission slot).
pub fn run<H: Send + 'static>(
    client: TcpStream,
    peer: SocketAddr,
    ctx: Arc<SessionContext>,
    id: String,
    shutdown: watch::Receiver<u8>,
    held: H,
) -> impl std::future::Future<Output = ()> + Send {
    let started = Instant::now();
    let _ = client.set_nodelay(true);
    let mut client = Conn::Plain(client);
    async move {
        let _held = held;
        ctx.metrics.session_started(&ctx.listener);
        let mut core = Core::new(ctx.core.clone(), ctx.rules.clone());
        core.set_session(peer.ip(), &id);
        let mut stats = Stats::default();
        let mut tls = LegTls::default();

        // Implicit TLS: the handshake comes first, within one deadline.
        if ctx.implicit_tls {
            let result = Box::pin(client_handshake(&mut client, &ctx)).await;
            ctx.metrics.tls_handshake(TlsLeg::Client, result.is_ok());
            match result {
                Ok(info) => {
                    tls.client = Some(info);
                    core.set_client_tls_implicit();
                }
                Err(e) => {
                    tracing::info!(session = %id, client = %peer, error = %e, "client TLS handshake failed");
                    end(
                        &ctx,
                        &id,
                        peer,
                        "-",
                        &core,
                        &stats,
                        &tls,
                        EndReason::ClientProtocol,
                        started,
                    );
                    return;
                }
            }
        }

        // Boxed, with its failure path: the setup's state (TLS connector,
        // reply buffers, the error) is large and must not stay in every
        // idle session's future.
        let Some((mut upstream, server)) = Box::pin(set_up_upstream(
            &ctx,
            peer,
            &id,
            &mut core,
            &mut stats,
            &mut tls,
            &mut client,
            started,
        ))
        .await
        else {
            return;
        };
        let mut upstream_deadline: Option<(UpstreamWait, Instant)> = None;
        let mut client_deadline = Instant::now() + ctx.timeouts.client_idle;
        let lifetime_end = Instant::now() + ctx.limits.max_session_lifetime;
        let mut content_started: Option<(Instant, u64)> = None;
        // R3: a command line must arrive whole within `timeouts.command`, however
        // slowly its bytes trickle in.
        let mut partial_since: Option<Instant> = None;
        let mut shutting_down = *shutdown.borrow() != stop::RUNNING;
        // One wait for the server's next stop signal, kept across loop turns
        // (a `changed()` made every turn registers a waiter every turn).
        let mut next_signal: StopWait = Box::pin(next_stop(shutdown));
        // One timer for every deadline (F3, R3): armed at or before the earliest
        // deadline that applies. A deadline that moves later (every client read
        // moves the idle deadline) does not re-arm it; when it fires early it is
        // re-armed without acting. Cheaper than a timer per deadline per turn.
        let timer = sleep_until(lifetime_end);
        tokio::pin!(timer);

        let reason = loop {
            // 1. Log and count what the core reports before the bytes that
            // follow from it leave: a client that sees a rewritten reply
            // finds the rewrite already in the log and the metrics.
            for event in core.take_events() {
                log_event(&id, peer, &server, &ctx, &event);
            }
            // 2. Write what the core produced, upstream first, straight from
            // the core's buffers.
            let up = core.to_upstream().len();
            if up > 0 && upstream.is_open() {
                let res = within(
                    ctx.timeouts.upstream_reply,
                    timer.as_mut(),
                    upstream.write_all(core.to_upstream()),
                )
                .await;
                core.consume_to_upstream();
                stats.to_upstream += up as u64;
                if !matches!(res, Some(Ok(()))) {
                    upstream = Conn::Gone;
                    guard(&mut core, |c| c.upstream_eof());
                }
            } else if up > 0 {
                core.consume_to_upstream();
            }
            let out = core.to_client().len();
            if out > 0 {
                let res = within(
                    ctx.timeouts.client_idle,
                    timer.as_mut(),
                    client.write_all(core.to_client()),
                )
                .await;
                core.consume_to_client();
                stats.to_client += out as u64;
                if !matches!(res, Some(Ok(()))) {
                    guard(&mut core, |c| c.client_eof());
                    // Nothing more can reach the client.
                    core.consume_to_client();
                }
            }
            if up > 0 || out > 0 {
                ctx.metrics.bytes(up as u64, out as u64);
            }
            // (What a failed write made the core report.)
            for event in core.take_events() {
                log_event(&id, peer, &server, &ctx, &event);
            }
            if core.upstream_must_close() && upstream.is_open() {
                upstream.shutdown().await;
            }
            if core.take_start_client_tls() {
                // T1: the 220 is out and nothing was waiting in the core's
                // buffer; the raw stream goes to the acceptor.
                let result = Box::pin(client_handshake(&mut client, &ctx)).await;
                ctx.metrics.tls_handshake(TlsLeg::Client, result.is_ok());
                match result {
                    Ok(info) => {
                        tls.client = Some(info);
                        guard(&mut core, |c| c.client_tls_established());
                    }
                    Err(e) => {
                        tracing::info!(session = %id, client = %peer, error = %e, "client TLS handshake failed");
                        guard(&mut core, |c| c.client_tls_failed());
                    }
                }
                continue;
            }
            if let Some(reason) = core.end_reason() {
                if !core.has_output() {
                    break reason;
                }
                continue;
            }
            if shutting_down && core.is_between_transactions() {
                guard(&mut core, |c| c.shutdown());
                continue;
            }

            // 3. Deadlines.
            let wait = core.upstream_wait();
            upstream_deadline = match (wait, upstream_deadline) {
                (UpstreamWait::Idle, _) => None,
                (w, Some((prev, at))) if prev == w => Some((w, at)),
                (w, _) => Some((w, Instant::now() + reply_timeout(&ctx, w))),
            };
            let read_client = core.wants_client_input();
            let client_timer = read_client && wait == UpstreamWait::Idle
                || core.in_content()
                || partial_since.is_some();
            partial_since = match (core.has_partial_line(), partial_since) {
                (false, _) => None,
                (true, Some(t)) => Some(t),
                (true, None) => Some(Instant::now()),
            };
            let mut next_client_deadline = client_deadline.min(lifetime_end);
            if let Some(t) = partial_since {
                next_client_deadline = next_client_deadline.min(t + ctx.timeouts.command);
            }
            let upstream_at = upstream_deadline.map(|(_, at)| at);
            let client_at = client_timer.then_some(next_client_deadline);
            let next = upstream_at
                .into_iter()
                .chain(client_at)
                .fold(lifetime_end, Instant::min);
            if timer.is_elapsed() || next < timer.deadline() {
                timer.as_mut().reset(next);
            }
            core.release_idle_buffers();
            let read_upstream = upstream.is_open();

            // 4. Wait for the first thing to happen.
            tokio::select! {
                biased;
                (now, rx) = &mut next_signal => {
                    if now == stop::FORCE {
                        // The drain deadline passed (or the server is gone):
                        // nothing more to wait for.
                        guard(&mut core, |c| c.shutdown());
                        next_signal = Box::pin(std::future::pending());
                    } else {
                        shutting_down |= now == stop::DRAIN;
                        next_signal = Box::pin(next_stop(rx));
                    }
                }
                r = upstream.read_some(), if read_upstream => {
                    match r {
                        ReadOutcome::Data(n) => {
                            // No await between the read and here: the bytes are
                            // still in the thread's scratch buffer.
                            stats.from_upstream += n as u64;
                            received(n, |buf| guard(&mut core, |c| c.upstream_data(buf)));
                            if let Some((w, _)) = upstream_deadline {
                                // Any reply bytes restart the reply timer.
                                upstream_deadline = Some((w, Instant::now() + reply_timeout(&ctx, w)));
                            }
                        }
                        ReadOutcome::Eof => {
                            upstream = Conn::Gone;
                            guard(&mut core, |c| c.upstream_eof());
                        }
                    }
                }
                r = client.read_some(), if read_client => {
                    match r {
                        ReadOutcome::Data(n) => {
                            stats.from_client += n as u64;
                            client_deadline = Instant::now() + ctx.timeouts.client_idle;
                            received(n, |buf| guard(&mut core, |c| c.client_data(buf)));
                            if core.in_content() {
                                let (since, bytes) = content_started.get_or_insert((Instant::now(), 0));
                                *bytes += n as u64;
                                if too_slow(*since, *bytes, ctx.limits.min_data_rate) {
                                    guard(&mut core, |c| c.client_timeout());
                                }
                            } else {
                                content_started = None;
                            }
                        }
                        ReadOutcome::Eof => {
                            guard(&mut core, |c| c.client_eof());
                        }
                    }
                }
                () = &mut timer => {
                    let now = Instant::now();
                    if upstream_at.is_some_and(|at| at <= now) {
                        guard(&mut core, |c| c.upstream_timeout());
                    } else if client_at.is_some_and(|at| at <= now) || lifetime_end <= now {
                        guard(&mut core, |c| c.client_timeout());
                    } else {
                        // Early: the deadline it was armed for moved later.
                        timer.as_mut().reset(next);
                    }
                }
            }
        };
        upstream.shutdown().await;
        client.shutdown().await;
        end(
            &ctx, &id, peer, &server, &core, &stats, &tls, reason, started,
        );
    }
}

/// Connects the upstream leg ([`upstream::establish`]) and feeds its
/// greeting to the core; on failure answers the client (F1), logs and
/// counts the session's end, and gives `None`.
#[allow(clippy::too_many_arguments)]
async fn set_up_upstream(
    ctx: &SessionContext,
    peer: SocketAddr,
    id: &str,
    core: &mut Core,
    stats: &mut Stats,
    tls: &mut LegTls,
    client: &mut Conn,
    started: Instant,
) -> Option<(Conn, String)> {
    let setup = SetupTimeouts {
        connect: ctx.timeouts.upstream_connect,
        reply: ctx.timeouts.upstream_reply,
        handshake: ctx.timeouts.tls_handshake,
    };
    let who = ClientAddress {
        forwarding: ctx.forwarding,
        client: peer,
        // Only a PROXY header out carries it: no getsockname otherwise.
        local: match ctx.forwarding {
            ClientAddressForwarding::ProxyV1 | ClientAddressForwarding::ProxyV2 => {
                client.local_addr().unwrap_or(peer)
            }
            _ => peer,
        },
    };
    let connect_started = Instant::now();
    let established = upstream::establish(
        &ctx.upstream.servers,
        &ctx.upstream_tls,
        ctx.helo.as_deref(),
        setup,
        who,
    )
    .await;
    let connect_secs = connect_started.elapsed().as_secs_f64();
    match established {
        Ok(est) => {
            ctx.metrics
                .upstream_connect(&ctx.upstream.name, true, connect_secs);
            ctx.readiness
                .set_upstream_reachable(&ctx.upstream.name, true);
            if est.tls.is_some() {
                ctx.metrics.tls_handshake(TlsLeg::Upstream, true);
            }
            let verified = est.tls.as_ref().is_some_and(|t| t.verified);
            core.set_upstream_tls(est.tls.is_some(), verified);
            if est.xclient {
                core.set_xclient(peer);
            }
            tls.upstream = est.tls;
            if !est.greeting.is_empty() {
                stats.from_upstream += est.greeting.len() as u64;
                guard(core, |c| c.upstream_data(&est.greeting));
            }
            Some((est.conn, est.server))
        }
        Err(e) => {
            tracing::warn!(
                session = %id,
                error = %escape(e.to_string().as_bytes()),
                timeout = e.cause().is_timeout(),
                "upstream unavailable"
            );
            let reply = e.client_reply(&ctx.core.hostname);
            let sent = timeout(Duration::from_secs(10), client.write_all(reply.as_bytes())).await;
            if matches!(sent, Ok(Ok(()))) {
                stats.to_client += reply.len() as u64;
            }
            client.shutdown().await;
            let reason = match e {
                UpstreamFailure::Unreachable(_) => {
                    ctx.metrics
                        .upstream_connect(&ctx.upstream.name, false, connect_secs);
                    ctx.readiness
                        .set_upstream_reachable(&ctx.upstream.name, false);
                    EndReason::UpstreamUnavailable
                }
                UpstreamFailure::TlsUnavailable(_) => {
                    ctx.metrics.tls_handshake(TlsLeg::Upstream, false);
                    EndReason::UpstreamTls
                }
            };
            end(ctx, id, peer, "-", core, stats, tls, reason, started);
            None
        }
    }
}

/// `fut` within `limit` (`None` past it), like `tokio::time::timeout`, but
/// on the session's own timer, and a future that is ready at once (a write
/// the socket takes whole, the usual case) costs no timer at all: the
/// deadline is armed only when it has to wait. The loop re-arms the timer
/// for its own deadlines afterwards (a timer that fires early is re-armed
/// without acting). Small on purpose: it sits in every session's future.
fn within<F: std::future::Future>(
    limit: Duration,
    timer: Pin<&mut Sleep>,
    fut: F,
) -> Within<'_, F> {
    Within {
        fut,
        timer,
        limit,
        armed: false,
    }
}

pin_project_lite::pin_project! {
    /// The future [`within`] returns.
    struct Within<'t, F> {
        #[pin]
        fut: F,
        timer: Pin<&'t mut Sleep>,
        limit: Duration,
        armed: bool,
    }
}

impl<F: std::future::Future> std::future::Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        if !*this.armed {
            this.timer.as_mut().reset(Instant::now() + *this.limit);
            *this.armed = true;
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The wait for the server's next stop signal ([`stop`]).
type StopWait =
    std::pin::Pin<Box<dyn std::future::Future<Output = (u8, watch::Receiver<u8>)> + Send>>;

/// The server's next stop signal (`FORCE` when the server is gone), with
/// the receiver back for the one after.
async fn next_stop(mut rx: watch::Receiver<u8>) -> (u8, watch::Receiver<u8>) {
    let now = match rx.changed().await {
        Ok(()) => *rx.borrow(),
        Err(_) => stop::FORCE,
    };
    (now, rx)
}

fn reply_timeout(ctx: &SessionContext, wait: UpstreamWait) -> Duration {
    if wait == UpstreamWait::DataEnd {
        ctx.timeouts.data_end_reply
    } else {
        ctx.timeouts.upstream_reply
    }
}

/// The client-leg TLS handshake on the raw stream, within one deadline
/// (TLS 1.2 and 1.3 only).
async fn client_handshake(client: &mut Conn, ctx: &SessionContext) -> Result<TlsInfo, String> {
    let Some(server_tls) = &ctx.server_tls else {
        return Err("no certificate configured".into());
    };
    let Some(tcp) = client.take_plain() else {
        return Err("the client leg is not plain TCP".into());
    };
    let acceptor = TlsAcceptor::from(server_tls.config());
    // R3: at most `max_tls_handshakes` in progress; a handshake over the
    // limit waits for a slot, and the wait counts against its deadline.
    let handshake = async {
        let Ok(_slot) = ctx.tls_handshakes.acquire().await else {
            return Err("TLS handshakes are closed".to_string());
        };
        acceptor
            .accept(tcp)
            .await
            .map_err(|e| format!("handshake failed: {e}"))
    };
    match timeout(ctx.timeouts.tls_handshake, handshake).await {
        Ok(Ok(stream)) => {
            let info = TlsInfo::from_common(stream.get_ref().1, false);
            *client = Conn::ServerTls(Box::new(stream));
            Ok(info)
        }
        Ok(Err(e)) => Err(e),
        Err(_) if ctx.tls_handshakes.available_permits() == 0 => Err(format!(
            "handshake deadline exceeded ({} handshakes in progress: limits.max_tls_handshakes)",
            ctx.limits.max_tls_handshakes
        )),
        Err(_) => Err("handshake deadline exceeded".into()),
    }
}

/// True when a transfer has run long enough to judge and is slower than the
/// minimum rate (R3: a byte-a-second trickle cannot hold a session).
fn too_slow(since: Instant, bytes: u64, min_rate: u64) -> bool {
    if min_rate == 0 {
        return false;
    }
    let secs = since.elapsed().as_secs();
    secs >= 30 && bytes / secs < min_rate
}

/// Runs a core call; a panic ends the session with `451 4.3.0` (F4).
fn guard(core: &mut Core, f: impl FnOnce(&mut Core)) {
    if catch_unwind(AssertUnwindSafe(|| f(core))).is_err() {
        tracing::error!("internal error in session core; ending the session");
        core.internal_error();
    }
}

#[derive(Default)]
struct Stats {
    from_client: u64,
    to_client: u64,
    from_upstream: u64,
    to_upstream: u64,
}

fn log_event(id: &str, peer: SocketAddr, server: &str, ctx: &SessionContext, event: &Event) {
    match event {
        Event::Rewrite(r) => {
            let Rewrite {
                context,
                address,
                rule,
                rules_version,
                original,
                new,
                shadow,
            } = r.as_ref();
            ctx.metrics
                .rewrite(rule, original.code().get(), new.code().get(), *shadow);
            ctx.console.rewrite(id, peer.ip(), r, &ctx.addresses);
            // Text fields as &str: the log writers take them as they are,
            // without a second formatting pass (one per rewrite matters on a
            // relay where every RCPT is remapped).
            let (upstream, original, new) = (
                escape(server.as_bytes()),
                escape(original.raw()),
                escape(new.raw()),
            );
            tracing::info!(
                target: "replyfix::rewrite",
                session = id,
                client = %peer.ip(),
                listener = ctx.listener.as_str(),
                upstream = upstream.as_str(),
                context = context.as_str(),
                address = address.as_ref().map(|a| ctx.addresses.show(a)).unwrap_or_default(),
                rule = &**rule,
                rules_version = &**rules_version,
                original = original.as_str(),
                new = new.as_str(),
                mode = if *shadow { "shadow" } else { "enforce" },
                "{}",
                if *shadow { "reply would be rewritten (shadow mode)" } else { "reply rewritten" }
            );
        }
        Event::Kept { context, rule } => {
            tracing::debug!(session = %id, context = %context, rule = %rule, "rule kept reply");
        }
        Event::PossibleDuplicate => {
            tracing::warn!(session = %id, client = %peer.ip(), upstream = %escape(server.as_bytes()),
                "no final reply to the end of data: the client was told to retry; a duplicate delivery is possible");
        }
        Event::UpstreamProtocolError(why) => {
            tracing::warn!(session = %id, upstream = %escape(server.as_bytes()), error = %why, "upstream protocol error");
        }
        Event::ClientProtocolError(why) => {
            tracing::info!(session = %id, client = %peer.ip(), error = %why, "client protocol error");
        }
        Event::Auth { mechanism, success } => {
            // L1: mechanism and outcome only.
            tracing::info!(session = %id, mechanism = %mechanism, success = *success, "authentication");
        }
        Event::Reply { context, code } => ctx.metrics.reply(*context, *code),
        Event::UpstreamDemandsTls { context } => {
            ctx.metrics
                .upstream_tls_demanded(&ctx.listener, &ctx.upstream.name);
            tracing::warn!(
                session = %id,
                listener = %ctx.listener,
                upstream = %ctx.upstream.name,
                server = %escape(server.as_bytes()),
                context = %context,
                tls_policy = ctx.upstream.tls.policy.as_str(),
                "the upstream demands TLS on replyfix's plaintext connection to it; clients cannot fix this: set this upstream's tls.policy to may or verify (docs/tls.md)"
            );
        }
        Event::Transcript(entry) => {
            if let Some(t) = &ctx.transcript {
                t.record(entry);
            }
        }
        Event::Transaction {
            accepted,
            recipients,
        } => {
            tracing::debug!(session = %id, accepted = *accepted, recipients = *recipients, "transaction");
        }
    }
}

/// The session's last word: metrics and the session log line.
#[allow(clippy::too_many_arguments)]
fn end(
    ctx: &SessionContext,
    id: &str,
    peer: SocketAddr,
    server: &str,
    core: &Core,
    stats: &Stats,
    tls: &LegTls,
    reason: EndReason,
    started: Instant,
) {
    ctx.metrics.session_ended(&ctx.listener, reason.as_str());
    let show = |t: &Option<TlsInfo>| -> std::borrow::Cow<'static, str> {
        match t {
            Some(t) => format!(
                "{} {}{}",
                t.version,
                t.cipher,
                if t.verified { " verified" } else { "" }
            )
            .into(),
            None => "none".into(),
        }
    };
    // Text fields as &str, written without a second formatting pass.
    let (upstream, client_tls, upstream_tls) = (
        escape(server.as_bytes()),
        show(&tls.client),
        show(&tls.upstream),
    );
    tracing::info!(
        target: "replyfix::session",
        session = id,
        client = %peer,
        upstream = upstream.as_str(),
        client_tls = &*client_tls,
        upstream_tls = &*upstream_tls,
        auth = core.auth_summary(),
        transactions = core.transactions,
        rewrites = core.rewrites,
        bytes_from_client = stats.from_client,
        bytes_to_client = stats.to_client,
        bytes_from_upstream = stats.from_upstream,
        bytes_to_upstream = stats.to_upstream,
        duration_ms = started.elapsed().as_millis() as u64,
        end = reason.as_str(),
        "session closed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle session's memory is mostly its future: keep the setup's large
    /// state (TLS, reply buffers) boxed out of it (bench/README.md: ≤ 4 KiB per idle
    /// session). Measured, not timed.
    #[tokio::test]
    async fn a_session_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let config = crate::config::Config::quick(vec![addr], vec![addr.to_string()]).unwrap();
        let upstream = config.upstreams[0].clone();
        let ctx = Arc::new(SessionContext {
            listener: "t".into(),
            upstream_tls: UpstreamTlsContext::new(&upstream.tls).unwrap(),
            upstream,
            timeouts: config.timeouts.clone(),
            limits: config.limits.clone(),
            core: Arc::new(CoreSettings::from_config(&config, "t", "t")),
            rules: Arc::new(ArcSwap::from_pointee(RuleSet::builtin())),
            addresses: AddressLog::new(config.logging.log_addresses, None),
            server_tls: None,
            implicit_tls: false,
            helo: Some("h.example".into()),
            forwarding: ClientAddressForwarding::None,
            metrics: Arc::new(Metrics::new()),
            readiness: Arc::new(Readiness::new(["t"])),
            transcript: None,
            tls_handshakes: Arc::new(tokio::sync::Semaphore::new(1)),
            console: crate::console::Recorder::off(),
        });
        let (_tx, rx) = watch::channel(stop::RUNNING);
        let fut = run(client, addr, ctx, "id".into(), rx, ());
        let size = std::mem::size_of_val(&fut);
        println!("session future: {size} bytes");
        // 1,232 bytes in a debug build (1,896 before the upstream set-up
        // and the arguments' second copy left it, 1,424 before the
        // timeouts shared the session's one timer).
        assert!(size <= 1344, "session future is {size} bytes");
    }
}
