//! Mail logs (`replyfix explain --log`): find the remote replies that
//! Postfix, Exim and Sendmail log, judge each with the rules, and count.
//!
//! Lines read (examples in `tests/fixtures/logs/`):
//! - Postfix `smtp`/`lmtp`: `host H[ip] said: 530 ... (in reply to RCPT TO
//!   command)`, `host H[ip] refused to talk to me: 530 ...` (greeting) and
//!   `SASL authentication failed; server H[ip] said: 535 ...` (auth).
//! - Exim: `SMTP error from remote mail server after RCPT TO:<a@b>: 530 ...`
//!   (also `after MAIL FROM`, `after end of data`, `after initial
//!   connection`, `pipelined` forms), host from `H=`.
//! - Sendmail: `to=<a@b>, ..., relay=H. [ip], dsn=5.7.1, stat=... 530 ...`
//!   or `reply=530 ...`. Sendmail does not log the command on that line:
//!   the context is `other`.
//!
//! The same transaction: a misused 530 to one recipient means something
//! else when the same delivery attempt (Postfix: queue id and relay; Exim:
//! message id and host) got another recipient accepted (`status=sent`,
//! `=>`), exactly the `recipients_accepted` fact the relay itself uses.
//! Postfix may log the refused recipient before the accepted one, so a
//! reply at RCPT waits (in line order with the findings after it) until its
//! message is done (`removed`, `Completed`) or [`ATTEMPT_WINDOW`] lines have
//! passed, then is judged with the count seen around it.
//!
//! The log is streamed: one line at a time, each cut at
//! [`MAX_LOG_LINE`] bytes, and every map in [`LogSummary`] has a bound
//! whatever the log's size (codes and contexts are finite, rule ids come
//! from the rule set, accurate codes are capped at [`MAX_ACCURATE_KEYS`]
//! with an overflow bucket, hosts go through a Space-Saving top-K of
//! [`HOST_CAPACITY`] entries). No I/O beyond the reader it is given.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::io::{self, BufRead};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Value, json};

use super::dsn::{accurate_code, one_line};
use super::extract::{context_from_words, reply_from_quoted};
use super::table::counts;
use super::topk::TopK;
use super::{Explanation, explain};
use crate::rules::{Action, RuleSet, SessionFacts};
use crate::smtp::escape::escape_capped;
use crate::smtp::{CommandKind, Reply};

/// Longest log line read; the rest of a longer line is skipped.
pub const MAX_LOG_LINE: usize = 16 * 1024;
/// Distinct accurate codes counted one by one; the rest are counted as
/// `other`.
pub const MAX_ACCURATE_KEYS: usize = 256;
/// Distinct remote hosts tracked for the "misused 530" table (Space-Saving).
pub const HOST_CAPACITY: usize = 1024;
/// Bucket for accurate codes past [`MAX_ACCURATE_KEYS`].
pub const OVERFLOW_KEY: &str = "other";
/// Key in `by_rule` for replies no rule matched.
pub const NO_RULE: &str = "(no rule)";
/// Lines a reply at RCPT waits for the rest of its delivery attempt.
pub const ATTEMPT_WINDOW: u64 = 2000;
/// Findings held at once while they wait; past it the oldest is judged.
pub const MAX_WAITING: usize = 10_000;
/// Delivery attempts whose accepted recipients are counted at once.
pub const MAX_ATTEMPTS: usize = 10_000;

/// Which MTA wrote a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogSource {
    Postfix,
    Exim,
    Sendmail,
}

impl LogSource {
    /// `postfix`, `exim` or `sendmail`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogSource::Postfix => "postfix",
            LogSource::Exim => "exim",
            LogSource::Sendmail => "sendmail",
        }
    }
}

/// One remote reply found in a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFinding {
    /// Which MTA's format matched.
    pub source: LogSource,
    /// The remote host's name as logged, when given.
    pub host: Option<String>,
    /// The recipient, when the line names one.
    pub recipient: Option<String>,
    /// The command the reply answered (`other` when the line does not say).
    pub context: CommandKind,
    /// True when the line named the command.
    pub context_known: bool,
    /// The remote reply.
    pub reply: Reply,
    /// The message (Postfix queue id, Exim message id), when the line names
    /// it: with `host`, the delivery attempt the reply belongs to.
    pub message: Option<String>,
    /// Other recipients of the same attempt the remote server accepted, as
    /// the log shows them (set before the finding is judged).
    pub recipients_accepted: u32,
}

