//! End-to-end tests with real SMTP peers around the real `replyfix` binary:
//! swaks and Python's smtplib as clients, Postfix's smtp-sink as upstream
//! (dumping each message to a file) and smtp-source as a load client.
//! TLS with real peers is tested in tests/tls.rs.
//!
//! smtp-sink's dump holds the message un-dot-stuffed with LF line ends (see
//! `man smtp-sink`, DUMP FILE FORMAT), so byte exactness against it is
//! checked on that normal form by sha256; the raw-wire byte exactness of
//! DATA and BDAT is checked against the fake upstream in tests/relay.rs and
//! below. smtp-sink does not offer CHUNKING, so BDAT is proven against the
//! fake upstream.
//!
//! Each test needs its tool: missing, it is skipped, except under `CI=true`
//! where it fails (tests/common `tool`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{
    AUTH_PASSWORD, AUTH_USER, FakeUpstream, Replyfix, ServeOptions, SmtpClient, SmtpSink, Step,
    TempDir, base64, dot_stuff, run_bounded, sha256_hex, sink_dump_message, sink_expected_dump,
    test_message, tool,
};

const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

fn swaks(bin: &Path, rf: &Replyfix, args: &[&str]) -> Output {
    run_bounded(
        Command::new(bin)
            .args([
                "--server",
                "127.0.0.1",
                "--port",
                &rf.addr.port().to_string(),
                "--helo",
                "client.example.test",
                "--timeout",
                "20",
            ])
            .args(args),
        TOOL_TIMEOUT,
    )
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `message` (CRLF lines, no final CRLF) to a file for swaks --data.
fn message_file(dir: &TempDir, name: &str, message: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, message).expect("write message");
    path
}

/// The one dump smtp-sink wrote, message part only.
fn only_dump(sink: &SmtpSink) -> Vec<u8> {
    let dumps = sink.wait_for_dumps(1);
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let dump = std::fs::read(&dumps[0]).expect("read dump");
    sink_dump_message(&dump).to_vec()
}

// ------------------------------------------------------------ swaks

#[test]
fn swaks_message_with_dot_lines_and_8bit_reaches_smtp_sink_intact() {
    let (Some(swaks_bin), Some(sink_bin)) = (tool("swaks"), tool("smtp-sink")) else {
        return;
    };
    let sink = SmtpSink::start(&sink_bin, &[]);
    let rf = Replyfix::serve(sink.addr);
    let dir = TempDir::new("swaks");
    let message = test_message(64 << 10, 11);
    let file = message_file(&dir, "msg.eml", &message);
    let out = swaks(
        &swaks_bin,
        &rf,
        &[
            "--from",
            "sender@example.test",
            "--to",
            "rcpt@example.net",
            "--data",
            file.to_str().expect("utf-8 path"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("<-  250 2.0.0 Ok"),
        "{}",
        text(&out)
    );
    let got = only_dump(&sink);
    assert_eq!(sha256_hex(&got), sha256_hex(&sink_expected_dump(&message)));
}

#[test]
fn swaks_pipelined_session_is_delivered_through_replyfix() {
    let (Some(swaks_bin), Some(sink_bin)) = (tool("swaks"), tool("smtp-sink")) else {
        return;
    };
    let sink = SmtpSink::start(&sink_bin, &[]);
    let rf = Replyfix::serve(sink.addr);
    let dir = TempDir::new("swaks");
    let message = test_message(4 << 10, 5);
    let file = message_file(&dir, "msg.eml", &message);
    let out = swaks(
        &swaks_bin,
        &rf,
        &[
            "--pipeline",
            "--from",
            "sender@example.test",
            "--to",
            "one@example.net,two@example.net",
            "--data",
            file.to_str().expect("utf-8 path"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let got = only_dump(&sink);
    assert_eq!(sha256_hex(&got), sha256_hex(&sink_expected_dump(&message)));
    let dump = std::fs::read(&sink.dumps()[0]).expect("read dump");
    let dump = String::from_utf8_lossy(&dump);
    assert!(
        dump.contains("X-Rcpt-Args: <one@example.net>\nX-Rcpt-Args: <two@example.net>\n"),
        "{dump}"
    );
    // swaks really pipelined (MAIL, RCPT, RCPT, DATA in one go) and got the
    // replies back in order (P1).
    let transcript = String::from_utf8_lossy(&out.stdout);
    assert!(
        transcript.contains(
            " -> DATA\n<-  250 2.1.0 Ok\n<-  250 2.1.5 Ok\n<-  250 2.1.5 Ok\n<-  354 End data"
        ),
        "{}",
        text(&out)
    );
}

/// swaks with AUTH `mech` through replyfix to the AUTH-capable fake upstream.
fn swaks_auth(
    mech: &str,
    password: &str,
    rust_log: Option<&str>,
) -> Option<(Output, FakeUpstream, Replyfix)> {
    let swaks_bin = tool("swaks")?;
    let up = FakeUpstream::start();
    let mut opts = ServeOptions::default();
    if let Some(filter) = rust_log {
        opts = opts.rust_log(filter);
    }
    let rf = Replyfix::start(up.addr, opts);
    let out = swaks(
        &swaks_bin,
        &rf,
        &[
            "--auth",
            mech,
            "--auth-user",
            AUTH_USER,
            "--auth-password",
            password,
            "--from",
            "sender@example.test",
            "--to",
            "rcpt@example.net",
        ],
    );
    Some((out, up, rf))
}

#[test]
fn swaks_auth_plain_is_relayed_byte_exact_and_succeeds() {
    // P4/L1: the SASL exchange is relayed untouched.
    let Some((out, up, _rf)) = swaks_auth("PLAIN", AUTH_PASSWORD, None) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("<-  235 2.7.0 Authentication successful"),
        "{}",
        text(&out)
    );
    let token = base64(format!("\0{AUTH_USER}\0{AUTH_PASSWORD}").as_bytes());
    let rec = up.wait_until("message", |r| r.messages.len() == 1);
    let auth: Vec<String> = rec
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("AUTH") || *c == token)
        .collect();
    // swaks sends the initial response on the AUTH line or after a 334.
    assert_eq!(auth.join(" "), format!("AUTH PLAIN {token}"), "{auth:?}");
}

#[test]
fn swaks_auth_login_is_relayed_byte_exact_and_succeeds() {
    let Some((out, up, _rf)) = swaks_auth("LOGIN", AUTH_PASSWORD, None) else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out));
    let rec = up.wait_until("message", |r| r.messages.len() == 1);
    let cmds = rec.commands();
    let at = cmds
        .iter()
        .position(|c| c.starts_with("AUTH LOGIN"))
        .expect("AUTH LOGIN reached the upstream");
    let user = base64(AUTH_USER.as_bytes());
    let pass = base64(AUTH_PASSWORD.as_bytes());
    if cmds[at] == "AUTH LOGIN" {
        assert_eq!(cmds[at + 1..at + 3], [user, pass], "{cmds:?}");
    } else {
        assert_eq!(cmds[at], format!("AUTH LOGIN {user}"));
        assert_eq!(cmds[at + 1], pass, "{cmds:?}");
    }
}

#[test]
fn swaks_auth_with_wrong_password_gets_the_upstreams_535() {
    let Some((out, up, _rf)) = swaks_auth("PLAIN", "wrong-password", None) else {
        return;
    };
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("<** 535 5.7.8 Error: authentication failed"),
        "{}",
        text(&out)
    );
    assert!(up.recorded().messages.is_empty());
}

