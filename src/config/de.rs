//! Custom deserialisers for configuration values: durations (`30s`, `1h30m`),
//! socket addresses and trusted networks, each with a message that says how
//! to write the value.
//!
//! This module only turns one YAML scalar into one value; it must never look
//! at other settings or at where the value was written.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// Parses `30s`, `5m`, `1h30m`, `500ms`, `2d`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let help = "write a number with a unit, e.g. 30s, 5m, 1h, 1h30m, 500ms (units: ms, s, m, h, d)";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration: {help}"));
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration '{text}': {help}"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration '{text}': number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            "d" => number.checked_mul(86400).map(Duration::from_secs),
            "" => {
                return Err(format!(
                    "invalid duration '{text}': unit missing after {number}; {help}"
                ));
            }
            unit => {
                return Err(format!(
                    "invalid duration '{text}': unknown unit '{unit}'; {help}"
                ));
            }
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("invalid duration '{text}': too large"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

pub(super) fn de_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Duration, D::Error> {
    struct Visitor;
    impl de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as 30s, 5m or 1h")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
            u64::try_from(v)
                .map(Duration::from_secs)
                .map_err(|_| E::custom(format!("negative duration {v}")))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(format!(
                "duration {v} has a fraction; use a smaller unit, e.g. 1500ms"
            )))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(E::custom)
        }
    }
    deserializer.deserialize_any(Visitor)
}

pub(super) fn de_socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.trim().parse().map_err(|_| {
        de::Error::custom(format!(
            "'{text}' is not an IP address with a port; write e.g. 127.0.0.1:2525 or [::1]:2525 \
             (bind addresses are IP addresses, not host names)"
        ))
    })
}

/// A network for `trusted_proxies`; a bare address means just that host.
struct TrustedNet(IpNet);

impl<'de> Deserialize<'de> for TrustedNet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(TrustedNet(net));
        }
        if let Ok(ip) = text.parse::<std::net::IpAddr>() {
            return Ok(TrustedNet(IpNet::from(ip)));
        }
        Err(de::Error::custom(format!(
            "'{text}' is not an IP address or network; write e.g. 10.0.0.1, 10.0.0.0/8 or 2001:db8::/32"
        )))
    }
}

pub(super) fn de_ip_nets<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    let nets = Vec::<TrustedNet>::deserialize(deserializer)?;
    Ok(nets.into_iter().map(|n| n.0).collect())
}
