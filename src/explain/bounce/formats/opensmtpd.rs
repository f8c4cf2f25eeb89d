//! OpenSMTPD: "This is the MAILER-DAEMON, please DO NOT REPLY to this
//! e-mail." and, after "the following list of recipients:", one line per
//! recipient, `a@b: REPLY or OpenSMTPD's words` (`Domain does not exist`,
//! `Envelope expired`).

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::text::{before_marker, lines};
use super::super::{Format, Found};

/// The OpenSMTPD format.
pub const FORMAT: Format = Format {
    name: "opensmtpd",
    detect,
    read,
    generic: false,
};

static LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*<?([^\s<>:]+@[^\s<>:]+?)>?:\s+(\S.*)$").expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.text_has("This is the MAILER-DAEMON, please DO NOT REPLY")
        || m.text_has("list of recipients:")
            && m.text_has("Below is a copy of the original message")
}

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, &["Below is a copy of the original message"]);
    let mut started = false;
    let mut out = Vec::new();
    for line in lines(text) {
        if line.to_ascii_lowercase().contains("list of recipients:") {
            started = true;
            continue;
        }
        if started && let Some(c) = LINE.captures(line) {
            let mut f = Found::new(&c[1]);
            f.diagnostic = Some(c[2].trim().to_string());
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_recipient() {
        let m = Mail::with_text(
            "    This is the MAILER-DAEMON, please DO NOT REPLY to this e-mail.\n    the following list of recipients:\n\nkim@example.jp: Envelope expired\nlee@example.jp: 550 5.1.1 no such user\n\n    Below is a copy of the original message:\nTo: x@example.jp\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].diagnostic.as_deref(), Some("Envelope expired"));
        assert_eq!(r[1].recipient, "lee@example.jp");
    }
}
