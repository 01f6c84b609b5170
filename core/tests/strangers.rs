//! What someone we did not choose, or a member, can make us hold: parked envelopes, pending
//! requests, a stranger's conversation (issue 13, finding 3). Each test fails if the attack
//! works.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

mod common;
use common::{DAY_MS, Person, carry, person, texts};

use weft_core::bundle::Bundle;
use weft_core::crypto::{Entropy, SeededEntropy};
use weft_core::envelope::Envelope;
use weft_core::handshake::ContactRequest;
use weft_core::identity::{AccountKey, ContactCard, DeviceKeys};

fn envelope_ids(p: &Person) -> HashSet<Vec<u8>> {
    let (bundle, _) = Bundle::decode(&p.account.export_bundle().unwrap()).unwrap();
    bundle.envelopes.iter().map(|e| e.id().0.to_vec()).collect()
}

/// `envelopes` as a bundle of their own, carried to `to`.
fn hand_over(to: &mut Person, envelopes: Vec<Envelope>) -> weft_core::account::ImportReport {
    to.account.import_bundle(&Bundle { requests: vec![], envelopes }.encode()).unwrap()
}

/// Bob's envelopes made by `f`, the key share that opens his new chain set apart from the rest.
fn sent_by(bob: &mut Person, f: impl FnOnce(&mut Person) -> Vec<String>) -> (Vec<Envelope>, Vec<Envelope>) {
    let before = envelope_ids(bob);
    let texts: HashSet<String> = f(bob).into_iter().collect();
    let (bundle, _) = Bundle::decode(&bob.account.export_bundle().unwrap()).unwrap();
    bundle
        .envelopes
        .into_iter()
        .filter(|e| !before.contains(e.id().0.as_slice()))
        .partition(|e| !texts.contains(&e.id().to_hex()))
}

/// The trip, with carol holding bob's chain.
fn trip(clock: &Arc<AtomicU64>) -> (Person, Person, Person) {
    let (alice, bob, mut carol) = common::trip(clock);
    carry(&bob, &mut carol);
    (alice, bob, carol)
}

/// A member parks at most its quota with us (32 MiB): bob writes 540 messages of 60 KB on a
/// chain whose key share carol has not got. Before, a group parked up to 20,000 such
/// envelopes (1.3 GB), all read into memory at every batch. What parked opens, a page at a
/// time, once the key share comes.
#[test]
fn a_member_parks_no_more_than_its_quota_and_it_all_opens_later() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (_alice, mut bob, mut carol) = trip(&clock);
    let big = "x".repeat(60_000);
    let (key_share, messages) =
        sent_by(&mut bob, |bob| (0..540).map(|_| bob.account.send("trip", &big).unwrap().id).collect());
    assert_eq!((key_share.len(), messages.len()), (1, 540));
    let report = hand_over(&mut carol, messages);
    assert!(report.waiting <= 32 * 1024 * 1024 / 65_536, "{} envelopes parked", report.waiting);
    assert!(report.waiting >= 500, "the quota is for a real backlog: only {} parked", report.waiting);
    let parked = report.waiting;
    hand_over(&mut carol, key_share);
    assert_eq!(texts(&carol, "trip").len(), parked, "everything parked opens once the key share comes");
}

/// What waits for something that has not come in two weeks is dropped when the day turns:
/// relays keep envelopes two weeks, so it will not come.
#[test]
fn parked_envelopes_expire() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (_alice, mut bob, mut carol) = trip(&clock);
    let (_, messages) =
        sent_by(&mut bob, |bob| (0..5).map(|i| bob.account.send("trip", &format!("m{i}")).unwrap().id).collect());
    assert_eq!(hand_over(&mut carol, messages).waiting, 5);
    clock.fetch_add(13 * DAY_MS, Ordering::SeqCst);
    carol.account.follow_the_day();
    assert_eq!(hand_over(&mut carol, vec![]).waiting, 0, "nothing new parked");
    assert_eq!(carol.account.waiting().unwrap(), 5, "kept for two weeks");
    clock.fetch_add(2 * DAY_MS, Ordering::SeqCst);
    carol.account.follow_the_day();
    assert_eq!(carol.account.waiting().unwrap(), 0, "dropped after two weeks");
}

