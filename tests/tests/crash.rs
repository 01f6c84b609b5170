//! Crash consistency: the real `weft` killed with SIGKILL at random points while it writes,
//! round after round. After each kill the database passes `PRAGMA integrity_check`, nothing that
//! was acknowledged is lost (a send whose call returned, an import that finished), nothing is
//! shown twice, and at the end the account still sends and receives.
//!
//! `WEFT_CRASH_ROUNDS` sets the rounds of each scenario (default [`ROUNDS`]); `WEFT_CRASH_SEED`
//! replays a run's kill points (each scenario prints its seed, its rounds and their outcomes).
#![cfg(unix)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use weft_core::account::{Account, ConversationKind};
use weft_core::clock::system_clock;
use weft_core::crypto::OsEntropy;
use weft_core::store::{DatabaseKey, KdfParams};
use weft_tests::daemon::{Daemon, Rpc};
use weft_tests::{Home, Running, contacts_by_bundle, copy_dir};

const ROUNDS: u32 = 100;

fn rounds() -> u32 {
    std::env::var("WEFT_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(ROUNDS)
}

/// Kill points: xorshift from a seed the run prints.
struct KillPoints(u64);

impl KillPoints {
    fn new(scenario: &str) -> KillPoints {
        let seed = std::env::var("WEFT_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
        });
        println!("{scenario}: WEFT_CRASH_SEED={seed}");
        KillPoints(seed | 1)
    }

    /// A delay in `0..max`.
    fn within(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_micros(self.0 % max.as_micros().max(1) as u64)
    }
}

fn sigkill(pid: u32) {
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
}

/// The database key of a home, derived once (each `weft` derives it again as it starts).
fn database_key(home: &Home) -> DatabaseKey {
    DatabaseKey::from_passphrase(&home.passphrase, &KdfParams::read(&home.dir).unwrap()).unwrap()
}

/// What a home holds after a kill, as the next start of `weft` finds it.
struct Found {
    /// Each text of `conversation` and how many times it shows.
    texts: HashMap<String, usize>,
}

impl Found {
    fn count(&self) -> usize {
        self.texts.len()
    }

    fn shown_twice(&self) -> Vec<&String> {
        self.texts.iter().filter(|(_, n)| **n > 1).map(|(t, _)| t).collect()
    }
}

/// Opens the account the way `weft` does after a crash, checks the file, and reads one
/// conversation.
fn inspect(home: &Home, key: &DatabaseKey, conversation: &str) -> Found {
    let account = Account::open_with_key(&home.dir, key, Box::new(OsEntropy), system_clock())
        .unwrap_or_else(|e| panic!("the account does not open after a kill: {e}"));
    let problems = account.integrity_problems().unwrap();
    assert!(problems.is_empty(), "PRAGMA integrity_check after a kill: {problems:?}");
    let mut texts = HashMap::new();
    for m in account.history(conversation, usize::MAX).unwrap().into_iter().filter(|m| m.kind == "text") {
        *texts.entry(m.body).or_insert(0) += 1;
    }
    Found { texts }
}

fn two_contacts(root: &Path) -> (Home, Home) {
    let alice = Home::new(root, "alice");
    let bob = Home::new(root, "bob");
    alice.ok(&["init", "--name", "alice"]);
    bob.ok(&["init", "--name", "bob"]);
    contacts_by_bundle(root, &alice, &bob);
    (alice, bob)
}

/// Bob reads what alice wrote, and alice what bob answers, by bundles: the account still
/// sends and receives.
fn still_talks(root: &Path, alice: &Home, bob: &Home, after: &str) {
    let file = root.join("after.weft");
    let file = file.to_str().unwrap();
    alice.ok(&["send", "bob", &format!("still here after {after}")]);
    alice.ok(&["export", "--out", file]);
    bob.ok(&["import", file]);
    assert!(bob.ok(&["log", "alice"]).contains(&format!("still here after {after}")));
    bob.ok(&["send", "alice", "and so am I"]);
    bob.ok(&["export", "--out", file]);
    alice.ok(&["import", file]);
    assert!(alice.ok(&["log", "bob"]).contains("and so am I"));
}

