//! One account on two devices (issue 16), at the account level with bundles carried by hand: a
//! phone links a laptop; both write in a 1:1 and in a group; bob sees one alice; his reply
//! reaches both; the link grants nothing twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

mod common;
use common::{Person, carry, texts, trip};

use weft_core::Error;
use weft_core::account::{Account, HistoryChoice};
use weft_core::crypto::SeededEntropy;
use weft_core::devices::linking::{Joining, Ticket};
use weft_core::identity::DeviceKeys;
use weft_core::store::DatabaseKey;

/// Alice's laptop, linked to her phone (`alice`) through the three-message exchange.
fn link_laptop(alice: &mut Person, clock: &Arc<AtomicU64>) -> Person {
    link_device(alice, clock, 41)
}

fn link_device(alice: &mut Person, clock: &Arc<AtomicU64>, seed: u64) -> Person {
    link_device_with(alice, clock, seed, HistoryChoice::Leave)
}

fn link_device_with(alice: &mut Person, clock: &Arc<AtomicU64>, seed: u64, history: HistoryChoice) -> Person {
    let mut rng = SeededEntropy::new(seed);
    let link = alice.account.link_offer().unwrap();
    let keys = DeviceKeys::generate(&mut rng).unwrap();
    let joining =
        Joining::start(Ticket::from_link(&link).unwrap(), &keys, "laptop", clock.load(Ordering::SeqCst), &mut rng)
            .unwrap();
    let (applicant, code) = alice.account.open_link_request(joining.request()).unwrap();
    assert_eq!((applicant.name.as_str(), code), ("laptop", joining.code()), "both screens show the same code");
    let grant = alice.account.grant_link(joining.request(), code, history).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = clock.clone();
    let account = Account::create_linked(
        dir.path(),
        &DatabaseKey::from_bytes([seed as u8; 32]),
        &keys,
        "laptop",
        &joining,
        &grant,
        Box::new(SeededEntropy::new(seed + 1000)),
        Box::new(move || c.fetch_add(1, Ordering::SeqCst)),
    )
    .unwrap();
    Person::from_parts(account, dir)
}

#[test]
fn a_linked_laptop_writes_and_reads_as_alice_in_a_one_to_one_and_a_group() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, mut carol) = trip(&clock);
    carry(&bob, &mut alice);
    carry(&carol, &mut alice);
    let mut laptop = link_laptop(&mut alice, &clock);
    assert_eq!(laptop.account.account_public(), alice.account.account_public());
    assert!(!laptop.account.is_primary());
    assert_eq!(laptop.account.card().to_link(), alice.account.card().to_link(), "one account, one link");
    let mut names: Vec<String> = laptop.account.conversations().unwrap().into_iter().map(|c| c.name).collect();
    names.sort();
    assert_eq!(names, ["bob", "carol", "trip"]);

    laptop.account.send("bob", "from the laptop").unwrap();
    alice.account.send("bob", "from the phone").unwrap();
    laptop.account.send("trip", "laptop in the group").unwrap();
    for _ in 0..2 {
        carry(&laptop, &mut bob);
        carry(&alice, &mut bob);
        carry(&laptop, &mut carol);
        carry(&bob, &mut laptop);
        carry(&bob, &mut alice);
    }
    // Written at the same time on two devices: in (clock, id) order, the same on every device.
    let mut both = texts(&bob, "alice");
    both.sort();
    assert_eq!(both, ["alice: from the laptop", "alice: from the phone"]);
    assert!(texts(&carol, "trip").contains(&"alice: laptop in the group".to_owned()));
    assert!(texts(&bob, "trip").contains(&"alice: laptop in the group".to_owned()));

    bob.account.send("alice", "hello both").unwrap();
    carry(&bob, &mut laptop);
    carry(&bob, &mut alice);
    reads(&laptop, "bob", "bob: hello both");
    // Bob's conversation says once that alice linked a new device.
    let linked = |p: &Person, conversation: &str| {
        p.account.history(conversation, 100).unwrap().into_iter().filter(|m| m.kind == "device_linked").count()
    };
    assert_eq!(linked(&bob, "alice"), 1);
    // And every group alice's laptop wrote in says it once to each member.
    assert_eq!((linked(&bob, "trip"), linked(&carol, "trip")), (1, 1));
    assert!(texts(&alice, "bob").contains(&"bob: hello both".to_owned()));
    // What the laptop wrote shows on the phone as the user's own.
    carry(&laptop, &mut alice);
    let on_phone = alice.account.history("bob", 50).unwrap();
    let from_laptop = on_phone.iter().find(|m| m.body == "from the laptop").expect("the laptop's message on the phone");
    assert!(from_laptop.outgoing);
    // The phone lists the laptop.
    let devices = alice.account.devices().unwrap();
    assert_eq!(devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["this device", "laptop"]);
    assert!(devices[1].last_seen_ms.is_some(), "the phone had the laptop's envelopes");
    let on_laptop = laptop.account.devices().unwrap();
    assert!(on_laptop[1].primary && !on_laptop[0].primary, "{on_laptop:?}");
}

