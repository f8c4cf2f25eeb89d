//! The relay state machine for one SMTP session: bytes in, actions out.
//!
//! [`Core`] owns the client phase, the FIFO of outstanding commands (P1), the
//! session facts the rules see, and the two output buffers. It never touches
//! a socket, a clock or a task: the async driver in `session/mod.rs` feeds it
//! what it read ([`Core::client_data`], [`Core::upstream_data`]), tells it
//! about ends and deadlines, writes [`Core::take_to_upstream`] and
//! [`Core::take_to_client`], and logs the [`Event`]s. Everything here is
//! therefore testable with byte scripts, without sockets or sleeps.
//!
//! What it must never do: forward a byte the client sent after `DATA` before
//! the upstream's `354` (D4), forward a bare CR/LF/NUL in message content
//! (D2), give the client a success the upstream did not give (F1), log or
//! judge SASL data (P4, L1), or shift the pairing of replies (P2).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::{Buf, Bytes, BytesMut};

use crate::config::{BareLineEndings, Mode};
use crate::rules::{RuleSet, SessionFacts, Verdict};
use crate::smtp::command::{Command, classify};
use crate::smtp::ehlo;
use crate::smtp::framing::{DataScan, DataScanner, EndOfDataSkipper, LineFramer};
use crate::smtp::{CommandKind, Reply, ReplyLimits, ReplyParser};

/// What the core needs to know of its listener, upstream and limits.
#[derive(Clone, Debug)]
pub struct CoreSettings {
    /// Name replyfix uses in its own replies.
    pub hostname: String,
    pub listener: String,
    pub upstream: String,
    pub client: Option<IpAddr>,
    pub mode: Mode,
    pub bare_line_endings: BareLineEndings,
    /// Longest command line (R1).
    pub max_command_line: usize,
    /// Longest SASL line (P4).
    pub max_sasl_line: usize,
    /// Outstanding commands before the core stops reading the client (R1, R2).
    pub max_pipeline: usize,
    /// Error replies before `421 4.7.0 too many errors` (R4).
    pub max_errors: u32,
    /// Largest message content, when set.
    pub max_message_size: Option<u64>,
    /// Bound on what the core reads from a client whose content it no longer
    /// forwards (D2 reject, F2 drain).
    pub max_drain: u64,
    pub reply_limits: ReplyLimits,
    /// A certificate is configured: STARTTLS can be offered (T1).
    pub tls_offered: bool,
    /// Commands other than EHLO/HELO/STARTTLS/NOOP/RSET/QUIT need TLS first
    /// (T5).
    pub require_tls: bool,
    /// Emit [`Event::Transcript`] for every judged reply (for `replay`).
    pub record: bool,
    /// The session id, for transcript entries.
    pub session_id: String,
}

impl CoreSettings {
    /// Defaults suitable for tests: limits as in the default configuration.
    pub fn for_tests() -> Self {
        CoreSettings {
            hostname: "replyfix.test".into(),
            listener: "default".into(),
            upstream: "default".into(),
            client: None,
            mode: Mode::Enforce,
            bare_line_endings: BareLineEndings::Reject,
            max_command_line: 2048,
            max_sasl_line: 12288,
            max_pipeline: 100,
            max_errors: 20,
            max_message_size: None,
            max_drain: 64 * 1024 * 1024,
            reply_limits: ReplyLimits::default(),
            tls_offered: false,
            require_tls: false,
            record: false,
            session_id: String::new(),
        }
    }
}

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
    /// A judged reply for the transcript (only with `record`): context,
    /// facts, replies and verdict; never SASL data, content or addresses.
    Transcript(Box<crate::explain::transcript::TranscriptEntry>),
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

/// What the client's bytes mean right now. One enum, not a set of flags.
#[derive(Debug)]
enum Phase {
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
    Chunk { remaining: u64, forward: bool },
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
enum Pending {
    Upstream(Outstanding),
    Local(Bytes),
    /// The client's STARTTLS, answered once every earlier reply is out (T1).
    StartTls,
}

#[derive(Debug, Clone)]
struct Outstanding {
    kind: CommandKind,
    /// For BDAT: this chunk carries LAST.
    last_chunk: bool,
    /// The reply is owed to nobody (replyfix's own QUIT upstream).
    silent: bool,
    /// For MAIL and RCPT: the envelope address, for the rewrite log (L3).
    address: Option<Bytes>,
    /// For replyfix's XCLIENT: the client's EHLO/HELO line, forwarded once
    /// the XCLIENT reply is in.
    deferred: Option<Bytes>,
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

/// The relay state machine. See the module documentation.
pub struct Core {
    /// Shared by every session of a listener; the per-session facts are
    /// the two fields below.
    settings: Arc<CoreSettings>,
    client: Option<IpAddr>,
    /// Only kept when transcripts are recorded.
    session_id: String,
    rules_source: Arc<ArcSwap<RuleSet>>,
    /// Rules for the current transaction (F5: one version from MAIL to end).
    rules: Arc<RuleSet>,
    phase: Phase,
    pending: VecDeque<Pending>,
    client_buf: BytesMut,
    framer: LineFramer,
    replies: ReplyParser,
    to_client: BytesMut,
    to_upstream: BytesMut,
    events: Vec<Event>,
    // Session facts.
    client_tls: bool,
    upstream_tls: bool,
    upstream_verified: bool,
    /// After a TLS upgrade the client must EHLO again (T3).
    need_ehlo: bool,
    /// The driver must start the client-leg handshake now.
    start_client_tls: bool,
    /// `send_client_address: xclient`, not yet sent: the client's address.
    xclient: Option<std::net::SocketAddr>,
    authenticated: bool,
    /// The client's QUIT was read (and forwarded).
    quit_read: bool,
    /// The EHLO reply the client last saw advertised CHUNKING (D5): only
    /// then is a BDAT forwarded.
    chunking: bool,
    in_transaction: bool,
    recipients_accepted: u32,
    auth_mechanism: Option<String>,
    errors: u32,
    // Ending.
    end: Option<EndReason>,
    close_upstream: bool,
    upstream_gone: bool,
    /// Set when the session must end once the outstanding replies are out.
    close_after_pending: Option<EndReason>,
    // Counters for the session log line.
    pub transactions: u32,
    pub rewrites: u32,
}

impl Core {
    /// A session whose upstream connection is being set up; its greeting is
    /// the first reply expected.
    pub fn new(settings: impl Into<Arc<CoreSettings>>, rules: Arc<ArcSwap<RuleSet>>) -> Core {
        let settings = settings.into();
        let framer = LineFramer::new((settings.max_sasl_line + 2).max(settings.max_command_line));
        let replies = ReplyParser::new(settings.reply_limits);
        let current = rules.load_full();
        // Buffers start empty and grow with use: an idle session is small
        // (one outstanding command until the client pipelines).
        let mut pending = VecDeque::with_capacity(1);
        pending.push_back(Pending::Upstream(Outstanding {
            kind: CommandKind::Greeting,
            last_chunk: false,
            silent: false,
            address: None,
            deferred: None,
        }));
        Core {
            client: settings.client,
            session_id: if settings.record {
                settings.session_id.clone()
            } else {
                String::new()
            },
            settings,
            rules_source: rules,
            rules: current,
            phase: Phase::Greeting,
            pending,
            client_buf: BytesMut::new(),
            framer,
            replies,
            to_client: BytesMut::new(),
            to_upstream: BytesMut::new(),
            events: Vec::new(),
            client_tls: false,
            upstream_tls: false,
            upstream_verified: false,
            need_ehlo: false,
            start_client_tls: false,
            xclient: None,
            authenticated: false,
            quit_read: false,
            chunking: false,
            in_transaction: false,
            recipients_accepted: 0,
            auth_mechanism: None,
            errors: 0,
            end: None,
            close_upstream: false,
            upstream_gone: false,
            close_after_pending: None,
            transactions: 0,
            rewrites: 0,
        }
    }

    // ----- what the driver reads back -----

    /// The session's own facts: the client's address (for rules) and its
    /// id (for transcripts).
    pub fn set_session(&mut self, client: IpAddr, id: &str) {
        self.client = Some(client);
        if self.settings.record {
            self.session_id = id.to_string();
        }
    }

    /// Bytes waiting for the client, to write in place (then
    /// [`Core::consume_to_client`]): no copy, no shared buffer.
    pub fn to_client(&self) -> &[u8] {
        &self.to_client
    }

    /// The bytes of [`Core::to_client`] are written (or can never be).
    pub fn consume_to_client(&mut self) {
        self.to_client.clear();
    }

    /// Bytes waiting for the upstream, to write in place (then
    /// [`Core::consume_to_upstream`]).
    pub fn to_upstream(&self) -> &[u8] {
        &self.to_upstream
    }

    /// The bytes of [`Core::to_upstream`] are written (or can never be).
    pub fn consume_to_upstream(&mut self) {
        self.to_upstream.clear();
    }

    /// Outside message content, gives back buffers that a large transfer
    /// grew, so a session waiting between transactions stays small (R2).
    /// The driver calls it before it waits.
    pub fn release_idle_buffers(&mut self) {
        const KEEP: usize = 4096;
        if self.in_content() {
            return;
        }
        for buf in [
            &mut self.to_client,
            &mut self.to_upstream,
            &mut self.client_buf,
        ] {
            if buf.is_empty() && buf.capacity() > KEEP {
                *buf = BytesMut::new();
            }
        }
        if self.events.is_empty() && self.events.capacity() > 0 {
            self.events = Vec::new();
        }
        if self.pending.is_empty() && self.pending.capacity() > 4 {
            self.pending.shrink_to(1);
        }
    }

