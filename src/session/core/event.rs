//! What the session core reports to its driver: events to log and count,
//! and why a session ended.
//!
//! Events never carry SASL data (L1) or message content (L2); addresses
//! travel raw and the driver shows them per `log_addresses` (L3).

use std::sync::Arc;

use bytes::Bytes;

use crate::smtp::{CommandKind, Reply};

/// Why a session ended (for the session log line and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The client sent QUIT (and got its reply, or closed without
    /// waiting for it).
    Quit,
    /// The client closed the connection.
    ClientClosed,
    /// The upstream could not be reached (F2).
    UpstreamUnavailable,
    /// The upstream closed or reset the connection (F2).
    UpstreamLost,
    /// The upstream sent `421` (P3).
    UpstreamClosing,
    /// The upstream did not answer in time (F2, F3).
    UpstreamTimeout,
    /// Upstream TLS was required and failed, or was attacked (T2, T4).
    UpstreamTls,
    /// The upstream broke the reply grammar or the pairing (P2).
    UpstreamDesync,
    /// The client was idle too long (F3).
    ClientTimeout,
    /// The client broke the protocol (D4, D5, R4).
    ClientProtocol,
    /// Too many error replies (R4).
    TooManyErrors,
    /// Bare CR/LF/NUL in message content under `reject` (D2).
    BareLineEnding,
    /// A replyfix internal error (F4).
    Internal,
    /// Service shutdown (F6).
    Shutdown,
}

impl EndReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::Quit => "quit",
            EndReason::ClientClosed => "client_closed",
            EndReason::UpstreamUnavailable => "upstream_unavailable",
            EndReason::UpstreamLost => "upstream_lost",
            EndReason::UpstreamClosing => "upstream_421",
            EndReason::UpstreamTimeout => "upstream_timeout",
            EndReason::UpstreamTls => "upstream_tls_unavailable",
            EndReason::UpstreamDesync => "upstream_desync",
            EndReason::ClientTimeout => "client_timeout",
            EndReason::ClientProtocol => "client_protocol_error",
            EndReason::TooManyErrors => "too_many_errors",
            EndReason::BareLineEnding => "bare_line_ending",
            EndReason::Internal => "internal_error",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// Something the driver logs or counts; never carries SASL data or content.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A rule rewrote a reply (or would have, in shadow mode): W5. Boxed:
    /// events are many and this one is rare and large.
    Rewrite(Box<Rewrite>),
    /// A rule matched and kept the reply.
    Kept {
        context: CommandKind,
        rule: Arc<str>,
    },
    /// The upstream's final reply to an end of data never came, or the
    /// connection broke after the end was sent: the message may have been
    /// delivered although the client was told to retry (F2).
    PossibleDuplicate,
    /// The upstream broke the protocol; the reason is escaped text.
    UpstreamProtocolError(String),
    /// The client broke the protocol; the reason is escaped text.
    ClientProtocolError(String),
    /// AUTH finished: mechanism (escaped, capped) and whether it succeeded.
    Auth { mechanism: String, success: bool },
    /// A transaction ended with the upstream's reply to its end of data.
    Transaction { accepted: bool, recipients: u32 },
    /// The upstream answered a command (for metrics: context and code).
    Reply { context: CommandKind, code: u16 },
    /// The upstream demanded TLS (RFC 3207 `530`, RFC 4954 `538`) while
    /// replyfix's own leg to it is plaintext: only the operator can fix it
    /// (the upstream's `tls.policy`). Reported once per session.
    UpstreamDemandsTls { context: CommandKind },
    /// A judged reply for the transcript (only with `record`): context,
    /// facts, replies and verdict; never SASL data, content or addresses.
    Transcript(Box<crate::transcript::TranscriptEntry>),
}

/// One rewrite, as logged (W5) and counted.
#[derive(Clone, Debug, PartialEq)]
pub struct Rewrite {
    pub context: CommandKind,
    /// The MAIL or RCPT address the reply answered, raw (the driver formats
    /// it per `log_addresses`, L3).
    pub address: Option<Bytes>,
    pub rule: Arc<str>,
    pub rules_version: Arc<str>,
    pub original: Reply,
    pub new: Reply,
    pub shadow: bool,
}
