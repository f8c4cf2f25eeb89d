//! Recorded sessions: the transcript file the proxy writes (opt-in) and
//! `replyfix replay`, which judges the recorded replies again with a
//! candidate rule set and shows what would change.
//!
//! A transcript is JSON lines, one judged upstream reply per line:
//!
//! ```json
//! {"v":1,"session":"s-42","context":"rcpt","client_tls":false,"upstream_tls":false,
//!  "authenticated":false,"recipients_accepted":1,"client":"192.0.2.7","listener":"in",
//!  "upstream":"relay","reply":"530 5.7.1 config error\\x0D\\x0A",
//!  "sent":"550 5.1.1 config error\\x0D\\x0A","rule":"config-error-after-accepted-recipient",
//!  "rules_version":"builtin-3fa2c1d09e4b"}
//! ```
//!
//! Only the command context, session facts and the replies are recorded:
//! never SASL data (L1), message content (L2), command arguments or
//! envelope addresses (L3). Replies are stored escaped (L4; printable ASCII
//! as is, `\` as `\\`, every other byte as `\xNN`), which is lossless:
//! [`unescape`] gives the exact wire bytes back.
//!
//! [`TranscriptWriter`] is what the relay calls; it never fails a session:
//! write errors and entries past the size bound are counted and dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::dsn::one_line;
use super::maillog::read_bounded_line;
use crate::rules::{RuleSet, SessionFacts, Verdict};
use crate::smtp::escape::escape_capped;
use crate::smtp::reply::parse_one;
use crate::smtp::{CommandKind, Reply};

/// The format version written in every entry (`"v"`).
pub const FORMAT_VERSION: u32 = 1;
/// Default bound on a transcript file's size (bytes); entries past it are
/// dropped and counted.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// A recorded entry reaches the file at most this long after the previous
/// write (see [`TranscriptWriter`]).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Longest transcript line read by [`read_transcript`].
pub const MAX_ENTRY_LINE: usize = 64 * 1024;
/// Replies are recorded up to this many bytes (the rules read 4 KiB, W6).
pub const MAX_RECORDED_REPLY: usize = 8192;

/// One recorded reply with its context, as stored (one JSON line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    /// Format version ([`FORMAT_VERSION`]).
    pub v: u32,
    /// The proxy's session id.
    pub session: String,
    /// The command the reply answered (P1), e.g. `rcpt`.
    pub context: String,
    /// Session facts at the time of the reply (see [`SessionFacts`]).
    #[serde(default)]
    pub client_tls: bool,
    #[serde(default)]
    pub upstream_tls: bool,
    #[serde(default)]
    pub authenticated: bool,
    #[serde(default)]
    pub recipients_accepted: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    #[serde(default)]
    pub listener: String,
    #[serde(default)]
    pub upstream: String,
    /// The upstream's reply, escaped (lossless; see [`unescape`]).
    pub reply: String,
    /// What the client was sent, escaped.
    pub sent: String,
    /// The rule that decided, if any.
    #[serde(default)]
    pub rule: Option<String>,
    /// [`RuleSet::version`] of the rules that decided.
    #[serde(default)]
    pub rules_version: String,
}

impl TranscriptEntry {
    /// The entry for one judged reply: `session` is the proxy's session id,
    /// `facts` the facts the reply was judged with, `verdict` what the rules
    /// decided (the client was sent `verdict.reply(reply)`).
    pub fn new(
        session: &str,
        facts: &SessionFacts<'_>,
        reply: &Reply,
        verdict: &Verdict,
        rules_version: &str,
    ) -> Self {
        TranscriptEntry {
            v: FORMAT_VERSION,
            session: escape_capped(session.as_bytes(), 128),
            context: facts.command.as_str().to_string(),
            client_tls: facts.client_tls,
            upstream_tls: facts.upstream_tls,
            authenticated: facts.authenticated,
            recipients_accepted: facts.recipients_accepted,
            client: facts.client,
            listener: facts.listener.to_string(),
            upstream: facts.upstream.to_string(),
            reply: escape_capped(reply.raw(), MAX_RECORDED_REPLY),
            sent: escape_capped(verdict.reply(reply).raw(), MAX_RECORDED_REPLY),
            rule: verdict.rule().map(str::to_string),
            rules_version: rules_version.to_string(),
        }
    }

    /// Records `sent` as what the client got, when that is not the
    /// verdict's reply (shadow mode relays the original unchanged; the rule
    /// is kept so a replay still shows what it would have done).
    pub fn with_sent(mut self, sent: &Reply) -> Self {
        self.sent = escape_capped(sent.raw(), MAX_RECORDED_REPLY);
        self
    }
}

