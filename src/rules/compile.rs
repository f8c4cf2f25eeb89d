//! From a parsed YAML tree to compiled, validated [`Rule`]s.
//!
//! Walks each rule's node by hand so that every unknown key, wrong type and
//! rule that could desynchronise client and server (docs/protocol.md W1–W3) is
//! reported at once, each with its file, line, column and rule id. Regexes
//! are compiled here, once. Nothing here looks at a live reply.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use regex::RegexBuilder;

use super::diagnostic::{Diags, RuleDiagnostic};
use super::examples;
use super::model::{
    CodeSet, EnhancedPattern, MAX_REPLY_LINE, Rule, Template, Then, When, is_protected,
};
use super::schema::{Fields, get_bool, get_str, get_str_list, get_u32, join};
use super::verdict::FACT_KEYS;
use crate::smtp::{CommandKind, EnhancedCode, ReplyCode};
use crate::yaml::{self, Node, Value};

/// The longest enhanced code text, `5.999.999`.
const MAX_ENHANCED_LEN: usize = 9;

const RULE_KEYS: &[&[&str]] = &[&["id", "description", "when", "then", "examples"]];
/// The reply's own conditions, then the session facts ([`FACT_KEYS`]).
const WHEN_KEYS: &[&[&str]] = &[
    &["code", "enhanced", "text", "case_sensitive", "command"],
    &FACT_KEYS,
];
const THEN_KEYS: &[&[&str]] = &[&["keep", "annotate", "remap"]];
const REMAP_KEYS: &[&[&str]] = &[&["code", "enhanced", "text"]];

/// Compiles every rule of one file; problems go to `d`.
pub(crate) fn compile_file(text: &str, d: &mut Diags<'_>) -> Vec<Rule> {
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            d.errors.push(RuleDiagnostic {
                file: d.file.to_string(),
                line: e.line,
                column: e.column,
                rule_id: None,
                key: None,
                message: format!("invalid YAML: {}", e.message),
            });
            return Vec::new();
        }
    };
    if root.value == Value::Null {
        d.error(&root, "", "empty file: expected a map with the key 'rules'");
        return Vec::new();
    }
    let Some(top) = Fields::of(&root, "", &[&["rules"]], d) else {
        return Vec::new();
    };
    let Some(list) = top.get("rules") else {
        d.error(&root, "", "missing key 'rules' (a list of rules)");
        return Vec::new();
    };
    let items: &[Node] = match &list.value {
        Value::Seq(items) => items,
        Value::Null => &[],
        other => {
            d.error(
                list,
                "rules",
                format!("expected a list of rules, found {}", other.kind()),
            );
            return Vec::new();
        }
    };
    let mut rules = Vec::new();
    for item in items {
        d.rule_id = None;
        if let Some(rule) = compile_rule(item, d) {
            rules.push(rule);
        }
    }
    d.rule_id = None;
    rules
}

fn compile_rule(node: &Node, d: &mut Diags<'_>) -> Option<Rule> {
    // Name the rule in every diagnostic, even those about other keys.
    if let Value::Map(entries) = &node.value
        && let Some((
            _,
            Node {
                value: Value::Str(id),
                ..
            },
        )) = entries.iter().find(|(k, _)| k.name == "id")
    {
        d.rule_id = Some(id.clone());
    }
    let errors_before = d.error_count();
    let f = Fields::of(node, "", RULE_KEYS, d)?;

    let id = match f.get("id") {
        None => {
            d.error(node, "id", "missing (every rule needs a unique id)");
            None
        }
        Some(n) => get_str(n, "id", d).and_then(|s| {
            let valid = !s.is_empty()
                && s.len() <= 64
                && s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if valid {
                Some(s)
            } else {
                d.error(
                    n,
                    "id",
                    "must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.' (it is used in logs and metrics)",
                );
                None
            }
        }),
    };
    let description = match f.get("description") {
        None => {
            d.error(node, "description", "missing (say what the rule is for)");
            None
        }
        Some(n) => get_str(n, "description", d),
    };
    let when = match f.get("when") {
        None => {
            d.error(
                node,
                "when",
                "missing (use 'when: {}' to match every reply)",
            );
            None
        }
        Some(n) => compile_when(n, d),
    };
    let then = match f.get("then") {
        None => {
            d.error(node, "then", "missing (keep, annotate or remap)");
            None
        }
        Some(n) => compile_then(n, d),
    };
    if let (Some(when), Some((then, then_node))) = (&when, &then) {
        check_then_against_when(when, then, then_node, d);
    }
    let examples = match f.get("examples") {
        None => Vec::new(),
        Some(n) => examples::compile_examples(n, d),
    };
    if d.error_count() > errors_before {
        return None;
    }
    Some(Rule {
        id: Arc::from(id?),
        description: description?.to_string(),
        file: d.file.clone(),
        line: node.line,
        when: when?,
        then: then?.0,
        examples,
    })
}

