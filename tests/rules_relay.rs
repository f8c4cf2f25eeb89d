//! The built-in rules' precedence (docs/rules.md "Precedence") through the
//! relay: a scripted fake upstream answers with the 530, a raw client talks
//! through the real `replyfix serve`, and what the client sees must be what
//! `replyfix explain` says for that command and session, and of the class
//! the precedence gives. One test per kind of decision:
//! - a misused 530 named by its enhanced code or its wording;
//! - a blocklisted dynamic address told to authenticate keeps its 530;
//! - at AUTH, a failed login becomes 535 5.7.8 and "TLS first" stays 530;
//! - a specific line beats the ambiguous "configuration error" line;
//! - after a successful AUTH, a request for a stronger login stays 530.

mod common;

use common::{
    AUTH_PASSWORD, AUTH_USER, FAKE_GREETING, FakeUpstream, Replyfix, SmtpClient, Step,
    assert_codes, base64, explained_batch,
};

/// A reply written as lines joined by ` | `, as the upstream sends it.
fn wire(reply: &str) -> String {
    reply.split(" | ").map(|l| format!("{l}\r\n")).collect()
}

/// Greets and sends EHLO.
fn ehlo(rf: &Replyfix) -> SmtpClient {
    let (mut c, greeting) = rf.connect_greeted();
    assert_eq!(greeting, format!("{FAKE_GREETING}\r\n"));
    let reply = c.cmd("EHLO client.example.test");
    assert!(reply.starts_with("250"), "EHLO reply {reply:?}");
    c
}

/// A fake upstream that answers `RCPT TO:<caseN@...>` with `replies[N]`.
fn upstream_rejecting_cases(replies: &[String]) -> FakeUpstream {
    let replies = replies.to_vec();
    FakeUpstream::with_script(move |cmd| {
        cmd.strip_prefix("RCPT TO:<case")
            .and_then(|r| r.split('@').next())
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| replies.get(n))
            .map_or(Step::Default, |r| Step::Raw(wire(r).into_bytes()))
    })
}

/// Plays every reply at RCPT (one transaction, each recipient refused) and
/// returns what the client saw for each.
fn play_at_rcpt(replies: &[String]) -> Vec<String> {
    let up = upstream_rejecting_cases(replies);
    let rf = Replyfix::serve(up.addr);
    let mut c = ehlo(&rf);
    assert_eq!(c.cmd("MAIL FROM:<sender@example.test>"), "250 2.1.0 Ok\r\n");
    (0..replies.len())
        .map(|i| c.cmd(&format!("RCPT TO:<case{i}@example.net>")))
        .collect()
}

/// The client saw exactly what `replyfix explain` says for `command`.
fn assert_as_explained(
    command: &str,
    authenticated: bool,
    replies: &[String],
    seen: &[String],
) -> Vec<Option<String>> {
    let refs: Vec<&str> = replies.iter().map(String::as_str).collect();
    let explained = explained_batch(command, 0, authenticated, &refs);
    for ((reply, got), (want, rule)) in replies.iter().zip(seen).zip(&explained) {
        assert_eq!(
            got, want,
            "{reply} at {command}: the relay and explain differ (rule {rule:?})"
        );
    }
    explained.into_iter().map(|(_, rule)| rule).collect()
}

/// Kept as a 530 (every line) with a `replyfix:` hint as the last line.
fn assert_kept_with_hint(reply: &str, seen: &str) {
    let lines: Vec<&str> = seen.split_terminator("\r\n").collect();
    assert!(
        lines.iter().all(|l| l.starts_with("530")),
        "{reply}: not kept as a 530: {seen:?}"
    );
    assert!(
        lines.last().is_some_and(|l| l[4..].contains("replyfix:")),
        "{reply}: no hint: {seen:?}"
    );
    assert_eq!(
        lines.len(),
        reply.split(" | ").count() + 1,
        "{reply}: the original lines plus one hint expected: {seen:?}"
    );
}

