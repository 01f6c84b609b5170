//! Knowing when no Weft thread is inside the host's wake code.
//!
//! An awaited call ends by a Weft thread calling the host's continuation, and the host's code
//! there can be paused half-way: Python's continuation is interpreter code, which hands the
//! interpreter to the main thread as soon as the result is queued, so the script goes on, can
//! finish and exit while our thread still waits to run the continuation's last lines. An
//! interpreter that is finalising ends such a thread with `pthread_exit`, whose unwinding the
//! runtime's task frames catch, and the process aborts (`FATAL: exception not rethrown`, about
//! 1 run in 50 under load). Every call's wakes are counted here, and `WeftNode::shutdown`
//! waits until none is in flight: with the host blocked in `shutdown` (its interpreter lock
//! released), the paused continuation finishes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Host wakes running now, on any thread.
pub fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::SeqCst)
}

/// Waits until no host wake is running, or `limit` passed (a host that never returns from its
/// wake must not hang the one that shuts down). Says whether none is left.
pub fn wait_until_quiet(limit: Duration) -> bool {
    let started = Instant::now();
    while in_flight() > 0 {
        if started.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Polls `F` with a waker that counts its wakes of the host while they run.
pub struct CountingWakes<F>(pub F);

impl<F: Future + Unpin> Future for CountingWakes<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(Counted(cx.waker().clone())));
        Pin::new(&mut self.0).poll(&mut Context::from_waker(&waker))
    }
}

struct Counted(Waker);

impl Wake for Counted {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _running = Running::start();
        self.0.wake_by_ref();
    }
}

/// One wake in flight; ended on drop, so also when the host unwinds out of its wake.
struct Running;

impl Running {
    fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc;

    /// A waker standing for the host's: it reports that it runs and holds until released.
    struct SlowHost {
        running: mpsc::Sender<()>,
        release: Arc<AtomicBool>,
    }

    impl Wake for SlowHost {
        fn wake(self: Arc<Self>) {
            let _ = self.running.send(());
            while !self.release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    #[test]
    fn a_wake_of_the_host_is_counted_until_the_host_returns_from_it() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut call = CountingWakes(rx);
        let (running, host_runs) = mpsc::channel();
        let release = Arc::new(AtomicBool::new(false));
        let host = Waker::from(Arc::new(SlowHost { running, release: release.clone() }));
        assert!(Pin::new(&mut call).poll(&mut Context::from_waker(&host)).is_pending());
        runtime.spawn(async move { tx.send(()).unwrap() });
        host_runs.recv().unwrap();
        assert!(in_flight() >= 1, "a wake inside the host is not counted");
        assert!(!wait_until_quiet(Duration::from_millis(20)), "waited past a wake still inside the host");
        release.store(true, Ordering::SeqCst);
        assert!(wait_until_quiet(Duration::from_secs(5)));
        assert!(Pin::new(&mut call).poll(&mut Context::from_waker(&host)).is_ready());
    }
}