/// A contact request from a made-up identity, written a year ago.
fn forged_request(to: &Person, i: u64, rng: &mut SeededEntropy, now_ms: u64) -> Vec<u8> {
    let account = AccountKey::generate(rng).unwrap();
    let device = DeviceKeys::generate(rng).unwrap();
    let card = ContactCard {
        account: account.public(),
        request_key: *x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(rng.bytes32().unwrap()))
            .as_bytes(),
        rendezvous_seed: [0; 32],
        name: Some(format!("flood{i}")),
    };
    let request = ContactRequest {
        card,
        device: account.certify(&device, now_ms),
        prekey: weft_core::identity::PrekeyRing::generate(&device, now_ms, rng).unwrap().current().clone(),
        chain_generation: 0,
        chain_index: 0,
        chain_key: rng.bytes32().unwrap().into(),
        sent_ms: now_ms - 365 * DAY_MS,
    };
    request.seal(&to.account.card(), &device, rng).unwrap()
}

/// 1,000 made-up identities ask to be bob's contacts. Before, the list of pending requests was
/// then full and every genuine request was refused; each stranger's conversation was followed
/// (and indexed a year back) before anyone accepted it. Now the oldest is forgotten, the
/// genuine request gets in, nothing of a stranger's conversation is followed, and one bob
/// accepts is read back only as far as relays keep.
#[test]
fn a_flood_of_requests_forgets_the_oldest_and_follows_none_of_them() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let mut bob = person("bob", 2, &clock);
    let mut rng = SeededEntropy::new(77);
    let now = clock.load(Ordering::SeqCst);
    for i in 0..1_000 {
        let forged = forged_request(&bob, i, &mut rng, now);
        bob.account.receive_request(&forged).unwrap();
    }
    assert!(bob.account.readable_topics().is_empty(), "no stranger's conversation is followed");
    assert!(bob.account.sync_topics(1).is_empty());

    let mut alice = person("alice", 1, &clock);
    alice.account.add_contact(&bob.account.card().to_link(), None).unwrap();
    assert_eq!(carry(&alice, &mut bob).new_contacts, vec!["alice".to_string()], "the genuine request gets in");
    let names: HashSet<String> = bob.account.contacts().unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names.len(), 1_000);
    assert!(!names.contains("flood0"), "the oldest stranger was forgotten");
    assert!(names.contains("flood1") && names.contains("alice"));

    bob.account.accept_contact("flood999").unwrap();
    let days = bob.account.readable_topics().len();
    assert!((1..=17).contains(&days), "an accepted stranger's conversation is read {days} days back");
}

/// Asking about a stranger's conversation before accepting them says so, rather than "no such
/// group".
#[test]
fn a_strangers_conversation_says_to_accept_first() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let mut bob = person("bob", 2, &clock);
    let mut mallory = person("mallory", 7, &clock);
    mallory.account.add_contact(&bob.account.card().to_link(), None).unwrap();
    carry(&mallory, &mut bob);
    let refused = bob.account.members("mallory").unwrap_err();
    assert!(refused.to_string().contains("accept them first"), "{refused}");
    bob.account.accept_contact("mallory").unwrap();
    assert_eq!(bob.account.members("mallory").unwrap().len(), 2);
}

