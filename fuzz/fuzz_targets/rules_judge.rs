//! Rules loading and `judge` (W1–W4, P5): rule files generated from the fuzz
//! input are loaded with `RuleSet::from_sources`; whatever loads, judging any
//! reply in any context never produces or touches a 2xx, 3xx or 421 (W2),
//! keeps code and enhanced class together on every line (W1), never puts a
//! CR, LF or NUL into a line that the original did not carry (W3), and its
//! output reads back on the wire as one reply with one code (W4).
#![no_main]

use std::fmt::Write;

use libfuzzer_sys::fuzz_target;
use replyfix::rules::{Action, RuleSet, SessionFacts, Verdict};
use replyfix::smtp::reply::parse_one;
use replyfix::smtp::{CommandKind, Reply};
use replyfix_fuzz::Input;

const CODES: [&str; 14] = [
    "530",
    "550",
    "421",
    "250",
    "354",
    "451",
    "5xx",
    "4xx",
    "x3x",
    "2xx",
    "[530, 535]",
    "599",
    "\"53x\"",
    "abc",
];
const ENHANCED: [&str; 8] = [
    "\"5.7.*\"",
    "\"5.7.0\"",
    "\"4.*.*\"",
    "\"2.0.0\"",
    "\"5.1.1\"",
    "\"9.9\"",
    "[\"5.7.0\", \"5.1.*\"]",
    "5",
];
const REGEXES: [&str; 8] = [
    "'auth'",
    "'^No such'",
    "'\\bstart ?tls\\b'",
    "'.'",
    "'('",
    "'(?i)x{2,}'",
    "''",
    "'\\xff'",
];
const TEXTS: [&str; 6] = [
    "No such user",
    "Must issue a STARTTLS command first",
    "Authentication required",
    "\u{1b}[31m",
    "",
    "a",
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let yaml = rules_yaml(&mut input);
    let loaded = match RuleSet::from_sources(&[("fuzz.yaml".to_string(), yaml)]) {
        Ok(l) => l,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let rules = loaded.rules;
    for _ in 0..1 + input.below(8) {
        let Some(reply) = reply(&mut input) else {
            continue;
        };
        let kind = CommandKind::ALL[input.below(CommandKind::ALL.len())];
        let flags = input.byte();
        let mut facts = SessionFacts::new(kind);
        facts.client_tls = flags & 1 != 0;
        facts.upstream_tls = flags & 2 != 0;
        facts.authenticated = flags & 4 != 0;
        facts.recipients_accepted = u32::from(flags >> 4);
        facts.listener = "default";
        facts.upstream = "default";
        let verdict = rules.judge(&reply, &facts);
        assert_eq!(
            verdict,
            rules.judge(&reply, &facts),
            "judge is deterministic"
        );
        check(&reply, &verdict);
    }
});

/// A YAML rule file built from the input: mostly well-formed rules with
/// fuzz-chosen values (some invalid on purpose), sometimes raw bytes.
fn rules_yaml(input: &mut Input<'_>) -> String {
    let mut y = String::from("rules:\n");
    for n in 0..input.below(5) {
        let _ = writeln!(y, "  - id: r{n}\n    description: fuzz rule {n}\n    when:");
        let keys = input.byte();
        if keys & 1 != 0 {
            let _ = writeln!(y, "      code: {}", CODES[input.below(CODES.len())]);
        }
        if keys & 2 != 0 {
            let _ = writeln!(
                y,
                "      enhanced: {}",
                ENHANCED[input.below(ENHANCED.len())]
            );
        }
        if keys & 4 != 0 {
            let _ = writeln!(y, "      text: {}", REGEXES[input.below(REGEXES.len())]);
        }
        if keys & 8 != 0 {
            let k = CommandKind::ALL[input.below(CommandKind::ALL.len())];
            let _ = writeln!(y, "      command: {k}");
        }
        if keys & 16 != 0 {
            let _ = writeln!(y, "      client_tls: {}", input.byte() & 1 == 1);
        }
        if keys & 32 != 0 {
            let _ = writeln!(y, "      recipients_accepted: {{min: {}}}", input.below(4));
        }
        if keys & 0x7f == 0 {
            y.push_str("      {}\n");
        }
        y.push_str("    then:\n");
        match input.byte() % 4 {
            0 => y.push_str("      keep: true\n"),
            1 => {
                let _ = writeln!(y, "      annotate: {}", dq(input.bytes(24)));
            }
            _ => {
                let code = 200 + input.below(400);
                let e = format!("{}.{}.{}", input.below(6), input.below(8), input.below(10));
                let _ = writeln!(y, "      remap: {{code: {code}, enhanced: \"{e}\"");
                if input.byte() & 1 == 1 {
                    let _ = write!(y, "        , text: {}", dq(input.bytes(24)));
                }
                y.push_str("        }\n");
                if input.byte() & 1 == 1 {
                    let _ = writeln!(y, "      annotate: {}", dq(input.bytes(16)));
                }
            }
        }
    }
    if input.byte() == 0xff {
        y.push_str(&String::from_utf8_lossy(input.bytes(64)));
    }
    y
}

