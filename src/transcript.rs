//! The session transcript the proxy writes (opt-in): one JSON line per
//! judged upstream reply, read back by `replyfix replay`
//! (`explain::transcript`).
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

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::rules::{SessionFacts, Verdict};
use crate::smtp::Reply;
use crate::smtp::escape::escape_capped;

/// The format version written in every entry (`"v"`).
pub const FORMAT_VERSION: u32 = 1;
/// Default bound on a transcript file's size (bytes); entries past it are
/// dropped and counted.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// A recorded entry reaches the file at most this long after the previous
/// write (see [`TranscriptWriter`]).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;
    use crate::smtp::CommandKind;
    use crate::smtp::reply::parse_one;

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
