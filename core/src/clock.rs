//! Where time comes from: milliseconds since the Unix epoch. The engine reads no clock of its
//! own; whoever runs it hands one in, so that tests and simulations can move days ahead.

use std::sync::Arc;

/// A clock for one owner (an account's thread).
pub type Clock = Box<dyn Fn() -> u64 + Send>;
/// A clock shared between tasks (a relay, a mesh driver).
pub type SharedClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system's time now.
pub fn system_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The system clock, for one owner.
pub fn system_clock() -> Clock {
    Box::new(system_ms)
}

/// The system clock, to share.
pub fn shared_system_clock() -> SharedClock {
    Arc::new(system_ms)
}
