//! The compiled rule model: a [`Rule`] with its conditions ([`When`]), its
//! action ([`Then`], with [`Template`]s), its `examples:` ([`Example`]), and
//! the small types they are made of (reply-code sets, enhanced-code
//! patterns). Built by `compile`, read by `judge` and `examples`; nothing
//! here reads YAML or judges a reply.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use regex::Regex;

use super::verdict::{Action, SessionFacts};
use crate::smtp::escape::escape_capped;
use crate::smtp::{CommandKind, EnhancedCode, Reply, ReplyCode};

/// At most this many bytes of reply text are matched by `text` regexes (W6).
pub const MATCH_TEXT_CAP: usize = 4096;

/// RFC 5321 4.5.3.1.5: a reply line is at most 512 octets, CRLF included.
pub(crate) const MAX_REPLY_LINE: usize = 512;

/// One compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub(crate) id: Arc<str>,
    pub(crate) description: String,
    pub(crate) file: Arc<str>,
    pub(crate) line: usize,
    pub(crate) when: When,
    pub(crate) then: Then,
    pub(crate) examples: Vec<Example>,
}

impl Rule {
    /// The rule's id, unique in its rule set; used in logs and metrics (W5).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// What the rule is for, as written in its file.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The file the rule was loaded from.
    pub fn file(&self) -> &str {
        &self.file
    }
    /// The line where the rule starts in [`Rule::file`].
    pub fn line(&self) -> usize {
        self.line
    }
    /// What the rule does when it matches.
    pub fn action(&self) -> Action {
        self.then.action()
    }
    /// Number of `examples:` the rule carries.
    pub fn example_count(&self) -> usize {
        self.examples.len()
    }
}

/// A set of reply codes, one bit per number below 600.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CodeSet([u64; 10]);

impl CodeSet {
    pub const EMPTY: CodeSet = CodeSet([0; 10]);
    /// Every valid reply code.
    pub fn all() -> CodeSet {
        let mut s = CodeSet::EMPTY;
        for c in 200..600 {
            if ReplyCode::new(c).is_some() {
                s.insert(c);
            }
        }
        s
    }
    pub fn insert(&mut self, code: u16) {
        if code < 600 {
            self.0[(code / 64) as usize] |= 1 << (code % 64);
        }
    }
    #[inline]
    pub fn contains(&self, code: u16) -> bool {
        code < 600 && self.0[(code / 64) as usize] & (1 << (code % 64)) != 0
    }
    pub fn union_with(&mut self, other: &CodeSet) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (200u16..600).filter(|&c| self.contains(c))
    }
}

/// Codes no rule may rewrite: 2xx, 3xx and `421` (W2).
pub(crate) fn is_protected(code: u16) -> bool {
    code < 400 || code == 421
}

/// An enhanced-code pattern: each part a number or `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EnhancedPattern(pub(crate) [Option<u16>; 3]);

impl EnhancedPattern {
    pub(crate) fn parse(s: &str) -> Option<EnhancedPattern> {
        let mut parts = [None; 3];
        let mut n = 0;
        for (i, p) in s.split('.').enumerate() {
            if i >= 3 {
                return None;
            }
            n += 1;
            parts[i] = if p == "*" {
                None
            } else if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) {
                Some(p.parse().ok()?)
            } else {
                return None;
            };
        }
        if n != 3 {
            return None;
        }
        if let Some(c) = parts[0]
            && !matches!(c, 2 | 4 | 5)
        {
            return None;
        }
        Some(EnhancedPattern(parts))
    }

    pub fn matches(&self, e: EnhancedCode) -> bool {
        let got = [u16::from(e.class), e.subject, e.detail];
        self.0
            .iter()
            .zip(got)
            .all(|(p, g)| p.is_none_or(|p| p == g))
    }
}

/// The `when:` conditions of a rule, compiled. `None` = no condition.
#[derive(Clone, Debug, Default)]
pub(crate) struct When {
    pub codes: Option<CodeSet>,
    pub enhanced: Option<Vec<EnhancedPattern>>,
    pub text: Option<Regex>,
    /// The `text` pattern with its case flag inline (`(?i:...)`), for the
    /// rule set's one-pass [`regex::RegexSet`].
    pub text_pattern: Option<String>,
    /// This rule's index in that set (assigned when the set is built).
    pub text_slot: Option<usize>,
    /// Bit set of [`CommandKind::bit`].
    pub commands: Option<u16>,
    pub client_tls: Option<bool>,
    pub upstream_tls: Option<bool>,
    pub authenticated: Option<bool>,
    /// Inclusive bounds.
    pub recipients: Option<(u32, u32)>,
    pub client: Option<Vec<IpNet>>,
    pub listener: Option<Vec<String>>,
    pub upstream: Option<Vec<String>>,
}

