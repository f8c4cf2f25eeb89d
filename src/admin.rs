//! The admin endpoint: HTTP/1.1 on the admin listener, served by hyper.
//! `/metrics`, `/healthz`, `/readyz` for Prometheus, the kubelet and load
//! balancers, and the console pages `/` and `/explain` for people
//! (docs/operations.md).
//!
//! It owns the admin listener, the HTTP bounds ([`Bounds`]: request head
//! size and time, body size and time, a deadline per connection, one
//! request per connection, connections at once), the optional token and the
//! routing (`respond`). The pages' content is `console`'s; the probes'
//! facts are [`Readiness`]'s and `Metrics`'. It must never touch SMTP
//! sessions, change any state, or answer anything but the paths above.
//!
//! Why hyper: the first version answered three fixed `GET`s with a hundred
//! hand-written lines. A form with a body, pages and a live view are more of
//! HTTP (bodies, content types, authorization, methods per path); hyper's
//! HTTP/1 server parses it, and this module keeps it bounded. The probes'
//! responses are unchanged byte for byte: the same status lines, headers
//! (in the same order and case) and bodies, and every response closes its
//! connection.

mod respond;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::console::Console;
use crate::metrics::Metrics;
pub use crate::readiness::{NotReady, Readiness};

/// Largest request head (request line and headers together); larger gets
/// `431`. hyper's smallest read buffer, which also bounds each body read.
pub const MAX_REQUEST: usize = 8 * 1024;

/// Time a client has to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest request body (the explain form); larger gets `413`.
pub const MAX_BODY: usize = 1024 * 1024;

/// Connections served at once; more are answered `503` and closed.
pub const MAX_CONNECTIONS: usize = 64;

/// The bounds of the endpoint (docs/operations.md, "The admin endpoint's
/// limits"). [`Bounds::default`] is what `serve` uses.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Time to send the whole request head ([`READ_TIMEOUT`]).
    pub head_timeout: Duration,
    /// Time to send the whole body, once the head is in.
    pub body_timeout: Duration,
    /// Time a connection may last, response included (a client that does
    /// not read its response is cut here).
    pub connection_timeout: Duration,
    /// Largest body ([`MAX_BODY`]).
    pub max_body: usize,
    /// Connections served at once ([`MAX_CONNECTIONS`]).
    pub max_connections: usize,
    /// Explain requests judged at once (each is CPU work: a bounce may be
    /// a megabyte of MIME); more wait for a slot, within the connection
    /// deadline.
    pub max_explains: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            head_timeout: READ_TIMEOUT,
            body_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(30),
            max_body: MAX_BODY,
            max_connections: MAX_CONNECTIONS,
            max_explains: 2,
        }
    }
}

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

/// What the endpoint answers from: the process's metrics and readiness,
/// the console (when it is on) and the token (when one is set).
pub struct Endpoint {
    /// For `/metrics`.
    pub metrics: Arc<Metrics>,
    /// For `/readyz`.
    pub readiness: Arc<Readiness>,
    /// The console pages; `None`: `/` and `/explain` are `404`.
    pub console: Option<Arc<Console>>,
    /// `admin.token`: required on the console pages (and with
    /// `token_on_probes` on every path).
    pub token: Option<String>,
    /// `admin.token_on_probes`.
    pub token_on_probes: bool,
}

impl Endpoint {
    /// Only the probes: no console, no token.
    pub fn probes(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Endpoint {
        Endpoint {
            metrics,
            readiness,
            console: None,
            token: None,
            token_on_probes: false,
        }
    }
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
    pub async fn serve(self, endpoint: Endpoint, shutdown: watch::Receiver<bool>) {
        serve(self.listener, endpoint, shutdown, Bounds::default()).await;
    }
}

/// What every connection task shares.
struct Shared {
    endpoint: Endpoint,
    bounds: Bounds,
    explains: Semaphore,
}

/// Serves `endpoint` on `listener` within `bounds` until `shutdown` turns
/// true (or its sender is dropped).
///
/// `shutdown` must be the *exit* signal, not the drain signal: during a
/// drain the endpoint keeps answering, with `/readyz` 503 (set by
/// [`Readiness::set_draining`]), so load balancers and the kubelet see it.
pub async fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    mut shutdown: watch::Receiver<bool>,
    bounds: Bounds,
) {
    if *shutdown.borrow() {
        return;
    }
    let shared = Arc::new(Shared {
        endpoint,
        bounds,
        explains: Semaphore::new(bounds.max_explains.max(1)),
    });
    let slots = Arc::new(Semaphore::new(bounds.max_connections.max(1)));
    // Refusals in progress (each writes one short answer, at most 1 s);
    // past this, connections over the limit are closed without a word.
    let refusals = Arc::new(Semaphore::new(bounds.max_connections.max(1)));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => match slots.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        tasks.spawn(async move {
                            connection(stream, shared).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        if let Ok(permit) = refusals.clone().try_acquire_owned() {
                            tasks.spawn(async move {
                                refuse_busy(stream).await;
                                drop(permit);
                            });
                        }
                    }
                },
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    // Requests in progress get a moment; dropping the set ends the rest.
    let _ = timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// One connection: one request, one response, closed; all of it within
/// the connection deadline.
async fn connection(stream: TcpStream, shared: Arc<Shared>) {
    let bounds = shared.bounds;
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond::respond(request, &shared).await) }
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(bounds.head_timeout)
        .keep_alive(false)
        .title_case_headers(true)
        .auto_date_header(false)
        .max_buf_size(MAX_REQUEST);
    let served = http.serve_connection(TokioIo::new(stream), service);
    match timeout(bounds.connection_timeout, served).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "admin: connection ended with an error"),
        Err(_) => tracing::debug!("admin: connection deadline reached"),
    }
}

/// The answer to a connection over [`Bounds::max_connections`].
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 21\r\nCache-Control: no-store\r\nConnection: close\r\n\r\ntoo many connections\n";

/// Answers `503` and closes, reading what the client sent meanwhile (a
/// close with unread input would be a reset that loses the answer).
async fn refuse_busy(mut stream: TcpStream) {
    let _ = timeout(Duration::from_secs(1), async {
        stream.write_all(BUSY).await?;
        stream.shutdown().await?;
        let mut scratch = [0u8; 2048];
        for _ in 0..8 {
            if stream.read(&mut scratch).await? == 0 {
                break;
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
}
