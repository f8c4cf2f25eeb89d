//! Pulling an SMTP reply and the command it answered out of prose: bounce
//! texts and log lines quote the remote server's reply inline, with a
//! multi-line reply collapsed onto one line (`550-5.1.1 first 550-5.1.1
//! second 550 5.1.1 last`).
//!
//! Pure functions over text; no I/O, no policy.

use crate::smtp::{CommandKind, Reply, ReplyCode};

/// At most this many bytes of quoted reply are kept (W6 matches 4 KiB).
pub const MAX_QUOTED_REPLY: usize = 4096;

/// Rebuilds a reply from quoted text that starts with its code, e.g.
/// `530 5.7.1 Relaying denied` or a collapsed multi-line reply
/// `530-5.7.0 first 530-5.7.0 second 530 5.7.0 last`. A new line starts
/// only where the previous one was a continuation (`530-`) and the same code
/// follows after white space, so a code mentioned in the text does not split
/// it. CR, LF and NUL become spaces; the text is cut at
/// [`MAX_QUOTED_REPLY`] bytes. `None` when the text does not start with a
/// valid code followed by a space, `-` or its end.
pub fn reply_from_quoted(text: &[u8]) -> Option<Reply> {
    let text = trim(text);
    let text = &text[..text.len().min(MAX_QUOTED_REPLY)];
    let code = ReplyCode::from_digits(text.get(..3)?)?;
    let digits = code.digits();
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    let mut rest = text;
    loop {
        // `rest` starts with the code.
        let (continued, body_start) = match rest.get(3) {
            None => (false, 3),
            Some(b'-') => (true, 4),
            Some(b' ') => (false, 4),
            _ => return None,
        };
        let body = &rest[body_start.min(rest.len())..];
        let split = if continued {
            find_next_line(body, &digits)
        } else {
            None
        };
        match split {
            Some(at) => {
                bodies.push(clean(&body[..at]));
                rest = trim(&body[at..]);
            }
            None => {
                bodies.push(clean(body));
                break;
            }
        }
    }
    Some(Reply::from_line_bodies(code, &bodies))
}

/// Where, in a continuation line's body, the next line (`CODE-` or
/// `CODE ` after white space) starts.
fn find_next_line(body: &[u8], digits: &[u8; 3]) -> Option<usize> {
    (1..body.len()).find(|&i| {
        body[i - 1].is_ascii_whitespace()
            && body[i..].starts_with(digits)
            && matches!(body.get(i + 3), None | Some(b' ' | b'-'))
    })
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &b[start..end.max(start)]
}

fn clean(b: &[u8]) -> Vec<u8> {
    trim(b)
        .iter()
        .map(|&c| {
            if matches!(c, b'\r' | b'\n' | 0) {
                b' '
            } else {
                c
            }
        })
        .collect()
}

/// The context named by the words after Postfix's `in reply to` or Exim's
/// `after` (`RCPT TO:<a@b>`, `end of DATA command`, `pipelined end of data`,
/// `initial connection`, ...). `None` for words it does not know.
pub fn context_from_words(words: &str) -> Option<CommandKind> {
    let w = words.trim_start().to_ascii_lowercase();
    let w = w.strip_prefix("pipelined ").unwrap_or(&w);
    let table: [(&str, CommandKind); 17] = [
        ("end of data", CommandKind::DataEnd),
        ("end of bdat", CommandKind::DataEnd),
        ("rcpt", CommandKind::Rcpt),
        ("mail", CommandKind::Mail),
        ("data", CommandKind::Data),
        ("bdat", CommandKind::Bdat),
        ("ehlo", CommandKind::Ehlo),
        ("lhlo", CommandKind::Ehlo),
        ("helo", CommandKind::Helo),
        ("starttls", CommandKind::Starttls),
        ("auth", CommandKind::Auth),
        ("initial connection", CommandKind::Greeting),
        ("initial protocol greeting", CommandKind::Greeting),
        ("greeting", CommandKind::Greeting),
        ("rset", CommandKind::Rset),
        ("quit", CommandKind::Quit),
        ("vrfy", CommandKind::Vrfy),
    ];
    table
        .iter()
        .find(|(prefix, _)| {
            w.starts_with(prefix)
                && !w[prefix.len()..].starts_with(|c: char| c.is_ascii_alphanumeric())
        })
        .map(|&(_, k)| k)
}

