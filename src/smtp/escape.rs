//! Escaping of network text for logs and terminals (docs/protocol.md L4).
//!
//! Every field that came from the network goes through [`escape`] before it
//! reaches a log record: printable ASCII passes, everything else (control
//! bytes, invalid UTF-8, bytes >= 0x80) becomes `\xNN`, and the result is
//! capped so one hostile line cannot flood a log.

use std::fmt::Write;

/// Default cap, in bytes of input, for one escaped log field.
pub const DEFAULT_CAP: usize = 1024;

/// Escapes `bytes` for a log record, reading at most `cap` input bytes;
/// a longer input ends with `...`.
pub fn escape_capped(bytes: &[u8], cap: usize) -> String {
    let shown = &bytes[..bytes.len().min(cap)];
    let mut out = String::with_capacity(shown.len() + 8);
    // Runs of printable ASCII are copied whole; only the bytes between them
    // are written one by one.
    let mut rest = shown;
    while !rest.is_empty() {
        let plain = rest
            .iter()
            .position(|&b| !(0x20..=0x7e).contains(&b) || b == b'\\')
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(plain);
        // Printable ASCII is UTF-8.
        out.push_str(std::str::from_utf8(run).unwrap_or_default());
        let Some((&b, tail)) = tail.split_first() else {
            break;
        };
        if b == b'\\' {
            out.push_str("\\\\");
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
        rest = tail;
    }
    if bytes.len() > cap {
        out.push_str("...");
    }
    out
}

/// [`escape_capped`] with [`DEFAULT_CAP`].
pub fn escape(bytes: &[u8]) -> String {
    escape_capped(bytes, DEFAULT_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_and_invalid_utf8_are_hex_escaped() {
        assert_eq!(escape(b"530 ok\r\n"), "530 ok\\x0D\\x0A");
        assert_eq!(escape(&[0xff, b'a', 0]), "\\xFFa\\x00");
        assert_eq!(escape(b"a\\b"), "a\\\\b");
    }

    proptest::proptest! {
        /// The run-copying escaper writes what escaping byte by byte would.
        #[test]
        fn runs_escape_like_single_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut want = String::new();
            for &b in &bytes {
                match b {
                    b'\\' => want.push_str("\\\\"),
                    0x20..=0x7e => want.push(b as char),
                    _ => want.push_str(&format!("\\x{b:02X}")),
                }
            }
            proptest::prop_assert_eq!(escape(&bytes), want);
        }
    }

    #[test]
    fn long_fields_are_capped() {
        let long = vec![b'a'; 5000];
        let e = escape_capped(&long, 10);
        assert_eq!(e, "aaaaaaaaaa...");
    }
}
