//! The laptop's Bluetooth peripheral (core/src/mesh/radio/ble/peripheral.rs) against a BlueZ
//! the test controls: a private D-Bus daemon, and a mock `org.bluez` on it that answers as
//! bluetoothd does (doc/org.bluez.GattManager.rst, LEAdvertisingManager.rst,
//! GattCharacteristic.rst): it reads our GATT application and advertisement back over D-Bus,
//! and plays centrals that read their slot, subscribe, write and disconnect. So the calls,
//! their order, the per-central slots and the error paths run for real over D-Bus; no radio
//! is involved (these machines have none), and nothing here ran against a real bluetoothd.

#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dbus::arg::{PropMap, RefArg, Variant};
use dbus::channel::{Channel, MatchingReceiver, Sender};
use dbus::message::MatchRule;
use dbus::nonblock::{Proxy, SyncConnection};
use dbus::{Message, Path};
use tokio::sync::mpsc;
use weft_core::Error;
use weft_core::mesh::radio::ble::{self, BleOptions, Bus};
use weft_core::mesh::radio::feed::FedRadio;
use weft_core::mesh::radio::{Link, Radio, RadioUnavailable, Role, RoleState};
use weft_tests::dbus::PrivateBus;
use weft_tests::wait_until;

const ADAPTER: &str = "/org/bluez/hci0";
const TIMEOUT: Duration = Duration::from_secs(10);

/// How the mock BlueZ behaves.
#[derive(Clone, Copy)]
struct Config {
    adapter: bool,
    powered: bool,
    advertising_manager: bool,
    deny_application: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { adapter: true, powered: true, advertising_manager: true, deny_application: false }
    }
}

/// A registered GATT application: its sender, and its characteristics by UUID (path, flags).
type App = (String, HashMap<String, (String, Vec<String>)>);

/// What the mock saw.
#[derive(Default)]
struct Seen {
    calls: Vec<String>,
    /// Our application's sender, and its characteristics: UUID → (path, flags).
    app: Option<App>,
    /// The advertisement's properties: type, service UUIDs, local name.
    advert: Option<(String, Vec<String>, Option<String>)>,
    disconnected: Vec<String>,
}

struct MockBluez {
    conn: Arc<SyncConnection>,
    seen: Arc<Mutex<Seen>>,
}

async fn connect(address: &str) -> Arc<SyncConnection> {
    let mut channel = Channel::open_private(address).unwrap();
    channel.register().unwrap();
    let (resource, conn) = dbus_tokio::connection::from_channel::<SyncConnection>(channel).unwrap();
    tokio::spawn(async move {
        let _ = resource.await;
    });
    conn
}

fn variant(value: impl RefArg + 'static) -> Variant<Box<dyn RefArg>> {
    Variant(Box::new(value))
}

fn error(call: &Message, name: &str, text: &str) -> Message {
    call.error(&name.into(), &std::ffi::CString::new(text).unwrap())
}

impl MockBluez {
    async fn start(address: &str, config: Config) -> MockBluez {
        let conn = connect(address).await;
        conn.request_name("org.bluez", false, true, true).await.unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (state, handle) = (seen.clone(), conn.clone());
        conn.start_receive(
            MatchRule::new_method_call(),
            Box::new(move |call, _| {
                let member = call.member().unwrap().to_string();
                state.lock().unwrap().calls.push(member.clone());
                let (conn, seen) = (handle.clone(), state.clone());
                tokio::spawn(async move {
                    let reply = answer(&conn, &seen, config, call, &member).await;
                    let _ = conn.send(reply);
                });
                true
            }),
        );
        MockBluez { conn, seen }
    }

    fn app(&self) -> App {
        self.seen.lock().unwrap().app.clone().expect("the application is registered")
    }

    fn path_of(&self, uuid: uuid::Uuid) -> String {
        self.app().1[&uuid.to_string()].0.clone()
    }

