//! Why setting up an upstream connection failed: typed leaves that name the
//! server and the step, and keep their cause, so the log line that reports
//! the failure says what happened where (docs/protocol.md F2, T2, T4).
//!
//! These are upstream-side errors only; which reply the client gets is
//! [`super::UpstreamFailure`]'s decision, never decided by matching text.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::smtp::{ReplyCode, ReplyError};

/// The exchange an upstream error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Sending the PROXY protocol header.
    ProxyHeader,
    /// Waiting for the greeting.
    Greeting,
    /// replyfix's own `EHLO` (to learn STARTTLS and XCLIENT).
    Ehlo,
    /// `STARTTLS` and its reply.
    StartTls,
    /// The TLS handshake.
    Handshake,
    /// replyfix's `EHLO` again inside TLS (T3).
    EhloAfterTls,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::ProxyHeader => "sending the PROXY header",
            Step::Greeting => "the greeting",
            Step::Ehlo => "replyfix's EHLO",
            Step::StartTls => "STARTTLS",
            Step::Handshake => "the TLS handshake",
            Step::EhloAfterTls => "replyfix's EHLO after STARTTLS",
        })
    }
}

/// One failed attempt at one upstream server.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The upstream has no servers.
    #[error("no servers configured")]
    NoServers,
    /// The server's name did not resolve.
    #[error("{server}: cannot resolve: {source}")]
    Resolve { server: String, source: io::Error },
    /// The name resolved to no address.
    #[error("{server}: the name has no address")]
    NoAddress { server: String },
    /// Every address refused or failed; the last one's error.
    #[error("{server} ({addr}): {source}")]
    Connect {
        server: String,
        addr: SocketAddr,
        source: io::Error,
    },
    /// No connection within `timeouts.upstream_connect`.
    #[error("{server}: connect timed out after {after:?}")]
    ConnectTimeout { server: String, after: Duration },
    /// Reading or writing failed.
    #[error("{server}: {step}: {source}")]
    Io {
        server: String,
        step: Step,
        source: io::Error,
    },
    /// The upstream closed the connection.
    #[error("{server}: the upstream closed the connection during {step}")]
    Closed { server: String, step: Step },
    /// No reply within `timeouts.upstream_reply` (or `tls_handshake`).
    #[error("{server}: no answer within {after:?} during {step}")]
    Timeout {
        server: String,
        step: Step,
        after: Duration,
    },
    /// The reply broke the SMTP grammar (P2).
    #[error("{server}: upstream protocol error during {step}: {source}")]
    Protocol {
        server: String,
        step: Step,
        source: ReplyError,
    },
    /// The upstream sent more than was asked for: after its greeting before
    /// any command, after its EHLO reply, or after its `220` to STARTTLS
    /// (response injection, T2). Never trusted, never retried in plaintext.
    #[error("{server}: the upstream sent bytes after its reply during {step} (response injection)")]
    Unsolicited { server: String, step: Step },
    /// A greeting other than `220` (`554`, `421`): nothing to negotiate.
    #[error("{server}: greeting {code}")]
    NotGreeted { server: String, code: ReplyCode },
    /// The EHLO reply does not list STARTTLS.
    #[error("{server}: the upstream does not offer STARTTLS")]
    StartTlsNotOffered { server: String },
    /// STARTTLS was refused with a reply that keeps the session usable.
    #[error("{server}: the upstream refused STARTTLS with {code}")]
    StartTlsRefused { server: String, code: ReplyCode },
    /// STARTTLS got an answer that leaves the session in doubt.
    #[error("{server}: the upstream answered STARTTLS with {code}")]
    StartTlsOdd { server: String, code: ReplyCode },
    /// The upstream's TLS context is missing (a configuration bug).
    #[error("{server}: no TLS configuration for this upstream")]
    NoTlsConfig { server: String },
    /// No name to send as SNI and to verify.
    #[error("{server}: no valid name for TLS (set tls.server_name)")]
    NoTlsName { server: String },
    /// The TLS handshake failed (certificate, protocol, alert).
    #[error("{server}: TLS handshake failed: {source}")]
    Handshake { server: String, source: io::Error },
}

impl SetupError {
    /// True when a deadline ran out (connect, reply or handshake).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            SetupError::ConnectTimeout { .. } | SetupError::Timeout { .. }
        )
    }

    /// True when the upstream misbehaved on purpose or by bug (response
    /// injection, a broken reply): never fall back to plaintext.
    pub fn is_attack(&self) -> bool {
        matches!(self, SetupError::Unsolicited { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_names_its_server_and_step() {
        let e = SetupError::Timeout {
            server: "mx.example.net:25".into(),
            step: Step::StartTls,
            after: Duration::from_secs(5),
        };
        assert_eq!(
            e.to_string(),
            "mx.example.net:25: no answer within 5s during STARTTLS"
        );
        assert!(e.is_timeout());
        let e = SetupError::Unsolicited {
            server: "mx:25".into(),
            step: Step::StartTls,
        };
        assert!(e.is_attack() && !e.is_timeout());
        assert!(e.to_string().contains("response injection"));
    }

    #[test]
    fn io_errors_keep_their_cause() {
        use std::error::Error as _;
        let e = SetupError::Io {
            server: "mx:25".into(),
            step: Step::ProxyHeader,
            source: io::Error::new(io::ErrorKind::BrokenPipe, "pipe"),
        };
        let cause = e.source().expect("cause kept");
        assert_eq!(cause.to_string(), "pipe");
    }
}
