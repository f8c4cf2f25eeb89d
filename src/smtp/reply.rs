//! SMTP replies (RFC 5321 4.2) with their raw bytes kept.
//!
//! [`ReplyParser`] is an incremental framer: feed it bytes in any chunking and
//! it hands back complete [`Reply`] values. A reply that nobody rewrites is
//! written back from [`Reply::raw`], byte for byte (docs/architecture.md, invariant 1); a
//! rewritten one is built by [`Reply::rewrite`], which puts the new code and
//! enhanced code on every line (docs/protocol.md W1).
//!
//! Text is bytes, never assumed UTF-8 (P5). Every buffer is bounded (R1): a
//! line longer than [`ReplyLimits::max_line`] is truncated (the rest of it is
//! read and dropped, P2), a stream with no line end within
//! [`ReplyLimits::hard_line_cap`] and a reply larger than
//! [`ReplyLimits::max_reply`] are errors. This module holds no policy.

use std::fmt;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

/// A reply code `[2-5][0-5][0-9]` (RFC 5321 4.2). Codes outside that grammar
/// (`100`, `699`, `22X`) cannot be constructed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(u16);

impl ReplyCode {
    /// `421`, the one code that means "closing the channel" from any state.
    pub const SERVICE_NOT_AVAILABLE: ReplyCode = ReplyCode(421);

    /// Returns the code if it follows the grammar `[2-5][0-5][0-9]`.
    pub const fn new(code: u16) -> Option<ReplyCode> {
        let (a, b) = (code / 100, (code / 10) % 10);
        if a >= 2 && a <= 5 && b <= 5 && code < 600 {
            Some(ReplyCode(code))
        } else {
            None
        }
    }

    /// Parses three ASCII digits.
    pub fn from_digits(d: &[u8]) -> Option<ReplyCode> {
        if d.len() != 3 || !d.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = (d[0] - b'0') as u16 * 100 + (d[1] - b'0') as u16 * 10 + (d[2] - b'0') as u16;
        ReplyCode::new(n)
    }

    /// The number, e.g. `530`.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The first digit: 2 (positive completion), 3 (intermediate),
    /// 4 (transient failure), 5 (permanent failure).
    pub const fn class(self) -> u8 {
        (self.0 / 100) as u8
    }

    /// 2xx or 3xx.
    pub const fn is_success(self) -> bool {
        self.class() <= 3
    }

    /// The three ASCII digits.
    pub fn digits(self) -> [u8; 3] {
        let n = self.0;
        [
            b'0' + (n / 100) as u8,
            b'0' + ((n / 10) % 10) as u8,
            b'0' + (n % 10) as u8,
        ]
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An enhanced status code `class.subject.detail` (RFC 3463, carried in
/// replies per RFC 2034): class 2, 4 or 5, subject and detail of 1–3 digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedCode {
    /// Returns the code if it is within RFC 3463's grammar.
    pub const fn new(class: u8, subject: u16, detail: u16) -> Option<EnhancedCode> {
        if (class == 2 || class == 4 || class == 5) && subject <= 999 && detail <= 999 {
            Some(EnhancedCode {
                class,
                subject,
                detail,
            })
        } else {
            None
        }
    }

    /// Parses an enhanced code at the start of `text`, which must be followed
    /// by a space or the end of the text. Returns the code and the number of
    /// bytes it used (without the space).
    pub fn parse_prefix(text: &[u8]) -> Option<(EnhancedCode, usize)> {
        let class = *text.first()?;
        if !matches!(class, b'2' | b'4' | b'5') || text.get(1) != Some(&b'.') {
            return None;
        }
        let (subject, n1) = digits_1_3(&text[2..])?;
        let at = 2 + n1;
        if text.get(at) != Some(&b'.') {
            return None;
        }
        let (detail, n2) = digits_1_3(&text[at + 1..])?;
        let end = at + 1 + n2;
        match text.get(end) {
            None | Some(b' ') => {}
            _ => return None,
        }
        Some((
            EnhancedCode {
                class: class - b'0',
                subject,
                detail,
            },
            end,
        ))
    }

    /// Parses a whole string such as `5.7.1`.
    pub fn parse(s: &str) -> Option<EnhancedCode> {
        match EnhancedCode::parse_prefix(s.as_bytes()) {
            Some((code, used)) if used == s.len() => Some(code),
            _ => None,
        }
    }
}

fn digits_1_3(s: &[u8]) -> Option<(u16, usize)> {
    let n = s.iter().take(4).take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 3 {
        return None;
    }
    let v = s[..n]
        .iter()
        .fold(0u16, |acc, b| acc * 10 + (b - b'0') as u16);
    Some((v, n))
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One line of a reply, as offsets into the reply's raw bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LineMeta {
    /// The text after the code and separator, and after the enhanced code
    /// and its space when present; without the line ending.
    text: Range<u32>,
    enhanced: Option<EnhancedCode>,
}

/// A view of one reply line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// The enhanced code at the start of the line's text, if any.
    pub enhanced: Option<EnhancedCode>,
    /// The text after the code (and after the enhanced code), without the
    /// line ending. Bytes, not necessarily UTF-8.
    pub text: &'a [u8],
}

/// A complete SMTP reply: one code, one or more lines, the raw wire bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    code: ReplyCode,
    lines: Vec<LineMeta>,
    raw: Bytes,
    truncated: bool,
}

