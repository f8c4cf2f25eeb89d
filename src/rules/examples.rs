//! A rule's `examples:`: parsed and checked at load, run by
//! [`RuleSet::run_examples`] (`replyfix test-rules`).
//!
//! A positive example (`expect: keep | annotate | CODE ENHANCED`) is judged
//! by the whole rule set and must be decided by its own rule, so an earlier
//! rule that shadows it is caught. A negative one (`expect: no_match`) checks
//! only its own rule. This module never changes a rule set.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use super::diagnostic::Diags;
use super::judge;
use super::model::{Example, Expect, Rule};
use super::schema::{Fields, get_bool, get_str, get_u32};
use super::verdict::{Action, FACT_KEYS, SessionFacts, Verdict};
use crate::smtp::escape::escape_capped;
use crate::smtp::reply::parse_one;
use crate::smtp::{CommandKind, EnhancedCode, Reply, ReplyCode};
use crate::yaml::{Node, Value};

/// The reply and its command, the session facts ([`FACT_KEYS`]), then what
/// is expected.
const EXAMPLE_KEYS: &[&[&str]] = &[
    &["reply", "command"],
    &FACT_KEYS,
    &["expect", "expect_text"],
];

/// The result of one example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExampleOutcome {
    /// The id of the rule the example belongs to.
    pub rule: Arc<str>,
    /// The file and line of the example itself.
    pub file: String,
    pub line: usize,
    /// The example: command context, facts and reply (escaped).
    pub example: String,
    pub passed: bool,
    /// What was expected and what happened.
    pub message: String,
}

/// Parses `examples:` of one rule.
pub(crate) fn compile_examples(node: &Node, d: &mut Diags<'_>) -> Vec<Example> {
    let Value::Seq(items) = &node.value else {
        d.error(
            node,
            "examples",
            format!("expected a list of examples, found {}", node.value.kind()),
        );
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| compile_example(item, &format!("examples[{i}]"), d))
        .collect()
}

fn compile_example(node: &Node, path: &str, d: &mut Diags<'_>) -> Option<Example> {
    let f = Fields::of(node, path, EXAMPLE_KEYS, d)?;
    let mut ok = true;
    let key = |k: &str| format!("{path}.{k}");
    let reply = match f.get("reply") {
        None => {
            d.error(
                node,
                &key("reply"),
                "missing (the reply, e.g. '530 5.7.0 text')",
            );
            None
        }
        Some(n) => {
            let parsed = match &n.value {
                Value::Str(s) => Some(parse_reply_lines(s)),
                Value::Seq(items) => {
                    let lines: Option<Vec<&str>> = items
                        .iter()
                        .map(|i| match &i.value {
                            Value::Str(s) => Some(s.as_str()),
                            _ => None,
                        })
                        .collect();
                    lines.map(|l| reply_from_lines(&l))
                }
                _ => None,
            };
            match parsed {
                Some(Ok(r)) => Some(r),
                Some(Err(e)) => {
                    d.error(n, &key("reply"), e);
                    None
                }
                None => {
                    d.error(
                        n,
                        &key("reply"),
                        "expected a string (lines separated by '|') or a list of lines",
                    );
                    None
                }
            }
        }
    };
    let command = match f.get("command") {
        None => Some(CommandKind::Other),
        Some(n) => get_str(n, &key("command"), d).and_then(|s| match CommandKind::from_str(s) {
            Ok(k) => Some(k),
            Err(e) => {
                d.error(n, &key("command"), e.to_string());
                None
            }
        }),
    };
    let mut flag = |name: &str, d: &mut Diags<'_>| -> bool {
        match f.get(name) {
            None => false,
            Some(n) => get_bool(n, &key(name), d).unwrap_or_else(|| {
                ok = false;
                false
            }),
        }
    };
    let client_tls = flag("client_tls", d);
    let upstream_tls = flag("upstream_tls", d);
    let authenticated = flag("authenticated", d);
    let recipients_accepted = match f.get("recipients_accepted") {
        None => 0,
        Some(n) => get_u32(n, &key("recipients_accepted"), d).unwrap_or_else(|| {
            ok = false;
            0
        }),
    };
    let client = match f.get("client") {
        None => None,
        Some(n) => get_str(n, &key("client"), d).and_then(|s| match IpAddr::from_str(s) {
            Ok(ip) => Some(ip),
            Err(_) => {
                d.error(n, &key("client"), format!("'{s}' is not an IP address"));
                ok = false;
                None
            }
        }),
    };
    let mut name = |k: &str, d: &mut Diags<'_>| -> String {
        match f.get(k) {
            None => String::new(),
            Some(n) => get_str(n, &key(k), d)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    ok = false;
                    String::new()
                }),
        }
    };
    let listener = name("listener", d);
    let upstream = name("upstream", d);
    let expect = match f.get("expect") {
        None => {
            d.error(
                node,
                &key("expect"),
                "missing (no_match, keep, annotate, or a code and enhanced code like '550 5.1.1')",
            );
            None
        }
        Some(n) => get_str(n, &key("expect"), d).and_then(|s| match parse_expect(s) {
            Some(e) => Some(e),
            None => {
                d.error(
                    n,
                    &key("expect"),
                    format!(
                        "'{s}' is not no_match, keep, annotate, or a code and enhanced code like '550 5.1.1'"
                    ),
                );
                None
            }
        }),
    };
    let expect_text = match f.get("expect_text") {
        None => None,
        Some(n) => {
            let s = get_str(n, &key("expect_text"), d).map(str::to_string);
            if matches!(expect, Some(Expect::NoMatch | Expect::Keep)) {
                d.error(
                    n,
                    &key("expect_text"),
                    "only meaningful when the example expects annotate or a remap",
                );
                ok = false;
            }
            s
        }
    };
    if !ok {
        return None;
    }
    Some(Example {
        line: node.line,
        reply: reply?,
        command: command?,
        client_tls,
        upstream_tls,
        authenticated,
        recipients_accepted,
        client,
        listener,
        upstream,
        expect: expect?,
        expect_text,
    })
}

