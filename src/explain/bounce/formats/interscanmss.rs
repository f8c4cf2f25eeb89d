//! Trend Micro InterScan Messaging Security Suite: the SMTP exchange as
//! `Sent <<< RCPT TO:<a@b>` and `Received >>> 550 ...`, or "Reason: Unable
//! to deliver message to <a@b>".

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::text::{address_in, lines};
use super::super::{Format, Found, same_address};
use crate::explain::extract::context_from_words;

/// The InterScan MSS format.
pub const FORMAT: Format = Format {
    name: "interscanmss",
    detect,
    read,
    generic: false,
};

static UNABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)unable to deliver message to\s+<?([^\s<>()]+@[A-Za-z0-9.-]*[A-Za-z0-9])>?")
        .expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.from_lower().contains("interscan")
        || m.text_has("Message from InterScan Messaging Security Suite")
        || m.text_has("Sent <<< RCPT TO:")
}

fn read(mail: &Mail) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut pending: Option<Found> = None;
    for line in lines(&mail.text) {
        let t = line.trim();
        // Its own `Sent <<<`/`Received >>>`, or a Sendmail transcript it
        // attaches (`>>> RCPT To:<a@b>`, `<<< 550 ...`).
        if let Some(cmd) = t.strip_prefix("Sent <<<").or_else(|| t.strip_prefix(">>>")) {
            let cmd = cmd.trim();
            let mut f = Found::new(address_in(cmd).unwrap_or_default());
            f.command = context_from_words(cmd);
            pending = Some(f);
        } else if let Some(reply) = t
            .strip_prefix("Received >>>")
            .or_else(|| t.strip_prefix("<<<"))
        {
            if let Some(mut f) = pending.take()
                && !f.recipient.is_empty()
            {
                f.diagnostic = Some(reply.trim().to_string());
                // The same recipient named again (its own words, then the
                // transcript): the reply replaces the words.
                out.retain(|o| !same_address(&o.recipient, &f.recipient));
                out.push(f);
            }
        } else if let Some(c) = UNABLE.captures(t)
            && !out.iter().any(|f| same_address(&f.recipient, &c[1]))
        {
            let mut f = Found::new(&c[1]);
            f.diagnostic = Some(t.trim_start_matches("Reason:").trim().to_string());
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::CommandKind;

    #[test]
    fn sent_and_received_lines() {
        let m = Mail::with_text(
            "...\nSent <<< RCPT TO:<kim@example.co.jp>\nReceived >>> 550 5.1.1 <kim@example.co.jp>... user unknown\n...\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].command, Some(CommandKind::Rcpt));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 <kim@example.co.jp>... user unknown")
        );
    }
}
