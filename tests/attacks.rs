//! Resource attacks on the real `replyfix` binary (docs/protocol.md R1–R3, F3),
//! bounded and on loopback only, with short configured timeouts. Each test
//! prints replyfix's peak RSS (`VmHWM` of the child, from `/proc`) and
//! asserts its growth stays bounded. The floods (10,000 connections from one
//! address, half-open TLS handshakes, running out of descriptors) also check
//! replyfix's open descriptors (`/proc/PID/fd`) return to their baseline.
//! They need about 11,000 open files in this process: the soft limit is
//! raised to the hard limit, and the test fails if that is not enough.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::{FakeUpstream, Replyfix, ServeOptions, SmtpClient};

/// Bound on what one attack may add to replyfix's peak RSS.
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

/// `VmHWM` (peak) and `VmRSS` (now) of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Prints and checks the peak RSS against the baseline taken before the
/// attack.
fn report_rss(test: &str, rf: &Replyfix, baseline_hwm: u64) {
    let (hwm, rss) = memory_kib(rf.pid());
    println!(
        "{test}: replyfix peak RSS {} KiB (baseline peak {} KiB, growth {} KiB), RSS now {} KiB",
        hwm,
        baseline_hwm,
        hwm.saturating_sub(baseline_hwm),
        rss
    );
    assert!(
        hwm.saturating_sub(baseline_hwm) < RSS_GROWTH_LIMIT_KIB,
        "{test}: peak RSS grew by {} KiB",
        hwm - baseline_hwm
    );
}

fn short_timeouts() -> ServeOptions {
    ServeOptions::default()
        .yaml("timeouts: {client_idle: 2s, command: 2s, upstream_reply: 5s, data_end_reply: 5s}")
}

/// A session that has been greeted and has sent EHLO and a baseline RSS
/// read after that.
fn greeted(rf: &Replyfix) -> SmtpClient {
    let (mut c, greeting) = rf.connect_greeted();
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(c.cmd("EHLO attacker.test").starts_with("250"));
    c
}

#[test]
fn slowloris_between_commands_is_closed_by_the_idle_deadline_f3() {
    let _shared = no_flood();
    let up = FakeUpstream::start();
    let rf = Replyfix::start(up.addr, short_timeouts());
    let mut c = greeted(&rf);
    let (base, _) = memory_kib(rf.pid());
    let started = Instant::now();
    // A byte every three seconds: slower than client_idle (2 s).
    c.send(b"N");
    thread::sleep(Duration::from_secs(3));
    c.send_lenient(b"O");
    c.set_read_timeout(Duration::from_secs(10));
    let rest = c.read_to_close();
    assert!(
        rest.starts_with("421 4.4.2 ") && rest.contains("timeout exceeded"),
        "{rest:?}"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(6), "closed after {took:?}");
    report_rss("slowloris_idle", &rf, base);
}

#[test]
fn slowloris_trickling_one_command_is_closed_by_the_command_deadline_r3() {
    let _shared = no_flood();
    // R3: "a whole-command deadline ... so a byte-a-second trickle cannot
    // hold a session". With command: 2s and client_idle: 3s, a line that
    // gets one byte a second must be cut at about 2 s.
    let up = FakeUpstream::start();
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml(
            "timeouts: {client_idle: 3s, command: 2s, upstream_reply: 5s, data_end_reply: 5s}",
        ),
    );
    let mut c = greeted(&rf);
    let mut writer = c.try_clone_writer();
    let started = Instant::now();
    let trickle = thread::spawn(move || {
        for b in b"NOOP but very slowly".iter().take(8) {
            if writer.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_secs(1));
        }
    });
    c.set_read_timeout(Duration::from_secs(12));
    let got = c.try_read_reply();
    let took = started.elapsed();
    let _ = trickle.join();
    let got = got.ok().flatten().unwrap_or_default();
    assert!(got.starts_with("421 4.4.2 "), "got {got:?} after {took:?}");
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
}

#[test]
fn sixty_four_mib_without_crlf_gets_500_552_and_memory_stays_bounded_r1() {
    let _shared = no_flood();
    let up = FakeUpstream::start();
    let rf = Replyfix::start(up.addr, short_timeouts());
    let mut c = greeted(&rf);
    let (base, _) = memory_kib(rf.pid());
    let block = vec![b'A'; 1024 * 1024];
    let started = Instant::now();
    for _ in 0..64 {
        c.send(&block);
    }
    c.send(b"\r\n");
    assert_eq!(c.read_reply(), "500 5.5.2 Error: line too long\r\n");
    // The session is still in step: the next command is answered.
    assert!(c.cmd("NOOP").starts_with("250"));
    println!("64 MiB line sent and refused in {:?}", started.elapsed());
    report_rss("line_64mib", &rf, base);
    // Nothing of the line reached the upstream.
    assert!(
        !up.recorded()
            .commands()
            .iter()
            .any(|l| l.starts_with("AAAA")),
        "part of the over-long line was forwarded"
    );
}

