//! `replyfix explain --dsn` on the bounce fixtures (`tests/fixtures/bounces/`):
//! the recipients, replies, contexts and verdicts each bounce must give; the
//! agreement with sisimai's labels on its set of real bounces; the folder
//! summary; and the bounds (a 50 MB bounce, mutated bounces).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use replyfix::explain::dsn::{RecipientReport, explain_bounce, parse_bounce};
use replyfix::rules::{RuleSet, SessionFacts};
use replyfix::smtp::CommandKind;

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bounces")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn reports(name: &str) -> (&'static str, Vec<RecipientReport>) {
    let bounce = parse_bounce(&fixture(name)).expect("a message");
    let rules = RuleSet::builtin();
    let r = explain_bounce(&rules, &bounce, &SessionFacts::new(CommandKind::Other));
    (bounce.style, r)
}

/// (recipient, remote MTA, context, original reply wire, rule, accurate code)
type Want<'a> = (
    &'a str,
    Option<&'a str>,
    CommandKind,
    &'a str,
    Option<&'a str>,
    &'a str,
);

fn check(name: &str, style: &str, want: &[Want<'_>]) {
    let (got_style, got) = reports(name);
    assert_eq!(got_style, style, "{name}");
    assert_eq!(got.len(), want.len(), "{name}: {got:#?}");
    for (r, (rcpt, mta, ctx, wire, rule, accurate)) in got.iter().zip(want) {
        assert_eq!(r.recipient.recipient, *rcpt, "{name}");
        assert_eq!(r.recipient.remote_mta.as_deref(), *mta, "{name} {rcpt}");
        assert_eq!(r.recipient.context, *ctx, "{name} {rcpt}");
        let e = r.explanation.as_ref().expect("a reply");
        assert_eq!(
            String::from_utf8_lossy(e.original.raw()),
            *wire,
            "{name} {rcpt}"
        );
        assert_eq!(e.verdict.rule(), *rule, "{name} {rcpt}");
        assert_eq!(
            replyfix::explain::dsn::accurate_code(e.client_sees()),
            *accurate,
            "{name} {rcpt}"
        );
        assert!(!r.advice.meaning.is_empty() && !r.advice.action.is_empty());
    }
}

#[test]
fn rfc3464_report_gives_failed_recipients_with_contexts_from_the_text_part() {
    check(
        "rfc3464-postfix.eml",
        "postfix",
        &[
            (
                "ann@example.org",
                Some("mx.example.org"),
                CommandKind::Rcpt,
                "530 5.7.1 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.\r\n",
                Some("config-error-ambiguous"),
                "554 5.0.0",
            ),
            (
                "bo@example.org",
                Some("mx.example.org"),
                CommandKind::DataEnd,
                "530 5.7.1 Message rejected: spam content detected\r\n",
                Some("content-rejected"),
                "550 5.7.1",
            ),
        ],
    );
    let (_, r) = reports("rfc3464-postfix.eml");
    assert_eq!(r[0].recipient.status.as_deref(), Some("5.7.1"));
    assert_eq!(r[0].recipient.action.as_deref(), Some("failed"));
}

#[test]
fn rfc3464_delivered_recipients_are_not_reported() {
    let (_, r) = reports("rfc3464-postfix.eml");
    assert!(r.iter().all(|r| r.recipient.recipient != "cy@example.org"));
}

#[test]
fn postfix_text_bounce_reads_folded_lines_greeting_and_multi_line_replies() {
    check(
        "postfix-text.eml",
        "postfix",
        &[
            (
                "dan@example.net",
                Some("mail.example.net"),
                CommandKind::Greeting,
                "530 5.7.1 Access denied: your IP 203.0.113.9 is listed on a DNS blocklist\r\n",
                Some("blocked-sending-host"),
                "554 5.7.1",
            ),
            (
                "eve@example.net",
                Some("mail2.example.net"),
                CommandKind::Mail,
                "530-5.7.0 Authentication required\r\n530 5.7.0 Please authenticate first\r\n",
                Some("auth-required"),
                "530 5.7.0",
            ),
        ],
    );
}

#[test]
fn exim_bounce_reads_reply_on_the_line_after_smtp_error() {
    check(
        "exim.eml",
        "exim",
        &[
            (
                "fay@example.com",
                Some("mx2.example.com"),
                CommandKind::Rcpt,
                "530 5.7.1 No such user here\r\n",
                Some("user-unknown"),
                "550 5.1.1",
            ),
            (
                "gus@example.com",
                Some("mx2.example.com"),
                CommandKind::DataEnd,
                "530 5.7.1 Message rejected: SPF check failed for sender.example\r\n",
                Some("spf-failed"),
                "550 5.7.23",
            ),
        ],
    );
}

#[test]
fn exchange_ndr_reads_remote_server_returned_once_despite_html_copy() {
    check(
        "exchange.eml",
        "exchange2007",
        &[(
            "hal@example.org",
            Some("mx.example.org"),
            CommandKind::Other,
            "530 5.7.1 RESOLVER.ADR.RecipNotFound; The recipient address does not exist [DM6PR02MB1234.namprd02.prod.outlook.example 2026-03-06T09:30:12.000Z]\r\n",
            Some("user-unknown"),
            "550 5.1.1",
        )],
    );
}

#[test]
fn gmail_bounce_reads_multi_line_response() {
    check(
        "gmail.eml",
        "gmail",
        &[(
            "ivy@example.net",
            None,
            CommandKind::Other,
            "530-5.7.1 Your message was rejected because the sending IP has a poor\r\n530 5.7.1 reputation. Please see https://help.example.net/reputation\r\n",
            Some("blocked-sending-host"),
            "554 5.7.1",
        )],
    );
}

#[test]
fn a_non_message_is_an_error_and_a_plain_message_has_no_recipients() {
    assert!(parse_bounce(b"").is_err());
    let b = parse_bounce(b"Subject: hello\r\n\r\nJust a note.\r\n").expect("a message");
    assert!(b.recipients.is_empty());
}

#[test]
fn cli_dsn_json_has_one_object_with_recipients() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces/rfc3464-postfix.eml");
    let out = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .args(["explain", "--json", "--dsn"])
        .arg(&path)
        .output()
        .expect("run replyfix");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["style"], "postfix");
    assert_eq!(v["rfc3464"], true);
    let r = &v["recipients"][0];
    assert_eq!(r["recipient"], "ann@example.org");
    assert_eq!(r["context"], "rcpt");
    assert_eq!(r["context_known"], true);
    assert_eq!(r["status"], "5.7.1");
    assert_eq!(r["remote_mta"], "mx.example.org");
    assert_eq!(r["accurate"], "554 5.0.0");
    assert_eq!(r["judgement"]["rule"], "config-error-ambiguous");
    assert_eq!(r["judgement"]["original"]["code"], 530);
    assert!(r["meaning"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(r["what_to_do"].as_str().is_some_and(|s| !s.is_empty()));
}

#[test]
fn cli_dsn_text_reads_standard_input() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .args(["explain", "--dsn", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run replyfix");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&fixture("exim.eml"))
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bounce: exim style, 2 failed recipient(s)"),
        "{text}"
    );
    assert!(
        text.contains("accurate:    550 5.1.1  (rule 'user-unknown': remap)"),
        "{text}"
    );
    assert!(text.contains("what to do:"), "{text}");
}

#[test]
fn network_text_in_a_bounce_is_escaped() {
    let raw = b"Subject: x\r\nContent-Type: text/plain\r\n\r\n<a@example.org>: host mx.example.org[192.0.2.1] said: 530 5.7.1 evil \x1b[31m text (in reply to RCPT TO command)\r\n";
    let b = parse_bounce(raw).expect("message");
    let r = explain_bounce(
        &RuleSet::builtin(),
        &b,
        &SessionFacts::new(CommandKind::Other),
    );
    let shown = r[0].to_string();
    assert!(!shown.contains('\x1b'), "{shown}");
    assert!(shown.contains("\\x1B[31m"), "{shown}");
}

// ------------------------------------------------------------ the labelled set

/// One labelled failed recipient of `tests/fixtures/bounces/sisimai/expected.json`.
struct Label {
    status: String,
    reason: String,
}

fn sisimai_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bounces/sisimai")
}

