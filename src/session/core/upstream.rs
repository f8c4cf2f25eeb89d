//! The upstream side of the session core: replies parsed, paired with the
//! command they answer (P1), judged by the rules, the EHLO reply edited,
//! and the upstream's failures turned into temporary replies (F2, P2, P3).
//!
//! It must never shift the pairing (P2), rewrite a reply the rules did not
//! rewrite, or give the client a success the upstream did not give (F1).

use std::sync::Arc;

use super::{Core, EndReason, Event, Outstanding, Pending, Phase, Rewrite, UpstreamWait};
use crate::config::Mode;
use crate::rules::{SessionFacts, Verdict};
use crate::smtp::command::classify;
use crate::smtp::ehlo;
use crate::smtp::framing::DataScanner;
use crate::smtp::{CommandKind, Reply};

impl Core {
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

    /// No upstream reply within its deadline (F2, F3).
    pub fn upstream_timeout(&mut self) {
        if self.end.is_some() {
            return;
        }
        let wait = self.upstream_wait();
        self.drop_upstream();
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
            self.drop_upstream();
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
        if !self.upstream_tls && !self.tls_demand_reported && demands_tls(&reply) {
            self.tls_demand_reported = true;
            self.events.push(Event::UpstreamDemandsTls {
                context: front.kind,
            });
        }
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
            self.drop_upstream();
        } else {
            self.phase = Phase::Command;
            self.leave_upstream();
        }
        self.finish(EndReason::ClientProtocol);
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
            use crate::transcript::TranscriptEntry;
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

    /// P2: the upstream is out of step. Every outstanding command gets
    /// `451 4.5.0`, local replies keep their place, then both sides close.
    fn upstream_desync(&mut self, why: &str) {
        self.events
            .push(Event::UpstreamProtocolError(why.to_string()));
        self.flush_pending_with(Some(b"451 4.5.0 upstream protocol error\r\n"));
        self.drop_upstream();
        self.finish(EndReason::UpstreamDesync);
    }
}

/// True when a reply demands TLS before the command (RFC 3207 `530 ...
/// STARTTLS`, RFC 4954 `538 5.7.11 Encryption required`): a `530`/`538`
/// whose enhanced code is 5.7.11 or whose text names STARTTLS or says TLS
/// or encryption is required. For the operator's warning only; what the
/// client sees is the rules' decision.
fn demands_tls(reply: &Reply) -> bool {
    let code = reply.code().get();
    if code != 530 && code != 538 {
        return false;
    }
    if reply
        .enhanced()
        .is_some_and(|e| (e.class, e.subject, e.detail) == (5, 7, 11))
    {
        return true;
    }
    let text = reply.text_lossy(" ").to_ascii_lowercase();
    [
        "starttls",
        "start tls",
        "tls required",
        "encryption required",
        "tls is required",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Capabilities replyfix always removes from the upstream's EHLO reply:
/// STARTTLS (replyfix handles each leg's TLS itself, T1) and XCLIENT/XFORWARD
/// (they let a client claim another address to a relay that trusts
/// replyfix).
fn always_dropped(keyword: &[u8]) -> bool {
    matches!(keyword, b"STARTTLS" | b"XCLIENT" | b"XFORWARD")
}
