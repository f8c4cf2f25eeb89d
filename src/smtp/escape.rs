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
    for &b in shown {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
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

    #[test]
    fn long_fields_are_capped() {
        let long = vec![b'a'; 5000];
        let e = escape_capped(&long, 10);
        assert_eq!(e, "aaaaaaaaaa...");
    }
}
