//! The commands the README and the docs show, run against the binary.
//!
//! Every command line in the README's and docs/rules.md's shell blocks (```` ```sh ````) must be in
//! [`EXPECTED`], with the lines its output must contain (outputs that can
//! drift are checked for their key lines only); a command shown there and
//! not listed here fails the test, so the docs cannot show a command nobody
//! ran. Commands that install or run the whole suite are listed as not run,
//! with the reason; `serve` and `demo` are run the way a reader would, on
//! free loopback ports, and stopped. The commands docs/debugging-bounces.md
//! shows are run with their whole output compared to the page.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, poll, replyfix_bin, run_bounded};

/// What a documented command must do.
enum Expect {
    /// Exit 0, and stdout holds each of these.
    Prints(&'static [&'static str]),
    /// A long-running command: it must still be running after start-up and
    /// have logged each of these (JSON records' messages).
    Runs(&'static [&'static str]),
    /// Not run by this test, and why.
    NotRun(&'static str),
}

/// Each documented command (as written, after `$ ` and without a trailing
/// `# comment`) and what it must do.
const EXPECTED: &[(&str, Expect)] = &[
    (
        "cargo run --release -- demo",
        Expect::Prints(&["(530 -> 550 5.1.1)", "(kept, with a hint)", "(unchanged)"]),
    ),
    (
        "cargo install --path .",
        Expect::NotRun("installs into ~/.cargo/bin"),
    ),
    (
        "replyfix serve --listen 127.0.0.1:2525 --upstream mail.example.net:25",
        Expect::Runs(&["listening", "replyfix starting"]),
    ),
    (
        "cargo test --all-targets",
        Expect::NotRun("it is the suite this test belongs to"),
    ),
    (
        "replyfix explain --command rcpt \"530 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.\"",
        Expect::Prints(&["decision:    rule 'config-error-ambiguous'", "554 5.0.0"]),
    ),
    (
        "replyfix explain --command rcpt --recipients-accepted 1 \"530 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.\"",
        Expect::Prints(&["550 5.1.1"]),
    ),
    (
        "replyfix explain --command mail \"530 5.7.0 Must issue a STARTTLS command first\"",
        Expect::Prints(&["451 4.7.0 replyfix: the server said 530: it demands TLS"]),
    ),
    (
        "replyfix explain --command auth \"530 5.7.8 Error: authentication failed: bad user name or password\"",
        Expect::Prints(&["535 5.7.8"]),
    ),
    (
        "replyfix check -c config/replyfix.yaml",
        Expect::Prints(&["config config/replyfix.yaml:"]),
    ),
    (
        "replyfix test-rules rules/default.yaml",
        Expect::Prints(&[" passed, 0 failed"]),
    ),
    (
        "replyfix explain --command rcpt \"530 5.7.1 <typo@example.net>: Recipient address rejected: User unknown in local recipient table\"",
        Expect::Prints(&["550 5.1.1 <typo@example.net>"]),
    ),
    (
        "replyfix explain --command rcpt \"530 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org\"",
        Expect::Prints(&["554 5.7.1 Service unavailable"]),
    ),
    (
        "replyfix explain --command rcpt \"530 5.7.1 Client host rejected: your IP is listed in the PBL; please use authenticated SMTP\"",
        Expect::Prints(&[
            "rule 'auth-required': annotate",
            "530 5.7.1 replyfix: legitimate",
        ]),
    ),
    (
        "replyfix explain --command mail --authenticated \"530 5.7.9 Authentication mechanism is too weak\"",
        Expect::Prints(&["530 5.7.9 replyfix:", "stronger or further authentication"]),
    ),
    (
        "replyfix demo --once",
        Expect::Prints(&["(530 -> 550 5.1.1)", "(kept, with a hint)"]),
    ),
];

/// The command lines of the ```` ```sh ```` blocks of a Markdown file.
fn documented_commands(file: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        if !(line.starts_with("replyfix ") || line.starts_with("cargo ")) {
            continue;
        }
        // A trailing `# comment` (outside quotes) is not part of the command.
        let line = match line.find("  #") {
            Some(at) if line[..at].matches('"').count() % 2 == 0 => line[..at].trim_end(),
            _ => line,
        };
        commands.push(line.to_string());
    }
    commands
}

/// Splits a command line into words: spaces separate, double quotes group.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            _ => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// The replyfix arguments of a documented command (`cargo run --release --
/// ARGS` runs the same binary); `demo` gets `--once` and a free port, and
/// `serve` a free port.
fn replyfix_args(line: &str) -> Vec<String> {
    let mut w = words(line);
    if w.first().is_some_and(|x| x == "cargo") {
        let at = w.iter().position(|x| x == "--").expect("cargo run -- ARGS");
        w.drain(..=at);
    } else {
        w.remove(0);
    }
    let free = format!("127.0.0.1:{}", free_port());
    if w.first().is_some_and(|x| x == "demo") {
        if !w.iter().any(|x| x == "--once") {
            w.push("--once".into());
        }
        w.extend(["--listen".to_string(), free]);
    } else if w.first().is_some_and(|x| x == "serve")
        && let Some(at) = w.iter().position(|x| x == "--listen")
    {
        w[at + 1] = free;
    }
    w
}

