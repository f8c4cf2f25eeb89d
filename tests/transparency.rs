//! Differential transparency: replyfix must never be worse than the server
//! behind it. Each client script runs twice against one private Postfix
//! `smtpd` (tests/common/postfix.rs): once straight to it, once through
//! replyfix with rules that rewrite nothing. The client must see the same
//! replies (text and all; only Postfix's queue ids are masked), Postfix must
//! log the same command counts for the two sessions, and it must queue the
//! same messages (envelope and content, read back with `postcat`).
//!
//! Where replyfix differs on purpose, the script names the docs/protocol.md
//! id and what replyfix answers instead; the test then checks that the
//! difference is real (the direct run differs) and that replyfix does
//! exactly what the id says. Besides the table, a seeded random mix of
//! script steps (lock-step and pipelined, DATA and BDAT, accepted and
//! refused senders and recipients, RSET/NOOP/VRFY/unknown verbs, QUIT or a
//! bare close) runs a few hundred sessions the same way, so new cases come
//! from the generator rather than from us.
//!
//! The Postfix instance: `smtpd_recipient_limit = 1000` (its default),
//! `smtpd_hard_error_limit = 20`, no error sleep, a sender and a recipient
//! table that refuse some addresses, and every accepted message put on hold
//! (`HOLD`) so its queue file can be compared.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::postfix::{Postfix, Service, Setup, postfix_command};
use common::{Replyfix, ServeOptions};

/// Bound on each read of a reply; only a broken session ever waits it out.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The recipient, sender and client tables of the instance.
const RECIPIENTS: &str = "refused@accepted.test 550 5.1.1 <refused@accepted.test>: Recipient address rejected: no such user
full@accepted.test 452 4.2.2 <full@accepted.test>: Recipient address rejected: mailbox full
";
const SENDERS: &str =
    "bad@sender.test 553 5.7.1 <bad@sender.test>: Sender address rejected: not allowed
";

fn start_postfix() -> Option<Postfix> {
    let bin = postfix_command()?;
    Some(Postfix::start(&bin, |dir| {
        let recipients = dir.join("recipients");
        let senders = dir.join("senders");
        std::fs::write(&recipients, RECIPIENTS).expect("write recipients");
        std::fs::write(&senders, SENDERS).expect("write senders");
        let same = [
            // The same smtpd twice, so each session's log lines say which
            // run they belong to.
            "smtpd_error_sleep_time=0",
        ];
        Setup {
            main_cf: format!(
                "relay_domains = accepted.test
smtpd_recipient_limit = 1000
smtpd_hard_error_limit = 20
smtpd_soft_error_limit = 10
smtpd_sender_restrictions = check_sender_access texthash:{senders}
smtpd_recipient_restrictions = check_recipient_access texthash:{recipients}, permit_mynetworks, reject_unauth_destination
smtpd_end_of_data_restrictions = check_client_access static:HOLD
smtpd_peername_lookup = no
local_header_rewrite_clients =
",
                senders = senders.display(),
                recipients = recipients.display(),
            ),
            services: vec![Service::new("direct", &same), Service::new("via", &same)],
        }
    }))
}

/// replyfix in front of the `via` service: rules that rewrite nothing, so
/// everything the client sees is Postfix's.
fn start_replyfix(pf: &Postfix) -> Replyfix {
    let dir = common::TempDir::new("transparency-rules");
    let rules = dir.path().join("keep.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: keep-everything\n    description: rewrite nothing\n    when: {}\n    then: {keep: true}\n",
    )
    .expect("write rules");
    let rf = Replyfix::start(
        Postfix::addr(pf.port("via")),
        ServeOptions::default().yaml(&format!("rules: [\"{}\"]", rules.display())),
    );
    // The rules file is read at start; the dir may go.
    drop(dir);
    rf
}

// ------------------------------------------------------------ scripts

