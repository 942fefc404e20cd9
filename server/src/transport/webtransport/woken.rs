//! Poll a future again only once its waker has fired.
//!
//! A session's loop waits on the hub and on the client's stream with `select!`, which polls every
//! branch each time the task wakes; at 30 frames a second that is a read of the client's stream
//! per frame for a stream that carries a few lines a minute, and each read locks the QUIC
//! connection and looks up the stream (3.1–3.4 % of the server's samples at 500 WebTransport
//! clients). [`Woken`] skips that poll while the stream's last answer was `Pending` and nothing
//! has woken it since: the future is polled with a waker of its own that records the wake and
//! passes it on to the task.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The wake record of one source (the client's stream), kept across the loop's iterations.
pub struct Woken {
    flag: Arc<Flag>,
    waker: Waker,
}

impl Woken {
    pub fn new() -> Self {
        let flag = Arc::new(Flag { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        Self { waker: Waker::from(Arc::clone(&flag)), flag }
    }

    /// `fut`, polled only when it has not answered `Pending` since it was last woken. `fut` must
    /// be cancel-safe and register its interest where a wake survives the future (a quinn stream
    /// read does: the stream keeps the waker until data or an error arrives).
    pub async fn poll<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| self.poll_once(cx, fut.as_mut())).await
    }

    fn poll_once<F: Future>(&self, cx: &mut Context<'_>, fut: Pin<&mut F>) -> Poll<F::Output> {
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        match fut.poll(&mut Context::from_waker(&self.waker)) {
            Poll::Ready(v) => {
                // More may be ready at once (a second line in the same chunk).
                self.flag.woken.store(true, Ordering::Release);
                Poll::Ready(v)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A future that counts its polls and is ready once `ready` is set, waking the waker it was
    /// last polled with when `ready` is set through [`Source::set`].
    #[derive(Default)]
    struct Source {
        polls: AtomicUsize,
        ready: AtomicBool,
        waker: std::sync::Mutex<Option<Waker>>,
    }

    impl Source {
        fn set(&self) {
            self.ready.store(true, Ordering::SeqCst);
            if let Some(w) = self.waker.lock().expect("lock").take() {
                w.wake();
            }
        }

        fn read(&self) -> impl Future<Output = ()> + '_ {
            std::future::poll_fn(move |cx| {
                self.polls.fetch_add(1, Ordering::SeqCst);
                if self.ready.swap(false, Ordering::SeqCst) {
                    return Poll::Ready(());
                }
                *self.waker.lock().expect("lock") = Some(cx.waker().clone());
                Poll::Pending
            })
        }
    }

    fn poll_now<F: Future>(f: F) -> Poll<F::Output> {
        let mut f = std::pin::pin!(f);
        f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_pending_source_is_polled_again_only_after_its_wake() {
        let (w, src) = (Woken::new(), Source::default());
        assert!(poll_now(w.poll(src.read())).is_pending());
        assert_eq!(src.polls.load(Ordering::SeqCst), 1, "the first poll reaches the source");
        for _ in 0..5 {
            assert!(poll_now(w.poll(src.read())).is_pending());
        }
        assert_eq!(src.polls.load(Ordering::SeqCst), 1, "no wake: the source is not polled");
        src.set();
        assert!(poll_now(w.poll(src.read())).is_ready(), "woken: polled and ready");
        assert_eq!(src.polls.load(Ordering::SeqCst), 2);
        // After a ready answer the next poll reaches the source (it may hold more).
        assert!(poll_now(w.poll(src.read())).is_pending());
        assert_eq!(src.polls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_task_wakes_when_the_source_does() {
        let src = Arc::new(Source::default());
        let w = Woken::new();
        let setter = {
            let src = Arc::clone(&src);
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                src.set();
            })
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), w.poll(src.read()))
            .await
            .expect("the wake reached the waiting task");
        setter.await.expect("setter");
    }
}
