//! `weft run` and `weft relay` through the real binary: homes, real TCP on loopback. Alice added
//! Bob's link and wrote before either node ran; when both run, Bob gets the request, accepts
//! it, and gets the message; other `weft` commands reach a running node through its control
//! socket.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use weft_tests::{Home, Running};

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
    let alice_run = Running::start(&alice, &["--bootstrap", &addr]);
    bob_run.wait_for("contact request from alice");
    // Nothing of a stranger's conversation is read before Bob accepts her (through his running
    // node's control socket); then her message comes by reconciliation.
    bob.ok(&["contact", "accept", "alice"]);
    let message = bob_run.wait_for("written while offline");
    assert!(message.contains("via libp2p"), "{message}");

    // Bob's home is held by his node; `weft send` goes through its control socket.
    let sent = bob.ok(&["send", "alice", "through the socket"]);
    assert!(sent.contains("through the running node"), "{sent}");
    let reply = alice_run.wait_for("through the socket");
    assert!(reply.contains("via libp2p"), "{reply}");
    let status: serde_json::Value = serde_json::from_str(&bob.ok(&["--json", "status"])).unwrap();
    assert_eq!(status["running"], true, "{status}");
    // Alice's sessions (her base, her rendezvous point's, her requests') each have a peer id.
    let peers = status["peers"].as_array().unwrap().len();
    assert!((1..=3).contains(&peers), "{status}");
    // A bad call gets a clear error and the exit code of what went wrong.
    let unknown = bob.run(&["send", "nobody", "hello"]);
    assert_eq!(unknown.status.code(), Some(5), "{}", String::from_utf8_lossy(&unknown.stderr));
}

#[test]
fn a_client_keeps_a_relay_and_reports_it() {
    let root = tempfile::tempdir().unwrap();
    let relay_home = Home::new(root.path(), "relay");
    let relay = Running::spawn(&relay_home, &["relay", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    let line = relay.wait_for("--relay /ip4/127.0.0.1/tcp/");
    let relay_addr = line.trim().trim_start_matches("--relay ").to_owned();
    let alice = Home::new(root.path(), "alice");
    alice.ok(&["init", "--name", "alice"]);
    let _alice_run = Running::start(&alice, &["--relay", &relay_addr]);
    relay.wait_for("connected to");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: serde_json::Value = serde_json::from_str(&alice.ok(&["--json", "status"])).unwrap();
        if status["relays"][0]["connected"] == true && status["relays"][0]["reserved"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "the relay never showed as connected and reserved: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Without its peer id, a relay address is refused with a hint.
    let bad = alice.run(&["run", "--relay", "/ip4/127.0.0.1/tcp/1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lacks the relay's /p2p/ID"));
}

#[test]
fn without_bluetooth_weft_run_says_so_once_and_runs_on_libp2p() {
    let root = tempfile::tempdir().unwrap();
    let home = Home::new(root.path(), "zed");
    home.ok(&["init", "--name", "zed"]);
    let mut child = home
        .command(&["run", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting weft run");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let listening = stdout.lines().map_while(Result::ok).any(|l| l.contains("listening on"));
    assert!(listening, "the node runs without Bluetooth");
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let warnings = stderr.lines().filter(|l| l.contains("Bluetooth mesh off")).count();
    // These machines have no Bluetooth; on one that has, the mesh starts and nothing is said.
    let has_bluetooth = std::path::Path::new("/sys/class/bluetooth").read_dir().is_ok_and(|mut d| d.next().is_some());
    if !has_bluetooth {
        assert_eq!(warnings, 1, "one clear warning: {stderr}");
        assert!(stderr.contains("running on libp2p only"));
    }
}

/// Sends `count` messages through the JSON-RPC socket of the node running on `home`.
fn send_through_socket(home: &Home, conversation: &str, count: usize) {
    use std::io::Write;
    let stream = std::os::unix::net::UnixStream::connect(home.dir.join("weft.sock")).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for i in 0..count {
        let request = serde_json::json!({
            "jsonrpc": "2.0", "id": i, "method": "send",
            "params": { "conversation": conversation, "text": format!("catch-up message {i}") },
        });
        writeln!(writer, "{request}").unwrap();
        let mut answer = String::new();
        reader.read_line(&mut answer).unwrap();
        assert!(answer.contains("\"result\""), "{answer}");
    }
}

#[test]
fn weft_sync_catches_up_and_exits_or_says_why_not() {
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = (Home::new(root.path(), "alice"), Home::new(root.path(), "bob"));
    alice.ok(&["init", "--name", "alice"]);
    bob.ok(&["init", "--name", "bob"]);
    weft_tests::contacts_by_bundle(root.path(), &alice, &bob);

    // Nobody to reach: a clear error, in good time.
    let alone = bob.run(&["sync", "--no-mdns", "--no-ble", "--listen", "/ip4/127.0.0.1/tcp/0", "--timeout", "2"]);
    assert_eq!(alone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&alone.stderr).contains("no peer reached in 2 s"));

    // Alice writes 300 messages while bob is away; bob's `weft sync` fetches them all and exits.
    let alice_run = Running::start(&alice, &[]);
    let addr = alice_run.wait_for("/ip4/127.0.0.1/tcp/").trim().to_owned();
    send_through_socket(&alice, "bob", 300);
    let sync =
        bob.ok(&["--json", "sync", "--no-mdns", "--no-ble", "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &addr]);
    let summary: serde_json::Value = serde_json::from_str(&sync).unwrap();
    assert_eq!((summary["caught_up"].clone(), summary["peers"].clone()), (true.into(), 1.into()), "{summary}");
    assert_eq!(summary["unread"], serde_json::json!([{ "conversation": "alice", "unread": 300 }]), "{summary}");
    assert!(bob.ok(&["log", "alice", "--limit", "1"]).contains("catch-up message 299"));
    assert!(!bob.dir.join("weft.sock").exists(), "the node stopped and took its socket with it");

    // With bob's daemon running, `weft sync` follows its catch-up rather than starting a node.
    let mut daemon = bob
        .command(&["daemon", "--no-mdns", "--no-ble", "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    bob.wait_for_socket();
    send_through_socket(&alice, "bob", 5);
    let followed: serde_json::Value = serde_json::from_str(&bob.ok(&["--json", "sync", "--timeout", "30"])).unwrap();
    assert_eq!(followed["caught_up"], true, "{followed}");
    // Caught up means it: the five are there (through the daemon's socket).
    let log = bob.ok(&["log", "alice", "--limit", "5"]);
    assert!((0..5).all(|i| log.contains(&format!("catch-up message {i}"))), "{log}");
    let _ = daemon.kill();
    let _ = daemon.wait();
}
