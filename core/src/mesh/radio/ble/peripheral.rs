//! The peripheral role on Linux: advertise the Weft service and serve it through BlueZ's D-Bus
//! API, so a laptop is reachable by phones and by other laptops.
//!
//! What BlueZ is asked, in order (bluez `doc/org.bluez.GattManager.rst`,
//! `org.bluez.LEAdvertisingManager.rst`, `org.bluez.GattCharacteristic.rst`):
//! 1. `ObjectManager.GetManagedObjects` on `/`: the first adapter, whether it is powered, and
//!    whether it has `GattManager1` and `LEAdvertisingManager1` (BlueZ 5.43 and later);
//! 2. `GattManager1.RegisterApplication`: BlueZ reads our objects back with
//!    `GetManagedObjects` on [`APP`]: the service, its data characteristic (write), its slot
//!    characteristic (read) and [`SLOTS`](super::slots::SLOTS) notify slots;
//! 3. `LEAdvertisingManager1.RegisterAdvertisement`: BlueZ reads [`ADVERT`]'s properties (the
//!    service UUID, and the name carrying our token, [`advert`]). Where the name does not fit
//!    the controller's advertisement it is registered again without it (two laptops then both
//!    connect: two links, which the mesh tolerates).
//!
//! Then a central reads the slot characteristic (BlueZ's `device` option says who), subscribes
//! to its slot (`StartNotify`: the link is up) and writes fragments to the data characteristic
//! (`WriteValue`, again with `device`). We notify by setting the slot's `Value`
//! (`PropertiesChanged`), paced to one notification per connection event. A central that
//! disconnects (`Device1.Connected` false, or the device removed) or unsubscribes ends its
//! link; a link the mesh closes is disconnected with `Device1.Disconnect`.
//!
//! The token is re-advertised every [`TOKEN_LIFETIME_SECS`]; when the mesh stops, the
//! advertisement and the application are unregistered.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::channel::{Channel, MatchingReceiver, Sender};
use dbus::message::MatchRule;
use dbus::nonblock::{Proxy, SyncConnection};
use dbus::{Message, Path};
use tokio::sync::mpsc;

use super::advert::{self, TOKEN_LIFETIME_SECS, Token};
use super::slots::{SLOTS, SlotTable};
use super::{BleDriver, Bus, DATA, SERVICE};
use crate::mesh::radio::feed::RadioEvents;
use crate::mesh::radio::{RadioUnavailable, Role};

const BLUEZ: &str = "org.bluez";
const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const ADAPTER: &str = "org.bluez.Adapter1";
const DEVICE: &str = "org.bluez.Device1";
const GATT_MANAGER: &str = "org.bluez.GattManager1";
const ADVERTISING_MANAGER: &str = "org.bluez.LEAdvertisingManager1";
const GATT_SERVICE: &str = "org.bluez.GattService1";
const GATT_CHARACTERISTIC: &str = "org.bluez.GattCharacteristic1";
const ADVERTISEMENT: &str = "org.bluez.LEAdvertisement1";

/// Our objects on the bus.
pub const APP: &str = "/org/weft/gatt";
pub const ADVERT: &str = "/org/weft/advertisement0";
const SERVICE_PATH: &str = "/org/weft/gatt/service0";
const DATA_PATH: &str = "/org/weft/gatt/service0/data";
const SLOTS_PATH: &str = "/org/weft/gatt/service0/slots";

fn slot_path(k: u8) -> String {
    format!("{SERVICE_PATH}/slot{k}")
}

