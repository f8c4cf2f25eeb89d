//! The whole session core (`session::core::Core`) driven from both sides by
//! the fuzz input: a pipelining client model and a strict upstream model,
//! each choosing what to send next from the input, with the core's output
//! checked as it comes.
//!
//! Invariants:
//! - P1: exactly one client reply per client command, in order; at most one
//!   more (the closing 421/451) once the session ends; with both sides
//!   answered and no end, nothing is left unanswered.
//! - F1: a 2xx to the client after its end of data only when the upstream
//!   answered that end of data with 2xx.
//! - D1/D2: the upstream never receives a bare CR, LF or NUL in content,
//!   never a command line the client did not send as a command (no
//!   smuggling), and never an end of data the client did not send; under
//!   sanitize the content is the client's with each bare byte a space.
//! - D4: nothing reaches the upstream after DATA before its 354.
//! - P4/L1: no SASL secret appears in any event.
#![no_main]

use std::collections::VecDeque;
use std::sync::Arc;

use arc_swap::ArcSwap;
use libfuzzer_sys::fuzz_target;
use replyfix::config::{BareLineEndings, Mode};
use replyfix::rules::RuleSet;
use replyfix::session::core::{Core, CoreSettings};
use replyfix::smtp::{ReplyLimits, ReplyParser};
use replyfix_fuzz::{
    Input, NOT_ENDS, ReferenceScan, first_bare, reference_end_of_data, reference_scan,
};

/// Marks every SASL byte the client sends (P4, L1).
const SECRET: &str = "c2VjcmV0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Greeting,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    DataEnd,
    Bdat,
    Auth,
    Quit,
    Other,
}

