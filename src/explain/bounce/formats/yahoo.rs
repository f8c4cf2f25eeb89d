//! Yahoo's own bounce ("Sorry, we were unable to deliver your message to
//! the following address."): per recipient `<a@b>:` and `Remote host said:
//! REPLY [RCPT_TO]` (the bracket names the command), or Yahoo's words (`No
//! mx record found for domain=...`).

use super::super::mail::Mail;
use super::super::text::{address_paragraphs, before_marker, find_ci, join};
use super::super::{Format, Found};
use crate::smtp::CommandKind;

/// The Yahoo format.
pub const FORMAT: Format = Format {
    name: "yahoo",
    detect,
    read,
    generic: false,
};

fn detect(m: &Mail) -> bool {
    m.text_has("Sorry, we were unable to deliver your message to the following address")
}

const END: &[&str] = &["--- Below this line is a copy of the message"];

/// Yahoo's bracketed command names.
const COMMANDS: &[(&str, CommandKind)] = &[
    ("[RCPT_TO]", CommandKind::Rcpt),
    ("[MAIL_FROM]", CommandKind::Mail),
    ("[DATA]", CommandKind::Data),
    ("[BODY]", CommandKind::DataEnd),
    ("[EHLO]", CommandKind::Ehlo),
    ("[HELO]", CommandKind::Helo),
    ("[CONNECT]", CommandKind::Greeting),
];

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, END);
    address_paragraphs(text)
        .into_iter()
        .map(|(addr, body)| {
            let mut f = Found::new(addr);
            let mut all = join(body);
            if let Some((tag, k)) = COMMANDS.iter().find(|(tag, _)| all.contains(tag)) {
                f.command = Some(*k);
                all = all.replace(tag, "").trim().to_string();
            }
            let said = find_ci(&all, "Remote host said:")
                .map(|at| all[at + "Remote host said:".len()..].trim().to_string());
            f.diagnostic = Some(said.unwrap_or(all));
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bracket_names_the_command() {
        let m = Mail::with_text(
            "Sorry, we were unable to deliver your message to the following address.\n\n<kim@example.org>:\nRemote host said:\n550 5.1.1 <kim@example.org>... User Unknown\n[RCPT_TO]\n\n--- Below this line is a copy of the message.\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].command, Some(CommandKind::Rcpt));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 <kim@example.org>... User Unknown")
        );
    }
}
