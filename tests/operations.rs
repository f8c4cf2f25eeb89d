//! Running behind load balancers and in front of relays that decide by
//! client address: PROXY protocol in (trusted, untrusted, malformed, with
//! implicit TLS), PROXY v1/v2 and XCLIENT out, rules reload on SIGHUP, and
//! drain on SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use proxy_header::{ParseConfig, ProxyHeader};

/// What the address-aware upstream saw.
#[derive(Default, Clone, Debug)]
struct Seen {
    /// The source address of each connection's PROXY header.
    proxied: Vec<SocketAddr>,
    /// Its destination address.
    proxied_to: Vec<SocketAddr>,
    /// Every command line, in order.
    lines: Vec<String>,
}

/// An upstream that optionally expects a PROXY header first and optionally
/// offers XCLIENT. Bounded: 32 connections, 10 s read timeouts.
fn address_upstream(expect_proxy: bool, offer_xclient: bool) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(32) {
            let Ok(mut stream) = stream else { break };
            let seen = seen2.clone();
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
                if expect_proxy {
                    let mut buf = Vec::new();
                    let mut byte = [0u8; 1];
                    let source = loop {
                        if stream.read_exact(&mut byte).is_err() || buf.len() > 600 {
                            return;
                        }
                        buf.push(byte[0]);
                        match ProxyHeader::parse(&buf, ParseConfig::default()) {
                            Ok((h, _)) => {
                                break h.proxied_address().map(|a| (a.source, a.destination));
                            }
                            Err(proxy_header::Error::BufferTooShort) => continue,
                            Err(_) => return,
                        }
                    };
                    if let Some((from, to)) = source {
                        let mut seen = seen.lock().unwrap();
                        seen.proxied.push(from);
                        seen.proxied_to.push(to);
                    }
                }
                let _ = stream.write_all(b"220 upstream.test ESMTP\r\n");
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                for _ in 0..100 {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end().to_string();
                    seen.lock().unwrap().lines.push(line.clone());
                    let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" if offer_xclient => {
                            b"250-upstream.test\r\n250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN\r\n250 PIPELINING\r\n"
                        }
                        "EHLO" => b"250-upstream.test\r\n250 PIPELINING\r\n",
                        "XCLIENT" => b"220 upstream.test ESMTP\r\n",
                        "QUIT" => {
                            let _ = stream.write_all(b"221 bye\r\n");
                            return;
                        }
                        _ => b"250 ok\r\n",
                    };
                    if stream.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn wait_seen(seen: &Arc<Mutex<Seen>>, pred: impl Fn(&Seen) -> bool) -> Seen {
    poll(Duration::from_secs(10), || {
        let s = seen.lock().unwrap().clone();
        pred(&s).then_some(s)
    })
    .unwrap_or_else(|| seen.lock().unwrap().clone())
}

fn proxy_listener(version: &str, trusted: &str) -> ServeOptions {
    ServeOptions::default()
        .listener(&format!("proxy_protocol: {version}"))
        .listener(&format!("trusted_proxies: [\"{trusted}\"]"))
}

