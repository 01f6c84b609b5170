//! Issue 19, the panic wipe through the real `weft` binary: with the daemon running, `weft panic
//! --now` (no passphrase asked) erases the keys and the database, the daemon exits, and nothing
//! left opens, not even with the right passphrase; without `--now` nothing is erased.

use std::time::{Duration, Instant};

use weft_tests::Home;

#[test]
fn panic_erases_the_account_and_stops_the_running_node() {
    let root = tempfile::tempdir().unwrap();
    let alice = Home::new(root.path(), "alice");
    alice.ok(&["init", "--name", "alice"]);
    let bob = Home::new(root.path(), "bob");
    bob.ok(&["init", "--name", "bob"]);
    alice.ok(&["contact", "add", bob.ok(&["id", "--link"]).trim()]);
    alice.ok(&["send", "bob", "the list is in the blue folder"]);
    let mut daemon = alice.spawn_daemon();
    alice.wait_for_socket();

    // Alone it says what it would do, and does nothing.
    let asked = alice.run(&["panic"]);
    assert!(!asked.status.success());
    assert!(String::from_utf8_lossy(&asked.stderr).contains("nothing was erased"));
    assert!(alice.dir.join("weft.db").exists());

    // No passphrase: someone may be at the door.
    let started = Instant::now();
    let out = alice
        .command(&["--json", "panic", "--now"])
        .env_remove("WEFT_PASSPHRASE")
        .output()
        .expect("running weft panic");
    let took = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("weft panic --now took {took:?} (the process included); the wipe itself {} ms", report["elapsed_ms"]);

    // The daemon held the keys in memory: it is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let exited = loop {
        if let Some(status) = daemon.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if exited.is_none() {
        let _ = daemon.kill();
        panic!("the daemon kept running after the wipe");
    }
    // Nothing of weft's is left, and nothing opens with the right passphrase.
    for name in ["weft.db", "weft.db-wal", "weft.kdf", "weft.sock"] {
        assert!(!alice.dir.join(name).exists(), "{name} is still there");
    }
    let reopened = alice.run(&["id"]);
    assert!(!reopened.status.success(), "a wiped home opened");
}

/// The duress passphrase: typed where the passphrase is asked, it erases the account instead of
/// opening it, and the home then looks as if it never held one; the real passphrase is not
/// taken as a duress one, and until the duress one is typed, everything opens as before.
#[test]
fn a_duress_passphrase_erases_instead_of_opening() {
    let root = tempfile::tempdir().unwrap();
    let alice = Home::new(root.path(), "alice");
    alice.ok(&["init", "--name", "alice"]);
    let set =
        |duress: &str| alice.command(&["passphrase", "duress"]).env("WEFT_DURESS_PASSPHRASE", duress).output().unwrap();
    let same = set("alice passphrase");
    assert!(!same.status.success());
    assert!(String::from_utf8_lossy(&same.stderr).contains("that is the account's passphrase"));
    assert!(set("rain on the river").status.success());
    // Setting it again (the same one) erases nothing.
    assert!(set("rain on the river").status.success());
    assert!(alice.ok(&["id"]).contains("alice"), "the real passphrase opens as before");
    let wrong = alice.command(&["id"]).env("WEFT_PASSPHRASE", "not it").output().unwrap();
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("passphrase"), "a wrong one is only wrong");
    assert!(alice.dir.join("weft.db").exists());

    let forced = alice.command(&["id"]).env("WEFT_PASSPHRASE", "rain on the river").output().unwrap();
    assert!(!forced.status.success());
    let said = String::from_utf8_lossy(&forced.stderr).to_string();
    assert!(said.contains("no account") || said.contains("No account") || said.contains("weft init"), "{said}");
    for name in ["weft.db", "weft.kdf", "weft.duress"] {
        assert!(!alice.dir.join(name).exists(), "{name} is still there");
    }
    assert!(!alice.run(&["id"]).status.success(), "the real passphrase opens nothing now");
}