fn labels() -> Vec<(String, Vec<Label>)> {
    let text = std::fs::read_to_string(sisimai_dir().join("expected.json")).expect("expected.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("expected.json is JSON");
    let mut out: Vec<(String, Vec<Label>)> = v
        .as_object()
        .expect("an object")
        .iter()
        .map(|(file, entries)| {
            let entries = entries
                .as_array()
                .expect("a list")
                .iter()
                .map(|e| Label {
                    status: e["status"].as_str().unwrap_or("").to_string(),
                    reason: e["reason"].as_str().unwrap_or("").to_string(),
                })
                .collect();
            (file.clone(), entries)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// sisimai writes `x.0.9NN` when the bounce carries no status of its own
/// (its code for "reason R, no status given"): replyfix agrees when it
/// reports no status or only the class (`x.0.0`) of the same class.
fn status_agrees(want: &str, got: Option<&str>) -> bool {
    let pseudo = want
        .split('.')
        .collect::<Vec<_>>()
        .as_slice()
        .get(1..3)
        .is_some_and(|p| p[0] == "0" && p[1].len() == 3 && p[1].starts_with('9'));
    match got {
        None => want.is_empty() || pseudo,
        Some(g) if pseudo => g.split('.').next() == want.split('.').next() && g.ends_with(".0.0"),
        Some(g) => g == want,
    }
}

/// The format a sample file belongs to: `lhost-qmail-07.eml` -> `lhost-qmail`.
fn format_of(file: &str) -> &str {
    file.trim_end_matches(".eml")
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches('-')
}

#[test]
fn sisimai_set_coverage_status_and_reason_rates_hold() {
    let labels = labels();
    assert!(labels.len() >= 300, "{} labelled files", labels.len());
    let (mut covered, mut entries, mut status_ok, mut reason_ok) = (0usize, 0usize, 0usize, 0usize);
    let mut misses: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (file, want) in &labels {
        let raw = std::fs::read(sisimai_dir().join(file)).expect("labelled file exists");
        let got = match parse_bounce(&raw) {
            Ok(b) => b.recipients,
            Err(_) => Vec::new(),
        };
        if !got.is_empty() {
            covered += 1;
        }
        for (i, w) in want.iter().enumerate() {
            entries += 1;
            let g = got.get(i);
            let st = g.and_then(|g| g.status.as_deref());
            let rs = g.map_or("-", |g| g.reason.as_str());
            let s_ok = g.is_some() && status_agrees(&w.status, st);
            let r_ok = rs == w.reason;
            status_ok += usize::from(s_ok);
            reason_ok += usize::from(r_ok);
            if !s_ok || !r_ok {
                misses.entry(format_of(file)).or_default().push(format!(
                    "{file}#{}: status {} want {}, reason {rs} want {}",
                    i + 1,
                    st.unwrap_or("-"),
                    if w.status.is_empty() { "-" } else { &w.status },
                    w.reason
                ));
            }
        }
    }
    let files = labels.len();
    let rate = |n: usize, d: usize| n as f64 * 100.0 / d as f64;
    let (coverage, status, reason) = (
        rate(covered, files),
        rate(status_ok, entries),
        rate(reason_ok, entries),
    );
    println!(
        "sisimai set: {files} files, {entries} labelled recipients\n  coverage {coverage:.1}% ({covered}/{files})\n  status agreement {status:.1}% ({status_ok}/{entries})\n  reason agreement {reason:.1}% ({reason_ok}/{entries})"
    );
    for (format, lines) in &misses {
        println!("  {format}: {} disagreement(s)", lines.len());
        for l in lines {
            println!("    {l}");
        }
    }
    assert!(coverage >= 98.0, "coverage {coverage:.1}% < 98%");
    assert!(status >= 95.0, "status agreement {status:.1}% < 95%");
    assert!(reason >= 90.0, "reason agreement {reason:.1}% < 90%");
}

// ------------------------------------------------------------ folders

/// The small fixtures of our own, by name.
const OWN: [&str; 5] = [
    "rfc3464-postfix.eml",
    "postfix-text.eml",
    "exim.eml",
    "exchange.eml",
    "gmail.eml",
];

/// What the library says about `files`: recipients and misused 530s
/// (a 530 the built-in rules remap).
fn library_counts(files: &[Vec<u8>]) -> (usize, usize) {
    let rules = RuleSet::builtin();
    let (mut recipients, mut misused) = (0, 0);
    for raw in files {
        let b = parse_bounce(raw).expect("a message");
        for r in explain_bounce(&rules, &b, &SessionFacts::new(CommandKind::Other)) {
            recipients += 1;
            if let Some(e) = &r.explanation
                && e.original.code().get() == 530
                && e.verdict.action() == Some(replyfix::rules::Action::Remap)
            {
                misused += 1;
            }
        }
    }
    (recipients, misused)
}

#[test]
fn cli_dsn_folder_summary_counts_what_the_library_reads_and_lists_misused_530s() {
    let dir = common::TempDir::new("dsn-folder");
    let sub = dir.path().join("older");
    std::fs::create_dir_all(&sub).expect("subfolder");
    let mut raws = Vec::new();
    for (i, name) in OWN.iter().enumerate() {
        let raw = fixture(name);
        let at = if i % 2 == 0 {
            dir.path().join(name)
        } else {
            sub.join(name)
        };
        std::fs::write(at, &raw).expect("write fixture");
        raws.push(raw);
    }
    std::fs::write(dir.path().join("notes.txt"), b"").expect("write");
    let (recipients, misused) = library_counts(&raws);
    assert!(misused > 0, "the fixtures hold misused 530s");

    let out = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .args(["explain", "--dsn"])
        .arg(dir.path())
        .output()
        .expect("run replyfix");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let head = format!("summary: {} files", OWN.len() + 1);
    assert!(text.contains(&head), "{text}");
    assert!(text.contains(&format!("{recipients} recipients")), "{text}");
    assert!(
        text.contains(&format!("misused 530s (a 530 the rules remap): {misused}")),
        "{text}"
    );
    // One line per recipient, then the tables.
    assert_eq!(
        text.lines().filter(|l| l.contains(".eml: ")).count(),
        recipients + misused,
        "{text}"
    );
    assert!(
        text.contains("by reason:") && text.contains("by remote host"),
        "{text}"
    );
    let codes = text.split("by original code:").nth(1).unwrap_or("");
    assert!(codes.lines().any(|l| l.ends_with("  530")), "{text}");
    assert!(
        text.contains("ann@example.org mx.example.org: 530 5.7.1 The message cannot be delivered"),
        "{text}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .args(["explain", "--json", "--dsn"])
        .arg(dir.path())
        .output()
        .expect("run replyfix");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    let (summary, each) = lines.split_last().expect("a summary");
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["recipients"], recipients);
    assert_eq!(summary["misused_530"], misused);
    assert_eq!(
        summary["misused_530_listed"].as_array().map(Vec::len),
        Some(misused)
    );
    assert_eq!(each.len(), recipients);
    assert!(
        each.iter()
            .all(|r| r["type"] == "recipient" && r["reason"].is_string())
    );
}

#[test]
fn cli_dsn_several_files_are_summarised_and_summary_only_prints_no_recipient_lines() {
    let paths: Vec<PathBuf> = OWN
        .iter()
        .map(|n| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/bounces")
                .join(n)
        })
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .args(["explain", "--summary-only", "--dsn"])
        .args(&paths)
        .output()
        .expect("run replyfix");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("summary: {} files", OWN.len())),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains(": ann@example.org userunknown")),
        "{text}"
    );
}

