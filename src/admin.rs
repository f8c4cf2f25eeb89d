//! The admin endpoint: `/metrics`, `/healthz`, `/readyz` over HTTP/1.1
//! (docs/operations.md).
//!
//! It owns the admin listener, a deliberately tiny HTTP responder, and
//! [`Readiness`], the two facts `/readyz` reports (draining; no upstream
//! reachable). It must never touch SMTP sessions, change state other than
//! [`Readiness`] (which it only reads), or serve anything but these three
//! read-only paths.
//!
//! Why not `hyper`: the endpoint answers three fixed `GET`s from Prometheus,
//! a kubelet or an operator's curl, on a port that should be loopback or
//! cluster-internal only. A request head is read whole (at most
//! [`MAX_REQUEST`] octets, within [`READ_TIMEOUT`]), answered with a
//! `Content-Length` body and `Connection: close`, and the socket is closed:
//! no keep-alive, no request bodies, no chunking, no upgrades. That is about
//! a hundred lines we can read in one sitting and bound completely, against
//! five more crates (hyper, hyper-util, http, http-body, http-body-util) in
//! the build of a proxy whose attack surface we want small. If the endpoint
//! ever needs more of HTTP, switch to hyper 1.x rather than grow this.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE};
pub use crate::readiness::{NotReady, Readiness};

/// Largest request head read, request line and headers together.
pub const MAX_REQUEST: usize = 8 * 1024;

/// Time a client has to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a response has to be written.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Admin connections served at once; more wait in the kernel backlog.
const MAX_CONNECTIONS: usize = 64;

/// Errors of the admin endpoint.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The admin address could not be bound.
    #[error(
        "admin endpoint: cannot listen on {address}: {source} (is another process using it? is the address on this host?)"
    )]
    Bind {
        /// The configured `admin.listen`.
        address: SocketAddr,
        /// The bind error.
        source: io::Error,
    },
}

/// A bound admin listener, before it serves.
pub struct Admin {
    listener: TcpListener,
}

impl Admin {
    /// Binds `address` (`admin.listen` or `serve --admin`).
    pub async fn bind(address: SocketAddr) -> Result<Admin, AdminError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| AdminError::Bind { address, source })?;
        Ok(Admin { listener })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` turns true; see [`serve`].
    pub async fn serve(
        self,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        shutdown: watch::Receiver<bool>,
    ) {
        serve(self.listener, metrics, readiness, shutdown).await;
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until
/// `shutdown` turns true (or its sender is dropped).
///
/// `shutdown` must be the *exit* signal, not the drain signal: during a
/// drain the endpoint keeps answering, with `/readyz` 503 (set by
/// [`Readiness::set_draining`]), so load balancers and the kubelet see it.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    shutdown: watch::Receiver<bool>,
) {
    serve_with(listener, metrics, readiness, shutdown, READ_TIMEOUT).await;
}

/// [`serve`] with the request read timeout as a parameter (tests).
async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
    read_timeout: Duration,
) {
    if *shutdown.borrow() {
        return;
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
                continue;
            }
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let metrics = metrics.clone();
                    let readiness = readiness.clone();
                    tasks.spawn(async move {
                        answer(stream, &metrics, &readiness, read_timeout).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
        while tasks.try_join_next().is_some() {}
    }
    // Requests in progress are bounded by the read and write timeouts.
    while tasks.join_next().await.is_some() {}
}

/// One connection: read one request head, write one response, close.
async fn answer(
    mut stream: TcpStream,
    metrics: &Metrics,
    readiness: &Readiness,
    read_timeout: Duration,
) {
    let response = match timeout(read_timeout, read_head(&mut stream)).await {
        Ok(Ok(head)) => respond(&head, metrics, readiness),
        Ok(Err(HeadError::TooLarge)) => Response::text(431, "request too large\n"),
        Ok(Err(HeadError::Closed)) | Err(_) => return,
    };
    let _ = timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response.to_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

enum HeadError {
    /// More than [`MAX_REQUEST`] octets without the blank line.
    TooLarge,
    /// EOF or a read error before the head was complete.
    Closed,
}

/// Reads up to the blank line that ends a request head. Bytes after it
/// (a body, a pipelined request) are ignored: every response closes.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf[scan_from..]) {
            buf.truncate(scan_from + end);
            return Ok(buf);
        }
        if buf.len() >= MAX_REQUEST {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Offset just past the first `\r\n\r\n` (or a bare `\n\n`, which some
/// hand-typed clients send).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// `HEAD`: headers as for `GET`, no body.
    head_only: bool,
    allow: bool,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
            head_only: false,
            allow: false,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Unknown",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if self.allow {
            out.extend_from_slice(b"Allow: GET, HEAD\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// Decides the response to a complete request head.
fn respond(head: &[u8], metrics: &Metrics, readiness: &Readiness) -> Response {
    let Ok(head) = std::str::from_utf8(head) else {
        return Response::text(400, "bad request\n");
    };
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Response::text(400, "bad request\n");
    };
    if !version.starts_with("HTTP/1.") {
        return Response::text(400, "bad request\n");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut r = Response::text(405, "method not allowed\n");
            r.allow = true;
            return r;
        }
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let mut response = match path {
        "/healthz" => Response::text(200, "ok\n"),
        "/readyz" => match readiness.check() {
            Ok(()) => Response::text(200, "ready\n"),
            Err(why) => Response::text(503, &format!("{}\n", why.as_str())),
        },
        "/metrics" => {
            let openmetrics = lines
                .filter_map(|l| l.split_once(':'))
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
                .any(|(_, value)| value.contains("application/openmetrics-text"));
            if openmetrics {
                Response {
                    content_type: OPENMETRICS_CONTENT_TYPE,
                    ..Response::text(200, &metrics.encode())
                }
            } else {
                Response {
                    content_type: PROMETHEUS_TEXT_CONTENT_TYPE,
                    ..Response::text(200, &metrics.encode_prometheus_text())
                }
            }
        }
        _ => Response::text(404, "not found\n"),
    };
    response.head_only = head_only;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::CommandKind;

    struct Running {
        addr: SocketAddr,
        readiness: Arc<Readiness>,
        metrics: Arc<Metrics>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    /// Read timeout of the test server, short so the timeout test is quick.
    const TEST_READ_TIMEOUT: Duration = Duration::from_millis(300);

    async fn start() -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::new(["relay", "backup"]));
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve_with(
            listener,
            metrics.clone(),
            readiness.clone(),
            rx,
            TEST_READ_TIMEOUT,
        ));
        Running {
            addr,
            readiness,
            metrics,
            stop,
            task,
        }
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
        assert_eq!(status(&resp), "HTTP/1.1 404 Not Found");
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
        let n = timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("closed by the read timeout")
            .unwrap();
        assert_eq!(n, 0, "no response to an incomplete request");
        assert!(started.elapsed() >= TEST_READ_TIMEOUT - Duration::from_millis(50));
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

    #[test]
    fn head_end_is_found_across_line_ending_styles() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
