//! SMTP smuggling suite (docs/protocol.md D1, D2; CVE-2023-51764/51765/51766):
//! each of the eleven end-of-data variants that are *not* an end, followed
//! by a smuggled `MAIL/RCPT/DATA`, sent through the real `replyfix` binary
//! to (a) Postfix `smtp-sink` as a strict upstream and (b) a deliberately
//! lenient upstream written here that ends DATA at a bare `LF.LF` (as the
//! vulnerable servers did), under both `bare_line_endings` policies.
//!
//! The upstream must never record a second (smuggled) transaction and never
//! receive a bare CR, bare LF or NUL. Each message is sent whole and split
//! in two writes at sampled offsets around the variant (every offset from
//! four bytes before it to four after); the exhaustive split-at-every-byte
//! run is at the `Core` level (`session::core` tests and `fuzz/`), where it
//! costs no sockets.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{Replyfix, ServeOptions, SmtpClient, SmtpSink, tool};

const SMUGGLED: &[u8] =
    b"MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n\r\nsmuggled body\r\n";

/// The client's content: a header, the variant, the smuggled transaction,
/// then the real end of data.
fn message(variant: &[u8]) -> (Vec<u8>, usize) {
    let mut m = b"Subject: smuggling test\r\n\r\nline".to_vec();
    let at = m.len();
    m.extend_from_slice(variant);
    m.extend_from_slice(SMUGGLED);
    m.extend_from_slice(b"\r\n.\r\n");
    (m, at)
}

/// Split points: none (whole), then every offset from 4 before the variant
/// to 4 after it.
fn splits(at: usize, variant_len: usize, len: usize) -> Vec<Option<usize>> {
    let mut v = vec![None];
    v.extend((at.saturating_sub(4)..=(at + variant_len + 4).min(len)).map(Some));
    v
}

/// True when `data` holds a bare CR, bare LF or NUL (D2).
fn has_bare_byte(data: &[u8]) -> bool {
    data.iter().enumerate().any(|(i, &b)| match b {
        0 => true,
        b'\r' => data.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || data[i - 1] != b'\r',
        _ => false,
    })
}

// ------------------------------------------------------- lenient upstream

/// What the lenient upstream saw.
#[derive(Default)]
struct LenientLog {
    /// One entry per accepted transaction: MAIL FROM line, content.
    transactions: Vec<(String, Vec<u8>)>,
    /// Every byte received, per connection.
    raw: Vec<Vec<u8>>,
}

/// A deliberately lenient SMTP server: lines may end in a bare LF, and DATA
/// ends at a line "." after any LF (`LF . LF`, `LF . CRLF`): the behaviour
/// smuggling exploits. Bytes after the end are read as the next commands.
struct LenientUpstream {
    addr: SocketAddr,
    log: Arc<Mutex<LenientLog>>,
}

impl LenientUpstream {
    fn start() -> LenientUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind lenient upstream");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(LenientLog::default()));
        let shared = log.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = shared.clone();
                thread::spawn(move || serve_lenient(stream, &log));
            }
        });
        LenientUpstream { addr, log }
    }
}

fn serve_lenient(mut s: TcpStream, log: &Mutex<LenientLog>) {
    let conn = {
        let mut l = log.lock().unwrap();
        l.raw.push(Vec::new());
        l.raw.len() - 1
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = s.write_all(b"220 lenient.test ESMTP\r\n");
    let mut buf = Vec::new();
    let mut mail = String::new();
    let mut in_data = false;
    let mut chunk = [0u8; 4096];
    loop {
        // Consume what is buffered.
        loop {
            if in_data {
                // Lenient end: "." alone on a line after any LF.
                let end = if buf.starts_with(b".\n") || buf.starts_with(b".\r\n") {
                    Some((0, if buf[1] == b'\n' { 2 } else { 3 }))
                } else {
                    (0..buf.len()).find_map(|i| {
                        let rest = &buf[i..];
                        if rest.starts_with(b"\n.\n") {
                            Some((i + 1, 2))
                        } else if rest.starts_with(b"\n.\r\n") {
                            Some((i + 1, 3))
                        } else {
                            None
                        }
                    })
                };
                let Some((content_len, skip)) = end else {
                    break;
                };
                let content = buf[..content_len].to_vec();
                buf.drain(..content_len + skip);
                log.lock()
                    .unwrap()
                    .transactions
                    .push((std::mem::take(&mut mail), content));
                in_data = false;
                let _ = s.write_all(b"250 2.0.0 queued\r\n");
                continue;
            }
            let Some(i) = buf.iter().position(|&b| b == b'\n') else {
                break;
            };
            let line: Vec<u8> = buf.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-lenient.test\r\n250 PIPELINING\r\n",
                "MAIL" => {
                    mail = line.clone();
                    b"250 2.1.0 ok\r\n"
                }
                "DATA" => {
                    in_data = true;
                    b"354 go ahead\r\n"
                }
                "QUIT" => {
                    let _ = s.write_all(b"221 bye\r\n");
                    return;
                }
                _ => b"250 ok\r\n",
            };
            let _ = s.write_all(reply);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                log.lock().unwrap().raw[conn].extend_from_slice(&chunk[..n]);
            }
        }
    }
}

// ------------------------------------------------------------ one session

