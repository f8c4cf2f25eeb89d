//! Reading bounces: which recipients failed, with what status, what the
//! remote server replied, to which command, and why (a [`Reason`]).
//!
//! A bounce is read in three steps:
//! 1. [`mail::Mail`] sorts the message into header fields, the bounce's own
//!    text, its RFC 3464 delivery-status part and the returned header;
//! 2. the RFC 3464 fields ([`rfc3464`]) and the first bounce format in
//!    [`formats::ALL`] that recognises the message and finds recipients in
//!    its text each give a list of [`Found`] recipients; the two are merged,
//!    the DSN fields first (RFC 3464 is what the reporting MTA meant to be
//!    read by programs);
//! 3. [`finish`] turns each into a [`FailedRecipient`]: the reply is rebuilt
//!    from the diagnostic, the status chosen (DSN `Status`, then the
//!    bounce's words, then the reply's enhanced code, a code with detail
//!    winning over one without), and the [`Reason`] decided.
//!
//! Adding a format is one file under `formats/` with its own tests and
//! one line in [`formats::ALL`]. Nothing here does I/O; all input is capped
//! by [`mail`].

pub mod formats;
pub mod mail;
pub mod reason;
pub mod rfc3464;
pub mod summary;
pub mod text;
pub mod wording;

use crate::explain::extract::reply_from_quoted;
use crate::smtp::{CommandKind, EnhancedCode, Reply};

use mail::Mail;
pub use reason::Reason;
use reason::{Evidence, decide};

/// At most this many failed recipients are taken from one bounce.
pub const MAX_RECIPIENTS: usize = 1000;

/// The most bytes of a diagnostic kept per recipient.
pub const MAX_DIAGNOSTIC: usize = 4096;

/// One recipient as a reader found it, before the status and reason are
/// decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// The address.
    pub recipient: String,
    /// RFC 3464 `Action`, lower case.
    pub action: Option<String>,
    /// RFC 3464 `Status` as given.
    pub status: Option<String>,
    /// A status the bounce's own words give (`(#5.1.1)`).
    pub text_status: Option<EnhancedCode>,
    /// The remote server.
    pub remote_mta: Option<String>,
    /// The remote reply as the remote server wrote it (lines joined), or
    /// the bounce's diagnostic when there is no reply.
    pub diagnostic: Option<String>,
    /// The bounce's own words about this recipient, besides the reply.
    pub note: Option<String>,
    /// The command the reply answered, when the bounce says.
    pub command: Option<CommandKind>,
    /// What the format's own fixed words say the reason is.
    pub hint: Option<Reason>,
}

impl Found {
    /// A recipient with only its address.
    pub fn new(recipient: impl Into<String>) -> Found {
        Found {
            recipient: recipient.into(),
            ..Found::default()
        }
    }
}

/// A bounce format: how to recognise it and read its recipients.
pub struct Format {
    /// Its short name (`qmail`, `exim`, ...), shown as the bounce's style.
    pub name: &'static str,
    /// A cheap test on the header fields and text.
    pub detect: fn(&Mail) -> bool,
    /// Reads the recipients from the text.
    pub read: fn(&Mail) -> Vec<Found>,
    /// True for the shapes tried on any bounce (no sentence of their own):
    /// their name is not given as the style of a report they found nothing in.
    pub generic: bool,
}

/// One recipient a bounce reports, with everything decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedRecipient {
    /// The address.
    pub recipient: String,
    /// RFC 3464 `Action` (`failed`, `delayed`), when given.
    pub action: Option<String>,
    /// The RFC 3463 status: the DSN's `Status`, else the bounce's words,
    /// else the reply's enhanced code; a code with detail wins over
    /// `x.0.0`.
    pub status: Option<String>,
    /// Where the status came from: `dsn`, `text` or `reply`.
    pub status_source: Option<&'static str>,
    /// The remote server.
    pub remote_mta: Option<String>,
    /// The remote reply as written (lines joined), or the bounce's
    /// diagnostic.
    pub diagnostic: Option<String>,
    /// The remote reply rebuilt from the diagnostic, when it is one.
    pub reply: Option<Reply>,
    /// The reply code (from the reply, or a bare code in the diagnostic).
    pub reply_code: Option<u16>,
    /// The command the reply answered, when the bounce says; else `other`.
    pub context: CommandKind,
    /// True when `context` was read from the bounce.
    pub context_known: bool,
    /// Why it bounced.
    pub reason: Reason,
}

/// What was read from one bounce.
#[derive(Clone, Debug)]
pub struct Read {
    /// The format's name, `rfc3464` for a DSN of no known format, or
    /// `unknown`.
    pub style: &'static str,
    /// True when an RFC 3464 delivery-status part (or its fields) was read.
    pub rfc3464: bool,
    /// The recipients.
    pub recipients: Vec<FailedRecipient>,
}

/// Reads a bounce. `None` when `raw` is not a message.
pub fn read(raw: &[u8]) -> Option<Read> {
    let mail = Mail::read(raw)?;
    Some(read_mail(&mail))
}

