//! EHLO reply capabilities (RFC 5321 4.1.1.1).
//!
//! The first line of a `250` EHLO reply is the greeting (the server's domain
//! and free text); every later line is `ehlo-keyword *(SP ehlo-param)`. This
//! module reads those capability lines and, for the relay, edits them: drop
//! some keywords (`REQUIRETLS` unless the upstream leg is verified TLS, T7;
//! `CHUNKING`/`BINARYMIME` while BDAT is not relayed, D5; `STARTTLS` per the
//! TLS policy) and add some (`STARTTLS` offered by replyfix itself).
//!
//! It must never touch the greeting line, rewrite the text of a line it
//! keeps, or decide *which* keywords to drop or add: that is the caller's
//! policy. A reply it does not change is not rebuilt, so the relay writes the
//! original bytes (docs/architecture.md: EHLO replies are edited only in their
//! capability lines).

use crate::smtp::reply::{Reply, ReplyCode};

/// The capability lines of an EHLO reply, as `(keyword, params)`: the
/// keyword is the line up to its first space, the params everything after
/// that space, byte for byte (empty when there are none). The first line
/// (the greeting) is skipped.
pub fn capabilities(reply: &Reply) -> impl Iterator<Item = (&[u8], &[u8])> {
    reply.line_bodies().skip(1).map(split_keyword)
}

/// True when the reply advertises `keyword` (compared case-insensitively,
/// RFC 5321 2.4).
pub fn has_capability(reply: &Reply, keyword: &str) -> bool {
    capabilities(reply).any(|(k, _)| k.eq_ignore_ascii_case(keyword.as_bytes()))
}