// ------------------------------------------------------------ bounds

/// A bounce of about `size` bytes: the report first, then a returned
/// message padded to the size.
fn big_bounce(size: usize) -> Vec<u8> {
    let mut m = b"From: MAILER-DAEMON@example.net\r\nSubject: Undelivered Mail Returned to Sender\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe mail system\r\n\r\n<kim@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1 user unknown\r\n    (in reply to RCPT TO command)\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: big\r\n\r\n".to_vec();
    let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuv\r\n";
    while m.len() < size {
        m.extend_from_slice(line);
    }
    m
}

#[test]
fn a_50_mb_bounce_is_read_only_up_to_the_cap_and_still_explained() {
    use replyfix::explain::dsn::{MAX_BOUNCE, read_capped};
    use std::io::Read;
    // 50 MB, produced as it is read: the test never holds it whole.
    let head = big_bounce(4096);
    let input = std::io::Cursor::new(head).chain(std::io::repeat(b'x').take(50 * 1024 * 1024));
    let raw = read_capped(input, MAX_BOUNCE).expect("read");
    assert_eq!(raw.len(), MAX_BOUNCE);
    let b = parse_bounce(&raw).expect("a message");
    assert_eq!(b.recipients.len(), 1);
    assert_eq!(b.recipients[0].reason.as_str(), "userunknown");
    // What lies beyond the cap is not read: a report placed after it is
    // not seen.
    let mut late = b"Subject: x\r\nContent-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    late.resize(MAX_BOUNCE + 10, b'x');
    late.extend_from_slice(b"\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; kim@example.org\r\nStatus: 5.1.1\r\n\r\n--b--\r\n");
    assert!(
        parse_bounce(&late)
            .expect("a message")
            .recipients
            .is_empty()
    );
}

