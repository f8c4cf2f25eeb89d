//! Connecting to the upstream: failover across its servers, and the
//! upstream leg's TLS (docs/protocol.md T2, T4, T6) set up right after the
//! greeting, before any client command is relayed.
//!
//! Under `may`, `encrypt` and `verify` replyfix sends its own `EHLO` and
//! `STARTTLS` after a `220` greeting and hands the socket to the TLS
//! connector. Any failure under `encrypt`/`verify` ends in
//! [`UpstreamFailure::TlsUnavailable`], so nothing the client sends ever goes
//! to the upstream in plaintext; under `may` it falls back to plain,
//! reconnecting when the socket saw a TLS error (T6). Bytes the upstream
//! sends after its `220` to STARTTLS are response injection (T2): abort.
//!
//! For `send_client_address: xclient` the same opening exchange (greeting,
//! replyfix's `EHLO`) tells whether the upstream offers XCLIENT; after
//! STARTTLS replyfix asks again with a second `EHLO` inside TLS and trusts
//! only that answer (T3). For `proxy-v1`/`proxy-v2` the PROXY header goes
//! out first on every connection, before any SMTP.
//!
//! Never relays client bytes; the session core does that afterwards. Every
//! failure is a typed [`SetupError`] naming the server and the step.

mod error;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::config::{ClientAddressForwarding, TlsPolicy};
use crate::conn::Conn;
use crate::smtp::{Reply, ReplyCode, ReplyParser, ehlo};
use crate::tls::{TlsInfo, UpstreamTlsContext};

pub use self::error::{SetupError, Step};

/// Deadlines for setting up the upstream.
#[derive(Clone, Copy, Debug)]
pub struct SetupTimeouts {
    pub connect: Duration,
    pub reply: Duration,
    pub handshake: Duration,
}

/// A connected upstream, ready for the session core.
pub struct Established {
    pub conn: Conn,
    /// The server (as configured) that answered.
    pub server: String,
    /// Bytes already read from the upstream (its greeting, when STARTTLS
    /// was negotiated): feed them to the core first.
    pub greeting: Vec<u8>,
    pub tls: Option<TlsInfo>,
    /// `send_client_address: xclient` and the upstream offers XCLIENT (in
    /// its EHLO reply inside TLS, when STARTTLS was negotiated): the core
    /// sends it before the client's first EHLO.
    pub xclient: bool,
}

/// Who the client is, for `send_client_address`.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddress {
    pub forwarding: ClientAddressForwarding,
    /// The client's real address (after any PROXY header in).
    pub client: SocketAddr,
    /// The address the client connected to.
    pub local: SocketAddr,
}

/// Why no usable upstream connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamFailure {
    /// No server accepted a connection (F2: `421 4.4.1`).
    #[error("upstream unreachable: {0}")]
    Unreachable(SetupError),
    /// TLS was required and failed, or the upstream injected bytes (T2, T4:
    /// `421 4.7.0`).
    #[error("upstream TLS unavailable: {0}")]
    TlsUnavailable(SetupError),
}

impl UpstreamFailure {
    /// The failed attempt behind this failure (the last server tried).
    pub fn cause(&self) -> &SetupError {
        match self {
            UpstreamFailure::Unreachable(e) | UpstreamFailure::TlsUnavailable(e) => e,
        }
    }

    /// The client's greeting for this failure.
    pub fn client_reply(&self, hostname: &str) -> String {
        match self {
            UpstreamFailure::Unreachable(_) => {
                format!("421 4.4.1 {hostname} upstream unavailable, try again later\r\n")
            }
            UpstreamFailure::TlsUnavailable(_) => {
                format!("421 4.7.0 {hostname} upstream TLS unavailable, try again later\r\n")
            }
        }
    }
}

/// What went wrong with STARTTLS on one connection.
enum TlsStep {
    /// The upstream cannot do TLS on this connection; plain is possible on
    /// the same socket (no TLS byte was exchanged).
    NotOffered(SetupError, Conn, Vec<u8>, bool),
    /// The socket is unusable (TLS error, protocol error): under `may`,
    /// reconnect in plain.
    Broken(SetupError),
    /// An attack or a hard failure: never fall back.
    Abort(SetupError),
}

