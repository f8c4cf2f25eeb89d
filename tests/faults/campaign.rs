//! The mixed fault campaign: many messages, each retried until accepted,
//! every attempt through replyfix with a randomly drawn fault, from
//! concurrent clients; then the count of what the client was told against
//! what the upstreams hold. One code path for the short form (a test in CI)
//! and the long form (`bench/faults.sh`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::client::{self, Attempt, Outcome};
use super::plan::{self, Plan, Rng, Route, SINK_POINTS};
use super::upstream::{FaultUpstream, Shared, Stored};
use crate::common::{PROXY_HOSTNAME, Replyfix, SmtpSink, dot_stuff, free_port, poll, tool};

/// replyfix's timeouts in the campaign (short, so stalls cost little).
pub const UPSTREAM_CONNECT: &str = "300ms";
pub const UPSTREAM_REPLY: &str = "400ms";
pub const DATA_END_REPLY: &str = "500ms";

/// The campaign's knobs; the environment overrides the defaults:
/// `FAULTS_MESSAGES`, `FAULTS_SEED` (decimal or 0x hex), `FAULTS_CLIENTS`.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub messages: u64,
    pub clients: u64,
    pub seed: u64,
    /// Attempts per message; the last one never carries a fault.
    pub max_attempts: u64,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

impl Settings {
    /// `seed: None` draws one from the clock (printed, to repeat the run).
    pub fn from_env(messages: u64, seed: Option<u64>) -> Settings {
        let clock = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        };
        Settings {
            messages: env_u64("FAULTS_MESSAGES").unwrap_or(messages),
            clients: env_u64("FAULTS_CLIENTS").unwrap_or(32).clamp(1, 200),
            seed: env_u64("FAULTS_SEED").or(seed).unwrap_or_else(clock),
            max_attempts: 8,
        }
    }
}

/// The config: one listener per route, each relaying to its upstream.
fn config(listen: &[SocketAddr], upstreams: &[SocketAddr]) -> String {
    let mut y = format!("hostname: {PROXY_HOSTNAME}\nlisteners:\n");
    for (i, addr) in listen.iter().enumerate() {
        y.push_str(&format!(
            "  - name: route{i}\n    address: \"{addr}\"\n    upstream: up{i}\n"
        ));
    }
    y.push_str("upstreams:\n");
    for (i, addr) in upstreams.iter().enumerate() {
        y.push_str(&format!("  - name: up{i}\n    servers: [\"{addr}\"]\n"));
    }
    y.push_str(&format!(
        "timeouts:\n  upstream_connect: {UPSTREAM_CONNECT}\n  upstream_reply: {UPSTREAM_REPLY}\n  \
         data_end_reply: {DATA_END_REPLY}\n  client_idle: 10s\n  command: 10s\n\
         limits:\n  max_sessions: 20000\n  max_sessions_per_client: 20000\n"
    ));
    y
}

/// One client: messages `w`, `w + clients`, ..., each retried until the
/// client hears 250 (or a 5xx, or a hang), at most `max_attempts` times.
async fn worker(
    w: u64,
    s: Settings,
    listen: Arc<Vec<SocketAddr>>,
    shared: Arc<Shared>,
    done: Arc<AtomicU64>,
) -> Vec<Attempt> {
    let mut out = Vec::new();
    let mut msg = w;
    while msg < s.messages {
        let body = plan::body(s.seed, msg);
        for attempt in 0..s.max_attempts {
            let sid = msg * 16 + attempt;
            let wire = dot_stuff(&plan::message(msg, sid, &body));
            let mut rng = Rng::derive(s.seed, msg, 1 + attempt);
            let plan = Plan::draw(&mut rng, wire.len(), attempt + 1 == s.max_attempts);
            if plan.route == Route::Fault {
                shared.plan(sid, plan.upstream);
            }
            let a = client::attempt(listen[plan.route.index()], msg, sid, plan, &wire).await;
            let retry = matches!(a.outcome, Outcome::Deferred | Outcome::ClientKilled);
            out.push(a);
            if !retry {
                break;
            }
        }
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        if s.messages >= 20_000 && n.is_multiple_of(s.messages / 10) {
            eprintln!("faults: {n} of {} messages done", s.messages);
        }
        msg += s.clients;
    }
    out
}

