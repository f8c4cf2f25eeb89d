//! au by KDDI's EZweb mail (`Postmaster@ezweb.ne.jp`): Japanese text with
//! English lines, the recipients as `<a@b>` lines (or `Recipient: <a@b>`),
//! sometimes the SMTP exchange (`>>> RCPT TO:<a@b>`, `<<< 550 ...`). When
//! it says only that a remote server rejected the recipient, it is the
//! recipient's own reception filter refusing the sender.

use super::super::mail::Mail;
use super::super::reason::Reason;
use super::super::text::{before_marker, lines, only_address, strip_prefix_ci};
use super::super::{Format, Found};
use crate::explain::extract::context_from_words;

/// The EZweb format.
pub const FORMAT: Format = Format {
    name: "ezweb",
    detect,
    read,
    generic: false,
};

fn detect(m: &Mail) -> bool {
    m.from_lower().contains("@ezweb.ne.jp")
        || m.text_has("Each of the following recipients was rejected by a remote")
}

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, &["-----------------", "Received:"]);
    let mut rcpts: Vec<String> = Vec::new();
    let mut words: Vec<&str> = Vec::new();
    let mut reply: Option<String> = None;
    let mut command = None;
    for line in lines(text) {
        let t = line.trim();
        let t2 = strip_prefix_ci(t, "Recipient:").map_or(t, str::trim);
        if let Some(a) = only_address(t2) {
            if !rcpts.contains(&a) {
                rcpts.push(a);
            }
        } else if let Some(c) = t.strip_prefix(">>>") {
            command = context_from_words(c.trim());
        } else if let Some(r) = t.strip_prefix("<<<") {
            reply = Some(r.trim().to_string());
        } else if t.is_ascii() && !t.is_empty() {
            words.push(t);
        }
    }
    let words = words.join(" ");
    let only_rejected = reply.is_none()
        && words.to_ascii_lowercase().contains("rejected by a remote")
        && !words.to_ascii_lowercase().contains("user unknown");
    rcpts
        .into_iter()
        .map(|a| {
            let mut f = Found::new(a);
            f.command = command;
            f.diagnostic = reply.clone().or_else(|| Some(words.clone()));
            if only_rejected {
                f.hint = Some(Reason::Filtered);
            }
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::CommandKind;

    #[test]
    fn recipient_lines_and_the_smtp_exchange() {
        let m = Mail::with_text(
            "Each of the following recipients was rejected by a remote\nmail server.\n\n    Recipient: <kim@ezweb.example.jp>\n    >>> RCPT TO:<kim@ezweb.example.jp>\n    <<< 550 <kim@ezweb.example.jp>: User unknown\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].command, Some(CommandKind::Rcpt));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 <kim@ezweb.example.jp>: User unknown")
        );
    }

    #[test]
    fn a_bare_rejection_is_the_recipients_filter() {
        let m = Mail::with_text(
            "<kim@ezweb.example.jp>\nEach of the following recipients was rejected by a remote mail server.\n---------------------------------------------------\nReceived: x\n",
        );
        assert_eq!(read(&m)[0].hint, Some(Reason::Filtered));
    }
}
