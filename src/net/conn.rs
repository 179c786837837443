//! A connection with a read buffer and a timeout on every wait: what the POP3 and IMAP
//! clients read through.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BoxIo, NetError};

/// A buffered connection.
pub struct Conn {
    io: BoxIo,
    buf: Vec<u8>,
    start: usize,
    timeout: Duration,
}

impl Conn {
    /// Wraps a stream.
    pub fn new(io: BoxIo, timeout: Duration) -> Conn {
        Conn {
            io,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            timeout,
        }
    }

    /// The limit on every wait.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Bytes received and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Marks `n` buffered bytes as used.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
    }

    /// Reads more bytes into the buffer, waiting at most the timeout; the server closing the
    /// connection is an error (`what` says what was awaited).
    pub async fn fill(&mut self, what: &str) -> Result<(), NetError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 16 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        let n = tokio::time::timeout(self.timeout, self.io.read_buf(&mut self.buf))
            .await
            .map_err(|_| NetError::Timeout {
                what: what.to_string(),
                after: self.timeout,
            })??;
        if n == 0 {
            return Err(NetError::Closed {
                during: format!("while mailferry was waiting for {what}"),
            });
        }
        Ok(())
    }

    /// Writes and flushes within the timeout.
    pub async fn write_all(&mut self, data: &[u8], what: &str) -> Result<(), NetError> {
        let io = &mut self.io;
        let job = async move {
            io.write_all(data).await?;
            io.flush().await
        };
        tokio::time::timeout(self.timeout, job)
            .await
            .map_err(|_| NetError::Timeout {
                what: format!("the server to take {what}"),
                after: self.timeout,
            })??;
        Ok(())
    }

    /// The stream, for a TLS upgrade, if nothing is buffered: bytes the server sent before the
    /// handshake would otherwise be taken as if they came over TLS (response injection).
    pub fn into_io(self) -> Option<BoxIo> {
        (self.start == self.buf.len()).then_some(self.io)
    }
}
