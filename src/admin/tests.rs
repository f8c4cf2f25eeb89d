//! The admin endpoint over real sockets: the probes' exact bytes, methods,
//! malformed and oversized requests, the bounds and shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;

use super::*;
use crate::smtp::CommandKind;

struct Running {
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Head timeout of the test server, short so the timeout test is quick.
const TEST_READ_TIMEOUT: Duration = Duration::from_millis(300);

fn test_bounds() -> Bounds {
    Bounds {
        head_timeout: TEST_READ_TIMEOUT,
        body_timeout: TEST_READ_TIMEOUT,
        ..Bounds::default()
    }
}

async fn start_with(console: bool, token: Option<&str>, bounds: Bounds) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::new(["relay", "backup"]));
    let mut endpoint = Endpoint::probes(metrics.clone(), readiness.clone());
    if console {
        let config = crate::config::Config::quick(
            vec!["127.0.0.1:2525".parse().unwrap()],
            vec!["127.0.0.1:25".into()],
        )
        .unwrap();
        endpoint.console = Some(Arc::new(Console::new(
            &config,
            Arc::new(arc_swap::ArcSwap::from_pointee(
                crate::rules::RuleSet::builtin(),
            )),
            metrics.clone(),
            readiness.clone(),
            Arc::new(crate::console::Recent::new()),
        )));
    }
    endpoint.token = token.map(str::to_string);
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, endpoint, rx, bounds));
    Running {
        addr,
        readiness,
        metrics,
        stop,
        task,
    }
}

async fn start() -> Running {
    start_with(false, None, test_bounds()).await
}

/// Sends `request` raw and reads until the server closes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("server closes the connection")
        .unwrap();
    String::from_utf8(out).unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
    .await
}

