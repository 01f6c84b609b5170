//! What a relay learns when a device catches up after days away: a moment and a set of
//! buckets, never a topic. Accounts on a clock the test moves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_core::account::CATCH_UP_BUCKET_BITS;

mod common;
use common::{DAY_MS, carry, contacts};
use weft_core::sync::{PeerSync, SyncMessage};

const HOUR_MS: u64 = 60 * 60 * 1000;

/// A device away overnight, back after 02:00 (when yesterday's topics are no longer followed),
/// asks a relay for yesterday: what was written after it left the evening before.
#[test]
fn a_night_away_asks_for_yesterday_once_it_is_no_longer_followed() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (_alice, mut bob) = contacts(&clock);
    // Online with a relay for a whole round at 22:13: in step through today.
    assert!(bob.account.catch_up_plan(true).unwrap().is_none());
    // Away overnight; at 01:13 yesterday's topics are still followed, at 09:13 they are not.
    clock.fetch_add(3 * HOUR_MS, Ordering::SeqCst);
    assert!(bob.account.catch_up_plan(false).unwrap().is_none(), "01:13: yesterday still followed");
    clock.fetch_add(8 * HOUR_MS, Ordering::SeqCst);
    let plan = bob.account.catch_up_plan(true).unwrap().expect("09:13: yesterday is no longer followed");
    assert_eq!(plan.missed_topics().len(), 1, "yesterday's topic, and nothing of today's");
    assert_eq!(bob.account.caught_up(&plan).unwrap(), 1);
    assert!(bob.account.catch_up_plan(true).unwrap().is_none());
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_relay_catch_up_names_a_moment_and_buckets_never_a_topic() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (_alice, mut bob) = contacts(&clock);
    let bob = &mut bob.account;
    bob.create_group("trip").unwrap();
    bob.invite("trip", "alice").unwrap();

    // (The clock starts at 22:13 UTC.) Back after midnight, before 02:00: yesterday's topics are
    // still followed, and the relay is asked nothing.
    clock.fetch_add(3 * HOUR_MS, Ordering::SeqCst);
    assert!(bob.catch_up_plan(false).unwrap().is_none());
    // Back a week later: one request.
    clock.fetch_add(7 * DAY_MS, Ordering::SeqCst);
    let plan = bob.catch_up_plan(false).unwrap().expect("a week away is behind");
    assert_eq!(plan.conversations(), 2);
    assert_eq!(plan.buckets.bits(), CATCH_UP_BUCKET_BITS);
    let request = PeerSync::default().start_catch_up(plan.after, plan.buckets.clone()).unwrap().encode();

    // It names no topic bob can read (old or current), no history token, no group id, no key.
    assert_eq!(request.len(), 1 + 24 + 1 + 32, "a moment and a 256-bit bucket map, whatever the topics");
    let mut secrets: Vec<Vec<u8>> = bob.readable_topics().into_iter().map(|t| t.to_vec()).collect();
    assert!(plan.missed_topics().len() >= 14, "two conversations, a week each");
    secrets.extend(plan.missed_topics().iter().map(|t| t.to_vec()));
    for c in bob.conversations().unwrap() {
        secrets.push(c.id.to_vec());
    }
    secrets.push(bob.account_public().to_vec());
    secrets.push(bob.device_id().to_vec());
    for secret in &secrets {
        assert!(!contains(&request, secret), "the request names something of bob's");
    }
    // Every missed topic's bucket is named, so the relay's answer holds all of them; each bucket
    // holds 1/256 of every topic on the relay, and the relay cannot tell which are bob's.
    assert!(plan.missed_topics().iter().all(|t| plan.buckets.contains(t)));
    assert!(plan.buckets.len() <= plan.missed_topics().len());
    // The moment is a day before bob's first missed day: it says when bob left, no more.
    match SyncMessage::decode(&request).unwrap() {
        SyncMessage::Since { after, .. } => assert!(after.stored_ms < 1_700_000_000_000),
        other => panic!("{other:?}"),
    }
}