fn kind_of(line: &[u8]) -> Kind {
    let verb: Vec<u8> = line
        .iter()
        .take_while(|&&b| b != b' ')
        .map(u8::to_ascii_uppercase)
        .collect();
    match &verb[..] {
        b"EHLO" | b"HELO" => Kind::Ehlo,
        b"MAIL" => Kind::Mail,
        b"RCPT" => Kind::Rcpt,
        b"DATA" => Kind::Data,
        b"BDAT" => Kind::Bdat,
        b"AUTH" => Kind::Auth,
        b"QUIT" => Kind::Quit,
        _ => Kind::Other,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ClientMode {
    Command,
    /// Sent DATA or AUTH (or a SASL line); waits for its reply.
    Gate,
    Content,
    Sasl,
    Done,
}

#[derive(Debug)]
enum UpMode {
    Command,
    /// Received DATA; nothing may arrive before it answers (D4).
    DataGate,
    Content(Vec<u8>),
    Chunk(usize),
    /// Received AUTH / a SASL line and answered 334: next line is SASL.
    Sasl,
    Gone,
}

struct Harness {
    core: Core,
    sanitize: bool,
    // Client model.
    mode: ClientMode,
    expect: VecDeque<Kind>,
    extra_replies: u32,
    client_replies: ReplyParser,
    sent_lines: VecDeque<Vec<u8>>,
    content: Vec<u8>,
    content_clean_so_far: bool,
    client_data_end_codes: Vec<u16>,
    client_data_ends_sent: u32,
    // Upstream model.
    up_buf: Vec<u8>,
    up_mode: UpMode,
    up_queue: VecDeque<Kind>,
    up_data_end_codes: Vec<u16>,
    up_transactions: u32,
}

impl Harness {
    fn new(settings: CoreSettings) -> Self {
        static RULES: std::sync::OnceLock<Arc<RuleSet>> = std::sync::OnceLock::new();
        let rules = RULES.get_or_init(|| Arc::new(RuleSet::builtin())).clone();
        let sanitize = settings.bare_line_endings == BareLineEndings::Sanitize;
        let mut expect = VecDeque::new();
        expect.push_back(Kind::Greeting);
        let mut up_queue = VecDeque::new();
        up_queue.push_back(Kind::Greeting);
        Harness {
            core: Core::new(settings, Arc::new(ArcSwap::new(rules))),
            sanitize,
            mode: ClientMode::Gate,
            expect,
            extra_replies: 0,
            client_replies: ReplyParser::new(ReplyLimits::default()),
            sent_lines: VecDeque::new(),
            content: Vec::new(),
            content_clean_so_far: true,
            client_data_end_codes: Vec::new(),
            client_data_ends_sent: 0,
            up_buf: Vec::new(),
            up_mode: UpMode::Command,
            up_queue,
            up_data_end_codes: Vec::new(),
            up_transactions: 0,
        }
    }

    // ----- client side -----

    fn client_send(&mut self, bytes: &[u8], split: usize) {
        let split = split.min(bytes.len());
        self.core.client_data(&bytes[..split]);
        self.collect();
        self.core.client_data(&bytes[split..]);
        self.collect();
    }

    fn client_command(&mut self, line: Vec<u8>, extra: &[u8], split: usize) {
        let kind = kind_of(&line);
        self.sent_lines.push_back(line.clone());
        let mut wire = line;
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(extra);
        self.expect.push_back(kind);
        if matches!(kind, Kind::Data | Kind::Auth) {
            self.mode = ClientMode::Gate;
        }
        self.client_send(&wire, split);
    }

    fn client_step(&mut self, input: &mut Input<'_>) {
        let split = input.below(64);
        match self.mode {
            ClientMode::Command => {
                let (line, extra): (Vec<u8>, Vec<u8>) = match input.byte() % 16 {
                    0 => (b"EHLO client.example".to_vec(), vec![]),
                    1 => (b"MAIL FROM:<a@x.example>".to_vec(), vec![]),
                    2 | 3 => (b"RCPT TO:<b@y.example>".to_vec(), vec![]),
                    4 | 5 => (b"DATA".to_vec(), vec![]),
                    6 => (b"RSET".to_vec(), vec![]),
                    7 => (b"NOOP".to_vec(), vec![]),
                    8 => (format!("AUTH PLAIN {SECRET}AAAA").into_bytes(), vec![]),
                    9 => (b"AUTH LOGIN".to_vec(), vec![]),
                    10 => {
                        let n = input.below(20);
                        let last = if input.byte() & 1 == 1 { " LAST" } else { "" };
                        // Chunk bytes: anything, including CRLF.CRLF (D5:
                        // never parsed as lines).
                        let mut body = b"\r\n.\r\nMAIL FROM:<x@y>\r\n".repeat(2);
                        body.truncate(n);
                        (format!("BDAT {n}{last}").into_bytes(), body)
                    }
                    11 => (b"STARTTLS".to_vec(), vec![]),
                    12 => (vec![b'X'; 2100 + input.below(100)], vec![]),
                    13 => (b"QUIT".to_vec(), vec![]),
                    14 => (b"VRFY postmaster".to_vec(), vec![]),
                    _ => {
                        // A line of fuzz bytes (no LF: the model must know
                        // where it ends; CR, NUL and anything else allowed).
                        let raw: Vec<u8> = input
                            .bytes(60)
                            .iter()
                            .map(|&b| if b == b'\n' { b'?' } else { b })
                            .collect();
                        let mut raw = if raw.ends_with(b"\r") {
                            [&raw[..], b"x"].concat()
                        } else {
                            raw
                        };
                        if kind_of(&raw) == Kind::Bdat {
                            raw[0] = b'_'; // a chunk the model did not send
                        }
                        (raw, vec![])
                    }
                };
                let kind = kind_of(&line);
                if kind == Kind::Quit {
                    self.client_command(line, &extra, split);
                    self.mode = ClientMode::Done;
                    return;
                }
                // Lines the model cannot pair: HTTP verbs and malformed BDAT
                // end the session, which the end checks cover.
                self.client_command(line, &extra, split);
            }
            ClientMode::Content => {
                let piece: Vec<u8> = match input.byte() % 8 {
                    0 => b"Subject: fuzz\r\n\r\nbody line\r\n".to_vec(),
                    1 => b"..stuffed\r\n".to_vec(),
                    2 => NOT_ENDS[input.below(NOT_ENDS.len())].to_vec(),
                    3 => vec![[b'\r', b'\n', 0][input.below(3)]],
                    4 => b"MAIL FROM:<smuggled@x>\r\nRCPT TO:<v@y>\r\nDATA\r\n".to_vec(),
                    5 | 6 => input.bytes(40).to_vec(),
                    _ => b"\r\n.\r\n".to_vec(),
                };
                let start = self.content.len();
                self.content.extend_from_slice(&piece);
                // The client's real end of data, by definition (D1).
                let end = reference_end_of_data(&self.content);
                let upto = end.unwrap_or(self.content.len());
                self.content.truncate(upto);
                let wire = self.content[start..].to_vec();
                if first_bare(&self.content).is_some() {
                    self.content_clean_so_far = false;
                }
                if end.is_some() {
                    self.expect.push_back(Kind::DataEnd);
                    self.client_data_ends_sent += 1;
                    self.mode = ClientMode::Command;
                }
                self.client_send(&wire, split);
            }
            ClientMode::Sasl => {
                let line = if input.byte() % 5 == 0 {
                    b"*".to_vec()
                } else {
                    format!("{SECRET}{}", input.byte()).into_bytes()
                };
                self.sent_lines.push_back(line.clone());
                self.expect.push_back(Kind::Auth);
                self.mode = ClientMode::Gate;
                let mut wire = line;
                wire.extend_from_slice(b"\r\n");
                self.client_send(&wire, split);
            }
            ClientMode::Gate | ClientMode::Done => {}
        }
    }

    /// What the core wrote, checked as it comes.
    fn collect(&mut self) {
        let to_up = self.core.take_to_upstream();
        self.upstream_receive(&to_up);
        let to_client = self.core.take_to_client();
        let mut replies = Vec::new();
        self.client_replies
            .feed(&to_client, &mut replies)
            .expect("the client always gets well-formed replies");
        for reply in replies {
            let code = reply.code().get();
            let Some(kind) = self.expect.pop_front() else {
                // P1: only the closing reply may come unasked.
                self.extra_replies += 1;
                assert!(
                    self.extra_replies <= 1,
                    "more than one unasked reply: {reply}"
                );
                assert!(code >= 400, "unasked success {reply}");
                continue;
            };
            match kind {
                Kind::DataEnd => {
                    let i = self.client_data_end_codes.len();
                    self.client_data_end_codes.push(code);
                    if (200..300).contains(&code) {
                        // F1: never invented success.
                        let up = self.up_data_end_codes.get(i);
                        assert!(
                            up.is_some_and(|c| (200..300).contains(c)),
                            "client got {code} after end of data {i}; upstream said {up:?}"
                        );
                        assert!(
                            self.content_clean_so_far || self.sanitize,
                            "reject policy relayed a success for content with bare bytes"
                        );
                    }
                }
                Kind::Data if code == 354 && self.mode == ClientMode::Gate => {
                    self.mode = ClientMode::Content;
                    self.content.clear();
                    self.content_clean_so_far = true;
                }
                Kind::Auth if code == 334 && self.mode == ClientMode::Gate => {
                    self.mode = ClientMode::Sasl
                }
                Kind::Greeting => self.mode = ClientMode::Command,
                Kind::Data | Kind::Auth if self.mode == ClientMode::Gate => {
                    self.mode = ClientMode::Command
                }
                _ => {}
            }
        }
        let events = format!("{:?}", self.core.take_events().collect::<Vec<_>>());
        assert!(!events.contains(SECRET), "SASL data in events: {events}");
    }

    // ----- upstream side -----

    fn upstream_receive(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if matches!(self.up_mode, UpMode::DataGate) {
            panic!(
                "D4: {:?} forwarded after DATA before the 354",
                String::from_utf8_lossy(bytes)
            );
        }
        self.up_buf.extend_from_slice(bytes);
        loop {
            match &mut self.up_mode {
                UpMode::Gone | UpMode::DataGate => {
                    self.up_buf.clear();
                    return;
                }
                UpMode::Chunk(n) => {
                    let take = (*n).min(self.up_buf.len());
                    self.up_buf.drain(..take);
                    *n -= take;
                    if *n > 0 {
                        return;
                    }
                    self.up_mode = UpMode::Command;
                }
                UpMode::Content(content) => {
                    content.append(&mut self.up_buf);
                    // D2: never a bare CR, LF or NUL in content.
                    assert_eq!(
                        first_bare(content),
                        None,
                        "bare byte forwarded in content: {:?}",
                        String::from_utf8_lossy(content)
                    );
                    let Some(end) = reference_end_of_data(content) else {
                        return;
                    };
                    // What the client sent, as the policy makes it.
                    match reference_scan(&self.content, self.sanitize) {
                        ReferenceScan::End { consumed, out } => {
                            assert_eq!(consumed, self.content.len());
                            assert_eq!(&content[..end], &out[..], "content forwarded");
                        }
                        other => panic!(
                            "upstream saw an end of data the client did not send ({other:?})"
                        ),
                    }
                    self.up_buf = content.split_off(end);
                    self.up_transactions += 1;
                    self.up_queue.push_back(Kind::DataEnd);
                    self.up_mode = UpMode::Command;
                }
                UpMode::Command | UpMode::Sasl => {
                    let Some(i) = self.up_buf.windows(2).position(|w| w == b"\r\n") else {
                        assert!(
                            !self.up_buf.contains(&b'\n'),
                            "bare LF ends a command line upstream"
                        );
                        return;
                    };
                    let line: Vec<u8> = self.up_buf.drain(..i + 2).take(i).collect();
                    let sasl = matches!(self.up_mode, UpMode::Sasl);
                    self.up_mode = UpMode::Command;
                    if line == b"QUIT"
                        && !self
                            .sent_lines
                            .iter()
                            .any(|l| l.eq_ignore_ascii_case(b"QUIT"))
                    {
                        // replyfix's own QUIT when it closes.
                        self.up_queue.push_back(Kind::Quit);
                        continue;
                    }
                    // No smuggling: every line is the client's next command
                    // (a few are answered locally and skipped).
                    loop {
                        let sent = self.sent_lines.pop_front().unwrap_or_else(|| {
                            panic!(
                                "upstream got a line the client never sent as a command: {:?}",
                                String::from_utf8_lossy(&line)
                            )
                        });
                        if sent == line {
                            break;
                        }
                    }
                    let kind = if sasl { Kind::Auth } else { kind_of(&line) };
                    if kind == Kind::Data && !sasl {
                        self.up_mode = UpMode::DataGate;
                    }
                    if kind == Kind::Bdat
                        && let Some(n) = line
                            .split(|&b| b == b' ')
                            .nth(1)
                            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                    {
                        self.up_mode = UpMode::Chunk(n);
                    }
                    self.up_queue.push_back(kind);
                    if kind == Kind::Data && !sasl {
                        assert!(
                            self.up_buf.is_empty(),
                            "D4: bytes forwarded right after DATA"
                        );
                        return;
                    }
                }
            }
        }
    }

    /// The upstream answers the oldest command it received.
    fn upstream_answer(&mut self, input: &mut Input<'_>) -> Option<Vec<u8>> {
        let kind = self.up_queue.pop_front()?;
        let pick = input.byte();
        let code: u16 = match kind {
            Kind::Greeting => [220, 220, 220, 554, 421][pick as usize % 5],
            Kind::Ehlo => [250, 250, 502][pick as usize % 3],
            Kind::Mail | Kind::Rcpt | Kind::Other | Kind::Bdat => {
                [250, 250, 530, 550, 451, 421][pick as usize % 6]
            }
            Kind::Data => [354, 354, 354, 554, 530][pick as usize % 5],
            Kind::DataEnd => [250, 250, 530, 554, 451][pick as usize % 5],
            Kind::Auth => [334, 334, 235, 535, 530][pick as usize % 5],
            Kind::Quit => [221, 221][pick as usize % 2],
        };
        if kind == Kind::DataEnd {
            self.up_data_end_codes.push(code);
        }
        match kind {
            Kind::Data if code == 354 => self.up_mode = UpMode::Content(Vec::new()),
            Kind::Data => self.up_mode = UpMode::Command,
            Kind::Auth if code == 334 => self.up_mode = UpMode::Sasl,
            _ => {}
        }
        if code == 421 || kind == Kind::Quit {
            self.up_mode = UpMode::Gone;
        }
        let eol: &[u8] = if pick & 0x80 != 0 { b"\n" } else { b"\r\n" };
        let mut r = Vec::new();
        if kind == Kind::Ehlo && code == 250 {
            for l in [
                "250-up.example",
                "250-PIPELINING",
                "250-STARTTLS",
                "250-AUTH PLAIN LOGIN",
                "250 CHUNKING",
            ] {
                r.extend_from_slice(l.as_bytes());
                r.extend_from_slice(eol);
            }
        } else {
            let text: &[u8] = match pick % 4 {
                0 => b"5.7.0 Authentication required",
                1 => b"Must issue a STARTTLS command first",
                2 => b"\x1b[0m\xff\xfe x",
                _ => b"ok",
            };
            if pick & 0x40 != 0 {
                r.extend_from_slice(format!("{code}-first line").as_bytes());
                r.extend_from_slice(eol);
            }
            r.extend_from_slice(format!("{code} ").as_bytes());
            r.extend_from_slice(text);
            r.extend_from_slice(eol);
        }
        Some(r)
    }

    fn upstream_step(&mut self, input: &mut Input<'_>) {
        match input.byte() % 16 {
            0 => {
                // Garbage that can never parse as a reply (P2).
                let mut g = b"xyz".to_vec();
                g.extend_from_slice(input.bytes(20));
                self.core.upstream_data(&g);
            }
            1 if input.byte() % 4 == 0 => {
                self.core.upstream_eof();
            }
            2 if input.byte() % 4 == 0 => {
                self.core.upstream_timeout();
            }
            _ => {
                let mut wire = Vec::new();
                for _ in 0..1 + input.below(4) {
                    match self.upstream_answer(input) {
                        Some(r) => wire.extend_from_slice(&r),
                        None => break,
                    }
                }
                let split = input.below(wire.len() + 1);
                self.core.upstream_data(&wire[..split]);
                self.collect();
                self.core.upstream_data(&wire[split..]);
            }
        }
        self.collect();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let mut settings = CoreSettings::for_tests();
    if flags & 1 == 1 {
        settings.bare_line_endings = BareLineEndings::Sanitize;
    }
    if flags & 2 == 2 {
        settings.mode = Mode::Shadow;
    }
    if flags & 4 == 4 {
        settings.max_pipeline = 2;
    }
    if flags & 8 == 8 {
        settings.max_message_size = Some(64);
    }
    if flags & 16 == 16 {
        settings.max_errors = 3;
    }
    let mut h = Harness::new(settings);
    for _ in 0..200 {
        if input.is_empty() || h.core.end_reason().is_some() {
            break;
        }
        match input.byte() % 8 {
            0..=3 => h.client_step(&mut input),
            4..=6 => h.upstream_step(&mut input),
            _ => match input.byte() % 3 {
                0 => h.core.client_eof(),
                1 => h.core.client_timeout(),
                _ => h.core.shutdown(),
            },
        }
        h.collect();
    }
    // Answer everything still outstanding; then every command the client
    // sent has had its reply, unless the session ended (P1).
    for _ in 0..300 {
        if h.core.end_reason().is_some() || h.up_queue.is_empty() {
            break;
        }
        h.upstream_step(&mut Input::new(&[3]));
    }
    if h.core.end_reason().is_none() && h.up_queue.is_empty() && h.mode != ClientMode::Content {
        assert!(
            h.expect.is_empty(),
            "unanswered client commands: {:?}",
            h.expect
        );
    }
    if h.core.end_reason().is_none() {
        assert!(
            h.extra_replies == 0,
            "unasked reply while the session goes on"
        );
    }
    // At most one transaction per client end of data (no smuggling).
    assert!(
        h.up_transactions <= h.client_data_ends_sent,
        "more transactions upstream than ends of data sent"
    );
});