/// Connects to the first reachable server and sets up TLS per policy.
/// `helo` is the name of replyfix's own EHLO; `None` sends the address
/// literal of replyfix's end of the connection (RFC 5321 4.1.4).
pub async fn establish(
    servers: &[String],
    tls: &UpstreamTlsContext,
    helo: Option<&str>,
    t: SetupTimeouts,
    who: ClientAddress,
) -> Result<Established, UpstreamFailure> {
    let mut est = establish_tls(servers, tls, helo, t, who).await?;
    if who.forwarding == ClientAddressForwarding::Xclient && !est.xclient {
        tracing::warn!(upstream = %est.server, "upstream does not offer XCLIENT; it sees replyfix's address, not the client's");
    }
    est.xclient &= who.forwarding == ClientAddressForwarding::Xclient;
    Ok(est)
}

async fn establish_tls(
    servers: &[String],
    tls: &UpstreamTlsContext,
    helo_name: Option<&str>,
    t: SetupTimeouts,
    who: ClientAddress,
) -> Result<Established, UpstreamFailure> {
    let mut last = SetupError::NoServers;
    let probe = who.forwarding == ClientAddressForwarding::Xclient;
    // The TLS and EHLO exchanges below are boxed: their state (TLS
    // connector, reply buffers) is kilobytes, and the common plain path must
    // not carry it in every session's setup (a burst of connections would
    // leave that much heap behind them).
    for server in servers {
        let tcp = match connect(server, t.connect, who).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(upstream = %server, error = %e, "upstream server unreachable, trying the next");
                last = e;
                continue;
            }
        };
        if tls.policy == TlsPolicy::None && !probe {
            // No EHLO of replyfix's own: nothing more to set up.
            return Ok(plain(tcp, server, Vec::new()));
        }
        let literal = helo_name.is_none().then(|| address_literal(&tcp));
        let helo = helo_name.or(literal.as_deref()).unwrap_or("localhost");
        match tls.policy {
            TlsPolicy::None if probe => {
                let mut tcp = tcp;
                return Box::pin(probe_plain(&mut tcp, server, helo, t))
                    .await
                    .map(|(greeting, xclient)| Established {
                        xclient,
                        ..plain(tcp, server, greeting)
                    })
                    .map_err(UpstreamFailure::Unreachable);
            }
            TlsPolicy::None => return Ok(plain(tcp, server, Vec::new())),
            _ if tls.implicit => {
                let mut est = Box::pin(implicit(tcp, server, tls, t))
                    .await
                    .map_err(UpstreamFailure::TlsUnavailable)?;
                if probe && let Conn::ClientTls(stream) = &mut est.conn {
                    let (greeting, xclient) =
                        Box::pin(probe_plain(stream.as_mut(), server, helo, t))
                            .await
                            .map_err(UpstreamFailure::Unreachable)?;
                    est.greeting = greeting;
                    est.xclient = xclient;
                }
                return Ok(est);
            }
            policy => match Box::pin(starttls(tcp, server, tls, helo, t, probe)).await {
                Ok(est) => return Ok(est),
                Err(TlsStep::Abort(why)) => return Err(UpstreamFailure::TlsUnavailable(why)),
                Err(TlsStep::NotOffered(why, conn, greeting, xclient)) => {
                    if policy != TlsPolicy::May {
                        return Err(UpstreamFailure::TlsUnavailable(why));
                    }
                    tracing::info!(upstream = %server, reason = %why, "upstream TLS not available; continuing in plaintext (policy may)");
                    return Ok(Established {
                        conn,
                        server: server.clone(),
                        greeting,
                        tls: None,
                        xclient,
                    });
                }
                Err(TlsStep::Broken(why)) => {
                    if policy != TlsPolicy::May {
                        return Err(UpstreamFailure::TlsUnavailable(why));
                    }
                    tracing::warn!(upstream = %server, reason = %why, "upstream TLS failed; reconnecting in plaintext (policy may)");
                    // T6: never read plaintext from a socket that saw TLS.
                    match Box::pin(connect(server, t.connect, who)).await {
                        Ok(mut tcp) if probe => {
                            let (greeting, xclient) =
                                Box::pin(probe_plain(&mut tcp, server, helo, t))
                                    .await
                                    .map_err(UpstreamFailure::Unreachable)?;
                            return Ok(Established {
                                xclient,
                                ..plain(tcp, server, greeting)
                            });
                        }
                        Ok(tcp) => return Ok(plain(tcp, server, Vec::new())),
                        Err(e) => last = e,
                    }
                }
            },
        }
    }
    Err(UpstreamFailure::Unreachable(last))
}

