//! Small readers shared by the bounce formats: addresses, status codes
//! and quoted replies in prose, line joining. Pure functions over text the
//! caller has capped; every pattern is a linear-time `regex`.

use std::sync::LazyLock;

use regex::Regex;

use crate::explain::extract::{context_from_words, context_in_text};
use crate::smtp::{CommandKind, EnhancedCode};

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+=/!#$&'*?^`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*")
        .expect("static regex")
});
static STATUS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^0-9A-Za-z.])#?([245]\.\d{1,3}\.\d{1,3})(?:[^0-9.]|\.(?:[^0-9]|$)|$)")
        .expect("static regex")
});
static REPLY_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[\s:'(<\[])([245][0-5]\d)(?:[ -]|$)").expect("static regex")
});

/// The largest char boundary at or below `at`.
pub fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

/// The first e-mail address in `s` (without angle brackets), trailing dots
/// removed.
pub fn address_in(s: &str) -> Option<String> {
    ADDRESS
        .find(s)
        .map(|m| m.as_str().trim_end_matches('.').to_string())
        .filter(|a| a.len() <= 320 && !a.starts_with('@') && a.contains('@'))
}

/// True when `s`, trimmed and without angle brackets or a trailing colon,
/// is one address and nothing else.
pub fn only_address(s: &str) -> Option<String> {
    let t = s.trim().trim_end_matches(':').trim();
    let t = t.strip_prefix('<').unwrap_or(t);
    let t = t.strip_suffix('>').unwrap_or(t);
    let a = address_in(t)?;
    (a.len() == t.trim_end_matches('.').len()).then_some(a)
}

/// The first RFC 3463 status in `s` (`5.1.1`, `#5.1.1`, `(#5.1.1)`), not
/// one inside an IP address or a version number.
pub fn status_in(s: &str) -> Option<EnhancedCode> {
    STATUS
        .captures_iter(s)
        .find_map(|c| EnhancedCode::parse(&c[1]))
}

/// Where in `s` an SMTP reply quoted in prose starts (its three-digit
/// code, after the start, white space or `:`, `'`, `(`, `<`, `[`).
pub fn reply_start(s: &str) -> Option<usize> {
    REPLY_START
        .captures(s)
        .and_then(|c| c.get(1))
        .map(|m| m.start())
}

static HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:\bhost\s+|while talking to\s+|\bby\s+)([A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2,})\.?(?:\s*\[|[\s:.(]|$)|\b([A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2,})\.?\s*\[[0-9a-fA-F.:]+\]")
        .expect("static regex")
});

/// A remote host named in prose: `host mx.example.org[192.0.2.1]`,
/// `while talking to mx.example.org.`, `mx.example.org [192.0.2.1]`.
pub fn host_in(text: &str) -> Option<String> {
    let c = HOST.captures(text)?;
    let h = c.get(1).or_else(|| c.get(2))?.as_str();
    Some(h.trim_end_matches('.').to_ascii_lowercase())
}

static SENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r">>>\s*([A-Za-z][A-Za-z ]*)").expect("static regex"));

/// The command a reply answered, when the words around it say: Postfix's
/// `(in reply to RCPT TO command)`, Exim's `after RCPT TO:`, a transcript's
/// `>>> DATA`, Postfix's `refused to talk to me` (the greeting).
pub fn command_in(text: &str) -> Option<CommandKind> {
    if let Some(k) = context_in_text(text) {
        return Some(k);
    }
    if let Some(c) = SENT.captures(text)
        && let Some(k) = context_from_words(&c[1])
    {
        return Some(k);
    }
    find_ci(text, "refused to talk to me").map(|_| CommandKind::Greeting)
}

/// `lines` joined by single spaces, each trimmed, empty ones left out.
pub fn join<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for l in lines {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(l);
    }
    out
}

/// The text's lines without their CR.
pub fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