static PREFILTER: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
    regex::bytes::Regex::new(r" said: |refused to talk to me: |SMTP error from remote|stat=|reply=")
        .expect("static regex")
});
static POSTFIX_HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:host|server) (\S+?)\[[^\]]*\](?::\d+)? (said|refused to talk to me): (.*)$")
        .expect("static regex")
});
static POSTFIX_PROG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"postfix[\w./-]*/(?:smtp|lmtp)\[\d+\]:").expect("static regex"));
/// A Postfix delivery line: queue id, recipient, relay host, status.
static POSTFIX_DELIVERY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"postfix[\w./-]*/(?:smtp|lmtp)\[\d+\]: ([0-9A-Za-z]+): to=<[^<>]*>,(?: orig_to=<[^<>]*>,)? relay=([^\[,\s]+)\[.*?\bstatus=(\w+)")
        .expect("static regex")
});
/// A Postfix message leaving the queue: `QUEUEID: removed`.
static POSTFIX_REMOVED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"postfix[\w./-]*/qmgr\[\d+\]: ([0-9A-Za-z]+): removed$").expect("static regex")
});
/// An Exim log line: message id, then the flag (`=>`, `->`, `**`, `==`, or
/// `Completed`).
static EXIM_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\S+ \S+ (?:\[\d+\] )?([0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}) (=>|->|\*\*|==|Completed)")
        .expect("static regex")
});
static TO: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bto=<([^<>]*)>").expect("static regex"));
static EXIM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"SMTP error from remote (?:mail server|server|mailer) after (.*?): ([2-5]\d\d(?:[ -].*)?)$")
        .expect("static regex")
});
static EXIM_HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\bH=|\bhost )\(?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])\)?").expect("static regex")
});
static EXIM_RCPT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r" (?:\*\*|==) (\S+)").expect("static regex"));
static SENDMAIL_PROG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:sendmail|sm-mta|sm-msp-queue)\[\d+\]:").expect("static regex")
});
static SENDMAIL_STAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:reply|stat)=(?:[A-Za-z ]+: )?([2-5]\d\d[ -].*?)(?:, [a-z]+=.*)?$")
        .expect("static regex")
});
static SENDMAIL_RELAY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\brelay=([A-Za-z0-9.-]+?)\.? \[|\brelay=\[([0-9A-Fa-f:.]+)\]")
        .expect("static regex")
});

/// Reads one log line; `None` when it carries no remote reply.
pub fn parse_line(line: &[u8]) -> Option<LogFinding> {
    if !PREFILTER.is_match(line) {
        return None;
    }
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    if POSTFIX_PROG.is_match(text) {
        return parse_postfix(text);
    }
    if text.contains("SMTP error from remote") {
        return parse_exim(text);
    }
    if SENDMAIL_PROG.is_match(text) {
        return parse_sendmail(text);
    }
    None
}

fn parse_postfix(text: &str) -> Option<LogFinding> {
    let c = POSTFIX_HOST.captures(text)?;
    let greeting = &c[2] != "said";
    let mut rest = c[3].to_string();
    let mut context = if greeting {
        Some(CommandKind::Greeting)
    } else if text.contains("SASL authentication failed") {
        Some(CommandKind::Auth)
    } else {
        None
    };
    if let Some(i) = rest.rfind(" (in reply to ") {
        context = context_from_words(&rest[i + " (in reply to ".len()..]);
        rest.truncate(i);
    } else if text.contains("status=") && rest.ends_with(')') {
        // The status detail is in parentheses: drop the closing one.
        rest.pop();
    }
    let reply = reply_from_quoted(rest.as_bytes())?;
    Some(LogFinding {
        source: LogSource::Postfix,
        host: Some(c[1].to_string()),
        recipient: TO.captures(text).map(|c| c[1].to_string()),
        context: context.unwrap_or(CommandKind::Other),
        context_known: context.is_some(),
        reply,
        message: POSTFIX_DELIVERY.captures(text).map(|d| d[1].to_string()),
        recipients_accepted: 0,
    })
}

fn parse_exim(text: &str) -> Option<LogFinding> {
    let c = EXIM.captures(text)?;
    let context = context_from_words(&c[1]);
    let reply = reply_from_quoted(c[2].as_bytes())?;
    let head = &text[..c.get(0).map_or(0, |m| m.start())];
    Some(LogFinding {
        source: LogSource::Exim,
        host: EXIM_HOST.captures(head).map(|h| h[1].to_string()),
        recipient: EXIM_RCPT.captures(head).map(|r| r[1].to_string()),
        context: context.unwrap_or(CommandKind::Other),
        context_known: context.is_some(),
        reply,
        message: EXIM_LINE.captures(head).map(|m| m[1].to_string()),
        recipients_accepted: 0,
    })
}

