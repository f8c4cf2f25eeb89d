//! Bounce messages (`replyfix explain --dsn`): every failed recipient, its
//! status, the remote server's reply, the command it answered and why it
//! failed ([`Reason`]), each reply judged by the rules.
//!
//! The reading is [`super::bounce`]'s (RFC 3464 reports and the bounce
//! texts of the common MTAs and providers, one file per format); this
//! module judges and presents. It never does I/O beyond the capped
//! [`read_capped`], and it keeps network text as it came: what it shows is
//! escaped (L4).

use std::fmt;
use std::io::Read;

use serde_json::{Value, json};

use super::advice::{Advice, advise_explained, advise_reason};
use super::{Explanation, explain};
use crate::rules::{RuleSet, SessionFacts, Verdict};
use crate::smtp::Reply;
use crate::smtp::escape::escape_capped;

pub use super::bounce::mail::MAX_BOUNCE;
use super::bounce::reason_for_reply;
pub use super::bounce::{FailedRecipient, MAX_RECIPIENTS, Reason};

/// Why a bounce could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DsnError {
    /// The input is not an RFC 5322 message.
    #[error("not an e-mail message (no header found)")]
    NotAMessage,
}

/// What was read from one bounce.
#[derive(Clone, Debug)]
pub struct Bounce {
    /// The bounce format (`postfix`, `qmail`, `exchange2007`, ...;
    /// `rfc3464` for a DSN of no known format, `unknown` when nothing was
    /// recognised).
    pub style: &'static str,
    /// True when RFC 3464 delivery-status fields were read.
    pub rfc3464: bool,
    /// The failed recipients, in the bounce's order. When the message
    /// reports no failure at all (a delivery report, a complaint), the
    /// recipients it names, with that [`Reason`].
    pub recipients: Vec<FailedRecipient>,
}

/// Reads a bounce message (at most [`MAX_BOUNCE`] bytes of `raw`). A
/// message that is no bounce of a known kind gives no recipients: callers
/// say "no failed recipient found".
pub fn parse_bounce(raw: &[u8]) -> Result<Bounce, DsnError> {
    let read = super::bounce::read(raw).ok_or(DsnError::NotAMessage)?;
    Ok(Bounce {
        style: read.style,
        rfc3464: read.rfc3464,
        recipients: read.recipients,
    })
}

/// Reads at most `cap` bytes from `input`: a bounce larger than that is
/// cut, never held whole in memory.
pub fn read_capped(input: impl Read, cap: usize) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(cap.min(64 * 1024));
    input.take(cap as u64).read_to_end(&mut raw)?;
    Ok(raw)
}

/// One failed recipient with the rules' judgement of its reply.
#[derive(Clone, Debug)]
pub struct RecipientReport {
    /// What the bounce said.
    pub recipient: FailedRecipient,
    /// The rules' decision, when the bounce carried an SMTP reply.
    pub explanation: Option<Explanation>,
    /// What it most likely means and what to do.
    pub advice: Advice,
    /// The reason read again from the reply the rules would send instead,
    /// when they change its code (a misused 530 whose `5.7.1` hid an
    /// unknown user); `None` when the rules leave the code alone.
    pub accurate_reason: Option<Reason>,
}

/// Judges each failed recipient's reply with `rules`; `base` gives the
/// session facts a bounce cannot tell (authenticated, TLS, recipients
/// accepted); its `command` is replaced by each recipient's context.
pub fn explain_bounce(
    rules: &RuleSet,
    bounce: &Bounce,
    base: &SessionFacts<'_>,
) -> Vec<RecipientReport> {
    bounce
        .recipients
        .iter()
        .map(|r| {
            let mut facts = *base;
            facts.command = r.context;
            let explanation = r.reply.clone().map(|reply| explain(rules, reply, &facts));
            let advice = match &explanation {
                Some(e) => advise_explained(e),
                None => advise_reason(r.reason, r.status.as_deref()),
            };
            let accurate_reason = explanation.as_ref().and_then(|e| {
                let sent = e.client_sees();
                (sent.code() != e.original.code()).then(|| reason_for_reply(r, sent))
            });
            RecipientReport {
                recipient: r.clone(),
                explanation,
                advice,
                accurate_reason,
            }
        })
        .collect()
}

fn esc(s: &str) -> String {
    escape_capped(s.as_bytes(), 1024)
}

impl RecipientReport {
    /// A machine-readable form (`replyfix explain --dsn --json`).
    pub fn to_json(&self) -> Value {
        let r = &self.recipient;
        let e = self.explanation.as_ref();
        json!({
            "recipient": esc(&r.recipient),
            "reason": r.reason.as_str(),
            "accurate_reason": self.accurate_reason.map(Reason::as_str),
            "action": r.action.as_deref().map(esc),
            "status": r.status.as_deref().map(esc),
            "status_source": r.status_source,
            "reply_code": r.reply_code,
            "remote_mta": r.remote_mta.as_deref().map(esc),
            "diagnostic": r.diagnostic.as_deref().map(esc),
            "context": r.context.as_str(),
            "context_known": r.context_known,
            "judgement": e.map(Explanation::to_json),
            "accurate": e.map(|e| accurate_code(e.client_sees())),
            "meaning": self.advice.meaning,
            "what_to_do": self.advice.action,
        })
    }
}

