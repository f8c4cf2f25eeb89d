//! Every `examples:` entry of the built-in rules (rules/default.yaml), played
//! end to end: a fake upstream gives the example's reply at the example's
//! command, in a session that has the example's facts (authenticated,
//! recipients already accepted), through the real `replyfix serve`. The
//! client must see exactly what `replyfix explain` says, and what the
//! example's `expect` says (`NNN X.Y.Z`, `annotate` or `no_match`).
//!
//! `replyfix test-rules` checks the same examples against the rule engine
//! alone; this test proves the relay applies them at the right command with
//! the right session facts.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{
    AUTH_PASSWORD, AUTH_USER, DataEnd, FakeUpstream, Replyfix, SmtpClient, Step, base64,
    explained_batch,
};

/// One rule example, as rules/default.yaml writes it.
#[derive(Debug, Clone)]
struct Example {
    rule: String,
    /// Lines joined with ` | `.
    reply: String,
    command: String,
    expect: String,
    expect_text: Option<String>,
    authenticated: bool,
    recipients_accepted: u32,
    /// Needs TLS on a leg, which these tests cannot give.
    needs_tls: bool,
}

fn examples() -> Vec<Example> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/rules/default.yaml");
    let text = std::fs::read_to_string(path).expect("read rules/default.yaml");
    let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("parse rules/default.yaml");
    let mut out = Vec::new();
    for rule in doc["rules"].as_array().expect("rules: list") {
        let id = rule["id"].as_str().expect("rule id");
        for ex in rule["examples"].as_array().into_iter().flatten() {
            let s = |k: &str| ex[k].as_str().map(str::to_string);
            let flag = |k: &str| ex[k].as_bool().unwrap_or(false);
            out.push(Example {
                rule: id.to_string(),
                reply: s("reply").expect("example reply"),
                command: s("command").unwrap_or_else(|| "other".into()),
                expect: s("expect").expect("example expect"),
                expect_text: s("expect_text"),
                authenticated: flag("authenticated"),
                recipients_accepted: ex["recipients_accepted"].as_u64().unwrap_or(0) as u32,
                needs_tls: flag("client_tls") || flag("upstream_tls"),
            });
        }
    }
    out
}

/// The reply as the upstream sends it.
fn wire(reply: &str) -> String {
    reply
        .split(" | ")
        .map(|l| format!("{l}\r\n"))
        .collect::<String>()
}

/// The EHLO name that tells the shared fake upstream which example a
/// session plays.
fn ehlo_name(index: usize) -> String {
    format!("ex{index}.example.test")
}

/// What the fake upstream does for `line` in the session playing `ex`.
fn upstream_step(ex: &Example, line: &str) -> Step {
    let upper = line.to_ascii_uppercase();
    let target = wire(&ex.reply);
    let hit = match ex.command.as_str() {
        "mail" => upper.starts_with("MAIL "),
        "rcpt" => upper.starts_with("RCPT TO:<TARGET@"),
        "auth" => upper.starts_with("AUTH "),
        "data_end" if upper == "DATA" => {
            return Step::Data(DataEnd::Reply(target.trim_end_matches("\r\n").to_string()));
        }
        _ => false,
    };
    if hit {
        Step::Raw(target.into_bytes())
    } else {
        Step::Default
    }
}

/// A fake upstream serving every example, told apart by EHLO name, and a
/// replyfix in front of it.
fn shared_proxy(all: &Arc<Vec<Example>>) -> (FakeUpstream, Replyfix) {
    let examples = Arc::clone(all);
    let up = FakeUpstream::builder()
        .script_with_history(move |history, line| {
            let ehlo = history.first().map_or(line, String::as_str);
            let index = ehlo
                .strip_prefix("EHLO ex")
                .and_then(|r| r.split('.').next())
                .and_then(|n| n.parse::<usize>().ok());
            match index.and_then(|i| examples.get(i)) {
                Some(ex) => upstream_step(ex, line),
                None => Step::Default,
            }
        })
        .start();
    let rf = Replyfix::serve(up.addr);
    (up, rf)
}

/// Plays example `index` through `rf`; returns what the client saw and
/// the number of recipients accepted in the session at that point.
fn play(rf: &Replyfix, index: usize, ex: &Example) -> (String, u32) {
    let mut c: SmtpClient = rf.connect();
    c.set_read_timeout(Duration::from_secs(10));
    if ex.command == "greeting" {
        return (c.read_reply(), 0);
    }
    assert!(c.read_reply().starts_with("220 "));
    assert!(
        c.cmd(&format!("EHLO {}", ehlo_name(index)))
            .starts_with("250")
    );
    let token = base64(format!("\0{AUTH_USER}\0{AUTH_PASSWORD}").as_bytes());
    if ex.command == "auth" {
        return (c.cmd(&format!("AUTH PLAIN {token}")), 0);
    }
    if ex.authenticated {
        assert_eq!(
            c.cmd(&format!("AUTH PLAIN {token}")),
            "235 2.7.0 Authentication successful\r\n"
        );
    }
    if ex.command == "mail" {
        return (c.cmd("MAIL FROM:<sender@example.test>"), 0);
    }
    assert_eq!(c.cmd("MAIL FROM:<sender@example.test>"), "250 2.1.0 Ok\r\n");
    // DATA needs at least one accepted recipient.
    let accepted = if ex.command == "data_end" {
        ex.recipients_accepted.max(1)
    } else {
        ex.recipients_accepted
    };
    for i in 0..accepted {
        assert_eq!(
            c.cmd(&format!("RCPT TO:<ok{i}@example.net>")),
            "250 2.1.5 Ok\r\n"
        );
    }
    match ex.command.as_str() {
        "rcpt" => (c.cmd("RCPT TO:<target@example.net>"), accepted),
        "data_end" => {
            assert!(c.cmd("DATA").starts_with("354 "));
            c.send(b"Subject: rule example\r\n\r\nbody\r\n.\r\n");
            (c.read_reply(), accepted)
        }
        other => panic!("example command {other:?} not handled by this test"),
    }
}