#[test]
fn proxy_v1_from_a_trusted_peer_gives_the_real_client_address_to_the_upstream() {
    let (up, seen) = address_upstream(true, false);
    let rf = Replyfix::start(
        up,
        proxy_listener("v1", "127.0.0.1/32").upstream("send_client_address: proxy-v2"),
    );
    let mut c = SmtpClient::connect(rf.addr);
    c.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n");
    assert!(c.read_reply().starts_with("220 upstream.test"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    c.cmd("QUIT");
    let s = wait_seen(&seen, |s| !s.proxied.is_empty());
    assert_eq!(
        s.proxied,
        vec!["192.0.2.7:40000".parse::<SocketAddr>().unwrap()]
    );
    let closed = rf.wait_for_record("session closed");
    assert_eq!(field(&closed, "client").as_deref(), Some("192.0.2.7:40000"));
}

#[test]
fn proxy_out_names_the_client_and_the_address_it_connected_to() {
    let (up, seen) = address_upstream(true, false);
    let rf = Replyfix::start(
        up,
        ServeOptions::default().upstream("send_client_address: proxy-v2"),
    );
    let mut c = SmtpClient::connect(rf.addr);
    let from = c.local_addr();
    assert!(c.read_reply().starts_with("220 upstream.test"));
    c.cmd("QUIT");
    let s = wait_seen(&seen, |s| !s.proxied.is_empty());
    assert_eq!(s.proxied, vec![from]);
    assert_eq!(s.proxied_to, vec![rf.addr]);
}

#[test]
fn proxy_v2_header_is_accepted_and_v1_is_sent_out() {
    let (up, seen) = address_upstream(true, false);
    let rf = Replyfix::start(
        up,
        proxy_listener("v2", "127.0.0.0/8").upstream("send_client_address: proxy-v1"),
    );
    let client: SocketAddr = "[2001:db8::42]:5555".parse().unwrap();
    let mut header = Vec::new();
    ProxyHeader::with_address(proxy_header::ProxiedAddress::stream(
        client,
        "[2001:db8::1]:25".parse().unwrap(),
    ))
    .encode_v2(&mut header)
    .unwrap();
    let mut c = SmtpClient::connect(rf.addr);
    c.send(&header);
    assert!(c.read_reply().starts_with("220 upstream.test"));
    c.cmd("QUIT");
    let s = wait_seen(&seen, |s| !s.proxied.is_empty());
    assert_eq!(s.proxied, vec![client]);
}

#[test]
fn proxy_header_from_an_untrusted_peer_is_closed_without_a_greeting() {
    let (up, seen) = address_upstream(false, false);
    let rf = Replyfix::start(up, proxy_listener("any", "10.0.0.0/8"));
    let mut c = SmtpClient::connect(rf.addr);
    c.send_lenient(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 25\r\n");
    assert_eq!(c.read_to_close(), "");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        seen.lock().unwrap().lines.is_empty(),
        "no upstream connection"
    );
}

#[test]
fn malformed_proxy_header_is_closed() {
    let (up, _seen) = address_upstream(false, false);
    let rf = Replyfix::start(up, proxy_listener("any", "127.0.0.1/32"));
    for junk in [&b"EHLO not-a-header\r\n"[..], b"PROXY TCP4 nonsense\r\n"] {
        let mut c = SmtpClient::connect(rf.addr);
        c.send_lenient(junk);
        assert_eq!(c.read_to_close(), "", "{junk:?}");
    }
}

#[test]
fn proxy_v2_and_a_tls_client_hello_in_one_packet_work_with_implicit_tls() {
    let (up, seen) = address_upstream(false, false);
    let dir = TempDir::new("ptls");
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.path().join("c.pem");
    let key_path = dir.path().join("k.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let rf = Replyfix::start(
        up,
        proxy_listener("v2", "127.0.0.1/32").listener(&format!(
            "tls: {{cert: \"{}\", key: \"{}\", implicit: true}}",
            cert_path.display(),
            key_path.display()
        )),
    );
    // A rustls client whose first flight is written together with the
    // PROXY header, in one write.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(
        Arc::new(config),
        rustls::pki_types::ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut first = Vec::new();
    ProxyHeader::with_address(proxy_header::ProxiedAddress::stream(
        "198.51.100.9:6000".parse().unwrap(),
        "127.0.0.1:465".parse().unwrap(),
    ))
    .encode_v2(&mut first)
    .unwrap();
    conn.write_tls(&mut first).unwrap();
    let mut tcp = TcpStream::connect(rf.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(&first).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut reader = BufReader::new(&mut tls);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("220 upstream.test"), "{greeting}");
    tls.write_all(b"QUIT\r\n").unwrap();
    let closed = rf.wait_for_record("session closed");
    assert_eq!(
        field(&closed, "client").as_deref(),
        Some("198.51.100.9:6000")
    );
    drop(seen);
}

#[test]
fn xclient_tells_the_upstream_the_client_address_before_the_first_ehlo() {
    let (up, seen) = address_upstream(false, true);
    let rf = Replyfix::start(
        up,
        ServeOptions::default().upstream("send_client_address: xclient"),
    );
    let (mut c, greeting) = rf.connect_greeted();
    assert!(greeting.starts_with("220 upstream.test"), "{greeting}");
    let local_port = c.try_clone_writer().local_addr().unwrap().port();
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.starts_with("250-upstream.test"), "{ehlo}");
    assert!(
        !ehlo.contains("XCLIENT"),
        "XCLIENT is never offered to clients: {ehlo}"
    );
    assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    c.cmd("QUIT");
    let s = wait_seen(&seen, |s| s.lines.iter().any(|l| l == "QUIT"));
    let xclient = format!(
        "XCLIENT NAME=[UNAVAILABLE] ADDR=127.0.0.1 PORT={local_port} HELO=client.test PROTO=ESMTP"
    );
    let expected: Vec<String> = vec![
        "EHLO proxy.example.test".into(),
        xclient,
        "EHLO client.test".into(),
        "MAIL FROM:<a@example.com>".into(),
        "QUIT".into(),
    ];
    assert_eq!(s.lines, expected);
}

#[test]
fn xclient_is_not_sent_when_the_upstream_does_not_offer_it() {
    let (up, seen) = address_upstream(false, false);
    let rf = Replyfix::start(
        up,
        ServeOptions::default().upstream("send_client_address: xclient"),
    );
    let (mut c, _) = rf.connect_greeted();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    c.cmd("QUIT");
    let s = wait_seen(&seen, |s| s.lines.iter().any(|l| l == "QUIT"));
    assert!(s.lines.iter().all(|l| !l.starts_with("XCLIENT")), "{s:?}");
    assert!(rf.log().contains("does not offer XCLIENT"));
}

// ------------------------------------------------------------ reload and drain

fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

const RULES_V1: &str = r#"rules:
  - id: v1-remap
    description: first version
    when: {code: 530, command: [rcpt]}
    then:
      remap: {code: 550, enhanced: 5.1.1}
"#;

const RULES_V2: &str = r#"rules:
  - id: v2-remap
    description: second version
    when: {code: 530, command: [rcpt]}
    then:
      remap: {code: 554, enhanced: 5.7.1}
"#;

#[test]
fn sighup_reloads_rules_for_the_next_transaction_and_an_invalid_file_changes_nothing_f5() {
    let up = FakeUpstream::with_script(|line| {
        if line.starts_with("RCPT") {
            Step::reply("530 nope")
        } else {
            Step::Default
        }
    });
    let dir = TempDir::new("rules");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES_V1).unwrap();
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml(&format!("rules: [\"{}\"]", rules.display())),
    );
    let (mut c, _) = rf.connect_greeted();
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<a@x>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@y>").starts_with("550 5.1.1"));

    // Mid-transaction reload: this transaction keeps v1 (F5).
    std::fs::write(&rules, RULES_V2).unwrap();
    signal(rf.pid(), "-HUP");
    rf.wait_for_record("rules reloaded");
    assert!(c.cmd("RCPT TO:<c@y>").starts_with("550 5.1.1"));
    assert!(c.cmd("RSET").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@x>").starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<b@y>").starts_with("554 5.7.1"),
        "next transaction uses v2: {}",
        rf.log()
    );

    // An invalid file changes nothing.
    std::fs::write(&rules, "rules:\n  - id: broken\n    when: {code: 530}\n    then: {remap: {code: 250, enhanced: 2.0.0}}\n").unwrap();
    signal(rf.pid(), "-HUP");
    rf.wait_for_record("rules reload failed; the previous rules stay in force");
    assert!(c.cmd("RSET").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@x>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@y>").starts_with("554 5.7.1"));
    c.cmd("QUIT");
}