#[test]
fn a_link_grants_once_and_only_the_primary_links() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, _bob, _carol) = trip(&clock);
    let mut rng = SeededEntropy::new(43);
    let link = alice.account.link_offer().unwrap();
    let keys = DeviceKeys::generate(&mut rng).unwrap();
    let now = clock.load(Ordering::SeqCst);
    let joining = Joining::start(Ticket::from_link(&link).unwrap(), &keys, "laptop", now, &mut rng).unwrap();
    let code = joining.code();
    alice.account.grant_link(joining.request(), code, HistoryChoice::Leave).unwrap();
    // The same request again, or another one on the same link: the link is used up.
    assert!(matches!(
        alice.account.grant_link(joining.request(), code, HistoryChoice::Leave),
        Err(Error::NotFound { .. })
    ));
    let again = Joining::start(Ticket::from_link(&link).unwrap(), &keys, "laptop", now, &mut rng).unwrap();
    assert!(alice.account.open_link_request(again.request()).is_err());
    // A linked device holds no account key and links nothing.
    let mut laptop = link_laptop(&mut alice, &clock);
    assert!(matches!(laptop.account.link_offer(), Err(Error::NotAllowed(_))));
}

#[test]
fn an_expired_link_or_a_cancelled_one_grants_nothing() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, _bob, _carol) = trip(&clock);
    let mut rng = SeededEntropy::new(44);
    let link = alice.account.link_offer().unwrap();
    let keys = DeviceKeys::generate(&mut rng).unwrap();
    let now = clock.load(Ordering::SeqCst);
    let joining = Joining::start(Ticket::from_link(&link).unwrap(), &keys, "laptop", now, &mut rng).unwrap();
    clock.fetch_add(weft_core::devices::linking::LINK_LIFETIME_MS, Ordering::SeqCst);
    assert!(matches!(
        alice.account.grant_link(joining.request(), joining.code(), HistoryChoice::Leave),
        Err(Error::Expired { .. })
    ));
    alice.account.link_offer().unwrap();
    alice.account.cancel_link().unwrap();
    assert!(matches!(alice.account.open_link_request(joining.request()), Err(Error::NotFound { .. })));
}

/// A lost laptop, revoked from the phone: it reads nothing written after the members processed
/// the revocation, what it sends is refused, and it says so itself once it hears.
#[test]
fn a_revoked_laptop_reads_nothing_new_and_is_refused() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, mut carol) = trip(&clock);
    carry(&bob, &mut alice);
    carry(&carol, &mut alice);
    let mut laptop = link_laptop(&mut alice, &clock);
    laptop.account.send("bob", "laptop says hi").unwrap();
    laptop.account.send("trip", "laptop in the group").unwrap();
    carry(&laptop, &mut bob);
    carry(&laptop, &mut carol);
    carry(&bob, &mut laptop);
    carry(&carol, &mut laptop);
    assert!(texts(&bob, "alice").contains(&"alice: laptop says hi".to_owned()));

    alice.account.revoke_device("laptop").unwrap();
    assert_eq!(alice.account.devices().unwrap().len(), 1);
    carry(&alice, &mut bob);
    carry(&alice, &mut carol);
    // The thief keeps the laptop off the network and writes: refused by those who know.
    laptop.account.send("bob", "the thief writes").unwrap();
    laptop.account.send("trip", "the thief in the group").unwrap();
    carry(&laptop, &mut bob);
    carry(&laptop, &mut carol);
    assert!(!texts(&bob, "alice").iter().any(|t| t.contains("thief")), "{:?}", texts(&bob, "alice"));
    assert!(!texts(&carol, "trip").iter().any(|t| t.contains("thief")));
    // What the others write after is not for the laptop.
    bob.account.send("alice", "after the revocation").unwrap();
    carol.account.send("trip", "carol after").unwrap();
    alice.account.send("trip", "alice after").unwrap();
    for _ in 0..2 {
        carry(&bob, &mut laptop);
        carry(&carol, &mut laptop);
        carry(&alice, &mut laptop);
        carry(&bob, &mut alice);
        carry(&carol, &mut alice);
        carry(&alice, &mut bob);
        carry(&alice, &mut carol);
    }
    reads(&alice, "bob", "bob: after the revocation");
    assert!(texts(&alice, "trip").contains(&"carol: carol after".to_owned()));
    assert!(texts(&bob, "trip").contains(&"alice: alice after".to_owned()));
    for (conversation, text) in [("bob", "after the revocation"), ("trip", "carol after"), ("trip", "alice after")] {
        assert!(!texts(&laptop, conversation).iter().any(|t| t.contains(text)), "the laptop read {text:?}");
    }
    // The laptop heard of its revocation (it was told under the chains it held): it says so.
    assert!(laptop.account.is_revoked());
    assert!(matches!(laptop.account.send("bob", "hello?"), Err(Error::Revoked)));

    // A second laptop linked after the revocation refuses the first one too (the grant carries
    // the revocations), in the 1:1 conversations and groups it takes up.
    let mut second = link_device(&mut alice, &clock, 51);
    carry(&laptop, &mut second);
    for conversation in ["bob", "trip"] {
        assert!(
            !texts(&second, conversation).iter().any(|t| t.contains("thief")),
            "{:?}",
            texts(&second, conversation)
        );
    }
}

