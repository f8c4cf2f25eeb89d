//! One side's connection: plain TCP, or TLS as a server (client leg) or as
//! a client (upstream leg). Reads go into one buffer per runtime thread, so
//! an idle connection holds no read buffer.
//!
//! Never interprets bytes; after a TLS error the connection is finished
//! (T6): nothing is read from the socket in plaintext again.

use std::io;

use std::cell::RefCell;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{client, server};

/// Largest single read.
pub const READ_CHUNK: usize = 64 * 1024;

/// What one read produced.
pub enum ReadOutcome {
    /// This many bytes arrived. They wait in the thread's scratch buffer
    /// until the task next yields: take them with [`received`] before any
    /// `.await` (the next read on this thread overwrites them).
    Data(usize),
    Eof,
}

/// Runs `f` on the `n` bytes that the last [`Conn::read_some`] on this
/// thread returned as [`ReadOutcome::Data`]: no copy out of the scratch
/// buffer.
pub fn received<R>(n: usize, f: impl FnOnce(&[u8]) -> R) -> R {
    SCRATCH.with(|scratch| f(&scratch.borrow()[..n]))
}

/// A connection on one leg.
pub enum Conn {
    Plain(TcpStream),
    /// replyfix is the TLS server (the client leg).
    ServerTls(Box<server::TlsStream<TcpStream>>),
    /// replyfix is the TLS client (the upstream leg).
    ClientTls(Box<client::TlsStream<TcpStream>>),
    /// Closed, or handed to a TLS handshake that failed.
    Gone,
}

impl Conn {
    /// Waits for bytes. The read goes into a per-thread scratch buffer (see
    /// [`received`]), so an idle session holds no read buffer; reading
    /// through `poll_read` also lets tokio clear the socket's readiness after
    /// a short read (no extra failing `recv`).
    /// The address the peer connected to (`None` once gone).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Conn::Plain(s) => s.local_addr().ok(),
            Conn::ServerTls(s) => s.get_ref().0.local_addr().ok(),
            Conn::ClientTls(s) => s.get_ref().0.local_addr().ok(),
            Conn::Gone => None,
        }
    }

    pub async fn read_some(&mut self) -> ReadOutcome {
        match self {
            Conn::Plain(tcp) => read_chunk(tcp).await,
            Conn::ServerTls(s) => read_chunk(s.as_mut()).await,
            Conn::ClientTls(s) => read_chunk(s.as_mut()).await,
            Conn::Gone => std::future::pending().await,
        }
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(data).await,
            Conn::ServerTls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Conn::ClientTls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
            Conn::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Closes the write side (a TLS close_notify first) and forgets the
    /// connection.
    pub async fn shutdown(&mut self) {
        match self {
            Conn::Plain(s) => {
                let _ = s.shutdown().await;
            }
            Conn::ServerTls(s) => {
                let _ = s.shutdown().await;
            }
            Conn::ClientTls(s) => {
                let _ = s.shutdown().await;
            }
            Conn::Gone => {}
        }
        *self = Conn::Gone;
    }

    pub fn is_open(&self) -> bool {
        !matches!(self, Conn::Gone)
    }

    /// The plain TCP stream, for a TLS handshake; leaves `Gone` behind.
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, Conn::Gone) {
            Conn::Plain(s) => Some(s),
            other => {
                *self = other;
                None
            }
        }
    }
}

thread_local! {
    /// One read buffer per runtime thread, shared by all its sessions.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; READ_CHUNK].into_boxed_slice());
}

async fn read_chunk<S: AsyncRead + Unpin>(s: &mut S) -> ReadOutcome {
    std::future::poll_fn(|cx| {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut *s).poll_read(cx, &mut buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(_)) => Poll::Ready(ReadOutcome::Eof),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(ReadOutcome::Eof),
                Poll::Ready(Ok(())) => Poll::Ready(ReadOutcome::Data(buf.filled().len())),
            }
        })
    })
    .await
}
