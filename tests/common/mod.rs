//! Shared harness for the integration and end-to-end tests.
//!
//! What lives here:
//! - [`tool`]: finds an external program (swaks, smtp-sink, ...) and fails
//!   the test under `CI=true` when it is missing, so CI never skips silently;
//! - [`Replyfix`]: the real `replyfix` binary spawned on a free loopback port,
//!   its stderr captured to a file for log assertions, killed on drop;
//! - [`FakeUpstream`]: a scripted SMTP server on `127.0.0.1:0` that records
//!   every byte it receives (commands, message content, BDAT chunks);
//! - [`SmtpClient`]: a raw line-level SMTP client with read timeouts;
//! - [`SmtpSink`]: Postfix's `smtp-sink` as an upstream that dumps messages.
//!
//! Everything listens and connects on loopback only, every read has a
//! timeout and every loop a bound, so a broken relay fails a test instead of
//! hanging it.
#![allow(dead_code)] // each test crate uses a different part of the harness

pub mod postfix;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Bound on every single read or write a test does on a socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on waiting for a log line or a process to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The user and password the fake upstream accepts for AUTH.
pub const AUTH_USER: &str = "alice@example.test";
pub const AUTH_PASSWORD: &str = "S3cret-pass-!x7";
/// The greeting the fake upstream sends unless told otherwise.
pub const FAKE_GREETING: &str = "220 fake.test ESMTP ready";

// ---------------------------------------------------------------- tools

/// True when running under CI (`CI=true`), where missing tools fail tests.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Says, in the test run's own output (not captured, so it shows without
/// `--nocapture`), that the running test is skipped and why:
/// `SKIPPED tests::name: swaks not installed (...)`.
pub fn report_skip(why: &str) {
    use std::io::Write as _;
    let test = thread::current().name().unwrap_or("a test").to_string();
    // Straight to the process's stderr: libtest captures `eprintln!` of a
    // passing test, and a skip must be seen.
    let _ = writeln!(
        io::stderr().lock(),
        "SKIPPED {test}: {why} (.ci/run installs every tool the suite needs)"
    );
}

/// Finds `name` on PATH (plus the sbin directories, where Postfix keeps
/// `smtp-sink` and `smtp-source`). Under `CI=true` a missing tool panics;
/// otherwise it reports the skip ([`report_skip`]) and returns `None`, and
/// the test returns early.
pub fn tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    let found = dirs.into_iter().map(|d| d.join(name)).find(|p| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    if found.is_none() {
        assert!(
            !under_ci(),
            "{name} is not installed but CI=true: .ci/run must install it"
        );
        report_skip(&format!("{name} not installed"));
    }
    found
}

