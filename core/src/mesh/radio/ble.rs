//! Bluetooth LE on desktops through btleplug, in the central role: scan for the Weft service,
//! connect, write fragments to its data characteristic and take its notifications.
//!
//! btleplug cannot advertise, so a desktop meshes with phones (which run both roles through the
//! app's driver) and not with another desktop. The service is found by its UUID alone: nothing
//! else is advertised, and the phone's advertising address rotates as the OS does it.
//!
//! With no Bluetooth (no adapter, no D-Bus system bus, no bluetoothd) [`open`] returns
//! [`Error::NoRadio`]; the node logs it once and runs on its other transports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use btleplug::api::{Central, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter, WriteType};
use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
use futures::StreamExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::feed::{Driver, FedRadio, LINK_BUFFER, MAX_LINKS, RadioEvents, fed_radio};
use crate::error::{Error, Result};

/// The Weft GATT service, and its one data characteristic (write + notify).
pub const SERVICE: Uuid = Uuid::from_u128(0x7e1f_0001_9a3c_4b7e_a7d2_5c0f_3e8b_d14a);
pub const DATA: Uuid = Uuid::from_u128(0x7e1f_0002_9a3c_4b7e_a7d2_5c0f_3e8b_d14a);
/// Links this desktop opens at once.
const MAX_PERIPHERALS: usize = 7;

/// Opens the first Bluetooth adapter and starts scanning for Weft phones.
pub async fn open() -> Result<FedRadio> {
    let manager = Manager::new().await.map_err(no_radio)?;
    let adapter = manager
        .adapters()
        .await
        .map_err(no_radio)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::NoRadio("no Bluetooth adapter".into()))?;
    let events = adapter.events().await.map_err(no_radio)?;
    adapter.start_scan(ScanFilter { services: vec![SERVICE] }).await.map_err(no_radio)?;
    let driver = Arc::new(BleDriver::default());
    let (radio, feed) = fed_radio(driver.clone(), "ble");
    tokio::spawn(run(adapter, events, driver, feed));
    Ok(radio)
}

fn no_radio(e: btleplug::Error) -> Error {
    Error::NoRadio(e.to_string())
}

/// A peripheral that failed (no Weft service, refused connection) is left alone this long.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long a connection may take to come up (a phone that walked away mid-connect never
/// answers; Android gives up after about 30 s, iOS never does).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Fragments queued for one peripheral: one largest envelope at the smallest MTU.
const WRITE_QUEUE: usize = 8 * LINK_BUFFER;

#[derive(Default)]
struct BleDriver {
    writers: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    peripherals: Mutex<HashMap<PeripheralId, u64>>,
    failed: Mutex<HashMap<PeripheralId, Instant>>,
    next_link: Mutex<u64>,
}

impl Driver for BleDriver {
    fn send(&self, link: u64, fragment: Vec<u8>) -> Result<()> {
        let writer = self.writers.lock().expect("writers lock").get(&link).cloned();
        match writer {
            Some(w) => w.try_send(fragment).map_err(|_| Error::Limit("Bluetooth write queue full")),
            None => Err(Error::Closed),
        }
    }

    fn close(&self, link: u64) {
        // Dropping the writer ends the link's task, which disconnects.
        self.writers.lock().expect("writers lock").remove(&link);
    }
}