#[test]
fn misused_530s_reach_the_client_with_the_code_their_enhanced_code_or_wording_gives() {
    // (reply, code, enhanced): a neutral text with a specific enhanced
    // code, and real wordings without one.
    let cases = [
        ("530 5.1.1 <case@example.net>", "550", "5.1.1"),
        ("530 5.1.2 <case@nowhere.example>", "550", "5.1.2"),
        (
            "530 5.2.2 https://support.example/?p=OverQuota",
            "552",
            "5.2.2",
        ),
        ("530 5.7.13 <case@example.net>", "550", "5.2.1"),
        ("530 5.1.1 Address rejected", "550", "5.1.1"),
        ("530 sorry, no mailbox here by that name", "550", "5.1.1"),
        (
            "530 The email account that you tried to reach is inactive.",
            "550",
            "5.2.1",
        ),
        ("530 Host or domain name not found", "550", "5.1.2"),
        ("530 Mailbox is frozen.", "550", "5.2.1"),
        (
            "530 Client host rejected: cannot find your reverse hostname",
            "554",
            "5.7.1",
        ),
        ("530 Refused due to recipient preferences", "550", "5.7.1"),
    ];
    let replies: Vec<String> = cases.iter().map(|(r, ..)| r.to_string()).collect();
    let seen = play_at_rcpt(&replies);
    assert_as_explained("rcpt", false, &replies, &seen);
    for ((reply, code, enhanced), got) in cases.iter().zip(&seen) {
        assert!(!got.starts_with("530"), "{reply}: still a 530: {got:?}");
        assert_codes(got, code, enhanced);
    }
}

#[test]
fn a_blocklisted_dynamic_address_told_to_authenticate_keeps_its_530_through_the_relay() {
    let refusals = [
        "Your IP 192.0.2.7 is listed in the PBL",
        "Client host [192.0.2.7] blocked using zen.example.net",
        "192.0.2.7 is a dynamic address",
    ];
    let remedies = [
        "please use authenticated SMTP",
        "Please turn on SMTP authentication in your mail client",
    ];
    let mut replies = Vec::new();
    for r in refusals {
        for m in remedies {
            replies.push(format!("530 5.7.1 {r}; {m}"));
            replies.push(format!("530-5.7.1 {r} | 530 5.7.1 {m}"));
        }
    }
    let seen = play_at_rcpt(&replies);
    let rules = assert_as_explained("rcpt", false, &replies, &seen);
    for ((reply, got), rule) in replies.iter().zip(&seen).zip(&rules) {
        assert_kept_with_hint(reply, got);
        assert_eq!(rule.as_deref(), Some("auth-required"), "{reply}");
    }
    // The same refusals without the remedy are remapped (a control).
    let bare: Vec<String> = refusals.iter().map(|r| format!("530 5.7.1 {r}")).collect();
    for (reply, got) in bare.iter().zip(play_at_rcpt(&bare)) {
        assert!(got.starts_with("554 5.7.1 "), "{reply}: {got:?}");
    }
}

#[test]
fn at_auth_a_failed_login_becomes_535_and_tls_first_is_the_operators_451_through_the_relay() {
    // Each case answers the AUTH of its own user name.
    let cases = [
        ("530 5.7.3 Authentication unsuccessful", true),
        ("530 Invalid username or password", true),
        ("530 5.7.8 Error: authentication", true),
        ("530 5.7.0 Must issue a STARTTLS command first", false),
        (
            "530 Encryption required for requested authentication mechanism",
            false,
        ),
    ];
    let tokens: Vec<String> = (0..cases.len())
        .map(|i| base64(format!("\0user{i}@example.test\0{AUTH_PASSWORD}").as_bytes()))
        .collect();
    let script_tokens = tokens.clone();
    let replies: Vec<String> = cases.iter().map(|(r, _)| r.to_string()).collect();
    let script_replies = replies.clone();
    let up = FakeUpstream::with_script(move |cmd| {
        script_tokens
            .iter()
            .position(|t| cmd == format!("AUTH PLAIN {t}"))
            .map_or(Step::Default, |i| {
                Step::Raw(wire(&script_replies[i]).into_bytes())
            })
    });
    let rf = Replyfix::serve(up.addr);
    let seen: Vec<String> = tokens
        .iter()
        .map(|t| ehlo(&rf).cmd(&format!("AUTH PLAIN {t}")))
        .collect();
    assert_as_explained("auth", false, &replies, &seen);
    for ((reply, failed), got) in cases.iter().zip(&seen) {
        if *failed {
            assert_codes(got, "535", "5.7.8");
        } else {
            // The upstream demands TLS on replyfix's plaintext leg: a
            // temporary failure for the operator to fix (docs/rules.md).
            assert_codes(got, "451", "4.7.0");
            assert!(got.contains("proxy's operator"), "{reply}: {got:?}");
        }
    }
}

