//! One relayed SMTP session: the async driver around [`core::Core`].
//!
//! The driver owns the two sockets, the deadlines and the write side of
//! backpressure; every protocol decision is the core's. Each loop turn
//! writes what the core produced (all of it, so a slow reader holds back the
//! other side: R2), logs the core's events, then waits for whichever comes
//! first: bytes from the upstream, bytes from the client (only while the
//! core wants them: the DATA and AUTH gates, D4/P4), a deadline (F3, R3), or
//! shutdown (F6).
//!
//! It must never decide what a byte means, never log message content or
//! SASL data (L1, L2), and never wait without a deadline.

pub mod core;

use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout};

use self::core::{Core, CoreSettings, EndReason, Event, UpstreamWait};
use crate::config::{Limits, Timeouts, UpstreamConfig};
use crate::logging::AddressLog;
use crate::rules::RuleSet;
use crate::smtp::escape::escape;

/// Size of one read from either socket. The buffer lives on the stack for
/// the duration of one read only, so an idle session holds none.
const READ_CHUNK: usize = 16 * 1024;

/// What every session of one listener shares.
pub struct SessionContext {
    pub listener: String,
    pub upstream: UpstreamConfig,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// The core settings without the client address.
    pub core: CoreSettings,
    pub rules: Arc<ArcSwap<RuleSet>>,
    pub addresses: AddressLog,
}

/// Connects to the upstream's servers in order (failover), each within the
/// connect timeout. Returns the stream and the server it reached.
pub async fn connect_upstream(
    servers: &[String],
    connect_timeout: Duration,
) -> Result<(TcpStream, String), String> {
    let mut last = String::from("no servers configured");
    for server in servers {
        let attempt = async {
            let addrs = tokio::net::lookup_host(server.as_str())
                .await
                .map_err(|e| format!("{server}: cannot resolve: {e}"))?;
            let mut err = format!("{server}: no address");
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(s) => return Ok(s),
                    Err(e) => err = format!("{server} ({addr}): {e}"),
                }
            }
            Err(err)
        };
        match timeout(connect_timeout, attempt).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, server.clone()));
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("{server}: connect timed out after {connect_timeout:?}"),
        }
        tracing::warn!(upstream = %server, error = %escape(last.as_bytes()), "upstream server unreachable, trying the next");
    }
    Err(last)
}

