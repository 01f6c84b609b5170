//! The group state machine driven directly, with no store and no network: delivery in any
//! order, tampering, removal and forged senders.

use std::collections::HashSet;

use proptest::prelude::*;
use weft_core::Error;
use weft_core::crypto::{Entropy, SeededEntropy};
use weft_core::envelope::{Envelope, EnvelopeId};
use weft_core::group::{Action, Group, period_of};

mod common;

use common::group::{NOW, Receiver, device, envelopes, epoch_of};

/// alice (admin), bob and carol in one group; returns the three views and every envelope
/// that alice and bob sent, in sending order.
struct Trio {
    alice: Receiver,
    bob: Receiver,
    carol: Receiver,
    rng: SeededEntropy,
}

fn trio() -> Trio {
    let mut rng = SeededEntropy::new(42);
    let (a, b, c) = (device(1), device(2), device(3));
    let mut ga = Group::create(&a, "trio", NOW, &mut rng).unwrap();
    // As from the 1:1 conversations: the admin knows the newcomers' prekeys.
    ga.note_prekey(b.prekeys.current());
    ga.note_prekey(c.prekeys.current());
    let add_b =
        Action::Add { member: b.cert.account, name: Some("bob".into()), devices: vec![b.cert.clone()], admin: false };
    ga.change_membership(&a, add_b, NOW, &mut rng).unwrap();
    let wb = ga.welcome(&a, &b.cert.account, NOW, &mut rng).unwrap();
    let gb = Group::from_welcome(&b, &wb, &a.cert, NOW).unwrap();
    let add_c =
        Action::Add { member: c.cert.account, name: Some("carol".into()), devices: vec![c.cert.clone()], admin: false };
    let op_c = ga.change_membership(&a, add_c, NOW, &mut rng).unwrap();
    let wc = ga.welcome(&a, &c.cert.account, NOW, &mut rng).unwrap();
    let gc = Group::from_welcome(&c, &wc, &a.cert, NOW).unwrap();
    let mut bob = Receiver::new(b, gb);
    bob.deliver(&op_c[0].envelope).unwrap();
    let mut carol = Receiver::new(c, gc);
    let mut alice = Receiver::new(a, ga);
    let hello = bob.group.announce(&bob.me, NOW, &mut rng).unwrap();
    alice.deliver(&hello[0].envelope).unwrap();
    carol.deliver(&hello[0].envelope).unwrap();
    Trio { alice, bob, carol, rng }
}

/// alice and bob converse; returns everything they sent, in order.
fn conversation(t: &mut Trio, rounds: usize) -> Vec<Envelope> {
    let mut all = Vec::new();
    for round in 0..rounds {
        let from_alice =
            envelopes(t.alice.group.send_text(&t.alice.me, &format!("a{round}"), NOW, &mut t.rng).unwrap());
        for e in &from_alice {
            t.bob.deliver(e).unwrap();
        }
        let from_bob = envelopes(t.bob.group.send_text(&t.bob.me, &format!("b{round}"), NOW, &mut t.rng).unwrap());
        for e in &from_bob {
            t.alice.deliver(e).unwrap();
        }
        all.extend(from_alice);
        all.extend(from_bob);
    }
    all
}

