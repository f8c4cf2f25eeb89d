//! Bounce messages (`replyfix explain --dsn`): find each failed recipient,
//! the remote server's reply and the command it answered.
//!
//! Two kinds of bounce are read:
//! - RFC 3464 delivery status notifications: a `multipart/report` whose
//!   `message/delivery-status` part has one block of fields per recipient
//!   (`Final-Recipient`, `Action`, `Status`, `Remote-MTA`,
//!   `Diagnostic-Code`, RFC 3464 2.3). The command is taken from the
//!   human-readable part when it names one (Postfix's `in reply to RCPT TO
//!   command`).
//! - The common non-standard bounces that carry the reply only in their
//!   text: Postfix, Exim, Exchange / Office 365 NDRs and Gmail.
//!
//! MIME is parsed by the `mail-parser` crate; this module only reads the
//! delivery-status fields and the bounce texts. It never does I/O, and it
//! keeps network text as it came: callers escape it for display (L4).

use std::fmt;
use std::sync::LazyLock;

use mail_parser::{MessageParser, MimeHeaders, PartType};
use regex::Regex;
use serde_json::{Value, json};

use super::advice::{Advice, advise, advise_status};
use super::extract::{context_in_text, reply_from_quoted};
use super::{Explanation, explain};
use crate::rules::{RuleSet, SessionFacts, Verdict};
use crate::smtp::escape::escape_capped;
use crate::smtp::{CommandKind, Reply};

/// The largest bounce read (bytes). A bounce carrying a whole large message
/// is cut here; the status parts come first.
pub const MAX_BOUNCE: usize = 16 * 1024 * 1024;

/// At most this many failed recipients are taken from one bounce.
pub const MAX_RECIPIENTS: usize = 1000;

/// Why a bounce could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DsnError {
    /// The input is not an RFC 5322 message.
    #[error("not an e-mail message (no header found)")]
    NotAMessage,
}

/// Which kind of bounce the recipients were read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BounceStyle {
    /// RFC 3464 `multipart/report; report-type=delivery-status`.
    Rfc3464,
    /// Postfix's text: `<a@b>: host H[ip] said: 530 ... (in reply to ...)`.
    Postfix,
    /// Exim's text: `SMTP error from remote mail server after ...:`.
    Exim,
    /// Exchange / Office 365 NDR: `Remote Server returned '530 ...'`.
    Exchange,
    /// Gmail: `The response from the remote server was:` / `The response was:`.
    Gmail,
}

impl BounceStyle {
    /// A short name for output: `rfc3464`, `postfix`, `exim`, `exchange`, `gmail`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BounceStyle::Rfc3464 => "rfc3464",
            BounceStyle::Postfix => "postfix",
            BounceStyle::Exim => "exim",
            BounceStyle::Exchange => "exchange",
            BounceStyle::Gmail => "gmail",
        }
    }
}

/// One recipient a bounce reports as failed (or delayed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRecipient {
    /// The address (`Final-Recipient` without its `rfc822;` type).
    pub recipient: String,
    /// RFC 3464 `Action` (`failed`, `delayed`), when given.
    pub action: Option<String>,
    /// RFC 3464 `Status` (an RFC 3463 code such as `5.7.1`), when given.
    pub status: Option<String>,
    /// The remote server (`Remote-MTA` without `dns;`, or the host named in
    /// the text).
    pub remote_mta: Option<String>,
    /// The diagnostic as given (`Diagnostic-Code` without `smtp;`, or the
    /// quoted reply text), unfolded.
    pub diagnostic: Option<String>,
    /// The remote reply, when the diagnostic is one.
    pub reply: Option<Reply>,
    /// The command the reply answered, when the bounce says; else `other`.
    pub context: CommandKind,
    /// True when `context` was read from the bounce (false: `other` by default).
    pub context_known: bool,
}

impl FailedRecipient {
    fn new(recipient: String) -> Self {
        FailedRecipient {
            recipient,
            action: None,
            status: None,
            remote_mta: None,
            diagnostic: None,
            reply: None,
            context: CommandKind::Other,
            context_known: false,
        }
    }

