//! GMX and 1&1 (`mail.gmx.com`, `kundenserver.de`): Exim's wording with
//! the address quoted and unindented — `"a@b":` or `a@b:` — then "SMTP
//! error from remote server after RCPT command:" (or "for TEXT command,
//! host: H reason: REPLY"), `host: H` and the reply.

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::text::{before_marker, find_ci, join, lines, only_address};
use super::super::{Format, Found};
use crate::explain::extract::context_from_words;
use crate::smtp::CommandKind;

/// The GMX / 1&1 format.
pub const FORMAT: Format = Format {
    name: "gmx",
    detect,
    read,
    generic: false,
};

static AFTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)SMTP error from remote server (?:after|for) (\S+)(?: command)?[:,]?")
        .expect("static regex")
});
static HOST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bhost:\s*([A-Za-z0-9.-]+)").expect("static regex"));

fn detect(m: &Mail) -> bool {
    m.text_has("--- The header of the original message is following. ---")
}

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, &["--- The header of the original message"]);
    let mut out: Vec<(Found, Vec<&str>)> = Vec::new();
    for line in lines(text) {
        let t = line.trim();
        if t.ends_with(':')
            && let Some(a) = only_address(t.trim_end_matches(':').trim_matches('"'))
        {
            out.push((Found::new(a), Vec::new()));
        } else if let Some((_, body)) = out.last_mut()
            && !t.is_empty()
        {
            body.push(t);
        }
    }
    out.into_iter()
        .map(|(mut f, body)| {
            let all = join(body);
            let mut rest = all.as_str();
            if let Some(c) = AFTER.captures(rest) {
                f.command = match c[1].to_ascii_uppercase().as_str() {
                    "TEXT" => Some(CommandKind::DataEnd),
                    w => context_from_words(w),
                };
                rest = &rest[c.get(0).map_or(0, |m| m.end())..];
            }
            if let Some(c) = HOST.captures(rest) {
                f.remote_mta = Some(c[1].trim_end_matches('.').to_string());
                rest = &rest[c.get(0).map_or(0, |m| m.end())..];
            }
            if let Some(at) = find_ci(rest, "reason:") {
                rest = &rest[at + "reason:".len()..];
            }
            f.diagnostic = Some(rest.trim().trim_start_matches(['(', ')']).to_string());
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_address_command_host_and_reply() {
        let m = Mail::with_text(
            "The following address\nfailed:\n\n\"kim@example.jp\":\nSMTP error from remote server after RCPT command:\nhost: mx.example.jp\n5.2.2 <kim@example.jp>... Mailbox Full\n\n--- The header of the original message is following. ---\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].command, Some(CommandKind::Rcpt));
        assert_eq!(r[0].remote_mta.as_deref(), Some("mx.example.jp"));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("5.2.2 <kim@example.jp>... Mailbox Full")
        );
    }
}
