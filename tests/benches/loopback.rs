//! Two nodes on loopback libp2p, each persisting to its own SQLCipher store: latency at low load
//! (one message at a time, send to receive event) and throughput (a burst), against the
//! storage bound measured in the same run: the same envelopes written straight into a fresh
//! store of the same kind, one transaction each, as a receiver commits them.
//!
//! Run: `cargo bench -p weft-tests --bench loopback`

use std::time::{Duration, Instant};

use weft_core::bundle::Bundle;
use weft_core::node::NodeEvent;
use weft_core::store::{DatabaseKey, EnvelopeStatus, Rows, Store};
use weft_tests::nodes::{config, create, introduce, online};

const LATENCY_SAMPLES: usize = 300;
const BURST: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Waits for the receive event of the message with this body.
async fn received(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>, body: &str) {
    loop {
        match events.recv().await {
            Ok(NodeEvent::MessageReceived { message, .. }) if message.body == body => return,
            Ok(_) => {}
            Err(e) => panic!("events: {e}"),
        }
    }
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
    // Sending alone, no network: what the sender's account thread costs per message.
    let carol = create(dir.path(), "carol").await;
    introduce(&carol, &bob).await;
    let start = Instant::now();
    for i in 0..BURST {
        carol.send("bob".into(), format!("offline {i}")).await.unwrap();
    }
    let offline_rate = BURST as f64 / start.elapsed().as_secs_f64();
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

    let start = Instant::now();
    let sender = {
        let alice = alice.clone();
        tokio::spawn(async move {
            for i in 0..BURST {
                alice.send("bob".into(), format!("burst {i}")).await.unwrap();
            }
            start.elapsed()
        })
    };
    received(&mut events, &format!("burst {}", BURST - 1)).await;
    let burst_time = start.elapsed();
    let sending_time = sender.await.unwrap();
    eprintln!("(sending alone took {:.0} ms of {:.0} ms)", sending_time.as_secs_f64() * 1e3, burst_time.as_secs_f64() * 1e3);
    let network_rate = BURST as f64 / burst_time.as_secs_f64();

    // The storage bound: the very envelopes Alice sent, written into a fresh store.
    let (bundle, _) = Bundle::decode(&alice.export_bundle().await.unwrap()).unwrap();
    let envelopes: Vec<_> = bundle.envelopes.into_iter().rev().take(BURST).collect();
    let bound = |relaxed: bool| {
        let name = if relaxed { "relaxed.db" } else { "durable.db" };
        let mut store = Store::create(&dir.path().join(name), &DatabaseKey::from_bytes([3; 32])).unwrap();
        let start = Instant::now();
        for e in &envelopes {
            let put = |tx: &weft_core::store::Connection| {
                tx.put_envelope(&e.id(), None, e.as_bytes(), EnvelopeStatus::Opened, 0)
            };
            if relaxed { store.write_relaxed(put) } else { store.write(put) }.unwrap();
        }
        envelopes.len() as f64 / start.elapsed().as_secs_f64()
    };
    let bound_rate = bound(false);
    let relaxed_rate = bound(true);

    println!("Loopback libp2p, two nodes, SQLCipher with synchronous=FULL on both ends");
    println!(
        "latency, one message at a time ({LATENCY_SAMPLES} samples): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
    println!("throughput, a burst of {BURST}: {network_rate:.0} messages/s");
    println!(
        "storage bound, the same {} envelopes straight into SQLite, one durable commit each (what every \
         sent message costs at least once): {bound_rate:.0} envelopes/s",
        envelopes.len()
    );
    println!("  (one relaxed commit each, as a receiver commits: {relaxed_rate:.0} envelopes/s)");
    println!("sending alone, no network ({BURST} sends): {offline_rate:.0} messages/s");
    println!("ratio to the storage bound: {:.2}", network_rate / bound_rate);
    alice_net.stop();
    bob_net.stop();
}
