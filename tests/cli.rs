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
fn explain_keeps_the_legitimate_starttls_530_with_a_hint() {
    let out = replyfix(&[
        "explain",
        "--command",
        "mail",
        "530 5.7.0 Must issue a STARTTLS command first",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("530-5.7.0 Must issue a STARTTLS command first"),
        "{text}"
    );
    assert!(text.contains("530 5.7.0 replyfix: legitimate"), "{text}");
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