fn compile_when(node: &Node, d: &mut Diags<'_>) -> Option<When> {
    if node.value == Value::Null {
        return Some(When::default());
    }
    let f = Fields::of(node, "when", WHEN_KEYS, d)?;
    let before = d.error_count();
    let mut w = When::default();
    if let Some(n) = f.get("code") {
        w.codes = compile_codes(n, d);
    }
    if let Some(n) = f.get("enhanced") {
        w.enhanced = get_str_list(n, "when.enhanced", d).map(|items| {
            items
                .into_iter()
                .filter_map(|(n, s)| {
                    let p = EnhancedPattern::parse(s);
                    if p.is_none() {
                        d.error(
                            n,
                            "when.enhanced",
                            format!(
                                "'{s}' is not an enhanced-code pattern like 5.7.1 or 5.7.* (class 2, 4, 5 or *)"
                            ),
                        );
                    }
                    p
                })
                .collect()
        });
    }
    let case_sensitive = f
        .get("case_sensitive")
        .and_then(|n| get_bool(n, "when.case_sensitive", d))
        .unwrap_or(false);
    if let Some(n) = f.get("text") {
        if let Some(pattern) = get_str(n, "when.text", d) {
            match RegexBuilder::new(pattern)
                .case_insensitive(!case_sensitive)
                .size_limit(1 << 20)
                .build()
            {
                Ok(re) => {
                    w.text = Some(re);
                    w.text_pattern = Some(if case_sensitive {
                        format!("(?:{pattern})")
                    } else {
                        format!("(?i:{pattern})")
                    });
                }
                Err(e) => d.error(
                    n,
                    "when.text",
                    format!("invalid regex: {}", regex_message(&e)),
                ),
            }
        }
    } else if let Some(n) = f.get("case_sensitive") {
        d.error(n, "when.case_sensitive", "has no effect without 'text'");
    }
    if let Some(n) = f.get("command")
        && let Some(items) = get_str_list(n, "when.command", d)
    {
        let mut bits = 0u16;
        for (item, s) in items {
            match CommandKind::from_str(s) {
                Ok(k) => bits |= k.bit(),
                Err(e) => d.error(item, "when.command", e.to_string()),
            }
        }
        w.commands = Some(bits);
    }
    for (key, slot) in [
        ("client_tls", &mut w.client_tls),
        ("upstream_tls", &mut w.upstream_tls),
        ("authenticated", &mut w.authenticated),
    ] {
        if let Some(n) = f.get(key) {
            *slot = get_bool(n, &format!("when.{key}"), d);
        }
    }
    if let Some(n) = f.get("recipients_accepted") {
        w.recipients = compile_count_range(n, "when.recipients_accepted", d);
    }
    if let Some(n) = f.get("client")
        && let Some(items) = get_str_list(n, "when.client", d)
    {
        let mut nets = Vec::new();
        for (item, s) in items {
            match parse_cidr(s) {
                Some(net) => nets.push(net),
                None => d.error(
                    item,
                    "when.client",
                    format!("'{s}' is not an IP address or CIDR block like 192.0.2.0/24"),
                ),
            }
        }
        w.client = Some(nets);
    }
    for (key, slot) in [("listener", &mut w.listener), ("upstream", &mut w.upstream)] {
        if let Some(n) = f.get(key) {
            *slot = get_str_list(n, &format!("when.{key}"), d)
                .map(|v| v.into_iter().map(|(_, s)| s.to_string()).collect());
        }
    }
    (d.error_count() == before).then_some(w)
}

