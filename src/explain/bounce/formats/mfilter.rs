//! m-FILTER (`X-Mailer: m-FILTER`): the address, then "-------server
//! message" with the remote reply and "-------SMTP command" with the
//! command it answered.

use super::super::mail::Mail;
use super::super::text::{before_marker, lines, only_address};
use super::super::{Format, Found};
use crate::explain::extract::context_from_words;

/// The m-FILTER format.
pub const FORMAT: Format = Format {
    name: "mfilter",
    detect,
    read,
    generic: false,
};

fn detect(m: &Mail) -> bool {
    m.header("x-mailer").is_some_and(|x| x.contains("m-FILTER"))
        || m.text_has("-------server message")
}

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(
        &mail.text,
        &["-------original message", "-------original mail info"],
    );
    let mut out: Vec<Found> = Vec::new();
    let mut section = "";
    for line in lines(text) {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("-------") {
            section = if name.starts_with("server message") {
                "reply"
            } else if name.starts_with("SMTP command") {
                "command"
            } else {
                ""
            };
            continue;
        }
        if t.is_empty() {
            continue;
        }
        match section {
            "reply" => {
                if let Some(f) = out.last_mut() {
                    let d = f.diagnostic.get_or_insert_with(String::new);
                    if !d.is_empty() {
                        d.push(' ');
                    }
                    d.push_str(t);
                }
            }
            "command" => {
                if let Some(f) = out.last_mut() {
                    f.command = context_from_words(t);
                }
            }
            _ => {
                if let Some(a) = only_address(t) {
                    out.push(Found::new(a));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::CommandKind;

    #[test]
    fn server_message_and_command_sections() {
        let m = Mail::with_text(
            "kim@example.com\n\n-------server message\n550 unknown user <kim@example.com>\n\n-------SMTP command\nDATA\n\n-------original message\nTo: zed@example.com\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].command, Some(CommandKind::Data));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 unknown user <kim@example.com>")
        );
    }
}
