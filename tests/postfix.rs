//! `send_client_address` against a real Postfix `smtpd` (issue 5): PROXY
//! v1 and v2 out to a service with `smtpd_upstream_proxy_protocol =
//! haproxy`, XCLIENT out to a service with `smtpd_authorized_xclient_hosts`,
//! and XCLIENT after STARTTLS on the upstream leg (T3).
//!
//! Each test starts a private, throw-away Postfix instance: its own config,
//! queue and data directories under a temp dir, loopback ports only, its
//! log in a file (`maillog_file`, Postfix >= 3.4), stopped when the test
//! ends (also on failure). Postfix itself decides what it saw: its
//! `smtpd_client_restrictions` answer each client address with a reply
//! that names it ([`CLIENTS_CIDR`]), and its log names the client of every
//! session. Needs root (Postfix's master starts as root) and the `postfix`
//! package; under `CI=true` a missing `postfix` fails the tests.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// What Postfix answers, by client address, in `smtpd_client_restrictions`
/// (evaluated at RCPT: `smtpd_delay_reject = yes`, the default):
/// - replyfix's own address: forwarding failed;
/// - 127.0.0.2: a client whose socket replyfix accepted from 127.0.0.2;
/// - 192.0.2.7 (a client behind a PROXY header into replyfix): a misused
///   530 that replyfix's built-in rules rewrite to `554 5.7.1`;
/// - everything else is accepted.
const CLIENTS_CIDR: &str = "\
127.0.0.1/32  554 5.7.1 seen-as-replyfix-127.0.0.1
127.0.0.2/32  554 5.7.1 seen-as-127.0.0.2
192.0.2.7/32  530 5.7.1 seen-as-192.0.2.7 blocked by local policy
";

/// A recipient in the domain Postfix relays for (`relay_domains`), to its
/// `discard:` transport.
const ACCEPTED_RCPT: &str = "rcpt@accepted.test";

// ------------------------------------------------------------ Postfix

/// The `postfix` command, or `None` (test skipped) when Postfix is missing
/// or this is not root; under `CI=true` both fail the test instead.
fn postfix_command() -> Option<PathBuf> {
    let bin = tool("postfix")?;
    if !common::running_as_root() {
        assert!(
            !under_ci(),
            "tests/postfix.rs starts a private Postfix, which needs root; CI runs as root"
        );
        eprintln!("skipped: a private Postfix instance needs root");
        return None;
    }
    Some(bin)
}

/// The ports of one instance's `smtpd` services.
#[derive(Clone, Copy, Debug)]
struct Ports {
    /// XCLIENT authorised for 127.0.0.1.
    xclient: u16,
    /// `smtpd_upstream_proxy_protocol = haproxy`: every connection starts
    /// with a PROXY v1 or v2 header.
    haproxy: u16,
    /// STARTTLS offered (`smtpd_tls_security_level = may`) and XCLIENT
    /// authorised for 127.0.0.1.
    tls_xclient: u16,
    /// Nothing special: XCLIENT is not offered to replyfix.
    plain: u16,
}

/// A running private Postfix instance; stopped on drop (and whatever of it
/// lingers killed).
struct Postfix {
    bin: PathBuf,
    ports: Ports,
    config_dir: PathBuf,
    maillog: PathBuf,
    pid_file: PathBuf,
    /// Holds everything of the instance; removed after `drop` stopped it.
    _dir: TempDir,
}