/// A burst of sends through the daemon's socket, the daemon killed in the middle of it: every
/// send whose call returned is there after the restart, once; none is there twice.
#[test]
fn sends_through_the_daemon_survive_a_kill_at_any_point() {
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = two_contacts(root.path());
    let key = database_key(&alice);
    let mut points = KillPoints::new("daemon sends");
    let mut acknowledged: Vec<String> = Vec::new();
    let (mut mid_call, mut sent_before) = (0u32, 0usize);
    let started = Instant::now();
    for round in 0..rounds() {
        let daemon = Daemon::start(&alice);
        let mut rpc = Rpc::connect(&alice.dir).expect("the daemon's socket");
        let (pid, delay) = (daemon.pid(), points.within(Duration::from_millis(600)));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            sigkill(pid);
        });
        for i in 0.. {
            let text = format!("round {round} message {i}");
            match rpc.try_call("send", json!({ "conversation": "bob", "text": text })) {
                Ok(Ok(_)) => acknowledged.push(text),
                Ok(Err(e)) => panic!("a send was refused: {e}"),
                // The daemon died with this call in flight: it may or may not be stored.
                Err(_) => {
                    mid_call += 1;
                    break;
                }
            }
        }
        killer.join().unwrap();
        daemon.crash();
        let found = inspect(&alice, &key, "bob");
        let lost: Vec<&String> = acknowledged.iter().filter(|t| !found.texts.contains_key(*t)).collect();
        assert!(lost.is_empty(), "round {round}: acknowledged sends lost after a kill: {lost:?}");
        assert!(found.shown_twice().is_empty(), "round {round}: shown twice: {:?}", found.shown_twice());
        sent_before = found.count();
    }
    println!(
        "daemon sends: {} rounds in {:.0} s, {} sends acknowledged and all kept, {} stored in all, {mid_call} kills with a call in flight, integrity ok every time",
        rounds(),
        started.elapsed().as_secs_f64(),
        acknowledged.len(),
        sent_before,
    );
    // Bob reads every acknowledged send, once: the group's chain and keys kept step with the
    // messages through every kill.
    let file = root.path().join("sends.weft");
    alice.ok(&["export", "--out", file.to_str().unwrap()]);
    bob.ok(&["import", file.to_str().unwrap()]);
    let read = inspect(&bob, &database_key(&bob), "alice");
    let unread: Vec<&String> = acknowledged.iter().filter(|t| read.texts.get(*t) != Some(&1)).collect();
    assert!(
        unread.is_empty(),
        "bob does not read {} acknowledged sends once, as {:?}",
        unread.len(),
        &unread[..unread.len().min(5)]
    );
    still_talks(root.path(), &alice, &bob, "the daemon was killed");
}

