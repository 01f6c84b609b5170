//! A file over loopback libp2p between two nodes, each with its SQLCipher store: from the
//! sender's `send_file` call until the receiver announced the file whole (every envelope
//! fetched, checked against the manifest and stored), against two bounds measured in the same
//! run: the same bytes copied over a loopback TCP socket (the raw copy), and the file's
//! envelopes written straight into a fresh store of the same kind (the storage bound).
//!
//! Run: `cargo bench -p weft-tests --bench attachment`

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use weft_core::bundle::Bundle;
use weft_core::node::NodeEvent;
use weft_core::store::{DatabaseKey, EnvelopeStatus, Rows, Store};
use weft_tests::nodes::{config, create, introduce, online};

const FILE_LEN: usize = 16 << 20;
const RUNS: usize = 3;

fn mib_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / f64::from(1 << 20) / d.as_secs_f64()
}

/// The raw copy: `bytes` written to a loopback TCP socket and read whole on the other side.
fn raw_copy(bytes: &[u8]) -> Duration {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let len = bytes.len();
    let reader = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut got = vec![0u8; len];
        socket.read_exact(&mut got).unwrap();
        got.len()
    });
    let start = Instant::now();
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    socket.write_all(bytes).unwrap();
    assert_eq!(reader.join().unwrap(), len);
    start.elapsed()
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
    // Warm up until pushes flow.
    alice.send("bob".into(), "warm-up".into()).await.unwrap();
    loop {
        if let Ok(NodeEvent::MessageReceived { .. }) = events.recv().await {
            break;
        }
    }

    let mut transfers = Vec::new();
    let mut firsts = Vec::new();
    for run in 0..RUNS {
        let file: Vec<u8> = (0..FILE_LEN).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 ^ run as u8).collect();
        let start = Instant::now();
        let sent = alice
            .send_file("bob".into(), file.clone(), format!("film {run}.mp4"), "video/mp4".into(), String::new())
            .await
            .unwrap();
        let sealed = start.elapsed();
        let mut first = None;
        let wait = async {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::AttachmentProgress { message, have, total, .. }) if message == sent.id => {
                        first.get_or_insert(start.elapsed());
                        if have == total {
                            return;
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("events: {e}"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(600), wait).await.expect("the file came whole");
        transfers.push(start.elapsed());
        firsts.push((sealed, first.expect("progress came")));
        let id = weft_core::envelope::EnvelopeId::from_hex(&sent.id).unwrap();
        let (_, got) = bob.attachment_bytes(id).await.unwrap().expect("whole");
        assert_eq!(got, file);
    }
    let transfer = {
        let mut sorted = transfers.clone();
        sorted.sort();
        sorted[RUNS / 2]
    };

    // The bounds, on the last file's bytes and envelopes.
    let (bundle, _) = Bundle::decode(&alice.export_bundle().await.unwrap()).unwrap();
    let envelopes: Vec<_> =
        bundle.envelopes.into_iter().filter(|e| e.as_bytes().len() == weft_core::envelope::MAX_ENVELOPE_LEN).collect();
    let per_file = envelopes.len() / RUNS;
    let last: Vec<_> = envelopes.iter().take(per_file).collect();
    let wire: Vec<u8> = last.iter().flat_map(|e| e.as_bytes().to_vec()).collect();
    let mut copies: Vec<Duration> = (0..RUNS).map(|_| raw_copy(&wire)).collect();
    copies.sort();
    let copy = copies[RUNS / 2];
    let mut store = Store::create(&dir.path().join("bound.db"), &DatabaseKey::from_bytes([3; 32])).unwrap();
    let start = Instant::now();
    store
        .write(|tx| {
            last.iter().try_for_each(|e| tx.put_envelope(&e.id(), None, e.as_bytes(), EnvelopeStatus::Opened, 0))
        })
        .unwrap();
    let stored = start.elapsed();

    println!(
        "A {} MiB file over loopback libp2p, two nodes, each with its SQLCipher store (median of {RUNS})",
        FILE_LEN >> 20
    );
    println!(
        "envelopes per file: {per_file} of 64 KiB ({:.1} MiB on the wire)",
        wire.len() as f64 / f64::from(1 << 20)
    );
    println!("raw copy over loopback TCP: {:>8.1} MiB/s", mib_per_s(FILE_LEN, copy));
    println!("storage bound, one commit:  {:>8.1} MiB/s", mib_per_s(FILE_LEN, stored));
    println!(
        "file, send_file to whole:   {:>8.1} MiB/s ({:.2} s) = {:.3} of the raw copy, {:.2} of the storage bound",
        mib_per_s(FILE_LEN, transfer),
        transfer.as_secs_f64(),
        copy.as_secs_f64() / transfer.as_secs_f64(),
        stored.as_secs_f64() / transfer.as_secs_f64()
    );
    for ((sealed, first), total) in firsts.iter().zip(&transfers) {
        println!(
            "  a run: sealed and stored by the sender {:.2} s, first piece at the receiver {:.2} s, whole {:.2} s",
            sealed.as_secs_f64(),
            first.as_secs_f64(),
            total.as_secs_f64()
        );
    }
    alice_net.stop();
    bob_net.stop();
}
