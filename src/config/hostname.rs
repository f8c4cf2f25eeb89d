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

/// True when `name` is a fully qualified domain (a valid name with at least
/// two labels), the form relays that check HELO names accept (Postfix's
/// `reject_non_fqdn_helo_hostname`); an address literal is not a domain.
pub fn is_fully_qualified(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    !name.starts_with('[') && name.contains('.') && domain_problem(name).is_none()
}

/// The system's name for `hostname`: the kernel host name when it is fully
/// qualified; else its fully qualified alias in `/etc/hosts` (a line that
/// names `short` and `short.domain`, as `hostname -f` finds it without
/// DNS); else the short name; else `replyfix`.
pub(super) fn system_hostname() -> String {
    let short = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| domain_problem(s).is_none());
    let Some(short) = short else {
        return "replyfix".to_owned();
    };
    if is_fully_qualified(&short) {
        return short;
    }
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    fqdn_alias(&short, &hosts).unwrap_or(short)
}

/// In `/etc/hosts` text, a fully qualified name on a line that also names
/// `short` and that begins with `short.`.
fn fqdn_alias(short: &str, hosts: &str) -> Option<String> {
    let prefix = format!("{short}.");
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        if !names.iter().any(|n| n.eq_ignore_ascii_case(short)) {
            return None;
        }
        names
            .iter()
            .find(|n| n.to_ascii_lowercase().starts_with(&prefix) && is_fully_qualified(n))
            .map(|n| n.trim_end_matches('.').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fully_qualified_name_has_two_labels_and_is_no_address_literal() {
        assert!(is_fully_qualified("mx.example.net"));
        assert!(is_fully_qualified("mx.example.net."));
        assert!(!is_fully_qualified("vm"));
        assert!(!is_fully_qualified("[192.0.2.1]"));
        assert!(!is_fully_qualified("bad..name"));
    }

    #[test]
    fn the_fqdn_alias_comes_from_the_line_that_names_the_short_name() {
        let hosts =
            "127.0.0.1 localhost\n# 10.0.0.1 vm.wrong.example vm\n127.0.1.1 vm.example.net vm\n";
        assert_eq!(fqdn_alias("vm", hosts).as_deref(), Some("vm.example.net"));
        assert_eq!(fqdn_alias("vm", "127.0.0.1 vm localhost\n"), None);
        assert_eq!(fqdn_alias("vm", "10.0.0.2 other.example.net other\n"), None);
    }
}
