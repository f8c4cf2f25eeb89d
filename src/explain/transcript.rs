//! `replyfix replay`: judges the replies of a recorded transcript
//! (`crate::transcript`) again with a candidate rule set and shows what
//! would change.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead};

use serde_json::{Value, json};

use super::dsn::one_line;
use super::maillog::read_bounded_line;
use crate::rules::{RuleSet, SessionFacts, Verdict};
use crate::smtp::escape::escape_capped;
use crate::smtp::reply::parse_one;
use crate::smtp::{CommandKind, Reply};
use crate::transcript::MAX_RECORDED_REPLY;
pub use crate::transcript::{TranscriptEntry, unescape};

/// Longest transcript line read by [`read_transcript`].
pub const MAX_ENTRY_LINE: usize = 64 * 1024;

/// Why a transcript line could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("line {line}: not a transcript entry: {message}")]
    BadEntry { line: u64, message: String },
    #[error("reading the transcript: {0}")]
    Io(#[from] io::Error),
}

/// One replayed entry: what happened and what the candidate rules do.
#[derive(Clone, Debug)]
pub struct ReplayedEntry {
    /// Line in the transcript (1-based).
    pub line: u64,
    /// The recorded entry.
    pub entry: TranscriptEntry,
    /// The recorded upstream reply.
    pub reply: Reply,
    /// The context it was judged in.
    pub context: CommandKind,
    /// The candidate rules' decision.
    pub candidate: Verdict,
    /// True when the candidate would send something other than was sent.
    pub changed: bool,
}

impl ReplayedEntry {
    /// What the candidate rules would send.
    pub fn candidate_reply(&self) -> &Reply {
        self.candidate.reply(&self.reply)
    }

    /// A machine-readable form (`replyfix replay --json`).
    pub fn to_json(&self) -> Value {
        json!({
            "line": self.line,
            "session": self.entry.session,
            "context": self.context.as_str(),
            "reply": one_line(&self.reply),
            "recorded": {"rule": self.entry.rule, "sent": self.entry.sent},
            "candidate": {
                "rule": self.candidate.rule(),
                "decision": self.candidate.action().map_or("no_match", |a| a.as_str()),
                "sends": escape_capped(self.candidate_reply().raw(), MAX_RECORDED_REPLY),
            },
            "changed": self.changed,
        })
    }
}

impl fmt::Display for ReplayedEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.changed { "CHANGED" } else { "same" };
        let sent = unescape(&self.entry.sent)
            .and_then(|b| parse_one(&b).ok().flatten())
            .map_or_else(|| self.entry.sent.clone(), |r| one_line(&r));
        writeln!(
            f,
            "[{mark}] line {} session {} {}",
            self.line, self.entry.session, self.context
        )?;
        writeln!(f, "  upstream:  {}", one_line(&self.reply))?;
        writeln!(
            f,
            "  recorded:  {sent}  ({})",
            self.entry
                .rule
                .as_deref()
                .map_or_else(|| "no rule".into(), |r| format!("rule '{r}'"))
        )?;
        writeln!(
            f,
            "  candidate: {}  ({})",
            one_line(self.candidate_reply()),
            self.candidate.rule().map_or_else(
                || "no rule".into(),
                |r| format!(
                    "rule '{r}': {}",
                    self.candidate.action().map_or("", |a| a.as_str())
                )
            )
        )
    }
}

/// Counts of a replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Entries replayed.
    pub entries: u64,
    /// Entries whose candidate reply differs from what was sent.
    pub changed: u64,
    /// Entries whose candidate reply is what was sent.
    pub unchanged: u64,
    /// Per candidate rule (`(no rule)` for none): (changed, unchanged).
    pub by_rule: BTreeMap<String, (u64, u64)>,
}

