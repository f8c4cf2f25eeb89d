//! Micro-benchmarks of the reply parser and the rule engine's hot path
//! (targets in PROTOCOL.md W6 and the rule-engine brief: a reply no rule can
//! match is judged in at most 100 ns; a 530 through the built-in rules in at
//! most 2 µs). Results are recorded in bench/README.md.

use divan::{Bencher, black_box};
use replyfix::rules::{RuleSet, SessionFacts};
use replyfix::smtp::reply::parse_one;
use replyfix::smtp::{CommandKind, Reply};

fn main() {
    divan::main();
}

const ONE_LINE: &[u8] = b"530 5.7.0 Must issue a STARTTLS command first\r\n";
const EIGHT_LINES: &[u8] = b"250-mx.example.org at your service, [192.0.2.1]\r\n\
250-SIZE 35882577\r\n\
250-8BITMIME\r\n\
250-STARTTLS\r\n\
250-ENHANCEDSTATUSCODES\r\n\
250-PIPELINING\r\n\
250-CHUNKING\r\n\
250 SMTPUTF8\r\n";
const CONFIG_ERROR: &[u8] = b"530 5.7.1 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.\r\n";

fn reply(bytes: &[u8]) -> Reply {
    parse_one(bytes).expect("valid").expect("one reply")
}

#[divan::bench]
fn parse_1_line(b: Bencher) {
    b.bench(|| parse_one(black_box(ONE_LINE)));
}

#[divan::bench]
fn parse_8_lines(b: Bencher) {
    b.bench(|| parse_one(black_box(EIGHT_LINES)));
}

#[divan::bench]
fn judge_250_no_rule_can_match(b: Bencher) {
    let rules = RuleSet::builtin();
    let r = reply(b"250 2.1.5 Ok\r\n");
    let facts = SessionFacts::new(CommandKind::Rcpt);
    b.bench(|| rules.judge(black_box(&r), black_box(&facts)));
}

#[divan::bench]
fn judge_530_starttls_legit(b: Bencher) {
    let rules = RuleSet::builtin();
    let r = reply(ONE_LINE);
    let facts = SessionFacts::new(CommandKind::Mail);
    b.bench(|| rules.judge(black_box(&r), black_box(&facts)));
}

#[divan::bench]
fn judge_530_config_error_at_rcpt(b: Bencher) {
    let rules = RuleSet::builtin();
    let r = reply(CONFIG_ERROR);
    let facts = SessionFacts::new(CommandKind::Rcpt);
    b.bench(|| rules.judge(black_box(&r), black_box(&facts)));
}

#[divan::bench]
fn judge_530_no_rule_matches(b: Bencher) {
    // A 530 whose text no built-in rule recognises: every text regex runs.
    let rules = RuleSet::builtin();
    let r = reply(b"530 5.7.0 Something else entirely happened here\r\n");
    let facts = SessionFacts::new(CommandKind::Rcpt);
    b.bench(|| rules.judge(black_box(&r), black_box(&facts)));
}
