//! Weft's log, routed to the app: Android's logcat (`android.util.Log`), iOS's unified log
//! (`os_log`/`Logger`), or wherever a desktop app keeps its own. The core logs through
//! `tracing`; a layer here turns each record of the chosen level into a [`LogRecord`] and hands
//! it to the app's [`LogListener`] on a thread of its own, as events are: a slow log sink never
//! stalls the network, and a burst that outruns it is dropped and counted, not queued without
//! bound. `clear_log_listener` waits until that thread has let go of the listener, so that an
//! app (or an interpreter) that exits after it is never called back.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock, RwLock};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

use crate::WeftError;
use crate::node::CallbackError;

/// How much Weft says.
#[derive(uniffi::Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn rank(self) -> u8 {
        match self {
            LogLevel::Error => 1,
            LogLevel::Warn => 2,
            LogLevel::Info => 3,
            LogLevel::Debug => 4,
            LogLevel::Trace => 5,
        }
    }

    fn of(level: &Level) -> LogLevel {
        match *level {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            Level::TRACE => LogLevel::Trace,
        }
    }
}

/// One line of Weft's log.
#[derive(uniffi::Record, Clone, Debug)]
pub struct LogRecord {
    pub level: LogLevel,
    /// Where in Weft it comes from (a Rust module path, e.g. `weft_core::net::driver`): a tag.
    pub target: String,
    /// The message and its fields (`key=value`).
    pub message: String,
    /// Records dropped just before this one because the listener fell behind.
    pub dropped_before: u64,
}

/// Implemented by the app to receive Weft's log. Called on a thread of its own, one record at
/// a time, in order.
#[uniffi::export(foreign)]
pub trait LogListener: Send + Sync {
    fn on_log(&self, record: LogRecord) -> Result<(), CallbackError>;
}

/// Records that may wait for the listener before the next ones are dropped.
const QUEUE: usize = 4096;

/// 0: no listener; otherwise the most verbose level handed over (see [`LogLevel::rank`]).
/// Written only under `SINK`'s write lock.
static MAX_RANK: AtomicU8 = AtomicU8::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Readers are the logging threads (many at once); writers are set and clear.
static SINK: RwLock<Option<Sink>> = RwLock::new(None);
/// Whether Weft's layer became the process's log subscriber, or why not (said to every call).
static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

struct Sink {
    queue: SyncSender<LogRecord>,
    thread: std::thread::JoinHandle<()>,
}

/// Routes Weft's log at `level` and above to `listener`, replacing any listener set before.
/// Records of the libraries Weft uses (libp2p's, which name peers and addresses) are handed
/// over at `Warn` and above only.
///
/// The listener must not wait for the thread that calls `clear_log_listener` (or `set`
/// again), e.g. by dispatching synchronously to the UI thread that clears it: clearing waits
/// for the listener's thread to finish.
#[uniffi::export]
pub fn set_log_listener(listener: Arc<dyn LogListener>, level: LogLevel) -> Result<(), WeftError> {
    let installed = INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(ToListener);
        tracing::subscriber::set_global_default(subscriber)
            .map_err(|e| format!("the process already routes its log elsewhere ({e}); Weft's cannot be taken"))
    });
    installed.clone().map_err(|detail| WeftError::Internal { detail })?;
    clear_log_listener();
    let (queue, records) = sync_channel::<LogRecord>(QUEUE);
    let thread = std::thread::Builder::new()
        .name("weft-log".into())
        .spawn(move || {
            while let Ok(record) = records.recv() {
                // A failing sink cannot be logged to; it is skipped.
                let _ = listener.on_log(record);
            }
        })
        .map_err(|e| WeftError::Internal { detail: format!("no thread for the log listener: {e}") })?;
    {
        let mut sink = SINK.write().map_err(|_| WeftError::Internal { detail: "an earlier call panicked".into() })?;
        *sink = Some(Sink { queue, thread });
        MAX_RANK.store(level.rank(), Ordering::SeqCst);
    }
    tracing::callsite::rebuild_interest_cache();
    Ok(())
}

/// Stops routing the log to the app, and returns once the listener will not be called again.
#[uniffi::export]
pub fn clear_log_listener() {
    let sink = SINK.write().ok().and_then(|mut s| {
        MAX_RANK.store(0, Ordering::SeqCst);
        s.take()
    });
    tracing::callsite::rebuild_interest_cache();
    if let Some(Sink { queue, thread }) = sink {
        drop(queue);
        if thread.thread().id() != std::thread::current().id() {
            let _ = thread.join();
        }
    }
}

/// The layer that hands records to the listener's queue.
struct ToListener;

impl<S: Subscriber> Layer<S> for ToListener {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        let rank = LogLevel::of(metadata.level()).rank();
        let ours = metadata.target().starts_with("weft");
        rank <= MAX_RANK.load(Ordering::Relaxed) && (ours || rank <= LogLevel::Warn.rank())
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let metadata = event.metadata();
        let mut message = Fields::default();
        event.record(&mut message);
        // A set or clear in progress: this record is dropped (and counted) rather than waited on.
        let Ok(sink) = SINK.try_read() else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(sink) = sink.as_ref() else { return };
        let record = LogRecord {
            level: LogLevel::of(metadata.level()),
            target: metadata.target().to_owned(),
            message: message.0,
            dropped_before: DROPPED.swap(0, Ordering::Relaxed),
        };
        match sink.queue.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(r) | TrySendError::Disconnected(r)) => {
                DROPPED.fetch_add(1 + r.dropped_before, Ordering::Relaxed);
            }
        }
    }
}

/// A record's fields as one line: the message first, then `key=value` for the rest.
#[derive(Default)]
struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            if !rest.is_empty() {
                self.0.push(' ');
                self.0.push_str(&rest);
            }
        } else {
            if !self.0.is_empty() {
                self.0.push(' ');
            }
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Collect(Mutex<Vec<LogRecord>>);

    impl LogListener for Collect {
        fn on_log(&self, record: LogRecord) -> Result<(), CallbackError> {
            self.0.lock().unwrap().push(record);
            Ok(())
        }
    }

    #[test]
    fn records_of_the_chosen_level_reach_the_listener_and_none_after_it_is_cleared() {
        let collect = Arc::new(Collect(Mutex::new(Vec::new())));
        set_log_listener(collect.clone(), LogLevel::Info).unwrap();
        tracing::info!(peer = 7, "a peer came");
        tracing::debug!("too verbose for info");
        tracing::info!(target: "libp2p_swarm", "another library's chatter");
        clear_log_listener();
        tracing::warn!("after clearing");
        let got = collect.0.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].level, LogLevel::Info);
        assert_eq!(got[0].message, "a peer came peer=7");
        assert!(got[0].target.contains("logging"), "{}", got[0].target);
    }
}
