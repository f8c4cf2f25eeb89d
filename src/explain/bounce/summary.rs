//! Counts over a folder of bounces (`replyfix explain --dsn DIR`): by
//! reason, by remote host, by original reply code and by format, and the
//! misused 530s found — the form a postmaster reads a week of bounces in.
//!
//! Every count is bounded whatever the number of bounces: reasons, codes
//! and formats are bounded by nature, hosts go through a Space-Saving
//! top-K counter ([`TopK`]), and at most [`MAX_LISTED`] misused 530s are
//! listed (all are counted). No I/O: callers read the files and hand each
//! judged bounce to [`BounceSummary::add`].

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Value, json};

use super::Reason;
use crate::explain::dsn::{Bounce, RecipientReport, accurate_code, one_line};
use crate::explain::table::counts;
use crate::explain::topk::TopK;
use crate::smtp::escape::escape_capped;

/// Distinct remote hosts tracked (Space-Saving capacity).
pub const HOST_CAPACITY: usize = 1024;

/// At most this many misused 530s are listed; the rest are counted.
pub const MAX_LISTED: usize = 50;

/// The key for recipients whose bounce names no remote host.
pub const NO_HOST: &str = "(no remote host)";

/// One misused 530 found: a 530 reply the rules remap, or one replyfix
/// already remapped (read back from its annotation line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Misused530 {
    /// The bounce it was in (as the caller named it), escaped.
    pub file: String,
    /// The recipient, escaped.
    pub recipient: String,
    /// The remote server, escaped.
    pub host: Option<String>,
    /// The reply's lines, escaped, joined by ` | ` (as the bounce quotes
    /// it).
    pub original: String,
    /// The rule that remaps it (empty when replyfix's annotation names no
    /// rule in use).
    pub rule: String,
    /// True when replyfix had already remapped it.
    pub by_replyfix: bool,
    /// What the proxy would send instead (`550 5.1.1`).
    pub accurate: String,
}

/// Counts over many bounces.
#[derive(Clone, Debug)]
pub struct BounceSummary {
    /// Files given (or found in the folders given).
    pub files: u64,
    /// Bytes read from them (each at most the bounce cap).
    pub bytes: u64,
    /// Files that could not be read or are no e-mail message.
    pub unreadable: u64,
    /// Messages in which no recipient was found.
    pub without_recipient: u64,
    /// Recipients reported, failures or not.
    pub recipients: u64,
    /// Recipients per reason.
    pub by_reason: BTreeMap<Reason, u64>,
    /// Recipients per original reply code (`0`: the bounce had no reply).
    pub by_original_code: BTreeMap<u16, u64>,
    /// Bounces per format.
    pub by_format: BTreeMap<&'static str, u64>,
    /// Recipients per remote host (Space-Saving, [`HOST_CAPACITY`]).
    pub hosts: TopK,
    /// Misused 530s: original code 530 that a rule remapped (now, or
    /// replyfix already).
    pub misused_530: u64,
    /// Recipients whose reply replyfix had already rewritten (its
    /// annotation line).
    pub rewritten_by_replyfix: u64,
    /// The first [`MAX_LISTED`] of them.
    pub misused_listed: Vec<Misused530>,
}

impl Default for BounceSummary {
    fn default() -> Self {
        BounceSummary {
            files: 0,
            bytes: 0,
            unreadable: 0,
            without_recipient: 0,
            recipients: 0,
            by_reason: BTreeMap::new(),
            by_original_code: BTreeMap::new(),
            by_format: BTreeMap::new(),
            hosts: TopK::new(HOST_CAPACITY),
            misused_530: 0,
            rewritten_by_replyfix: 0,
            misused_listed: Vec::new(),
        }
    }
}

fn esc(s: &str) -> String {
    escape_capped(s.as_bytes(), 255)
}

impl BounceSummary {
    /// Counts a file that could not be read or is no message.
    pub fn add_unreadable(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
        self.unreadable += 1;
    }

    /// Counts one bounce (`bytes` read from `file`) and its judged
    /// recipients.
    pub fn add(&mut self, file: &str, bytes: u64, bounce: &Bounce, reports: &[RecipientReport]) {
        self.files += 1;
        self.bytes += bytes;
        *self.by_format.entry(bounce.style).or_default() += 1;
        if reports.is_empty() {
            self.without_recipient += 1;
        }
        for r in reports {
            let rcpt = &r.recipient;
            self.recipients += 1;
            *self.by_reason.entry(rcpt.reason).or_default() += 1;
            *self
                .by_original_code
                .entry(rcpt.reply_code.unwrap_or(0))
                .or_default() += 1;
            self.hosts
                .add(rcpt.remote_mta.as_deref().unwrap_or(NO_HOST));
            let Some(e) = &r.explanation else { continue };
            if e.rewritten.is_some() {
                self.rewritten_by_replyfix += 1;
            }
            if e.server_code().map(|c| c.get()) != Some(530) || !e.remapped() {
                continue;
            }
            self.misused_530 += 1;
            if self.misused_listed.len() < MAX_LISTED {
                self.misused_listed.push(Misused530 {
                    file: esc(file),
                    recipient: esc(&rcpt.recipient),
                    host: rcpt.remote_mta.as_deref().map(esc),
                    original: one_line(&e.original),
                    rule: e.rule().unwrap_or("").to_string(),
                    by_replyfix: e.rewritten.is_some(),
                    accurate: accurate_code(e.client_sees()),
                });
            }
        }
    }

