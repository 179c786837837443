//! COMPRESS=DEFLATE (RFC 4978): a stream that inflates what it reads and deflates what it
//! writes (raw deflate, a sync flush at every flush so each command goes out whole).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::BoxIo;

/// Compressed bytes queued for the inner stream before a write must wait for it.
const MAX_PENDING: usize = 256 * 1024;

/// A deflate-compressed stream over another.
pub struct Deflate {
    inner: BoxIo,
    inflate: Decompress,
    deflate: Compress,
    input: Vec<u8>,
    input_pos: usize,
    output: Vec<u8>,
    output_pos: usize,
    unflushed: bool,
}

impl Deflate {
    /// Starts compression on `inner` (after the server's OK to COMPRESS).
    pub fn new(inner: BoxIo) -> Deflate {
        Deflate {
            inner,
            inflate: Decompress::new(false),
            deflate: Compress::new(Compression::fast(), false),
            input: Vec::with_capacity(32 * 1024),
            input_pos: 0,
            output: Vec::with_capacity(32 * 1024),
            output_pos: 0,
            unflushed: false,
        }
    }

    /// Writes queued compressed bytes to the inner stream.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.output_pos < self.output.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.output[self.output_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.output_pos += n;
        }
        self.output.clear();
        self.output_pos = 0;
        Poll::Ready(Ok(()))
    }

    /// Deflates `data` (or, with `Sync`, flushes) into the output queue.
    fn compress(&mut self, mut data: &[u8], flush: FlushCompress) -> io::Result<()> {
        loop {
            self.output.reserve(data.len() / 2 + 256);
            let before_in = self.deflate.total_in();
            let before_len = self.output.len();
            self.deflate
                .compress_vec(data, &mut self.output, flush)
                .map_err(io::Error::other)?;
            let used = (self.deflate.total_in() - before_in) as usize;
            data = &data[used..];
            // Done when all input is taken and the last call left room (nothing more to emit).
            if data.is_empty() && self.output.len() < self.output.capacity() {
                return Ok(());
            }
            if used == 0 && self.output.len() == before_len && data.is_empty() {
                return Ok(());
            }
        }
    }
}

impl AsyncRead for Deflate {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.input_pos < this.input.len() {
                let before_in = this.inflate.total_in();
                let before_out = this.inflate.total_out();
                let status = this
                    .inflate
                    .decompress(
                        &this.input[this.input_pos..],
                        buf.initialize_unfilled(),
                        FlushDecompress::None,
                    )
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                this.input_pos += (this.inflate.total_in() - before_in) as usize;
                let produced = (this.inflate.total_out() - before_out) as usize;
                if produced > 0 {
                    buf.advance(produced);
                    return Poll::Ready(Ok(()));
                }
                if status == Status::StreamEnd {
                    return Poll::Ready(Ok(()));
                }
                if this.input_pos < this.input.len() && buf.remaining() > 0 {
                    // Consumed input without output (block headers); go on with the rest.
                    continue;
                }
            }
            this.input.clear();
            this.input_pos = 0;
            this.input.resize(32 * 1024, 0);
            let mut raw = ReadBuf::new(&mut this.input);
            let result = Pin::new(&mut this.inner).poll_read(cx, &mut raw);
            let n = raw.filled().len();
            this.input.truncate(n);
            ready!(result)?;
            if n == 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl AsyncWrite for Deflate {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.output.len() - this.output_pos > MAX_PENDING {
            ready!(this.drain(cx))?;
        }
        this.compress(data, FlushCompress::None)?;
        this.unflushed = true;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.unflushed {
            this.compress(&[], FlushCompress::Sync)?;
            this.unflushed = false;
        }
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn both_directions_round_trip_in_pieces() {
        let (a, b) = tokio::io::duplex(4096);
        let mut left = Deflate::new(Box::new(a));
        let mut right = Deflate::new(Box::new(b));
        let message: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i} of text\r\n").into_bytes())
            .collect();
        let expected = message.clone();
        let writer = tokio::spawn(async move {
            for chunk in message.chunks(7000) {
                left.write_all(chunk).await.unwrap();
                left.flush().await.unwrap();
            }
            left.write_all(b"a1 OK done\r\n").await.unwrap();
            left.flush().await.unwrap();
            left
        });
        let mut got = vec![0u8; expected.len() + 12];
        right.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..expected.len()], &expected[..]);
        assert_eq!(&got[expected.len()..], b"a1 OK done\r\n");
        writer.await.unwrap();
    }
}
