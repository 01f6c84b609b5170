//! A device back after 7 days, with 1,000 messages waiting in 10 conversations on a relay that
//! also holds 10,000 envelopes of other people's (on 2,000 topics of their own).
//!
//! 1. End to end on loopback: the time from going online until all 1,000 are stored, and the
//!    bytes that crossed between the device and the relay (a proxy counts them), against the
//!    bytes of the envelopes the device lacked.
//! 2. The choices for asking a relay, with the same relay contents, through the real state
//!    machines (`PeerSync` against the relay's `Cache`, every message encoded): by time and
//!    bucket at 0, 4, 8 and 12 bits, and by topic (the choice that tells the relay which topics
//!    belong together). For each, the bytes and how many others' topics share the buckets named
//!    (what hides the device's topics from the relay).
//!
//! Run: `cargo bench -p weft-tests --bench catch_up`

use std::collections::HashSet;
use std::time::{Duration, Instant};

use weft_core::account::CatchUpPlan;
use weft_core::net::{Host, PeerId};
use weft_core::relay::{Cache, CacheLimits};
use weft_core::sync::{EnvelopeSource, Item, PeerSync, Scope, SyncMessage};
use weft_tests::nodes::{Clock, config, create_with_clock, eventually, introduce, online, relay_with_clock, texts};
use weft_tests::proxy::Proxy;

const CONVERSATIONS: usize = 10;
const PER_CONVERSATION: usize = 100;
const OTHERS: usize = 10_000;
const OTHER_TOPICS: u64 = 2_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

/// An envelope of someone else's, of the smallest bucket, on one of their topics.
fn others_envelope(n: usize) -> Vec<u8> {
    let mut e = vec![0u8; 512];
    e[0] = weft_core::envelope::ENVELOPE_VERSION;
    let topic = blake3::hash(&(n as u64 % OTHER_TOPICS).to_be_bytes());
    e[1..17].copy_from_slice(&topic.as_bytes()[..16]);
    e[17..25].copy_from_slice(&(n as u64).to_be_bytes());
    e
}

/// A device that holds nothing of the topics it missed.
struct Lacking;

impl EnvelopeSource for Lacking {
    fn ids(&self, _scope: &Scope) -> Option<Vec<Item>> {
        Some(Vec::new())
    }
    fn envelope(&self, _scope: &Scope, _id: &Item) -> Option<Vec<u8>> {
        None
    }
}

/// Runs one exchange to its end between the device (`PeerSync` over `Lacking`) and the relay's
/// cache; returns (bytes both ways, envelopes the device received).
fn exchange(first: Vec<SyncMessage>, device: &mut PeerSync, relay: &Cache) -> (usize, Vec<Vec<u8>>) {
    let mut at_relay = PeerSync::new(false);
    let (mut bytes, mut received, mut to_relay) = (0, Vec::new(), first);
    while !to_relay.is_empty() {
        let mut to_device = Vec::new();
        for m in to_relay.drain(..) {
            let wire = m.encode();
            bytes += wire.len();
            to_device.extend(at_relay.handle(SyncMessage::decode(&wire).unwrap(), relay).unwrap().send);
        }
        for m in to_device {
            let wire = m.encode();
            bytes += wire.len();
            let step = device.handle(SyncMessage::decode(&wire).unwrap(), &Lacking).unwrap();
            received.extend(step.received);
            to_relay.extend(step.send);
        }
    }
    (bytes, received)
}