fn parse_sendmail(text: &str) -> Option<LogFinding> {
    let c = SENDMAIL_STAT.captures(text)?;
    let reply = reply_from_quoted(c[1].as_bytes())?;
    let host = SENDMAIL_RELAY
        .captures(text)
        .and_then(|h| h.get(1).or(h.get(2)).map(|m| m.as_str().to_string()));
    Some(LogFinding {
        source: LogSource::Sendmail,
        host,
        recipient: TO.captures(text).map(|c| c[1].to_string()),
        context: CommandKind::Other,
        context_known: false,
        reply,
        message: None,
        recipients_accepted: 0,
    })
}

/// What a log line says about a delivery attempt besides remote replies.
#[derive(Debug, PartialEq, Eq)]
enum AttemptNews {
    /// A recipient of (message, host) was accepted.
    Accepted { message: String, host: String },
    /// The message is done: nothing more of its attempts will follow.
    Done { message: String },
}

/// Lines that can say a recipient was accepted or a message is done.
static NEWS_PREFILTER: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
    regex::bytes::Regex::new(r"status=sent|: removed|Completed| => | -> ").expect("static regex")
});

fn attempt_news(line: &[u8]) -> Option<AttemptNews> {
    if !NEWS_PREFILTER.is_match(line) {
        return None;
    }
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\r', '\n']);
    if let Some(c) = POSTFIX_DELIVERY.captures(text) {
        return (&c[3] == "sent").then(|| AttemptNews::Accepted {
            message: c[1].to_string(),
            host: c[2].to_string(),
        });
    }
    if let Some(c) = POSTFIX_REMOVED.captures(text) {
        return Some(AttemptNews::Done {
            message: c[1].to_string(),
        });
    }
    let c = EXIM_LINE.captures(text)?;
    match &c[2] {
        "=>" | "->" => Some(AttemptNews::Accepted {
            message: c[1].to_string(),
            host: EXIM_HOST.captures(text)?[1].to_string(),
        }),
        "Completed" => Some(AttemptNews::Done {
            message: c[1].to_string(),
        }),
        _ => None,
    }
}

/// Recipients accepted per delivery attempt, and the findings waiting for
/// their attempt to end; both bounded ([`MAX_ATTEMPTS`], [`MAX_WAITING`]).
#[derive(Default)]
struct Attempts {
    accepted: HashMap<(String, String), u32>,
    /// Insertion order of `accepted`, for eviction.
    order: VecDeque<(String, String)>,
    /// (line number, finding, judge no later than this line).
    waiting: VecDeque<(u64, LogFinding, u64)>,
}

impl Attempts {
    fn accept(&mut self, key: (String, String)) {
        if let Some(n) = self.accepted.get_mut(&key) {
            *n += 1;
            return;
        }
        if self.accepted.len() >= MAX_ATTEMPTS
            && let Some(old) = self.order.pop_front()
        {
            self.accepted.remove(&old);
        }
        self.order.push_back(key.clone());
        self.accepted.insert(key, 1);
    }

    /// The attempt of a waiting finding cannot grow any more.
    fn done(&mut self, message: &str) {
        for (_, f, due) in &mut self.waiting {
            if f.message.as_deref() == Some(message) {
                *due = 0;
            }
        }
    }

    fn forget(&mut self, message: &str) {
        if self
            .waiting
            .iter()
            .any(|(_, f, _)| f.message.as_deref() == Some(message))
        {
            return;
        }
        self.accepted.retain(|(m, _), _| m != message);
        self.order.retain(|(m, _)| m != message);
    }

    /// Findings at the front that can be judged now (all when `all`), in
    /// line order, with their accepted count.
    fn ready(&mut self, line: u64, all: bool) -> Vec<(u64, LogFinding)> {
        let mut out = Vec::new();
        while let Some((_, _, due)) = self.waiting.front() {
            let overfull = self.waiting.len() > MAX_WAITING;
            if !(all || overfull || *due <= line) {
                break;
            }
            let Some((n, mut f, _)) = self.waiting.pop_front() else {
                break;
            };
            if f.context == CommandKind::Rcpt
                && let (Some(m), Some(h)) = (&f.message, &f.host)
            {
                f.recipients_accepted = self
                    .accepted
                    .get(&(m.clone(), h.clone()))
                    .copied()
                    .unwrap_or(0);
            }
            out.push((n, f));
        }
        out
    }
}

