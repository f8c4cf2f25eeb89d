//! `replyfix demo`: replyfix doing its job with nothing else installed.
//!
//! It starts the sample upstream ([`upstream::SampleUpstream`], a real SMTP
//! server on loopback that misuses `530` the way many servers do), puts a
//! real replyfix server in front of it (the built-in rules, the same code
//! as `serve`), walks through the [`SCENARIOS`] as a client, and reports
//! for each what the upstream sent, what the client got and the rewrite
//! record replyfix logged. Then it keeps both running for the user's own
//! client until Ctrl-C (unless told to stop).
//!
//! It never listens beyond loopback and never delivers mail anywhere.

pub mod capture;
pub mod upstream;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use self::capture::Captured;
use self::upstream::SampleUpstream;
use crate::config::Config;
use crate::rules::RuleSet;
use crate::server::{ServeError, Server};
use crate::smtp::{Reply, ReplyParser};

/// Bound on each wait of the scripted client.
const WAIT: Duration = Duration::from_secs(10);

/// One scripted session: commands sent in order (each waits for its
/// reply); the step whose reply is shown is `shown`.
pub struct Scenario {
    /// What the scenario shows, for the reader.
    pub title: &'static str,
    /// Why replyfix does what it does with it.
    pub why: &'static str,
    pub commands: &'static [&'static str],
    /// Index in `commands` of the command whose reply is the point.
    pub shown: usize,
}

/// The walk-through, in order.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        title: "A mailbox that does not exist, reported as a \"configuration error\"",
        why: "another recipient of the same message was accepted, so the server works: this one does not exist",
        commands: &[
            "EHLO client.example",
            "MAIL FROM:<you@example.com>",
            "RCPT TO:<alice@demo.test>",
            "RCPT TO:<nobody@demo.test>",
            "QUIT",
        ],
        shown: 3,
    },
    Scenario {
        title: "The same reply as the first recipient",
        why: "nothing tells a missing mailbox from a broken server yet: a permanent failure, not a login problem",
        commands: &[
            "EHLO client.example",
            "MAIL FROM:<you@example.com>",
            "RCPT TO:<nobody@demo.test>",
            "QUIT",
        ],
        shown: 2,
    },
    Scenario {
        title: "An unknown user, sent with the authentication code",
        why: "the text says the user is unknown",
        commands: &[
            "EHLO client.example",
            "MAIL FROM:<you@example.com>",
            "RCPT TO:<typo@demo.test>",
            "QUIT",
        ],
        shown: 2,
    },
    Scenario {
        title: "The sending host is on a blocklist",
        why: "a blocklist refusal is a policy decision, not a login problem",
        commands: &[
            "EHLO client.example",
            "MAIL FROM:<you@listed.example>",
            "QUIT",
        ],
        shown: 1,
    },
    Scenario {
        title: "Relaying without logging in (a legitimate 530)",
        why: "this 530 means what RFC 4954 says: log in first; it is kept",
        commands: &[
            "EHLO client.example",
            "MAIL FROM:<you@example.com>",
            "RCPT TO:<friend@elsewhere.example>",
            "QUIT",
        ],
        shown: 2,
    },
    Scenario {
        title: "A normal delivery",
        why: "no rule touches it: every byte passes as the upstream sent it",
        commands: &[
            "EHLO client.example",
            "MAIL FROM:<you@example.com>",
            "RCPT TO:<alice@demo.test>",
            "DATA",
            "Subject: hello\r\n\r\nA message through replyfix.\r\n.",
            "QUIT",
        ],
        shown: 4,
    },
];

/// What one scenario showed.
#[derive(Clone, Debug)]
pub struct Shown {
    pub title: &'static str,
    pub why: &'static str,
    /// The command whose reply is shown (message content abbreviated).
    pub command: String,
    /// What the sample upstream sent to it.
    pub upstream: String,
    /// What the client got through replyfix.
    pub client: String,
    /// The rewrite record replyfix logged for it, if any (`key=value`).
    pub record: Option<String>,
}