#[test]
fn two_hundred_thousand_pipelined_rcpt_lines_keep_order_with_bounded_memory_r2() {
    let _shared = no_flood();
    const N: usize = 200_000;
    let up = FakeUpstream::start();
    // command: 30s, longer than the flood: see the next test for why.
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml(
            "timeouts: {client_idle: 2s, command: 30s, upstream_reply: 5s, data_end_reply: 5s}",
        ),
    );
    let mut c = greeted(&rf);
    assert!(c.cmd("MAIL FROM:<bulk@example.test>").starts_with("250"));
    let (base, _) = memory_kib(rf.pid());
    let mut writer = c.try_clone_writer();
    let started = Instant::now();
    let send = thread::spawn(move || {
        let mut batch = Vec::with_capacity(64 * 1024);
        for i in 0..N {
            batch.extend_from_slice(format!("RCPT TO:<u{i}@example.net>\r\n").as_bytes());
            if batch.len() > 60 * 1024 {
                writer.write_all(&batch).expect("write RCPT batch");
                batch.clear();
            }
        }
        writer.write_all(&batch).expect("write last batch");
    });
    for i in 0..N {
        let r = c.read_reply();
        assert!(r.starts_with("250"), "reply {i}: {r}");
    }
    send.join().expect("writer");
    let took = started.elapsed();
    println!("{N} pipelined RCPT answered in order in {took:?}");
    assert!(c.cmd("RSET").starts_with("250"));
    report_rss("pipelined_rcpt", &rf, base);
    let rcpts = up
        .recorded()
        .commands()
        .iter()
        .filter(|l| l.starts_with("RCPT TO:"))
        .count();
    assert_eq!(rcpts, N);
}

#[test]
fn bulk_sender_past_the_upstreams_recipient_limit_gets_every_452_in_order_r4() {
    // R4: a bulk sender pipelines 100,000 RCPTs; the upstream takes 1,000
    // and answers 452 to the rest (RFC 5321 4.5.3.1.8), each echoing its
    // address. Those are the upstream's replies: none counts towards
    // replyfix's error limit, every one reaches the client in order.
    let _shared = no_flood();
    const N: usize = 100_000;
    const ACCEPTED: usize = 1_000;
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&seen);
    let up = FakeUpstream::with_script(move |cmd| {
        let Some(addr) = cmd.strip_prefix("RCPT TO:") else {
            return common::Step::Default;
        };
        let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n < ACCEPTED {
            common::Step::reply(&format!("250 2.1.5 {addr} ok"))
        } else {
            common::Step::reply(&format!("452 4.5.3 {addr}: too many recipients"))
        }
    });
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml(
            "timeouts: {client_idle: 5s, command: 60s, upstream_reply: 5s, data_end_reply: 5s}",
        ),
    );
    let mut c = greeted(&rf);
    assert!(c.cmd("MAIL FROM:<bulk@example.test>").starts_with("250"));
    let (base, _) = memory_kib(rf.pid());
    let batch: Vec<u8> = (0..N)
        .flat_map(|i| format!("RCPT TO:<u{i}@example.net>\r\n").into_bytes())
        .collect();
    let mut writer = c.try_clone_writer();
    let started = Instant::now();
    let send = thread::spawn(move || writer.write_all(&batch).is_ok());
    for i in 0..N {
        let r = c.read_reply();
        let want = if i < ACCEPTED {
            format!("250 2.1.5 <u{i}@example.net> ok\r\n")
        } else {
            format!("452 4.5.3 <u{i}@example.net>: too many recipients\r\n")
        };
        assert_eq!(r, want, "reply {i} after {:?}", started.elapsed());
    }
    assert!(
        send.join().expect("writer"),
        "writing the RCPT batch failed"
    );
    let took = started.elapsed();
    println!("{N} pipelined RCPT (1,000 accepted, the rest 452) answered in order in {took:?}");
    // The bound for this run; a hang guard, not a speed goal.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert!(c.cmd("RSET").starts_with("250"));
    let (hwm, _) = memory_kib(rf.pid());
    println!(
        "bulk_452: peak RSS grew by {} KiB",
        hwm.saturating_sub(base)
    );
    assert!(
        hwm.saturating_sub(base) < 50 * 1024,
        "peak RSS grew by {} KiB",
        hwm.saturating_sub(base)
    );
}

#[test]
fn pipelined_complete_lines_are_not_cut_by_the_command_deadline_r2_r3() {
    let _shared = no_flood();
    // Every line arrives whole at once; the buffer only stays non-empty
    // because replyfix stops reading at max_pipeline outstanding commands
    // (R2). That is backpressure, not a slow command: no 421.
    const N: usize = 300_000;
    let up = FakeUpstream::start();
    // Built before the session: building it takes seconds on a loaded
    // machine, longer than client_idle (2 s) would allow after the MAIL.
    let batch: Vec<u8> = (0..N)
        .flat_map(|i| format!("RCPT TO:<u{i}@example.net>\r\n").into_bytes())
        .collect();
    let rf = Replyfix::start(up.addr, short_timeouts());
    let mut c = greeted(&rf);
    assert!(c.cmd("MAIL FROM:<bulk@example.test>").starts_with("250"));
    let mut writer = c.try_clone_writer();
    let started = Instant::now();
    let send = thread::spawn(move || {
        let _ = writer.write_all(&batch);
    });
    for i in 0..N {
        let r = c.read_reply();
        assert!(
            r.starts_with("250"),
            "reply {i} after {:?}: {r}",
            started.elapsed()
        );
    }
    send.join().expect("writer");
}

