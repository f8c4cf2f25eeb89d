//! Log output: the tracing subscriber (text on a terminal, JSON on request)
//! and how envelope addresses appear in logs (docs/protocol.md L3).
//!
//! Never logs message content or SASL data (L1, L2): this module only
//! formats what the session driver hands it, already escaped (L4).

pub mod batch;
pub mod json;

use std::fmt;
use std::io::IsTerminal;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

pub use self::batch::FlushGuard;

use crate::config::{LogAddresses, LogFormat, Logging};
use crate::smtp::escape::escape_capped;

/// How envelope addresses are written to logs (L3).
#[derive(Clone)]
pub struct AddressLog {
    mode: LogAddresses,
    key: Vec<u8>,
}

impl AddressLog {
    /// `key` is the secret for `hash` mode (ignored otherwise).
    pub fn new(mode: LogAddresses, key: Option<&str>) -> Self {
        AddressLog {
            mode,
            key: key.unwrap_or_default().as_bytes().to_vec(),
        }
    }

    /// The address as the configured mode shows it, escaped (L4):
    /// `full` as is, `domain` as `*@domain`, `hash` as
    /// `h:<16 hex of HMAC-SHA256(key, local part)>@domain`.
    pub fn show(&self, address: &[u8]) -> String {
        let (local, domain) = match address.iter().rposition(|&b| b == b'@') {
            Some(at) => (&address[..at], &address[at + 1..]),
            None => (address, &b""[..]),
        };
        let domain = escape_capped(domain, 255);
        match self.mode {
            LogAddresses::Full => escape_capped(address, 320),
            LogAddresses::Domain => format!("*@{domain}"),
            LogAddresses::Hash => {
                let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.key)
                    .expect("HMAC accepts keys of any length");
                mac.update(local);
                let tag = mac.finalize().into_bytes();
                let hex: String = tag[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("h:{hex}@{domain}")
            }
        }
    }
}

/// Installs the global tracing subscriber. `format_override` (from the
/// command line) wins over the configuration. `RUST_LOG` wins over the
/// configured level.
///
/// Records are written to stderr in batches by a background thread
/// ([`batch`]), so a session never waits on the log's `write`; a writer
/// waits rather than drops when the batch is full (an audit record is never
/// lost). Keep the returned guard alive until exit: dropping it writes what
/// is left.
pub fn init(logging: &Logging, format_override: Option<LogFormat>) -> FlushGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&logging.level));
    let format = format_override.unwrap_or(logging.format);
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let (writer, guard) = batch::batch_writer(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(!json && std::io::stderr().is_terminal())
        .with_writer(writer);
    let result = if json {
        builder.event_format(json::JsonRecords).try_init()
    } else {
        builder.fmt_fields(QuotedFields).try_init()
    };
    // A subscriber may already be installed (tests); that is fine.
    let _ = result;
    guard
}

/// Text-log fields as `key=value`, the value quoted (`key="a b"`, with `\`
/// and `"` escaped) when it is empty or holds a space, `"`, `=` or `\`, so
/// every record splits into fields unambiguously (logfmt). The message is
/// written as it is, first.
#[derive(Clone, Copy, Debug, Default)]
pub struct QuotedFields;

impl<'a> MakeVisitor<Writer<'a>> for QuotedFields {
    type Visitor = QuotedVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> Self::Visitor {
        QuotedVisitor {
            writer,
            empty: true,
            result: Ok(()),
        }
    }
}

/// The visitor of [`QuotedFields`].
pub struct QuotedVisitor<'a> {
    writer: Writer<'a>,
    empty: bool,
    result: fmt::Result,
}

impl QuotedVisitor<'_> {
    fn write(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let pad = if self.empty { "" } else { " " };
        self.empty = false;
        self.result = if field.name() == "message" {
            write!(self.writer, "{pad}{value}")
        } else {
            write!(self.writer, "{pad}{}={}", field.name(), quoted(value))
        };
    }
}

/// `value`, or `value` in double quotes with `\` and `"` escaped when it
/// would not read back as one field.
pub fn quoted(value: &str) -> std::borrow::Cow<'_, str> {
    let plain = !value.is_empty()
        && !value
            .bytes()
            .any(|b| b.is_ascii_whitespace() || matches!(b, b'"' | b'=' | b'\\'));
    if plain {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out.into()
}

impl Visit for QuotedVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.write(field, &text);
    }
}

impl VisitOutput<fmt::Result> for QuotedVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for QuotedVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// An in-memory log writer for the formatters' tests.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Buf(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_mode_hides_the_local_part_l3() {
        let log = AddressLog::new(LogAddresses::Domain, None);
        assert_eq!(log.show(b"alice@example.com"), "*@example.com");
    }

    #[test]
    fn hash_mode_is_keyed_and_stable_l3() {
        let a = AddressLog::new(LogAddresses::Hash, Some("k1"));
        let b = AddressLog::new(LogAddresses::Hash, Some("k2"));
        let x = a.show(b"alice@example.com");
        assert_eq!(x, a.show(b"alice@example.com"));
        assert_ne!(x, b.show(b"alice@example.com"));
        assert!(x.starts_with("h:") && x.ends_with("@example.com"));
        assert!(!x.contains("alice"));
    }

    #[test]
    fn text_values_with_spaces_are_quoted_and_plain_ones_are_not() {
        assert_eq!(quoted("none"), "none");
        assert_eq!(
            quoted("530 5.7.1 no such user"),
            "\"530 5.7.1 no such user\""
        );
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("a=b"), "\"a=b\"");
        assert_eq!(quoted(r#"say "hi"\x0D"#), r#""say \"hi\"\\x0D""#);
    }

    #[test]
    fn a_text_record_splits_into_its_fields() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || out.clone())
            .fmt_fields(QuotedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let original = "530 The message cannot be delivered";
            tracing::info!(rule = "config-error", original = %original, count = 2, "reply rewritten");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(
                "reply rewritten rule=config-error original=\"530 The message cannot be delivered\" count=2"
            ),
            "{text}"
        );
    }

    #[test]
    fn full_mode_escapes_control_bytes_l4() {
        let log = AddressLog::new(LogAddresses::Full, None);
        assert_eq!(log.show(b"a\r\nb@x"), "a\\x0D\\x0Ab@x");
    }
}
