//! A message that waits in the outbox past its day or epoch is never stranded: it is sealed
//! again where its recipients look now, with its original time; only one we can no longer
//! deliver at all (we were removed) expires, with the reason. Accounts on a clock the test
//! moves; envelopes carried by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_core::account::NOT_A_MEMBER;
use weft_core::envelope::Envelope;

mod common;
use common::{DAY_MS, Person, carry, texts};

/// Alice and Bob, contacts, and what Alice's outbox holds afterwards handed over (a network
/// took it), so that only what follows waits.
fn contacts(clock: &Arc<AtomicU64>) -> (Person, Person) {
    let (mut alice, mut bob) = common::contacts(clock);
    for p in [&mut alice, &mut bob] {
        let ids: Vec<_> =
            p.account.outbox(1000).unwrap().live.iter().map(|e| Envelope::parse(e.clone()).unwrap().id()).collect();
        p.account.handed_over(&ids).unwrap();
    }
    (alice, bob)
}

#[test]
fn a_message_queued_for_a_week_is_sealed_again_under_todays_topic() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (mut alice, mut bob) = contacts(&clock);
    let written_at = clock.load(Ordering::SeqCst);
    let queued = alice.account.send("bob", "written with no network").unwrap();
    let old_topic = Envelope::parse(alice.account.outbox(10).unwrap().live.pop().unwrap()).unwrap().topic();

    clock.fetch_add(7 * DAY_MS, Ordering::SeqCst);
    let batch = alice.account.outbox(10).unwrap();
    assert_eq!(batch.resealed.len(), 1, "{batch:?}");
    let (old, new) = &batch.resealed[0];
    assert_eq!(old, &queued.id);
    assert!(batch.expired.is_empty());
    let fresh: Vec<Envelope> = batch.live.iter().map(|e| Envelope::parse(e.clone()).unwrap()).collect();
    assert!(fresh.iter().any(|e| e.id().to_hex() == *new));
    assert!(fresh.iter().all(|e| e.topic() != old_topic), "sealed under today's topic, not the old day's");

    // History shows it once, under its new id, with the time it was written, still queued.
    let history = alice.account.history("bob", 10).unwrap();
    let mine: Vec<_> = history.iter().filter(|m| m.kind == "text").collect();
    assert_eq!(mine.len(), 1);
    assert_eq!((&mine[0].id, mine[0].sent_ms, mine[0].state), (new, queued.sent_ms, Some("queued")));
    assert!(mine[0].sent_ms <= written_at + 10);
    // The old envelope is gone: no peer and no bundle can hand out both.
    let bundle = weft_core::bundle::Bundle::decode(&alice.account.export_bundle().unwrap()).unwrap().0;
    assert!(bundle.envelopes.iter().all(|e| e.id().to_hex() != *old));

    // Bob reads it, once, with Alice's original time.
    for e in fresh {
        let _ = bob.account.receive_envelope(e);
    }
    assert_eq!(texts(&bob, "alice"), vec!["alice: written with no network"]);
    let got = bob.account.history("alice", 10).unwrap().into_iter().find(|m| m.kind == "text").unwrap();
    assert_eq!((got.id.as_str(), got.sent_ms), (new.as_str(), queued.sent_ms));
    // The next look at the outbox seals nothing again.
    let again = alice.account.outbox(10).unwrap();
    assert!(again.resealed.is_empty() && again.live.len() == batch.live.len());
}

/// A message queued yesterday goes as it is in the first hours of the day, while yesterday's
/// topics are still followed (by the node's network session of yesterday); after that it is
/// sealed again for today, rather than pushed under today's peer id on yesterday's topic.
#[test]
fn a_message_queued_yesterday_goes_as_it_is_early_in_the_day_and_sealed_again_later() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (mut alice, _bob) = contacts(&clock);
    let queued = alice.account.send("bob", "yesterday's news").unwrap();
    let midnight = (clock.load(Ordering::SeqCst) / DAY_MS + 1) * DAY_MS;
    clock.store(midnight + DAY_MS / 24, Ordering::SeqCst);
    let batch = alice.account.outbox(10).unwrap();
    assert!(batch.resealed.is_empty(), "yesterday's topic is still followed at one o'clock");
    assert!(batch.live.iter().any(|e| Envelope::parse(e.clone()).unwrap().id().to_hex() == queued.id));
    clock.store(midnight + 3 * DAY_MS / 24, Ordering::SeqCst);
    let batch = alice.account.outbox(10).unwrap();
    assert!(batch.resealed.iter().any(|(old, _)| *old == queued.id), "and sealed again at three: {batch:?}");
}

