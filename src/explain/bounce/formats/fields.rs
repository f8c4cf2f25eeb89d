//! Bounces that name each recipient in a labelled line and explain it in
//! the lines after, as Oracle Messaging Server (PMDF) does — `Recipient
//! address: a@b`, `Reason: ...`, `Diagnostic code: smtp; 550 ...`,
//! `Remote system: dns; mx.example.org` — and as content filters do with
//! `Your message to: a@b` (Barracuda) or `Addressed To: a@b` and the
//! attempt's transcript line `a@b: [ip], 550 ...` (SurfControl).

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::rfc3464::strip_type;
use super::super::text::{address_in, before_marker, lines, strip_prefix_ci};
use super::super::{Format, Found, same_address};

/// The labelled-fields format.
pub const FORMAT: Format = Format {
    name: "fields",
    detect,
    read,
    generic: false,
};

/// The labels that name a recipient.
const RECIPIENT: &[&str] = &["Recipient address:", "Your message to:", "Addressed To:"];

static ATTEMPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*<?([^\s<>:]+@[^\s<>:]+?)>?:\s*\[([^\]]+)\],\s*(.*)$").expect("static regex")
});

fn detect(m: &Mail) -> bool {
    lines(&m.text).iter().any(|l| {
        let t = l.trim_start();
        RECIPIENT
            .iter()
            .any(|r| strip_prefix_ci(t, r).is_some_and(|a| address_in(a).is_some()))
    })
}

const END: &[&str] = &[
    "--- Message non-deliverable",
    "Original-envelope-id:",
    "Reporting-MTA:",
];

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, END);
    let mut out: Vec<Found> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    // Words right below a recipient line, up to an empty line.
    let mut below = false;
    for line in lines(text) {
        let t = line.trim();
        if let Some(a) = RECIPIENT
            .iter()
            .find_map(|r| strip_prefix_ci(t, r))
            .and_then(address_in)
        {
            if !out.iter().any(|f| same_address(&f.recipient, &a)) {
                out.push(Found::new(a));
            }
            below = true;
            continue;
        }
        if t.is_empty() {
            below = false;
        }
        let Some(f) = out.last_mut() else { continue };
        if let Some(d) = strip_prefix_ci(t, "Diagnostic code:") {
            f.diagnostic = Some(strip_type(d).to_string());
        } else if let Some(r) = strip_prefix_ci(t, "Remote system:") {
            f.remote_mta = strip_type(r).split_whitespace().next().map(str::to_string);
        } else if let Some(r) = strip_prefix_ci(t, "Reason:") {
            f.note = Some(r.trim().to_string());
        } else if let Some(c) = ATTEMPT.captures(t)
            && same_address(&c[1], &f.recipient)
        {
            f.remote_mta = Some(c[2].to_string());
            f.diagnostic = Some(c[3].trim().to_string());
        } else if below && f.diagnostic.is_none() {
            words.push(t.to_string());
        }
    }
    // A filter that says only what it did (`was blocked by our Spam
    // Firewall`): its words are the diagnostic.
    let words = words.join(" ");
    for f in &mut out {
        if f.diagnostic.is_none() && !words.is_empty() {
            f.diagnostic = Some(words.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messaging_server_fields() {
        let r = read(&Mail::with_text(
            "Your message cannot be delivered to the following recipients:\n\n  Recipient address: kim@example.jp\n  Reason: Remote SMTP server has rejected address\n  Diagnostic code: smtp;550 5.1.1 <kim@example.jp>... User Unknown\n  Remote system: dns;mx.example.jp (TCP|192.0.2.1|25)\n",
        ));
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 <kim@example.jp>... User Unknown")
        );
        assert_eq!(r[0].remote_mta.as_deref(), Some("mx.example.jp"));
        assert_eq!(
            r[0].note.as_deref(),
            Some("Remote SMTP server has rejected address")
        );
    }

    #[test]
    fn filters_name_the_recipient_and_say_what_they_did() {
        let r = read(&Mail::with_text(
            "Your message to: kim@example.org\nwas blocked by our Spam Firewall.\n",
        ));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("was blocked by our Spam Firewall.")
        );
        let r = read(&Mail::with_text(
            "Addressed To: kim@example.com\n\nFailed to send to identified host,\nkim@example.com: [192.0.2.5], 550 kim@example.com... No such user\n--- Message non-deliverable.\n",
        ));
        assert_eq!(r[0].remote_mta.as_deref(), Some("192.0.2.5"));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 kim@example.com... No such user")
        );
    }
}
