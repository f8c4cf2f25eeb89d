//! SendGrid: "This is an automatically generated message from SendGrid."
//! and one line per recipient, `local:id:<a@b> : client ip : host:[ip] :
//! REPLY in RCPT TO` (the command at the end), or its own words
//! ("Connection timed out").

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::text::{find_ci, lines};
use super::super::{Format, Found};
use crate::explain::extract::context_from_words;

/// The SendGrid format.
pub const FORMAT: Format = Format {
    name: "sendgrid",
    detect,
    read,
    generic: false,
};

static LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\S*<([^\s<>]+@[^\s<>]+)>\s*:\s*[^:]*:\s*(\S+?):\[[^\]]*\]\s*:\s*(.*)$")
        .expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.text_has("automatically generated message from SendGrid")
}

fn read(mail: &Mail) -> Vec<Found> {
    let mut out = Vec::new();
    for line in lines(&mail.text) {
        let Some(c) = LINE.captures(line.trim()) else {
            continue;
        };
        let mut f = Found::new(&c[1]);
        f.remote_mta = Some(c[2].to_string());
        let mut said = c[3].trim();
        // `... User Unknown  in RCPT TO`: the command SendGrid sent.
        if let Some(at) = find_ci(said, " in ") {
            let words = said[at + 4..].trim();
            if let Some(k) = context_from_words(words) {
                f.command = Some(k);
                said = said[..at].trim();
            }
        }
        f.diagnostic = Some(said.to_string());
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::CommandKind;

    #[test]
    fn one_line_per_recipient_with_the_command_at_the_end() {
        let m = Mail::with_text(
            "This is an automatically generated message from SendGrid.\n\nkim:000000:<kim@example.jp> : 192.0.2.250 : mx.example.jp:[192.0.2.153] : 550 5.1.1 <kim@example.jp>... User Unknown  in RCPT TO\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].remote_mta.as_deref(), Some("mx.example.jp"));
        assert_eq!(r[0].command, Some(CommandKind::Rcpt));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 <kim@example.jp>... User Unknown")
        );
    }
}