#[test]
fn client_that_never_reads_is_stopped_by_backpressure_and_closed_r2_f3() {
    let _shared = no_flood();
    let up = FakeUpstream::start();
    let rf = Replyfix::start(up.addr, short_timeouts());
    let c = greeted(&rf);
    let (base, _) = memory_kib(rf.pid());
    let mut writer = c.try_clone_writer();
    writer
        .set_write_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    // Pipelined NOOPs, never reading a reply: replyfix's writes to us fill
    // the socket, it stops reading us (R2), our writes stall; then its
    // write deadline (client_idle) ends the session.
    let line = b"NOOP\r\n".repeat(10_000);
    let mut sent = 0usize;
    let started = Instant::now();
    let stalled = loop {
        match writer.write(&line) {
            Ok(n) => sent += n,
            Err(_) => break true,
        }
        if sent > 512 * 1024 * 1024 || started.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    println!(
        "client stopped being read after {} KiB of NOOPs ({:?})",
        sent / 1024,
        started.elapsed()
    );
    assert!(stalled, "replyfix kept reading a client that never reads");
    let rec = rf.wait_for_record("session closed");
    println!("session closed record: {rec}");
    report_rss("never_reads", &rf, base);
}

#[test]
fn many_connections_from_one_address_do_not_lock_out_others_r3() {
    let _shared = no_flood();
    const LIMIT: usize = 5;
    let up = FakeUpstream::start();
    let rf = Replyfix::start(
        up.addr,
        short_timeouts().yaml(&format!("limits: {{max_sessions_per_client: {LIMIT}}}")),
    );
    let (base, _) = memory_kib(rf.pid());
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let (c, greeting) = rf.connect_greeted();
        if greeting.starts_with("220 ") {
            held.push(c);
        } else {
            assert!(greeting.starts_with("421 4.7.0 "), "{greeting}");
            refused += 1;
        }
    }
    assert_eq!(held.len(), LIMIT, "sessions admitted for one address");
    assert_eq!(refused, 200 - LIMIT);
    // Another address (127.0.0.2, same loopback) is still served.
    let mut other = connect_from("127.0.0.2", rf.addr);
    let mut greeting = [0u8; 4];
    other.read_exact(&mut greeting).expect("greeting");
    assert_eq!(&greeting, b"220 ");
    report_rss("per_client_limit", &rf, base);
}

/// A TCP connection from a chosen loopback source address (std has no
/// bind-before-connect; tokio's `TcpSocket` does).
fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stream = rt.block_on(async {
        let sock = tokio::net::TcpSocket::new_v4().expect("socket");
        sock.bind(format!("{source}:0").parse().expect("source address"))
            .expect("bind source address");
        sock.connect(to).await.expect("connect")
    });
    let stream = stream.into_std().expect("into std");
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

// ------------------------------------------------------------ floods (R3)
//
// The tests below open hundreds to thousands of sockets at once and load
// both cores. They hold `FLOODS` for writing, every other test here for
// reading: a flood never runs beside another test, whose deadlines (2 s of
// client silence) it would otherwise break. They also raise this process's
// soft `RLIMIT_NOFILE` to the hard limit first (the replyfix child inherits
// it and raises its own anyway).

static FLOODS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Taken by each flood: no other test of this file runs meanwhile.
fn flood_alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    FLOODS.write().unwrap_or_else(|p| p.into_inner())
}

/// Taken by every other test: they run side by side, never beside a flood.
fn no_flood() -> std::sync::RwLockReadGuard<'static, ()> {
    FLOODS.read().unwrap_or_else(|p| p.into_inner())
}

/// Raises this process's soft open-files limit to its hard limit; fails
/// the test (also outside CI) when that is still below `need`.
fn raise_open_files(need: u64) {
    let soft = rlimit::increase_nofile_limit(1 << 20).expect("raise RLIMIT_NOFILE");
    assert!(
        soft >= need,
        "this test needs {need} open files; the hard limit allows {soft} (raise `ulimit -Hn`)"
    );
}

/// Descriptors `pid` holds open (entries of `/proc/PID/fd`).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc fd")
        .count()
}

/// Waits (bounded) until `pid` holds at most `baseline` descriptors;
/// returns the count it saw last.
fn wait_for_fds(pid: u32, baseline: usize, within: Duration) -> usize {
    let mut last = open_fds(pid);
    let settled = common::poll(within, || {
        last = open_fds(pid);
        (last <= baseline).then_some(())
    });
    assert!(
        settled.is_some(),
        "replyfix still holds {last} descriptors {within:?} after the attack (baseline {baseline})"
    );
    last
}

/// Waits (bounded) until the descriptor count stops changing; returns it.
fn settled_fds(pid: u32) -> usize {
    let mut last = open_fds(pid);
    for _ in 0..50 {
        thread::sleep(Duration::from_millis(100));
        let now = open_fds(pid);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// User plus system CPU time of `pid` so far, in clock ticks (1/100 s on
/// Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields[i].parse::<u64>().expect("tick count");
    tick(11) + tick(12)
}

/// Length of the first complete SMTP reply at the start of `buf`.
fn reply_len(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + i + 1];
        start += i + 1;
        if line.get(3) != Some(&b'-') {
            return Some(start);
        }
    }
    None
}