/// One step of a client script.
#[derive(Clone, Debug)]
enum Step {
    /// Command lines (CRLF added) written in one go, one reply each: a
    /// pipelined group, or one lock-step command.
    Group(Vec<String>),
    /// `DATA` (written with the preceding group when `pipelined`); after a
    /// `354` the content is sent (it must end with CRLF.CRLF).
    Data {
        before: Vec<String>,
        content: Vec<u8>,
        /// QUIT written together with the end of data (RFC 2920).
        quit_after: bool,
    },
    /// `DATA` and the content in one write, without waiting for the answer
    /// to DATA (D4).
    DataEarly {
        before: Vec<String>,
        content: Vec<u8>,
    },
    /// BDAT chunks (RFC 3030), written in one go; the last has LAST.
    Bdat(Vec<Vec<u8>>),
    /// Close without QUIT.
    Close,
}

/// What one run of a script produced.
#[derive(Debug, PartialEq)]
struct Run {
    /// Every reply, queue ids masked.
    replies: Vec<String>,
    /// The server closed the connection before the script ended.
    closed: bool,
    /// Postfix's command counts for the session (`ehlo=1 mail=1 ...`).
    commands: String,
    /// Envelope and content of each message Postfix queued.
    messages: Vec<(String, String)>,
}

/// A client connection that reads whole replies.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    closed: bool,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT).expect("connect");
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client {
            stream,
            reader,
            closed: false,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        if !self.closed && self.stream.write_all(bytes).is_err() {
            self.closed = true;
        }
    }

    /// One whole reply, or `None` once the server has closed.
    fn reply(&mut self) -> Option<String> {
        if self.closed {
            return None;
        }
        let mut reply = String::new();
        for _ in 0..1000 {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    self.closed = true;
                    return None;
                }
                Ok(_) => {}
            }
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(reply);
            }
        }
        panic!("reply of more than 1000 lines: {reply:.200}");
    }

    /// Up to `n` replies (fewer when the server closes).
    fn replies(&mut self, n: usize, into: &mut Vec<String>) {
        for _ in 0..n {
            match self.reply() {
                Some(r) => into.push(mask_queue_id(&r)),
                None => return,
            }
        }
    }

    /// True when the server has closed (EOF within a short wait).
    fn server_closed(&mut self) -> bool {
        if self.closed {
            return true;
        }
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(300)));
        let mut byte = [0u8; 1];
        let closed = matches!(self.reader.read(&mut byte), Ok(0));
        let _ = self.stream.set_read_timeout(Some(READ_TIMEOUT));
        closed
    }
}

/// `queued as 4Fz2...` -> `queued as QUEUEID`.
fn mask_queue_id(reply: &str) -> String {
    match reply.find("queued as ") {
        Some(at) => {
            let start = at + "queued as ".len();
            let end = reply[start..]
                .find(|c: char| c.is_ascii_whitespace())
                .map_or(reply.len(), |e| start + e);
            format!("{}QUEUEID{}", &reply[..start], &reply[end..])
        }
        None => reply.to_string(),
    }
}

fn queue_id(reply: &str) -> Option<String> {
    let start = reply.find("queued as ")? + "queued as ".len();
    Some(
        reply[start..]
            .split(|c: char| c.is_ascii_whitespace())
            .next()?
            .to_string(),
    )
}

fn lines(cmds: &[String]) -> Vec<u8> {
    cmds.iter()
        .flat_map(|c| format!("{c}\r\n").into_bytes())
        .collect()
}

