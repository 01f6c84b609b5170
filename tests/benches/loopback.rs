//! Two nodes on loopback libp2p, each persisting to its own SQLCipher store: latency at low load
//! (one message at a time, from the send call to the receive event) and throughput (a burst of
//! 2,000 messages, sent one at a time and with 32 in flight), against the storage bound
//! measured in the same run: the very same envelopes written straight into a fresh store of the
//! same kind, durably, one commit per envelope (what acknowledging each message on its own
//! costs) and one commit per 32 (the same grouping the node's group commit reaches).
//!
//! Run: `cargo bench -p weft-tests --bench loopback`

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use weft_core::bundle::Bundle;
use weft_core::node::{Node, NodeEvent};
use weft_core::store::{DatabaseKey, EnvelopeStatus, Rows, Store};
use weft_tests::nodes::{config, create, introduce, online};

const LATENCY_SAMPLES: usize = 300;
const BURST: usize = 2_000;
/// Sends in flight at once in the second burst (a busy client: several chats, a bot).
const WINDOW: usize = 32;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Waits (at most a minute) for the receive event of the message with this body.
async fn received(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>, body: &str) {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::MessageReceived { message, .. }) if message.body == body => return,
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait).await.unwrap_or_else(|_| panic!("{body:?} never arrived"));
}

/// Sends `BURST` messages in order with up to `window` in flight; returns when all are stored.
async fn burst(node: &Node, to: &str, tag: &str, window: usize) {
    let mut in_flight = VecDeque::new();
    for i in 0..BURST {
        in_flight.push_back(node.send(to.into(), format!("{tag} {i}")));
        if in_flight.len() >= window {
            in_flight.pop_front().expect("not empty").await.unwrap();
        }
    }
    for f in in_flight {
        f.await.unwrap();
    }
}

/// Messages per second from the first send until the receiver announced the last one.
async fn network_burst(alice: &Node, events: &mut tokio::sync::broadcast::Receiver<NodeEvent>, window: usize) -> f64 {
    let tag = format!("burst{window}");
    let start = Instant::now();
    let last = format!("{tag} {}", BURST - 1);
    tokio::join!(burst(alice, "bob", &tag, window), received(events, &last));
    BURST as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let alice = create(dir.path(), "alice").await;
    let bob = create(dir.path(), "bob").await;
    introduce(&alice, &bob).await;
    let (alice_net, alice_addr) = online(&alice, config(vec![], vec![])).await;
    let (bob_net, _) = online(&bob, config(vec![alice_addr], vec![])).await;
    let mut events = bob.subscribe();
    // Warm up until pushes flow (the gossip topic is joined on both sides).
    alice.send("bob".into(), "warm-up".into()).await.unwrap();
    received(&mut events, "warm-up").await;

    let mut latencies = Vec::with_capacity(LATENCY_SAMPLES);
    for i in 0..LATENCY_SAMPLES {
        let body = format!("latency {i}");
        let start = Instant::now();
        alice.send("bob".into(), body.clone()).await.unwrap();
        received(&mut events, &body).await;
        latencies.push(start.elapsed());
    }
    latencies.sort();
    let sequential = network_burst(&alice, &mut events, 1).await;
    let windowed = network_burst(&alice, &mut events, WINDOW).await;

    // The storage bound: the very envelopes Alice sent last, written into fresh stores.
    let (bundle, _) = Bundle::decode(&alice.export_bundle().await.unwrap()).unwrap();
    let envelopes: Vec<_> = bundle.envelopes.into_iter().rev().take(BURST).collect();
    let bound = |name: &str, group: usize| {
        let mut store = Store::create(&dir.path().join(name), &DatabaseKey::from_bytes([3; 32])).unwrap();
        let start = Instant::now();
        for chunk in envelopes.chunks(group) {
            let put = |tx: &weft_core::store::Connection| {
                chunk.iter().try_for_each(|e| tx.put_envelope(&e.id(), None, e.as_bytes(), EnvelopeStatus::Opened, 0))
            };
            store.write(put).unwrap();
        }
        envelopes.len() as f64 / start.elapsed().as_secs_f64()
    };
    let single = bound("single.db", 1);
    let grouped = bound("grouped.db", WINDOW);

    println!("Loopback libp2p, two nodes, each with its SQLCipher store (WAL, synchronous=FULL for what it sends)");
    println!(
        "latency, one message at a time ({LATENCY_SAMPLES} samples): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().expect("samples"))
    );
    println!("storage bound, {} envelopes, one durable commit each:    {single:>7.0} /s", envelopes.len());
    println!("storage bound, {} envelopes, one durable commit per {WINDOW}: {grouped:>7.0} /s", envelopes.len());
    println!(
        "burst of {BURST}, one send at a time:  {sequential:>7.0} msg/s = {:.2} of the one-commit-each bound",
        sequential / single
    );
    println!(
        "burst of {BURST}, {WINDOW} sends in flight: {windowed:>7.0} msg/s = {:.2} of the one-commit-each bound, {:.2} of the per-{WINDOW} bound",
        windowed / single,
        windowed / grouped
    );
    alice_net.stop();
    bob_net.stop();
}
