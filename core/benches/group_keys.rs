//! What group protocol v2's key management costs, against the primitives it cannot avoid.
//!
//! For groups of 10, 100 and 1,000 members with 4 devices each, and for a 1:1 conversation: the
//! bytes and the CPU of an update (a new chain through every device's channel), of a removal (a
//! new epoch through every remaining device's channel), of a join (the `Add` and the welcome,
//! and the newcomer's `from_welcome`), and of one device opening an update. The bound for
//! sealing to n devices is n × (three X25519 key generations and one X25519 agreement): a fresh
//! ephemeral key, the two fresh keys handed over, the agreement with the recipient's key. Ratio
//! = bound / ours (1.0: no cost beyond those).
//!
//! Run: `cargo bench -p weft-core --bench group_keys`

use std::hint::black_box;
use std::time::Instant;

use weft_core::crypto::{Entropy, OsEntropy};
use weft_core::group::{Action, Content, Group, Inner, LocalDevice, Sealed};
use weft_core::identity::AccountKey;
use x25519_dalek::{PublicKey, StaticSecret};

#[path = "../tests/common/members.rs"]
mod members;
use members::{DEVICES, add, member};

const NOW: u64 = 1_750_000_000_000;
const RUNS: usize = 5;

fn note(group: &mut Group, devices: &[LocalDevice]) {
    for d in devices {
        group.note_prekey(d.prekeys.current());
    }
}

fn bytes(sealed: &[Sealed]) -> usize {
    sealed.iter().map(|s| s.envelope.as_bytes().len()).sum()
}

/// Median seconds of `f` over `RUNS`.
fn median(mut f: impl FnMut() -> f64) -> f64 {
    let mut t: Vec<f64> = (0..RUNS).map(|_| f()).collect();
    t.sort_by(f64::total_cmp);
    t[RUNS / 2]
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed().as_secs_f64())
}

/// The bound for sealing to `n` devices.
fn bound(n: usize, rng: &mut OsEntropy) -> f64 {
    let target = PublicKey::from(&StaticSecret::from(rng.bytes32().unwrap()));
    let seeds: Vec<[u8; 32]> = (0..3 * n).map(|_| rng.bytes32().unwrap()).collect();
    median(|| {
        timed(|| {
            for three in seeds.chunks(3) {
                let ephemeral = StaticSecret::from(three[0]);
                black_box(PublicKey::from(&ephemeral));
                black_box(PublicKey::from(&StaticSecret::from(three[1])));
                black_box(PublicKey::from(&StaticSecret::from(three[2])));
                black_box(ephemeral.diffie_hellman(&target));
            }
        })
        .1
    })
}

/// alice's group of `n` members of four devices. The members are added before alice learns
/// their prekeys (so the build seals nothing: the measured steps below reach every device).
/// Returns alice, her group, bob (a member's first device) and bob's group, joined by welcome.
fn group_of(n: usize, rng: &mut OsEntropy) -> (LocalDevice, Group, LocalDevice, Group) {
    let alice = LocalDevice::generate(&AccountKey::generate(rng).unwrap(), 0, rng).unwrap();
    let mut group = Group::create(&alice, "bench", NOW, rng).unwrap();
    let members: Vec<Vec<LocalDevice>> = (1..n).map(|_| member(rng)).collect();
    for m in &members {
        group.change_membership(&alice, add(m), NOW, rng).unwrap();
    }
    for m in &members {
        note(&mut group, m);
    }
    let bob = members.into_iter().next().unwrap().into_iter().next().unwrap();
    let welcome = group.welcome(&alice, &bob.account(), NOW, rng).unwrap();
    let bobs = Group::from_welcome(&bob, &welcome, &alice.cert, NOW).unwrap();
    (alice, group, bob, bobs)
}