#[test]
fn a_specific_line_beats_the_configuration_error_line_through_the_relay() {
    const CONFIG: &str = "The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.";
    let specific = [
        (
            "<nobody@example.net>: Recipient address rejected: User unknown",
            "550",
            "5.1.1",
        ),
        ("Mailbox full", "552", "5.2.2"),
        (
            "Client host [192.0.2.7] blocked using zen.example.net",
            "554",
            "5.7.1",
        ),
    ];
    let mut cases = Vec::new();
    for (line, code, enhanced) in specific {
        cases.push((
            format!("530-5.7.1 {CONFIG} | 530 5.7.1 {line}"),
            code,
            enhanced,
        ));
        cases.push((
            format!("530-5.7.1 {line} | 530 5.7.1 {CONFIG}"),
            code,
            enhanced,
        ));
    }
    // Alone, the configuration error stays the ambiguous 554 5.0.0.
    cases.push((format!("530 5.7.1 {CONFIG}"), "554", "5.0.0"));
    let replies: Vec<String> = cases.iter().map(|(r, ..)| r.clone()).collect();
    let seen = play_at_rcpt(&replies);
    assert_as_explained("rcpt", false, &replies, &seen);
    for ((reply, code, enhanced), got) in cases.iter().zip(&seen) {
        let lines: Vec<&str> = got.split_terminator("\r\n").collect();
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with(&format!("{code}-{enhanced} "))
                    || l.starts_with(&format!("{code} {enhanced} "))),
            "{reply}: want {code} {enhanced} on every line, got {got:?}"
        );
    }
}

#[test]
fn after_a_successful_auth_a_530_asking_for_stronger_authentication_stays_530_through_the_relay() {
    let cases = [
        (
            "530 5.7.0 Stronger authentication required for this sender",
            true,
        ),
        ("530 5.7.9 Authentication mechanism is too weak", true),
        (
            "530-5.7.9 Application-specific password required. | 530 5.7.9 https://support.example/apppass",
            true,
        ),
        ("530 5.7.0 Further authentication required", true),
        ("530 Access denied", false),
        ("530 5.7.0 Authentication required", false),
    ];
    let replies: Vec<String> = cases.iter().map(|(r, _)| r.to_string()).collect();
    let script_replies = replies.clone();
    let up = FakeUpstream::with_script(move |cmd| {
        cmd.strip_prefix("MAIL FROM:<case")
            .and_then(|r| r.split('@').next())
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| script_replies.get(n))
            .map_or(Step::Default, |r| Step::Raw(wire(r).into_bytes()))
    });
    let rf = Replyfix::serve(up.addr);
    let token = base64(format!("\0{AUTH_USER}\0{AUTH_PASSWORD}").as_bytes());
    let seen: Vec<String> = (0..cases.len())
        .map(|i| {
            let mut c = ehlo(&rf);
            assert_eq!(
                c.cmd(&format!("AUTH PLAIN {token}")),
                "235 2.7.0 Authentication successful\r\n"
            );
            c.cmd(&format!("MAIL FROM:<case{i}@example.test>"))
        })
        .collect();
    assert_as_explained("mail", true, &replies, &seen);
    for ((reply, kept), got) in cases.iter().zip(&seen) {
        if *kept {
            assert_kept_with_hint(reply, got);
            assert!(
                got.contains("although a login succeeded") || got.contains("stronger"),
                "{got:?}"
            );
        } else {
            // a refusal by policy (550 or 554 with 5.7.1), not a login
            let code = got.get(..3).unwrap_or("");
            assert!(matches!(code, "550" | "554"), "{reply}: {got:?}");
            assert_codes(got, code, "5.7.1");
        }
    }
}