/// A blocking SMTP dialogue over any stream (plain TCP or rustls); the
/// stream's socket carries the read timeout.
struct Dialogue<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: Read + Write> Dialogue<S> {
    fn new(stream: S) -> Self {
        Dialogue {
            stream,
            buf: Vec::new(),
        }
    }

    fn reply(&mut self) -> String {
        for _ in 0..10_000 {
            if let Some(n) = reply_len(&self.buf) {
                let reply: Vec<u8> = self.buf.drain(..n).collect();
                return String::from_utf8_lossy(&reply).into_owned();
            }
            assert!(self.buf.len() < 64 * 1024, "reply too long");
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read a reply");
            assert!(
                n > 0,
                "closed; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
        panic!("no whole reply after 10,000 reads")
    }

    fn cmd(&mut self, line: &str) -> String {
        self.stream
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send a command");
        self.stream.flush().expect("flush");
        self.reply()
    }

    /// EHLO (again, after TLS), one message, QUIT.
    fn transaction(&mut self, tag: &str) {
        let ehlo = self.cmd(&format!("EHLO {tag}.test"));
        assert!(ehlo.starts_with("250"), "{ehlo}");
        for (line, code) in [
            ("MAIL FROM:<honest@example.test>", "250"),
            ("RCPT TO:<rcpt@example.net>", "250"),
            ("DATA", "354"),
            ("Subject: honest\r\n\r\nserved during an attack\r\n.", "250"),
            ("QUIT", "221"),
        ] {
            let r = self.cmd(line);
            assert!(r.starts_with(code), "{tag}: {line:?} got {r:?}");
        }
    }
}

/// An SMTP reply read on a tokio stream, bounded by [`common::IO_TIMEOUT`].
async fn reply_async(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + common::IO_TIMEOUT;
    loop {
        if let Some(n) = reply_len(buf) {
            let reply: Vec<u8> = buf.drain(..n).collect();
            return Ok(String::from_utf8_lossy(&reply).into_owned());
        }
        if buf.len() > 64 * 1024 {
            return Err("reply too long".into());
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) => return Err(format!("closed after {:?}", String::from_utf8_lossy(buf))),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Err(_) => return Err("no reply in time".into()),
        }
    }
}

/// Reads and drops input until the peer closes (EOF or reset); `Err` when
/// it has not within `within`.
async fn until_closed_async(s: &mut tokio::net::TcpStream, within: Duration) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + within;
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => {}
            Err(_) => return Err(format!("still open after {within:?}")),
        }
    }
}

fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// How a flood connection from the one address ended.
#[derive(Debug)]
enum FloodOutcome {
    /// Greeted with `220`; held open.
    Admitted { _held: tokio::net::TcpStream },
    /// `421 4.7.0 …`, then closed by replyfix; our end held open.
    RefusedThenClosed { _held: tokio::net::TcpStream },
    /// Anything else: the text says what.
    Other(String),
}

async fn flood_connection(addr: SocketAddr) -> FloodOutcome {
    let connect = tokio::time::timeout(common::IO_TIMEOUT, tokio::net::TcpStream::connect(addr));
    let mut s = match connect.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return FloodOutcome::Other(format!("connect: {e}")),
        Err(_) => return FloodOutcome::Other("connect timed out".into()),
    };
    let mut buf = Vec::new();
    match reply_async(&mut s, &mut buf).await {
        Ok(r) if r.starts_with("220 ") => FloodOutcome::Admitted { _held: s },
        Ok(r) if r.starts_with("421 4.7.0 ") => {
            match until_closed_async(&mut s, Duration::from_secs(10)).await {
                Ok(()) => FloodOutcome::RefusedThenClosed { _held: s },
                Err(e) => FloodOutcome::Other(format!("after {r:?}: {e}")),
            }
        }
        Ok(r) => FloodOutcome::Other(format!("reply {r:?}")),
        Err(e) => FloodOutcome::Other(e),
    }
}

/// One whole plain transaction from `source`; returns how long it took.
fn honest_plain(source: &str, to: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut d = Dialogue::new(connect_from(source, to));
    let greeting = d.reply();
    assert!(greeting.starts_with("220 "), "{source}: {greeting}");
    d.transaction(&format!("honest-{source}"));
    started.elapsed()
}

