//! The parts of a bounce message the format readers look at: a few header
//! fields, the bounce's own human-readable text, its RFC 3464
//! `message/delivery-status` part and the header of the returned message.
//!
//! MIME (RFC 2045, RFC 2046) is parsed by the `mail-parser` crate. Every
//! piece kept is capped ([`MAX_BOUNCE`], [`MAX_TEXT`], [`MAX_HEADERS`]), so
//! the work on one bounce is bounded whatever its size. No I/O.

use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::text::floor_char_boundary;

/// The most of a bounce that is parsed (bytes). The parts that explain the
/// failure come first; a returned message beyond this is not read.
pub const MAX_BOUNCE: usize = 1024 * 1024;

/// The most human-readable text kept from one bounce (bytes).
pub const MAX_TEXT: usize = 256 * 1024;

/// The most header fields kept from the bounce and from the returned
/// message's header each.
pub const MAX_HEADERS: usize = 200;

/// A bounce, reduced to what the format readers use.
#[derive(Clone, Debug, Default)]
pub struct Mail {
    /// Top-level header fields: lower-cased name, unfolded value (encoded
    /// words decoded for `Subject` only), at most [`MAX_HEADERS`].
    pub headers: Vec<(String, String)>,
    /// The bounce's own text: its text parts before the returned message
    /// (HTML reduced to text when there is no plain text), LF line ends,
    /// at most [`MAX_TEXT`] bytes.
    pub text: String,
    /// The first `message/delivery-status` part (RFC 3464 section 2).
    pub status: Option<String>,
    /// The first `message/feedback-report` part (RFC 5965 section 3).
    pub feedback: Option<String>,
    /// The returned message's header (a `message/rfc822` part's header or
    /// a `text/rfc822-headers` part), when the bounce carries one.
    pub returned: Option<String>,
    /// True when the top level is a MIME `multipart/*`.
    pub multipart: bool,
    /// The attached message, when it is itself a bounce (a bounce that
    /// was forwarded, or wrapped by a gateway): read only one level deep.
    pub inner: Option<Box<Mail>>,
}

impl Mail {
    /// A bounce that is only this text (no header fields, no parts): what
    /// the format readers' unit tests start from.
    #[cfg(test)]
    pub(crate) fn with_text(text: &str) -> Mail {
        Mail {
            text: text.into(),
            ..Mail::default()
        }
    }

    /// Reads `raw` (at most [`MAX_BOUNCE`] bytes of it). `None` when it is
    /// not a message with a header.
    pub fn read(raw: &[u8]) -> Option<Mail> {
        Mail::read_level(raw, true)
    }