// ---------------------------------------------------------------- files

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path =
            std::env::temp_dir().join(format!("replyfix-{tag}-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Standard base64 with padding (RFC 4648), for SASL tokens.
pub fn base64(input: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `f` every 20 ms until it returns `Some`, at most `timeout`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- replyfix

/// Path of the binary under test.
pub fn replyfix_bin() -> &'static str {
    env!("CARGO_BIN_EXE_replyfix")
}

/// The `hostname:` replyfix uses in its own replies when started from a
/// config file ([`ServeOptions::config`]).
pub const PROXY_HOSTNAME: &str = "proxy.example.test";

/// Settings for one `replyfix serve` process.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// Extra command-line arguments after `serve ...`.
    pub args: Vec<String>,
    /// `RUST_LOG` for the process; unset when `None`.
    pub rust_log: Option<String>,
    /// Start from a YAML config file (with `hostname:` [`PROXY_HOSTNAME`])
    /// instead of `--listen`/`--upstream`.
    pub config: bool,
    /// Short timeouts (`upstream_reply`, `data_end_reply`, `client_idle`,
    /// in seconds) in the config file.
    pub timeouts_secs: Option<u64>,
    /// More top-level YAML for the config file (e.g. `bare_line_endings:
    /// sanitize`).
    pub extra_yaml: String,
    /// More keys for the listener entry (e.g. `tls: {...}`), one per line.
    pub listener_yaml: String,
    /// More keys for the upstream entry (e.g. `tls: {...}`), one per line.
    pub upstream_yaml: String,
}

impl ServeOptions {
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn rust_log(mut self, filter: &str) -> Self {
        self.rust_log = Some(filter.to_string());
        self
    }

    /// Start from a config file.
    pub fn config(mut self) -> Self {
        self.config = true;
        self
    }

    /// Start from a config file with this extra top-level YAML line.
    pub fn yaml(mut self, line: &str) -> Self {
        self.config = true;
        self.extra_yaml.push_str(line);
        self.extra_yaml.push('\n');
        self
    }

    /// Start from a config file with this key under the listener entry.
    pub fn listener(mut self, line: &str) -> Self {
        self.config = true;
        self.listener_yaml.push_str(&format!("    {line}\n"));
        self
    }

    /// Start from a config file with this key under the upstream entry.
    pub fn upstream(mut self, line: &str) -> Self {
        self.config = true;
        self.upstream_yaml.push_str(&format!("    {line}\n"));
        self
    }

    /// Start from a config file with these short timeouts.
    pub fn timeouts(mut self, secs: u64) -> Self {
        self.config = true;
        self.timeouts_secs = Some(secs);
        self
    }
}

/// The config file for [`ServeOptions::config`] (keys: config/replyfix.yaml).
pub fn config_yaml(listen: SocketAddr, upstream: SocketAddr, opts: &ServeOptions) -> String {
    let mut yaml = format!(
        "hostname: {PROXY_HOSTNAME}\n\
         listeners:\n  - name: main\n    address: \"{listen}\"\n    upstream: up\n{}\
         upstreams:\n  - name: up\n    servers: [\"{upstream}\"]\n{}",
        opts.listener_yaml, opts.upstream_yaml
    );
    if let Some(secs) = opts.timeouts_secs {
        yaml.push_str(&format!(
            "timeouts:\n  upstream_reply: {secs}s\n  data_end_reply: {secs}s\n  client_idle: {secs}s\n"
        ));
    }
    yaml.push_str(&opts.extra_yaml);
    yaml
}

/// A running `replyfix serve`, killed on drop.
pub struct Replyfix {
    child: Child,
    /// Where clients connect.
    pub addr: SocketAddr,
    stderr_path: PathBuf,
    /// Holds the config file and the stderr log; removed on drop.
    _dir: TempDir,
}

impl Replyfix {
    /// `replyfix serve --listen 127.0.0.1:P --upstream UPSTREAM` with the
    /// built-in rules.
    pub fn serve(upstream: SocketAddr) -> Replyfix {
        Replyfix::start(upstream, ServeOptions::default())
    }

    /// Starts replyfix and waits (bounded) for its `listening` log line.
    /// A bind race on the chosen port is retried with another port.
    pub fn start(upstream: SocketAddr, opts: ServeOptions) -> Replyfix {
        let config = opts.config;
        Replyfix::spawn(opts.rust_log.as_deref(), |dir, addr| {
            let mut args: Vec<String> = vec!["serve".into()];
            if config {
                let file = dir.join("replyfix.yaml");
                std::fs::write(&file, config_yaml(addr, upstream, &opts)).expect("write config");
                args.push("--config".into());
                args.push(file.display().to_string());
            } else {
                args.extend([
                    "--listen".into(),
                    addr.to_string(),
                    "--upstream".into(),
                    upstream.to_string(),
                ]);
            }
            args.extend(opts.args.iter().cloned());
            args
        })
    }

    /// Starts `replyfix serve --config FILE` with the whole config written
    /// by `make_yaml`, which gets a free loopback address for its first
    /// listener (it may pick more ports with [`free_port`]; it is called
    /// again, with a new address, when a bind race makes replyfix exit).
    pub fn start_with_config(
        rust_log: Option<&str>,
        mut make_yaml: impl FnMut(SocketAddr) -> String,
    ) -> Replyfix {
        Replyfix::spawn(rust_log, |dir, addr| {
            let file = dir.join("replyfix.yaml");
            std::fs::write(&file, make_yaml(addr)).expect("write config");
            vec![
                "serve".into(),
                "--config".into(),
                file.display().to_string(),
            ]
        })
    }

    /// Spawns replyfix with the arguments `args_for(scratch dir, listen
    /// address)` (plus JSON logs) and waits (bounded) until it listens;
    /// retried up to three times when it exits first (a bind race).
    fn spawn(
        rust_log: Option<&str>,
        mut args_for: impl FnMut(&Path, SocketAddr) -> Vec<String>,
    ) -> Replyfix {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = TempDir::new("replyfix");
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("socket address");
            let mut args = args_for(dir.path(), addr);
            // JSON log records, one per line, for exact field assertions.
            args.extend(["--log-format".into(), "json".into()]);
            let stderr_path = dir.path().join("stderr.log");
            let stderr = std::fs::File::create(&stderr_path).expect("create stderr log");
            let mut cmd = Command::new(replyfix_bin());
            cmd.args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .env_remove("RUST_LOG");
            if let Some(filter) = rust_log {
                cmd.env("RUST_LOG", filter);
            }
            let child = cmd.spawn().expect("spawn replyfix");
            let mut rf = Replyfix {
                child,
                addr,
                stderr_path,
                _dir: dir,
            };
            let ready = poll(START_TIMEOUT, || {
                if rf.log().lines().any(|l| l.contains("listening")) {
                    return Some(true);
                }
                match rf.child.try_wait() {
                    Ok(Some(_)) => Some(false),
                    _ => None,
                }
            });
            match ready {
                Some(true) => return rf,
                Some(false) => last_log = rf.log(),
                None => panic!(
                    "replyfix did not log `listening` within {START_TIMEOUT:?}; args {args:?}; stderr:\n{}",
                    rf.log()
                ),
            }
        }
        panic!("replyfix exited before listening, three times; last stderr:\n{last_log}");
    }

    /// The file replyfix's stderr goes to (JSON records, one per line), for
    /// tests that stream a large log instead of reading it whole.
    pub fn log_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Everything logged up to this call: replyfix writes its log in
    /// batches (`logging::batch`), so this first waits out one batch.
    pub fn log(&self) -> String {
        std::thread::sleep(2 * replyfix::logging::batch::FLUSH_INTERVAL);
        std::fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The JSON log records written so far (non-JSON lines skipped).
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Records whose `message` is `message`.
    pub fn records_with_message(&self, message: &str) -> Vec<serde_json::Value> {
        self.records()
            .into_iter()
            .filter(|r| field(r, "message").as_deref() == Some(message))
            .collect()
    }

    /// Waits (bounded) until `count` records have `message`; returns them.
    pub fn wait_for_records(&self, message: &str, count: usize) -> Vec<serde_json::Value> {
        poll(START_TIMEOUT, || {
            let found = self.records_with_message(message);
            (found.len() >= count).then_some(found)
        })
        .unwrap_or_else(|| {
            panic!(
                "replyfix did not log {count} x {message:?} within {START_TIMEOUT:?}; stderr:\n{}",
                self.log()
            )
        })
    }

    /// Waits (bounded) for the first record with `message`.
    pub fn wait_for_record(&self, message: &str) -> serde_json::Value {
        self.wait_for_records(message, 1).remove(0)
    }

    /// Connects a raw client and reads nothing yet.
    pub fn connect(&self) -> SmtpClient {
        SmtpClient::connect(self.addr)
    }

    /// Connects a raw client and returns it with the greeting it got.
    pub fn connect_greeted(&self) -> (SmtpClient, String) {
        let mut c = self.connect();
        let greeting = c.read_reply();
        (c, greeting)
    }

    /// The exit status, once the process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The scratch folder (holds `replyfix.yaml` when started from a config).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The process id (to send signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Replyfix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- replyfix stderr ---\n{}\n--- end ---", self.log());
        }
    }
}