impl Postfix {
    /// Writes the configuration and runs `postfix -c DIR start`, retrying
    /// with other ports if one was taken meanwhile. Waits (bounded) until
    /// every service accepts.
    fn start(bin: &Path) -> Postfix {
        let mut last = String::new();
        for _attempt in 0..3 {
            let dir = TempDir::new("postfix");
            // Postfix's daemons run as `postfix` and must reach the queue
            // and data directories whatever the umask.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod temp dir");
            let ports = Ports {
                xclient: free_port(),
                haproxy: free_port(),
                tls_xclient: free_port(),
                plain: free_port(),
            };
            let config_dir = dir.path().join("etc");
            std::fs::create_dir(&config_dir).expect("create config dir");
            // The queue directory must exist (root-owned; `postfix start`
            // creates its subdirectories). The data directory must not: then
            // Postfix creates it owned by `postfix`.
            std::fs::create_dir(dir.path().join("queue")).expect("create queue dir");
            write_config(dir.path(), &config_dir, ports);
            let pf = Postfix {
                bin: bin.to_path_buf(),
                ports,
                maillog: dir.path().join("maillog"),
                pid_file: dir.path().join("queue/pid/master.pid"),
                config_dir,
                _dir: dir,
            };
            let out = run_bounded(
                Command::new(&pf.bin)
                    .arg("-c")
                    .arg(&pf.config_dir)
                    .arg("start"),
                Duration::from_secs(60),
            );
            if !out.status.success() {
                last = format!(
                    "postfix start: {}\n{}{}\nlog:\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    pf.log()
                );
                continue; // drop stops whatever half-started
            }
            // `postfix start` returns once the master has bound every
            // service (`master -w`); connecting checks that anyway, except on
            // the haproxy port, where a connection without a PROXY header
            // would be logged as replyfix's 127.0.0.1.
            let all = [ports.xclient, ports.tls_xclient, ports.plain];
            let up = poll(START_TIMEOUT, || {
                all.iter()
                    .all(|p| {
                        let addr = SocketAddr::from(([127, 0, 0, 1], *p));
                        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                    })
                    .then_some(())
            });
            if up.is_some() {
                return pf;
            }
            last = format!("not all of {all:?} accept; log:\n{}", pf.log());
        }
        panic!("private Postfix did not start, three times; last:\n{last}");
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Postfix's log so far.
    fn log(&self) -> String {
        std::fs::read(&self.maillog)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits (bounded) until a log line contains every one of `parts`;
    /// returns that line.
    fn wait_for_line(&self, parts: &[&str]) -> String {
        poll(START_TIMEOUT, || {
            self.log()
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            panic!(
                "Postfix did not log a line with {parts:?} within {START_TIMEOUT:?}; log:\n{}",
                self.log()
            )
        })
    }

    fn master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let pid = self.master_pid();
        // `postfix stop` waits up to 5 s for the master, then kills it.
        let _ = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config_dir)
            .arg("stop")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(|mut child| {
                if poll(Duration::from_secs(20), || child.try_wait().ok().flatten()).is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            });
        // Leftovers: the master leads its own process group; any member
        // still there after a bounded wait is killed, by process id.
        if let Some(pid) = pid {
            let lingering = poll(Duration::from_secs(5), || {
                let left = process_group(pid);
                left.is_empty().then_some(())
            });
            if lingering.is_none() {
                for member in process_group(pid) {
                    // The shell's built-in kill: no procps needed.
                    let _ = Command::new("sh")
                        .args(["-c", "kill -KILL \"$1\"", "sh", &member.to_string()])
                        .status();
                }
            }
        }
        if std::thread::panicking() {
            eprintln!("--- postfix maillog ---\n{}\n--- end ---", self.log());
        }
        // The temp dir goes after this, with the daemons gone.
    }
}

