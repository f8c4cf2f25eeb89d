//! The relay state machine for one SMTP session: bytes in, actions out.
//!
//! [`Core`] owns the client phase, the FIFO of outstanding commands (P1), the
//! session facts the rules see, and the two output buffers. It never touches
//! a socket, a clock or a task: the async driver in `session/mod.rs` feeds it
//! what it read ([`Core::client_data`], [`Core::upstream_data`]), tells it
//! about ends and deadlines, writes [`Core::to_upstream`] and
//! [`Core::to_client`] in place (then `consume_*`), and logs the [`Event`]s.
//! Everything here is therefore testable with byte scripts, without sockets
//! or sleeps. The ids (D4, P1, ...) are those of docs/protocol.md.
//!
//! The files: this one holds the type, its driver-facing API and the helpers
//! both sides share; `client.rs` the client's bytes, `upstream.rs` the
//! upstream's replies, `state.rs` the phase and the FIFO, `event.rs` what is
//! reported, `settings.rs` what is shared per listener.
//!
//! What it must never do: forward a byte the client sent after `DATA` before
//! the upstream answered it (D4), forward a bare CR/LF/NUL in message content
//! (D2), give the client a success the upstream did not give (F1), log or
//! judge SASL data (P4, L1), or shift the pairing of replies (P2).

mod client;
mod event;
mod settings;
mod state;
#[cfg(test)]
mod tests;
mod upstream;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};

pub use self::event::{EndReason, Event, Rewrite};
pub use self::settings::CoreSettings;
pub use self::state::UpstreamWait;
use self::state::{Outstanding, Pending, Phase};
use crate::rules::RuleSet;
use crate::smtp::framing::LineFramer;
use crate::smtp::{CommandKind, ReplyParser};

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
    /// [`Event::UpstreamDemandsTls`] was reported in this session.
    tls_demand_reported: bool,
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
    /// Whether the upstream will wait for a command then (so it gets a
    /// `QUIT`), or may be inside a SASL exchange (so it is just closed).
    quit_after_pending: bool,
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
            tls_demand_reported: false,
            chunking: false,
            in_transaction: false,
            recipients_accepted: 0,
            auth_mechanism: None,
            errors: 0,
            end: None,
            close_upstream: false,
            upstream_gone: false,
            close_after_pending: None,
            quit_after_pending: false,
            transactions: 0,
            rewrites: 0,
        }
    }

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

    /// Takes the bytes waiting for the client (the byte-script tests and the
    /// fuzz target; the driver writes [`Core::to_client`] in place).
    pub fn take_to_client(&mut self) -> BytesMut {
        self.to_client.split()
    }

    /// Takes the bytes waiting for the upstream (tests and the fuzz target;
    /// the driver writes [`Core::to_upstream`] in place).
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

    /// Set once the session must end: write [`Core::to_client`], then
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
        self.drop_upstream();
        self.end = None;
        self.finish(EndReason::Internal);
    }

    fn upstream_outstanding(&self) -> usize {
        self.pending.len()
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

    /// Drops the upstream connection: the driver closes it now, without an
    /// end of data (an open transaction is discarded there, D2, T6), and
    /// nothing more is read from it or written to it.
    fn drop_upstream(&mut self) {
        self.close_upstream = true;
        self.upstream_gone = true;
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

    /// Stops reading the client; the session ends once every outstanding
    /// reply has been sent.
    fn close_after(&mut self, reason: EndReason) {
        if self.close_after_pending.is_none() {
            self.close_after_pending = Some(reason);
            // Reached while reading commands (or a refused chunk, which the
            // upstream never sees): once the replies are in, it waits for a
            // command. After a SASL line it may ask for another.
            self.quit_after_pending = matches!(
                self.phase,
                Phase::Command | Phase::Chunk { forward: false, .. }
            );
        }
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
            if self.quit_after_pending {
                self.phase = Phase::Command;
            }
            self.stop_reading_and_quit(reason);
        }
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
