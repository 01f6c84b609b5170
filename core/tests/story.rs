//! The offline story at the level of `Account`: two people meet by link, chat by carrying
//! bundles, make a group with a third, remove them, and the removed one reads nothing new.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

mod common;
use common::{carry, person, texts};

use weft_core::sync::Scope;

#[test]
fn offline_story() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let mut alice = person("alice", 1, &clock);
    let mut bob = person("bob", 2, &clock);
    let mut carol = person("carol", 3, &clock);

    // Alice adds Bob by link and writes before Bob even knows her. Bob reads nothing of a
    // stranger's conversation until he accepts her; then her envelopes, coming again, are read.
    alice.account.add_contact(&bob.account.card().to_link(), None).unwrap();
    alice.account.send("bob", "hi bob").unwrap();
    let report = carry(&alice, &mut bob);
    assert_eq!(report.new_contacts, vec!["alice".to_string()]);
    assert_eq!((report.unreadable, bob.account.waiting().unwrap()), (1, 0), "her message: not read, not held");
    assert!(texts(&bob, "alice").is_empty());
    bob.account.accept_contact("alice").unwrap();
    carry(&alice, &mut bob);
    assert_eq!(texts(&bob, "alice"), vec!["alice: hi bob"]);

    bob.account.send("alice", "hi alice").unwrap();
    carry(&bob, &mut alice);
    assert_eq!(texts(&alice, "bob"), vec!["alice: hi bob", "bob: hi alice"]);
    // Bob's reply names Alice's message as its parent: her request has done its job and
    // leaves her bundles.
    let requests = weft_core::bundle::Bundle::decode(&alice.account.export_bundle().unwrap()).unwrap().0.requests;
    assert!(requests.is_empty(), "{} requests still exported", requests.len());

    // Carol and Alice add each other at the same time: one conversation, not two.
    alice.account.add_contact(&carol.account.card().to_link(), None).unwrap();
    carol.account.add_contact(&alice.account.card().to_link(), None).unwrap();
    carry(&alice, &mut carol);
    carry(&carol, &mut alice);
    alice.account.send("carol", "hello carol").unwrap();
    carry(&alice, &mut carol);
    assert_eq!(texts(&carol, "alice"), vec!["alice: hello carol"]);

    // A group of three.
    alice.account.create_group("trip").unwrap();
    alice.account.invite("trip", "bob").unwrap();
    alice.account.invite("trip", "carol").unwrap();
    alice.account.send("trip", "welcome all").unwrap();
    let r = carry(&alice, &mut bob);
    assert_eq!(r.joined_groups, vec!["trip".to_string()]);
    carry(&alice, &mut carol);
    assert_eq!(texts(&bob, "trip"), vec!["alice: welcome all"]);
    assert_eq!(texts(&carol, "trip"), vec!["alice: welcome all"]);
    bob.account.send("trip", "bob here").unwrap();
    carry(&bob, &mut alice);
    carry(&bob, &mut carol);
    carol.account.send("trip", "carol here").unwrap();
    carry(&carol, &mut alice);
    carry(&carol, &mut bob);
    let expected = vec!["alice: welcome all", "bob: bob here", "carol: carol here"];
    assert_eq!(texts(&alice, "trip"), expected);
    assert_eq!(texts(&bob, "trip"), expected);
    assert_eq!(texts(&carol, "trip"), expected);

    // Carol is removed; what follows is unreadable to her.
    alice.account.remove_member("trip", "carol").unwrap();
    alice.account.send("trip", "carol is gone").unwrap();
    carry(&alice, &mut bob);
    bob.account.send("trip", "yes").unwrap();
    carry(&bob, &mut alice);
    let r = carry(&alice, &mut carol);
    assert!(r.unreadable >= 2, "{r:?}");
    assert_eq!(texts(&carol, "trip"), expected);
    assert!(!carol.account.conversations().unwrap().iter().find(|c| c.name == "trip").unwrap().active);
    assert!(carol.account.send("trip", "still here?").is_err());
    let after = vec!["alice: welcome all", "bob: bob here", "carol: carol here", "alice: carol is gone", "bob: yes"];
    assert_eq!(texts(&alice, "trip"), after);
    assert_eq!(texts(&bob, "trip"), after);

    // Importing the same bundle again changes nothing.
    let r = carry(&alice, &mut bob);
    assert!(r.messages.is_empty());
    assert_eq!(texts(&bob, "trip"), after);
}

