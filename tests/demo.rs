//! `replyfix demo` through the real binary: with nothing else installed it
//! shows a misused 530 rewritten and a legitimate one kept, then serves the
//! user's own client until Ctrl-C.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{SmtpClient, free_port, poll, replyfix_bin, run_bounded};

/// The block of the walk-through for scenario `n` (1-based).
fn block(out: &str, n: usize) -> &str {
    let start = out
        .find(&format!("\n{n}. "))
        .unwrap_or_else(|| panic!("no scenario {n} in:\n{out}"));
    let rest = &out[start + 1..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn the_walk_through_shows_misused_530s_rewritten_and_a_legitimate_one_kept() {
    let started = Instant::now();
    let out = run_bounded(
        Command::new(replyfix_bin()).args(["demo", "--once", "--listen", "127.0.0.1:0"]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}\n(the demo took {:?})", started.elapsed());
    let config_error = block(&text, 1);
    assert!(
        config_error.contains(
            "upstream    530 The message cannot be delivered due to a configuration error"
        ),
        "{config_error}"
    );
    assert!(
        config_error.contains("client gets 550-5.1.1 The message cannot be delivered"),
        "{config_error}"
    );
    assert!(
        config_error.contains("logged      reply rewritten"),
        "{config_error}"
    );
    assert!(
        config_error.contains("(530 -> 550 5.1.1)"),
        "{config_error}"
    );
    let unknown = block(&text, 3);
    assert!(
        unknown.contains("client gets 550 5.1.1 <typo@demo.test>"),
        "{unknown}"
    );
    let blocked = block(&text, 4);
    assert!(
        blocked.contains("client gets 554 5.7.1 Service unavailable"),
        "{blocked}"
    );
    let legitimate = block(&text, 5);
    assert!(
        legitimate.contains("upstream    530 5.7.0 Authentication required"),
        "{legitimate}"
    );
    assert!(
        legitimate.contains("client gets 530"),
        "kept as a 530: {legitimate}"
    );
    let delivery = block(&text, 6);
    assert!(delivery.contains("(unchanged)"), "{delivery}");
    assert!(delivery.contains("client gets 250 2.0.0"), "{delivery}");
}

#[test]
fn without_once_the_demo_serves_any_client_and_prints_each_rewrite() {
    let port = free_port();
    let mut child = Command::new(replyfix_bin())
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start replyfix demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return;
                }
            }
        }
        panic!("no line with {needle:?}; saw:\n{}", seen.join("\n"));
    };
    wait_for("Ctrl-C stops the demo.");
    let addr = format!("127.0.0.1:{port}").parse().expect("address");
    let mut c = SmtpClient::connect(addr);
    assert!(c.read_reply().starts_with("220 demo-upstream.test"));
    assert!(c.cmd("EHLO me.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<me@example.com>").starts_with("250"));
    let reply = c.cmd("RCPT TO:<typo@demo.test>");
    assert!(reply.starts_with("550 5.1.1 "), "{reply}");
    wait_for("logged: reply rewritten");
    let logged = seen.last().cloned().unwrap_or_default();
    assert!(
        logged.contains("rule=user-unknown") && logged.contains("original=\"530 5.7.1"),
        "{logged}"
    );
    drop(c);
    // Ctrl-C: the demo stops by itself.
    // (the shell's built-in kill: no procps needed)
    let _ = Command::new("sh")
        .args(["-c", "kill -INT \"$1\"", "sh", &child.id().to_string()])
        .status();
    let exited = poll(Duration::from_secs(20), || child.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = child.kill();
    }
    let status = exited.expect("the demo exits on Ctrl-C");
    assert!(status.success(), "{status}");
}