/// Reads an already sorted bounce.
pub fn read_mail(mail: &Mail) -> Read {
    let read = read_one(mail);
    if read.recipients.is_empty()
        && let Some(inner) = &mail.inner
    {
        let inside = read_one(inner);
        if !inside.recipients.is_empty() {
            return inside;
        }
    }
    read
}

fn read_one(mail: &Mail) -> Read {
    let dsn = rfc3464::read(mail);
    let mut first_detected = None;
    let mut from_text = None;
    for f in formats::ALL {
        if !(f.detect)(mail) {
            continue;
        }
        if !f.generic {
            first_detected.get_or_insert(f.name);
        }
        let found = (f.read)(mail);
        if !found.is_empty() {
            from_text = Some((f.name, found));
            break;
        }
    }
    let rfc3464 = !dsn.is_empty();
    let (style, found) = match (rfc3464, from_text) {
        (true, Some((name, text))) => (name, merge(dsn, text)),
        (true, None) => (first_detected.unwrap_or("rfc3464"), dsn),
        (false, Some((name, text))) => (name, text),
        (false, None) => (first_detected.unwrap_or("unknown"), Vec::new()),
    };
    let mut recipients: Vec<FailedRecipient> = found
        .into_iter()
        .filter(|f| !f.recipient.is_empty())
        .take(MAX_RECIPIENTS)
        .map(finish)
        .collect();
    dedup(&mut recipients);
    // A report that lists failures lists them only; one with none shows
    // what it is (delivered, a complaint, an automatic reply).
    if recipients.iter().any(|r| !r.reason.is_not_a_failure()) {
        recipients.retain(|r| !r.reason.is_not_a_failure());
    }
    Read {
        style,
        rfc3464,
        recipients,
    }
}

/// True when `a` and `b` are the same address (case-insensitive, angle
/// brackets and white space ignored).
pub fn same_address(a: &str, b: &str) -> bool {
    let t = |s: &str| {
        s.trim()
            .trim_matches(['<', '>'])
            .trim()
            .to_ascii_lowercase()
    };
    t(a) == t(b)
}

/// Fills each DSN recipient's gaps from the text's recipient with the same
/// address (or, when both list the same number, the one in the same place).
fn merge(mut dsn: Vec<Found>, text: Vec<Found>) -> Vec<Found> {
    let same_count = dsn.len() == text.len();
    for (i, d) in dsn.iter_mut().enumerate() {
        let t = text
            .iter()
            .find(|t| same_address(&t.recipient, &d.recipient))
            .or_else(|| if same_count { text.get(i) } else { None });
        let Some(t) = t else { continue };
        if d.recipient.is_empty() {
            d.recipient.clone_from(&t.recipient);
        }
        if d.remote_mta.is_none() {
            d.remote_mta.clone_from(&t.remote_mta);
        }
        if d.command.is_none() {
            d.command = t.command;
        }
        if d.hint.is_none() {
            d.hint = t.hint;
        }
        if d.text_status.is_none() {
            d.text_status = t.text_status;
        }
        if d.note.is_none() {
            d.note.clone_from(&t.note);
        }
        if better_diagnostic(d.diagnostic.as_deref(), t.diagnostic.as_deref()) {
            d.diagnostic.clone_from(&t.diagnostic);
        }
    }
    dsn
}

/// True when the text's diagnostic `t` should replace the DSN's `d`: the
/// DSN has none, or no reply where the text has one, or the text holds the
/// DSN's reply with more lines (a DSN that kept only the first line).
fn better_diagnostic(d: Option<&str>, t: Option<&str>) -> bool {
    let Some(t) = t else { return false };
    let Some(d) = d else { return true };
    let (dr, tr) = (find_reply(d), find_reply(t));
    let Some(dr) = dr else {
        return tr.is_some();
    };
    // A reply with an enhanced code says more than one without.
    if dr.enhanced().is_none() && tr.is_some_and(|r| r.enhanced().is_some()) {
        return true;
    }
    let head = &d[..text::floor_char_boundary(d, 40)];
    t.len() > d.len() && t.contains(head)
}

fn dedup(rs: &mut Vec<FailedRecipient>) {
    let mut seen: Vec<(String, Option<String>)> = Vec::new();
    rs.retain(|r| {
        let key = (r.recipient.to_ascii_lowercase(), r.diagnostic.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
}

/// The SMTP reply quoted in `text`: at its start, or after the words
/// before it (`host said: 550 ...`).
pub fn find_reply(text: &str) -> Option<Reply> {
    if let Some(r) = reply_from_quoted(text.as_bytes()) {
        return Some(r);
    }
    let at = text::reply_start(text)?;
    reply_from_quoted(&text.as_bytes()[at..])
}

fn specific(s: &EnhancedCode) -> bool {
    !(s.subject == 0 && s.detail == 0)
}

static EMBEDDED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"<([245]\d\d) ([245]\.\d{1,3}\.\d{1,3}) [^<>]*>\s*$").expect("static regex")
});

