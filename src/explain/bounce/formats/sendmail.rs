//! Sendmail's bounce text (also the old V5 sendmail and the MTAs that copy
//! it): "----- The following addresses had permanent fatal errors -----"
//! with each address and its `(reason: ...)`, then "----- Transcript of
//! session follows -----": `... while talking to H.:`, `>>> RCPT To:<a@b>`
//! (the command), `<<< 550 ...` (the remote reply, one line per reply
//! line) and Sendmail's summary naming the recipient, `550 5.1.1
//! <a@b>... User unknown` or `<a@b>... Deferred: Connection refused`.

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::{Mail, header_in};
use super::super::reason::Reason;
use super::super::text::{address_in, before_marker, lines, only_address};
use super::super::{Format, Found, same_address};
use crate::explain::extract::context_from_words;
use crate::smtp::CommandKind;

/// The Sendmail format.
pub const FORMAT: Format = Format {
    name: "sendmail",
    detect,
    read,
    generic: false,
};

static TALKING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:\.\.\.\s*)?while talking to\s+\[?([^\s:\]]+?)\.?\]?:?\s*$")
        .expect("static regex")
});
static SUMMARY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:(\d{3})[ -](?:\d\.\d{1,3}\.\d{1,3}\s+)?)?<?([^\s<>]+@[^\s<>]+?)>?\.\.\.\s*(.*)$",
    )
    .expect("static regex")
});
static REASON: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\(reason:\s*(.*?)\)?$").expect("static regex"));

fn detect(m: &Mail) -> bool {
    m.text_has("----- Transcript of session follows")
        || m.text_has("----- The following addresses had")
}

const END: &[&str] = &[
    "----- Unsent message follows",
    "----- Original message follows",
    "----- Message header follows",
    "----- Returned message",
];

/// What the transcript says about one recipient.
#[derive(Default)]
struct Said {
    recipient: String,
    host: Option<String>,
    command: Option<CommandKind>,
    reply: Option<String>,
    summary: String,
}

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, END);
    let ls = lines(text);
    // The listed addresses and their `(reason: ...)`.
    let mut listed: Vec<(String, Option<String>)> = Vec::new();
    let mut in_list = false;
    let mut said: Vec<Said> = Vec::new();
    // Every remote reply (`<<<` lines in a row) with where and when.
    let mut replies: Vec<Said> = Vec::new();
    let mut in_transcript = false;
    let mut in_info = false;
    let mut info: Vec<&str> = Vec::new();
    let mut host: Option<String> = None;
    let mut command: Option<CommandKind> = None;
    let mut pending: Vec<String> = Vec::new();
    let flush = |pending: &mut Vec<String>,
                 host: &Option<String>,
                 command: Option<CommandKind>,
                 replies: &mut Vec<Said>| {
        if !pending.is_empty() {
            replies.push(Said {
                host: host.clone(),
                command,
                reply: Some(pending.join(" ")),
                ..Said::default()
            });
            pending.clear();
        }
    };
    for line in ls {
        let t = line.trim();
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("-----") {
            in_list = lower.contains("following address");
            in_transcript = lower.contains("transcript of");
            in_info = !in_list && !in_transcript;
            continue;
        }
        // Sections of other words (`----- Non-delivered information -----`):
        // the reason for every listed address.
        if in_info && !t.is_empty() {
            info.push(t);
            continue;
        }
        if in_list {
            if let Some(a) = only_address(t) {
                listed.push((a, None));
            } else if let Some(c) = REASON.captures(t)
                && let Some(last) = listed.last_mut()
            {
                last.1 = Some(c[1].trim().to_string());
            }
            continue;
        }
        if !in_transcript {
            continue;
        }
        if let Some(r) = t.strip_prefix("<<<") {
            pending.push(r.trim().to_string());
            continue;
        }
        flush(&mut pending, &host, command, &mut replies);
        if let Some(c) = TALKING.captures(t) {
            host = Some(c[1].trim_end_matches('.').to_string());
            command = None;
        } else if let Some(cmd) = t.strip_prefix(">>>") {
            command = context_from_words(cmd.trim());
        } else if let Some(c) = SUMMARY.captures(t) {
            // The summary names the recipient of the reply just before it.
            let last = replies.last().filter(|r| r.recipient.is_empty());
            let summary = match c.get(1) {
                Some(code) => format!("{} {}", code.as_str(), &c[3]),
                None => c[3].to_string(),
            };
            said.push(Said {
                recipient: c[2].to_string(),
                host: host.clone(),
                command: last.and_then(|r| r.command),
                reply: last.and_then(|r| r.reply.clone()),
                summary,
            });
            if let Some(r) = replies.last_mut() {
                r.recipient = c[2].to_string();
            }
        }
    }
    flush(&mut pending, &host, command, &mut replies);
    let mut out = Vec::new();
    if listed.is_empty() {
        // V5 sendmail lists no addresses: the transcript names them.
        for s in said {
            if !out
                .iter()
                .any(|f: &Found| same_address(&f.recipient, &s.recipient))
            {
                out.push(found(&s.recipient, None, Some(&s)));
            }
        }
        if out.is_empty()
            && let Some(f) = unnamed(mail, text)
        {
            out.push(f);
        }
        if subject_says_expired(mail) {
            for f in &mut out {
                f.hint.get_or_insert(Reason::Expired);
            }
        }
        return out;
    }
    let info = info.join(" ");
    for (_, reason) in listed.iter_mut().filter(|(_, r)| r.is_none()) {
        if !info.is_empty() {
            *reason = Some(info.clone());
        }
    }
    for (a, reason) in &listed {
        let s = said
            .iter()
            .find(|s| same_address(&s.recipient, a))
            .or_else(|| {
                // No summary names it: the reply its `(reason: ...)` quotes, or
                // the only reply there is.
                let quoted = |r: &&Said| {
                    let reply = r.reply.as_deref().unwrap_or("");
                    reason
                        .as_deref()
                        .is_some_and(|q| !q.is_empty() && reply.starts_with(q))
                };
                replies
                    .iter()
                    .find(quoted)
                    .or_else(|| (replies.len() == 1).then(|| &replies[0]))
            });
        out.push(found(a, reason.as_deref(), s));
    }
    if subject_says_expired(mail) {
        for f in &mut out {
            f.hint.get_or_insert(Reason::Expired);
        }
    }
    out
}

