//! The command line without a network: `check`, `explain`, `test-rules`
//! (the foundation issue's "done when", end to end through the binary).

mod common;

use std::process::{Command, Output};

use common::*;

fn replyfix(args: &[&str]) -> Output {
    Command::new(replyfix_bin())
        .args(args)
        .output()
        .expect("run replyfix")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const AMBIGUOUS: &str = "530 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.";

#[test]
fn explain_remaps_the_ambiguous_530_to_554_with_an_annotation() {
    let out = replyfix(&["explain", "--command", "rcpt", AMBIGUOUS]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("554-5.0.0 The message cannot be delivered"),
        "{text}"
    );
    assert!(text.contains("554 5.0.0 replyfix:"), "{text}");
    assert!(text.contains("unknown recipient"), "{text}");
}

#[test]
fn explain_with_an_accepted_recipient_gives_550_511() {
    let out = replyfix(&[
        "explain",
        "--command",
        "rcpt",
        "--recipients-accepted",
        "1",
        AMBIGUOUS,
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("550-5.1.1 The message cannot be delivered"),
        "{text}"
    );
}

#[test]
fn explain_turns_a_tls_demand_into_a_temporary_451_for_the_proxy_operator() {
    // The upstream's demand is about replyfix's own plaintext leg to it: the
    // client cannot fix it (docs/rules.md "TLS demanded by the upstream").
    let out = replyfix(&[
        "explain",
        "--command",
        "mail",
        "530 5.7.0 Must issue a STARTTLS command first",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("451-4.7.0 Must issue a STARTTLS command first"),
        "{text}"
    );
    assert!(
        text.contains("451 4.7.0 replyfix: the server said 530: it demands TLS"),
        "{text}"
    );
    // Over a TLS upstream leg (--upstream-tls) it passes unchanged.
    let out = replyfix(&[
        "explain",
        "--command",
        "mail",
        "--upstream-tls",
        "--json",
        "530 5.7.0 Must issue a STARTTLS command first",
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("JSON");
    assert_eq!(v["changed"], false, "{v}");
    assert_eq!(v["rule"], "starttls-required", "{v}");
}

#[test]
fn explain_json_and_stdin_one_reply_per_line() {
    let mut child = Command::new(replyfix_bin())
        .args(["explain", "--command", "rcpt", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"250 2.1.5 Ok\n530 5.7.1 User unknown\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    let text = lines[1].to_string();
    assert!(text.contains("550 5.1.1"), "{text}");
}

#[test]
fn test_rules_on_the_builtin_rules_reports_at_least_30_examples_and_none_failed() {
    let out = replyfix(&["test-rules", "rules/default.yaml"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let last = stdout(&out).lines().last().unwrap_or("").to_string();
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 30, "{last}");
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
}

fn check_rules(yaml: &str) -> (bool, String) {
    let dir = TempDir::new("cli");
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = replyfix(&["check", "--rules", file.to_str().unwrap()]);
    (
        out.status.success(),
        stderr(&out).replace(file.to_str().unwrap(), "FILE"),
    )
}

#[test]
fn check_refuses_a_remap_to_250_naming_file_line_and_rule() {
    let (ok, err) = check_rules(
        "rules:\n  - id: to-success\n    description: x\n    when: {code: 530}\n    then:\n      remap: {code: 250, enhanced: 2.0.0}\n",
    );
    assert!(!ok);
    assert!(err.contains("FILE:6:"), "{err}");
    assert!(err.contains("rule 'to-success'"), "{err}");
}

#[test]
fn check_refuses_a_remap_whose_enhanced_class_differs_w1() {
    let (ok, err) = check_rules(
        "rules:\n  - id: mismatch\n    description: x\n    when: {code: 530}\n    then:\n      remap: {code: 454, enhanced: 5.7.0}\n",
    );
    assert!(!ok);
    assert!(err.contains("FILE:6:"), "{err}");
    assert!(err.contains("rule 'mismatch'"), "{err}");
}

#[test]
fn check_refuses_a_cr_in_replacement_text_w3() {
    let (ok, err) = check_rules(
        "rules:\n  - id: crlf\n    description: x\n    when: {code: 530}\n    then:\n      remap: {code: 550, enhanced: 5.1.1, text: \"a\\rb\"}\n",
    );
    assert!(!ok);
    assert!(err.contains("FILE:6:"), "{err}");
    assert!(err.contains("rule 'crlf'"), "{err}");
}

#[test]
fn check_accepts_the_example_configurations() {
    for config in ["config/replyfix.yaml", "config/minimal.yaml"] {
        let out = replyfix(&["check", "-c", config]);
        assert!(out.status.success(), "{config}: {}", stderr(&out));
        assert!(stdout(&out).ends_with("ok\n"), "{}", stdout(&out));
    }
}

#[test]
fn explain_into_a_closed_pipe_ends_quietly() {
    use std::io::{BufRead, BufReader, Write};
    let mut child = Command::new(replyfix_bin())
        .args(["explain", "--command", "rcpt"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..5000 {
            if stdin.write_all(b"530 5.7.1 User unknown\n").is_err() {
                break;
            }
        }
    });
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // stdout is dropped here: the reader of the pipe has gone.
    assert!(first.starts_with("reply:"), "{first}");
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{err}");
}

// ------------------------------------------------------------ the precedence of the built-in rules
//
// One test per kind of decision the precedence (docs/rules.md
// "Precedence") makes, each over a generated mix of wordings, through the
// `replyfix explain` binary.

/// Lines of a reply as `explain` gives it on the wire: (code, enhanced, text).
fn wire_lines(wire: &str) -> Vec<(String, Option<String>, String)> {
    wire.split_terminator("\r\n")
        .map(|l| {
            let code = l.get(..3).unwrap_or("").to_string();
            let rest = l.get(4..).unwrap_or("");
            match rest.split_once(' ') {
                Some((e, t)) if e.split('.').count() == 3 && e.starts_with(['2', '4', '5']) => {
                    (code, Some(e.to_string()), t.to_string())
                }
                _ => (code, None, rest.to_string()),
            }
        })
        .collect()
}

/// Every line carries `code` (and `enhanced`, when given).
fn all_lines(wire: &str, code: &str, enhanced: Option<&str>) -> bool {
    let lines = wire_lines(wire);
    !lines.is_empty()
        && lines
            .iter()
            .all(|(c, e, _)| c == code && enhanced.is_none_or(|want| e.as_deref() == Some(want)))
}

/// Kept as a 530 with a last line that explains it.
fn kept_with_hint(wire: &str) -> bool {
    all_lines(wire, "530", None)
        && wire_lines(wire)
            .last()
            .is_some_and(|(_, _, t)| t.starts_with("replyfix:"))
}

#[test]
fn explain_maps_a_530_by_its_enhanced_code_when_the_words_say_nothing() {
    // Neutral texts (a tracking id, a URL, an address) with each specific
    // enhanced code: the code alone decides (RFC 3463).
    let neutral = [
        "<someone@example.org>",
        "https://support.example/answer?id=6596 ad1si1997204pbd.83 - gsmtp",
        "id=4f2a-19",
    ];
    let table = [
        ("rcpt", "5.1.1", "550", "5.1.1"),
        ("rcpt", "5.1.2", "550", "5.1.2"),
        ("rcpt", "5.1.6", "550", "5.1.6"),
        ("rcpt", "5.1.3", "550", "5.1.0"),
        ("rcpt", "5.2.1", "550", "5.2.1"),
        ("rcpt", "5.7.13", "550", "5.2.1"),
        ("rcpt", "5.2.2", "552", "5.2.2"),
        ("data_end", "5.2.2", "552", "5.2.2"),
        ("mail", "5.1.8", "553", "5.1.8"),
        ("mail", "5.1.1", "550", "5.1.0"),
        ("rcpt", "5.7.606", "550", "5.7.1"),
    ];
    for command in ["rcpt", "mail", "data_end"] {
        let cases: Vec<(String, &str, &str)> = table
            .iter()
            .filter(|(c, ..)| *c == command)
            .flat_map(|(_, esc, code, want)| {
                neutral
                    .iter()
                    .map(move |t| (format!("530 {esc} {t}"), *code, *want))
            })
            .collect();
        let replies: Vec<&str> = cases.iter().map(|(r, ..)| r.as_str()).collect();
        let answers = explained_batch(command, 0, false, &replies);
        for ((reply, code, want), (wire, rule)) in cases.iter().zip(&answers) {
            assert!(
                all_lines(wire, code, Some(want)),
                "{reply} at {command}: want {code} {want}, got {wire:?} by {rule:?}"
            );
        }
    }
}

#[test]
fn explain_keeps_a_blocklisted_dynamic_address_told_to_authenticate_a_530() {
    // The ISP-relay scenario: whatever the refusal says, a remedy of
    // authentication anywhere keeps the 530 with its hint.
    let refusals = [
        "Your IP 192.0.2.7 is listed in the PBL",
        "Service unavailable; client host [192.0.2.7] blocked using zen.example.net",
        "192.0.2.7 is a dynamic address",
        "Relaying denied for 192.0.2.7",
    ];
    let remedies = [
        "please use authenticated SMTP",
        "Please turn on SMTP authentication in your mail client",
        "you must authenticate first",
        "relaying without authentication is not permitted",
    ];
    let mut replies = Vec::new();
    for r in refusals {
        for m in remedies {
            replies.push(format!("530 5.7.1 {r}; {m}"));
            replies.push(format!("530-5.7.1 {r} | 530 5.7.1 {m}"));
            replies.push(format!("530-{m} | 530 {r}"));
        }
    }
    let refs: Vec<&str> = replies.iter().map(String::as_str).collect();
    for command in ["mail", "rcpt"] {
        for (reply, (wire, rule)) in refs.iter().zip(explained_batch(command, 0, false, &refs)) {
            assert!(kept_with_hint(&wire), "{reply} at {command}: {wire:?}");
            assert_eq!(rule.as_deref(), Some("auth-required"), "{reply}");
            assert!(wire.contains("SMTP authentication (AUTH)"), "{wire:?}");
        }
    }
    // Without the remedy the same refusals are remapped (a control).
    let bare: Vec<String> = refusals.iter().map(|r| format!("530 5.7.1 {r}")).collect();
    let bare: Vec<&str> = bare.iter().map(String::as_str).collect();
    for (reply, (wire, _)) in bare.iter().zip(explained_batch("rcpt", 0, false, &bare)) {
        assert!(all_lines(&wire, "554", Some("5.7.1")), "{reply}: {wire:?}");
    }
}

#[test]
fn explain_gives_535_for_a_failed_login_at_auth_and_keeps_tls_first() {
    let failed = [
        "530 5.7.3 Authentication unsuccessful",
        "530 Invalid username or password",
        "530-5.7.8 Username and Password not accepted. Learn more at | 530 5.7.8 https://support.example/auth",
        "530 5.7.8 Error: authentication",
        "530 Login failed",
        "530 Authentication credentials invalid",
    ];
    let answers = explained_batch("auth", 0, false, &failed);
    for (reply, (wire, rule)) in failed.iter().zip(&answers) {
        assert!(
            all_lines(wire, "535", Some("5.7.8")),
            "{reply}: {wire:?} by {rule:?}"
        );
    }
    // The same words at MAIL are not a login (e.g. an SPF "authentication").
    let at_mail = explained_batch("mail", 0, false, &failed[..2]);
    for (wire, _) in &at_mail {
        assert!(!wire.starts_with("535"), "{wire:?}");
    }
    // TLS first at AUTH is not a failed login: it is the upstream leg's
    // (451 4.7.0 for the proxy's operator), not 535 and not 538.
    let tls_first = [
        "530 5.7.0 Must issue a STARTTLS command first",
        "530 5.7.11 Encryption required for requested authentication mechanism",
        "530 TLS required",
    ];
    for (reply, (wire, rule)) in tls_first
        .iter()
        .zip(explained_batch("auth", 0, false, &tls_first))
    {
        assert!(all_lines(&wire, "451", Some("4.7.0")), "{reply}: {wire:?}");
        assert_eq!(rule.as_deref(), Some("starttls-required-upstream-leg"));
    }
    // A request for a stronger login is not a wrong password.
    let stronger = [
        "530-5.7.9 Application-specific password required. | 530 5.7.9 https://support.example/apppass",
        "530 5.7.9 Authentication mechanism is too weak",
    ];
    for (reply, (wire, _)) in stronger
        .iter()
        .zip(explained_batch("auth", 0, false, &stronger))
    {
        assert!(all_lines(&wire, "530", None), "{reply}: {wire:?}");
    }
}

#[test]
fn explain_lets_a_specific_line_beat_the_ambiguous_configuration_error() {
    const CONFIG: &str = "The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.";
    let specific = [
        (
            "<nobody@example.org>: Recipient address rejected: User unknown",
            "550",
            "5.1.1",
        ),
        (
            "The email account that you tried to reach does not exist.",
            "550",
            "5.1.1",
        ),
        ("Mailbox full", "552", "5.2.2"),
        (
            "Client host [192.0.2.7] blocked using zen.example.net",
            "554",
            "5.7.1",
        ),
        ("Relay access denied", "554", "5.7.1"),
    ];
    let mut cases = Vec::new();
    for (line, code, esc) in specific {
        cases.push((format!("530-5.7.1 {CONFIG} | 530 5.7.1 {line}"), code, esc));
        cases.push((format!("530-5.7.1 {line} | 530 5.7.1 {CONFIG}"), code, esc));
    }
    let replies: Vec<&str> = cases.iter().map(|(r, ..)| r.as_str()).collect();
    for command in ["rcpt", "data_end"] {
        for ((reply, code, esc), (wire, rule)) in cases
            .iter()
            .zip(explained_batch(command, 0, false, &replies))
        {
            assert!(
                all_lines(&wire, code, Some(esc)),
                "{reply} at {command}: want {code} {esc}, got {wire:?} by {rule:?}"
            );
            assert_ne!(rule.as_deref(), Some("config-error-ambiguous"));
        }
    }
    // Alone, the configuration error is still the ambiguous 554 5.0.0.
    let (wire, _) = explained_batch("rcpt", 0, false, &[&format!("530 5.7.1 {CONFIG}")]).remove(0);
    assert!(wire.starts_with("554-5.0.0"), "{wire:?}");
}

#[test]
fn explain_after_a_successful_auth_keeps_a_530_asking_for_stronger_authentication() {
    let stronger = [
        "530 5.7.0 Stronger authentication required for this sender",
        "530 5.7.9 Authentication mechanism is too weak",
        "530-5.7.9 Application-specific password required. | 530 5.7.9 https://support.example/apppass",
        "530 Please log in with your web browser and then try again",
        "530 5.7.0 Further authentication required",
    ];
    for command in ["mail", "rcpt"] {
        for (reply, (wire, rule)) in stronger
            .iter()
            .zip(explained_batch(command, 0, true, &stronger))
        {
            assert!(
                kept_with_hint(&wire),
                "{reply} at {command}: {wire:?} by {rule:?}"
            );
        }
    }
    // A refusal after a login is still a refusal by policy.
    let refusals = ["530 Access denied", "530 5.7.0 Authentication required"];
    for (reply, (wire, _)) in refusals
        .iter()
        .zip(explained_batch("rcpt", 0, true, &refusals))
    {
        assert!(all_lines(&wire, "554", Some("5.7.1")), "{reply}: {wire:?}");
    }
}

// ------------------------------------------------------------ serve's own errors and warnings

/// Runs `replyfix serve ARGS` until it exits, or until its standard error
/// holds `until` (then it is stopped), within `secs`; returns the exit
/// status (`None` when it was stopped) and its stderr (JSON log records and
/// the final error line).
fn serve_briefly(
    args: &[&str],
    until: &str,
    secs: u64,
) -> (Option<std::process::ExitStatus>, String) {
    use std::io::BufRead;
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let mut child = Command::new(replyfix_bin())
        .args(&all)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start replyfix serve");
    let stderr = child.stderr.take().expect("stderr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
            s.push_str(&line);
            s.push('\n');
        }
    });
    let text = || seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let status = poll(std::time::Duration::from_secs(secs), || {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Some(Some(status));
        }
        (!until.is_empty() && text().contains(until)).then_some(None)
    })
    .flatten();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = reader.join();
    (status, text())
}

#[test]
fn a_port_in_use_is_said_once_with_what_to_check() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (status, err) = serve_briefly(&["--listen", &addr, "--upstream", "127.0.0.1:25"], "", 60);
    assert!(status.is_some_and(|s| !s.success()), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("replyfix: listener 'default': cannot listen on"),
        "{last}"
    );
    assert_eq!(
        last.matches("Address already in use").count(),
        1,
        "said twice: {last}"
    );
    assert!(last.contains("is another process using it?"), "{last}");
    // The admin endpoint's bind error too.
    let free = format!("127.0.0.1:{}", free_port());
    let (status, err) = serve_briefly(
        &[
            "--listen",
            &free,
            "--upstream",
            "127.0.0.1:25",
            "--admin",
            &addr,
        ],
        "",
        60,
    );
    assert!(status.is_some_and(|s| !s.success()), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(last.matches("admin endpoint").count(), 1, "{last}");
    assert_eq!(last.matches("Address already in use").count(), 1, "{last}");
}

#[test]
fn a_missing_certificate_names_its_flag_once() {
    let free = format!("127.0.0.1:{}", free_port());
    let (status, err) = serve_briefly(
        &[
            "--listen",
            &free,
            "--upstream",
            "127.0.0.1:25",
            "--tls-cert",
            "/nonexistent/cert.pem",
            "--tls-key",
            "/nonexistent/key.pem",
        ],
        "",
        60,
    );
    assert!(status.is_some_and(|s| !s.success()), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "replyfix: --tls-cert /nonexistent/cert.pem: no such file; give the client leg's certificate chain (PEM, leaf first)"
    );
}

#[test]
fn serve_logs_every_configuration_warning_at_start() {
    let free = format!("127.0.0.1:{}", free_port());
    let admin = format!("0.0.0.0:{}", free_port());
    let (status, err) = serve_briefly(
        &[
            "--listen",
            &free,
            "--upstream",
            "mx.example.net:25",
            "--shadow",
            "--admin",
            &admin,
        ],
        "\"message\":\"listening\"",
        60,
    );
    assert!(status.is_none(), "serve exited: {err}");
    let records: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let warnings: Vec<String> = records
        .iter()
        .filter(|r| r["level"] == "WARN")
        .filter_map(|r| r["message"].as_str().map(str::to_string))
        .collect();
    for needle in [
        "shadow mode",
        "admin endpoint is not on a loopback address",
        "in plaintext",
    ] {
        assert!(
            warnings.iter().any(|w| w.contains(needle)),
            "no warning about {needle:?}: {warnings:#?}"
        );
    }
    let starting = records
        .iter()
        .find(|r| r["message"] == "replyfix starting")
        .expect("start record");
    assert_eq!(starting["mode"], "shadow");
}
