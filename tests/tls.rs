//! TLS on both legs, end to end (docs/protocol.md T1–T7): real clients (openssl
//! s_client, swaks, curl, Python smtplib) on the client leg, and a scripted
//! upstream that speaks STARTTLS with certificates made here (rcgen): a CA,
//! a good leaf, an expired leaf, a wrong-name leaf and one from an unknown CA.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, date_time_ymd};

// ------------------------------------------------------------ certificates

struct Pki {
    dir: TempDir,
    ca: PathBuf,
    good: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
    wrong_name: (PathBuf, PathBuf),
    unknown_ca: (PathBuf, PathBuf),
    /// A second good leaf, for reload tests.
    other: (PathBuf, PathBuf),
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write pem");
    p
}

fn leaf(
    dir: &Path,
    name: &str,
    san: &str,
    cn: &str,
    issuer: &Issuer<'_, KeyPair>,
    expired: bool,
) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec![san.to_string()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    if expired {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, issuer).expect("sign");
    (
        write(dir, &format!("{name}.crt"), &cert.pem()),
        write(dir, &format!("{name}.key"), &key.serialize_pem()),
    )
}

fn pki() -> Pki {
    let dir = TempDir::new("pki");
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "replyfix test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let ca = write(dir.path(), "ca.crt", &ca_cert.pem());
    let issuer = Issuer::new(ca_params, ca_key);
    let good = leaf(dir.path(), "good", "localhost", "good", &issuer, false);
    let other = leaf(dir.path(), "other", "localhost", "second", &issuer, false);
    let expired = leaf(dir.path(), "expired", "localhost", "expired", &issuer, true);
    let wrong_name = leaf(
        dir.path(),
        "wrong",
        "other.example",
        "wrong",
        &issuer,
        false,
    );
    let rogue_key = KeyPair::generate().expect("rogue key");
    let mut rogue_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    rogue_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    rogue_params
        .distinguished_name
        .push(DnType::CommonName, "unknown CA");
    let rogue = Issuer::new(rogue_params, rogue_key);
    let unknown_ca = leaf(dir.path(), "unknown", "localhost", "unknown", &rogue, false);
    Pki {
        dir,
        ca,
        good,
        expired,
        wrong_name,
        unknown_ca,
        other,
    }
}

fn server_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<_> = CertificateDer::pem_file_iter(cert)
        .expect("certs")
        .map(|c| c.expect("cert"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config"),
    )
}

// ------------------------------------------------------------ scripted upstream

/// How the scripted upstream answers around STARTTLS.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Starttls {
    /// Offers STARTTLS, answers 220, handshakes with the given certificate.
    Offer,
    /// Does not advertise STARTTLS.
    NotOffered,
    /// Advertises it but answers with this reply.
    Refuse(&'static str),
    /// Answers `220 Ready` with more replies glued behind it (T2).
    Inject,
}

/// What the upstream saw: each command line and whether it came over TLS.
type Seen = Arc<Mutex<Vec<(bool, String)>>>;

struct TlsUpstream {
    addr: SocketAddr,
    seen: Seen,
}

impl TlsUpstream {
    fn start(mode: Starttls, cert: Option<(PathBuf, PathBuf)>, rcpt_reply: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Seen = Arc::default();
        let config = cert.map(|(c, k)| server_config(&c, &k));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            // Bounded: at most 64 connections, each with read timeouts.
            for stream in listener.incoming().take(64) {
                let Ok(stream) = stream else { break };
                let seen = seen2.clone();
                let config = config.clone();
                std::thread::spawn(move || {
                    upstream_session(stream, mode, config, seen, rcpt_reply)
                });
            }
        });
        TlsUpstream { addr, seen }
    }

    fn seen(&self) -> Vec<(bool, String)> {
        self.seen.lock().unwrap().clone()
    }
}

fn upstream_session(
    stream: TcpStream,
    mode: Starttls,
    config: Option<Arc<rustls::ServerConfig>>,
    seen: Seen,
    rcpt_reply: &'static str,
) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut plain = stream;
    let _ = plain.write_all(b"220 upstream.test ESMTP\r\n");
    let upgrade = dialogue(&mut plain, false, mode, &seen, rcpt_reply);
    if !upgrade {
        return;
    }
    let Some(config) = config else { return };
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, plain);
    dialogue(&mut tls, true, mode, &seen, rcpt_reply);
}

