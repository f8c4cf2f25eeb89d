//! Apache James: "Error message below:" with the remote reply (`550 -
//! Requested action not taken: ...`) and "Message details:" naming the
//! envelope (`RCPT TO: a@b`).

use super::super::mail::Mail;
use super::super::text::{address_in, lines, strip_prefix_ci};
use super::super::{Format, Found};

/// The Apache James format.
pub const FORMAT: Format = Format {
    name: "apachejames",
    detect,
    read,
    generic: false,
};

fn detect(m: &Mail) -> bool {
    m.text_has("Error message below:") && m.text_has("Message details:")
}

fn read(mail: &Mail) -> Vec<Found> {
    let mut reply: Vec<&str> = Vec::new();
    let mut in_reply = false;
    let mut rcpts: Vec<String> = Vec::new();
    for line in lines(&mail.text) {
        let t = line.trim();
        if t.eq_ignore_ascii_case("Error message below:") {
            in_reply = true;
            continue;
        }
        if t.eq_ignore_ascii_case("Message details:") {
            in_reply = false;
            continue;
        }
        if in_reply && !t.is_empty() {
            reply.push(t);
        } else if let Some(r) = strip_prefix_ci(t, "RCPT TO:") {
            rcpts.extend(r.split(',').filter_map(address_in));
        }
    }
    // James writes `550 - text`: the reply is `550 text`.
    let joined = reply.join(" ");
    let diag = match joined.get(..6) {
        Some(h) if h.as_bytes()[..3].iter().all(u8::is_ascii_digit) && &h[3..6] == " - " => {
            format!("{} {}", &joined[..3], &joined[6..])
        }
        _ => joined,
    };
    rcpts
        .into_iter()
        .map(|a| {
            let mut f = Found::new(a);
            f.diagnostic = Some(diag.clone());
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_and_envelope_recipient() {
        let m = Mail::with_text(
            "Error: Invalid user address\n\nError message below:\n550 - Requested action not taken: no such user here\n\nMessage details:\n  MAIL FROM: a@example.com\n  RCPT TO: kim@example.com\n",
        );
        let r = read(&m);
        assert_eq!(r[0].recipient, "kim@example.com");
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 Requested action not taken: no such user here")
        );
    }
}