/// The ids in one smtp-sink dump file.
fn dump_ids(text: &str) -> Option<(u64, u64)> {
    let mut msg = None;
    let mut sid = None;
    for line in text.lines().take(40) {
        if let Some(v) = line.strip_prefix("X-Fault-Id: m") {
            msg = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("X-Fault-Session: s") {
            sid = v.trim().parse().ok();
        }
    }
    Some((msg?, sid?))
}

/// What replyfix's log says, read as a stream (the long run's log is large).
#[derive(Default)]
struct LogSummary {
    sessions: u64,
    ends: BTreeMap<String, u64>,
    possible_duplicates: u64,
    warnings_and_errors: BTreeMap<String, u64>,
}

fn read_log(rf: &Replyfix) -> LogSummary {
    let mut sum = LogSummary::default();
    let Ok(file) = std::fs::File::open(rf.log_path()) else {
        return sum;
    };
    for line in BufReader::new(file).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let message = v["message"].as_str().unwrap_or("");
        let level = v["level"].as_str().unwrap_or("");
        if message == "session closed" {
            sum.sessions += 1;
            let end = v["end"].as_str().unwrap_or("?").to_string();
            *sum.ends.entry(end).or_default() += 1;
        } else if message.contains("a duplicate delivery is possible") {
            sum.possible_duplicates += 1;
        }
        if level == "WARN" || level == "ERROR" {
            *sum.warnings_and_errors
                .entry(format!("{level} {message}"))
                .or_default() += 1;
        }
    }
    sum
}

fn pct(n: u64, of: u64) -> String {
    format!("{:.3} %", 100.0 * n as f64 / of.max(1) as f64)
}