/// The status of a remote reply quoted inside the reporting MTA's own
/// reply at its end, `554 4.4.7 Message expired: ...<421 4.4.2 Connection
/// timed out>`: the remote server's words.
fn embedded_status(diagnostic: &str) -> Option<EnhancedCode> {
    let c = EMBEDDED.captures(diagnostic)?;
    EnhancedCode::parse(&c[2])
}

/// The words a reason is decided from: what precedes the reply in the
/// diagnostic, then the reply's lines without their codes (so that a
/// multi-line reply reads as one sentence).
fn reason_text(diagnostic: &str, reply: Option<&Reply>) -> String {
    let Some(r) = reply else {
        return diagnostic.to_string();
    };
    let at = text::reply_start(diagnostic).unwrap_or(0);
    let mut out = diagnostic[..at].to_string();
    out.push(' ');
    r.text_for_matching(&mut out, wording::MAX_REASON_TEXT);
    out
}

/// The status: the DSN's, then the bounce's words, then the reply's; a
/// code with detail wins over `x.0.0`. The remote reply's own code also
/// wins over a DSN code of the same class that differs from it: the DSN
/// is the reporting MTA's summary (Sendmail writes `4.4.7` for any expiry
/// and maps some replies to `5.1.1`), the reply is what the remote server
/// said.
fn choose_status(
    dsn: Option<EnhancedCode>,
    text: Option<EnhancedCode>,
    reply: Option<EnhancedCode>,
) -> Option<(EnhancedCode, &'static str)> {
    if let (Some(d), Some(r)) = (dsn, reply)
        && specific(&r)
        && r.class == d.class
        && r != d
    {
        return Some((r, "reply"));
    }
    let candidates = [(dsn, "dsn"), (text, "text"), (reply, "reply")];
    candidates
        .iter()
        .find(|(s, _)| s.as_ref().is_some_and(specific))
        .or_else(|| candidates.iter().find(|(s, _)| s.is_some()))
        .and_then(|(s, from)| s.map(|s| (s, *from)))
}

/// The reason `r` would have if its remote server had replied with
/// `reply`'s code and enhanced status (the reply the rules would send
/// instead): the remote server's own words, command and action.
pub fn reason_for_reply(r: &FailedRecipient, reply: &Reply) -> Reason {
    let text = reason_text(r.diagnostic.as_deref().unwrap_or(""), r.reply.as_ref());
    decide(&Evidence {
        text: &text,
        note: "",
        status: reply.enhanced(),
        code: Some(reply.code().get()),
        command: r.context_known.then_some(r.context),
        action: r.action.as_deref(),
        hint: None,
    })
}

/// Decides the status, rebuilds the reply and decides the reason.
pub fn finish(f: Found) -> FailedRecipient {
    let diagnostic = f.diagnostic.map(|d| {
        let d = d.trim();
        d[..text::floor_char_boundary(d, MAX_DIAGNOSTIC)].to_string()
    });
    let reply = diagnostic.as_deref().and_then(find_reply);
    let reply_code = reply.as_ref().map(|r| r.code().get()).or_else(|| {
        let d = diagnostic.as_deref()?;
        let digits = d.get(..3)?;
        let code: u16 = digits.parse().ok()?;
        ((200..600).contains(&code) && !d[3..].starts_with(|c: char| c.is_ascii_digit()))
            .then_some(code)
    });
    let dsn_status = f
        .status
        .as_deref()
        .and_then(|s| EnhancedCode::parse(s.split_whitespace().next().unwrap_or("")));
    let from_reply = diagnostic
        .as_deref()
        .and_then(embedded_status)
        .or_else(|| reply.as_ref().and_then(|r| r.enhanced()))
        .or_else(|| diagnostic.as_deref().and_then(text::status_in));
    let chosen = choose_status(dsn_status, f.text_status, from_reply);
    let command = f
        .command
        .or_else(|| diagnostic.as_deref().and_then(text::command_in))
        .or_else(|| f.note.as_deref().and_then(text::command_in));
    let text = reason_text(diagnostic.as_deref().unwrap_or(""), reply.as_ref());
    let reason = decide(&Evidence {
        text: &text,
        note: f.note.as_deref().unwrap_or(""),
        status: chosen.map(|(s, _)| s),
        code: reply_code,
        command,
        action: f.action.as_deref(),
        hint: f.hint,
    });
    FailedRecipient {
        recipient: f.recipient.trim().trim_matches(['<', '>']).to_string(),
        action: f.action,
        status: chosen
            .map(|(s, _)| s.to_string())
            .or_else(|| f.status.filter(|s| !s.trim().is_empty())),
        status_source: chosen.map(|(_, from)| from),
        remote_mta: f.remote_mta.or_else(|| {
            diagnostic
                .as_deref()
                .and_then(text::host_in)
                .or_else(|| f.note.as_deref().and_then(text::host_in))
        }),
        diagnostic,
        reply,
        reply_code,
        context: command.unwrap_or(CommandKind::Other),
        context_known: command.is_some(),
        reason,
    }
}
