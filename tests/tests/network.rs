//! Real libp2p sockets on loopback: two people who only exchanged links become contacts over
//! the network and chat; a thousand messages each way arrive once and in order; a node that
//! crashes with messages queued reconnects from its stored peer addresses and delivers them.

use std::collections::HashMap;
use std::time::Duration;

use weft_core::net::NetConfig;
use weft_core::node::NodeEvent;
use weft_tests::nodes::{Clock, config, create, create_with_clock, eventually, online, reopen, texts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_by_link_then_chat_and_catch_up_over_libp2p() {
    let dir = tempfile::tempdir().unwrap();
    let alice = create(dir.path(), "alice").await;
    let bob = create(dir.path(), "bob").await;
    let mut bob_events = bob.subscribe();

    let (alice_net, alice_addr) = online(&alice, config(vec![], vec![])).await;
    let (bob_net, _) = online(&bob, config(vec![alice_addr.clone()], vec![])).await;
    bob_net.wait_for_peers(1).await;

    // Alice only has Bob's link. Her request reaches him at his rendezvous topic.
    alice.add_contact(bob.link().await.unwrap(), None).await.unwrap();
    alice.send("bob".into(), "hello over the network".into()).await.unwrap();
    eventually("bob to hear of alice", 60, || async {
        bob.contacts().await.unwrap().iter().any(|c| c.name == "alice")
    })
    .await;
    // Nothing of a stranger's conversation is read before bob accepts her; then her message
    // comes by reconciliation.
    assert!(texts(&bob, "alice").await.is_empty());
    bob.accept_contact("alice".into()).await.unwrap();
    eventually("bob to read alice", 60, || async { texts(&bob, "alice").await == ["alice: hello over the network"] })
        .await;
    let mut saw_libp2p = false;
    while let Ok(event) = bob_events.try_recv() {
        if let NodeEvent::MessageReceived { via, .. } = event {
            saw_libp2p |= via == "libp2p";
        }
    }
    assert!(saw_libp2p, "the message event names its transport");

    for i in 0..20 {
        bob.send("alice".into(), format!("b{i}")).await.unwrap();
    }
    eventually("alice to read bob's 20", 60, || async { texts(&alice, "bob").await.len() == 21 }).await;

    // Bob goes offline; Alice writes; Bob comes back and catches up by reconciliation.
    bob_net.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..10 {
        alice.send("bob".into(), format!("while you were away {i}")).await.unwrap();
    }
    let (bob_net, _) = online(&bob, config(vec![alice_addr], vec![])).await;
    eventually("bob to catch up", 60, || async { texts(&bob, "alice").await.len() == 31 }).await;
    assert_eq!(texts(&alice, "bob").await, texts(&bob, "alice").await, "both see one history in one order");
    alice_net.stop();
    bob_net.stop();
}

/// Counts, per message id, how many times a node announced it as received.
fn count_received(node: &weft_core::node::Node) -> tokio::task::JoinHandle<HashMap<String, usize>> {
    let mut events = node.subscribe();
    tokio::spawn(async move {
        let mut seen = HashMap::new();
        loop {
            match events.recv().await {
                Ok(NodeEvent::MessageReceived { message, .. }) if message.kind == "text" => {
                    *seen.entry(message.id).or_insert(0) += 1;
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => panic!("missed {n} events"),
                Err(_) => return seen,
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_each_way_arrive_once_in_causal_order() {
    const N: usize = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let alice = create(dir.path(), "alice").await;
    let bob = create(dir.path(), "bob").await;
    let (alice_net, alice_addr) = online(&alice, config(vec![], vec![])).await;
    let (bob_net, _) = online(&bob, config(vec![alice_addr], vec![])).await;
    // Links only: the request and its answer cross the network.
    alice.add_contact(bob.link().await.unwrap(), None).await.unwrap();
    eventually("bob to get alice's request", 60, || async {
        bob.contacts().await.unwrap().iter().any(|c| c.name == "alice")
    })
    .await;
    bob.accept_contact("alice".into()).await.unwrap();

    let (alice_seen, bob_seen) = (count_received(&alice), count_received(&bob));
    let sender = |node: std::sync::Arc<weft_core::node::Node>, to: &'static str, tag: &'static str| {
        tokio::spawn(async move {
            for i in 0..N {
                node.send(to.into(), format!("{tag}{i:04}")).await.unwrap();
            }
        })
    };
    let (a, b) = (sender(alice.clone(), "bob", "a"), sender(bob.clone(), "alice", "b"));
    a.await.unwrap();
    b.await.unwrap();
    eventually("all 2,000 on both sides", 180, || async {
        texts(&alice, "bob").await.len() == 2 * N && texts(&bob, "alice").await.len() == 2 * N
    })
    .await;

    let (history_a, history_b) = (texts(&alice, "bob").await, texts(&bob, "alice").await);
    assert_eq!(history_a, history_b, "one history, in one order, on both sides");
    for (sender, tag) in [("alice", "a"), ("bob", "b")] {
        let theirs: Vec<&String> = history_a.iter().filter(|l| l.starts_with(&format!("{sender}:"))).collect();
        let expected: Vec<String> = (0..N).map(|i| format!("{sender}: {tag}{i:04}")).collect();
        assert!(theirs.iter().zip(&expected).all(|(a, b)| *a == b), "{sender}'s messages keep their order");
        assert_eq!(theirs.len(), N);
    }
    alice_net.stop();
    bob_net.stop();
    drop((alice, bob));
    let (alice_seen, bob_seen) = (alice_seen.await.unwrap(), bob_seen.await.unwrap());
    assert_eq!(alice_seen.len(), N, "alice was told of each of bob's messages");
    assert_eq!(bob_seen.len(), N, "bob was told of each of alice's messages");
    assert!(alice_seen.values().chain(bob_seen.values()).all(|&n| n == 1), "each exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_node_reconnects_by_itself_and_delivers_its_queue() {
    let dir = tempfile::tempdir().unwrap();
    let alice = create(dir.path(), "alice").await;
    let bob = create(dir.path(), "bob").await;
    weft_tests::nodes::introduce(&alice, &bob).await;
    let (alice_net, alice_addr) = online(&alice, config(vec![], vec![])).await;
    let (bob_net, _) = online(&bob, config(vec![alice_addr], vec![])).await;
    bob_net.wait_for_peers(1).await;

    // Bob's network dies; he writes; then his process dies without closing anything.
    eventually("bob's earlier envelopes to leave", 60, || async { bob.call(|a| a.outbox_len()).await.unwrap() == 0 })
        .await;
    bob_net.stop();
    for i in 0..10 {
        bob.send("alice".into(), format!("queued {i}")).await.unwrap();
    }
    assert_eq!(bob.call(|a| a.outbox_len()).await.unwrap(), 10);
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // On restart Bob is given no address at all: he dials the ones he stored.
    let bob = reopen(dir.path(), "bob").await;
    let (bob_net, _) = online(&bob, config(vec![], vec![])).await;
    eventually("alice to get bob's queue", 60, || async { texts(&alice, "bob").await.len() == 10 }).await;
    eventually("bob's outbox to empty", 60, || async { bob.call(|a| a.outbox_len()).await.unwrap() == 0 }).await;
    alice_net.stop();
    bob_net.stop();
}

/// Which of `node`'s sessions a fresh peer dialling `addr` reaches, twelve times over.
async fn reached_at(addr: &weft_core::net::Multiaddr) -> Vec<weft_core::net::PeerId> {
    use libp2p::futures::StreamExt;
    use libp2p::swarm::SwarmEvent;
    let mut reached = Vec::new();
    for _ in 0..12 {
        let mut dialer = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(libp2p::tcp::Config::default(), libp2p::noise::Config::new, libp2p::yamux::Config::default)
            .unwrap()
            .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
            .unwrap()
            .build();
        dialer.dial(addr.clone()).unwrap();
        let peer = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let SwarmEvent::ConnectionEstablished { peer_id, .. } = dialer.select_next_some().await {
                    break peer_id;
                }
            }
        })
        .await
        .expect("a connection");
        reached.push(peer);
    }
    reached
}

/// Alice online at `hour` o'clock (UTC, on a clock of her own) on a fixed port of loopback.
async fn alice_on_a_fixed_port(
    dir: &std::path::Path,
    hour: u64,
) -> (Clock, weft_core::net::NetHandle, weft_core::net::Multiaddr) {
    let clock = Clock::default();
    clock.advance_to_hour(hour);
    let alice = create_with_clock(dir, "alice", &clock).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let fixed: weft_core::net::Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let (alice_net, _) = online(&alice, NetConfig { listen: vec![fixed.clone()], ..config(vec![], vec![]) }).await;
    (clock, alice_net, fixed)
}

/// A node told to listen on a fixed port (a laptop behind a forwarded port, a lab) runs several
/// sessions: its conversations', its rendezvous point's, and more. Only the session that serves
/// its conversations may hold that port. Every session used to bind it (libp2p's TCP listeners
/// share ports), so the kernel handed each incoming connection to any of them at random, and a
/// peer told of the port often reached only the rendezvous session, never the conversations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_port_reaches_the_session_that_serves_the_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let (_clock, alice_net, fixed) = alice_on_a_fixed_port(dir.path(), 12).await;
    eventually("alice's other sessions to start", 30, || async { alice_net.sessions().len() >= 2 }).await;
    let reached = reached_at(&fixed).await;
    assert!(reached.iter().all(|p| *p == alice_net.peer_id()), "the fixed port reached another session: {reached:?}");
}

/// An hour before midnight a new session starts for tomorrow's conversations, beside today's.
/// Until midnight what is written goes on today's topics: the fixed port stays with today's
/// session, and passes to the new one at midnight. (Handed over when the new one started, the
/// port led peers who lost their connection in that hour to a session that shares no topic
/// with them: a partition on a LAN at 23:00 did not heal until the next day.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixed_port_passes_to_the_new_days_session_at_midnight() {
    use weft_core::net::Serves;
    let dir = tempfile::tempdir().unwrap();
    let (clock, alice_net, fixed) = alice_on_a_fixed_port(dir.path(), 23).await;
    let bases = || alice_net.sessions().into_iter().filter(|s| s.serves == Some(Serves::Current)).count();
    eventually("tomorrow's session to start beside today's", 30, || async { bases() == 2 }).await;
    // Until midnight the current session is today's.
    let todays = alice_net.peer_id();
    let tomorrows = alice_net
        .sessions()
        .into_iter()
        .find(|s| s.serves == Some(Serves::Current) && s.peer_id != todays)
        .expect("tomorrow's session")
        .peer_id;
    let reached = reached_at(&fixed).await;
    assert!(reached.iter().all(|p| *p == todays), "before midnight the port is today's session's: {reached:?}");

    clock.advance_to_hour(0);
    // The port changes hands at the next tick of the sessions' rotation.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reached = reached_at(&fixed).await;
    assert!(reached.iter().all(|p| *p == tomorrows), "after midnight the port is the new day's session's: {reached:?}");
    assert_eq!(alice_net.peer_id(), tomorrows, "and the new day's session is the current one");
}

/// In the hour before midnight a node runs tomorrow's session beside today's. The address a
/// node gives out (its current session's) was tomorrow's from 23:00 on, while what is written
/// until midnight goes on today's topics: two people who met by address in that hour did not
/// read each other until the next day (every test that went online between 23:00 and midnight
/// UTC failed). The current session is now the day's, and becomes tomorrow's at midnight; the
/// conversation goes on across it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_who_meet_by_address_in_the_hour_before_midnight_read_each_other_across_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::default();
    clock.advance_to_hour(23);
    let alice = create_with_clock(dir.path(), "alice", &clock).await;
    let bob = create_with_clock(dir.path(), "bob", &clock).await;
    weft_tests::nodes::introduce(&alice, &bob).await;
    let (alice_net, alice_addr) = online(&alice, config(vec![], vec![])).await;
    let (bob_net, _) = online(&bob, config(vec![alice_addr], vec![])).await;
    alice.send("bob".into(), "at eleven".into()).await.unwrap();
    bob.send("alice".into(), "at eleven too".into()).await.unwrap();
    eventually("bob to read alice before midnight", 30, || async { texts(&bob, "alice").await.len() == 2 }).await;
    eventually("alice to read bob before midnight", 30, || async { texts(&alice, "bob").await.len() == 2 }).await;

    let before = alice_net.peer_id();
    clock.advance_to_hour(0);
    eventually("alice's current session to be the new day's", 30, || async { alice_net.peer_id() != before }).await;
    alice.send("bob".into(), "after midnight".into()).await.unwrap();
    bob.send("alice".into(), "after midnight too".into()).await.unwrap();
    eventually("bob to read alice after midnight", 60, || async { texts(&bob, "alice").await.len() == 4 }).await;
    eventually("alice to read bob after midnight", 60, || async { texts(&alice, "bob").await.len() == 4 }).await;
    alice_net.stop();
    bob_net.stop();
}