#[test]
fn everyone_converges_in_order() {
    let mut t = trio();
    let sent = conversation(&mut t, 5);
    for e in &sent {
        t.carol.deliver(e).unwrap();
    }
    let texts: Vec<String> = t.carol.history().into_iter().map(|(_, _, s)| s).collect();
    assert_eq!(texts, ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3", "a4", "b4"]);
    // Bob saw alice's messages; carol's view of them is the same, envelope for envelope.
    let from_alice: Vec<_> = t.carol.history().into_iter().filter(|(_, _, s)| s.starts_with('a')).collect();
    assert_eq!(from_alice, t.bob.history());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any order, with duplicates and with gaps, yields the same history: the in-order history
    /// restricted to what was delivered.
    #[test]
    fn any_order_with_duplicates_and_gaps(seed in any::<u64>(), drop_mask in any::<u32>(), dup_mask in any::<u32>()) {
        let mut t = trio();
        let sent = conversation(&mut t, 4);
        let in_order = trio_carol_after(&sent).history();

        let mut rng = SeededEntropy::new(seed);
        let mut order: Vec<usize> = (0..sent.len()).collect();
        for i in (1..order.len()).rev() {
            let j = (rng.bytes32().unwrap()[0] as usize) % (i + 1);
            order.swap(i, j);
        }
        // Gaps only among text envelopes (key shares are what make a chain readable at all).
        let dropped: Vec<usize> = (0..sent.len()).filter(|i| drop_mask & (1 << (i % 32)) != 0 && i % 3 == 2).collect();
        let mut carol = trio_carol_after(&[]);
        for &i in &order {
            if dropped.contains(&i) { continue; }
            let _ = carol.deliver(&sent[i]);
            if dup_mask & (1 << (i % 32)) != 0 {
                prop_assert!(matches!(carol.deliver(&sent[i]), Err(Error::Duplicate)) || carol.parked.iter().any(|p| p.id() == sent[i].id()));
            }
        }
        let dropped_ids: HashSet<EnvelopeId> = dropped.iter().map(|&i| sent[i].id()).collect();
        let expected: Vec<_> = in_order.into_iter().filter(|(_, id, _)| !dropped_ids.contains(id)).collect();
        prop_assert_eq!(carol.history(), expected);
    }
}

/// A fresh carol in the same trio (deterministic seeds), fed `sent` in order.
fn trio_carol_after(sent: &[Envelope]) -> Receiver {
    let mut carol = trio().carol;
    for e in sent {
        carol.deliver(e).unwrap();
    }
    carol
}

#[test]
fn any_single_bit_flip_is_rejected_and_changes_nothing() {
    let mut t = trio();
    let sent = envelopes(t.alice.group.send_text(&t.alice.me, "tamper with me", NOW, &mut t.rng).unwrap());
    let text = sent.last().unwrap();
    // Bob first takes the key share (if any) so that only the text is at stake.
    for e in &sent[..sent.len() - 1] {
        t.bob.deliver(e).unwrap();
    }
    let bytes = text.as_bytes().to_vec();
    let epoch = epoch_of(&t.bob.group, text).unwrap();
    let before = t.bob.group.encode_state();
    for bit in 0..bytes.len() * 8 {
        let mut bad = bytes.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let Ok(bad) = Envelope::parse(bad) else { continue };
        assert!(t.bob.group.open(&t.bob.me, &bad, &epoch).is_err(), "bit {bit} went unnoticed");
    }
    assert_eq!(before, t.bob.group.encode_state());
    // The untouched envelope still opens, once.
    t.bob.deliver(text).unwrap();
    assert!(matches!(t.bob.deliver(text), Err(Error::Duplicate)));
    let epoch = epoch_of(&t.bob.group, text).unwrap();
    assert!(
        matches!(t.bob.group.open(&t.bob.me, text, &epoch), Err(Error::Duplicate)),
        "replay is refused by the chain too"
    );
}

#[test]
fn removed_member_reads_nothing_new_and_cannot_find_new_topics() {
    let mut t = trio();
    // Carol talks first, so that Bob holds her chain: her later forgery is then refused for
    // who she is, not for a missing key.
    for e in envelopes(t.carol.group.send_text(&t.carol.me, "hello from carol", NOW, &mut t.rng).unwrap()) {
        t.bob.deliver(&e).unwrap();
    }
    let carol_before_removal = t.carol.group.encode_state();
    let removal = t
        .alice
        .group
        .change_membership(&t.alice.me, Action::Remove { member: t.carol.me.cert.account }, NOW, &mut t.rng)
        .unwrap();
    t.bob.deliver(&removal[0].envelope).unwrap();
    t.carol.deliver(&removal[0].envelope).unwrap();
    assert!(!t.carol.group.is_member(&t.carol.me.cert.account));

    let secret = envelopes(t.alice.group.send_text(&t.alice.me, "after carol", NOW, &mut t.rng).unwrap());
    for e in &secret {
        t.bob.deliver(e).unwrap();
        assert!(matches!(t.carol.deliver(e), Err(Error::UnknownTopic)));
        for epoch in t.carol.group.epochs() {
            assert!(t.carol.group.open(&t.carol.me, e, &epoch.id).is_err());
        }
    }
    assert_eq!(t.bob.history().last().unwrap().2, "after carol");

    // A removed member who kept her old state can still seal in the old epoch, but members
    // refuse what she signs.
    let mut stale = Group::decode_state(&carol_before_removal).unwrap();
    let forged = envelopes(stale.send_text(&t.carol.me, "I am still here", NOW, &mut t.rng).unwrap());
    assert_eq!(forged.len(), 1, "no key share: bob already holds carol's chain");
    assert!(matches!(t.bob.deliver(&forged[0]), Err(Error::NotAMember)));
    assert!(t.bob.history().iter().all(|(_, _, s)| s != "I am still here"));
}

#[test]
fn state_survives_a_round_trip_through_bytes() {
    let mut t = trio();
    conversation(&mut t, 2);
    let bytes = t.bob.group.encode_state();
    let restored = Group::decode_state(&bytes).unwrap();
    assert_eq!(restored.encode_state(), bytes);
    for cut in [0, 1, 10, bytes.len() / 2, bytes.len() - 1] {
        assert!(Group::decode_state(&bytes[..cut]).is_err());
    }
}

proptest! {
    /// Decoders of everything that arrives from outside never panic, whatever the bytes.
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        let _ = weft_core::group::SignedOp::from_bytes(&bytes);
        let _ = weft_core::group::Inner::decode(&bytes);
        let _ = Group::decode_state(&bytes);
        let _ = weft_core::bundle::Bundle::decode(&bytes);
        let _ = weft_core::identity::ContactCard::from_bytes(&bytes);
        let mut rng = SeededEntropy::new(1);
        let keys = weft_core::identity::InviteKeys::generate(&mut rng).unwrap();
        let _ = weft_core::handshake::ContactRequest::open(&bytes, &keys);
    }

    /// Random envelope-shaped bytes on a group's own topic are refused without a panic.
    #[test]
    fn random_envelopes_on_a_known_topic_are_refused(body in proptest::collection::vec(any::<u8>(), 239)) {
        let t = trio();
        let epoch = t.bob.group.current_epoch().unwrap();
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&epoch.topic(period_of(NOW)));
        bytes.extend_from_slice(&body);
        let envelope = Envelope::parse(bytes).unwrap();
        prop_assert!(t.bob.group.open(&t.bob.me, &envelope, &epoch.id).is_err());
    }
}

#[test]
fn every_envelope_is_one_of_the_size_buckets() {
    let mut t = trio();
    for len in [0usize, 1, 50, 100, 139, 140, 141, 400, 1000, 5000, 20_000, 60_000] {
        for s in t.alice.group.send_text(&t.alice.me, &"y".repeat(len), NOW, &mut t.rng).unwrap() {
            assert!(weft_core::envelope::SIZE_BUCKETS.contains(&s.envelope.as_bytes().len()), "{len}");
        }
    }
    assert!(t.alice.group.send_text(&t.alice.me, &"y".repeat(60_001), NOW, &mut t.rng).is_err());
}

#[test]
fn topics_rotate_daily_and_differ_between_epochs() {
    let t = trio();
    let epochs: Vec<_> = t.alice.group.epochs().collect();
    assert!(epochs.len() >= 3);
    let mut seen = HashSet::new();
    for epoch in &epochs {
        for period in 20_000..20_100 {
            assert!(seen.insert(epoch.topic(period)), "a topic repeated");
        }
    }
}
