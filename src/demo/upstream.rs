//! The sample upstream of `replyfix demo`: a small real SMTP server (tokio,
//! loopback) that answers the way misbehaving servers of the field do, so
//! replyfix can be seen doing its job with nothing else installed.
//!
//! What it answers, by address (documented in docs/rules.md, "Try it"):
//! - `RCPT TO:<nobody@demo.test>`: the misused `530` "configuration error"
//!   for a mailbox that does not exist;
//! - `RCPT TO:<typo@demo.test>`: a `530 5.7.1 ... User unknown` (a
//!   rejection of another class sent with the wrong code);
//! - `MAIL FROM:<...@listed.example>`: a `530 5.7.1` blocklist refusal of
//!   the sending host;
//! - `RCPT TO:` any domain other than `demo.test` before AUTH: the
//!   legitimate `530 5.7.0 Authentication required` (relaying needs a
//!   login); `AUTH PLAIN`/`LOGIN` with `demo`/`demo` succeed;
//! - every other `demo.test` mailbox accepts mail; `DATA` is read to its end
//!   and dropped.
//!
//! It records every reply it sends, so the demo can show what the upstream
//! said beside what the client got. It never stores or forwards mail, binds
//! loopback only, and bounds every line, message and wait.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// The sample upstream's own name, in its greeting.
pub const NAME: &str = "demo-upstream.test";
/// The domain it delivers for.
pub const DOMAIN: &str = "demo.test";
/// The misused 530 for a mailbox that does not exist (the wording many
/// servers use).
pub const CONFIG_ERROR_530: &str = "530 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.";

/// Longest command line read.
const MAX_LINE: usize = 4096;
/// Largest message read (then dropped).
const MAX_MESSAGE: usize = 10 * 1024 * 1024;
/// Idle time before the sample upstream hangs up.
const IDLE: Duration = Duration::from_secs(300);
/// Sessions served at once.
const MAX_SESSIONS: usize = 64;

/// One command and the reply the sample upstream sent to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exchange {
    /// The command line without its line end (`""` for the greeting; SASL
    /// lines are recorded as `"(SASL data)"`).
    pub command: String,
    /// The reply, CRLFs kept.
    pub reply: String,
}

/// What the sample upstream sent, per connection, in order.
pub type Transcript = Arc<Mutex<Vec<Vec<Exchange>>>>;

/// A running sample upstream; stops when dropped.
pub struct SampleUpstream {
    pub addr: SocketAddr,
    transcript: Transcript,
    task: JoinHandle<()>,
}

