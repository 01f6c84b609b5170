//! Reconciliation cost: two stores of 100,000 envelope ids that differ in 1 %.
//!
//! Prints bytes exchanged and round trips of a rateless-IBLT session, against the ideal (the
//! missing ids, 32 bytes each) and against sending the full id list, all in one run.
//!
//! Run: `cargo bench -p weft-core --bench reconcile`

use std::ops::ControlFlow;
use std::time::Instant;

use weft_core::sync::{Initiator, Item, Message, Responder};

fn id(n: u64) -> [u8; 32] {
    *blake3::hash(&n.to_le_bytes()).as_bytes()
}

fn short(full: &[u8; 32]) -> Item {
    full[..16].try_into().unwrap()
}

struct Run {
    bytes: usize,
    round_trips: usize,
    found: usize,
    millis: f64,
}

fn session(a: &[Item], b: &[Item]) -> Run {
    let start = Instant::now();
    let mut initiator = Initiator::new([9; 16], a.iter().copied());
    let mut responder = Responder::new(b.to_vec());
    let mut bytes = 0;
    let mut round_trips = 0;
    let mut message = initiator.next_batch();
    loop {
        let wire = message.encode();
        bytes += wire.len();
        round_trips += 1;
        let (reply, outcome) = responder.handle(Message::decode(&wire).unwrap()).unwrap();
        let reply_wire = reply.encode();
        bytes += reply_wire.len();
        match initiator.handle(Message::decode(&reply_wire).unwrap()).unwrap() {
            ControlFlow::Continue(next) => message = next,
            ControlFlow::Break(done) => {
                let learned = outcome.unwrap();
                let found = learned.we_lack.len() + done.we_lack.len();
                return Run { bytes, round_trips, found, millis: start.elapsed().as_secs_f64() * 1e3 };
            }
        }
    }
}

fn main() {
    let n: u64 = 100_000;
    println!("Reconciliation of two stores of {n} envelope ids (rateless IBLT over 16-byte id prefixes)");
    println!(
        "{:<34} {:>10} {:>10} {:>9} {:>11} {:>12} {:>9}",
        "scenario", "diffs", "bytes", "trips", "vs ideal", "vs full list", "time"
    );
    // Where the differing ids sit in history does not matter to this scheme (unlike range-based
    // reconciliation): only how many there are and on which side.
    for (name, a_only, b_only) in [
        ("1%, half on each side", 500u64, 500u64),
        ("1%, all on one side", 1_000, 0),
        ("0.1%, half on each side", 50, 50),
        ("identical", 0, 0),
    ] {
        let diffs = a_only + b_only;
        let common: Vec<[u8; 32]> = (0..n - (diffs / 2).max(a_only.max(b_only))).map(id).collect();
        let a: Vec<Item> = common.iter().map(short).chain((0..a_only).map(|i| short(&id(10_000_000 + i)))).collect();
        let b: Vec<Item> = common.iter().map(short).chain((0..b_only).map(|i| short(&id(20_000_000 + i)))).collect();
        let run = session(&a, &b);
        assert_eq!(run.found as u64, diffs);
        let ideal = (diffs as usize * 32).max(1);
        let full = a.len() * 32;
        println!(
            "{:<34} {:>10} {:>10} {:>9} {:>10.2}x {:>11.4}x {:>7.0}ms",
            name,
            diffs,
            run.bytes,
            run.round_trips,
            run.bytes as f64 / ideal as f64,
            run.bytes as f64 / full as f64,
            run.millis
        );
    }
    println!("ideal = the missing ids at 32 bytes each; full list = one side's ids at 32 bytes each");
}