/// A YAML double-quoted string holding `bytes`, with escapes, plus the
/// placeholders the templates know when the bytes ask for them.
fn dq(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                let _ = write!(s, "\\{}", b as char);
            }
            b'{' => s.push_str("{text}"),
            b'}' => s.push_str("{code}"),
            b'~' => s.push_str("{enhanced}"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s.push('"');
    s
}

/// A reply: a code and lines from the input, parsed from the wire form.
fn reply(input: &mut Input<'_>) -> Option<Reply> {
    let code = [530, 550, 535, 421, 250, 354, 451, 554, 220, 500][input.below(10)];
    let lines = 1 + input.below(3);
    let mut raw = Vec::new();
    for i in 0..lines {
        let sep = if i + 1 == lines { b' ' } else { b'-' };
        raw.extend_from_slice(format!("{code}").as_bytes());
        raw.push(sep);
        match input.byte() % 4 {
            0 => raw.extend_from_slice(b"5.7.0 "),
            1 => raw.extend_from_slice(b"2.0.0 "),
            _ => {}
        }
        match input.byte() % 3 {
            0 => raw.extend_from_slice(TEXTS[input.below(TEXTS.len())].as_bytes()),
            // Any bytes but LF (the line end): CR, NUL, ESC, invalid UTF-8.
            _ => raw.extend(
                input
                    .bytes(40)
                    .iter()
                    .map(|&b| if b == b'\n' { b'x' } else { b }),
            ),
        }
        raw.extend_from_slice(b"\r\n");
    }
    parse_one(&raw).ok().flatten()
}

fn check(original: &Reply, verdict: &Verdict) {
    let code = original.code().get();
    let Verdict::Rewrite {
        action, reply: new, ..
    } = verdict
    else {
        return;
    };
    // W2: 2xx, 3xx and 421 are never touched; nothing becomes 2xx/3xx/421.
    assert!(code >= 400 && code != 421, "rewrote a protected {code}");
    let new_code = new.code().get();
    assert!(new_code >= 400 && new_code != 421, "produced {new_code}");
    // W4 on the wire: the output reads back as exactly one reply, one code.
    let back = parse_one(new.raw())
        .expect("rewritten reply parses")
        .expect("exactly one reply");
    assert_eq!(back.code().get(), new_code);
    assert_eq!(back.line_count(), new.line_count());
    // W3: no line gains a CR, LF or NUL the original did not have.
    let had = |b: u8| original.lines().any(|l| l.text.contains(&b));
    for line in new.raw().split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let body = line.strip_suffix(b"\r").expect("lines end in CRLF");
        for b in [b'\r', 0] {
            if body.contains(&b) {
                assert!(had(b), "line gained byte {b:#x}");
            }
        }
    }
    match action {
        Action::Remap => {
            // W1: every line carries the new code and an enhanced code of the
            // same class.
            for line in new.lines() {
                let e = line
                    .enhanced
                    .expect("remap puts an enhanced code on every line");
                assert_eq!(u16::from(e.class), new_code / 100, "W1 class");
            }
        }
        Action::Annotate => {
            assert_eq!(new_code, code, "annotate keeps the code");
            assert_eq!(new.line_count(), original.line_count() + 1);
        }
        Action::Keep => panic!("keep is not a rewrite"),
    }
}
