//! The central role through btleplug: scan for the Weft service, connect to the peers
//! [`advert::should_connect`] gives us, write fragments to their data characteristic and take
//! their notifications (on the data characteristic, or on our slot where the server has slots).
//!
//! The service is found by its UUID alone: the phone's advertising address rotates as the OS
//! does it, and nothing else it advertises names anyone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use btleplug::api::{Central, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter, WriteType};
use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{BleDriver, DATA, SERVICE, SLOTS, advert, slot};
use crate::error::Error;
use crate::mesh::radio::feed::{Driver, LINK_BUFFER, MAX_LINKS, RadioEvents};
use crate::mesh::radio::{RadioUnavailable, Role};

/// Links this desktop opens at once.
const MAX_PERIPHERALS: usize = 7;
/// A peripheral that failed (no Weft service, refused connection) is left alone this long.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long a connection may take to come up (a phone that walked away mid-connect never
/// answers; Android gives up after about 30 s, iOS never does).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Fragments queued for one peripheral: one largest envelope at the smallest MTU.
const WRITE_QUEUE: usize = 8 * LINK_BUFFER;

/// Opens the first Bluetooth adapter and starts scanning for Weft peers.
pub(super) async fn start(driver: Arc<BleDriver>, feed: RadioEvents) -> std::result::Result<(), RadioUnavailable> {
    let manager = Manager::new().await.map_err(unavailable)?;
    let adapter =
        manager.adapters().await.map_err(unavailable)?.into_iter().next().ok_or(RadioUnavailable::NoAdapter)?;
    let events = adapter.events().await.map_err(unavailable)?;
    adapter.start_scan(ScanFilter { services: vec![SERVICE] }).await.map_err(unavailable)?;
    tokio::spawn(run(adapter, events, Arc::new(Scanner { driver, ..Scanner::default() }), feed));
    Ok(())
}

fn unavailable(e: btleplug::Error) -> RadioUnavailable {
    match e {
        btleplug::Error::PermissionDenied => RadioUnavailable::PermissionDenied("btleplug".into()),
        btleplug::Error::NotSupported(what) => RadioUnavailable::Failed(format!("not supported: {what}")),
        other => {
            let text = other.to_string();
            if text.contains("org.bluez.Error.NotReady") || text.contains("Resource Not Ready") {
                RadioUnavailable::AdapterOff
            } else if text.contains("ServiceUnknown")
                || text.contains("NameHasNoOwner")
                || text.contains("not provided by any .service files")
            {
                RadioUnavailable::BluezNotRunning
            } else {
                RadioUnavailable::Failed(text)
            }
        }
    }
}

fn link_error(e: btleplug::Error) -> Error {
    Error::NoRadio(RadioUnavailable::Failed(e.to_string()))
}

#[derive(Default)]
struct Scanner {
    driver: Arc<BleDriver>,
    peripherals: Mutex<HashMap<PeripheralId, u64>>,
    failed: Mutex<HashMap<PeripheralId, Instant>>,
}