/// Others' topics in the buckets a plan names: the crowd its topics hide in.
fn crowd(plan: &CatchUpPlan, relay: &Cache, own: &HashSet<[u8; 16]>) -> usize {
    let mut topics = HashSet::new();
    for e in relay.envelopes() {
        let topic: [u8; 16] = e[1..17].try_into().unwrap();
        if plan.buckets.contains(&topic) && !own.contains(&topic) {
            topics.insert(topic);
        }
    }
    topics.len()
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::default();
    let (relay_net, relay, relay_addr) = relay_with_clock(dir.path(), &clock).await;
    let port = match relay_addr.iter().nth(1) {
        Some(weft_core::net::Protocol::Tcp(port)) => port,
        other => panic!("unexpected {other:?}"),
    };
    let proxy = Proxy::start(([127, 0, 0, 1], port).into()).await;
    let through_proxy = proxy.multiaddr().with_p2p(relay_net.peer_id()).unwrap();

    let bob = create_with_clock(dir.path(), "bob", &clock).await;
    let mut senders = Vec::new();
    for i in 0..CONVERSATIONS {
        let sender = create_with_clock(dir.path(), &format!("sender{i}"), &clock).await;
        introduce(&sender, &bob).await;
        senders.push(sender);
    }
    let others: HashSet<[u8; 32]> = (0..OTHERS)
        .map(|n| {
            let e = others_envelope(n);
            let id = *blake3::hash(&e).as_bytes();
            relay.receive_envelope(e, PeerId::random());
            id
        })
        .collect();

    // Everyone writes on day 0 and leaves; the relay keeps it all.
    for (i, sender) in senders.iter().enumerate() {
        let (net, _) = online(sender, config(vec![], vec![relay_addr.clone()])).await;
        for n in 0..PER_CONVERSATION {
            sender.send("bob".into(), format!("message {n} from sender {i}")).await.unwrap();
        }
        eventually("the relay to take the sender's outbox", 120, || async {
            sender.call(|a| a.outbox_len()).await.unwrap() == 0
        })
        .await;
        net.stop();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = relay.envelopes();
    let waiting: Vec<&Vec<u8>> = held.iter().filter(|e| !others.contains(blake3::hash(e).as_bytes())).collect();
    let waiting_bytes: usize = waiting.iter().map(|e| e.len()).sum();
    let own: HashSet<[u8; 16]> = waiting.iter().map(|e| e[1..17].try_into().unwrap()).collect();

    // A week later. What the device would ask, before it asks.
    clock.advance_days(7);
    let plan = bob.call(|a| a.catch_up_plan(false)).await.unwrap().expect("a week away is behind");
    let mut cache = Cache::new(CacheLimits::default());
    for e in &held {
        cache.insert(e.clone(), b"held".to_vec(), clock.now_ms() - 7 * 24 * 3600 * 1000).unwrap();
    }

    // 1. End to end.
    let before = proxy.captured().len();
    let started = Instant::now();
    let (bob_net, _) = online(&bob, config(vec![], vec![through_proxy])).await;
    let mut read = 0;
    while read < CONVERSATIONS * PER_CONVERSATION {
        assert!(started.elapsed() < Duration::from_secs(300), "only {read} arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
        read = 0;
        for i in 0..CONVERSATIONS {
            read += texts(&bob, &format!("sender{i}")).await.len();
        }
    }
    let took = started.elapsed();
    let wire = proxy.captured().len() - before;
    bob_net.stop();
    relay_net.stop();
    println!("catch-up after 7 days: {} messages in {CONVERSATIONS} conversations", CONVERSATIONS * PER_CONVERSATION);
    println!(
        "  relay holds {} envelopes ({} KiB) of which {} ({} KiB) are the device's",
        held.len(),
        held.iter().map(Vec::len).sum::<usize>() / 1024,
        waiting.len(),
        waiting_bytes / 1024
    );
    println!(
        "  end to end (loopback, {}-bit buckets): {:.2} s, {} KiB on the wire = {:.2}x the envelopes",
        plan.buckets.bits(),
        took.as_secs_f64(),
        wire / 1024,
        wire as f64 / waiting_bytes as f64
    );

    // 2. The choices, through the state machines.
    println!(
        "  strategy                 | bytes      | x envelopes | others' envelopes | others' topics in the named buckets"
    );
    for bits in [0u8, 4, 8, 12] {
        let plan = plan.with_bucket_bits(bits);
        let mut device = PeerSync::new(true);
        let first = device.start_catch_up(plan.after, plan.buckets.clone()).unwrap();
        let (bytes, received) = exchange(vec![first], &mut device, &cache);
        let foreign = received.iter().filter(|e| others.contains(blake3::hash(e).as_bytes())).count();
        assert_eq!(received.len() - foreign, waiting.len(), "every waiting envelope comes");
        println!(
            "  since, {bits:>2}-bit buckets    | {bytes:>10} | {:>11.2} | {foreign:>17} | {}",
            bytes as f64 / waiting_bytes as f64,
            crowd(&plan, &cache, &own)
        );
    }
    let mut device = PeerSync::new(true);
    let first: Vec<SyncMessage> =
        plan.missed_topics().iter().filter_map(|t| device.start(Scope::Topic(*t), [7; 16], &Lacking)).collect();
    let (bytes, received) = exchange(first, &mut device, &cache);
    assert_eq!(received.len(), waiting.len(), "by topic, exactly the device's");
    println!(
        "  by topic ({} topics named) | {bytes:>10} | {:>11.2} | {:>17} | 0 (each topic named)",
        plan.missed_topics().len(),
        bytes as f64 / waiting_bytes as f64,
        0
    );
}