#[test]
fn ten_thousand_connections_from_one_address_leave_other_clients_served_r3() {
    const FLOOD: usize = 10_000;
    const LIMIT: usize = 20;
    /// Connections in their connect-and-first-reply phase at once.
    const IN_FLIGHT: usize = 256;
    /// Bound on one honest transaction while the flood runs.
    const HONEST_BOUND: Duration = Duration::from_secs(10);
    let _alone = flood_alone();
    raise_open_files(FLOOD as u64 + 1024);
    let up = FakeUpstream::start();
    let mut rf = Replyfix::start(
        up.addr,
        ServeOptions::default()
            .yaml("timeouts: {client_idle: 60s, command: 30s, upstream_reply: 10s, data_end_reply: 10s}")
            .yaml(&format!(
                "limits: {{max_sessions_per_client: {LIMIT}, max_sessions: 1000}}"
            )),
    );
    let pid = rf.pid();
    // Warm up (first session, lazily built state), then the baselines.
    honest_plain("127.0.0.2", rf.addr);
    let base_fds = settled_fds(pid);
    let (base_hwm, _) = memory_kib(pid);

    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    // Honest clients from two other addresses, one after another, for as
    // long as the flood runs (bounded), plus one after it.
    let honest = {
        let flooding = flooding.clone();
        let addr = rf.addr;
        thread::spawn(move || {
            let mut during = Vec::new();
            for i in 0..500 {
                if !flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let source = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
                during.push(honest_plain(source, addr));
                thread::sleep(Duration::from_millis(20));
            }
            during
        })
    };
    // Samples replyfix's descriptors while the flood runs.
    let sampler = {
        let flooding = flooding.clone();
        thread::spawn(move || {
            let mut peak = 0;
            for _ in 0..6000 {
                if !flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                peak = peak.max(open_fds(pid));
                thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };

    let started = Instant::now();
    let addr = rf.addr;
    let rt = test_runtime();
    let outcomes: Vec<FloodOutcome> = rt.block_on(async move {
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..FLOOD {
            let permit = gate.clone().acquire_owned().await.expect("semaphore");
            tasks.spawn(async move {
                let outcome = flood_connection(addr).await;
                drop(permit);
                (i, outcome)
            });
        }
        let mut out: Vec<Option<FloodOutcome>> = (0..FLOOD).map(|_| None).collect();
        while let Some(done) = tasks.join_next().await {
            let (i, outcome) = done.expect("flood task");
            out[i] = Some(outcome);
        }
        out.into_iter().map(|o| o.expect("every outcome")).collect()
    });
    let flood_took = started.elapsed();

    // While the flood's connections are still held: one more honest
    // transaction, from each other address.
    let after = [
        honest_plain("127.0.0.2", rf.addr),
        honest_plain("127.0.0.3", rf.addr),
    ];
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let during = honest.join().expect("honest clients");
    let peak_fds = sampler.join().expect("fd sampler");

    let admitted = outcomes
        .iter()
        .filter(|o| matches!(o, FloodOutcome::Admitted { .. }))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, FloodOutcome::RefusedThenClosed { .. }))
        .count();
    let other: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            FloodOutcome::Other(s) => Some(s),
            _ => None,
        })
        .collect();
    let slowest = during.iter().chain(after.iter()).max().copied();
    println!(
        "flood: {FLOOD} connections from 127.0.0.1 in {flood_took:?} ({IN_FLIGHT} in flight): \
         {admitted} admitted (220), {refused} refused `421 4.7.0` then closed, {} other; \
         honest transactions from 127.0.0.2/.3: {} during the flood, 2 after, slowest {slowest:?}; \
         replyfix descriptors: baseline {base_fds}, peak sampled {peak_fds}",
        other.len(),
        during.len()
    );
    assert!(
        other.is_empty(),
        "unexpected outcomes: {:?}",
        &other[..other.len().min(10)]
    );
    assert_eq!(admitted, LIMIT, "flood sessions admitted");
    assert_eq!(refused, FLOOD - LIMIT, "flood connections refused");
    assert!(
        !during.is_empty(),
        "no honest transaction ran during the flood"
    );
    assert!(
        slowest.is_some_and(|t| t < HONEST_BOUND),
        "an honest transaction took {slowest:?}"
    );
    assert!(
        flood_took < Duration::from_secs(60),
        "flood took {flood_took:?}"
    );
    report_rss("flood_10000_one_address", &rf, base_hwm);

    // The flooder leaves: replyfix's descriptors return to the baseline
    // and it serves the flooder's address again.
    drop(outcomes);
    drop(rt);
    let fds = wait_for_fds(pid, base_fds, Duration::from_secs(15));
    println!("replyfix descriptors after the flood: {fds} (baseline {base_fds})");
    assert!(rf.exit_status().is_none(), "replyfix exited");
    honest_plain("127.0.0.1", rf.addr);
    let refusals = rf.records_with_message("connection refused").len();
    assert_eq!(refusals, FLOOD - LIMIT, "one log record per refusal");
}

// ------------------------------------------------------------ TLS (R3, F3, T1)

/// A CA and a `localhost` leaf signed by it (rcgen), as PEM files.
struct TestCert {
    _dir: common::TempDir,
    ca_pem: String,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn test_cert() -> TestCert {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let dir = common::TempDir::new("attack-pki");
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "replyfix attacks CA");
    let ca_pem = ca.self_signed(&ca_key).expect("CA cert").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("leaf params")
        .signed_by(&key, &issuer)
        .expect("leaf cert");
    let cert = dir.path().join("leaf.crt");
    let key_path = dir.path().join("leaf.key");
    std::fs::write(&cert, leaf.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    TestCert {
        _dir: dir,
        ca_pem,
        cert,
        key: key_path,
    }
}

fn tls_client_config(ca_pem: &str) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA pem")).expect("add CA");
    }
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_over(config: &std::sync::Arc<rustls::ClientConfig>, tcp: TcpStream) -> TlsStream {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let conn = rustls::ClientConnection::new(config.clone(), name).expect("client connection");
    rustls::StreamOwned::new(conn, tcp)
}

/// The bytes of a real ClientHello (the first flight of a rustls client).
fn client_hello(config: &std::sync::Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let mut conn = rustls::ClientConnection::new(config.clone(), name).expect("client connection");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).expect("ClientHello");
    }
    assert_eq!(hello.first(), Some(&0x16), "a handshake record");
    hello
}