/// Counts over every judged reply of a log; every map is bounded.
#[derive(Clone, Debug)]
pub struct LogSummary {
    /// Lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines longer than [`MAX_LOG_LINE`] (cut).
    pub long_lines: u64,
    /// Replies found and judged.
    pub replies: u64,
    /// Replies the rules changed (annotated or remapped).
    pub changed: u64,
    /// Misused 530s: original code 530 that a rule remapped (now, or
    /// replyfix already: read back from its annotation).
    pub misused_530: u64,
    /// Replies replyfix had already rewritten (its annotation line; not
    /// judged again, counted under the rule it applied).
    pub rewritten_by_replyfix: u64,
    /// Replies per MTA format.
    pub by_source: BTreeMap<&'static str, u64>,
    /// Replies per context.
    pub by_context: BTreeMap<&'static str, u64>,
    /// Replies per original reply code: the server's (for a reply replyfix
    /// already rewrote, the code its annotation names; `0` when unknown).
    pub by_original_code: BTreeMap<u16, u64>,
    /// Replies per deciding rule ([`NO_RULE`] when none matched).
    pub by_rule: BTreeMap<String, u64>,
    /// Replies per accurate code (`550 5.1.1`), at most
    /// [`MAX_ACCURATE_KEYS`] keys plus [`OVERFLOW_KEY`].
    pub by_accurate_code: BTreeMap<String, u64>,
    /// Remote hosts sending misused 530s (Space-Saving, [`HOST_CAPACITY`]).
    pub misused_530_hosts: TopK,
}

impl Default for LogSummary {
    fn default() -> Self {
        LogSummary {
            lines: 0,
            bytes: 0,
            long_lines: 0,
            replies: 0,
            changed: 0,
            misused_530: 0,
            rewritten_by_replyfix: 0,
            by_source: BTreeMap::new(),
            by_context: BTreeMap::new(),
            by_original_code: BTreeMap::new(),
            by_rule: BTreeMap::new(),
            by_accurate_code: BTreeMap::new(),
            misused_530_hosts: TopK::new(HOST_CAPACITY),
        }
    }
}

impl LogSummary {
    /// Counts one judged finding.
    pub fn count(&mut self, f: &LogFinding, e: &Explanation) {
        self.replies += 1;
        *self.by_source.entry(f.source.as_str()).or_default() += 1;
        *self.by_context.entry(f.context.as_str()).or_default() += 1;
        *self
            .by_original_code
            .entry(e.server_code().map_or(0, |c| c.get()))
            .or_default() += 1;
        let rule = e.rule().unwrap_or(NO_RULE);
        match self.by_rule.get_mut(rule) {
            Some(n) => *n += 1,
            None => {
                self.by_rule.insert(rule.to_string(), 1);
            }
        }
        let accurate = accurate_code(e.client_sees());
        let key = if self.by_accurate_code.contains_key(&accurate)
            || self.by_accurate_code.len() < MAX_ACCURATE_KEYS
        {
            accurate
        } else {
            OVERFLOW_KEY.to_string()
        };
        *self.by_accurate_code.entry(key).or_default() += 1;
        let action = e.verdict.action();
        if matches!(action, Some(Action::Annotate | Action::Remap)) {
            self.changed += 1;
        }
        if e.rewritten.is_some() {
            self.rewritten_by_replyfix += 1;
        }
        if e.server_code().map(|c| c.get()) == Some(530) && e.remapped() {
            self.misused_530 += 1;
            self.misused_530_hosts
                .add(f.host.as_deref().unwrap_or("(unknown host)"));
        }
    }

    /// A machine-readable form; `top` hosts at most.
    pub fn to_json(&self, top: usize) -> Value {
        json!({
            "lines": self.lines,
            "bytes": self.bytes,
            "long_lines": self.long_lines,
            "replies": self.replies,
            "changed": self.changed,
            "misused_530": self.misused_530,
            "rewritten_by_replyfix": self.rewritten_by_replyfix,
            "by_source": self.by_source,
            "by_context": self.by_context,
            "by_original_code": self.by_original_code.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "by_rule": self.by_rule,
            "by_accurate_code": self.by_accurate_code,
            "top_misused_530_hosts": self.misused_530_hosts.top(top).iter().map(|c| json!({
                "host": escape_capped(c.key.as_bytes(), 255),
                "count": c.count,
                "max_overcount": c.error,
            })).collect::<Vec<_>>(),
            "hosts_tracked": self.misused_530_hosts.tracked(),
            "hosts_capacity": self.misused_530_hosts.capacity(),
        })
    }

