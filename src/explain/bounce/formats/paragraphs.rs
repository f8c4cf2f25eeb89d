//! The last resort for bounces shaped like qmail's without naming
//! themselves: a line holding only `<a@b>:` and, below it, the reason and
//! often `Remote host said: REPLY`, before the copy of the message.

use super::super::mail::Mail;
use super::super::text::{address_paragraphs, before_marker};
use super::super::{Format, Found};

/// The address-paragraph format.
pub const FORMAT: Format = Format {
    name: "paragraphs",
    detect: |_| true,
    read,
    generic: true,
};

const END: &[&str] = &[
    "--- Below this line is a copy of the message",
    "--- Original message follows",
    "--- Enclosed is a copy of the message",
    "------ This is a copy of the message",
];

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, END);
    address_paragraphs(text)
        .into_iter()
        .filter(|(_, body)| !body.is_empty())
        .map(|(addr, body)| super::qmail::paragraph(addr, &body))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_colon_then_the_reason() {
        let m = Mail::with_text(
            "Unable to deliver message to the following address(es).\n\n<kim@example.co.jp>:\nThis user doesn't have a example.co.jp account (kim@example.co.jp) [-9]\n\n--- Original message follows.\n\n<zed@example.co.jp>:\nquoted\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert!(
            r[0].diagnostic
                .as_deref()
                .unwrap()
                .starts_with("This user doesn't have")
        );
    }
}