/// Runs SMTP until QUIT, EOF, or an accepted STARTTLS (returns true).
fn dialogue<S: Read + Write>(
    s: &mut S,
    tls: bool,
    mode: Starttls,
    seen: &Seen,
    rcpt_reply: &str,
) -> bool {
    let mut reader = BufReader::new(ReadHalf(s));
    let mut line = String::new();
    for _ in 0..1000 {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        let cmd = line.trim_end().to_string();
        seen.lock().unwrap().push((tls, cmd.clone()));
        let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => {
                let offer = !tls && mode != Starttls::NotOffered;
                format!(
                    "250-upstream.test\r\n250-PIPELINING\r\n{}250 AUTH PLAIN\r\n",
                    if offer { "250-STARTTLS\r\n" } else { "" }
                )
            }
            "STARTTLS" => match mode {
                Starttls::Offer => {
                    let _ = reader.get_mut().0.write_all(b"220 2.0.0 Ready\r\n");
                    return true;
                }
                Starttls::Inject => "220 Ready\r\n250-evil\r\n250 AUTH PLAIN\r\n".into(),
                Starttls::Refuse(r) => format!("{r}\r\n"),
                Starttls::NotOffered => "502 5.5.1 no\r\n".into(),
            },
            "MAIL" => "250 2.1.0 Ok\r\n".into(),
            "RCPT" => format!("{rcpt_reply}\r\n"),
            "DATA" => {
                let _ = reader.get_mut().0.write_all(b"354 go\r\n");
                let mut body = Vec::new();
                while !body.ends_with(b"\r\n.\r\n") && body.len() < 1 << 20 {
                    let mut l = Vec::new();
                    match reader.read_until(b'\n', &mut l) {
                        Ok(0) | Err(_) => return false,
                        Ok(_) => body.extend_from_slice(&l),
                    }
                    if body == b".\r\n" {
                        break;
                    }
                }
                "250 2.0.0 queued\r\n".into()
            }
            "QUIT" => {
                let _ = reader.get_mut().0.write_all(b"221 bye\r\n");
                return false;
            }
            _ => "250 ok\r\n".into(),
        };
        if reader.get_mut().0.write_all(reply.as_bytes()).is_err() {
            return false;
        }
    }
    false
}

/// Lets a BufReader borrow a stream that is also written to.
struct ReadHalf<'a, S>(&'a mut S);
impl<S: Read> Read for ReadHalf<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

// ------------------------------------------------------------ replyfix

/// Starts replyfix from a config file with `listener_tls` under the
/// listener's `tls:` and `upstream_tls` under the upstream's (each may be
/// empty), plus top-level `extra` YAML.
fn start(upstream: SocketAddr, listener_tls: &str, upstream_tls: &str, extra: &str) -> Replyfix {
    let mut opts = ServeOptions::default().config();
    if !listener_tls.is_empty() {
        opts = opts.listener(&format!("tls: {listener_tls}"));
    }
    if !upstream_tls.is_empty() {
        opts = opts.upstream(&format!("tls: {upstream_tls}"));
    }
    for line in extra.lines() {
        opts = opts.yaml(line);
    }
    Replyfix::start(upstream, opts)
}

fn tls_listener(pki: &Pki, extra: &str) -> String {
    format!(
        "{{cert: \"{}\", key: \"{}\"{extra}}}",
        pki.good.0.display(),
        pki.good.1.display()
    )
}

fn run_with_input(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(input).ok();
    // Bounded: the tools all have their own timeouts or end at QUIT.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

// ------------------------------------------------------------ client leg

#[test]
fn openssl_s_client_starttls_verifies_replyfix_certificate_t1() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let pki = pki();
    let up = TlsUpstream::start(Starttls::NotOffered, None, "250 ok");
    let rf = start(up.addr, &tls_listener(&pki, ""), "", "");
    let out = run_with_input(
        Command::new(openssl)
            .args([
                "s_client",
                "-starttls",
                "smtp",
                "-crlf",
                "-verify_return_error",
            ])
            .arg("-CAfile")
            .arg(&pki.ca)
            .args(["-servername", "localhost", "-connect"])
            .arg(rf.addr.to_string()),
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Verify return code: 0 (ok)"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("CN=good") || stdout.contains("CN = good"),
        "{stdout}"
    );
    assert!(
        up.seen().iter().all(|(_, c)| c != "STARTTLS"),
        "the client's STARTTLS is never forwarded"
    );
}

