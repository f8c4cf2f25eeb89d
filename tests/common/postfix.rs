//! A private, throw-away Postfix instance for end-to-end tests.
//!
//! Each instance has its own config, queue and data directories under a temp
//! dir, listens on loopback ports only, logs to a file (`maillog_file`,
//! Postfix >= 3.4) and is stopped when dropped (also when a test panics;
//! lingering processes of its group are killed). A test describes only what
//! is its own: extra `main.cf` lines and its `smtpd` services. Needs root
//! (Postfix's master starts as root) and the `postfix` package; under
//! `CI=true` a missing `postfix` or a non-root run fails the test.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{
    START_TIMEOUT, TempDir, free_port, poll, run_bounded, running_as_root, tool, under_ci,
};

/// The `postfix` command, or `None` (test skipped) when Postfix is missing
/// or this is not root; under `CI=true` both fail the test instead.
pub fn postfix_command() -> Option<PathBuf> {
    let bin = tool("postfix")?;
    if !running_as_root() {
        assert!(
            !under_ci(),
            "a private Postfix instance needs root; CI runs as root"
        );
        super::report_skip("a private Postfix instance needs root");
        return None;
    }
    Some(bin)
}

/// One `smtpd` service of an instance.
pub struct Service {
    /// Its `syslog_name` is `postfix/NAME`, so its log lines say
    /// `postfix/NAME/smtpd[pid]`.
    pub name: &'static str,
    /// `-o key=value` overrides, one per entry (without `-o`).
    pub options: Vec<String>,
    /// Whether a bare TCP connect proves it is up (not for services that
    /// expect a PROXY header first: a probe would be logged as a session).
    pub probe: bool,
}

impl Service {
    pub fn new(name: &'static str, options: &[&str]) -> Service {
        Service {
            name,
            options: options.iter().map(|o| o.to_string()).collect(),
            probe: true,
        }
    }
}

/// What a test adds to the base configuration.
pub struct Setup {
    /// Lines appended to `main.cf`.
    pub main_cf: String,
    pub services: Vec<Service>,
}

