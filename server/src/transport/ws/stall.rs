//! A write deadline for a client that stops taking data.
//!
//! A WebSocket client that stops reading, or whose host vanished without closing, leaves its
//! socket full: every write to it waits. The hub drops its frames meanwhile (nobody else waits),
//! but the session itself would wait in that write until TCP gives up, up to ~15 minutes,
//! unable to notice that it was deleted, revoked or asked to shut down. [`StallLimit`] fails a
//! write that has made no progress for the limit with `TimedOut`, and the session ends. The timer
//! is armed only when a write has to wait, so a client that keeps up never touches it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner` with a deadline on writes that cannot make progress.
#[derive(Debug)]
pub struct StallLimit<T> {
    inner: T,
    limit: Duration,
    /// Armed while a write waits; reset as soon as one makes progress.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> StallLimit<T> {
    pub fn new(inner: T, limit: Duration) -> Self {
        Self { inner, limit, deadline: None }
    }

    /// `Ready(Err(TimedOut))` once the write that is waiting has waited `limit`.
    fn waiting(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, format!("the client took no data for {limit:?}")))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn check<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                self.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.waiting(cx).map(Err),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallLimit<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallLimit<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn a_write_that_waits_past_the_limit_fails_and_one_that_progresses_does_not() {
        let limit = Duration::from_millis(300);
        // A pipe of 64 bytes that nobody reads.
        let (near, _far) = tokio::io::duplex(64);
        let mut w = StallLimit::new(near, limit);
        w.write_all(&[1; 64]).await.expect("fits");
        let started = std::time::Instant::now();
        let err = w.write_all(&[2; 10]).await.expect_err("nobody reads");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let waited = started.elapsed();
        assert!(waited >= limit && waited < limit * 5, "{waited:?}");

        // A reader that takes a little every 100 ms keeps a write of 20 × the pipe alive.
        let (near, mut far) = tokio::io::duplex(64);
        let mut w = StallLimit::new(near, limit);
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let mut got = 0;
            while got < 1280 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                got += tokio::io::AsyncReadExt::read(&mut far, &mut buf).await.expect("read");
            }
            got
        });
        w.write_all(&[3; 1280]).await.expect("progress resets the deadline");
        assert_eq!(reader.await.expect("reader"), 1280);
    }
}
