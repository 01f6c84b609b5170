//! Issue 19: files with the real `weft` binary over real TCP on loopback. A file sent with
//! `weft send --file` is fetched by `weft save` from the sender, or from a relay once the
//! sender is gone; a download killed half way (`kill -9`) goes on from what it stored.

use std::path::Path;

use serde_json::Value;
use weft_tests::daemon::{Daemon, Rpc};
use weft_tests::{Home, Running, contacts_by_bundle, wait_until};

const NET: [&str; 4] = ["--no-mdns", "--no-ble", "--listen", "/ip4/127.0.0.1/tcp/0"];

fn person(root: &Path, name: &str) -> Home {
    let home = Home::new(root, name);
    home.ok(&["init", "--name", name]);
    home
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// The id of the message of `conversation` that carries a file, as `weft log --json` gives it.
fn file_message(home: &Home, conversation: &str) -> Option<String> {
    let log: Vec<Value> = serde_json::from_str(&home.ok(&["--json", "log", conversation])).ok()?;
    log.iter().find(|m| !m["attachment"].is_null()).and_then(|m| m["id"].as_str()).map(str::to_owned)
}

/// `weft sync` with these peers until the message with the file is here; its id.
fn sync_until_the_message(home: &Home, from: &str, peers: &[&str]) -> String {
    let mut args = vec!["sync"];
    args.extend(NET);
    args.extend(["--timeout", "60"]);
    args.extend(peers);
    home.ok(&args);
    file_message(home, from).expect("the message with the file came")
}

#[test]
fn a_file_sent_with_send_file_is_saved_whole_from_the_sender() {
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = (person(root.path(), "alice"), person(root.path(), "bob"));
    contacts_by_bundle(root.path(), &alice, &bob);
    let photo = file(1_500_000);
    let path = root.path().join("festival map.png");
    std::fs::write(&path, &photo).unwrap();
    let sent: Value = serde_json::from_str(&alice.ok(&[
        "--json",
        "send",
        "bob",
        "the gates are here",
        "--file",
        path.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(sent["attachment"]["name"], "festival map.png");
    assert_eq!(sent["attachment"]["mime"], "image/png");

    let alice_run = Running::start(&alice, &["--no-ble"]);
    let addr = alice_run.wait_for("/ip4/127.0.0.1/tcp/").trim().to_owned();
    let id = sync_until_the_message(&bob, "alice", &["--bootstrap", &addr]);
    let shown = bob.ok(&["log", "alice"]);
    assert!(shown.contains("[file festival map.png, 1.4 MiB"), "{shown}");
    let out = root.path().join("saved");
    std::fs::create_dir(&out).unwrap();
    let mut args = vec!["--json", "save", &id[..12], "--out", out.to_str().unwrap(), "--timeout", "120"];
    args.extend(NET);
    args.extend(["--bootstrap", &addr]);
    let saved: Value = serde_json::from_str(&bob.ok(&args)).unwrap();
    assert_eq!(saved["complete"], true, "{saved}");
    assert_eq!(std::fs::read(out.join("festival map.png")).unwrap(), photo);
}

#[test]
fn a_file_is_saved_from_a_relay_after_its_sender_left() {
    let root = tempfile::tempdir().unwrap();
    let relay = Running::spawn(&Home::new(root.path(), "relay"), &["relay", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    let relay_addr = relay.wait_for("--relay /ip4/127.0.0.1/tcp/").trim().trim_start_matches("--relay ").to_owned();
    let (alice, bob) = (person(root.path(), "alice"), person(root.path(), "bob"));
    contacts_by_bundle(root.path(), &alice, &bob);
    let photo = file(700_000);
    let path = root.path().join("notes.pdf");
    std::fs::write(&path, &photo).unwrap();
    alice.ok(&["send", "bob", "--file", path.to_str().unwrap()]);
    {
        // Alice is online with the relay long enough for it to take the message and the file
        // (it follows what its peers follow, and fetches what it lacks), then leaves.
        let _alice_run = Running::start(&alice, &["--no-ble", "--relay", &relay_addr]);
        wait_until("the outbox to empty", 60, || {
            let status: Value = serde_json::from_str(&alice.ok(&["--json", "status"])).unwrap_or_default();
            status["outbox"] == 0
        });
        std::thread::sleep(std::time::Duration::from_secs(8));
    }
    let id = sync_until_the_message(&bob, "alice", &["--relay", &relay_addr]);
    let out = root.path().join("notes copy.pdf");
    let mut args = vec!["save", &id, "--out", out.to_str().unwrap(), "--timeout", "120"];
    args.extend(NET);
    args.extend(["--relay", &relay_addr]);
    bob.ok(&args);
    assert_eq!(std::fs::read(&out).unwrap(), photo, "the relay served the file whole");
}

#[test]
fn a_download_killed_half_way_goes_on_from_what_it_stored() {
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = (person(root.path(), "alice"), person(root.path(), "bob"));
    contacts_by_bundle(root.path(), &alice, &bob);
    // Over 25 MiB: not fetched until asked for, so the test decides when it starts.
    let big = file(26 << 20);
    let path = root.path().join("film.mp4");
    std::fs::write(&path, &big).unwrap();
    alice.ok(&["send", "bob", "--file", path.to_str().unwrap()]);
    let alice_run = Running::start(&alice, &["--no-ble"]);
    let addr = alice_run.wait_for("/ip4/127.0.0.1/tcp/").trim().to_owned();
    let id = sync_until_the_message(&bob, "alice", &["--bootstrap", &addr]);

    // Bob's daemon fetches it; it is killed as soon as some of it is stored.
    let daemon_args = ["daemon", "--no-mdns", "--no-ble", "--listen", "/ip4/127.0.0.1/tcp/0", "--bootstrap", &addr];
    let have = |rpc: &mut Rpc| rpc.ok("attachment", serde_json::json!({ "message": id }))["have"].as_u64().unwrap();
    let before_kill = {
        let _daemon = Daemon::start_with(&bob, &daemon_args);
        let mut rpc = Rpc::connect(&bob.dir).unwrap();
        let mut seen = 0;
        wait_until("part of the file to be stored", 120, || {
            seen = have(&mut rpc);
            seen > 20
        });
        seen
        // Dropped: killed (SIGKILL), as a crash would.
    };
    let total = {
        let daemon = Daemon::start_with(&bob, &daemon_args);
        let mut rpc = Rpc::connect(&bob.dir).unwrap();
        let after_restart = have(&mut rpc);
        assert!(
            after_restart >= before_kill,
            "{after_restart} stored after the restart, {before_kill} before the kill"
        );
        wait_until("the rest of the file", 240, || {
            let a = rpc.ok("attachment", serde_json::json!({ "message": id }));
            a["complete"] == true
        });
        let total = rpc.ok("attachment", serde_json::json!({ "message": id }))["total"].as_u64().unwrap();
        drop(daemon);
        total
    };
    assert!(before_kill < total, "it was killed before it was whole");
    let out = root.path().join("film copy.mp4");
    bob.ok(&["save", &id, "--out", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), big);
}