fn main() {
    let mut rng = OsEntropy;
    println!("Weft group protocol v2: bytes and CPU of key management (median of {RUNS} runs)");
    println!(
        "{:>8} {:>7} {:>11} | {:>9} {:>10} {:>10} {:>6}",
        "members", "devices", "step", "bytes", "ours", "bound", "ratio"
    );
    let row = |members: &str, devices: usize, step: &str, bytes: usize, ours: f64, bound: Option<f64>| match bound {
        Some(b) => println!(
            "{members:>8} {devices:>7} {step:>11} | {bytes:>9} {:>8.1}ms {:>8.1}ms {:>6.2}",
            ours * 1e3,
            b * 1e3,
            b / ours
        ),
        None => {
            println!("{members:>8} {devices:>7} {step:>11} | {bytes:>9} {:>8.1}ms {:>10} {:>6}", ours * 1e3, "", "")
        }
    };
    for n in [10usize, 100, 1000] {
        // One member short of `n`, so that the steps below that add one stay within the limit.
        let (build, build_time) = timed(|| group_of(n - 1, &mut rng));
        let (alice, mut group, bob, mut bobs) = build;
        let devices = (n - 2) * DEVICES;
        let name = n.to_string();
        eprintln!("({n} members built in {build_time:.1} s)");
        let seal_bound = bound(devices, &mut rng);

        // An update: every device gets the new chain through its channel.
        let mut update_bytes = 0;
        let ours = median(|| {
            let (sealed, t) = timed(|| group.update(&alice, NOW, &mut rng).unwrap());
            update_bytes = bytes(&sealed);
            t
        });
        row(&name, devices, "update", update_bytes, ours, Some(seal_bound));

        // One device opens an update: finds its share among the envelopes, opens it.
        let epoch = group.current_epoch().unwrap().id;
        let ours = median(|| {
            let sealed = group.update(&alice, NOW, &mut rng).unwrap();
            timed(|| {
                for s in &sealed {
                    let opened = bobs.open(&bob, &s.envelope, &epoch).unwrap();
                    black_box(bobs.accept(&bob, opened).unwrap());
                }
            })
            .1
        });
        row(&name, 1, "open update", 0, ours, None);

        // A removal: a new epoch secret through every remaining device's channel. Each run
        // removes a member added just before (the add is not timed).
        let mut removal_bytes = 0;
        let ours = median(|| {
            let extra = member(&mut rng);
            note(&mut group, &extra);
            group.change_membership(&alice, add(&extra), NOW, &mut rng).unwrap();
            let remove = Action::Remove { member: extra[0].account() };
            let (sealed, t) = timed(|| group.change_membership(&alice, remove, NOW, &mut rng).unwrap());
            removal_bytes = bytes(&sealed);
            t
        });
        row(&name, devices, "removal", removal_bytes, ours, Some(seal_bound));

        // A join: the `Add` (new epoch to every device) and the welcome; then the newcomer.
        let (mut join_bytes, mut welcome_bytes) = (0, 0);
        let mut welcomes = Vec::new();
        let ours = median(|| {
            let newcomer = member(&mut rng);
            note(&mut group, &newcomer);
            let ((sealed, welcome), t) = timed(|| {
                let sealed = group.change_membership(&alice, add(&newcomer), NOW, &mut rng).unwrap();
                (sealed, group.welcome(&alice, &newcomer[0].account(), NOW, &mut rng).unwrap())
            });
            welcome_bytes =
                Inner { lamport: 0, sent_ms: 0, parents: vec![], content: Content::Invite(Box::new(welcome.clone())) }
                    .encode()
                    .len();
            join_bytes = bytes(&sealed) + welcome_bytes;
            let remove = Action::Remove { member: newcomer[0].account() };
            group.change_membership(&alice, remove, NOW, &mut rng).unwrap();
            welcomes.push((newcomer, welcome));
            t
        });
        row(&name, devices, "add+welcome", join_bytes, ours, Some(seal_bound));
        let mut welcomes = welcomes.into_iter();
        let ours = median(|| {
            let (newcomer, welcome) = welcomes.next().unwrap();
            timed(|| black_box(Group::from_welcome(&newcomer[0], &welcome, &alice.cert, NOW).unwrap())).1
        });
        row(&name, 1, "from_welcome", welcome_bytes, ours, None);
    }

    // A 1:1 update.
    let (a, b) = (member(&mut rng).remove(0), member(&mut rng).remove(0));
    let mut pair = Group::pair(&a, b.account(), &[9; 32], NOW);
    pair.learn_device(&b.cert).unwrap();
    pair.note_prekey(b.prekeys.current());
    let mut update_bytes = 0;
    let ours = median(|| {
        let (sealed, t) = timed(|| pair.update(&a, NOW, &mut rng).unwrap());
        update_bytes = bytes(&sealed);
        t
    });
    row("1:1", 1, "update", update_bytes, ours, Some(bound(1, &mut rng)));
}
