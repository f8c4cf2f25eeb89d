//! Exchange 2000/2003 (and the Internet Mail Service of Exchange 5.5)
//! NDRs: "Your message ... did not reach the following recipient(s):",
//! then `a@b on DATE` and, indented below it, Exchange's explanation and
//! its diagnostic (`MSEXCH:IMS:...` with a hexadecimal code).

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::text::{join, lines};
use super::super::{Format, Found};

/// The Exchange 2003 format.
pub const FORMAT: Format = Format {
    name: "exchange2003",
    detect,
    read,
    generic: false,
};

static RCPT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*<?([^\s<>]+@[^\s<>]+?)>?\s+on\s+\S").expect("static regex"));

fn detect(m: &Mail) -> bool {
    m.text_has("did not reach the following recipient")
}

fn read(mail: &Mail) -> Vec<Found> {
    let mut out: Vec<(Found, Vec<&str>)> = Vec::new();
    let mut started = false;
    for line in lines(&mail.text) {
        if line
            .to_ascii_lowercase()
            .contains("did not reach the following recipient")
        {
            started = true;
            continue;
        }
        if !started {
            continue;
        }
        if let Some(c) = RCPT.captures(line) {
            out.push((Found::new(&c[1]), Vec::new()));
        } else if let Some((_, body)) = out.last_mut()
            && !line.trim().is_empty()
        {
            body.push(line);
        }
    }
    out.into_iter()
        .map(|(mut f, body)| {
            f.diagnostic = Some(join(body));
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_on_date_then_the_explanation() {
        let m = Mail::with_text(
            "Your message\n  To:      a@example.com\ndid not reach the following recipient(s):\n\nkim@example.jp on Thu, 29 Apr 2010 00:00:00 -0000\n    The recipient name is not recognized\n    MSEXCH:IMS:X:Y:Z 0 (000C05A6) Unknown Recipient\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].recipient, "kim@example.jp");
        assert!(
            r[0].diagnostic
                .as_deref()
                .unwrap()
                .starts_with("The recipient name is not recognized")
        );
    }
}
