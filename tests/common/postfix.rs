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

    /// Postfix's log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.maillog)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
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
/// instance needs).
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
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
",
    );
    std::fs::write(config_dir.join("main.cf"), main_cf).expect("write main.cf");
    std::fs::write(config_dir.join("master.cf"), master_cf).expect("write master.cf");
}
