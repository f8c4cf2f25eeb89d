//! Accuracy of the built-in rules on the labelled corpus
//! (`tests/fixtures/corpus/dev.yaml`, see the README beside it for what a
//! right decision is). Prints a table (run with `--nocapture`) and asserts
//! every decision is right: a legitimate 530 is never remapped, a misused
//! 530 is remapped to its label's class, a non-530 never changes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use replyfix::rules::{Action, RuleSet, SessionFacts, Verdict};
use replyfix::smtp::reply::parse_one;
use replyfix::smtp::{CommandKind, EnhancedCode, Reply, ReplyCode};
use serde::Deserialize;

#[derive(Deserialize)]
struct Corpus {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    id: String,
    text: String,
    code: String,
    command: String,
    tls: Option<bool>,
    authenticated: Option<bool>,
    label: String,
}

fn corpus_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/dev.yaml")
}

/// The item's reply: lines split on ` | `; a line that does not start with
/// the code gets it.
fn build_reply(item: &Item) -> Reply {
    let code = item.code.trim();
    let parts: Vec<&str> = item.text.split(" | ").collect();
    let mut wire = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let sep = if i + 1 < parts.len() { '-' } else { ' ' };
        let body = if part.starts_with(code)
            && matches!(part.as_bytes().get(3), None | Some(b' ' | b'-'))
        {
            part.get(4..).unwrap_or("")
        } else {
            part
        };
        wire.extend_from_slice(format!("{code}{sep}{body}\r\n").as_bytes());
    }
    match parse_one(&wire) {
        Ok(Some(r)) => r,
        other => panic!("item {}: cannot build a reply: {other:?}", item.id),
    }
}

fn enhanced_is(r: &Reply, class_subject: (u8, u16), detail: Option<u16>) -> bool {
    r.enhanced().is_some_and(|e: EnhancedCode| {
        (e.class, e.subject) == class_subject && detail.is_none_or(|d| d == e.detail)
    })
}

/// Does `seen` (what the client would see) match the label (README)?
fn remap_fits_label(label: &str, seen: &Reply) -> bool {
    let code = seen.code().get();
    match label {
        "user_unknown" => code == 550 && enhanced_is(seen, (5, 1), Some(1)),
        "blocked" | "relay_denied" | "policy" => {
            matches!(code, 550 | 554) && enhanced_is(seen, (5, 7), None)
        }
        "sender_rejected" => {
            (code == 553 && enhanced_is(seen, (5, 1), Some(8)))
                || (matches!(code, 550 | 553) && enhanced_is(seen, (5, 7), None))
        }
        "mailbox_full" => {
            (code == 452 && enhanced_is(seen, (4, 2), Some(2)))
                || (code == 552 && enhanced_is(seen, (5, 2), Some(2)))
        }
        "auth_failed" => code == 535,
        // "other": any honest remap away from 530.
        _ => code != 530,
    }
}

#[test]
fn builtin_rules_decide_every_labelled_corpus_reply_right() {
    let path = corpus_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("corpus fixture {} is missing: {e}", path.display()));
    let corpus: Corpus = serde_saphyr::from_str(&text).expect("corpus parses");
    let rules = RuleSet::builtin();
    let r530 = ReplyCode::new(530).unwrap();

    // label -> (group, total, right)
    let mut table: BTreeMap<(bool, String), (u32, u32)> = BTreeMap::new();
    let mut violations = Vec::new();
    let mut wrong = Vec::new();
    for item in &corpus.items {
        let reply = build_reply(item);
        let mut facts = SessionFacts::new(item.command.parse().unwrap_or(CommandKind::Other));
        let tls = item.tls.unwrap_or(false);
        facts.client_tls = tls;
        facts.upstream_tls = tls;
        facts.authenticated = item.authenticated.unwrap_or(false);
        let verdict = rules.judge(&reply, &facts);
        let seen = verdict.reply(&reply);
        let is_530 = reply.code() == r530;
        let remapped = matches!(
            verdict,
            Verdict::Rewrite {
                action: Action::Remap,
                ..
            }
        );
        let right = if !is_530 {
            let unchanged = seen == &reply;
            if !unchanged {
                violations.push(format!("{}: non-530 control changed: {seen}", item.id));
            }
            unchanged
        } else if item.label == "starttls_required" {
            // A demand for TLS is about replyfix's own upstream leg: over a
            // plaintext one the operator's 451 4.7.0, over TLS kept
            // (docs/rules.md "TLS demanded by the upstream").
            let mut over_tls = facts;
            over_tls.upstream_tls = true;
            let kept = rules.judge(&reply, &over_tls);
            let plain = if tls {
                // Observed on a TLS session: judge the plaintext leg too.
                let mut f = facts;
                f.upstream_tls = false;
                rules.judge(&reply, &f)
            } else {
                verdict.clone()
            };
            let temporary = plain.rule() == Some("starttls-required-upstream-leg")
                && plain.reply(&reply).code().get() == 451;
            let keeps = kept.action() != Some(Action::Remap);
            if !keeps {
                violations.push(format!(
                    "{}: TLS demand remapped over a TLS upstream leg: {}",
                    item.id,
                    kept.reply(&reply)
                ));
            }
            temporary && keeps
        } else if item.label == "auth_required" {
            if remapped {
                violations.push(format!("{}: legitimate 530 remapped: {seen}", item.id));
            }
            !remapped
        } else {
            remapped && remap_fits_label(&item.label, seen)
        };
        if !right {
            wrong.push(format!(
                "{} [{}] {} at {}: {:?} -> {}",
                item.id,
                item.label,
                reply,
                facts.command,
                verdict.rule(),
                seen
            ));
        }
        let e = table.entry((is_530, item.label.clone())).or_default();
        e.0 += 1;
        e.1 += u32::from(right);
    }

    println!(
        "\ncorpus: {} ({} items), rules {}",
        path.display(),
        corpus.items.len(),
        rules.version()
    );
    println!(
        "{:<8} {:<18} {:>5} {:>5} {:>8}",
        "group", "label", "n", "right", "accuracy"
    );
    let (mut n530, mut r530c, mut nctl, mut rctl) = (0, 0, 0, 0);
    for ((is_530, label), (n, right)) in &table {
        let group = if *is_530 { "530" } else { "control" };
        println!(
            "{group:<8} {label:<18} {n:>5} {right:>5} {:>7.1}%",
            100.0 * f64::from(*right) / f64::from(*n)
        );
        if *is_530 {
            n530 += n;
            r530c += right;
        } else {
            nctl += n;
            rctl += right;
        }
    }
    let pct = |r: u32, n: u32| {
        if n == 0 {
            100.0
        } else {
            100.0 * f64::from(r) / f64::from(n)
        }
    };
    println!("530s:     {r530c}/{n530} right ({:.1}%)", pct(r530c, n530));
    println!(
        "controls: {rctl}/{nctl} unchanged ({:.1}%)",
        pct(rctl, nctl)
    );
    println!(
        "overall:  {}/{} right ({:.1}%)",
        r530c + rctl,
        n530 + nctl,
        pct(r530c + rctl, n530 + nctl)
    );
    for w in &wrong {
        println!("wrong: {w}");
    }
    assert!(
        violations.is_empty(),
        "hard guarantees broken:\n{}",
        violations.join("\n")
    );
    assert!(
        corpus.items.len() >= 90,
        "the corpus fixture looks cut short"
    );
    assert!(
        wrong.is_empty(),
        "{} of {} corpus decisions wrong (see the list above)",
        wrong.len(),
        corpus.items.len()
    );
}
