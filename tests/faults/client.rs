//! The client's side of one delivery attempt: one session through replyfix,
//! one message, with every wait bounded; and the test that tells the
//! upstream's replies from the ones replyfix made up.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::plan::{ClientFault, Kill, Plan};
use super::upstream::MARK;
use crate::common::PROXY_HOSTNAME;

/// Bound on each reply the client waits for: far above every replyfix
/// timeout in the campaign's config, so hitting it means a hang.
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// The pause between the two parts of a split content.
const PAUSE: Duration = Duration::from_millis(5);
/// Bound on the close that must follow a closing reply.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// smtp-sink's replies (Postfix 3.x), first line, exactly.
const SINK_EXACT: [&str; 8] = [
    "220 smtp-sink ESMTP",
    "250-smtp-sink",
    "250 2.1.0 Ok",
    "250 2.1.5 Ok",
    "354 End data with <CR><LF>.<CR><LF>",
    "250 2.0.0 Ok",
    "221 Bye",
    "421 4.0.0 Server closing connection",
];

/// Whether the upstream wrote `reply` (possibly changed by replyfix's
/// capability filter or rules) rather than replyfix itself: every reply of
/// the in-test upstream carries [`MARK`]; smtp-sink's replies are the fixed
/// set [`SINK_EXACT`]. Anything else reached the client from replyfix
/// alone. (A made-up reply that happens to equal a sink reply would be
/// missed here, but a made-up success cannot hide: the campaign also checks
/// that every `250` after an end of data is backed by that attempt's stored
/// copy.)
pub fn from_upstream(reply: &str) -> bool {
    let first = reply.lines().next().unwrap_or("");
    first.contains(MARK) || SINK_EXACT.contains(&first)
}

/// The first line of `reply`, with replyfix's hostname shown as `<host>`
/// so that the classes group.
pub fn class(reply: &str) -> String {
    reply
        .lines()
        .next()
        .unwrap_or("")
        .replace(PROXY_HOSTNAME, "<host>")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    Greeting,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    EndOfData,
    Quit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `250` after the end of data.
    Accepted,
    /// A 4xx (or a close) before that: the client retries.
    Deferred,
    /// A 5xx: the client gives up.
    Bounced,
    /// The client died mid-DATA on purpose: it retries.
    ClientKilled,
    /// No reply within [`REPLY_TIMEOUT`].
    Hang,
}

/// What one attempt saw.
#[derive(Debug)]
pub struct Attempt {
    pub msg: u64,
    pub sid: u64,
    pub plan: Plan,
    pub outcome: Outcome,
    /// The reply to the end of data, if one came.
    pub end_of_data: Option<String>,
    /// Replies replyfix made up (not the upstream's), with their step.
    pub made_up: Vec<(Step, String)>,
    /// Protocol breaches the client saw (must stay empty).
    pub problems: Vec<String>,
    /// How long the attempt took, connect to close.
    pub elapsed: Duration,
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

enum Read {
    Reply(String),
    Closed,
    Timeout,
}

impl Client {
    /// One whole reply (all lines); a reset counts as a close.
    async fn reply(&mut self) -> Read {
        let mut chunk = [0u8; 4096];
        for _ in 0..1000 {
            // A complete reply: lines up to one whose 4th octet is not '-'.
            let mut start = 0;
            while let Some(i) = self.buf[start..].windows(2).position(|w| w == b"\r\n") {
                let line = &self.buf[start..start + i];
                start += i + 2;
                if line.get(3) != Some(&b'-') {
                    let reply = String::from_utf8_lossy(&self.buf[..start]).into_owned();
                    self.buf.drain(..start);
                    return Read::Reply(reply);
                }
            }
            match timeout(REPLY_TIMEOUT, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Read::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return Read::Timeout,
            }
        }
        Read::Closed
    }