fn regex_message(e: &regex::Error) -> String {
    let s = e.to_string();
    // The syntax error's last "error: ..." line says what is wrong; the
    // lines before it draw the pattern and a caret.
    s.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or_else(|| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    IpNet::from_str(s)
        .ok()
        .or_else(|| IpAddr::from_str(s).ok().map(IpNet::from))
}

/// `N` (exactly N) or `{min: N, max: M}` (either bound may be left out).
fn compile_count_range(node: &Node, path: &str, d: &mut Diags<'_>) -> Option<(u32, u32)> {
    match &node.value {
        Value::Int(_) => get_u32(node, path, d).map(|n| (n, n)),
        Value::Map(_) => {
            let f = Fields::of(node, path, &[&["min", "max"]], d)?;
            let min = f.get("min").map(|n| get_u32(n, &join(path, "min"), d));
            let max = f.get("max").map(|n| get_u32(n, &join(path, "max"), d));
            if min.is_none() && max.is_none() {
                d.error(node, path, "give 'min', 'max' or both");
                return None;
            }
            let (min, max) = (min.unwrap_or(Some(0))?, max.unwrap_or(Some(u32::MAX))?);
            if min > max {
                d.error(node, path, format!("min {min} is greater than max {max}"));
                return None;
            }
            Some((min, max))
        }
        other => {
            d.error(
                node,
                path,
                format!(
                    "expected a number or a map like {{min: 1}}, found {}",
                    other.kind()
                ),
            );
            None
        }
    }
}

/// `530`, `[530, 535]`, `"5xx"`, `"53x"`, or a list mixing them.
fn compile_codes(node: &Node, d: &mut Diags<'_>) -> Option<CodeSet> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    if items.is_empty() {
        d.error(node, "when.code", "an empty list never matches");
        return None;
    }
    let mut set = CodeSet::EMPTY;
    let mut ok = true;
    for item in items {
        let parsed = match &item.value {
            Value::Int(i) => u16::try_from(*i).ok().and_then(ReplyCode::new).map(|c| {
                let mut s = CodeSet::EMPTY;
                s.insert(c.get());
                s
            }),
            Value::Str(s) => code_pattern(s),
            _ => None,
        };
        match parsed {
            Some(s) => set.union_with(&s),
            None => {
                ok = false;
                let shown = match &item.value {
                    Value::Int(i) => i.to_string(),
                    Value::Str(s) => format!("'{s}'"),
                    other => other.kind().to_string(),
                };
                d.error(
                    item,
                    "when.code",
                    format!(
                        "{shown} is not a reply code ([2-5][0-5][0-9]) or a pattern like 5xx or 53x"
                    ),
                );
            }
        }
    }
    ok.then_some(set)
}

/// A code or pattern of three characters, each a digit or `x`.
fn code_pattern(s: &str) -> Option<CodeSet> {
    let b = s.as_bytes();
    if b.len() != 3
        || !b
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'x' | b'X'))
    {
        return None;
    }
    let mut set = CodeSet::EMPTY;
    for c in 200u16..600 {
        let digits = [
            b'0' + (c / 100) as u8,
            b'0' + ((c / 10) % 10) as u8,
            b'0' + (c % 10) as u8,
        ];
        let fits = b
            .iter()
            .zip(digits)
            .all(|(p, d)| matches!(p, b'x' | b'X') || *p == d);
        if fits && ReplyCode::new(c).is_some() {
            set.insert(c);
        }
    }
    (set != CodeSet::EMPTY).then_some(set)
}