/// How long BlueZ may take to answer one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one notification per 7.5 ms (the shortest connection interval) from all slots
/// together: BlueZ queues notifications without bound, so a pace is ours to keep. (Phones'
/// intervals are 15 to 50 ms, so this bounds the rate, not the queue: an acquired notify
/// socket, per device since BlueZ 5.70, would give back-pressure.)
const NOTIFY_INTERVAL: Duration = Duration::from_micros(7_500);
/// Fragments queued for one central.
const WRITE_QUEUE: usize = 8 * crate::mesh::radio::feed::LINK_BUFFER;
/// How often the peripheral looks whether the mesh stopped.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Starts advertising and serving on the first adapter of BlueZ on `bus`.
pub(super) async fn start(bus: Bus, driver: Arc<BleDriver>, feed: RadioEvents) -> Result<(), RadioUnavailable> {
    let channel = match &bus {
        Bus::System => Channel::get_private(dbus::channel::BusType::System),
        Bus::Address(address) => Channel::open_private(address).and_then(|mut c| c.register().map(|_| c)),
    }
    .map_err(|e| RadioUnavailable::NoSystemBus(e.message().unwrap_or("cannot connect").to_owned()))?;
    let (resource, conn) = dbus_tokio::connection::from_channel::<SyncConnection>(channel)
        .map_err(|e| RadioUnavailable::NoSystemBus(e.message().unwrap_or("cannot connect").to_owned()))?;
    let io = tokio::spawn(async move {
        let lost = resource.await;
        tracing::debug!(error = %lost, "D-Bus connection to BlueZ ended");
    });
    match serve(conn, driver, feed).await {
        Ok(server) => {
            tokio::spawn(keep_advertising(server, io));
            Ok(())
        }
        Err(why) => {
            io.abort();
            Err(why)
        }
    }
}

async fn serve(
    conn: Arc<SyncConnection>,
    driver: Arc<BleDriver>,
    feed: RadioEvents,
) -> Result<Arc<Server>, RadioUnavailable> {
    let adapter = find_adapter(&conn).await?;
    let owner = bluez_owner(&conn).await?;
    let server = Arc::new(Server {
        conn: Arc::downgrade(&conn),
        adapter: adapter.to_string(),
        bluez: Mutex::new(owner),
        lost: AtomicBool::new(false),
        driver,
        feed,
        slots: Mutex::new(SlotTable::default()),
        devices: Mutex::new(HashMap::new()),
        token: Mutex::new(new_token()),
        started: Instant::now(),
        pace: tokio::sync::Mutex::new(()),
        watches: Mutex::new(Vec::new()),
    });
    let handler = server.clone();
    conn.start_receive(
        MatchRule::new_method_call(),
        Box::new(move |call, conn| {
            let reply = handler.answer(&call);
            let _ = conn.send(reply);
            true
        }),
    );
    watch_bluez(&conn, &server).await?;
    register(&conn, &server).await?;
    Ok(server)
}

/// Registers the GATT application, then the advertisement (undoing the first if the second
/// fails), and tells the central our token.
async fn register(conn: &Arc<SyncConnection>, server: &Server) -> Result<(), RadioUnavailable> {
    let manager = Proxy::new(BLUEZ, server.adapter.clone(), CALL_TIMEOUT, conn.clone());
    manager
        .method_call::<(), _, _, _>(GATT_MANAGER, "RegisterApplication", (Path::from(APP), PropMap::new()))
        .await
        .map_err(|e| bluez_error(&e, "registering the GATT service"))?;
    if let Err(why) = register_advertisement(&manager).await {
        let _ = manager.method_call::<(), _, _, _>(GATT_MANAGER, "UnregisterApplication", (Path::from(APP),)).await;
        return Err(why);
    }
    server.driver.set_token(Some(*server.token.lock().expect("token lock")));
    Ok(())
}

/// The unique name that owns `org.bluez` now: only its signals are believed.
async fn bluez_owner(conn: &Arc<SyncConnection>) -> Result<String, RadioUnavailable> {
    let bus = Proxy::new("org.freedesktop.DBus", "/org/freedesktop/DBus", CALL_TIMEOUT, conn.clone());
    let (owner,): (String,) = bus
        .method_call("org.freedesktop.DBus", "GetNameOwner", (BLUEZ,))
        .await
        .map_err(|e| bluez_error(&e, "finding bluetoothd"))?;
    Ok(owner)
}