    /// The summary as text tables; `top` hosts at most.
    pub fn display(&self, top: usize) -> impl fmt::Display + '_ {
        SummaryDisplay { s: self, top }
    }
}

struct SummaryDisplay<'a> {
    s: &'a LogSummary,
    top: usize,
}

impl fmt::Display for SummaryDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.s;
        writeln!(
            f,
            "summary: {} lines, {} remote replies, {} changed by the rules, {} misused 530s",
            s.lines, s.replies, s.changed, s.misused_530
        )?;
        if s.rewritten_by_replyfix > 0 {
            writeln!(
                f,
                "  {} of the replies replyfix had already rewritten (its annotation line): counted under the rule it applied and the code the server sent",
                s.rewritten_by_replyfix
            )?;
        }
        counts(f, "by MTA:", s.by_source.iter().map(|(k, v)| (k, *v)))?;
        counts(f, "by context:", s.by_context.iter().map(|(k, v)| (k, *v)))?;
        counts(
            f,
            "by original code:",
            s.by_original_code.iter().map(|(k, v)| (k, *v)),
        )?;
        counts(f, "by rule:", s.by_rule.iter().map(|(k, v)| (k, *v)))?;
        counts(
            f,
            "by accurate code:",
            s.by_accurate_code.iter().map(|(k, v)| (k, *v)),
        )?;
        writeln!(f, "top remote hosts sending misused 530s:")?;
        let top = s.misused_530_hosts.top(self.top);
        if top.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for c in top {
            let host = escape_capped(c.key.as_bytes(), 255);
            if c.error == 0 {
                writeln!(f, "  {:>10}  {host}", c.count)?;
            } else {
                writeln!(f, "  {:>10}  {host} (may be over by {})", c.count, c.error)?;
            }
        }
        Ok(())
    }
}

/// One finding with its judgement, one line (for `explain --log`).
pub fn finding_line(line_no: u64, f: &LogFinding, e: &Explanation) -> String {
    let rule = match (&e.rewritten, e.rule()) {
        (Some(r), rule) => {
            let said = r
                .server_code
                .map_or_else(String::new, |c| format!(" from {c}"));
            let rule = rule.map_or_else(
                || ", by a rule not in the rules used here".to_string(),
                |rule| format!(", rule '{rule}'"),
            );
            format!("rewritten by replyfix{said}{rule}")
        }
        (None, Some(r)) => format!("rule '{r}'"),
        (None, None) => "no rule".to_string(),
    };
    let accepted = match f.recipients_accepted {
        0 => String::new(),
        1 => ", 1 other recipient of the same delivery was accepted".to_string(),
        n => format!(", {n} other recipients of the same delivery were accepted"),
    };
    format!(
        "line {line_no}: {} {} {}: {} -> {} ({rule}{accepted})",
        f.source.as_str(),
        f.host
            .as_deref()
            .map_or_else(|| "-".into(), |h| escape_capped(h.as_bytes(), 255)),
        f.context,
        one_line(&f.reply),
        accurate_code(e.client_sees()),
    )
}

/// One finding with its judgement as JSON (for `explain --log --json`).
pub fn finding_json(line_no: u64, f: &LogFinding, e: &Explanation) -> Value {
    json!({
        "type": "reply",
        "line": line_no,
        "source": f.source.as_str(),
        "host": f.host.as_deref().map(|h| escape_capped(h.as_bytes(), 255)),
        "recipient": f.recipient.as_deref().map(|h| escape_capped(h.as_bytes(), 255)),
        "context": f.context.as_str(),
        "context_known": f.context_known,
        "message": f.message.as_deref().map(|m| escape_capped(m.as_bytes(), 64)),
        "recipients_accepted": f.recipients_accepted,
        "judgement": e.to_json(),
        "accurate": accurate_code(e.client_sees()),
    })
}

/// Reads one line of at most `max` bytes into `buf` (cleared first); the
/// rest of a longer line is consumed and dropped. Returns the bytes
/// consumed (0 at the end of input) and whether the line was cut.
pub fn read_bounded_line<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<(usize, bool)> {
    buf.clear();
    let mut consumed = 0;
    let mut cut = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok((consumed, cut));
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        if take > room {
            cut = true;
        }
        buf.extend_from_slice(&chunk[..take.min(room)]);
        reader.consume(take);
        consumed += take;
        if done {
            return Ok((consumed, cut));
        }
    }
}