/// Runs the campaign, prints the report, and fails the test on any loss,
/// invented success, stored aborted message, unexplained duplicate, made-up
/// 5xx, hang or protocol breach.
pub fn run(s: Settings) {
    let Some(sink_bin) = tool("smtp-sink") else {
        return;
    };
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "faults: seed {:#x}, {} messages, {} clients, {} attempts at most, replyfix {profile} build \
         (repeat with FAULTS_SEED={:#x} FAULTS_MESSAGES={} FAULTS_CLIENTS={})",
        s.seed, s.messages, s.clients, s.max_attempts, s.seed, s.messages, s.clients
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let up = rt.block_on(FaultUpstream::start());
    let routes = Route::all();
    let mut sinks: Vec<(Route, SmtpSink)> = Vec::new();
    let upstreams: Vec<SocketAddr> = routes
        .iter()
        .map(|&route| match route {
            Route::Fault => up.main,
            Route::GreetingStall => up.greeting_stall,
            Route::GreetingReset => up.greeting_reset,
            Route::ConnectStall => up.connect_stall,
            Route::Sink => {
                let sink = SmtpSink::start(&sink_bin, &[]);
                let addr = sink.addr;
                sinks.push((route, sink));
                addr
            }
            Route::SinkFault { quiet, point } => {
                let mode = if quiet { "-q" } else { "-Q" };
                let sink = SmtpSink::start(&sink_bin, &[mode, SINK_POINTS[point]]);
                let addr = sink.addr;
                sinks.push((route, sink));
                addr
            }
        })
        .collect();
    let mut listen = Vec::new();
    let rf = Replyfix::start_with_config(None, |first| {
        listen = vec![first];
        listen.extend((1..routes.len()).map(|_| -> SocketAddr {
            format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("socket address")
        }));
        config(&listen, &upstreams)
    });

    // Run.
    let started = Instant::now();
    let listen = Arc::new(listen);
    let done = Arc::new(AtomicU64::new(0));
    // Bound on the whole run: far above what it takes (every wait inside
    // is bounded too).
    let budget = Duration::from_secs(120 + s.messages / 20);
    let attempts: Vec<Attempt> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for w in 0..s.clients {
            set.spawn(worker(
                w,
                s,
                Arc::clone(&listen),
                Arc::clone(&up.shared),
                Arc::clone(&done),
            ));
        }
        let all = tokio::time::timeout(budget, async {
            let mut all = Vec::new();
            while let Some(r) = set.join_next().await {
                all.extend(r.expect("client task"));
            }
            all
        })
        .await;
        all.unwrap_or_else(|_| panic!("the campaign did not finish within {budget:?}"))
    });
    let wall = started.elapsed();

    // What the upstreams hold: the fault upstream's record, and smtp-sink's
    // dump files once they stop changing.
    let mut held: Vec<Stored> = up.shared.stored();
    let from_fault_upstream = held.len() as u64;
    let mut last = usize::MAX;
    let _ = poll(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_millis(500));
        let n: usize = sinks.iter().map(|(_, k)| k.dumps().len()).sum();
        let stable = n == last;
        last = n;
        stable.then_some(())
    });
    let mut unreadable_dumps = 0u64;
    for (_, sink) in &sinks {
        for file in sink.dumps() {
            let text =
                String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
            match dump_ids(&text) {
                Some((msg, sid)) => held.push(Stored {
                    msg,
                    sid,
                    body_ok: true,
                }),
                None => unreadable_dumps += 1,
            }
        }
    }
    let from_sinks = held.len() as u64 - from_fault_upstream;

    // replyfix's log, once every session's record is written.
    let mut log = read_log(&rf);
    for _ in 0..30 {
        if log.sessions >= attempts.len() as u64 {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        log = read_log(&rf);
    }
    drop(rf);
    drop(rt);

    // Accounting.
    let by_sid: HashMap<u64, &Attempt> = attempts.iter().map(|a| (a.sid, a)).collect();
    let held_sids: HashSet<(u64, u64)> = held.iter().map(|h| (h.msg, h.sid)).collect();
    let mut copies: HashMap<u64, u64> = HashMap::new();
    for h in &held {
        *copies.entry(h.msg).or_default() += 1;
    }
    let accepted_msgs: HashSet<u64> = attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Accepted)
        .map(|a| a.msg)
        .collect();
    let losses: Vec<u64> = accepted_msgs
        .iter()
        .filter(|m| !copies.contains_key(m))
        .copied()
        .collect();
    // F1, per attempt: each 250 after the end of data is backed by the copy
    // stored in that very session.
    let unbacked: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Accepted && !held_sids.contains(&(a.msg, a.sid)))
        .collect();
    // The client died before its end of data: nothing may be stored.
    let stored_aborted: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.outcome == Outcome::ClientKilled && held_sids.contains(&(a.msg, a.sid)))
        .collect();
    let duplicated: Vec<u64> = copies
        .iter()
        .filter(|&(_, &n)| n > 1)
        .map(|(&m, _)| m)
        .collect();
    // Each copy stored in a session whose client did not hear 250, by the
    // cause (the attempt's plan). Explained: the upstream stored the message
    // and then did not say so (F2's possible duplicate).
    let mut silent_copies: BTreeMap<String, u64> = BTreeMap::new();
    let mut unexplained: Vec<String> = Vec::new();
    let mut unknown_copies = 0u64;
    for h in &held {
        let Some(a) = by_sid.get(&h.sid) else {
            unknown_copies += 1;
            continue;
        };
        if a.outcome == Outcome::Accepted {
            continue;
        }
        let eod = a.end_of_data.as_deref().unwrap_or("(none)");
        let own_451 = !client::from_upstream(eod) && eod.starts_with("451 4.4.");
        let explained = a.plan.may_duplicate() || own_451;
        let key = format!("{} -> client got {:?}", a.plan.label(), client::class(eod));
        *silent_copies.entry(key.clone()).or_default() += 1;
        if !explained {
            unexplained.push(format!("m{} s{}: {key}", a.msg, a.sid));
        }
    }
    let held_never_accepted = copies.keys().filter(|m| !accepted_msgs.contains(m)).count() as u64;
    let mut made_up: BTreeMap<String, u64> = BTreeMap::new();
    let mut made_up_5xx = 0u64;
    let mut made_up_success = 0u64;
    for a in &attempts {
        for (step, reply) in &a.made_up {
            *made_up.entry(format!("{step:?}: {reply}")).or_default() += 1;
            match reply.as_bytes().first() {
                Some(b'5') => made_up_5xx += 1,
                Some(b'2' | b'3') => made_up_success += 1,
                _ => {}
            }
        }
    }
    // Cross-check with replyfix's log: each 451 it made up itself after an
    // end of data it had forwarded (F2: `451 4.4.1`/`451 4.4.2` with its
    // hostname; the drain reply mid-content has none) is logged as a
    // possible duplicate, and nothing else is.
    let own_end_of_data_451 = attempts
        .iter()
        .flat_map(|a| &a.made_up)
        .filter(|(step, r)| {
            *step == client::Step::EndOfData
                && (r.starts_with("451 4.4.1 <host> ") || r.starts_with("451 4.4.2 <host> "))
        })
        .count() as u64;
    let problems: Vec<String> = attempts
        .iter()
        .flat_map(|a| {
            a.problems
                .iter()
                .map(move |p| format!("m{} s{} [{}]: {p}", a.msg, a.sid, a.plan.label()))
        })
        .collect();
    let count = |o: Outcome| attempts.iter().filter(|a| a.outcome == o).count() as u64;
    let mut by_plan: BTreeMap<String, [u64; 4]> = BTreeMap::new();
    for a in &attempts {
        let e = by_plan.entry(a.plan.label()).or_default();
        e[0] += 1;
        e[3] += a.elapsed.as_millis() as u64;
        if a.outcome == Outcome::Accepted {
            e[1] += 1;
        }
        if held_sids.contains(&(a.msg, a.sid)) {
            e[2] += 1;
        }
    }
    let corrupt = held.iter().filter(|h| !h.body_ok).count() as u64;
    let unknown_sessions = up.shared.unknown_sessions.load(Ordering::Relaxed) as u64;
    let unreadable = up.shared.unreadable.load(Ordering::Relaxed) as u64;

    // Report.
    let m = s.messages;
    let mut r = String::new();
    let mut line = |t: String| {
        r.push_str(&t);
        r.push('\n');
    };
    line(format!(
        "== fault injection report: seed {:#x}, {} clients, replyfix {profile}, wall time {:.1} s",
        s.seed,
        s.clients,
        wall.as_secs_f64()
    ));
    line(format!(
        "messages {m}; sessions (attempts) {}: accepted {}, deferred {}, client killed {}, bounced {}, hung {}",
        attempts.len(),
        count(Outcome::Accepted),
        count(Outcome::Deferred),
        count(Outcome::ClientKilled),
        count(Outcome::Bounced),
        count(Outcome::Hang)
    ));
    line(format!(
        "messages the client saw accepted (250 after end of data): {} ({})",
        accepted_msgs.len(),
        pct(accepted_msgs.len() as u64, m)
    ));
    line(format!(
        "messages the upstreams hold: {} distinct, {} copies ({} in the fault upstream, {} in smtp-sink dumps)",
        copies.len(),
        held.len(),
        from_fault_upstream,
        from_sinks
    ));
    line(format!(
        "LOSSES (client saw 250, no upstream holds it): {}",
        losses.len()
    ));
    line(format!(
        "250s not backed by a copy stored in that session (F1): {}",
        unbacked.len()
    ));
    line(format!(
        "copies stored from sessions whose client died mid-DATA: {}",
        stored_aborted.len()
    ));
    line(format!(
        "duplicates (held more than once): {} messages, rate {} of messages",
        duplicated.len(),
        pct(duplicated.len() as u64, m)
    ));
    line(format!(
        "held but the client never heard 250 (gave up): {held_never_accepted}"
    ));
    line("copies stored in sessions whose client did not hear 250, by cause:".into());
    for (k, n) in &silent_copies {
        line(format!("  {n:>7}  {k}"));
    }
    line(format!(
        "replies replyfix made up: {} (5xx {made_up_5xx}, 2xx/3xx {made_up_success}), by step and class:",
        made_up.values().sum::<u64>()
    ));
    for (k, n) in &made_up {
        line(format!("  {n:>7}  {k}"));
    }
    line(format!(
        "replyfix log: {} sessions, {} `possible duplicate` warnings; ends: {:?}",
        log.sessions, log.possible_duplicates, log.ends
    ));
    line(format!(
        "replyfix's own 451 after a forwarded end of data: {own_end_of_data_451} (log: {} possible-duplicate warnings)",
        log.possible_duplicates
    ));
    line("replyfix warnings and errors:".into());
    for (k, n) in &log.warnings_and_errors {
        line(format!("  {n:>7}  {k}"));
    }
    line("attempts by plan (attempts / client heard 250 / stored / mean ms):".into());
    for (k, [n, acc, st, ms]) in &by_plan {
        line(format!(
            "  {n:>7} {acc:>7} {st:>7} {:>6}  {k}",
            ms / n.max(&1)
        ));
    }
    line(format!(
        "integrity: bodies failing their checksum {corrupt}, unreadable messages {unreadable}, \
         unreadable dumps {unreadable_dumps}, sessions with no plan {unknown_sessions}, \
         copies from unknown sessions {unknown_copies}"
    ));
    line(format!("client-side protocol problems: {}", problems.len()));
    for p in problems.iter().take(20) {
        line(format!("  {p}"));
    }
    for u in unexplained.iter().take(20) {
        line(format!("  unexplained duplicate: {u}"));
    }
    println!("{r}");

    let show = |v: &[&Attempt]| {
        v.iter()
            .take(10)
            .map(|a| {
                format!(
                    "m{} s{} [{}] {:?}",
                    a.msg,
                    a.sid,
                    a.plan.label(),
                    a.end_of_data
                )
            })
            .collect::<Vec<_>>()
    };
    assert!(
        losses.is_empty(),
        "LOSSES: {:?}",
        &losses[..losses.len().min(20)]
    );
    assert!(
        unbacked.is_empty(),
        "250 without a stored copy (F1): {:?}",
        show(&unbacked)
    );
    assert!(
        stored_aborted.is_empty(),
        "stored although the client died mid-DATA: {:?}",
        show(&stored_aborted)
    );
    assert!(
        unexplained.is_empty(),
        "unexplained duplicates: {unexplained:?}"
    );
    assert_eq!(made_up_5xx, 0, "replyfix made up a 5xx: {made_up:?}");
    assert_eq!(
        made_up_success, 0,
        "replyfix made up a 2xx/3xx: {made_up:?}"
    );
    assert!(problems.is_empty(), "protocol problems: {problems:?}");
    assert_eq!(count(Outcome::Bounced), 0, "a message bounced");
    assert_eq!(
        own_end_of_data_451, log.possible_duplicates,
        "each 451 after a forwarded end of data is logged as a possible duplicate (F2)"
    );
    assert_eq!(
        corrupt + unreadable + unreadable_dumps,
        0,
        "damaged messages"
    );
    assert_eq!(unknown_sessions + unknown_copies, 0, "sessions mixed up");
    assert!(
        log.warnings_and_errors
            .keys()
            .all(|k| !k.starts_with("ERROR")),
        "replyfix logged errors: {:?}",
        log.warnings_and_errors
    );
}