    /// Bytes to write to the client (all of them, before reading more).
    pub fn take_to_client(&mut self) -> BytesMut {
        self.to_client.split()
    }

    /// Bytes to write to the upstream.
    pub fn take_to_upstream(&mut self) -> BytesMut {
        self.to_upstream.split()
    }

    /// Bytes waiting for the client.
    pub fn has_output(&self) -> bool {
        !self.to_client.is_empty() || !self.to_upstream.is_empty()
    }

    /// Events to log, in order.
    pub fn take_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Set once the session must end: flush [`Core::take_to_client`], then
    /// close both sides.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end
    }

    /// True when the upstream connection must be closed now (without an end
    /// of data: the upstream then drops the transaction, D2/T6).
    pub fn upstream_must_close(&self) -> bool {
        self.close_upstream
    }

    /// Whether the driver should read from the client now (DATA and AUTH
    /// gates, pipeline bound, backpressure R2).
    pub fn wants_client_input(&self) -> bool {
        match self.phase {
            // D4: one read, to see input that arrives before the reply to
            // DATA; none of it is forwarded.
            Phase::DataGate => self.client_buf.is_empty(),
            Phase::AuthGate | Phase::TlsGate | Phase::XclientGate | Phase::Closing => false,
            Phase::Command | Phase::Sasl => {
                self.upstream_outstanding() < self.settings.max_pipeline
                    && self.client_buf.len() < self.settings.max_sasl_line + 2
            }
            Phase::Greeting | Phase::Content { .. } | Phase::Drain { .. } | Phase::Chunk { .. } => {
                true
            }
        }
    }

    /// What the driver is waiting for from the upstream (chooses the timeout).
    pub fn upstream_wait(&self) -> UpstreamWait {
        let mut wait = UpstreamWait::Idle;
        for p in &self.pending {
            if let Pending::Upstream(o) = p {
                if o.kind == CommandKind::DataEnd {
                    return UpstreamWait::DataEnd;
                }
                wait = UpstreamWait::Reply;
            }
        }
        wait
    }

    /// True while part of a command line (or SASL line) has arrived and its
    /// end has not: the driver's whole-command deadline runs (R3).
    pub fn has_partial_line(&self) -> bool {
        // Complete lines waiting behind the pipeline bound are not a slow
        // client: the upstream's reply deadline covers that wait.
        matches!(self.phase, Phase::Command | Phase::Sasl)
            && !self.client_buf.is_empty()
            && memchr::memchr(b'\n', &self.client_buf).is_none()
    }

    /// True while a message is being transferred (content or a BDAT chunk):
    /// the driver applies the minimum data rate then.
    pub fn in_content(&self) -> bool {
        matches!(self.phase, Phase::Content { .. } | Phase::Chunk { .. })
    }

    /// True when no transaction is open and nothing is outstanding: a good
    /// moment to close for shutdown (F6).
    pub fn is_between_transactions(&self) -> bool {
        matches!(self.phase, Phase::Command)
            && !self.in_transaction
            && self.pending.is_empty()
            && self.client_buf.is_empty()
    }

    /// The client leg is TLS from the first byte (implicit TLS listener).
    pub fn set_client_tls_implicit(&mut self) {
        self.client_tls = true;
    }

    /// The upstream offers XCLIENT and the configuration asks for it: the
    /// client's first EHLO/HELO is preceded by `XCLIENT ADDR=.. PORT=..`.
    pub fn set_xclient(&mut self, client: std::net::SocketAddr) {
        self.xclient = Some(client);
    }

    /// The upstream leg's TLS, set up by the driver before the greeting.
    pub fn set_upstream_tls(&mut self, tls: bool, verified: bool) {
        self.upstream_tls = tls;
        self.upstream_verified = tls && verified;
    }

    /// True once: the `220` to STARTTLS has been queued for the client and
    /// the driver must hand the raw stream to the TLS acceptor after
    /// writing it (T1).
    pub fn take_start_client_tls(&mut self) -> bool {
        std::mem::take(&mut self.start_client_tls)
    }

    /// The client-leg handshake succeeded: forget the plaintext session
    /// state; the client must EHLO again (T3).
    pub fn client_tls_established(&mut self) {
        self.client_tls = true;
        self.need_ehlo = true;
        self.authenticated = false;
        self.chunking = false;
        self.end_transaction();
        if matches!(self.phase, Phase::TlsGate) {
            self.phase = Phase::Command;
        }
    }

    /// The client-leg handshake failed: the connection is finished (T6).
    pub fn client_tls_failed(&mut self) {
        self.client_violation_quiet(EndReason::ClientProtocol);
    }

    pub fn client_tls(&self) -> bool {
        self.client_tls
    }

    /// Facts for the session log line.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// AUTH for the session log line: `none`, or the mechanism and outcome
    /// (L1: never more).
    pub fn auth_summary(&self) -> String {
        match (&self.auth_mechanism, self.authenticated) {
            (None, _) => "none".into(),
            (Some(m), true) => format!("{m} ok"),
            (Some(m), false) => format!("{m} failed"),
        }
    }

    /// A replyfix bug (a panic in this core, caught by the driver): the
    /// client gets `451 4.3.0` and the session ends; the upstream is closed
    /// without an end of data (F4).
    pub fn internal_error(&mut self) {
        self.to_upstream.clear();
        self.to_client.clear();
        self.pending.clear();
        self.to_client
            .extend_from_slice(b"451 4.3.0 internal error, try again later\r\n");
        self.close_upstream = true;
        self.upstream_gone = true;
        self.end = None;
        self.finish(EndReason::Internal);
    }

    fn upstream_outstanding(&self) -> usize {
        self.pending.len()
    }

    // ----- inputs -----

    /// Bytes read from the client.
    pub fn client_data(&mut self, data: &[u8]) {
        if self.end.is_some() {
            return;
        }
        if let Phase::Greeting = self.phase {
            // R4: a client that talks before the greeting is not an SMTP
            // client following the protocol (or is a spam bot).
            self.client_violation(
                "554 5.5.0 Error: SMTP protocol synchronization\r\n",
                "input before the greeting",
            );
            return;
        }
        if self.client_buf.is_empty() && matches!(self.phase, Phase::Content { .. }) {
            // Message content goes from the read buffer straight to the
            // upstream buffer (one copy, not two); only what follows the end
            // of data is kept.
            let consumed = self.content(data);
            self.client_buf.extend_from_slice(&data[consumed..]);
        } else {
            self.client_buf.extend_from_slice(data);
        }
        self.process_client();
    }

    /// Scans message content (D1-D3, D6) into the upstream buffer; returns
    /// how many bytes of `input` it consumed (all of them unless the end of
    /// data or a bare byte was found).
    fn content(&mut self, input: &[u8]) -> usize {
        let Phase::Content { scanner, size } = &mut self.phase else {
            return 0;
        };
        let sanitize = self.settings.bare_line_endings == BareLineEndings::Sanitize;
        let before = self.to_upstream.len();
        let scan = scanner.scan(input, sanitize, &mut self.to_upstream);
        *size += (self.to_upstream.len() - before) as u64;
        let too_big = self
            .settings
            .max_message_size
            .is_some_and(|max| *size > max);
        match scan {
            DataScan::More if too_big => {
                let skipper = scanner.skipper();
                self.abort_content(
                    skipper,
                    "552 5.3.4 Error: message size exceeds fixed limit\r\n",
                    EndReason::ClientProtocol,
                );
                input.len()
            }
            DataScan::More => input.len(),
            DataScan::End { consumed } => {
                if too_big {
                    // The end was forwarded with the content; the upstream
                    // may have accepted: drop instead.
                    self.to_upstream.truncate(before);
                    self.close_upstream = true;
                    self.upstream_gone = true;
                    self.pending.clear();
                    self.to_client.extend_from_slice(
                        b"552 5.3.4 Error: message size exceeds fixed limit\r\n",
                    );
                    self.finish(EndReason::ClientProtocol);
                    return consumed;
                }
                self.push_upstream(CommandKind::DataEnd, false);
                self.phase = Phase::Command;
                consumed
            }
            DataScan::Bare { at, byte } => {
                // D2 reject: stop forwarding; close upstream without an end
                // of data; read to the real end.
                self.events.push(Event::ClientProtocolError(format!(
                    "bare {byte:?} in message content"
                )));
                self.abort_content(
                    EndOfDataSkipper::new(false),
                    "550 5.5.2 Error: bare <CR>/<LF>/<NUL> in message content\r\n",
                    EndReason::BareLineEnding,
                );
                at
            }
        }
    }

    /// The client closed its side (or the connection broke).
    pub fn client_eof(&mut self) {
        if self.end.is_some() {
            return;
        }
        // The upstream sees what the client did: a close, no QUIT of
        // replyfix's own. Content in progress is never ended for the client:
        // closing without an end of data makes the upstream drop it.
        if !self.upstream_gone {
            self.close_upstream = true;
        }
        // A client that sent QUIT and closed without waiting for the 221
        // (Postfix's `smtp_skip_quit_response`) ended the session properly.
        let reason = if self.quit_read {
            EndReason::Quit
        } else {
            EndReason::ClientClosed
        };
        self.finish(reason);
    }

    /// The upstream could not be reached: F2.
    pub fn upstream_unavailable(&mut self) {
        self.pending.clear();
        self.to_client.extend_from_slice(
            format!(
                "421 4.4.1 {} upstream unavailable, try again later\r\n",
                self.settings.hostname
            )
            .as_bytes(),
        );
        self.upstream_gone = true;
        self.finish(EndReason::UpstreamUnavailable);
    }

