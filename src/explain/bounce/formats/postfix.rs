//! Postfix's bounce text (`bounce(8)`): one paragraph per recipient,
//! `<a@b>: host H[ip] said: REPLY (in reply to X command)`, `<a@b>: host
//! H[ip] refused to talk to me: REPLY`, or Postfix's own words (`connect to
//! H[ip]: Connection refused`, `Host or domain name not found`, `unknown
//! user`); long lines folded with indentation.

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::{Format, Found};
use crate::explain::extract::context_in_text;
use crate::smtp::CommandKind;

/// The Postfix format.
pub const FORMAT: Format = Format {
    name: "postfix",
    detect,
    read,
    generic: false,
};

static RECIPIENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^<([^<>\s]+@[^<>\s]+)>(?:\s*\(expanded from <[^>]*>\))?:\s+(\S.*)$")
        .expect("static regex")
});
static SAID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^host\s+(\S+?)(?:\[[^\]]*\])?\s+(said|refused to talk to me):\s*(.*)$")
        .expect("static regex")
});
static IN_REPLY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\s*\(in\s+reply\s+to\s+[^()]*\)\s*$").expect("static regex"));
static CONVERSATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:connect to|conversation with|lost connection with)\s+(\S+?)(?:\[[^\]]*\])?[\s:]",
    )
    .expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.text_has("The mail system")
        || m.text_has("This is the Postfix program")
        || m.subject().contains("Undelivered Mail Returned to Sender")
        || m.status.as_deref().is_some_and(|s| s.contains("X-Postfix"))
        || super::super::text::lines(&m.text)
            .iter()
            .any(|l| RECIPIENT.is_match(l))
}

fn read(mail: &Mail) -> Vec<Found> {
    let mut out = Vec::new();
    let lines = super::super::text::lines(&mail.text);
    let mut i = 0;
    while i < lines.len() {
        let Some(c) = RECIPIENT.captures(lines[i]) else {
            i += 1;
            continue;
        };
        // The paragraph: this line and the indented lines after it.
        let mut para = c[2].trim().to_string();
        let mut j = i + 1;
        while j < lines.len()
            && lines[j].starts_with([' ', '\t'])
            && !lines[j].trim().is_empty()
            && !RECIPIENT.is_match(lines[j])
        {
            para.push(' ');
            para.push_str(lines[j].trim());
            j += 1;
        }
        out.push(found(&c[1], &para));
        i = j;
    }
    out
}

/// One recipient's paragraph, after `<a@b>: `.
pub fn found(rcpt: &str, para: &str) -> Found {
    let mut f = Found::new(rcpt);
    if let Some(c) = SAID.captures(para) {
        f.remote_mta = Some(c[1].to_string());
        f.command = if c[2].eq_ignore_ascii_case("refused to talk to me") {
            Some(CommandKind::Greeting)
        } else {
            context_in_text(&c[3])
        };
        f.diagnostic = Some(IN_REPLY.replace(&c[3], "").trim().to_string());
    } else {
        if let Some(c) = CONVERSATION.captures(para) {
            f.remote_mta = Some(c[1].to_string());
        }
        f.command = context_in_text(para);
        f.diagnostic = Some(para.to_string());
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_paragraphs_give_host_reply_and_command() {
        let m = Mail::with_text(
            "The mail system\n\n<ann@example.org>: host mx.example.org[192.0.2.1] said: 550 5.1.1\n    <ann@example.org>: Recipient address rejected: User unknown (in reply to\n    RCPT TO command)\n<bo@example.org> (expanded from <b@example.net>): host mx.example.org[192.0.2.1]\n    refused to talk to me: 554 5.7.1 go away\n<cy@example.org>: connect to mx.example.org[192.0.2.1]:25: Connection refused\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].remote_mta.as_deref(), Some("mx.example.org"));
        assert_eq!(r[0].command, Some(CommandKind::Rcpt));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 <ann@example.org>: Recipient address rejected: User unknown")
        );
        assert_eq!(r[1].command, Some(CommandKind::Greeting));
        assert_eq!(r[2].remote_mta.as_deref(), Some("mx.example.org"));
        assert!(
            r[2].diagnostic
                .as_deref()
                .unwrap()
                .contains("Connection refused")
        );
    }
}
