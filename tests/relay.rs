//! Integration tests of the relay: the real `replyfix serve` binary between a
//! raw test client and a scripted fake upstream (tests/common). Test names
//! say the behaviour; comments cite the docs/protocol.md id it comes from.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{
    DataEnd, FAKE_GREETING, FakeUpstream, PROXY_HOSTNAME, Replyfix, ServeOptions, SmtpClient, Step,
    assert_codes, closed_port_addr, dot_stuff, escaped, explained, field, sha256_hex, test_message,
};

const USER_UNKNOWN_530: &str = "530 5.7.1 <nobody@example.net>: Recipient address rejected: User unknown in local recipient table";
const BLOCKLIST_530: &str = "530 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.7";
const CONFIG_ERROR_530: &str = "530 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.";
const STARTTLS_FIRST_530: &str = "530 5.7.0 Must issue a STARTTLS command first";
const AUTH_REQUIRED_530: &str = "530 5.7.0 Authentication required";

/// Greets, sends EHLO, returns the client and the EHLO reply.
fn ehlo(rf: &Replyfix) -> (SmtpClient, String) {
    let (mut c, greeting) = rf.connect_greeted();
    assert_eq!(greeting, format!("{FAKE_GREETING}\r\n"));
    let reply = c.cmd("EHLO client.example.test");
    assert!(reply.starts_with("250"), "EHLO reply {reply:?}");
    (c, reply)
}

/// Greets, EHLO, MAIL; returns the client ready for RCPT.
fn at_rcpt(rf: &Replyfix) -> SmtpClient {
    let (mut c, _) = ehlo(rf);
    assert_eq!(c.cmd("MAIL FROM:<sender@example.test>"), "250 2.1.0 Ok\r\n");
    c
}

/// A fake upstream that answers RCPT TO:<nobody@...> with `reply` and other
/// RCPTs with the default 250.
fn upstream_rejecting_nobody(reply: &'static str) -> FakeUpstream {
    FakeUpstream::with_script(move |cmd| {
        if cmd.starts_with("RCPT TO:<nobody@") {
            Step::reply(reply)
        } else {
            Step::Default
        }
    })
}

// ------------------------------------------------------------ defaults

#[test]
fn quick_start_flags_and_a_config_file_give_the_same_proxy() {
    // One set of defaults: `serve --listen --upstream` and a configuration
    // file that names only a listener and an upstream hold the same upstream
    // conversation (no probe EHLO of replyfix's own: upstream TLS `none`)
    // and report the same policy.
    let mut seen = Vec::new();
    for opts in [ServeOptions::default(), ServeOptions::default().config()] {
        let up = FakeUpstream::start();
        let rf = Replyfix::start(up.addr, opts);
        let listening = rf.wait_for_record("listening");
        let (mut c, _) = ehlo(&rf);
        assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
        let rec = up.wait_until("QUIT", |r| r.commands().last().is_some_and(|l| l == "QUIT"));
        seen.push((field(&listening, "upstream_tls"), rec.commands()));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0].0.as_deref(), Some("none"));
    assert_eq!(seen[0].1, ["EHLO client.example.test", "QUIT"]);
}

// ------------------------------------------------------------ pass-through

#[test]
fn untouched_commands_and_replies_pass_through_byte_exact() {
    // docs/architecture.md invariant 1.
    let up = FakeUpstream::with_script(|cmd| match cmd {
        c if c.starts_with("VRFY") => Step::reply("252-2.0.0 first line\r\n252 2.0.0 Cannot VRFY"),
        _ => Step::Default,
    });
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = ehlo(&rf);
    assert_eq!(
        c.cmd("mail FROM:<Sender@Example.TEST>  SIZE=1234 BODY=8BITMIME"),
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(c.cmd("rcpt to:<a@example.net>"), "250 2.1.5 Ok\r\n");
    assert_eq!(
        c.cmd("VRFY someone"),
        "252-2.0.0 first line\r\n252 2.0.0 Cannot VRFY\r\n"
    );
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok\r\n");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok\r\n");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    c.expect_closed();
    let rec = up.wait_until("QUIT", |r| r.commands().iter().any(|c| c == "QUIT"));
    assert_eq!(
        rec.commands(),
        [
            "EHLO client.example.test",
            "mail FROM:<Sender@Example.TEST>  SIZE=1234 BODY=8BITMIME",
            "rcpt to:<a@example.net>",
            "VRFY someone",
            "NOOP",
            "RSET",
            "QUIT"
        ]
    );
}

#[test]
fn ehlo_reply_drops_starttls_requiretls_xclient_and_xforward() {
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let (_c, reply) = ehlo(&rf);
    let lines: Vec<&str> = reply.split_terminator("\r\n").collect();
    let caps: Vec<&str> = lines.iter().map(|l| &l[4..]).collect();
    for dropped in ["STARTTLS", "REQUIRETLS", "XCLIENT", "XFORWARD"] {
        assert!(
            !caps.iter().any(|c| c.split(' ').next() == Some(dropped)),
            "{dropped} still advertised: {reply:?}"
        );
    }
    for kept in [
        "fake.test",
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "SIZE 52428800",
        "ENHANCEDSTATUSCODES",
        "AUTH PLAIN LOGIN",
        "DSN",
    ] {
        assert!(caps.contains(&kept), "{kept} missing from {reply:?}");
    }
    // Well-formed multi-line reply: 250- on every line but the last.
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { "250 " } else { "250-" };
        assert!(l.starts_with(sep), "line {i} of {reply:?}");
    }
}

