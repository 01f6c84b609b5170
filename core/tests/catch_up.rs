//! What a relay learns when a device catches up after days away: a moment and a set of
//! buckets, never a topic. Accounts on a clock the test moves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_core::account::{Account, CATCH_UP_BUCKET_BITS};
use weft_core::crypto::SeededEntropy;
use weft_core::store::DatabaseKey;
use weft_core::sync::{PeerSync, SyncMessage};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

fn account(name: &str, seed: u64, clock: &Arc<AtomicU64>) -> (Account, tempfile::TempDir) {
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
    (account, dir)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_relay_catch_up_names_a_moment_and_buckets_never_a_topic() {
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    let (mut alice, _a) = account("alice", 1, &clock);
    let (mut bob, _b) = account("bob", 2, &clock);
    alice.add_contact(&bob.card().to_link(), None).unwrap();
    bob.import_bundle(&alice.export_bundle().unwrap()).unwrap();
    bob.accept_contact("alice").unwrap();
    alice.import_bundle(&bob.export_bundle().unwrap()).unwrap();
    bob.create_group("trip").unwrap();
    bob.invite("trip", "alice").unwrap();

    // Back a day later: what bob follows covers it, and the relay is asked nothing.
    clock.fetch_add(DAY_MS, Ordering::SeqCst);
    assert!(bob.catch_up_plan().unwrap().is_none());
    // Back a week later: one request.
    clock.fetch_add(7 * DAY_MS, Ordering::SeqCst);
    let plan = bob.catch_up_plan().unwrap().expect("a week away is behind");
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
