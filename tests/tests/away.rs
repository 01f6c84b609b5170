//! Away for days: a device that comes back after N days gets what was written meanwhile, from a
//! relay or from a member, on a clock the test moves (every node and the relay share it).

use std::sync::Arc;
use std::time::Duration;

use weft_core::net::{Multiaddr, NetHandle};
use weft_core::node::Node;
use weft_core::relay::RelayHost;
use weft_tests::nodes::{Clock, config, create_with_clock, eventually, introduce, online, relay_with_clock, texts};

struct World {
    _dir: tempfile::TempDir,
    clock: Clock,
    relay_net: NetHandle,
    relay: Arc<RelayHost>,
    relay_addr: Multiaddr,
    alice: Arc<Node>,
    bob: Arc<Node>,
}

/// Alice and Bob, contacts (by bundles), and a relay, all on one clock.
async fn world() -> World {
    world_from(Clock::default()).await
}

/// The same world, made at the next `hour`:`minute` (UTC).
async fn world_at(hour: u64, minute: u64) -> World {
    let clock = Clock::default();
    clock.advance_to(hour, minute);
    world_from(clock).await
}

async fn world_from(clock: Clock) -> World {
    let dir = tempfile::tempdir().unwrap();
    let (relay_net, relay, relay_addr) = relay_with_clock(dir.path(), &clock).await;
    let alice = create_with_clock(dir.path(), "alice", &clock).await;
    let bob = create_with_clock(dir.path(), "bob", &clock).await;
    introduce(&alice, &bob).await;
    World { _dir: dir, clock, relay_net, relay, relay_addr, alice, bob }
}

/// Whether the relay holds the envelope of message `id`.
fn relay_holds(relay: &RelayHost, id: &str) -> bool {
    relay.envelopes().into_iter().any(|b| blake3::hash(&b).to_hex().as_str() == id)
}