impl Shown {
    /// True when the client got something other than the upstream sent.
    pub fn rewritten(&self) -> bool {
        self.upstream != self.client
    }

    /// What happened, in a few words: `unchanged`, `kept, with a hint`
    /// (same code, an explanatory line added) or `530 -> 550 5.1.1`.
    pub fn verdict(&self) -> String {
        let code = |r: &str| r.get(..3).unwrap_or("").to_string();
        let first = |r: &str| {
            let line = r.split("\r\n").next().unwrap_or("");
            let rest = line.get(4..).unwrap_or("");
            match crate::smtp::EnhancedCode::parse_prefix(rest.as_bytes()) {
                Some((e, _)) => format!("{} {e}", code(r)),
                None => code(r),
            }
        };
        if !self.rewritten() {
            "unchanged".into()
        } else if code(&self.upstream) == code(&self.client) {
            "kept, with a hint".into()
        } else {
            format!("{} -> {}", first(&self.upstream), first(&self.client))
        }
    }
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the sample upstream on 127.0.0.1: {0}")]
    Upstream(std::io::Error),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("the scripted client: {0}")]
    Client(String),
}

/// The demo's sample upstream and replyfix in front of it.
pub struct Demo {
    pub upstream: SampleUpstream,
    pub server: Server,
    /// Where replyfix listens.
    pub addr: SocketAddr,
}

impl Demo {
    /// Starts the sample upstream and a replyfix server on `listen` in front
    /// of it, with the built-in rules and the quick start's defaults.
    pub async fn start(listen: SocketAddr) -> Result<Demo, DemoError> {
        if !listen.ip().is_loopback() {
            return Err(DemoError::Config(format!(
                "the demo listens on loopback only; {listen} is not (use 127.0.0.1:PORT)"
            )));
        }
        let upstream = SampleUpstream::start().await.map_err(DemoError::Upstream)?;
        let config = Config::quick(vec![listen], vec![upstream.addr.to_string()])
            .map_err(|e| DemoError::Config(e.to_string()))?;
        let server = Server::start(&config, RuleSet::builtin(), &[]).await?;
        let addr = server
            .addresses
            .first()
            .map(|(_, a)| *a)
            .ok_or_else(|| DemoError::Config("no listener bound".into()))?;
        Ok(Demo {
            upstream,
            server,
            addr,
        })
    }

    /// Walks through [`SCENARIOS`]; `records` is where replyfix's rewrite
    /// records arrive ([`capture`]).
    pub async fn walk(&self, records: &Captured) -> Result<Vec<Shown>, DemoError> {
        let mut shown = Vec::new();
        for scenario in SCENARIOS {
            let connection = self.upstream.connections();
            let before = records.len();
            let replies = converse(self.addr, scenario.commands).await?;
            let client = replies.get(scenario.shown + 1).cloned().ok_or_else(|| {
                DemoError::Client(format!(
                    "no reply to {:?}",
                    scenario.commands[scenario.shown]
                ))
            })?;
            // The upstream's exchanges: greeting first, then one per command
            // (the content's reply is recorded as the end of data).
            let sent = self.upstream.exchanges(connection);
            let upstream = sent
                .get(scenario.shown + 1)
                .map(|e| e.reply.clone())
                .unwrap_or_default();
            let rewritten = upstream != client;
            // The record is written when the reply goes out; give the log a
            // moment when a rewrite is expected.
            let record = if rewritten {
                records.wait_for(before + 1, Duration::from_secs(2)).await;
                records.get(before)
            } else {
                None
            };
            let command = scenario.commands[scenario.shown];
            let command = if command.contains("\r\n") {
                "(message content) .".to_string()
            } else {
                command.to_string()
            };
            shown.push(Shown {
                title: scenario.title,
                why: scenario.why,
                command,
                upstream,
                client,
                record,
            });
        }
        Ok(shown)
    }
}

