//! Helpers for Weft's cross-crate scenarios: finding and driving the real `weft` binary
//! ([`weft_binary`], [`Home`]), running nodes in-process ([`nodes`]), a loopback proxy
//! that can cut the network and records what crosses it ([`proxy`]), a hostile libp2p peer
//! ([`hostile`]), a D-Bus daemon of a test's own (`dbus`), a forwarder that makes it come from an address of its own ([`elsewhere`]), and
//! hosts of their own in Linux network namespaces, behind a lossy hub that can partition them
//! (`netns`).

#[cfg(unix)]
pub mod daemon;
#[cfg(unix)]
pub mod dbus;
pub mod elsewhere;
pub mod hostile;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod nodes;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

/// The `weft` binary of this workspace, built on first use when it is missing or older than the
/// sources it is built from (`cargo test` builds a package's binaries only for that package's
/// own tests, so an old one would otherwise be tested).
pub fn weft_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> → target/<profile>/weft
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
        let bin = profile_dir.join(format!("weft{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() || older_than_sources(&bin) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let mut cmd = Command::new(cargo);
            if release {
                cmd.args(["build", "--release", "-p", "weft-cli", "--bin", "weft"]);
            } else {
                // Features resolved as for the test run (dev-dependencies included): built with
                // `-p weft-cli` alone, ring, QUIC, libp2p and weft-core were compiled again with
                // weft-cli's own features, and again with the tests' at the next `cargo test`,
                // a minute or more of CI each way.
                cmd.args(["build", "--workspace", "--all-targets"]);
            }
            let status = cmd.status().expect("running cargo build for the weft binary");
            assert!(status.success(), "building the weft binary failed");
        }
        bin
    })
}

fn older_than_sources(bin: &Path) -> bool {
    fn newest(dir: &Path) -> std::time::SystemTime {
        let mut latest = std::time::SystemTime::UNIX_EPOCH;
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let time = if path.is_dir() {
                newest(&path)
            } else {
                entry.metadata().and_then(|m| m.modified()).unwrap_or(latest)
            };
            latest = latest.max(time);
        }
        latest
    }
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).unwrap_or(std::time::SystemTime::UNIX_EPOCH);
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ["cli/src", "core/src"].iter().any(|dir| newest(&workspace.join(dir)) > built)
}

/// One person's `weft` home.
#[derive(Clone)]
pub struct Home {
    pub dir: PathBuf,
    pub passphrase: String,
    /// How far ahead of the machine's clock this person's `weft` runs (`WEFT_CLOCK_OFFSET`).
    pub clock_offset: Option<String>,
}

impl Home {
    pub fn new(root: &Path, name: &str) -> Self {
        Home { dir: root.join(name), passphrase: format!("{name} passphrase"), clock_offset: None }
    }

    /// The same home, its `weft` run `days` days after now.
    pub fn days_later(&self, days: u32) -> Home {
        Home { clock_offset: Some(format!("{days}d")), ..self.clone() }
    }

    /// `weft --home DIR ARGS...` with the passphrase in the environment, to run or spawn.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(weft_binary());
        command
            .arg("--home")
            .arg(&self.dir)
            .args(args)
            .env("WEFT_PASSPHRASE", &self.passphrase)
            .env_remove("WEFT_HOME")
            // The tester's own ~/.config/weft/config.toml must not steer the tests.
            .env_remove("WEFT_CONFIG")
            .env("XDG_CONFIG_HOME", self.dir.with_extension("config"));
        match &self.clock_offset {
            Some(offset) => command.env(weft_core::clock::OFFSET_VAR, offset),
            None => command.env_remove(weft_core::clock::OFFSET_VAR),
        };
        command
    }

    /// Starts `weft daemon` on loopback (no mDNS, no Bluetooth), its output discarded.
    pub fn spawn_daemon(&self) -> std::process::Child {
        self.command(&["daemon", "--no-mdns", "--no-ble", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting weft daemon")
    }

    /// Waits until a node on this home serves its control socket.
    pub fn wait_for_socket(&self) {
        wait_until("the node's control socket", 30, || self.dir.join("weft.sock").exists());
    }

    /// Runs `weft --home DIR ARGS...` with the passphrase in the environment.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running weft")
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "weft {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

/// A `weft` process left running (`weft run`, `weft relay`), its output read line by line;
/// killed when dropped.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    /// `weft run` on loopback (no mDNS), with more arguments.
    pub fn start(home: &Home, args: &[&str]) -> Running {
        let mut all = vec!["run", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
        all.extend_from_slice(args);
        Running::spawn(home, &all)
    }

    pub fn spawn(home: &Home, args: &[&str]) -> Running {
        Running::spawn_with(home.command(args).stderr(Stdio::null()))
    }

    /// As [`Running::spawn`], its network's debug log written to `log`, for a test to show when
    /// it fails.
    pub fn spawn_logging(home: &Home, args: &[&str], log: &Path) -> Running {
        let file = std::fs::File::create(log).expect("creating the log");
        Running::spawn_with(
            home.command(args).env("RUST_LOG", "weft_core::net=debug").env("NO_COLOR", "1").stderr(file),
        )
    }

    fn spawn_with(command: &mut Command) -> Running {
        let mut child = command.stdout(Stdio::piped()).spawn().expect("starting weft run");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// The process id, to read its memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line containing `needle`, within 30 seconds.
    pub fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no line with {needle:?} within 30 s");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `alice` adds `bob` by link and `bob` accepts, by bundles carried both ways through `dir`:
/// contacts without a network.
pub fn contacts_by_bundle(dir: &Path, alice: &Home, bob: &Home) {
    let bob_name = bob.dir.file_name().and_then(|n| n.to_str()).expect("a home named after its owner");
    let alice_name = alice.dir.file_name().and_then(|n| n.to_str()).expect("a home named after its owner");
    alice.ok(&["contact", "add", bob.ok(&["id", "--link"]).trim()]);
    let bundle = dir.join(format!("{alice_name}-{bob_name}.weft"));
    let bundle = bundle.to_str().expect("a UTF-8 path");
    alice.ok(&["export", "--out", bundle]);
    bob.ok(&["import", bundle]);
    bob.ok(&["contact", "accept", alice_name]);
    bob.ok(&["export", "--out", bundle]);
    alice.ok(&["import", bundle]);
}

/// Copies a directory tree (a home, to start from the same state again); control sockets are
/// left behind.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating the copy");
    for entry in std::fs::read_dir(from).expect("reading the directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else if !entry.file_name().to_string_lossy().ends_with(".sock") {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copying a file");
        }
    }
}

/// Polls `ready` until it holds, failing the test with `what` after `secs` seconds.
pub fn wait_until(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what} did not come within {secs} s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