/// A running private Postfix instance.
pub struct Postfix {
    bin: PathBuf,
    services: Vec<(&'static str, u16)>,
    config_dir: PathBuf,
    maillog: PathBuf,
    pid_file: PathBuf,
    /// Holds everything of the instance; removed after `drop` stopped it.
    dir: TempDir,
}

impl Postfix {
    /// Writes the configuration (`setup` gets the config directory, to
    /// write tables and certificates there) and runs `postfix -c DIR
    /// start`, retrying with other ports if one was taken meanwhile. Waits
    /// (bounded) until every probed service accepts.
    pub fn start(bin: &Path, setup: impl Fn(&Path) -> Setup) -> Postfix {
        let mut last = String::new();
        for _attempt in 0..3 {
            let dir = TempDir::new("postfix");
            // Postfix's daemons run as `postfix` and must reach the queue
            // and data directories whatever the umask.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod temp dir");
            let config_dir = dir.path().join("etc");
            std::fs::create_dir(&config_dir).expect("create config dir");
            // The queue directory must exist (root-owned; `postfix start`
            // creates its subdirectories). The data directory must not: then
            // Postfix creates it owned by `postfix`.
            std::fs::create_dir(dir.path().join("queue")).expect("create queue dir");
            let Setup { main_cf, services } = setup(&config_dir);
            let ports: Vec<u16> = services.iter().map(|_| free_port()).collect();
            write_config(dir.path(), &config_dir, &main_cf, &services, &ports);
            let pf = Postfix {
                bin: bin.to_path_buf(),
                services: services
                    .iter()
                    .map(|s| s.name)
                    .zip(ports.iter().copied())
                    .collect(),
                maillog: dir.path().join("maillog"),
                pid_file: dir.path().join("queue/pid/master.pid"),
                config_dir,
                dir,
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
            // service (`master -w`); connecting checks that anyway.
            let probed: Vec<u16> = services
                .iter()
                .zip(&ports)
                .filter(|(s, _)| s.probe)
                .map(|(_, p)| *p)
                .collect();
            let up = poll(START_TIMEOUT, || {
                probed
                    .iter()
                    .all(|p| {
                        TcpStream::connect_timeout(&Postfix::addr(*p), Duration::from_millis(200))
                            .is_ok()
                    })
                    .then_some(())
            });
            if up.is_some() {
                return pf;
            }
            last = format!("not all of {probed:?} accept; log:\n{}", pf.log());
        }
        panic!("private Postfix did not start, three times; last:\n{last}");
    }

    pub fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The port of the service called `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.services
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no Postfix service {name}"))
    }

    /// The instance's configuration directory (for `postcat -c`).
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The instance's root directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Postfix's log so far, complete lines only: a line Postfix is still
    /// writing is left for the next read (a waiter once took a cut
    /// `disconnect from ... data=0/2 qui` for the whole line).
    pub fn log(&self) -> String {
        let mut bytes = std::fs::read(&self.maillog).unwrap_or_default();
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        bytes.truncate(complete);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits (bounded) until a log line contains every one of `parts`;
    /// returns that line.
    pub fn wait_for_line(&self, parts: &[&str]) -> String {
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

    /// Waits (bounded) until at least `n` log lines contain every one of
    /// `parts`; returns the first `n` of them, in log order.
    pub fn wait_for_lines(&self, parts: &[&str], n: usize) -> Vec<String> {
        poll(START_TIMEOUT, || {
            let log = self.log();
            let found: Vec<String> = log
                .lines()
                .filter(|l| parts.iter().all(|p| l.contains(p)))
                .take(n)
                .map(str::to_string)
                .collect();
            (found.len() == n).then_some(found)
        })
        .unwrap_or_else(|| {
            panic!(
                "Postfix did not log {n} lines with {parts:?} within {START_TIMEOUT:?}; log:\n{}",
                self.log()
            )
        })
    }

    /// `postcat -c DIR -bh -q ID`: the headers and body of a queued
    /// message, as Postfix stored them.
    pub fn queued_message(&self, queue_id: &str) -> Vec<u8> {
        let postcat = tool("postcat").expect("postcat is part of the postfix package");
        let out = run_bounded(
            Command::new(postcat)
                .arg("-c")
                .arg(&self.config_dir)
                .args(["-bh", "-q", queue_id]),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "postcat -q {queue_id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `postcat -c DIR -e -q ID`: the envelope records of a queued message.
    pub fn queued_envelope(&self, queue_id: &str) -> String {
        let postcat = tool("postcat").expect("postcat is part of the postfix package");
        let out = run_bounded(
            Command::new(postcat)
                .arg("-c")
                .arg(&self.config_dir)
                .args(["-e", "-q", queue_id]),
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "postcat -e -q {queue_id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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

/// `main.cf` (the private base, then the test's lines) and `master.cf`
/// (the test's smtpd services on loopback ports, then the daemons every
/// instance needs). The `smtp` client is there for instances that send
/// mail on (`relayhost`, `transport_maps`); the base's transports are
/// `discard:`, so an instance that does not ask for it never uses it.
fn write_config(root: &Path, config_dir: &Path, extra: &str, services: &[Service], ports: &[u16]) {
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
relayhost =
default_transport = discard:
relay_transport = discard:
local_transport = discard:
alias_maps =
alias_database =
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
{extra}"
    );
    let mut master_cf =
        String::from("# service type private unpriv chroot wakeup maxproc command\n");
    for (service, port) in services.iter().zip(ports) {
        master_cf.push_str(&format!(
            "127.0.0.1:{port} inet n - n - - smtpd\n  -o syslog_name=postfix/{}\n",
            service.name
        ));
        for option in &service.options {
            master_cf.push_str(&format!("  -o {option}\n"));
        }
    }
    master_cf.push_str(
        "pickup unix n - n 60 1 pickup
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
smtp unix - - n - - smtp
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
",
    );
    std::fs::write(config_dir.join("main.cf"), main_cf).expect("write main.cf");
    std::fs::write(config_dir.join("master.cf"), master_cf).expect("write master.cf");
}

// ------------------------------------------------------------ what a sending Postfix writes

/// A reply a sending MTA got from replyfix: what the server said, the
/// session the proxy judged it in, and what the proxy sent instead.
pub struct Rewrite {
    /// The server's reply.
    pub server: replyfix::smtp::Reply,
    /// The command it answered and the facts the proxy knew.
    pub command: replyfix::smtp::CommandKind,
    pub recipients_accepted: u32,
    pub authenticated: bool,
    /// The rule that decided, and what the client got.
    pub rule: String,
    pub sent: replyfix::smtp::Reply,
}

impl Rewrite {
    /// True when what the proxy sent carries its annotation line.
    pub fn annotated(&self) -> bool {
        self.sent.lines().any(|l| {
            l.text
                .starts_with(replyfix::explain::readback::MARKER.as_bytes())
        })
    }
}

#[derive(serde::Deserialize)]
struct ReplyItems {
    items: Vec<ReplyItem>,
}

#[derive(serde::Deserialize)]
struct ReplyItem {
    #[serde(alias = "text")]
    reply: Option<String>,
}

/// Every reply replyfix's built-in rules rewrite, from the real reply texts
/// of `tests/fixtures/phrases/` and `tests/fixtures/corpus/` (refusals of
/// every kind and legitimate authentication demands) and the sample
/// upstream's "configuration error", re-coded to `530` (with their
/// enhanced code, class 4 made 5, and without), each judged at RCPT, MAIL
/// and the end of data, with 0 and 1 recipients accepted, before and after
/// a login.
pub fn builtin_rewrites() -> Vec<Rewrite> {
    use replyfix::rules::{RuleSet, SessionFacts, Verdict};
    use replyfix::smtp::CommandKind;
    let rules = RuleSet::builtin();
    let mut texts = vec![replyfix::demo::upstream::CONFIG_ERROR_530.to_string()];
    for file in [
        "phrases/bounces.yaml",
        "phrases/legit.yaml",
        "corpus/dev.yaml",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(file);
        let yaml =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let items: ReplyItems =
            serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // A text quoting another MTA's "(in reply to X command)" would
        // name two commands in one bounce; the readers take the first.
        texts.extend(
            items
                .items
                .into_iter()
                .filter_map(|i| i.reply)
                .filter(|r| !r.contains("in reply to")),
        );
    }
    let mut out = Vec::new();
    for text in &texts {
        for keep_enhanced in [true, false] {
            let Some(server) = recoded_530(text, keep_enhanced) else {
                continue;
            };
            for command in [CommandKind::Rcpt, CommandKind::Mail, CommandKind::DataEnd] {
                for (recipients_accepted, authenticated) in [(0, false), (1, false), (0, true)] {
                    let mut facts = SessionFacts::new(command);
                    facts.recipients_accepted = recipients_accepted;
                    facts.authenticated = authenticated;
                    if let Verdict::Rewrite { rule, reply, .. } = rules.judge(&server, &facts) {
                        out.push(Rewrite {
                            server: server.clone(),
                            command,
                            recipients_accepted,
                            authenticated,
                            rule: rule.to_string(),
                            sent: reply,
                        });
                    }
                }
            }
        }
    }
    out
}

/// `text` (lines joined by ` | `, each with its code) as a 530: every
/// line's code replaced, its enhanced code kept (class 4 made 5) or
/// dropped. `None` for a text that is no reply.
fn recoded_530(text: &str, keep_enhanced: bool) -> Option<replyfix::smtp::Reply> {
    let mut lines = Vec::new();
    for line in text.split(" | ") {
        if !line.get(..3)?.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let rest = line.get(3..)?.trim_start_matches(['-', ' ']);
        let (enhanced, body) = match replyfix::smtp::EnhancedCode::parse_prefix(rest.as_bytes()) {
            Some((e, used)) => (Some(e), rest[used..].trim_start()),
            None => (None, rest),
        };
        let enhanced = enhanced
            .filter(|_| keep_enhanced)
            .map(|e| format!("5.{}.{} ", e.subject, e.detail))
            .unwrap_or_default();
        lines.push(format!("530 {enhanced}{body}"));
    }
    replyfix::explain::parse_reply_arg(&lines.join(" | ")).ok()
}

/// What Postfix's `smtp` client writes after `in reply to` for `command`.
fn postfix_command_words(command: replyfix::smtp::CommandKind) -> &'static str {
    use replyfix::smtp::CommandKind;
    match command {
        CommandKind::Mail => "MAIL FROM",
        CommandKind::DataEnd => "end of DATA",
        _ => "RCPT TO",
    }
}

/// A reply's wire lines, white space collapsed (what survives a bounce's
/// folding and a log), one per line.
pub fn collapsed(reply: &replyfix::smtp::Reply) -> Vec<String> {
    String::from_utf8_lossy(reply.raw())
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// A reply as Postfix quotes it: its wire lines joined by spaces.
pub fn postfix_quoted(reply: &replyfix::smtp::Reply) -> String {
    String::from_utf8_lossy(reply.raw())
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` wrapped at spaces to lines of at most `width` characters (a
/// longer word stays whole), continuation lines indented by `indent`.
fn wrapped(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split(' ') {
        if line_len > 0 && line_len + 1 + word.len() > width {
            out.push_str("\r\n");
            out.push_str(indent);
            line_len = indent.len();
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out
}

/// The bounce a sending Postfix writes when `rcpt` is refused with `reply`
/// in answer to `command`, in the form of the egress fixtures
/// (`tests/fixtures/bounces/replyfix-egress-*.eml`): the notification
/// text and the RFC 3464 report, both folded at `width` columns.
pub fn postfix_bounce(
    rcpt: &str,
    reply: &replyfix::smtp::Reply,
    command: replyfix::smtp::CommandKind,
    width: usize,
) -> Vec<u8> {
    let quoted = postfix_quoted(reply);
    let status = reply.enhanced().map_or_else(
        || format!("{}.0.0", reply.code().class()),
        |e| e.to_string(),
    );
    let text = wrapped(
        &format!(
            "<{rcpt}>: host mx.example.net[192.0.2.25] said: {quoted} (in reply to {} command)",
            postfix_command_words(command)
        ),
        width,
        "    ",
    );
    let diagnostic = wrapped(&format!("Diagnostic-Code: smtp; {quoted}"), width, "    ");
    format!(
        "From: Mail Delivery System <MAILER-DAEMON@postfix.replyfix.test>\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
To: sender@sender.test\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"B.1/postfix.replyfix.test\"\r\n\
\r\n\
--B.1/postfix.replyfix.test\r\n\
Content-Description: Notification\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
This is the mail system at host postfix.replyfix.test.\r\n\
\r\n\
                   The mail system\r\n\
\r\n\
{text}\r\n\
\r\n\
--B.1/postfix.replyfix.test\r\n\
Content-Description: Delivery report\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; postfix.replyfix.test\r\n\
\r\n\
Final-Recipient: rfc822; {rcpt}\r\n\
Original-Recipient: rfc822;{rcpt}\r\n\
Action: failed\r\n\
Status: {status}\r\n\
Remote-MTA: dns; mx.example.net\r\n\
{diagnostic}\r\n\
\r\n\
--B.1/postfix.replyfix.test--\r\n"
    )
    .into_bytes()
}

/// The line a sending Postfix's `smtp` client logs when `rcpt` of message
/// `queue_id` is refused with `reply` in answer to `command` (the form of
/// `tests/fixtures/logs/postfix-egress-*.log`).
pub fn postfix_bounced_line(
    queue_id: &str,
    rcpt: &str,
    reply: &replyfix::smtp::Reply,
    command: replyfix::smtp::CommandKind,
) -> String {
    let status = reply.enhanced().map_or_else(
        || format!("{}.0.0", reply.code().class()),
        |e| e.to_string(),
    );
    format!(
        "Dec 06 08:36:54 postfix postfix/smtp[4235]: {queue_id}: to=<{rcpt}>, relay=mx.example.net[192.0.2.25]:25, delay=0.1, delays=0.02/0.01/0/0.07, dsn={status}, status=bounced (host mx.example.net[192.0.2.25] said: {} (in reply to {} command))",
        postfix_quoted(reply),
        postfix_command_words(command)
    )
}

/// The line a sending Postfix logs for a recipient of `queue_id` the
/// server accepted.
pub fn postfix_sent_line(queue_id: &str, rcpt: &str) -> String {
    format!(
        "Dec 06 08:36:54 postfix postfix/smtp[4235]: {queue_id}: to=<{rcpt}>, relay=mx.example.net[192.0.2.25]:25, delay=0.1, delays=0.02/0.01/0/0.07, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4Fq2Xk1Jz)"
    )
}