/// A field of a JSON log record (flattened: fields at the top level) as
/// text: strings as they are, numbers and booleans in their JSON form.
pub fn field(record: &serde_json::Value, key: &str) -> Option<String> {
    match record.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// What `replyfix explain --json` says the client sees for `reply` at
/// `command` with `accepted` recipients already accepted: the wire form
/// (CRLF-terminated) and the deciding rule id. The relay must send exactly
/// that; the tests check the codes independently as well.
pub fn explained(command: &str, accepted: u32, reply: &str) -> (String, Option<String>) {
    explained_batch(command, accepted, false, &[reply]).remove(0)
}

/// [`explained`] for many replies with the same session facts, in one
/// `replyfix explain` run (one reply per line on its standard input).
pub fn explained_batch(
    command: &str,
    accepted: u32,
    authenticated: bool,
    replies: &[&str],
) -> Vec<(String, Option<String>)> {
    let accepted = accepted.to_string();
    let mut cmd = Command::new(replyfix_bin());
    cmd.args(["explain", "--json", "--command", command])
        .args(["--recipients-accepted", &accepted])
        .env_remove("RUST_LOG");
    if authenticated {
        cmd.arg("--authenticated");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn replyfix explain");
    let input = replies.join("\n") + "\n";
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write replies");
    let out = child.wait_with_output().expect("replyfix explain");
    assert!(
        out.status.success(),
        "replyfix explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<(String, Option<String>)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("explain --json line");
            let wire = v["client_sees"]["wire"]
                .as_array()
                .expect("client_sees.wire")
                .iter()
                .map(|l| format!("{}\r\n", l.as_str().expect("wire line")))
                .collect();
            (wire, v["rule"].as_str().map(str::to_string))
        })
        .collect();
    assert_eq!(answers.len(), replies.len(), "one answer per reply");
    answers
}

/// A reply as replyfix's logs show it (docs/protocol.md L4: `\xNN` escapes).
pub fn escaped(reply: &str) -> String {
    reply
        .bytes()
        .map(|b| match b {
            b'\\' => "\\\\".to_string(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------- client

/// A raw SMTP client: writes bytes, reads whole replies, with timeouts.
pub struct SmtpClient {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl SmtpClient {
    pub fn connect(addr: SocketAddr) -> SmtpClient {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone stream"));
        SmtpClient { stream, reader }
    }

    /// This end's address (what the server sees as the client).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("send {:?}: {e}", String::from_utf8_lossy(bytes)));
    }

    /// Writes raw bytes, ignoring errors (the peer may have closed).
    pub fn send_lenient(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads one whole reply (all its lines, CRLFs kept); `None` at EOF.
    pub fn try_read_reply(&mut self) -> io::Result<Option<String>> {
        let mut reply = Vec::new();
        for _ in 0..1000 {
            let mut line = Vec::new();
            let n = self.reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                return if reply.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("EOF inside reply {:?}", String::from_utf8_lossy(&reply)),
                    ))
                };
            }
            let last = line.get(3) != Some(&b'-');
            reply.extend_from_slice(&line);
            if last {
                return Ok(Some(String::from_utf8_lossy(&reply).into_owned()));
            }
        }
        Err(io::Error::other("reply longer than 1000 lines"))
    }

    /// Reads one whole reply; panics on EOF, timeout or error.
    pub fn read_reply(&mut self) -> String {
        match self.try_read_reply() {
            Ok(Some(r)) => r,
            Ok(None) => panic!("connection closed while waiting for a reply"),
            Err(e) => panic!("reading a reply: {e}"),
        }
    }

    /// Sends `line` + CRLF and reads the reply.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }

    /// Reads until the peer closes (bounded by the read timeout); returns
    /// what arrived. A reset counts as a close.
    pub fn read_to_close(&mut self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        for _ in 0..100_000 {
            match self.reader.read(&mut buf) {
                Ok(0) => return String::from_utf8_lossy(&out).into_owned(),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return String::from_utf8_lossy(&out).into_owned();
                }
                Err(e) => panic!(
                    "waiting for close: {e}; got so far {:?}",
                    String::from_utf8_lossy(&out)
                ),
            }
        }
        panic!("peer sent too much without closing")
    }

    /// Asserts the peer closes next, without sending anything more.
    pub fn expect_closed(&mut self) {
        let rest = self.read_to_close();
        assert_eq!(rest, "", "expected a close, got more bytes");
    }

    /// A second handle on the socket for writing from another thread.
    pub fn try_clone_writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone stream")
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).expect("timeout");
    }
}