/// One session through replyfix: the greeting, then each command and its
/// reply (lock-step). Returns every reply, greeting first.
async fn converse(addr: SocketAddr, commands: &[&str]) -> Result<Vec<String>, DemoError> {
    let err = |what: &str, e: &dyn std::fmt::Display| DemoError::Client(format!("{what}: {e}"));
    let mut stream = timeout(WAIT, TcpStream::connect(addr))
        .await
        .map_err(|e| err("connect", &e))?
        .map_err(|e| err("connect", &e))?;
    let mut parser = ReplyParser::default();
    let mut pending: Vec<Reply> = Vec::new();
    let mut replies = vec![read_reply(&mut stream, &mut parser, &mut pending).await?];
    for command in commands {
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .map_err(|e| err("write", &e))?;
        replies.push(read_reply(&mut stream, &mut parser, &mut pending).await?);
    }
    Ok(replies)
}

async fn read_reply(
    stream: &mut TcpStream,
    parser: &mut ReplyParser,
    pending: &mut Vec<Reply>,
) -> Result<String, DemoError> {
    let mut buf = [0u8; 4096];
    while pending.is_empty() {
        let n = timeout(WAIT, stream.read(&mut buf))
            .await
            .map_err(|_| DemoError::Client("no reply in time".into()))?
            .map_err(|e| DemoError::Client(format!("read: {e}")))?;
        if n == 0 {
            return Err(DemoError::Client("replyfix closed the connection".into()));
        }
        parser
            .feed(&buf[..n], pending)
            .map_err(|e| DemoError::Client(format!("reply: {e}")))?;
    }
    let reply = pending.remove(0);
    Ok(String::from_utf8_lossy(reply.raw()).into_owned())
}

/// The walk-through as text for a terminal.
pub fn report(shown: &[Shown], upstream: SocketAddr, proxy: SocketAddr, rules: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replyfix demo: a sample upstream that misuses 530, and replyfix in front of it\n\n  sample upstream  {upstream}\n  replyfix         {proxy}   (built-in rules {rules})\n"
    );
    let indent = |text: &str| -> String {
        let lines: Vec<&str> = text.trim_end().split("\r\n").collect();
        lines.join("\n               ")
    };
    for (i, s) in shown.iter().enumerate() {
        let _ = writeln!(out, "{}. {} ({})", i + 1, s.title, s.verdict());
        let _ = writeln!(out, "   client      {}", s.command);
        let _ = writeln!(out, "   upstream    {}", indent(&s.upstream));
        let _ = writeln!(out, "   client gets {}", indent(&s.client));
        if let Some(r) = &s.record {
            let _ = writeln!(out, "   logged      {r}");
        }
        let _ = writeln!(out, "   why         {}\n", s.why);
    }
    out
}

/// What to try next, for a terminal.
pub fn try_it(proxy: SocketAddr) -> String {
    format!(
        "Try it with any SMTP client (swaks, or nc and typed commands); replyfix prints each\n\
         rewrite below as it logs it. The sample upstream answers:\n\
         \x20 RCPT TO:<nobody@demo.test>          the misused 530 \"configuration error\"\n\
         \x20 RCPT TO:<typo@demo.test>            530 5.7.1 ... User unknown\n\
         \x20 MAIL FROM:<anyone@listed.example>   530 5.7.1 ... blocked using zen.spamhaus.org\n\
         \x20 RCPT TO:<anyone@elsewhere.example>  530 5.7.0 Authentication required (AUTH demo / demo)\n\
         \x20 any other @demo.test mailbox        250, and DATA is accepted and dropped\n\n\
         \x20 swaks --server {proxy} --from you@example.com --to nobody@demo.test\n\
         \x20 nc -C {} {}\n\n\
         Then point replyfix at your own server:\n\
         \x20 replyfix serve --listen 127.0.0.1:2525 --upstream mail.example.net:25\n\n\
         Ctrl-C stops the demo.\n",
        proxy.ip(),
        proxy.port()
    )
}
