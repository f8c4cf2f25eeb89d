//! au one net (KDDI, `dion.ne.jp`) and similar: "Your mail sent on: DATE",
//! "Could not be delivered to: <a@b>" and the reason on the next line
//! ("As their mailbox is full.").

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::text::lines;
use super::super::{Format, Found};

/// The KDDI format.
pub const FORMAT: Format = Format {
    name: "kddi",
    detect,
    read,
    generic: false,
};

static TO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)could not be delivered to:\s*<?([^\s<>]+@[^\s<>]+?)>?\s*$")
        .expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.text_has("Could not be delivered to:")
}

fn read(mail: &Mail) -> Vec<Found> {
    let ls = lines(&mail.text);
    let mut out = Vec::new();
    for (i, line) in ls.iter().enumerate() {
        if let Some(c) = TO.captures(line.trim()) {
            let mut f = Found::new(&c[1]);
            let why: Vec<&str> = ls[i + 1..]
                .iter()
                .map(|l| l.trim())
                .take_while(|l| !l.is_empty() && TO.captures(l).is_none())
                .collect();
            f.diagnostic = Some(why.join(" "));
            out.push(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_follows_the_address() {
        let m = Mail::with_text(
            "Your mail sent on: Thu, 29 Apr 2013 23:45:22 +0900\n     Could not be delivered to: <kim@example.jp>\n     As their mailbox is full.\n",
        );
        let r = read(&m);
        assert_eq!(r[0].recipient, "kim@example.jp");
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("As their mailbox is full.")
        );
    }
}