    /// A machine-readable form; `top` hosts at most.
    pub fn to_json(&self, top: usize) -> Value {
        json!({
            "files": self.files,
            "bytes": self.bytes,
            "unreadable": self.unreadable,
            "without_recipient": self.without_recipient,
            "recipients": self.recipients,
            "by_reason": self.by_reason.iter().map(|(k, v)| (k.as_str(), *v)).collect::<BTreeMap<_, _>>(),
            "by_original_code": self.by_original_code.iter().map(|(k, v)| (code_key(*k), *v)).collect::<BTreeMap<_, _>>(),
            "by_format": self.by_format,
            "top_remote_hosts": self.hosts.top(top).iter().map(|c| json!({
                "host": esc(&c.key),
                "count": c.count,
                "max_overcount": c.error,
            })).collect::<Vec<_>>(),
            "hosts_tracked": self.hosts.tracked(),
            "hosts_capacity": self.hosts.capacity(),
            "misused_530": self.misused_530,
            "rewritten_by_replyfix": self.rewritten_by_replyfix,
            "misused_530_listed": self.misused_listed.iter().map(|m| json!({
                "file": m.file,
                "recipient": m.recipient,
                "remote_mta": m.host,
                "original": m.original,
                "rule": m.rule,
                "by_replyfix": m.by_replyfix,
                "accurate": m.accurate,
            })).collect::<Vec<_>>(),
        })
    }

    /// The summary as text tables; `top` hosts at most.
    pub fn display(&self, top: usize) -> impl fmt::Display + '_ {
        SummaryDisplay { s: self, top }
    }
}

fn code_key(code: u16) -> String {
    if code == 0 {
        "none".to_string()
    } else {
        code.to_string()
    }
}

struct SummaryDisplay<'a> {
    s: &'a BounceSummary,
    top: usize,
}

impl fmt::Display for SummaryDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.s;
        let failed: u64 = s
            .by_reason
            .iter()
            .filter(|(r, _)| !r.is_not_a_failure())
            .map(|(_, n)| n)
            .sum();
        writeln!(
            f,
            "summary: {} files ({:.1} MiB read), {} unreadable, {} without a recipient; {} recipients, {} failed, {} misused 530s",
            s.files,
            s.bytes as f64 / 1_048_576.0,
            s.unreadable,
            s.without_recipient,
            s.recipients,
            failed,
            s.misused_530
        )?;
        counts(
            f,
            "by reason:",
            s.by_reason.iter().map(|(k, v)| (k.as_str(), *v)),
        )?;
        let hosts = s.hosts.top(self.top);
        writeln!(
            f,
            "by remote host (top {} of {} tracked):",
            hosts.len(),
            s.hosts.tracked()
        )?;
        if hosts.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for c in hosts {
            let host = esc(&c.key);
            if c.error == 0 {
                writeln!(f, "  {:>10}  {host}", c.count)?;
            } else {
                writeln!(f, "  {:>10}  {host} (may be over by {})", c.count, c.error)?;
            }
        }
        counts(
            f,
            "by original code:",
            s.by_original_code.iter().map(|(k, v)| (code_key(*k), *v)),
        )?;
        counts(f, "by format:", s.by_format.iter().map(|(k, v)| (k, *v)))?;
        writeln!(f, "misused 530s (a 530 the rules remap): {}", s.misused_530)?;
        if s.rewritten_by_replyfix > 0 {
            writeln!(
                f,
                "already rewritten by replyfix (its annotation line): {}",
                s.rewritten_by_replyfix
            )?;
        }
        for m in &s.misused_listed {
            let by = if m.by_replyfix {
                "already remapped by replyfix, "
            } else {
                ""
            };
            writeln!(
                f,
                "  {}: {} {}: {} -> {} ({by}rule '{}')",
                m.file,
                m.recipient,
                m.host.as_deref().unwrap_or(NO_HOST),
                m.original,
                m.accurate,
                m.rule
            )?;
        }
        if s.misused_530 > s.misused_listed.len() as u64 {
            writeln!(
                f,
                "  ... and {} more",
                s.misused_530 - s.misused_listed.len() as u64
            )?;
        }
        Ok(())
    }
}