fn status(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("")
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response
        .split("\r\n\r\n")
        .next()?
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The bytes the hand-written responder sent, for comparison.
fn previous_bytes(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn probes_answer_byte_for_byte_as_before() {
    let r = start().await;
    let text = "text/plain; charset=utf-8";
    assert_eq!(
        get(r.addr, "/healthz").await,
        previous_bytes("200 OK", text, "ok\n")
    );
    assert_eq!(
        get(r.addr, "/readyz").await,
        previous_bytes("200 OK", text, "ready\n")
    );
    r.readiness.set_draining();
    assert_eq!(
        get(r.addr, "/readyz").await,
        previous_bytes("503 Service Unavailable", text, "draining\n")
    );
    let metrics = get(r.addr, "/metrics").await;
    assert_eq!(
        metrics,
        previous_bytes(
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &r.metrics.encode_prometheus_text()
        )
    );
    let head = exchange(r.addr, b"HEAD /healthz HTTP/1.1\r\n\r\n").await;
    assert_eq!(
        head,
        previous_bytes("200 OK", text, "ok\n").replace("ok\n", "")
    );
}

#[tokio::test]
async fn healthz_answers_200_ok_and_closes() {
    let r = start().await;
    let resp = get(r.addr, "/healthz").await;
    assert_eq!(status(&resp), "HTTP/1.1 200 OK");
    assert_eq!(body(&resp), "ok\n");
    assert_eq!(header(&resp, "Connection"), Some("close"));
    assert_eq!(header(&resp, "Content-Length"), Some("3"));
}

#[tokio::test]
async fn metrics_are_prometheus_text_unless_openmetrics_is_asked_for() {
    let r = start().await;
    r.metrics.reply(CommandKind::Rcpt, 250);
    r.metrics.rewrite("rcpt-530", 530, 550, false);

    let resp = get(r.addr, "/metrics").await;
    assert_eq!(status(&resp), "HTTP/1.1 200 OK");
    assert_eq!(
        header(&resp, "Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let b = body(&resp);
    assert_eq!(
        header(&resp, "Content-Length"),
        Some(b.len().to_string().as_str())
    );
    assert!(
        b.lines().any(|l| l
            == "replyfix_rewrites_total{rule=\"rcpt-530\",original_code=\"530\",new_code=\"550\",mode=\"enforce\"} 1"),
        "{b}"
    );
    assert!(!b.contains("# EOF"));

    let resp = exchange(
        r.addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
    )
    .await;
    assert_eq!(
        header(&resp, "Content-Type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(body(&resp).ends_with("# EOF\n"));
    assert!(
        body(&resp)
            .lines()
            .any(|l| l == "replyfix_replies_total{context=\"rcpt\",class=\"2xx\"} 1")
    );
}

#[tokio::test]
async fn readyz_turns_503_when_draining() {
    let r = start().await;
    let resp = get(r.addr, "/readyz").await;
    assert_eq!(status(&resp), "HTTP/1.1 200 OK");
    r.readiness.set_draining();
    let resp = get(r.addr, "/readyz").await;
    assert_eq!(status(&resp), "HTTP/1.1 503 Service Unavailable");
    assert_eq!(body(&resp), "draining\n");
    // Liveness is unaffected by a drain.
    assert_eq!(status(&get(r.addr, "/healthz").await), "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn readyz_turns_503_only_when_every_upstream_is_unreachable() {
    let r = start().await;
    r.readiness.set_upstream_reachable("relay", false);
    assert_eq!(status(&get(r.addr, "/readyz").await), "HTTP/1.1 200 OK");
    r.readiness.set_upstream_reachable("backup", false);
    let resp = get(r.addr, "/readyz").await;
    assert_eq!(status(&resp), "HTTP/1.1 503 Service Unavailable");
    assert_eq!(body(&resp), "no upstream reachable\n");
    r.readiness.set_upstream_reachable("relay", true);
    assert_eq!(status(&get(r.addr, "/readyz").await), "HTTP/1.1 200 OK");
    assert_eq!(r.readiness.unreachable_upstreams(), ["backup"]);
}

#[tokio::test]
async fn unknown_paths_are_404_and_query_strings_are_ignored() {
    let r = start().await;
    let resp = get(r.addr, "/").await;
    assert_eq!(
        status(&resp),
        "HTTP/1.1 404 Not Found",
        "no console: no page"
    );
    let resp = get(r.addr, "/metrics/../etc/passwd").await;
    assert_eq!(status(&resp), "HTTP/1.1 404 Not Found");
    let resp = get(r.addr, "/healthz?verbose=1").await;
    assert_eq!(status(&resp), "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn head_has_headers_without_body_and_other_methods_are_405() {
    let r = start().await;
    let resp = exchange(r.addr, b"HEAD /healthz HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&resp), "HTTP/1.1 200 OK");
    assert_eq!(header(&resp, "Content-Length"), Some("3"));
    assert_eq!(body(&resp), "");
    let resp = exchange(
        r.addr,
        b"POST /readyz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(header(&resp, "Allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn malformed_request_lines_are_400() {
    let r = start().await;
    for bad in [
        &b"GET\r\n\r\n"[..],
        b"GET /healthz\r\n\r\n",
        b"GET /healthz SMTP/1.0\r\n\r\n",
        b"GET  /healthz HTTP/1.1\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
    ] {
        let resp = exchange(r.addr, bad).await;
        assert_eq!(status(&resp), "HTTP/1.1 400 Bad Request", "{bad:?}");
    }
}

#[tokio::test]
async fn oversized_request_is_refused_and_closed() {
    let r = start().await;
    let mut request = b"GET /healthz HTTP/1.1\r\n".to_vec();
    while request.len() <= MAX_REQUEST {
        request.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    // The server may close before reading everything; a reset on write
    // is part of "closed".
    let _ = s.write_all(&request).await;
    let mut out = Vec::new();
    let read = timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("server closes the connection");
    if read.is_ok() {
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 431 "),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_read_timeout() {
    let r = start().await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let _ = timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("closed by the read timeout");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408 "),
        "no answer to the request, at most a 408: {text}"
    );
    assert!(!text.contains("ok\n"));
    assert!(started.elapsed() >= TEST_READ_TIMEOUT - Duration::from_millis(50));
}

#[tokio::test]
async fn connections_over_the_limit_get_503_and_the_rest_are_served() {
    let r = start_with(
        false,
        None,
        Bounds {
            max_connections: 3,
            head_timeout: Duration::from_secs(5),
            ..Bounds::default()
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    // Accepted in order: the held connections have their slots first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let resp = get(r.addr, "/healthz").await;
    assert_eq!(status(&resp), "HTTP/1.1 503 Service Unavailable");
    assert_eq!(body(&resp), "too many connections\n");
    // A held connection finishes its request: served, and its slot frees.
    let mut first = held.remove(0);
    first.write_all(b"\r\n").await.unwrap();
    let mut out = Vec::new();
    first.read_to_end(&mut out).await.unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200 OK"));
    let served = async {
        loop {
            let resp = get(r.addr, "/healthz").await;
            if status(&resp) == "HTTP/1.1 200 OK" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    timeout(Duration::from_secs(5), served)
        .await
        .expect("a freed slot serves again");
}

#[tokio::test]
async fn console_pages_need_the_token_and_probes_do_not() {
    let token = "correct-horse-battery-staple-42";
    let r = start_with(true, Some(token), test_bounds()).await;
    for path in ["/", "/explain", "/console.js"] {
        let resp = get(r.addr, path).await;
        assert_eq!(status(&resp), "HTTP/1.1 401 Unauthorized", "{path}");
        assert!(
            header(&resp, "WWW-Authenticate").is_some_and(|v| v.starts_with("Basic ")),
            "{resp}"
        );
        let bad = exchange(
            r.addr,
            format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {token}x\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(status(&bad), "HTTP/1.1 401 Unauthorized", "{path}");
        let good = exchange(
            r.addr,
            format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(status(&good), "HTTP/1.1 200 OK", "{path}");
        assert!(header(&good, "Content-Security-Policy").is_some());
    }
    assert_eq!(status(&get(r.addr, "/healthz").await), "HTTP/1.1 200 OK");
    assert_eq!(status(&get(r.addr, "/metrics").await), "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn explain_posts_are_bounded_in_size_type_and_time() {
    let r = start_with(true, None, test_bounds()).await;
    let big = exchange(
        r.addr,
        format!(
            "POST /explain HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status(&big), "HTTP/1.1 413 Payload Too Large");
    let chunked = {
        let mut s = TcpStream::connect(r.addr).await.unwrap();
        s.write_all(b"POST /explain HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0;
        while sent <= MAX_BODY {
            if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await
                .is_err()
                || s.write_all(&chunk).await.is_err()
                || s.write_all(b"\r\n").await.is_err()
            {
                break;
            }
            sent += chunk.len();
        }
        let mut out = Vec::new();
        let _ = timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(
        chunked.is_empty() || status(&chunked) == "HTTP/1.1 413 Payload Too Large",
        "{chunked}"
    );
    let multipart = exchange(
        r.addr,
        b"POST /explain HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status(&multipart), "HTTP/1.1 415 Unsupported Media Type");
    let slow = exchange(
        r.addr,
        b"POST /explain HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntext=530",
    )
    .await;
    assert_eq!(status(&slow), "HTTP/1.1 408 Request Timeout");
    let put = exchange(
        r.addr,
        b"PUT /explain HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(header(&put, "Allow"), Some("GET, HEAD, POST"));
}

#[tokio::test]
async fn bind_reports_the_address_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = taken.local_addr().unwrap();
    let err = Admin::bind(address).await.err().expect("address in use");
    assert!(matches!(err, AdminError::Bind { address: a, .. } if a == address));
    assert!(err.to_string().contains(&address.to_string()));
    let ok = Admin::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    assert_ne!(ok.local_addr().unwrap().port(), 0);
}

#[tokio::test]
async fn shutdown_stops_the_listener() {
    let r = start().await;
    assert_eq!(status(&get(r.addr, "/healthz").await), "HTTP/1.1 200 OK");
    r.stop.send(true).unwrap();
    timeout(Duration::from_secs(5), r.task)
        .await
        .expect("serve returns")
        .unwrap();
    assert!(TcpStream::connect(r.addr).await.is_err());
}