#[test]
fn auth_plain_and_login_credentials_never_appear_in_trace_logs() {
    // L1 / docs/architecture.md invariant 3, at the most verbose level.
    let secrets = [
        base64(format!("\0{AUTH_USER}\0{AUTH_PASSWORD}").as_bytes()),
        base64(AUTH_USER.as_bytes()),
        base64(AUTH_PASSWORD.as_bytes()),
        AUTH_PASSWORD.to_string(),
    ];
    for mech in ["PLAIN", "LOGIN"] {
        let Some((out, up, rf)) = swaks_auth(mech, AUTH_PASSWORD, Some("trace")) else {
            return;
        };
        assert!(out.status.success(), "{mech}: {}", text(&out));
        up.wait_until("message", |r| r.messages.len() == 1);
        rf.wait_for_record("session closed");
        let log = rf.log();
        // Mechanism and outcome only (L1).
        let auth = rf.wait_for_record("authentication");
        assert_eq!(
            common::field(&auth, "mechanism").as_deref(),
            Some(mech),
            "{auth}"
        );
        assert_eq!(
            common::field(&auth, "success").as_deref(),
            Some("true"),
            "{auth}"
        );
        // The filter really was verbose.
        assert!(
            rf.records().iter().any(|r| matches!(
                common::field(r, "level").as_deref(),
                Some("DEBUG" | "TRACE")
            )),
            "{mech}: no debug or trace records at RUST_LOG=trace:\n{log}"
        );
        for secret in &secrets {
            assert!(
                !log.contains(secret.as_str()),
                "{mech}: {secret:?} appears in replyfix's log:\n{log}"
            );
        }
    }
}

// ------------------------------------------------------------ Python smtplib