/// Runs `steps` against `addr`; returns the replies (greeting first), the
/// queue ids of accepted messages, and whether the server closed first.
fn run_client(addr: SocketAddr, steps: &[Step]) -> (Vec<String>, Vec<String>, bool) {
    let mut c = Client::connect(addr);
    let mut replies = Vec::new();
    let mut queued = Vec::new();
    c.replies(1, &mut replies);
    let note_queued = |queued: &mut Vec<String>, raw: &str| {
        if raw.starts_with("250") {
            queued.extend(queue_id(raw));
        }
    };
    for step in steps {
        if c.closed {
            break;
        }
        match step {
            Step::Group(cmds) => {
                c.send(&lines(cmds));
                c.replies(cmds.len(), &mut replies);
            }
            Step::Data {
                before,
                content,
                quit_after,
            } => {
                let mut group = before.clone();
                group.push("DATA".into());
                c.send(&lines(&group));
                let from = replies.len();
                c.replies(group.len(), &mut replies);
                let go = replies.len() == from + group.len()
                    && replies.last().is_some_and(|r| r.starts_with("354"));
                if go {
                    let mut bytes = content.clone();
                    if *quit_after {
                        bytes.extend_from_slice(b"QUIT\r\n");
                    }
                    c.send(&bytes);
                    let raw = c.reply();
                    if let Some(raw) = raw {
                        note_queued(&mut queued, &raw);
                        replies.push(mask_queue_id(&raw));
                    }
                    if *quit_after {
                        c.replies(1, &mut replies);
                    }
                }
            }
            Step::DataEarly { before, content } => {
                let mut bytes = lines(before);
                bytes.extend_from_slice(b"DATA\r\n");
                bytes.extend_from_slice(content);
                c.send(&bytes);
                // One reply per line, whatever each line turns out to be.
                let n = bytes.iter().filter(|&&b| b == b'\n').count();
                for _ in 0..n {
                    let Some(raw) = c.reply() else { break };
                    note_queued(&mut queued, &raw);
                    replies.push(mask_queue_id(&raw));
                }
            }
            Step::Bdat(chunks) => {
                let mut bytes = Vec::new();
                for (i, chunk) in chunks.iter().enumerate() {
                    let last = if i + 1 == chunks.len() { " LAST" } else { "" };
                    bytes.extend_from_slice(format!("BDAT {}{last}\r\n", chunk.len()).as_bytes());
                    bytes.extend_from_slice(chunk);
                }
                c.send(&bytes);
                for _ in 0..chunks.len() {
                    let Some(raw) = c.reply() else { break };
                    note_queued(&mut queued, &raw);
                    replies.push(mask_queue_id(&raw));
                }
            }
            Step::Close => break,
        }
    }
    let closed = c.server_closed();
    drop(c);
    (replies, queued, closed)
}

/// The part of Postfix's `disconnect from` line after the client name:
/// the command counts (`ehlo=1 mail=1 rcpt=1/2 data=1 quit=1 commands=5/6`).
fn command_counts(line: &str) -> String {
    line.split_once("] ")
        .map_or_else(|| line.to_string(), |(_, counts)| counts.to_string())
}

/// The message Postfix queued: envelope (sender and recipients) and content
/// without the `Received:` header Postfix added (it names the session).
fn queued(pf: &Postfix, id: &str) -> (String, String) {
    let envelope: Vec<String> = pf
        .queued_envelope(id)
        .lines()
        .filter(|l| l.starts_with("sender:") || l.starts_with("recipient:"))
        .map(str::to_string)
        .collect();
    let content = String::from_utf8_lossy(&pf.queued_message(id)).into_owned();
    let mut kept = Vec::new();
    let mut in_received = false;
    for line in content.lines() {
        if line.starts_with("Received:") {
            in_received = true;
            continue;
        }
        if in_received && line.starts_with([' ', '\t']) {
            continue;
        }
        in_received = false;
        kept.push(line);
    }
    (envelope.join("\n"), kept.join("\n"))
}

/// Runs `steps` straight to Postfix (`direct`) and through replyfix
/// (`via`), one session at a time.
struct Harness {
    pf: Postfix,
    rf: Replyfix,
}

impl Harness {
    fn start() -> Option<Harness> {
        let pf = start_postfix()?;
        let rf = start_replyfix(&pf);
        Some(Harness { pf, rf })
    }

    fn run(&mut self, steps: &[Step]) -> (Run, Run) {
        let direct = self.one(
            Postfix::addr(self.pf.port("direct")),
            "postfix/direct/smtpd",
            steps,
        );
        let via = self.one(self.rf.addr, "postfix/via/smtpd", steps);
        (direct, via)
    }