/// Edits only the capability lines of a `250` EHLO reply (T7, D5):
/// drops every capability line whose keyword, in ASCII upper case, makes
/// `drop` return true, then appends each of the `add` lines (e.g.
/// `b"STARTTLS"`, `b"SIZE 10240000"`) whose keyword is not already among the
/// kept lines.
///
/// Returns `None` when nothing changes, so the original is relayed
/// byte-exact, and for replies other than `250`. The rebuilt reply keeps the
/// code, the greeting line and the kept lines' text exactly as they were,
/// with CRLF line endings. `add` lines must not contain CR, LF or NUL.
pub fn edit(reply: &Reply, drop: impl Fn(&[u8]) -> bool, add: &[&[u8]]) -> Option<Reply> {
    if reply.code() != ReplyCode::new(250)? {
        return None;
    }
    let mut bodies: Vec<&[u8]> = Vec::with_capacity(reply.line_count() + add.len());
    let mut changed = false;
    let mut upper = Vec::new();
    for (i, body) in reply.line_bodies().enumerate() {
        if i > 0 {
            let (keyword, _) = split_keyword(body);
            upper.clear();
            upper.extend(keyword.iter().map(u8::to_ascii_uppercase));
            if drop(&upper) {
                changed = true;
                continue;
            }
        }
        bodies.push(body);
    }
    for &line in add {
        debug_assert!(!line.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
        let (keyword, _) = split_keyword(line);
        let present = bodies
            .iter()
            .skip(1)
            .any(|b| split_keyword(b).0.eq_ignore_ascii_case(keyword));
        if !present {
            bodies.push(line);
            changed = true;
        }
    }
    changed.then(|| Reply::from_line_bodies(reply.code(), &bodies))
}

/// `keyword [SP params]` split at the first space.
fn split_keyword(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::reply::parse_one;

    const POSTFIX: &[u8] = b"250-mx.example.org\r\n\
        250-PIPELINING\r\n\
        250-SIZE 10240000\r\n\
        250-VRFY\r\n\
        250-ETRN\r\n\
        250-STARTTLS\r\n\
        250-AUTH PLAIN LOGIN\r\n\
        250-AUTH=PLAIN LOGIN\r\n\
        250-ENHANCEDSTATUSCODES\r\n\
        250-8BITMIME\r\n\
        250-DSN\r\n\
        250-SMTPUTF8\r\n\
        250-CHUNKING\r\n\
        250 BINARYMIME\r\n";

    fn reply(raw: &[u8]) -> Reply {
        parse_one(raw).unwrap().unwrap()
    }

    /// The relay's view: a rebuilt reply must read back as itself.
    fn assert_round_trips(r: &Reply) {
        assert_eq!(&reply(r.raw()), r);
    }

    #[test]
    fn postfix_ehlo_capabilities_are_read_after_the_greeting() {
        let r = reply(POSTFIX);
        let caps: Vec<_> = capabilities(&r).collect();
        assert_eq!(caps.len(), 13);
        assert_eq!(caps[0], (&b"PIPELINING"[..], &b""[..]));
        assert_eq!(caps[1], (&b"SIZE"[..], &b"10240000"[..]));
        assert!(has_capability(&r, "STARTTLS"));
        assert!(!has_capability(&r, "mx.example.org"));
        assert!(!has_capability(&r, "REQUIRETLS"));
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let r = reply(b"250-host\r\n250-StartTLS\r\n250 pipelining\r\n");
        assert!(has_capability(&r, "STARTTLS"));
        assert!(has_capability(&r, "Pipelining"));
        // `drop` sees the keyword in upper case.
        let e = edit(&r, |k| k == b"STARTTLS", &[]).unwrap();
        assert_eq!(e.raw().as_ref(), b"250-host\r\n250 pipelining\r\n");
        // An added keyword already present in another case is not added.
        assert_eq!(edit(&r, |_| false, &[b"starttls"]), None);
    }

    #[test]
    fn dropping_starttls_keeps_everything_else_byte_exact() {
        let r = reply(POSTFIX);
        let e = edit(&r, |k| k == b"STARTTLS", &[]).unwrap();
        let want: Vec<u8> = POSTFIX
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| *l != b"250-STARTTLS\r\n")
            .flatten()
            .copied()
            .collect();
        assert_eq!(e.raw().as_ref(), &want[..]);
        assert_eq!(e.code().get(), 250);
        assert!(!has_capability(&e, "STARTTLS"));
        assert_round_trips(&e);
    }

    #[test]
    fn dropping_chunking_and_binarymime_moves_the_last_line_marker_d5() {
        let r = reply(POSTFIX);
        let e = edit(&r, |k| k == b"CHUNKING" || k == b"BINARYMIME", &[]).unwrap();
        assert!(e.raw().ends_with(b"250-DSN\r\n250 SMTPUTF8\r\n"));
        assert_eq!(e.line_count(), r.line_count() - 2);
        assert_round_trips(&e);
    }

    #[test]
    fn requiretls_is_dropped_on_request_t7() {
        let r = reply(b"250-host\r\n250-REQUIRETLS\r\n250 8BITMIME\r\n");
        let e = edit(&r, |k| k == b"REQUIRETLS", &[]).unwrap();
        assert_eq!(e.raw().as_ref(), b"250-host\r\n250 8BITMIME\r\n");
    }

    #[test]
    fn adding_starttls_appends_a_last_line() {
        let r = reply(b"250-host says hi\r\n250 PIPELINING\r\n");
        let e = edit(&r, |_| false, &[b"STARTTLS"]).unwrap();
        assert_eq!(
            e.raw().as_ref(),
            b"250-host says hi\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
        );
        assert_round_trips(&e);
    }

    #[test]
    fn single_line_reply_gets_added_capability() {
        let r = reply(b"250 host\r\n");
        assert_eq!(capabilities(&r).count(), 0);
        let e = edit(&r, |_| true, &[b"STARTTLS", b"SIZE 1000"]).unwrap();
        assert_eq!(
            e.raw().as_ref(),
            b"250-host\r\n250-STARTTLS\r\n250 SIZE 1000\r\n"
        );
    }

    #[test]
    fn nothing_to_change_gives_none() {
        let r = reply(POSTFIX);
        assert_eq!(edit(&r, |k| k == b"REQUIRETLS", &[b"STARTTLS"]), None);
        assert_eq!(edit(&reply(b"250 host\r\n"), |_| true, &[]), None);
    }

    #[test]
    fn only_250_replies_are_edited() {
        for raw in [
            &b"550 5.7.1 go away\r\n"[..],
            b"421 4.3.2 bye\r\n",
            b"220 hi\r\n",
        ] {
            assert_eq!(edit(&reply(raw), |_| true, &[b"STARTTLS"]), None);
        }
    }

    #[test]
    fn auth_params_are_kept_byte_exact() {
        let r = reply(b"250-host\r\n250-AUTH  PLAIN\tLOGIN \xff\r\n250 STARTTLS\r\n");
        let caps: Vec<_> = capabilities(&r).collect();
        assert_eq!(caps[0], (&b"AUTH"[..], &b" PLAIN\tLOGIN \xff"[..]));
        let e = edit(&r, |k| k == b"STARTTLS", &[]).unwrap();
        assert_eq!(
            e.raw().as_ref(),
            b"250-host\r\n250 AUTH  PLAIN\tLOGIN \xff\r\n"
        );
    }

    #[test]
    fn greeting_and_lines_with_enhanced_codes_keep_their_spelling() {
        // Unusual but seen: an enhanced code on the greeting line, bare LF
        // line endings. The kept text is unchanged; endings become CRLF.
        let r = reply(b"250-2.0.00 host\n250-X-ODD\n250 STARTTLS\n");
        let e = edit(&r, |k| k == b"STARTTLS", &[]).unwrap();
        assert_eq!(e.raw().as_ref(), b"250-2.0.00 host\r\n250 X-ODD\r\n");
        assert_round_trips(&e);
    }
}
