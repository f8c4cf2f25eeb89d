//! `send_client_address` against a real Postfix `smtpd` (docs/operations.md): PROXY
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
//! package (the instance harness is tests/common/postfix.rs); under
//! `CI=true` a missing `postfix` fails the tests.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::postfix::{Postfix, Service, Setup, postfix_command};
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

/// This file's instance: four `smtpd` services on loopback ports
/// - `xclient`: XCLIENT authorised for 127.0.0.1;
/// - `haproxy`: `smtpd_upstream_proxy_protocol = haproxy`, every connection
///   starts with a PROXY v1 or v2 header;
/// - `tls`: STARTTLS offered (`smtpd_tls_security_level = may`) and XCLIENT
///   authorised for 127.0.0.1;
/// - `plain`: nothing special; XCLIENT is not offered to replyfix;
///
/// plus the client table and a self-signed certificate (rcgen) for `tls`.
fn start_postfix(bin: &Path) -> Postfix {
    Postfix::start(bin, |config_dir| {
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
        let mut haproxy = Service::new(
            "haproxy",
            &[
                "smtpd_upstream_proxy_protocol=haproxy",
                "smtpd_upstream_proxy_timeout=5s",
                // The names of 127.0.0.2 and 192.0.2.7 would be looked up in
                // the DNS, which may be slow or absent where tests run; the
                // other services see only 127.0.0.1 (`/etc/hosts`) before
                // XCLIENT, and XCLIENT's NAME=[UNAVAILABLE] needs no lookup.
                "smtpd_peername_lookup=no",
            ],
        );
        // A bare connect would be logged as a session from 127.0.0.1.
        haproxy.probe = false;
        Setup {
            main_cf: format!(
                "relay_domains = accepted.test
smtpd_client_restrictions = check_client_access cidr:{cidr}
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_loglevel = 1
",
                cidr = cidr.display(),
                cert = cert_file.display(),
                key = key_file.display(),
            ),
            services: vec![
                Service::new("xclient", &["smtpd_authorized_xclient_hosts=127.0.0.1"]),
                haproxy,
                Service::new(
                    "tls",
                    &[
                        "smtpd_authorized_xclient_hosts=127.0.0.1",
                        "smtpd_tls_security_level=may",
                    ],
                ),
                Service::new("plain", &[]),
                // Judges the EHLO name at once (not at RCPT): a bare host
                // name is refused; STARTTLS offered.
                Service::new(
                    "helo_strict",
                    &[
                        "smtpd_delay_reject=no",
                        "smtpd_client_restrictions=",
                        "smtpd_helo_required=yes",
                        "smtpd_helo_restrictions=reject_non_fqdn_helo_hostname",
                        "smtpd_tls_security_level=may",
                    ],
                ),
                // Demands STARTTLS of every client before mail commands.
                Service::new(
                    "tls_required",
                    &[
                        "smtpd_tls_security_level=encrypt",
                        "smtpd_authorized_xclient_hosts=127.0.0.1",
                    ],
                ),
            ],
        }
    })
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
fn xclient_out_lets_a_real_postfix_judge_the_real_client() {
    let Some(bin) = postfix_command() else { return };
    let pf = start_postfix(&bin);
    prove_postfix_sees_the_real_client(&pf, pf.port("xclient"), "xclient", "postfix/xclient/smtpd");
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
fn proxy_v1_out_lets_a_real_postfix_judge_the_real_client() {
    let Some(bin) = postfix_command() else { return };
    let pf = start_postfix(&bin);
    prove_postfix_sees_the_real_client(
        &pf,
        pf.port("haproxy"),
        "proxy-v1",
        "postfix/haproxy/smtpd",
    );
    // With the PROXY protocol Postfix never sees replyfix at all: the
    // session is the client's from its first log line.
    pf.wait_for_line(&["postfix/haproxy/smtpd", "connect from", "[127.0.0.2]"]);
    pf.wait_for_line(&["postfix/haproxy/smtpd", "connect from", "[192.0.2.7]"]);
    assert_never_saw_replyfix(&pf, "postfix/haproxy/smtpd");
}

#[test]
fn proxy_v2_out_lets_a_real_postfix_judge_the_real_client() {
    let Some(bin) = postfix_command() else { return };
    let pf = start_postfix(&bin);
    prove_postfix_sees_the_real_client(
        &pf,
        pf.port("haproxy"),
        "proxy-v2",
        "postfix/haproxy/smtpd",
    );
    pf.wait_for_line(&["postfix/haproxy/smtpd", "connect from", "[127.0.0.2]"]);
    pf.wait_for_line(&["postfix/haproxy/smtpd", "connect from", "[192.0.2.7]"]);
    assert_never_saw_replyfix(&pf, "postfix/haproxy/smtpd");
}

/// The control: without forwarding, or with XCLIENT where Postfix does not
/// authorise it, Postfix judges replyfix's own address. This is what makes
/// the proofs above mean something.
#[test]
fn without_forwarding_a_real_postfix_judges_replyfix() {
    let Some(bin) = postfix_command() else { return };
    let pf = start_postfix(&bin);
    for method in ["none", "xclient"] {
        let rf = Replyfix::start(Postfix::addr(pf.port("plain")), forwarding(method));
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
    let pf = start_postfix(&bin);
    for policy in ["encrypt", "may"] {
        let rf = Replyfix::start(
            Postfix::addr(pf.port("tls")),
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
        Postfix::addr(pf.port("tls")),
        forwarding("xclient").upstream("tls: {policy: encrypt}"),
    );
    let message = send_message(&rf, "127.0.0.3");
    pf.wait_for_line(&[&message, "status=sent"]);
}

/// A real Postfix that demands STARTTLS (`smtpd_tls_security_level =
/// encrypt`) behind replyfix with upstream TLS `none`: Postfix's `530 5.7.0
/// Must issue a STARTTLS command first` is about replyfix's own leg, so the
/// client gets the operator's temporary `451 4.7.0` and the operator a
/// warning; with upstream TLS `may` the same client's mail is queued.
#[test]
fn a_real_postfix_demanding_tls_is_the_operators_451_until_upstream_tls_is_on() {
    let Some(bin) = postfix_command() else { return };
    let pf = start_postfix(&bin);
    let port = pf.port("tls_required");
    let rf = Replyfix::start(Postfix::addr(port), ServeOptions::default().timeouts(15));
    let mut c = Client::connect_from("127.0.0.3", rf.addr);
    let greeting = c.read_reply();
    assert!(
        greeting.starts_with("220 postfix.replyfix.test"),
        "{greeting}"
    );
    assert!(c.cmd("EHLO client.example.test").starts_with("250"));
    let mail = c.cmd("MAIL FROM:<sender@example.test>");
    assert_codes(&mail, "451", "4.7.0");
    assert!(
        mail.starts_with("451-4.7.0 Must issue a STARTTLS command first"),
        "{mail}"
    );
    assert!(
        mail.contains("proxy's operator must enable upstream TLS"),
        "{mail}"
    );
    c.cmd("QUIT");
    let warning = rf.wait_for_record(
        "the upstream demands TLS on replyfix's plaintext connection to it; clients cannot fix this: set this upstream's tls.policy to may or verify (docs/tls.md)",
    );
    assert_eq!(field(&warning, "tls_policy").as_deref(), Some("none"));
    drop(rf);
    // The operator's fix: upstream TLS may (and XCLIENT, so Postfix judges
    // the client, not replyfix). The same client is served.
    let rf = Replyfix::start(
        Postfix::addr(port),
        forwarding("xclient").upstream("tls: {policy: may}"),
    );
    let queue_id = send_message(&rf, "127.0.0.3");
    pf.wait_for_line(&[&queue_id, "status=sent"]);
}

/// replyfix's own EHLO (here: before STARTTLS, policy `encrypt`) to a real
/// Postfix that refuses a bare host name at once
/// (`reject_non_fqdn_helo_hostname`, `smtpd_delay_reject = no`): a short
/// `hostname` gives the address literal of replyfix's end (accepted, RFC
/// 5321 4.1.4); a non-qualified `helo_name` is refused (the control);
/// `--helo-name` on the quick start is used.
#[test]
fn replyfix_s_own_ehlo_name_passes_a_real_postfix_that_refuses_bare_host_names() {
    let Some(bin) = postfix_command() else { return };
    let pf = start_postfix(&bin);
    let upstream = Postfix::addr(pf.port("helo_strict"));
    let yaml = |helo: &'static str| {
        move |listen: std::net::SocketAddr| {
            format!(
                "hostname: vm\nlisteners:\n  - {{name: main, address: \"{listen}\", upstream: up}}\n\
                 upstreams:\n  - name: up\n    servers: [\"{upstream}\"]\n    tls: {{policy: encrypt}}\n{helo}"
            )
        }
    };
    // The default with a short hostname: [127.0.0.1].
    let rf = Replyfix::start_with_config(None, yaml(""));
    let (mut c, greeting) = rf.connect_greeted();
    assert!(
        greeting.starts_with("220 postfix.replyfix.test"),
        "{greeting}"
    );
    assert!(c.cmd("EHLO client.example.test").starts_with("250"));
    c.cmd("QUIT");
    drop(rf);
    pf.wait_for_line(&["postfix/helo_strict/smtpd", "TLS connection established"]);
    assert!(!pf.log().contains("Helo command rejected"), "{}", pf.log());
    // The control: a bare helo_name is refused, so STARTTLS never happens.
    let rf = Replyfix::start_with_config(None, yaml("    helo_name: vm\n"));
    let (_, greeting) = rf.connect_greeted();
    assert!(
        greeting.starts_with("421 4.7.0 vm upstream TLS unavailable"),
        "{greeting}"
    );
    drop(rf);
    pf.wait_for_line(&["postfix/helo_strict/smtpd", "<vm>: Helo command rejected"]);
    // The quick start's --helo-name.
    let rf = Replyfix::start(
        upstream,
        ServeOptions::default().args(&[
            "--upstream-tls",
            "encrypt",
            "--helo-name",
            "relay-proxy.example.test",
        ]),
    );
    let (mut c, greeting) = rf.connect_greeted();
    assert!(
        greeting.starts_with("220 postfix.replyfix.test"),
        "{greeting}"
    );
    assert!(c.cmd("EHLO client.example.test").starts_with("250"));
    c.cmd("QUIT");
}

// ------------------------------------------------------------ egress fixtures

/// The envelope of the egress fixtures' message: one recipient the sample
/// upstream accepts, one it answers with its misused "configuration error"
/// 530 (`replyfix::demo::upstream`), and a sender whose domain the sending
/// Postfix routes to an smtp-sink, where its bounce is caught.
const EGRESS_SENDER: &str = "sender@sender.test";
const EGRESS_ACCEPTED: &str = "alice@demo.test";
const EGRESS_MISUSED: &str = "nobody@demo.test";

/// The message, with fixed headers so that the bounces quote the same text
/// on every run.
const EGRESS_MESSAGE: &str = "From: Sender <sender@sender.test>\r\n\
To: alice@demo.test, nobody@demo.test\r\n\
Subject: quarterly figures\r\n\
Date: Tue, 3 Mar 2026 10:00:00 +0000\r\n\
Message-ID: <egress-fixture@sender.test>\r\n\
\r\n\
Hello both,\r\n\
the figures are attached in spirit.\r\n";

/// What one egress run left: the sending Postfix's log (only the lines of
/// the message and its bounce) and the bounce its sender got (CRLF lines).
struct EgressRun {
    log: String,
    bounce: Vec<u8>,
}

/// A private Postfix as the sending MTA (`relayhost = [127.0.0.1]:PORT`
/// of `relayhost`) sends [`EGRESS_MESSAGE`] to both recipients; its bounce
/// to [`EGRESS_SENDER`] goes (by `transport_maps`) to an smtp-sink.
fn egress_run(bin: &Path, sink_bin: &Path, relayhost: SocketAddr) -> EgressRun {
    let sink = SmtpSink::start(sink_bin, &[]);
    let pf = Postfix::start(bin, |_| Setup {
        main_cf: format!(
            "relayhost = [127.0.0.1]:{relay}
default_transport = smtp
transport_maps = inline:{{ sender.test=smtp:[127.0.0.1]:{sink} }}
smtp_tls_security_level = none
",
            relay = relayhost.port(),
            sink = sink.addr.port(),
        ),
        services: vec![Service::new("submit", &[])],
    });
    let mut c = SmtpClient::connect(Postfix::addr(pf.port("submit")));
    let greeting = c.read_reply();
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(c.cmd("EHLO app.sender.test").starts_with("250"));
    for (cmd, want) in [
        (format!("MAIL FROM:<{EGRESS_SENDER}>"), "250"),
        (format!("RCPT TO:<{EGRESS_ACCEPTED}>"), "250"),
        (format!("RCPT TO:<{EGRESS_MISUSED}>"), "250"),
        ("DATA".to_string(), "354"),
    ] {
        let reply = c.cmd(&cmd);
        assert!(reply.starts_with(want), "{cmd}: {reply}");
    }
    c.send(&dot_stuff(EGRESS_MESSAGE.as_bytes()));
    let end = c.read_reply();
    assert!(end.starts_with("250 2.0.0 Ok: queued as "), "{end}");
    c.cmd("QUIT");
    let queue_id = end
        .trim_end()
        .rsplit(' ')
        .next()
        .expect("queue id")
        .to_string();
    let notice = pf.wait_for_line(&[&queue_id, "sender non-delivery notification:"]);
    let bounce_id = notice
        .trim_end()
        .rsplit(' ')
        .next()
        .expect("bounce queue id")
        .to_string();
    pf.wait_for_line(&[&queue_id, "removed"]);
    pf.wait_for_line(&[&bounce_id, "removed"]);
    let dumps = sink.wait_for_dumps(1);
    assert_eq!(dumps.len(), 1, "one bounce: {dumps:?}");
    let dump = std::fs::read(&dumps[0]).expect("read dump");
    let bounce = crlf(sink_dump_message(&dump));
    // The lines of the message and its bounce, and the end of the session
    // that handed it in; not the instance's start, the start-up probe or
    // the stop.
    let log = pf
        .log()
        .lines()
        .filter(|l| {
            l.contains(&queue_id)
                || l.contains(&bounce_id)
                || (l.contains("postfix/submit/smtpd") && l.contains(" rcpt=2 "))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    EgressRun { log, bounce }
}

/// LF line ends (as smtp-sink dumps a message) back to CRLF, without the
/// empty line smtp-sink adds after the message.
fn crlf(lf: &[u8]) -> Vec<u8> {
    let lf = lf.strip_suffix(b"\n").unwrap_or(lf);
    let mut out = Vec::with_capacity(lf.len() + lf.len() / 40);
    for &b in lf {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Where the egress fixtures live, and the variable that rewrites them.
const REGENERATE: &str = "REPLYFIX_REGENERATE_FIXTURES";

fn egress_fixture(kind: &str, name: &str) -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    match kind {
        "log" => root.join(format!("logs/postfix-egress-{name}.log")),
        _ => root.join(format!("bounces/replyfix-egress-{name}.eml")),
    }
}

/// What must stay the same between runs of a Postfix log (queue ids,
/// times, ports and pids change): each delivery line's recipient, `dsn=`
/// and `status=`, and the remote reply on it as its codes line by line
/// (`+marker` where replyfix's annotation line starts), in log order.
fn log_shape(log: &str) -> Vec<String> {
    let delivery =
        regex::Regex::new(r"postfix/smtp\[\d+\]: \w+: to=<([^>]*)>,.* dsn=([0-9.]+), status=(\w+)")
            .expect("regex");
    log.lines()
        .filter_map(|l| {
            let c = delivery.captures(l)?;
            let reply = replyfix::explain::maillog::parse_line(l.as_bytes()).map_or_else(
                || "-".to_string(),
                |f| format!("{} at {}", reply_shape(&f.reply), f.context),
            );
            Some(format!(
                "to={} dsn={} status={} reply={reply}",
                &c[1], &c[2], &c[3]
            ))
        })
        .collect()
}

/// A reply's codes line by line: `550-5.1.1 | 550 5.1.1 +marker`.
fn reply_shape(r: &replyfix::smtp::Reply) -> String {
    let n = r.line_count();
    r.lines()
        .enumerate()
        .map(|(i, l)| {
            let sep = if i + 1 == n { ' ' } else { '-' };
            let enhanced = l.enhanced.map_or_else(String::new, |e| format!("{sep}{e}"));
            let marker = if l
                .text
                .starts_with(replyfix::explain::readback::MARKER.as_bytes())
            {
                " +marker"
            } else {
                ""
            };
            format!("{}{enhanced}{marker}", r.code())
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

/// What must stay the same between runs of a bounce: its format, and each
/// recipient's action, status, context and reply shape ([`reply_shape`]).
fn bounce_shape(raw: &[u8]) -> Vec<String> {
    let b = replyfix::explain::dsn::parse_bounce(raw).expect("a bounce message");
    let mut shape = vec![format!("style={} rfc3464={}", b.style, b.rfc3464)];
    for r in &b.recipients {
        shape.push(format!(
            "{} action={} status={} at {} reply={}",
            r.recipient,
            r.action.as_deref().unwrap_or("-"),
            r.status.as_deref().unwrap_or("-"),
            r.context,
            r.reply
                .as_ref()
                .map_or_else(|| "-".to_string(), reply_shape)
        ));
    }
    shape
}

/// The egress fixtures (`tests/fixtures/logs/postfix-egress-*.log`,
/// `tests/fixtures/bounces/replyfix-egress-*.eml`, see docs/operations.md,
/// "Egress gateway"): a real Postfix as the sending MTA sends one message
/// to a recipient the sample upstream accepts and to one it refuses with
/// its misused "configuration error" 530, once straight to the upstream
/// and once through replyfix (`relayhost`). With
/// `REPLYFIX_REGENERATE_FIXTURES=1` the runs rewrite the fixtures;
/// otherwise the live runs must have the committed fixtures' shapes: the
/// same recipients, statuses and reply codes, line by line.
#[test]
fn egress_fixtures_from_a_real_postfix_sending_straight_and_through_replyfix() {
    let Some(bin) = postfix_command() else { return };
    let Some(sink_bin) = tool("smtp-sink") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let upstream = rt
        .block_on(replyfix::demo::upstream::SampleUpstream::start())
        .expect("sample upstream");
    let direct = egress_run(&bin, &sink_bin, upstream.addr);
    let rf = Replyfix::start(upstream.addr, ServeOptions::default().timeouts(15));
    let via = egress_run(&bin, &sink_bin, rf.addr);
    // replyfix's own record of the rewrite the bounce reports.
    let rewrite = rf.wait_for_record("reply rewritten");
    assert_eq!(
        field(&rewrite, "rule").as_deref(),
        Some("config-error-after-accepted-recipient")
    );
    drop(rf);
    // What the runs must show, whatever the fixtures say.
    let direct_log = log_shape(&direct.log);
    assert!(
        direct_log.contains(&format!(
            "to={EGRESS_MISUSED} dsn=5.0.0 status=bounced reply=530 at rcpt"
        )),
        "{direct_log:#?}"
    );
    let via_log = log_shape(&via.log);
    assert!(
        via_log.contains(&format!(
            "to={EGRESS_MISUSED} dsn=5.1.1 status=bounced reply=550-5.1.1 | 550 5.1.1 +marker at rcpt"
        )),
        "{via_log:#?}"
    );
    for shape in [&direct_log, &via_log] {
        assert!(
            shape
                .iter()
                .any(|l| l.starts_with(&format!("to={EGRESS_ACCEPTED} dsn=2.0.0 status=sent"))),
            "{shape:#?}"
        );
    }
    let regenerate = std::env::var(REGENERATE).is_ok_and(|v| v == "1");
    for (name, run) in [("direct", &direct), ("via-replyfix", &via)] {
        let (log, eml) = (egress_fixture("log", name), egress_fixture("eml", name));
        if regenerate {
            std::fs::write(&log, &run.log).expect("write log fixture");
            std::fs::write(&eml, &run.bounce).expect("write bounce fixture");
            eprintln!(
                "{REGENERATE}=1: wrote {} and {}",
                log.display(),
                eml.display()
            );
            continue;
        }
        let committed_log = std::fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("{}: {e} (make it with {REGENERATE}=1)", log.display()));
        let committed_eml = std::fs::read(&eml)
            .unwrap_or_else(|e| panic!("{}: {e} (make it with {REGENERATE}=1)", eml.display()));
        assert_eq!(
            log_shape(&run.log),
            log_shape(&committed_log),
            "{name}: the live log and {} differ in shape; if the change is meant, rerun with {REGENERATE}=1",
            log.display()
        );
        assert_eq!(
            bounce_shape(&run.bounce),
            bounce_shape(&committed_eml),
            "{name}: the live bounce and {} differ in shape; if the change is meant, rerun with {REGENERATE}=1",
            eml.display()
        );
    }
}