#[test]
fn client_starttls_without_tls_configured_is_answered_454_and_not_forwarded() {
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = ehlo(&rf);
    assert_eq!(c.cmd("STARTTLS"), "454 4.7.0 TLS not available\r\n");
    // The session goes on in plaintext.
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok\r\n");
    let rec = up.wait_until("NOOP", |r| r.commands().iter().any(|c| c == "NOOP"));
    assert!(
        !rec.commands()
            .iter()
            .any(|c| c.eq_ignore_ascii_case("STARTTLS"))
    );
}

// ------------------------------------------------------------ built-in 530 rules

#[test]
fn misused_530_user_unknown_at_rcpt_is_remapped_to_550_511() {
    let up = upstream_rejecting_nobody(USER_UNKNOWN_530);
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    let reply = c.cmd("RCPT TO:<nobody@example.net>");
    // Code and enhanced code change, the server's text stays.
    assert_eq!(
        reply,
        "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in local recipient table\r\n"
    );
    assert_eq!(reply, explained("rcpt", 0, USER_UNKNOWN_530).0);
    // The session stays usable and in step.
    assert_eq!(c.cmd("RCPT TO:<real@example.net>"), "250 2.1.5 Ok\r\n");
}

#[test]
fn misused_530_blocklist_at_rcpt_is_remapped_to_554_571() {
    let up = upstream_rejecting_nobody(BLOCKLIST_530);
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    let reply = c.cmd("RCPT TO:<nobody@example.net>");
    assert_codes(&reply, "554", "5.7.1");
    assert_eq!(reply, BLOCKLIST_530.replacen("530", "554", 1) + "\r\n");
    assert_eq!(reply, explained("rcpt", 0, BLOCKLIST_530).0);
}

