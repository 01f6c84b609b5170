//! Away for days, with the real `weft` binary: each person's processes run on their own
//! clock, moved ahead with `WEFT_CLOCK_OFFSET` (as libfaketime would move it); the relay is a
//! real `weft relay` on today's clock. Homes, real TCP on loopback, real SQLite files.

use std::time::Duration;

use serde_json::Value;
use weft_tests::{Home, Running, contacts_by_bundle, wait_until};

const NET: [&str; 5] = ["--no-mdns", "--no-ble", "--listen", "/ip4/127.0.0.1/tcp/0", "--timeout"];

/// A relay and its address (with its peer id).
fn relay(root: &std::path::Path) -> (Running, String) {
    let relay = Running::spawn(&Home::new(root, "relay"), &["relay", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    let line = relay.wait_for("--relay /ip4/127.0.0.1/tcp/");
    let addr = line.trim().trim_start_matches("--relay ").to_owned();
    (relay, addr)
}

fn person(root: &std::path::Path, name: &str) -> Home {
    let home = Home::new(root, name);
    home.ok(&["init", "--name", name]);
    home
}

/// `weft sync` with these peers: online, catch up, exit; its JSON summary.
fn sync(home: &Home, peers: &[&str]) -> Value {
    let mut args = vec!["--json", "sync"];
    args.extend(NET);
    args.push("120");
    args.extend(peers);
    serde_json::from_str(&home.ok(&args)).expect("a JSON summary")
}

/// The text messages of a conversation: (body, state).
fn texts(home: &Home, conversation: &str) -> Vec<(String, Option<String>)> {
    let log: Vec<Value> = serde_json::from_str(&home.ok(&["--json", "log", conversation])).expect("a JSON log");
    log.iter()
        .filter(|m| m["kind"] == "text")
        .map(|m| (m["body"].as_str().unwrap_or_default().to_owned(), m["state"].as_str().map(str::to_owned)))
        .collect()
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// When the messages of a conversation say they were written, in order.
fn sent_times(home: &Home, conversation: &str) -> Vec<u64> {
    let log: Vec<Value> = serde_json::from_str(&home.ok(&["--json", "log", conversation])).expect("a JSON log");
    log.iter().filter(|m| m["kind"] == "text").filter_map(|m| m["sent_ms"].as_u64()).collect()
}

/// Waits until the node running on `home` has handed its whole outbox to a peer.
fn outbox_empties(home: &Home) {
    wait_until("the outbox to empty", 60, || {
        let status: Value = serde_json::from_str(&home.ok(&["--json", "status"])).unwrap_or_default();
        status["outbox"] == 0
    });
}

/// Bob is offline; Alice writes, the relay takes it, Alice leaves; `days` later Bob runs
/// `weft sync` with only the relay.
fn back_after_days_through_a_relay(days: u32) {
    let root = tempfile::tempdir().unwrap();
    let (_relay, relay_addr) = relay(root.path());
    let (alice, bob) = (person(root.path(), "alice"), person(root.path(), "bob"));
    contacts_by_bundle(root.path(), &alice, &bob);
    {
        let _alice_run = Running::start(&alice, &["--no-ble", "--relay", &relay_addr]);
        alice.ok(&["send", "bob", "written before you left"]);
        outbox_empties(&alice);
    }
    let later = bob.days_later(days);
    let summary = sync(&later, &["--relay", &relay_addr]);
    assert_eq!(summary["caught_up"], true, "{summary}");
    assert_eq!(texts(&later, "alice"), vec![("written before you left".to_owned(), None)]);
    // Bob's clock really was `days` ahead: his reply says so.
    later.ok(&["send", "alice", "back"]);
    let times = sent_times(&later, "alice");
    assert!(times[1] - times[0] >= u64::from(days) * DAY_MS, "{times:?}");
}

#[test]
fn back_after_two_days_through_a_relay() {
    back_after_days_through_a_relay(2);
}

#[test]
fn back_after_seven_days_through_a_relay() {
    back_after_days_through_a_relay(7);
}

#[test]
fn back_after_thirteen_days_through_a_relay() {
    back_after_days_through_a_relay(13);
}

/// Alice writes with no network; a week later Alice runs with the relay and Bob syncs through
/// it. Bob reads it; Alice's history says delivered.
#[test]
fn a_message_queued_offline_for_a_week_arrives_and_says_delivered() {
    let root = tempfile::tempdir().unwrap();
    let (_relay, relay_addr) = relay(root.path());
    let (alice, bob) = (person(root.path(), "alice"), person(root.path(), "bob"));
    contacts_by_bundle(root.path(), &alice, &bob);
    alice.ok(&["send", "bob", "written with no network"]);
    assert_eq!(texts(&alice, "bob"), vec![("written with no network".to_owned(), Some("queued".to_owned()))]);

    let (alice, bob) = (alice.days_later(7), bob.days_later(7));
    let _alice_run = Running::start(&alice, &["--no-ble", "--relay", &relay_addr]);
    outbox_empties(&alice);
    let summary = sync(&bob, &["--relay", &relay_addr]);
    assert_eq!(summary["caught_up"], true, "{summary}");
    assert_eq!(texts(&bob, "alice"), vec![("written with no network".to_owned(), None)]);
    // Bob's receipt went out before his sync stopped; the relay hands it to Alice.
    wait_until(
        "alice to see it delivered",
        60,
        || matches!(texts(&alice, "bob").as_slice(), [(_, Some(state))] if state == "delivered" || state == "read"),
    );
}

/// Alice writes over three days with nobody around; two days later Bob meets Alice alone (no
/// relay), and she serves him her history.
#[test]
fn back_after_days_through_a_member_who_was_online() {
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = (person(root.path(), "alice"), person(root.path(), "bob"));
    contacts_by_bundle(root.path(), &alice, &bob);
    for day in 0..3 {
        alice.days_later(day).ok(&["send", "bob", &format!("day {day}")]);
    }
    let alice_run = Running::start(&alice.days_later(5), &["--no-ble"]);
    let addr = alice_run.wait_for("/ip4/127.0.0.1/tcp/").trim().to_owned();
    let summary = sync(&bob.days_later(5), &["--bootstrap", &addr]);
    assert_eq!(summary["caught_up"], true, "{summary}");
    let bodies: Vec<String> = texts(&bob, "alice").into_iter().map(|(b, _)| b).collect();
    assert_eq!(bodies, vec!["day 0", "day 1", "day 2"]);
    let times = sent_times(&bob, "alice");
    assert!(times.windows(2).all(|w| w[1] - w[0] >= DAY_MS), "written a day apart: {times:?}");
}

/// Alice removes Carol and writes on the days after, while Bob and Carol are away. Back with
/// only the relay, Bob reads everything; Carol reads nothing written after her removal.
#[test]
fn an_epoch_change_while_away() {
    let root = tempfile::tempdir().unwrap();
    let (_relay, relay_addr) = relay(root.path());
    let (alice, bob, carol) = (person(root.path(), "alice"), person(root.path(), "bob"), person(root.path(), "carol"));
    contacts_by_bundle(root.path(), &alice, &bob);
    contacts_by_bundle(root.path(), &alice, &carol);
    alice.ok(&["group", "create", "night-shift"]);
    alice.ok(&["group", "invite", "night-shift", "bob"]);
    alice.ok(&["group", "invite", "night-shift", "carol"]);
    let bundle = root.path().join("group.weft");
    alice.ok(&["export", "--out", bundle.to_str().unwrap()]);
    bob.ok(&["import", bundle.to_str().unwrap()]);
    carol.ok(&["import", bundle.to_str().unwrap()]);
    alice.ok(&["send", "night-shift", "before"]);

    for day in 0..3 {
        let alice = alice.days_later(day);
        let _alice_run = Running::start(&alice, &["--no-ble", "--relay", &relay_addr]);
        if day == 1 {
            alice.ok(&["group", "remove", "night-shift", "carol"]);
        }
        if day > 0 {
            alice.ok(&["send", "night-shift", &format!("after, day {day}")]);
        }
        outbox_empties(&alice);
        std::thread::sleep(Duration::from_millis(200));
    }

    let bob = bob.days_later(6);
    assert_eq!(sync(&bob, &["--relay", &relay_addr])["caught_up"], true);
    let bodies: Vec<String> = texts(&bob, "night-shift").into_iter().map(|(b, _)| b).collect();
    assert_eq!(bodies, vec!["before", "after, day 1", "after, day 2"]);

    let carol = carol.days_later(6);
    assert_eq!(sync(&carol, &["--relay", &relay_addr])["caught_up"], true);
    let bodies: Vec<String> = texts(&carol, "night-shift").into_iter().map(|(b, _)| b).collect();
    assert_eq!(bodies, vec!["before"], "nothing after her removal");
    let log = carol.ok(&["log", "night-shift"]);
    assert!(log.contains("removed"), "carol learns she was removed: {log}");
}