/// `550 5.1.1`, or `530` without an enhanced code.
pub fn accurate_code(r: &Reply) -> String {
    match r.enhanced() {
        Some(e) => format!("{} {e}", r.code()),
        None => r.code().to_string(),
    }
}

impl fmt::Display for RecipientReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.recipient;
        writeln!(f, "recipient:   {}", esc(&r.recipient))?;
        match self.accurate_reason {
            Some(a) if a != r.reason => {
                writeln!(f, "reason:      {} (after the rules: {a})", r.reason)?
            }
            _ => writeln!(f, "reason:      {}", r.reason)?,
        }
        if let Some(m) = &r.remote_mta {
            writeln!(f, "remote MTA:  {}", esc(m))?;
        }
        if r.status.is_some() || r.action.is_some() {
            writeln!(
                f,
                "status:      {}{}",
                r.status.as_deref().map_or_else(|| "-".into(), esc),
                r.action
                    .as_deref()
                    .map_or_else(String::new, |a| format!(" ({})", esc(a)))
            )?;
        }
        let how = if r.context_known {
            "as the bounce says"
        } else {
            "the bounce does not say which command"
        };
        writeln!(f, "context:     {} ({how})", r.context)?;
        match &self.explanation {
            Some(e) => {
                writeln!(f, "original:    {}", one_line(&e.original))?;
                if let Some(r) = &e.rewritten {
                    writeln!(
                        f,
                        "rewritten:   by replyfix (its annotation line): {}",
                        e.rewritten_line().unwrap_or_default()
                    )?;
                    if let Some(s) = &r.server_reply {
                        writeln!(f, "server said: {}", one_line(s))?;
                    }
                    if let Some(why) = &r.why {
                        writeln!(f, "why:         {}", esc(why))?;
                    }
                    if let Some(seen) = r.seen.describe() {
                        writeln!(
                            f,
                            "proxy saw:   {seen} (the bounce does not say; the rule needs it)"
                        )?;
                    }
                }
                writeln!(f, "meaning:     {}", self.advice.meaning)?;
                let decision = match (&e.rewritten, &e.verdict) {
                    (Some(r), _) => match &r.rule {
                        Some(rule) => format!("already rewritten by replyfix, rule '{rule}'"),
                        None => "already rewritten by replyfix".to_string(),
                    },
                    (None, Verdict::NoMatch) => "no rule matched".to_string(),
                    (None, Verdict::Keep { rule }) => format!("rule '{rule}': keep"),
                    (None, Verdict::Rewrite { rule, action, .. }) => {
                        format!("rule '{rule}': {action}")
                    }
                };
                writeln!(
                    f,
                    "accurate:    {}  ({decision})",
                    accurate_code(e.client_sees())
                )?;
            }
            None => {
                let d = r.diagnostic.as_deref().map_or_else(|| "-".into(), esc);
                writeln!(
                    f,
                    "original:    no SMTP reply in the bounce; diagnostic: {d}"
                )?;
                writeln!(f, "meaning:     {}", self.advice.meaning)?;
            }
        }
        writeln!(f, "what to do:  {}", self.advice.action)
    }
}

/// The reply's lines, escaped, joined by ` | ` (as `explain` accepts them).
pub fn one_line(r: &Reply) -> String {
    r.raw()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| escape_capped(l.strip_suffix(b"\r").unwrap_or(l), 1024))
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::CommandKind;

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_without_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_bounce(&body);
            let mut m = b"Subject: x\r\nContent-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; a@b\r\nDiagnostic-Code: smtp; ".to_vec();
            m.extend_from_slice(&body);
            let _ = parse_bounce(&m);
        }
    }

    #[test]
    fn report_without_diagnostic_code_takes_the_reply_from_its_text() {
        let m = "Subject: x\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe following address(es) failed:\r\n\r\n  kim@example.org\r\n    host mx.example.org [192.0.2.9]\r\n    SMTP error from remote mail server after RCPT TO:<kim@example.org>:\r\n    530 5.7.1 Unknown user\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a.example\r\n\r\nFinal-Recipient: rfc822; kim@example.org\r\nAction: failed\r\nStatus: 5.0.0\r\n\r\n--b--\r\n";
        let b = parse_bounce(m.as_bytes()).unwrap();
        assert!(b.rfc3464);
        assert_eq!(b.style, "exim");
        let r = &b.recipients[0];
        assert_eq!(r.context, CommandKind::Rcpt);
        assert_eq!(r.remote_mta.as_deref(), Some("mx.example.org"));
        assert_eq!(
            r.reply.as_ref().map(|r| r.raw().to_vec()),
            Some(b"530 5.7.1 Unknown user\r\n".to_vec())
        );
        assert_eq!(r.reason, Reason::UserUnknown);
        assert_eq!(r.status.as_deref(), Some("5.7.1"));
    }

    #[test]
    fn garbage_is_not_a_message() {
        assert!(parse_bounce(b"").is_err());
    }

    #[test]
    fn reading_is_capped() {
        let big = std::io::repeat(b'x').take(10 * 1024 * 1024);
        let raw = read_capped(big, 1000).unwrap();
        assert_eq!(raw.len(), 1000);
    }
}
