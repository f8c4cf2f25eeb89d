//! RFC 3464 delivery status notifications: the per-recipient field blocks
//! of a `message/delivery-status` part (`Final-Recipient`, `Action`,
//! `Status`, `Remote-MTA`, `Diagnostic-Code`, section 2.3), and the same
//! fields when a bounce puts them in its text instead ("Technical report:").
//! Also RFC 5965 feedback reports, which list a recipient too.

use super::mail::{Mail, header_in};
use super::reason::Reason;
use super::text::address_in;
use super::{Found, MAX_RECIPIENTS};

/// The recipients of the bounce's delivery-status part, or of DSN fields
/// in its text when it has no such part, or of its feedback report.
pub fn read(mail: &Mail) -> Vec<Found> {
    if let Some(body) = &mail.status {
        let found = parse_delivery_status(body);
        if !found.is_empty() {
            return found;
        }
    }
    if let Some(report) = &mail.feedback {
        return feedback(mail, report);
    }
    if has_fields_in_text(&mail.text) {
        return parse_delivery_status(&mail.text);
    }
    Vec::new()
}

fn has_fields_in_text(text: &str) -> bool {
    let mut recipient = false;
    let mut other = false;
    for line in text.lines() {
        let l = line.trim_start().to_ascii_lowercase();
        recipient |= l.starts_with("final-recipient:") || l.starts_with("original-recipient:");
        other |= l.starts_with("status:") || l.starts_with("diagnostic-code:");
        if recipient && other {
            return true;
        }
    }
    false
}

/// Splits a `message/delivery-status` body into its field blocks (section
/// 2.1: blocks separated by empty lines, fields folded as in RFC 5322) and
/// returns one [`Found`] per recipient block, in order. A block that holds
/// a second `Final-Recipient` starts a new recipient there.
pub fn parse_delivery_status(body: &str) -> Vec<Found> {
    let mut out = Vec::new();
    for block in blocks(body) {
        for fields in split_recipients(block) {
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            // A block whose address cannot be read (`rfc822; @host`) is kept
            // without one: the text may name it (see `merge`).
            let named = get("final-recipient").or(get("original-recipient"));
            if named.is_none() && get("status").is_none() {
                continue;
            }
            let recipient = named
                .and_then(|r| address_in(strip_type(r)))
                .unwrap_or_default();
            let mut f = Found::new(recipient);
            f.action = get("action").map(|a| a.trim().to_ascii_lowercase());
            f.status = get("status")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            // `Status: 4.0.0 (cat.example: host name lookup failure)`: the
            // words after the code are the reporting MTA's.
            if let Some((_, words)) = f.status.as_deref().and_then(|s| s.split_once(' ')) {
                let words = words.trim().trim_start_matches('(').trim_end_matches(')');
                if !words.is_empty() {
                    f.note = Some(words.to_string());
                }
            }
            // `dns; mx.example.org (TCP|192.0.2.1|25) (...)`: the name only.
            f.remote_mta = get("remote-mta")
                .and_then(|s| strip_type(s).split_whitespace().next())
                .map(|s| s.trim_matches(['[', ']']).to_string())
                .filter(|s| !s.is_empty());
            let diagnostic = get("diagnostic-code");
            f.diagnostic = diagnostic
                .map(|d| strip_type(d).to_string())
                .filter(|d| !d.is_empty());
            // `X-Unix` diagnostics come from a local delivery program.
            if diagnostic.is_some_and(|d| d.trim_start().to_ascii_lowercase().starts_with("x-unix"))
            {
                f.hint = Some(Reason::MailerError);
            }
            out.push(f);
            if out.len() >= MAX_RECIPIENTS {
                return out;
            }
        }
    }
    out
}

fn split_recipients(block: Vec<(String, String)>) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    for (k, v) in block {
        let starts = k == "final-recipient" || k == "original-recipient";
        if starts && cur.iter().any(|(ck, _)| ck == &k) {
            out.push(std::mem::take(&mut cur));
        }
        cur.push((k, v));
    }
    out.push(cur);
    out
}

