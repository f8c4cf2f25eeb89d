//! Amazon SES: the notifications sent by e-mail through SNS — a JSON
//! object (`notificationType` `Bounce`, `Complaint` or `Delivery`) with the
//! recipients, each bounced one with its `action`, `status` and
//! `diagnosticCode` (an RFC 3464 `Diagnostic-Code` value), possibly wrapped
//! over several lines — and SES's own DSN text, "The following message to
//! <a@b> was undeliverable. The reason for the problem: 5.1.0 - Unknown
//! address error 550-'5.1.1 ... User unknown'", the remote reply quoted.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::super::mail::Mail;
use super::super::reason::Reason;
use super::super::rfc3464::strip_type;
use super::super::text::lines;
use super::super::{Format, Found, MAX_RECIPIENTS};

/// The Amazon SES notification format.
pub const FORMAT: Format = Format {
    name: "amazonses",
    detect,
    read,
    generic: false,
};

static UNDELIVERABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)The following message to <([^<>\s]+@[^<>\s]+)> was undeliverable")
        .expect("static regex")
});
static PROBLEM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(\d\.\d{1,3}\.\d{1,3}) - (.*?)(?:\s+(\d{3})-'(.*)')?(?:\s*\(delivery attempts: \d+\))?\s*$")
        .expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.text_has("\"notificationType\"") || m.text_has("The reason for the problem:")
}

fn read(mail: &Mail) -> Vec<Found> {
    if !mail.text_has("\"notificationType\"") {
        return read_text(mail);
    }
    let Some(start) = mail.text.find('{') else {
        return Vec::new();
    };
    let end = mail.text.rfind('}').map_or(mail.text.len(), |e| e + 1);
    if end <= start {
        return Vec::new();
    }
    let joined: String = mail.text[start..end]
        .chars()
        .filter(|&c| c != '\n' && c != '\r')
        .collect();
    let Ok(v) = serde_json::from_str::<Value>(&joined) else {
        return Vec::new();
    };
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let mut out = Vec::new();
    match v.get("notificationType").and_then(Value::as_str) {
        Some("Bounce") => {
            let b = &v["bounce"];
            let mta = s(b, "reportingMTA").map(|m| strip_type(&m).to_string());
            for r in b["bouncedRecipients"].as_array().into_iter().flatten() {
                let Some(a) = s(r, "emailAddress") else {
                    continue;
                };
                let mut f = Found::new(a);
                f.action = s(r, "action");
                f.status = s(r, "status");
                f.diagnostic = s(r, "diagnosticCode").map(|d| strip_type(&d).to_string());
                f.remote_mta.clone_from(&mta);
                if b["bounceSubType"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Suppressed"))
                {
                    f.hint = Some(Reason::Suppressed);
                }
                out.push(f);
            }
        }
        Some("Complaint") => {
            for r in v["complaint"]["complainedRecipients"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let Some(a) = s(r, "emailAddress") else {
                    continue;
                };
                let mut f = Found::new(a);
                f.hint = Some(Reason::Feedback);
                f.diagnostic = s(&v["complaint"], "complaintFeedbackType")
                    .map(|t| format!("feedback-type: {t}"));
                out.push(f);
            }
        }
        Some("Delivery") => {
            let d = &v["delivery"];
            for r in d["recipients"].as_array().into_iter().flatten() {
                let Some(a) = r.as_str() else { continue };
                let mut f = Found::new(a);
                f.action = Some("delivered".into());
                f.diagnostic = s(d, "smtpResponse");
                f.remote_mta = s(d, "remoteMtaIp");
                out.push(f);
            }
        }
        _ => {}
    }
    out.truncate(MAX_RECIPIENTS);
    out
}

/// SES's DSN text: the recipient, then the line after "The reason for
/// the problem:", with the remote reply quoted in it put back together.
fn read_text(mail: &Mail) -> Vec<Found> {
    let ls = lines(&mail.text);
    let mut out = Vec::new();
    for (i, line) in ls.iter().enumerate() {
        let Some(c) = UNDELIVERABLE.captures(line) else {
            continue;
        };
        let mut f = Found::new(&c[1]);
        let problem = ls[i + 1..]
            .iter()
            .skip_while(|l| !l.trim().eq_ignore_ascii_case("The reason for the problem:"))
            .nth(1);
        if let Some(p) = problem {
            f.diagnostic = Some(match PROBLEM.captures(p) {
                Some(q) => match (q.get(3), q.get(4)) {
                    (Some(code), Some(inner)) => format!("{} {}", code.as_str(), inner.as_str()),
                    _ => q[2].to_string(),
                },
                None => p.trim().to_string(),
            });
        }
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_bounce_json_gives_its_recipients() {
        let m = Mail::with_text(
            "{\"notificationType\":\"Bounce\",\"bounce\":{\"bounceType\":\"Permanent\",\"bouncedRecipients\":[{\"emailAddress\":\"kim@example.com\",\"action\":\"failed\",\"status\":\"5.1.1\",\"diagnosticCode\":\"smtp; 550 5.1.1 user\n unknown\"}],\"reportingMTA\":\"dsn; a1.example.com\"}}\n--\nIf you wish to stop receiving notifications\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status.as_deref(), Some("5.1.1"));
        assert_eq!(r[0].diagnostic.as_deref(), Some("550 5.1.1 user unknown"));
        assert_eq!(r[0].remote_mta.as_deref(), Some("a1.example.com"));
    }

    #[test]
    fn the_quoted_reply_of_ses_text_is_put_back_together() {
        let m = Mail::with_text(
            "The following message to <kim@example.jp> was undeliverable.\nThe reason for the problem:\n5.1.0 - Unknown address error 550-'5.2.2 <kim@example.jp>... Mailbox Full' (delivery attempts: 0)\n",
        );
        let r = read(&m);
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.2.2 <kim@example.jp>... Mailbox Full")
        );
    }

    #[test]
    fn complaints_and_deliveries_are_not_failures() {
        let m = Mail::with_text(
            "{\"notificationType\":\"Complaint\",\"complaint\":{\"complainedRecipients\":[{\"emailAddress\":\"kim@example.com\"}],\"complaintFeedbackType\":\"abuse\"}}",
        );
        assert_eq!(read(&m)[0].hint, Some(Reason::Feedback));
        let m = Mail::with_text(
            "{\"notificationType\":\"Delivery\",\"delivery\":{\"recipients\":[\"kim@example.com\"],\"smtpResponse\":\"250 2.6.0 ok\"}}",
        );
        assert_eq!(read(&m)[0].action.as_deref(), Some("delivered"));
    }
}
