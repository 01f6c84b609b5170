//! `weft chat` end to end in a real terminal (tmux): it draws, sends what is typed, shows a
//! message arriving live with its transport and our message's receipt, lets other commands
//! work while it runs, accepts a contact request with one key, survives a resize, and quits
//! cleanly; and over a mesh with no network (`--mesh-dir`), sends a file with `/file` and
//! speaks to everyone nearby with `/nearby`.
//!
//! It needs tmux, which a fresh machine with only Rust and Python may lack, so it is ignored by
//! the plain `cargo test`; `.ci/run` installs tmux and runs it with `--ignored`.
#![cfg(unix)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use weft_tests::{Home, weft_binary};

/// A private tmux server, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        let found = Command::new("tmux").arg("-V").output();
        assert!(found.is_ok_and(|o| o.status.success()), "this test needs tmux (Debian: apt-get install tmux)");
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Tmux { socket: format!("weft-test-{}-{n}", std::process::id()) }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("running tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "chat"]).stdout).into_owned()
    }

    /// Waits until the screen shows `needle`; returns the screen.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the chat never showed {needle:?}; it shows:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "chat"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success());
    }
}

impl Tmux {
    /// `weft chat bob` on `home` (no mDNS) with these flags, in a 110×24 terminal.
    fn start_chat(&self, home: &Home, flags: &str) {
        let chat = format!(
            "env WEFT_PASSPHRASE='{}' {} --home {} chat bob --no-mdns {flags}",
            home.passphrase,
            weft_binary().display(),
            home.dir.display()
        );
        assert!(self.tmux(&["new-session", "-d", "-s", "chat", "-x", "110", "-y", "24", &chat]).status.success());
    }

