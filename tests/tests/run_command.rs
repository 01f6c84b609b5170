//! `weft run` through the real binary: two homes, real TCP on loopback. Alice added Bob's link
//! and wrote before either node ran; when both run, Bob gets the request and the message.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weft_tests::{Home, weft_binary};

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(home: &Home, args: &[&str]) -> Running {
        let mut child = Command::new(weft_binary())
            .arg("--home")
            .arg(&home.dir)
            .arg("run")
            .args(["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(args)
            .env("WEFT_PASSPHRASE", &home.passphrase)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting weft run");
        let stdout = child.stdout.take().unwrap();
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

    /// The first line containing `needle`, within 30 seconds.
    fn wait_for(&self, needle: &str) -> String {
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

#[test]
fn two_weft_run_processes_exchange_a_request_and_a_message() {
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = (Home::new(root.path(), "alice"), Home::new(root.path(), "bob"));
    alice.ok(&["init", "--name", "alice"]);
    bob.ok(&["init", "--name", "bob"]);
    alice.ok(&["contact", "add", bob.ok(&["id", "--link"]).trim()]);
    alice.ok(&["send", "bob", "written while offline"]);

    let bob_run = Running::start(&bob, &[]);
    let line = bob_run.wait_for("/ip4/127.0.0.1/tcp/");
    let addr = line.trim().to_owned();
    let _alice_run = Running::start(&alice, &["--bootstrap", &addr]);
    bob_run.wait_for("contact request from alice");
    let message = bob_run.wait_for("written while offline");
    assert!(message.contains("via libp2p"), "{message}");
}