    /// The client was idle past its deadline (F3).
    pub fn client_timeout(&mut self) {
        if self.end.is_none() {
            let reply = format!(
                "421 4.4.2 {} Error: timeout exceeded\r\n",
                self.settings.hostname
            );
            self.close_with(&reply, EndReason::ClientTimeout);
        }
    }

    /// The service is shutting down (F6): tell the client, close.
    pub fn shutdown(&mut self) {
        if self.end.is_none() {
            self.flush_pending_with(None);
            let reply = format!(
                "421 4.3.2 {} service shutting down\r\n",
                self.settings.hostname
            );
            self.close_with(&reply, EndReason::Shutdown);
        }
    }

    /// Sends `reply` (replyfix's own, complete with CRLF), leaves the
    /// upstream, and ends the session.
    fn close_with(&mut self, reply: &str, reason: EndReason) {
        self.to_client.extend_from_slice(reply.as_bytes());
        self.leave_upstream();
        self.finish(reason);
    }

    /// Ends the upstream side: `QUIT` when it waits for a command and owes
    /// no reply; otherwise a close without an end of data, so an open
    /// transaction is dropped there (D2, T6). Never `QUIT` inside content.
    fn leave_upstream(&mut self) {
        if self.upstream_gone {
            return;
        }
        if self.phase_is_command() && self.pending.is_empty() {
            self.to_upstream.extend_from_slice(b"QUIT\r\n");
        } else {
            self.close_upstream = true;
        }
    }

    /// No upstream reply within its deadline (F2, F3).
    pub fn upstream_timeout(&mut self) {
        if self.end.is_some() {
            return;
        }
        let wait = self.upstream_wait();
        self.close_upstream = true;
        self.upstream_gone = true;
        let host = self.settings.hostname.clone();
        if wait == UpstreamWait::DataEnd {
            self.events.push(Event::PossibleDuplicate);
            let reply = format!("451 4.4.1 {host} no answer from upstream after end of data\r\n");
            self.flush_pending_with(Some(reply.as_bytes()));
        } else {
            let reply = format!("421 4.4.1 {host} upstream did not answer, try again later\r\n");
            self.answer_oldest_then_close(reply.as_bytes());
        }
        self.finish(EndReason::UpstreamTimeout);
    }

    /// The upstream closed or reset the connection (F2).
    pub fn upstream_eof(&mut self) {
        if self.end.is_some() || self.upstream_gone {
            return;
        }
        self.upstream_gone = true;
        let host = self.settings.hostname.clone();
        match &self.phase {
            Phase::Greeting => {
                self.pending.clear();
                self.to_client.extend_from_slice(
                    format!("421 4.4.1 {host} upstream unavailable, try again later\r\n")
                        .as_bytes(),
                );
                self.finish(EndReason::UpstreamUnavailable);
            }
            Phase::Content { scanner, .. } => {
                // F2: mid-DATA, drain the client to its end of data.
                let skipper = scanner.skipper();
                self.pending.clear();
                self.phase = Phase::Drain {
                    skipper,
                    read: 0,
                    reply: "451 4.4.2 upstream connection lost\r\n",
                    reason: EndReason::UpstreamLost,
                };
            }
            _ => {
                if self.upstream_wait() == UpstreamWait::DataEnd {
                    self.events.push(Event::PossibleDuplicate);
                    let reply = format!("451 4.4.2 {host} upstream connection lost\r\n");
                    self.flush_pending_with(Some(reply.as_bytes()));
                } else {
                    let reply = format!("421 4.4.2 {host} upstream connection lost\r\n");
                    self.answer_oldest_then_close(reply.as_bytes());
                }
                self.finish(EndReason::UpstreamLost);
            }
        }
    }

    /// Bytes read from the upstream.
    pub fn upstream_data(&mut self, data: &[u8]) {
        if self.end.is_some() || self.upstream_gone {
            return;
        }
        // A local list: an idle session keeps no reply list allocated.
        let mut replies = Vec::new();
        let result = self.replies.feed(data, &mut replies);
        for reply in replies.drain(..) {
            if self.end.is_some() || self.upstream_gone {
                break;
            }
            self.on_reply(reply);
        }
        if let Err(e) = result
            && self.end.is_none()
            && !self.upstream_gone
        {
            self.upstream_desync(&crate::smtp::escape::escape(e.to_string().as_bytes()));
        }
        // Replies may have opened the client side again (354, 334, gates).
        if self.end.is_none() {
            self.process_client();
        }
    }

    // ----- client side -----

    fn phase_is_command(&self) -> bool {
        matches!(self.phase, Phase::Command)
    }

    /// Consumes as much of the client buffer as the phase allows.
    fn process_client(&mut self) {
        loop {
            if self.end.is_some() || self.client_buf.is_empty() {
                return;
            }
            match &mut self.phase {
                Phase::Greeting
                | Phase::DataGate
                | Phase::AuthGate
                | Phase::TlsGate
                | Phase::XclientGate
                | Phase::Closing => return,
                Phase::Command => {
                    if self.upstream_outstanding() >= self.settings.max_pipeline {
                        return; // R2: wait for replies before reading more.
                    }
                    match self.framer.next_line(&mut self.client_buf) {
                        None => return,
                        Some(Err(_)) => {
                            self.local_error(b"500 5.5.2 Error: line too long\r\n");
                        }
                        Some(Ok(line)) => self.on_command(line),
                    }
                }
                Phase::Sasl => match self.framer.next_line(&mut self.client_buf) {
                    None => return,
                    Some(Err(_)) => {
                        // The SASL exchange is broken; the upstream still
                        // waits for a line: cancel it for the client.
                        self.forward_sasl(b"*");
                        self.count_error();
                    }
                    Some(Ok(line)) => self.forward_sasl(&line),
                },
                Phase::Content { .. } => {
                    let input = std::mem::take(&mut self.client_buf);
                    let consumed = self.content(&input);
                    self.client_buf = input;
                    self.client_buf.advance(consumed);
                }
                Phase::Drain {
                    skipper,
                    read,
                    reply,
                    reason,
                } => {
                    let (reply, reason) = (*reply, *reason);
                    match skipper.skip(&self.client_buf) {
                        Some(consumed) => {
                            let _ = self.client_buf.split_to(consumed);
                            self.to_client.extend_from_slice(reply.as_bytes());
                            self.finish(reason);
                        }
                        None => {
                            *read += self.client_buf.len() as u64;
                            self.client_buf.clear();
                            if *read > self.settings.max_drain {
                                self.to_client.extend_from_slice(reply.as_bytes());
                                self.finish(reason);
                            }
                        }
                    }
                    return;
                }
                Phase::Chunk { remaining, forward } => {
                    let n = (*remaining).min(self.client_buf.len() as u64) as usize;
                    let chunk = self.client_buf.split_to(n);
                    if *forward {
                        self.to_upstream.extend_from_slice(&chunk);
                    }
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.phase = Phase::Command;
                    }
                }
            }
        }
    }

    /// Stops forwarding content: the upstream is closed without an end of
    /// data (so it drops the transaction) and the client is read to its end.
    fn abort_content(&mut self, skipper: EndOfDataSkipper, reply: &'static str, reason: EndReason) {
        self.close_upstream = true;
        self.upstream_gone = true;
        self.pending.clear();
        self.phase = Phase::Drain {
            skipper,
            read: 0,
            reply,
            reason,
        };
        // Bytes still buffered belong to the drain.
    }

    fn on_command(&mut self, line: Bytes) {
        if line.len() + 2 > self.settings.max_command_line {
            self.local_error(b"500 5.5.2 Error: line too long\r\n");
            return;
        }
        let command = classify(&line);
        match command {
            Command::Http => {
                self.client_violation(
                    "502 5.5.1 Error: command not recognized\r\n",
                    "HTTP request on an SMTP port",
                );
            }
            Command::Starttls => self.on_starttls(),
            _ if self.require_tls_first(&command) => {
                // T5: the legitimate 530; it never meets the rules.
                self.local_error(b"530 5.7.0 Must issue a STARTTLS command first\r\n");
            }
            _ if self.need_ehlo
                && !matches!(
                    command,
                    Command::Ehlo | Command::Helo | Command::Quit | Command::Noop | Command::Rset
                ) =>
            {
                // T3: after TLS, the client starts again with EHLO.
                self.local_error(b"503 5.5.1 Error: send EHLO/HELO first\r\n");
            }
            Command::Ehlo | Command::Helo => {
                self.need_ehlo = false;
                if let Some(client) = self.xclient.take() {
                    // The upstream learns the real client first; its reply
                    // (a fresh 220) is for replyfix alone.
                    let helo = line.splitn(2, |&b| b == b' ').nth(1).unwrap_or(b"");
                    let esmtp = matches!(command, Command::Ehlo);
                    let xclient = crate::proxy::xclient_line(client, helo, esmtp);
                    self.to_upstream.extend_from_slice(&xclient);
                    self.pending.push_back(Pending::Upstream(Outstanding {
                        kind: CommandKind::Other,
                        last_chunk: false,
                        silent: true,
                        address: None,
                        deferred: Some(line),
                    }));
                    self.phase = Phase::XclientGate;
                    return;
                }
                self.forward_line(&line);
                self.push_upstream(command.kind(), false);
            }
            Command::BdatMalformed => {
                self.client_violation(
                    "521 5.5.4 Syntax: BDAT count [LAST]\r\n",
                    "malformed BDAT count",
                );
            }
            Command::Bdat { size, .. } if !self.chunking => {
                // D4, D5: an upstream that did not offer CHUNKING would read
                // the chunk's octets as commands. replyfix answers the BDAT
                // itself and reads the chunk to keep the client in step.
                self.local_error(b"502 5.5.1 Error: BDAT without CHUNKING\r\n");
                if size > 0 {
                    self.phase = Phase::Chunk {
                        remaining: size,
                        forward: false,
                    };
                }
            }
            Command::Bdat { size, last } => {
                self.forward_line(&line);
                self.push_upstream(CommandKind::Bdat, last);
                if size > 0 {
                    self.phase = Phase::Chunk {
                        remaining: size,
                        forward: true,
                    };
                }
            }
            Command::Data => {
                self.forward_line(&line);
                self.push_upstream(CommandKind::Data, false);
                self.phase = Phase::DataGate;
            }
            Command::Auth { mechanism, .. } => {
                self.auth_mechanism =
                    Some(crate::smtp::escape::escape_capped(mechanism, 32).to_ascii_uppercase());
                self.forward_line(&line);
                self.push_upstream(CommandKind::Auth, false);
                self.phase = Phase::AuthGate;
            }
            Command::Mail => {
                if !self.in_transaction {
                    // F5: the transaction uses the rules current at MAIL.
                    self.rules = self.rules_source.load_full();
                }
                self.forward_line(&line);
                self.push_outstanding(CommandKind::Mail, false, envelope_address(&line));
            }
            Command::Rcpt => {
                self.forward_line(&line);
                self.push_outstanding(CommandKind::Rcpt, false, envelope_address(&line));
            }
            other => {
                self.quit_read |= matches!(other, Command::Quit);
                self.forward_line(&line);
                self.push_upstream(other.kind(), false);
            }
        }
    }