    /// Esc, and the chat's session ends.
    fn quit(&self) {
        self.keys(&["Escape"]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.tmux(&["has-session", "-t", "chat"]).status.success() {
            assert!(Instant::now() < deadline, "the chat did not quit:\n{}", self.screen());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Alice and Bob, contacts by bundle, so the chat starts with a conversation.
fn contacts(root: &std::path::Path) -> (Home, Home) {
    let (alice, bob) = (Home::new(root, "alice"), Home::new(root, "bob"));
    alice.ok(&["init", "--name", "alice"]);
    bob.ok(&["init", "--name", "bob"]);
    weft_tests::contacts_by_bundle(root, &alice, &bob);
    (alice, bob)
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs tmux: .ci/run installs it and runs this with --ignored"]
fn the_chat_sends_shows_live_messages_and_receipts_and_quits_cleanly() {
    let tmux = Tmux::new();
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = contacts(root.path());

    let _bob_daemon = Daemon(bob.spawn_daemon());
    bob.wait_for_socket();
    // Where bob's daemon listens, as it reports it (no port picked in advance and raced for).
    let status: serde_json::Value = serde_json::from_str(&bob.ok(&["--json", "status"])).unwrap();
    let bob_addr = status["listening"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .find(|a| a.starts_with("/ip4/127.0.0.1/tcp/"))
        .unwrap_or_else(|| panic!("bob's daemon listens on no loopback TCP address: {status}"))
        .to_owned();

    tmux.start_chat(&alice, &format!("--no-ble --listen /ip4/127.0.0.1/tcp/0 --bootstrap {bob_addr}"));
    let screen = tmux.wait_for("@bob");
    assert!(screen.contains("not verified"), "the contact's verification shows:\n{screen}");

    tmux.keys(&["hello from the chat", "Enter"]);
    tmux.wait_for("alice: hello from the chat");
    // Bob's daemon acknowledges it; the receipt comes back while the chat runs.
    tmux.wait_for("hello from the chat  [delivered]");

    // A message from bob appears live, with the transport that carried it.
    bob.ok(&["send", "alice", "hi alice"]);
    let screen = tmux.wait_for("bob: hi alice");
    assert!(screen.contains("(via libp2p)"), "{screen}");

    // Other commands work while the chat holds the home (through its socket).
    let log = alice.ok(&["log", "bob"]);
    assert!(log.contains("alice: hello from the chat") && log.contains("bob: hi alice"), "{log}");
    // Alice had the conversation open, so bob learns it was read.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !bob.ok(&["log", "alice"]).contains("hi alice  [read]") {
        assert!(Instant::now() < deadline, "bob never saw his message read:\n{}", bob.ok(&["log", "alice"]));
        std::thread::sleep(Duration::from_millis(200));
    }

    // A contact request arriving while the chat runs is accepted with one key.
    let carol = Home::new(root.path(), "carol");
    carol.ok(&["init", "--name", "carol"]);
    carol.ok(&["contact", "add", alice.ok(&["id", "--link"]).trim()]);
    let carol_bundle = root.path().join("carol.weft");
    carol.ok(&["export", "--out", carol_bundle.to_str().unwrap()]);
    alice.ok(&["import", carol_bundle.to_str().unwrap()]);
    tmux.wait_for("Ctrl-A accept carol");
    tmux.keys(&["C-a"]);
    tmux.wait_for("you and carol are contacts");
    let contacts = alice.ok(&["--json", "contact", "list"]);
    assert!(contacts.contains("\"carol\"") && !contacts.contains("incoming"), "{contacts}");
    tmux.keys(&["Up"]);
    tmux.wait_for("bob: hi alice");

    // A smaller window redraws with the newest message still in view.
    assert!(tmux.tmux(&["resize-window", "-t", "chat", "-x", "70", "-y", "12"]).status.success());
    tmux.wait_for("> ");
    tmux.wait_for("bob: hi alice");

    // Esc quits, the terminal is given back and the home is released.
    tmux.quit();
    assert!(!alice.dir.join("weft.sock").exists(), "the chat removed its socket");
    let status = alice.ok(&["--json", "status"]);
    assert!(status.contains("\"running\": false"), "{status}");
}

#[test]
#[ignore = "needs tmux: .ci/run installs it and runs this with --ignored"]
fn the_chat_sends_a_file_and_speaks_nearby_over_the_mesh() {
    let tmux = Tmux::new();
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = contacts(root.path());
    // One mesh over Unix sockets, and no libp2p path between the two (no mDNS, nothing dialled).
    let mesh = root.path().join("mesh");
    let mesh = mesh.to_str().unwrap();
    let _bob_daemon = weft_tests::daemon::Daemon::start_with(
        &bob,
        &["daemon", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--mesh-dir", mesh],
    );
    let map = root.path().join("gate map.png");
    std::fs::write(&map, (0..20_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>()).unwrap();

    tmux.start_chat(&alice, &format!("--listen /ip4/127.0.0.1/tcp/0 --mesh-dir {mesh}"));
    tmux.wait_for("@bob");

    // A file, its path in quotes (it has a space), with a caption.
    tmux.keys(&[&format!("/file \"{}\" the gates", map.display()), "Enter"]);
    tmux.wait_for("gate map.png");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !bob.ok(&["log", "alice"]).contains("gate map.png") {
        assert!(Instant::now() < deadline, "bob never got the file's message:\n{}", bob.ok(&["log", "alice"]));
        std::thread::sleep(Duration::from_millis(200));
    }

    // Said to everyone nearby, from the chat; and what bob says nearby shows in the chat.
    tmux.keys(&["/nearby lost a blue jacket", "Enter"]);
    tmux.wait_for("nearby · you");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !bob.ok(&["nearby", "show"]).contains("lost a blue jacket") {
        assert!(Instant::now() < deadline, "bob never read the nearby post:\n{}", bob.ok(&["nearby", "show"]));
        std::thread::sleep(Duration::from_millis(200));
    }
    bob.ok(&["nearby", "post", "found one at the bar"]);
    tmux.wait_for("found one at the bar");

    tmux.quit();
}
