//! Judging one reply: the first matching rule decides, then its action is
//! applied (W1: new code and enhanced code on every line).
//!
//! This is the hot path. A reply whose code no rule can match returns at the
//! bitmap check, before its text is touched (W6); the lossy text copy used by
//! `text` regexes is built at most once per call, only when a rule whose
//! other conditions hold needs it, into a reused thread-local buffer. It
//! never rewrites a 2xx, 3xx or `421` reply (W2), and never allocates when
//! nothing matches.

use std::cell::RefCell;

use regex::{RegexSet, SetMatches};

use super::model::{
    CodeSet, MATCH_TEXT_CAP, MAX_REPLY_LINE, Piece, Rule, Template, Then, When, is_protected,
};
use super::verdict::{Action, SessionFacts, Verdict};
use crate::smtp::{EnhancedCode, Reply};

thread_local! {
    static MATCH_TEXT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The first of `rules` that matches decides; `codes` are the codes any of
/// them can match (W6: the fast path).
///
/// `texts` holds every rule's `text` in one [`RegexSet`]: the first rule
/// whose other conditions hold and that has a `text` matches the reply text
/// against the whole set once, and every later rule reads its answer from
/// that (one pass instead of one per rule).
pub(super) fn judge(
    rules: &[Rule],
    codes: &CodeSet,
    texts: Option<&RegexSet>,
    reply: &Reply,
    facts: &SessionFacts<'_>,
) -> Verdict {
    let code = reply.code().get();
    if !codes.contains(code) {
        return Verdict::NoMatch;
    }
    let protected = is_protected(code);
    MATCH_TEXT.with(|cell| {
        // Not re-entrant: nothing called below judges again.
        let mut text = cell.borrow_mut();
        let mut built = false;
        let mut matched: Option<SetMatches> = None;
        for rule in rules {
            // Defensive: validation already keeps rewriting rules off these
            // codes (W2).
            if protected && rule.then.rewrites() {
                continue;
            }
            if !rule.when.matches_without_text(reply, facts) {
                continue;
            }
            if let Some(re) = &rule.when.text {
                if !built {
                    text.clear();
                    reply.text_for_matching(&mut text, MATCH_TEXT_CAP);
                    built = true;
                }
                let hit = match (texts, rule.when.text_slot) {
                    (Some(set), Some(slot)) => matched
                        .get_or_insert_with(|| set.matches(&text))
                        .matched(slot),
                    _ => re.is_match(&text),
                };
                if !hit {
                    continue;
                }
            }
            return apply(rule, reply);
        }
        Verdict::NoMatch
    })
}

impl When {
    /// Every condition except `text`.
    #[inline]
    pub(super) fn matches_without_text(&self, reply: &Reply, facts: &SessionFacts<'_>) -> bool {
        if let Some(codes) = &self.codes
            && !codes.contains(reply.code().get())
        {
            return false;
        }
        if let Some(bits) = self.commands
            && bits & facts.command.bit() == 0
        {
            return false;
        }
        if self.client_tls.is_some_and(|v| v != facts.client_tls)
            || self.upstream_tls.is_some_and(|v| v != facts.upstream_tls)
            || self.authenticated.is_some_and(|v| v != facts.authenticated)
        {
            return false;
        }
        if let Some((min, max)) = self.recipients
            && !(min..=max).contains(&facts.recipients_accepted)
        {
            return false;
        }
        if let Some(patterns) = &self.enhanced {
            let Some(e) = reply.enhanced() else {
                return false;
            };
            if !patterns.iter().any(|p| p.matches(e)) {
                return false;
            }
        }
        if let Some(nets) = &self.client {
            let Some(ip) = facts.client else {
                return false;
            };
            if !nets.iter().any(|n| n.contains(&ip)) {
                return false;
            }
        }
        if let Some(names) = &self.listener
            && !names.iter().any(|n| n == facts.listener)
        {
            return false;
        }
        if let Some(names) = &self.upstream
            && !names.iter().any(|n| n == facts.upstream)
        {
            return false;
        }
        true
    }
}

impl Rule {
    /// Whether this rule alone matches (for examples and explanations; the
    /// hot path is [`judge`]).
    pub(super) fn matches(&self, reply: &Reply, facts: &SessionFacts<'_>) -> bool {
        if self.then.rewrites() && is_protected(reply.code().get()) {
            return false;
        }
        if !self.when.matches_without_text(reply, facts) {
            return false;
        }
        match &self.when.text {
            None => true,
            Some(re) => {
                let mut text = String::new();
                reply.text_for_matching(&mut text, MATCH_TEXT_CAP);
                re.is_match(&text)
            }
        }
    }
}

/// Applies a matching rule's `then` to `reply`.
pub(super) fn apply(rule: &Rule, reply: &Reply) -> Verdict {
    let id = rule.id.clone();
    match &rule.then {
        Then::Keep => Verdict::Keep { rule: id },
        Then::Annotate(t) => {
            let enhanced = reply.lines().last().and_then(|l| l.enhanced);
            let line = expand(t, reply, enhanced);
            Verdict::Rewrite {
                rule: id,
                action: Action::Annotate,
                reply: reply.annotated(&line),
            }
        }
        Then::Remap {
            code,
            enhanced,
            text,
            annotate,
        } => {
            let mut out = match text {
                // With `text:` the reply becomes one line (docs/rules.md).
                Some(t) => {
                    Reply::build(*code, Some(*enhanced), &[expand(t, reply, Some(*enhanced))])
                }
                None => reply.rewrite(*code, Some(*enhanced)),
            };
            if let Some(a) = annotate {
                out = out.annotated(&expand(a, reply, Some(*enhanced)));
            }
            Verdict::Rewrite {
                rule: id,
                action: Action::Remap,
                reply: out,
            }
        }
    }
}

/// Fills a template from the original reply. Bytes from the original that
/// cannot appear in a line (CR, LF, NUL) become spaces; the result is cut so
/// that the line, with its code, enhanced code and CRLF, stays within 512
/// octets (W3).
fn expand(t: &Template, original: &Reply, line_enhanced: Option<EnhancedCode>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for piece in &t.pieces {
        match piece {
            Piece::Lit(s) => out.extend_from_slice(s.as_bytes()),
            Piece::Code => out.extend_from_slice(&original.code().digits()),
            Piece::Enhanced => {
                if let Some(e) = original.enhanced() {
                    out.extend_from_slice(e.to_string().as_bytes());
                }
            }
            Piece::Text => {
                for (i, line) in original.lines().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    out.extend(line.text.iter().map(|&b| {
                        if matches!(b, b'\r' | b'\n' | 0) {
                            b' '
                        } else {
                            b
                        }
                    }));
                }
            }
        }
    }
    let enhanced_len = line_enhanced.map_or(0, |e| e.to_string().len() + 1);
    let budget = MAX_REPLY_LINE - 2 - 4 - enhanced_len;
    if out.len() > budget {
        let mut cut = budget;
        // Do not split a UTF-8 sequence.
        while cut > 0 && (out[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}