/// A large bundle's import killed anywhere: what was stored stays stored and sound, nothing
/// shows twice, and the import run to its end afterwards brings every message once.
#[test]
fn an_import_killed_at_any_point_loses_nothing_and_shows_nothing_twice() {
    const MESSAGES: usize = 1_000;
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = two_contacts(root.path());
    write_letters(&alice, MESSAGES);
    let bundle = root.path().join("letters.weft");
    let bundle = bundle.to_str().unwrap();
    alice.ok(&["export", "--out", bundle]);
    let key = database_key(&bob);

    // Bob before any letter, to start again from once an import finishes; and how long a whole
    // import takes, on a copy of his home: kills fall within it.
    let fresh = root.path().join("bob-fresh");
    copy_dir(&bob.dir, &fresh);
    let probe = Home { dir: root.path().join("bob-probe"), ..bob.clone() };
    copy_dir(&bob.dir, &probe.dir);
    let timed = Instant::now();
    probe.ok(&["import", bundle]);
    let whole = timed.elapsed();

    let mut points = KillPoints::new("bundle import");
    let (mut before_any, mut partial, mut finished) = (0u32, 0u32, 0u32);
    let mut stored = 0;
    let started = Instant::now();
    for round in 0..rounds() {
        let mut import = bob
            .command(&["import", bundle])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(points.within(whole + whole / 4));
        // (The child's own kill: once reaped, its pid may be another process's.)
        let done = match import.try_wait().unwrap() {
            Some(status) => {
                assert!(status.success(), "round {round}: the import failed by itself: {status}");
                true
            }
            None => {
                import.kill().unwrap();
                let _ = import.wait();
                false
            }
        };
        let found = inspect(&bob, &key, "alice");
        assert!(found.shown_twice().is_empty(), "round {round}: shown twice: {:?}", found.shown_twice());
        assert!(found.count() >= stored, "round {round}: {} stored before the kill, {} after", stored, found.count());
        if done {
            assert_eq!(found.count(), MESSAGES, "round {round}: an import that finished brought everything");
            finished += 1;
        } else if found.count() == stored {
            before_any += 1;
        } else {
            partial += 1;
        }
        stored = found.count();
        if stored == MESSAGES {
            // Start again from before the letters, so that later rounds kill an import that writes.
            std::fs::remove_dir_all(&bob.dir).unwrap();
            copy_dir(&fresh, &bob.dir);
            stored = 0;
        }
    }
    bob.ok(&["import", bundle]);
    let found = inspect(&bob, &key, "alice");
    assert_eq!(found.count(), MESSAGES, "the import run to its end brings every message");
    assert!(found.shown_twice().is_empty());
    println!(
        "bundle import ({MESSAGES} messages, {:.1} s whole): {} rounds in {:.0} s: {before_any} killed before storing anything new, {partial} part-way, {finished} after finishing; integrity ok, nothing twice, nothing stored lost",
        whole.as_secs_f64(),
        rounds(),
        started.elapsed().as_secs_f64(),
    );
    still_talks(root.path(), &alice, &bob, "the imports were killed");
}

/// Alice writes `n` letters to bob through her daemon (one process: no key derivation each).
fn write_letters(alice: &Home, n: usize) {
    let _daemon = Daemon::start(alice);
    let mut rpc = Rpc::connect(&alice.dir).expect("the daemon's socket");
    for i in 0..n {
        rpc.ok("send", json!({ "conversation": "bob", "text": format!("letter {i}") }));
    }
}

/// One group change of the cycle the group scenario runs through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Create,
    Invite,
    Rename,
    UpdateKeys,
    Remove,
}

const CYCLE: [Change; 5] = [Change::Create, Change::Invite, Change::Rename, Change::UpdateKeys, Change::Remove];

/// A group as the changes acknowledged so far leave it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expected {
    name: String,
    with_bob: bool,
}

impl Expected {
    fn after(&self, change: Change) -> Expected {
        match change {
            Change::Invite => Expected { with_bob: true, ..self.clone() },
            Change::Remove => Expected { with_bob: false, ..self.clone() },
            Change::Rename => Expected { name: format!("{}-renamed", self.name), ..self.clone() },
            Change::Create | Change::UpdateKeys => self.clone(),
        }
    }
}

