//! The session core's state: the client phase (one enum, D4, P4, T1) and
//! the FIFO of outstanding commands that pairs each upstream reply with the
//! command it answers (P1).

use bytes::Bytes;

use super::EndReason;
use crate::smtp::CommandKind;
use crate::smtp::framing::{ChunkCounter, DataScanner, EndOfDataSkipper};

/// What the client's bytes mean right now. One enum, not a set of flags.
#[derive(Debug)]
pub(super) enum Phase {
    /// Waiting for the upstream greeting; client input is a violation (R4).
    Greeting,
    /// Reading command lines.
    Command,
    /// `DATA` forwarded; nothing is forwarded until its reply (D4). The
    /// client is still read (one read at most), so input that arrives
    /// before the reply is seen and refused whatever the reply is.
    DataGate,
    /// After `354`: message content, streamed (D1–D3, D6).
    Content { scanner: DataScanner, size: u64 },
    /// Content is no longer forwarded; read the client to its real end of
    /// data, then answer with `reply` and close (D2 reject, size, F2).
    Drain {
        skipper: EndOfDataSkipper,
        read: u64,
        reply: &'static str,
        reason: EndReason,
    },
    /// `AUTH` (or a SASL line) forwarded; wait for its reply (P4).
    AuthGate,
    /// After `334`: the next client line is SASL data (P4).
    Sasl,
    /// `BDAT n`: n opaque octets to forward (D5), or to read and drop when
    /// replyfix refused the BDAT itself (`forward` false).
    Chunk { chunk: ChunkCounter, forward: bool },
    /// STARTTLS accepted: nothing more is read in plaintext; the driver
    /// hands the raw stream to the TLS acceptor (T1).
    TlsGate,
    /// XCLIENT sent before the client's first EHLO; wait for its reply.
    XclientGate,
    /// Nothing more is read; the session is ending.
    Closing,
}

/// An outstanding command: the context its reply will be judged in, or a
/// reply replyfix itself owes the client once earlier replies are out.
#[derive(Debug)]
pub(super) enum Pending {
    Upstream(Outstanding),
    Local(Bytes),
    /// The client's STARTTLS, answered once every earlier reply is out (T1).
    StartTls,
}

#[derive(Debug, Clone)]
pub(super) struct Outstanding {
    pub(super) kind: CommandKind,
    /// For BDAT: this chunk carries LAST.
    pub(super) last_chunk: bool,
    /// The reply is owed to nobody (replyfix's own QUIT upstream).
    pub(super) silent: bool,
    /// For MAIL and RCPT: the envelope address, for the rewrite log (L3).
    pub(super) address: Option<Bytes>,
    /// For replyfix's XCLIENT: the client's EHLO/HELO line, forwarded once
    /// the XCLIENT reply is in.
    pub(super) deferred: Option<Bytes>,
}

/// How the driver should wait for the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamWait {
    /// No reply outstanding.
    Idle,
    /// A command reply (or the greeting) is outstanding.
    Reply,
    /// The reply to an end of data is outstanding (F3: longer).
    DataEnd,
}
