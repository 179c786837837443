//! Network: TCP connect with timeouts, TLS (implicit or after STARTTLS), certificate pinning.

mod conn;
mod deflate;
mod tls;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::exit::{Classify, Exit};

pub use conn::Conn;
pub use deflate::Deflate;
pub use tls::{Fingerprint, start_tls};

/// A byte stream mailferry can speak a protocol over (TCP, TLS over TCP, or a test pipe).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed stream, so that a plain connection can be upgraded to TLS in place.
pub type BoxIo = Box<dyn Io>;

/// A network failure.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// OS error.
        source: std::io::Error,
    },
    /// A network wait took longer than the configured timeout.
    #[error("timed out after {}s waiting for {what}", .after.as_secs())]
    Timeout {
        /// What was awaited.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// The server closed the connection.
    #[error("the server closed the connection {during}")]
    Closed {
        /// What was going on.
        during: String,
    },
    /// Reading or writing failed.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake was refused for a reason other than trust (an alert, no common
    /// version or cipher).
    #[error("TLS handshake with {host} failed: {message}")]
    Tls {
        /// Host.
        host: String,
        /// What rustls said.
        message: String,
    },
    /// The server's certificate is not trusted (or does not match the pin).
    #[error("{0}")]
    Untrusted(String),
}

impl Classify for NetError {
    fn exit(&self) -> Exit {
        match self {
            NetError::Untrusted(_) => Exit::Auth,
            // A TLS refusal (no common protocol version or cipher) does not pass by itself.
            NetError::Tls { .. } => Exit::Protocol,
            _ => Exit::TempFail,
        }
    }
}

/// Where a session goes: what opening one needs, whichever the protocol.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    /// Server host name or address.
    pub host: &'a str,
    /// Server port.
    pub port: u16,
    /// Accept exactly this certificate instead of checking the chain.
    pub pin: Option<Fingerprint>,
    /// Limit on every network wait.
    pub timeout: Duration,
}

impl Endpoint<'_> {
    /// Connects; with `implicit_tls` the TLS handshake is done at once (its certificate's
    /// fingerprint returned), else the stream is plain (for STARTTLS, or none at all).
    pub async fn connect(
        &self,
        implicit_tls: bool,
    ) -> Result<(BoxIo, Option<Fingerprint>), NetError> {
        let io: BoxIo = Box::new(connect(self.host, self.port, self.timeout).await?);
        if !implicit_tls {
            return Ok((io, None));
        }
        let (io, fp) = self.secure(io).await?;
        Ok((io, Some(fp)))
    }

    /// TLS over an established plain stream (after STARTTLS or STLS).
    pub async fn secure(&self, io: BoxIo) -> Result<(BoxIo, Fingerprint), NetError> {
        start_tls(io, self.host, self.pin, self.timeout).await
    }
}

/// Opens a TCP connection within `timeout`.
pub async fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, NetError> {
    let attempt = TcpStream::connect((host, port));
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(source)) => Err(NetError::Connect {
            host: host.to_string(),
            port,
            source,
        }),
        Err(_) => Err(NetError::Timeout {
            what: format!("a connection to {host}:{port}"),
            after: timeout,
        }),
    }
}