fn plain(tcp: TcpStream, server: &str, greeting: Vec<u8>) -> Established {
    Established {
        conn: Conn::Plain(tcp),
        server: server.to_string(),
        greeting,
        tls: None,
        xclient: false,
    }
}

/// The address literal of replyfix's end of `tcp` (`[192.0.2.1]`,
/// `[IPv6:2001:db8::1]`): the EHLO name RFC 5321 4.1.4 asks for when the
/// host has no usable domain name.
fn address_literal(tcp: &TcpStream) -> String {
    match tcp.local_addr().map(|a| a.ip()) {
        Ok(std::net::IpAddr::V4(ip)) => format!("[{ip}]"),
        Ok(std::net::IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => format!("[{v4}]"),
            None => format!("[IPv6:{ip}]"),
        },
        Err(_) => "[127.0.0.1]".to_string(),
    }
}

/// Connects and, for `proxy-v1`/`proxy-v2`, sends the PROXY header first.
async fn connect(
    server: &str,
    connect: std::time::Duration,
    who: ClientAddress,
) -> Result<TcpStream, SetupError> {
    let mut tcp = connect_tcp(server, connect).await?;
    let header = match who.forwarding {
        ClientAddressForwarding::ProxyV1 => {
            Some(crate::proxy::encode_header(false, who.client, who.local))
        }
        ClientAddressForwarding::ProxyV2 => {
            Some(crate::proxy::encode_header(true, who.client, who.local))
        }
        _ => None,
    };
    if let Some(h) = header {
        tcp.write_all(&h).await.map_err(|source| SetupError::Io {
            server: server.to_string(),
            step: Step::ProxyHeader,
            source,
        })?;
    }
    Ok(tcp)
}

/// What the upstream said before the session core takes over: its greeting
/// and, when that was a lone `220`, its answer to replyfix's own `EHLO`.
enum Opening {
    /// The greeting was not a lone `220` (a `554` or `421`, or bytes came
    /// after it before any command): no EHLO was sent, so the core relays
    /// (or rejects) the greeting as it is.
    NoEhlo {
        greeting: Vec<u8>,
        /// The greeting's code.
        code: ReplyCode,
        /// Bytes followed the greeting before replyfix said anything.
        early_bytes: bool,
    },
    /// A `220` greeting, then replyfix's `EHLO` and the upstream's reply.
    Ehlo { greeting: Vec<u8>, reply: Reply },
}

/// Who and what an exchange is about, for its errors.
#[derive(Clone, Copy)]
struct At<'a> {
    server: &'a str,
    step: Step,
}

impl At<'_> {
    fn io(self, source: std::io::Error) -> SetupError {
        SetupError::Io {
            server: self.server.to_string(),
            step: self.step,
            source,
        }
    }

    fn unsolicited(self) -> SetupError {
        SetupError::Unsolicited {
            server: self.server.to_string(),
            step: self.step,
        }
    }
}

/// Reads the greeting and, after a lone `220`, sends replyfix's own EHLO
/// and reads its reply. The one opening exchange behind STARTTLS set-up
/// (the EHLO tells whether STARTTLS is offered) and XCLIENT discovery.
/// Returns the greeting's bytes (the client sees them) and the EHLO reply
/// (the client never sees it).
async fn greet_and_ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    parser: &mut ReplyParser,
    server: &str,
    helo: &str,
    t: SetupTimeouts,
) -> Result<Opening, SetupError> {
    let mut greeting = Vec::new();
    let at = At {
        server,
        step: Step::Greeting,
    };
    let (reply, extra) = read_reply(s, parser, &mut greeting, t.reply, at).await?;
    if extra > 0 || reply.code().get() != 220 {
        return Ok(Opening::NoEhlo {
            greeting,
            code: reply.code(),
            early_bytes: extra > 0,
        });
    }
    let reply = ehlo(
        s,
        parser,
        helo,
        t,
        At {
            server,
            step: Step::Ehlo,
        },
    )
    .await?;
    Ok(Opening::Ehlo { greeting, reply })
}

/// Sends replyfix's own `EHLO` and reads the reply; nothing may follow it.
async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    parser: &mut ReplyParser,
    helo: &str,
    t: SetupTimeouts,
    at: At<'_>,
) -> Result<Reply, SetupError> {
    s.write_all(format!("EHLO {helo}\r\n").as_bytes())
        .await
        .map_err(|e| at.io(e))?;
    let mut scratch = Vec::new();
    let (reply, extra) = read_reply(s, parser, &mut scratch, t.reply, at).await?;
    if extra > 0 {
        return Err(at.unsolicited());
    }
    Ok(reply)
}

