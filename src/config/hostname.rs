//! Host names: what makes a name usable as an SMTP domain (RFC 5321 4.1.2),
//! and the system's own name as the default `hostname`.
//!
//! This module only answers questions about names; it must never resolve one
//! or look at other settings.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why `name` is not usable as an SMTP domain (RFC 5321 4.1.2), if it isn't.
/// Address literals (`[192.0.2.1]`, `[IPv6:...]`) are accepted.
pub(super) fn domain_problem(name: &str) -> Option<String> {
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        let ok = match inner.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
            None => inner.parse::<Ipv4Addr>().is_ok(),
        };
        return (!ok).then(|| format!("'{name}' is not a valid address literal"));
    }
    if name.is_empty() {
        return Some("empty host name".to_owned());
    }
    if name.len() > 253 {
        return Some(format!("host name '{name}' is longer than 253 characters"));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !name.trim_end_matches('.').split('.').all(valid_label) {
        return Some(format!(
            "'{}' is not a valid host name (letters, digits and '-' in dot-separated labels)",
            name.escape_debug()
        ));
    }
    None
}

/// The system hostname if it is a usable SMTP domain, else `replyfix`.
pub(super) fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| domain_problem(s).is_none())
        .unwrap_or_else(|| "replyfix".to_owned())
}