/// Sendmail's subjects for a message it gave up on (`Returned mail:
/// Cannot send message for 5 days`, `Warning: could not send message for
/// past 4 hours`).
fn subject_says_expired(mail: &Mail) -> bool {
    let s = mail.subject().to_ascii_lowercase();
    s.contains("cannot send message for") || s.contains("could not send message for past")
}

fn found(rcpt: &str, reason: Option<&str>, s: Option<&Said>) -> Found {
    let mut f = Found::new(rcpt);
    if let Some(s) = s {
        f.remote_mta.clone_from(&s.host);
        f.command = s.command;
        f.diagnostic = s
            .reply
            .clone()
            .or_else(|| reason.map(str::to_string))
            .or_else(|| Some(s.summary.clone()));
        if !s.summary.is_empty() {
            f.note = Some(s.summary.clone());
        }
    } else {
        f.diagnostic = reason.map(str::to_string);
    }
    f
}

/// A transcript that names no address (`421 host (smtp)... Deferred: ...`):
/// the recipient is the returned message's only `To` address.
fn unnamed(mail: &Mail, transcript: &str) -> Option<Found> {
    let rest = &mail.text[transcript.len()..];
    let header = rest.split_once('\n').map_or("", |(_, h)| h);
    let to = header_in(header, "to").or_else(|| mail.returned_header("to"))?;
    if to.matches('@').count() != 1 {
        return None;
    }
    let mut f = Found::new(address_in(&to)?);
    let diag = lines(transcript)
        .into_iter()
        .map(str::trim)
        .find(|l| l.len() > 4 && l.as_bytes()[..3].iter().all(u8::is_ascii_digit))?;
    f.diagnostic = Some(diag.to_string());
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_address_takes_reply_and_command_from_the_transcript() {
        let m = Mail::with_text(
            "   ----- The following addresses had permanent fatal errors -----\n<kim@example.org>\n    (reason: 550 5.1.1 <kim@example.org>... User Unknown)\n\n   ----- Transcript of session follows -----\n... while talking to mx.example.org.:\n>>> DATA\n<<< 550 5.1.1 <kim@example.org>... User Unknown\n550 5.1.1 <kim@example.org>... User unknown\n<<< 503 5.0.0 Need RCPT (recipient)\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].remote_mta.as_deref(), Some("mx.example.org"));
        assert_eq!(r[0].command, Some(CommandKind::Data));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 <kim@example.org>... User Unknown")
        );
    }

    #[test]
    fn v5_transcript_names_each_recipient() {
        let m = Mail::with_text(
            "   ----- Transcript of session follows -----\nWhile talking to mail.example.org:\n>>> RCPT To:<mia@example.org>\n<<< 550 Requested mailbox not found.\n550 <mia@example.org>... User unknown\n554 <ned@example.net>... 550 Host unknown (Authoritative answer from name server)\n   ----- Unsent message follows -----\nTo: zed@example.org\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].command, Some(CommandKind::Rcpt));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 Requested mailbox not found.")
        );
        assert_eq!(r[1].recipient, "ned@example.net");
        assert!(r[1].diagnostic.as_deref().unwrap().contains("Host unknown"));
    }

    #[test]
    fn transcript_without_an_address_uses_the_returned_to() {
        let m = Mail::with_text(
            "   ----- Transcript of session follows -----\n421 example.com (smtp)... Deferred: Connection timed out during user open with example.com\n   ----- Unsent message follows -----\nFrom: a@example.jp\nTo: kim@example.com\nSubject: x\n\nbody\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].recipient, "kim@example.com");
        assert!(r[0].diagnostic.as_deref().unwrap().starts_with("421 "));
    }
}