    /// After a closing reply: the next thing must be the close.
    async fn expect_close(&mut self, after: &str, problems: &mut Vec<String>) {
        let mut chunk = [0u8; 1024];
        if !self.buf.is_empty() {
            problems.push(format!(
                "bytes after the closing reply {:?}: {:?}",
                class(after),
                String::from_utf8_lossy(&self.buf)
            ));
            return;
        }
        match timeout(CLOSE_TIMEOUT, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => problems.push(format!(
                "bytes after the closing reply {:?}: {:?}",
                class(after),
                String::from_utf8_lossy(&chunk[..n])
            )),
            Err(_) => problems.push(format!(
                "no close within {CLOSE_TIMEOUT:?} after {:?}",
                class(after)
            )),
        }
    }
}

/// Runs one attempt: `wire` is the dot-stuffed content with its end of data.
pub async fn attempt(addr: SocketAddr, msg: u64, sid: u64, plan: Plan, wire: &[u8]) -> Attempt {
    let started = tokio::time::Instant::now();
    let mut a = run(addr, msg, sid, plan, wire).await;
    a.elapsed = started.elapsed();
    a
}

async fn run(addr: SocketAddr, msg: u64, sid: u64, plan: Plan, wire: &[u8]) -> Attempt {
    let mut a = Attempt {
        msg,
        sid,
        plan,
        outcome: Outcome::Deferred,
        end_of_data: None,
        made_up: Vec::new(),
        problems: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let stream = match timeout(REPLY_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        other => {
            a.outcome = Outcome::Hang;
            a.problems
                .push(format!("connect to replyfix at {addr}: {other:?}"));
            return a;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut c = Client {
        stream,
        buf: Vec::new(),
    };
    let commands = [
        (Step::Greeting, String::new(), b'2'),
        (Step::Ehlo, format!("EHLO s{sid}.fault.test\r\n"), b'2'),
        (
            Step::Mail,
            "MAIL FROM:<sender@example.test>\r\n".into(),
            b'2',
        ),
        (
            Step::Rcpt,
            format!("RCPT TO:<m{msg}@example.net>\r\n"),
            b'2',
        ),
        (Step::Data, "DATA\r\n".into(), b'3'),
        (Step::EndOfData, String::new(), b'2'),
        (Step::Quit, "QUIT\r\n".into(), b'2'),
    ];
    let mut i = 0;
    while i < commands.len() {
        // RFC 2920: with `pipeline`, MAIL, RCPT and DATA go in one write.
        let group = if plan.pipeline && commands[i].0 == Step::Mail {
            3
        } else {
            1
        };
        if commands[i].0 == Step::EndOfData {
            if let ClientFault::KillMidData { offset, kill } = plan.client {
                let _ = timeout(REPLY_TIMEOUT, c.stream.write_all(&wire[..offset])).await;
                if kill == Kill::Reset {
                    let _ = c.stream.set_zero_linger();
                }
                drop(c);
                a.outcome = Outcome::ClientKilled;
                return a;
            }
            // A failed write (replyfix closed) shows in the reply read next.
            // Pipelining, QUIT follows the end of data in the same write
            // (as Postfix's client does).
            let (first, second) = wire.split_at(plan.pause_at.unwrap_or(wire.len()));
            let mut second = second.to_vec();
            if plan.pipeline {
                second.extend_from_slice(b"QUIT\r\n");
            }
            let send = async {
                if c.stream.write_all(first).await.is_ok() {
                    if plan.pause_at.is_some() {
                        tokio::time::sleep(PAUSE).await;
                    }
                    let _ = c.stream.write_all(&second).await;
                }
            };
            if timeout(REPLY_TIMEOUT, send).await.is_err() {
                a.outcome = Outcome::Hang;
                a.problems
                    .push(format!("content not read within {REPLY_TIMEOUT:?}"));
                return a;
            }
        } else {
            let lines: String = commands[i..i + group]
                .iter()
                .map(|(_, line, _)| line.as_str())
                .collect();
            let quit_sent = plan.pipeline && commands[i].0 == Step::Quit;
            if !lines.is_empty() && !quit_sent {
                let _ = c.stream.write_all(lines.as_bytes()).await;
            }
        }
        for (j, &(step, _, want)) in commands[i..i + group].iter().enumerate() {
            let reply = match c.reply().await {
                Read::Reply(r) => r,
                Read::Closed => {
                    // P1/F2: every command gets a reply before the close.
                    a.problems
                        .push(format!("closed without a reply to {step:?}"));
                    return a;
                }
                Read::Timeout => {
                    if step != Step::Quit {
                        a.outcome = Outcome::Hang;
                    }
                    a.problems
                        .push(format!("no reply to {step:?} within {REPLY_TIMEOUT:?}"));
                    return a;
                }
            };
            let own = !from_upstream(&reply);
            if own {
                a.made_up.push((step, class(&reply)));
            }
            if step == Step::EndOfData {
                a.end_of_data = Some(reply.clone());
            }
            let ok = reply.as_bytes().first() == Some(&want);
            if step == Step::EndOfData {
                a.outcome = match reply.as_bytes().first() {
                    Some(b'2') => Outcome::Accepted,
                    Some(b'5') => Outcome::Bounced,
                    _ => Outcome::Deferred,
                };
            } else if !ok && step != Step::Quit && reply.starts_with('5') {
                a.outcome = Outcome::Bounced;
            }
            if !ok || step == Step::Quit {
                // replyfix's own replies here all end the session (F2), as
                // does every 421 (P3); after QUIT the close comes in any case.
                if own || reply.starts_with("421") || step == Step::Quit {
                    // Commands still outstanding (pipelined) may each get
                    // one reply before the close (P1), no more.
                    let mut outstanding: Vec<Step> =
                        commands[i + j + 1..i + group].iter().map(|c| c.0).collect();
                    if plan.pipeline && step == Step::EndOfData {
                        outstanding.push(Step::Quit);
                    }
                    for later in outstanding {
                        match c.reply().await {
                            Read::Reply(r) => {
                                if !from_upstream(&r) {
                                    a.made_up.push((later, class(&r)));
                                }
                            }
                            Read::Closed => break,
                            Read::Timeout => {
                                a.problems.push(format!(
                                    "neither a reply to {later:?} nor the close within {REPLY_TIMEOUT:?}"
                                ));
                                return a;
                            }
                        }
                    }
                    c.expect_close(&reply, &mut a.problems).await;
                }
                return a;
            }
        }
        i += group;
    }
    a
}