/// One recipient as one line (`explain --dsn DIR` without
/// `--summary-only`): file, recipient, reason, status, code, host, and the
/// accurate code when the rules change the reply.
pub fn recipient_line(file: &str, r: &RecipientReport) -> String {
    let rc = &r.recipient;
    let mut line = format!(
        "{}: {} {} status {} code {} host {}",
        esc(file),
        esc(&rc.recipient),
        rc.reason,
        rc.status.as_deref().map_or_else(|| "-".into(), esc),
        rc.reply_code.map_or_else(|| "-".into(), |c| c.to_string()),
        rc.remote_mta.as_deref().map_or_else(|| "-".into(), esc),
    );
    if let Some(e) = &r.explanation {
        if e.rewritten.is_some() {
            let from = e
                .server_code()
                .map_or_else(String::new, |c| format!(" from {c}"));
            line.push_str(&format!(
                " (rewritten by replyfix{from}, rule '{}')",
                e.rule().unwrap_or("?")
            ));
        } else if e.verdict.action().is_some() {
            line.push_str(&format!(
                " -> {} (rule '{}')",
                accurate_code(e.client_sees()),
                e.verdict.rule().unwrap_or("")
            ));
        }
    }
    line
}

/// One recipient as a JSON object (`"type":"recipient"`, with `file`).
pub fn recipient_json(file: &str, r: &RecipientReport) -> Value {
    let mut v = r.to_json();
    v["type"] = "recipient".into();
    v["file"] = esc(file).into();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::dsn::{explain_bounce, parse_bounce};
    use crate::rules::{RuleSet, SessionFacts};
    use crate::smtp::CommandKind;

    fn bounce_with(reply: &str, host: &str) -> Vec<u8> {
        format!(
            "From: MAILER-DAEMON@example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\nThe mail system\r\n\r\n<kim@example.org>: host {host}[192.0.2.1] said: {reply} (in reply to RCPT TO command)\r\n"
        )
        .into_bytes()
    }

    fn add(s: &mut BounceSummary, name: &str, raw: &[u8]) {
        let b = parse_bounce(raw).unwrap();
        let r = explain_bounce(
            &RuleSet::builtin(),
            &b,
            &SessionFacts::new(CommandKind::Other),
        );
        s.add(name, raw.len() as u64, &b, &r);
    }

    #[test]
    fn counts_reasons_codes_hosts_and_lists_misused_530s() {
        let mut s = BounceSummary::default();
        add(
            &mut s,
            "a.eml",
            &bounce_with("550 5.1.1 User unknown", "mx.example.org"),
        );
        add(
            &mut s,
            "b.eml",
            &bounce_with(
                "530 5.7.1 Mailbox unavailable: user unknown",
                "mx.example.org",
            ),
        );
        add(
            &mut s,
            "c.eml",
            &bounce_with("552 5.2.2 Mailbox full", "mx2.example.org"),
        );
        s.add_unreadable(3);
        assert_eq!(s.files, 4);
        assert_eq!(s.unreadable, 1);
        assert_eq!(s.recipients, 3);
        assert_eq!(s.by_reason[&Reason::UserUnknown], 2);
        assert_eq!(s.by_reason[&Reason::MailboxFull], 1);
        assert_eq!(s.by_original_code[&530], 1);
        assert_eq!(s.hosts.top(1)[0].key, "mx.example.org");
        assert_eq!(s.misused_530, 1);
        assert_eq!(s.misused_listed[0].file, "b.eml");
        assert_eq!(s.misused_listed[0].accurate, "550 5.1.1");
        let text = s.display(10).to_string();
        assert!(
            text.contains("misused 530s (a 530 the rules remap): 1"),
            "{text}"
        );
        assert!(
            text.contains("b.eml: kim@example.org mx.example.org: 530 5.7.1"),
            "{text}"
        );
        assert_eq!(s.to_json(10)["by_reason"]["userunknown"], 2);
    }

    #[test]
    fn the_list_of_misused_530s_is_capped_but_all_are_counted() {
        let mut s = BounceSummary::default();
        let raw = bounce_with(
            "530 5.7.1 Mailbox unavailable: user unknown",
            "mx.example.org",
        );
        for i in 0..(MAX_LISTED + 7) {
            add(&mut s, &format!("{i}.eml"), &raw);
        }
        assert_eq!(s.misused_530, MAX_LISTED as u64 + 7);
        assert_eq!(s.misused_listed.len(), MAX_LISTED);
        assert!(s.display(3).to_string().contains("... and 7 more"));
    }
}