fn compile_then<'n>(node: &'n Node, d: &mut Diags<'_>) -> Option<(Then, &'n Node)> {
    let f = Fields::of(node, "then", THEN_KEYS, d)?;
    let before = d.error_count();
    let keep = f.get("keep");
    let annotate_node = f.get("annotate");
    let remap = f.get("remap");
    if let Some(k) = keep {
        if get_bool(k, "then.keep", d) == Some(false) {
            d.error(
                k,
                "then.keep",
                "only 'keep: true' is meaningful; to change the reply use annotate or remap",
            );
        }
        if annotate_node.is_some() || remap.is_some() {
            d.error(
                k,
                "then.keep",
                "'keep' leaves the reply unchanged, so it cannot be combined with annotate or remap (use annotate alone to keep the code and add a hint)",
            );
        }
    }
    if keep.is_none() && annotate_node.is_none() && remap.is_none() {
        d.error(node, "then", "say what to do: keep, annotate or remap");
    }
    // Annotation alone keeps the original enhanced code, whose length is
    // unknown: assume the longest.
    let annotate = annotate_node.and_then(|n| {
        let enh_len = match remap.and_then(remap_enhanced_len) {
            Some(len) => len,
            None => MAX_ENHANCED_LEN,
        };
        compile_text(n, "then.annotate", enh_len, d)
    });
    let then = if let Some(r) = remap {
        let rf = Fields::of(r, "then.remap", REMAP_KEYS, d)?;
        let code = match rf.get("code") {
            None => {
                d.error(r, "then.remap.code", "missing (the new reply code)");
                None
            }
            Some(n) => compile_remap_code(n, d),
        };
        let enhanced = match rf.get("enhanced") {
            None => {
                d.error(
                    r,
                    "then.remap.enhanced",
                    "missing: code and enhanced code change together (docs/protocol.md W1)",
                );
                None
            }
            Some(n) => compile_remap_enhanced(n, code, d),
        };
        let text = rf.get("text").and_then(|n| {
            let len = enhanced.map_or(MAX_ENHANCED_LEN, |e| e.to_string().len());
            compile_text(n, "then.remap.text", len, d)
        });
        Then::Remap {
            code: code?,
            enhanced: enhanced?,
            text,
            annotate,
        }
    } else if let Some(a) = annotate {
        Then::Annotate(a)
    } else {
        Then::Keep
    };
    (d.error_count() == before).then_some((then, node))
}

fn remap_enhanced_len(remap: &Node) -> Option<usize> {
    let Value::Map(entries) = &remap.value else {
        return None;
    };
    entries
        .iter()
        .find_map(|(k, v)| match (&k.name[..], &v.value) {
            ("enhanced", Value::Str(s)) => EnhancedCode::parse(s).map(|e| e.to_string().len()),
            _ => None,
        })
}

fn compile_remap_code(n: &Node, d: &mut Diags<'_>) -> Option<ReplyCode> {
    let Value::Int(i) = n.value else {
        d.error(
            n,
            "then.remap.code",
            format!("expected a reply code like 550, found {}", n.value.kind()),
        );
        return None;
    };
    let Some(code) = u16::try_from(i).ok().and_then(ReplyCode::new) else {
        d.error(
            n,
            "then.remap.code",
            format!("{i} is not a reply code ([2-5][0-5][0-9])"),
        );
        return None;
    };
    if code.is_success() {
        let kind = if code.class() == 2 {
            "a success"
        } else {
            "an intermediate"
        };
        d.error(
            n,
            "then.remap.code",
            format!("{i} is {kind} code; rules never produce 2xx or 3xx (docs/protocol.md W2)"),
        );
        return None;
    }
    if code == ReplyCode::SERVICE_NOT_AVAILABLE {
        d.error(
            n,
            "then.remap.code",
            "421 tells the client the connection is closing while it is not; rules never produce 421 (docs/protocol.md W2)",
        );
        return None;
    }
    Some(code)
}