/// The processes whose process group is `pgid` (from `/proc/N/stat`).
fn process_group(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // "pid (comm) state ppid pgrp ...": comm may hold spaces.
                    let after = &stat[stat.rfind(')')? + 1..];
                    after.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

/// `main.cf`, `master.cf`, the client table and a self-signed certificate
/// (rcgen) for the STARTTLS service.
fn write_config(root: &Path, config_dir: &Path, ports: Ports) {
    let cert_key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&cert_key)
        .expect("self-signed certificate");
    let cert_file = config_dir.join("cert.pem");
    let key_file = config_dir.join("key.pem");
    std::fs::write(&cert_file, cert.pem()).expect("write cert");
    std::fs::write(&key_file, cert_key.serialize_pem()).expect("write key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let cidr = config_dir.join("clients.cidr");
    std::fs::write(&cidr, CLIENTS_CIDR).expect("write cidr");
    let root = root.display();
    let main_cf = format!(
        "# A private test instance: loopback only, nothing leaves it.
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.replyfix.test
mydestination =
mynetworks = 127.0.0.1/32
relay_domains = accepted.test
relayhost =
default_transport = discard:
relay_transport = discard:
local_transport = discard:
alias_maps =
alias_database =
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
smtpd_client_restrictions = check_client_access cidr:{cidr}
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_loglevel = 1
",
        cidr = cidr.display(),
        cert = cert_file.display(),
        key = key_file.display(),
    );
    // The haproxy service would look up the names of 127.0.0.2 and
    // 192.0.2.7 in the DNS, which may be slow or absent where tests run;
    // the other services see only 127.0.0.1 (`/etc/hosts`) before XCLIENT,
    // and XCLIENT's NAME=[UNAVAILABLE] needs no lookup.
    let master_cf = format!(
        "# service type private unpriv chroot wakeup maxproc command
127.0.0.1:{xclient} inet n - n - - smtpd
  -o syslog_name=postfix/xclient
  -o smtpd_authorized_xclient_hosts=127.0.0.1
127.0.0.1:{haproxy} inet n - n - - smtpd
  -o syslog_name=postfix/haproxy
  -o smtpd_upstream_proxy_protocol=haproxy
  -o smtpd_upstream_proxy_timeout=5s
  -o smtpd_peername_lookup=no
127.0.0.1:{tls} inet n - n - - smtpd
  -o syslog_name=postfix/tls
  -o smtpd_authorized_xclient_hosts=127.0.0.1
  -o smtpd_tls_security_level=may
127.0.0.1:{plain} inet n - n - - smtpd
  -o syslog_name=postfix/plain
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
",
        xclient = ports.xclient,
        haproxy = ports.haproxy,
        tls = ports.tls_xclient,
        plain = ports.plain,
    );
    std::fs::write(config_dir.join("main.cf"), main_cf).expect("write main.cf");
    std::fs::write(config_dir.join("master.cf"), master_cf).expect("write master.cf");
}

// ------------------------------------------------------------ clients

/// A line-level SMTP client whose socket is bound to `source` (a loopback
/// address other than 127.0.0.1, so the real client address differs from
/// replyfix's own).
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect_from(source: &str, to: SocketAddr) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let stream = rt
            .block_on(async {
                let sock = tokio::net::TcpSocket::new_v4()?;
                sock.bind(format!("{source}:0").parse().expect("source address"))?;
                tokio::time::timeout(IO_TIMEOUT, sock.connect(to))
                    .await
                    .map_err(|_| std::io::Error::other("connect timed out"))?
            })
            .unwrap_or_else(|e| panic!("connect from {source} to {to}: {e}"));
        let stream = stream.into_std().expect("into std");
        stream.set_nonblocking(false).expect("blocking");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Client { stream, reader }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// One whole reply (all lines, CRLFs kept); panics on EOF or timeout.
    fn read_reply(&mut self) -> String {
        let mut reply = String::new();
        for _ in 0..200 {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("read reply");
            assert!(
                n > 0,
                "connection closed inside or before a reply: {reply:?}"
            );
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
        panic!("reply longer than 200 lines: {reply:?}")
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.read_reply()
    }
}

/// Greeting, EHLO, MAIL; returns the RCPT reply for `rcpt`.
fn rcpt_reply(c: &mut Client, rcpt: &str) -> String {
    let greeting = c.read_reply();
    assert!(
        greeting.starts_with("220 postfix.replyfix.test"),
        "{greeting}"
    );
    let ehlo = c.cmd("EHLO client.example.test");
    assert!(ehlo.starts_with("250-postfix.replyfix.test"), "{ehlo}");
    assert!(
        !ehlo.contains("XCLIENT"),
        "never offered to clients: {ehlo}"
    );
    let mail = c.cmd("MAIL FROM:<sender@example.test>");
    assert!(mail.starts_with("250 2.1.0"), "{mail}");
    c.cmd(&format!("RCPT TO:<{rcpt}>"))
}

/// A whole message through replyfix and Postfix from `source`; asserts the
/// 250s and returns Postfix's queue id from the end-of-data reply.
fn send_message(rf: &Replyfix, source: &str) -> String {
    let mut c = Client::connect_from(source, rf.addr);
    let rcpt = rcpt_reply(&mut c, ACCEPTED_RCPT);
    assert!(rcpt.starts_with("250 2.1.5"), "{rcpt}");
    let data = c.cmd("DATA");
    assert!(data.starts_with("354"), "{data}");
    c.send(
        b"From: <sender@example.test>\r\nTo: <rcpt@accepted.test>\r\n\
Subject: replyfix and a real Postfix\r\n\r\nHello.\r\n..a stuffed dot line\r\n.\r\n",
    );
    let end = c.read_reply();
    assert!(end.starts_with("250 2.0.0 Ok: queued as "), "{end}");
    assert!(c.cmd("QUIT").starts_with("221"));
    end.trim_end()
        .rsplit(' ')
        .next()
        .expect("queue id")
        .to_string()
}

/// The replyfix options for one `send_client_address` towards `port`.
fn forwarding(method: &str) -> ServeOptions {
    ServeOptions::default()
        .upstream(&format!("send_client_address: {method}"))
        .timeouts(15)
}

/// Runs the three proofs for `method` against the Postfix service on
/// `port`, whose log lines carry `service` (its `syslog_name`):
/// 1. a client bound to 127.0.0.2 is refused by Postfix's rule for
///    127.0.0.2, not the one for replyfix's 127.0.0.1, and Postfix logs
///    the session under 127.0.0.2;
/// 2. a client behind a PROXY header into replyfix (192.0.2.7) gets
///    Postfix's misused 530 for that address, rewritten to 554 5.7.1;
/// 3. a message from an accepted address (127.0.0.3) is queued (250) and
///    delivered by Postfix.
fn prove_postfix_sees_the_real_client(pf: &Postfix, port: u16, method: &str, service: &str) {
    let upstream = Postfix::addr(port);

    // 1. The real client address, from the socket.
    let rf = Replyfix::start(upstream, forwarding(method));
    let mut c = Client::connect_from("127.0.0.2", rf.addr);
    let rcpt = rcpt_reply(&mut c, ACCEPTED_RCPT);
    assert!(
        rcpt.starts_with("554 5.7.1 ") && rcpt.contains("seen-as-127.0.0.2"),
        "Postfix must judge 127.0.0.2, not replyfix: {rcpt}"
    );
    c.cmd("QUIT");
    let reject = pf.wait_for_line(&[service, "NOQUEUE: reject: RCPT from", "seen-as-127.0.0.2"]);
    assert!(reject.contains("[127.0.0.2]"), "{reject}");
    pf.wait_for_line(&[service, "disconnect from", "[127.0.0.2]"]);

    // 3. The happy path: an accepted address, a whole message.
    let queue_id = send_message(&rf, "127.0.0.3");
    pf.wait_for_line(&[service, &queue_id, "client=", "[127.0.0.3]"]);
    pf.wait_for_line(&[&queue_id, "to=<rcpt@accepted.test>", "status=sent"]);
    drop(rf);

    // 2. A client address from a PROXY header into replyfix, and a 530
    // that Postfix gives only to that address, rewritten by the rules.
    let rf = Replyfix::start(
        upstream,
        forwarding(method)
            .listener("proxy_protocol: v1")
            .listener("trusted_proxies: [\"127.0.0.1/32\"]"),
    );
    let mut c = Client::connect_from("127.0.0.1", rf.addr);
    c.send(b"PROXY TCP4 192.0.2.7 127.0.0.1 40007 25\r\n");
    let rcpt = rcpt_reply(&mut c, ACCEPTED_RCPT);
    assert_codes(&rcpt, "554", "5.7.1");
    assert!(rcpt.contains("seen-as-192.0.2.7"), "{rcpt}");
    c.cmd("QUIT");
    let rewrite = rf.wait_for_record("reply rewritten");
    assert_eq!(
        field(&rewrite, "rule").as_deref(),
        Some("blocked-sending-host")
    );
    let original = field(&rewrite, "original").unwrap_or_default();
    assert!(
        original.starts_with("530 5.7.1 ") && original.contains("seen-as-192.0.2.7"),
        "{original}"
    );
    pf.wait_for_line(&[
        service,
        "NOQUEUE: reject: RCPT from",
        "[192.0.2.7]: 530 5.7.1",
    ]);

    assert!(
        !pf.log().contains("seen-as-replyfix"),
        "Postfix judged replyfix's own address somewhere:\n{}",
        pf.log()
    );
}

/// No session of `service` was ever logged under replyfix's own address.
fn assert_never_saw_replyfix(pf: &Postfix, service: &str) {
    let log = pf.log();
    let seen: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(service) && l.contains("[127.0.0.1]"))
        .collect();
    assert!(seen.is_empty(), "{service} saw 127.0.0.1: {seen:#?}");
}

