//! What the mesh needs of a radio, and the radios it has.
//!
//! The mesh sees a [`Radio`] that hands it [`Link`]s to neighbours; it knows nothing of the
//! driver behind them:
//! - [`sim`]: the in-process [`Medium`](super::medium::Medium), run in real time;
//! - [`ble`]: Bluetooth LE on desktops: the central role through btleplug, and on Linux the
//!   peripheral role through BlueZ's D-Bus API, so two laptops can mesh;
//! - [`socket`]: Unix sockets in a shared folder, every node in range of every other: the mesh
//!   between real processes on one machine, for tests and demos with no Bluetooth adapter;
//! - [`feed`]: a radio fed by someone else's code — a mobile app's platform driver through
//!   the bindings implements [`feed::Driver`] and reports links and frames to [`feed::RadioEvents`].

#[cfg(not(any(target_os = "android", target_os = "ios")))]
pub mod ble;
pub mod feed;
pub mod sim;
#[cfg(unix)]
pub mod socket;

use std::fmt;
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
    /// Where to ask which roles run and how many links each has, for radios that know.
    fn report(&self) -> Option<ReportSource> {
        None
    }
}

/// Asks a running radio for its [`RadioReport`].
pub type ReportSource = Arc<dyn Fn() -> RadioReport + Send + Sync>;

/// Which side of a Bluetooth LE link we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We scan and connect (btleplug).
    Central,
    /// We advertise and serve the Weft GATT service (BlueZ).
    Peripheral,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Central => "central",
            Role::Peripheral => "peripheral",
        })
    }
}

/// One role of a radio: running with so many links, or off and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleState {
    On { links: usize },
    Off(RadioUnavailable),
}

/// What a radio says of itself beyond its links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RadioReport {
    pub roles: Vec<(Role, RoleState)>,
}

impl fmt::Display for RadioReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (role, state) in &self.roles {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            match state {
                RoleState::On { links } => write!(f, "{role}: {links} links")?,
                RoleState::Off(why) => write!(f, "{role} off: {why}")?,
            }
        }
        Ok(())
    }
}

/// Why a Bluetooth role cannot run. Each says what the user can do about it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RadioUnavailable {
    #[error("no Bluetooth adapter")]
    NoAdapter,
    #[error("the Bluetooth adapter is off (turn it on: `bluetoothctl power on`)")]
    AdapterOff,
    #[error("bluetoothd is not running (start the bluetooth service)")]
    BluezNotRunning,
    #[error("no D-Bus system bus ({0})")]
    NoSystemBus(String),
    #[error("permission denied by BlueZ ({0}); the user may need to be in the `bluetooth` group")]
    PermissionDenied(String),
    #[error("BlueZ is too old: {0} (5.43 or later serves GATT and advertises)")]
    BluezTooOld(String),
    #[error("{0}")]
    NotSupported(&'static str),
    #[error("{0}")]
    Failed(String),
}

impl RadioUnavailable {
    /// How much the reason tells the user, to pick one when two roles fail: btleplug's errors
    /// are often only text, and it lists no adapter where BlueZ says the adapter is off.
    pub fn detail(&self) -> u8 {
        match self {
            RadioUnavailable::AdapterOff | RadioUnavailable::PermissionDenied(_) | RadioUnavailable::BluezTooOld(_) => {
                3
            }
            RadioUnavailable::NoAdapter | RadioUnavailable::BluezNotRunning | RadioUnavailable::NoSystemBus(_) => 2,
            RadioUnavailable::Failed(_) => 1,
            RadioUnavailable::NotSupported(_) => 0,
        }
    }
}