/// One honest session over TLS from `source` (implicit TLS, or STARTTLS
/// after EHLO), a whole transaction; returns how long it took.
fn honest_tls(
    source: &str,
    to: SocketAddr,
    starttls: bool,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> Duration {
    let started = Instant::now();
    let mut tcp = connect_from(source, to);
    tcp.set_write_timeout(Some(common::IO_TIMEOUT))
        .expect("timeout");
    if starttls {
        let mut plain = Dialogue::new(tcp);
        assert!(plain.reply().starts_with("220 "));
        let ehlo = plain.cmd("EHLO honest.test");
        assert!(ehlo.contains("STARTTLS"), "{ehlo}");
        let go = plain.cmd("STARTTLS");
        assert!(go.starts_with("220 "), "{go}");
        assert!(plain.buf.is_empty(), "bytes after the 220");
        tcp = plain.stream;
    }
    let mut d = Dialogue::new(tls_over(config, tcp));
    if !starttls {
        let greeting = d.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
    }
    d.transaction(&format!("honest-tls-{source}"));
    started.elapsed()
}

/// What a half-open handshake sends before it goes silent.
#[derive(Clone, Copy, Debug, PartialEq)]
enum HalfOpen {
    /// Nothing (after connect, or after STARTTLS's `220`).
    Silent,
    /// The first 40 bytes of a ClientHello whose record says more follow.
    PartialHello,
    /// A whole ClientHello; the server's flight is never answered.
    HelloNoAnswer,
}

/// One half-open handshake: returns how long replyfix kept it open after
/// its handshake deadline started (connect for implicit TLS, the `220` to
/// STARTTLS otherwise).
async fn half_open(
    addr: SocketAddr,
    starttls: bool,
    kind: HalfOpen,
    hello: std::sync::Arc<Vec<u8>>,
) -> Result<Duration, String> {
    use tokio::io::AsyncWriteExt;
    let connect = tokio::time::timeout(common::IO_TIMEOUT, tokio::net::TcpStream::connect(addr));
    let mut s = match connect.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err("connect timed out".into()),
    };
    let mut started = Instant::now();
    if starttls {
        let mut buf = Vec::new();
        let greeting = reply_async(&mut s, &mut buf).await?;
        if !greeting.starts_with("220 ") {
            return Err(format!("greeting {greeting:?}"));
        }
        for (line, code) in [("EHLO half.test", "250"), ("STARTTLS", "220")] {
            s.write_all(format!("{line}\r\n").as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let r = reply_async(&mut s, &mut buf).await?;
            if !r.starts_with(code) {
                return Err(format!("{line}: {r:?}"));
            }
        }
        started = Instant::now();
    }
    let send: &[u8] = match kind {
        HalfOpen::Silent => &[],
        HalfOpen::PartialHello => &hello[..40],
        HalfOpen::HelloNoAnswer => &hello,
    };
    if !send.is_empty() {
        s.write_all(send).await.map_err(|e| e.to_string())?;
    }
    until_closed_async(&mut s, Duration::from_secs(20)).await?;
    Ok(started.elapsed())
}

/// `name{labels} value` from an OpenMetrics scrape, as an integer.
fn metric(scrape: &str, series: &str) -> Option<u64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// `GET /metrics` on the admin endpoint (bounded).
fn scrape(admin: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&admin, common::IO_TIMEOUT).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .expect("GET /metrics");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

const HANDSHAKE_FAILED: &str = "replyfix_tls_handshakes_total{leg=\"client\",result=\"failed\"}";
const HANDSHAKE_OK: &str = "replyfix_tls_handshakes_total{leg=\"client\",result=\"ok\"}";

/// Starts replyfix with a TLS listener (implicit or STARTTLS), the given
/// handshake deadline and limits, and the admin endpoint.
fn tls_replyfix(
    upstream: SocketAddr,
    cert: &TestCert,
    implicit: bool,
    extra: &str,
) -> (Replyfix, SocketAddr) {
    let admin: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .expect("admin address");
    let rf = Replyfix::start(
        upstream,
        ServeOptions::default()
            .listener(&format!(
                "tls: {{cert: \"{}\", key: \"{}\", implicit: {implicit}}}",
                cert.cert.display(),
                cert.key.display()
            ))
            .yaml(&format!("admin:\n  listen: \"{admin}\""))
            .yaml(extra),
    );
    (rf, admin)
}

fn half_open_tls_flood(starttls: bool, test: &str) {
    /// Half-open handshakes of each kind, all at once.
    const PER_KIND: usize = 250;
    const KINDS: [HalfOpen; 3] = [
        HalfOpen::Silent,
        HalfOpen::PartialHello,
        HalfOpen::HelloNoAnswer,
    ];
    const DEADLINE: Duration = Duration::from_secs(1);
    /// How late after the deadline a close may come on 2 loaded cores.
    const SLACK: Duration = Duration::from_secs(4);
    let _alone = flood_alone();
    raise_open_files(8 * 1024);
    let up = FakeUpstream::start();
    let cert = test_cert();
    let config = tls_client_config(&cert.ca_pem);
    let hello = std::sync::Arc::new(client_hello(&config));
    let (mut rf, admin) = tls_replyfix(
        up.addr,
        &cert,
        !starttls,
        "timeouts: {client_idle: 30s, command: 30s, upstream_reply: 10s, data_end_reply: 10s, tls_handshake: 1s}\n\
         limits: {max_sessions_per_client: 2000, max_sessions: 2000, max_tls_handshakes: 2000}",
    );
    let pid = rf.pid();
    honest_tls("127.0.0.2", rf.addr, starttls, &config);
    let base_fds = settled_fds(pid);
    let (base_hwm, _) = memory_kib(pid);
    let before = scrape(admin);
    let failed_before = metric(&before, HANDSHAKE_FAILED).expect("failed series");
    let ok_before = metric(&before, HANDSHAKE_OK).expect("ok series");

    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let honest = {
        let flooding = flooding.clone();
        let (addr, config) = (rf.addr, config.clone());
        thread::spawn(move || {
            let mut times = Vec::new();
            for i in 0..200 {
                if !flooding.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let source = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
                times.push(honest_tls(source, addr, starttls, &config));
                thread::sleep(Duration::from_millis(50));
            }
            times
        })
    };

    let addr = rf.addr;
    let started = Instant::now();
    let rt = test_runtime();
    let results: Vec<(HalfOpen, Result<Duration, String>)> = rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..PER_KIND * KINDS.len() {
            let kind = KINDS[i % KINDS.len()];
            let hello = hello.clone();
            tasks.spawn(async move { (kind, half_open(addr, starttls, kind, hello).await) });
        }
        let mut out = Vec::new();
        while let Some(done) = tasks.join_next().await {
            out.push(done.expect("half-open task"));
        }
        out
    });
    let flood_took = started.elapsed();
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let honest_times = honest.join().expect("honest clients");
    drop(rt);

    let mut problems = Vec::new();
    for kind in KINDS {
        let mut held: Vec<Duration> = Vec::new();
        for (k, r) in &results {
            if *k != kind {
                continue;
            }
            match r {
                Ok(d) => held.push(*d),
                Err(e) => problems.push(format!("{kind:?}: {e}")),
            }
        }
        held.sort();
        if let (Some(first), Some(last)) = (held.first(), held.last()) {
            println!(
                "{test} {kind:?}: {} closed, held {first:?} .. median {:?} .. {last:?} (deadline {DEADLINE:?})",
                held.len(),
                held[held.len() / 2]
            );
            // Not closed at once (a deadline, not a refusal), and not much
            // after it. A silent connection never closed at all is one the
            // kernel completed but replyfix never accepted (listen backlog).
            if *first < DEADLINE / 2 || *last > DEADLINE + SLACK {
                problems.push(format!("{kind:?}: held {first:?} .. {last:?}"));
            }
        }
    }
    let slowest = honest_times.iter().max().copied();
    println!(
        "{test}: {} half-open handshakes in {flood_took:?}; {} honest TLS transactions meanwhile, slowest {slowest:?}",
        results.len(),
        honest_times.len()
    );
    assert!(
        problems.is_empty(),
        "{test}: {:?}",
        &problems[..problems.len().min(10)]
    );
    assert!(
        !honest_times.is_empty(),
        "no honest session ran during the flood"
    );
    assert!(
        slowest.is_some_and(|t| t < Duration::from_secs(10)),
        "an honest TLS transaction took {slowest:?}"
    );
    report_rss(test, &rf, base_hwm);

    let fds = wait_for_fds(pid, base_fds, Duration::from_secs(15));
    println!("{test}: replyfix descriptors after: {fds} (baseline {base_fds})");
    // Each half-open handshake counts once as a failed client handshake;
    // each honest one as ok.
    let want_failed = failed_before + results.len() as u64;
    let want_ok = ok_before + honest_times.len() as u64;
    let mut last = String::new();
    let counted = common::poll(Duration::from_secs(10), || {
        last = scrape(admin);
        (metric(&last, HANDSHAKE_FAILED) == Some(want_failed)
            && metric(&last, HANDSHAKE_OK) == Some(want_ok))
        .then_some(())
    });
    assert!(
        counted.is_some(),
        "want failed {want_failed}, ok {want_ok}; scrape:\n{last}"
    );
    assert!(rf.exit_status().is_none(), "replyfix exited");
}