fn check(line: &str, expect: &Expect) {
    let root = env!("CARGO_MANIFEST_DIR");
    match expect {
        Expect::NotRun(why) => println!("not run: {line} ({why})"),
        Expect::Prints(needles) => {
            let args = replyfix_args(line);
            let out = run_bounded(
                Command::new(replyfix_bin()).args(&args).current_dir(root),
                Duration::from_secs(60),
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{line}: {}\n{stdout}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            for needle in *needles {
                assert!(
                    stdout.contains(needle),
                    "{line}: no {needle:?} in:\n{stdout}"
                );
            }
            println!("ok: {line}");
        }
        Expect::Runs(messages) => {
            use std::io::BufRead;
            let args = replyfix_args(line);
            let mut child = Command::new(replyfix_bin())
                .args(&args)
                .current_dir(root)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start");
            let stderr = child.stderr.take().expect("stderr");
            let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let sink = seen.clone();
            let reader = std::thread::spawn(move || {
                for l in std::io::BufReader::new(stderr).lines() {
                    let Ok(l) = l else { break };
                    let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                    s.push_str(&l);
                    s.push('\n');
                }
            });
            let has = |m: &str| {
                seen.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .lines()
                    .any(|l| l.contains(&format!("\"message\":\"{m}\"")))
            };
            // Started (every record there) or exited, within a bound that a
            // debug build on a loaded machine meets.
            let outcome = poll(Duration::from_secs(60), || {
                if let Some(status) = child.try_wait().ok().flatten() {
                    return Some(Some(status));
                }
                messages.iter().all(|m| has(m)).then_some(None)
            });
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            let err = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
            assert!(
                matches!(outcome, Some(None)),
                "{line}: exited or did not start ({outcome:?}):\n{err}"
            );
            println!("ok: {line}");
        }
    }
}

#[test]
fn every_command_the_readme_and_the_rules_doc_show_works() {
    let mut shown = documented_commands("README.md");
    shown.extend(documented_commands("docs/rules.md"));
    assert!(shown.len() >= 10, "too few commands found: {shown:?}");
    for line in &shown {
        let Some((_, expect)) = EXPECTED.iter().find(|(cmd, _)| cmd == line) else {
            panic!("the docs show `{line}`, which tests/docs.rs does not run: add it to EXPECTED");
        };
        check(line, expect);
    }
    // Nothing in the table that the docs no longer show.
    for (cmd, _) in EXPECTED {
        assert!(
            shown.iter().any(|s| s == cmd),
            "EXPECTED lists `{cmd}`, which the docs no longer show: remove it"
        );
    }
}

#[test]
fn words_split_like_a_shell_for_the_quoting_the_docs_use() {
    assert_eq!(
        words(r#"replyfix explain --command rcpt "530 a b" x"#),
        ["replyfix", "explain", "--command", "rcpt", "530 a b", "x"]
    );
    assert_eq!(
        documented_commands("README.md").first().map(String::as_str),
        Some("cargo run --release -- demo")
    );
}

#[test]
fn the_example_configuration_shows_every_documented_key() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/configuration.md")).expect("docs");
    let example = std::fs::read_to_string(root.join("config/replyfix.yaml")).expect("example");
    // Every `key:` written in the example, set or commented out.
    let shown: Vec<&str> = example
        .lines()
        .map(|l| l.trim_start_matches([' ', '#', '-']).trim_start())
        .filter_map(|l| l.split_once(':').map(|(k, _)| k))
        .collect();
    let mut documented = 0;
    for row in doc.lines().filter(|l| l.starts_with("| `")) {
        let key = row[3..].split('`').next().unwrap_or_default();
        documented += 1;
        assert!(
            shown.contains(&key),
            "docs/configuration.md documents `{key}`, which config/replyfix.yaml does not show"
        );
    }
    assert!(documented > 40, "only {documented} keys found in the docs");
}

/// The commands docs/debugging-bounces.md shows (`$ replyfix ...` in its
/// code blocks, `\` continuations joined), each with the output printed
/// under it: run through bash as a reader would (its brace expansion
/// included), the output must be exactly what the page shows, but for the
/// rules' version digest, which changes with every rule edit.
#[test]
fn the_outputs_the_bounce_debugging_guide_shows_are_what_replyfix_prints() {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/debugging-bounces.md"),
    )
    .expect("docs/debugging-bounces.md");
    let lines: Vec<&str> = page.lines().collect();
    let digest = regex::Regex::new(r"builtin-[0-9a-f]{12}").unwrap();
    let normal = |text: &str| -> Vec<String> {
        let text = digest.replace_all(text, "builtin-<digest>");
        let mut out: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        while out.last().is_some_and(|l| l.is_empty()) {
            out.pop();
        }
        out
    };
    let mut i = 0;
    let mut ran = 0;
    while i < lines.len() {
        let Some(first) = lines[i].strip_prefix("$ replyfix ") else {
            i += 1;
            continue;
        };
        let mut command = first.to_string();
        i += 1;
        while let Some(head) = command.strip_suffix('\\') {
            command = format!("{head} {}", lines[i].trim());
            i += 1;
        }
        let start = i;
        while i < lines.len() && !lines[i].starts_with("```") && !lines[i].starts_with("$ ") {
            i += 1;
        }
        let shown = normal(&lines[start..i].join("\n"));
        let mut bash = Command::new("bash");
        bash.arg("-c")
            .arg(format!("\"$REPLYFIX\" {command}"))
            .env("REPLYFIX", replyfix_bin())
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        let out = run_bounded(&mut bash, Duration::from_secs(120));
        let printed = normal(&String::from_utf8_lossy(&out.stdout));
        if printed != shown {
            let at = printed
                .iter()
                .zip(&shown)
                .position(|(a, b)| a != b)
                .unwrap_or(printed.len().min(shown.len()));
            panic!(
                "docs/debugging-bounces.md shows `replyfix {command}` printing something else \
                 from its line {}:\n  page: {:?}\n  real: {:?}\n(update the page)",
                at + 1,
                shown.get(at),
                printed.get(at)
            );
        }
        ran += 1;
    }
    assert!(
        ran >= 5,
        "only {ran} commands found in docs/debugging-bounces.md"
    );
}