impl SampleUpstream {
    /// Binds `127.0.0.1:0` and serves until dropped.
    pub async fn start() -> std::io::Result<SampleUpstream> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let transcript: Transcript = Arc::default();
        let record = transcript.clone();
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    continue; // over the bound: the connection is dropped
                };
                let index = {
                    let mut t = record.lock().unwrap_or_else(PoisonError::into_inner);
                    t.push(Vec::new());
                    t.len() - 1
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &record, index).await;
                    drop(slot);
                });
            }
        });
        Ok(SampleUpstream {
            addr,
            transcript,
            task,
        })
    }

    /// Every exchange of connection `index` (0 is the first accepted).
    pub fn exchanges(&self, index: usize) -> Vec<Exchange> {
        self.transcript
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
            .cloned()
            .unwrap_or_default()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.transcript
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for SampleUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The session's state that changes the answers.
#[derive(Default)]
struct State {
    authenticated: bool,
    sender: bool,
    recipients: u32,
}

async fn serve(stream: TcpStream, record: &Transcript, index: usize) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut state = State::default();
    let say = async |write: &mut tokio::net::tcp::OwnedWriteHalf,
                     command: &str,
                     reply: String|
           -> std::io::Result<()> {
        if let Some(conn) = record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(index)
        {
            conn.push(Exchange {
                command: command.to_string(),
                reply: reply.clone(),
            });
        }
        write.write_all(reply.as_bytes()).await
    };
    say(
        &mut write,
        "",
        format!("220 {NAME} ESMTP sample upstream (it misuses 530, like many servers)\r\n"),
    )
    .await?;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match timeout(
            IDLE,
            (&mut read)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line),
        )
        .await
        {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with(b"\n") {
            say(
                &mut write,
                "(too long)",
                "500 5.5.2 line too long\r\n".into(),
            )
            .await?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let (verb, arg) = text.split_once(' ').unwrap_or((&text, ""));
        let verb = verb.to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => {
                state = State::default();
                format!(
                    "250-{NAME}\r\n250-PIPELINING\r\n250-SIZE 10485760\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n"
                )
            }
            "HELO" => {
                state = State::default();
                format!("250 {NAME}\r\n")
            }
            "MAIL" => mail(&mut state, arg),
            "RCPT" => rcpt(&mut state, arg),
            "DATA" if state.recipients == 0 => "554 5.5.1 Error: no valid recipients\r\n".into(),
            "DATA" => {
                say(
                    &mut write,
                    &text,
                    "354 End data with <CR><LF>.<CR><LF>\r\n".into(),
                )
                .await?;
                if !read_message(&mut read).await? {
                    return Ok(());
                }
                state.sender = false;
                state.recipients = 0;
                say(
                    &mut write,
                    "(end of data)",
                    "250 2.0.0 Ok: queued as DEMO (and dropped: this is a demo)\r\n".into(),
                )
                .await?;
                continue;
            }
            "AUTH" => {
                let ok = auth(&mut read, &mut write, record, index, arg).await?;
                state.authenticated |= ok;
                if ok {
                    "235 2.7.0 Authentication successful\r\n".into()
                } else {
                    "535 5.7.8 Error: authentication failed (try demo / demo)\r\n".into()
                }
            }
            "RSET" => {
                state.sender = false;
                state.recipients = 0;
                "250 2.0.0 Ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".into(),
            "QUIT" => {
                say(&mut write, &text, "221 2.0.0 Bye\r\n".into()).await?;
                return Ok(());
            }
            _ => "502 5.5.2 Error: command not recognized\r\n".into(),
        };
        let shown = if verb == "AUTH" {
            "AUTH (credentials not recorded)".to_string()
        } else {
            text.clone()
        };
        say(&mut write, &shown, reply).await?;
    }
}

/// The address between `<` and `>`, lower-cased.
fn address(arg: &str) -> String {
    arg.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(a, _)| a.to_ascii_lowercase())
        .unwrap_or_default()
}

fn mail(state: &mut State, arg: &str) -> String {
    let sender = address(arg);
    if sender.ends_with("@listed.example") {
        return "530 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.7\r\n".into();
    }
    state.sender = true;
    state.recipients = 0;
    "250 2.1.0 Ok\r\n".into()
}

fn rcpt(state: &mut State, arg: &str) -> String {
    if !state.sender {
        return "503 5.5.1 Error: need MAIL command\r\n".into();
    }
    let rcpt = address(arg);
    let Some((local, domain)) = rcpt.rsplit_once('@') else {
        return "501 5.1.3 Bad recipient address syntax\r\n".into();
    };
    if domain != DOMAIN {
        if !state.authenticated {
            return "530 5.7.0 Authentication required\r\n".into();
        }
        state.recipients += 1;
        return "250 2.1.5 Ok\r\n".into();
    }
    match local {
        "nobody" => format!("{CONFIG_ERROR_530}\r\n"),
        "typo" => format!(
            "530 5.7.1 <{rcpt}>: Recipient address rejected: User unknown in local recipient table\r\n"
        ),
        _ => {
            state.recipients += 1;
            "250 2.1.5 Ok\r\n".into()
        }
    }
}

/// Reads message content to its `CRLF.CRLF` (bounded); false at EOF.
async fn read_message<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R) -> std::io::Result<bool> {
    let mut total = 0usize;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = match timeout(IDLE, read.read_until(b'\n', &mut line)).await {
            Ok(r) => r?,
            Err(_) => return Ok(false),
        };
        if n == 0 {
            return Ok(false);
        }
        total += n;
        if line == b".\r\n" {
            return Ok(true);
        }
        if total > MAX_MESSAGE {
            return Ok(false);
        }
    }
}