/// Someone who merely holds your link can send a contact request, but cannot put you in a
/// group until you accept them.
#[test]
fn strangers_cannot_add_you_to_groups() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let mut mallory = person("mallory", 7, &clock);
    let mut bob = person("bob", 8, &clock);
    mallory.account.add_contact(&bob.account.card().to_link(), None).unwrap();
    mallory.account.create_group("totally-legit").unwrap();
    mallory.account.invite("totally-legit", "bob").unwrap();
    let report = carry(&mallory, &mut bob);
    assert_eq!(report.new_contacts, vec!["mallory".to_string()]);
    assert!(report.joined_groups.is_empty());
    assert!(bob.account.conversations().unwrap().iter().all(|c| c.name != "totally-legit"));
    // Nothing of mallory's conversation is read before bob accepts: once he does, the
    // invitation, coming again, joins the group.
    bob.account.accept_contact("mallory").unwrap();
    let report = carry(&mallory, &mut bob);
    assert_eq!(report.joined_groups, vec!["totally-legit".to_string()]);
    assert!(bob.account.conversations().unwrap().iter().any(|c| c.name == "totally-legit" && c.active));
}

/// What crosses the air (a bundle, or any envelope) names no account, device, group or person.
#[test]
fn bundles_carry_no_identities_in_clear() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let mut alice = person("alice-the-sender", 9, &clock);
    let mut bob = person("bob-the-receiver", 10, &clock);
    alice.account.add_contact(&bob.account.card().to_link(), None).unwrap();
    bob.account.add_contact(&alice.account.card().to_link(), None).unwrap();
    alice.account.create_group("secret-meeting").unwrap();
    alice.account.invite("secret-meeting", "bob-the-receiver").unwrap();
    alice.account.send("secret-meeting", "the plan").unwrap();
    alice.account.send("bob-the-receiver", "hi").unwrap();
    let bundle = alice.account.export_bundle().unwrap();
    carry(&alice, &mut bob);
    let group_id = alice.account.resolve("secret-meeting").unwrap().id;
    let needles: Vec<Vec<u8>> = vec![
        alice.account.account_public().to_vec(),
        alice.account.device_id().to_vec(),
        bob.account.device_id().to_vec(),
        bob.account.account_public().to_vec(),
        group_id.to_vec(),
        b"alice-the-sender".to_vec(),
        b"bob-the-receiver".to_vec(),
        b"secret-meeting".to_vec(),
        b"the plan".to_vec(),
    ];
    for needle in &needles {
        assert!(!bundle.windows(needle.len()).any(|w| w == &needle[..]), "found {needle:?} in the bundle");
    }
    assert_eq!(texts(&bob, "secret-meeting"), vec!["alice-the-sender: the plan"]);
}