// ------------------------------------------------------------ tests

#[test]
fn xclient_out_lets_a_real_postfix_judge_the_real_client_issue5() {
    let Some(bin) = postfix_command() else { return };
    let pf = Postfix::start(&bin);
    prove_postfix_sees_the_real_client(&pf, pf.ports.xclient, "xclient", "postfix/xclient/smtpd");
    // Postfix's own record of the XCLIENT: the session starts as replyfix
    // (127.0.0.1) and ends as the client, with no hostname carried over
    // from replyfix's (`NAME=[UNAVAILABLE]`, not `localhost`).
    pf.wait_for_line(&["postfix/xclient/smtpd", "connect from", "[127.0.0.1]"]);
    pf.wait_for_line(&[
        "postfix/xclient/smtpd",
        "disconnect from unknown[127.0.0.2]",
    ]);
    pf.wait_for_line(&[
        "postfix/xclient/smtpd",
        "disconnect from unknown[192.0.2.7]",
    ]);
}

#[test]
fn proxy_v1_out_lets_a_real_postfix_judge_the_real_client_issue5() {
    let Some(bin) = postfix_command() else { return };
    let pf = Postfix::start(&bin);
    prove_postfix_sees_the_real_client(&pf, pf.ports.haproxy, "proxy-v1", "postfix/haproxy/smtpd");
    // With the PROXY protocol Postfix never sees replyfix at all: the
    // session is the client's from its first log line.
    pf.wait_for_line(&["postfix/haproxy/smtpd", "connect from", "[127.0.0.2]"]);
    pf.wait_for_line(&["postfix/haproxy/smtpd", "connect from", "[192.0.2.7]"]);
    assert_never_saw_replyfix(&pf, "postfix/haproxy/smtpd");
}

