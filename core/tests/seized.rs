//! Issue 13, findings 4 and 5: whoever records every envelope and later seizes a phone, or
//! copies a phone once and then only listens. Each test plays that adversary against the group
//! machine with everything the device held: its database's group state, its chains, its device
//! keys and prekeys; and fails if the adversary reads what it must not.

mod common;

use std::collections::BTreeSet;

use common::DAY_MS;
use common::group::{NOW, Receiver, device, envelopes};
use weft_core::crypto::SeededEntropy;
use weft_core::envelope::Envelope;
use weft_core::group::{Action, Event, Group, LocalDevice, PeerChain};
use weft_core::identity::{DeviceKeys, PrekeyRing};

/// alice (admin), bob and carol, each holding everyone's chain; every envelope recorded.
struct World {
    people: Vec<Receiver>,
    rng: SeededEntropy,
    capture: Vec<Envelope>,
}

fn world() -> World {
    let mut rng = SeededEntropy::new(77);
    let (a, b, c) = (device(1), device(2), device(3));
    let mut ga = Group::create(&a, "seized", NOW, &mut rng).unwrap();
    let mut capture = Vec::new();
    for who in [&b, &c] {
        ga.note_prekey(who.prekeys.current());
        let add = Action::Add { member: who.account(), name: None, devices: vec![who.cert.clone()], admin: false };
        capture.extend(envelopes(ga.change_membership(&a, add, NOW, &mut rng).unwrap()));
    }
    let wb = ga.welcome(&a, &b.account(), NOW, &mut rng).unwrap();
    let wc = ga.welcome(&a, &c.account(), NOW, &mut rng).unwrap();
    let gb = Group::from_welcome(&b, &wb, &a.cert, NOW).unwrap();
    let gc = Group::from_welcome(&c, &wc, &a.cert, NOW).unwrap();
    let mut w = World { people: vec![Receiver::new(a, ga), Receiver::new(b, gb), Receiver::new(c, gc)], rng, capture };
    for who in 1..3 {
        let hello = {
            let r = &mut w.people[who];
            envelopes(r.group.announce(&r.me, NOW, &mut w.rng).unwrap())
        };
        w.publish(who, hello);
    }
    w
}

impl World {
    fn publish(&mut self, from: usize, sent: Vec<Envelope>) {
        for e in &sent {
            for (i, r) in self.people.iter_mut().enumerate() {
                if i != from {
                    r.deliver(e).unwrap();
                }
            }
        }
        self.capture.extend(sent);
    }

    fn say(&mut self, who: usize, text: &str) {
        let sent = {
            let r = &mut self.people[who];
            envelopes(r.group.send_text(&r.me, text, NOW, &mut self.rng).unwrap())
        };
        self.publish(who, sent);
    }

    fn update(&mut self, who: usize) {
        let sent = {
            let r = &mut self.people[who];
            envelopes(r.group.update(&r.me, NOW, &mut self.rng).unwrap())
        };
        self.publish(who, sent);
    }

    fn everyone_updates(&mut self) {
        for who in 0..self.people.len() {
            self.update(who);
        }
    }

    fn texts_read_by(&self, who: usize) -> BTreeSet<String> {
        self.people[who].history().into_iter().map(|(_, _, t)| t).collect()
    }
}

/// Everything a device holds, as a thief copies it: the group's stored state, its chains (one
/// row each in the store), its device keys and its prekeys.
struct Snapshot {
    state: Vec<u8>,
    chains: Vec<((weft_core::identity::DeviceId, u32), PeerChain)>,
    cert: weft_core::identity::DeviceCert,
    sign: [u8; 32],
    dh: [u8; 32],
    prekeys: Vec<u8>,
}

impl Snapshot {
    fn of(r: &mut Receiver) -> Self {
        // The receiver has never handed its chains to a store: every chain it holds is "dirty".
        let chains: Vec<((weft_core::identity::DeviceId, u32), PeerChain)> =
            r.group.take_dirty_chains().into_iter().filter_map(|(k, c)| c.map(|c| (k, c))).collect();
        for (k, c) in &chains {
            r.group.restore_chain(k.0, k.1, PeerChain::clone(c));
        }
        Snapshot {
            state: r.group.encode_state(),
            chains,
            cert: r.me.cert.clone(),
            sign: *r.me.keys.sign_secret(),
            dh: *r.me.keys.dh_secret_bytes(),
            prekeys: r.me.prekeys.encode(),
        }
    }

    fn device(&self) -> LocalDevice {
        let keys = DeviceKeys::from_secrets(&self.sign, &self.dh);
        let prekeys = PrekeyRing::decode(&self.prekeys, &keys).unwrap();
        LocalDevice { cert: self.cert.clone(), keys, prekeys }
    }
}