    /// A central `device` connects: reads its slot, listens on it and subscribes.
    async fn central(&self, device: &str, mtu: u16) -> Central {
        let (sender, _) = self.app();
        let slots = Proxy::new(sender.clone(), self.path_of(ble::SLOTS), TIMEOUT, self.conn.clone());
        let options = central_options(device, mtu);
        let (value,): (Vec<u8>,) =
            slots.method_call("org.bluez.GattCharacteristic1", "ReadValue", (options,)).await.unwrap();
        let slot = value[0];
        let path = self.path_of(ble::slot(slot));
        let (tx, rx) = mpsc::unbounded_channel();
        let rule = MatchRule::new_signal("org.freedesktop.DBus.Properties", "PropertiesChanged")
            .with_sender(sender.clone())
            .with_path(path.clone());
        let listening = self.conn.add_match(rule).await.unwrap();
        let listening = listening.msg_cb(move |signal| {
            if let Ok((_, changed)) = signal.read2::<String, PropMap>() {
                let value = changed
                    .get("Value")
                    .and_then(|v| v.0.as_iter())
                    .map(|bytes| bytes.map(|b| b.as_u64().expect("a byte") as u8).collect::<Vec<u8>>());
                if let Some(value) = value {
                    let _ = tx.send(value);
                }
            }
            true
        });
        let notify = Proxy::new(sender, path, TIMEOUT, self.conn.clone());
        notify.method_call::<(), _, _, _>("org.bluez.GattCharacteristic1", "StartNotify", ()).await.unwrap();
        Central { device: device.to_owned(), mtu, slot, notifications: rx, _listening: Some(listening) }
    }

    async fn write(&self, central: &Central, fragment: &[u8]) -> Result<(), dbus::Error> {
        let (sender, _) = self.app();
        let data = Proxy::new(sender, self.path_of(ble::DATA), TIMEOUT, self.conn.clone());
        let options = central_options(&central.device, central.mtu);
        data.method_call("org.bluez.GattCharacteristic1", "WriteValue", (fragment.to_vec(), options)).await
    }

    /// The central's connection drops, as bluetoothd tells it.
    fn disconnect(&self, device: &str) {
        let changed: HashMap<String, Variant<Box<dyn RefArg>>> =
            HashMap::from([("Connected".to_owned(), variant(false))]);
        let signal = Message::new_signal(device, "org.freedesktop.DBus.Properties", "PropertiesChanged")
            .unwrap()
            .append3("org.bluez.Device1", changed, Vec::<String>::new());
        self.conn.send(signal).unwrap();
    }
}

struct Central {
    device: String,
    mtu: u16,
    slot: u8,
    notifications: mpsc::UnboundedReceiver<Vec<u8>>,
    /// The notifications' callback lives as long as this.
    _listening: Option<dbus::nonblock::MsgMatch>,
}

impl Central {
    async fn next(&mut self) -> Vec<u8> {
        tokio::time::timeout(TIMEOUT, self.notifications.recv()).await.expect("a notification in time").unwrap()
    }

    async fn nothing_more(&mut self) {
        let late = tokio::time::timeout(Duration::from_millis(300), self.notifications.recv()).await;
        assert!(late.is_err(), "slot {} got another central's notification: {late:?}", self.slot);
    }
}

fn central_options(device: &str, mtu: u16) -> PropMap {
    HashMap::from([
        ("device".to_owned(), variant(Path::from(device.to_owned()))),
        ("mtu".to_owned(), variant(mtu)),
        ("link".to_owned(), variant("LE".to_owned())),
    ])
}