    fn read_level(raw: &[u8], outer: bool) -> Option<Mail> {
        let raw = &raw[..raw.len().min(MAX_BOUNCE)];
        let msg = MessageParser::default().parse(raw)?;
        if msg.headers().is_empty() {
            return None;
        }
        let mut mail = Mail::default();
        for (name, value) in msg.headers_raw().take(MAX_HEADERS) {
            let value = if name.eq_ignore_ascii_case("subject") {
                msg.subject().unwrap_or(value).to_string()
            } else {
                unfold(value)
            };
            mail.headers.push((name.to_ascii_lowercase(), value));
        }
        let mut texts: Vec<String> = Vec::new();
        let mut htmls: Vec<String> = Vec::new();
        let mut size = 0usize;
        for (i, part) in msg.parts.iter().enumerate() {
            let (ctype, subtype) = part
                .content_type()
                .map(|c| {
                    (
                        c.ctype().to_ascii_lowercase(),
                        c.subtype().unwrap_or("").to_ascii_lowercase(),
                    )
                })
                .unwrap_or_else(|| ("text".into(), "plain".into()));
            if i == 0 && ctype == "multipart" {
                mail.multipart = true;
            }
            match (ctype.as_str(), subtype.as_str()) {
                ("message", "delivery-status" | "global-delivery-status") => {
                    if mail.status.is_none() {
                        mail.status = Some(capped_lossy(part.contents(), MAX_TEXT));
                    }
                    continue;
                }
                ("message", "feedback-report") => {
                    if mail.feedback.is_none() {
                        mail.feedback = Some(capped_lossy(part.contents(), MAX_TEXT));
                    }
                    continue;
                }
                ("text", "rfc822-headers") | ("message", "rfc822-headers") => {
                    if mail.returned.is_none() {
                        mail.returned = Some(header_block(part.contents()));
                    }
                    break;
                }
                _ => {}
            }
            match &part.body {
                PartType::Text(t) if size < MAX_TEXT => {
                    size += t.len();
                    texts.push(t.to_string());
                }
                PartType::Html(h) if size < MAX_TEXT => {
                    htmls.push(html_to_text(&h[..floor_char_boundary(h, MAX_TEXT)]));
                }
                PartType::Message(m) => {
                    // The returned message: only its header is read, unless
                    // it is a bounce itself.
                    if mail.returned.is_none() {
                        let header = header_block(m.raw_message());
                        if outer && looks_like_a_bounce(&header) {
                            mail.inner = Mail::read_level(m.raw_message(), false).map(Box::new);
                        }
                        mail.returned = Some(header);
                    }
                    break;
                }
                _ => {}
            }
        }
        if texts.iter().all(|t| t.trim().is_empty()) {
            texts = htmls;
        }
        let mut text = texts.join("\n").replace("\r\n", "\n");
        // MIME too broken to give any part (a boundary lost to a bad fold):
        // the body as it is, up to the returned message.
        if text.trim().is_empty() && mail.status.is_none() {
            text = raw_body(raw);
        }
        text.truncate(floor_char_boundary(&text, MAX_TEXT));
        mail.text = text;
        Some(mail)
    }

    /// The value of the first header field `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `From` field, lower-cased ("" when absent).
    pub fn from_lower(&self) -> String {
        self.header("from").unwrap_or("").to_ascii_lowercase()
    }

    /// The `Subject` field ("" when absent).
    pub fn subject(&self) -> &str {
        self.header("subject").unwrap_or("")
    }

    /// True when the bounce's text contains `needle` (ASCII case-insensitive).
    pub fn text_has(&self, needle: &str) -> bool {
        contains_ci(&self.text, needle)
    }

    /// The value of header field `name` in the returned message's header.
    pub fn returned_header(&self, name: &str) -> Option<String> {
        let block = self.returned.as_deref()?;
        header_in(block, name)
    }
}

/// True when a message header is a bounce's: a delivery report, or from a
/// mailer daemon.
fn looks_like_a_bounce(header: &str) -> bool {
    header_in(header, "content-type")
        .is_some_and(|c| contains_ci(&c, "report-type=delivery-status"))
        || header_in(header, "from").is_some_and(|f| contains_ci(&f, "mailer-daemon"))
}

/// True when `hay` contains `needle`, ASCII case-insensitively.
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    let n = needle.as_bytes();
    if n.is_empty() {
        return true;
    }
    hay.as_bytes()
        .windows(n.len())
        .any(|w| w.eq_ignore_ascii_case(n))
}

/// The value of field `name` (any case) in a header block, unfolded.
pub fn header_in(block: &str, name: &str) -> Option<String> {
    let mut lines = block.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case(name) || k.starts_with([' ', '\t']) {
            continue;
        }
        let mut value = v.trim().to_string();
        while let Some(next) = lines.peek() {
            if next.starts_with([' ', '\t']) && !next.trim().is_empty() {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            } else {
                break;
            }
        }
        return Some(value);
    }
    None
}

fn unfold(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, l) in v.lines().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(l.trim());
    }
    out.trim().to_string()
}

fn capped_lossy(b: &[u8], cap: usize) -> String {
    String::from_utf8_lossy(&b[..b.len().min(cap)]).replace("\r\n", "\n")
}