impl Reply {
    /// The reply code shared by every line.
    pub fn code(&self) -> ReplyCode {
        self.code
    }

    /// The enhanced code of the first line, if it has one.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.lines.first().and_then(|l| l.enhanced)
    }

    /// The exact bytes as received (or as built), line endings included.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// True when a line was longer than the parser's bound and was cut (P2).
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The lines, in order.
    pub fn lines(&self) -> impl ExactSizeIterator<Item = Line<'_>> + '_ {
        self.lines.iter().map(|m| Line {
            enhanced: m.enhanced,
            text: &self.raw[m.text.start as usize..m.text.end as usize],
        })
    }

    /// Number of lines.
    pub fn line_count(&self) -> usize {
        self.lines.len()
    }

    /// Each line's bytes after its code and separator (`250-`, `250 `),
    /// enhanced code included, line ending excluded: what the wire carried.
    pub fn line_bodies(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        let raw = &self.raw[..];
        let mut line_start = 0;
        self.lines.iter().map(move |m| {
            let end = m.text.end as usize;
            let body = &raw[(line_start + 4).min(end)..end];
            // The line ending (CRLF or LF) follows the text.
            line_start = raw[end..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(raw.len(), |i| end + i + 1);
            body
        })
    }

    /// Appends the lines' text, joined by single spaces, to `out` as a lossy
    /// UTF-8 copy for matching only (P5), reading at most `cap` bytes of text
    /// (W6).
    pub fn text_for_matching(&self, out: &mut String, cap: usize) {
        let mut left = cap;
        for (i, line) in self.lines().enumerate() {
            if left == 0 {
                break;
            }
            if i > 0 {
                out.push(' ');
            }
            let t = &line.text[..line.text.len().min(left)];
            left -= t.len();
            out.push_str(&String::from_utf8_lossy(t));
        }
    }

    /// The lines' text joined by `sep`, lossily decoded, for display.
    pub fn text_lossy(&self, sep: &str) -> String {
        let mut s = String::new();
        for (i, line) in self.lines().enumerate() {
            if i > 0 {
                s.push_str(sep);
            }
            s.push_str(&String::from_utf8_lossy(line.text));
        }
        s
    }

    /// Builds a reply from a code, an optional enhanced code for every line
    /// and the lines' text. Lines end in CRLF. Text must not contain CR, LF
    /// or NUL (callers validate; see W3); it is not checked here.
    /// `texts` must not be empty.
    pub fn build<T: AsRef<[u8]>>(
        code: ReplyCode,
        enhanced: Option<EnhancedCode>,
        texts: &[T],
    ) -> Reply {
        assert!(!texts.is_empty(), "a reply has at least one line");
        let mut b = ReplyBuilder::new(code);
        for t in texts {
            b.line(enhanced, t.as_ref());
        }
        b.finish()
    }

    /// Builds a reply whose lines carry `bodies` verbatim after the code and
    /// separator (see [`Reply::line_bodies`]); lines end in CRLF. The result
    /// is the reply [`ReplyParser`] reads from its raw bytes (an enhanced
    /// code at the start of a body is recognised as one). Bodies must not
    /// contain CR, LF or NUL (not checked here). `bodies` must not be empty.
    pub fn from_line_bodies<T: AsRef<[u8]>>(code: ReplyCode, bodies: &[T]) -> Reply {
        assert!(!bodies.is_empty(), "a reply has at least one line");
        let mut b = ReplyBuilder::new(code);
        for body in bodies {
            let body = body.as_ref();
            match EnhancedCode::parse_prefix(body) {
                Some((e, used)) => b.line_with_raw_enhanced(e, &body[..used], &body[used..]),
                None => b.line(None, body),
            }
        }
        b.finish()
    }

    /// A copy with `code` and `enhanced` on every line and each line's text
    /// kept; when `enhanced` is `None` the lines keep no enhanced code (W1:
    /// code and enhanced code change together).
    pub fn rewrite(&self, code: ReplyCode, enhanced: Option<EnhancedCode>) -> Reply {
        let mut b = ReplyBuilder::new(code);
        for line in self.lines() {
            b.line(enhanced, line.text);
        }
        b.finish()
    }

    /// A copy with one more last line, carrying the reply's code and the
    /// last line's enhanced code.
    pub fn annotated(&self, text: &[u8]) -> Reply {
        let mut b = ReplyBuilder::new(self.code);
        let mut last = None;
        for line in self.lines() {
            b.line(line.enhanced, line.text);
            last = line.enhanced;
        }
        b.line(last, text);
        b.finish()
    }
}

