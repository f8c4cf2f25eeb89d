//! `replyfix explain --log` on the log fixtures (`tests/fixtures/logs/`), and
//! a 50 MB generated stream that must be summarised with bounded maps.

mod common;

use std::io::{self, BufReader, Read};
use std::path::Path;
use std::process::Command;

use replyfix::explain::maillog::{
    HOST_CAPACITY, LogFinding, LogSource, LogSummary, MAX_ACCURATE_KEYS, summarise,
};
use replyfix::rules::{RuleSet, SessionFacts};
use replyfix::smtp::CommandKind;

fn fixture_path(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/logs")
        .join(name)
}

/// (line, source, host, context, original code, rule, accurate)
type Seen = (
    u64,
    LogSource,
    Option<String>,
    CommandKind,
    u16,
    Option<String>,
    String,
);

fn run(name: &str) -> (LogSummary, Vec<Seen>) {
    let file = std::fs::File::open(fixture_path(name)).expect("fixture");
    let rules = RuleSet::builtin();
    let mut seen = Vec::new();
    let s = summarise(
        BufReader::new(file),
        &rules,
        &SessionFacts::new(CommandKind::Other),
        |line, f, e| {
            seen.push((
                line,
                f.source,
                f.host.clone(),
                f.context,
                f.reply.code().get(),
                e.verdict.rule().map(str::to_string),
                replyfix::explain::dsn::accurate_code(e.client_sees()),
            ))
        },
        |_, _| {},
    )
    .expect("read");
    (s, seen)
}

fn seen(
    line: u64,
    source: LogSource,
    host: &str,
    ctx: CommandKind,
    code: u16,
    rule: Option<&str>,
    accurate: &str,
) -> Seen {
    (
        line,
        source,
        Some(host.to_string()),
        ctx,
        code,
        rule.map(str::to_string),
        accurate.to_string(),
    )
}

#[test]
fn postfix_log_replies_contexts_and_verdicts() {
    let (s, got) = run("postfix.log");
    use CommandKind::*;
    use LogSource::Postfix as P;
    assert_eq!(
        got,
        vec![
            seen(
                5,
                P,
                "mx.example.org",
                Rcpt,
                530,
                // cy@example.org of the same delivery was accepted (line 4).
                Some("config-error-after-accepted-recipient"),
                "550 5.1.1"
            ),
            seen(
                6,
                P,
                "mx.example.org",
                DataEnd,
                530,
                Some("content-rejected"),
                "550 5.7.1"
            ),
            seen(
                8,
                P,
                "mail.example.net",
                Greeting,
                530,
                Some("blocked-sending-host"),
                "554 5.7.1"
            ),
            seen(
                9,
                P,
                "mail2.example.net",
                Mail,
                530,
                Some("auth-required"),
                "530 5.7.0"
            ),
            seen(10, P, "mx.example.com", Rcpt, 450, None, "450 4.7.1"),
            seen(
                11,
                P,
                "mx.example.org",
                Rcpt,
                530,
                Some("user-unknown"),
                "550 5.1.1"
            ),
        ]
    );
    assert_eq!(s.lines, 12);
    assert_eq!(s.replies, 6);
    assert_eq!(s.changed, 5);
    assert_eq!(s.misused_530, 4);
    assert_eq!(s.by_original_code.get(&530), Some(&5));
    assert_eq!(s.by_original_code.get(&450), Some(&1));
    assert_eq!(s.by_rule.get("(no rule)"), Some(&1));
    assert_eq!(s.by_accurate_code.get("554 5.7.1"), Some(&1));
    let top = s.misused_530_hosts.top(10);
    assert_eq!(top[0].key, "mx.example.org");
    assert_eq!(top[0].count, 3);
    assert_eq!(top[1].key, "mail.example.net");
    assert_eq!(
        top.len(),
        2,
        "the legitimate auth-required 530 is not a misuse"
    );
}

