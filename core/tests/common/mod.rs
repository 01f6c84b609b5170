//! What the Account-level scenarios share: people with seeded keys on a clock the test owns
//! (each reading moves it one millisecond, so every event has its own time), and bundles
//! carried by hand.
#![allow(dead_code)]

pub mod group;
pub mod members;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_core::account::Account;
use weft_core::crypto::SeededEntropy;
use weft_core::store::DatabaseKey;

pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

pub struct Person {
    pub account: Account,
    _dir: tempfile::TempDir,
}

impl Person {
    /// An account made otherwise (a linked device), with the directory that holds it.
    pub fn from_parts(account: Account, dir: tempfile::TempDir) -> Person {
        Person { account, _dir: dir }
    }

    /// The same home opened again, as after a restart (`seed`: the one it was made with).
    pub fn reopen(self, seed: u64, clock: &Arc<AtomicU64>) -> Person {
        let Person { account, _dir: dir } = self;
        drop(account);
        let c = clock.clone();
        let account = Account::open_with_key(
            dir.path(),
            &DatabaseKey::from_bytes([seed as u8; 32]),
            Box::new(SeededEntropy::new(seed + 500)),
            Box::new(move || c.fetch_add(1, Ordering::SeqCst)),
        )
        .unwrap();
        Person { account, _dir: dir }
    }
}

pub fn person(name: &str, seed: u64, clock: &Arc<AtomicU64>) -> Person {
    let dir = tempfile::tempdir().unwrap();
    let c = clock.clone();
    let account = Account::create_with_key(
        dir.path(),
        &DatabaseKey::from_bytes([seed as u8; 32]),
        Some(name),
        Box::new(SeededEntropy::new(seed)),
        Box::new(move || c.fetch_add(1, Ordering::SeqCst)),
    )
    .unwrap();
    Person { account, _dir: dir }
}

pub fn carry(from: &Person, to: &mut Person) -> weft_core::account::ImportReport {
    let bundle = from.account.export_bundle().unwrap();
    to.account.import_bundle(&bundle).unwrap()
}

/// `sender: body` of the text messages of a conversation, in its order.
pub fn texts(p: &Person, conversation: &str) -> Vec<String> {
    p.account
        .history(conversation, 1000)
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "text")
        .map(|m| format!("{}: {}", m.sender, m.body))
        .collect()
}

/// A group "trip" of alice (admin), bob and carol (seed 3), each a contact of alice, who both
/// joined.
pub fn trip(clock: &Arc<AtomicU64>) -> (Person, Person, Person) {
    let (mut alice, mut bob) = contacts(clock);
    let mut carol = person("carol", 3, clock);
    alice.account.add_contact(&carol.account.card().to_link(), None).unwrap();
    carry(&alice, &mut carol);
    carol.account.accept_contact("alice").unwrap();
    carry(&carol, &mut alice);
    alice.account.create_group("trip").unwrap();
    alice.account.invite("trip", "bob").unwrap();
    alice.account.invite("trip", "carol").unwrap();
    carry(&alice, &mut bob);
    carry(&alice, &mut carol);
    (alice, bob, carol)
}

/// Alice and Bob (seeds 1 and 2), contacts by bundles carried both ways.
pub fn contacts(clock: &Arc<AtomicU64>) -> (Person, Person) {
    let mut alice = person("alice", 1, clock);
    let mut bob = person("bob", 2, clock);
    alice.account.add_contact(&bob.account.card().to_link(), None).unwrap();
    carry(&alice, &mut bob);
    bob.account.accept_contact("alice").unwrap();
    carry(&bob, &mut alice);
    (alice, bob)
}