fn parse_expect(s: &str) -> Option<Expect> {
    match s.trim() {
        "no_match" => return Some(Expect::NoMatch),
        "keep" => return Some(Expect::Keep),
        "annotate" => return Some(Expect::Annotate),
        _ => {}
    }
    let (code, enhanced) = s.trim().split_once(' ')?;
    let code = ReplyCode::from_digits(code.as_bytes())?;
    let enhanced = EnhancedCode::parse(enhanced.trim())?;
    Some(Expect::Remap(code, enhanced))
}

/// Parses a reply written on one line, its lines separated by `|`, each
/// starting with its code: `530-5.7.0 first | 530 5.7.0 second`. Spaces
/// around each `|` are separators, not text. The `-`/space after each code
/// is normalised, so `530 a | 530 b` works too.
pub(crate) fn parse_reply_lines(s: &str) -> Result<Reply, String> {
    let parts: Vec<&str> = s.split('|').collect();
    let n = parts.len();
    let lines: Vec<&str> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let p = p.trim_start();
            if i + 1 < n {
                p.strip_suffix(' ').unwrap_or(p)
            } else {
                p
            }
        })
        .collect();
    reply_from_lines(&lines)
}

/// Builds a reply from its lines, each starting with the code.
pub(crate) fn reply_from_lines(lines: &[&str]) -> Result<Reply, String> {
    if lines.is_empty() {
        return Err("a reply has at least one line".into());
    }
    let mut wire = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let b = line.as_bytes();
        if b.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0)) {
            return Err(format!("line {} contains CR, LF or NUL", i + 1));
        }
        let code_ok = b.len() >= 3 && ReplyCode::from_digits(&b[..3]).is_some();
        let sep_ok = matches!(b.get(3), None | Some(b' ' | b'-'));
        if !code_ok || !sep_ok {
            return Err(format!(
                "line {} ('{}') does not start with a reply code followed by a space or '-'; write every line with its code, e.g. '530-5.7.0 first line | 530 5.7.0 last line'",
                i + 1,
                escape_capped(b, 40)
            ));
        }
        wire.extend_from_slice(&b[..3]);
        wire.push(if i + 1 < lines.len() { b'-' } else { b' ' });
        if b.len() > 4 {
            wire.extend_from_slice(&b[4..]);
        }
        wire.extend_from_slice(b"\r\n");
    }
    match parse_one(&wire) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err("not exactly one reply".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Describes a verdict for messages.
pub(crate) fn describe_verdict(v: &Verdict) -> String {
    match v {
        Verdict::NoMatch => "no rule matched (the reply passes unchanged)".into(),
        Verdict::Keep { rule } => format!("rule '{rule}' kept the reply"),
        Verdict::Rewrite {
            rule,
            action,
            reply,
        } => format!(
            "rule '{rule}' did {action}: {}",
            escape_capped(reply.raw(), 300)
        ),
    }
}

/// Runs the examples of `rules`; `judge` is the whole rule set's judgement
/// (a positive example must be decided by its own rule, W5 ids).
pub(super) fn run(
    rules: &[Rule],
    judge: impl Fn(&Reply, &SessionFacts<'_>) -> Verdict,
) -> Vec<ExampleOutcome> {
    let mut out = Vec::new();
    for rule in rules {
        for ex in &rule.examples {
            let facts = ex.facts();
            let (passed, message) = if ex.expect == Expect::NoMatch {
                if rule.matches(&ex.reply, &facts) {
                    let v = judge::apply(rule, &ex.reply);
                    (
                        false,
                        format!(
                            "expected no match, but this rule matched: {}",
                            describe_verdict(&v)
                        ),
                    )
                } else {
                    (true, "this rule does not match, as expected".to_string())
                }
            } else {
                let v = judge(&ex.reply, &facts);
                check(
                    rule.id(),
                    &ex.expect,
                    ex.expect_text.as_deref(),
                    &ex.reply,
                    &v,
                )
            };
            out.push(ExampleOutcome {
                rule: rule.id.clone(),
                file: rule.file().to_string(),
                line: ex.line,
                example: ex.describe(),
                passed,
                message,
            });
        }
    }
    out
}

fn check(
    id: &str,
    expect: &Expect,
    expect_text: Option<&str>,
    original: &Reply,
    v: &Verdict,
) -> (bool, String) {
    let got = describe_verdict(v);
    if v.rule() != Some(id) {
        return (false, format!("expected {expect} by this rule, got: {got}"));
    }
    let fits = match (expect, v) {
        (Expect::Keep, Verdict::Keep { .. }) => true,
        (
            Expect::Annotate,
            Verdict::Rewrite {
                action: Action::Annotate,
                reply,
                ..
            },
        ) => reply.code() == original.code(),
        (
            Expect::Remap(code, enhanced),
            Verdict::Rewrite {
                action: Action::Remap,
                reply,
                ..
            },
        ) => reply.code() == *code && reply.lines().all(|l| l.enhanced == Some(*enhanced)),
        _ => false,
    };
    if !fits {
        return (false, format!("expected {expect}, got: {got}"));
    }
    if let Some(want) = expect_text {
        let seen = v.reply(original).text_lossy(" ");
        if !seen.contains(want) {
            return (
                false,
                format!("expected the reply text to contain '{want}', got: {got}"),
            );
        }
    }
    (true, format!("ok: {got}"))
}