#[test]
fn exim_log_replies_contexts_and_verdicts() {
    let (s, got) = run("exim.log");
    use CommandKind::*;
    use LogSource::Exim as E;
    assert_eq!(
        got,
        vec![
            seen(
                2,
                E,
                "mx2.example.com",
                Rcpt,
                530,
                Some("user-unknown"),
                "550 5.1.1"
            ),
            seen(
                3,
                E,
                "mx2.example.com",
                DataEnd,
                530,
                Some("spf-failed"),
                "550 5.7.23"
            ),
            seen(
                5,
                E,
                "mx.example.net",
                Mail,
                530,
                Some("sender-rejected"),
                "550 5.7.1"
            ),
            seen(
                6,
                E,
                "mx.example.net",
                Greeting,
                530,
                Some("blocked-sending-host"),
                "554 5.7.1"
            ),
        ]
    );
    assert_eq!(s.misused_530, 4);
    assert_eq!(s.by_context.get("greeting"), Some(&1));
}

#[test]
fn sendmail_log_reads_stat_and_reply_fields() {
    let (s, got) = run("sendmail.log");
    use CommandKind::*;
    use LogSource::Sendmail as S;
    assert_eq!(
        got,
        vec![
            seen(
                2,
                S,
                "mx3.example.org",
                Other,
                530,
                Some("relay-denied"),
                "554 5.7.1"
            ),
            seen(
                3,
                S,
                "mx3.example.org",
                Other,
                530,
                Some("mailbox-full"),
                "552 5.2.2"
            ),
        ]
    );
    assert_eq!(s.by_source.get("sendmail"), Some(&2));
}

#[test]
fn cli_log_json_ends_with_a_summary_object() {
    let out = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .args(["explain", "--json", "--log"])
        .arg(fixture_path("postfix.log"))
        .output()
        .expect("run replyfix");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0]["type"], "reply");
    assert_eq!(lines[0]["line"], 5);
    assert_eq!(lines[0]["host"], "mx.example.org");
    assert_eq!(lines[0]["recipient"], "ann@example.org");
    assert_eq!(lines[0]["context"], "rcpt");
    assert_eq!(lines[0]["accurate"], "550 5.1.1");
    assert_eq!(lines[0]["recipients_accepted"], 1);
    assert_eq!(lines[0]["message"], "4Fq2Xk1Jz");
    let s = &lines[6];
    assert_eq!(s["type"], "summary");
    assert_eq!(s["replies"], 6);
    assert_eq!(s["misused_530"], 4);
    assert_eq!(s["by_original_code"]["530"], 5);
    assert_eq!(s["by_rule"]["user-unknown"], 1);
    assert_eq!(s["by_accurate_code"]["550 5.1.1"], 2);
    assert_eq!(s["top_misused_530_hosts"][0]["host"], "mx.example.org");
    assert_eq!(s["top_misused_530_hosts"][0]["count"], 3);
}

#[test]
fn cli_log_summary_only_prints_the_tables() {
    let out = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .args(["explain", "--summary-only", "--log"])
        .arg(fixture_path("exim.log"))
        .output()
        .expect("run replyfix");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("summary: 6 lines, 4 remote replies"),
        "{text}"
    );
    assert!(text.contains("by accurate code:"), "{text}");
    assert!(
        text.contains("top remote hosts sending misused 530s:"),
        "{text}"
    );
    assert!(!text.contains("line 2:"), "{text}");
}

/// A synthetic Postfix log of `target` bytes, produced on the fly: every
/// fourth line a misused 530 from one of 5000 hosts, one host in ten
/// thousand lines from a heavy hitter, the rest noise and varied codes.
struct Generated {
    target: u64,
    produced: u64,
    n: u64,
    line: Vec<u8>,
    at: usize,
}

impl Generated {
    fn new(target: u64) -> Self {
        Generated {
            target,
            produced: 0,
            n: 0,
            line: Vec::new(),
            at: 0,
        }
    }