/// A wrong code on the primary grants nothing and ends the link.
#[test]
fn a_wrong_code_grants_nothing() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, _bob, _carol) = trip(&clock);
    let mut rng = SeededEntropy::new(45);
    let link = alice.account.link_offer().unwrap();
    let keys = DeviceKeys::generate(&mut rng).unwrap();
    let now = clock.load(Ordering::SeqCst);
    let joining = Joining::start(Ticket::from_link(&link).unwrap(), &keys, "laptop", now, &mut rng).unwrap();
    let wrong = weft_core::devices::linking::ShortCode((joining.code().0 + 1) % 1_000_000);
    assert!(matches!(
        alice.account.grant_link(joining.request(), wrong, HistoryChoice::Leave),
        Err(Error::NotAllowed(_))
    ));
    assert!(matches!(
        alice.account.grant_link(joining.request(), joining.code(), HistoryChoice::Leave),
        Err(Error::NotFound { .. })
    ));
}

/// What is read on one of alice's devices is read on the other.
#[test]
fn a_read_on_one_device_clears_unread_on_the_other() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, _carol) = trip(&clock);
    carry(&bob, &mut alice);
    let mut laptop = link_laptop(&mut alice, &clock);
    carry(&laptop, &mut bob);
    carry(&bob, &mut laptop);
    bob.account.send("alice", "one").unwrap();
    bob.account.send("alice", "two").unwrap();
    carry(&bob, &mut alice);
    carry(&bob, &mut laptop);
    let unread = |p: &Person| p.account.overview().unwrap().into_iter().find(|o| o.info.name == "bob").unwrap().unread;
    assert_eq!((unread(&alice), unread(&laptop)), (2, 2));
    alice.account.mark_read("bob").unwrap();
    carry(&alice, &mut laptop);
    assert_eq!(unread(&laptop), 0, "read on the phone, read on the laptop");
}

/// A contact added on the phone after the laptop was linked reaches the laptop (through the
/// account's conversation with itself), and the laptop writes to them as alice.
#[test]
fn a_contact_added_later_on_one_device_reaches_the_other() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, _bob, _carol) = trip(&clock);
    let mut laptop = link_laptop(&mut alice, &clock);
    carry(&laptop, &mut alice);
    let mut dave = common::person("dave", 7, &clock);
    alice.account.add_contact(&dave.account.card().to_link(), None).unwrap();
    carry(&alice, &mut dave);
    dave.account.accept_contact("alice").unwrap();
    carry(&dave, &mut alice);
    carry(&alice, &mut laptop);
    let names: Vec<String> = laptop.account.conversations().unwrap().into_iter().map(|c| c.name).collect();
    assert!(names.contains(&"dave".to_owned()), "{names:?}");
    assert!(!names.iter().any(|n| n == "alice"), "the account's own conversation is not listed: {names:?}");
    carry(&dave, &mut laptop);
    laptop.account.send("dave", "hello from the laptop").unwrap();
    for _ in 0..2 {
        carry(&laptop, &mut dave);
        carry(&dave, &mut laptop);
    }
    reads(&dave, "alice", "alice: hello from the laptop");
}

#[test]
fn a_group_made_on_the_phone_after_the_link_reaches_the_laptop() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, carol) = trip(&clock);
    carry(&bob, &mut alice);
    carry(&carol, &mut alice);
    let mut laptop = link_laptop(&mut alice, &clock);
    // The laptop announces itself; the phone hears it.
    carry(&laptop, &mut alice);
    alice.account.create_group("later").unwrap();
    alice.account.invite("later", "bob").unwrap();
    carry(&alice, &mut laptop);
    carry(&alice, &mut bob);
    let names: Vec<String> = laptop.account.conversations().unwrap().into_iter().map(|c| c.name).collect();
    assert!(names.contains(&"later".to_owned()), "{names:?}");
    laptop.account.send("later", "the laptop in a later group").unwrap();
    for _ in 0..2 {
        carry(&laptop, &mut bob);
        carry(&bob, &mut laptop);
        carry(&bob, &mut alice);
    }
    assert!(
        texts(&bob, "later").contains(&"alice: the laptop in a later group".to_owned()),
        "{:?}",
        texts(&bob, "later")
    );
    assert!(texts(&alice, "later").contains(&"alice: the laptop in a later group".to_owned()));
    bob.account.send("later", "bob in the later group").unwrap();
    carry(&bob, &mut laptop);
    assert!(texts(&laptop, "later").contains(&"bob: bob in the later group".to_owned()));
}

