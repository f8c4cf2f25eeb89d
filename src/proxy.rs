//! The PROXY protocol (HAProxy's, v1 text and v2 binary) and Postfix's
//! XCLIENT: how the real client address travels into replyfix from a load
//! balancer, and out of replyfix to the upstream (docs/operations.md;
//! docs/protocol.md R3: limits and rules use the real address).
//!
//! Header parsing and encoding use the maintained `proxy-header` crate. This
//! module reads exactly the header's bytes from the socket (peeking first),
//! so a TLS ClientHello in the same packet stays for the TLS acceptor.
//! Never reads SMTP.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use proxy_header::{ParseConfig, ProxiedAddress, ProxyHeader};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::ProxyProtocol;

/// Largest header accepted: v1 is at most 107 bytes; v2 is 16 plus its
/// length, and replyfix needs no TLVs beyond a few hundred bytes.
pub const MAX_HEADER: usize = 1024;

/// Why a connection's PROXY header was refused (the connection is closed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("PROXY header from {0}, which is not in trusted_proxies")]
    Untrusted(IpAddr),
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    #[error("no complete PROXY header within the deadline")]
    Timeout,
    #[error("connection closed before the PROXY header was complete")]
    Closed,
}

impl ProxyError {
    /// The bounded reason label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyError::Untrusted(_) => "untrusted_proxy",
            _ => "bad_proxy_header",
        }
    }
}

/// True when `ip` is inside one of `trusted` (IPv4-mapped IPv6 counts as
/// IPv4).
pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

/// Reads the PROXY header a trusted peer must send first and returns the
/// real client address (`peer` itself for a `LOCAL` header, as the
/// protocol says: health checks from the balancer).
pub async fn read_header(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    version: ProxyProtocol,
    trusted: &[IpNet],
    deadline: Duration,
) -> Result<SocketAddr, ProxyError> {
    if !is_trusted(peer.ip(), trusted) {
        return Err(ProxyError::Untrusted(peer.ip()));
    }
    let config = ParseConfig {
        include_tlvs: false,
        allow_v1: matches!(version, ProxyProtocol::V1 | ProxyProtocol::Any),
        allow_v2: matches!(version, ProxyProtocol::V2 | ProxyProtocol::Any),
    };
    let work = async {
        let mut buf = [0u8; MAX_HEADER];
        let mut last_seen = 0;
        loop {
            let n = tcp.peek(&mut buf).await.map_err(|_| ProxyError::Closed)?;
            if n == 0 {
                return Err(ProxyError::Closed);
            }
            match ProxyHeader::parse(&buf[..n], config) {
                Ok((header, used)) => {
                    let source = header.proxied_address().map(|a| a.source).unwrap_or(peer);
                    // Consume exactly the header; what follows is SMTP or TLS.
                    let mut sink = vec![0u8; used];
                    tcp.read_exact(&mut sink)
                        .await
                        .map_err(|_| ProxyError::Closed)?;
                    return Ok(source);
                }
                Err(proxy_header::Error::BufferTooShort)
                    if buf[0] == b'P' && (n > 107 || buf[..n].windows(2).any(|w| w == b"\r\n")) =>
                {
                    // A v1 header is one line of at most 107 bytes.
                    return Err(ProxyError::Malformed("incomplete PROXY v1 line".into()));
                }
                Err(proxy_header::Error::BufferTooShort) if n < MAX_HEADER => {
                    if n == last_seen {
                        // Nothing new yet: wait a little instead of spinning
                        // on a socket that stays readable.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    last_seen = n;
                }
                Err(e) => return Err(ProxyError::Malformed(e.to_string())),
            }
        }
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| ProxyError::Timeout)?
}

/// The header replyfix sends before SMTP to an upstream configured with
/// `send_client_address: proxy-v1|proxy-v2`: the client's address and the
/// address the client connected to.
pub fn encode_header(v2: bool, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    // Both addresses must be of one family.
    let (client, local) = match (client, local) {
        (SocketAddr::V4(_), SocketAddr::V6(l)) => match l.ip().to_ipv4_mapped() {
            Some(ip) => (client, SocketAddr::new(IpAddr::V4(ip), l.port())),
            None => (to_v6(client), local),
        },
        (SocketAddr::V6(c), SocketAddr::V4(_)) => match c.ip().to_ipv4_mapped() {
            Some(ip) => (SocketAddr::new(IpAddr::V4(ip), c.port()), local),
            None => (client, to_v6(local)),
        },
        pair => pair,
    };
    let header = ProxyHeader::with_address(ProxiedAddress::stream(client, local));
    let mut out = Vec::with_capacity(64);
    let result = if v2 {
        header.encode_v2(&mut out)
    } else {
        header.encode_v1(&mut out)
    };
    if result.is_err() {
        // Cannot happen for TCP addresses of one family; fall back to
        // "unknown" rather than sending half a header.
        out.clear();
        if v2 {
            let _ = ProxyHeader::with_local().encode_v2(&mut out);
        } else {
            out.extend_from_slice(b"PROXY UNKNOWN\r\n");
        }
    }
    out
}

fn to_v6(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    }
}