    fn next_line(&mut self) {
        let n = self.n;
        self.n += 1;
        self.line.clear();
        let text = match n % 4 {
            0 => format!(
                "Mar  3 10:00:01 mx1 postfix/smtp[2211]: Q{n:X}: to=<u{n}@example.org>, relay=mx{h}.example.org[192.0.2.1]:25, delay=1, dsn=5.7.1, status=bounced (host mx{h}.example.org[192.0.2.1] said: 530 5.7.1 The message cannot be delivered due to a configuration error on the server. (in reply to RCPT TO command))\n",
                h = if n.is_multiple_of(3) { 0 } else { n % 5000 }
            ),
            1 => format!(
                "Mar  3 10:00:01 mx1 postfix/smtp[2211]: Q{n:X}: to=<u{n}@example.org>, relay=mx.example.com[192.0.2.2]:25, delay=1, dsn=5.1.1, status=bounced (host mx.example.com[192.0.2.2] said: 550 5.{d}.{e} No such user (in reply to RCPT TO command))\n",
                d = n % 8,
                e = n % 997
            ),
            2 => format!("Mar  3 10:00:01 mx1 postfix/qmgr[1100]: Q{n:X}: removed\n"),
            _ => format!(
                "Mar  3 10:00:01 mx1 postfix/smtp[2211]: Q{n:X}: to=<u{n}@example.org>, relay=mx.example.net[192.0.2.3]:25, delay=1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as X{n})\n"
            ),
        };
        self.line.extend_from_slice(text.as_bytes());
        self.at = 0;
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at >= self.line.len() {
            if self.produced >= self.target {
                return Ok(0);
            }
            self.next_line();
        }
        let n = buf.len().min(self.line.len() - self.at);
        buf[..n].copy_from_slice(&self.line[self.at..self.at + n]);
        self.at += n;
        self.produced += n as u64;
        Ok(n)
    }
}

#[test]
fn fifty_megabytes_stream_through_with_bounded_maps() {
    let rules = RuleSet::builtin();
    let stream = Generated::new(50 * 1024 * 1024);
    let mut progress_calls = 0;
    let s = summarise(
        BufReader::with_capacity(64 * 1024, stream),
        &rules,
        &SessionFacts::new(CommandKind::Other),
        |_, _, _| {},
        |_, _| progress_calls += 1,
    )
    .expect("read");
    assert!(s.bytes >= 50 * 1024 * 1024);
    let per_kind = s.lines / 4;
    assert!(per_kind > 50_000, "{} lines", s.lines);
    // Lines of kinds 0 and 1 carry a remote reply.
    assert_eq!(s.replies, s.by_original_code.values().sum::<u64>());
    let misused = *s.by_original_code.get(&530).expect("530s");
    assert_eq!(misused, s.misused_530);
    assert!(s.by_original_code.contains_key(&550));
    // `status=sent (250 ...)` quotes no remote server: not a reply found.
    assert!(!s.by_original_code.contains_key(&250));
    assert!(s.replies.abs_diff(s.lines / 2) <= 1);
    // Bounded maps: 5000 hosts, about 2000 enhanced codes, whatever the stream.
    assert!(s.misused_530_hosts.tracked() <= HOST_CAPACITY);
    assert!(s.by_accurate_code.len() <= MAX_ACCURATE_KEYS + 1);
    assert!(s.by_accurate_code.contains_key("other"));
    // The heavy hitter (a third of the 530s) is on top and exact enough.
    let top = s.misused_530_hosts.top(1);
    assert_eq!(top[0].key, "mx0.example.org");
    assert!(top[0].count >= misused / 3);
    assert!(progress_calls >= 6, "progress every 8 MiB");
}

// ------------------------------------------------------------ a real sending Postfix

/// Every reply `summarise` judges in a log fixture, with its finding and
/// explanation, and the summary.
fn judged(
    name: &str,
) -> (
    LogSummary,
    Vec<(u64, LogFinding, replyfix::explain::Explanation)>,
) {
    let file = std::fs::File::open(fixture_path(name)).expect("fixture");
    let mut all = Vec::new();
    let s = summarise(
        BufReader::new(file),
        &RuleSet::builtin(),
        &SessionFacts::new(CommandKind::Other),
        |n, f, e| all.push((n, f.clone(), e.clone())),
        |_, _| {},
    )
    .expect("read");
    (s, all)
}