#[test]
fn many_recipients_and_huge_texts_are_capped() {
    use replyfix::explain::dsn::MAX_RECIPIENTS;
    let mut m = b"Subject: x\r\nContent-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a.example\r\n\r\n".to_vec();
    for i in 0..(MAX_RECIPIENTS + 500) {
        m.extend_from_slice(format!("Final-Recipient: rfc822; u{i}@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n").as_bytes());
    }
    m.extend_from_slice(b"--b--\r\n");
    assert_eq!(
        parse_bounce(&m).expect("a message").recipients.len(),
        MAX_RECIPIENTS
    );
}

/// Peak resident memory (`VmHWM`, KiB) of a running process, from /proc.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident memory (KiB) of `explain --dsn FILE -`, measured while the
/// process waits on standard input, after it has read and explained FILE.
/// Every wait is bounded: the child is killed when it takes too long.
fn peak_rss_after(file: &Path) -> u64 {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(60);
    let mut child = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .args(["explain", "--dsn"])
        .arg(file)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run replyfix");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // The recipient line of FILE is written before `-` is read.
    let first = match rx.recv_timeout(LIMIT) {
        Ok(l) => l,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no recipient line within {LIMIT:?}: {e}");
        }
    };
    assert!(first.contains("kim@example.org userunknown"), "{first}");
    let peak = peak_rss_kib(child.id());
    drop(child.stdin.take());
    let deadline = std::time::Instant::now() + LIMIT;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("explain did not end within {LIMIT:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = reader.join();
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.starts_with("summary: 2 files")),
        "{rest:?}"
    );
    peak.expect("VmHWM in /proc")
}