/// Asserts every line of `reply` carries `code` and `enhanced` (W1), e.g.
/// `550` and `5.1.1`.
#[track_caller]
pub fn assert_codes(reply: &str, code: &str, enhanced: &str) {
    assert!(
        reply.ends_with("\r\n"),
        "reply not CRLF-terminated: {reply:?}"
    );
    let lines: Vec<&str> = reply.split_terminator("\r\n").collect();
    assert!(!lines.is_empty(), "empty reply");
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        let prefix = format!("{code}{sep}{enhanced}");
        assert!(
            line.starts_with(&prefix)
                && matches!(line.as_bytes().get(prefix.len()), None | Some(b' ')),
            "line {i} of {reply:?} does not start with {prefix:?}"
        );
    }
}

/// A plain HTTP GET on the admin endpoint: (status line, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .expect("write request");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

// ---------------------------------------------------------------- fake upstream

/// What the fake upstream does with one command.
#[derive(Clone, Debug)]
pub enum Step {
    /// The default answer (see [`FakeUpstream`]).
    Default,
    /// Send these bytes as they are (a reply, several, or garbage).
    Raw(Vec<u8>),
    /// Send these bytes, then close the connection.
    RawThenClose(Vec<u8>),
    /// `354`, then read content to CRLF.CRLF, then act per [`DataEnd`].
    Data(DataEnd),
    /// Close the connection without a reply.
    Close,
    /// Never answer; read and drop input until the peer closes (bounded).
    Stall,
}

impl Step {
    /// One reply line: `text` + CRLF. Multi-line replies: join with `\r\n`.
    pub fn reply(text: &str) -> Step {
        Step::Raw(format!("{text}\r\n").into_bytes())
    }
}

/// What the fake upstream does after `354`.
#[derive(Clone, Debug)]
pub enum DataEnd {
    /// Read to CRLF.CRLF, then send this reply line (CRLF added).
    Reply(String),
    /// Read at least this many content bytes, then close the connection.
    CloseAfter(usize),
    /// Read to CRLF.CRLF and never answer.
    Stall,
}

/// What the fake upstream saw, over all its connections.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// Connections accepted.
    pub connections: usize,
    /// Every command line, CRLF kept, in arrival order (SASL lines too).
    pub lines: Vec<Vec<u8>>,
    /// Complete DATA contents, raw, up to and including the final `.\r\n`;
    /// and complete BDAT messages (chunks concatenated).
    pub messages: Vec<Vec<u8>>,
    /// DATA contents whose connection ended before CRLF.CRLF, raw.
    pub aborted_data: Vec<Vec<u8>>,
    /// Every byte received, all connections concatenated.
    pub raw: Vec<u8>,
}

impl Recorded {
    /// Command lines as text without their line ends.
    pub fn commands(&self) -> Vec<String> {
        self.lines
            .iter()
            .map(|l| {
                String::from_utf8_lossy(l)
                    .trim_end_matches(['\r', '\n'])
                    .to_string()
            })
            .collect()
    }
}