    /// T5: on a listener that requires TLS, only these commands are
    /// allowed before it.
    fn require_tls_first(&self, command: &Command<'_>) -> bool {
        self.settings.require_tls
            && !self.client_tls
            && !matches!(
                command,
                Command::Ehlo
                    | Command::Helo
                    | Command::Starttls
                    | Command::Noop
                    | Command::Rset
                    | Command::Quit
            )
    }

    /// The client's STARTTLS (T1, T5). It is never forwarded: replyfix
    /// terminates the client leg itself, or the proxy would go blind.
    fn on_starttls(&mut self) {
        if self.client_tls {
            self.local_error(b"554 5.5.1 Error: TLS already active\r\n");
        } else if !self.settings.tls_offered {
            self.local_error(b"454 4.7.0 TLS not available\r\n");
        } else {
            self.phase = Phase::TlsGate;
            if self.pending.is_empty() {
                self.begin_starttls();
            } else {
                // Earlier pipelined replies go out first.
                self.pending.push_back(Pending::StartTls);
            }
        }
    }

    /// Every earlier reply is out: answer `220` and let the driver hand the
    /// raw stream to the acceptor. Bytes already waiting after the
    /// STARTTLS line are command injection (T1, CVE-2011-0411): close.
    fn begin_starttls(&mut self) {
        if !self.client_buf.is_empty() {
            self.client_buf.clear();
            self.events.push(Event::ClientProtocolError(
                "bytes after STARTTLS before the TLS handshake (command injection)".into(),
            ));
            self.client_violation_quiet(EndReason::ClientProtocol);
            return;
        }
        self.to_client
            .extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
        self.start_client_tls = true;
    }

    /// Ends the session without a reply to the client.
    fn client_violation_quiet(&mut self, reason: EndReason) {
        self.leave_upstream();
        self.finish(reason);
    }

    fn forward_line(&mut self, line: &[u8]) {
        // A command line always goes out with CRLF, whatever the client used.
        self.to_upstream.extend_from_slice(line);
        self.to_upstream.extend_from_slice(b"\r\n");
    }

    fn forward_sasl(&mut self, line: &[u8]) {
        // P4, L1: SASL data is forwarded and nothing else: never logged,
        // never judged.
        self.forward_line(line);
        self.push_upstream(CommandKind::Auth, false);
        self.phase = Phase::AuthGate;
    }

    fn push_upstream(&mut self, kind: CommandKind, last_chunk: bool) {
        self.push_outstanding(kind, last_chunk, None);
    }

    fn push_outstanding(&mut self, kind: CommandKind, last_chunk: bool, address: Option<Bytes>) {
        self.pending.push_back(Pending::Upstream(Outstanding {
            kind,
            last_chunk,
            silent: false,
            address,
            deferred: None,
        }));
    }

    /// A reply replyfix owes the client, sent after every earlier reply.
    fn local_reply(&mut self, reply: &[u8]) {
        if self.pending.is_empty() {
            self.to_client.extend_from_slice(reply);
        } else {
            self.pending
                .push_back(Pending::Local(Bytes::copy_from_slice(reply)));
        }
    }

    /// A local error reply, counted towards R4's limit.
    fn local_error(&mut self, reply: &[u8]) {
        self.local_reply(reply);
        self.count_error();
    }

    fn count_error(&mut self) {
        self.errors += 1;
        if self.errors >= self.settings.max_errors && self.end.is_none() {
            self.error_limit_reached();
        }
    }

    /// The client broke the protocol: answer after earlier replies, close.
    fn client_violation(&mut self, reply: &str, why: &str) {
        self.events
            .push(Event::ClientProtocolError(why.to_string()));
        if self.pending.is_empty() || matches!(self.phase, Phase::Greeting) {
            self.to_client.extend_from_slice(reply.as_bytes());
            self.close_upstream = true;
            self.finish(EndReason::ClientProtocol);
        } else {
            self.pending
                .push_back(Pending::Local(Bytes::copy_from_slice(reply.as_bytes())));
            self.close_after(EndReason::ClientProtocol);
        }
    }

    /// Stops reading the client; the session ends once every outstanding
    /// reply has been sent.
    fn close_after(&mut self, reason: EndReason) {
        self.close_after_pending.get_or_insert(reason);
        self.phase = Phase::Closing;
    }

    fn stop_reading_and_quit(&mut self, reason: EndReason) {
        self.leave_upstream();
        self.finish(reason);
    }

    fn finish(&mut self, reason: EndReason) {
        if self.end.is_none() {
            self.end = Some(reason);
        }
        self.phase = Phase::Closing;
    }

    // ----- upstream side -----

    fn on_reply(&mut self, reply: Reply) {
        self.emit_front_locals();
        let front = match self.pending.pop_front() {
            Some(Pending::Upstream(o)) => o,
            Some(Pending::Local(_) | Pending::StartTls) => {
                unreachable!("emit_front_locals emptied the front")
            }
            None => {
                // P3: an unsolicited 421 is relayed, then both sides close.
                if reply.code().get() == 421 {
                    self.to_client.extend_from_slice(reply.raw());
                    self.close_upstream = true;
                    self.finish(EndReason::UpstreamClosing);
                } else {
                    self.upstream_desync("reply with no command outstanding");
                }
                return;
            }
        };
        if front.silent {
            if let Some(line) = front.deferred {
                if reply.code().get() != 220 {
                    self.events.push(Event::UpstreamProtocolError(format!(
                        "XCLIENT refused: {}",
                        crate::smtp::escape::escape_capped(reply.raw(), 200)
                    )));
                }
                let kind = classify(&line).kind();
                self.forward_line(&line);
                self.push_upstream(kind, false);
                if matches!(self.phase, Phase::XclientGate) {
                    self.phase = Phase::Command;
                }
            }
            self.flush_local();
            return;
        }
        let code = reply.code().get();
        if code == 421 {
            // P3: relayed as the reply to the oldest outstanding command.
            self.to_client.extend_from_slice(reply.raw());
            self.pending.clear();
            self.close_upstream = true;
            self.upstream_gone = true;
            self.finish(EndReason::UpstreamClosing);
            return;
        }
        if front.kind == CommandKind::Data && !self.client_buf.is_empty() {
            self.early_input_after_data(code);
            return;
        }
        self.events.push(Event::Reply {
            context: front.kind,
            code,
        });
        let to_send = self.judge_and_edit(&front, reply);
        self.to_client.extend_from_slice(to_send.raw());
        if matches!(front.kind, CommandKind::Ehlo | CommandKind::Helo) {
            // D5: BDAT is relayed only after an EHLO reply that offered
            // CHUNKING, as the client saw it.
            self.chunking = front.kind == CommandKind::Ehlo
                && code == 250
                && ehlo::has_capability(&to_send, "CHUNKING");
        }
        // R4: the upstream's replies, rewritten or not, never count towards
        // the error limit; the upstream keeps its own.
        self.after_reply(front, code);
        self.flush_local();
    }

    /// D4: the client sent input before the upstream answered `DATA`. It is
    /// a synchronisation error whatever the answer: after a `354` it must not
    /// become content, after a refusal it must not become commands. The
    /// client gets `554 5.5.0` in place of the reply; nothing of its input
    /// reaches the upstream. An upstream waiting for content is closed
    /// without an end of data (it drops the transaction); one that refused
    /// gets `QUIT`.
    fn early_input_after_data(&mut self, code: u16) {
        self.events.push(Event::ClientProtocolError(format!(
            "input before the reply to DATA (upstream answered {code})"
        )));
        self.client_buf.clear();
        self.to_client
            .extend_from_slice(b"554 5.5.0 Error: SMTP protocol synchronization\r\n");
        // Replies still owed to commands before DATA were sent already (the
        // FIFO is in order); nothing can be outstanding after DATA.
        self.pending.clear();
        if code == 354 {
            self.close_upstream = true;
            self.upstream_gone = true;
        } else {
            self.phase = Phase::Command;
            self.leave_upstream();
        }
        self.finish(EndReason::ClientProtocol);
    }