/// Postfix's XCLIENT command line for the client.
///
/// `NAME=[UNAVAILABLE]` always: replyfix does no DNS lookups, and Postfix
/// does none after XCLIENT either; it keeps every attribute XCLIENT leaves
/// out. Without NAME the client would keep replyfix's hostname (seen
/// against a real Postfix 3.7: `localhost[192.0.2.7]`), and name-based
/// access rules (`check_client_access` on `localhost`, `permit` by domain)
/// would judge a remote client by replyfix's name (docs/operations.md). Postfix also
/// takes NAME as the reverse name when REVERSE_NAME is absent.
pub fn xclient_line(client: SocketAddr, helo: &[u8], esmtp: bool) -> Vec<u8> {
    let addr = match client.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("IPV6:{v6}"),
        },
    };
    let mut line = format!(
        "XCLIENT NAME=[UNAVAILABLE] ADDR={addr} PORT={}",
        client.port()
    )
    .into_bytes();
    if !helo.is_empty() {
        line.extend_from_slice(b" HELO=");
        xtext(helo, &mut line);
    }
    line.extend_from_slice(if esmtp {
        b" PROTO=ESMTP\r\n"
    } else {
        b" PROTO=SMTP\r\n"
    });
    line
}

/// RFC 3461 xtext: `+XX` for `+`, `=`, and bytes outside `!`..`~`.
fn xtext(value: &[u8], out: &mut Vec<u8>) {
    for &b in value.iter().take(255) {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("+{b:02X}").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_networks_include_mapped_ipv4() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(is_trusted("10.1.2.3".parse().unwrap(), &trusted));
        assert!(is_trusted("::ffff:10.1.2.3".parse().unwrap(), &trusted));
        assert!(is_trusted("::1".parse().unwrap(), &trusted));
        assert!(!is_trusted("192.0.2.1".parse().unwrap(), &trusted));
    }

    #[test]
    fn v1_header_is_text_and_parses_back() {
        let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:2525".parse().unwrap();
        let h = encode_header(false, client, local);
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 2525\r\n");
        let (parsed, used) = ProxyHeader::parse(&h, ParseConfig::default()).unwrap();
        assert_eq!(used, h.len());
        assert_eq!(parsed.proxied_address().unwrap().source, client);
    }

    #[test]
    fn v2_header_round_trips_with_mixed_families() {
        let client: SocketAddr = "[2001:db8::9]:1234".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let h = encode_header(true, client, local);
        assert!(h.starts_with(b"\r\n\r\n\0\r\nQUIT\n"));
        let (parsed, _) = ProxyHeader::parse(&h, ParseConfig::default()).unwrap();
        assert_eq!(parsed.proxied_address().unwrap().source, client);
    }

    #[test]
    fn xclient_line_encodes_helo_as_xtext() {
        let client: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        assert_eq!(
            xclient_line(client, b"host name+x=y", true),
            b"XCLIENT NAME=[UNAVAILABLE] ADDR=192.0.2.7 PORT=40000 HELO=host+20name+2Bx+3Dy PROTO=ESMTP\r\n"
        );
        let v6: SocketAddr = "[2001:db8::1]:25".parse().unwrap();
        assert_eq!(
            xclient_line(v6, b"", false),
            b"XCLIENT NAME=[UNAVAILABLE] ADDR=IPV6:2001:db8::1 PORT=25 PROTO=SMTP\r\n"
        );
    }
}