/// The first adapter BlueZ has, if it is on and can serve and advertise.
async fn find_adapter(conn: &Arc<SyncConnection>) -> Result<Path<'static>, RadioUnavailable> {
    let root = Proxy::new(BLUEZ, "/", CALL_TIMEOUT, conn.clone());
    let (objects,): (HashMap<Path<'static>, HashMap<String, PropMap>>,) = root
        .method_call(OBJECT_MANAGER, "GetManagedObjects", ())
        .await
        .map_err(|e| bluez_error(&e, "listing adapters"))?;
    let mut adapters: Vec<_> = objects.into_iter().filter(|(_, ifaces)| ifaces.contains_key(ADAPTER)).collect();
    adapters.sort_by(|a, b| a.0.cmp(&b.0));
    let (path, ifaces) = adapters.into_iter().next().ok_or(RadioUnavailable::NoAdapter)?;
    for needed in [GATT_MANAGER, ADVERTISING_MANAGER] {
        if !ifaces.contains_key(needed) {
            return Err(RadioUnavailable::BluezTooOld(format!("{path} has no {needed}")));
        }
    }
    let powered = ifaces[ADAPTER].get("Powered").and_then(|v| v.0.as_u64()).unwrap_or(0) != 0;
    if !powered {
        return Err(RadioUnavailable::AdapterOff);
    }
    Ok(path)
}

async fn register_advertisement(manager: &Proxy<'_, Arc<SyncConnection>>) -> Result<(), RadioUnavailable> {
    // A name that does not fit the advertisement goes in the scan response (BlueZ's
    // `shared/ad.c`), which the 22-character name fits.
    manager
        .method_call::<(), _, _, _>(ADVERTISING_MANAGER, "RegisterAdvertisement", (Path::from(ADVERT), PropMap::new()))
        .await
        .map_err(|e| bluez_error(&e, "advertising"))
}

/// Re-advertises with a new token every [`TOKEN_LIFETIME_SECS`]; registers again once
/// bluetoothd restarted or released us; when the mesh stops, unregisters, disconnects every
/// central and closes the connection.
async fn keep_advertising(server: Arc<Server>, io: tokio::task::JoinHandle<()>) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(conn) = server.conn.upgrade() else { return };
        let manager = Proxy::new(BLUEZ, server.adapter.clone(), CALL_TIMEOUT, conn.clone());
        if server.feed.is_closed() {
            let _ = manager
                .method_call::<(), _, _, _>(ADVERTISING_MANAGER, "UnregisterAdvertisement", (Path::from(ADVERT),))
                .await;
            let _ = manager.method_call::<(), _, _, _>(GATT_MANAGER, "UnregisterApplication", (Path::from(APP),)).await;
            server.driver.set_token(None);
            for device in server.end_all() {
                let proxy = Proxy::new(BLUEZ, device, CALL_TIMEOUT, conn.clone());
                let _ = proxy.method_call::<(), _, _, _>(DEVICE, "Disconnect", ()).await;
            }
            io.abort();
            return;
        }
        if server.lost.load(Ordering::Acquire) {
            // bluetoothd restarted, or released us: what it held of ours is gone.
            let Ok(owner) = bluez_owner(&conn).await else { continue };
            *server.bluez.lock().expect("owner lock") = owner;
            if register(&conn, &server).await.is_ok() {
                server.lost.store(false, Ordering::Release);
                renewed = Instant::now();
                tracing::info!("advertising and serving through bluetoothd again");
            }
            continue;
        }
        if renewed.elapsed() >= Duration::from_secs(TOKEN_LIFETIME_SECS) {
            renewed = Instant::now();
            let token = new_token();
            *server.token.lock().expect("token lock") = token;
            let _ = manager
                .method_call::<(), _, _, _>(ADVERTISING_MANAGER, "UnregisterAdvertisement", (Path::from(ADVERT),))
                .await;
            match register_advertisement(&manager).await {
                Ok(()) => server.driver.set_token(Some(token)),
                Err(why) => {
                    // Not advertising: nobody connects to us, so we connect to everyone.
                    tracing::warn!(%why, "re-advertising failed; this laptop only connects to others until it works");
                    server.driver.set_token(None);
                }
            }
        }
    }
}