#[test]
fn a_laptop_that_missed_an_epoch_catches_up_through_the_phone() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, mut carol) = trip(&clock);
    carry(&bob, &mut alice);
    carry(&carol, &mut alice);
    let mut laptop = link_laptop(&mut alice, &clock);
    // Before the laptop was heard of anywhere, the phone removes carol: the change that starts
    // the new epoch is sealed to the devices the phone knew in the group, not to the laptop.
    alice.account.remove_member("trip", "carol").unwrap();
    carry(&alice, &mut bob);
    carry(&alice, &mut carol);
    carry(&alice, &mut laptop);
    // The laptop writes in the epoch carol cannot read (stuck in the old one, it would write
    // where the removed member still reads).
    laptop.account.send("trip", "the laptop after the change").unwrap();
    carry(&laptop, &mut bob);
    carry(&laptop, &mut carol);
    assert!(
        texts(&bob, "trip").contains(&"alice: the laptop after the change".to_owned()),
        "{:?}",
        texts(&bob, "trip")
    );
    assert!(!texts(&carol, "trip").contains(&"alice: the laptop after the change".to_owned()), "carol was removed");
    // Bob, who heard of the laptop, writes: it reads him.
    bob.account.send("trip", "bob to both of alice's devices").unwrap();
    carry(&bob, &mut laptop);
    assert!(
        texts(&laptop, "trip").contains(&"bob: bob to both of alice's devices".to_owned()),
        "{:?}",
        texts(&laptop, "trip")
    );
}

#[test]
fn the_history_goes_with_the_grant_when_the_user_chooses_it() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, carol) = trip(&clock);
    carry(&bob, &mut alice);
    carry(&carol, &mut alice);
    alice.account.send("bob", "before the laptop").unwrap();
    carry(&alice, &mut bob);
    bob.account.send("alice", "bob before the laptop").unwrap();
    bob.account.send("trip", "bob in the group before").unwrap();
    carry(&bob, &mut alice);
    alice.account.mark_read("bob").unwrap();
    let without = link_laptop(&mut alice, &clock);
    assert!(texts(&without, "bob").is_empty(), "no history unless chosen");
    let with = link_device_with(&mut alice, &clock, 77, HistoryChoice::Include);
    assert_eq!(texts(&with, "bob"), texts(&alice, "bob"));
    assert_eq!(texts(&with, "bob"), ["alice: before the laptop", "bob: bob before the laptop"]);
    assert_eq!(texts(&with, "trip"), texts(&alice, "trip"));
    let unread = |p: &Person, name: &str| {
        p.account.overview().unwrap().into_iter().find(|c| c.info.name == name).map(|c| c.unread).unwrap()
    };
    assert_eq!(unread(&with, "bob"), 0, "read on the phone, read on the laptop");
    assert_eq!(unread(&with, "trip"), unread(&alice, "trip"));
}

#[test]
fn settings_follow_the_account_across_its_devices() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, carol) = trip(&clock);
    carry(&bob, &mut alice);
    carry(&carol, &mut alice);
    const WEEK: u64 = 7 * 24 * 3600 * 1000;
    alice.account.set_read_receipts(false).unwrap();
    alice.account.set_retention("bob", Some(WEEK)).unwrap();
    // The grant hands the settings over.
    let mut laptop = link_laptop(&mut alice, &clock);
    assert!(!laptop.account.read_receipts().unwrap());
    assert_eq!(laptop.account.retention("bob").unwrap(), Some(WEEK));
    assert_eq!(laptop.account.retention("trip").unwrap(), None);
    // A change on one device reaches the other, whichever device makes it.
    carry(&laptop, &mut alice);
    alice.account.set_retention("trip", Some(2 * WEEK)).unwrap();
    alice.account.set_retention("bob", None).unwrap();
    carry(&alice, &mut laptop);
    assert_eq!(laptop.account.retention("trip").unwrap(), Some(2 * WEEK));
    assert_eq!(laptop.account.retention("bob").unwrap(), None);
    laptop.account.set_read_receipts(true).unwrap();
    carry(&laptop, &mut alice);
    assert!(alice.account.read_receipts().unwrap());
    // Nobody else's device takes our settings: bob reads nothing of them.
    carry(&alice, &mut bob);
    assert!(bob.account.read_receipts().unwrap());
    assert_eq!(bob.account.retention("alice").unwrap(), None);
}