    fn one(&self, addr: SocketAddr, service: &str, steps: &[Step]) -> Run {
        // Sessions run one at a time: the session's disconnect line is the
        // first one after those already logged (start-up probes included).
        let pattern = [service, "disconnect from"];
        let before = self
            .pf
            .log()
            .lines()
            .filter(|l| pattern.iter().all(|p| l.contains(p)))
            .count();
        let (replies, ids, closed) = run_client(addr, steps);
        let disconnects = self.pf.wait_for_lines(&pattern, before + 1);
        let commands = command_counts(&disconnects[before]);
        let messages = ids.iter().map(|id| queued(&self.pf, id)).collect();
        Run {
            replies,
            closed,
            commands,
            messages,
        }
    }
}

/// A difference replyfix makes on purpose.
struct Differs {
    /// The docs/protocol.md id that says so.
    id: &'static str,
    /// The replies replyfix gives from the first one that differs.
    via_tail: &'static [&'static str],
}

struct Case {
    name: &'static str,
    steps: Vec<Step>,
    differs: Option<Differs>,
}

fn g(cmds: &[&str]) -> Step {
    Step::Group(cmds.iter().map(|c| c.to_string()).collect())
}

fn strings(cmds: &[&str]) -> Vec<String> {
    cmds.iter().map(|c| c.to_string()).collect()
}

const MESSAGE: &[u8] =
    b"From: <s@example.test>\r\nSubject: transparency\r\n\r\nbody\r\n..stuffed dot\r\n\r\n.\r\n";