async fn run(
    adapter: Adapter,
    mut events: std::pin::Pin<Box<dyn futures::Stream<Item = CentralEvent> + Send>>,
    driver: Arc<BleDriver>,
    feed: RadioEvents,
) {
    while let Some(event) = events.next().await {
        if feed.is_closed() {
            // The mesh stopped: stop scanning, and let the link tasks end.
            let _ = adapter.stop_scan().await;
            driver.writers.lock().expect("writers lock").clear();
            return;
        }
        let id = match event {
            // BlueZ reports every device it knows, headphones included: only a peripheral
            // that advertises the Weft service is ours to connect to.
            CentralEvent::ServicesAdvertisement { id, services } if services.contains(&SERVICE) => id,
            CentralEvent::DeviceDiscovered(id) => {
                let Ok(peripheral) = adapter.peripheral(&id).await else { continue };
                let advertises =
                    peripheral.properties().await.ok().flatten().is_some_and(|p| p.services.contains(&SERVICE));
                if !advertises {
                    continue;
                }
                id
            }
            CentralEvent::DeviceDisconnected(id) => {
                if let Some(link) = driver.peripherals.lock().expect("peripherals lock").remove(&id) {
                    driver.close(link);
                    feed.link_down(link);
                }
                continue;
            }
            _ => continue,
        };
        let recently_failed =
            driver.failed.lock().expect("failed lock").get(&id).is_some_and(|at| at.elapsed() < RETRY_AFTER);
        if recently_failed {
            continue;
        }
        let link = {
            let mut peripherals = driver.peripherals.lock().expect("peripherals lock");
            if peripherals.contains_key(&id) || peripherals.len() >= MAX_PERIPHERALS.min(MAX_LINKS) {
                continue;
            }
            let mut next = driver.next_link.lock().expect("link counter lock");
            *next += 1;
            peripherals.insert(id.clone(), *next);
            *next
        };
        let Ok(peripheral) = adapter.peripheral(&id).await else {
            driver.peripherals.lock().expect("peripherals lock").remove(&id);
            continue;
        };
        tokio::spawn(serve(peripheral, id, link, driver.clone(), feed.clone()));
    }
}

/// Connects to one phone and moves fragments both ways until either side goes.
async fn serve(peripheral: Peripheral, id: PeripheralId, link: u64, driver: Arc<BleDriver>, feed: RadioEvents) {
    let result = async {
        // A phone that walks away mid-connect must not hold a link slot for ever.
        tokio::time::timeout(CONNECT_TIMEOUT, peripheral.connect())
            .await
            .map_err(|_| Error::NoRadio("connecting timed out".into()))?
            .map_err(no_radio)?;
        peripheral.discover_services().await.map_err(no_radio)?;
        let data: Characteristic = peripheral
            .characteristics()
            .into_iter()
            .find(|c| c.uuid == DATA && c.service_uuid == SERVICE)
            .ok_or_else(|| Error::NoRadio("peer has no Weft data characteristic".into()))?;
        // The stream first: the phone may notify as soon as the subscription lands, and what it
        // sends before a stream exists is lost (the stream buffers until the loop reads it).
        let mut notifications = peripheral.notifications().await.map_err(no_radio)?;
        peripheral.subscribe(&data).await.map_err(no_radio)?;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        driver.writers.lock().expect("writers lock").insert(link, tx);
        // The MTU BlueZ negotiated on connect (23 until it has).
        feed.link_up(link, u32::from(peripheral.mtu()), true)?;
        loop {
            tokio::select! {
                fragment = rx.recv() => match fragment {
                    Some(f) => peripheral.write(&data, &f, WriteType::WithResponse).await.map_err(no_radio)?,
                    None => break,
                },
                note = notifications.next() => match note {
                    Some(n) if n.uuid == DATA => feed.frame(link, n.value),
                    Some(_) => {}
                    None => break,
                },
            }
        }
        Ok::<(), Error>(())
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(link, error = %e, "Bluetooth link ended");
        driver.failed.lock().expect("failed lock").insert(id.clone(), Instant::now());
    }
    let _ = peripheral.disconnect().await;
    driver.writers.lock().expect("writers lock").remove(&link);
    {
        // Only our own entry: the phone may have reconnected as a newer link meanwhile.
        let mut peripherals = driver.peripherals.lock().expect("peripherals lock");
        if peripherals.get(&id) == Some(&link) {
            peripherals.remove(&id);
        }
    }
    feed.link_down(link);
}
