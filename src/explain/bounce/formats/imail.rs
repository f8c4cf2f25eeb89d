//! Ipswitch IMail (`X-Mailer: <SMTP32 ...>`): the reason and the address
//! on one line before "Original message follows." — `Unknown user:
//! a@b`, `User mailbox exceeds allowed size: a@b`, `Invalid final
//! delivery userid: a@b` — sometimes with the remote reply after it.

use super::super::mail::Mail;
use super::super::text::{address_in, before_marker, lines};
use super::super::{Format, Found};

/// The IMail format.
pub const FORMAT: Format = Format {
    name: "imail",
    detect,
    read,
    generic: false,
};

fn detect(m: &Mail) -> bool {
    m.header("x-mailer").is_some_and(|x| x.contains("SMTP32"))
        || m.subject().starts_with("Undeliverable Mail") && m.text_has("Original message follows.")
}

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, &["Original message follows."]);
    let mut out: Vec<Found> = Vec::new();
    for line in lines(text) {
        let t = line.trim();
        if let Some((words, rest)) = t.rsplit_once(": ")
            && let Some(a) = address_in(rest)
            && rest
                .trim()
                .trim_matches(['<', '>'])
                .eq_ignore_ascii_case(&a)
        {
            let mut f = Found::new(a);
            f.diagnostic = Some(words.trim().to_string());
            out.push(f);
        } else if let Some(f) = out.last_mut()
            && !t.is_empty()
        {
            // The remote server's reply, when IMail quotes it.
            let d = f.diagnostic.get_or_insert_with(String::new);
            d.push(' ');
            d.push_str(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_colon_address() {
        let m = Mail {
            text:
                "Unknown user: kim@example.com\n\nOriginal message follows.\nTo: zed@example.com\n"
                    .into(),
            ..Mail::default()
        };
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].recipient, "kim@example.com");
        assert_eq!(r[0].diagnostic.as_deref(), Some("Unknown user"));
    }
}