/// True when an EHLO reply is a `250` that lists XCLIENT.
fn offers_xclient(ehlo_reply: &Reply) -> bool {
    ehlo_reply.code().get() == 250 && ehlo::has_capability(ehlo_reply, "XCLIENT")
}

/// The opening exchange on a connection that stays as it is (plain, or
/// already TLS): returns the greeting's bytes (for the client) and whether
/// the upstream offers XCLIENT.
async fn probe_plain<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    server: &str,
    helo: &str,
    t: SetupTimeouts,
) -> Result<(Vec<u8>, bool), SetupError> {
    let mut parser = ReplyParser::default();
    match greet_and_ehlo(s, &mut parser, server, helo, t).await? {
        // Let the core relay (or reject) whatever this is.
        Opening::NoEhlo { greeting, .. } => Ok((greeting, false)),
        Opening::Ehlo { greeting, reply } => Ok((greeting, offers_xclient(&reply))),
    }
}

async fn connect_tcp(server: &str, connect: Duration) -> Result<TcpStream, SetupError> {
    let attempt = async {
        let addrs =
            tokio::net::lookup_host(server)
                .await
                .map_err(|source| SetupError::Resolve {
                    server: server.to_string(),
                    source,
                })?;
        let mut err = SetupError::NoAddress {
            server: server.to_string(),
        };
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => return Ok(s),
                Err(source) => {
                    err = SetupError::Connect {
                        server: server.to_string(),
                        addr,
                        source,
                    }
                }
            }
        }
        Err(err)
    };
    match timeout(connect, attempt).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(SetupError::ConnectTimeout {
            server: server.to_string(),
            after: connect,
        }),
    }
}

async fn handshake(
    tcp: TcpStream,
    server: &str,
    tls: &UpstreamTlsContext,
    t: SetupTimeouts,
) -> Result<Conn, SetupError> {
    let Some(config) = tls.config.clone() else {
        return Err(SetupError::NoTlsConfig {
            server: server.to_string(),
        });
    };
    let Some(name) = tls.name_for(server) else {
        return Err(SetupError::NoTlsName {
            server: server.to_string(),
        });
    };
    let connector = TlsConnector::from(config);
    match timeout(t.handshake, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(Conn::ClientTls(Box::new(s))),
        Ok(Err(source)) => Err(SetupError::Handshake {
            server: server.to_string(),
            source,
        }),
        Err(_) => Err(SetupError::Timeout {
            server: server.to_string(),
            step: Step::Handshake,
            after: t.handshake,
        }),
    }
}

fn info(conn: &Conn, tls: &UpstreamTlsContext) -> Option<TlsInfo> {
    match conn {
        Conn::ClientTls(s) => Some(TlsInfo::from_common(
            s.get_ref().1,
            tls.policy == TlsPolicy::Verify,
        )),
        _ => None,
    }
}

async fn implicit(
    tcp: TcpStream,
    server: &str,
    tls: &UpstreamTlsContext,
    t: SetupTimeouts,
) -> Result<Established, SetupError> {
    let conn = handshake(tcp, server, tls, t).await?;
    let tls_info = info(&conn, tls);
    Ok(Established {
        conn,
        server: server.to_string(),
        greeting: Vec::new(),
        tls: tls_info,
        xclient: false,
    })
}

/// Reads exactly one reply; bytes after it are returned separately.
async fn read_reply<S: AsyncRead + Unpin>(
    tcp: &mut S,
    parser: &mut ReplyParser,
    raw: &mut Vec<u8>,
    wait: Duration,
    at: At<'_>,
) -> Result<(Reply, usize), SetupError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match timeout(wait, tcp.read(&mut buf)).await {
            Ok(Ok(0)) => {
                return Err(SetupError::Closed {
                    server: at.server.to_string(),
                    step: at.step,
                });
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(at.io(e)),
            Err(_) => {
                return Err(SetupError::Timeout {
                    server: at.server.to_string(),
                    step: at.step,
                    after: wait,
                });
            }
        };
        raw.extend_from_slice(&buf[..n]);
        parser
            .feed(&buf[..n], &mut out)
            .map_err(|source| SetupError::Protocol {
                server: at.server.to_string(),
                step: at.step,
                source,
            })?;
        if !out.is_empty() {
            let extra = parser.buffered() + out[1..].iter().map(|r| r.raw().len()).sum::<usize>();
            return Ok((out.swap_remove(0), extra));
        }
    }
}

