//! Upstream set-up against scripted upstreams on loopback (T2, T3, T4).

use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::config::UpstreamTls;

const T: SetupTimeouts = SetupTimeouts {
    connect: Duration::from_secs(5),
    reply: Duration::from_secs(5),
    handshake: Duration::from_secs(5),
};

/// Every session's setup allocates this future; its TLS and EHLO parts
/// are boxed, so the plain path stays small (a burst of 1,000
/// connections held 6 KiB each of it before: docs/reliability.md, idle memory).
#[test]
fn the_setup_future_stays_small() {
    let tls = UpstreamTlsContext::new(&UpstreamTls::default()).unwrap();
    let servers = vec!["127.0.0.1:25".to_string()];
    let addr: std::net::SocketAddr = "127.0.0.1:25".parse().unwrap();
    let who = ClientAddress {
        forwarding: ClientAddressForwarding::None,
        client: addr,
        local: addr,
    };
    let fut = establish(&servers, &tls, Some("h"), T, who);
    let size = std::mem::size_of_val(&fut);
    println!("setup future: {size} bytes");
    assert!(size < 2048, "setup future is {size} bytes");
}

/// A self-signed certificate and key in a fresh temp folder.
fn cert_files(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("replyfix-upstream-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (dir, c, k)
}

/// Reads one line byte by byte (nothing read past it, so the TLS
/// handshake that follows STARTTLS stays unread).
async fn line<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while out.len() < 1000 && !out.ends_with(b"\r\n") {
        if s.read(&mut b).await.unwrap_or(0) == 0 {
            break;
        }
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).trim_end().to_string()
}

/// A STARTTLS upstream that lists XCLIENT in its plaintext EHLO reply
/// (`xclient_in_plain`) or only in the one inside TLS; returns the
/// command lines it saw.
async fn upstream(
    acceptor: TlsAcceptor,
    xclient_in_plain: bool,
) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        let (mut tcp, _) = listener.accept().await.unwrap();
        tcp.write_all(b"220 up.test ESMTP\r\n").await.unwrap();
        seen.push(line(&mut tcp).await);
        let caps: &[u8] = if xclient_in_plain {
            b"250-up.test\r\n250-STARTTLS\r\n250 XCLIENT ADDR PORT\r\n"
        } else {
            b"250-up.test\r\n250 STARTTLS\r\n"
        };
        tcp.write_all(caps).await.unwrap();
        seen.push(line(&mut tcp).await);
        tcp.write_all(b"220 2.0.0 go ahead\r\n").await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        // The next line inside TLS, if any, before replyfix hands over.
        let next = tokio::time::timeout(Duration::from_millis(500), line(&mut tls)).await;
        // (An empty line: replyfix closed without a command.)
        if let Ok(l) = next
            && !l.is_empty()
        {
            if l.starts_with("EHLO") {
                let caps: &[u8] = if xclient_in_plain {
                    b"250 up.test\r\n"
                } else {
                    b"250-up.test\r\n250 XCLIENT ADDR PORT\r\n"
                };
                tls.write_all(caps).await.unwrap();
            }
            seen.push(l);
        }
        seen
    });
    (addr, task)
}

async fn establish_with(
    xclient_in_plain: bool,
    forwarding: ClientAddressForwarding,
) -> (bool, Vec<String>) {
    establish_named(xclient_in_plain, forwarding, Some("proxy.test")).await
}

async fn establish_named(
    xclient_in_plain: bool,
    forwarding: ClientAddressForwarding,
    helo: Option<&str>,
) -> (bool, Vec<String>) {
    let (dir, cert, key) = cert_files(&format!("{xclient_in_plain}-{forwarding:?}"));
    let acceptor = TlsAcceptor::from(crate::tls::server_config(&cert, &key).unwrap());
    let _ = std::fs::remove_dir_all(dir);
    let (addr, task) = upstream(acceptor, xclient_in_plain).await;
    let tls = UpstreamTlsContext::new(&UpstreamTls {
        policy: TlsPolicy::Encrypt,
        ca: None,
        server_name: Some("localhost".into()),
        implicit: false,
    })
    .unwrap();
    let who = ClientAddress {
        forwarding,
        client: "192.0.2.7:40000".parse().unwrap(),
        local: "127.0.0.1:25".parse().unwrap(),
    };
    let est = establish(&[addr], &tls, helo, T, who)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(est.tls.is_some());
    assert_eq!(est.greeting, b"220 up.test ESMTP\r\n");
    let xclient = est.xclient;
    drop(est);
    (xclient, task.await.unwrap())
}

#[tokio::test]
async fn xclient_offered_only_inside_tls_is_used_t3() {
    let (xclient, seen) = establish_with(false, ClientAddressForwarding::Xclient).await;
    assert!(xclient);
    assert_eq!(seen, ["EHLO proxy.test", "STARTTLS", "EHLO proxy.test"]);
}

#[tokio::test]
async fn xclient_offered_only_before_tls_is_forgotten_t3() {
    let (xclient, seen) = establish_with(true, ClientAddressForwarding::Xclient).await;
    assert!(
        !xclient,
        "RFC 3207 4.2: plaintext capabilities are discarded"
    );
    assert_eq!(seen, ["EHLO proxy.test", "STARTTLS", "EHLO proxy.test"]);
}

#[tokio::test]
async fn without_xclient_forwarding_the_client_ehlo_is_the_first_inside_tls() {
    let (xclient, seen) = establish_with(true, ClientAddressForwarding::None).await;
    assert!(!xclient);
    assert_eq!(seen, ["EHLO proxy.test", "STARTTLS"]);
}

#[tokio::test]
async fn without_a_fully_qualified_name_replyfix_ehlos_with_its_address_literal() {
    // RFC 5321 4.1.4: the address literal of replyfix's end of the
    // connection, accepted by relays that refuse a bare host name.
    let (_, seen) = establish_named(true, ClientAddressForwarding::None, None).await;
    assert_eq!(seen, ["EHLO [127.0.0.1]", "STARTTLS"]);
}