#[test]
fn swaks_starttls_and_implicit_tls_deliver_through_replyfix() {
    let Some(swaks) = tool("swaks") else {
        return;
    };
    let pki = pki();
    let up = TlsUpstream::start(Starttls::NotOffered, None, "250 2.1.5 Ok");
    let rf = start(up.addr, &tls_listener(&pki, ""), "", "");
    let out = Command::new(&swaks)
        .args([
            "--server",
            &rf.addr.to_string(),
            "--to",
            "a@example.com",
            "--from",
            "b@example.com",
            "--tls",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("=== TLS started with cipher TLSv1.3"),
        "{text}"
    );
    assert!(text.contains("<~  250 2.0.0 queued"), "{text}");
    drop(rf);

    let rf = start(up.addr, &tls_listener(&pki, ", implicit: true"), "", "");
    let out = Command::new(&swaks)
        .args([
            "--server",
            &rf.addr.to_string(),
            "--to",
            "a@example.com",
            "--from",
            "b@example.com",
            "--tlsc",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("<~  250 2.0.0 queued"), "{text}");
    assert!(
        !text.contains("STARTTLS"),
        "no STARTTLS offered inside implicit TLS: {text}"
    );
}

#[test]
fn curl_ssl_reqd_sends_mail_over_starttls() {
    let Some(curl) = tool("curl") else {
        return;
    };
    let pki = pki();
    let up = TlsUpstream::start(Starttls::NotOffered, None, "250 2.1.5 Ok");
    let rf = start(up.addr, &tls_listener(&pki, ""), "", "");
    let out = run_with_input(
        Command::new(curl)
            .args(["--silent", "--show-error", "--ssl-reqd", "--cacert"])
            .arg(&pki.ca)
            .arg(format!("smtp://localhost:{}", rf.addr.port()))
            .args([
                "--resolve",
                &format!("localhost:{}:127.0.0.1", rf.addr.port()),
            ])
            .args([
                "--mail-from",
                "b@example.com",
                "--mail-rcpt",
                "a@example.com",
                "--upload-file",
                "-",
            ]),
        b"Subject: curl\r\n\r\nhello over TLS\r\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = up.seen();
    assert!(
        seen.iter()
            .any(|(_, c)| c.starts_with("MAIL FROM:<b@example.com>")),
        "{seen:?}"
    );
}

#[test]
fn python_smtplib_starttls_and_smtp_ssl_deliver_byte_exact() {
    let (Some(python), Some(sink_bin)) = (tool("python3"), tool("smtp-sink")) else {
        return;
    };
    let pki = pki();
    for implicit in [false, true] {
        let sink = SmtpSink::start(&sink_bin, &[]);
        let extra = if implicit { ", implicit: true" } else { "" };
        let rf = start(sink.addr, &tls_listener(&pki, extra), "{policy: none}", "");
        let script = format!(
            r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile={ca:?})
msg = b"Subject: tls\r\nX-Bytes: \xc3\xa9\r\n\r\n..dotted line\r\nbody\r\n"
if {implicit}:
    s = smtplib.SMTP_SSL("localhost", {port}, context=ctx, timeout=20)
else:
    s = smtplib.SMTP("localhost", {port}, timeout=20)
    s.starttls(context=ctx)
s.ehlo()
s.sendmail("b@example.com", ["a@example.com"], msg)
s.quit()
print("sent")
"#,
            ca = pki.ca.display().to_string(),
            port = rf.addr.port(),
            implicit = if implicit { "True" } else { "False" },
        );
        let out = Command::new(&python)
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "implicit={implicit}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let dumps = sink.wait_for_dumps(1);
        let dump = std::fs::read(&dumps[0]).unwrap();
        // smtplib dot-stuffs the "..dotted" line; smtp-sink un-stuffs it.
        let expected = sink_expected_dump(
            b"Subject: tls\r\nX-Bytes: \xc3\xa9\r\n\r\n..dotted line\r\nbody\r\n",
        );
        assert_eq!(
            sha256_hex(sink_dump_message(&dump)),
            sha256_hex(&expected),
            "implicit={implicit}: {:?}",
            String::from_utf8_lossy(sink_dump_message(&dump))
        );
        let log = rf.log();
        assert!(log.contains("\"client_tls\":\"TLSv1_3"), "{log}");
    }
}

#[test]
fn tls_1_1_only_client_is_refused() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let pki = pki();
    let up = TlsUpstream::start(Starttls::NotOffered, None, "250 ok");
    let rf = start(up.addr, &tls_listener(&pki, ", implicit: true"), "", "");
    let out = run_with_input(
        Command::new(openssl)
            .args([
                "s_client",
                "-tls1_1",
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-connect",
            ])
            .arg(rf.addr.to_string()),
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // openssl prints the protocol it offered even when the handshake fails;
    // no cipher means no session.
    assert!(stdout.contains("Cipher is (NONE)"), "{stdout}");
    assert!(
        !stdout.contains("220 upstream.test"),
        "no greeting without a handshake: {stdout}"
    );
    let logged = poll(Duration::from_secs(5), || {
        rf.log()
            .contains("client TLS handshake failed")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", rf.log());
}

// ------------------------------------------------------------ injection

fn tls_client_session(rf: &Replyfix, after_starttls: &[u8]) -> (String, String) {
    let mut c = SmtpClient::connect(rf.addr);
    let greeting = c.read_reply();
    assert!(greeting.starts_with("220"), "{greeting}");
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    c.send(after_starttls);
    (ehlo, c.read_to_close())
}

#[test]
fn starttls_followed_by_rset_in_one_write_is_closed_without_reply_t1() {
    let pki = pki();
    let up = TlsUpstream::start(Starttls::NotOffered, None, "250 ok");
    let rf = start(up.addr, &tls_listener(&pki, ""), "", "");
    let (_, rest) = tls_client_session(&rf, b"STARTTLS\r\nRSET\r\n");
    assert_eq!(rest, "", "no 220 and no reply to RSET");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        up.seen()
            .iter()
            .all(|(_, c)| c != "RSET" && c != "STARTTLS")
    );
}

#[test]
fn starttls_followed_by_ehlo_in_one_write_never_gets_a_250_t1() {
    let pki = pki();
    let up = TlsUpstream::start(Starttls::NotOffered, None, "250 ok");
    let rf = start(up.addr, &tls_listener(&pki, ""), "", "");
    let (_, rest) = tls_client_session(&rf, b"STARTTLS\r\nEHLO x\r\n");
    assert!(!rest.contains("250"), "{rest}");
    std::thread::sleep(Duration::from_millis(200));
    let ehlos = up
        .seen()
        .iter()
        .filter(|(_, c)| c.starts_with("EHLO"))
        .count();
    assert_eq!(ehlos, 1, "only the plaintext EHLO reached the upstream");
}

#[test]
fn upstream_response_injection_after_220_aborts_with_4xx_t2() {
    let pki = pki();
    for policy in ["may", "encrypt", "verify"] {
        let up = TlsUpstream::start(Starttls::Inject, Some(pki.good.clone()), "250 ok");
        let upstream_tls = format!(
            "{{policy: {policy}, ca: \"{}\", server_name: localhost}}",
            pki.ca.display()
        );
        let rf = start(up.addr, "", &upstream_tls, "");
        let mut c = SmtpClient::connect(rf.addr);
        let greeting = c.read_to_close();
        assert!(greeting.starts_with("421 4.7.0 "), "{policy}: {greeting}");
    }
}

// ------------------------------------------------------------ upstream policy matrix

/// (case, upstream mode, certificate) -> expected greeting class per policy
/// (may, encrypt, verify): true = a working session (220), false = 421 4.7.0.
#[test]
fn upstream_tls_policy_matrix_t4() {
    let pki = pki();
    type Case = (
        &'static str,
        Starttls,
        Option<(PathBuf, PathBuf)>,
        [bool; 3],
    );
    let cases: Vec<Case> = vec![
        (
            "good certificate",
            Starttls::Offer,
            Some(pki.good.clone()),
            [true, true, true],
        ),
        (
            "STARTTLS not offered",
            Starttls::NotOffered,
            None,
            [true, false, false],
        ),
        (
            "502 to STARTTLS",
            Starttls::Refuse("502 5.5.1 not here"),
            None,
            [true, false, false],
        ),
        (
            "454 to STARTTLS",
            Starttls::Refuse("454 4.7.0 TLS not available"),
            None,
            [true, false, false],
        ),
        (
            "354 to STARTTLS",
            Starttls::Refuse("354 what"),
            None,
            [true, false, false],
        ),
        (
            "expired certificate",
            Starttls::Offer,
            Some(pki.expired.clone()),
            [true, true, false],
        ),
        (
            "wrong-name certificate",
            Starttls::Offer,
            Some(pki.wrong_name.clone()),
            [true, true, false],
        ),
        (
            "unknown CA",
            Starttls::Offer,
            Some(pki.unknown_ca.clone()),
            [true, true, false],
        ),
    ];
    for (name, mode, cert, expect) in cases {
        for (i, policy) in ["may", "encrypt", "verify"].iter().enumerate() {
            let up = TlsUpstream::start(mode, cert.clone(), "250 2.1.5 Ok");
            let upstream_tls = format!(
                "{{policy: {policy}, ca: \"{}\", server_name: localhost}}",
                pki.ca.display()
            );
            let rf = start(up.addr, "", &upstream_tls, "");
            let mut c = SmtpClient::connect(rf.addr);
            let greeting = c.read_reply();
            if expect[i] {
                assert!(
                    greeting.starts_with("220 upstream.test"),
                    "{name} / {policy}: {greeting}"
                );
                let ehlo = c.cmd("EHLO client.test");
                assert!(ehlo.starts_with("250"), "{name} / {policy}: {ehlo}");
                assert!(!ehlo.contains("STARTTLS"), "{name} / {policy}: {ehlo}");
                assert!(c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==").starts_with("250"));
                assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
                c.cmd("QUIT");
            } else {
                assert_eq!(
                    greeting,
                    "421 4.7.0 proxy.example.test upstream TLS unavailable, try again later\r\n",
                    "{name} / {policy}"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
            let seen = up.seen();
            if *policy != "may" {
                // T4: no AUTH, MAIL or content in plaintext under encrypt/verify.
                let leaked: Vec<_> = seen
                    .iter()
                    .filter(|(tls, c)| {
                        !tls && (c.starts_with("AUTH")
                            || c.starts_with("MAIL")
                            || c.starts_with("DATA"))
                    })
                    .collect();
                assert!(leaked.is_empty(), "{name} / {policy}: plaintext {leaked:?}");
            }
            if expect[i]
                && mode == Starttls::Offer
                && (*policy != "may" || name == "good certificate")
            {
                assert!(
                    seen.iter().any(|(tls, c)| *tls && c.starts_with("MAIL")),
                    "{name} / {policy}: MAIL went over TLS: {seen:?}"
                );
            }
        }
    }
}

#[test]
fn misused_530_over_starttls_upstream_reaches_a_starttls_client_remapped() {
    let Some(swaks) = tool("swaks") else {
        return;
    };
    let pki = pki();
    let up = TlsUpstream::start(
        Starttls::Offer,
        Some(pki.good.clone()),
        "530 5.7.1 Recipient address rejected: User unknown in local recipient table",
    );
    let upstream_tls = format!(
        "{{policy: verify, ca: \"{}\", server_name: localhost}}",
        pki.ca.display()
    );
    let rf = start(up.addr, &tls_listener(&pki, ""), &upstream_tls, "");
    let out = Command::new(&swaks)
        .args([
            "--server",
            &rf.addr.to_string(),
            "--to",
            "typo@example.com",
            "--from",
            "b@example.com",
            "--tls",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("=== TLS started"), "{text}");
    assert!(
        text.contains(
            "<~* 550 5.1.1 Recipient address rejected: User unknown in local recipient table"
        ),
        "{text}"
    );
    let log = rf.log();
    assert!(log.contains("\"message\":\"reply rewritten\""), "{log}");
    assert!(
        log.contains("530 5.7.1 Recipient address rejected"),
        "{log}"
    );
    assert!(
        log.contains("\"upstream_tls\":\"TLSv1_3") && log.contains("verified"),
        "{log}"
    );
    assert!(
        up.seen()
            .iter()
            .any(|(tls, c)| *tls && c.starts_with("RCPT"))
    );
}

// ------------------------------------------------------------ reload and deadlines

fn send_signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn handshake_subject(openssl: &Path, addr: SocketAddr, ca: &Path) -> Option<String> {
    let out = run_with_input(
        Command::new(openssl)
            .args(["s_client", "-starttls", "smtp", "-verify_return_error"])
            .arg("-CAfile")
            .arg(ca)
            .args(["-servername", "localhost", "-connect"])
            .arg(addr.to_string()),
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !stdout.contains("Verify return code: 0 (ok)") {
        return None;
    }
    stdout
        .lines()
        .find(|l| l.starts_with("subject="))
        .map(|l| l.to_string())
}

#[test]
fn sighup_swaps_the_certificate_without_failing_handshakes_and_keeps_it_on_a_broken_file() {
    let Some(openssl) = tool("openssl") else {
        return;
    };
    let pki = pki();
    let cert = pki.dir.path().join("live.crt");
    let key = pki.dir.path().join("live.key");
    std::fs::copy(&pki.good.0, &cert).unwrap();
    std::fs::copy(&pki.good.1, &key).unwrap();
    let up = TlsUpstream::start(Starttls::NotOffered, None, "250 ok");
    let listener_tls = format!(
        "{{cert: \"{}\", key: \"{}\"}}",
        cert.display(),
        key.display()
    );
    let rf = start(up.addr, &listener_tls, "", "");
    let first = handshake_subject(&openssl, rf.addr, &pki.ca).expect("first handshake");
    assert!(first.contains("good"), "{first}");

    // Handshakes in a bounded loop while the files change and HUP arrives.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (o, a, ca) = (openssl.clone(), rf.addr, pki.ca.clone());
    let loop_thread = {
        let (stop, failures, count) = (stop.clone(), failures.clone(), count.clone());
        std::thread::spawn(move || {
            for _ in 0..40 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if handshake_subject(&o, a, &ca).is_none() {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    std::fs::copy(&pki.other.0, &cert).unwrap();
    std::fs::copy(&pki.other.1, &key).unwrap();
    send_signal(rf.pid(), "-HUP");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    loop_thread.join().unwrap();
    assert_eq!(
        failures.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "failed handshakes"
    );
    assert!(count.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let second = handshake_subject(&openssl, rf.addr, &pki.ca).expect("after reload");
    assert!(second.contains("second"), "{second}");

    // A corrupt file: the previous certificate stays, the error is logged.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    send_signal(rf.pid(), "-HUP");
    let logged = poll(Duration::from_secs(5), || {
        rf.log().contains("certificate reload failed").then_some(())
    });
    assert!(logged.is_some(), "{}", rf.log());
    let third = handshake_subject(&openssl, rf.addr, &pki.ca).expect("after broken reload");
    assert!(third.contains("second"), "{third}");
}

#[test]
fn handshake_trickled_byte_by_byte_is_closed_at_the_deadline() {
    let pki = pki();
    let up = TlsUpstream::start(Starttls::NotOffered, None, "250 ok");
    let rf = start(
        up.addr,
        &tls_listener(&pki, ", implicit: true"),
        "",
        "timeouts:\n  tls_handshake: 2s\n",
    );
    let mut s = TcpStream::connect(rf.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // A ClientHello record header, then one byte every 400 ms.
    let started = std::time::Instant::now();
    let hello = [
        0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let mut closed = false;
    for b in hello.iter().cycle().take(20) {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let took = started.elapsed();
    assert!(closed, "still open after {took:?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "{took:?}"
    );
}