/// Bob writes into a group while offline; meanwhile Alice removed Carol. Bob's message goes out
/// in the new epoch, which Carol cannot read; had Bob been removed instead, his message would
/// expire, saying why.
#[test]
fn an_epoch_change_while_queued_keeps_the_removed_out_and_a_removed_writer_expires() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (mut alice, mut bob, mut carol) = common::trip(&clock);

    let queued = bob.account.send("trip", "for alice and bob only, by now").unwrap();
    alice.account.remove_member("trip", "carol").unwrap();
    carry(&alice, &mut bob);
    let batch = bob.account.outbox(100).unwrap();
    let new = batch.resealed.iter().find(|(old, _)| *old == queued.id).map(|(_, new)| new.clone());
    let new = new.expect("sealed again in the new epoch");
    let fresh: Vec<Envelope> = batch.live.iter().map(|e| Envelope::parse(e.clone()).unwrap()).collect();
    assert!(fresh.iter().any(|e| e.id().to_hex() == new));
    for e in &fresh {
        let _ = carol.account.receive_envelope(e.clone());
        let _ = alice.account.receive_envelope(e.clone());
    }
    assert!(texts(&carol, "trip").is_empty(), "carol cannot read the new epoch");
    assert_eq!(texts(&alice, "trip"), vec!["bob: for alice and bob only, by now"]);

    // Carol wrote too, before she learnt she was removed: hers cannot go anywhere.
    let stranded = carol.account.send("trip", "anyone?").unwrap();
    carry(&alice, &mut carol);
    let batch = carol.account.outbox(100).unwrap();
    assert_eq!(batch.expired, vec![(stranded.id.clone(), NOT_A_MEMBER.to_owned())]);
    let mine = carol.account.history("trip", 10).unwrap().into_iter().find(|m| m.id == stranded.id).unwrap();
    assert_eq!(mine.state, Some("expired"));
    let id = weft_core::envelope::EnvelopeId::from_hex(&stranded.id).unwrap();
    assert_eq!(carol.account.expired_reason(&id).unwrap().as_deref(), Some(NOT_A_MEMBER));
    assert!(carol.account.resend(&stranded.id).is_err(), "not while she is out");
    let queued_ok = bob.account.history("trip", 10).unwrap().into_iter().find(|m| m.kind == "text").unwrap();
    assert!(bob.account.resend(&queued_ok.id).is_err(), "a message on its way is not sent twice");

    // Alice takes Carol back: one action sends her stranded message, under a new id.
    alice.account.invite("trip", "carol").unwrap();
    carry(&alice, &mut carol);
    let again = carol.account.resend(&stranded.id).unwrap();
    assert_ne!(again.id, stranded.id);
    assert_eq!((again.state, again.sent_ms, again.body.as_str()), (Some("queued"), stranded.sent_ms, "anyone?"));
    let batch = carol.account.outbox(100).unwrap();
    for e in batch.live {
        let _ = alice.account.receive_envelope(Envelope::parse(e).unwrap());
    }
    assert!(texts(&alice, "trip").contains(&"carol: anyone?".to_string()));
}

/// A message sealed again can reach a member in both its envelopes: a peer took the first after
/// all and nobody told its sender (the churn test found this on loopback). It is shown once,
/// under the new id, whichever envelope comes first, and its sender does not see it twice when
/// the first comes back.
#[test]
fn a_message_that_went_out_in_both_envelopes_is_shown_once() {
    for old_first in [true, false] {
        let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
        let (mut alice, mut bob, _carol) = common::trip(&clock);
        let queued = bob.account.send("trip", "said once").unwrap();
        let first = bob.account.outbox(100).unwrap().live;
        let first: Vec<Envelope> = first.into_iter().map(|e| Envelope::parse(e).unwrap()).collect();
        let old = first.into_iter().find(|e| e.id().to_hex() == queued.id).unwrap();
        alice.account.remove_member("trip", "carol").unwrap();
        carry(&alice, &mut bob);
        let batch = bob.account.outbox(100).unwrap();
        let new = batch.resealed.iter().find(|(o, _)| *o == queued.id).map(|(_, n)| n.clone()).unwrap();
        let mut arrivals: Vec<Envelope> = batch.live.iter().map(|e| Envelope::parse(e.clone()).unwrap()).collect();
        if old_first {
            arrivals.insert(0, old.clone());
        } else {
            arrivals.push(old.clone());
        }
        let mut moved = Vec::new();
        for e in arrivals {
            if let Ok(weft_core::account::Received::Applied(shown)) = alice.account.receive_envelope(e) {
                moved.extend(shown.into_iter().filter_map(|m| m.replaces.map(|old| (old, m.id))));
            }
        }
        assert_eq!(texts(&alice, "trip"), vec!["bob: said once"], "old envelope first: {old_first}");
        let shown = alice.account.history("trip", 10).unwrap().into_iter().find(|m| m.kind == "text").unwrap();
        assert_eq!(shown.id, new);
        // Shown under the old id first, the message moves: the app is told so.
        if old_first {
            assert_eq!(moved, vec![(queued.id.clone(), new.clone())]);
        } else {
            assert!(moved.is_empty());
        }
        let _ = bob.account.receive_envelope(old);
        assert_eq!(texts(&bob, "trip"), vec!["bob: said once"]);
    }
}