/// STARTTLS on a fresh connection: the opening exchange, `STARTTLS`, the
/// handshake. With `probe_xclient` (`send_client_address: xclient`),
/// replyfix then sends `EHLO` again inside TLS and takes XCLIENT from that
/// reply (RFC 3207 section 4.2, T3); the client's own EHLO follows the
/// XCLIENT exchange as usual. Without it, the client's EHLO is the first
/// command inside TLS.
async fn starttls(
    mut tcp: TcpStream,
    server: &str,
    tls: &UpstreamTlsContext,
    helo: &str,
    t: SetupTimeouts,
    probe_xclient: bool,
) -> Result<Established, TlsStep> {
    // An upstream that says more than it was asked is never trusted again;
    // any other failure leaves only the socket unusable.
    let classify = |e: SetupError| {
        if e.is_attack() {
            TlsStep::Abort(e)
        } else {
            TlsStep::Broken(e)
        }
    };
    let mut parser = ReplyParser::default();
    let opening = greet_and_ehlo(&mut tcp, &mut parser, server, helo, t)
        .await
        .map_err(classify)?;
    let (greeting, ehlo_reply) = match opening {
        Opening::NoEhlo {
            early_bytes: true, ..
        } => {
            return Err(TlsStep::Abort(SetupError::Unsolicited {
                server: server.to_string(),
                step: Step::Greeting,
            }));
        }
        Opening::NoEhlo { greeting, code, .. } => {
            // A 554 or 421 greeting: nothing to negotiate; the client sees it.
            return Err(TlsStep::NotOffered(
                SetupError::NotGreeted {
                    server: server.to_string(),
                    code,
                },
                Conn::Plain(tcp),
                greeting,
                false,
            ));
        }
        Opening::Ehlo { greeting, reply } => (greeting, reply),
    };
    let plain_xclient = offers_xclient(&ehlo_reply);
    if ehlo_reply.code().get() != 250 || !ehlo::has_capability(&ehlo_reply, "STARTTLS") {
        return Err(TlsStep::NotOffered(
            SetupError::StartTlsNotOffered {
                server: server.to_string(),
            },
            Conn::Plain(tcp),
            greeting,
            plain_xclient,
        ));
    }
    let at = At {
        server,
        step: Step::StartTls,
    };
    tcp.write_all(b"STARTTLS\r\n")
        .await
        .map_err(|e| TlsStep::Broken(at.io(e)))?;
    let mut scratch = Vec::new();
    let (tls_reply, extra) = read_reply(&mut tcp, &mut parser, &mut scratch, t.reply, at)
        .await
        .map_err(TlsStep::Broken)?;
    match tls_reply.code().get() {
        220 if extra > 0 => {
            // T2: response injection.
            return Err(TlsStep::Abort(at.unsolicited()));
        }
        220 => {}
        454 | 502 | 503 | 504 | 500 | 501 if extra == 0 => {
            return Err(TlsStep::NotOffered(
                SetupError::StartTlsRefused {
                    server: server.to_string(),
                    code: tls_reply.code(),
                },
                Conn::Plain(tcp),
                greeting,
                plain_xclient,
            ));
        }
        _ => {
            return Err(TlsStep::Broken(SetupError::StartTlsOdd {
                server: server.to_string(),
                code: tls_reply.code(),
            }));
        }
    }
    let mut conn = handshake(tcp, server, tls, t)
        .await
        .map_err(TlsStep::Broken)?;
    let tls_info = info(&conn, tls);
    let mut xclient = false;
    if probe_xclient && let Conn::ClientTls(stream) = &mut conn {
        // T3: what the plaintext EHLO reply offered is forgotten; XCLIENT
        // counts only if the reply to an EHLO inside TLS offers it.
        let at = At {
            server,
            step: Step::EhloAfterTls,
        };
        let reply = ehlo(stream.as_mut(), &mut ReplyParser::default(), helo, t, at)
            .await
            .map_err(classify)?;
        xclient = offers_xclient(&reply);
    }
    Ok(Established {
        conn,
        server: server.to_string(),
        greeting,
        tls: tls_info,
        xclient,
    })
}

#[cfg(test)]
mod tests;