/// Group changes through the daemon (create, invite, rename, fresh keys, remove, over and over),
/// the daemon killed anywhere: each group is as the acknowledged changes left it, or one change
/// further (the change in flight), never anything else; and the account still writes in every
/// group afterwards.
#[test]
fn group_changes_survive_a_kill_at_any_point() {
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = two_contacts(root.path());
    let key = database_key(&alice);
    let mut points = KillPoints::new("group changes");
    // Groups by id (hex), as acknowledged; the cycle's position.
    let mut groups: Vec<(String, Expected)> = Vec::new();
    let mut step = 0usize;
    let (mut acknowledged, mut in_flight_applied, mut in_flight_not) = (0u32, 0u32, 0u32);
    let started = Instant::now();
    for round in 0..rounds() {
        let daemon = Daemon::start(&alice);
        let mut rpc = Rpc::connect(&alice.dir).expect("the daemon's socket");
        let (pid, delay) = (daemon.pid(), points.within(Duration::from_millis(1_500)));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            sigkill(pid);
        });
        // The change the kill caught in flight.
        let change = loop {
            let change = CYCLE[step % CYCLE.len()];
            let current = groups.last().map(|(_, g)| g.name.clone()).unwrap_or_default();
            let (method, params) = match change {
                Change::Create => ("group.create", json!({ "name": format!("group {}", step / CYCLE.len()) })),
                Change::Invite => ("group.invite", json!({ "group": current, "contact": "bob" })),
                Change::Rename => ("group.rename", json!({ "group": current, "name": format!("{current}-renamed") })),
                Change::UpdateKeys => ("keys.update", json!({ "conversation": current })),
                Change::Remove => ("group.remove", json!({ "group": current, "member": "bob" })),
            };
            match rpc.try_call(method, params) {
                Ok(Ok(answer)) => {
                    acknowledged += 1;
                    match change {
                        Change::Create => {
                            let id = answer["id"].as_str().expect("a group's id").to_owned();
                            groups.push((
                                id,
                                Expected { name: answer["name"].as_str().unwrap().to_owned(), with_bob: false },
                            ));
                        }
                        _ => {
                            let last = groups.last_mut().expect("a group to change");
                            last.1 = last.1.after(change);
                        }
                    }
                    step += 1;
                }
                Ok(Err(e)) => panic!("round {round}: {method} was refused: {e}"),
                Err(_) => break change,
            }
        };
        killer.join().unwrap();
        daemon.crash();

        // What the next start finds.
        let account = Account::open_with_key(&alice.dir, &key, Box::new(OsEntropy), system_clock())
            .unwrap_or_else(|e| panic!("round {round}: the account does not open after a kill: {e}"));
        let problems = account.integrity_problems().unwrap();
        assert!(problems.is_empty(), "round {round}: PRAGMA integrity_check: {problems:?}");
        let hex = |id: &[u8; 32]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let actual: HashMap<String, Expected> = account
            .conversations()
            .unwrap()
            .into_iter()
            .filter(|c| c.kind == ConversationKind::Group)
            .map(|c| {
                let with_bob = account.members(&c.name).unwrap().iter().any(|m| m.name == "bob");
                (hex(&c.id), Expected { name: c.name, with_bob })
            })
            .collect();
        let mut applied = false;
        let count = groups.len();
        for (n, (id, expected)) in groups.iter_mut().enumerate() {
            let last = n + 1 == count;
            let found = actual.get(id).unwrap_or_else(|| panic!("round {round}: group {expected:?} was lost"));
            if found == expected {
                continue;
            }
            let further = expected.after(change);
            assert!(
                last && change != Change::Create && *found == further,
                "round {round}: group {id} is {found:?}; acknowledged {expected:?}, in flight {change:?}"
            );
            *expected = further;
            applied = true;
        }
        if change == Change::Create {
            let known: Vec<&String> = groups.iter().map(|(id, _)| id).collect();
            let new: Vec<(&String, &Expected)> = actual.iter().filter(|(id, _)| !known.contains(id)).collect();
            assert!(new.len() <= 1, "round {round}: groups nobody created: {new:?}");
            if let Some((id, g)) = new.first() {
                assert!(!g.with_bob, "round {round}: a new group with bob in it");
                groups.push(((*id).clone(), (*g).clone()));
                applied = true;
            }
        } else {
            assert_eq!(actual.len(), groups.len(), "round {round}: groups nobody created: {actual:?}");
        }
        // Fresh keys leave nothing to see: whether they went out is not told apart here.
        if applied || change == Change::UpdateKeys {
            step += 1;
            in_flight_applied += u32::from(applied);
        } else {
            in_flight_not += 1;
        }
    }
    println!(
        "group changes: {} rounds in {:.0} s, {acknowledged} changes acknowledged and all kept, {} groups; the change in flight at the kill: {in_flight_applied} kept, {in_flight_not} not; integrity ok every time",
        rounds(),
        started.elapsed().as_secs_f64(),
        groups.len(),
    );
    // Every group still works: alice invites bob to each he is not in (an invitation a kill
    // interrupted would show here), writes in each, and bob reads it all.
    {
        let _daemon = Daemon::start(&alice);
        let mut rpc = Rpc::connect(&alice.dir).expect("the daemon's socket");
        for (_, group) in &groups {
            if !group.with_bob {
                rpc.ok("group.invite", json!({ "group": group.name, "contact": "bob" }));
            }
            rpc.ok("send", json!({ "conversation": group.name, "text": format!("still writing in {}", group.name) }));
        }
    }
    let file = root.path().join("groups.weft");
    let file = file.to_str().unwrap();
    alice.ok(&["export", "--out", file]);
    bob.ok(&["import", file]);
    let bob_key = database_key(&bob);
    let bob_account = Account::open_with_key(&bob.dir, &bob_key, Box::new(OsEntropy), system_clock()).unwrap();
    for (_, group) in &groups {
        let texts: Vec<String> = bob_account.history(&group.name, 100).unwrap().into_iter().map(|m| m.body).collect();
        assert!(texts.contains(&format!("still writing in {}", group.name)), "bob reads {}: {texts:?}", group.name);
    }
    drop(bob_account);
    still_talks(root.path(), &alice, &bob, "the group changes were killed");
}

