//! `replyfix explain --dsn` on the bounce fixtures (`tests/fixtures/bounces/`):
//! the recipients, replies, contexts and verdicts each bounce must give.

use std::path::Path;
use std::process::Command;

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
