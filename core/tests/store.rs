//! The encrypted store: wrong passphrases, newer schemas, erased keys, and bad input that must
//! leave the file as it was.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_core::Error;
use weft_core::account::Account;
use weft_core::crypto::{Entropy, SeededEntropy};
use weft_core::envelope::Envelope;
use weft_core::group::{Group, LocalDevice, chain_step};
use weft_core::identity::AccountKey;
use weft_core::store::{DB_FILE, DatabaseKey, Rows, Store};

const NOW: u64 = 1_750_000_000_000;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An account in `dir` keyed with `key`, on `clock` (each reading moves it a millisecond).
fn account(dir: &std::path::Path, key: DatabaseKey, seed: u64, name: &str, clock: &Arc<AtomicU64>) -> Account {
    let c = clock.clone();
    Account::create_with_key(
        dir,
        &key,
        Some(name),
        Box::new(SeededEntropy::new(seed)),
        Box::new(move || c.fetch_add(1, Ordering::SeqCst)),
    )
    .unwrap()
}

fn file_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for name in [DB_FILE.to_string(), format!("{DB_FILE}-wal"), format!("{DB_FILE}-journal")] {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            all.extend(b);
        }
    }
    all
}

#[test]
fn wrong_passphrase_is_a_clear_error_and_overwrites_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let account = Account::create(&home, "right horse battery", Some("alice")).unwrap();
    let link = account.card().to_link();
    drop(account);
    let before = std::fs::read(home.join(DB_FILE)).unwrap();
    match Account::open(&home, "wrong") {
        Err(Error::WrongPassphrase(_)) => {}
        other => panic!("expected WrongPassphrase, got {:?}", other.err()),
    }
    assert_eq!(before, std::fs::read(home.join(DB_FILE)).unwrap());
    assert!(matches!(Account::create(&home, "x", Some("eve")), Err(Error::AlreadyExists(_))));
    let again = Account::open(&home, "right horse battery").unwrap();
    assert_eq!(again.card().to_link(), link);
}

#[test]
fn the_file_is_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let mut account = Account::create(dir.path(), "pass", Some("a-very-recognisable-name")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let friend = Account::create(other.path(), "pass", Some("friend")).unwrap();
    account.add_contact(&friend.card().to_link(), Some("a-contact-called-zebulon")).unwrap();
    account.send("a-contact-called-zebulon", "a very secret message body").unwrap();
    let (account_key, device) = (account.account_public(), account.device_id());
    drop(account);
    let raw = file_bytes(dir.path());
    assert!(!contains(&raw, b"SQLite format 3"));
    for needle in [
        &b"a-very-recognisable-name"[..],
        b"a-contact-called-zebulon",
        b"a very secret message body",
        &account_key,
        &device,
        &friend.account_public(),
    ] {
        assert!(!contains(&raw, needle), "found {needle:?} in the file");
    }
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = DatabaseKey::from_bytes([7; 32]);
    let path = dir.path().join(DB_FILE);
    let store = Store::create(&path, &key).unwrap();
    store.read().pragma_update(None, "user_version", 999).unwrap();
    drop(store);
    match Store::open(&path, &key) {
        Err(Error::SchemaTooNew { found: 999, .. }) => {}
        other => panic!("expected SchemaTooNew, got {:?}", other.err()),
    }
}

fn device(seed: u64) -> LocalDevice {
    let mut rng = SeededEntropy::new(seed);
    LocalDevice::generate(&AccountKey::generate(&mut rng).unwrap(), 0, &mut rng).unwrap()
}

