//! Bluetooth LE on desktops, in both roles:
//! - [`central`]: btleplug scans for the Weft service, connects, writes fragments to the data
//!   characteristic and takes notifications (every desktop OS);
//! - [`peripheral`]: on Linux, BlueZ's D-Bus API advertises the service and serves it, so
//!   laptops reach each other and phones reach a laptop. macOS would need CoreBluetooth's
//!   `CBPeripheralManager` and Windows WinRT's `GattServiceProvider`; no maintained Rust crate
//!   serves GATT on either (docs/DECISIONS.md), so there a desktop is a central only.
//!
//! Who opens a link is [`advert`]'s rule; the GATT layout (a data characteristic written by the
//! central, and one notify slot per central where the server cannot notify one central alone)
//! is [`slots`]' and docs/PROTOCOL.md's. Both roles feed one [`FedRadio`]: link ids are shared,
//! and [`Driver::send`] finds a link's writer whichever role opened it.
//!
//! With no Bluetooth at all (no adapter, no D-Bus system bus, no bluetoothd) [`open`] returns
//! [`Error::NoRadio`] naming why; the node logs it once and runs on its other transports. With
//! one role off, the other runs and [`RadioReport`] says why the first is off.

pub mod advert;
pub mod central;
#[cfg(target_os = "linux")]
pub mod peripheral;
pub mod slots;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::feed::{Driver, FedRadio, fed_radio};
use super::{RadioReport, RadioUnavailable, Role, RoleState};
use crate::error::{Error, Result};

/// The Weft GATT service.
pub const SERVICE: Uuid = Uuid::from_u128(0x7e1f_0001_9a3c_4b7e_a7d2_5c0f_3e8b_d14a);
/// Its data characteristic: the central writes fragments to it (with response); a phone's
/// server also notifies on it, one central at a time.
pub const DATA: Uuid = Uuid::from_u128(0x7e1f_0002_9a3c_4b7e_a7d2_5c0f_3e8b_d14a);
/// Present only on a server that cannot notify one central alone (BlueZ): reading it returns
/// one byte, the index of the notify slot this central subscribes to instead of [`DATA`].
pub const SLOTS: Uuid = Uuid::from_u128(0x7e1f_0003_9a3c_4b7e_a7d2_5c0f_3e8b_d14a);

/// Notify slot `k`'s characteristic.
pub fn slot(k: u8) -> Uuid {
    Uuid::from_u128(0x7e1f_0100_9a3c_4b7e_a7d2_5c0f_3e8b_d14a + (u128::from(k) << 96))
}

/// Which roles to try.
#[derive(Clone, Debug)]
pub struct BleOptions {
    pub central: bool,
    /// The bus BlueZ is on, for the peripheral role; `None` leaves the role off.
    pub peripheral: Option<Bus>,
}

impl Default for BleOptions {
    fn default() -> Self {
        BleOptions { central: true, peripheral: Some(Bus::System) }
    }
}

/// Where BlueZ is: the system bus, or (for tests against a mock BlueZ) a bus at an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bus {
    System,
    Address(String),
}

/// Opens both roles on the first adapter.
pub async fn open() -> Result<FedRadio> {
    open_with(BleOptions::default()).await
}

/// Opens the roles `options` ask for; fails only if none runs.
pub async fn open_with(options: BleOptions) -> Result<FedRadio> {
    let driver = Arc::new(BleDriver::default());
    let (radio, feed) = fed_radio(driver.clone(), "ble");
    let peripheral = match options.peripheral {
        None => Err(RadioUnavailable::NotSupported("not asked for")),
        #[cfg(target_os = "linux")]
        Some(bus) => peripheral::start(bus, driver.clone(), feed.clone()).await,
        #[cfg(not(target_os = "linux"))]
        Some(_) => Err(RadioUnavailable::NotSupported("the peripheral role runs on Linux only (BlueZ)")),
    };
    let central = if options.central {
        central::start(driver.clone(), feed.clone()).await
    } else {
        Err(RadioUnavailable::NotSupported("not asked for"))
    };
    if let (Err(central_off), Err(peripheral_off)) = (&central, &peripheral) {
        let why = if options.central && central_off.detail() >= peripheral_off.detail() {
            central_off.clone()
        } else {
            peripheral_off.clone()
        };
        tracing::info!(central = %central_off, peripheral = %peripheral_off, "no Bluetooth role runs");
        return Err(Error::NoRadio(why));
    }
    let (central_off, peripheral_off) = (central.err(), peripheral.err());
    let report = Arc::new(move || RadioReport {
        roles: vec![
            (Role::Central, state(&central_off, driver.links(Role::Central))),
            (Role::Peripheral, state(&peripheral_off, driver.links(Role::Peripheral))),
        ],
    });
    Ok(radio.with_report(report))
}

fn state(off: &Option<RadioUnavailable>, links: usize) -> RoleState {
    match off {
        Some(why) => RoleState::Off(why.clone()),
        None => RoleState::On { links },
    }
}

/// A link's role, and where its fragments go out.
type Writer = (Role, mpsc::Sender<Vec<u8>>);

/// Both roles' links: each link's writer, by the id the mesh knows it by.
#[derive(Default)]
pub(crate) struct BleDriver {
    writers: Mutex<HashMap<u64, Writer>>,
    next_link: AtomicU64,
    /// Our advertising token while the peripheral advertises ([`advert::should_connect`]).
    token: Mutex<Option<advert::Token>>,
}

impl BleDriver {
    fn new_link(&self) -> u64 {
        self.next_link.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn add_writer(&self, link: u64, role: Role, writer: mpsc::Sender<Vec<u8>>) {
        self.writers.lock().expect("writers lock").insert(link, (role, writer));
    }

    fn remove_writer(&self, link: u64) {
        self.writers.lock().expect("writers lock").remove(&link);
    }

    fn clear(&self) {
        self.writers.lock().expect("writers lock").clear();
    }

    fn links(&self, role: Role) -> usize {
        self.writers.lock().expect("writers lock").values().filter(|(r, _)| *r == role).count()
    }

    fn token(&self) -> Option<advert::Token> {
        *self.token.lock().expect("token lock")
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn set_token(&self, token: Option<advert::Token>) {
        *self.token.lock().expect("token lock") = token;
    }
}

impl Driver for BleDriver {
    fn send(&self, link: u64, fragment: Vec<u8>) -> Result<()> {
        let writer = self.writers.lock().expect("writers lock").get(&link).map(|(_, w)| w.clone());
        match writer {
            Some(w) => w.try_send(fragment).map_err(|_| Error::Limit("Bluetooth write queue full")),
            None => Err(Error::Closed),
        }
    }

    fn close(&self, link: u64) {
        // Dropping the writer ends the link's task, which disconnects.
        self.remove_writer(link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_uuids_are_distinct_and_apart_from_the_service() {
        let all: std::collections::HashSet<Uuid> = (0..slots::SLOTS as u8).map(slot).collect();
        assert_eq!(all.len(), slots::SLOTS);
        assert!(!all.contains(&SERVICE) && !all.contains(&DATA) && !all.contains(&SLOTS));
        assert_eq!(slot(0).to_string(), "7e1f0100-9a3c-4b7e-a7d2-5c0f3e8bd14a");
        assert_eq!(slot(1).to_string(), "7e1f0101-9a3c-4b7e-a7d2-5c0f3e8bd14a");
    }
}
