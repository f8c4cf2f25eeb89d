//! The client side of the session core: command lines, message content,
//! BDAT chunks, SASL lines and the STARTTLS gate, turned into bytes for the
//! upstream and entries in the FIFO.
//!
//! It must never forward a byte after `DATA` before the upstream answered
//! it (D4), a bare CR/LF/NUL in content (D2), or judge or log SASL data
//! (P4, L1).

use bytes::{Buf, Bytes};

use super::{Core, EndReason, Event, Outstanding, Pending, Phase};
use crate::config::BareLineEndings;
use crate::smtp::CommandKind;
use crate::smtp::command::{Command, classify};
use crate::smtp::framing::{ChunkCounter, DataScan, EndOfDataSkipper};

impl Core {
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
                    self.drop_upstream();
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

    /// Consumes as much of the client buffer as the phase allows.
    pub(super) fn process_client(&mut self) {
        loop {
            // Once the session is to close after its outstanding replies,
            // nothing more is read, whatever phase a command left behind.
            if self.end.is_some()
                || self.close_after_pending.is_some()
                || self.client_buf.is_empty()
            {
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
                Phase::Chunk { chunk, forward } => {
                    let n = chunk.take(self.client_buf.len());
                    let octets = self.client_buf.split_to(n);
                    if *forward {
                        self.to_upstream.extend_from_slice(&octets);
                    }
                    if chunk.remaining() == 0 {
                        self.phase = Phase::Command;
                    }
                }
            }
        }
    }

    pub(super) fn phase_is_command(&self) -> bool {
        matches!(self.phase, Phase::Command)
    }

    /// Stops forwarding content: the upstream is closed without an end of
    /// data (so it drops the transaction) and the client is read to its end.
    fn abort_content(&mut self, skipper: EndOfDataSkipper, reply: &'static str, reason: EndReason) {
        self.drop_upstream();
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
                // The chunk phase first: when this error reaches R4's limit,
                // closing must win and nothing after it be read.
                if size > 0 {
                    self.phase = Phase::Chunk {
                        chunk: ChunkCounter::new(size),
                        forward: false,
                    };
                }
                self.local_error(b"502 5.5.1 Error: BDAT without CHUNKING\r\n");
            }
            Command::Bdat { size, last } => {
                self.forward_line(&line);
                self.push_upstream(CommandKind::Bdat, last);
                if size > 0 {
                    self.phase = Phase::Chunk {
                        chunk: ChunkCounter::new(size),
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
    pub(super) fn begin_starttls(&mut self) {
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
    pub(super) fn client_violation_quiet(&mut self, reason: EndReason) {
        self.leave_upstream();
        self.finish(reason);
    }

    pub(super) fn forward_line(&mut self, line: &[u8]) {
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

    pub(super) fn push_upstream(&mut self, kind: CommandKind, last_chunk: bool) {
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
}

/// The address between `<` and `>` of a MAIL or RCPT line, if any.
fn envelope_address(line: &[u8]) -> Option<Bytes> {
    let start = line.iter().position(|&b| b == b'<')? + 1;
    let len = line[start..].iter().position(|&b| b == b'>')?;
    Some(Bytes::copy_from_slice(&line[start..start + len]))
}