/// Centrals that disconnect, or are removed, end their links; bluetoothd going away ends them
/// all. Only signals from the name's owner count: on the system bus any process may send us
/// a signal, and a forged "disconnected" would cut a neighbour's link.
async fn watch_bluez(conn: &Arc<SyncConnection>, server: &Arc<Server>) -> Result<(), RadioUnavailable> {
    let watch = |rule: MatchRule<'static>| async move {
        conn.add_match(rule).await.map_err(|e| bluez_error(&e, "watching devices"))
    };
    let watcher = Arc::downgrade(server);
    let disconnects =
        watch(MatchRule::new_signal(PROPERTIES, "PropertiesChanged").with_sender(BLUEZ)).await?.msg_cb(move |signal| {
            let Some(server) = watcher.upgrade() else { return false };
            let (Some(path), Ok((iface, changed))) = (signal.path(), signal.read2::<String, PropMap>()) else {
                return true;
            };
            let disconnected = changed.get("Connected").and_then(|v| v.0.as_u64()) == Some(0);
            if iface == DEVICE && disconnected && server.sent_by_bluez(&signal, &path) {
                server.device_gone(&path);
            }
            true
        });
    let watcher = Arc::downgrade(server);
    let removals = watch(MatchRule::new_signal(OBJECT_MANAGER, "InterfacesRemoved").with_sender(BLUEZ)).await?.msg_cb(
        move |signal| {
            let Some(server) = watcher.upgrade() else { return false };
            if let Ok((path, ifaces)) = signal.read2::<Path<'static>, Vec<String>>()
                && ifaces.iter().any(|i| i == DEVICE)
                && server.sent_by_bluez(&signal, &path)
            {
                server.device_gone(&path);
            }
            true
        },
    );
    let watcher = Arc::downgrade(server);
    let restarts =
        watch(MatchRule::new_signal("org.freedesktop.DBus", "NameOwnerChanged").with_sender("org.freedesktop.DBus"))
            .await?
            .msg_cb(move |signal| {
                let Some(server) = watcher.upgrade() else { return false };
                let from_bus = signal.sender().is_some_and(|s| &*s == "org.freedesktop.DBus");
                if let Ok((name, _, _)) = signal.read3::<String, String, String>()
                    && name == BLUEZ
                    && from_bus
                {
                    server.lose_bluez();
                }
                true
            });
    server.watches.lock().expect("watches lock").extend([disconnects, removals, restarts]);
    Ok(())
}

fn new_token() -> Token {
    let mut token = [0u8; 8];
    // Without randomness the token is zeros: it still orders links, and names nobody.
    let _ = getrandom::fill(&mut token);
    token
}

/// What a BlueZ error means for the user.
fn bluez_error(e: &dbus::Error, doing: &str) -> RadioUnavailable {
    let message = e.message().unwrap_or("").to_owned();
    match e.name().unwrap_or("") {
        "org.freedesktop.DBus.Error.ServiceUnknown" | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
            RadioUnavailable::BluezNotRunning
        }
        "org.freedesktop.DBus.Error.AccessDenied" | "org.bluez.Error.NotAuthorized" => {
            RadioUnavailable::PermissionDenied(format!("{doing}: {message}"))
        }
        "org.freedesktop.DBus.Error.UnknownMethod"
        | "org.freedesktop.DBus.Error.UnknownInterface"
        | "org.freedesktop.DBus.Error.UnknownObject" => RadioUnavailable::BluezTooOld(format!("{doing}: {message}")),
        "org.bluez.Error.NotReady" => RadioUnavailable::AdapterOff,
        name => RadioUnavailable::Failed(format!("{doing}: {name}: {message}")),
    }
}

