//! Log output: the tracing subscriber (text on a terminal, JSON on request)
//! and how envelope addresses appear in logs (docs/protocol.md L3).
//!
//! Never logs message content or SASL data (L1, L2): this module only
//! formats what the session driver hands it, already escaped (L4).

pub mod batch;

use std::io::IsTerminal;

use hmac::{Hmac, Mac};
use sha2::Sha256;

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
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // A subscriber may already be installed (tests); that is fine.
    let _ = result;
    guard
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
    fn full_mode_escapes_control_bytes_l4() {
        let log = AddressLog::new(LogAddresses::Full, None);
        assert_eq!(log.show(b"a\r\nb@x"), "a\\x0D\\x0Ab@x");
    }
}
