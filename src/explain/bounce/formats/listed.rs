//! Bounces of unnamed MTAs that list the failed recipients under a lead
//! sentence, one per line, and give the reason beside or below them:
//! - `---The following addresses had delivery errors---` then
//!   `a@b [User unknown]`;
//! - "Delivery to the following recipients failed permanently:" then
//!   `* a@b`, and under "Technical details:" `SMTP:RCPT host IP: REPLY`;
//! - "The following recipients returned permanent errors: a@b. Reason:
//!   ..." on one line;
//! - a lead sentence ending in `recipients:` or `recipients failed.` (or
//!   `--- The following addresses had delivery problems ---`) and the
//!   addresses on the lines below, alone, in angle brackets, or followed by
//!   the reason in brackets or parentheses (`<a@b>  (User unknown)`).

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::text::{address_in, lines, only_address};
use super::super::{Format, Found};
use crate::explain::extract::context_from_words;

/// The listed-recipients format.
pub const FORMAT: Format = Format {
    name: "listed",
    detect,
    read,
    generic: false,
};

static BRACKET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*<?([^\s<>\[(]+@[^\s<>\[(]+?)>?\s+[\[(](.+)[\])]\s*$").expect("static regex")
});
static STAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*\*\s+<?([^\s<>]+@[^\s<>]+?)>?\s*$").expect("static regex"));
static LEAD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:following recipients?(?: failed)?[.:]|following addresses had [a-z ]+-*|list of recipients:)\s*$")
        .expect("static regex")
});
static TECHNICAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\s*SMTP:(\w+)\s+host\s+(\S+?):\s*(.*)$").expect("static regex")
});
static RETURNED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)following recipients returned (?:permanent|temporary) errors:\s*(.*?)\.\s+Reason:\s*(.*)$")
        .expect("static regex")
});
static REFUSED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)SMTP Server <([^>]+)> refused to accept your message \((\w+)\)")
        .expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.text_has("following addresses had delivery")
        || lines(&m.text).iter().any(|l| LEAD.is_match(l.trim_end()))
        || m.text_has("recipients failed permanently:")
        || m.text_has("following recipients returned")
}

fn read(mail: &Mail) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut after_lead = false;
    for line in lines(&mail.text) {
        if LEAD.is_match(line.trim_end()) {
            after_lead = true;
            continue;
        }
        if after_lead && let Some(a) = only_address(line) {
            out.push(Found::new(a));
            continue;
        }
        if !line.trim().is_empty() && !line.starts_with([' ', '\t']) {
            after_lead = false;
        }
        if let Some(c) = BRACKET.captures(line) {
            let mut f = Found::new(&c[1]);
            f.diagnostic = Some(c[2].trim().to_string());
            out.push(f);
        } else if let Some(c) = STAR.captures(line) {
            out.push(Found::new(&c[1]));
        } else if let Some(c) = TECHNICAL.captures(line) {
            for f in out.iter_mut().filter(|f| f.diagnostic.is_none()) {
                f.command = context_from_words(&c[1]);
                f.remote_mta = Some(c[2].to_string());
                f.diagnostic = Some(c[3].trim().to_string());
            }
        } else if let Some(c) = RETURNED.captures(line) {
            for a in c[1].split([',', ' ']).filter_map(address_in) {
                let mut f = Found::new(a);
                let why = c[2].trim();
                if let Some(r) = REFUSED.captures(why) {
                    f.remote_mta = Some(r[1].to_string());
                    f.command = context_from_words(&r[2]);
                }
                f.diagnostic = Some(why.to_string());
                out.push(f);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::CommandKind;

    #[test]
    fn addresses_under_a_lead_sentence() {
        let r = read(&Mail::with_text(
            "Unable to deliver message to the following recipients, due to being unable to connect.\n\n       kim@example.com\n",
        ));
        assert!(r.is_empty(), "no lead sentence end: {r:?}");
        let r = read(&Mail::with_text(
            "Delivery to the following recipients failed.\n\n       kim@example.com\n       <lee@example.com>\n",
        ));
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].recipient, "lee@example.com");
        let r = read(&Mail::with_text(
            "    --- The following addresses had delivery problems ---\n\n<kim@example.or.jp>   (5.1.1 <kim@example.or.jp>... User unknown)\n",
        ));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("5.1.1 <kim@example.or.jp>... User unknown")
        );
    }

    #[test]
    fn bracketed_reason() {
        let r = read(&Mail::with_text(
            "---The following addresses had delivery errors---\n\nkim@example.co.jp [User unknown]\n",
        ));
        assert_eq!(r[0].diagnostic.as_deref(), Some("User unknown"));
    }

    #[test]
    fn starred_address_and_technical_details() {
        let r = read(&Mail::with_text(
            "Delivery to the following recipients failed permanently:\n\n   * kim@example.com\n\nTechnical details:\nSMTP:RCPT host 192.0.2.8: 553 5.3.0 <kim@example.com>... No such user here\n",
        ));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].command, Some(CommandKind::Rcpt));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("553 5.3.0 <kim@example.com>... No such user here")
        );
    }

    #[test]
    fn one_line_with_the_reason() {
        let r = read(&Mail::with_text(
            "The following recipients returned permanent errors: kim@example.org. Reason: SMTP Server <192.0.2.1> refused to accept your message (DATA), with the following error message: 554 too many hops\n",
        ));
        assert_eq!(r[0].remote_mta.as_deref(), Some("192.0.2.1"));
        assert_eq!(r[0].command, Some(CommandKind::Data));
    }
}