#[test]
fn python_smtplib_sees_remapped_550_511_for_unknown_user_and_delivers_to_the_rest() {
    let Some(python) = tool("python3") else {
        return;
    };
    let up = FakeUpstream::with_script(|cmd| {
        // smtplib writes its verbs in lower case.
        if cmd.to_ascii_uppercase().starts_with("RCPT TO:<NOBODY@") {
            Step::reply("530 5.7.1 <nobody@example.net>: Recipient address rejected: User unknown")
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::serve(up.addr);
    let script = r#"
import json, smtplib, sys
port = int(sys.argv[1])
msg = "Subject: smtplib\r\n\r\nhello from smtplib\r\n.leading dot\r\n"
s = smtplib.SMTP("127.0.0.1", port, timeout=20)
s.ehlo("py.example.test")
refused = s.sendmail("sender@example.test", ["a@example.net", "nobody@example.net"], msg)
s.quit()
print(json.dumps({k: [v[0], v[1].decode()] for k, v in refused.items()}))
"#;
    let out = run_bounded(
        Command::new(python).args(["-c", script, &rf.addr.port().to_string()]),
        TOOL_TIMEOUT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let refused: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("json from the script");
    let entry = &refused["nobody@example.net"];
    assert_eq!(entry[0], 550, "{refused}");
    assert!(
        entry[1].as_str().is_some_and(|t| t.starts_with("5.1.1")),
        "{refused}"
    );
    assert_eq!(refused.as_object().map(|o| o.len()), Some(1), "{refused}");
    let rec = up.wait_until("message", |r| r.messages.len() == 1);
    assert_eq!(
        rec.messages[0],
        b"Subject: smtplib\r\n\r\nhello from smtplib\r\n..leading dot\r\n.\r\n"
    );
}

// ------------------------------------------------------------ smtp-sink, raw client

/// Sends one message with a raw client through replyfix; returns the reply
/// to the end of data.
fn raw_send(rf: &Replyfix, mail_args: &str, message: &[u8]) -> String {
    let mut c: SmtpClient = rf.connect();
    assert!(c.read_reply().starts_with("220 "));
    assert!(c.cmd("EHLO client.example.test").starts_with("250"));
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<sender@example.test>{mail_args}")),
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(c.cmd("RCPT TO:<rcpt@example.net>"), "250 2.1.5 Ok\r\n");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(&dot_stuff(message));
    let reply = c.read_reply();
    assert_eq!(c.cmd("QUIT"), "221 Bye\r\n");
    reply
}

#[test]
fn ten_megabyte_8bit_message_reaches_smtp_sink_intact_by_sha256() {
    let Some(sink_bin) = tool("smtp-sink") else {
        return;
    };
    let sink = SmtpSink::start(&sink_bin, &[]);
    let rf = Replyfix::serve(sink.addr);
    let message = test_message(10 << 20, 42);
    assert_eq!(
        raw_send(&rf, " BODY=8BITMIME", &message),
        "250 2.0.0 Ok\r\n"
    );
    let got = only_dump(&sink);
    let expected = sink_expected_dump(&message);
    assert_eq!(got.len(), expected.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&expected));
}

#[test]
fn smtp_sink_sees_the_same_message_directly_and_through_replyfix() {
    // A differential check: the dump of a message sent straight to
    // smtp-sink equals the dump of the same message sent through replyfix.
    let (Some(swaks_bin), Some(sink_bin)) = (tool("swaks"), tool("smtp-sink")) else {
        return;
    };
    let dir = TempDir::new("diff");
    let message = test_message(256 << 10, 99);
    let file = message_file(&dir, "msg.eml", &message);
    let mut hashes = Vec::new();
    for through_replyfix in [false, true] {
        let sink = SmtpSink::start(&sink_bin, &[]);
        let rf = Replyfix::serve(sink.addr);
        let port = if through_replyfix {
            rf.addr.port()
        } else {
            sink.addr.port()
        };
        let out = run_bounded(
            Command::new(&swaks_bin).args([
                "--server",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--helo",
                "client.example.test",
                "--from",
                "sender@example.test",
                "--to",
                "rcpt@example.net",
                "--data",
                file.to_str().expect("utf-8 path"),
            ]),
            TOOL_TIMEOUT,
        );
        assert!(out.status.success(), "{}", text(&out));
        hashes.push(sha256_hex(&only_dump(&sink)));
    }
    assert_eq!(hashes[0], hashes[1]);
}

#[test]
fn smtp_source_100_messages_in_5_parallel_sessions_all_reach_smtp_sink() {
    let (Some(source_bin), Some(sink_bin)) = (tool("smtp-source"), tool("smtp-sink")) else {
        return;
    };
    let sink = SmtpSink::start(&sink_bin, &[]);
    let rf = Replyfix::serve(sink.addr);
    let out = run_bounded(
        Command::new(source_bin).args([
            "-s",
            "5",
            "-m",
            "100",
            "-l",
            "2048",
            "-M",
            "client.example.test",
            "-f",
            "sender@example.test",
            "-t",
            "rcpt@example.net",
            &rf.addr.to_string(),
        ]),
        TOOL_TIMEOUT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let dumps = sink.wait_for_dumps(100);
    assert_eq!(dumps.len(), 100);
    let closed = rf.wait_for_records("session closed", 100);
    assert_eq!(closed.len(), 100);
    let transactions: u64 = closed
        .iter()
        .map(|r| {
            common::field(r, "transactions")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no transactions in {r}"))
        })
        .sum();
    assert_eq!(transactions, 100);
}