/// Builds a reply line by line (CRLF endings), keeping the line offsets.
struct ReplyBuilder {
    code: ReplyCode,
    buf: BytesMut,
    lines: Vec<LineMeta>,
    last_sep_at: usize,
}

impl ReplyBuilder {
    fn new(code: ReplyCode) -> Self {
        ReplyBuilder {
            code,
            buf: BytesMut::with_capacity(64),
            lines: Vec::new(),
            last_sep_at: 0,
        }
    }

    fn line(&mut self, enhanced: Option<EnhancedCode>, text: &[u8]) {
        if !self.lines.is_empty() {
            // The previous line was written as a last line; make it a
            // continuation.
            self.buf[self.last_sep_at] = b'-';
        }
        self.buf.put_slice(&self.code.digits());
        self.last_sep_at = self.buf.len();
        self.buf.put_u8(b' ');
        if let Some(e) = enhanced {
            self.buf.put_slice(e.to_string().as_bytes());
            if !text.is_empty() {
                self.buf.put_u8(b' ');
            }
        }
        let start = self.buf.len() as u32;
        self.buf.put_slice(text);
        let end = self.buf.len() as u32;
        self.buf.put_slice(b"\r\n");
        self.lines.push(LineMeta {
            text: start..end,
            enhanced,
        });
    }

    /// A line whose enhanced code is written as `spelled` (as received,
    /// e.g. `2.0.000`) and `rest` is the separator space and text after it.
    fn line_with_raw_enhanced(&mut self, enhanced: EnhancedCode, spelled: &[u8], rest: &[u8]) {
        if !self.lines.is_empty() {
            self.buf[self.last_sep_at] = b'-';
        }
        self.buf.put_slice(&self.code.digits());
        self.last_sep_at = self.buf.len();
        self.buf.put_u8(b' ');
        self.buf.put_slice(spelled);
        // `parse_prefix` guarantees `rest` is empty or starts with a space.
        let text_at = self.buf.len() + rest.len().min(1);
        self.buf.put_slice(rest);
        let end = self.buf.len() as u32;
        self.buf.put_slice(b"\r\n");
        self.lines.push(LineMeta {
            text: text_at as u32..end,
            enhanced: Some(enhanced),
        });
    }

    fn finish(self) -> Reply {
        Reply {
            code: self.code,
            lines: self.lines,
            raw: self.buf.freeze(),
            truncated: false,
        }
    }
}

impl fmt::Display for Reply {
    /// The wire form, with non-printable bytes escaped (for humans and logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::smtp::escape::escape_capped(&self.raw, 4096))
    }
}

