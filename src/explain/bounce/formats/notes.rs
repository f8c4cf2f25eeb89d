//! Lotus Notes / Domino: the older "------- Failure Reasons --------"
//! block (the reason, then the address) before "------- Returned Message
//! --------"; Domino's "Your message ... was not delivered to: a@b
//! because: REASON".

use super::super::mail::Mail;
use super::super::text::{before_marker, lines, only_address};
use super::super::{Format, Found};

/// The Notes / Domino format.
pub const FORMAT: Format = Format {
    name: "notes",
    detect,
    read,
    generic: false,
};

fn detect(m: &Mail) -> bool {
    m.text_has("------- Failure Reasons")
        || m.text_has("was not delivered to:") && m.text_has("because:")
}

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(
        &mail.text,
        &["------- Returned Message", "Original message follows"],
    );
    let mut out: Vec<Found> = Vec::new();
    let mut words: Vec<&str> = Vec::new();
    let mut in_because = false;
    for line in lines(text) {
        let t = line.trim();
        if t.is_empty() || t.starts_with("-------") {
            continue;
        }
        if t.eq_ignore_ascii_case("because:") {
            in_because = true;
            continue;
        }
        if let Some(a) = only_address(t) {
            // Notes writes the reason first, Domino after `because:`.
            let mut f = Found::new(a);
            if !words.is_empty() && !in_because {
                f.diagnostic = Some(words.join(" "));
                words.clear();
            }
            out.push(f);
            continue;
        }
        if in_because {
            if let Some(f) = out.last_mut() {
                let d = f.diagnostic.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push(' ');
                }
                d.push_str(t);
            }
        } else if !t.to_ascii_lowercase().starts_with("your message")
            && !t.ends_with("delivered to:")
            && !t.contains(':')
        {
            words.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_reason_comes_before_the_address() {
        let m = Mail::with_text(
            "------- Failure Reasons  --------\n\nUser  not listed in public Name & Address Book\nkim@example.com\n\n------- Returned Message --------\nTo: x@example.com\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("User  not listed in public Name & Address Book")
        );
    }

    #[test]
    fn domino_reason_follows_because() {
        let m = Mail::with_text(
            "Your message\n\n  Subject: Test\n\nwas not delivered to:\n\n  kim@example.jp\n\nbecause:\n\n  User kim (kim@example.jp) not listed in Domino Directory\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert!(
            r[0].diagnostic
                .as_deref()
                .unwrap()
                .contains("not listed in Domino Directory")
        );
    }
}