    fn set_diagnostic(&mut self, text: &str) {
        self.reply = reply_from_quoted(text.as_bytes());
        self.diagnostic = Some(text.to_string());
    }

    fn set_context(&mut self, k: Option<CommandKind>) {
        if let Some(k) = k {
            self.context = k;
            self.context_known = true;
        }
    }
}

/// What was read from one bounce.
#[derive(Clone, Debug)]
pub struct Bounce {
    /// The kind of bounce.
    pub style: BounceStyle,
    /// The failed recipients, in the bounce's order.
    pub recipients: Vec<FailedRecipient>,
}

/// Reads a bounce message. A message that is a bounce of no known kind
/// gives [`BounceStyle::Rfc3464`] with no recipients when it is a report,
/// else the style whose text matched, else an empty Postfix-style result:
/// callers say "no failed recipient found".
pub fn parse_bounce(raw: &[u8]) -> Result<Bounce, DsnError> {
    let raw = &raw[..raw.len().min(MAX_BOUNCE)];
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or(DsnError::NotAMessage)?;
    if msg.headers().is_empty() {
        return Err(DsnError::NotAMessage);
    }
    let mut status_blocks: Option<Vec<u8>> = None;
    let mut texts: Vec<String> = Vec::new();
    // HTML is read only when there is no plain text (multipart/alternative
    // carries the same words twice).
    let mut htmls: Vec<String> = Vec::new();
    for part in &msg.parts {
        let (ctype, subtype) = part
            .content_type()
            .map(|c| {
                (
                    c.ctype().to_ascii_lowercase(),
                    c.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_else(|| ("text".into(), "plain".into()));
        if ctype == "message"
            && (subtype == "delivery-status" || subtype == "global-delivery-status")
        {
            if status_blocks.is_none() {
                status_blocks = Some(part.contents().to_vec());
            }
            continue;
        }
        match &part.body {
            PartType::Text(t) => texts.push(t.to_string()),
            PartType::Html(h) => htmls.push(html_to_text(h)),
            _ => {}
        }
        // Only the bounce's own parts: a returned message's text is not read.
        if matches!(part.body, PartType::Message(_)) {
            break;
        }
    }
    if texts.iter().all(|t| t.trim().is_empty()) {
        texts = htmls;
    }
    let human = texts.join("\n");
    if let Some(blocks) = status_blocks {
        let mut recipients = parse_delivery_status(&String::from_utf8_lossy(&blocks));
        let contexts = scan_text(&human);
        for r in &mut recipients {
            if let Some(found) = contexts
                .iter()
                .find(|t| t.recipient.eq_ignore_ascii_case(&r.recipient))
                && found.context_known
            {
                r.set_context(Some(found.context));
            }
            let Some(found) = contexts
                .iter()
                .find(|t| t.recipient.eq_ignore_ascii_case(&r.recipient))
            else {
                continue;
            };
            if r.remote_mta.is_none() {
                r.remote_mta.clone_from(&found.remote_mta);
            }
            // A report without a Diagnostic-Code: the text may quote the reply.
            if r.reply.is_none() && found.reply.is_some() {
                r.reply.clone_from(&found.reply);
                r.diagnostic.clone_from(&found.diagnostic);
            }
        }
        return Ok(Bounce {
            style: BounceStyle::Rfc3464,
            recipients,
        });
    }
    let (style, recipients) = scan_text_styled(&human);
    Ok(Bounce { style, recipients })
}

/// Splits a `message/delivery-status` body into its field blocks (RFC 3464
/// 2.1: blocks separated by empty lines, fields folded as in RFC 5322) and
/// returns the per-recipient blocks whose `Action` is `failed` or `delayed`
/// (or absent).
pub fn parse_delivery_status(body: &str) -> Vec<FailedRecipient> {
    let mut out = Vec::new();
    for (i, block) in blocks(body).into_iter().enumerate() {
        // The first block is per-message.
        if i == 0 && !block.iter().any(|(k, _)| k == "final-recipient") {
            continue;
        }
        let get = |name: &str| {
            block
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let Some(recipient) = get("final-recipient").or(get("original-recipient")) else {
            continue;
        };
        let action = get("action").map(|a| a.trim().to_ascii_lowercase());
        if matches!(
            action.as_deref(),
            Some("delivered" | "relayed" | "expanded")
        ) {
            continue;
        }
        let mut r = FailedRecipient::new(strip_type(recipient).to_string());
        r.action = action;
        r.status = get("status").map(|s| s.trim().to_string());
        r.remote_mta = get("remote-mta").map(|s| strip_type(s).to_string());
        if let Some(d) = get("diagnostic-code") {
            r.set_diagnostic(strip_type(d));
        }
        out.push(r);
        if out.len() >= MAX_RECIPIENTS {
            break;
        }
    }
    out
}

/// `rfc822; a@b` -> `a@b`, `dns; mx.example` -> `mx.example`,
/// `smtp; 530 ...` -> `530 ...` (RFC 3464 2.3: `type ; value`).
fn strip_type(v: &str) -> &str {
    match v.split_once(';') {
        Some((t, rest)) if !t.trim().is_empty() && !t.contains(' ') => rest.trim(),
        _ => v.trim(),
    }
}

/// Field blocks: lowercased names, unfolded values.
fn blocks(body: &str) -> Vec<Vec<(String, String)>> {
    let mut all = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !cur.is_empty() {
                all.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            cur.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        all.push(cur);
    }
    all
}

/// Text with HTML tags removed and common entities decoded; block tags
/// become line ends. Enough for NDRs that come as HTML only.
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split([' ', '/'])
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if matches!(
                    name.as_str(),
                    "br" | "p" | "div" | "tr" | "li" | "table" | "h1" | "h2" | "h3"
                ) {
                    out.push('\n');
                }
            }
            (true, c) => tag.push(c),
            (false, c) => out.push(c),
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// Joins indented continuation lines to the line before them.
fn unwrap_indented(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let continues = line.starts_with([' ', '\t'])
            && !line.trim().is_empty()
            && out.last().is_some_and(|l| !l.trim().is_empty());
        match out.last_mut() {
            Some(prev) if continues => {
                prev.push(' ');
                prev.push_str(line.trim());
            }
            _ => out.push(line.to_string()),
        }
    }
    out
}

static POSTFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*<([^<>\s]+)>(?: \(expanded from <[^>]*>\))?:\s+host\s+(\S+?)(?:\[[^\]]*\])?\s+(?:said|refused to talk to me):\s+(.*)$",
    )
    .expect("static regex")
});
static IN_REPLY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s*\(in\s+reply\s+to\s+[^()]*\)\s*$").expect("static regex"));
static EXIM_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)SMTP error from remote (?:mail server|server) after (.*?):\s*(\d{3}[ -].*)?$")
        .expect("static regex")
});
static EXIM_HOST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*host\s+(\S+)\s+\[[^\]]+\]").expect("static regex"));
static EXCHANGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)Remote Server returned '([^']*)'").expect("static regex"));
static EXCHANGE_ORG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:organization rejected your message|Remote server):?\s*\[?([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
        .expect("static regex")
});
static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*<?([A-Za-z0-9._%+=/!#$&'*?^`{|}~-]+@[A-Za-z0-9.-]+)>?\s*$")
        .expect("static regex")
});
static GMAIL_TO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:wasn't|was not|couldn't be|could not be) delivered to\s+<?([^\s<>]+@[^\s<>]+?)>?\s+because")
        .expect("static regex")
});