/// Runs one session to its end. Never panics: a panic inside the core ends
/// this session with `451 4.3.0` (F4).
pub async fn run(
    client: TcpStream,
    peer: SocketAddr,
    ctx: Arc<SessionContext>,
    id: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let _ = client.set_nodelay(true);
    let mut settings = ctx.core.clone();
    settings.client = Some(peer.ip());
    let mut core = Core::new(settings, ctx.rules.clone());
    let (cr, mut cw) = client.into_split();
    let mut stats = Stats::default();

    let upstream = connect_upstream(&ctx.upstream.servers, ctx.timeouts.upstream_connect).await;
    let (mut ur, mut uw, server) = match upstream {
        Ok((stream, server)) => {
            let (r, w) = stream.into_split();
            (Some(r), Some(w), server)
        }
        Err(e) => {
            tracing::warn!(session = %id, error = %escape(e.as_bytes()), "upstream unavailable");
            core.upstream_unavailable();
            let out = core.take_to_client();
            let _ = timeout(Duration::from_secs(10), cw.write_all(&out)).await;
            log_end(
                &id,
                peer,
                "-",
                &core,
                &stats,
                EndReason::UpstreamUnavailable,
                started,
            );
            return;
        }
    };

    let mut upstream_deadline: Option<(UpstreamWait, Instant)> = None;
    let mut client_deadline = Instant::now() + ctx.timeouts.client_idle;
    let lifetime_end = Instant::now() + ctx.limits.max_session_lifetime;
    let mut content_started: Option<(Instant, u64)> = None;
    let mut shutting_down = *shutdown.borrow();

    let reason = loop {
        // 1. Write what the core produced, upstream first.
        let up = core.take_to_upstream();
        if !up.is_empty()
            && let Some(w) = uw.as_mut()
        {
            let res = timeout(ctx.timeouts.upstream_reply, w.write_all(&up)).await;
            stats.to_upstream += up.len() as u64;
            if !matches!(res, Ok(Ok(()))) {
                uw = None;
                ur = None;
                guard(&mut core, |c| c.upstream_eof());
            }
        }
        let out = core.take_to_client();
        if !out.is_empty() {
            let res = timeout(ctx.timeouts.client_idle, cw.write_all(&out)).await;
            stats.to_client += out.len() as u64;
            if !matches!(res, Ok(Ok(()))) {
                guard(&mut core, |c| c.client_eof());
                // Nothing more can reach the client.
                let _ = core.take_to_client();
            }
        }
        for event in core.take_events() {
            log_event(&id, peer, &server, &ctx, &event);
        }
        if core.upstream_must_close() && uw.is_some() {
            if let Some(mut w) = uw.take() {
                let _ = w.shutdown().await;
            }
            ur = None;
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

        // 2. Deadlines.
        let wait = core.upstream_wait();
        upstream_deadline = match (wait, upstream_deadline) {
            (UpstreamWait::Idle, _) => None,
            (w, Some((prev, at))) if prev == w => Some((w, at)),
            (w, _) => {
                let d = if w == UpstreamWait::DataEnd {
                    ctx.timeouts.data_end_reply
                } else {
                    ctx.timeouts.upstream_reply
                };
                Some((w, Instant::now() + d))
            }
        };
        let read_client = core.wants_client_input();
        let client_timer = read_client && wait == UpstreamWait::Idle || core.in_content();
        let next_client_deadline = client_deadline.min(lifetime_end);
        let far = Instant::now() + Duration::from_secs(86400);

        // 3. Wait for the first thing to happen.
        tokio::select! {
            biased;
            changed = shutdown.changed(), if !shutting_down => {
                if changed.is_err() || *shutdown.borrow() {
                    shutting_down = true;
                }
            }
            r = readable(ur.as_ref()), if ur.is_some() => {
                match r {
                    ReadOutcome::Data(buf) => {
                        stats.from_upstream += buf.len() as u64;
                        guard(&mut core, |c| c.upstream_data(&buf));
                        if let Some((w, _)) = upstream_deadline {
                            // Any reply bytes restart the reply timer.
                            upstream_deadline = Some((w, Instant::now() + if w == UpstreamWait::DataEnd { ctx.timeouts.data_end_reply } else { ctx.timeouts.upstream_reply }));
                        }
                    }
                    ReadOutcome::Eof => {
                        ur = None;
                        uw = None;
                        guard(&mut core, |c| c.upstream_eof());
                    }
                    ReadOutcome::WouldBlock => {}
                }
            }
            r = readable(Some(&cr)), if read_client => {
                match r {
                    ReadOutcome::Data(buf) => {
                        stats.from_client += buf.len() as u64;
                        client_deadline = Instant::now() + ctx.timeouts.client_idle;
                        guard(&mut core, |c| c.client_data(&buf));
                        if core.in_content() {
                            let (since, bytes) = content_started.get_or_insert((Instant::now(), 0));
                            *bytes += buf.len() as u64;
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
                    ReadOutcome::WouldBlock => {}
                }
            }
            _ = sleep_until(upstream_deadline.map(|(_, at)| at).unwrap_or(far)), if upstream_deadline.is_some() => {
                guard(&mut core, |c| c.upstream_timeout());
            }
            _ = sleep_until(next_client_deadline), if client_timer => {
                guard(&mut core, |c| c.client_timeout());
            }
            _ = sleep_until(lifetime_end) => {
                guard(&mut core, |c| c.client_timeout());
            }
        }
    };
    if let Some(mut w) = uw.take() {
        let _ = w.shutdown().await;
    }
    let _ = cw.shutdown().await;
    log_end(&id, peer, &server, &core, &stats, reason, started);
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

enum ReadOutcome {
    Data(Vec<u8>),
    Eof,
    WouldBlock,
}

/// Waits until the socket is readable, then reads what is there. The read
/// buffer exists only inside this call (an idle session holds no buffer).
async fn readable(half: Option<&OwnedReadHalf>) -> ReadOutcome {
    let Some(half) = half else {
        return std::future::pending().await;
    };
    if half.readable().await.is_err() {
        return ReadOutcome::Eof;
    }
    let mut buf = vec![0u8; READ_CHUNK];
    match half.try_read(&mut buf) {
        Ok(0) => ReadOutcome::Eof,
        Ok(n) => {
            buf.truncate(n);
            ReadOutcome::Data(buf)
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
        Err(_) => ReadOutcome::Eof,
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
        Event::Rewrite {
            context,
            address,
            rule,
            rules_version,
            original,
            new,
            shadow,
        } => {
            tracing::info!(
                target: "replyfix::rewrite",
                session = %id,
                client = %peer.ip(),
                listener = %ctx.listener,
                upstream = %escape(server.as_bytes()),
                context = %context,
                address = address.as_ref().map(|a| ctx.addresses.show(a)).unwrap_or_default(),
                rule = %rule,
                rules_version = %rules_version,
                original = %escape(original.raw()),
                new = %escape(new.raw()),
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
        Event::Transaction {
            accepted,
            recipients,
        } => {
            tracing::debug!(session = %id, accepted = *accepted, recipients = *recipients, "transaction");
        }
    }
}

fn log_end(
    id: &str,
    peer: SocketAddr,
    server: &str,
    core: &Core,
    stats: &Stats,
    reason: EndReason,
    started: Instant,
) {
    tracing::info!(
        target: "replyfix::session",
        session = %id,
        client = %peer,
        upstream = %escape(server.as_bytes()),
        client_tls = false,
        upstream_tls = false,
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