/// `AUTH PLAIN [initial]` or `AUTH LOGIN`; true for `demo` / `demo`.
async fn auth<R: tokio::io::AsyncBufRead + Unpin>(
    read: &mut R,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    record: &Transcript,
    index: usize,
    arg: &str,
) -> std::io::Result<bool> {
    let mut words = arg.split_ascii_whitespace();
    let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
    let initial = words.next().map(str::to_string);
    let mut ask = async |challenge: &str| -> std::io::Result<String> {
        if let Some(conn) = record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(index)
        {
            conn.push(Exchange {
                command: "(SASL data)".into(),
                reply: format!("{challenge}\r\n"),
            });
        }
        write
            .write_all(format!("{challenge}\r\n").as_bytes())
            .await?;
        let mut line = Vec::new();
        match timeout(
            IDLE,
            read.take(MAX_LINE as u64).read_until(b'\n', &mut line),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => 0,
        };
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    };
    match mechanism.as_str() {
        "PLAIN" => {
            let token = match initial {
                Some(t) => t,
                None => ask("334 ").await?,
            };
            Ok(token == "AGRlbW8AZGVtbw==") // "\0demo\0demo"
        }
        "LOGIN" => {
            let user = match initial {
                Some(t) => t,
                None => ask("334 VXNlcm5hbWU6").await?,
            };
            let password = ask("334 UGFzc3dvcmQ6").await?;
            Ok(user == "ZGVtbw==" && password == "ZGVtbw==") // "demo"
        }
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn talk(addr: SocketAddr, lines: &[&str]) -> Vec<String> {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut replies = Vec::new();
        let mut reply = String::new();
        read.read_line(&mut reply).await.unwrap();
        replies.push(reply);
        for line in lines {
            write
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .unwrap();
            let mut reply = String::new();
            loop {
                let mut l = String::new();
                if read.read_line(&mut l).await.unwrap() == 0 {
                    break;
                }
                reply.push_str(&l);
                if l.as_bytes().get(3) != Some(&b'-') {
                    break;
                }
            }
            replies.push(reply);
        }
        replies
    }

    #[tokio::test]
    async fn answers_like_the_misbehaving_servers_it_stands_for() {
        let up = SampleUpstream::start().await.unwrap();
        let r = talk(
            up.addr,
            &[
                "EHLO c",
                "MAIL FROM:<a@example.com>",
                "RCPT TO:<alice@demo.test>",
                "RCPT TO:<nobody@demo.test>",
                "RCPT TO:<typo@demo.test>",
                "RCPT TO:<bob@elsewhere.example>",
                "AUTH PLAIN AGRlbW8AZGVtbw==",
                "RCPT TO:<bob@elsewhere.example>",
                "RSET",
                "MAIL FROM:<x@listed.example>",
                "QUIT",
            ],
        )
        .await;
        assert!(r[0].starts_with("220 demo-upstream.test"), "{}", r[0]);
        assert!(r[1].contains("PIPELINING"));
        assert_eq!(r[3], "250 2.1.5 Ok\r\n");
        assert_eq!(r[4], format!("{CONFIG_ERROR_530}\r\n"));
        assert!(r[5].starts_with("530 5.7.1 <typo@demo.test>"), "{}", r[5]);
        assert_eq!(r[6], "530 5.7.0 Authentication required\r\n");
        assert!(r[7].starts_with("235"), "{}", r[7]);
        assert_eq!(r[8], "250 2.1.5 Ok\r\n", "relaying after AUTH");
        assert!(
            r[10].starts_with("530 5.7.1 Service unavailable"),
            "{}",
            r[10]
        );
        assert_eq!(r[11], "221 2.0.0 Bye\r\n");
        // What it sent is recorded, credentials never.
        let sent = up.exchanges(0);
        assert_eq!(sent.len(), 12);
        assert_eq!(sent[4].reply, format!("{CONFIG_ERROR_530}\r\n"));
        assert!(sent.iter().all(|e| !e.command.contains("AGRlbW8")));
    }

    #[tokio::test]
    async fn a_message_is_read_to_its_end_and_acknowledged() {
        let up = SampleUpstream::start().await.unwrap();
        let stream = TcpStream::connect(up.addr).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        write
            .write_all(b"HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<bob@demo.test>\r\nDATA\r\n")
            .await
            .unwrap();
        let mut seen = String::new();
        while !seen.contains("354") {
            let mut l = String::new();
            assert!(read.read_line(&mut l).await.unwrap() > 0);
            seen.push_str(&l);
        }
        write
            .write_all(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
            .await
            .unwrap();
        let mut rest = String::new();
        read.read_to_string(&mut rest).await.unwrap();
        assert!(rest.starts_with("250 2.0.0 Ok: queued as DEMO"), "{rest}");
        assert!(rest.ends_with("221 2.0.0 Bye\r\n"), "{rest}");
    }
}