/// Called with the earlier command lines of this connection and the new
/// one (no line ends).
type Script = Arc<dyn Fn(&[String], &str) -> Step + Send + Sync>;

/// Builder for [`FakeUpstream`].
pub struct FakeUpstreamBuilder {
    greeting: Step,
    greeting_delay: Duration,
    ehlo: String,
    script: Script,
}

impl FakeUpstreamBuilder {
    /// The greeting step (default: [`FAKE_GREETING`]).
    pub fn greeting(mut self, step: Step) -> Self {
        self.greeting = step;
        self
    }

    /// Wait this long before greeting.
    pub fn greeting_delay(mut self, d: Duration) -> Self {
        self.greeting_delay = d;
        self
    }

    /// The EHLO reply, CRLF-joined lines without the final CRLF.
    pub fn ehlo(mut self, reply: &str) -> Self {
        self.ehlo = reply.to_string();
        self
    }

    /// The script: called with each command line (no CRLF); return
    /// [`Step::Default`] for the default answer.
    pub fn script(self, f: impl Fn(&str) -> Step + Send + Sync + 'static) -> Self {
        self.script_with_history(move |_, line| f(line))
    }

    /// Like [`FakeUpstreamBuilder::script`], but the script also gets the
    /// earlier command lines of the same connection (e.g. to tell sessions
    /// apart by their EHLO name).
    pub fn script_with_history(
        mut self,
        f: impl Fn(&[String], &str) -> Step + Send + Sync + 'static,
    ) -> Self {
        self.script = Arc::new(f);
        self
    }

    pub fn start(self) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake upstream");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let record = Arc::new(Mutex::new(Recorded::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let conf = Arc::new(ConnConf {
            greeting: self.greeting,
            greeting_delay: self.greeting_delay,
            ehlo: self.ehlo,
            script: self.script,
            record: Arc::clone(&record),
            stop: Arc::clone(&stop),
        });
        let stop2 = Arc::clone(&stop);
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            let mut accepted = 0usize;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline && accepted < 2000 {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted += 1;
                        let conf = Arc::clone(&conf);
                        thread::spawn(move || serve_conn(stream, &conf));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeUpstream { addr, record, stop }
    }
}

/// A scripted SMTP server on 127.0.0.1:0.
///
/// Defaults: greeting [`FAKE_GREETING`]; EHLO answers with PIPELINING,
/// 8BITMIME, SMTPUTF8, CHUNKING, SIZE, ENHANCEDSTATUSCODES, AUTH PLAIN LOGIN,
/// STARTTLS, XCLIENT, XFORWARD, REQUIRETLS, DSN; MAIL/RCPT/RSET/NOOP `250`;
/// DATA `354` then `250 2.0.0 Ok: queued as FAKE`; `BDAT n [LAST]` reads n
/// octets then `250 2.0.0 Ok: n octets`; AUTH PLAIN/LOGIN accept
/// [`AUTH_USER`]/[`AUTH_PASSWORD`] (`235`), else `535 5.7.8`; QUIT `221` and
/// close; anything else `502 5.5.2`.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    record: Arc<Mutex<Recorded>>,
    stop: Arc<AtomicBool>,
}

/// The default EHLO reply (without the final CRLF).
pub const FAKE_EHLO: &str = "250-fake.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
250-CHUNKING\r\n250-SIZE 52428800\r\n250-ENHANCEDSTATUSCODES\r\n250-AUTH PLAIN LOGIN\r\n\
250-STARTTLS\r\n250-XCLIENT NAME ADDR PROTO HELO\r\n250-XFORWARD NAME ADDR PROTO HELO\r\n\
250-REQUIRETLS\r\n250 DSN";

impl FakeUpstream {
    pub fn builder() -> FakeUpstreamBuilder {
        FakeUpstreamBuilder {
            greeting: Step::reply(FAKE_GREETING),
            greeting_delay: Duration::ZERO,
            ehlo: FAKE_EHLO.to_string(),
            script: Arc::new(|_, _| Step::Default),
        }
    }

    /// A fake upstream with all the defaults.
    pub fn start() -> FakeUpstream {
        FakeUpstream::builder().start()
    }

    /// A fake upstream answering per `script`, defaults elsewhere.
    pub fn with_script(f: impl Fn(&str) -> Step + Send + Sync + 'static) -> FakeUpstream {
        FakeUpstream::builder().script(f).start()
    }

    /// What it has seen so far.
    pub fn recorded(&self) -> Recorded {
        lock(&self.record).clone()
    }