#[test]
fn half_open_implicit_tls_handshakes_are_closed_at_the_deadline_r3_f3() {
    half_open_tls_flood(false, "half_open_implicit_tls");
}

#[test]
fn half_open_starttls_handshakes_are_closed_at_the_deadline_r3_t1() {
    half_open_tls_flood(true, "half_open_starttls");
}

#[test]
fn accept_out_of_descriptors_backs_off_counts_and_recovers_r3() {
    /// Descriptors replyfix may open past its baseline.
    const HEADROOM: u64 = 12;
    /// Silent connections: more than the headroom, so accept() hits EMFILE.
    const HOLD: usize = 40;
    let _alone = flood_alone();
    let up = FakeUpstream::start();
    let cert = test_cert();
    let config = tls_client_config(&cert.ca_pem);
    // Implicit TLS with a long handshake deadline: a silent connection holds
    // exactly one descriptor (no upstream yet) for the whole test.
    let (mut rf, admin) = tls_replyfix(
        up.addr,
        &cert,
        true,
        "timeouts: {tls_handshake: 30s, upstream_reply: 10s, data_end_reply: 10s}\n\
         limits: {max_sessions_per_client: 1000}",
    );
    let pid = rf.pid();
    // replyfix raised its own soft limit to the hard limit at start.
    let logged = rf.wait_for_record("open files limit");
    let (mut soft, mut hard) = (0u64, 0u64);
    rlimit::prlimit(
        pid as i32,
        rlimit::Resource::NOFILE,
        None,
        Some((&mut soft, &mut hard)),
    )
    .expect("read replyfix's limit");
    assert_eq!(soft, hard.min(1 << 20), "soft limit not raised: {logged}");
    assert_eq!(
        common::field(&logged, "open_files_limit"),
        Some(soft.to_string())
    );

    honest_tls("127.0.0.2", rf.addr, false, &config);
    let _ = scrape(admin);
    let base_fds = settled_fds(pid);
    let low = base_fds as u64 + HEADROOM;
    rlimit::prlimit(
        pid as i32,
        rlimit::Resource::NOFILE,
        Some((low, hard)),
        None,
    )
    .expect("lower replyfix's limit");

    // The kernel completes each connection; replyfix accepts until it is
    // out of descriptors, then the rest wait in the listen queue.
    let held: Vec<TcpStream> = (0..HOLD)
        .map(|_| TcpStream::connect_timeout(&rf.addr, common::IO_TIMEOUT).expect("connect"))
        .collect();
    let first = common::poll(Duration::from_secs(10), || {
        let n = rf
            .records_with_message("accept failed; retrying in 100 ms")
            .len();
        (n > 0).then_some(n)
    });
    assert!(first.is_some(), "no accept failure logged:\n{}", rf.log());
    let ticks_before = cpu_ticks(pid);
    let logged_before = rf
        .records_with_message("accept failed; retrying in 100 ms")
        .len();
    let window = Duration::from_secs(2);
    thread::sleep(window);
    let cpu = cpu_ticks(pid) - ticks_before;
    let logged_in_window = rf
        .records_with_message("accept failed; retrying in 100 ms")
        .len()
        - logged_before;
    let fds_at_limit = open_fds(pid);
    println!(
        "EMFILE: replyfix at {fds_at_limit} descriptors (limit {low}); over {window:?} it used \
         {cpu} CPU ticks (1/100 s) and logged {logged_in_window} accept failures"
    );
    // A spinning accept loop burns a whole core (about 200 ticks here) and
    // logs thousands of lines; replyfix logs once a second per listener,
    // however many workers retry.
    assert!(cpu < 50, "accept loop spins: {cpu} ticks in {window:?}");
    assert!(
        (1..=3).contains(&logged_in_window),
        "{logged_in_window} accept failures logged in {window:?}"
    );
    assert!(rf.exit_status().is_none(), "replyfix exited at EMFILE");

    // The connections go away: replyfix accepts again by itself (the limit
    // stays low) and serves an honest client.
    drop(held);
    // (Queued behind the dropped connections, which fail at once.)
    let served = honest_tls("127.0.0.3", rf.addr, false, &config);
    let scraped = scrape(admin);
    let errors = metric(&scraped, "replyfix_accept_errors_total").unwrap_or(0);
    println!(
        "after recovery: honest transaction in {served:?}; replyfix_accept_errors_total {errors}"
    );
    assert!(errors >= 1, "accept errors not counted:\n{scraped}");
    rlimit::prlimit(
        pid as i32,
        rlimit::Resource::NOFILE,
        Some((soft, hard)),
        None,
    )
    .expect("restore replyfix's limit");
    wait_for_fds(pid, base_fds, Duration::from_secs(15));
    assert!(rf.exit_status().is_none(), "replyfix exited");
}

