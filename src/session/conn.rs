//! One side's connection: plain TCP, or TLS as a server (client leg) or as
//! a client (upstream leg). Reads return owned chunks so that an idle plain
//! connection holds no read buffer.
//!
//! Never interprets bytes; after a TLS error the connection is finished
//! (T6): nothing is read from the socket in plaintext again.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::{client, server};

/// Largest single read.
pub const READ_CHUNK: usize = 16 * 1024;

/// What one read produced.
pub enum ReadOutcome {
    Data(Vec<u8>),
    Eof,
    /// Spurious readiness; nothing read.
    Nothing,
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
    /// Waits for bytes. A plain connection waits for readiness first and
    /// reads into a buffer that exists only for this call.
    pub async fn read_some(&mut self) -> ReadOutcome {
        match self {
            Conn::Plain(tcp) => {
                if tcp.readable().await.is_err() {
                    return ReadOutcome::Eof;
                }
                let mut buf = vec![0u8; READ_CHUNK];
                match tcp.try_read(&mut buf) {
                    Ok(0) => ReadOutcome::Eof,
                    Ok(n) => {
                        buf.truncate(n);
                        ReadOutcome::Data(buf)
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::Nothing,
                    Err(_) => ReadOutcome::Eof,
                }
            }
            Conn::ServerTls(s) => read_tls(s.as_mut()).await,
            Conn::ClientTls(s) => read_tls(s.as_mut()).await,
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

async fn read_tls<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> ReadOutcome {
    let mut buf = vec![0u8; READ_CHUNK];
    match s.read(&mut buf).await {
        Ok(0) | Err(_) => ReadOutcome::Eof,
        Ok(n) => {
            buf.truncate(n);
            ReadOutcome::Data(buf)
        }
    }
}