#[test]
fn sigterm_closes_idle_sessions_with_421_and_lets_a_transaction_finish_f6() {
    let up = FakeUpstream::start();
    let mut rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml("timeouts:\n  drain: 5s"),
    );
    let (mut idle, _) = rf.connect_greeted();
    idle.cmd("EHLO idle.test");
    let (mut busy, _) = rf.connect_greeted();
    busy.cmd("EHLO busy.test");
    assert!(busy.cmd("MAIL FROM:<a@x>").starts_with("250"));
    assert!(busy.cmd("RCPT TO:<b@y>").starts_with("250"));

    signal(rf.pid(), "-TERM");
    assert_eq!(
        idle.read_reply(),
        "421 4.3.2 proxy.example.test service shutting down\r\n"
    );
    // New connections are refused once the listener is closed.
    let refused = poll(Duration::from_secs(5), || {
        TcpStream::connect(rf.addr).err().map(|_| ())
    });
    assert!(refused.is_some(), "listener still accepting");
    // The transaction in flight completes, then its session is closed.
    assert!(busy.cmd("DATA").starts_with("354"));
    busy.send(b"Subject: drain\r\n\r\nbody\r\n.\r\n");
    assert!(busy.read_reply().starts_with("250"));
    assert_eq!(
        busy.read_reply(),
        "421 4.3.2 proxy.example.test service shutting down\r\n"
    );
    let exited = poll(Duration::from_secs(7), || rf.exit_status());
    assert_eq!(
        exited.map(|s| s.success()),
        Some(true),
        "exit 0 within drain"
    );
}