#[test]
fn cli_reads_a_50_mb_bounce_in_bounded_memory() {
    if !Path::new("/proc/self/status").exists() {
        assert!(!common::under_ci(), "/proc is needed to measure memory");
        eprintln!("skipped: no /proc to measure peak memory");
        return;
    }
    let dir = common::TempDir::new("dsn-big");
    let big = dir.path().join("big.eml");
    let small = dir.path().join("small.eml");
    std::fs::write(&big, big_bounce(50 * 1024 * 1024)).expect("write 50 MB");
    std::fs::write(&small, big_bounce(4096)).expect("write");
    let with_big = peak_rss_after(&big);
    let with_small = peak_rss_after(&small);
    println!("peak RSS: {with_big} KiB after a 50 MB bounce, {with_small} KiB after a 4 KB one");
    // Reading 50 MB whole would add over 50 MiB; the 1 MiB cap adds little.
    assert!(
        with_big < with_small + 16 * 1024,
        "{with_big} KiB after 50 MB vs {with_small} KiB after 4 KB"
    );
    assert!(with_big < 50 * 1024, "{with_big} KiB");
}

// ------------------------------------------------------------ robustness

/// Every labelled bounce, read once.
static REAL: std::sync::LazyLock<Vec<Vec<u8>>> = std::sync::LazyLock::new(|| {
    labels()
        .iter()
        .map(|(f, _)| std::fs::read(sisimai_dir().join(f)).expect("labelled file"))
        .collect()
});

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Real bounces of every format, cut, spliced with random bytes and
    /// with lines repeated: reading never panics, and what it finds is
    /// well formed.
    #[test]
    fn mutated_real_bounces_never_panic_and_stay_well_formed(
        which in 0usize..10_000,
        cut in 0usize..100_000,
        at in 0usize..100_000,
        junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        repeat in 0usize..50,
    ) {
        let real = &REAL[which % REAL.len()];
        let mut m = real[..real.len().min(cut.max(1) * 20)].to_vec();
        let at = at % (m.len() + 1);
        m.splice(at..at, junk.iter().copied());
        if repeat > 0 && let Some(pos) = m.iter().skip(at).position(|&b| b == b'\n') {
            let line: Vec<u8> = m[at..at + pos + 1].to_vec();
            for _ in 0..repeat {
                m.splice(at..at, line.iter().copied());
            }
        }
        if let Ok(b) = parse_bounce(&m) {
            for r in &b.recipients {
                proptest::prop_assert!(!r.recipient.is_empty());
                proptest::prop_assert!(r.recipient.contains('@'));
                if let Some(s) = &r.status {
                    proptest::prop_assert!(!s.is_empty());
                }
            }
            proptest::prop_assert!(b.recipients.len() <= replyfix::explain::dsn::MAX_RECIPIENTS);
        }
    }
}