impl ReplaySummary {
    /// A machine-readable form.
    pub fn to_json(&self) -> Value {
        json!({
            "entries": self.entries,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "by_rule": self.by_rule.iter().map(|(k, (c, u))| (k.clone(), json!({"changed": c, "unchanged": u}))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "replay: {} replies, {} would change, {} unchanged",
            self.entries, self.changed, self.unchanged
        )?;
        writeln!(f, "  {:>8} {:>10}  candidate rule", "changed", "unchanged")?;
        for (rule, (c, u)) in &self.by_rule {
            writeln!(f, "  {c:>8} {u:>10}  {rule}")?;
        }
        Ok(())
    }
}

/// Judges one recorded entry with `rules`.
pub fn replay_entry(
    rules: &RuleSet,
    line: u64,
    entry: TranscriptEntry,
) -> Result<ReplayedEntry, TranscriptError> {
    let bad = |message: String| TranscriptError::BadEntry { line, message };
    let context: CommandKind = entry.context.parse().map_err(|e| bad(format!("{e}")))?;
    let raw = unescape(&entry.reply).ok_or_else(|| bad("malformed escape in 'reply'".into()))?;
    let reply = parse_one(&raw)
        .map_err(|e| bad(format!("'reply': {e}")))?
        .ok_or_else(|| bad("'reply' is not exactly one complete reply".into()))?;
    let sent = unescape(&entry.sent).ok_or_else(|| bad("malformed escape in 'sent'".into()))?;
    let mut facts = SessionFacts::new(context);
    facts.client_tls = entry.client_tls;
    facts.upstream_tls = entry.upstream_tls;
    facts.authenticated = entry.authenticated;
    facts.recipients_accepted = entry.recipients_accepted;
    facts.client = entry.client;
    facts.listener = &entry.listener;
    facts.upstream = &entry.upstream;
    let candidate = rules.judge(&reply, &facts);
    let changed = candidate.reply(&reply).raw().as_ref() != sent.as_slice();
    Ok(ReplayedEntry {
        line,
        entry,
        reply,
        context,
        candidate,
        changed,
    })
}

/// Replays a transcript line by line (streamed, each line bounded by
/// [`MAX_ENTRY_LINE`]); `on_entry` sees every entry or per-line error.
/// Empty lines are skipped; a cut last line (a transcript being written)
/// is reported as an error for that line.
pub fn read_transcript<R: BufRead>(
    mut reader: R,
    rules: &RuleSet,
    mut on_entry: impl FnMut(Result<&ReplayedEntry, &TranscriptError>),
) -> Result<ReplaySummary, TranscriptError> {
    let mut summary = ReplaySummary::default();
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        let (n, cut) = read_bounded_line(&mut reader, &mut buf, MAX_ENTRY_LINE)?;
        if n == 0 {
            break;
        }
        line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = if cut {
            Err(TranscriptError::BadEntry {
                line,
                message: format!("longer than {MAX_ENTRY_LINE} bytes"),
            })
        } else {
            serde_json::from_slice::<TranscriptEntry>(&buf)
                .map_err(|e| TranscriptError::BadEntry {
                    line,
                    message: e.to_string(),
                })
                .and_then(|entry| replay_entry(rules, line, entry))
        };
        match parsed {
            Ok(r) => {
                summary.entries += 1;
                let slot = summary
                    .by_rule
                    .entry(r.candidate.rule().unwrap_or("(no rule)").to_string())
                    .or_default();
                if r.changed {
                    summary.changed += 1;
                    slot.0 += 1;
                } else {
                    summary.unchanged += 1;
                    slot.1 += 1;
                }
                on_entry(Ok(&r));
            }
            Err(e) => on_entry(Err(&e)),
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_mode_records_the_original_as_sent_and_keeps_the_rule() {
        let rules = RuleSet::builtin();
        let reply = parse_one(b"530 5.7.1 Relaying denied\r\n")
            .unwrap()
            .unwrap();
        let facts = SessionFacts::new(CommandKind::Rcpt);
        let v = rules.judge(&reply, &facts);
        let e = TranscriptEntry::new("s", &facts, &reply, &v, rules.version()).with_sent(&reply);
        assert_eq!(e.sent, e.reply);
        assert_eq!(e.rule.as_deref(), Some("relay-denied"));
        let r = replay_entry(&rules, 1, e).unwrap();
        assert!(r.changed, "enforcing the rule would change what was sent");
    }
}
