//! Gmail's own bounce text: "Delivery to the following recipient failed
//! permanently:" (or "has been delayed") and the address on the next line,
//! then "Technical details of permanent failure:" with Google's words and
//! the remote reply after "The error that the other server returned was:";
//! newer ones "Your message wasn't delivered to a@b because ..." and "The
//! response from the remote server was:".

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::reason::Reason;
use super::super::text::{address_in, before_marker, find_ci, lines, only_address};
use super::super::{Format, Found};

/// The Gmail format.
pub const FORMAT: Format = Format {
    name: "gmail",
    detect,
    read,
    generic: false,
};

static WASNT_DELIVERED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:wasn't|was not|couldn't be|could not be|hasn't been|has not been) delivered to\s+<?([^\s<>]+@[^\s<>]+?)>?\s+because")
        .expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.from_lower().contains("mailer-daemon@google")
        || m.text_has("Delivery to the following recipient")
        || m.text_has("The response from the remote server was")
        || m.text_has("The response was:")
        || WASNT_DELIVERED.is_match(&m.text)
}

const END: &[&str] = &[
    "----- Original message -----",
    "----- Message truncated -----",
    "Original message follows",
];

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, END);
    let ls = lines(text);
    let delayed = mail.text_has("has been delayed") || mail.subject().contains("(Delay)");
    let mut rcpts: Vec<String> = Vec::new();
    let mut expect_address = false;
    let mut details: Vec<&str> = Vec::new();
    let mut in_details = false;
    let mut why: Vec<&str> = Vec::new();
    for line in &ls {
        let t = line.trim();
        let lower = t.to_ascii_lowercase();
        if let Some(c) = WASNT_DELIVERED.captures(t) {
            rcpts.push(c[1].to_string());
            // `... because the address couldn't be found.`
            why.push(t);
        }
        if lower.starts_with("delivery to the following recipient")
            || lower.contains("failed permanently:")
        {
            expect_address = true;
            continue;
        }
        if expect_address {
            if let Some(a) = only_address(t) {
                rcpts.push(a);
                continue;
            }
            if !t.is_empty() {
                expect_address = false;
            }
        }
        if lower.starts_with("technical details of")
            || lower.starts_with("the response from the remote server was:")
            || lower.starts_with("the response was:")
            || lower.starts_with("the error that the other server returned was:")
        {
            in_details = true;
        }
        if in_details {
            details.push(t);
        }
    }
    if rcpts.is_empty()
        && let Some(a) = mail.header("x-failed-recipients").and_then(address_in)
    {
        rcpts.push(a);
    }
    let details = super::super::text::join(details.iter().copied());
    let (reply, note) = split_reply(&details);
    let note = match (note, why.is_empty()) {
        (Some(n), _) => Some(n),
        (None, false) => Some(super::super::text::join(why.iter().copied())),
        (None, true) => None,
    };
    rcpts.dedup();
    rcpts
        .into_iter()
        .map(|a| {
            let mut f = Found::new(a);
            f.diagnostic = reply.clone().or_else(|| note.clone());
            if reply.is_some() {
                f.note.clone_from(&note);
            }
            if delayed {
                f.action = Some("delayed".into());
                f.hint = Some(Reason::Expired);
            } else if note.as_deref().is_some_and(|n| {
                find_ci(n, "did not accept our requests to connect").is_some()
                    || find_ci(n, "socket error").is_some()
            }) {
                // Gmail gives up on a host it could not reach only after
                // its retry period.
                f.hint = Some(Reason::Expired);
            }
            f
        })
        .collect()
}

/// The remote reply after Gmail's lead-in words, and the words themselves.
fn split_reply(details: &str) -> (Option<String>, Option<String>) {
    for lead in [
        "The error that the other server returned was:",
        "The response from the remote server was:",
        "The response was:",
    ] {
        if let Some(at) = find_ci(details, lead) {
            let reply = details[at + lead.len()..].trim().to_string();
            let note = details[..at].trim().to_string();
            let reply = (!reply.is_empty()).then_some(reply);
            return (reply, (!note.is_empty()).then_some(note));
        }
    }
    let note = details
        .trim_start_matches(|c: char| c != ':')
        .trim_start_matches(':')
        .trim()
        .to_string();
    (None, (!note.is_empty()).then_some(note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_permanently_with_the_other_servers_reply() {
        let m = Mail::with_text(
            "Delivery to the following recipient failed permanently:\n\n     ivy@example.net\n\nTechnical details of permanent failure:\nGoogle tried to deliver your message, but it was rejected by the server.\nThe error that the other server returned was:\n550 5.1.1 <ivy@example.net>... User Unknown\n\n----- Original message -----\nTo: zed@example.net\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].recipient, "ivy@example.net");
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 <ivy@example.net>... User Unknown")
        );
        assert!(r[0].note.as_deref().unwrap().contains("Google tried"));
    }

    #[test]
    fn delay_notice_is_delayed() {
        let m = Mail::with_text(
            "Delivery to the following recipient has been delayed:\n\n     ivy@example.net\n\nTechnical details of temporary failure:\nThe recipient server did not accept our requests to connect.\n",
        );
        let r = read(&m);
        assert_eq!(r[0].action.as_deref(), Some("delayed"));
        assert_eq!(r[0].hint, Some(Reason::Expired));
    }
}
