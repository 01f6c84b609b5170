//! What the mesh needs of a radio, and the radios it has.
//!
//! The mesh sees a [`Radio`] that hands it [`Link`]s to neighbours; it knows nothing of the
//! driver behind them:
//! - [`sim`]: the in-process [`Medium`](super::medium::Medium), run in real time;
//! - [`ble`]: Bluetooth LE through btleplug (central role) on desktops;
//! - [`feed`]: a radio fed by someone else's code — a mobile app's platform driver through
//!   the bindings implements [`feed::Driver`] and reports links and frames to [`feed::RadioEvents`].

#[cfg(not(any(target_os = "android", target_os = "ios")))]
pub mod ble;
pub mod feed;
pub mod sim;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::Result;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connected neighbour. Methods take `&self` so one task can read while another writes.
pub trait Link: Send + Sync + 'static {
    /// The link's ATT MTU (23 to 517): a write carries at most `mtu - 3` bytes.
    fn mtu(&self) -> usize;
    /// True on the side that opened the link (the central); it starts reconciliation.
    fn initiator(&self) -> bool;
    /// Writes one fragment, in order with the ones before it.
    fn send(&self, fragment: Vec<u8>) -> BoxFuture<'_, Result<()>>;
    /// The next fragment from the neighbour; `None` once the link is gone.
    fn recv(&self) -> BoxFuture<'_, Option<Vec<u8>>>;
    fn close(&self);
}

/// Discovers neighbours and opens links to them.
pub trait Radio: Send + 'static {
    /// The next new link; `None` once the radio has stopped for good.
    fn next_link(&mut self) -> BoxFuture<'_, Option<Arc<dyn Link>>>;
    /// A short name for logs and events (`sim`, `ble`, `app`).
    fn name(&self) -> &'static str;
}