/// The body of `raw` (after its header) as lossy text, up to a
/// `message/rfc822` part, at most [`MAX_TEXT`] bytes.
fn raw_body(raw: &[u8]) -> String {
    let start = memchr::memmem::find(raw, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| memchr::memmem::find(raw, b"\n\n").map(|i| i + 2))
        .unwrap_or(raw.len());
    let body = capped_lossy(&raw[start..], MAX_TEXT);
    let end = body
        .lines()
        .scan(0usize, |at, l| {
            let here = *at;
            *at += l.len() + 1;
            Some((here, l))
        })
        .find(|(_, l)| contains_ci(l, "content-type: message/rfc822"))
        .map_or(body.len(), |(at, _)| at);
    body[..end].to_string()
}

/// The header block at the start of `raw` (up to the first empty line),
/// capped at [`MAX_HEADERS`] lines of it and 64 KiB.
fn header_block(raw: &[u8]) -> String {
    let text = capped_lossy(raw, 64 * 1024);
    let mut out = String::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() && n > 0 || n > MAX_HEADERS * 4 {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Text with HTML tags removed and common entities decoded; block tags
/// become line ends. Enough for bounces that come as HTML only.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split([' ', '/', '\n', '\r', '\t'])
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if matches!(
                    name.as_str(),
                    "br" | "p" | "div" | "tr" | "li" | "table" | "h1" | "h2" | "h3" | "td"
                ) {
                    out.push('\n');
                }
            }
            (true, c) => {
                if tag.len() < 64 {
                    tag.push(c);
                }
            }
            (false, '\r') => {}
            (false, '\n') => out.push(' '),
            (false, c) => out.push(c),
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_reduced_to_text() {
        let t = html_to_text("<p>Remote Server returned &#39;530 x&#39;</p><br>a&amp;b");
        assert!(t.contains("Remote Server returned '530 x'"), "{t}");
        assert!(t.contains("a&b"));
    }

    #[test]
    fn parts_are_sorted_into_text_status_and_returned_header() {
        let m = "From: MAILER-DAEMON\r\nSubject: =?utf-8?q?Undelivered?=\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; a@b\r\n\r\n--b\r\nContent-Type: text/rfc822-headers\r\n\r\nTo: a@b\r\nSubject: x\r\n\r\n--b--\r\n";
        let mail = Mail::read(m.as_bytes()).unwrap();
        assert_eq!(mail.subject(), "Undelivered");
        assert!(mail.text.contains("hello") && !mail.text.contains("To: a@b"));
        assert!(mail.status.as_deref().unwrap().contains("Final-Recipient"));
        assert_eq!(mail.returned_header("to").as_deref(), Some("a@b"));
        assert!(mail.multipart);
    }

    #[test]
    fn a_multipart_without_a_boundary_is_read_as_plain_text() {
        let m = b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\nContent-Type: multipart/alternative;\r\nboundary=\"y\"\r\n\r\n--y\r\nContent-Type: text/plain\r\n\r\nError message below:\r\n550 no such user\r\n--y--\r\n--x--\r\n";
        let mail = Mail::read(m).unwrap();
        assert!(mail.text.contains("550 no such user"), "{:?}", mail.text);
    }

    #[test]
    fn huge_texts_are_capped() {
        let mut m = b"Subject: x\r\n\r\n".to_vec();
        m.resize(MAX_BOUNCE, b'a');
        let mail = Mail::read(&m).unwrap();
        assert!(mail.text.len() <= MAX_TEXT);
    }

    #[test]
    fn not_a_message_is_none() {
        assert!(Mail::read(b"").is_none());
    }

    #[test]
    fn header_fields_are_found_unfolded() {
        let block = "To: a@b,\n  c@d\nSubject: x\n";
        assert_eq!(header_in(block, "to").as_deref(), Some("a@b, c@d"));
        assert_eq!(header_in(block, "from"), None);
    }
}