/// Our GATT objects' state, answered from the connection's dispatch.
struct Server {
    conn: Weak<SyncConnection>,
    /// The adapter's object path; devices are under it.
    adapter: String,
    /// The unique name of bluetoothd's connection.
    bluez: Mutex<String>,
    /// bluetoothd went away or released us: register again when it is back.
    lost: AtomicBool,
    driver: Arc<BleDriver>,
    feed: RadioEvents,
    slots: Mutex<SlotTable<String>>,
    /// Each link's device and slot, to disconnect it and find its slot.
    devices: Mutex<HashMap<u64, (String, u8)>>,
    token: Mutex<Token>,
    started: Instant,
    /// Held while one notification goes out and its interval passes, for all slots together:
    /// they share one radio.
    pace: tokio::sync::Mutex<()>,
    /// The device watches' handles: their callbacks end when these go.
    watches: Mutex<Vec<dbus::nonblock::MsgMatch>>,
}

type Props = HashMap<String, Variant<Box<dyn RefArg>>>;

fn prop(value: impl RefArg + 'static) -> Variant<Box<dyn RefArg>> {
    Variant(Box::new(value))
}

impl Server {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The reply to one method call on our objects.
    fn answer(self: &Arc<Self>, call: &Message) -> Message {
        let path = call.path().map(|p| p.to_string()).unwrap_or_default();
        let iface = call.interface().map(|i| i.to_string()).unwrap_or_default();
        let member = call.member().map(|m| m.to_string()).unwrap_or_default();
        let result = match (iface.as_str(), member.as_str()) {
            (OBJECT_MANAGER, "GetManagedObjects") if path == APP => Ok(call.method_return().append1(self.objects())),
            (PROPERTIES, "GetAll") => match call.read1::<String>().ok().and_then(|i| self.properties(&path, &i)) {
                Some(props) => Ok(call.method_return().append1(props)),
                None => Err(("org.freedesktop.DBus.Error.InvalidArgs", "no such interface")),
            },
            (PROPERTIES, "Get") => match call.read2::<String, String>() {
                Ok((i, name)) => match self.properties(&path, &i).and_then(|mut p| p.remove(&name)) {
                    Some(value) => Ok(call.method_return().append1(value)),
                    None => Err(("org.freedesktop.DBus.Error.InvalidArgs", "no such property")),
                },
                Err(_) => Err(("org.freedesktop.DBus.Error.InvalidArgs", "expected an interface and a name")),
            },
            (ADVERTISEMENT, "Release") if path == ADVERT => {
                tracing::info!("bluetoothd released our advertisement; registering again");
                self.lose_bluez();
                Ok(call.method_return())
            }
            (GATT_CHARACTERISTIC, "ReadValue") if path == SLOTS_PATH => self.claim(call),
            (GATT_CHARACTERISTIC, "WriteValue") if path == DATA_PATH => self.write(call),
            (GATT_CHARACTERISTIC, "StartNotify") => match slot_index(&path) {
                Some(k) => self.subscribed(call, k),
                None => Err(("org.bluez.Error.NotSupported", "only the slots notify")),
            },
            (GATT_CHARACTERISTIC, "StopNotify") => {
                if let Some(link) = slot_index(&path).and_then(|k| self.slots.lock().expect("slots lock").link_at(k)) {
                    self.end(link);
                }
                Ok(call.method_return())
            }
            _ => Err(("org.freedesktop.DBus.Error.UnknownMethod", "no such method on a Weft object")),
        };
        result.unwrap_or_else(|(name, text)| error_reply(call, name, text))
    }

    /// A central reads the slot characteristic: its slot index, one byte.
    fn claim(&self, call: &Message) -> Result<Message, (&'static str, &'static str)> {
        let options = call.read1::<PropMap>().map_err(|_| ("org.bluez.Error.InvalidArguments", "expected options"))?;
        let device = device_of(&options).ok_or(("org.bluez.Error.InvalidArguments", "no device"))?;
        let mtu = options.get("mtu").and_then(|v| v.0.as_u64()).map_or(23, |m| m.clamp(23, 517) as u16);
        match self.slots.lock().expect("slots lock").claim(&device, mtu, self.now_ms()) {
            Ok(k) => Ok(call.method_return().append1(vec![k])),
            Err(_) => Err(("org.bluez.Error.Failed", "every notify slot is taken")),
        }
    }

