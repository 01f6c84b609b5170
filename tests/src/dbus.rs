//! A D-Bus daemon of a test's own (a session bus in a temporary directory), for the tests that
//! talk to a service on D-Bus: the OS keyring's Secret Service, and a mock BlueZ. Stopped, and
//! its directory removed, on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::wait_until;

pub struct PrivateBus {
    daemon: Child,
    /// The bus's address, for `DBUS_SESSION_BUS_ADDRESS`, `DBUS_SYSTEM_BUS_ADDRESS` or a
    /// private connection.
    pub address: String,
    /// A directory of the bus's own, for whatever else the test starts beside it.
    pub dir: PathBuf,
}

impl PrivateBus {
    /// Starts `dbus-daemon`; fails, naming the package, when it is not installed.
    pub fn start() -> PrivateBus {
        assert!(
            Command::new("sh").arg("-c").arg("command -v dbus-daemon").output().unwrap().status.success(),
            "dbus-daemon is missing: install the Debian package dbus (.ci/run does)"
        );
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weft-bus-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("bus");
        let address = format!("unix:path={}", socket.display());
        let daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--address", &address])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the private bus", 20, || socket.exists());
        PrivateBus { daemon, address, dir }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