fn table() -> Vec<Case> {
    // 1,000 accepted and 1,000 "452 too many recipients": Postfix's
    // smtpd_recipient_overshoot_limit (1,000). Past it each RCPT counts as
    // an error and Postfix closes at the hard error limit with thousands of
    // our lines unread, which resets the connection: whether the client
    // reads the last replies before the reset is then a race, straight or
    // through replyfix alike. The hard limit has its own case above.
    let many_rcpts: Vec<String> = (0..2_000)
        .map(|i| format!("RCPT TO:<u{i}@accepted.test>"))
        .collect();
    let mut bulk = vec!["MAIL FROM:<bulk@example.test>".to_string()];
    bulk.extend(many_rcpts);
    bulk.push("RSET".to_string());
    vec![
        Case {
            name: "lock-step delivery",
            steps: vec![
                g(&["EHLO client.test"]),
                g(&["MAIL FROM:<s@example.test>"]),
                g(&["RCPT TO:<a@accepted.test>"]),
                Step::Data {
                    before: vec![],
                    content: MESSAGE.to_vec(),
                    quit_after: false,
                },
                g(&["QUIT"]),
            ],
            differs: None,
        },
        Case {
            name: "pipelined delivery, refused and accepted recipients",
            steps: vec![
                g(&["EHLO client.test"]),
                Step::Data {
                    before: strings(&[
                        "MAIL FROM:<s@example.test>",
                        "RCPT TO:<a@accepted.test>",
                        "RCPT TO:<refused@accepted.test>",
                        "RCPT TO:<full@accepted.test>",
                        "RCPT TO:<x@elsewhere.test>",
                        "RCPT TO:<b@accepted.test>",
                    ]),
                    content: MESSAGE.to_vec(),
                    quit_after: false,
                },
                g(&["QUIT"]),
            ],
            differs: None,
        },
        Case {
            name: "every recipient refused, DATA refused, lock-step",
            steps: vec![
                g(&["EHLO client.test"]),
                g(&[
                    "MAIL FROM:<s@example.test>",
                    "RCPT TO:<refused@accepted.test>",
                ]),
                Step::Data {
                    before: vec![],
                    content: MESSAGE.to_vec(),
                    quit_after: false,
                },
                g(&["RSET", "QUIT"]),
            ],
            differs: None,
        },
        Case {
            name: "refused sender",
            steps: vec![
                g(&["EHLO client.test"]),
                g(&["MAIL FROM:<bad@sender.test>", "RCPT TO:<a@accepted.test>"]),
                Step::Data {
                    before: vec![],
                    content: MESSAGE.to_vec(),
                    quit_after: false,
                },
                g(&["QUIT"]),
            ],
            differs: None,
        },
        Case {
            name: "BDAT chunks, pipelined",
            steps: vec![
                g(&["EHLO client.test"]),
                g(&["MAIL FROM:<s@example.test>", "RCPT TO:<a@accepted.test>"]),
                Step::Bdat(vec![
                    b"Subject: chunks\r\n\r\nfirst\r\n.\r\n".to_vec(),
                    b"second with a bare\nLF and CR.CR\r".to_vec(),
                    b"\r\nlast\r\n".to_vec(),
                ]),
                g(&["QUIT"]),
            ],
            differs: None,
        },
        Case {
            name: "BDAT with every recipient refused",
            steps: vec![
                g(&["EHLO client.test"]),
                g(&[
                    "MAIL FROM:<s@example.test>",
                    "RCPT TO:<refused@accepted.test>",
                ]),
                Step::Bdat(vec![b"RCPT TO:<victim@accepted.test>\r\n".to_vec()]),
                g(&["RSET", "QUIT"]),
            ],
            differs: None,
        },
        Case {
            name: "QUIT pipelined after the end of data",
            steps: vec![
                g(&["EHLO client.test"]),
                Step::Data {
                    before: strings(&["MAIL FROM:<s@example.test>", "RCPT TO:<a@accepted.test>"]),
                    content: MESSAGE.to_vec(),
                    quit_after: true,
                },
            ],
            differs: None,
        },
        Case {
            name: "RSET, NOOP, VRFY, HELP, an unknown verb, a syntax error",
            steps: vec![
                g(&["HELO client.test"]),
                g(&[
                    "NOOP",
                    "VRFY a@accepted.test",
                    "RSET",
                    "HELP",
                    "XYZZY",
                    "MAIL FROM:",
                ]),
                g(&["MAIL FROM:<s@example.test>", "RSET", "QUIT"]),
            ],
            differs: None,
        },
        Case {
            name: "commands before EHLO, then a close without QUIT",
            steps: vec![
                g(&["MAIL FROM:<s@example.test>", "RCPT TO:<a@accepted.test>"]),
                g(&["EHLO client.test", "MAIL FROM:<s@example.test>"]),
                Step::Close,
            ],
            differs: None,
        },
        Case {
            name: "errors past smtpd_hard_error_limit",
            steps: vec![
                g(&["EHLO client.test"]),
                Step::Group((0..25).map(|_| "XYZZY".to_string()).collect()),
            ],
            differs: None,
        },
        Case {
            name: "2,000 pipelined RCPTs against smtpd_recipient_limit = 1000",
            steps: vec![g(&["EHLO client.test"]), Step::Group(bulk)],
            differs: None,
        },
        Case {
            name: "content before the 354 (D4)",
            steps: vec![
                g(&["EHLO client.test"]),
                g(&["MAIL FROM:<s@example.test>", "RCPT TO:<a@accepted.test>"]),
                Step::DataEarly {
                    before: vec![],
                    content: MESSAGE.to_vec(),
                },
            ],
            differs: Some(Differs {
                id: "D4",
                via_tail: &["554 5.5.0 Error: SMTP protocol synchronization\r\n"],
            }),
        },
        Case {
            name: "content before a refused DATA becomes no commands (D4)",
            steps: vec![
                g(&["EHLO client.test"]),
                g(&[
                    "MAIL FROM:<s@example.test>",
                    "RCPT TO:<refused@accepted.test>",
                ]),
                Step::DataEarly {
                    before: vec![],
                    content: b"Subject: x\r\n\r\nRCPT TO:<victim@accepted.test>\r\nRSET\r\n.\r\n"
                        .to_vec(),
                },
            ],
            differs: Some(Differs {
                id: "D4",
                via_tail: &["554 5.5.0 Error: SMTP protocol synchronization\r\n"],
            }),
        },
        Case {
            name: "bare LF in message content (D2)",
            steps: vec![
                g(&["EHLO client.test"]),
                Step::Data {
                    before: strings(&["MAIL FROM:<s@example.test>", "RCPT TO:<a@accepted.test>"]),
                    content: b"Subject: bare\r\n\r\none\ntwo\r\n.\r\n".to_vec(),
                    quit_after: false,
                },
                g(&["QUIT"]),
            ],
            differs: Some(Differs {
                id: "D2",
                via_tail: &["550 5.5.2 Error: bare <CR>/<LF>/<NUL> in message content\r\n"],
            }),
        },
        Case {
            name: "a command line over 2,048 octets (R1)",
            steps: vec![
                g(&["EHLO client.test"]),
                Step::Group(vec![format!("NOOP {}", "x".repeat(3000))]),
                g(&["QUIT"]),
            ],
            differs: Some(Differs {
                id: "R1",
                via_tail: &["500 5.5.2 Error: line too long\r\n", "221 2.0.0 Bye\r\n"],
            }),
        },
    ]
}

