//! Verizon Wireless's MMS gateway (`vzwpix.com`): "Message could not be
//! delivered to mobile." and `Error: ...`; the recipient is the returned
//! message's `To`.

use super::super::mail::{Mail, header_in};
use super::super::text::{address_in, before_marker, find_ci, lines};
use super::super::{Format, Found};

/// The Verizon format.
pub const FORMAT: Format = Format {
    name: "verizon",
    detect,
    read,
    generic: false,
};

fn detect(m: &Mail) -> bool {
    m.text_has("Message could not be delivered to mobile")
}

fn read(mail: &Mail) -> Vec<Found> {
    let head = before_marker(&mail.text, &["Original Message:"]);
    let error = lines(head).into_iter().find_map(|l| {
        l.trim()
            .strip_prefix("Error:")
            .map(|e| e.trim().to_string())
    });
    let rest = &mail.text[head.len()..];
    let to = find_ci(rest, "\nTo:")
        .and_then(|at| header_in(&rest[at + 1..], "to"))
        .or_else(|| mail.returned_header("to"))
        .and_then(|t| address_in(&t));
    match to {
        Some(a) => {
            let mut f = Found::new(a);
            f.diagnostic = error;
            vec![f]
        }
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_from_the_returned_to() {
        let m = Mail::with_text(
            "Message could not be delivered to mobile.\nError: No valid recipients for this MM\n\nOriginal Message:\nFrom: a <a@example.jp>\nTo: 0000@example.com\nSubject: x\n",
        );
        let r = read(&m);
        assert_eq!(r[0].recipient, "0000@example.com");
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("No valid recipients for this MM")
        );
    }
}
