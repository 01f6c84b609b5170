//! What the account benchmarks share: homes made with fixed keys, copied fresh for each round,
//! and the usual setup of two contacts, one of whom wrote many messages.

use std::path::{Path, PathBuf};

use weft_core::account::Account;
use weft_core::crypto::SeededEntropy;
use weft_core::store::DatabaseKey;

/// `name`'s account in `home`, its database keyed by `seed`.
pub fn account(home: &Path, name: &str, seed: u8) -> Account {
    Account::create_with_key(
        home,
        &DatabaseKey::from_bytes([seed; 32]),
        Some(name),
        Box::new(SeededEntropy::new(seed as u64)),
        weft_core::account::system_clock(),
    )
    .unwrap()
}

/// Opens a home made by [`account`] with `seed`.
pub fn reopen(home: &Path, seed: u8, entropy_seed: u64) -> Account {
    Account::open_with_key(
        home,
        &DatabaseKey::from_bytes([seed; 32]),
        Box::new(SeededEntropy::new(entropy_seed)),
        weft_core::account::system_clock(),
    )
    .unwrap()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Alice (seed 1) and Bob (seed 2) in `dir`, contacts (bob took alice's request and accepted
/// it: a stranger's messages open nothing), and `messages` messages from alice to bob. Returns
/// both homes and alice's bundle of them.
pub fn alice_wrote_to_bob(dir: &Path, messages: usize) -> (PathBuf, PathBuf, Vec<u8>) {
    let (alice_home, bob_home) = (dir.join("alice"), dir.join("bob"));
    let mut alice = account(&alice_home, "alice", 1);
    let mut bob = account(&bob_home, "bob", 2);
    alice.add_contact(&bob.card().to_link(), None).unwrap();
    bob.import_bundle(&alice.export_bundle().unwrap()).unwrap();
    bob.accept_contact("alice").unwrap();
    alice.import_bundle(&bob.export_bundle().unwrap()).unwrap();
    drop(bob);
    for i in 0..messages {
        alice.send("bob", &format!("message {i}: a line of ordinary length for a chat")).unwrap();
    }
    let bundle = alice.export_bundle().unwrap();
    (alice_home, bob_home, bundle)
}