/// `rfc822; a@b` -> `a@b`, `dns; mx.example` -> `mx.example`,
/// `smtp; 530 ...` -> `530 ...` (section 2.3: `type ; value`).
pub fn strip_type(v: &str) -> &str {
    match v.split_once(';') {
        Some((t, rest)) if !t.trim().is_empty() && !t.trim().contains(' ') => rest.trim(),
        _ => v.trim(),
    }
}

/// Field blocks: lowercased names, unfolded values. Lines in the text may
/// be indented by the same amount; a field continues on lines indented
/// more than the field's own line.
fn blocks(body: &str) -> Vec<Vec<(String, String)>> {
    let mut all = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    let mut indent = 0;
    for line in body.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !cur.is_empty() {
                all.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let this_indent = line.len() - line.trim_start().len();
        let field = line.trim_start().split_once(':').filter(|(k, _)| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if cur.is_empty() || this_indent <= indent && field.is_some() {
            if let Some((k, v)) = field {
                indent = this_indent;
                cur.push((k.to_ascii_lowercase(), v.trim().to_string()));
            }
            continue;
        }
        // A continuation is indented more than its field; a multi-line
        // reply in `Diagnostic-Code` is sometimes not indented at all.
        let reply_line = field.is_none() && super::text::reply_start(line.trim_start()) == Some(0);
        if let Some((k, v)) = cur.last_mut()
            && (this_indent > indent || reply_line && k == "diagnostic-code")
        {
            v.push(' ');
            v.push_str(line.trim());
        }
    }
    if !cur.is_empty() {
        all.push(cur);
    }
    all
}

/// An RFC 5965 feedback report: the complained-about recipient is its
/// `Original-Rcpt-To`, else the returned message's `To`.
fn feedback(mail: &Mail, report: &str) -> Vec<Found> {
    let rcpt = header_in(report, "original-rcpt-to")
        .or_else(|| mail.returned_header("to"))
        .and_then(|v| address_in(&v));
    let Some(rcpt) = rcpt else {
        return Vec::new();
    };
    let mut f = Found::new(rcpt);
    f.hint = Some(Reason::Feedback);
    f.diagnostic = header_in(report, "feedback-type").map(|t| format!("feedback-type: {t}"));
    vec![f]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_unfolded_and_typed_values_stripped() {
        let body = "Reporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: 5.7.1\r\nRemote-MTA: dns; mx.example.org\r\nDiagnostic-Code: smtp; 530 5.7.1 The message cannot\r\n    be delivered\r\n\r\nFinal-Recipient: rfc822; b@example.org\r\nAction: delivered\r\nStatus: 2.0.0\r\n";
        let r = parse_delivery_status(body);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].recipient, "a@example.org");
        assert_eq!(r[0].remote_mta.as_deref(), Some("mx.example.org"));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("530 5.7.1 The message cannot be delivered")
        );
        assert_eq!(r[1].action.as_deref(), Some("delivered"));
    }

    #[test]
    fn indented_fields_in_text_are_read() {
        let text = "Technical report:\n  Reporting-MTA: dsn; a.example\n  Action: failed\n  Final-Recipient: rfc822; kim@example.jp\n  Diagnostic-Code: smtp; 550 5.1.1 <kim@example.jp>... User Unknown\n  Status: 5.1.1\n";
        let mail = Mail {
            text: text.into(),
            ..Mail::default()
        };
        let r = read(&mail);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status.as_deref(), Some("5.1.1"));
        assert!(r[0].diagnostic.as_deref().unwrap().starts_with("550 5.1.1"));
    }

    #[test]
    fn a_block_with_two_recipients_gives_two() {
        let body = "Final-Recipient: rfc822; a@x.example\nStatus: 5.1.1\nFinal-Recipient: rfc822; b@x.example\nStatus: 5.2.2\n";
        let r = parse_delivery_status(body);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].status.as_deref(), Some("5.2.2"));
    }
}