#[test]
fn proxy_v2_out_lets_a_real_postfix_judge_the_real_client_issue5() {
    let Some(bin) = postfix_command() else { return };
    let pf = Postfix::start(&bin);
    prove_postfix_sees_the_real_client(&pf, pf.ports.haproxy, "proxy-v2", "postfix/haproxy/smtpd");
    pf.wait_for_line(&["postfix/haproxy/smtpd", "connect from", "[127.0.0.2]"]);
    pf.wait_for_line(&["postfix/haproxy/smtpd", "connect from", "[192.0.2.7]"]);
    assert_never_saw_replyfix(&pf, "postfix/haproxy/smtpd");
}

/// The control: without forwarding, or with XCLIENT where Postfix does not
/// authorise it, Postfix judges replyfix's own address. This is what makes
/// the proofs above mean something.
#[test]
fn without_forwarding_a_real_postfix_judges_replyfix_issue5() {
    let Some(bin) = postfix_command() else { return };
    let pf = Postfix::start(&bin);
    for method in ["none", "xclient"] {
        let rf = Replyfix::start(Postfix::addr(pf.ports.plain), forwarding(method));
        let mut c = Client::connect_from("127.0.0.2", rf.addr);
        let rcpt = rcpt_reply(&mut c, ACCEPTED_RCPT);
        assert!(
            rcpt.contains("seen-as-replyfix-127.0.0.1"),
            "{method}: {rcpt}"
        );
        c.cmd("QUIT");
        if method == "xclient" {
            rf.wait_for_record("session closed");
            assert!(rf.log().contains("does not offer XCLIENT"), "{}", rf.log());
        }
    }
}

/// XCLIENT over an upstream leg that STARTTLS protects (T3, RFC 3207 4.2):
/// replyfix says EHLO again inside TLS, takes XCLIENT from that reply, and
/// Postfix judges the real client on the encrypted session.
#[test]
fn xclient_after_upstream_starttls_lets_a_real_postfix_judge_the_real_client_t3() {
    let Some(bin) = postfix_command() else { return };
    let pf = Postfix::start(&bin);
    for policy in ["encrypt", "may"] {
        let rf = Replyfix::start(
            Postfix::addr(pf.ports.tls_xclient),
            forwarding("xclient").upstream(&format!("tls: {{policy: {policy}}}")),
        );
        let mut c = Client::connect_from("127.0.0.2", rf.addr);
        let rcpt = rcpt_reply(&mut c, ACCEPTED_RCPT);
        assert!(rcpt.contains("seen-as-127.0.0.2"), "{policy}: {rcpt}");
        c.cmd("QUIT");
        let closed = rf.wait_for_record("session closed");
        let upstream_tls = field(&closed, "upstream_tls").unwrap_or_default();
        assert!(upstream_tls.starts_with("TLS"), "{policy}: {closed}");
        drop(rf);
    }
    pf.wait_for_line(&[
        "postfix/tls/smtpd",
        "TLS connection established from",
        "[127.0.0.1]",
    ]);
    // Postfix counts the commands of each session: replyfix's EHLO in
    // plaintext, STARTTLS, replyfix's EHLO again inside TLS (T3), then
    // XCLIENT and the client's EHLO: three EHLOs.
    let disconnect = pf.wait_for_line(&["postfix/tls/smtpd", "disconnect from unknown[127.0.0.2]"]);
    assert!(
        disconnect.contains(" ehlo=3 ") && disconnect.contains(" starttls=1 "),
        "{disconnect}"
    );
    assert!(!pf.log().contains("seen-as-replyfix"), "{}", pf.log());
    let rf = Replyfix::start(
        Postfix::addr(pf.ports.tls_xclient),
        forwarding("xclient").upstream("tls: {policy: encrypt}"),
    );
    let message = send_message(&rf, "127.0.0.3");
    pf.wait_for_line(&[&message, "status=sent"]);
}
