//! Micro-benchmarks of the reply parser, the rule engine's hot path
//! (targets in docs/protocol.md W6 and bench/README.md: a reply no rule can
//! match is judged in at most 100 ns; a 530 through the built-in rules in at
//! most 2 µs) and the DATA end-of-data scanner (D1, D6: bytes per second).
//! Results are recorded in bench/README.md and bench/RESULTS.md. (The
//! scanner benchmarks live here so that no second bench target is needed.)

use divan::{Bencher, black_box};
use replyfix::rules::{RuleSet, SessionFacts};
use replyfix::smtp::framing::{DataScan, DataScanner};
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

/// `lines` lines of `width` printable bytes, each ending in CRLF, then the
/// end of data.
fn message(width: usize, lines: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity((width + 2) * lines + 5);
    for i in 0..lines {
        m.extend((0..width).map(|j| b'A' + ((i + j) % 26) as u8));
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b".\r\n");
    m
}

fn scan_whole(b: Bencher, input: &[u8]) {
    let mut out = bytes::BytesMut::with_capacity(input.len() + 1);
    b.counter(divan::counter::BytesCount::new(input.len()))
        .bench_local(|| {
            out.clear();
            let mut scanner = DataScanner::new();
            let scan = scanner.scan(black_box(input), false, &mut out);
            assert!(matches!(scan, DataScan::End { .. }));
        });
}

/// About 1 MiB of 78-byte text lines (a typical plain-text or base64 body).
#[divan::bench]
fn scan_end_of_data_78_byte_lines(b: Bencher) {
    scan_whole(b, &message(78, 13_000));
}

/// About 1 MiB of 998-byte lines (the longest RFC 5322 allows).
#[divan::bench]
fn scan_end_of_data_998_byte_lines(b: Bencher) {
    scan_whole(b, &message(998, 1_050));
}
