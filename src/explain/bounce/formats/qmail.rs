//! qmail's bounce (`qmail-send`), and the qmail-ldap, netqmail and
//! vpopmail variants: "Hi. This is the qmail-send program at H.", then per
//! recipient `<a@b>:` and qmail's words — `Connected to IP but sender was
//! rejected.` (MAIL), `IP does not like recipient.` (RCPT), `IP failed
//! after I sent the message.` (end of DATA), `Remote host said: REPLY` —
//! or its own verdict with a status in brackets, `Sorry, no mailbox here
//! by that name. (#5.1.1)`.

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::reason::Reason;
use super::super::text::{address_paragraphs, before_marker, find_ci, join, status_in};
use super::super::{Format, Found};
use crate::smtp::CommandKind;

/// The qmail format.
pub const FORMAT: Format = Format {
    name: "qmail",
    detect,
    read,
    generic: false,
};

static HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:Giving up on|Connected to|remote host)\s+([0-9A-Za-z][0-9A-Za-z.:-]*[0-9A-Za-z])|([0-9A-Za-z][0-9A-Za-z.:-]*[0-9A-Za-z]) (?:does not like recipient|failed after I sent|failed on DATA)")
        .expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.text_has("This is the qmail-send program")
        || m.text_has("qmail-send program")
        || m.header("received")
            .is_some_and(|r| r.contains("invoked for bounce"))
}

const END: &[&str] = &[
    "--- Below this line is a copy of the message",
    "--- Enclosed is a copy of the message",
    "--- Below this line is the original bounce",
];

/// qmail's own words for the step that failed.
const STEPS: &[(&str, CommandKind)] = &[
    ("but sender was rejected", CommandKind::Mail),
    ("but my name was rejected", CommandKind::Helo),
    ("does not like recipient", CommandKind::Rcpt),
    ("failed after I sent the message", CommandKind::DataEnd),
    ("failed on DATA command", CommandKind::Data),
    ("but greeting failed", CommandKind::Greeting),
    ("most progress was RCPT TO response", CommandKind::Rcpt),
    ("most progress was MAIL FROM response", CommandKind::Mail),
    ("most progress was DATA response", CommandKind::Data),
];

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, END);
    address_paragraphs(text)
        .into_iter()
        .map(|(addr, body)| paragraph(addr, &body))
        .collect()
}

/// One recipient's paragraph: the step it failed at, the reply after
/// `said:` (to qmail's next words), the `(#x.y.z)` status.
pub fn paragraph(addr: String, body: &[&str]) -> Found {
    let mut f = Found::new(addr);
    let all = join(body.iter().copied());
    f.command = STEPS
        .iter()
        .find(|(words, _)| find_ci(&all, words).is_some())
        .map(|&(_, k)| k);
    f.text_status = status_in(&all);
    f.remote_mta = HOST
        .captures(&all)
        .and_then(|c| c.get(1).or_else(|| c.get(2)))
        .map(|m| m.as_str().to_string());
    // The reply follows `Remote host said:` (or `remote host IP said:`)
    // up to qmail's next words of its own.
    let reply = find_ci(&all, " said:").map(|at| {
        let rest = &all[at + " said:".len()..];
        let end = [
            "Giving up on",
            "I'm not going to try again",
            "(Other MXes tried",
        ]
        .iter()
        .filter_map(|m| find_ci(rest, m))
        .min()
        .unwrap_or(rest.len());
        rest[..end].trim().to_string()
    });
    match reply.filter(|r| !r.is_empty()) {
        Some(r) => {
            f.diagnostic = Some(r);
            f.note = Some(all);
        }
        None => {
            if find_ci(&all, "wasn't able to establish an SMTP connection").is_some()
                || find_ci(&all, "connection to").is_some() && find_ci(&all, "timed out").is_some()
            {
                f.hint = Some(Reason::NetworkError);
            }
            f.diagnostic = Some(all);
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_recipient_gets_the_step_and_the_reply() {
        let m = Mail::with_text(
            "Hi. This is the qmail-send program at mx.example.jp.\nI'm afraid I wasn't able to deliver your message to the following addresses.\n\n<kim@example.org>:\nConnected to 192.0.2.5 but sender was rejected.\nRemote host said: 550 5.7.1 <a@example.jp>... Access denied\n\n<lee@example.org>:\n192.0.2.5 does not like recipient.\nRemote host said: 552 5.2.2 <lee@example.org>: Mailbox full\nGiving up on 192.0.2.5.\n\n<mo@example.org>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n--- Below this line is a copy of the message.\n\n<zed@example.org>:\nnot a recipient\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].command, Some(CommandKind::Mail));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.7.1 <a@example.jp>... Access denied")
        );
        assert_eq!(r[1].command, Some(CommandKind::Rcpt));
        assert_eq!(r[1].remote_mta.as_deref(), Some("192.0.2.5"));
        assert_eq!(
            r[1].diagnostic.as_deref(),
            Some("552 5.2.2 <lee@example.org>: Mailbox full")
        );
        assert_eq!(
            r[2].text_status.map(|s| s.to_string()).as_deref(),
            Some("5.1.1")
        );
    }

    #[test]
    fn a_connection_never_made_is_a_network_error() {
        let m = Mail::with_text(
            "This is the qmail-send program at x.\n\n<kim@example.jp>:\nSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\nI'm not going to try again; this message has been in the queue too long.\n",
        );
        let r = read(&m);
        assert_eq!(r[0].hint, Some(Reason::NetworkError));
    }
}
