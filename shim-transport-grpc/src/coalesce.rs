//! Write coalescing for the client's connection.
//!
//! hyper sends a unary request from two tasks: the connection task writes and
//! flushes the HEADERS frame, then the task that pipes the body has the DATA
//! frame written and flushed. That is two `writev` calls per request, and the
//! server may wake up for the first alone: another wake-up of its thread,
//! which on a VM is the dearest part of a call. [`Coalesce`] holds written
//! bytes and lets a flush wait for one turn of the scheduler, so the tasks
//! that are ready to write (the body pipe) add their frames first; the whole
//! request then leaves in one `write`. That turn costs a request nothing:
//! the server cannot answer before the DATA frame, and that frame needs the
//! body task and then the connection task to run again in any case.
//!
//! Only on a current-thread runtime: on tokio's multi-threaded one a task
//! that wakes itself is queued behind everything on its worker and another
//! worker is woken to help, which costs the cross-thread wake-up this is
//! meant to save. There the wrapper passes everything straight through.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes held before they are written without waiting for a flush.
const HOLD: usize = 64 * 1024;

/// An I/O object whose writes are held until a flush, and whose flushes are
/// put off by one turn of the scheduler (see the module doc).
#[derive(Debug)]
pub(crate) struct Coalesce<T> {
    inner: T,
    held: Vec<u8>,
    /// Written so far of `held` (a write to the socket can be partial).
    sent: usize,
    /// The current flush already gave other tasks their turn.
    yielded: bool,
    /// Hold writes at all (see the module doc).
    hold: bool,
}

impl<T> Coalesce<T> {
    /// Holds writes when running on a current-thread runtime; otherwise a
    /// plain pass-through.
    pub(crate) fn new(inner: T) -> Self {
        let current_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        Self::with_hold(inner, current_thread)
    }

    fn with_hold(inner: T, hold: bool) -> Self {
        Self { inner, held: Vec::new(), sent: 0, yielded: false, hold }
    }
}

impl<T: AsyncWrite + Unpin> Coalesce<T> {
    /// Writes out everything held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let rest = self.held.get(self.sent..).unwrap_or_default();
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.held.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesce<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesce<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if !self.hold {
            return Pin::new(&mut self.get_mut().inner).poll_write(cx, data);
        }
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.hold {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, data);
        }
        if this.held.len() >= HOLD {
            ready!(this.poll_drain(cx))?;
        }
        let mut taken = 0;
        for slice in data {
            let room = HOLD.saturating_sub(this.held.len());
            if room == 0 {
                break;
            }
            let part = slice.get(..room.min(slice.len())).unwrap_or_default();
            this.held.extend_from_slice(part);
            taken += part.len();
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        self.hold || self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held.is_empty() {
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        if !this.yielded {
            // Come back after the other ready tasks have run.
            this.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_drain(cx))?;
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;

    /// Records each write it is given; accepts at most `max` bytes a write.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        max: usize,
        flushes: usize,
        shut: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            let n = data.len().min(self.max);
            self.writes.push(data[..n].to_vec());
            Poll::Ready(Ok(n))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    struct CountWakes(AtomicUsize);

    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn writes_wait_for_the_flush_and_the_flush_for_one_turn() {
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut io = Coalesce::with_hold(Recorder { max: usize::MAX, ..Default::default() }, true);
        let headers = Pin::new(&mut io).poll_write(&mut cx, b"headers");
        assert!(matches!(headers, Poll::Ready(Ok(7))));
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending(), "the first flush gives others a turn");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "and asks to be polled again");
        assert!(io.inner.writes.is_empty());
        // Another task adds its frame in that turn.
        let slices = [io::IoSlice::new(b"+da"), io::IoSlice::new(b"ta")];
        assert!(matches!(Pin::new(&mut io).poll_write_vectored(&mut cx, &slices), Poll::Ready(Ok(5))));
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(io.inner.writes, vec![b"headers+data".to_vec()], "one write for both");
        assert_eq!(io.inner.flushes, 1);
        // Nothing held: a flush goes straight through.
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_ready());
        assert_eq!(io.inner.flushes, 2);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn large_and_partial_writes_arrive_whole_and_in_order() {
        let data: Vec<u8> = (0..(3 * HOLD + 123)).map(|i| (i % 251) as u8).collect();
        let mut io = Coalesce::with_hold(Recorder { max: 1000, ..Default::default() }, true);
        io.write_all(&data).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.inner.writes.concat(), data);
        assert!(io.inner.writes.iter().all(|w| w.len() <= 1000));
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_held() {
        let mut io = Coalesce::with_hold(Recorder { max: usize::MAX, ..Default::default() }, true);
        io.write_all(b"goaway").await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(io.inner.writes.concat(), b"goaway");
        assert!(io.inner.shut);
    }

    #[test]
    fn it_holds_on_a_current_thread_runtime_only() {
        let current = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(current.block_on(async { Coalesce::new(Recorder::default()).hold }));
        let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        assert!(!multi.block_on(async { Coalesce::new(Recorder::default()).hold }));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn without_holding_writes_go_straight_through() {
        let mut io = Coalesce::new(Recorder { max: usize::MAX, ..Default::default() });
        io.write_all(b"headers").await.unwrap();
        assert_eq!(io.inner.writes, vec![b"headers".to_vec()]);
        io.flush().await.unwrap();
        assert_eq!(io.inner.flushes, 1);
    }
}
