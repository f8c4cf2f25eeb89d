//! HTML building blocks of the console: escaping, the page frame, and how
//! network text, times and durations are shown.
//!
//! Every string that reaches a page goes through [`esc`]; text from the
//! network goes through [`network`] (docs/protocol.md L4 escaping, then
//! HTML escaping). Nothing here reads state.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::logging::json::civil_from_days;
use crate::smtp::escape::escape_capped;

/// `s` with `& < > " '` replaced by character references: safe in element
/// content and in quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Bytes from the network, shown: control bytes and invalid UTF-8 as
/// `\xNN` (L4), at most `cap` octets, then HTML-escaped.
pub fn network(bytes: &[u8], cap: usize) -> String {
    esc(&escape_capped(bytes, cap))
}

/// A reply's wire lines, each shown with [`network`], one per line (for a
/// `<pre>`), without line ends.
pub fn reply_lines(raw: &[u8]) -> String {
    raw.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| network(l.strip_suffix(b"\r").unwrap_or(l), 1024))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `2026-11-01 12:34:56` (UTC).
pub fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// `3d 4h 5m`, `4h 5m 6s`, `5m 6s`, `6s`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    if days > 0 {
        format!("{days}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m {sec}s")
    } else if m > 0 {
        format!("{m}m {sec}s")
    } else {
        format!("{sec}s")
    }
}

/// Which page the navigation marks as current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/`
    Status,
    /// `/explain`
    Explain,
}

const STYLE: &str = "\
:root{color-scheme:light dark;--fg:#1d2329;--muted:#5b6670;--bg:#fff;--card:#f5f7f9;--line:#d8dee4;--accent:#0b5cad;--ok:#1a7f37;--bad:#b42318;--warn:#9a6700}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9aa6b2;--bg:#0d1117;--card:#161b22;--line:#30363d;--accent:#58a6ff;--ok:#3fb950;--bad:#f85149;--warn:#d29922}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;gap:1.5em;align-items:baseline;padding:.7em 1.2em;border-bottom:1px solid var(--line)}
header b{font-size:1.1em}
header nav a{margin-right:1em;color:var(--accent);text-decoration:none}
header nav a[aria-current]{font-weight:600;text-decoration:underline}
main{padding:1em 1.2em;max-width:1400px}
h1{font-size:1.3em;margin:.2em 0 .6em}
h2{font-size:1.05em;margin:1.4em 0 .5em}
.cards{display:flex;flex-wrap:wrap;gap:.8em}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.6em .9em;min-width:11em}
.card .k{color:var(--muted);font-size:.85em}
.card .v{font-size:1.25em;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{text-align:left;vertical-align:top;padding:.35em .5em;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:600}
pre,code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
pre{margin:0;white-space:pre-wrap;word-break:break-word}
.rule,.nowrap{white-space:nowrap}
.ok{color:var(--ok)}.bad{color:var(--bad)}.warn{color:var(--warn)}.muted{color:var(--muted)}
.verdict{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.4em 1em;margin:1em 0}
.verdict dt{color:var(--muted);font-size:.85em;margin-top:.6em}
.verdict dd{margin:.1em 0 0}
form.explain textarea{width:100%;min-height:9em;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
form.explain fieldset{border:1px solid var(--line);border-radius:6px;margin:.6em 0}
form.explain label{margin-right:1.2em;white-space:nowrap}
button{font:inherit;padding:.35em 1.2em}
svg text{fill:var(--fg);font:11px system-ui,sans-serif}
svg .bar{fill:var(--accent)}
svg .axis{stroke:var(--line)}
";

/// A whole page: the frame (title, navigation, styles) around `body`.
/// `script` adds the live-refresh script (`/console.js`).
pub fn page(title: &str, nav: Nav, host: &str, body: &str, script: bool) -> String {
    let mut out = String::with_capacity(body.len() + 4096);
    let current = |n: Nav| {
        if n == nav {
            " aria-current=\"page\""
        } else {
            ""
        }
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{} \u{2014} replyfix on {}</title><style>{STYLE}</style></head>\n<body>\
         <header><b>replyfix</b><span class=\"muted mono\">{}</span>\
         <nav><a href=\"/\"{}>Status</a><a href=\"/explain\"{}>Explain a bounce</a></nav></header>\n\
         <main>\n{body}\n</main>",
        esc(title),
        esc(host),
        esc(host),
        current(Nav::Status),
        current(Nav::Explain),
    );
    if script {
        out.push_str("<script src=\"/console.js\"></script>");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn network_text_is_escaped_twice_l4() {
        assert_eq!(
            network(b"530 <b>\x1b[31m\xff", 100),
            "530 &lt;b&gt;\\x1B[31m\\xFF"
        );
        assert_eq!(reply_lines(b"530-a<\r\n530 b\r\n"), "530-a&lt;\n530 b");
    }

    #[test]
    fn utc_dates_follow_the_calendar() {
        let at = |s: u64| utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01 00:00:00");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(at(1_709_164_799), "2024-02-28 23:59:59");
        assert_eq!(at(4_102_444_800), "2100-01-01 00:00:00");
        // Every day for 20 years: consecutive days give consecutive dates.
        let mut prev = civil_from_days(10_000);
        for day in 10_001..17_400 {
            let next = civil_from_days(day);
            let same_month = next.0 == prev.0 && next.1 == prev.1 && next.2 == prev.2 + 1;
            let new_month = next.2 == 1 && (next.1 == prev.1 % 12 + 1);
            assert!(same_month || new_month, "{prev:?} -> {next:?}");
            prev = next;
        }
    }

    #[test]
    fn durations_read_from_the_largest_unit() {
        assert_eq!(duration(Duration::from_secs(5)), "5s");
        assert_eq!(duration(Duration::from_secs(65)), "1m 5s");
        assert_eq!(duration(Duration::from_secs(3 * 3600 + 65)), "3h 1m 5s");
        assert_eq!(duration(Duration::from_secs(2 * 86_400 + 3660)), "2d 1h 1m");
    }
}