/// Two accounts reconcile a conversation's topics through the sync state machine, with no
/// bundle: what one wrote while the other was away arrives, and nothing else moves.
#[test]
fn accounts_catch_up_by_reconciliation() {
    use weft_core::sync::{EnvelopeSource, PeerSync, SyncMessage};
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let mut alice = person("alice", 21, &clock);
    let mut bob = person("bob", 22, &clock);
    alice.account.add_contact(&bob.account.card().to_link(), None).unwrap();
    bob.account.add_contact(&alice.account.card().to_link(), None).unwrap();
    // The introductions still travel once by bundle (the network publishes them at rendezvous
    // points); after that, envelopes move by reconciliation alone.
    carry(&alice, &mut bob);
    carry(&bob, &mut alice);
    for i in 0..30 {
        alice.account.send("bob", &format!("a{i}")).unwrap();
    }
    for i in 0..5 {
        bob.account.send("alice", &format!("b{i}")).unwrap();
    }
    for topic in alice.account.sync_topics(2) {
        let (mut sa, mut sb) = (PeerSync::default(), PeerSync::default());
        let scope = Scope::Topic(topic);
        let mut to_bob = vec![sa.start(scope, [1; 16], &alice.account).expect("a topic is served")];
        while !to_bob.is_empty() {
            let mut to_alice = Vec::new();
            for m in to_bob.drain(..) {
                let step = sb.handle(SyncMessage::decode(&m.encode()).unwrap(), &bob.account).unwrap();
                to_alice.extend(step.send);
                for e in step.received {
                    let _ = bob.account.receive_envelope(weft_core::envelope::Envelope::parse(e).unwrap());
                }
            }
            for m in to_alice {
                let step = sa.handle(m, &alice.account).unwrap();
                to_bob.extend(step.send);
                for e in step.received {
                    let _ = alice.account.receive_envelope(weft_core::envelope::Envelope::parse(e).unwrap());
                }
            }
        }
        assert_eq!(alice.account.ids(&scope).map(|ids| ids.len()), bob.account.ids(&scope).map(|ids| ids.len()));
    }
    assert_eq!(texts(&bob, "alice").len(), 35);
    assert_eq!(texts(&alice, "bob").len(), 35);
}

#[test]
fn an_import_reports_its_progress_to_the_end() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let mut alice = person("alice", 1, &clock);
    let mut bob = person("bob", 2, &clock);
    alice.account.add_contact(&bob.account.card().to_link(), None).unwrap();
    for i in 0..20 {
        alice.account.send("bob", &format!("message {i}")).unwrap();
    }
    let bundle = alice.account.export_bundle().unwrap();
    let (decoded, _) = weft_core::bundle::Bundle::decode(&bundle).unwrap();
    let total = decoded.requests.len() + decoded.envelopes.len();

    bob.account.import_bundle(&bundle).unwrap();
    bob.account.accept_contact("alice").unwrap();
    let mut seen = Vec::new();
    let report = bob.account.import_bundle_with_progress(&bundle, &mut |p| seen.push(p)).unwrap();
    assert_eq!(report.messages.iter().filter(|m| m.kind == "text").count(), 20);
    assert_eq!(seen.first().map(|p| (p.done, p.total)), Some((0, total)));
    assert_eq!(seen.last().map(|p| (p.done, p.total)), Some((total, total)));
    assert!(seen.windows(2).all(|w| w[0].done < w[1].done), "every step moves forward once");
    assert_eq!(seen.len(), total + 1);
}

/// A catch-up brings a backlog in no particular order (reconciliation goes by hash). Opening a
/// message far ahead of its chain would drop the keys of the ones before it (a chain keeps
/// 1,000), so those are held until their predecessors come: all 1,500 are read.
#[test]
fn a_backlog_in_random_order_is_read_whole() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (mut alice, mut bob) = common::contacts(&clock);
    let known: std::collections::HashSet<Vec<u8>> =
        weft_core::bundle::Bundle::decode(&alice.account.export_bundle().unwrap())
            .unwrap()
            .0
            .envelopes
            .iter()
            .map(|e| e.as_bytes().to_vec())
            .collect();
    for i in 0..1_500 {
        alice.account.send("bob", &format!("backlog {i}")).unwrap();
    }
    let (decoded, _) = weft_core::bundle::Bundle::decode(&alice.account.export_bundle().unwrap()).unwrap();
    let mut backlog: Vec<Vec<u8>> =
        decoded.envelopes.iter().map(|e| e.as_bytes().to_vec()).filter(|e| !known.contains(e)).collect();
    // A fixed shuffle (xorshift), as a hash order would be.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..backlog.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        backlog.swap(i, (state % (i as u64 + 1)) as usize);
    }
    for batch in backlog.chunks(512) {
        let results = bob.account.receive_batch(batch.iter().map(|e| (e.clone(), "libp2p")).collect());
        assert!(results.iter().all(|r| r.is_ok()), "{:?}", results.iter().find(|r| r.is_err()));
    }
    let history = bob.account.history("alice", 10_000).unwrap();
    assert_eq!(history.iter().filter(|m| m.body.starts_with("backlog")).count(), 1_500);
}