/// Finds a context phrase anywhere in `text`: `in reply to X command`
/// (Postfix) or `after X` (Exim's `SMTP error from remote mail server
/// after X`). The first phrase found wins.
pub fn context_in_text(text: &str) -> Option<CommandKind> {
    let lower = text.to_ascii_lowercase();
    for marker in ["in reply to ", "remote mail server after "] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(marker) {
            let at = from + i + marker.len();
            if let Some(k) = context_from_words(&text[at..]) {
                return Some(k);
            }
            from = at;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_quoted_reply_is_rebuilt() {
        let r = reply_from_quoted(b"530 5.7.1 Relaying denied  ").unwrap();
        assert_eq!(r.raw().as_ref(), b"530 5.7.1 Relaying denied\r\n");
        assert_eq!(
            r.enhanced().map(|e| e.to_string()).as_deref(),
            Some("5.7.1")
        );
    }

    #[test]
    fn collapsed_multi_line_reply_is_split_only_at_continuations() {
        let r = reply_from_quoted(
            b"550-5.1.1 The account does not exist. Try 550-5.1.1 again 550 5.1.1 https://x",
        )
        .unwrap();
        assert_eq!(
            r.raw().as_ref(),
            b"550-5.1.1 The account does not exist. Try\r\n550-5.1.1 again\r\n550 5.1.1 https://x\r\n"
        );
        let r = reply_from_quoted(b"530 we saw 530 attempts").unwrap();
        assert_eq!(r.line_count(), 1);
    }

    #[test]
    fn text_without_a_code_is_not_a_reply() {
        assert!(reply_from_quoted(b"Relay access denied").is_none());
        assert!(reply_from_quoted(b"5301 x").is_none());
        assert!(reply_from_quoted(b"").is_none());
        assert!(reply_from_quoted(b"530").is_some());
    }

    proptest::proptest! {
        #[test]
        fn any_quoted_text_gives_a_well_formed_reply_or_none(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut t = b"530-".to_vec();
            t.extend_from_slice(&text);
            for input in [&text[..], &t[..]] {
                if let Some(r) = reply_from_quoted(input) {
                    // What we rebuilt parses back to itself (one reply, one code).
                    let again = crate::smtp::reply::parse_one(r.raw()).ok().flatten();
                    proptest::prop_assert_eq!(again.map(|a| a.raw().clone()), Some(r.raw().clone()));
                }
            }
        }
    }

    #[test]
    fn control_bytes_become_spaces() {
        let r = reply_from_quoted(b"530 a\r\nb\x00c").unwrap();
        assert_eq!(r.raw().as_ref(), b"530 a  b c\r\n");
    }

    #[test]
    fn contexts_are_read_from_postfix_and_exim_phrases() {
        for (text, want) in [
            ("x (in reply to RCPT TO command)", CommandKind::Rcpt),
            ("x (in reply to end of DATA command)", CommandKind::DataEnd),
            ("x (in reply to MAIL FROM command)", CommandKind::Mail),
            ("x (in reply to DATA command)", CommandKind::Data),
            (
                "SMTP error from remote mail server after RCPT TO:<a@b>: 530",
                CommandKind::Rcpt,
            ),
            (
                "SMTP error from remote mail server after pipelined end of data: 530",
                CommandKind::DataEnd,
            ),
            (
                "SMTP error from remote mail server after initial connection: 530",
                CommandKind::Greeting,
            ),
            (
                "SMTP error from remote mail server after MAIL FROM:<a@b> SIZE=1: 530",
                CommandKind::Mail,
            ),
        ] {
            assert_eq!(context_in_text(text), Some(want), "{text}");
        }
        assert_eq!(context_in_text("said: 530 nothing"), None);
        assert_eq!(context_from_words("database"), None);
    }
}