#[test]
fn a_command_trickled_byte_by_byte_is_cut_at_the_whole_command_deadline_r3() {
    let up = FakeUpstream::start();
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml("timeouts:\n  command: 2s\n  client_idle: 30s"),
    );
    let (mut c, _) = rf.connect_greeted();
    let started = std::time::Instant::now();
    let mut reply = String::new();
    // One byte every 300 ms: each byte alone would reset an idle timer.
    for b in b"EHLO slow.client.example.with.a.long.name\r\n" {
        c.send_lenient(&[*b]);
        std::thread::sleep(Duration::from_millis(300));
        c.set_read_timeout(Duration::from_millis(10));
        if let Ok(Some(r)) = c.try_read_reply() {
            reply = r;
            break;
        }
    }
    assert_eq!(
        reply,
        "421 4.4.2 proxy.example.test Error: timeout exceeded\r\n"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn metrics_count_a_rewrite_by_rule_and_readyz_turns_503_while_draining_f6() {
    let up = FakeUpstream::with_script(|line| {
        if line.starts_with("RCPT") {
            Step::reply("530 5.7.1 User unknown in virtual mailbox table")
        } else {
            Step::Default
        }
    });
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut rf = Replyfix::start(
        up.addr,
        ServeOptions::default()
            .yaml(&format!("admin:\n  listen: \"{admin}\""))
            .yaml("timeouts:\n  drain: 4s"),
    );
    assert_eq!(http_get(admin, "/healthz").0, "HTTP/1.1 200 OK");
    assert_eq!(http_get(admin, "/readyz").0, "HTTP/1.1 200 OK");
    let (mut c, _) = rf.connect_greeted();
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@x>");
    assert!(c.cmd("RCPT TO:<typo@y>").starts_with("550 5.1.1"));
    let (status, body) = http_get(admin, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let rewrite = body
        .lines()
        .find(|l| l.starts_with("replyfix_rewrites_total{") && l.contains("original_code=\"530\""))
        .unwrap_or_else(|| panic!("no rewrite sample in:\n{body}"));
    assert!(rewrite.contains("new_code=\"550\""), "{rewrite}");
    assert!(rewrite.contains("mode=\"enforce\""), "{rewrite}");
    assert!(rewrite.ends_with(" 1"), "{rewrite}");
    assert!(
        body.contains("replyfix_sessions_active{listener=\"main\"} 1"),
        "{body}"
    );

    // A transaction is open: the drain waits for it while /readyz says 503.
    signal(rf.pid(), "-TERM");
    let draining = poll(Duration::from_secs(3), || {
        (http_get(admin, "/readyz").0 == "HTTP/1.1 503 Service Unavailable").then_some(())
    });
    assert!(draining.is_some(), "readyz did not turn 503");
    // The drain deadline ends the open transaction with 421 4.3.2.
    c.set_read_timeout(Duration::from_secs(8));
    assert_eq!(
        c.read_reply(),
        "421 4.3.2 proxy.example.test service shutting down\r\n"
    );
    let exited = poll(Duration::from_secs(8), || rf.exit_status());
    assert_eq!(exited.map(|s| s.success()), Some(true));
}

#[test]
fn the_proxy_records_a_transcript_that_replay_judges_with_candidate_rules() {
    let up = FakeUpstream::with_script(|line| {
        if line.starts_with("RCPT") {
            Step::reply("530 5.7.1 User unknown in virtual mailbox table")
        } else {
            Step::Default
        }
    });
    let dir = TempDir::new("transcript");
    let path = dir.path().join("t.jsonl");
    let mut rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml(&format!("transcript:\n  path: \"{}\"", path.display())),
    );
    let (mut c, _) = rf.connect_greeted();
    c.cmd("EHLO client.test");
    // Whatever the upstream answers, the SASL line must not be recorded.
    c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldHBhc3M=");
    c.cmd("MAIL FROM:<alice@example.com>");
    assert!(c.cmd("RCPT TO:<typo@example.org>").starts_with("550 5.1.1"));
    c.cmd("QUIT");
    rf.wait_for_record("session closed");
    signal(rf.pid(), "-TERM");
    assert!(poll(Duration::from_secs(10), || rf.exit_status()).is_some());

    let text = std::fs::read_to_string(&path).expect("transcript written");
    assert!(text.contains("\"context\":\"rcpt\""), "{text}");
    for secret in ["AGFsaWNlAHNlY3JldHBhc3M", "secretpass", "alice@", "typo@"] {
        assert!(!text.contains(secret), "{secret} in transcript:\n{text}");
    }
    let candidate = dir.path().join("candidate.yaml");
    std::fs::write(
        &candidate,
        "rules:\n  - id: blunt\n    description: every 530 at RCPT is 554 5.7.1\n    when: {code: 530, command: [rcpt]}\n    then:\n      remap: {code: 554, enhanced: 5.7.1}\n",
    )
    .unwrap();
    let out = Command::new(replyfix_bin())
        .arg("replay")
        .arg(&path)
        .arg("--rules")
        .arg(&candidate)
        .arg("--changed-only")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[CHANGED]"), "{stdout}");
    assert!(stdout.contains("554 5.7.1 User unknown"), "{stdout}");
    assert!(stdout.contains("550 5.1.1 User unknown"), "{stdout}");
}

#[test]
fn reloading_every_50ms_under_load_drops_no_connection_f5() {
    let up = FakeUpstream::with_script(|line| {
        if line.starts_with("RCPT") {
            Step::reply("530 nope")
        } else {
            Step::Default
        }
    });
    let dir = TempDir::new("reload-load");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES_V1).unwrap();
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml(&format!("rules: [\"{}\"]", rules.display())),
    );
    let pid = rf.pid();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let hupper = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            // Bounded: at most 200 reloads (10 s).
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && sent.load(std::sync::atomic::Ordering::Relaxed) < 200
            {
                signal(pid, "-HUP");
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut completed = 0;
    // Sessions until 20 reloads have been sent (bounded: 2,000 sessions).
    for i in 0..2000 {
        if sent.load(std::sync::atomic::Ordering::Relaxed) >= 20 && completed >= 40 {
            break;
        }
        let (mut c, greeting) = rf.connect_greeted();
        assert!(greeting.starts_with("220"), "session {i}: {greeting}");
        assert!(c.cmd("EHLO load.test").starts_with("250"), "session {i}");
        assert!(c.cmd("MAIL FROM:<a@x>").starts_with("250"), "session {i}");
        let rcpt = c.cmd("RCPT TO:<b@y>");
        assert!(rcpt.starts_with("550 5.1.1"), "session {i}: {rcpt}");
        assert!(c.cmd("QUIT").starts_with("221"), "session {i}");
        completed += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hupper.join().unwrap();
    let reloads = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(completed >= 40, "{completed} sessions");
    assert!(reloads >= 20, "only {reloads} reloads sent");
    std::thread::sleep(Duration::from_millis(300));
    // Signals sent close together may be merged into one; most arrive.
    let ok = rf.records_with_message("rules reloaded").len();
    assert!(ok >= 10, "{ok} reloads logged of {reloads} sent");
}

#[test]
fn watched_rule_file_is_picked_up_without_a_signal_and_address_changes_need_a_restart() {
    let up = FakeUpstream::with_script(|line| {
        if line.starts_with("RCPT") {
            Step::reply("530 nope")
        } else {
            Step::Default
        }
    });
    let dir = TempDir::new("watch");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES_V1).unwrap();
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default()
            .yaml(&format!("rules: [\"{}\"]", rules.display()))
            .yaml("reload:\n  watch: true\n  interval: 200ms"),
    );
    let (mut c, _) = rf.connect_greeted();
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@x>");
    assert!(c.cmd("RCPT TO:<b@y>").starts_with("550 5.1.1"));
    c.cmd("RSET");
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(&rules, RULES_V2).unwrap();
    rf.wait_for_record("rules reloaded");
    c.cmd("MAIL FROM:<a@x>");
    assert!(c.cmd("RCPT TO:<b@y>").starts_with("554 5.7.1"));
    c.cmd("QUIT");

    // Changing the listener's address in the file is reported, not applied.
    let config = rf.dir().join("replyfix.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let moved = text.replacen(
        &format!("address: \"{}\"", rf.addr),
        "address: \"127.0.0.1:1\"",
        1,
    );
    assert_ne!(moved, text);
    std::fs::write(&config, moved).unwrap();
    let warned = poll(Duration::from_secs(5), || {
        rf.log()
            .contains("listener or upstream settings changed: they take effect after a restart")
            .then_some(())
    });
    assert!(warned.is_some(), "{}", rf.log());
    assert!(
        rf.connect_greeted().1.starts_with("220"),
        "still serving on the old address"
    );
}

