//! The session core driven by byte scripts: no sockets, no sleeps.

use super::*;
use crate::config::{BareLineEndings, Mode};

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
    s.upstream(
        b"250-up\r\n250-STARTTLS\r\n250-XCLIENT NAME ADDR\r\n250-REQUIRETLS\r\n250 SIZE 1000\r\n",
    );
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
    s.client(b"MAIL FROM:<a@x>\r\nRCPT TO:<ok@y>\r\nRCPT TO:<typo@y>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
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
    // At RCPT these words name an unknown recipient (550 5.1.1); answering
    // MAIL they cannot, and the pairing says it answered MAIL.
    let unknown = b"530 5.7.1 <u@x>: Recipient address rejected: User unknown\r\n";
    let mut s = Script::ready();
    s.client(b"MAIL FROM:<a@x>\r\n");
    s.upstream(unknown);
    let (c, _) = s.take();
    assert!(!c.contains("5.1.1"), "judged as RCPT: {c}");
    s.client(b"RCPT TO:<u@x>\r\n");
    s.upstream(unknown);
    let (c, _) = s.take();
    assert!(c.starts_with("550 5.1.1 "), "{c}");
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
fn the_error_limit_reached_on_a_refused_bdat_reads_nothing_after_it_r4_d5() {
    // Found by the session_core fuzz target: the refused chunk's phase used
    // to replace the closing one, so commands after the 421 still ran.
    let mut settings = CoreSettings::for_tests();
    settings.max_errors = 3;
    let mut s = Script::with(settings);
    s.upstream(b"220 up\r\n");
    s.take();
    s.client(b"NOOP\r\nBDAT 3\r\nabcBDAT 0\r\nBDAT 2 LAST\r\nxyEHLO c\r\nRSET\r\n");
    let (c, up) = s.take();
    assert_eq!(c, "");
    assert_eq!(
        up, "NOOP\r\n",
        "nothing after the limit reaches the upstream"
    );
    s.upstream(b"250 ok\r\n");
    let (c, up) = s.take();
    assert_eq!(
        c,
        "250 ok\r\n502 5.5.1 Error: BDAT without CHUNKING\r\n\
         502 5.5.1 Error: BDAT without CHUNKING\r\n\
         502 5.5.1 Error: BDAT without CHUNKING\r\n\
         421 4.7.0 replyfix.test Error: too many errors\r\n"
    );
    assert_eq!(up, "QUIT\r\n");
    assert_eq!(s.core.end_reason(), Some(EndReason::TooManyErrors));
    s.upstream(b"221 bye\r\n");
    assert_eq!(s.take(), (String::new(), String::new()));
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