/// Appends [`TranscriptEntry`] lines to a file; shared by all sessions
/// (`Send + Sync`; one short mutex-held buffered write per entry).
///
/// Bounded: once the file reaches `max_bytes`, further entries are dropped
/// and counted ([`TranscriptWriter::dropped`]); write errors are counted
/// the same way and never reach the session. Entries go to a 64 KiB buffer
/// under the lock; the file is written when the buffer fills or when an
/// entry comes at least [`FLUSH_EVERY`] after the last write, so a quiet
/// proxy's transcript is at most that stale (plus [`TranscriptWriter::flush`]
/// on shutdown).
#[derive(Debug)]
pub struct TranscriptWriter {
    out: Mutex<(BufWriter<File>, Instant)>,
    written: AtomicU64,
    max_bytes: u64,
    dropped: AtomicU64,
}

impl TranscriptWriter {
    /// Opens (creating, appending) `path` with [`DEFAULT_MAX_BYTES`].
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_bounded(path, DEFAULT_MAX_BYTES)
    }

    /// Opens (creating, appending) `path`; at most `max_bytes` in the file.
    pub fn open_bounded(path: &Path, max_bytes: u64) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(TranscriptWriter {
            out: Mutex::new((BufWriter::with_capacity(64 * 1024, file), Instant::now())),
            written: AtomicU64::new(len),
            max_bytes,
            dropped: AtomicU64::new(0),
        })
    }

    /// Records one entry (one line). Never fails: see the type's docs.
    pub fn record(&self, entry: &TranscriptEntry) {
        let mut line = match serde_json::to_vec(entry) {
            Ok(l) => l,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        line.push(b'\n');
        let n = line.len() as u64;
        if self.written.fetch_add(n, Ordering::Relaxed) + n > self.max_bytes {
            self.written.fetch_sub(n, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // A poisoned lock only means another thread panicked mid-write; the
        // buffer is still a byte buffer, keep using it.
        let mut guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let (out, last_flush) = &mut *guard;
        if out.write_all(&line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if last_flush.elapsed() >= FLUSH_EVERY {
            *last_flush = Instant::now();
            // A failed flush keeps the bytes buffered; the next one retries.
            let _ = out.flush();
        }
    }

    /// Writes buffered entries to the file (call on shutdown; also done on
    /// drop).
    pub fn flush(&self) -> io::Result<()> {
        self.out.lock().unwrap_or_else(|p| p.into_inner()).0.flush()
    }

    /// Entries dropped so far (size bound reached or write errors).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for TranscriptWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Reverses [`escape_capped`]: `\\` -> `\`, `\xNN` -> the byte; other text
/// as is. `None` for a malformed escape.
pub fn unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let hex = std::str::from_utf8(b.get(i + 2..i + 4)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 4;
            }
            _ => return None,
        }
    }
    Some(out)
}

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
    fn concurrent_records_give_whole_lines() {
        let path =
            std::env::temp_dir().join(format!("replyfix-tw-mt-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let rules = RuleSet::builtin();
        let reply = parse_one(b"530 5.7.1 Relaying denied\r\n")
            .unwrap()
            .unwrap();
        let facts = SessionFacts::new(CommandKind::Rcpt);
        let v = rules.judge(&reply, &facts);
        let w = TranscriptWriter::open(&path).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (w, reply, v, rules) = (&w, &reply, &v, &rules);
                s.spawn(move || {
                    for i in 0..200 {
                        let id = format!("t{t}-{i}");
                        w.record(&TranscriptEntry::new(
                            &id,
                            &facts,
                            reply,
                            v,
                            rules.version(),
                        ));
                    }
                });
            }
        });
        w.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(text.lines().count(), 800);
        for l in text.lines() {
            let e: TranscriptEntry = serde_json::from_str(l).unwrap();
            assert_eq!(e.context, "rcpt");
        }
        assert_eq!(w.dropped(), 0);
    }

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

    #[test]
    fn escape_then_unescape_is_lossless() {
        let raw = b"530-a\\b \xff\x00\r\n530 c\r\n";
        let e = escape_capped(raw, 4096);
        assert_eq!(unescape(&e).unwrap(), raw);
        assert!(unescape("bad \\q").is_none());
        assert!(unescape("bad \\x4").is_none());
    }

    #[test]
    fn writer_records_one_json_line_per_entry_and_respects_its_bound() {
        let dir = std::env::temp_dir().join(format!("replyfix-tw-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("t.jsonl");
        let _ = std::fs::remove_file(&path);
        let rules = RuleSet::builtin();
        let reply = parse_one(b"530 5.7.1 Relaying denied\r\n")
            .unwrap()
            .unwrap();
        let facts = SessionFacts::new(CommandKind::Rcpt);
        let v = rules.judge(&reply, &facts);
        let entry = TranscriptEntry::new("s-1", &facts, &reply, &v, rules.version());
        let one = serde_json::to_vec(&entry).unwrap().len() as u64 + 1;
        {
            let w = TranscriptWriter::open_bounded(&path, one * 2).unwrap();
            for _ in 0..3 {
                w.record(&entry);
            }
            assert_eq!(w.dropped(), 1);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let back: TranscriptEntry = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(back, entry);
        assert_eq!(back.rule.as_deref(), Some("relay-denied"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
