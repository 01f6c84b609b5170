//! Delivering events to the app's listeners. Each listener is called on a thread of its own,
//! never on the runtime's workers: a listener that takes its time (an app that writes to its
//! database, or sleeps) delays only its own events, not the app's calls into Weft. A listener
//! that falls behind by more than its queue holds gets a `Lagged` event saying how many it
//! missed, instead of silent drops. Once a delivery is stopped and joined, the listener is not
//! called again and has been released (on the joining thread's watch, while the host is alive).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use weft_core::node::NodeEvent;

use crate::node::{Event, EventListener, RUNTIME};

/// Events a listener may have waiting before the next ones count as missed.
pub const QUEUE: usize = 1024;

/// One listener's delivery: a task that takes events from the node and queues them, and the
/// thread that calls the listener.
pub struct Delivery {
    stopped: Arc<AtomicBool>,
    feeder: tokio::task::JoinHandle<()>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    thread_id: std::thread::ThreadId,
    missed: Arc<AtomicU64>,
}

impl Delivery {
    pub fn start(events: broadcast::Receiver<NodeEvent>, listener: Arc<dyn EventListener>) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Event>(QUEUE);
        let stopped = Arc::new(AtomicBool::new(false));
        let missed = Arc::new(AtomicU64::new(0));
        let thread = {
            let stopped = stopped.clone();
            std::thread::Builder::new().name("weft-listener".into()).spawn(move || call(rx, listener, &stopped))?
        };
        let thread_id = thread.thread().id();
        let feeder = RUNTIME.spawn(feed(events, tx, stopped.clone(), missed.clone()));
        Ok(Delivery { stopped, feeder, thread: Mutex::new(Some(thread)), thread_id, missed })
    }

    /// Stops the delivery: no event is handed to the listener after the one it may be in now.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.feeder.abort();
    }

    /// Stops the delivery and waits until the listener's thread is gone (it released the
    /// listener). From the listener's own thread (a listener that shuts the node down) it
    /// cannot wait for itself: that thread ends when the callback returns.
    pub fn stop_and_join(&self) {
        self.stop();
        if std::thread::current().id() == self.thread_id {
            return;
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Events missed in all so far (told to the listener as `Lagged`).
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::SeqCst)
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Moves events from the node to the listener's queue; counts what does not fit.
async fn feed(
    mut events: broadcast::Receiver<NodeEvent>,
    tx: SyncSender<Event>,
    stopped: Arc<AtomicBool>,
    missed_total: Arc<AtomicU64>,
) {
    let mut missed: u64 = 0;
    loop {
        let event = match events.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                missed += n;
                None
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if stopped.load(Ordering::SeqCst) {
            return;
        }
        if missed > 0 {
            match tx.try_send(Event::Lagged { missed }) {
                Ok(()) => {
                    missed_total.fetch_add(missed, Ordering::SeqCst);
                    missed = 0;
                }
                Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        let Some(event) = event else { continue };
        match tx.try_send(event.into()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => missed += 1,
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// The listener's thread: calls it with each event, one at a time, in order.
fn call(rx: Receiver<Event>, listener: Arc<dyn EventListener>, stopped: &AtomicBool) {
    while let Ok(event) = rx.recv() {
        if stopped.load(Ordering::SeqCst) {
            break;
        }
        if let Err(e) = listener.on_event(event) {
            tracing::debug!(error = %e, "an event listener failed");
        }
    }
    drop(listener);
}