/// A visit of a few seconds with a relay does not count as having followed the day: what
/// reached the relay late on it is asked for next time; a whole round does.
#[test]
fn only_a_settled_visit_moves_the_day_caught_up_through() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (_alice, mut bob) = contacts(&clock);
    // 22:13, then 01:13 the next night, while yesterday's topics are still followed.
    clock.fetch_add(3 * HOUR_MS, Ordering::SeqCst);
    assert!(bob.account.catch_up_plan(false).unwrap().is_none(), "a brief visit after midnight");
    clock.fetch_add(DAY_MS, Ordering::SeqCst);
    let plan = bob.account.catch_up_plan(true).unwrap().expect("the day before the visit was not followed whole");
    assert_eq!(plan.missed_topics().len(), 1);
    // The relays answer it whole; then, with the day's topics followed for a round, bob is in
    // step through today.
    assert_eq!(bob.account.caught_up(&plan).unwrap(), 1);
    assert!(bob.account.catch_up_plan(true).unwrap().is_none());
    clock.fetch_add(DAY_MS, Ordering::SeqCst);
    assert!(bob.account.catch_up_plan(true).unwrap().is_none(), "after a settled visit, the next day asks nothing");
}

/// However long a device was away, a relay is asked only for what it can still hold; and a
/// clock that was once set ahead does not switch catching up off.
#[test]
fn a_catch_up_reaches_back_only_as_far_as_relays_keep_and_survives_a_clock_set_ahead() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (_alice, mut bob) = contacts(&clock);
    clock.fetch_add(100 * DAY_MS, Ordering::SeqCst);
    let today_ms = clock.load(Ordering::SeqCst);
    let plan = bob.account.catch_up_plan(false).unwrap().expect("a hundred days away");
    assert!(plan.after.stored_ms >= today_ms - 17 * DAY_MS, "not the whole hundred days");
    assert!(plan.missed_topics().len() <= 15);

    // Caught up; then a run with the clock a year ahead, settled with a relay, records a day
    // a year ahead...
    bob.account.caught_up(&plan).unwrap();
    assert!(bob.account.catch_up_plan(true).unwrap().is_none());
    clock.fetch_add(365 * DAY_MS, Ordering::SeqCst);
    let ahead = bob.account.catch_up_plan(true).unwrap().expect("a year on, by that clock");
    bob.account.caught_up(&ahead).unwrap();
    assert!(bob.account.catch_up_plan(true).unwrap().is_none());
    // ...then the clock is right again, and a week passes.
    clock.fetch_sub(365 * DAY_MS, Ordering::SeqCst);
    clock.fetch_add(7 * DAY_MS, Ordering::SeqCst);
    assert!(bob.account.catch_up_plan(false).unwrap().is_some(), "the week away is still asked for");
}

/// A history key travels bound to the two peers of a connection and to who asks: a peer it was
/// handed to cannot use it with another member, nor play it back to the member who sent it.
#[test]
fn a_history_key_handed_to_one_peer_is_refused_by_another() {
    use weft_core::sync::{EnvelopeSource, PeerBound, Scope, history_request};
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (mut alice, mut bob) = contacts(&clock);
    bob.account.send("alice", "in the history").unwrap();
    carry(&bob, &mut alice);
    clock.fetch_add(5 * DAY_MS, Ordering::SeqCst);
    let (_, Scope::History { key: token, from }) = alice.account.history_wanted()[0] else { panic!("a history") };
    // (A running node follows the day on every tick.)
    bob.account.follow_the_day();
    let (alice_id, bob_id, mallory) = (b"alice-peer".as_slice(), b"bob-peer".as_slice(), b"mallory-peer".as_slice());
    // What alice sends bob: served by bob to alice, with the message alice lacks.
    let to_bob = history_request(&token, alice_id, bob_id, from);
    let bob_for_alice = PeerBound::new(&bob.account, bob_id, alice_id);
    assert!(bob_for_alice.serves(&to_bob));
    assert!(bob_for_alice.ids(&to_bob).is_some_and(|ids| !ids.is_empty()));
    // Mallory saw what alice sent her (she posed as a member on the topic), and replays it to bob.
    let to_mallory = history_request(&token, alice_id, mallory, from);
    assert_eq!(PeerBound::new(&bob.account, bob_id, mallory).ids(&to_mallory), None);
    // Or plays it back to alice, who sent it: alice serves a history only to the peer that asked.
    assert!(!PeerBound::new(&alice.account, alice_id, mallory).serves(&to_mallory));
    // `from` travels masked: the day the conversation began is not on the wire.
    let Scope::History { from: on_the_wire, .. } = to_bob else { unreachable!() };
    assert_ne!(on_the_wire, from);
    // The bare token is no key on the wire either.
    assert_eq!(PeerBound::new(&bob.account, bob_id, mallory).ids(&Scope::History { key: token, from }), None);
}