/// Blocking, unblocking and deleting a contact on one device do the same on the others: a
/// laptop that kept showing what the phone blocked would undo the user's choice.
#[test]
fn blocking_and_deleting_a_contact_follow_the_account_across_its_devices() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, mut carol) = trip(&clock);
    carry(&bob, &mut alice);
    carry(&carol, &mut alice);
    let mut laptop = link_laptop(&mut alice, &clock);
    carry(&laptop, &mut alice);
    let blocked = |p: &Person, name: &str| p.account.contacts().unwrap().iter().any(|c| c.name == name && c.blocked);
    alice.account.block("bob").unwrap();
    carry(&alice, &mut laptop);
    assert!(blocked(&laptop, "bob"), "blocked on the phone, blocked on the laptop");
    // Bob writes: neither device shows it.
    bob.account.send("alice", "let me in").unwrap();
    carry(&bob, &mut laptop);
    assert!(!texts(&laptop, "bob").contains(&"bob: let me in".to_owned()));
    laptop.account.unblock("bob").unwrap();
    carry(&laptop, &mut alice);
    assert!(!blocked(&alice, "bob"), "unblocked on the laptop, unblocked on the phone");
    // Deleted on the laptop: carol and her 1:1 conversation are gone from the phone too.
    laptop.account.delete_contact("carol").unwrap();
    carry(&laptop, &mut alice);
    assert!(!alice.account.contacts().unwrap().iter().any(|c| c.name == "carol"));
    assert!(alice.account.history("carol", 10).is_err(), "the 1:1 conversation went with her");
    assert!(alice.account.history("trip", 10).is_ok(), "the group shared with her stays");
    // Nobody else's device takes them: carol, in a group with alice's devices, keeps alice.
    carry(&alice, &mut bob);
    carry(&alice, &mut carol);
    assert!(carol.account.contacts().unwrap().iter().any(|c| c.name == "alice" && !c.blocked));
}

