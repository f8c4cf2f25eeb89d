//! The upstream reply parser (P2, P5, R1): any chunking gives the same
//! replies and the same error as one whole read; every reply it returns obeys
//! the grammar of RFC 5321 4.2 (same code on every line, CRLF or LF ends);
//! within the limits, it agrees with a reference parser written here by
//! direct definition; escaped display never carries a control byte (L4).
#![no_main]

use libfuzzer_sys::fuzz_target;
use replyfix::smtp::{Reply, ReplyError, ReplyLimits, ReplyParser};
use replyfix_fuzz::{Input, split_points};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let limits = ReplyLimits {
        max_line: 8 + input.below(120),
        hard_line_cap: 256 + input.below(1024),
        max_reply: 128 + input.below(4096),
        max_lines: 1 + input.below(40),
    };
    let split_seed = input.bytes(64);
    let stream = input.rest();
    let whole = parse(limits, stream, &[(0, stream.len())]);
    let chunks = split_points(&mut Input::new(split_seed), stream.len());
    let split = parse(limits, stream, &chunks);
    assert_eq!(whole.0, split.0, "replies differ by chunking");
    // Every error is the same desync to the relay (P2); which one is named
    // first may depend on where a read ends (a line both too long and
    // garbage), so only whether the stream failed must agree.
    assert_eq!(
        whole.1.is_some(),
        split.1.is_some(),
        "failure differs by chunking: {:?} vs {:?}",
        whole.1,
        split.1
    );
    for reply in &whole.0 {
        check_reply(reply, limits);
    }
    if let Some(want) = reference(stream, limits) {
        let got: Vec<(u16, Vec<u8>)> = whole
            .0
            .iter()
            .map(|r| (r.code().get(), r.raw().to_vec()))
            .collect();
        match want {
            Ok(want) => {
                assert_eq!(got, want, "reference replies");
                assert!(whole.1.is_none(), "reference accepts: {:?}", whole.1);
            }
            Err(prefix) => {
                assert_eq!(got, prefix, "replies before the error");
                assert!(whole.1.is_some(), "reference rejects, parser accepted");
            }
        }
    }
});

fn parse(
    limits: ReplyLimits,
    stream: &[u8],
    chunks: &[(usize, usize)],
) -> (Vec<Reply>, Option<ReplyError>) {
    let mut p = ReplyParser::new(limits);
    let mut out = Vec::new();
    for &(a, b) in chunks {
        if let Err(e) = p.feed(&stream[a..b], &mut out) {
            // After an error, every later call fails the same way.
            let again = p.feed(b"250 ok\r\n", &mut out);
            assert_eq!(again.as_ref().err(), Some(&e));
            return (out, Some(e));
        }
        assert!(
            p.buffered() <= limits.max_reply + limits.max_line + 2,
            "parser memory bound"
        );
    }
    (out, None)
}

fn check_reply(reply: &Reply, limits: ReplyLimits) {
    let raw = reply.raw();
    let code = reply.code().get();
    assert!(
        (200..=559).contains(&code) && code % 100 <= 59,
        "code {code}"
    );
    assert!(raw.ends_with(b"\n"));
    let lines: Vec<&[u8]> = raw.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), reply.line_count());
    assert!(lines.len() <= limits.max_lines);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(
            &line[..3],
            &reply.code().digits()[..],
            "same code on every line"
        );
        let last = i + 1 == lines.len();
        let sep = line.get(3).copied();
        assert!(
            matches!(
                (last, sep),
                (true, Some(b' ' | b'\r' | b'\n')) | (false, Some(b'-'))
            ),
            "separator on line {i}"
        );
        let body = line.strip_suffix(b"\n").unwrap();
        if reply.truncated() {
            assert!(body.strip_suffix(b"\r").unwrap_or(body).len() <= limits.max_line);
        }
    }
    for l in reply.lines() {
        // A line's text never runs into the next line.
        assert!(!l.text.contains(&b'\n'));
        if let Some(e) = l.enhanced {
            // As received: an upstream may pair any class with any code.
            assert!(matches!(e.class, 2 | 4 | 5));
        }
    }
    // L4: what reaches a log has no control byte and no non-ASCII.
    let shown = reply.to_string();
    assert!(
        shown.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "escaped display: {shown:?}"
    );
}

/// RFC 5321 4.2 by definition, for streams within the limits and ending in
/// a line end. `Ok(replies)`, or `Err(replies before the error)`. `None`
/// when the stream is outside what this reference models.
#[allow(clippy::type_complexity)]
fn reference(
    s: &[u8],
    limits: ReplyLimits,
) -> Option<Result<Vec<(u16, Vec<u8>)>, Vec<(u16, Vec<u8>)>>> {
    if !s.ends_with(b"\n") {
        return None;
    }
    let mut replies = Vec::new();
    let mut current: Option<(u16, Vec<u8>, usize)> = None;
    for line in s.split_inclusive(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap();
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.len() > limits.max_line {
            return None;
        }
        let ok_code = content.len() >= 3
            && (b'2'..=b'5').contains(&content[0])
            && (b'0'..=b'5').contains(&content[1])
            && content[2].is_ascii_digit();
        if !ok_code {
            return Some(Err(replies));
        }
        let code = (content[0] - b'0') as u16 * 100
            + (content[1] - b'0') as u16 * 10
            + (content[2] - b'0') as u16;
        let last = match content.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Some(Err(replies)),
        };
        let (first, mut raw, n) = current.take().unwrap_or((code, Vec::new(), 0));
        if first != code {
            return Some(Err(replies));
        }
        raw.extend_from_slice(line);
        if raw.len() > limits.max_reply || n + 1 > limits.max_lines {
            return None;
        }
        if last {
            replies.push((code, raw));
        } else {
            current = Some((code, raw, n + 1));
        }
    }
    if current.is_some() {
        return None; // an unfinished multi-line reply: nothing to compare
    }
    Some(Ok(replies))
}
