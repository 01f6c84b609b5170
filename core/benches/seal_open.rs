//! Seal and open throughput against the bound the path cannot avoid.
//!
//! For each body size, in the same process: our `send_text` (seal) and `open` + `accept`, and
//! the bound: one Ed25519 sign (or verify) over the body plus one XChaCha20-Poly1305 pass over
//! the padded envelope size. Prints our throughput as a ratio of the bound's (1.0 = no cost
//! beyond the unavoidable primitives).
//!
//! Run: `cargo bench -p weft-core --bench seal_open`

use std::hint::black_box;
use std::time::Instant;

use ed25519_dalek::{Signer, SigningKey};
use weft_core::crypto::{Entropy, OsEntropy, seal_in_place};
use weft_core::envelope::Envelope;
use weft_core::group::{Event, Group, LocalDevice, Sealed};
use weft_core::identity::AccountKey;

const NOW: u64 = 1_750_000_000_000;

fn device(rng: &mut OsEntropy) -> LocalDevice {
    LocalDevice::generate(&AccountKey::generate(rng).unwrap(), 0, rng).unwrap()
}

/// Times `ours` and `bound` in alternating batches (so that drift in the machine's speed hits
/// both alike) and returns the median time per operation of each and the median ratio
/// bound/ours of the batches.
fn compare(batches: usize, per_batch: usize, mut ours: impl FnMut(), mut bound: impl FnMut()) -> (f64, f64, f64) {
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        start.elapsed().as_secs_f64() / per_batch as f64
    };
    let mut samples: Vec<(f64, f64)> = (0..batches).map(|_| (time(&mut ours), time(&mut bound))).collect();
    let mut ratios: Vec<f64> = samples.iter().map(|(o, b)| b / o).collect();
    ratios.sort_by(f64::total_cmp);
    samples.sort_by(|x, y| x.0.total_cmp(&y.0));
    let ours_median = samples[batches / 2].0;
    samples.sort_by(|x, y| x.1.total_cmp(&y.1));
    (ours_median, samples[batches / 2].1, ratios[batches / 2])
}

fn main() {
    let mut rng = OsEntropy;
    let (a, b) = (device(&mut rng), device(&mut rng));
    println!("Weft seal/open vs the unavoidable primitives (median of interleaved batches)");
    println!(
        "{:>8} {:>9} | {:>10} {:>10} {:>6} | {:>10} {:>10} {:>6}",
        "body", "envelope", "seal", "bound", "ratio", "open", "bound", "ratio"
    );
    for body_len in [100usize, 1024, 16 * 1024] {
        let text = "x".repeat(body_len);
        // Stay below the 10,000 messages after which a chain is re-seeded.
        let per_batch = if body_len > 4096 { 100 } else { 400 };
        let batches = 21;

        // A stream for the open measurement, made before alice's chain moves on.
        let mut alice = Group::pair(&a, b.cert.account, &[1; 32], NOW);
        let first = alice.ensure_own_chain(NOW, &mut rng).unwrap().clone();
        alice.mark_shared(b.cert.device);
        let stream: Vec<Sealed> =
            (0..batches * per_batch).flat_map(|_| alice.send_text(&a, &text, NOW, &mut rng).unwrap()).collect();
        let envelope_len = stream[0].envelope.as_bytes().len();
        let epoch = alice.current_epoch().unwrap().id;
        let mut bob = Group::pair(&b, a.cert.account, &[1; 32], NOW);
        bob.learn_device(&a.cert).unwrap();
        bob.learn_chain(a.cert.device, first.generation, first.next_index, *first.chain_key);

        let mut sender = Group::pair(&a, b.cert.account, &[1; 32], NOW);
        sender.ensure_own_chain(NOW, &mut rng).unwrap();
        sender.mark_shared(b.cert.device);

        // The bound: sign/verify over the body, one AEAD pass over the padded size.
        let key = SigningKey::from_bytes(&rng.bytes32().unwrap());
        let verifying = key.verifying_key();
        let body = vec![7u8; body_len];
        let signature = key.sign(&body);
        let aead_key = rng.bytes32().unwrap();
        let nonce = rng.nonce().unwrap();
        let mut buf = vec![0u8; envelope_len - 16];
        let mut aead_pass = move || {
            buf.truncate(envelope_len - 16);
            seal_in_place(&aead_key, &nonce, b"", &mut buf);
            black_box(&buf);
        };

        let (seal, seal_bound, seal_ratio) = compare(
            batches,
            per_batch,
            || {
                black_box(sender.send_text(&a, &text, NOW, &mut rng).unwrap());
            },
            || {
                black_box(key.sign(black_box(&body)));
                aead_pass();
            },
        );
        let mut envelopes = stream.iter().map(|s| &s.envelope);
        let (open, open_bound, open_ratio) = compare(
            batches,
            per_batch,
            || {
                let envelope: &Envelope = envelopes.next().unwrap();
                let opened = bob.open(&b, envelope, &epoch).unwrap();
                assert!(matches!(bob.accept(&b, opened).unwrap(), Event::Message { .. }));
            },
            || {
                verifying.verify_strict(black_box(&body), &signature).unwrap();
                aead_pass();
            },
        );
        println!(
            "{:>8} {:>9} | {:>8.1}µs {:>8.1}µs {:>6.2} | {:>8.1}µs {:>8.1}µs {:>6.2}",
            body_len,
            envelope_len,
            seal * 1e6,
            seal_bound * 1e6,
            seal_ratio,
            open * 1e6,
            open_bound * 1e6,
            open_ratio,
        );
    }
}