/// Bob catching up over libp2p with alice (letters written while they were apart, 300 at a time),
/// killed anywhere: what he stored stays stored and sound, nothing shows twice, every letter
/// alice saw a delivery receipt for is stored, and the catch-up run to its end brings them all
/// once.
#[test]
fn a_catch_up_over_libp2p_killed_at_any_point_loses_nothing_and_shows_nothing_twice() {
    const MESSAGES: usize = 300;
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = two_contacts(root.path());
    write_letters(&alice, MESSAGES);
    let key = database_key(&bob);
    let catch_up = |home: &Home, from: &str| Running::start(home, &["--no-ble", "--bootstrap", from]);

    // How long a whole catch-up takes, between copies of both homes (so that the receipts it
    // sends reach a copy of alice, not her): kills fall within it.
    let (alice_probe, bob_probe) = (
        Home { dir: root.path().join("alice-probe"), ..alice.clone() },
        Home { dir: root.path().join("bob-probe"), ..bob.clone() },
    );
    copy_dir(&alice.dir, &alice_probe.dir);
    copy_dir(&bob.dir, &bob_probe.dir);
    let whole = {
        let source = Running::start(&alice_probe, &["--no-ble"]);
        let address = source.wait_for("/ip4/127.0.0.1/tcp/").trim().to_owned();
        let timed = Instant::now();
        let _node = catch_up(&bob_probe, &address);
        bob_probe.wait_for_socket();
        let letters = || bob_probe.ok(&["log", "alice", "--limit", "5000"]).matches("letter ").count();
        weft_tests::wait_until("the probe's catch-up", 120, || letters() == MESSAGES);
        timed.elapsed()
    };
    let alice_node = Running::start(&alice, &["--no-ble"]);
    let address = alice_node.wait_for("/ip4/127.0.0.1/tcp/").trim().to_owned();
    alice.wait_for_socket();

    let mut points = KillPoints::new("catch-up over libp2p");
    let (mut before_any, mut partial, mut complete) = (0u32, 0u32, 0u32);
    let (mut stored, mut total, mut most_receipted) = (0, MESSAGES, 0);
    let started = Instant::now();
    for round in 0..rounds() {
        let node = catch_up(&bob, &address);
        std::thread::sleep(points.within(whole + whole / 4));
        drop(node); // SIGKILL
        let found = inspect(&bob, &key, "alice");
        assert!(found.shown_twice().is_empty(), "round {round}: shown twice: {:?}", found.shown_twice());
        assert!(found.count() >= stored, "round {round}: {stored} stored before the kill, {} after", found.count());
        // Every letter alice holds a delivery receipt for is in bob's store.
        let log: serde_json::Value =
            serde_json::from_str(&alice.ok(&["--json", "log", "bob", "--limit", "1000000"])).unwrap();
        let receipted: Vec<&str> = log
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| matches!(m["state"].as_str(), Some("delivered" | "read")))
            .filter_map(|m| m["body"].as_str())
            .collect();
        most_receipted = most_receipted.max(receipted.len());
        let lost: Vec<&&str> = receipted.iter().filter(|b| !found.texts.contains_key(**b)).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} receipted but not stored, as {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        match found.count() {
            n if n == total => complete += 1,
            n if n == stored => before_any += 1,
            _ => partial += 1,
        }
        stored = found.count();
        if stored == total {
            // Caught up: alice writes the next letters, so that later rounds kill a catch-up
            // that writes. (Starting bob again from before would lose what he receipted.)
            let mut rpc = Rpc::connect(&alice.dir).expect("alice's node's socket");
            for i in total..total + MESSAGES {
                rpc.ok("send", json!({ "conversation": "bob", "text": format!("letter {i}") }));
            }
            total += MESSAGES;
        }
    }
    {
        let _node = catch_up(&bob, &address);
        bob.wait_for_socket();
        let letters = || bob.ok(&["log", "alice", "--limit", "1000000"]).matches("letter ").count();
        weft_tests::wait_until("the last catch-up", 120, || letters() == total);
    }
    let found = inspect(&bob, &key, "alice");
    assert_eq!(found.count(), total, "the catch-up run to its end brings every letter");
    // The receipt check was not empty. (Not every letter ends receipted: a receipt is sent at
    // the end of the batch that stored its letters, and a kill before then loses it by design,
    // docs of account/receipts.rs: the letter stays "sent" at alice.)
    assert!(most_receipted > 0, "no receipt reached alice during the kills: the check above checked nothing");
    assert!(found.shown_twice().is_empty());
    println!(
        "catch-up over libp2p ({MESSAGES} letters at a time, {:.1} s whole, {total} in all): {} rounds in {:.0} s: {before_any} killed before storing anything new, {partial} part-way, {complete} with everything stored; integrity ok, nothing twice, nothing stored or receipted lost (up to {most_receipted} receipted at a kill)",
        whole.as_secs_f64(),
        rounds(),
        started.elapsed().as_secs_f64(),
    );
    drop(alice_node);
    still_talks(root.path(), &alice, &bob, "the catch-ups were killed");
}

