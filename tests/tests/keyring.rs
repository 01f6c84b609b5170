//! The passphrase in the OS keyring, through the real binary. With a private Secret Service
//! (a session bus and GNOME Keyring started for the test): only a passphrase that opens the
//! account goes in, weft then opens the home without being told the passphrase, each home has
//! its own entry, and `forget` takes it out. With no keyring at all: clear errors, nothing
//! half-done.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use weft_tests::dbus::PrivateBus;
use weft_tests::{Home, wait_until};

/// `weft --home DIR ARGS...` told nothing of the passphrase but what `passphrase` says, on the
/// session bus `bus`.
fn weft(home: &Home, bus: &str, passphrase: Option<&str>, args: &[&str]) -> Output {
    let mut command = home.command(args);
    command.env_remove("WEFT_PASSPHRASE").env("DBUS_SESSION_BUS_ADDRESS", bus).stdin(Stdio::null());
    if let Some(p) = passphrase {
        command.env("WEFT_PASSPHRASE", p);
    }
    command.output().expect("running weft")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn without_a_keyring_remember_says_so_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let home = Home::new(root.path(), "alice");
    home.ok(&["init", "--name", "alice"]);
    let nowhere = format!("unix:path={}", root.path().join("no-bus").display());

    let wrong = weft(&home, &nowhere, Some("not it"), &["passphrase", "remember"]);
    assert_eq!(wrong.status.code(), Some(3), "a wrong passphrase is refused before the keyring is asked");

    let refused = weft(&home, &nowhere, Some(&home.passphrase), &["passphrase", "remember"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("no OS keyring answered"), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("WEFT_PASSPHRASE"), "says what to do instead");
    let status = weft(&home, &nowhere, None, &["--json", "passphrase", "status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("\"remembered\": false"));

    // Opening never touches a keyring unless asked to: the environment is enough.
    let id = weft(&home, &nowhere, Some(&home.passphrase), &["id"]);
    assert!(id.status.success(), "{}", stderr(&id));
    let no_passphrase = weft(&home, &nowhere, None, &["id"]);
    assert_eq!(no_passphrase.status.code(), Some(1));
    assert!(stderr(&no_passphrase).contains("weft passphrase remember"), "{}", stderr(&no_passphrase));
}

/// A session bus and GNOME Keyring's Secret Service in a temporary directory, stopped on drop.
struct SecretService {
    keyring: Child,
    address: String,
    // Dropped after the keyring: the fields go in order.
    _bus: PrivateBus,
}

impl SecretService {
    fn start() -> SecretService {
        assert!(
            Command::new("sh").arg("-c").arg("command -v gnome-keyring-daemon").output().unwrap().status.success(),
            "gnome-keyring-daemon is missing: install the Debian packages dbus and gnome-keyring (.ci/run does)"
        );
        let bus = PrivateBus::start();
        let mut command = Command::new("gnome-keyring-daemon");
        command
            .args(["--foreground", "--components=secrets", "--unlock"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("HOME", &bus.dir)
            .env("XDG_DATA_HOME", bus.dir.join("data"))
            .env("XDG_RUNTIME_DIR", &bus.dir);
        let mut keyring = command.spawn().unwrap();
        // The login keyring is created, and unlocked, with the password read from stdin to EOF.
        keyring.stdin.take().unwrap().write_all(b"keyring password").unwrap();
        SecretService { keyring, address: bus.address.clone(), _bus: bus }
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        let _ = self.keyring.kill();
        let _ = self.keyring.wait();
    }
}

fn remembered(home: &Path) -> bool {
    home.join("passphrase-in-keyring").exists()
}

#[test]
#[ignore = "needs dbus-daemon and gnome-keyring-daemon (Debian: dbus, gnome-keyring); .ci/run installs them"]
fn the_keyring_opens_the_home_for_whoever_asked_it_to() {
    let service = SecretService::start();
    let bus = service.address.as_str();
    let root = tempfile::tempdir().unwrap();
    let alice = Home::new(root.path(), "alice");
    let bob = Home::new(root.path(), "bob");
    alice.ok(&["init", "--name", "alice"]);
    bob.ok(&["init", "--name", "bob"]);

    assert_eq!(weft(&alice, bus, Some("not it"), &["passphrase", "remember"]).status.code(), Some(3));
    assert!(!remembered(&alice.dir), "a wrong passphrase is never kept");

    // The Secret Service may take a moment to claim its name on the bus.
    wait_until("the Secret Service", 20, || {
        weft(&alice, bus, Some(&alice.passphrase), &["passphrase", "remember"]).status.success()
    });
    assert!(remembered(&alice.dir));
    let id = weft(&alice, bus, None, &["--json", "id"]);
    assert!(id.status.success(), "opened with the keyring's passphrase: {}", stderr(&id));
    assert!(String::from_utf8_lossy(&id.stdout).contains("\"alice\""));

    // Bob's home has its own entry; alice's does not open it.
    let bob_without = weft(&bob, bus, None, &["id"]);
    assert!(!bob_without.status.success(), "bob never asked for the keyring");
    assert!(weft(&bob, bus, Some(&bob.passphrase), &["passphrase", "remember"]).status.success());
    assert!(weft(&bob, bus, None, &["id"]).status.success());
    assert!(weft(&alice, bus, None, &["id"]).status.success(), "alice's entry is still hers");

    // The daemon takes its passphrase from the keyring too, and `forget` needs no passphrase
    // and works while it runs.
    let mut daemon = alice
        .command(&["daemon", "--no-mdns", "--no-ble", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .env_remove("WEFT_PASSPHRASE")
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    alice.wait_for_socket();
    let forgot = weft(&alice, bus, None, &["--json", "passphrase", "forget"]);
    assert!(String::from_utf8_lossy(&forgot.stdout).contains("\"removed\": true"), "{}", stderr(&forgot));
    assert!(!remembered(&alice.dir));
    let status = weft(&alice, bus, None, &["status"]);
    assert!(status.status.success(), "the daemon answers without a passphrase: {}", stderr(&status));
    let _ = daemon.kill();
    let _ = daemon.wait();
    let after = weft(&alice, bus, None, &["id"]);
    assert_eq!(after.status.code(), Some(1));
    assert!(stderr(&after).contains("no passphrase"), "{}", stderr(&after));
    let again = weft(&alice, bus, None, &["--json", "passphrase", "forget"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("\"removed\": false"));
}
