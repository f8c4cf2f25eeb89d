//! Resource attacks on the real `replyfix` binary (PROTOCOL.md R1–R3, F3),
//! bounded and on loopback only, with short configured timeouts. Each test
//! prints replyfix's peak RSS (`VmHWM` of the child, from `/proc`) and
//! asserts its growth stays bounded.

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
fn pipelined_complete_lines_are_not_cut_by_the_command_deadline_r2_r3() {
    // Every line arrives whole at once; the buffer only stays non-empty
    // because replyfix stops reading at max_pipeline outstanding commands
    // (R2). That is backpressure, not a slow command: no 421.
    const N: usize = 300_000;
    let up = FakeUpstream::start();
    let rf = Replyfix::start(up.addr, short_timeouts());
    let mut c = greeted(&rf);
    assert!(c.cmd("MAIL FROM:<bulk@example.test>").starts_with("250"));
    let mut writer = c.try_clone_writer();
    let started = Instant::now();
    let send = thread::spawn(move || {
        let batch: Vec<u8> = (0..N)
            .flat_map(|i| format!("RCPT TO:<u{i}@example.net>\r\n").into_bytes())
            .collect();
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