    /// Waits (bounded) until `pred` holds for what it has seen.
    pub fn wait_until(&self, what: &str, pred: impl Fn(&Recorded) -> bool) -> Recorded {
        poll(START_TIMEOUT, || {
            let r = self.recorded();
            pred(&r).then_some(r)
        })
        .unwrap_or_else(|| {
            panic!(
                "fake upstream: {what} did not happen within {START_TIMEOUT:?}; saw {:?}",
                self.recorded().commands()
            )
        })
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An address on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("socket address")
}

fn lock(m: &Mutex<Recorded>) -> MutexGuard<'_, Recorded> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct ConnConf {
    greeting: Step,
    greeting_delay: Duration,
    ehlo: String,
    script: Script,
    record: Arc<Mutex<Recorded>>,
    stop: Arc<AtomicBool>,
}

/// Bound on one DATA content or BDAT chunk the fake upstream accepts.
const MAX_CONTENT: usize = 64 << 20;

/// A reader that copies everything it reads into `Recorded::raw`.
struct Tap {
    stream: TcpStream,
    record: Arc<Mutex<Recorded>>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        lock(&self.record).raw.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

enum Flow {
    Continue,
    Close,
}

fn serve_conn(stream: TcpStream, conf: &ConnConf) {
    lock(&conf.record).connections += 1;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut out = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut reader = BufReader::with_capacity(
        1 << 16,
        Tap {
            stream: match stream.try_clone() {
                Ok(s) => s,
                Err(_) => return,
            },
            record: Arc::clone(&conf.record),
        },
    );
    thread::sleep(conf.greeting_delay);
    let mut conn = Conn {
        conf,
        reader: &mut reader,
        out: &mut out,
        bdat: Vec::new(),
    };
    if let Flow::Close = conn.act(conf.greeting.clone(), "") {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    let mut history: Vec<String> = Vec::new();
    for _ in 0..1_000_000 {
        let Some(line) = conn.read_line() else { break };
        lock(&conf.record).lines.push(line.clone());
        let text = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        let step = (conf.script)(&history, &text);
        if let Flow::Close = conn.act(step, &text) {
            break;
        }
        history.push(text);
    }
    let _ = stream.shutdown(Shutdown::Both);
}

struct Conn<'a> {
    conf: &'a ConnConf,
    reader: &'a mut BufReader<Tap>,
    out: &'a mut TcpStream,
    /// BDAT chunks of the message in progress.
    bdat: Vec<u8>,
}

impl Conn<'_> {
    fn stopped(&self) -> bool {
        self.conf.stop.load(Ordering::Relaxed)
    }