#[test]
fn sigterm_mid_data_lets_the_message_finish_and_reports_it_once_f6() {
    let up = FakeUpstream::start();
    let mut rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml("timeouts:\n  drain: 5s"),
    );
    let (mut mid_data, _) = rf.connect_greeted();
    mid_data.cmd("EHLO data.test");
    mid_data.cmd("MAIL FROM:<a@x>");
    mid_data.cmd("RCPT TO:<b@y>");
    assert!(mid_data.cmd("DATA").starts_with("354"));
    mid_data.send(b"Subject: half\r\n\r\nfirst half\r\n");
    let (mut mid_tx, _) = rf.connect_greeted();
    mid_tx.cmd("EHLO tx.test");
    mid_tx.cmd("MAIL FROM:<a@x>");
    mid_tx.cmd("RCPT TO:<c@y>");

    let started = std::time::Instant::now();
    signal(rf.pid(), "-TERM");
    std::thread::sleep(Duration::from_millis(300));
    mid_data.send(b"second half\r\n.\r\n");
    let reply = mid_data.read_reply();
    assert!(reply.starts_with("250"), "{reply}");
    assert_eq!(
        mid_data.read_reply(),
        "421 4.3.2 proxy.example.test service shutting down\r\n"
    );
    assert!(mid_tx.cmd("DATA").starts_with("354"));
    mid_tx.send(b"Subject: second\r\n\r\nbody\r\n.\r\n");
    assert!(mid_tx.read_reply().starts_with("250"));
    assert_eq!(
        mid_tx.read_reply(),
        "421 4.3.2 proxy.example.test service shutting down\r\n"
    );
    let exited = poll(Duration::from_secs(7), || rf.exit_status());
    assert_eq!(exited.map(|s| s.success()), Some(true));
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "within drain + 1 s"
    );
    let rec = up.wait_until("two messages", |r| r.messages.len() == 2);
    assert_eq!(
        rec.messages.len(),
        2,
        "each accepted message delivered once"
    );
}