/// A revoked device held the keys behind the account's link. The revocation replaces the link
/// (signed by the account key); bob and alice's other devices take the new one, and every 1:1
/// conversation moves to an epoch the revoked laptop cannot compute: it no longer sees even
/// that bob writes to alice, and opens no request sent to the new link, while alice's phone and
/// tablet read everything and open it.
#[test]
fn a_revocation_replaces_the_link_and_moves_every_one_to_one_conversation() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob) = common::contacts(&clock);
    let mut laptop = link_laptop(&mut alice, &clock);
    let mut tablet = link_device(&mut alice, &clock, 52);
    laptop.account.send("bob", "laptop says hi").unwrap();
    tablet.account.send("bob", "tablet says hi").unwrap();
    for _ in 0..2 {
        for device in [&alice, &laptop, &tablet] {
            carry(device, &mut bob);
        }
        carry(&bob, &mut alice);
        carry(&bob, &mut laptop);
        carry(&bob, &mut tablet);
        carry(&tablet, &mut alice);
        carry(&alice, &mut tablet);
    }
    let old_link = alice.account.card().to_link();
    // Dave asks through the old link before the revocation; alice accepts after it.
    let mut dave = common::person("dave", 4, &clock);
    dave.account.add_contact(&old_link, None).unwrap();
    assert_eq!(carry(&dave, &mut alice).new_contacts, vec!["dave".to_owned()]);
    assert_eq!(carry(&dave, &mut laptop).new_contacts, vec!["dave".to_owned()]);
    assert_eq!(carry(&dave, &mut tablet).new_contacts, vec!["dave".to_owned()]);

    alice.account.revoke_device("laptop").unwrap();
    let new_link = alice.account.card().to_link();
    assert_ne!(new_link, old_link, "the revocation replaced the link");
    carry(&alice, &mut bob);
    carry(&alice, &mut tablet);
    assert_eq!(tablet.account.card().to_link(), new_link, "the tablet took the new link");
    // The laptop has seen all there was before; from here on, bob's messages to alice are in an
    // epoch it cannot compute: not readable, and not recognised as alice's conversation either.
    carry(&bob, &mut laptop);
    carry(&alice, &mut laptop);
    for i in 0..3 {
        bob.account.send("alice", &format!("after {i}")).unwrap();
    }
    let seen = carry(&bob, &mut laptop);
    assert!(seen.messages.is_empty(), "{:?}", seen.messages);
    assert_eq!(seen.waiting, 0, "the laptop recognised bob's new envelopes: {seen:?}");
    assert!(seen.unreadable >= 3, "{seen:?}");
    carry(&bob, &mut alice);
    carry(&bob, &mut tablet);
    for device in [&alice, &tablet] {
        let read = texts(device, "bob");
        assert!((0..3).all(|i| read.contains(&format!("bob: after {i}"))), "{read:?}");
    }
    // The phone and the tablet write in the new epoch, and bob reads them.
    alice.account.send("bob", "phone after").unwrap();
    tablet.account.send("bob", "tablet after").unwrap();
    carry(&alice, &mut bob);
    carry(&tablet, &mut bob);
    let read = texts(&bob, "alice");
    for text in ["alice: phone after", "alice: tablet after"] {
        assert!(read.contains(&text.to_owned()), "{read:?}");
    }
    // The account's conversation with itself moved too: a setting still reaches the tablet.
    alice.account.set_read_receipts(false).unwrap();
    carry(&alice, &mut tablet);
    assert!(!tablet.account.read_receipts().unwrap());

    // Dave's conversation, made under the old link, moved when alice accepted: the laptop,
    // which opened his request too and whose thief accepts it, does not recognise what he
    // writes after.
    alice.account.accept_contact("dave").unwrap();
    carry(&alice, &mut dave);
    let _ = laptop.account.accept_contact("dave");
    carry(&dave, &mut laptop);
    dave.account.send("alice", "dave after").unwrap();
    let seen = carry(&dave, &mut laptop);
    assert_eq!((seen.waiting, seen.messages.len()), (0, 0), "{seen:?}");
    carry(&dave, &mut alice);
    reads(&alice, "dave", "dave: dave after");
    // The tablet, which held dave's request too, follows where alice's acceptance took it.
    carry(&alice, &mut tablet);
    tablet.account.send("dave", "tablet to dave").unwrap();
    for _ in 0..2 {
        carry(&tablet, &mut dave);
        carry(&dave, &mut tablet);
    }
    reads(&dave, "alice", "alice: tablet to dave");
    dave.account.send("alice", "dave to both").unwrap();
    let seen = carry(&dave, &mut laptop);
    assert_eq!((seen.waiting, seen.messages.len()), (0, 0), "{seen:?}");
    carry(&dave, &mut tablet);
    reads(&tablet, "dave", "dave: dave to both");

    // Carol uses the new link: alice's devices open her request, the laptop does not.
    let mut carol = common::person("carol", 3, &clock);
    carol.account.add_contact(&new_link, None).unwrap();
    assert!(carry(&carol, &mut laptop).new_contacts.is_empty(), "the revoked laptop opened a request to the new link");
    assert_eq!(carry(&carol, &mut tablet).new_contacts, vec!["carol".to_owned()]);
    assert_eq!(carry(&carol, &mut alice).new_contacts, vec!["carol".to_owned()]);
}

/// The primary restarts between a request that came over the network and the user's grant: it
/// answers the request as before (the same nonce), so the code the new device shows, made with
/// the first answer, still grants.
#[test]
fn a_primary_restarted_before_the_grant_still_grants_the_code_shown() {
    use weft_core::account::Received;
    use weft_core::devices::carrier::{self, Leg};
    use weft_core::envelope::Envelope;
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (alice, _bob) = common::contacts(&clock);
    let mut alice = alice;
    let mut rng = SeededEntropy::new(46);
    let link = alice.account.link_offer().unwrap();
    let ticket = Ticket::from_link(&link).unwrap();
    let keys = DeviceKeys::generate(&mut rng).unwrap();
    let joining = Joining::start(ticket.clone(), &keys, "laptop", clock.load(Ordering::SeqCst), &mut rng).unwrap();
    let envelopes = carrier::wrap(&ticket.token, Leg::Request, joining.request(), &mut rng).unwrap();
    let arrive = |alice: &mut common::Person| {
        let mut codes = Vec::new();
        for bytes in &envelopes {
            if let Ok(Received::LinkRequest(arrived)) =
                alice.account.receive_envelope(Envelope::parse(bytes.clone()).unwrap())
            {
                codes.push(arrived.code);
            }
        }
        codes
    };
    let before = arrive(&mut alice);
    assert_eq!(before.len(), 1);
    let mut alice = alice.reopen(1, &clock);
    assert_eq!(arrive(&mut alice), before, "the same request shows the same code after a restart");
    alice.account.grant_arrived(before[0], HistoryChoice::Leave).unwrap();
}