/// Alice adds Bob by his link and her request reaches him; Bob accepts. Before, Alice's side
/// stayed `added` for good and nothing told her (issue 15, finding 2). Now the first envelope
/// of Bob's that answers in their conversation makes him accepted on her side, and says so once.
#[test]
fn the_requester_learns_that_the_request_was_accepted() {
    use weft_core::store::ContactStatus;
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let mut alice = person("alice", 1, &clock);
    let mut bob = person("bob", 2, &clock);
    alice.account.add_contact(&bob.account.card().to_link(), None).unwrap();
    let status = |p: &Person| p.account.contacts().unwrap()[0].status;
    assert_eq!(status(&alice), ContactStatus::Added);
    carry(&alice, &mut bob);
    bob.account.accept_contact("alice").unwrap();
    let (bundle, _) = Bundle::decode(&bob.account.export_bundle().unwrap()).unwrap();
    let mut accepted = Vec::new();
    for e in bundle.envelopes {
        if let Ok(weft_core::account::Received::Applied(shown)) = alice.account.receive_envelope(e) {
            accepted.extend(shown.into_iter().filter(|m| m.kind == "accepted"));
        }
    }
    assert_eq!(status(&alice), ContactStatus::Accepted);
    assert_eq!(accepted.len(), 1, "said once: {accepted:?}");
    assert_eq!((accepted[0].conversation.as_str(), accepted[0].sender.as_str()), ("bob", "bob"));
    // Later messages do not say it again.
    bob.account.send("alice", "hi").unwrap();
    let (bundle, _) = Bundle::decode(&bob.account.export_bundle().unwrap()).unwrap();
    for e in bundle.envelopes {
        if let Ok(weft_core::account::Received::Applied(shown)) = alice.account.receive_envelope(e) {
            assert!(shown.iter().all(|m| m.kind != "accepted"), "{shown:?}");
        }
    }
}

/// Issue 15, finding 1: a member who knows a group's id publishes a card named with that id.
/// Before, whoever added the card and then sent to the group by id sent into the 1:1 chat with
/// them (names won over ids). Now an id always names its own conversation, and a card's name
/// that looks like an id is not taken as a contact's name.
#[test]
fn a_card_named_after_a_group_id_does_not_take_the_groups_messages() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (mut alice, mut bob, _carol) = common::trip(&clock);
    let group = alice.account.conversations().unwrap().into_iter().find(|c| c.name == "trip").unwrap();
    let group_id = data_encoding::HEXLOWER.encode(&group.id);
    let mallory = person(&group_id, 9, &clock);
    let link = mallory.account.card().to_link();
    let refused = alice.account.add_contact(&link, None).unwrap_err().to_string();
    assert!(refused.contains("looks like an id"), "{refused}");
    // Even under a name the user typed that is the id, the id names the group.
    alice.account.add_contact(&link, Some(&group_id)).unwrap();
    let sent = alice.account.send(&group_id, "for the trip").unwrap();
    assert_eq!(sent.conversation, "trip");
    carry(&alice, &mut bob);
    assert!(texts(&bob, "trip").contains(&"alice: for the trip".to_string()));
    // Mallory's own conversation is reached by its own id.
    let contact = alice.account.contacts().unwrap().into_iter().find(|c| c.name == group_id).unwrap();
    let by_contact_id = alice.account.send(&data_encoding::HEXLOWER.encode(&contact.conversation), "to mallory");
    assert_eq!(by_contact_id.unwrap().conversation, group_id);
}

/// A stranger holding our link names themselves after the start of one of our group's ids:
/// typed, that prefix would have reached their conversation, not the group (an exact name
/// comes before an id prefix). Their name is not taken as it is.
#[test]
fn a_stranger_named_like_an_id_prefix_gets_a_name_of_ours() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (mut alice, _bob, _carol) = common::trip(&clock);
    let group = alice.account.conversations().unwrap().into_iter().find(|c| c.name == "trip").unwrap();
    let prefix = data_encoding::HEXLOWER.encode(&group.id[..4]);
    let mut mallory = person(&prefix, 9, &clock);
    mallory.account.add_contact(&alice.account.card().to_link(), Some("alice")).unwrap();
    carry(&mallory, &mut alice);
    let names: Vec<String> = alice.account.contacts().unwrap().into_iter().map(|c| c.name).collect();
    assert!(!names.contains(&prefix), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("contact-")), "{names:?}");
    assert_eq!(alice.account.send(&prefix, "for the trip").unwrap().conversation, "trip");
}