impl When {
    /// The codes this rule can match.
    pub fn code_set(&self) -> CodeSet {
        self.codes.unwrap_or_else(CodeSet::all)
    }
}

/// A piece of an annotation or replacement text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Lit(String),
    /// `{code}`: the original reply code.
    Code,
    /// `{enhanced}`: the original enhanced code, or nothing.
    Enhanced,
    /// `{text}`: the original lines' text joined by single spaces.
    Text,
}

/// A text with `{code}`, `{enhanced}` and `{text}` placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    pub pieces: Vec<Piece>,
}

impl Template {
    pub(crate) fn parse(s: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix("{{") {
                lit.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                lit.push('}');
                rest = after;
            } else if tail.starts_with('}') {
                return Err("a lone '}' (write '}}' for a literal brace)".into());
            } else {
                let Some(end) = tail.find('}') else {
                    return Err("a '{' without its '}' (write '{{' for a literal brace)".into());
                };
                let piece = match &tail[1..end] {
                    "code" => Piece::Code,
                    "enhanced" => Piece::Enhanced,
                    "text" => Piece::Text,
                    other => {
                        return Err(format!(
                            "unknown placeholder '{{{other}}}' (known: {{code}}, {{enhanced}}, {{text}})"
                        ));
                    }
                };
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(piece);
                rest = &tail[end + 1..];
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template { pieces })
    }

    /// Octets of the text without placeholders.
    pub(crate) fn static_len(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Lit(s) => s.len(),
                _ => 0,
            })
            .sum()
    }
}

/// The `then:` of a rule.
#[derive(Clone, Debug)]
pub(crate) enum Then {
    Keep,
    Annotate(Template),
    Remap {
        code: ReplyCode,
        enhanced: EnhancedCode,
        text: Option<Template>,
        annotate: Option<Template>,
    },
}

impl Then {
    pub fn action(&self) -> Action {
        match self {
            Then::Keep => Action::Keep,
            Then::Annotate(_) => Action::Annotate,
            Then::Remap { .. } => Action::Remap,
        }
    }
    pub fn rewrites(&self) -> bool {
        !matches!(self, Then::Keep)
    }
}

/// What an example expects of its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    NoMatch,
    Keep,
    Annotate,
    Remap(ReplyCode, EnhancedCode),
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::NoMatch => f.write_str("no match"),
            Expect::Keep => f.write_str("keep"),
            Expect::Annotate => f.write_str("annotate"),
            Expect::Remap(c, e) => write!(f, "remap to {c} {e}"),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Example {
    pub(crate) line: usize,
    pub(crate) reply: Reply,
    pub(crate) command: CommandKind,
    pub(crate) client_tls: bool,
    pub(crate) upstream_tls: bool,
    pub(crate) authenticated: bool,
    pub(crate) recipients_accepted: u32,
    pub(crate) client: Option<IpAddr>,
    pub(crate) listener: String,
    pub(crate) upstream: String,
    pub(crate) expect: Expect,
    pub(crate) expect_text: Option<String>,
}

impl Example {
    pub(crate) fn facts(&self) -> SessionFacts<'_> {
        SessionFacts {
            command: self.command,
            client_tls: self.client_tls,
            upstream_tls: self.upstream_tls,
            authenticated: self.authenticated,
            recipients_accepted: self.recipients_accepted,
            client: self.client,
            listener: &self.listener,
            upstream: &self.upstream,
        }
    }

    pub(crate) fn describe(&self) -> String {
        let mut facts = Vec::new();
        for (name, on) in [
            ("client_tls", self.client_tls),
            ("upstream_tls", self.upstream_tls),
            ("authenticated", self.authenticated),
        ] {
            if on {
                facts.push(name.to_string());
            }
        }
        if self.recipients_accepted > 0 {
            facts.push(format!("recipients_accepted={}", self.recipients_accepted));
        }
        if let Some(ip) = self.client {
            facts.push(format!("client={ip}"));
        }
        if !self.listener.is_empty() {
            facts.push(format!("listener={}", self.listener));
        }
        if !self.upstream.is_empty() {
            facts.push(format!("upstream={}", self.upstream));
        }
        let facts = if facts.is_empty() {
            String::new()
        } else {
            format!(" [{}]", facts.join(", "))
        };
        format!(
            "at {}{}: {}",
            self.command,
            facts,
            escape_capped(self.reply.raw(), 100)
        )
    }
}