/// What the network carries: each device's outbox (what libp2p, a relay and the mesh push),
/// taken by `to`; the envelopes' topics are checked against what `to` follows on the network.
fn push(from: &mut common::Person, to: &mut [&mut common::Person]) -> Vec<Vec<u8>> {
    let batch = from.account.outbox(10_000).unwrap();
    let ids: Vec<_> =
        batch.live.iter().map(|b| weft_core::envelope::Envelope::parse(b.clone()).unwrap().id()).collect();
    from.account.handed_over(&ids).unwrap();
    for person in to.iter_mut() {
        for bytes in &batch.live {
            // (What it follows as each envelope comes: one it learned of just before, it would
            // fetch from the peers that hold it.)
            let followed = person.account.network_topics();
            let topic: [u8; 16] = bytes[1..17].try_into().unwrap();
            let envelope = weft_core::envelope::Envelope::parse(bytes.clone()).unwrap();
            if person.account.receive_envelope(envelope).is_ok() {
                assert!(followed.contains(&topic), "an envelope it reads is on a topic it does not follow");
            }
        }
    }
    batch.live
}

/// Alice and bob, contacts, each having heard the other through the outboxes.
fn contacts_over_outboxes(clock: &Arc<AtomicU64>) -> (common::Person, common::Person) {
    let (mut alice, mut bob) = common::contacts(clock);
    for _ in 0..2 {
        push(&mut alice, &mut [&mut bob]);
        push(&mut bob, &mut [&mut alice]);
    }
    (alice, bob)
}

/// Fails unless `person` shows `line` (`sender: text`) in `conversation`.
fn reads(person: &common::Person, conversation: &str, line: &str) {
    let shown = texts(person, conversation);
    assert!(shown.contains(&line.to_owned()), "{line:?} is not in {shown:?}");
}

/// A replaced link travels the way envelopes do on the network (each device's outbox, on the
/// topics the others follow there), not only in bundles: bob takes it and announces himself in
/// the new epoch, which alice's phone and tablet follow before anyone wrote there; alice's
/// devices then write there, with nothing written by bob first.
#[test]
fn a_replaced_link_travels_through_the_outbox_and_both_epochs_are_followed() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob) = common::contacts(&clock);
    let mut tablet = link_device(&mut alice, &clock, 53);
    for _ in 0..2 {
        push(&mut alice, &mut [&mut bob, &mut tablet]);
        push(&mut tablet, &mut [&mut bob, &mut alice]);
        push(&mut bob, &mut [&mut alice, &mut tablet]);
    }
    let old = alice.account.card().to_link();
    let new = alice.account.replace_link().unwrap();
    assert_ne!(old, new);
    push(&mut alice, &mut [&mut bob, &mut tablet]);
    assert_eq!(tablet.account.card().to_link(), new, "the tablet took the new link from the outbox");
    // Bob took the link: his announcement is in the new epoch, on a topic alice's devices follow.
    let announced = push(&mut bob, &mut [&mut alice, &mut tablet]);
    assert!(!announced.is_empty(), "bob said nothing in the new epoch");
    let new_topic = &announced[announced.len() - 1][1..17];
    alice.account.send("bob", "phone after").unwrap();
    tablet.account.send("bob", "tablet after").unwrap();
    let from_phone = push(&mut alice, &mut [&mut bob, &mut tablet]);
    push(&mut tablet, &mut [&mut bob, &mut alice]);
    assert!(from_phone.iter().any(|b| &b[1..17] == new_topic), "alice still writes in the first epoch");
    let read = texts(&bob, "alice");
    for text in ["alice: phone after", "alice: tablet after"] {
        assert!(read.contains(&text.to_owned()), "{read:?}");
    }
    bob.account.send("alice", "bob after").unwrap();
    push(&mut bob, &mut [&mut alice, &mut tablet]);
    for device in [&alice, &tablet] {
        reads(device, "bob", "bob: bob after");
    }
}

/// Dave asked through the old link and only the phone held his request; the phone accepts it
/// after the link was replaced. The tablet, which makes the conversation from the contact the
/// phone shares, writes in the epoch dave comes to, and reads him there.
#[test]
fn a_contact_accepted_after_the_link_was_replaced_reaches_a_device_that_never_saw_the_request() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob) = common::contacts(&clock);
    let mut tablet = link_device(&mut alice, &clock, 54);
    for _ in 0..2 {
        push(&mut alice, &mut [&mut bob, &mut tablet]);
        push(&mut tablet, &mut [&mut alice]);
    }
    let mut dave = common::person("dave", 4, &clock);
    dave.account.add_contact(&alice.account.card().to_link(), None).unwrap();
    assert_eq!(carry(&dave, &mut alice).new_contacts, vec!["dave".to_owned()]);
    alice.account.replace_link().unwrap();
    push(&mut alice, &mut [&mut tablet]);
    alice.account.accept_contact("dave").unwrap();
    push(&mut alice, &mut [&mut dave, &mut tablet]);
    push(&mut dave, &mut [&mut alice, &mut tablet]);
    tablet.account.send("dave", "tablet to dave").unwrap();
    for _ in 0..2 {
        push(&mut tablet, &mut [&mut dave, &mut alice]);
        push(&mut dave, &mut [&mut alice, &mut tablet]);
        push(&mut alice, &mut [&mut dave, &mut tablet]);
    }
    reads(&dave, "alice", "alice: tablet to dave");
    dave.account.send("alice", "dave to both").unwrap();
    push(&mut dave, &mut [&mut alice, &mut tablet]);
    for device in [&alice, &tablet] {
        reads(device, "dave", "dave: dave to both");
    }
}

