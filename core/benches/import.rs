//! Importing a bundle: envelopes per second, and what the progress reports cost.
//!
//! Alice writes 5,000 messages to Bob; Bob imports her bundle into copies of the same home, in
//! one process: envelope by envelope, each its own (relaxed) transaction, as `import_bundle`
//! worked before it committed in batches: the baseline; with `import_bundle`, and with
//! `import_bundle_with_progress` (a watch channel updated after every request and envelope, as
//! `weft import` uses it).
//!
//! Run: `cargo bench -p weft-core --bench import`

use std::path::Path;
use std::time::Instant;

use weft_core::account::{ImportProgress, Received};
use weft_core::bundle::Bundle;

mod common;
use common::{alice_wrote_to_bob, copy_dir};

const MESSAGES: usize = 5_000;
const ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq)]
enum Way {
    OneCommitEach,
    Batched,
    WithProgress,
}

/// Imports `bundle` into a fresh copy of Bob's home; seconds taken.
fn import(bob: &Path, copy: &Path, bundle: &[u8], way: Way) -> f64 {
    copy_dir(bob, copy);
    let mut account = common::reopen(copy, 2, 2);
    let start = Instant::now();
    let texts = match way {
        Way::OneCommitEach => {
            let (decoded, _) = Bundle::decode(bundle).unwrap();
            for request in &decoded.requests {
                account.receive_request(request).unwrap();
            }
            let mut texts = 0;
            for envelope in decoded.envelopes {
                if let Ok(Received::Applied(messages)) = account.receive_envelope(envelope) {
                    texts += messages.iter().filter(|m| m.kind == "text").count();
                }
            }
            texts
        }
        Way::Batched | Way::WithProgress => {
            let report = if way == Way::WithProgress {
                let (tx, rx) = tokio::sync::watch::channel(ImportProgress::default());
                let report = account.import_bundle_with_progress(bundle, &mut |p| {
                    tx.send_replace(p);
                });
                assert_eq!(rx.borrow().done, rx.borrow().total);
                report
            } else {
                account.import_bundle(bundle)
            };
            report.unwrap().messages.iter().filter(|m| m.kind == "text").count()
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(texts, MESSAGES);
    seconds
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bob_home, bundle) = alice_wrote_to_bob(dir.path(), MESSAGES);
    println!("Importing a bundle of {MESSAGES} messages ({} bytes), {ROUNDS} rounds each", bundle.len());
    let ways = [
        (Way::OneCommitEach, "one commit each (baseline)"),
        (Way::Batched, "import_bundle (batched)"),
        (Way::WithProgress, "batched, with progress"),
    ];
    let mut best = [f64::INFINITY; 3];
    for round in 0..ROUNDS {
        for (i, (way, _)) in ways.iter().enumerate() {
            let copy = dir.path().join(format!("bob-{i}-{round}"));
            best[i] = best[i].min(import(&bob_home, &copy, &bundle, *way));
        }
    }
    println!("{:<28} {:>10} {:>14} {:>10}", "", "best (s)", "envelopes/s", "speed-up");
    for (i, (_, name)) in ways.iter().enumerate() {
        println!("{name:<28} {:>10.3} {:>14.0} {:>9.2}x", best[i], MESSAGES as f64 / best[i], best[0] / best[i]);
    }
    println!("progress reports cost: {:.3}x the batched import's time", best[2] / best[1]);
}