/// The adversary tries everything the snapshot holds against every recorded envelope, again
/// and again while it learns something: once with the chains as the device held them, once
/// without (so that a key share it can still open gives a chain from its start).
fn adversary_reads(snapshot: &Snapshot, capture: &[Envelope]) -> BTreeSet<String> {
    let mut read = BTreeSet::new();
    for with_chains in [true, false] {
        let me = snapshot.device();
        let mut group = Group::decode_state(&snapshot.state).unwrap();
        if with_chains {
            for ((device, generation), chain) in &snapshot.chains {
                group.restore_chain(*device, *generation, PeerChain::clone(chain));
            }
        }
        let mut applied = BTreeSet::new();
        loop {
            let mut learned = false;
            for e in capture {
                if applied.contains(&e.id()) {
                    continue;
                }
                let epochs: Vec<[u8; 32]> = group.epochs().map(|e| e.id).collect();
                for epoch in epochs {
                    let Ok(opened) = group.open(&me, e, &epoch) else { continue };
                    applied.insert(e.id());
                    match group.accept(&me, opened) {
                        Ok(Event::Message { text, .. }) => {
                            read.insert(text);
                        }
                        Ok(_) => learned = true,
                        Err(_) => {}
                    }
                    break;
                }
            }
            if !learned {
                break;
            }
        }
    }
    read
}

/// Record-then-seize: four days of conversation with the daily updates, then bob's phone is
/// taken with everything on it. Against every envelope ever sent, it opens nothing bob had
/// read: each message key was dropped as its chain moved on, and every key share bob opened was
/// sealed to a key of his that is deleted (his channel keys once answered twice over, his
/// first prekey once past its grace).
#[test]
fn a_seized_phone_reads_nothing_it_had_read() {
    let mut w = world();
    for day in 0..4 {
        for who in 0..3 {
            for i in 0..3 {
                w.say(who, &format!("day {day}: {who} says {i}"));
            }
        }
        w.everyone_updates();
    }
    w.everyone_updates();
    w.everyone_updates();
    let bob = &mut w.people[1];
    for day in [7, 22] {
        bob.me.prekeys.rotate_if_due(&bob.me.keys, NOW + day * DAY_MS, &mut w.rng).unwrap();
    }
    let others_said: BTreeSet<String> = w.texts_read_by(1).into_iter().filter(|t| !t.contains(": 1 says")).collect();
    assert_eq!(others_said.len(), 4 * 2 * 3, "bob read everything alice and carol said");

    let seized = Snapshot::of(&mut w.people[1]);
    let read = adversary_reads(&seized, &w.capture);
    assert!(read.is_empty(), "the seized phone opened {read:?}");
}

/// Seized right after reading, the phone opens nothing it read either: every key a member
/// handed a share to was used once and deleted as the share opened.
#[test]
fn a_phone_seized_right_after_reading_reads_nothing_it_read() {
    let mut w = world();
    w.say(0, "just now");
    w.say(2, "me too");
    assert_eq!(w.texts_read_by(1).len(), 2);
    let seized = Snapshot::of(&mut w.people[1]);
    let read = adversary_reads(&seized, &w.capture);
    assert!(read.is_empty(), "the seized phone opened {read:?}");
}

/// The window forward secrecy leaves, and that the adversary here is able: carol hands bob
/// three chains before bob answers; the third is sealed to bob's prekey, which every sender
/// shares, so bob keeps it. A thief who takes bob's phone then reads that chain; once the
/// prekey is past its grace, nothing.
#[test]
fn a_share_sealed_to_a_prekey_is_open_to_a_thief_until_the_prekey_is_deleted() {
    let mut w = world();
    for _ in 0..3 {
        w.update(2);
    }
    w.say(2, "on the third chain");
    let seized = Snapshot::of(&mut w.people[1]);
    let read = adversary_reads(&seized, &w.capture);
    assert_eq!(read.into_iter().collect::<Vec<_>>(), ["on the third chain"]);

    let bob = &mut w.people[1];
    for day in [7, 22] {
        bob.me.prekeys.rotate_if_due(&bob.me.keys, NOW + day * DAY_MS, &mut w.rng).unwrap();
    }
    let seized = Snapshot::of(&mut w.people[1]);
    assert!(adversary_reads(&seized, &w.capture).is_empty());
}

/// Post-compromise: bob's phone is copied once; the copy then listens to everything. It reads
/// what is written until bob's next update, and nothing written after every member processed it,
/// by anyone: alice and carol start new chains that only bob's fresh keys open, and bob's own
/// new chain is fresh randomness.
#[test]
fn a_copied_phone_reads_nothing_after_its_update() {
    let mut w = world();
    for who in 0..3 {
        w.say(who, &format!("before, from {who}"));
    }
    let copy = Snapshot::of(&mut w.people[1]);
    w.say(0, "after the copy, before the update");
    w.update(1);
    for round in 0..3 {
        for who in 0..3 {
            w.say(who, &format!("healed {round} from {who}"));
        }
    }
    let read = adversary_reads(&copy, &w.capture);
    assert!(read.contains("after the copy, before the update"), "the copy works until the update: {read:?}");
    let healed: Vec<_> = read.iter().filter(|t| t.starts_with("healed")).collect();
    assert!(healed.is_empty(), "the copy read after the update: {healed:?}");
    for who in 0..3 {
        let seen = w.texts_read_by(who).into_iter().filter(|t| t.starts_with("healed")).count();
        assert_eq!(seen, 3 * 2, "member {who} reads the others after the update");
    }
}