/// Why a byte stream is not a valid sequence of replies. Every error is a
/// desync (P2): the parser stops and the stream cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line does not start with a valid code [2-5][0-5][0-9]: {0}")]
    BadCode(String),
    #[error("reply code is not followed by a space, '-' or the line end: {0}")]
    BadSeparator(String),
    #[error("reply lines carry different codes ({first} then {then})")]
    InconsistentCode { first: ReplyCode, then: ReplyCode },
    #[error("reply is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("reply has more than {limit} lines")]
    TooManyLines { limit: usize },
    #[error("no line end within {limit} bytes")]
    NoLineEnd { limit: usize },
}

/// Bounds for [`ReplyParser`] (R1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLimits {
    /// A longer line is truncated to this many bytes (line ending excluded);
    /// the rest is dropped.
    pub max_line: usize,
    /// A line with no line end within this many bytes is an error.
    pub hard_line_cap: usize,
    /// The bytes of one reply, as kept (after truncation).
    pub max_reply: usize,
    /// Lines in one reply.
    pub max_lines: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits {
            max_line: 2048,
            hard_line_cap: 64 * 1024,
            max_reply: 64 * 1024,
            max_lines: 1000,
        }
    }
}

/// Incremental reply framer: bytes in, complete replies out.
#[derive(Debug)]
pub struct ReplyParser {
    limits: ReplyLimits,
    /// Complete lines of the reply being assembled, then the partial line.
    buf: BytesMut,
    /// Offset in `buf` where the current (incomplete) line starts.
    line_start: usize,
    lines: Vec<LineMeta>,
    code: Option<ReplyCode>,
    /// Bytes of the current line seen so far, kept or dropped.
    line_seen: usize,
    /// The current line lost bytes past `max_line`.
    line_cut: bool,
    truncated: bool,
    failed: Option<ReplyError>,
}

impl ReplyParser {
    pub fn new(limits: ReplyLimits) -> Self {
        ReplyParser {
            limits,
            buf: BytesMut::new(),
            line_start: 0,
            lines: Vec::new(),
            code: None,
            line_seen: 0,
            line_cut: false,
            truncated: false,
            failed: None,
        }
    }

