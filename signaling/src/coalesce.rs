//! A TCP stream whose small reads are served from one larger read.
//!
//! tungstenite reads at most its read-buffer size per call (512 bytes here, so that an
//! idle connection stays cheap), and a 1 KiB signal then took three `recvfrom` calls.
//! Here a read into a small buffer reads the socket into a per-thread scratch buffer
//! instead, and keeps what did not fit until the next reads ask for it: one system call
//! per signal, and no memory held by an idle connection (the leftover is freed once
//! read). Reads into large buffers (hyper's, for the request head) go straight through.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Reads into buffers at least this big go straight to the socket.
const DIRECT_READ: usize = 4096;
/// One socket read's most: a burst of signals queued for one connection in one call.
const SCRATCH: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

pub(crate) struct Coalesced<S> {
    inner: S,
    /// Read from the socket, not yet asked for.
    leftover: Vec<u8>,
    /// How much of `leftover` was handed out already.
    taken: usize,
}

impl<S> Coalesced<S> {
    pub(crate) fn new(inner: S) -> Coalesced<S> {
        Coalesced { inner, leftover: Vec::new(), taken: 0 }
    }

    /// Hands out what is left over; true if there was any.
    fn take_leftover(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let rest = &self.leftover[self.taken..];
        if rest.is_empty() {
            return false;
        }
        let n = rest.len().min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.taken += n;
        if self.taken == self.leftover.len() {
            // Freed, not kept: an idle connection holds nothing.
            self.leftover = Vec::new();
            self.taken = 0;
        }
        true
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesced<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Nothing fits: reading the socket now would strand its bytes here.
        if buf.remaining() == 0 || this.take_leftover(buf) {
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= DIRECT_READ {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        SCRATCH_BUFFER.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut into = ReadBuf::new(&mut scratch[..]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut into) {
                Poll::Ready(Ok(())) => {
                    let read = into.filled();
                    let n = read.len().min(buf.remaining());
                    buf.put_slice(&read[..n]);
                    this.leftover.extend_from_slice(&read[n..]);
                    Poll::Ready(Ok(()))
                }
                other => other,
            }
        })
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesced<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Small reads see every byte in order, across socket reads bigger and smaller
    /// than the caller's buffer; a large read goes straight through.
    #[tokio::test]
    async fn small_reads_get_every_byte_in_order() -> io::Result<()> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let mut reader = Coalesced::new(server);
        let mut writer = client;
        let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let writing = {
            let sent = sent.clone();
            tokio::spawn(async move {
                for chunk in sent.chunks(1030) {
                    writer.write_all(chunk).await?;
                }
                writer.shutdown().await
            })
        };
        let mut got = Vec::new();
        let mut small = [0u8; 512];
        let mut large = vec![0u8; DIRECT_READ];
        let mut turn = 0;
        loop {
            turn += 1;
            let n = if turn % 7 == 0 { reader.read(&mut large).await? } else { reader.read(&mut small).await? };
            if n == 0 {
                break;
            }
            got.extend_from_slice(if turn % 7 == 0 { &large[..n] } else { &small[..n] });
        }
        writing.await.map_err(io::Error::other)??;
        assert_eq!(got, sent);
        assert!(reader.leftover.is_empty() && reader.leftover.capacity() == 0, "nothing held once read");
        Ok(())
    }
}