/// The same, for real: bob's home (its SQLCipher file, write-ahead log and key) is copied, and
/// the copy reads every bundle alice writes after. It reads alice's messages until bob's update
/// reaches her, and none after: the 1:1 conversation heals too.
#[test]
fn a_copied_home_reads_nothing_after_an_update_in_the_one_to_one() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use common::{carry, contacts, texts};

    let clock = Arc::new(AtomicU64::new(NOW));
    let (mut alice, mut bob) = contacts(&clock);
    alice.account.send("bob", "before the copy").unwrap();
    carry(&alice, &mut bob);
    bob.account.send("alice", "hi").unwrap();
    carry(&bob, &mut alice);

    let copy = copy_home(&bob);
    alice.account.send("bob", "after the copy, before the update").unwrap();
    assert_eq!(bob.account.update_keys(None).unwrap(), 1);
    carry(&bob, &mut alice);
    alice.account.send("bob", "after the update").unwrap();
    carry(&alice, &mut bob);
    assert!(texts(&bob, "alice").iter().any(|t| t.ends_with("after the update")), "bob reads alice");

    let mut thief = open_copy(&copy, &clock);
    thief.import_bundle(&alice.account.export_bundle().unwrap()).unwrap();
    let read: Vec<String> =
        thief.history("alice", 100).unwrap().into_iter().filter(|m| m.kind == "text").map(|m| m.body).collect();
    assert!(read.iter().any(|t| t == "after the copy, before the update"), "the copy works: {read:?}");
    assert!(!read.iter().any(|t| t == "after the update"), "the copy read after the update: {read:?}");
}

/// An update on demand also replaces the prekey, which a copy of the phone holds: a member who
/// has used both keys bob handed and falls back to bob's prekey seals to the new one, and the
/// copy reads nothing.
#[test]
fn an_update_on_demand_replaces_the_prekey_a_copy_holds() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use common::{carry, contacts, texts};

    let clock = Arc::new(AtomicU64::new(NOW));
    let (mut alice, mut bob) = contacts(&clock);
    let copy = copy_home(&bob);
    bob.account.update_keys(None).unwrap();
    carry(&bob, &mut alice);
    // Three updates before bob answers: the third share goes to bob's prekey.
    for _ in 0..3 {
        alice.account.update_keys(Some("bob")).unwrap();
    }
    alice.account.send("bob", "sealed past the handed keys").unwrap();
    carry(&alice, &mut bob);
    assert!(texts(&bob, "alice").iter().any(|t| t.ends_with("sealed past the handed keys")));

    let mut thief = open_copy(&copy, &clock);
    thief.import_bundle(&alice.account.export_bundle().unwrap()).unwrap();
    let read: Vec<String> = thief.history("alice", 100).unwrap().into_iter().map(|m| m.body).collect();
    assert!(!read.iter().any(|t| t == "sealed past the handed keys"), "the copy read {read:?}");
}

/// Updates go out by themselves once a day in every conversation, without the user asking.
#[test]
fn updates_go_out_once_a_day_by_themselves() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let clock = Arc::new(AtomicU64::new(NOW));
    let (_alice, mut bob) = common::contacts(&clock);
    bob.account.follow_the_day();
    let before = bob.account.outbox_len().unwrap();
    clock.fetch_add(DAY_MS, Ordering::SeqCst);
    bob.account.follow_the_day();
    let after_a_day = bob.account.outbox_len().unwrap();
    assert_eq!(after_a_day, before + 1, "one update in the one conversation");
    bob.account.follow_the_day();
    assert_eq!(bob.account.outbox_len().unwrap(), after_a_day, "once a day, not at every turn");
}

/// A copy of a person's home as a thief takes it: the database file, its write-ahead log, and
/// (below) the key.
fn copy_home(p: &common::Person) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(p.account.home()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_file() && !name.ends_with(".lock") && !name.ends_with(".sock") {
            std::fs::copy(&path, copy.path().join(name)).unwrap();
        }
    }
    copy
}

/// Opens bob's copied home with bob's key (seed 2), on the test's clock.
fn open_copy(
    copy: &tempfile::TempDir,
    clock: &std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> weft_core::account::Account {
    let c = clock.clone();
    weft_core::account::Account::open_with_key(
        copy.path(),
        &weft_core::store::DatabaseKey::from_bytes([2; 32]),
        Box::new(SeededEntropy::new(999)),
        Box::new(move || c.load(std::sync::atomic::Ordering::SeqCst)),
    )
    .unwrap()
}