async fn run(
    adapter: Adapter,
    mut events: std::pin::Pin<Box<dyn futures::Stream<Item = CentralEvent> + Send>>,
    scanner: Arc<Scanner>,
    feed: RadioEvents,
) {
    while let Some(event) = events.next().await {
        if feed.is_closed() {
            // The mesh stopped: stop scanning, and let the link tasks end.
            let _ = adapter.stop_scan().await;
            scanner.driver.clear();
            return;
        }
        let id = match event {
            // An advertisement of other services (headphones, watches) is not worth a D-Bus
            // call for its properties: BlueZ reports them many times a second.
            CentralEvent::ServicesAdvertisement { services, .. } if !services.contains(&SERVICE) => continue,
            CentralEvent::ServicesAdvertisement { id, .. } | CentralEvent::DeviceDiscovered(id) => id,
            CentralEvent::DeviceDisconnected(id) => {
                if let Some(link) = scanner.peripherals.lock().expect("peripherals lock").remove(&id) {
                    scanner.driver.close(link);
                    feed.link_down(link);
                }
                continue;
            }
            _ => continue,
        };
        let recently_failed =
            scanner.failed.lock().expect("failed lock").get(&id).is_some_and(|at| at.elapsed() < RETRY_AFTER);
        if recently_failed || scanner.peripherals.lock().expect("peripherals lock").contains_key(&id) {
            continue;
        }
        let Ok(peripheral) = adapter.peripheral(&id).await else { continue };
        // BlueZ reports every device it knows, headphones included: only a peer that
        // advertises the Weft service is ours, and only if the rule gives the link to us.
        let Some(properties) = peripheral.properties().await.ok().flatten() else { continue };
        if !properties.services.contains(&SERVICE)
            || !advert::should_connect(scanner.driver.token().as_ref(), advert::seen(properties.local_name.as_deref()))
        {
            continue;
        }
        let link = {
            let mut peripherals = scanner.peripherals.lock().expect("peripherals lock");
            if peripherals.contains_key(&id) || peripherals.len() >= MAX_PERIPHERALS.min(MAX_LINKS) {
                continue;
            }
            let link = scanner.driver.new_link();
            peripherals.insert(id.clone(), link);
            link
        };
        tokio::spawn(serve(peripheral, id, link, scanner.clone(), feed.clone()));
    }
}

/// Connects to one peer and moves fragments both ways until either side goes.
async fn serve(peripheral: Peripheral, id: PeripheralId, link: u64, scanner: Arc<Scanner>, feed: RadioEvents) {
    let result = async {
        // A phone that walks away mid-connect must not hold a link slot for ever.
        tokio::time::timeout(CONNECT_TIMEOUT, peripheral.connect())
            .await
            .map_err(|_| Error::NoRadio(RadioUnavailable::Failed("connecting timed out".into())))?
            .map_err(link_error)?;
        peripheral.discover_services().await.map_err(link_error)?;
        let ours =
            |uuid| peripheral.characteristics().into_iter().find(|c| c.uuid == uuid && c.service_uuid == SERVICE);
        let data: Characteristic = ours(DATA)
            .ok_or_else(|| Error::NoRadio(RadioUnavailable::Failed("peer has no Weft data characteristic".into())))?;
        // A server with slots notifies each central on a characteristic of its own.
        let notified = match ours(SLOTS) {
            Some(slots) => {
                let k = peripheral.read(&slots).await.map_err(link_error)?.first().copied();
                k.and_then(|k| ours(slot(k)))
                    .ok_or_else(|| Error::NoRadio(RadioUnavailable::Failed("peer gave no notify slot".into())))?
            }
            None => data.clone(),
        };
        // The stream first: the peer may notify as soon as the subscription lands, and what it
        // sends before a stream exists is lost (the stream buffers until the loop reads it).
        let mut notifications = peripheral.notifications().await.map_err(link_error)?;
        peripheral.subscribe(&notified).await.map_err(link_error)?;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        scanner.driver.add_writer(link, Role::Central, tx);
        // The MTU BlueZ negotiated on connect (23 until it has).
        feed.link_up(link, u32::from(peripheral.mtu()), true)?;
        loop {
            tokio::select! {
                fragment = rx.recv() => match fragment {
                    Some(f) => peripheral.write(&data, &f, WriteType::WithResponse).await.map_err(link_error)?,
                    None => break,
                },
                note = notifications.next() => match note {
                    Some(n) if n.uuid == notified.uuid => feed.frame(link, n.value),
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
        scanner.failed.lock().expect("failed lock").insert(id.clone(), Instant::now());
    }
    let _ = peripheral.disconnect().await;
    scanner.driver.remove_writer(link);
    {
        // Only our own entry: the peer may have reconnected as a newer link meanwhile.
        let mut peripherals = scanner.peripherals.lock().expect("peripherals lock");
        if peripherals.get(&id) == Some(&link) {
            peripherals.remove(&id);
        }
    }
    feed.link_down(link);
}