fn compile_remap_enhanced(
    n: &Node,
    code: Option<ReplyCode>,
    d: &mut Diags<'_>,
) -> Option<EnhancedCode> {
    let s = get_str(n, "then.remap.enhanced", d)?;
    let Some(e) = EnhancedCode::parse(s) else {
        d.error(
            n,
            "then.remap.enhanced",
            format!("'{s}' is not an enhanced status code like 5.1.1 (RFC 3463)"),
        );
        return None;
    };
    if let Some(code) = code
        && e.class != code.class()
    {
        d.error(
                n,
                "then.remap.enhanced",
                format!(
                    "{e} has class {} but the code {code} has class {}: the enhanced code's class must equal the code's first digit (docs/protocol.md W1)",
                    e.class,
                    code.class()
                ),
            );
        return None;
    }
    Some(e)
}

/// An annotation or replacement text: one line, no CR/LF/NUL, at most 512
/// octets with its code, enhanced code and CRLF (W3).
fn compile_text(n: &Node, path: &str, enhanced_len: usize, d: &mut Diags<'_>) -> Option<Template> {
    let s = get_str(n, path, d)?;
    if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        d.error(
            n,
            path,
            "contains CR, LF or NUL; a reply line's text cannot (docs/protocol.md W3) (YAML block scalars like '|' add a line end)",
        );
        return None;
    }
    if s.bytes().any(|b| (b < 0x20 && b != b'\t') || b >= 0x7f) {
        d.error(
            n,
            path,
            "must be printable US-ASCII: other bytes need SMTPUTF8, which the client may not have negotiated (RFC 5321 4.2, RFC 6531)",
        );
        return None;
    }
    if s.trim().is_empty() {
        d.error(n, path, "is empty");
        return None;
    }
    let t = match Template::parse(s) {
        Ok(t) => t,
        Err(e) => {
            d.error(n, path, e);
            return None;
        }
    };
    let overhead = 4 + enhanced_len + 1 + 2;
    let len = t.static_len() + overhead;
    if len > MAX_REPLY_LINE {
        d.error(
            n,
            path,
            format!(
                "the line would be {len} octets with its code, enhanced code and CRLF; the limit is {MAX_REPLY_LINE} (docs/protocol.md W3)"
            ),
        );
        return None;
    }
    Some(t)
}

/// Rules that rewrite must name the codes they act on, and those codes must
/// exclude 2xx, 3xx and 421 (W2); annotations only go on 4xx/5xx (docs/rules.md).
fn check_then_against_when(when: &When, then: &Then, then_node: &Node, d: &mut Diags<'_>) {
    let (key, what) = match then {
        Then::Keep => return,
        Then::Annotate(_) => ("then.annotate", "annotate"),
        Then::Remap { .. } => ("then.remap", "remap"),
    };
    let at = match &then_node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| key.ends_with(k.name.as_str()))
            .map(|(_, v)| v)
            .unwrap_or(then_node),
        _ => then_node,
    };
    let Some(codes) = when.codes else {
        d.error(
            at,
            key,
            format!(
                "a rule that does '{what}' must give when.code, so that it can never touch 2xx, 3xx or 421 replies (docs/protocol.md W2)"
            ),
        );
        return;
    };
    let bad: Vec<String> = codes
        .iter()
        .filter(|&c| is_protected(c))
        .map(|c| c.to_string())
        .collect();
    if !bad.is_empty() {
        let shown = if bad.len() > 4 {
            format!("{} and {} more", bad[..4].join(", "), bad.len() - 4)
        } else {
            bad.join(", ")
        };
        let why = if matches!(then, Then::Annotate(_)) {
            "annotations go on 4xx/5xx replies only (an EHLO reply's lines are capabilities)"
        } else {
            "rules never touch 2xx, 3xx or 421 replies (docs/protocol.md W2)"
        };
        d.error(at, key, format!("when.code can match {shown}; {why}"));
        return;
    }
    if let Then::Remap { code, .. } = then
        && code.class() == 5
        && codes.iter().any(|c| c / 100 == 4)
    {
        let at = match &at.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == "code")
                .map(|(_, v)| v)
                .unwrap_or(at),
            _ => at,
        };
        d.warning(
                at,
                "then.remap.code",
                format!(
                    "remapping a 4xx (transient) reply to {code} (permanent) turns retries into bounces (docs/protocol.md W2)"
                ),
            );
    }
}
