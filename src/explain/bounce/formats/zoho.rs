//! Zoho Mail: one line per recipient, `a@b Invalid Address, ERROR_CODE
//! :550, ERROR_CODE :5.1.1 <a@b>... User Unknown` — the reply code and
//! the reply's text in two `ERROR_CODE :` fields.

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::text::lines;
use super::super::{Format, Found};

/// The Zoho format.
pub const FORMAT: Format = Format {
    name: "zoho",
    detect,
    read,
    generic: false,
};

static LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*<?([^\s<>]+@[^\s<>]+?)>?\s+(.*?),\s*ERROR_CODE\s*:\s*(\d{3})?\s*,\s*ERROR_CODE\s*:\s*(.*)$")
        .expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.header("x-mailer").is_some_and(|x| x.contains("Zoho")) || m.text_has("ERROR_CODE :")
}

fn read(mail: &Mail) -> Vec<Found> {
    lines(&mail.text)
        .into_iter()
        .filter_map(|l| LINE.captures(l))
        .map(|c| {
            let mut f = Found::new(&c[1]);
            let text = c[4].trim().trim_start_matches([',', ' ']);
            f.diagnostic = Some(match c.get(3) {
                Some(code) => format!("{} {text}", code.as_str()),
                None => text.to_string(),
            });
            f.note = Some(c[2].trim().to_string());
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_and_text_are_put_back_together() {
        let m = Mail::with_text(
            "kim@example.jp Invalid Address, ERROR_CODE :550, ERROR_CODE :5.1.1 <kim@example.jp>... User Unknown\n",
        );
        let r = read(&m);
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 <kim@example.jp>... User Unknown")
        );
        assert_eq!(r[0].note.as_deref(), Some("Invalid Address"));
    }
}