/// Fails with the neighbourhood of the first difference (not the whole
/// lists: a bulk script has thousands of replies).
fn assert_same_replies(what: &str, direct: &[String], via: &[String]) {
    if direct == via {
        return;
    }
    let at = first_difference(direct, via);
    let window =
        |r: &[String]| r[at.saturating_sub(2).min(r.len())..(at + 3).min(r.len())].to_vec();
    panic!(
        "{what}: replies differ at {at} (direct {} replies, via replyfix {})\ndirect: {:?}\nvia:    {:?}",
        direct.len(),
        via.len(),
        window(direct),
        window(via)
    );
}

/// The first index where two reply lists differ.
fn first_difference(a: &[String], b: &[String]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[test]
fn the_same_scripts_straight_to_postfix_and_through_replyfix_agree() {
    let Some(mut h) = Harness::start() else {
        return;
    };
    let mut report = Vec::new();
    for case in table() {
        let (direct, via) = h.run(&case.steps);
        match &case.differs {
            None => {
                assert_same_replies(case.name, &direct.replies, &via.replies);
                assert_eq!(direct.closed, via.closed, "{}: who closed", case.name);
                assert_eq!(
                    direct.commands, via.commands,
                    "{}: Postfix's command counts",
                    case.name
                );
                assert_eq!(
                    direct.messages, via.messages,
                    "{}: queued messages",
                    case.name
                );
                report.push(format!(
                    "same      {}: {} replies, {}",
                    case.name,
                    via.replies.len(),
                    via.commands
                ));
            }
            Some(d) => {
                let at = first_difference(&direct.replies, &via.replies);
                assert_ne!(
                    direct.replies, via.replies,
                    "{}: the {} difference is listed but did not happen",
                    case.name, d.id
                );
                assert_eq!(
                    &via.replies[at..],
                    d.via_tail,
                    "{}: replyfix's answer under {} (direct had {:?})",
                    case.name,
                    d.id,
                    &direct.replies[at..direct.replies.len().min(at + 3)]
                );
                assert!(
                    via.messages.is_empty() || d.id == "R1",
                    "{}: {:?}",
                    case.name,
                    via.messages
                );
                report.push(format!(
                    "differs   {} ({}): direct {:?}.. via {:?}",
                    case.name,
                    d.id,
                    &direct.replies[at..direct.replies.len().min(at + 2)],
                    d.via_tail
                ));
            }
        }
    }
    println!("{}", report.join("\n"));
}

// ------------------------------------------------------------ random mix

/// A small deterministic generator (SplitMix64): the same seed gives the
/// same sessions on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

fn random_content(rng: &mut Rng) -> Vec<u8> {
    let mut out = b"Subject: mix\r\n\r\n".to_vec();
    for _ in 0..rng.below(8) {
        let line = rng.pick(&[
            "plain text",
            "..leading dot, stuffed",
            "",
            "RCPT TO:<victim@accepted.test>",
            "a longer line of body text with some words in it, to vary the size",
            "MAIL FROM:<x@y>",
        ]);
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// One session of random steps, none of them a case where replyfix
/// differs on purpose.
fn random_session(rng: &mut Rng) -> Vec<Step> {
    let mut steps = Vec::new();
    let ehlo = rng.below(10) > 0;
    if ehlo {
        steps.push(g(&["EHLO mix.test"]));
    } else if rng.below(2) == 0 {
        steps.push(g(&["HELO mix.test"]));
    }
    let pipelined = ehlo && rng.below(2) == 0;
    let senders = [
        "MAIL FROM:<s@example.test>",
        "MAIL FROM:<bad@sender.test>",
        "MAIL FROM:<>",
        "MAIL FROM:",
    ];
    let rcpts = [
        "RCPT TO:<a@accepted.test>",
        "RCPT TO:<b@accepted.test>",
        "RCPT TO:<refused@accepted.test>",
        "RCPT TO:<full@accepted.test>",
        "RCPT TO:<x@elsewhere.test>",
        "RCPT TO:",
    ];
    let extras = ["NOOP", "RSET", "VRFY a@accepted.test", "XYZZY", "HELP"];
    for _ in 0..rng.below(4) {
        let mut group: Vec<String> = Vec::new();
        if rng.below(8) == 0 {
            group.push(rng.pick(&extras).to_string());
        }
        group.push(rng.pick(&senders).to_string());
        for _ in 0..rng.below(5) {
            group.push(rng.pick(&rcpts).to_string());
        }
        let end = rng.below(if ehlo { 4 } else { 3 });
        if !pipelined {
            for cmd in group.drain(..) {
                steps.push(Step::Group(vec![cmd]));
            }
        }
        match end {
            0 => steps.push(Step::Data {
                before: group,
                content: random_content(rng),
                quit_after: false,
            }),
            1 => {
                group.push("RSET".into());
                steps.push(Step::Group(group));
            }
            2 => {
                if !group.is_empty() {
                    steps.push(Step::Group(group));
                }
            }
            _ => {
                if !group.is_empty() {
                    steps.push(Step::Group(group));
                }
                let chunks = (0..1 + rng.below(3)).map(|_| random_content(rng)).collect();
                steps.push(Step::Bdat(chunks));
            }
        }
    }
    match rng.below(4) {
        0 => steps.push(Step::Close),
        1 if ehlo => steps.push(Step::Data {
            before: strings(&["MAIL FROM:<s@example.test>", "RCPT TO:<a@accepted.test>"]),
            content: random_content(rng),
            quit_after: true,
        }),
        _ => steps.push(g(&["QUIT"])),
    }
    steps
}

#[test]
fn a_seeded_random_mix_of_sessions_agrees_straight_and_through_replyfix() {
    let Some(mut h) = Harness::start() else {
        return;
    };
    let seed = std::env::var("TRANSPARENCY_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0x5eed_0f7a_4e00);
    let sessions: usize = std::env::var("TRANSPARENCY_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut rng = Rng(seed);
    let (mut replies, mut messages) = (0, 0);
    for n in 0..sessions {
        let steps = random_session(&mut rng);
        let (direct, via) = h.run(&steps);
        let what = format!("seed {seed:#x}, session {n} (script {steps:?})");
        assert_same_replies(&what, &direct.replies, &via.replies);
        assert_eq!(direct.closed, via.closed, "{what}: who closed");
        assert_eq!(
            direct.commands, via.commands,
            "{what}: Postfix's command counts"
        );
        assert_eq!(direct.messages, via.messages, "{what}: queued messages");
        replies += via.replies.len();
        messages += via.messages.len();
    }
    println!(
        "seed {seed:#x}: {sessions} sessions, {replies} replies and {messages} queued messages, the same straight and through replyfix"
    );
}