    /// One line (LF-terminated, at most 64 KiB), `None` at EOF, error, or
    /// after [`IO_TIMEOUT`] without one.
    fn read_line(&mut self) -> Option<Vec<u8>> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut line = Vec::new();
        loop {
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) => return None,
                Ok(_) if line.ends_with(b"\n") => return Some(line),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return None,
            }
            if self.stopped() || Instant::now() >= deadline || line.len() > 1 << 16 {
                return None;
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) -> bool {
        self.out.write_all(bytes).is_ok()
    }

    /// Reads and drops input until EOF (bounded), for stalls.
    fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 8192];
        while !self.stopped() && Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return,
            }
        }
    }

    fn act(&mut self, step: Step, cmd: &str) -> Flow {
        match step {
            Step::Default => self.default_step(cmd),
            Step::Raw(bytes) => {
                if self.write(&bytes) {
                    Flow::Continue
                } else {
                    Flow::Close
                }
            }
            Step::RawThenClose(bytes) => {
                self.write(&bytes);
                Flow::Close
            }
            Step::Close => Flow::Close,
            Step::Stall => {
                self.drain();
                Flow::Close
            }
            Step::Data(end) => self.data(end),
        }
    }

    fn data(&mut self, end: DataEnd) -> Flow {
        if !self.write(b"354 End data with <CR><LF>.<CR><LF>\r\n") {
            return Flow::Close;
        }
        let mut content = Vec::new();
        loop {
            let Some(line) = self.read_line() else {
                lock(&self.conf.record).aborted_data.push(content);
                return Flow::Close;
            };
            content.extend_from_slice(&line);
            if let DataEnd::CloseAfter(n) = end
                && content.len() >= n
            {
                lock(&self.conf.record).aborted_data.push(content);
                return Flow::Close;
            }
            if content == b".\r\n" || content.ends_with(b"\r\n.\r\n") {
                break;
            }
            if content.len() > MAX_CONTENT {
                return Flow::Close;
            }
        }
        lock(&self.conf.record).messages.push(content);
        match end {
            DataEnd::Reply(text) => self.act(Step::reply(&text), ""),
            DataEnd::Stall => self.act(Step::Stall, ""),
            DataEnd::CloseAfter(_) => Flow::Close,
        }
    }

    fn bdat(&mut self, args: &str) -> Flow {
        let mut words = args.split_ascii_whitespace();
        let size = words.next().and_then(|w| w.parse::<usize>().ok());
        let last = words.next().is_some_and(|w| w.eq_ignore_ascii_case("LAST"));
        let Some(size) = size.filter(|&s| s <= MAX_CONTENT) else {
            return self.act(Step::reply("501 5.5.4 Syntax: BDAT count [LAST]"), "");
        };
        let mut chunk = vec![0u8; size];
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut got = 0;
        while got < size {
            match self.reader.read(&mut chunk[got..]) {
                Ok(0) => return Flow::Close,
                Ok(n) => got += n,
                Err(e) if is_timeout(&e) => {}
                Err(_) => return Flow::Close,
            }
            if self.stopped() || Instant::now() >= deadline {
                return Flow::Close;
            }
        }
        self.bdat.extend_from_slice(&chunk);
        if last {
            let msg = std::mem::take(&mut self.bdat);
            lock(&self.conf.record).messages.push(msg);
        }
        self.act(
            Step::reply(&format!("250 2.0.0 Ok: {size} octets received")),
            "",
        )
    }

    fn auth(&mut self, args: &str) -> Flow {
        let mut words = args.split_ascii_whitespace();
        let mech = words.next().unwrap_or("").to_ascii_uppercase();
        let initial = words.next().map(str::to_string);
        let plain_ok = base64(format!("\0{AUTH_USER}\0{AUTH_PASSWORD}").as_bytes());
        let ok = match mech.as_str() {
            "PLAIN" => {
                let token = match initial {
                    Some(t) => t,
                    None => match self.challenge("334 \r\n") {
                        Some(t) => t,
                        None => return Flow::Close,
                    },
                };
                token == plain_ok
            }
            "LOGIN" => {
                let user = match initial {
                    Some(t) => t,
                    None => match self.challenge("334 VXNlcm5hbWU6\r\n") {
                        Some(t) => t,
                        None => return Flow::Close,
                    },
                };
                let Some(pass) = self.challenge("334 UGFzc3dvcmQ6\r\n") else {
                    return Flow::Close;
                };
                user == base64(AUTH_USER.as_bytes()) && pass == base64(AUTH_PASSWORD.as_bytes())
            }
            _ => {
                return self.act(
                    Step::reply("504 5.5.4 Unrecognized authentication type"),
                    "",
                );
            }
        };
        let reply = if ok {
            "235 2.7.0 Authentication successful"
        } else {
            "535 5.7.8 Error: authentication failed"
        };
        self.act(Step::reply(reply), "")
    }

    /// Sends a 334 challenge and reads the client's SASL line.
    fn challenge(&mut self, challenge: &str) -> Option<String> {
        if !self.write(challenge.as_bytes()) {
            return None;
        }
        let line = self.read_line()?;
        lock(&self.conf.record).lines.push(line.clone());
        Some(
            String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        )
    }

    fn default_step(&mut self, cmd: &str) -> Flow {
        let (verb, args) = cmd.split_once(' ').unwrap_or((cmd, ""));
        let reply = match verb.to_ascii_uppercase().as_str() {
            "" => format!("{FAKE_GREETING}\r\n"),
            "EHLO" => format!("{}\r\n", self.conf.ehlo),
            "HELO" => "250 fake.test\r\n".to_string(),
            "MAIL" => "250 2.1.0 Ok\r\n".to_string(),
            "RCPT" => "250 2.1.5 Ok\r\n".to_string(),
            "RSET" | "NOOP" => "250 2.0.0 Ok\r\n".to_string(),
            "VRFY" => "252 2.0.0 Cannot VRFY user\r\n".to_string(),
            "QUIT" => return self.act(Step::RawThenClose(b"221 2.0.0 Bye\r\n".to_vec()), ""),
            "DATA" => {
                return self.data(DataEnd::Reply("250 2.0.0 Ok: queued as FAKE".to_string()));
            }
            "BDAT" => return self.bdat(args),
            "AUTH" => return self.auth(args),
            "STARTTLS" => "454 4.7.0 TLS not available (fake upstream)\r\n".to_string(),
            _ => "502 5.5.2 Error: command not recognized\r\n".to_string(),
        };
        self.act(Step::Raw(reply.into_bytes()), "")
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

// ---------------------------------------------------------------- smtp-sink

/// Postfix's `smtp-sink` on a free loopback port, dumping each message to
/// a file in [`SmtpSink::dump_dir`]; killed on drop.
pub struct SmtpSink {
    child: Child,
    pub addr: SocketAddr,
    dump: TempDir,
}

/// Whether this process runs as root (smtp-sink then needs `-u`; a
/// private Postfix needs it to start).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

impl SmtpSink {
    /// Starts `smtp-sink -d DIR/%s. 127.0.0.1:PORT 64` plus `extra` options
    /// and waits (bounded) until it accepts.
    pub fn start(bin: &Path, extra: &[&str]) -> SmtpSink {
        for _attempt in 0..3 {
            let dump = TempDir::new("sink");
            std::fs::set_permissions(dump.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod dump dir");
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
                .parse()
                .expect("socket address");
            let mut cmd = Command::new(bin);
            if running_as_root() {
                cmd.args(["-u", "nobody"]);
            }
            // %s = seconds since the epoch; smtp-sink appends a random hex
            // suffix, so each message gets its own file.
            let template = format!("{}/%s.", dump.path().display());
            cmd.args(["-d", &template])
                .args(extra)
                .arg(addr.to_string())
                .arg("64")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = cmd.spawn().expect("spawn smtp-sink");
            let up = poll(START_TIMEOUT, || {
                if let Ok(Some(_)) = child.try_wait() {
                    return Some(false);
                }
                TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                    .ok()
                    .map(|_| true)
            });
            match up {
                Some(true) => return SmtpSink { child, addr, dump },
                Some(false) => continue,
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("smtp-sink did not accept on {addr} within {START_TIMEOUT:?}");
                }
            }
        }
        panic!("smtp-sink exited before accepting, three times");
    }

    pub fn dump_dir(&self) -> &Path {
        self.dump.path()
    }

    /// The dump files (one per message), sorted by name.
    pub fn dumps(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dump.path())
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Waits (bounded) until `n` dump files exist and stop growing; returns
    /// them.
    pub fn wait_for_dumps(&self, n: usize) -> Vec<PathBuf> {
        let mut last_sizes = Vec::new();
        poll(START_TIMEOUT, || {
            let files = self.dumps();
            let sizes: Vec<u64> = files
                .iter()
                .map(|f| f.metadata().map(|m| m.len()).unwrap_or(0))
                .collect();
            let stable = files.len() >= n && sizes == last_sizes;
            last_sizes = sizes;
            stable.then_some(files)
        })
        .unwrap_or_else(|| {
            panic!(
                "smtp-sink dumped {} of {n} messages within {START_TIMEOUT:?}",
                self.dumps().len()
            )
        })
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The message part of an smtp-sink dump file: the file minus the headers
/// smtp-sink puts first (`X-Client-Addr:` ... and the three-line
/// `Received:`), see `man smtp-sink`, DUMP FILE FORMAT. What remains is the
/// message as received, un-dot-stuffed, lines ended by LF, then one empty
/// line.
pub fn sink_dump_message(dump: &[u8]) -> &[u8] {
    let mut rest = dump;
    let mut in_received = false;
    loop {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        let generated = line.starts_with(b"X-Client-")
            || line.starts_with(b"X-Helo-Args:")
            || line.starts_with(b"X-Mail-Args:")
            || line.starts_with(b"X-Rcpt-Args:")
            || line.starts_with(b"Received:")
            || (in_received && line.starts_with(b"\t"));
        if !generated || line.is_empty() {
            return rest;
        }
        in_received |= line.starts_with(b"Received:");
        rest = &rest[end..];
    }
}

/// What smtp-sink's dump holds for a message whose (unstuffed, CRLF)
/// content is `message`: CRLF turned into LF, then one empty line.
pub fn sink_expected_dump(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 1);
    let mut i = 0;
    while i < message.len() {
        if message[i] == b'\r' && message.get(i + 1) == Some(&b'\n') {
            out.push(b'\n');
            i += 2;
        } else {
            out.push(message[i]);
            i += 1;
        }
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Dot-stuffs `message` (RFC 5321 4.5.2) and appends the end of data.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 8);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// A deterministic test message of about `size` bytes: headers, then lines
/// of varying length (some starting with `.`, some with 8-bit UTF-8), CRLF
/// line ends, no trailing CRLF.CRLF.
pub fn test_message(size: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 1024);
    out.extend_from_slice(
        b"From: Sender <sender@example.test>\r\nTo: Rcpt <rcpt@example.net>\r\n\
Subject: replyfix e2e \xc3\xbcber-test\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
    );
    let mut x = seed | 1;
    let mut n = 0u64;
    while out.len() < size {
        // xorshift64: cheap deterministic variety.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        n += 1;
        match x % 11 {
            0 => out.extend_from_slice(b".leading dot line\r\n"),
            1 => out.extend_from_slice(b"..two leading dots\r\n"),
            2 => out.extend_from_slice(b".\t\r\n"),
            3 => out.extend_from_slice("Grüße, naïve café — 日本語 ✓\r\n".as_bytes()),
            4 => out.extend_from_slice(b"\r\n"),
            _ => {
                let len = (x >> 8) % 900;
                for i in 0..len {
                    out.push(b'a' + ((x >> (i % 40)) as u8 % 26));
                }
                out.extend_from_slice(format!(" line {n}\r\n").as_bytes());
            }
        }
    }
    out.extend_from_slice(b"last line");
    out
}

// ---------------------------------------------------------------- processes

/// Runs `cmd` to completion, killing it after `timeout`; panics on timeout.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> std::process::Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    // Drain the pipes on threads so a chatty child never blocks.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = poll(timeout, || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {timeout:?}");
    };
    std::process::Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}