#[test]
fn misused_530_blocklist_at_mail_is_remapped_to_554_571() {
    let up = FakeUpstream::with_script(|cmd| {
        if cmd.starts_with("MAIL") {
            Step::reply(BLOCKLIST_530)
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = ehlo(&rf);
    let reply = c.cmd("MAIL FROM:<sender@example.test>");
    assert_codes(&reply, "554", "5.7.1");
    assert_eq!(reply, explained("mail", 0, BLOCKLIST_530).0);
}

#[test]
fn ambiguous_configuration_error_530_at_first_rcpt_becomes_554_with_annotation() {
    let up = upstream_rejecting_nobody(CONFIG_ERROR_530);
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    let reply = c.cmd("RCPT TO:<nobody@example.net>");
    let lines: Vec<&str> = reply.split_terminator("\r\n").collect();
    assert_eq!(
        lines.len(),
        2,
        "the original line plus one annotation: {reply:?}"
    );
    assert_eq!(
        lines[0],
        format!("554-5.0.0 {}", &CONFIG_ERROR_530[4..]),
        "original text kept"
    );
    assert!(lines[1].starts_with("554 5.0.0 replyfix: "), "{reply:?}");
    assert_eq!(reply, explained("rcpt", 0, CONFIG_ERROR_530).0);
}

#[test]
fn ambiguous_configuration_error_530_after_an_accepted_rcpt_becomes_550_511() {
    let up = upstream_rejecting_nobody(CONFIG_ERROR_530);
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<real@example.net>"), "250 2.1.5 Ok\r\n");
    let reply = c.cmd("RCPT TO:<nobody@example.net>");
    assert_codes(&reply, "550", "5.1.1");
    assert!(
        reply.starts_with(&format!("550-5.1.1 {}\r\n", &CONFIG_ERROR_530[4..])),
        "{reply:?}"
    );
    assert_eq!(reply, explained("rcpt", 1, CONFIG_ERROR_530).0);
}

#[test]
fn accepted_rcpt_count_resets_with_a_new_transaction() {
    // "recipients accepted" is per transaction: after RSET the ambiguous
    // 530 is again judged as a first RCPT (554), not 550 5.1.1.
    let up = upstream_rejecting_nobody(CONFIG_ERROR_530);
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<real@example.net>"), "250 2.1.5 Ok\r\n");
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok\r\n");
    assert_eq!(c.cmd("MAIL FROM:<sender@example.test>"), "250 2.1.0 Ok\r\n");
    let reply = c.cmd("RCPT TO:<nobody@example.net>");
    assert_codes(&reply, "554", "5.0.0");
    assert_eq!(reply, explained("rcpt", 0, CONFIG_ERROR_530).0);
}

/// A legitimate 530 at MAIL keeps its code, enhanced code and text; at
/// most a hint line is added (T5).
fn legitimate_530_is_kept(original: &'static str) {
    let up = FakeUpstream::with_script(move |cmd| {
        if cmd.starts_with("MAIL") {
            Step::reply(original)
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = ehlo(&rf);
    let reply = c.cmd("MAIL FROM:<sender@example.test>");
    assert_codes(&reply, "530", "5.7.0");
    let first = &original[4..];
    assert!(
        reply == format!("530 {first}\r\n") || reply.starts_with(&format!("530-{first}\r\n")),
        "{reply:?}"
    );
    assert!(reply.lines().count() <= 2, "{reply:?}");
    let (expected, rule) = explained("mail", 0, original);
    assert_eq!(reply, expected);
    // An added hint is a rewrite and is logged as one; a reply left as it
    // was is not.
    let records = rf.records_with_message("reply rewritten");
    if reply == format!("{original}\r\n") {
        assert!(records.is_empty(), "{records:?}");
    } else {
        let rec = rf.wait_for_record("reply rewritten");
        assert_eq!(field(&rec, "rule"), rule, "{rec}");
        assert_eq!(field(&rec, "new"), Some(escaped(&reply)), "{rec}");
    }
}

#[test]
fn upstream_tls_demand_over_a_plaintext_leg_is_the_operators_451_with_a_warning_and_a_metric() {
    // The client cannot fix the upstream's demand for TLS: replyfix runs
    // TLS on each leg itself. The client gets a temporary 451 4.7.0 saying
    // so; the operator a warning naming listener and upstream, once per
    // session, and a metric.
    let up = FakeUpstream::with_script(|cmd| {
        if cmd.starts_with("MAIL") || cmd.starts_with("RCPT") {
            Step::reply(STARTTLS_FIRST_530)
        } else {
            Step::Default
        }
    });
    let admin = format!("127.0.0.1:{}", common::free_port());
    let rf = Replyfix::start(up.addr, ServeOptions::default().args(&["--admin", &admin]));
    let (mut c, _) = ehlo(&rf);
    let reply = c.cmd("MAIL FROM:<sender@example.test>");
    assert_codes(&reply, "451", "4.7.0");
    assert!(
        reply.starts_with("451-4.7.0 Must issue a STARTTLS command first\r\n"),
        "{reply:?}"
    );
    assert!(
        reply.contains("the proxy's operator must enable upstream TLS"),
        "{reply:?}"
    );
    assert_eq!(reply, explained("mail", 0, STARTTLS_FIRST_530).0);
    assert_codes(&c.cmd("RCPT TO:<a@example.net>"), "451", "4.7.0");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    rf.wait_for_record("session closed");
    let warnings = rf.records_with_message(
        "the upstream demands TLS on replyfix's plaintext connection to it; clients cannot fix this: set this upstream's tls.policy to may or verify (docs/tls.md)",
    );
    assert_eq!(warnings.len(), 1, "once per session: {warnings:?}");
    assert_eq!(field(&warnings[0], "listener").as_deref(), Some("default"));
    assert_eq!(field(&warnings[0], "upstream").as_deref(), Some("default"));
    assert_eq!(field(&warnings[0], "tls_policy").as_deref(), Some("none"));
    let metrics = common::http_get(admin.parse().expect("address"), "/metrics").1;
    assert!(
        metrics.contains(
            "replyfix_upstream_tls_demanded_total{listener=\"default\",upstream=\"default\"} 1"
        ),
        "{metrics}"
    );
}

#[test]
fn legitimate_530_authentication_required_is_kept() {
    legitimate_530_is_kept(AUTH_REQUIRED_530);
}

#[test]
fn non_530_rejections_pass_through_unchanged() {
    let up =
        upstream_rejecting_nobody("550 5.1.1 <nobody@example.net>: Recipient address rejected");
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(
        c.cmd("RCPT TO:<nobody@example.net>"),
        "550 5.1.1 <nobody@example.net>: Recipient address rejected\r\n"
    );
}

#[test]
fn rewrite_is_logged_with_original_new_reply_and_rule_id() {
    // W5: one log record per rewrite, target replyfix::rewrite.
    let up = upstream_rejecting_nobody(USER_UNKNOWN_530);
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    let reply = c.cmd("RCPT TO:<nobody@example.net>");
    assert_codes(&reply, "550", "5.1.1");
    let rec = rf.wait_for_record("reply rewritten");
    assert_eq!(field(&rec, "target").as_deref(), Some("replyfix::rewrite"));
    assert_eq!(field(&rec, "context").as_deref(), Some("rcpt"), "{rec}");
    assert_eq!(field(&rec, "mode").as_deref(), Some("enforce"), "{rec}");
    assert_eq!(
        field(&rec, "original"),
        Some(escaped(&format!("{USER_UNKNOWN_530}\r\n"))),
        "{rec}"
    );
    assert_eq!(field(&rec, "new"), Some(escaped(&reply)), "{rec}");
    let rule = explained("rcpt", 0, USER_UNKNOWN_530).1;
    assert!(rule.is_some());
    assert_eq!(field(&rec, "rule"), rule, "{rec}");
    assert_eq!(
        rf.records_with_message("reply rewritten").len(),
        1,
        "one record per rewrite"
    );
}

#[test]
fn shadow_mode_sends_the_original_530_and_logs_the_would_be_rewrite() {
    let up = upstream_rejecting_nobody(USER_UNKNOWN_530);
    let rf = Replyfix::start(up.addr, ServeOptions::default().args(&["--shadow"]));
    let mut c = at_rcpt(&rf);
    assert_eq!(
        c.cmd("RCPT TO:<nobody@example.net>"),
        format!("{USER_UNKNOWN_530}\r\n")
    );
    let rec = rf.wait_for_record("reply would be rewritten (shadow mode)");
    assert_eq!(field(&rec, "target").as_deref(), Some("replyfix::rewrite"));
    assert_eq!(field(&rec, "mode").as_deref(), Some("shadow"), "{rec}");
    assert_eq!(
        field(&rec, "original"),
        Some(escaped(&format!("{USER_UNKNOWN_530}\r\n"))),
        "{rec}"
    );
    let (would_be, rule) = explained("rcpt", 0, USER_UNKNOWN_530);
    assert!(would_be.starts_with("550 5.1.1 "), "{would_be:?}");
    assert_eq!(field(&rec, "new"), Some(escaped(&would_be)), "{rec}");
    assert_eq!(field(&rec, "rule"), rule, "{rec}");
}

// ------------------------------------------------------------ pipelining (P1)

#[test]
fn pipelined_rcpt_replies_keep_order_and_pairing() {
    let up = FakeUpstream::with_script(|cmd| match cmd {
        "RCPT TO:<a@example.net>" => Step::reply("250 2.1.5 a is fine"),
        "RCPT TO:<nobody@example.net>" => Step::reply(USER_UNKNOWN_530),
        "RCPT TO:<c@example.net>" => Step::reply("250 2.1.5 c is fine"),
        "RCPT TO:<full@example.net>" => Step::reply("452 4.2.2 Mailbox full"),
        _ => Step::Default,
    });
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = ehlo(&rf);
    c.send(
        b"MAIL FROM:<s@example.test>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<nobody@example.net>\r\n\
RCPT TO:<c@example.net>\r\nRCPT TO:<full@example.net>\r\nNOOP\r\n",
    );
    assert_eq!(c.read_reply(), "250 2.1.0 Ok\r\n");
    assert_eq!(c.read_reply(), "250 2.1.5 a is fine\r\n");
    assert_eq!(c.read_reply(), explained("rcpt", 1, USER_UNKNOWN_530).0);
    assert_eq!(c.read_reply(), "250 2.1.5 c is fine\r\n");
    assert_eq!(c.read_reply(), "452 4.2.2 Mailbox full\r\n");
    assert_eq!(c.read_reply(), "250 2.0.0 Ok\r\n");
}

#[test]
fn pipelined_ambiguous_530_after_accepted_rcpt_is_judged_in_its_own_context() {
    // P1: the context comes from the pairing, so a pipelined first RCPT that
    // was accepted counts for the ambiguous 530 that follows it.
    let up = upstream_rejecting_nobody(CONFIG_ERROR_530);
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = ehlo(&rf);
    c.send(
        b"MAIL FROM:<s@example.test>\r\nRCPT TO:<nobody@example.net>\r\nRCPT TO:<a@example.net>\r\n\
RCPT TO:<nobody@example.net>\r\n",
    );
    assert_eq!(c.read_reply(), "250 2.1.0 Ok\r\n");
    let before = c.read_reply();
    assert_codes(&before, "554", "5.0.0");
    assert_eq!(before, explained("rcpt", 0, CONFIG_ERROR_530).0);
    assert_eq!(c.read_reply(), "250 2.1.5 Ok\r\n");
    let after = c.read_reply();
    assert_codes(&after, "550", "5.1.1");
    assert_eq!(after, explained("rcpt", 1, CONFIG_ERROR_530).0);
}

// ------------------------------------------------------------ message content (D)

#[test]
fn data_content_passes_byte_exact_and_only_crlf_dot_crlf_ends_it() {
    // D1: ".x", "..", ". " and ".\t" lines are not ends; dot-stuffing is kept.
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    assert!(c.cmd("DATA").starts_with("354 "));
    let body = b"Subject: d1\r\n\r\n.x\r\n..\r\n. \r\n.\t\r\n...\r\nend";
    c.send(body);
    c.send(b"\r\n");
    // Not yet an end of data: no reply may arrive.
    c.set_read_timeout(Duration::from_millis(400));
    assert!(c.try_read_reply().is_err(), "reply before the end of data");
    c.set_read_timeout(common::IO_TIMEOUT);
    c.send(b".\r\n");
    assert_eq!(c.read_reply(), "250 2.0.0 Ok: queued as FAKE\r\n");
    let rec = up.wait_until("message", |r| r.messages.len() == 1);
    let mut expected = body.to_vec();
    expected.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(rec.messages[0], expected);
}

#[test]
fn empty_message_first_line_dot_ends_data() {
    // D1: the stream counts as starting right after a CRLF.
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b".\r\n");
    assert_eq!(c.read_reply(), "250 2.0.0 Ok: queued as FAKE\r\n");
    let rec = up.wait_until("message", |r| r.messages.len() == 1);
    assert_eq!(rec.messages[0], b".\r\n");
}

#[test]
fn ten_megabyte_message_reaches_upstream_byte_exact_by_sha256() {
    // D6 + invariant 1: streamed, not altered.
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    assert!(c.cmd("DATA").starts_with("354 "));
    let wire = dot_stuff(&test_message(10 << 20, 7));
    c.send(&wire);
    assert_eq!(c.read_reply(), "250 2.0.0 Ok: queued as FAKE\r\n");
    let rec = up.wait_until("message", |r| r.messages.len() == 1);
    assert_eq!(rec.messages[0].len(), wire.len());
    assert_eq!(sha256_hex(&rec.messages[0]), sha256_hex(&wire));
}

#[test]
fn smtputf8_envelope_and_8bit_content_pass_byte_exact() {
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = ehlo(&rf);
    let mail = "MAIL FROM:<jörg@exämple.test> SMTPUTF8 BODY=8BITMIME";
    let rcpt = "RCPT TO:<用户@例子.测试>";
    assert_eq!(c.cmd(mail), "250 2.1.0 Ok\r\n");
    assert_eq!(c.cmd(rcpt), "250 2.1.5 Ok\r\n");
    assert!(c.cmd("DATA").starts_with("354 "));
    let wire = dot_stuff(&test_message(200_000, 3));
    c.send(&wire);
    assert_eq!(c.read_reply(), "250 2.0.0 Ok: queued as FAKE\r\n");
    let rec = up.wait_until("message", |r| r.messages.len() == 1);
    assert_eq!(rec.lines[1], format!("{mail}\r\n").into_bytes());
    assert_eq!(rec.lines[2], format!("{rcpt}\r\n").into_bytes());
    assert_eq!(sha256_hex(&rec.messages[0]), sha256_hex(&wire));
}

/// Sends content with one bad byte and checks D2's default `reject`.
fn bare_byte_is_rejected(content: &[u8]) {
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(content);
    // The client is read to its real end of data before the reply.
    c.send(b"more text\r\n.\r\n");
    assert_eq!(
        c.read_reply(),
        "550 5.5.2 Error: bare <CR>/<LF>/<NUL> in message content\r\n"
    );
    c.expect_closed();
    // The upstream got no end of data: its connection was closed mid-DATA,
    // and the bad byte never reached it.
    let rec = up.wait_until("upstream closed mid-DATA", |r| r.aborted_data.len() == 1);
    assert!(rec.messages.is_empty(), "upstream got an end of data");
    let data_at = rec
        .raw
        .windows(6)
        .position(|w| w == b"DATA\r\n")
        .expect("DATA reached the upstream");
    let forwarded = &rec.raw[data_at + 6..];
    assert!(
        !has_bare_byte(forwarded),
        "bad byte forwarded: {:?}",
        String::from_utf8_lossy(forwarded)
    );
}

/// A bare CR, bare LF or NUL (D2), ignoring a CR cut off at the very end.
fn has_bare_byte(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| match b {
        0 => true,
        b'\n' => i == 0 || bytes[i - 1] != b'\r',
        b'\r' => bytes.get(i + 1).is_some_and(|&n| n != b'\n'),
        _ => false,
    })
}

#[test]
fn bare_lf_in_content_is_rejected_550_552_without_end_of_data_upstream() {
    bare_byte_is_rejected(b"Subject: x\r\n\r\nline one\nline two\r\n");
}

#[test]
fn bare_cr_in_content_is_rejected_550_552_without_end_of_data_upstream() {
    bare_byte_is_rejected(b"Subject: x\r\n\r\nline one\rline two\r\n");
}

#[test]
fn nul_in_content_is_rejected_550_552_without_end_of_data_upstream() {
    bare_byte_is_rejected(b"Subject: x\r\n\r\nline\0one\r\n");
}

#[test]
fn smuggling_lf_dot_lf_is_not_an_end_and_nothing_after_it_is_smuggled() {
    // D1/D2, CVE-2023-51764: "\n.\r\n" followed by a second transaction
    // must not end the message, and the smuggled MAIL must never reach the
    // upstream as a command.
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(
        b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@example.test>\r\n\
RCPT TO:<victim@example.net>\r\nDATA\r\n\r\nsmuggled\r\n.\r\n",
    );
    assert_eq!(
        c.read_reply(),
        "550 5.5.2 Error: bare <CR>/<LF>/<NUL> in message content\r\n"
    );
    c.expect_closed();
    let rec = up.wait_until("upstream closed mid-DATA", |r| r.aborted_data.len() == 1);
    assert!(rec.messages.is_empty());
    assert!(
        !rec.commands().iter().any(|c| c.contains("evil@")),
        "{:?}",
        rec.commands()
    );
}

#[test]
fn no_end_of_data_variant_other_than_crlf_dot_crlf_ends_data_or_smuggles() {
    // D1/D2: LF.LF, CR.CR, LF.CRLF, CRLF.CR CRLF and CRLF NUL . CRLF are
    // never an end; each carries a bare byte, so the message is rejected and
    // what follows never reaches the upstream as a command.
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let variants: [&[u8]; 5] = [
        b"\n.\n",
        b"\r.\r",
        b"\n.\r\n",
        b"\r\n.\r\r\n",
        b"\r\n\0.\r\n",
    ];
    for (n, variant) in variants.iter().enumerate() {
        let mut c = at_rcpt(&rf);
        assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
        assert!(c.cmd("DATA").starts_with("354 "));
        let mut content = b"Subject: smuggle\r\n\r\nbefore".to_vec();
        content.extend_from_slice(variant);
        content.extend_from_slice(b"MAIL FROM:<evil@example.test>\r\nafter\r\n.\r\n");
        c.send(&content);
        assert_eq!(
            c.read_reply(),
            "550 5.5.2 Error: bare <CR>/<LF>/<NUL> in message content\r\n",
            "variant {variant:?}"
        );
        c.expect_closed();
        up.wait_until("upstream closed mid-DATA", |r| {
            r.aborted_data.len() == n + 1
        });
    }
    let rec = up.recorded();
    assert!(
        rec.messages.is_empty(),
        "an end of data reached the upstream"
    );
    assert!(
        !rec.commands().iter().any(|c| c.contains("evil@")),
        "{:?}",
        rec.commands()
    );
}

#[test]
fn sanitize_policy_replaces_bare_bytes_with_spaces() {
    // D2 `sanitize`: each bare CR, bare LF or NUL becomes a space; never a
    // CRLF.
    let up = FakeUpstream::start();
    let rf = Replyfix::start(
        up.addr,
        ServeOptions::default().yaml("bare_line_endings: sanitize"),
    );
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: s\r\n\r\na\nb\rc\0d\r\nx\n.\ny\r\n.\r\n");
    assert_eq!(c.read_reply(), "250 2.0.0 Ok: queued as FAKE\r\n");
    let rec = up.wait_until("message", |r| r.messages.len() == 1);
    assert_eq!(
        String::from_utf8_lossy(&rec.messages[0]),
        "Subject: s\r\n\r\na b c d\r\nx . y\r\n.\r\n"
    );
}

#[test]
fn content_sent_before_354_is_a_sync_error_554_550() {
    // D4: nothing after DATA is forwarded before the 354.
    let up = FakeUpstream::builder()
        .script(|cmd| {
            if cmd == "DATA" {
                std::thread::sleep(Duration::from_millis(300));
            }
            Step::Default
        })
        .start();
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    c.send(b"DATA\r\nSubject: early\r\n\r\nbody\r\n.\r\n");
    let all = c.read_to_close();
    assert!(
        all.ends_with("554 5.5.0 Error: SMTP protocol synchronization\r\n"),
        "{all:?}"
    );
    assert!(!all.contains("250 2.0.0 Ok: queued"), "{all:?}");
    let rec = up.recorded();
    assert!(rec.messages.is_empty(), "content reached the upstream");
    assert!(
        !rec.raw.windows(14).any(|w| w == b"Subject: early"),
        "early content was forwarded"
    );
}

/// D4: input sent before the upstream's answer to DATA is a
/// synchronisation error whatever that answer is; after a refusal it never
/// reaches the upstream as commands.
fn early_input_after_refused_data(refusal: &'static str) {
    let up = FakeUpstream::with_script(move |cmd| {
        if cmd == "DATA" {
            std::thread::sleep(Duration::from_millis(200));
            Step::reply(refusal)
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    c.send(
        b"DATA\r\nSubject: early\r\n\r\nRCPT TO:<victim@example.org>\r\nMAIL FROM:<x@y>\r\nRSET\r\n.\r\n",
    );
    let all = c.read_to_close();
    assert_eq!(
        all, "554 5.5.0 Error: SMTP protocol synchronization\r\n",
        "after {refusal:?}"
    );
    let rec = up.wait_until("QUIT", |r| r.commands().last().is_some_and(|l| l == "QUIT"));
    assert_eq!(
        rec.commands(),
        [
            "EHLO client.example.test",
            "MAIL FROM:<sender@example.test>",
            "RCPT TO:<a@example.net>",
            "DATA",
            "QUIT"
        ],
        "after {refusal:?}: nothing of the early input ran upstream"
    );
}

#[test]
fn input_before_a_554_to_data_never_becomes_commands_d4() {
    early_input_after_refused_data("554 5.5.1 Error: no valid recipients");
}

#[test]
fn input_before_a_503_to_data_never_becomes_commands_d4() {
    early_input_after_refused_data("503 5.5.1 Error: need RCPT command");
}

#[test]
fn input_before_a_451_to_data_never_becomes_commands_d4() {
    early_input_after_refused_data("451 4.3.0 Error: queue file write error");
}

#[test]
fn bdat_to_an_upstream_without_chunking_is_refused_and_its_octets_never_run_d4_d5() {
    // The upstream offers no CHUNKING: it would read the chunk as commands.
    let up = FakeUpstream::builder()
        .ehlo("250-fake.test\r\n250-PIPELINING\r\n250 8BITMIME")
        .start();
    let rf = Replyfix::serve(up.addr);
    let (mut c, reply) = ehlo(&rf);
    assert!(!reply.contains("CHUNKING"), "{reply}");
    assert_eq!(c.cmd("MAIL FROM:<s@example.test>"), "250 2.1.0 Ok\r\n");
    let payload = b"RCPT TO:<victim@example.org>\r\nRSET\r\n";
    c.send(format!("BDAT {} LAST\r\n", payload.len()).as_bytes());
    c.send(payload);
    assert_eq!(c.read_reply(), "502 5.5.1 Error: BDAT without CHUNKING\r\n");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok\r\n");
    let rec = up.wait_until("NOOP", |r| r.commands().last().is_some_and(|l| l == "NOOP"));
    assert_eq!(
        rec.commands(),
        [
            "EHLO client.example.test",
            "MAIL FROM:<s@example.test>",
            "NOOP"
        ]
    );
}

#[test]
fn bdat_chunks_pass_opaque_and_byte_exact() {
    // D5: exactly n octets, never parsed as lines (CRLF.CRLF and bare LF
    // inside a chunk are payload).
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    let chunk1: &[u8] = b"Subject: b\r\n\r\nline\r\n.\r\nbare\nlf\0nul\r\n";
    let chunk2: &[u8] = b"\xc3\xbc last chunk\r\n";
    c.send(format!("BDAT {}\r\n", chunk1.len()).as_bytes());
    c.send(chunk1);
    assert_eq!(
        c.read_reply(),
        format!("250 2.0.0 Ok: {} octets received\r\n", chunk1.len())
    );
    // Pipelined: header and payload of the last chunk, then NOOP.
    let mut last = format!("BDAT {} LAST\r\n", chunk2.len()).into_bytes();
    last.extend_from_slice(chunk2);
    last.extend_from_slice(b"NOOP\r\n");
    c.send(&last);
    assert_eq!(
        c.read_reply(),
        format!("250 2.0.0 Ok: {} octets received\r\n", chunk2.len())
    );
    assert_eq!(c.read_reply(), "250 2.0.0 Ok\r\n");
    let rec = up.wait_until("BDAT message", |r| r.messages.len() == 1);
    assert_eq!(rec.messages[0], [chunk1, chunk2].concat());
}

#[test]
fn bdat_ten_megabytes_in_pipelined_chunks_reaches_upstream_byte_exact_by_sha256() {
    // D5/D6: chunks of 1 MiB, all pipelined, payload with bare LFs and
    // CRLF.CRLF sequences that must stay opaque.
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    let mut message = test_message(10 << 20, 21);
    message.extend_from_slice(b"\r\n.\r\nbare\nlf\r\n.\r\n");
    let chunks: Vec<&[u8]> = message.chunks(1 << 20).collect();
    let mut wire = Vec::with_capacity(message.len() + 1024);
    for (i, chunk) in chunks.iter().enumerate() {
        let last = if i + 1 == chunks.len() { " LAST" } else { "" };
        wire.extend_from_slice(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
    }
    // Write on a thread: replies come back while the client is still
    // sending, and neither side may block the other.
    let mut writer = c.try_clone_writer();
    let sender = std::thread::spawn(move || writer.write_all(&wire));
    for chunk in &chunks {
        assert_eq!(
            c.read_reply(),
            format!("250 2.0.0 Ok: {} octets received\r\n", chunk.len())
        );
    }
    sender.join().expect("writer thread").expect("write chunks");
    let rec = up.wait_until("BDAT message", |r| r.messages.len() == 1);
    assert_eq!(rec.messages[0].len(), message.len());
    assert_eq!(sha256_hex(&rec.messages[0]), sha256_hex(&message));
}

#[test]
fn malformed_bdat_count_gets_521_554_and_close() {
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    c.send(b"BDAT 12x\r\n");
    assert_eq!(c.read_reply(), "521 5.5.4 Syntax: BDAT count [LAST]\r\n");
    c.expect_closed();
    assert!(
        !up.recorded()
            .commands()
            .iter()
            .any(|c| c.starts_with("BDAT")),
        "malformed BDAT forwarded"
    );
}

// ------------------------------------------------------------ upstream faults (F2, P2, P3)

#[test]
fn upstream_unreachable_gives_421_441_greeting_and_close() {
    // F2
    let rf = Replyfix::start(closed_port_addr(), ServeOptions::default().config());
    let mut c = rf.connect();
    let reply = c.read_reply();
    assert_eq!(
        reply,
        format!("421 4.4.1 {PROXY_HOSTNAME} upstream unavailable, try again later\r\n")
    );
    c.expect_closed();
    // The session record counts the bytes of replyfix's own 421.
    let closed = rf.wait_for_record("session closed");
    assert_eq!(
        field(&closed, "end").as_deref(),
        Some("upstream_unavailable")
    );
    assert_eq!(
        field(&closed, "bytes_to_client"),
        Some(reply.len().to_string())
    );
}

#[test]
fn unsolicited_421_from_upstream_is_relayed_then_connection_closes() {
    // P3: the 421 arrives after MAIL's 250, before the next command.
    let up = FakeUpstream::with_script(|cmd| {
        if cmd.starts_with("MAIL") {
            Step::RawThenClose(b"250 2.1.0 Ok\r\n421 4.3.2 fake.test going down\r\n".to_vec())
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = ehlo(&rf);
    assert_eq!(c.cmd("MAIL FROM:<s@example.test>"), "250 2.1.0 Ok\r\n");
    // Relayed without waiting for another command, then closed.
    assert_eq!(c.read_to_close(), "421 4.3.2 fake.test going down\r\n");
}

#[test]
fn upstream_421_reply_is_relayed_unchanged_then_connection_closes() {
    let up = FakeUpstream::with_script(|cmd| {
        if cmd.starts_with("RCPT") {
            Step::RawThenClose(b"421 4.7.0 fake.test too busy\r\n".to_vec())
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(
        c.cmd("RCPT TO:<a@example.net>"),
        "421 4.7.0 fake.test too busy\r\n"
    );
    c.expect_closed();
}

#[test]
fn upstream_lost_mid_session_gives_421_442_and_close() {
    // F2
    let up = FakeUpstream::with_script(|cmd| {
        if cmd.starts_with("RCPT") {
            Step::Close
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::start(up.addr, ServeOptions::default().config());
    let mut c = at_rcpt(&rf);
    assert_eq!(
        c.cmd("RCPT TO:<a@example.net>"),
        format!("421 4.4.2 {PROXY_HOSTNAME} upstream connection lost\r\n")
    );
    c.expect_closed();
}

#[test]
fn upstream_lost_mid_data_gives_451_442_after_the_clients_end_of_data() {
    // F2: drain the client to its end of data, then 451 4.4.2.
    let up = FakeUpstream::with_script(|cmd| {
        if cmd == "DATA" {
            Step::Data(DataEnd::CloseAfter(10))
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: lost\r\n\r\nfirst part\r\n");
    up.wait_until("upstream closed mid-DATA", |r| r.aborted_data.len() == 1);
    // Sent after the upstream is gone: replyfix must still read it all.
    std::thread::sleep(Duration::from_millis(100));
    c.send_lenient(&test_message(300_000, 9));
    c.send_lenient(b"\r\n.\r\n");
    assert_eq!(c.read_reply(), "451 4.4.2 upstream connection lost\r\n");
    c.expect_closed();
}

#[test]
fn upstream_garbage_reply_gives_451_450_and_close() {
    // P2
    let up = FakeUpstream::with_script(|cmd| {
        if cmd.starts_with("MAIL") {
            Step::Raw(b"HTTP/1.1 400 Bad Request\r\n".to_vec())
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = ehlo(&rf);
    assert_eq!(
        c.cmd("MAIL FROM:<s@example.test>"),
        "451 4.5.0 upstream protocol error\r\n"
    );
    c.expect_closed();
}

#[test]
fn reply_with_mixed_codes_is_a_desync_451_450_never_rewritten() {
    // W4/P2: a multi-line reply whose lines carry different codes.
    let up = upstream_rejecting_nobody("530-5.7.1 User unknown\r\n550 5.1.1 User unknown");
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_eq!(
        c.cmd("RCPT TO:<nobody@example.net>"),
        "451 4.5.0 upstream protocol error\r\n"
    );
    c.expect_closed();
}

#[test]
fn unrequested_reply_is_a_desync_and_closes_without_shifting_the_pairing() {
    // P2: a second reply to one command; nothing is outstanding for it, so
    // it is never relayed (it would answer the client's next command) and
    // the session closes.
    let up = FakeUpstream::with_script(|cmd| {
        if cmd.starts_with("MAIL") {
            Step::Raw(b"250 2.1.0 Ok\r\n250 2.1.5 extra\r\n".to_vec())
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = ehlo(&rf);
    assert_eq!(c.cmd("MAIL FROM:<s@example.test>"), "250 2.1.0 Ok\r\n");
    // Closed at once, with nothing more sent.
    c.expect_closed();
}

#[test]
fn upstream_garbage_answers_every_pipelined_command_with_451_450() {
    // P2: each outstanding client command gets 451 4.5.0, then close.
    let up = FakeUpstream::with_script(|cmd| {
        if cmd.starts_with("MAIL") {
            Step::Raw(b"\x16\x03\x01 garbage, not SMTP\r\n".to_vec())
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = ehlo(&rf);
    c.send(b"MAIL FROM:<s@example.test>\r\nRCPT TO:<a@example.net>\r\nRCPT TO:<b@example.net>\r\n");
    assert_eq!(
        c.read_to_close(),
        "451 4.5.0 upstream protocol error\r\n".repeat(3)
    );
}

#[test]
fn no_upstream_reply_within_timeout_gives_421_441_and_close() {
    let up = FakeUpstream::with_script(|cmd| {
        if cmd.starts_with("MAIL") {
            Step::Stall
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::start(up.addr, ServeOptions::default().timeouts(2));
    let (mut c, _) = ehlo(&rf);
    let started = Instant::now();
    assert_eq!(
        c.cmd("MAIL FROM:<s@example.test>"),
        format!("421 4.4.1 {PROXY_HOSTNAME} upstream did not answer, try again later\r\n")
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    c.expect_closed();
}

#[test]
fn no_reply_after_end_of_data_within_timeout_gives_451_441() {
    // F2: and log that a duplicate is possible.
    let up = FakeUpstream::with_script(|cmd| {
        if cmd == "DATA" {
            Step::Data(DataEnd::Stall)
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::start(up.addr, ServeOptions::default().timeouts(2));
    let mut c = at_rcpt(&rf);
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: stall\r\n\r\nbody\r\n.\r\n");
    assert_eq!(
        c.read_reply(),
        format!("451 4.4.1 {PROXY_HOSTNAME} no answer from upstream after end of data\r\n")
    );
    c.expect_closed();
    let warning = rf.wait_for_record(
        "no final reply to the end of data: the client was told to retry; a duplicate delivery is possible",
    );
    assert_eq!(
        field(&warning, "level").as_deref(),
        Some("WARN"),
        "{warning}"
    );
}

// ------------------------------------------------------------ client limits (F3, R4)

#[test]
fn idle_client_gets_421_442_timeout() {
    let up = FakeUpstream::start();
    let rf = Replyfix::start(up.addr, ServeOptions::default().timeouts(2));
    let (mut c, _) = ehlo(&rf);
    let started = Instant::now();
    let rest = c.read_to_close();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert_eq!(
        rest,
        format!("421 4.4.2 {PROXY_HOSTNAME} Error: timeout exceeded\r\n")
    );
}

#[test]
fn too_many_of_replyfixs_own_errors_give_421_470_and_close_r4() {
    // R4: default limit 20, counted over the error replies replyfix writes
    // itself (here `454`: no certificate configured for STARTTLS).
    let up = FakeUpstream::start();
    let rf = Replyfix::start(up.addr, ServeOptions::default().config());
    let (mut c, _) = ehlo(&rf);
    for _ in 0..19 {
        assert_eq!(c.cmd("STARTTLS"), "454 4.7.0 TLS not available\r\n");
    }
    c.send(b"STARTTLS\r\n");
    assert_eq!(c.read_reply(), "454 4.7.0 TLS not available\r\n");
    assert_eq!(
        c.read_reply(),
        format!("421 4.7.0 {PROXY_HOSTNAME} Error: too many errors\r\n")
    );
    c.expect_closed();
}

#[test]
fn upstream_error_replies_never_count_towards_the_error_limit_r4() {
    // R4: the upstream keeps its own limits; 50 of its 502s and 550s reach
    // the client and the session goes on.
    let up = FakeUpstream::with_script(|cmd| {
        if cmd.starts_with("RCPT TO:<nobody") {
            Step::reply("550 5.1.1 <nobody@example.net>: no such user")
        } else {
            Step::Default
        }
    });
    let rf = Replyfix::start(up.addr, ServeOptions::default().config());
    let mut c = at_rcpt(&rf);
    for i in 0..50 {
        if i % 2 == 0 {
            assert_eq!(
                c.cmd("XYZZY"),
                "502 5.5.2 Error: command not recognized\r\n"
            );
        } else {
            assert_eq!(
                c.cmd("RCPT TO:<nobody@example.net>"),
                "550 5.1.1 <nobody@example.net>: no such user\r\n"
            );
        }
    }
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
}

#[test]
fn http_request_gets_502_551_and_close() {
    // R4
    let up = FakeUpstream::start();
    let rf = Replyfix::serve(up.addr);
    let (mut c, _) = rf.connect_greeted();
    c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(
        c.read_to_close(),
        "502 5.5.1 Error: command not recognized\r\n"
    );
    assert!(
        !up.recorded()
            .commands()
            .iter()
            .any(|c| c.starts_with("GET")),
        "HTTP request forwarded upstream"
    );
}

#[test]
fn input_before_greeting_gets_554_550_and_close() {
    // R4: the client talks before the (delayed) upstream greeting.
    let up = FakeUpstream::builder()
        .greeting_delay(Duration::from_millis(700))
        .start();
    let rf = Replyfix::serve(up.addr);
    let mut c = rf.connect();
    c.send(b"EHLO eager.example.test\r\n");
    assert_eq!(
        c.read_to_close(),
        "554 5.5.0 Error: SMTP protocol synchronization\r\n"
    );
    assert!(
        !up.recorded()
            .commands()
            .iter()
            .any(|c| c.starts_with("EHLO")),
        "pre-greeting input forwarded"
    );
}

#[test]
fn session_closed_log_line_counts_transactions_and_rewrites() {
    let up = upstream_rejecting_nobody(USER_UNKNOWN_530);
    let rf = Replyfix::serve(up.addr);
    let mut c = at_rcpt(&rf);
    assert_codes(&c.cmd("RCPT TO:<nobody@example.net>"), "550", "5.1.1");
    assert_eq!(c.cmd("RCPT TO:<a@example.net>"), "250 2.1.5 Ok\r\n");
    assert!(c.cmd("DATA").starts_with("354 "));
    c.send(b"Subject: one\r\n\r\nbody\r\n.\r\n");
    assert_eq!(c.read_reply(), "250 2.0.0 Ok: queued as FAKE\r\n");
    assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    c.expect_closed();
    let rec = rf.wait_for_record("session closed");
    assert_eq!(field(&rec, "transactions").as_deref(), Some("1"), "{rec}");
    assert_eq!(field(&rec, "rewrites").as_deref(), Some("1"), "{rec}");
    assert_eq!(field(&rec, "end").as_deref(), Some("quit"), "{rec}");
}