/// Sends one message through replyfix, written whole or split in two; returns
/// the client's reply to the end of data.
fn send_one(rf: &Replyfix, msg: &[u8], split: Option<usize>) -> String {
    let mut c: SmtpClient = rf.connect();
    let greeting = c.read_reply();
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<sender@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<rcpt@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    match split {
        None => c.send(msg),
        Some(at) => {
            c.send(&msg[..at]);
            thread::sleep(Duration::from_millis(2));
            c.send(&msg[at..]);
        }
    }
    let reply = c.read_reply();
    if reply.starts_with("250") {
        assert!(c.cmd("QUIT").starts_with("221"));
    }
    reply
}

fn policy_options(policy: &str) -> ServeOptions {
    ServeOptions::default().yaml(&format!("bare_line_endings: {policy}"))
}

/// Runs every variant and split for `policy` against `upstream`; returns the
/// number of messages the client saw accepted.
fn run_variants(upstream: SocketAddr, policy: &str) -> usize {
    let rf = Replyfix::start(upstream, policy_options(policy));
    let mut accepted = 0;
    for (_, variant) in replyfix::smtp::framing::NOT_END_OF_DATA {
        let (msg, at) = message(variant);
        for split in splits(at, variant.len(), msg.len()) {
            let reply = send_one(&rf, &msg, split);
            let what = format!("policy {policy}, variant {variant:?}, split {split:?}");
            if policy == "reject" {
                assert_eq!(
                    reply, "550 5.5.2 Error: bare <CR>/<LF>/<NUL> in message content\r\n",
                    "{what}"
                );
            } else {
                assert!(reply.starts_with("250 "), "{what}: {reply}");
                accepted += 1;
            }
        }
    }
    accepted
}

// ------------------------------------------------------------------ tests

#[test]
fn lenient_upstream_never_records_a_smuggled_transaction_under_reject_d1_d2() {
    let up = LenientUpstream::start();
    assert_eq!(run_variants(up.addr, "reject"), 0);
    let log = up.log.lock().unwrap();
    assert!(
        log.transactions.is_empty(),
        "reject: the upstream accepted {} transactions",
        log.transactions.len()
    );
    for raw in &log.raw {
        assert!(
            !has_bare_byte(raw),
            "bare byte reached the upstream: {raw:?}"
        );
    }
}

#[test]
fn lenient_upstream_records_one_transaction_per_message_under_sanitize_d1_d2() {
    let up = LenientUpstream::start();
    let accepted = run_variants(up.addr, "sanitize");
    // Let the last QUITs land.
    thread::sleep(Duration::from_millis(100));
    let log = up.log.lock().unwrap();
    assert_eq!(
        log.transactions.len(),
        accepted,
        "one upstream transaction per message"
    );
    for (mail, content) in &log.transactions {
        assert_eq!(
            mail, "MAIL FROM:<sender@example.test>",
            "a smuggled MAIL became a transaction"
        );
        assert!(!has_bare_byte(content), "bare byte in content: {content:?}");
        // The smuggled commands arrived as content, after the variant's
        // bytes became spaces (never CRLF).
        assert!(
            content.windows(SMUGGLED.len()).any(|w| w == SMUGGLED),
            "{content:?}"
        );
    }
    for raw in &log.raw {
        assert!(
            !has_bare_byte(raw),
            "bare byte reached the upstream: {raw:?}"
        );
    }
}

#[test]
fn smtp_sink_never_receives_a_smuggled_transaction_under_either_policy_d1_d2() {
    let Some(bin) = tool("smtp-sink") else {
        return;
    };
    for policy in ["reject", "sanitize"] {
        let sink = SmtpSink::start(&bin, &[]);
        let accepted = run_variants(sink.addr, policy);
        let dumps = if accepted == 0 {
            thread::sleep(Duration::from_millis(200));
            sink.dumps()
        } else {
            sink.wait_for_dumps(accepted)
        };
        assert_eq!(
            dumps.len(),
            accepted,
            "{policy}: one dump per accepted message"
        );
        for d in &dumps {
            let text = std::fs::read(d).expect("read dump");
            let text = String::from_utf8_lossy(&text);
            assert!(
                !text.contains("X-Mail-Args: FROM:<smuggled@"),
                "{policy}: smuggled envelope in {}",
                d.display()
            );
            assert!(
                text.contains("smuggled body"),
                "{policy}: the smuggled text stays content"
            );
        }
    }
}

#[test]
fn lenient_upstream_is_really_vulnerable_without_replyfix_control() {
    // Control: sent straight to the lenient upstream, `LF . LF` ends the
    // data and the smuggled MAIL becomes a second transaction. This is what
    // replyfix must prevent in the tests above.
    let up = LenientUpstream::start();
    let mut c = SmtpClient::connect(up.addr);
    assert!(c.read_reply().starts_with("220"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<sender@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<rcpt@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let (msg, _) = message(b"\n.\n");
    c.send(&msg);
    // The smuggled transaction's replies come first: 250 (end at LF.LF),
    // 250 MAIL, 250 RCPT, 354, then 250 for the real end.
    for want in ["250", "250", "250", "354", "250"] {
        assert!(c.read_reply().starts_with(want));
    }
    let log = up.log.lock().unwrap();
    assert_eq!(log.transactions.len(), 2);
    assert_eq!(log.transactions[1].0, "MAIL FROM:<smuggled@evil.test>");
}