    /// R4: too many error replies; `421 4.7.0` after the outstanding ones.
    fn error_limit_reached(&mut self) {
        if self.close_after_pending.is_some() || self.end.is_some() {
            return;
        }
        let text = format!(
            "421 4.7.0 {} Error: too many errors\r\n",
            self.settings.hostname
        );
        self.local_reply(text.as_bytes());
        if self.pending.is_empty() {
            self.stop_reading_and_quit(EndReason::TooManyErrors);
        } else {
            self.close_after(EndReason::TooManyErrors);
        }
    }

    /// Applies the rules (and the EHLO capability edit) to one reply.
    fn judge_and_edit(&mut self, front: &Outstanding, reply: Reply) -> Reply {
        let kind = front.kind;
        if matches!(kind, CommandKind::Ehlo) && reply.code().get() == 250 {
            return self.edit_ehlo(&reply).unwrap_or(reply);
        }
        let facts = SessionFacts {
            command: kind,
            client_tls: self.client_tls,
            upstream_tls: self.upstream_tls,
            authenticated: self.authenticated,
            recipients_accepted: self.recipients_accepted,
            client: self.client,
            listener: &self.settings.listener,
            upstream: &self.settings.upstream,
        };
        let verdict = self.rules.judge(&reply, &facts);
        if self.settings.record {
            use crate::explain::transcript::TranscriptEntry;
            let mut entry = TranscriptEntry::new(
                &self.session_id,
                &facts,
                &reply,
                &verdict,
                self.rules.version(),
            );
            if self.settings.mode == Mode::Shadow {
                entry = entry.with_sent(&reply);
            }
            self.events.push(Event::Transcript(Box::new(entry)));
        }
        match verdict {
            Verdict::NoMatch => reply,
            Verdict::Keep { rule } => {
                self.events.push(Event::Kept {
                    context: kind,
                    rule,
                });
                reply
            }
            Verdict::Rewrite {
                rule, reply: new, ..
            } => {
                let shadow = self.settings.mode == Mode::Shadow;
                self.rewrites += 1;
                let version: Arc<str> = Arc::from(self.rules.version());
                self.events.push(Event::Rewrite(Box::new(Rewrite {
                    context: kind,
                    address: front.address.clone(),
                    rule,
                    rules_version: version,
                    original: reply.clone(),
                    new: new.clone(),
                    shadow,
                })));
                if shadow { reply } else { new }
            }
        }
    }

    /// Edits the capability lines of an EHLO reply: STARTTLS offered iff the
    /// client leg can still upgrade; REQUIRETLS only over a verified
    /// upstream leg (T7); AUTH hidden until TLS where TLS is required (T5).
    fn edit_ehlo(&self, reply: &Reply) -> Option<Reply> {
        let hide_auth = self.settings.require_tls && !self.client_tls;
        let verified = self.upstream_verified;
        let drop = |k: &[u8]| {
            always_dropped(k) || (k == b"REQUIRETLS" && !verified) || (k == b"AUTH" && hide_auth)
        };
        let offer = self.settings.tls_offered && !self.client_tls;
        let add: &[&[u8]] = if offer { &[b"STARTTLS"] } else { &[] };
        ehlo::edit(reply, drop, add)
    }

    /// Session and transaction state that a reply changes.
    fn after_reply(&mut self, front: Outstanding, code: u16) {
        let ok = (200..300).contains(&code);
        match front.kind {
            CommandKind::Greeting => {
                self.phase = Phase::Command;
            }
            CommandKind::Ehlo | CommandKind::Helo | CommandKind::Rset if ok => {
                self.end_transaction();
            }
            CommandKind::Mail if ok => {
                self.in_transaction = true;
                self.recipients_accepted = 0;
            }
            CommandKind::Rcpt if ok => {
                self.recipients_accepted += 1;
            }
            CommandKind::Data => {
                if matches!(self.phase, Phase::DataGate) {
                    self.phase = if code == 354 {
                        Phase::Content {
                            scanner: DataScanner::new(),
                            size: 0,
                        }
                    } else {
                        Phase::Command
                    };
                }
            }
            CommandKind::DataEnd => self.transaction_done(ok),
            CommandKind::Bdat if front.last_chunk => self.transaction_done(ok),
            CommandKind::Auth => {
                if code == 334 {
                    if matches!(self.phase, Phase::AuthGate) {
                        self.phase = Phase::Sasl;
                    }
                } else {
                    let success = code == 235;
                    if success {
                        self.authenticated = true;
                    }
                    self.events.push(Event::Auth {
                        mechanism: self.auth_mechanism.clone().unwrap_or_default(),
                        success,
                    });
                    if matches!(self.phase, Phase::AuthGate) {
                        self.phase = Phase::Command;
                    }
                }
            }
            CommandKind::Quit => {
                self.upstream_gone = true;
                self.finish(EndReason::Quit);
            }
            _ => {}
        }
    }

    /// The upstream answered an end of data (or a `BDAT LAST`).
    fn transaction_done(&mut self, accepted: bool) {
        self.events.push(Event::Transaction {
            accepted,
            recipients: self.recipients_accepted,
        });
        self.transactions += 1;
        self.end_transaction();
    }

    fn end_transaction(&mut self) {
        self.in_transaction = false;
        self.recipients_accepted = 0;
    }

    /// Sends the local replies now at the front of the FIFO.
    fn emit_front_locals(&mut self) {
        loop {
            match self.pending.front() {
                Some(Pending::Local(_)) => {
                    if let Some(Pending::Local(bytes)) = self.pending.pop_front() {
                        self.to_client.extend_from_slice(&bytes);
                    }
                }
                Some(Pending::StartTls) => {
                    self.pending.pop_front();
                    self.begin_starttls();
                }
                _ => return,
            }
        }
    }

    /// Sends the local replies now at the front of the FIFO, and ends the
    /// session if it was only waiting for them.
    fn flush_local(&mut self) {
        self.emit_front_locals();
        if self.pending.is_empty()
            && self.end.is_none()
            && let Some(reason) = self.close_after_pending.take()
        {
            self.stop_reading_and_quit(reason);
        }
    }

    /// P2: the upstream is out of step. Every outstanding command gets
    /// `451 4.5.0`, local replies keep their place, then both sides close.
    fn upstream_desync(&mut self, why: &str) {
        self.events
            .push(Event::UpstreamProtocolError(why.to_string()));
        self.flush_pending_with(Some(b"451 4.5.0 upstream protocol error\r\n"));
        self.close_upstream = true;
        self.upstream_gone = true;
        self.finish(EndReason::UpstreamDesync);
    }

    /// Answers every outstanding command: upstream-bound ones with `reply`
    /// (or nothing when `None`), local ones with their own reply.
    fn flush_pending_with(&mut self, reply: Option<&[u8]>) {
        while let Some(p) = self.pending.pop_front() {
            match p {
                Pending::Local(bytes) => self.to_client.extend_from_slice(&bytes),
                Pending::Upstream(o) if !o.silent => {
                    if let Some(r) = reply {
                        self.to_client.extend_from_slice(r);
                    }
                }
                Pending::Upstream(_) | Pending::StartTls => {}
            }
        }
    }

    /// Answers the oldest outstanding command (or, with none, the client's
    /// next one) with `reply`, and ends the session.
    fn answer_oldest_then_close(&mut self, reply: &[u8]) {
        while let Some(Pending::Local(bytes)) = self.pending.pop_front() {
            self.to_client.extend_from_slice(&bytes);
        }
        self.to_client.extend_from_slice(reply);
        self.pending.clear();
    }
}

/// The address between `<` and `>` of a MAIL or RCPT line, if any.
fn envelope_address(line: &[u8]) -> Option<Bytes> {
    let start = line.iter().position(|&b| b == b'<')? + 1;
    let len = line[start..].iter().position(|&b| b == b'>')?;
    Some(Bytes::copy_from_slice(&line[start..start + len]))
}