    /// A central subscribed to slot `k`: its link is up.
    fn subscribed(self: &Arc<Self>, call: &Message, k: u8) -> Result<Message, (&'static str, &'static str)> {
        let link = self.driver.new_link();
        let Some((device, mtu)) = self.slots.lock().expect("slots lock").subscribe(k, link) else {
            return Err(("org.bluez.Error.NotPermitted", "read the slot characteristic first"));
        };
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        self.driver.add_writer(link, Role::Peripheral, tx);
        self.devices.lock().expect("devices lock").insert(link, (device, k));
        if self.feed.link_up(link, u32::from(mtu), false).is_err() {
            self.end(link);
            return Err(("org.bluez.Error.Failed", "the mesh takes no more links"));
        }
        tokio::spawn(notify(self.clone(), link, k, rx));
        Ok(call.method_return())
    }

    /// A central wrote a fragment.
    fn write(&self, call: &Message) -> Result<Message, (&'static str, &'static str)> {
        let (value, options) = call
            .read2::<Vec<u8>, PropMap>()
            .map_err(|_| ("org.bluez.Error.InvalidArguments", "expected a value and options"))?;
        let offset = options.get("offset").and_then(|v| v.0.as_u64()).unwrap_or(0);
        if offset != 0 {
            // Fragments fit one write; a long (prepared) write is refused rather than pieced.
            return Err(("org.bluez.Error.InvalidOffset", "fragments fit one write"));
        }
        let device = device_of(&options).ok_or(("org.bluez.Error.InvalidArguments", "no device"))?;
        let link = self.slots.lock().expect("slots lock").link_of(&device);
        match link {
            Some(link) => {
                self.feed.frame(link, value);
                Ok(call.method_return())
            }
            None => Err(("org.bluez.Error.NotPermitted", "subscribe to your slot first")),
        }
    }

    /// Whether `signal` about `path` comes from bluetoothd and names one of its devices.
    fn sent_by_bluez(&self, signal: &Message, path: &str) -> bool {
        let owner = self.bluez.lock().expect("owner lock").clone();
        signal.sender().is_some_and(|s| *s == *owner) && path.starts_with(&format!("{}/", self.adapter))
    }

    /// bluetoothd is gone or dropped what we registered: every link ends, nobody can connect
    /// to us (so the central connects to everyone), and the keeper registers again.
    fn lose_bluez(&self) {
        self.lost.store(true, Ordering::Release);
        self.driver.set_token(None);
        self.end_all();
    }

    /// Ends every link; the devices they were.
    fn end_all(&self) -> Vec<String> {
        let links: Vec<(u64, String)> = self
            .devices
            .lock()
            .expect("devices lock")
            .iter()
            .map(|(link, (device, _))| (*link, device.clone()))
            .collect();
        for (link, _) in &links {
            self.end(*link);
        }
        *self.slots.lock().expect("slots lock") = SlotTable::default();
        links.into_iter().map(|(_, device)| device).collect()
    }

    /// The device disconnected or was removed.
    fn device_gone(&self, device: &str) {
        let link = self.slots.lock().expect("slots lock").device_gone(&device.to_owned());
        if let Some(link) = link {
            self.end(link);
        }
    }

    /// Ends `link`: its writer goes, and with it the notifier task, which tidies up.
    fn end(&self, link: u64) {
        self.devices.lock().expect("devices lock").remove(&link);
        self.slots.lock().expect("slots lock").release_link(link);
        self.driver.remove_writer(link);
        self.feed.link_down(link);
    }