/// Bob is offline; Alice writes, the relay takes it, Alice leaves; `days` later Bob comes back
/// with only the relay to talk to.
async fn back_after_days_through_a_relay(days: u64) {
    let w = world().await;
    let (alice_net, _) = online(&w.alice, config(vec![], vec![w.relay_addr.clone()])).await;
    let sent = w.alice.send("bob".into(), format!("written {days} days before you read it")).await.unwrap();
    eventually("the relay to hold alice's message", 60, || async { relay_holds(&w.relay, &sent.id) }).await;
    alice_net.stop();

    w.clock.advance_days(days);
    let (bob_net, _) = online(&w.bob, config(vec![], vec![w.relay_addr.clone()])).await;
    eventually(&format!("bob, back after {days} days, to read it"), 60, || async {
        texts(&w.bob, "alice").await.len() == 1
    })
    .await;
    bob_net.stop();
    w.relay_net.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_after_two_days_through_a_relay() {
    back_after_days_through_a_relay(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_after_seven_days_through_a_relay() {
    back_after_days_through_a_relay(7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_after_thirteen_days_through_a_relay() {
    back_after_days_through_a_relay(13).await;
}

/// Alice writes while Bob is away and no relay exists; five days later Bob meets Alice alone,
/// and she serves him her history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_after_days_through_a_member_who_was_online() {
    let w = world().await;
    w.relay_net.stop();
    for i in 0..3 {
        w.alice.send("bob".into(), format!("day {i}")).await.unwrap();
        w.clock.advance_days(1);
    }
    w.clock.advance_days(2);
    let (alice_net, alice_addr) = online(&w.alice, config(vec![], vec![])).await;
    let (bob_net, _) = online(&w.bob, config(vec![alice_addr], vec![])).await;
    eventually("bob to read what alice wrote over three days", 60, || async {
        texts(&w.bob, "alice").await.len() == 3
    })
    .await;
    // Alice's messages now say delivered: Bob's receipt came back.
    eventually("alice to see them delivered", 60, || async {
        let history = w.alice.history("bob".into(), 10).await.unwrap();
        history.iter().filter(|m| m.kind == "text").all(|m| m.state == Some("delivered") || m.state == Some("read"))
    })
    .await;
    bob_net.stop();
    alice_net.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Alice writes late in the evening, after Bob went to bed; Bob comes back the next morning, when
/// yesterday's topics are no longer followed (they are until 02:00), with only the relay. (Found
/// in review: a device away overnight was not "behind", and never fetched the evening's messages.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_late_read_the_next_morning_through_a_relay() {
    let w = world_at(20, 0).await;
    w.clock.advance_to(22, 30);
    let (alice_net, _) = online(&w.alice, config(vec![], vec![w.relay_addr.clone()])).await;
    let sent = w.alice.send("bob".into(), "written while you slept".into()).await.unwrap();
    eventually("the relay to hold alice's message", 60, || async { relay_holds(&w.relay, &sent.id) }).await;
    alice_net.stop();
    w.clock.advance_to(9, 0);
    let (bob_net, _) = online(&w.bob, config(vec![], vec![w.relay_addr.clone()])).await;
    eventually("bob, the next morning, to read it", 60, || async { texts(&w.bob, "alice").await.len() == 1 }).await;
    bob_net.stop();
    w.relay_net.stop();
}

/// Alice writes with no network at all; a week later Alice and Bob come online with the relay.
/// The message was sealed again under that day's topic, arrives, and Alice sees it delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_queued_offline_for_a_week_arrives() {
    let w = world().await;
    let queued = w.alice.send("bob".into(), "written with no network".into()).await.unwrap();
    assert_eq!(queued.state, Some("queued"));
    w.clock.advance_days(7);
    let (alice_net, _) = online(&w.alice, config(vec![], vec![w.relay_addr.clone()])).await;
    let (bob_net, _) = online(&w.bob, config(vec![], vec![w.relay_addr.clone()])).await;
    eventually("bob to read what alice queued a week ago", 60, || async {
        texts(&w.bob, "alice").await == vec!["alice: written with no network".to_string()]
    })
    .await;
    let got = w.bob.history("alice".into(), 10).await.unwrap().into_iter().find(|m| m.kind == "text").unwrap();
    assert_eq!(got.sent_ms, queued.sent_ms, "it says when alice wrote it");
    eventually("alice to see it delivered", 60, || async {
        let mine = w.alice.history("bob".into(), 10).await.unwrap();
        let texts: Vec<_> = mine.iter().filter(|m| m.kind == "text").collect();
        texts.len() == 1 && texts[0].id == got.id && matches!(texts[0].state, Some("delivered" | "read"))
    })
    .await;
    alice_net.stop();
    bob_net.stop();
    w.relay_net.stop();
}

/// Bob and Carol are away while Alice removes Carol and writes on the days after. Bob, back with
/// only the relay, reads everything; Carol, back too, reads nothing written after her removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_change_while_away() {
    epoch_change_while_away(None).await;
}

/// The same, with every message written in the last hour before midnight (UTC), when the
/// network's current session already serves tomorrow's topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_change_while_away_written_before_midnight() {
    epoch_change_while_away(Some((23, 30))).await;
}

async fn epoch_change_while_away(at: Option<(u64, u64)>) {
    let w = world().await;
    if let Some((hour, minute)) = at {
        w.clock.advance_to(hour, minute);
    }
    let carol = create_with_clock(w._dir.path(), "carol", &w.clock).await;
    introduce(&w.alice, &carol).await;
    w.alice.create_group("night-shift".into()).await.unwrap();
    w.alice.invite("night-shift".into(), "bob".into()).await.unwrap();
    w.alice.invite("night-shift".into(), "carol".into()).await.unwrap();
    w.bob.import_bundle(w.alice.export_bundle().await.unwrap()).await.unwrap();
    carol.import_bundle(w.alice.export_bundle().await.unwrap()).await.unwrap();
    let before = w.alice.send("night-shift".into(), "before".into()).await.unwrap();
    let (alice_net, _) = online(&w.alice, config(vec![], vec![w.relay_addr.clone()])).await;
    eventually("the relay to hold it", 60, || async { relay_holds(&w.relay, &before.id) }).await;
    w.clock.advance_days(1);
    w.alice.remove_member("night-shift".into(), "carol".into()).await.unwrap();
    for day in 0..3 {
        w.clock.advance_days(1);
        let sent = w.alice.send("night-shift".into(), format!("after, day {day}")).await.unwrap();
        eventually("the relay to hold it", 60, || async { relay_holds(&w.relay, &sent.id) }).await;
    }
    alice_net.stop();
    w.clock.advance_days(2);

    let (bob_net, _) = online(&w.bob, config(vec![], vec![w.relay_addr.clone()])).await;
    eventually("bob to read everything, across the epoch change", 60, || async {
        texts(&w.bob, "night-shift").await.len() == 4
    })
    .await;
    bob_net.stop();
    let (carol_net, _) = online(&carol, config(vec![], vec![w.relay_addr.clone()])).await;
    eventually("carol to learn she was removed", 60, || async {
        carol.conversations().await.unwrap().iter().any(|c| c.name == "night-shift" && !c.active)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(texts(&carol, "night-shift").await, vec!["alice: before".to_string()]);
    carol_net.stop();
    w.relay_net.stop();
}

/// Over the mesh: a stranger's phone takes Alice's message as they pass, and meets Bob three
/// days later, far from Alice. Bob reads it (its day's topic is long unfollowed, but still his).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_carrier_brings_it_three_days_later() {
    use weft_core::mesh::medium::{MediumConfig, Mobility};
    use weft_core::mesh::radio::sim::SimAir;
    use weft_core::mesh::{RouterConfig, driver as mesh};

    let w = world().await;
    w.relay_net.stop();
    let carrier = create_with_clock(w._dir.path(), "carrier", &w.clock).await;
    let air = SimAir::start(MediumConfig::default(), 3);
    let (radio_a, a) = air.add_radio(0.0, 0.0, Mobility::Static);
    let (radio_c, c) = air.add_radio(10.0, 0.0, Mobility::Static);
    let (radio_b, _) = air.add_radio(5_000.0, 0.0, Mobility::Static);
    let _mesh_a = mesh::start_with_clock(w.alice.clone(), radio_a, RouterConfig::default(), w.clock.shared());
    let mesh_c = mesh::start_with_clock(carrier.clone(), radio_c, RouterConfig::default(), w.clock.shared());

    // What alice's phone hands over on meeting the carrier (her earlier envelopes) settles
    // first; then her message is one more envelope in the carrier's cache.
    let carried_when_still = || async {
        let mut still = (usize::MAX, 0);
        while still.1 < 10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = mesh_c.stats().carried_envelopes;
            still = if now == still.0 { (now, still.1 + 1) } else { (now, 0) };
        }
        still.0
    };
    let settled = carried_when_still().await;
    w.alice.send("bob".into(), "carried for three days".into()).await.unwrap();
    eventually("the carrier to take it", 60, || async { mesh_c.stats().carried_envelopes > settled }).await;
    // A send may make more than one envelope, each offered, wanted and carried in turn: alice
    // walks away once the carrier's cache is still again, not at the first of them.
    carried_when_still().await;
    air.set_position(a, -5_000.0, 0.0);
    w.clock.advance_days(3);
    // Bob's phone comes on three days later, and the carrier walks by.
    let _mesh_b = mesh::start_with_clock(w.bob.clone(), radio_b, RouterConfig::default(), w.clock.shared());
    air.set_position(c, 4_990.0, 0.0);
    eventually("bob to read what the carrier brought", 60, || async { texts(&w.bob, "alice").await.len() == 1 }).await;
}

/// Bob lists two relays; one of them holds nothing for him (new, or wiped). Its empty answer
/// does not end the catch-up: the other's is waited for, and the message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_holds_nothing_does_not_end_the_catch_up() {
    let w = world().await;
    let (alice_net, _) = online(&w.alice, config(vec![], vec![w.relay_addr.clone()])).await;
    let sent = w.alice.send("bob".into(), "only the first relay has this".into()).await.unwrap();
    eventually("the relay to hold alice's message", 60, || async { relay_holds(&w.relay, &sent.id) }).await;
    alice_net.stop();

    w.clock.advance_days(7);
    let (empty_net, _empty, empty_addr) = relay_with_clock(&w._dir.path().join("empty"), &w.clock).await;
    let (bob_net, _) = online(&w.bob, config(vec![], vec![empty_addr, w.relay_addr.clone()])).await;
    eventually("bob to read it", 60, || async { texts(&w.bob, "alice").await.len() == 1 }).await;
    bob_net.stop();
    empty_net.stop();
    w.relay_net.stop();
}