/// The log of a real Postfix relaying through replyfix (tests/postfix.rs
/// makes it): the upstream's "configuration error" 530 for
/// `nobody@demo.test` reached Postfix as replyfix's `550 5.1.1` with its
/// annotation, and the same delivery shows `alice@demo.test` sent. explain
/// reads the annotation back (the server said 530, rule
/// `config-error-after-accepted-recipient`), judges with the accepted
/// recipient, and says both.
#[test]
fn a_real_postfix_log_through_replyfix_reads_back_the_530_and_uses_the_accepted_recipient() {
    let (s, got) = judged("postfix-egress-via-replyfix.log");
    assert_eq!(got.len(), 1, "{got:#?}");
    let (line, f, e) = &got[0];
    assert_eq!(f.recipient.as_deref(), Some("nobody@demo.test"));
    assert_eq!(f.context, CommandKind::Rcpt);
    assert_eq!(
        f.recipients_accepted, 1,
        "alice@demo.test of the same delivery"
    );
    assert_eq!(f.reply.code().get(), 550);
    let back = e
        .rewritten
        .as_ref()
        .expect("replyfix's annotation read back");
    assert_eq!(back.server_code.map(|c| c.get()), Some(530));
    assert_eq!(
        back.rule.as_deref(),
        Some("config-error-after-accepted-recipient")
    );
    // The log told the accepted recipient: the replay needed nothing more.
    assert_eq!(back.seen.recipients_accepted, None);
    assert_eq!(
        replyfix::explain::dsn::accurate_code(e.client_sees()),
        "550 5.1.1"
    );
    let shown = replyfix::explain::maillog::finding_line(*line, f, e);
    assert!(
        shown.ends_with("-> 550 5.1.1 (rewritten by replyfix from 530, rule 'config-error-after-accepted-recipient', 1 other recipient of the same delivery was accepted)"),
        "{shown}"
    );
    assert_eq!(s.replies, 1);
    assert_eq!(s.changed, 0, "the rules are not applied a second time");
    assert_eq!(s.rewritten_by_replyfix, 1);
    assert_eq!(s.misused_530, 1);
    assert_eq!(s.by_original_code.get(&530), Some(&1));
    assert_eq!(
        s.by_rule.get("config-error-after-accepted-recipient"),
        Some(&1)
    );
    assert_eq!(s.misused_530_hosts.top(1)[0].key, "127.0.0.1");

    let out = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .args(["explain", "--log"])
        .arg(fixture_path("postfix-egress-via-replyfix.log"))
        .output()
        .expect("run replyfix");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&shown), "{text}");
    assert!(
        text.contains("1 of the replies replyfix had already rewritten"),
        "{text}"
    );
}

/// The same message straight to the upstream: the log shows the misused
/// 530 itself, and the accepted recipient of the same delivery makes it
/// `550 5.1.1` (without that line it stays the ambiguous `554 5.0.0`).
#[test]
fn a_real_postfix_log_straight_from_the_upstream_judges_the_530_with_the_accepted_recipient() {
    let (s, got) = judged("postfix-egress-direct.log");
    assert_eq!(got.len(), 1, "{got:#?}");
    let (line, f, e) = &got[0];
    assert_eq!(f.recipient.as_deref(), Some("nobody@demo.test"));
    assert_eq!(f.reply.code().get(), 530);
    assert_eq!(f.recipients_accepted, 1);
    assert!(e.rewritten.is_none());
    assert_eq!(
        e.verdict.rule(),
        Some("config-error-after-accepted-recipient")
    );
    let shown = replyfix::explain::maillog::finding_line(*line, f, e);
    assert!(
        shown.ends_with("-> 550 5.1.1 (rule 'config-error-after-accepted-recipient', 1 other recipient of the same delivery was accepted)"),
        "{shown}"
    );
    assert_eq!(
        (s.misused_530, s.changed, s.rewritten_by_replyfix),
        (1, 1, 0)
    );

    let log = std::fs::read_to_string(fixture_path("postfix-egress-direct.log")).expect("fixture");
    let without: String = log
        .lines()
        .filter(|l| !l.contains("to=<alice@demo.test>"))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut rules = Vec::new();
    summarise(
        without.as_bytes(),
        &RuleSet::builtin(),
        &SessionFacts::new(CommandKind::Other),
        |_, _, e| {
            rules.push((
                e.verdict.rule().map(str::to_string),
                replyfix::explain::dsn::accurate_code(e.client_sees()),
            ))
        },
        |_, _| {},
    )
    .expect("read");
    assert_eq!(
        rules,
        [(
            Some("config-error-ambiguous".to_string()),
            "554 5.0.0".to_string()
        )]
    );
}