/// The text of each line, without its code and separator.
fn bodies(reply: &str) -> Vec<&str> {
    reply
        .split_terminator("\r\n")
        .map(|l| l.get(4..).unwrap_or(""))
        .collect()
}

/// Checks an example's `expect` against what the client saw.
fn meets_expect(expect: &str, original: &str, got: &str) -> Result<(), String> {
    let lines: Vec<&str> = got.split_terminator("\r\n").collect();
    let well_formed = |code: &str| {
        lines.iter().enumerate().all(|(i, l)| {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            l.starts_with(&format!("{code}{sep}"))
        })
    };
    match expect {
        "no_match" if got == original => Ok(()),
        "no_match" => Err("not passed through unchanged".into()),
        "annotate" => {
            let code = &original[..3];
            let (orig, new) = (bodies(original), bodies(got));
            if !well_formed(code) {
                Err(format!("code {code} not kept on every line"))
            } else if new.len() != orig.len() + 1 || new[..orig.len()] != orig[..] {
                Err("not the original lines plus one annotation".into())
            } else {
                Ok(())
            }
        }
        codes => {
            let (code, enhanced) = codes.split_once(' ').ok_or("expect: CODE X.Y.Z")?;
            let ok = well_formed(code)
                && bodies(got)
                    .iter()
                    .all(|b| b.starts_with(&format!("{enhanced} ")) || *b == enhanced);
            if ok {
                Ok(())
            } else {
                Err(format!("not {code} {enhanced} on every line"))
            }
        }
    }
}

/// Checks what the client saw for `ex` against the explanation and the
/// example's own expectation; `Err` says what went wrong.
fn check(
    ex: &Example,
    got: &str,
    accepted: u32,
    explained: &(String, Option<String>),
) -> Result<(), String> {
    let (expected, rule) = explained;
    let original = wire(&ex.reply);
    let mut problems = Vec::new();
    if got != expected {
        problems.push(format!(
            "replyfix explain says the client sees {expected:?}"
        ));
    }
    let decided_here = rule.as_deref() == Some(ex.rule.as_str());
    if ex.expect == "no_match" {
        // A negative example of this rule: another rule may still decide.
        if decided_here {
            problems.push("this rule decided, expected no_match".into());
        }
    } else {
        if !decided_here {
            problems.push(format!("decided by rule {rule:?}"));
        }
        if let Err(why) = meets_expect(&ex.expect, &original, got) {
            problems.push(why);
        }
    }
    if let Some(t) = &ex.expect_text
        && !got.contains(t.as_str())
    {
        problems.push(format!("text {t:?} missing"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "rule {} expect {:?} at {} (authenticated {}, accepted {accepted}): {:?} -> client saw {got:?}: {}",
            ex.rule,
            ex.expect,
            ex.command,
            ex.authenticated,
            ex.reply,
            problems.join("; ")
        ))
    }
}

#[test]
fn every_builtin_rule_example_gives_the_same_reply_end_to_end() {
    let all = Arc::new(examples());
    assert!(all.len() >= 20, "too few examples found: {}", all.len());
    let playable: Vec<usize> = (0..all.len()).filter(|&i| !all[i].needs_tls).collect();
    assert!(
        playable.len() + 5 >= all.len(),
        "only {} of {} examples playable",
        playable.len(),
        all.len()
    );
    let (_up, shared) = shared_proxy(&all);

    // Play every example; a greeting example needs its own upstream.
    let mut seen: Vec<(usize, String, u32)> = Vec::new();
    for &i in &playable {
        let ex = &all[i];
        let (got, accepted) = if ex.command == "greeting" {
            let up = FakeUpstream::builder()
                .greeting(Step::Raw(wire(&ex.reply).into_bytes()))
                .start();
            let rf = Replyfix::serve(up.addr);
            play(&rf, i, ex)
        } else {
            play(&shared, i, ex)
        };
        seen.push((i, got, accepted));
    }

    // Explain them, batched by the session facts.
    let mut groups: BTreeMap<(String, u32, bool), Vec<usize>> = BTreeMap::new();
    for (k, (i, _, accepted)) in seen.iter().enumerate() {
        let ex = &all[*i];
        groups
            .entry((ex.command.clone(), *accepted, ex.authenticated))
            .or_default()
            .push(k);
    }
    let mut failures = Vec::new();
    for ((command, accepted, authenticated), members) in groups {
        let replies: Vec<&str> = members
            .iter()
            .map(|&k| all[seen[k].0].reply.as_str())
            .collect();
        let answers = explained_batch(&command, accepted, authenticated, &replies);
        for (k, explained) in members.iter().zip(&answers) {
            let (i, got, accepted) = &seen[*k];
            if let Err(e) = check(&all[*i], got, *accepted, explained) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} examples failed:\n{}",
        failures.len(),
        playable.len(),
        failures.join("\n")
    );
}