#[test]
fn tls_handshakes_over_the_limit_wait_for_a_slot_within_the_deadline_r3() {
    // `limits.max_tls_handshakes: 2`: two silent implicit-TLS connections
    // hold both slots until their 2 s deadline; an honest client that
    // arrives 1 s later waits for a slot (its own deadline still has 1 s
    // left), then completes its handshake and a transaction.
    let _guard = no_flood();
    let up = FakeUpstream::start();
    let cert = test_cert();
    let config = tls_client_config(&cert.ca_pem);
    let (rf, admin) = tls_replyfix(
        up.addr,
        &cert,
        true,
        "timeouts: {tls_handshake: 2s, upstream_reply: 10s, data_end_reply: 10s}\n\
         limits: {max_tls_handshakes: 2}",
    );
    let silent: Vec<TcpStream> = (0..2).map(|_| connect_from("127.0.0.1", rf.addr)).collect();
    let held = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let took = honest_tls("127.0.0.2", rf.addr, false, &config);
    let since_held = held.elapsed();
    println!("honest handshake + transaction: {took:?}, {since_held:?} after the slots were taken");
    // It could not start before a slot was free (the silent ones hold both
    // until their deadline, about 2 s after they connected).
    assert!(
        since_held >= Duration::from_millis(1800),
        "the honest handshake did not wait for a slot: done {since_held:?} after the slots were taken"
    );
    let after = scrape(admin);
    assert_eq!(metric(&after, HANDSHAKE_FAILED), Some(2), "{after}");
    assert_eq!(metric(&after, HANDSHAKE_OK), Some(1), "{after}");
    drop(silent);
}