    /// Our objects in a fixed order (bluetoothd gives attribute handles in the order it reads
    /// them, and a central may cache them).
    fn objects(&self) -> BTreeMap<Path<'static>, HashMap<String, Props>> {
        let mut objects = BTreeMap::new();
        let mut paths = vec![SERVICE_PATH.to_owned(), DATA_PATH.to_owned(), SLOTS_PATH.to_owned()];
        paths.extend((0..SLOTS as u8).map(slot_path));
        for path in paths {
            let iface = if path == SERVICE_PATH { GATT_SERVICE } else { GATT_CHARACTERISTIC };
            let props = self.properties(&path, iface).expect("our own objects");
            objects.insert(Path::from(path), HashMap::from([(iface.to_owned(), props)]));
        }
        objects
    }

    fn properties(&self, path: &str, iface: &str) -> Option<Props> {
        let characteristic = |uuid: uuid::Uuid, flags: &[&str]| -> Props {
            HashMap::from([
                ("UUID".to_owned(), prop(uuid.to_string())),
                ("Service".to_owned(), prop(Path::from(SERVICE_PATH))),
                ("Flags".to_owned(), prop(flags.iter().map(|f| f.to_string()).collect::<Vec<_>>())),
            ])
        };
        match (path, iface) {
            (SERVICE_PATH, GATT_SERVICE) => Some(HashMap::from([
                ("UUID".to_owned(), prop(SERVICE.to_string())),
                ("Primary".to_owned(), prop(true)),
            ])),
            (DATA_PATH, GATT_CHARACTERISTIC) => Some(characteristic(DATA, &["write"])),
            (SLOTS_PATH, GATT_CHARACTERISTIC) => Some(characteristic(super::SLOTS, &["read"])),
            (ADVERT, ADVERTISEMENT) => {
                let token = *self.token.lock().expect("token lock");
                Some(HashMap::from([
                    ("Type".to_owned(), prop("peripheral".to_owned())),
                    ("ServiceUUIDs".to_owned(), prop(vec![SERVICE.to_string()])),
                    ("LocalName".to_owned(), prop(advert::advertised_name(&token))),
                ]))
            }
            (p, GATT_CHARACTERISTIC) => slot_index(p).map(|k| characteristic(super::slot(k), &["notify"])),
            _ => None,
        }
    }
}

/// Sends `link`'s fragments as notifications on slot `k`, paced; tidies up when the link ends.
async fn notify(server: Arc<Server>, link: u64, k: u8, mut fragments: mpsc::Receiver<Vec<u8>>) {
    let path = slot_path(k);
    while let Some(fragment) = fragments.recv().await {
        let Some(conn) = server.conn.upgrade() else { break };
        let paced = server.pace.lock().await;
        let changed: Props = HashMap::from([("Value".to_owned(), prop(fragment))]);
        let signal = Message::new_signal(path.as_str(), PROPERTIES, "PropertiesChanged").expect("valid names").append3(
            GATT_CHARACTERISTIC,
            changed,
            Vec::<String>::new(),
        );
        if conn.send(signal).is_err() {
            break;
        }
        tokio::time::sleep(NOTIFY_INTERVAL).await;
        drop(paced);
    }
    // The mesh closed the link (the central is still there: disconnect it), or the central
    // went or unsubscribed (`end` already ran and took its entry).
    let ended = server.devices.lock().expect("devices lock").remove(&link);
    server.end(link);
    if let (Some((device, _)), Some(conn)) = (ended, server.conn.upgrade()) {
        let proxy = Proxy::new(BLUEZ, device, CALL_TIMEOUT, conn);
        let _ = proxy.method_call::<(), _, _, _>(DEVICE, "Disconnect", ()).await;
    }
}

fn slot_index(path: &str) -> Option<u8> {
    let k: u8 = path.strip_prefix(SERVICE_PATH)?.strip_prefix("/slot")?.parse().ok()?;
    (usize::from(k) < SLOTS).then_some(k)
}

fn device_of(options: &PropMap) -> Option<String> {
    options.get("device").and_then(|v| v.0.as_str()).map(str::to_owned)
}

fn error_reply(call: &Message, name: &str, text: &str) -> Message {
    let name = dbus::strings::ErrorName::new(name).expect("valid error name");
    let text = std::ffi::CString::new(text).expect("no NUL in our messages");
    call.error(&name, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_paths_parse_back_and_strangers_do_not() {
        for k in 0..SLOTS as u8 {
            assert_eq!(slot_index(&slot_path(k)), Some(k));
        }
        for path in [DATA_PATH, SLOTS_PATH, "/org/weft/gatt/service0/slot7", "/org/weft/gatt/service0/slot", "/x/slot1"]
        {
            assert_eq!(slot_index(path), None, "{path}");
        }
    }
}
