//! Postfix's notice to the postmaster about a session it received (`Subject:
//! Postfix SMTP server: errors from H[ip]`): "Transcript of session
//! follows." with ` In:  ` lines (the client's commands, `RCPT
//! TO:<a@b>`) and ` Out: ` lines (Postfix's replies). The recipients are
//! the `RCPT TO` addresses; the failure is the first 4xx or 5xx reply
//! after them, to the command before it.

use super::super::mail::Mail;
use super::super::text::{address_in, lines, strip_prefix_ci};
use super::super::{Format, Found};
use crate::explain::extract::context_from_words;
use crate::smtp::CommandKind;

/// The Postfix notice format.
pub const FORMAT: Format = Format {
    name: "postfixnotice",
    detect,
    read,
    generic: false,
};

fn detect(m: &Mail) -> bool {
    m.subject().starts_with("Postfix SMTP server: errors from")
        || m.text_has("Transcript of session follows.") && m.text_has(" In:  ")
}

fn read(mail: &Mail) -> Vec<Found> {
    // Each `In:`/`Out:` line with the lines indented under it.
    let mut turns: Vec<(bool, String)> = Vec::new();
    for line in lines(&mail.text) {
        let t = line.trim_start();
        if let Some(r) = t.strip_prefix("In:") {
            turns.push((true, r.trim().to_string()));
        } else if let Some(r) = t.strip_prefix("Out:") {
            turns.push((false, r.trim().to_string()));
        } else if line.starts_with("     ")
            && let Some((_, last)) = turns.last_mut()
        {
            last.push(' ');
            last.push_str(t.trim());
        }
    }
    let mut rcpts: Vec<String> = Vec::new();
    let mut command: Option<CommandKind> = None;
    let mut failure: Option<(String, Option<CommandKind>)> = None;
    for (client, text) in &turns {
        if *client {
            if let Some(r) = strip_prefix_ci(text, "RCPT TO:")
                && let Some(a) = address_in(r)
            {
                rcpts.push(a);
            }
            command = context_from_words(text);
        } else if text.starts_with("354") {
            command = Some(CommandKind::DataEnd);
        } else if !rcpts.is_empty() && failure.is_none() && text.starts_with(['4', '5']) {
            failure = Some((text.clone(), command));
        }
    }
    let Some((reply, command)) = failure else {
        return Vec::new();
    };
    rcpts
        .into_iter()
        .map(|a| {
            let mut f = Found::new(a);
            f.diagnostic = Some(reply.clone());
            f.command = command;
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_after_the_content_fails_the_recipients() {
        let m = Mail::with_text(
            "Transcript of session follows.\n\n Out: 220 mx.example.com ESMTP\n In:  MAIL\n     FROM:<a@example.jp>\n In:  RCPT TO:<kim@example.net> ORCPT=rfc822;kim@example.net\n Out: 250 2.1.5 Ok\n In:  DATA\n Out: 354 End data with <CR><LF>.<CR><LF>\n Out: 451 4.3.0 Error: queue file write error\n In:  QUIT\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].recipient, "kim@example.net");
        assert_eq!(r[0].command, Some(CommandKind::DataEnd));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("451 4.3.0 Error: queue file write error")
        );
    }
}