/// Every reply the built-in rules rewrite from real texts
/// (`common::postfix::builtin_rewrites`), as a sending Postfix logs it,
/// each in its own delivery with an accepted recipient logged before or
/// after it (seeded) when the proxy had one: an annotated one is read back
/// to the server's 530 and to a rule writing that very reply, with the
/// accepted count from the log; every one keeps the accurate code replyfix
/// sent.
#[test]
fn every_builtin_rewrite_in_a_postfix_log_is_read_back_when_annotated() {
    use replyfix::explain::dsn::accurate_code;
    let rewrites = common::postfix::builtin_rewrites();
    let mut seed: u64 = 0x109f_2026;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut log = String::new();
    let mut cases = Vec::new();
    for (i, w) in rewrites.iter().enumerate() {
        if !w.annotated() && next() % 4 != 0 {
            continue;
        }
        let id = format!("Q{i:06X}");
        let bounced = common::postfix::postfix_bounced_line(
            &id,
            &format!("r{i}@example.org"),
            &w.sent,
            w.command,
        );
        let sent = common::postfix::postfix_sent_line(&id, &format!("ok{i}@example.org"));
        match (w.recipients_accepted, next() % 2) {
            (0, _) => log.push_str(&format!("{bounced}\n")),
            (_, 0) => log.push_str(&format!("{sent}\n{bounced}\n")),
            _ => log.push_str(&format!("{bounced}\n{sent}\n")),
        }
        log.push_str(&format!(
            "Dec 06 08:36:54 postfix postfix/qmgr[4228]: {id}: removed\n"
        ));
        cases.push(w);
    }
    let rules = RuleSet::builtin();
    let mut got = Vec::new();
    let s = summarise(
        log.as_bytes(),
        &rules,
        &SessionFacts::new(CommandKind::Other),
        |_, f, e| got.push((f.clone(), e.clone())),
        |_, _| {},
    )
    .expect("read");
    assert_eq!(got.len(), cases.len());
    let mut annotated = 0;
    for (w, (f, e)) in cases.iter().zip(&got) {
        let case = format!(
            "rule {} at {}: {}",
            w.rule,
            w.command,
            common::postfix::postfix_quoted(&w.sent)
        );
        assert_eq!(f.context, w.command, "{case}");
        assert_eq!(
            accurate_code(e.client_sees()),
            accurate_code(&w.sent),
            "{case}"
        );
        if w.command == CommandKind::Rcpt {
            assert_eq!(f.recipients_accepted, w.recipients_accepted, "{case}");
        }
        let Some(back) = &e.rewritten else {
            assert!(!w.annotated(), "not read back: {case}");
            continue;
        };
        annotated += 1;
        assert_eq!(back.server_code.map(|c| c.get()), Some(530), "{case}");
        let found = back
            .rule
            .as_deref()
            .unwrap_or_else(|| panic!("no rule: {case}"));
        let server = back.server_reply.as_ref().expect("the server's reply");
        let mut facts = SessionFacts::new(back.seen.command.unwrap_or(f.context));
        facts.recipients_accepted = back
            .seen
            .recipients_accepted
            .unwrap_or(f.recipients_accepted);
        facts.authenticated = back.seen.authenticated.unwrap_or(false);
        let again = rules.judge(server, &facts);
        assert_eq!(again.rule(), Some(found), "{case}");
        assert_eq!(
            common::postfix::collapsed(again.reply(server)),
            common::postfix::collapsed(&w.sent),
            "{case}"
        );
    }
    assert!(annotated >= 100, "{annotated}");
    assert_eq!(s.rewritten_by_replyfix, annotated as u64);
}
