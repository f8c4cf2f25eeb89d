//! The DragonFly Mail Agent (`dma`): "This is the DragonFly Mail Agent",
//! "There was an error delivering your mail to <a@b>.", then `H [ip] did
//! not like our RCPT TO:` (or `final DATA`, `MAIL FROM`) and the remote
//! reply on the next lines, or dma's own words (`Could not deliver for the
//! last N seconds. Giving up.`).

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::text::{before_marker, join, lines};
use super::super::{Format, Found};
use crate::explain::extract::context_from_words;
use crate::smtp::CommandKind;

/// The DragonFly format.
pub const FORMAT: Format = Format {
    name: "dragonfly",
    detect,
    read,
    generic: false,
};

static TO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)error delivering your mail to\s+<?([^\s<>]+@[^\s<>]+?)>?\.?\s*$")
        .expect("static regex")
});
static DID_NOT_LIKE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(\S+)\s+(?:\[[^\]]*\]\s+)?did not like our\s+(.*?):\s*(.*)$")
        .expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.text_has("This is the DragonFly Mail Agent")
}

const END: &[&str] = &["Original message follows.", "Message headers follow."];

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, END);
    let mut f: Option<Found> = None;
    let mut rest: Vec<&str> = Vec::new();
    for line in lines(text) {
        let t = line.trim();
        if let Some(c) = TO.captures(t) {
            f = Some(Found::new(&c[1]));
            continue;
        }
        if let Some(found) = f.as_mut() {
            if let Some(c) = DID_NOT_LIKE.captures(t) {
                found.remote_mta = Some(c[1].to_string());
                let words = c[2].trim();
                found.command = if words.eq_ignore_ascii_case("final DATA") {
                    Some(CommandKind::DataEnd)
                } else {
                    context_from_words(words)
                };
                if !c[3].trim().is_empty() {
                    rest.push(t);
                }
                continue;
            }
            rest.push(t);
        }
    }
    let mut f = match f {
        Some(f) => f,
        None => return Vec::new(),
    };
    let said = join(rest);
    if !said.is_empty() {
        f.diagnostic = Some(said);
    }
    vec![f]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refused_command_and_the_multi_line_reply() {
        let m = Mail::with_text(
            "This is the DragonFly Mail Agent v0.13 at df.example.jp.\n\nThere was an error delivering your mail to <kim@example.com>.\n\nmx.example.com [192.0.2.1] did not like our final DATA:\n550-5.7.26 Unauthenticated email is not accepted due to domain's\n550 5.7.26 DMARC policy.\n\nMessage headers follow.\nTo: <zed@example.com>\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].recipient, "kim@example.com");
        assert_eq!(r[0].remote_mta.as_deref(), Some("mx.example.com"));
        assert_eq!(r[0].command, Some(CommandKind::DataEnd));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some(
                "550-5.7.26 Unauthenticated email is not accepted due to domain's 550 5.7.26 DMARC policy."
            )
        );
    }
}
