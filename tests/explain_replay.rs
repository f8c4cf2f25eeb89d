//! `replyfix replay` on the recorded transcript fixture
//! (`tests/fixtures/transcripts/`): what a candidate rule set changes,
//! compared with what was sent.

use std::path::{Path, PathBuf};
use std::process::Command;

use replyfix::explain::transcript::{ReplayedEntry, read_transcript};
use replyfix::rules::{RuleSet, SessionFacts};
use replyfix::smtp::CommandKind;
use replyfix::smtp::reply::parse_one;
use replyfix::transcript::{TranscriptEntry, TranscriptWriter, unescape};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/transcripts")
}

fn candidate() -> RuleSet {
    RuleSet::load_paths(&[
        dir().join("candidate.yaml"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.yaml"),
    ])
    .expect("candidate rules load")
    .rules
}

fn replay(
    rules: &RuleSet,
) -> (
    replyfix::explain::transcript::ReplaySummary,
    Vec<ReplayedEntry>,
) {
    let file = std::fs::File::open(dir().join("session.jsonl")).expect("fixture");
    let mut entries = Vec::new();
    let s = read_transcript(std::io::BufReader::new(file), rules, |r| {
        entries.push(r.expect("every fixture line is valid").clone())
    })
    .expect("read");
    (s, entries)
}

#[test]
fn builtin_rules_reproduce_what_was_recorded() {
    let (s, entries) = replay(&RuleSet::builtin());
    assert_eq!(s.entries, 6);
    assert_eq!(s.changed, 0, "{entries:#?}");
    for e in &entries {
        assert_eq!(e.candidate.rule(), e.entry.rule.as_deref());
    }
}

#[test]
fn candidate_rules_change_exactly_the_first_rcpt_and_the_quota_reply() {
    let (s, entries) = replay(&candidate());
    let changed: Vec<(u64, &str, Option<&str>)> = entries
        .iter()
        .filter(|e| e.changed)
        .map(|e| (e.line, e.entry.session.as_str(), e.candidate.rule()))
        .collect();
    assert_eq!(
        changed,
        vec![
            (2, "s-2", Some("config-error-first-rcpt")),
            (4, "s-4", Some("quota-is-temporary")),
        ]
    );
    assert_eq!((s.entries, s.changed, s.unchanged), (6, 2, 4));
    assert_eq!(s.by_rule.get("quota-is-temporary"), Some(&(1, 0)));
    assert_eq!(s.by_rule.get("(no rule)"), Some(&(0, 1)));
    let quota = &entries[3];
    assert_eq!(quota.context, CommandKind::Rcpt);
    assert_eq!(
        quota.candidate_reply().raw().as_ref(),
        b"452 4.2.2 Mailbox full: quota exceeded\r\n"
    );
    let shown = quota.to_string();
    assert!(
        shown.starts_with("[CHANGED] line 4 session s-4 rcpt"),
        "{shown}"
    );
    assert!(
        shown.contains("recorded:  552 5.2.2 Mailbox full"),
        "{shown}"
    );
    assert!(
        shown.contains("candidate: 452 4.2.2 Mailbox full"),
        "{shown}"
    );
}

#[test]
fn cli_replay_json_lines_and_summary() {
    let out = Command::new(env!("CARGO_BIN_EXE_replyfix"))
        .arg("replay")
        .arg(dir().join("session.jsonl"))
        .arg("--rules")
        .arg(dir().join("candidate.yaml"))
        .arg("--rules")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/default.yaml"))
        .args(["--json", "--changed-only"])
        .output()
        .expect("run replyfix");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["line"], 2);
    assert_eq!(lines[0]["changed"], true);
    assert_eq!(lines[0]["recorded"]["rule"], "config-error-ambiguous");
    assert_eq!(lines[0]["candidate"]["rule"], "config-error-first-rcpt");
    assert_eq!(lines[0]["candidate"]["decision"], "remap");
    assert!(
        lines[0]["candidate"]["sends"]
            .as_str()
            .is_some_and(|s| s.starts_with("550 5.1.1 "))
    );
    assert_eq!(lines[2]["type"], "summary");
    assert_eq!(lines[2]["changed"], 2);
    assert_eq!(lines[2]["unchanged"], 4);
    assert_eq!(lines[2]["bad_lines"], 0);
    assert_eq!(lines[2]["by_rule"]["quota-is-temporary"]["changed"], 1);
}

#[test]
fn writer_output_replays_and_bad_lines_are_reported_not_fatal() {
    let tmp = std::env::temp_dir().join(format!("replyfix-replay-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let rules = RuleSet::builtin();
    {
        let w = TranscriptWriter::open(&tmp).expect("open");
        let reply = parse_one(b"530 5.7.1 Relaying denied\r\n")
            .unwrap()
            .unwrap();
        let mut facts = SessionFacts::new(CommandKind::Rcpt);
        facts.client_tls = true;
        let v = rules.judge(&reply, &facts);
        w.record(&TranscriptEntry::new(
            "s-9",
            &facts,
            &reply,
            &v,
            rules.version(),
        ));
        w.flush().expect("flush");
    }
    std::fs::write(
        &tmp,
        std::fs::read_to_string(&tmp).unwrap() + "{\"not\":\"an entry\"}\n\n",
    )
    .unwrap();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    let s = read_transcript(
        std::io::BufReader::new(std::fs::File::open(&tmp).unwrap()),
        &rules,
        |r| match r {
            Ok(e) => ok.push(e.clone()),
            Err(e) => bad.push(e.to_string()),
        },
    )
    .expect("read");
    let _ = std::fs::remove_file(&tmp);
    assert_eq!(s.entries, 1);
    assert_eq!(ok[0].entry.rule.as_deref(), Some("relay-denied"));
    assert!(!ok[0].changed);
    assert!(ok[0].entry.client_tls);
    assert_eq!(bad.len(), 1);
    assert!(bad[0].starts_with("line 2:"), "{bad:?}");
    assert_eq!(
        unescape(&ok[0].entry.reply).unwrap(),
        b"530 5.7.1 Relaying denied\r\n"
    );
}