/// The mock's answer to one call, as bluetoothd would give it.
async fn answer(
    conn: &Arc<SyncConnection>,
    seen: &Mutex<Seen>,
    config: Config,
    call: Message,
    member: &str,
) -> Message {
    let sender = call.sender().unwrap().to_string();
    match member {
        "GetManagedObjects" => {
            let mut objects: HashMap<Path<'static>, HashMap<String, PropMap>> = HashMap::new();
            objects.insert(
                Path::from("/org/bluez"),
                HashMap::from([("org.bluez.AgentManager1".to_owned(), PropMap::new())]),
            );
            if config.adapter {
                let mut ifaces = HashMap::from([
                    (
                        "org.bluez.Adapter1".to_owned(),
                        HashMap::from([
                            ("Powered".to_owned(), variant(config.powered)),
                            ("Address".to_owned(), variant("00:11:22:33:44:55".to_owned())),
                        ]),
                    ),
                    ("org.bluez.GattManager1".to_owned(), PropMap::new()),
                ]);
                if config.advertising_manager {
                    ifaces.insert("org.bluez.LEAdvertisingManager1".to_owned(), PropMap::new());
                }
                objects.insert(Path::from(ADAPTER), ifaces);
            }
            call.method_return().append1(objects)
        }
        "RegisterApplication" => {
            if config.deny_application {
                return error(&call, "org.freedesktop.DBus.Error.AccessDenied", "Rejected send message");
            }
            let (app, _): (Path<'static>, PropMap) = call.read2().unwrap();
            let proxy = Proxy::new(sender.clone(), app, TIMEOUT, conn.clone());
            let (objects,): (HashMap<Path<'static>, HashMap<String, PropMap>>,) =
                proxy.method_call("org.freedesktop.DBus.ObjectManager", "GetManagedObjects", ()).await.unwrap();
            let mut characteristics = HashMap::new();
            let mut service_found = false;
            for (path, ifaces) in objects {
                if let Some(service) = ifaces.get("org.bluez.GattService1") {
                    service_found |= service["UUID"].0.as_str() == Some(&ble::SERVICE.to_string());
                    assert_eq!(service["Primary"].0.as_u64(), Some(1));
                }
                if let Some(c) = ifaces.get("org.bluez.GattCharacteristic1") {
                    let flags: Vec<String> =
                        c["Flags"].0.as_iter().unwrap().map(|f| f.as_str().unwrap().to_owned()).collect();
                    characteristics.insert(c["UUID"].0.as_str().unwrap().to_owned(), (path.to_string(), flags));
                }
            }
            if !service_found {
                return error(&call, "org.bluez.Error.InvalidArguments", "No object received");
            }
            seen.lock().unwrap().app = Some((sender, characteristics));
            call.method_return()
        }
        "RegisterAdvertisement" => {
            let (path, _): (Path<'static>, PropMap) = call.read2().unwrap();
            let proxy = Proxy::new(sender, path, TIMEOUT, conn.clone());
            let (props,): (PropMap,) = proxy
                .method_call("org.freedesktop.DBus.Properties", "GetAll", ("org.bluez.LEAdvertisement1",))
                .await
                .unwrap();
            let kind = props["Type"].0.as_str().unwrap().to_owned();
            let uuids = props["ServiceUUIDs"].0.as_iter().unwrap().map(|u| u.as_str().unwrap().to_owned()).collect();
            let name = props.get("LocalName").map(|n| n.0.as_str().unwrap().to_owned());
            seen.lock().unwrap().advert = Some((kind, uuids, name));
            call.method_return()
        }
        "UnregisterAdvertisement" | "UnregisterApplication" => call.method_return(),
        "Disconnect" => {
            seen.lock().unwrap().disconnected.push(call.path().unwrap().to_string());
            call.method_return()
        }
        _ => error(&call, "org.freedesktop.DBus.Error.UnknownMethod", "not in the mock"),
    }
}

async fn open_peripheral(bus: &PrivateBus) -> Result<FedRadio, Error> {
    ble::open_with(BleOptions { central: false, peripheral: Some(Bus::Address(bus.address.clone())) }).await
}

async fn next_link(radio: &mut FedRadio) -> Arc<dyn Link> {
    tokio::time::timeout(TIMEOUT, radio.next_link()).await.expect("a link in time").unwrap()
}

async fn received(link: &Arc<dyn Link>) -> Option<Vec<u8>> {
    tokio::time::timeout(TIMEOUT, link.recv()).await.expect("a fragment or the end in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon (Debian: dbus); .ci/run installs it"]
async fn a_laptop_advertises_and_serves_each_central_on_its_own_slot() {
    let bus = PrivateBus::start();
    let bluez = MockBluez::start(&bus.address, Config::default()).await;
    let mut radio = open_peripheral(&bus).await.expect("the peripheral starts");

    // The order BlueZ needs: the adapter, then the GATT application, then the advertisement.
    let calls = bluez.seen.lock().unwrap().calls.clone();
    let order: Vec<&str> = calls.iter().map(String::as_str).collect();
    assert_eq!(order, ["GetManagedObjects", "RegisterApplication", "RegisterAdvertisement"]);
    let (_, characteristics) = bluez.app();
    assert_eq!(characteristics[&ble::DATA.to_string()].1, ["write"]);
    assert_eq!(characteristics[&ble::SLOTS.to_string()].1, ["read"]);
    assert_eq!(characteristics[&ble::slot(0).to_string()].1, ["notify"]);
    let (kind, uuids, name) = bluez.seen.lock().unwrap().advert.clone().unwrap();
    assert_eq!((kind.as_str(), uuids), ("peripheral", vec![ble::SERVICE.to_string()]));
    let name = name.expect("the token rides in the name");
    assert!(name.starts_with("weftd-") && name.len() == 22, "{name}");
    assert_eq!(ble::advert::seen(Some(&name)), ble::advert::Seen::Desktop(token_of(&name)));

    // Two centrals: each its own slot, link and MTU.
    let mut phone = bluez.central("/org/bluez/hci0/dev_AA_AA_AA_AA_AA_01", 185).await;
    let phone_link = next_link(&mut radio).await;
    let mut laptop = bluez.central("/org/bluez/hci0/dev_AA_AA_AA_AA_AA_02", 517).await;
    let laptop_link = next_link(&mut radio).await;
    assert_ne!(phone.slot, laptop.slot);
    assert_eq!((phone_link.mtu(), phone_link.initiator()), (185, false), "the central opened it");
    assert_eq!(laptop_link.mtu(), 517);

    // Writes arrive on the writer's link; notifications reach only their central.
    bluez.write(&phone, b"from the phone").await.unwrap();
    bluez.write(&laptop, b"from the laptop").await.unwrap();
    assert_eq!(received(&phone_link).await.unwrap(), b"from the phone");
    assert_eq!(received(&laptop_link).await.unwrap(), b"from the laptop");
    phone_link.send(b"to the phone".to_vec()).await.unwrap();
    laptop_link.send(b"to the laptop".to_vec()).await.unwrap();
    assert_eq!(phone.next().await, b"to the phone");
    assert_eq!(laptop.next().await, b"to the laptop");
    phone.nothing_more().await;
    laptop.nothing_more().await;
    let report = radio.report().expect("ble reports its roles")();
    assert_eq!(report.roles[1], (Role::Peripheral, RoleState::On { links: 2 }));
    assert!(matches!(report.roles[0], (Role::Central, RoleState::Off(_))));

    // A stranger that never read a slot is refused; so is a write before subscribing.
    let stranger = Central {
        device: "/org/bluez/hci0/dev_EE_EE".into(),
        mtu: 23,
        slot: 9,
        notifications: mpsc::unbounded_channel().1,
        _listening: None,
    };
    let refused = bluez.write(&stranger, b"junk").await.unwrap_err();
    assert_eq!(refused.name(), Some("org.bluez.Error.NotPermitted"));

    // Any process on the bus may send us a signal: a forged "disconnected" for the phone, sent
    // straight to the peripheral, cuts nothing.
    let forger = connect(&bus.address).await;
    let changed: HashMap<String, Variant<Box<dyn RefArg>>> = HashMap::from([("Connected".to_owned(), variant(false))]);
    let mut forged = Message::new_signal(phone.device.as_str(), "org.freedesktop.DBus.Properties", "PropertiesChanged")
        .unwrap()
        .append3("org.bluez.Device1", changed, Vec::<String>::new());
    forged.set_destination(Some(bluez.app().0.into()));
    forger.send(forged).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    bluez.write(&phone, b"still here").await.expect("the forged disconnect changed nothing");
    assert_eq!(received(&phone_link).await.unwrap(), b"still here");

    // The phone walks away: its link ends, and its slot serves the next central.
    bluez.disconnect(&phone.device);
    assert_eq!(received(&phone_link).await, None);
    let next = bluez.central("/org/bluez/hci0/dev_AA_AA_AA_AA_AA_03", 23).await;
    let next_central_link = next_link(&mut radio).await;
    assert_eq!(next.slot, phone.slot, "the freed slot is reused");

    // The mesh drops the laptop's link: the peripheral disconnects it.
    laptop_link.close();
    wait_until("the laptop disconnected", 10, || bluez.seen.lock().unwrap().disconnected.contains(&laptop.device));

    // bluetoothd restarts: every link ends, and the laptop registers with the new one.
    bluez.conn.release_name("org.bluez").await.unwrap();
    assert_eq!(received(&next_central_link).await, None, "links end with bluetoothd");
    let restarted = MockBluez::start(&bus.address, Config::default()).await;
    wait_until("registered again", 20, || restarted.seen.lock().unwrap().advert.is_some());
    let mut again = restarted.central("/org/bluez/hci0/dev_AA_AA_AA_AA_AA_04", 185).await;
    let again_link = next_link(&mut radio).await;
    again_link.send(b"after the restart".to_vec()).await.unwrap();
    assert_eq!(again.next().await, b"after the restart");

    // The mesh stops: the advertisement and the application are withdrawn, and the central
    // still linked is disconnected.
    drop((phone_link, laptop_link, next_central_link, again_link, radio));
    wait_until("unregistered", 10, || {
        let seen = restarted.seen.lock().unwrap();
        seen.calls.iter().any(|c| c == "UnregisterAdvertisement")
            && seen.calls.iter().any(|c| c == "UnregisterApplication")
            && seen.disconnected.contains(&again.device)
    });
}

fn token_of(name: &str) -> [u8; 8] {
    let hex = &name["weftd-".len()..];
    std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs dbus-daemon (Debian: dbus); .ci/run installs it"]
async fn when_bluez_cannot_serve_the_reason_is_one_clear_line() {
    let bus = PrivateBus::start();
    type Case = (&'static str, Option<Config>, fn(&RadioUnavailable) -> bool);
    let cases: [Case; 5] = [
        ("no bluetoothd", None, |e| *e == RadioUnavailable::BluezNotRunning),
        ("no adapter", Some(Config { adapter: false, ..Config::default() }), |e| *e == RadioUnavailable::NoAdapter),
        ("adapter off", Some(Config { powered: false, ..Config::default() }), |e| *e == RadioUnavailable::AdapterOff),
        ("BlueZ too old", Some(Config { advertising_manager: false, ..Config::default() }), |e| {
            matches!(e, RadioUnavailable::BluezTooOld(_))
        }),
        ("permission denied", Some(Config { deny_application: true, ..Config::default() }), |e| {
            matches!(e, RadioUnavailable::PermissionDenied(_))
        }),
    ];
    for (what, config, expected) in cases {
        let mock = match config {
            Some(config) => Some(MockBluez::start(&bus.address, config).await),
            None => None,
        };
        let Err(Error::NoRadio(why)) = open_peripheral(&bus).await else { panic!("{what}: the peripheral started") };
        assert!(expected(&why), "{what}: {why:?}");
        let line = Error::NoRadio(why).to_string();
        assert!(!line.contains('\n') && line.len() < 200, "{what}: one clear line: {line}");
        if let Some(mock) = mock {
            mock.conn.release_name("org.bluez").await.unwrap();
        }
    }
}

/// `weft run` on a machine whose system bus is the test's: `status` names each role.
fn run_on(bus: &PrivateBus, home: &weft_tests::Home) -> std::process::Child {
    home.command(&["run", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(home.dir.with_extension("log")).unwrap())
        .spawn()
        .expect("starting weft run")
}

fn status_once_bluetooth_is_settled(home: &weft_tests::Home) -> String {
    let mut status = String::new();
    wait_until("status naming the Bluetooth mesh", 60, || {
        let out = home.run(&["status"]);
        status = String::from_utf8_lossy(&out.stdout).into_owned();
        // Settled: the radio's roles, or why it is off. (Until the radio has been tried, status
        // says only "bluetooth mesh: off".)
        out.status.success() && (status.contains("bluetooth mesh (") || status.contains("bluetooth mesh: off ("))
    });
    status
}

#[test]
#[ignore = "needs dbus-daemon (Debian: dbus); .ci/run installs it"]
fn weft_run_and_status_name_each_role_or_why_bluetooth_is_off() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let bus = PrivateBus::start();
    let root = tempfile::tempdir().unwrap();
    let alice = weft_tests::Home::new(root.path(), "alice");
    alice.ok(&["init", "--name", "alice"]);

    // BlueZ serves: the peripheral runs. (btleplug's central asks the mock for more than it
    // answers, so it is off, and says why.)
    let bluez = runtime.block_on(MockBluez::start(&bus.address, Config::default()));
    let mut node = run_on(&bus, &alice);
    let status = status_once_bluetooth_is_settled(&alice);
    let _ = node.kill();
    let _ = node.wait();
    let log = std::fs::read_to_string(alice.dir.with_extension("log")).unwrap_or_default();
    assert!(status.contains("as peripheral: 0 links"), "{status}\n{log}");
    assert!(status.contains("as central: "), "{status}");
    assert!(bluez.seen.lock().unwrap().advert.is_some(), "advertised");
    runtime.block_on(bluez.conn.release_name("org.bluez")).unwrap();

    // The adapter is off: one line says so, and libp2p runs regardless.
    let _off = runtime.block_on(MockBluez::start(&bus.address, Config { powered: false, ..Config::default() }));
    let mut node = run_on(&bus, &alice);
    let status = status_once_bluetooth_is_settled(&alice);
    let _ = node.kill();
    let _ = node.wait();
    assert!(status.contains("bluetooth mesh: off (no Bluetooth: the Bluetooth adapter is off"), "{status}");
    assert!(status.starts_with("running as 12D3"), "libp2p runs: {status}");
}