/// Streams a log through the rules: each line is read (bounded), parsed,
/// judged with `base` facts in the line's context, handed to `on_reply`
/// and counted. `progress(bytes, lines)` is called about every 8 MiB.
pub fn summarise<R: BufRead>(
    mut reader: R,
    rules: &RuleSet,
    base: &SessionFacts<'_>,
    mut on_reply: impl FnMut(u64, &LogFinding, &Explanation),
    mut progress: impl FnMut(u64, u64),
) -> io::Result<LogSummary> {
    const PROGRESS_EVERY: u64 = 8 * 1024 * 1024;
    let mut summary = LogSummary::default();
    let mut buf = Vec::with_capacity(1024);
    let mut next_progress = PROGRESS_EVERY;
    let mut attempts = Attempts::default();
    let mut judge_one = |n: u64, f: &LogFinding, summary: &mut LogSummary| {
        let mut facts = *base;
        facts.command = f.context;
        facts.recipients_accepted = f.recipients_accepted.max(base.recipients_accepted);
        let e = explain(rules, f.reply.clone(), &facts);
        on_reply(n, f, &e);
        summary.count(f, &e);
    };
    loop {
        let (n, cut) = read_bounded_line(&mut reader, &mut buf, MAX_LOG_LINE)?;
        if n == 0 {
            break;
        }
        summary.lines += 1;
        summary.bytes += n as u64;
        if cut {
            summary.long_lines += 1;
        }
        let line = summary.lines;
        if let Some(f) = parse_line(&buf) {
            // A reply at RCPT of a known attempt waits for the attempt's
            // other recipients; the rest waits only behind it (line order).
            let due = if f.context == CommandKind::Rcpt && f.message.is_some() {
                line + ATTEMPT_WINDOW
            } else {
                0
            };
            attempts.waiting.push_back((line, f, due));
        } else {
            match attempt_news(&buf) {
                Some(AttemptNews::Accepted { message, host }) => attempts.accept((message, host)),
                Some(AttemptNews::Done { message }) => {
                    attempts.done(&message);
                    for (n, f) in attempts.ready(line, false) {
                        judge_one(n, &f, &mut summary);
                    }
                    attempts.forget(&message);
                }
                None => {}
            }
        }
        for (n, f) in attempts.ready(line, false) {
            judge_one(n, &f, &mut summary);
        }
        if summary.bytes >= next_progress {
            progress(summary.bytes, summary.lines);
            next_progress += PROGRESS_EVERY;
        }
    }
    for (n, f) in attempts.ready(u64::MAX, true) {
        judge_one(n, &f, &mut summary);
    }
    progress(summary.bytes, summary.lines);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accurate codes `summarise` gives, in order, with the accepted
    /// counts it used.
    fn judged(log: &str) -> Vec<(u64, String, u32)> {
        let rules = RuleSet::builtin();
        let mut out = Vec::new();
        summarise(
            log.as_bytes(),
            &rules,
            &SessionFacts::new(CommandKind::Other),
            |n, f, e| out.push((n, accurate_code(e.client_sees()), f.recipients_accepted)),
            |_, _| {},
        )
        .unwrap();
        out
    }

    const CONFIG_ERROR: &str = "530 5.7.1 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.";

    #[test]
    fn another_recipient_accepted_in_the_same_postfix_delivery_counts_before_or_after() {
        let sent = "Mar  3 10:00:01 mx1 postfix/smtp[2211]: 4Fq2Xk1Jz: to=<cy@example.org>, relay=mx.example.org[192.0.2.10]:25, delay=1.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9A1B2C)";
        let bounced = format!(
            "Mar  3 10:00:01 mx1 postfix/smtp[2211]: 4Fq2Xk1Jz: to=<ann@example.org>, relay=mx.example.org[192.0.2.10]:25, delay=1.2, dsn=5.7.1, status=bounced (host mx.example.org[192.0.2.10] said: {CONFIG_ERROR} (in reply to RCPT TO command))"
        );
        let removed = "Mar  3 10:00:02 mx1 postfix/qmgr[1100]: 4Fq2Xk1Jz: removed";
        let other = "Mar  3 10:00:03 mx1 postfix/smtp[2212]: 5Ab3Yl2Ka: to=<bo@example.net>, relay=mail.example.net[198.51.100.7]:25, delay=0.3, dsn=5.7.1, status=bounced (host mail.example.net[198.51.100.7] said: 530 5.7.1 Mailbox unavailable: user unknown (in reply to RCPT TO command))";
        // The refused recipient logged first (Postfix logs RCPT refusals
        // as they come, deliveries after the end of data): it waits.
        let log = format!("{bounced}\n{sent}\n{removed}\n{other}\n");
        assert_eq!(
            judged(&log),
            [
                (1, "550 5.1.1".to_string(), 1),
                (4, "550 5.1.1".to_string(), 0)
            ]
        );
        // Accepted first.
        let log = format!("{sent}\n{bounced}\n{removed}\n");
        assert_eq!(judged(&log), [(2, "550 5.1.1".to_string(), 1)]);
        // Alone in its delivery: the ambiguous reply stays ambiguous.
        let log = format!("{bounced}\n{removed}\n");
        assert_eq!(judged(&log), [(1, "554 5.0.0".to_string(), 0)]);
        // Another message, or another relay, is another transaction.
        let elsewhere = sent.replace("4Fq2Xk1Jz", "7It5An4Mc");
        let log = format!("{elsewhere}\n{bounced}\n{removed}\n");
        assert_eq!(judged(&log), [(2, "554 5.0.0".to_string(), 0)]);
    }

    #[test]
    fn another_recipient_accepted_in_the_same_exim_delivery_counts() {
        let log = "2026-03-05 14:02:31 1rgXyZ-000ABC-12 => cy@example.com R=dnslookup T=remote_smtp H=mx2.example.com [203.0.113.5] C=\"250 OK\"\n\
2026-03-05 14:02:32 1rgXyZ-000ABC-12 ** fay@example.com R=dnslookup T=remote_smtp H=mx2.example.com [203.0.113.5]: SMTP error from remote mail server after RCPT TO:<fay@example.com>: 530 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.\n\
2026-03-05 14:02:33 1rgXyZ-000ABC-12 Completed\n";
        assert_eq!(judged(log), [(2, "550 5.1.1".to_string(), 1)]);
    }

    #[test]
    fn waiting_findings_keep_line_order() {
        let bounced = format!(
            "Mar  3 10:00:01 mx1 postfix/smtp[2211]: 4Fq2Xk1Jz: to=<ann@example.org>, relay=mx.example.org[192.0.2.10]:25, delay=1.2, dsn=5.7.1, status=bounced (host mx.example.org[192.0.2.10] said: {CONFIG_ERROR} (in reply to RCPT TO command))"
        );
        let greeting = "Mar  3 10:00:08 mx1 postfix/smtp[2230]: 6Hs4Zm3Lb: to=<dan@example.net>, relay=none, delay=0.3, dsn=5.7.1, status=bounced (host mail.example.net[198.51.100.7] refused to talk to me: 530 5.7.1 Access denied: your IP is listed on a DNS blocklist)";
        let mut log = format!("{bounced}\n{greeting}\n");
        for _ in 0..ATTEMPT_WINDOW + 5 {
            log.push_str("Mar  3 10:00:09 mx1 postfix/anvil[1]: statistics\n");
        }
        let got = judged(&log);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn postfix_said_line_gives_host_recipient_context_and_reply() {
        let l = b"Mar  3 10:00:01 mx1 postfix/smtp[2211]: 4Fq2Xk1Jz: to=<ann@example.org>, relay=mx.example.org[192.0.2.10]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=5.7.1, status=bounced (host mx.example.org[192.0.2.10] said: 530 5.7.1 The message cannot be delivered due to a configuration error on the server. (in reply to RCPT TO command))";
        let f = parse_line(l).unwrap();
        assert_eq!(f.source, LogSource::Postfix);
        assert_eq!(f.host.as_deref(), Some("mx.example.org"));
        assert_eq!(f.recipient.as_deref(), Some("ann@example.org"));
        assert_eq!(f.context, CommandKind::Rcpt);
        assert_eq!(
            f.reply.raw().as_ref(),
            b"530 5.7.1 The message cannot be delivered due to a configuration error on the server.\r\n"
        );
    }

    #[test]
    fn postfix_refused_to_talk_is_the_greeting() {
        let l = b"Mar  3 10:00:02 mx1 postfix/smtp[2212]: 5Ab3Yl2Ka: to=<bo@example.net>, relay=none, delay=0.3, dsn=5.7.1, status=bounced (host mail.example.net[198.51.100.7] refused to talk to me: 530 5.7.1 Access denied: your IP is blocklisted)";
        let f = parse_line(l).unwrap();
        assert_eq!(f.context, CommandKind::Greeting);
        assert_eq!(f.host.as_deref(), Some("mail.example.net"));
        assert_eq!(
            f.reply.raw().as_ref(),
            b"530 5.7.1 Access denied: your IP is blocklisted\r\n"
        );
    }

    #[test]
    fn postfix_sasl_failure_is_the_auth_context() {
        let l = b"Mar  3 10:00:06 mx1 postfix/smtp[2240]: 1Ab2Cd3Ef: SASL authentication failed; server smtp.example.org[192.0.2.60] said: 535 5.7.8 Error: authentication failed";
        let f = parse_line(l).unwrap();
        assert_eq!(f.context, CommandKind::Auth);
        assert_eq!(f.host.as_deref(), Some("smtp.example.org"));
        assert_eq!(f.reply.code().get(), 535);
    }

    #[test]
    fn exim_error_line_gives_context_from_after() {
        let l = b"2024-03-03 10:00:03 1rgXyZ-000ABC-12 ** cy@example.com R=dnslookup T=remote_smtp H=mx2.example.com [203.0.113.5] X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes: SMTP error from remote mail server after end of data: 530 5.7.1 Message rejected as spam";
        let f = parse_line(l).unwrap();
        assert_eq!(f.source, LogSource::Exim);
        assert_eq!(f.context, CommandKind::DataEnd);
        assert_eq!(f.host.as_deref(), Some("mx2.example.com"));
        assert_eq!(f.recipient.as_deref(), Some("cy@example.com"));
        assert_eq!(f.reply.code().get(), 530);
    }

    #[test]
    fn sendmail_stat_line_gives_reply_and_relay() {
        let l = b"Mar  3 10:00:04 gw sm-mta[8812]: 42J9k3a1009912: to=<di@example.org>, delay=00:00:02, xdelay=00:00:01, mailer=esmtp, pri=120437, relay=mx3.example.org. [192.0.2.33], dsn=5.0.0, stat=Service unavailable: 530 5.7.1 Relaying denied";
        let f = parse_line(l).unwrap();
        assert_eq!(f.source, LogSource::Sendmail);
        assert_eq!(f.host.as_deref(), Some("mx3.example.org"));
        assert_eq!(f.context, CommandKind::Other);
        assert_eq!(f.reply.raw().as_ref(), b"530 5.7.1 Relaying denied\r\n");
    }

    #[test]
    fn unrelated_lines_are_skipped() {
        assert!(parse_line(b"Mar  3 10:00:05 mx1 postfix/qmgr[12]: 4Fq2Xk1Jz: removed").is_none());
        assert!(parse_line(b"\xff\xfe garbage stat=").is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_chunking_reads_the_same_lines(
            input in proptest::collection::vec(proptest::prop_oneof![proptest::prelude::any::<u8>(), proptest::prelude::Just(b'\n')], 0..400),
            cap in 1usize..64,
            max in 1usize..80,
        ) {
            let read_all = |cap: usize| {
                let mut r = io::BufReader::with_capacity(cap, &input[..]);
                let mut buf = Vec::new();
                let mut lines = Vec::new();
                loop {
                    let (n, cut) = read_bounded_line(&mut r, &mut buf, max).unwrap();
                    if n == 0 {
                        break;
                    }
                    proptest::prop_assert!(buf.len() <= max);
                    lines.push((n, cut, buf.clone()));
                }
                Ok(lines)
            };
            let whole = read_all(4096)?;
            proptest::prop_assert_eq!(read_all(cap)?, whole.clone());
            proptest::prop_assert_eq!(whole.iter().map(|l| l.0).sum::<usize>(), input.len());
        }

        #[test]
        fn any_line_is_parsed_without_panic(line in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut l = b"postfix/smtp[1]: host a[b] said: ".to_vec();
            l.extend_from_slice(&line);
            let _ = parse_line(&l);
            let mut l = b"SMTP error from remote mail server after ".to_vec();
            l.extend_from_slice(&line);
            let _ = parse_line(&l);
            let _ = parse_line(&line);
        }
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let mut input = vec![b'a'; 100];
        input.extend_from_slice(b"\nnext\n");
        let mut r = io::BufReader::with_capacity(7, &input[..]);
        let mut buf = Vec::new();
        let (n, cut) = read_bounded_line(&mut r, &mut buf, 10).unwrap();
        assert_eq!((n, cut, buf.len()), (101, true, 10));
        let (n, cut) = read_bounded_line(&mut r, &mut buf, 10).unwrap();
        assert_eq!((n, cut, &buf[..]), (5, false, &b"next\n"[..]));
        assert_eq!(read_bounded_line(&mut r, &mut buf, 10).unwrap().0, 0);
    }
}