    /// True when no partial reply is held.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes held for a reply not yet complete.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds bytes; complete replies are pushed to `out` in order. After an
    /// error every later call returns the same error: the stream is out of
    /// step and must be closed.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<Reply>) -> Result<(), ReplyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !input.is_empty() {
            let nl = input.iter().position(|&b| b == b'\n');
            let (chunk, complete) = match nl {
                Some(i) => (&input[..=i], true),
                None => (input, false),
            };
            input = &input[chunk.len()..];
            self.line_seen += chunk.len();
            // Checked the same whether the line end is in this chunk or a
            // later one, so any chunking gives the same result (found by
            // fuzzing).
            if self.line_seen > self.limits.hard_line_cap {
                let e = ReplyError::NoLineEnd {
                    limit: self.limits.hard_line_cap,
                };
                self.failed = Some(e.clone());
                return Err(e);
            }
            let kept = self.buf.len() - self.line_start;
            // Keep at most max_line bytes of content plus one (room for a CR
            // whose LF is still to come); past that, drop and remember (P2).
            let room = (self.limits.max_line + 1).saturating_sub(kept);
            if complete {
                // The line's content, its CRLF or LF excluded (the CR may be
                // the last byte kept from an earlier read).
                let cr = if chunk.len() >= 2 {
                    chunk[chunk.len() - 2] == b'\r'
                } else {
                    kept > 0 && self.buf.ends_with(b"\r")
                };
                let content = kept + chunk.len() - 1 - usize::from(cr);
                if self.line_cut || content > self.limits.max_line {
                    let body = &chunk[..chunk.len() - 1];
                    self.buf.put_slice(&body[..room.min(body.len())]);
                    if self.buf.ends_with(b"\r") {
                        self.buf.truncate(self.buf.len() - 1);
                    }
                    self.buf.truncate(self.line_start + self.limits.max_line);
                    self.buf.put_slice(b"\r\n");
                    self.truncated = true;
                } else {
                    self.buf.put_slice(chunk);
                }
                self.line_seen = 0;
                self.line_cut = false;
                if let Err(e) = self.end_line(out) {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            } else {
                if chunk.len() > room {
                    self.line_cut = true;
                }
                self.buf.put_slice(&chunk[..room.min(chunk.len())]);
                // Validate the code as soon as its bytes are here, so garbage
                // is seen without waiting for a line end.
                if let Err(e) = self.check_partial() {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn check_partial(&self) -> Result<(), ReplyError> {
        let line = &self.buf[self.line_start..];
        let n = line.len().min(4);
        for (i, &b) in line[..n].iter().enumerate() {
            let ok = match i {
                0 => (b'2'..=b'5').contains(&b),
                1 => (b'0'..=b'5').contains(&b),
                2 => b.is_ascii_digit(),
                _ => matches!(b, b' ' | b'-' | b'\r'),
            };
            if !ok {
                return Err(if i < 3 {
                    ReplyError::BadCode(crate::smtp::escape::escape_capped(line, 64))
                } else {
                    ReplyError::BadSeparator(crate::smtp::escape::escape_capped(line, 64))
                });
            }
        }
        Ok(())
    }

    /// The current line (from `line_start` to the end of `buf`) is complete.
    fn end_line(&mut self, out: &mut Vec<Reply>) -> Result<(), ReplyError> {
        let start = self.line_start;
        let line = &self.buf[start..];
        let content_len = line.len() - if line.ends_with(b"\r\n") { 2 } else { 1 };
        let content = &line[..content_len];
        if content.len() < 3 {
            return Err(ReplyError::BadCode(crate::smtp::escape::escape_capped(
                content, 64,
            )));
        }
        let code = ReplyCode::from_digits(&content[..3])
            .ok_or_else(|| ReplyError::BadCode(crate::smtp::escape::escape_capped(content, 64)))?;
        let last = match content.get(3) {
            None => true,
            Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => {
                return Err(ReplyError::BadSeparator(
                    crate::smtp::escape::escape_capped(content, 64),
                ));
            }
        };
        if let Some(first) = self.code
            && first != code
        {
            return Err(ReplyError::InconsistentCode { first, then: code });
        }
        let text_at = content.len().min(4);
        let text = &content[text_at..];
        let (enhanced, skip) = match EnhancedCode::parse_prefix(text) {
            Some((e, used)) => (Some(e), (used + 1).min(text.len())),
            None => (None, 0),
        };
        self.lines.push(LineMeta {
            text: (start + text_at + skip) as u32..(start + content_len) as u32,
            enhanced,
        });
        self.code = Some(code);
        self.line_start = self.buf.len();
        if self.buf.len() > self.limits.max_reply {
            return Err(ReplyError::TooLarge {
                limit: self.limits.max_reply,
            });
        }
        if self.lines.len() > self.limits.max_lines {
            return Err(ReplyError::TooManyLines {
                limit: self.limits.max_lines,
            });
        }
        if last {
            let raw = self.buf.split().freeze();
            out.push(Reply {
                code,
                lines: std::mem::take(&mut self.lines),
                raw,
                truncated: std::mem::take(&mut self.truncated),
            });
            self.code = None;
            self.line_start = 0;
        }
        Ok(())
    }
}

impl Default for ReplyParser {
    fn default() -> Self {
        ReplyParser::new(ReplyLimits::default())
    }
}

/// Parses exactly one complete reply from `bytes` (a convenience for tests,
/// the CLI and offline tools). Trailing bytes after the first reply, or an
/// incomplete reply, are errors reported as `None` in the second field.
pub fn parse_one(bytes: &[u8]) -> Result<Option<Reply>, ReplyError> {
    let mut p = ReplyParser::default();
    let mut out = Vec::new();
    p.feed(bytes, &mut out)?;
    if out.len() == 1 && p.is_idle() {
        Ok(out.pop())
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut p = ReplyParser::default();
        let mut out = Vec::new();
        p.feed(bytes, &mut out)?;
        assert!(p.is_idle(), "incomplete reply left over");
        Ok(out)
    }

    #[test]
    fn bare_code_is_a_valid_reply() {
        let r = parse_one(b"220\r\n").unwrap().unwrap();
        assert_eq!(r.code().get(), 220);
        assert_eq!(r.lines().next().unwrap().text, b"");
        assert_eq!(r.raw().as_ref(), b"220\r\n");
    }

    #[test]
    fn code_with_space_and_empty_text_is_valid() {
        let r = parse_one(b"220 \r\n").unwrap().unwrap();
        assert_eq!(r.code().get(), 220);
        assert_eq!(r.lines().next().unwrap().text, b"");
    }

    #[test]
    fn enhanced_code_is_parsed_from_text() {
        let r = parse_one(b"250 2.1.0 Originator <a@example.com> ok\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.enhanced(), EnhancedCode::new(2, 1, 0));
        assert_eq!(
            r.lines().next().unwrap().text,
            b"Originator <a@example.com> ok"
        );
    }

    #[test]
    fn text_beginning_with_numbers_is_not_an_enhanced_code() {
        let all = parse_all(b"250-234 Text beginning with numbers\r\n250 ok\r\n").unwrap();
        assert_eq!(all.len(), 1);
        let r = &all[0];
        assert_eq!(r.code().get(), 250);
        assert_eq!(r.line_count(), 2);
        assert_eq!(r.enhanced(), None);
        assert_eq!(
            r.lines().next().unwrap().text,
            b"234 Text beginning with numbers"
        );
    }

    #[test]
    fn multiline_with_enhanced_code_on_every_line() {
        let r = parse_one(b"551-5.7.1 first\r\n551 5.7.1 second\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.code().get(), 551);
        let lines: Vec<_> = r.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines
                .iter()
                .all(|l| l.enhanced == EnhancedCode::new(5, 7, 1))
        );
        assert_eq!(lines[1].text, b"second");
    }

    #[test]
    fn non_digit_code_is_rejected() {
        assert!(matches!(
            parse_all(b"22X OK\r\n"),
            Err(ReplyError::BadCode(_))
        ));
    }

    #[test]
    fn code_glued_to_text_is_rejected() {
        assert!(matches!(
            parse_all(b"220OK\r\n"),
            Err(ReplyError::BadSeparator(_))
        ));
    }

    #[test]
    fn inconsistent_codes_across_lines_are_rejected() {
        assert!(matches!(
            parse_all(b"200-This is\r\n250 inconsistent.\r\n"),
            Err(ReplyError::InconsistentCode { .. })
        ));
    }

    #[test]
    fn codes_outside_the_grammar_are_rejected() {
        assert!(matches!(
            parse_all(b"699 Obscure\r\n"),
            Err(ReplyError::BadCode(_))
        ));
        assert!(matches!(
            parse_all(b"100 Invalid\r\n"),
            Err(ReplyError::BadCode(_))
        ));
        assert!(matches!(
            parse_all(b"260 x\r\n"),
            Err(ReplyError::BadCode(_))
        ));
    }

    #[test]
    fn garbage_is_seen_before_a_line_end() {
        let mut p = ReplyParser::default();
        let mut out = Vec::new();
        assert!(p.feed(b"HTTP/1.1", &mut out).is_err());
    }

    #[test]
    fn reply_over_the_size_bound_is_rejected() {
        let limits = ReplyLimits {
            max_reply: 1000,
            ..ReplyLimits::default()
        };
        let mut p = ReplyParser::new(limits);
        let mut out = Vec::new();
        let line = b"250-0123456789012345678901234567890123456789\r\n";
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = p.feed(line, &mut out) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(ReplyError::TooLarge { limit: 1000 }));
        assert!(out.is_empty());
    }

    #[test]
    fn too_many_lines_is_rejected() {
        let limits = ReplyLimits {
            max_lines: 3,
            ..ReplyLimits::default()
        };
        let mut p = ReplyParser::new(limits);
        let mut out = Vec::new();
        let r = p.feed(b"250-a\r\n250-b\r\n250-c\r\n250-d\r\n", &mut out);
        assert_eq!(r, Err(ReplyError::TooManyLines { limit: 3 }));
    }

    #[test]
    fn long_line_is_truncated_and_stays_in_step() {
        let limits = ReplyLimits {
            max_line: 16,
            ..ReplyLimits::default()
        };
        let mut p = ReplyParser::new(limits);
        let mut out = Vec::new();
        let mut long = b"550 ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 100));
        long.extend_from_slice(b"\r\n250 next\r\n");
        for chunk in long.chunks(7) {
            p.feed(chunk, &mut out).unwrap();
        }
        assert_eq!(out.len(), 2);
        assert!(out[0].truncated());
        assert_eq!(out[0].raw().len(), 16 + 2);
        assert_eq!(out[1].raw().as_ref(), b"250 next\r\n");
    }

    #[test]
    fn lf_ended_line_one_over_the_bound_is_truncated_p2() {
        // Found by fuzz/reply_parser: a line ending in a bare LF with
        // max_line + 1 bytes of content was kept whole.
        let limits = ReplyLimits {
            max_line: 8,
            ..ReplyLimits::default()
        };
        for (line, split) in [
            (&b"550 aaaaa\n"[..], 0),
            (b"550 aaaaa\n", 9),
            (b"550 aaaaa\r\n", 9),
            (b"550 aaaaa\r\n", 10),
        ] {
            let mut p = ReplyParser::new(limits);
            let mut out = Vec::new();
            p.feed(&line[..split], &mut out).unwrap();
            p.feed(&line[split..], &mut out).unwrap();
            assert_eq!(
                out[0].raw().as_ref(),
                b"550 aaaa\r\n",
                "{line:?} split {split}"
            );
            assert!(out[0].truncated());
        }
        // Exactly max_line bytes of content pass whole, with either ending.
        for (line, split) in [(&b"550 aaaa\n"[..], 8), (b"550 aaaa\r\n", 9)] {
            let mut p = ReplyParser::new(limits);
            let mut out = Vec::new();
            p.feed(&line[..split], &mut out).unwrap();
            p.feed(&line[split..], &mut out).unwrap();
            assert_eq!(out[0].raw().as_ref(), line);
            assert!(!out[0].truncated());
        }
    }

    #[test]
    fn no_line_end_within_hard_cap_is_an_error() {
        let limits = ReplyLimits {
            hard_line_cap: 100,
            ..ReplyLimits::default()
        };
        let mut p = ReplyParser::new(limits);
        let mut out = Vec::new();
        let mut data = b"250 ".to_vec();
        data.extend(std::iter::repeat_n(b'x', 200));
        assert_eq!(
            p.feed(&data, &mut out),
            Err(ReplyError::NoLineEnd { limit: 100 })
        );
    }

    #[test]
    fn a_line_over_the_hard_cap_fails_alike_whole_or_split_p2() {
        let limits = ReplyLimits {
            hard_line_cap: 20,
            ..ReplyLimits::default()
        };
        let mut line = b"250 ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 30));
        line.extend_from_slice(b"\r\n");
        let mut whole = ReplyParser::new(limits);
        let mut out = Vec::new();
        let a = whole.feed(&line, &mut out);
        let mut split = ReplyParser::new(limits);
        let b = split
            .feed(&line[..10], &mut out)
            .and_then(|_| split.feed(&line[10..], &mut out));
        assert_eq!(a, Err(ReplyError::NoLineEnd { limit: 20 }));
        assert_eq!(a, b);
        assert!(out.is_empty());
    }

    #[test]
    fn bare_lf_line_endings_are_tolerated_and_kept() {
        let r = parse_one(b"250-a\n250 b\n").unwrap().unwrap();
        assert_eq!(r.line_count(), 2);
        assert_eq!(r.raw().as_ref(), b"250-a\n250 b\n");
    }

    #[test]
    fn invalid_utf8_text_is_kept_as_bytes() {
        let r = parse_one(b"550 \xff\xfe nope\r\n").unwrap().unwrap();
        assert_eq!(r.lines().next().unwrap().text, b"\xff\xfe nope");
        let mut s = String::new();
        r.text_for_matching(&mut s, 4096);
        assert!(s.ends_with(" nope"));
    }

    #[test]
    fn rewrite_puts_new_codes_on_every_line() {
        let r = parse_one(b"530-5.7.0 first\r\n530 5.7.0 second\r\n")
            .unwrap()
            .unwrap();
        let w = r.rewrite(ReplyCode::new(550).unwrap(), EnhancedCode::new(5, 1, 1));
        assert_eq!(w.raw().as_ref(), b"550-5.1.1 first\r\n550 5.1.1 second\r\n");
        let a = w.annotated(b"hint");
        assert_eq!(
            a.raw().as_ref(),
            b"550-5.1.1 first\r\n550-5.1.1 second\r\n550 5.1.1 hint\r\n"
        );
    }

    #[test]
    fn rewrite_of_reply_without_enhanced_code() {
        let r = parse_one(b"530 nope\r\n").unwrap().unwrap();
        let w = r.rewrite(ReplyCode::new(554).unwrap(), EnhancedCode::new(5, 7, 1));
        assert_eq!(w.raw().as_ref(), b"554 5.7.1 nope\r\n");
        assert_eq!(parse_one(w.raw()).unwrap().unwrap(), w);
    }

    #[test]
    fn line_bodies_are_the_bytes_after_code_and_separator() {
        let r = parse_one(b"250-host\r\n250-2.0.0 x\n250\r\n")
            .unwrap()
            .unwrap();
        let bodies: Vec<&[u8]> = r.line_bodies().collect();
        assert_eq!(bodies, vec![&b"host"[..], b"2.0.0 x", b""]);
    }

    #[test]
    fn reply_built_from_line_bodies_is_what_the_parser_reads() {
        let r = Reply::from_line_bodies(
            ReplyCode::new(250).unwrap(),
            &[&b"host"[..], b"2.0.00 spelled as sent", b"4.1.1", b""],
        );
        assert_eq!(
            r.raw().as_ref(),
            b"250-host\r\n250-2.0.00 spelled as sent\r\n250-4.1.1\r\n250 \r\n"
        );
        assert_eq!(parse_one(r.raw()).unwrap().unwrap(), r);
        assert_eq!(r.lines().nth(1).unwrap().text, b"spelled as sent");
    }

    fn arb_reply() -> impl Strategy<Value = Reply> {
        let code = (2u16..=5, 0u16..=5, 0u16..=9).prop_map(|(a, b, c)| a * 100 + b * 10 + c);
        let enhanced =
            proptest::option::of((prop::sample::select(vec![2u8, 4, 5]), 0u16..999, 0u16..999));
        let text = proptest::collection::vec(
            proptest::collection::vec(
                any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
                0..40,
            ),
            1..5,
        );
        (code, enhanced, text).prop_map(|(c, e, t)| {
            let e = e.and_then(|(a, b, c)| EnhancedCode::new(a, b, c));
            Reply::build(ReplyCode::new(c).unwrap(), e, &t)
        })
    }

    proptest! {
        #[test]
        fn parse_of_serialised_reply_is_the_same_reply(r in arb_reply()) {
            // A text that itself starts like an enhanced code is re-read as
            // one; compare what the wire carries instead in that case.
            let again = parse_one(r.raw()).unwrap().unwrap();
            prop_assert_eq!(again.raw(), r.raw());
            prop_assert_eq!(again.code(), r.code());
            if r.lines().all(|l| l.enhanced.is_some() || EnhancedCode::parse_prefix(l.text).is_none()) {
                prop_assert_eq!(again, r);
            }
        }

        #[test]
        fn any_chunking_yields_the_same_replies(
            replies in proptest::collection::vec(arb_reply(), 1..6),
            cuts in proptest::collection::vec(1usize..17, 0..50),
        ) {
            let stream: Vec<u8> = replies.iter().flat_map(|r| r.raw().to_vec()).collect();
            let whole = parse_all(&stream).unwrap();
            let mut p = ReplyParser::default();
            let mut out = Vec::new();
            let mut rest = &stream[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts.get(i).copied().unwrap_or(rest.len()).min(rest.len());
                p.feed(&rest[..n], &mut out).unwrap();
                rest = &rest[n..];
                i += 1;
            }
            prop_assert_eq!(&out, &whole);
            prop_assert_eq!(out.len(), replies.len());
        }

        #[test]
        fn line_bodies_rebuild_the_same_reply(r in arb_reply()) {
            let parsed = parse_one(r.raw()).unwrap().unwrap();
            let bodies: Vec<&[u8]> = parsed.line_bodies().collect();
            let again = Reply::from_line_bodies(parsed.code(), &bodies);
            prop_assert_eq!(again.raw(), parsed.raw());
            prop_assert_eq!(&again, &parsed);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), split in 0usize..300) {
            let mut p = ReplyParser::default();
            let mut out = Vec::new();
            let s = split.min(data.len());
            let _ = p.feed(&data[..s], &mut out).and_then(|_| p.feed(&data[s..], &mut out));
        }
    }
}
