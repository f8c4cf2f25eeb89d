//! The storing, fault-injecting upstream: an SMTP server on 127.0.0.1 that
//! answers like a small MTA, records every message it takes (by the ids in
//! its headers) at the moment it takes it, and fails as the attempt's plan
//! says (looked up by the session id the client puts in its EHLO name).
//!
//! Every reply it writes carries the marker `[up]`, so the campaign can tell
//! its replies from the ones replyfix makes up itself. Every read has a
//! timeout and every loop a bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;

use super::plan::{Action, Cmd, Kill, UpstreamFault, fnv1a};

/// The marker every reply of this upstream carries.
pub const MARK: &str = "[up]";
/// Bound on waiting for one read from replyfix.
const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on a stall or on reading to the end after a close.
const DRAIN_BOUND: Duration = Duration::from_secs(30);
/// Largest message content it accepts.
const MAX_CONTENT: usize = 1 << 20;

/// One message the upstream took responsibility for.
#[derive(Clone, Debug)]
pub struct Stored {
    pub msg: u64,
    pub sid: u64,
    /// The body's length and checksum match its `X-Fault-Body` header.
    pub body_ok: bool,
}

#[derive(Default)]
pub struct Shared {
    plans: Mutex<HashMap<u64, UpstreamFault>>,
    stored: Mutex<Vec<Stored>>,
    /// Messages without readable ids (must stay 0).
    pub unreadable: AtomicUsize,
    /// Sessions whose EHLO named no registered plan (must stay 0).
    pub unknown_sessions: AtomicUsize,
    /// Connections accepted on the main port.
    pub connections: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Registers the fault for session `sid` (before the client connects).
    pub fn plan(&self, sid: u64, fault: UpstreamFault) {
        lock(&self.plans).insert(sid, fault);
    }

    pub fn stored(&self) -> Vec<Stored> {
        lock(&self.stored).clone()
    }
}

/// The upstream's ports and shared record; its tasks run on the runtime
/// that started it and end with it.
pub struct FaultUpstream {
    /// Greets, then follows each session's plan.
    pub main: SocketAddr,
    /// Accepts and never greets.
    pub greeting_stall: SocketAddr,
    /// Accepts and resets.
    pub greeting_reset: SocketAddr,
    /// A listener whose accept queue is full.
    pub connect_stall: SocketAddr,
    pub shared: Arc<Shared>,
    _stall_listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl FaultUpstream {
    pub async fn start() -> FaultUpstream {
        let shared = Arc::new(Shared::default());
        let main = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let greeting_stall = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let greeting_reset = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addrs =
            [&main, &greeting_stall, &greeting_reset].map(|l| l.local_addr().expect("addr"));

        let s = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = main.accept().await else {
                    continue;
                };
                s.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(stream, Arc::clone(&s)));
            }
        });
        tokio::spawn(async move {
            loop {
                if let Ok((mut stream, _)) = greeting_stall.accept().await {
                    tokio::spawn(async move { drain(&mut stream).await });
                }
            }
        });
        tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = greeting_reset.accept().await {
                    let _ = stream.set_zero_linger();
                    drop(stream);
                }
            }
        });

        // upstream_connect: a listener that never accepts, its queue full,
        // so the kernel drops further SYNs and a connect hangs.
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let stall_listener = socket.listen(0).expect("listen");
        let connect_stall = stall_listener.local_addr().expect("addr");
        let mut fillers = Vec::new();
        let mut full = false;
        for _ in 0..16 {
            match timeout(
                Duration::from_millis(300),
                TcpStream::connect(connect_stall),
            )
            .await
            {
                Ok(Ok(s)) => fillers.push(s),
                Ok(Err(e)) => panic!("filling the accept queue of {connect_stall}: {e}"),
                Err(_) => {
                    full = true;
                    break;
                }
            }
        }
        assert!(
            full,
            "the accept queue of {connect_stall} never filled: connect stalls are not testable here"
        );

        FaultUpstream {
            main: addrs[0],
            greeting_stall: addrs[1],
            greeting_reset: addrs[2],
            connect_stall,
            shared,
            _stall_listener: stall_listener,
            _fillers: fillers,
        }
    }
}

