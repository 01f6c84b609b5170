//! Handing the history to a new device (issue 16): 10,000 messages sent with the grant, against
//! the import bound (the same 10,000 messages imported as a bundle, batched), in one process.
//!
//! The history's way is everything but the wire: the primary builds and seals the grant
//! (`grant_link` with the history), cuts it into envelopes (`carrier::wrap_with`), the new
//! device puts them together (`carrier::Inbox`) and makes its home from the grant
//! (`create_linked`, which writes the 10,000 rows). The bound: bob imports alice's bundle of
//! the same 10,000 messages (`import_bundle`).
//!
//! Run: `cargo bench -p weft-core --bench history`

use std::path::Path;
use std::time::Instant;

use weft_core::account::{Account, HistoryChoice};
use weft_core::crypto::SeededEntropy;
use weft_core::devices::carrier::{self, Inbox, Leg};
use weft_core::devices::linking::{Joining, Ticket};
use weft_core::identity::DeviceKeys;
use weft_core::store::DatabaseKey;

mod common;
use common::{alice_wrote_to_bob, copy_dir};

const MESSAGES: usize = 10_000;
const ROUNDS: usize = 3;

/// Bob imports alice's bundle into a fresh copy of his home: seconds.
fn import(bob: &Path, copy: &Path, bundle: &[u8]) -> f64 {
    copy_dir(bob, copy);
    let mut account = common::reopen(copy, 2, 2);
    let start = Instant::now();
    let report = account.import_bundle(bundle).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(report.messages.iter().filter(|m| m.kind == "text").count(), MESSAGES);
    seconds
}

/// Alice (a fresh copy of her home) links a laptop with the history: seconds, and the grant's
/// size.
fn link_with_history(alice: &Path, copy: &Path, laptop: &Path, round: u64) -> (f64, usize) {
    copy_dir(alice, copy);
    let mut alice = common::reopen(copy, 1, 10 + round);
    let mut rng = SeededEntropy::new(100 + round);
    let link = alice.link_offer().unwrap();
    let keys = DeviceKeys::generate(&mut rng).unwrap();
    let now = weft_core::clock::system_ms();
    let joining = Joining::start(Ticket::from_link(&link).unwrap(), &keys, "laptop", now, &mut rng).unwrap();
    let (_, code) = alice.open_link_request(joining.request()).unwrap();
    let start = Instant::now();
    let sealed = alice.grant_link(joining.request(), code, HistoryChoice::Include).unwrap();
    let token = joining.ticket().token;
    let envelopes = carrier::wrap_with(&token, Leg::Grant, &joining.grant_chunk_key(), &sealed, &mut rng).unwrap();
    let mut inbox = Inbox::with_key(&token, Leg::Grant, joining.grant_chunk_key());
    let mut grant = None;
    for e in envelopes.iter().rev() {
        if let Some(whole) = inbox.take(e).unwrap() {
            grant = Some(whole);
        }
    }
    let laptop = Account::create_linked(
        laptop,
        &DatabaseKey::from_bytes([3; 32]),
        &keys,
        "laptop",
        &joining,
        &grant.unwrap(),
        Box::new(SeededEntropy::new(200 + round)),
        weft_core::account::system_clock(),
    )
    .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(laptop.history("bob", MESSAGES + 10).unwrap().iter().filter(|m| m.kind == "text").count(), MESSAGES);
    (seconds, sealed.len())
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (alice_home, bob_home, bundle) = alice_wrote_to_bob(dir.path(), MESSAGES);
    println!("{MESSAGES} messages: a bundle of {} bytes; {ROUNDS} rounds each", bundle.len());
    let (mut imported, mut handed, mut grant_len) = (f64::INFINITY, f64::INFINITY, 0);
    for round in 0..ROUNDS {
        imported = imported.min(import(&bob_home, &dir.path().join(format!("bob-{round}")), &bundle));
        let (seconds, len) = link_with_history(
            &alice_home,
            &dir.path().join(format!("alice-{round}")),
            &dir.path().join(format!("laptop-{round}")),
            round as u64,
        );
        handed = handed.min(seconds);
        grant_len = len;
    }
    println!("{:<40} {:>10} {:>14} {:>10}", "", "best (s)", "messages/s", "ratio");
    println!(
        "{:<40} {:>10.3} {:>14.0} {:>9.2}x",
        "import_bundle (the bound)",
        imported,
        MESSAGES as f64 / imported,
        1.0
    );
    println!(
        "{:<40} {:>10.3} {:>14.0} {:>9.2}x",
        "history with the grant",
        handed,
        MESSAGES as f64 / handed,
        imported / handed
    );
    println!("grant with the history: {grant_len} bytes");
}
