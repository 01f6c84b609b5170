//! A power cut: received envelopes are committed relaxed (`synchronous=NORMAL`: the write-ahead
//! log is not synced at their commits), so a power cut may lose the last of them (THREAT_MODEL,
//! "A received message may be lost to a power cut"). What the claim promises back is tested
//! here: the disk as a power cut leaves it (the log cut at its last sync, the shared-memory
//! index gone), and a peer's next reconciliation brings every lost message back, once.

use std::path::Path;
use std::time::Duration;

use weft_core::store::DB_FILE;
use weft_tests::copy_dir;
use weft_tests::nodes::{config, create, eventually, introduce, online, reopen, texts};

/// The write-ahead log's header: its salts change when SQLite restarts the log (after a
/// checkpoint), and a cut at an earlier length would then not be the earlier log.
fn wal_header(home: &Path) -> Vec<u8> {
    std::fs::read(home.join(format!("{DB_FILE}-wal"))).unwrap()[..32].to_vec()
}

fn wal_len(home: &Path) -> u64 {
    std::fs::metadata(home.join(format!("{DB_FILE}-wal"))).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_a_power_cut_took_come_back_with_the_next_reconciliation() {
    let root = tempfile::tempdir().unwrap();
    let alice = create(root.path(), "alice").await;
    let bob = create(root.path(), "bob").await;
    introduce(&alice, &bob).await;
    let (alice_net, alice_addr) = online(&alice, config(vec![], vec![])).await;
    let (bob_net, _) = online(&bob, config(vec![alice_addr.clone()], vec![])).await;

    for i in 0..5 {
        alice.send("bob".into(), format!("before {i}")).await.unwrap();
    }
    eventually("the first five", 60, || async { texts(&bob, "alice").await.len() == 5 }).await;
    // Bob writes: a durable commit, which syncs the log and everything in it.
    bob.send("alice".into(), "got them".into()).await.unwrap();
    let home = root.path().join("bob");
    let (synced_len, synced_header) = (wal_len(&home), wal_header(&home));

    for i in 0..5 {
        alice.send("bob".into(), format!("after {i}")).await.unwrap();
    }
    eventually("the next five", 60, || async { texts(&bob, "alice").await.len() == 11 }).await;
    assert!(wal_len(&home) > synced_len, "the later messages went to the log, after its last sync");
    assert_eq!(wal_header(&home), synced_header, "no checkpoint restarted the log in between");

    // The power cut: the disk as it is, but the log only as far as its last sync, and no
    // shared-memory index (it lived in memory). Bob comes back from that.
    let cut = root.path().join("bob-after-the-cut");
    copy_dir(&home, &cut);
    bob_net.stop();
    drop(bob);
    let wal = std::fs::OpenOptions::new().write(true).open(cut.join(format!("{DB_FILE}-wal"))).unwrap();
    wal.set_len(synced_len).unwrap();
    drop(wal);
    let _ = std::fs::remove_file(cut.join(format!("{DB_FILE}-shm")));
    std::fs::remove_dir_all(&home).unwrap();
    std::fs::rename(&cut, &home).unwrap();

    let bob = reopen(root.path(), "bob").await;
    let after_cut = texts(&bob, "alice").await;
    assert!(after_cut.len() < 11, "the cut took what came after the last sync: {after_cut:?}");
    assert!(after_cut.contains(&"bob: got them".to_string()), "what bob wrote was synced: {after_cut:?}");
    assert!((0..5).all(|i| after_cut.contains(&format!("alice: before {i}"))), "{after_cut:?}");
    let lost = 11 - after_cut.len();

    // The next reconciliation with alice brings them back, once each.
    let (bob_net, _) = online(&bob, config(vec![alice_addr], vec![])).await;
    eventually("the lost messages back", 60, || async { texts(&bob, "alice").await.len() == 11 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let back = texts(&bob, "alice").await;
    assert_eq!(back.len(), 11, "each once: {back:?}");
    assert!((0..5).all(|i| back.contains(&format!("alice: after {i}"))), "{back:?}");
    println!(
        "power cut: {lost} received messages lost with the log's unsynced tail; all back after one reconciliation"
    );
    bob_net.stop();
    alice_net.stop();
}