/// Forward secrecy on disk: once a message is read, its key and the chain key it came from
/// are nowhere in the database file. Checked on an unencrypted store, so the search sees what
/// encryption would otherwise hide.
#[test]
fn used_chain_keys_are_gone_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = SeededEntropy::new(5);
    let (a, b) = (device(1), device(2));
    let mut alice = Group::pair(&a, b.cert.account, &[9; 32], NOW);
    let mut bob = Group::pair(&b, a.cert.account, &[9; 32], NOW);
    let first = alice.ensure_own_chain(NOW, &mut rng).unwrap().clone();
    let ck0 = *first.chain_key;
    bob.learn_device(&a.cert).unwrap();
    bob.learn_chain(a.cert.device, first.generation, first.next_index, ck0);

    let path = dir.path().join(DB_FILE);
    let mut store = Store::create(&path, &DatabaseKey::plaintext_for_tests()).unwrap();
    store.write(|tx| tx.save_group(&mut bob)).unwrap();
    store.checkpoint().unwrap();
    assert!(contains(&file_bytes(dir.path()), &ck0), "the search must be able to see a stored key");

    let epoch = bob.current_epoch().unwrap().id;
    let mut message_keys = Vec::new();
    let mut ck = ck0;
    for i in 0..3 {
        let (mk, next) = chain_step(&ck);
        message_keys.push(*mk);
        ck = *next;
        let sealed = alice.send_text(&a, &format!("message {i}"), NOW, &mut rng).unwrap();
        for s in sealed {
            let opened = bob.open(&b, &s.envelope, &epoch).unwrap();
            bob.accept(&b, opened).unwrap();
            store.write(|tx| tx.save_group(&mut bob)).unwrap();
        }
    }
    drop(store);
    let raw = file_bytes(dir.path());
    assert!(contains(&raw, &ck), "the current chain key is stored");
    assert!(!contains(&raw, &ck0), "the first chain key is erased");
    for (i, mk) in message_keys.iter().enumerate() {
        assert!(!contains(&raw, mk), "message key {i} is erased");
    }
}

fn count_rows(account_home: &std::path::Path) -> (Vec<u8>, i64) {
    let store = Store::open(&account_home.join(DB_FILE), &DatabaseKey::from_bytes([1; 32])).unwrap();
    let n: i64 = store
        .read()
        .query_row("SELECT (SELECT count(*) FROM envelopes) + (SELECT count(*) FROM messages)", [], |r| r.get(0))
        .unwrap();
    let groups: Vec<u8> = store.read().load_groups().unwrap().iter().flat_map(|g| g.encode_state()).collect();
    (groups, n)
}

/// Envelopes that are truncated, oversized, of an unknown version, for an unknown topic,
/// replayed or tampered with: a typed error each, and the store is unchanged.
#[test]
fn bad_envelopes_change_nothing() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let make = |dir: &std::path::Path, seed: u8, name: &str| {
        account(dir, DatabaseKey::from_bytes([seed; 32]), seed as u64, name, &clock)
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut alice = make(da.path(), 2, "alice");
    let mut bob = make(db.path(), 1, "bob");
    alice.add_contact(&bob.card().to_link(), None).unwrap();
    alice.send("bob", "one").unwrap();
    bob.import_bundle(&alice.export_bundle().unwrap()).unwrap();
    bob.accept_contact("alice").unwrap();
    bob.import_bundle(&alice.export_bundle().unwrap()).unwrap();
    alice.send("bob", "two").unwrap();
    let bundle = weft_core::bundle::Bundle::decode(&alice.export_bundle().unwrap()).unwrap().0;
    let fresh = bundle.envelopes.last().unwrap().clone();
    let replayed = bundle.envelopes.first().unwrap().clone();
    drop(bob);
    let before = count_rows(db.path());
    let mut bob = Account::open_with_key(
        db.path(),
        &DatabaseKey::from_bytes([1; 32]),
        Box::new(SeededEntropy::new(9)),
        Box::new(move || NOW),
    )
    .unwrap();

    let mut tampered = fresh.as_bytes().to_vec();
    tampered[100] ^= 4;
    let mut unknown_topic = fresh.as_bytes().to_vec();
    unknown_topic[3] ^= 1;
    assert!(matches!(Envelope::parse(fresh.as_bytes()[..200].to_vec()), Err(Error::Truncated { .. })));
    assert!(matches!(Envelope::parse(vec![1; 70_000]), Err(Error::TooLong { .. })));
    let mut v2 = fresh.as_bytes().to_vec();
    v2[0] = 2;
    assert!(matches!(Envelope::parse(v2), Err(Error::UnsupportedVersion { .. })));
    assert!(matches!(bob.receive_envelope(Envelope::parse(tampered).unwrap()), Err(Error::DecryptionFailed)));
    assert!(matches!(bob.receive_envelope(Envelope::parse(unknown_topic).unwrap()), Err(Error::UnknownTopic)));
    assert!(matches!(bob.receive_envelope(replayed), Err(Error::Duplicate)));
    let mut random = vec![1u8; 256];
    SeededEntropy::new(3).fill(&mut random[1..]).unwrap();
    assert!(bob.receive_envelope(Envelope::parse(random).unwrap()).is_err());
    assert!(bob.import_bundle(b"WEFTBNDL garbage").is_err());
    drop(bob);
    assert_eq!(count_rows(db.path()), before);
}