/// Reads and drops input until the peer closes (bounded).
async fn drain(stream: &mut TcpStream) {
    let mut buf = [0u8; 8192];
    let _ = timeout(DRAIN_BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Dies as `kill` says.
async fn kill(mut stream: TcpStream, kill: Kill) {
    match kill {
        Kill::Close => {
            let _ = stream.shutdown().await;
            drain(&mut stream).await;
        }
        Kill::Reset => {
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    }
}

async fn act(mut stream: TcpStream, action: Action) {
    match action {
        Action::Kill(k) => kill(stream, k).await,
        Action::Stall => drain(&mut stream).await,
        Action::Reply421 => {
            let reply = format!("421 4.3.2 fault.test Error: closing connection {MARK}\r\n");
            let _ = stream.write_all(reply.as_bytes()).await;
            kill(stream, Kill::Close).await;
        }
    }
}

/// What the content phase ended with.
enum Content {
    /// The whole content, up to and including the end of data.
    Complete(Vec<u8>),
    /// The plan's kill offset was reached.
    KillPoint,
    /// EOF, error, timeout or too long.
    Lost,
}

struct Conn {
    stream: TcpStream,
    /// Read but not yet used.
    buf: Vec<u8>,
}

impl Conn {
    async fn write(&mut self, reply: &str) -> bool {
        self.stream.write_all(reply.as_bytes()).await.is_ok()
    }

    /// Reads more into `buf`: at most `max` octets; false at EOF, error or
    /// timeout.
    async fn fill(&mut self, max: usize) -> bool {
        let mut chunk = [0u8; 16384];
        let max = max.clamp(1, chunk.len());
        match timeout(READ_TIMEOUT, self.stream.read(&mut chunk[..max])).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    /// One command line without its CRLF; `None` at EOF/error/timeout.
    async fn line(&mut self) -> Option<String> {
        for _ in 0..64 {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Some(line);
            }
            if self.buf.len() > 4096 || !self.fill(usize::MAX).await {
                return None;
            }
        }
        None
    }

    /// The content after `354`, to its end of data (D1: `CRLF.CRLF`, the
    /// stream counting as starting after a CRLF), or to `kill_at` octets.
    async fn content(&mut self, kill_at: Option<usize>) -> Content {
        let mut content = std::mem::take(&mut self.buf);
        let mut scanned: usize = 0;
        loop {
            if kill_at.is_some_and(|k| content.len() >= k) {
                return Content::KillPoint;
            }
            if content.starts_with(b".\r\n") {
                self.buf = content.split_off(3);
                return Content::Complete(content);
            }
            let from = scanned.saturating_sub(4);
            if let Some(i) = memchr::memmem::find(&content[from..], b"\r\n.\r\n") {
                let end = from + i + 5;
                self.buf = content.split_off(end);
                return Content::Complete(content);
            }
            scanned = content.len();
            if content.len() > MAX_CONTENT {
                return Content::Lost;
            }
            self.buf = content;
            let max = kill_at.map_or(usize::MAX, |k| k - self.buf.len());
            let more = self.fill(max).await;
            content = std::mem::take(&mut self.buf);
            if !more {
                return Content::Lost;
            }
        }
    }
}

/// The ids and checksum check of one complete content (dot-stuffed, with
/// its end of data).
fn parse_message(content: &[u8]) -> Option<Stored> {
    let content = content.strip_suffix(b".\r\n")?;
    let mut msg = None;
    let mut sid = None;
    let mut declared = None;
    let mut in_body = false;
    let mut body = Vec::with_capacity(content.len());
    for line in content.split_inclusive(|&b| b == b'\n') {
        let unstuffed = line.strip_prefix(b".").unwrap_or(line);
        if in_body {
            body.extend_from_slice(unstuffed);
            continue;
        }
        if unstuffed == b"\r\n" {
            in_body = true;
            continue;
        }
        let text = String::from_utf8_lossy(unstuffed);
        let text = text.trim_end();
        if let Some(v) = text.strip_prefix("X-Fault-Id: m") {
            msg = v.parse().ok();
        } else if let Some(v) = text.strip_prefix("X-Fault-Session: s") {
            sid = v.parse().ok();
        } else if let Some(v) = text.strip_prefix("X-Fault-Body: ") {
            declared = Some(v.to_string());
        }
    }
    let actual = format!("{} {:016x}", body.len(), fnv1a(&body));
    Some(Stored {
        msg: msg?,
        sid: sid?,
        body_ok: declared.as_deref() == Some(actual.as_str()),
    })
}

/// One connection on the main port.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut c = Conn {
        stream,
        buf: Vec::new(),
    };
    if !c.write(&format!("220 fault.test ESMTP {MARK}\r\n")).await {
        return;
    }
    let mut fault = UpstreamFault::None;
    for _ in 0..32 {
        let Some(line) = c.line().await else { return };
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let cmd = match verb.as_str() {
            "EHLO" | "HELO" => {
                fault = session_fault(&shared, &line);
                Some(Cmd::Ehlo)
            }
            "MAIL" => Some(Cmd::Mail),
            "RCPT" => Some(Cmd::Rcpt),
            "DATA" => Some(Cmd::Data),
            "QUIT" => Some(Cmd::Quit),
            _ => None,
        };
        if let UpstreamFault::AtCommand(at, action) = fault
            && Some(at) == cmd
        {
            return act(c.stream, action).await;
        }
        let reply = match verb.as_str() {
            "EHLO" => format!(
                "250-fault.test {MARK}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 10485760\r\n250 ENHANCEDSTATUSCODES\r\n"
            ),
            "HELO" => format!("250 fault.test {MARK}\r\n"),
            "MAIL" => format!("250 2.1.0 Ok {MARK}\r\n"),
            "RCPT" => format!("250 2.1.5 Ok {MARK}\r\n"),
            "RSET" | "NOOP" => format!("250 2.0.0 Ok {MARK}\r\n"),
            "QUIT" => {
                let _ = c.write(&format!("221 2.0.0 Bye {MARK}\r\n")).await;
                return kill(c.stream, Kill::Close).await;
            }
            "DATA" => {
                if !c
                    .write(&format!("354 End data with <CR><LF>.<CR><LF> {MARK}\r\n"))
                    .await
                {
                    return;
                }
                let kill_at = match fault {
                    UpstreamFault::MidData { offset, .. } => Some(offset),
                    _ => None,
                };
                let content = match c.content(kill_at).await {
                    Content::Complete(content) => content,
                    Content::KillPoint => {
                        if let UpstreamFault::MidData { kill: k, .. } = fault {
                            kill(c.stream, k).await;
                        }
                        return;
                    }
                    Content::Lost => return,
                };
                if fault == UpstreamFault::TempFail {
                    format!("451 4.3.0 Error: queue file write error {MARK}\r\n")
                } else {
                    // Stored: from here on the upstream is responsible.
                    let Some(stored) = parse_message(&content) else {
                        shared.unreadable.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    let sid = stored.sid;
                    lock(&shared.stored).push(stored);
                    match fault {
                        UpstreamFault::AfterStore(action) => return act(c.stream, action).await,
                        UpstreamFault::After250(k) => {
                            let _ = c
                                .write(&format!("250 2.0.0 Ok: queued as s{sid} {MARK}\r\n"))
                                .await;
                            return kill(c.stream, k).await;
                        }
                        _ => format!("250 2.0.0 Ok: queued as s{sid} {MARK}\r\n"),
                    }
                }
            }
            _ => format!("502 5.5.2 Error: command not recognized {MARK}\r\n"),
        };
        if !c.write(&reply).await {
            return;
        }
    }
}

/// The fault registered for the session named in `EHLO s<sid>.fault.test`.
fn session_fault(shared: &Shared, line: &str) -> UpstreamFault {
    let sid = line
        .split(' ')
        .nth(1)
        .and_then(|name| name.strip_prefix('s'))
        .and_then(|rest| rest.split('.').next())
        .and_then(|n| n.parse::<u64>().ok());
    match sid.and_then(|sid| lock(&shared.plans).remove(&sid)) {
        Some(f) => f,
        None => {
            shared.unknown_sessions.fetch_add(1, Ordering::Relaxed);
            UpstreamFault::None
        }
    }
}