/// Cuts `text` before the first line that starts with one of `markers`
/// (ASCII case-insensitive, after leading white space).
pub fn before_marker<'a>(text: &'a str, markers: &[&str]) -> &'a str {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start().as_bytes();
        if markers
            .iter()
            .any(|m| t.len() >= m.len() && t[..m.len()].eq_ignore_ascii_case(m.as_bytes()))
        {
            return &text[..at];
        }
        at += line.len();
    }
    text
}

/// Paragraphs that start with a line holding only an address (`<a@b>:`
/// or `a@b:`), with the lines after it up to an empty line or the next
/// such line: `(address, lines)`.
pub fn address_paragraphs(text: &str) -> Vec<(String, Vec<&str>)> {
    let mut out: Vec<(String, Vec<&str>)> = Vec::new();
    let mut open = false;
    for line in lines(text) {
        let t = line.trim();
        if t.ends_with(':')
            && let Some(a) = only_address(t)
        {
            out.push((a, Vec::new()));
            open = true;
            continue;
        }
        if t.is_empty() {
            open = false;
            continue;
        }
        if open && let Some((_, body)) = out.last_mut() {
            body.push(t);
        }
    }
    out
}

/// `s` with a leading `prefix` removed (ASCII case-insensitive).
pub fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let b = s.as_bytes();
    (b.len() >= prefix.len() && b[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
        .then(|| &s[prefix.len()..])
}

/// The position of `needle` in `hay`, ASCII case-insensitive.
pub fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    if n.is_empty() {
        return Some(0);
    }
    hay.as_bytes()
        .windows(n.len())
        .position(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_found_without_brackets() {
        assert_eq!(
            address_in("<kim@example.org>:").as_deref(),
            Some("kim@example.org")
        );
        assert_eq!(
            address_in("to kim@example.org.").as_deref(),
            Some("kim@example.org")
        );
        assert_eq!(
            only_address("  <kim@example.org>:").as_deref(),
            Some("kim@example.org")
        );
        assert_eq!(only_address("kim@example.org said"), None);
        assert_eq!(address_in("no address"), None);
    }

    #[test]
    fn statuses_are_found_but_not_in_addresses_or_versions() {
        assert_eq!(
            status_in("x (#5.1.1)").map(|s| s.to_string()).as_deref(),
            Some("5.1.1")
        );
        assert_eq!(
            status_in("550 5.7.606 Access")
                .map(|s| s.to_string())
                .as_deref(),
            Some("5.7.606")
        );
        assert_eq!(status_in("host 192.0.2.5.1 said"), None);
        assert_eq!(status_in("v5.1.2.3"), None);
        assert_eq!(status_in("status 4.4.7."), EnhancedCode::parse("4.4.7"));
    }

    #[test]
    fn replies_start_at_their_code() {
        let s = "Remote host said: 550 5.1.1 unknown";
        assert_eq!(reply_start(s).map(|i| &s[i..i + 3]), Some("550"));
        assert_eq!(reply_start("in 840 minutes"), None);
    }

    #[test]
    fn paragraphs_follow_address_lines() {
        let p = address_paragraphs("intro\n<a@x.example>:\nfirst\nsecond\n\nb@y.example:\nthird\n");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, "a@x.example");
        assert_eq!(p[0].1, vec!["first", "second"]);
        assert_eq!(p[1].1, vec!["third"]);
    }

    #[test]
    fn hosts_are_found_in_prose() {
        assert_eq!(
            host_in("host mx.example.org[192.0.2.1] said").as_deref(),
            Some("mx.example.org")
        );
        assert_eq!(
            host_in("... while talking to MX.example.org.:").as_deref(),
            Some("mx.example.org")
        );
        assert_eq!(
            host_in("mx2.example.org [192.0.2.7]: 550").as_deref(),
            Some("mx2.example.org")
        );
        assert_eq!(host_in("550 5.1.1 user unknown"), None);
    }

    #[test]
    fn text_is_cut_at_a_marker_line() {
        let t = "a\nb\n--- Below this line is a copy\nc\n";
        assert_eq!(before_marker(t, &["--- below this line"]), "a\nb\n");
        assert_eq!(before_marker(t, &["zzz"]), t);
    }
}