/// Capabilities replyfix always removes from the upstream's EHLO reply:
/// STARTTLS (replyfix handles each leg's TLS itself, T1) and XCLIENT/XFORWARD
/// (they let a client claim another address to a relay that trusts
/// replyfix).
fn always_dropped(keyword: &[u8]) -> bool {
    matches!(keyword, b"STARTTLS" | b"XCLIENT" | b"XFORWARD")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core driven by byte scripts, with what it sent on each side.
    struct Script {
        core: Core,
        client_got: Vec<u8>,
        upstream_got: Vec<u8>,
        events: Vec<Event>,
    }

    impl Script {
        fn new() -> Self {
            Script::with(CoreSettings::for_tests())
        }

        fn with(settings: CoreSettings) -> Self {
            // Compiling the built-in rules once keeps the split-at-every-byte
            // tests fast.
            static BUILTIN: std::sync::OnceLock<Arc<RuleSet>> = std::sync::OnceLock::new();
            let rules = BUILTIN.get_or_init(|| Arc::new(RuleSet::builtin())).clone();
            let rules = Arc::new(ArcSwap::new(rules));
            Script {
                core: Core::new(settings, rules),
                client_got: Vec::new(),
                upstream_got: Vec::new(),
                events: Vec::new(),
            }
        }

        /// A session past the greeting and EHLO.
        fn ready() -> Self {
            let mut s = Script::new();
            s.upstream(b"220 up.example ESMTP\r\n");
            s.client(b"EHLO c.example\r\n");
            s.upstream(b"250-up.example\r\n250-PIPELINING\r\n250 CHUNKING\r\n");
            s.take();
            s
        }

        fn collect(&mut self) {
            self.client_got
                .extend_from_slice(&self.core.take_to_client());
            self.upstream_got
                .extend_from_slice(&self.core.take_to_upstream());
            self.events.extend(self.core.take_events());
        }

        fn client(&mut self, b: &[u8]) {
            self.core.client_data(b);
            self.collect();
        }

        fn upstream(&mut self, b: &[u8]) {
            self.core.upstream_data(b);
            self.collect();
        }

        /// What each side got since the last call, as (client, upstream).
        fn take(&mut self) -> (String, String) {
            let c = String::from_utf8_lossy(&std::mem::take(&mut self.client_got)).into_owned();
            let u = String::from_utf8_lossy(&std::mem::take(&mut self.upstream_got)).into_owned();
            (c, u)
        }

        fn rewrites(&self) -> usize {
            self.events
                .iter()
                .filter(|e| matches!(e, Event::Rewrite(_)))
                .count()
        }
    }

    #[test]
    fn greeting_and_ehlo_pass_through_byte_exact() {
        let mut s = Script::new();
        s.upstream(b"220 up.example ESMTP ready\r\n");
        assert_eq!(s.take().0, "220 up.example ESMTP ready\r\n");
        s.client(b"EHLO c.example\r\n");
        assert_eq!(s.take().1, "EHLO c.example\r\n");
        s.upstream(b"250-up.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
        assert_eq!(
            s.take().0,
            "250-up.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
    }

    #[test]
    fn ehlo_reply_loses_starttls_and_xclient_t1() {
        let mut s = Script::new();
        s.upstream(b"220 up\r\n");
        s.client(b"EHLO c\r\n");
        s.take();
        s.upstream(b"250-up\r\n250-STARTTLS\r\n250-XCLIENT NAME ADDR\r\n250-REQUIRETLS\r\n250 SIZE 1000\r\n");
        assert_eq!(s.take().0, "250-up\r\n250 SIZE 1000\r\n");
    }

    #[test]
    fn input_before_greeting_is_refused_r4() {
        let mut s = Script::new();
        s.client(b"EHLO early\r\n");
        let (c, u) = s.take();
        assert_eq!(c, "554 5.5.0 Error: SMTP protocol synchronization\r\n");
        assert_eq!(u, "");
        assert_eq!(s.core.end_reason(), Some(EndReason::ClientProtocol));
    }

    #[test]
    fn pipelined_rcpt_replies_keep_order_and_context_p1() {
        let mut s = Script::ready();
        s.client(
            b"MAIL FROM:<a@x>\r\nRCPT TO:<ok@y>\r\nRCPT TO:<typo@y>\r\nRCPT TO:<b@y>\r\nDATA\r\n",
        );
        assert_eq!(
            s.take().1,
            "MAIL FROM:<a@x>\r\nRCPT TO:<ok@y>\r\nRCPT TO:<typo@y>\r\nRCPT TO:<b@y>\r\nDATA\r\n"
        );
        // D4: the client is read (to see early input) but nothing goes on.
        s.client(b"");
        assert_eq!(s.take().1, "", "nothing forwarded before the reply to DATA");
        s.upstream(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n530 5.7.1 User unknown in virtual mailbox table\r\n250 2.1.5 ok\r\n354 go\r\n");
        let (c, _) = s.take();
        assert_eq!(
            c,
            "250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 User unknown in virtual mailbox table\r\n250 2.1.5 ok\r\n354 go\r\n"
        );
        assert_eq!(s.rewrites(), 1);
        assert!(s.core.wants_client_input());
    }

    #[test]
    fn same_530_at_mail_is_not_judged_as_rcpt_p1() {
        let mut s = Script::ready();
        s.client(b"MAIL FROM:<a@x>\r\n");
        s.upstream(b"530 5.7.0 Must issue a STARTTLS command first\r\n");
        let (c, _) = s.take();
        assert!(c.starts_with("530"), "{c}");
    }

    #[test]
    fn shadow_mode_sends_the_original_and_reports_the_rewrite() {
        let mut settings = CoreSettings::for_tests();
        settings.mode = Mode::Shadow;
        let mut s = Script::with(settings);
        s.upstream(b"220 up\r\n");
        s.client(b"MAIL FROM:<a@x>\r\nRCPT TO:<typo@y>\r\n");
        s.take();
        s.upstream(b"250 ok\r\n530 5.7.1 User unknown\r\n");
        assert_eq!(s.take().0, "250 ok\r\n530 5.7.1 User unknown\r\n");
        assert!(s.events.iter().any(|e| matches!(
            e,
            Event::Rewrite(r) if r.shadow && r.address.as_deref() == Some(&b"typo@y"[..])
        )));
    }

    fn content_session() -> Script {
        let mut s = Script::ready();
        s.client(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        s.upstream(b"250 ok\r\n250 ok\r\n354 go\r\n");
        s.take();
        s
    }

    #[test]
    fn content_streams_byte_exact_and_end_is_judged_as_data_end_d1() {
        let mut s = content_session();
        s.client(b"Subject: x\r\n\r\n..dot-stuffed\r\nbody");
        assert_eq!(s.take().1, "Subject: x\r\n\r\n..dot-stuffed\r\nbody");
        s.client(b"\r\n.\r\nQUIT\r\n");
        assert_eq!(s.take().1, "\r\n.\r\nQUIT\r\n");
        s.upstream(b"530 5.7.1 Your server is blacklisted\r\n221 bye\r\n");
        let (c, _) = s.take();
        assert!(c.starts_with("554 5.7.1 "), "{c}");
        assert!(c.ends_with("221 bye\r\n"));
        assert_eq!(s.core.end_reason(), Some(EndReason::Quit));
    }

    fn no_bare_bytes(data: &[u8]) -> bool {
        data.iter().enumerate().all(|(i, &b)| match b {
            0 => false,
            b'\r' => data.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && data[i - 1] == b'\r',
            _ => true,
        })
    }

    #[test]
    fn end_of_data_variants_are_never_an_end_whole_and_split_d1_d2() {
        for sanitize in [false, true] {
            for (_, variant) in crate::smtp::framing::NOT_END_OF_DATA {
                let mut msg = b"Subject: t\r\n\r\nline".to_vec();
                msg.extend_from_slice(variant);
                msg.extend_from_slice(b"MAIL FROM:<smuggled@x>\r\nRCPT TO:<v@y>\r\nDATA\r\n");
                for split in 0..=msg.len() {
                    let mut settings = CoreSettings::for_tests();
                    if sanitize {
                        settings.bare_line_endings = BareLineEndings::Sanitize;
                    }
                    let mut s = Script::with(settings);
                    s.upstream(b"220 up\r\n");
                    s.client(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
                    s.upstream(b"250 ok\r\n250 ok\r\n354 go\r\n");
                    s.take();
                    s.client(&msg[..split]);
                    s.client(&msg[split..]);
                    let (_, up) = s.take();
                    assert!(
                        no_bare_bytes(up.as_bytes()),
                        "bare byte forwarded: variant {variant:?} split {split} sanitize {sanitize}"
                    );
                    assert!(
                        !s.core.pending.iter().any(
                            |p| matches!(p, Pending::Upstream(o) if o.kind == CommandKind::DataEnd)
                        ),
                        "variant {variant:?} split {split} ended the data"
                    );
                    if !sanitize {
                        assert!(s.core.upstream_must_close(), "reject closes the upstream");
                        // The client is read to its real end, then answered.
                        s.client(b"\r\n.\r\n");
                        assert_eq!(
                            s.take().0,
                            "550 5.5.2 Error: bare <CR>/<LF>/<NUL> in message content\r\n"
                        );
                        assert_eq!(s.core.end_reason(), Some(EndReason::BareLineEnding));
                    } else {
                        s.client(b"\r\n.\r\n");
                        let (_, up) = s.take();
                        assert!(up.ends_with("\r\n.\r\n"));
                        assert!(s.core.upstream_wait() == UpstreamWait::DataEnd);
                    }
                }
            }
        }
    }

    #[test]
    fn content_before_354_is_a_synchronisation_error_d4() {
        let mut s = Script::ready();
        s.client(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nSubject: early\r\n");
        let (_, up) = s.take();
        assert_eq!(up, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        s.upstream(b"250 ok\r\n250 ok\r\n354 go\r\n");
        let (c, up) = s.take();
        assert_eq!(
            c,
            "250 ok\r\n250 ok\r\n554 5.5.0 Error: SMTP protocol synchronization\r\n"
        );
        assert_eq!(up, "");
        assert!(s.core.upstream_must_close());
    }

    #[test]
    fn bdat_chunks_pass_opaque_and_pipelined_d5() {
        let mut s = Script::ready();
        s.client(
            b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 7\r\n\r\n.\r\nxyBDAT 3 LAST\r\nabcQUIT\r\n",
        );
        assert_eq!(
            s.take().1,
            "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nBDAT 7\r\n\r\n.\r\nxyBDAT 3 LAST\r\nabcQUIT\r\n"
        );
        s.upstream(b"250 ok\r\n250 ok\r\n250 2.0.0 7 octets\r\n250 2.0.0 queued\r\n221 bye\r\n");
        assert_eq!(s.core.transactions, 1);
        assert_eq!(s.core.end_reason(), Some(EndReason::Quit));
    }

    #[test]
    fn bdat_chunk_split_across_reads_d5() {
        let mut s = Script::ready();
        s.client(b"BDAT 10 LAST\r\n0123");
        s.client(b"456789RSET\r\n");
        assert_eq!(s.take().1, "BDAT 10 LAST\r\n0123456789RSET\r\n");
    }

    #[test]
    fn malformed_bdat_count_gets_521_and_close_d5() {
        let mut s = Script::ready();
        s.client(b"BDAT 12x\r\n");
        let (c, up) = s.take();
        assert_eq!(c, "521 5.5.4 Syntax: BDAT count [LAST]\r\n");
        assert_eq!(up, "");
        assert!(s.core.end_reason().is_some());
    }

    #[test]
    fn sasl_lines_are_forwarded_and_never_reported_p4_l1() {
        let mut s = Script::ready();
        s.client(b"AUTH LOGIN\r\n");
        assert!(!s.core.wants_client_input());
        s.upstream(b"334 VXNlcm5hbWU6\r\n");
        s.client(b"c2VjcmV0dXNlcg==\r\n");
        s.upstream(b"334 UGFzc3dvcmQ6\r\n");
        s.client(b"c2VjcmV0cGFzcw==\r\n");
        s.upstream(b"235 2.7.0 ok\r\n");
        let (c, up) = s.take();
        assert_eq!(up, "AUTH LOGIN\r\nc2VjcmV0dXNlcg==\r\nc2VjcmV0cGFzcw==\r\n");
        assert_eq!(
            c,
            "334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 ok\r\n"
        );
        assert!(s.core.authenticated());
        let dump = format!("{:?}", s.events);
        assert!(!dump.contains("c2VjcmV0"), "{dump}");
        assert!(s.events.contains(&Event::Auth {
            mechanism: "LOGIN".into(),
            success: true
        }));
    }

    #[test]
    fn a_530_after_auth_is_not_authentication_required() {
        let mut s = Script::ready();
        s.client(b"AUTH PLAIN AGEAYg==\r\n");
        s.upstream(b"235 ok\r\n");
        s.client(b"MAIL FROM:<a@x>\r\n");
        s.upstream(b"530 5.7.0 Authentication required\r\n");
        let (c, _) = s.take();
        assert!(c.contains("554 5.7.1"), "{c}");
    }

    #[test]
    fn garbage_from_upstream_answers_each_outstanding_command_p2() {
        let mut s = Script::ready();
        s.client(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\n");
        s.take();
        s.upstream(b"250 ok\r\nHTTP/1.1 400 Bad\r\n");
        let (c, _) = s.take();
        assert_eq!(
            c,
            "250 ok\r\n451 4.5.0 upstream protocol error\r\n451 4.5.0 upstream protocol error\r\n"
        );
        assert_eq!(s.core.end_reason(), Some(EndReason::UpstreamDesync));
    }

    #[test]
    fn reply_with_no_command_outstanding_is_a_desync_p2() {
        let mut s = Script::ready();
        s.upstream(b"250 surprise\r\n");
        assert_eq!(s.core.end_reason(), Some(EndReason::UpstreamDesync));
    }

    #[test]
    fn unsolicited_421_is_relayed_then_closed_p3() {
        let mut s = Script::ready();
        s.upstream(b"421 4.3.2 shutting down\r\n");
        assert_eq!(s.take().0, "421 4.3.2 shutting down\r\n");
        assert_eq!(s.core.end_reason(), Some(EndReason::UpstreamClosing));
    }

    #[test]
    fn starttls_is_answered_locally_in_order() {
        let mut s = Script::ready();
        s.client(b"NOOP\r\nSTARTTLS\r\n");
        let (c, up) = s.take();
        assert_eq!(up, "NOOP\r\n");
        assert_eq!(c, "");
        s.upstream(b"250 ok\r\n");
        assert_eq!(s.take().0, "250 ok\r\n454 4.7.0 TLS not available\r\n");
    }

    #[test]
    fn http_request_is_refused_r4() {
        let mut s = Script::ready();
        s.client(b"GET / HTTP/1.1\r\n");
        assert_eq!(s.take().0, "502 5.5.1 Error: command not recognized\r\n");
        assert!(s.core.end_reason().is_some());
    }

    #[test]
    fn too_many_errors_end_the_session_r4() {
        let mut settings = CoreSettings::for_tests();
        settings.max_errors = 3;
        let mut s = Script::with(settings);
        s.upstream(b"220 up\r\n");
        // replyfix's own error replies count (no TLS configured: 454).
        for _ in 0..3 {
            s.client(b"STARTTLS\r\n");
        }
        let (c, up) = s.take();
        assert!(
            c.ends_with("421 4.7.0 replyfix.test Error: too many errors\r\n"),
            "{c}"
        );
        assert!(up.ends_with("QUIT\r\n"));
        assert_eq!(s.core.end_reason(), Some(EndReason::TooManyErrors));
    }

    #[test]
    fn upstream_error_replies_never_count_towards_the_error_limit_r4() {
        // A bulk sender pipelines 5,000 RCPTs; the upstream takes 1,000 and
        // answers 452 to the rest (RFC 5321 4.5.3.1.8), and 550 to some.
        // None of it is replyfix's error: no 421, every reply relayed.
        let mut settings = CoreSettings::for_tests();
        settings.max_errors = 3;
        settings.max_pipeline = 10_000;
        let mut s = Script::with(settings);
        s.upstream(b"220 up\r\n");
        s.client(b"EHLO c\r\n");
        s.upstream(b"250 up\r\n");
        s.client(b"MAIL FROM:<bulk@x>\r\n");
        s.upstream(b"250 ok\r\n");
        s.take();
        let mut batch = Vec::new();
        let mut replies = Vec::new();
        for i in 0..5_000 {
            batch.extend_from_slice(format!("RCPT TO:<u{i}@y>\r\n").as_bytes());
            let reply = match i {
                _ if i % 97 == 0 => "550 5.1.1 no such user\r\n".to_string(),
                _ if i < 1_000 => "250 2.1.5 ok\r\n".to_string(),
                _ => format!("452 4.5.3 <u{i}@y>: too many recipients\r\n"),
            };
            replies.extend_from_slice(reply.as_bytes());
        }
        s.client(&batch);
        s.upstream(&replies);
        let (c, up) = s.take();
        assert_eq!(c.as_bytes(), &replies[..], "every reply relayed unchanged");
        assert_eq!(up.as_bytes(), &batch[..]);
        assert_eq!(s.core.end_reason(), None);
        s.client(b"XBAD\r\n");
        s.upstream(b"502 5.5.2 Error: command not recognized\r\n");
        assert_eq!(s.take().0, "502 5.5.2 Error: command not recognized\r\n");
        assert_eq!(s.core.end_reason(), None);
    }

    /// D4, every answer to DATA: input that arrived before it is a
    /// synchronisation error; nothing of it reaches the upstream, neither as
    /// content nor as commands. Early input is split at every byte, and
    /// arrives either with the DATA line or in a later read.
    #[test]
    fn input_before_any_reply_to_data_is_a_sync_error_and_never_forwarded_d4() {
        let early: &[u8] = b"Subject: a\r\n\r\nRCPT TO:<victim@z>\r\nRSET\r\n.\r\n";
        for answer in [
            "354 go ahead\r\n",
            "554 5.5.1 Error: no valid recipients\r\n",
            "503 5.5.1 Error: need RCPT command\r\n",
            "451 4.3.0 try again\r\n",
            "550 5.7.1 no\r\n",
        ] {
            for split in 0..=early.len() {
                for same_read in [true, false] {
                    let mut s = Script::ready();
                    s.client(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n");
                    let mut first = b"DATA\r\n".to_vec();
                    let (head, tail) = early.split_at(split);
                    if same_read {
                        first.extend_from_slice(head);
                        s.client(&first);
                    } else {
                        s.client(&first);
                        s.client(head);
                    }
                    // Whatever came with or after the DATA line, the core
                    // reads no more until the reply once it holds some.
                    if !tail.is_empty() && s.core.wants_client_input() {
                        s.client(tail);
                    }
                    s.upstream(b"250 ok\r\n250 ok\r\n");
                    s.upstream(answer.as_bytes());
                    let (c, up) = s.take();
                    assert_eq!(
                        up,
                        "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n".to_string()
                            + if answer.starts_with('3') {
                                ""
                            } else {
                                "QUIT\r\n"
                            },
                        "{answer:?} split {split} same_read {same_read}"
                    );
                    assert_eq!(
                        c, "250 ok\r\n250 ok\r\n554 5.5.0 Error: SMTP protocol synchronization\r\n",
                        "{answer:?} split {split}"
                    );
                    assert_eq!(s.core.end_reason(), Some(EndReason::ClientProtocol));
                    assert_eq!(
                        s.core.upstream_must_close(),
                        answer.starts_with('3'),
                        "an upstream in content is closed without an end of data"
                    );
                }
            }
        }
    }

    #[test]
    fn no_input_before_a_refused_data_keeps_the_session_d4() {
        let mut s = Script::ready();
        s.client(b"DATA\r\n");
        s.upstream(b"554 5.5.1 Error: no valid recipients\r\n");
        assert_eq!(s.take().0, "554 5.5.1 Error: no valid recipients\r\n");
        s.client(b"QUIT\r\n");
        assert_eq!(s.take().1, "QUIT\r\n");
        assert_eq!(s.core.end_reason(), None);
    }

    #[test]
    fn bdat_without_chunking_is_answered_locally_and_its_octets_never_forwarded_d4_d5() {
        let mut s = Script::new();
        s.upstream(b"220 up\r\n");
        s.client(b"EHLO c\r\n");
        s.upstream(b"250-up\r\n250 PIPELINING\r\n");
        s.take();
        s.client(b"MAIL FROM:<a@x>\r\nBDAT 26 LAST\r\nRCPT TO:<victim@z>\r\nRSET\r\nNOOP\r\n");
        let (_, up) = s.take();
        assert_eq!(up, "MAIL FROM:<a@x>\r\nNOOP\r\n");
        s.upstream(b"250 ok\r\n250 ok\r\n");
        assert_eq!(
            s.take().0,
            "250 ok\r\n502 5.5.1 Error: BDAT without CHUNKING\r\n250 ok\r\n"
        );
        // HELO offers no extensions either.
        s.client(b"HELO c\r\n");
        s.upstream(b"250 up\r\n");
        s.client(b"BDAT 4\r\nQUITRSET\r\n");
        assert_eq!(s.take().1, "HELO c\r\nRSET\r\n");
    }

    #[test]
    fn client_close_is_mirrored_upstream_without_a_quit_of_replyfixs_own() {
        let mut s = Script::ready();
        s.client(b"MAIL FROM:<a@x>\r\n");
        s.upstream(b"250 ok\r\n");
        s.take();
        s.core.client_eof();
        s.collect();
        assert_eq!(s.take().1, "", "no QUIT the client did not send");
        assert!(s.core.upstream_must_close());
        assert_eq!(s.core.end_reason(), Some(EndReason::ClientClosed));
    }

    #[test]
    fn quit_then_close_without_waiting_for_221_ends_as_quit() {
        let mut s = Script::ready();
        s.client(b"QUIT\r\n");
        assert_eq!(s.take().1, "QUIT\r\n");
        s.core.client_eof();
        assert_eq!(s.core.end_reason(), Some(EndReason::Quit));
    }

    #[test]
    fn long_command_line_gets_500_and_session_stays_in_step_r1() {
        let mut s = Script::ready();
        let mut line = b"NOOP ".to_vec();
        line.extend(std::iter::repeat_n(b'x', 5000));
        line.extend_from_slice(b"\r\nNOOP\r\n");
        s.client(&line);
        let (c, up) = s.take();
        assert_eq!(c, "500 5.5.2 Error: line too long\r\n");
        assert_eq!(up, "NOOP\r\n");
    }

    #[test]
    fn upstream_lost_mid_data_drains_client_then_451_f2() {
        let mut s = content_session();
        s.client(b"part of the message\r\n");
        s.core.upstream_eof();
        s.collect();
        assert_eq!(s.take().0, "");
        s.client(b"more\r\n.\r\n");
        assert_eq!(s.take().0, "451 4.4.2 upstream connection lost\r\n");
        assert_eq!(s.core.end_reason(), Some(EndReason::UpstreamLost));
    }

    #[test]
    fn no_reply_after_end_of_data_is_451_and_possible_duplicate_f2() {
        let mut s = content_session();
        s.client(b"body\r\n.\r\n");
        assert_eq!(s.core.upstream_wait(), UpstreamWait::DataEnd);
        s.core.upstream_timeout();
        s.collect();
        let (c, _) = s.take();
        assert!(c.starts_with("451 4.4.1 "), "{c}");
        assert!(s.events.contains(&Event::PossibleDuplicate));
    }

    #[test]
    fn upstream_lost_between_commands_is_421_f2() {
        let mut s = Script::ready();
        s.client(b"MAIL FROM:<a@x>\r\n");
        s.core.upstream_eof();
        s.collect();
        assert!(s.take().0.starts_with("421 4.4.2 "));
    }

    #[test]
    fn upstream_unreachable_greets_with_421_f2() {
        let mut s = Script::new();
        s.core.upstream_unavailable();
        s.collect();
        assert_eq!(
            s.take().0,
            "421 4.4.1 replyfix.test upstream unavailable, try again later\r\n"
        );
    }

    #[test]
    fn internal_error_is_451_430_f4() {
        let mut s = Script::ready();
        s.core.internal_error();
        s.collect();
        assert_eq!(s.take().0, "451 4.3.0 internal error, try again later\r\n");
        assert_eq!(s.core.end_reason(), Some(EndReason::Internal));
    }

    #[test]
    fn pipeline_bound_stops_reading_the_client_r2() {
        let mut settings = CoreSettings::for_tests();
        settings.max_pipeline = 2;
        let mut s = Script::with(settings);
        s.upstream(b"220 up\r\n");
        s.client(b"NOOP\r\nNOOP\r\nNOOP\r\n");
        assert_eq!(s.take().1, "NOOP\r\nNOOP\r\n");
        assert!(!s.core.wants_client_input());
        s.upstream(b"250 ok\r\n");
        assert_eq!(s.take().1, "NOOP\r\n");
    }

    fn tls_session(require_tls: bool) -> Script {
        let mut settings = CoreSettings::for_tests();
        settings.tls_offered = true;
        settings.require_tls = require_tls;
        let mut s = Script::with(settings);
        s.upstream(b"220 up\r\n");
        s.client(b"EHLO c\r\n");
        s.upstream(b"250-up\r\n250-AUTH PLAIN\r\n250-STARTTLS\r\n250 8BITMIME\r\n");
        s
    }

    #[test]
    fn starttls_is_offered_when_a_certificate_is_configured_t1() {
        let mut s = tls_session(false);
        let (c, _) = s.take();
        assert!(
            c.ends_with("250-up\r\n250-AUTH PLAIN\r\n250-8BITMIME\r\n250 STARTTLS\r\n"),
            "{c}"
        );
    }

    #[test]
    fn starttls_is_answered_by_replyfix_and_never_forwarded_t1() {
        let mut s = tls_session(false);
        s.take();
        s.client(b"STARTTLS\r\n");
        let (c, up) = s.take();
        assert_eq!(c, "220 2.0.0 Ready to start TLS\r\n");
        assert_eq!(up, "");
        assert!(s.core.take_start_client_tls());
        assert!(!s.core.wants_client_input());
    }

    #[test]
    fn bytes_after_starttls_are_injection_and_close_t1() {
        let mut s = tls_session(false);
        s.take();
        s.client(b"STARTTLS\r\nRSET\r\n");
        let (c, up) = s.take();
        assert_eq!(c, "", "no 220, and never a reply to RSET");
        assert!(!up.contains("RSET"));
        assert!(!s.core.take_start_client_tls());
        assert_eq!(s.core.end_reason(), Some(EndReason::ClientProtocol));
    }

    #[test]
    fn pipelined_starttls_waits_for_earlier_replies_t1() {
        let mut s = tls_session(false);
        s.take();
        s.client(b"NOOP\r\nSTARTTLS\r\n");
        assert_eq!(s.take(), (String::new(), "NOOP\r\n".to_string()));
        assert!(!s.core.take_start_client_tls());
        s.upstream(b"250 ok\r\n");
        assert_eq!(s.take().0, "250 ok\r\n220 2.0.0 Ready to start TLS\r\n");
        assert!(s.core.take_start_client_tls());
    }

    #[test]
    fn after_tls_the_client_must_ehlo_again_t3() {
        let mut s = tls_session(false);
        s.client(b"STARTTLS\r\n");
        assert!(s.core.take_start_client_tls());
        s.core.client_tls_established();
        s.take();
        s.client(b"MAIL FROM:<a@x>\r\n");
        let (c, up) = s.take();
        assert_eq!(c, "503 5.5.1 Error: send EHLO/HELO first\r\n");
        assert_eq!(up, "");
        s.client(b"EHLO c\r\n");
        assert_eq!(s.take().1, "EHLO c\r\n");
        s.upstream(b"250-up\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
        assert_eq!(
            s.take().0,
            "250-up\r\n250 AUTH PLAIN\r\n",
            "no STARTTLS inside TLS"
        );
        s.client(b"STARTTLS\r\n");
        assert_eq!(s.take().0, "554 5.5.1 Error: TLS already active\r\n");
    }

    #[test]
    fn require_tls_hides_auth_and_answers_the_legitimate_530_t5() {
        let mut s = tls_session(true);
        let (c, _) = s.take();
        assert!(!c.contains("AUTH"), "{c}");
        s.client(b"MAIL FROM:<a@x>\r\nAUTH PLAIN AGEAYg==\r\n");
        let (c, up) = s.take();
        assert_eq!(
            c,
            "530 5.7.0 Must issue a STARTTLS command first\r\n530 5.7.0 Must issue a STARTTLS command first\r\n"
        );
        assert_eq!(up, "", "nothing goes upstream before TLS");
        assert!(s.rewrites() == 0);
    }

    #[test]
    fn requiretls_is_kept_only_over_a_verified_upstream_t7() {
        for (verified, kept) in [(false, false), (true, true)] {
            let mut s = Script::new();
            s.core.set_upstream_tls(true, verified);
            s.upstream(b"220 up\r\n");
            s.client(b"EHLO c\r\n");
            s.take();
            s.upstream(b"250-up\r\n250 REQUIRETLS\r\n");
            assert_eq!(s.take().0.contains("REQUIRETLS"), kept);
        }
    }

    #[test]
    fn starttls_on_implicit_tls_is_already_active_t5() {
        let mut s = Script::new();
        s.core.set_upstream_tls(true, false);
        s.core.set_client_tls_implicit();
        assert!(s.core.client_tls());
        s.upstream(b"220 up\r\n");
        s.client(b"STARTTLS\r\n");
        assert_eq!(
            s.take().0,
            "220 up\r\n554 5.5.1 Error: TLS already active\r\n"
        );
    }
}