/// A relay killed among its cache writes while alice writes through it, again and again: its
/// cache passes `PRAGMA integrity_check` and loads whole after every kill; once alice has handed
/// it again what the kills cost it, she leaves, and bob, who meets only the relay, reads every
/// letter she wrote, once.
#[test]
fn a_relay_killed_at_any_point_keeps_a_sound_cache_and_loses_no_letter() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = two_contacts(root.path());
    let relay_home = Home::new(root.path(), "relay");
    let relay = Running::spawn(&relay_home, &["relay", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    let relay_addr = relay.wait_for("--relay /ip4/127.0.0.1/tcp/").trim().trim_start_matches("--relay ").to_owned();
    let listen = relay_addr.split("/p2p/").next().unwrap().to_owned();
    let alice_node = Running::start(&alice, &["--no-ble", "--relay", &relay_addr]);
    alice.wait_for_socket();

    // Alice writes letters all along, through her node.
    let (stop, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let writer = {
        let (stop, written, dir) = (stop.clone(), written.clone(), alice.dir.clone());
        std::thread::spawn(move || {
            let mut rpc = Rpc::connect(&dir).expect("alice's node's socket");
            while !stop.load(Ordering::Relaxed) {
                let i = written.load(Ordering::Relaxed);
                rpc.ok("send", json!({ "conversation": "bob", "text": format!("letter {i}") }));
                written.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut points = KillPoints::new("relay cache");
    let started = Instant::now();
    let mut relay = Some(relay);
    let mut held = Vec::new();
    // `weft relay` keeps its cache in the home's relay/ directory.
    let cache_dir = relay_home.dir.join("relay");
    let cache_file = cache_dir.join(weft_core::relay::CACHE_FILE);
    let rows = || -> usize {
        if !cache_file.exists() {
            return 0; // (opening would create it)
        }
        weft_core::store::Connection::open(&cache_file)
            .and_then(|db| db.query_row("SELECT count(*) FROM cached", [], |r| r.get::<_, i64>(0)))
            .map_or(0, |n| n as usize)
    };
    // Each round waits for the relay to take envelopes again (alice redials it, it follows her
    // topics at its next tick: seconds), so that the kill falls among its cache writes.
    let relay_rounds = rounds().div_ceil(10);
    for round in 0..relay_rounds {
        let before = held.last().copied().unwrap_or(0);
        weft_tests::wait_until("the relay taking envelopes", 60, || rows() > before);
        std::thread::sleep(points.within(Duration::from_millis(400)));
        drop(relay.take()); // SIGKILL
        assert!(cache_file.exists(), "round {round}: no relay cache at {}", cache_file.display());
        let db = weft_core::store::Connection::open(&cache_file).unwrap();
        let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "round {round}: the relay's cache after a kill");
        let rows: i64 = db.query_row("SELECT count(*) FROM cached", [], |r| r.get(0)).unwrap();
        drop(db);
        let (_, envelopes) = weft_core::relay::RelayHost::open(&cache_dir, weft_core::relay::CacheLimits::default())
            .unwrap_or_else(|e| panic!("round {round}: the relay's cache does not load after a kill: {e}"))
            .usage();
        assert_eq!(envelopes, rows as usize, "round {round}: the cache loads whole");
        held.push(envelopes);
        relay = Some(Running::spawn(&relay_home, &["relay", "--listen", &listen]));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = written.load(Ordering::Relaxed);
    // Alice hands the relay what the kills cost it, then leaves: bob meets only the relay.
    // (A message's id is its envelope's, which is what the relay's cache is keyed by.)
    let log: serde_json::Value =
        serde_json::from_str(&alice.ok(&["--json", "log", "bob", "--limit", "1000000"])).unwrap();
    let letters_ids: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["body"].as_str().is_some_and(|b| b.starts_with("letter ")))
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(letters_ids.len(), total);
    let relay_ids = || -> std::collections::HashSet<String> {
        weft_core::store::Connection::open(&cache_file)
            .and_then(|db| {
                let mut statement = db.prepare("SELECT lower(hex(id)) FROM cached")?;
                statement.query_map([], |r| r.get::<_, String>(0))?.collect()
            })
            .unwrap_or_default()
    };
    let missing = || {
        let held = relay_ids();
        letters_ids.iter().filter(|id| !held.contains(*id)).count()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while missing() > 0 {
        assert!(
            Instant::now() < deadline,
            "the relay still lacks {} of {total} letters while alice is there",
            missing()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(alice_node);
    let _bob_node = Running::start(&bob, &["--no-ble", "--relay", &relay_addr]);
    bob.wait_for_socket();
    let letters = || bob.ok(&["log", "alice", "--limit", "1000000"]).matches("letter ").count();
    let deadline = Instant::now() + Duration::from_secs(120);
    while letters() < total {
        assert!(
            Instant::now() < deadline,
            "bob read {} of {total} letters through the relay, which holds {} envelopes",
            letters(),
            rows()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(_bob_node);
    let found = inspect(&bob, &database_key(&bob), "alice");
    assert_eq!(found.count(), total, "every letter, through a relay killed {relay_rounds} times");
    assert!(found.shown_twice().is_empty());
    println!(
        "relay cache: {} rounds in {:.0} s while alice wrote {total} letters; the cache held {}..{} envelopes across the kills, passed integrity_check and loaded every time; bob read all {total}, once",
        relay_rounds,
        started.elapsed().as_secs_f64(),
        held.iter().min().unwrap_or(&0),
        held.iter().max().unwrap_or(&0),
    );
}