// ------------------------------------------------------------ replyfix's own rewrites

/// The bounce a real Postfix sent its user when it relayed through
/// replyfix (tests/postfix.rs makes it): the upstream's "configuration
/// error" 530 for `nobody@demo.test`, after `alice@demo.test` was accepted,
/// reached Postfix as replyfix's `550 5.1.1` with its annotation line.
/// Read back: the server said 530, rule
/// `config-error-after-accepted-recipient` remapped it, and why.
#[test]
fn a_real_postfix_bounce_through_replyfix_says_the_server_said_530_and_which_rule_remapped_it() {
    let (style, got) = reports("replyfix-egress-via-replyfix.eml");
    assert_eq!(style, "postfix");
    assert_eq!(got.len(), 1, "{got:#?}");
    let r = &got[0];
    assert_eq!(r.recipient.recipient, "nobody@demo.test");
    assert_eq!(r.recipient.context, CommandKind::Rcpt);
    assert_eq!(r.recipient.status.as_deref(), Some("5.1.1"));
    let e = r.explanation.as_ref().expect("a reply");
    let back = e
        .rewritten
        .as_ref()
        .expect("replyfix's annotation is read back");
    assert_eq!(back.server_code.map(|c| c.get()), Some(530));
    assert_eq!(
        back.rule.as_deref(),
        Some("config-error-after-accepted-recipient")
    );
    assert_eq!(back.action, Some(replyfix::rules::Action::Remap));
    assert!(e.remapped());
    // What the server sent, rebuilt: the sample upstream's own words.
    let server = back.server_reply.as_ref().expect("the server's reply");
    assert_eq!(
        String::from_utf8_lossy(server.raw()),
        format!("{}\r\n", replyfix::demo::upstream::CONFIG_ERROR_530)
    );
    // The bounce cannot say another recipient was accepted; the rule needs
    // it, so the proxy saw it.
    assert_eq!(back.seen.recipients_accepted, Some(1));
    assert!(
        back.why
            .as_deref()
            .is_some_and(|w| w.contains("after another recipient"))
    );
    assert_eq!(
        replyfix::explain::dsn::accurate_code(e.client_sees()),
        "550 5.1.1"
    );
    assert!(
        r.advice.meaning.contains("Another recipient"),
        "{:?}",
        r.advice
    );

    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bounces/replyfix-egress-via-replyfix.eml");
    let out = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .args(["explain", "--dsn"])
        .arg(&path)
        .output()
        .expect("run replyfix");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "rewritten:   by replyfix (its annotation line): the server said 530; rule 'config-error-after-accepted-recipient' remapped it to 550 5.1.1",
        "server said: 530 The message cannot be delivered due to a configuration error",
        "proxy saw:   1 recipient already accepted",
        "accurate:    550 5.1.1  (already rewritten by replyfix, rule 'config-error-after-accepted-recipient')",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    assert!(!text.contains("no rule matched"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .args(["explain", "--json", "--dsn"])
        .arg(&path)
        .output()
        .expect("run replyfix");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let j = &v["recipients"][0]["judgement"];
    assert_eq!(j["decision"], "rewritten_by_replyfix");
    assert_eq!(j["rule"], "config-error-after-accepted-recipient");
    assert_eq!(j["rewritten_by_replyfix"]["server_code"], 530);
    assert_eq!(j["rewritten_by_replyfix"]["remapped"], true);
}

/// The same message straight to the upstream: Postfix bounced the
/// upstream's 530 as it came, and explain reads it as the misused 530 it
/// is. The bounce names only the failed recipient, so the reply stays
/// ambiguous here (`554 5.0.0`); the log of the same run shows the accepted
/// recipient (tests/explain_log.rs).
#[test]
fn a_real_postfix_bounce_straight_from_the_upstream_is_a_misused_530() {
    check(
        "replyfix-egress-direct.eml",
        "postfix",
        &[(
            "nobody@demo.test",
            Some("127.0.0.1"),
            CommandKind::Rcpt,
            &format!("{}\r\n", replyfix::demo::upstream::CONFIG_ERROR_530),
            Some("config-error-ambiguous"),
            "554 5.0.0",
        )],
    );
    let (_, got) = reports("replyfix-egress-direct.eml");
    assert!(
        got[0]
            .explanation
            .as_ref()
            .is_some_and(|e| e.rewritten.is_none())
    );
    assert_eq!(got[0].recipient.status.as_deref(), Some("5.0.0"));
}

/// Both egress bounces summarised: two misused 530s, one of them already
/// remapped by replyfix.
#[test]
fn the_summary_counts_a_530_replyfix_already_remapped_as_misused() {
    use replyfix::explain::bounce::summary::BounceSummary;
    let rules = RuleSet::builtin();
    let mut s = BounceSummary::default();
    for name in [
        "replyfix-egress-direct.eml",
        "replyfix-egress-via-replyfix.eml",
    ] {
        let raw = fixture(name);
        let b = parse_bounce(&raw).expect("a message");
        let r = explain_bounce(&rules, &b, &SessionFacts::new(CommandKind::Other));
        s.add(name, raw.len() as u64, &b, &r);
    }
    assert_eq!(s.misused_530, 2);
    assert_eq!(s.rewritten_by_replyfix, 1);
    let listed: Vec<(&str, bool, &str)> = s
        .misused_listed
        .iter()
        .map(|m| (m.rule.as_str(), m.by_replyfix, m.accurate.as_str()))
        .collect();
    assert_eq!(
        listed,
        [
            ("config-error-ambiguous", false, "554 5.0.0"),
            ("config-error-after-accepted-recipient", true, "550 5.1.1"),
        ]
    );
    let text = s.display(5).to_string();
    assert!(
        text.contains("already rewritten by replyfix (its annotation line): 1"),
        "{text}"
    );
}

/// Every reply the built-in rules rewrite from real texts
/// (`common::postfix::builtin_rewrites`), in a Postfix bounce folded at a
/// seeded random width: one that carries replyfix's annotation line is
/// read back to the 530 the server said and to a rule that writes exactly
/// that reply from the server's (the one that did, or one writing the same
/// words), and its accurate code is the one replyfix sent; one without an
/// annotation (e.g. `550 5.1.1` from `user-unknown`) carries no marker and
/// is judged as any reply — the rules leave its accurate code alone.
#[test]
fn every_builtin_rewrite_in_a_folded_postfix_bounce_is_read_back_when_annotated() {
    use replyfix::explain::dsn::accurate_code;
    let rules = RuleSet::builtin();
    let rewrites = common::postfix::builtin_rewrites();
    let mut seed: u64 = 0x5eed_0f20_2600;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut annotated, mut plain) = (0, 0);
    let mut by_rule = std::collections::BTreeMap::<String, usize>::new();
    let mut per_rule = std::collections::HashMap::<&str, usize>::new();
    for (i, w) in rewrites.iter().enumerate() {
        // The first rewrites of each rule, then a seeded sample.
        let seen = per_rule.entry(w.rule.as_str()).or_default();
        *seen += 1;
        if *seen > 24 && next() % 16 != 0 {
            continue;
        }
        let width = 40 + (next() % 60) as usize;
        let raw = common::postfix::postfix_bounce(
            &format!("r{i}@example.org"),
            &w.sent,
            w.command,
            width,
        );
        let b = parse_bounce(&raw).expect("a message");
        let r = explain_bounce(&rules, &b, &SessionFacts::new(CommandKind::Other));
        assert_eq!(r.len(), 1, "{}", String::from_utf8_lossy(&raw));
        let e = r[0].explanation.as_ref().expect("a reply");
        let case = format!(
            "rule {} at {}: {:?} (width {width})",
            w.rule, w.command, e.original
        );
        assert_eq!(e.context, w.command, "{case}");
        assert_eq!(
            accurate_code(e.client_sees()),
            accurate_code(&w.sent),
            "{case}"
        );
        if !w.annotated() {
            plain += 1;
            assert!(e.rewritten.is_none(), "{case}");
            continue;
        }
        annotated += 1;
        let back = e
            .rewritten
            .as_ref()
            .unwrap_or_else(|| panic!("not read back: {case}"));
        assert_eq!(back.server_code.map(|c| c.get()), Some(530), "{case}");
        let found = back
            .rule
            .as_deref()
            .unwrap_or_else(|| panic!("no rule: {case}"));
        *by_rule.entry(found.to_string()).or_default() += 1;
        if found != w.rule {
            // Another rule writing the very same reply from what the server
            // said, in the session the replay found.
            let mut facts = SessionFacts::new(back.seen.command.unwrap_or(w.command));
            facts.recipients_accepted = back.seen.recipients_accepted.unwrap_or(0);
            facts.authenticated = back.seen.authenticated.unwrap_or(false);
            let server = back.server_reply.as_ref().expect("the server's reply");
            let again = rules.judge(server, &facts);
            assert_eq!(again.rule(), Some(found), "{case}");
            assert_eq!(
                common::postfix::collapsed(again.reply(server)),
                common::postfix::collapsed(&w.sent),
                "{case}: {found} writes another reply"
            );
        }
        assert!(
            !r[0].advice.meaning.starts_with("A 530 that no rule"),
            "{case}"
        );
    }
    eprintln!(
        "{annotated} annotated rewrites read back, {plain} plain ones left alone; by rule: {by_rule:?}"
    );
    assert!(
        annotated >= 100 && plain >= 200,
        "{annotated} annotated, {plain} plain"
    );
    assert!(by_rule.len() >= 7, "{by_rule:?}");
}