/// Alice and bob each revoke a device at the same time, and each reads the other's new link
/// before its own went out; alice's goes out a day later, sealed again in the epoch bob still
/// reads. They come to the same epoch and go on writing to each other.
#[test]
fn two_contacts_who_replace_their_links_at_once_meet_in_one_epoch() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob) = contacts_over_outboxes(&clock);
    alice.account.replace_link().unwrap();
    bob.account.replace_link().unwrap();
    push(&mut bob, &mut [&mut alice]);
    clock.fetch_add(common::DAY_MS + 6 * 3600 * 1000, Ordering::SeqCst);
    push(&mut alice, &mut [&mut bob]);
    push(&mut bob, &mut [&mut alice]);
    alice.account.send("bob", "alice after both").unwrap();
    bob.account.send("alice", "bob after both").unwrap();
    let from_alice = push(&mut alice, &mut [&mut bob]);
    let from_bob = push(&mut bob, &mut [&mut alice]);
    reads(&bob, "alice", "alice: alice after both");
    reads(&alice, "bob", "bob: bob after both");
    let topic = |sent: &[Vec<u8>]| sent.last().map(|b| b[1..17].to_vec());
    assert_eq!(topic(&from_alice), topic(&from_bob), "they write in one epoch");
}

/// Bob never got alice's new link (the envelope was lost on the way). When he next writes
/// where it does not reach, alice seals it again in the epoch he wrote in; he takes it, and
/// both come to the new epoch.
#[test]
fn a_contact_who_missed_the_new_link_is_reminded_when_he_writes() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob) = contacts_over_outboxes(&clock);
    alice.account.replace_link().unwrap();
    // Handed over, and lost.
    push(&mut alice, &mut []);
    bob.account.send("alice", "still on the old link").unwrap();
    let old = push(&mut bob, &mut [&mut alice]);
    assert!(texts(&alice, "bob").contains(&"bob: still on the old link".to_owned()));
    // Alice's reminder goes out; bob takes the link and announces himself in the new epoch.
    push(&mut alice, &mut [&mut bob]);
    let announced = push(&mut bob, &mut [&mut alice]);
    assert!(!announced.is_empty(), "bob did not take the link he was reminded of");
    let new_topic = announced[announced.len() - 1][1..17].to_vec();
    assert_ne!(new_topic, old[old.len() - 1][1..17].to_vec(), "a new epoch");
    alice.account.send("bob", "on the new link").unwrap();
    let sent = push(&mut alice, &mut [&mut bob]);
    assert!(sent.iter().any(|b| b[1..17] == new_topic[..]), "alice writes in the new epoch");
    reads(&bob, "alice", "alice: on the new link");
}

/// A contact blocked when the link was replaced was not told; unblocked, he gets the new link.
#[test]
fn a_contact_unblocked_after_the_link_was_replaced_gets_the_new_link() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob) = contacts_over_outboxes(&clock);
    alice.account.block("bob").unwrap();
    alice.account.replace_link().unwrap();
    push(&mut alice, &mut [&mut bob]);
    assert!(push(&mut bob, &mut [&mut alice]).is_empty(), "bob heard of no new link");
    alice.account.unblock("bob").unwrap();
    push(&mut alice, &mut [&mut bob]);
    assert!(!push(&mut bob, &mut [&mut alice]).is_empty(), "bob did not take the new link once unblocked");
}

/// The new keys and the epochs they give are stored together: alice, restarted right after
/// replacing her link, follows the new epoch bob comes to and writes there.
#[test]
fn a_primary_restarted_after_replacing_its_link_follows_the_new_epoch() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob) = contacts_over_outboxes(&clock);
    alice.account.replace_link().unwrap();
    let mut alice = alice.reopen(1, &clock);
    push(&mut alice, &mut [&mut bob]);
    let announced = push(&mut bob, &mut [&mut alice]);
    assert!(!announced.is_empty(), "bob did not take the link");
    alice.account.send("bob", "after the restart").unwrap();
    let sent = push(&mut alice, &mut [&mut bob]);
    assert!(sent.iter().any(|b| b[1..17] == announced[announced.len() - 1][1..17]), "alice writes in the new epoch");
    reads(&bob, "alice", "alice: after the restart");
}