/// Many keyed stores created and dropped at once on several threads (as nodes start and stop
/// in parallel tests and in an app) all open: keying never fails for reasons of its own.
#[test]
fn keyed_stores_open_while_others_open_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                for i in 0..60 {
                    let path = dir.join(format!("{t}-{i}.db"));
                    let store = Store::create(&path, &DatabaseKey::from_bytes([t as u8 + 1; 32]));
                    if let Err(e) = store {
                        panic!("store {t}-{i}: {e}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Issue 13, retention: a conversation that keeps messages a day deletes older ones when the
/// day turns, and their text leaves the file (secure delete, and the write-ahead log folded
/// back in), not only the tables.
#[test]
fn messages_past_their_retention_leave_the_file() {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    let clock = Arc::new(AtomicU64::new(NOW));
    let make = |dir: &std::path::Path, seed: u64, name: &str| {
        account(dir, DatabaseKey::plaintext_for_tests(), seed, name, &clock)
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut alice = make(da.path(), 1, "alice");
    let mut bob = make(db.path(), 2, "bob");
    alice.add_contact(&bob.card().to_link(), None).unwrap();
    bob.import_bundle(&alice.export_bundle().unwrap()).unwrap();
    bob.accept_contact("alice").unwrap();
    assert_eq!(bob.retention("alice").unwrap(), None, "kept for ever unless asked");
    bob.set_retention("alice", Some(DAY_MS)).unwrap();

    let secret = "meet at the old mill, north door";
    alice.send("bob", secret).unwrap();
    bob.import_bundle(&alice.export_bundle().unwrap()).unwrap();
    bob.send("alice", "the usual place it is").unwrap();
    assert_eq!(bob.history("alice", 10).unwrap().iter().filter(|m| m.kind == "text").count(), 2);
    assert!(contains(&file_bytes(db.path()), secret.as_bytes()), "the search must see a stored body");

    clock.fetch_add(2 * DAY_MS, Ordering::SeqCst);
    bob.follow_the_day();
    assert_eq!(bob.history("alice", 10).unwrap().iter().filter(|m| m.kind == "text").count(), 0);
    let raw = file_bytes(db.path());
    assert!(!contains(&raw, secret.as_bytes()), "a deleted message's text is still in the file");
    assert!(!contains(&raw, b"the usual place it is"), "our own deleted message's text is still in the file");
    assert!(bob.set_retention("alice", Some(0)).is_err());
}

/// A message sealed again is shown once, whichever of its envelopes comes first; a member who
/// names someone else's message as the one theirs replaces takes nothing out of the history.
#[test]
fn a_replacement_takes_out_only_its_own_senders_message() {
    use weft_core::envelope::EnvelopeId;
    use weft_core::store::MessageRow;
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(&dir.path().join(DB_FILE), &DatabaseKey::plaintext_for_tests()).unwrap();
    let (alice, mallory) = ([1; 32], [2; 32]);
    let row = |id: u8, sender: [u8; 32]| MessageRow {
        id: EnvelopeId([id; 32]),
        group_id: [9; 32],
        sender,
        lamport: id as u64,
        sent_ms: NOW,
        kind: "text".into(),
        body: format!("message {id}"),
        outgoing: false,
        via: None,
        reply_to: None,
    };
    let (first, again, forged) = (EnvelopeId([1; 32]), EnvelopeId([2; 32]), EnvelopeId([3; 32]));
    store.write(|tx| tx.insert_message(&row(1, alice))).unwrap();

    // Mallory's message claims to replace Alice's: Alice's stays, and her own later
    // replacement still works.
    assert!(!store.write(|tx| tx.replace_message(&[9; 32], &first, &mallory, &forged)).unwrap());
    assert!(store.read().message(&first).unwrap().is_some(), "a member replaced someone else's message");
    assert!(!store.read().is_replaced(&first, &alice).unwrap());

    // Alice herself, from another conversation (a group she was removed from, say), takes
    // nothing out of this one.
    assert!(!store.write(|tx| tx.replace_message(&[8; 32], &first, &alice, &forged)).unwrap());
    assert!(store.read().message(&first).unwrap().is_some(), "a message moved across conversations");
    // Alice's replacement comes after the original: the original goes.
    assert!(store.write(|tx| tx.replace_message(&[9; 32], &first, &alice, &again)).unwrap());
    assert!(store.read().message(&first).unwrap().is_none());
    // The original again (another peer hands it over): it is known as replaced.
    assert!(store.read().is_replaced(&first, &alice).unwrap());
}

/// What replaced what names the sender's account: once the replacing message is past its
/// retention, that record leaves too (a thief would otherwise read who wrote there).
#[test]
fn a_replacement_record_leaves_with_its_message() {
    use weft_core::envelope::EnvelopeId;
    use weft_core::store::EnvelopeStatus;
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(&dir.path().join(DB_FILE), &DatabaseKey::plaintext_for_tests()).unwrap();
    let (group, alice) = ([9; 32], [1; 32]);
    let (first, again) = (EnvelopeId([1; 32]), EnvelopeId([2; 32]));
    store
        .write(|tx| {
            tx.put_envelope(&again, Some(&group), &[0u8; 64], EnvelopeStatus::Opened, NOW)?;
            tx.replace_message(&group, &first, &alice, &again)
        })
        .unwrap();
    assert!(store.read().is_replaced(&first, &alice).unwrap());
    store.write(|tx| tx.forget_messages_before(&group, NOW + 1)).unwrap();
    assert!(!store.read().is_replaced(&first, &alice).unwrap(), "the record outlived its message");
}

/// Issue 19: a delete may arrive before its message (bundles and relays carry in any order):
/// the message then arrives with no text. A delete or edit from anyone but the message's
/// sender erases nothing.
#[test]
fn a_delete_erases_only_its_senders_message_whichever_arrives_first() {
    use weft_core::envelope::EnvelopeId;
    use weft_core::store::{ChangeKind, ChangeRow, MessageRow};
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(&dir.path().join(DB_FILE), &DatabaseKey::plaintext_for_tests()).unwrap();
    let (alice, mallory) = ([1; 32], [2; 32]);
    let message = |id: u8, sender: [u8; 32]| MessageRow {
        id: EnvelopeId([id; 32]),
        group_id: [9; 32],
        sender,
        lamport: id as u64,
        sent_ms: NOW,
        kind: "text".into(),
        body: format!("message {id}"),
        outgoing: false,
        via: None,
        reply_to: None,
    };
    let change = |id: u8, target: u8, sender: [u8; 32], kind: ChangeKind| ChangeRow {
        id: EnvelopeId([id; 32]),
        group_id: [9; 32],
        target: EnvelopeId([target; 32]),
        sender,
        lamport: id as u64,
        kind,
        body: (kind == ChangeKind::Edit).then(|| format!("edit {id}")),
    };
    // The delete first, then the message.
    store.write(|tx| tx.insert_change(&change(11, 1, alice, ChangeKind::Delete))).unwrap();
    store.write(|tx| tx.insert_message(&message(1, alice))).unwrap();
    assert_eq!(store.read().message(&EnvelopeId([1; 32])).unwrap().unwrap().body, "");
    // An edit after the delete keeps no text either.
    store.write(|tx| tx.insert_change(&change(12, 1, alice, ChangeKind::Edit))).unwrap();
    assert!(store.read().changes_of(&EnvelopeId([1; 32]), &[9; 32]).unwrap().iter().all(|c| c.body.is_none()));

    // Mallory deletes and edits Alice's other message: nothing is erased, and what Mallory sent
    // is not kept.
    store.write(|tx| tx.insert_message(&message(2, alice))).unwrap();
    store.write(|tx| tx.insert_change(&change(21, 2, mallory, ChangeKind::Delete))).unwrap();
    store.write(|tx| tx.insert_change(&change(23, 2, mallory, ChangeKind::Edit))).unwrap();
    store.write(|tx| tx.insert_change(&change(22, 2, alice, ChangeKind::Edit))).unwrap();
    assert_eq!(store.read().message(&EnvelopeId([2; 32])).unwrap().unwrap().body, "message 2");
    let kept = store.read().changes_of(&EnvelopeId([2; 32]), &[9; 32]).unwrap();
    assert_eq!(kept.iter().map(|c| c.sender).collect::<Vec<_>>(), vec![alice]);

    // Review: a delete sent in another conversation (one Alice shares with us after leaving the
    // group, say) erases nothing here, and is not shown here.
    store.write(|tx| tx.insert_message(&message(3, alice))).unwrap();
    let elsewhere = ChangeRow { group_id: [8; 32], ..change(31, 3, alice, ChangeKind::Delete) };
    store.write(|tx| tx.insert_change(&elsewhere)).unwrap();
    assert_eq!(store.read().message(&EnvelopeId([3; 32])).unwrap().unwrap().body, "message 3");
    assert!(store.read().changes_of(&EnvelopeId([3; 32]), &[9; 32]).unwrap().is_empty());

    // Review: a delete does not blank a system row that names its sender.
    store.write(|tx| tx.insert_message(&MessageRow { kind: "renamed".into(), ..message(4, alice) })).unwrap();
    store.write(|tx| tx.insert_change(&change(41, 4, alice, ChangeKind::Delete))).unwrap();
    assert_eq!(store.read().message(&EnvelopeId([4; 32])).unwrap().unwrap().body, "message 4");

    // A member's reactions to one message cost one row, however many they send.
    for n in 50..90u8 {
        store
            .write(|tx| {
                tx.insert_change(&ChangeRow {
                    body: Some("👍".into()), ..change(n, 3, mallory, ChangeKind::Reaction)
                })
            })
            .unwrap();
    }
    let reactions = store.read().changes_of(&EnvelopeId([3; 32]), &[9; 32]).unwrap();
    assert_eq!(reactions.iter().map(|c| c.id).collect::<Vec<_>>(), vec![EnvelopeId([89; 32])]);
}

/// Review of disappearing messages: a member's timer sent with a low Lamport clock (the sender
/// chooses it) would have erased every text after it on every device. A text's expiry is fixed
/// when it is stored, by the timers already here: a timer never reaches back, and what a
/// timer does govern goes with its reactions and edits.
#[test]
fn a_backdated_timer_erases_nothing_already_here() {
    use weft_core::envelope::EnvelopeId;
    use weft_core::store::{ChangeKind, ChangeRow, EnvelopeStatus, MessageRow};
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(&dir.path().join(DB_FILE), &DatabaseKey::plaintext_for_tests()).unwrap();
    let group = [9; 32];
    let text = |id: u8, lamport: u64| MessageRow {
        id: EnvelopeId([id; 32]),
        group_id: group,
        sender: [1; 32],
        lamport,
        sent_ms: NOW,
        kind: "text".into(),
        body: format!("text {id}"),
        outgoing: false,
        via: None,
        reply_to: None,
    };
    let arrive = |store: &mut Store, m: &MessageRow| {
        store
            .write(|tx| {
                tx.put_envelope(&m.id, Some(&group), &[0u8; 256], EnvelopeStatus::Opened, NOW)?;
                tx.insert_message(m)
            })
            .unwrap()
    };
    for (id, lamport) in [(1, 10), (2, 20), (3, 30)] {
        arrive(&mut store, &text(id, lamport));
    }
    // The hostile timer: a minute, at Lamport 1, before all of them.
    store.write(|tx| tx.add_timer(&group, &EnvelopeId([50; 32]), 1, Some(60_000))).unwrap();
    assert_eq!(store.write(|tx| tx.forget_disappeared(NOW + 3_600_000)).unwrap(), 0, "nothing already here goes");
    // What comes after it does, with its edits.
    arrive(&mut store, &text(4, 40));
    let edit = ChangeRow {
        id: EnvelopeId([41; 32]),
        group_id: group,
        target: EnvelopeId([4; 32]),
        sender: [1; 32],
        lamport: 1_000,
        kind: ChangeKind::Edit,
        body: Some("edited".into()),
    };
    store.write(|tx| tx.insert_change(&edit)).unwrap();
    assert_eq!(store.write(|tx| tx.forget_disappeared(NOW + 30_000)).unwrap(), 0, "not yet");
    assert_eq!(store.write(|tx| tx.forget_disappeared(NOW + 60_000)).unwrap(), 2, "the text and its edit");
    assert!(store.read().message(&EnvelopeId([4; 32])).unwrap().is_none());
    assert!(store.read().changes_of(&EnvelopeId([4; 32]), &group).unwrap().is_empty());
    assert!(store.read().message(&EnvelopeId([3; 32])).unwrap().is_some());
}