/// Reads recipients from a bounce's human-readable text, trying each style.
fn scan_text_styled(text: &str) -> (BounceStyle, Vec<FailedRecipient>) {
    for (style, scan) in [
        (
            BounceStyle::Postfix,
            scan_postfix as fn(&[String]) -> Vec<FailedRecipient>,
        ),
        (BounceStyle::Exim, scan_exim),
        (BounceStyle::Exchange, scan_exchange),
        (BounceStyle::Gmail, scan_gmail),
    ] {
        let lines = unwrap_for(style, text);
        let mut found = scan(&lines);
        dedup(&mut found);
        if !found.is_empty() {
            return (style, found);
        }
    }
    (BounceStyle::Postfix, Vec::new())
}

/// Drops repeats of the same recipient with the same diagnostic.
fn dedup(found: &mut Vec<FailedRecipient>) {
    let mut seen: Vec<(String, Option<String>)> = Vec::new();
    found.retain(|r| {
        let key = (r.recipient.to_ascii_lowercase(), r.diagnostic.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
}

/// All recipients any style finds (for contexts of an RFC 3464 report).
fn scan_text(text: &str) -> Vec<FailedRecipient> {
    scan_text_styled(text).1
}

fn unwrap_for(style: BounceStyle, text: &str) -> Vec<String> {
    match style {
        // Postfix folds its long lines with indentation.
        BounceStyle::Postfix => unwrap_indented(text),
        _ => text
            .lines()
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .collect(),
    }
}

fn scan_postfix(lines: &[String]) -> Vec<FailedRecipient> {
    let mut out = Vec::new();
    for line in lines {
        let Some(c) = POSTFIX.captures(line) else {
            continue;
        };
        let mut r = FailedRecipient::new(c[1].to_string());
        r.remote_mta = Some(c[2].to_string());
        let said = &c[3];
        if line.contains("refused to talk to me") {
            r.set_context(Some(CommandKind::Greeting));
        } else {
            r.set_context(context_in_text(said));
        }
        let reply_text = IN_REPLY.replace(said, "");
        r.set_diagnostic(reply_text.trim());
        out.push(r);
        if out.len() >= MAX_RECIPIENTS {
            break;
        }
    }
    out
}

fn scan_exim(lines: &[String]) -> Vec<FailedRecipient> {
    let mut out: Vec<FailedRecipient> = Vec::new();
    let mut current: Option<FailedRecipient> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        if let Some(c) = ADDRESS.captures(line)
            && line.starts_with("  ")
        {
            if let Some(r) = current.take() {
                out.push(r);
            }
            current = Some(FailedRecipient::new(c[1].to_string()));
        } else if let (Some(r), Some(c)) = (current.as_mut(), EXIM_HOST.captures(line)) {
            r.remote_mta = Some(c[1].to_string());
        } else if let Some(c) = EXIM_ERROR.captures(line) {
            let r = current.get_or_insert_with(|| FailedRecipient::new(String::new()));
            r.set_context(context_in_text(&format!(
                "SMTP error from remote mail server after {}",
                &c[1]
            )));
            // The reply follows on the same line or on the next indented lines.
            let mut quoted = c.get(2).map_or(String::new(), |m| m.as_str().to_string());
            while i + 1 < lines.len()
                && lines[i + 1].starts_with(' ')
                && !lines[i + 1].trim().is_empty()
                && ADDRESS.captures(&lines[i + 1]).is_none()
            {
                i += 1;
                if !quoted.is_empty() {
                    quoted.push(' ');
                }
                quoted.push_str(lines[i].trim());
            }
            r.set_diagnostic(&quoted);
        }
        i += 1;
        if out.len() >= MAX_RECIPIENTS {
            return out;
        }
    }
    out.extend(current);
    out.retain(|r| r.diagnostic.is_some() && !r.recipient.is_empty());
    out
}

fn scan_exchange(lines: &[String]) -> Vec<FailedRecipient> {
    let mut out = Vec::new();
    let mut last_address: Option<String> = None;
    let mut org: Option<String> = None;
    for line in lines {
        if let Some(c) = EXCHANGE_ORG.captures(line) {
            org = Some(c[1].trim_end_matches('.').to_string());
        }
        if let Some(c) = ADDRESS.captures(line) {
            last_address = Some(c[1].to_string());
        }
        if let Some(c) = EXCHANGE.captures(line) {
            let mut r = FailedRecipient::new(last_address.clone().unwrap_or_default());
            r.set_diagnostic(&c[1]);
            out.push(r);
            if out.len() >= MAX_RECIPIENTS {
                break;
            }
        }
    }
    for r in &mut out {
        r.remote_mta.clone_from(&org);
    }
    out.retain(|r| !r.recipient.is_empty());
    out
}

fn scan_gmail(lines: &[String]) -> Vec<FailedRecipient> {
    let mut out = Vec::new();
    let mut recipient: Option<String> = None;
    let mut expect_address = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(c) = GMAIL_TO.captures(line) {
            recipient = Some(c[1].to_string());
        } else if line.to_ascii_lowercase().contains("failed permanently:") {
            expect_address = true;
        } else if expect_address && let Some(c) = ADDRESS.captures(line) {
            recipient = Some(c[1].to_string());
            expect_address = false;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("the response from the remote server was:")
            || lower.starts_with("the response was:")
        {
            // The reply is on the following non-empty lines.
            let mut quoted = String::new();
            let mut j = i + 1;
            while j < lines.len() && lines[j].trim().is_empty() {
                j += 1;
            }
            while j < lines.len() && !lines[j].trim().is_empty() {
                if !quoted.is_empty() {
                    quoted.push(' ');
                }
                quoted.push_str(lines[j].trim());
                j += 1;
            }
            if let Some(rcpt) = recipient.take() {
                let mut r = FailedRecipient::new(rcpt);
                r.set_diagnostic(&quoted);
                out.push(r);
                if out.len() >= MAX_RECIPIENTS {
                    break;
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
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
                Some(e) => advise(&e.original, &e.verdict),
                None => advise_status(r.status.as_deref()),
            };
            RecipientReport {
                recipient: r.clone(),
                explanation,
                advice,
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
            "action": r.action.as_deref().map(esc),
            "status": r.status.as_deref().map(esc),
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
                writeln!(f, "meaning:     {}", self.advice.meaning)?;
                let decision = match &e.verdict {
                    Verdict::NoMatch => "no rule matched".to_string(),
                    Verdict::Keep { rule } => format!("rule '{rule}': keep"),
                    Verdict::Rewrite { rule, action, .. } => format!("rule '{rule}': {action}"),
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

    #[test]
    fn delivery_status_blocks_are_unfolded_and_typed_values_stripped() {
        let body = "Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: 5.7.1\r\nRemote-MTA: dns; mx.example.org\r\nDiagnostic-Code: smtp; 530 5.7.1 The message cannot\r\n    be delivered\r\n\r\nFinal-Recipient: rfc822; b@example.org\r\nAction: delivered\r\nStatus: 2.0.0\r\n";
        let r = parse_delivery_status(body);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].recipient, "a@example.org");
        assert_eq!(r[0].remote_mta.as_deref(), Some("mx.example.org"));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("530 5.7.1 The message cannot be delivered")
        );
        assert_eq!(r[0].reply.as_ref().map(|r| r.code().get()), Some(530));
        assert_eq!(r[0].context, CommandKind::Other);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_read_without_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_bounce(&body);
            let mut m = b"Subject: x\r\nContent-Type: multipart/report; boundary=b\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; a@b\r\nDiagnostic-Code: smtp; ".to_vec();
            m.extend_from_slice(&body);
            let _ = parse_bounce(&m);
            let _ = scan_text(&String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn report_without_diagnostic_code_takes_the_reply_from_its_text() {
        let m = "Subject: x\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThe following address(es) failed:\r\n\r\n  kim@example.org\r\n    host mx.example.org [192.0.2.9]\r\n    SMTP error from remote mail server after RCPT TO:<kim@example.org>:\r\n    530 5.7.1 Unknown user\r\n\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; a.example\r\n\r\nFinal-Recipient: rfc822; kim@example.org\r\nAction: failed\r\nStatus: 5.0.0\r\n\r\n--b--\r\n";
        let b = parse_bounce(m.as_bytes()).unwrap();
        assert_eq!(b.style, BounceStyle::Rfc3464);
        let r = &b.recipients[0];
        assert_eq!(r.context, CommandKind::Rcpt);
        assert_eq!(r.remote_mta.as_deref(), Some("mx.example.org"));
        assert_eq!(
            r.reply.as_ref().map(|r| r.raw().to_vec()),
            Some(b"530 5.7.1 Unknown user\r\n".to_vec())
        );
    }

    #[test]
    fn garbage_is_not_a_message() {
        assert!(parse_bounce(b"").is_err());
    }

    #[test]
    fn html_is_reduced_to_text() {
        let t = html_to_text("<p>Remote Server returned &#39;530 x&#39;</p><br>a&amp;b");
        assert!(t.contains("Remote Server returned '530 x'"), "{t}");
        assert!(t.contains("a&b"));
    }
}
