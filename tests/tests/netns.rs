//! Weft over the kernel's real network stack: every node and the relay on a host of its own
//! (a network namespace), joined through a hub that loses, delays and reorders what it forwards
//! and can split the crowd in two (`weft_tests::netns`). Needs root; skips with a message where
//! namespaces cannot be made, and fails instead under `WEFT_REQUIRE_NETNS=1` (CI).

#![cfg(target_os = "linux")]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_core::net::{Keypair, Multiaddr, NetConfig, NetHandle};
use weft_core::node::Node;
use weft_tests::netns::{Impairment, Lab, Nat, NsRuntime, Traffic, lab_or_skip, megabytes};
use weft_tests::nodes::{create, eventually, init_logging, introduce, texts};

const PORT: u16 = 4001;
const GROUP: &str = "square";

fn tcp(lab: &Lab, host: usize) -> Multiaddr {
    format!("/ip4/{}/tcp/{PORT}", lab.addr(host)).parse().expect("an address")
}

/// Every interface on a fixed port (so peers can be told where to find each other, and the
/// node sees its addresses come and go), no mDNS, a one-second tick.
fn net_config(bootstrap: Vec<Multiaddr>, relays: Vec<Multiaddr>) -> NetConfig {
    NetConfig {
        listen: vec![format!("/ip4/0.0.0.0/tcp/{PORT}").parse().expect("valid")],
        bootstrap,
        relays,
        mdns: false,
        tick: Duration::from_secs(1),
        ..NetConfig::default()
    }
}

/// A relay on `host`; its address with its peer id.
async fn relay_on(lab: &Lab, host: usize, runtime: &NsRuntime, dir: &std::path::Path) -> (NetHandle, Multiaddr) {
    let dir = dir.join("relay");
    let config = NetConfig { relay_server: true, ..net_config(vec![], vec![]) };
    let net = runtime
        .run(async move {
            let (net, _cache) =
                weft_core::relay::start(&dir, config, weft_core::relay::CacheLimits::default()).await.expect("a relay");
            net
        })
        .await;
    let addr = tcp(lab, host).with_p2p(net.peer_id()).expect("a plain address");
    (net, addr)
}

async fn online_on(runtime: &NsRuntime, node: &Arc<Node>, config: NetConfig) -> NetHandle {
    let node = node.clone();
    runtime
        .run(async move { weft_core::net::start(node, config, Keypair::generate_ed25519()).await.expect("libp2p") })
        .await
}

/// Six people in one group, made contacts and members by bundles carried by hand.
async fn six_in_a_group(dir: &std::path::Path) -> Vec<Arc<Node>> {
    in_a_group(dir, &["alice", "bob", "carol", "dave", "erin", "frank"]).await
}

/// `names` in one group, made contacts of the first and members by bundles carried by hand.
async fn in_a_group(dir: &std::path::Path, names: &[&str]) -> Vec<Arc<Node>> {
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(create(dir, name).await);
    }
    for other in &nodes[1..] {
        introduce(&nodes[0], other).await;
    }
    nodes[0].create_group(GROUP.into()).await.expect("a group");
    for name in &names[1..] {
        nodes[0].invite(GROUP.into(), (*name).into()).await.expect("an invitation");
    }
    let bundle = nodes[0].export_bundle().await.expect("a bundle");
    for other in &nodes[1..] {
        other.import_bundle(bundle.clone()).await.expect("the welcome");
    }
    nodes
}

/// Counts each text in `node`'s view of the group.
async fn counted(node: &Node) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for line in texts(node, GROUP).await {
        let body = line.split_once(": ").map(|(_, b)| b.to_string()).unwrap_or(line);
        *seen.entry(body).or_default() += 1;
    }
    seen
}

/// Waits like `eventually`, and when the wait runs out says what each node held and who it was
/// connected to, so a failure on CI can be read without running it again.
async fn within<F, Fut>(
    what: &str,
    secs: u64,
    nodes: &[Arc<Node>],
    nets: &[NetHandle],
    bodies: &HashSet<String>,
    check: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    let waited = tokio::time::timeout(Duration::from_secs(secs), eventually(what, secs + 60, check)).await;
    if waited.is_ok() {
        return;
    }
    let names: HashMap<String, String> = {
        let mut names = HashMap::new();
        for (k, net) in nets.iter().enumerate() {
            names.insert(
                net.peer_id().to_string(),
                if k == 0 { "relay".to_string() } else { format!("node {}", k - 1) },
            );
        }
        names
    };
    for (k, net) in nets.iter().enumerate() {
        let status = net.status().await;
        let peers = status.map(|s| {
            s.peers
                .iter()
                .map(|p| format!("{} at {}", names.get(&p.peer).cloned().unwrap_or(p.peer.clone()), p.addr))
                .collect::<Vec<_>>()
        });
        let missing = if k == 0 {
            String::new()
        } else {
            let seen = counted(&nodes[k - 1]).await;
            format!(", missing {:?}", bodies.iter().filter(|b| !seen.contains_key(*b)).collect::<Vec<_>>())
        };
        println!("{}: connected to {peers:?}{missing}", names[&net.peer_id().to_string()]);
    }
    panic!("timed out after {:.0} s waiting for {what}", started.elapsed().as_secs_f64());
}

async fn holds_all(node: &Node, bodies: &HashSet<String>) -> bool {
    let seen = counted(node).await;
    bodies.iter().all(|b| seen.contains_key(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_nodes_and_a_relay_converge_over_a_lossy_link_through_three_partitions() {
    init_logging();
    let Some(mut lab) = lab_or_skip(7) else { return };
    let dir = tempfile::tempdir().unwrap();
    let nodes = six_in_a_group(dir.path()).await;
    let impairment =
        Impairment { loss: 0.10, delay: Duration::from_millis(200), jitter: Duration::from_millis(100), seed: 17 };
    lab.impair(impairment).expect("the hub impairs what it forwards");

    // Host 0 is the relay, host k + 1 is node k. Every node knows the relay and every other
    // node's address (as a crowd on one LAN would after mDNS).
    let runtimes: Vec<NsRuntime> = (0..lab.hosts()).map(|h| NsRuntime::start(lab.netns(h)).expect("a host")).collect();
    let (relay_net, relay_addr) = relay_on(&lab, 0, &runtimes[0], dir.path()).await;
    let mut nets = vec![relay_net];
    for (k, node) in nodes.iter().enumerate() {
        let others = (1..lab.hosts()).filter(|h| *h != k + 1).map(|h| tcp(&lab, h)).collect();
        nets.push(online_on(&runtimes[k + 1], node, net_config(others, vec![relay_addr.clone()])).await);
    }

    let mut bodies = HashSet::new();
    let first = "before any partition".to_string();
    nodes[0].send(GROUP.into(), first.clone()).await.expect("a send");
    bodies.insert(first);
    let start = Instant::now();
    for node in &nodes {
        eventually("the first message everywhere over the lossy link", 120, || holds_all(node, &bodies)).await;
    }
    println!(
        "first message everywhere in {:.1} s, through {} ",
        start.elapsed().as_secs_f64(),
        describe(lab.traffic())
    );

    // Three splits, each with the relay on one side; a node on the other side reaches only its
    // own side, directly.
    let splits: [&[usize]; 3] = [&[0, 1, 2, 3], &[0, 4, 5], &[0, 1, 6]];
    for (round, side) in splits.iter().enumerate() {
        let round = round + 1;
        lab.partition(side).expect("a partition");
        let split = Instant::now();
        let inside = |k: usize| side.contains(&(k + 1));
        let mut sides: [HashSet<String>; 2] = Default::default();
        for (k, node) in nodes.iter().enumerate() {
            for n in 1..=2 {
                let body = format!("round {round}, from node {k}, number {n}");
                node.send(GROUP.into(), body.clone()).await.expect("a send");
                sides[usize::from(!inside(k))].insert(body);
            }
        }
        for (k, node) in nodes.iter().enumerate() {
            let own = &sides[usize::from(!inside(k))];
            let what = format!("round {round}: node {k} to see its side's messages");
            within(&what, 120, &nodes, &nets, own, || holds_all(node, own)).await;
        }
        println!(
            "netns round {round}: each side holds its own messages {:.1} s after the split",
            split.elapsed().as_secs_f64()
        );
        // The split holds: long enough that the connections across it stall.
        tokio::time::sleep(Duration::from_secs(20)).await;
        for (k, node) in nodes.iter().enumerate() {
            let seen = counted(node).await;
            let other = &sides[usize::from(inside(k))];
            assert!(
                !other.iter().any(|b| seen.contains_key(b)),
                "round {round}: nothing crosses a partition (node {k} saw the other side)"
            );
        }

        bodies.extend(sides.into_iter().flatten());
        let before = lab.traffic();
        lab.heal().expect("healing");
        let healed = Instant::now();
        for (k, node) in nodes.iter().enumerate() {
            let what = format!("round {round}: node {k} to converge after healing");
            within(&what, 180, &nodes, &nets, &bodies, || holds_all(node, &bodies)).await;
        }
        let took = healed.elapsed().as_secs_f64();
        println!(
            "netns round {round}: side {side:?} against the rest; converged {took:.1} s after healing, moving {}",
            describe(lab.traffic() - before)
        );
    }

    for (k, node) in nodes.iter().enumerate() {
        let seen = counted(node).await;
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "node {k} shows messages more than once: {twice:?}");
        assert_eq!(seen.len(), bodies.len(), "node {k} holds every message and nothing else");
    }
    let total = lab.traffic();
    println!(
        "netns: {} messages, {} nodes and a relay, all converged exactly once in {:.1} s; the hub moved {}",
        bodies.len(),
        nodes.len(),
        start.elapsed().as_secs_f64(),
        describe(total)
    );
    assert!(total.lost > 0 && total.reordered > 0, "the link was lossy and reordered: {total:?}");
    drop(nets);
    drop(runtimes);
}

fn describe(t: Traffic) -> String {
    format!("{} in {} packets ({} lost, {} reordered)", megabytes(t.bytes), t.packets, t.lost, t.reordered)
}

/// A phone moving from Wi-Fi to mobile data: its address changes under the running node, and
/// the connections it made from the old one are dead with nobody told. It must reconnect to its
/// relay and go on sending and receiving without a restart or a call from the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_address_changes_reconnects_without_restart() {
    init_logging();
    let Some(mut lab) = lab_or_skip(3) else { return };
    let dir = tempfile::tempdir().unwrap();
    let alice = create(dir.path(), "alice").await;
    let bob = create(dir.path(), "bob").await;
    introduce(&alice, &bob).await;
    let runtimes: Vec<NsRuntime> = (0..lab.hosts()).map(|h| NsRuntime::start(lab.netns(h)).expect("a host")).collect();
    let (relay_net, relay_addr) = relay_on(&lab, 0, &runtimes[0], dir.path()).await;
    // Only the relay: phones on mobile data reach each other through it.
    let alice_net = online_on(&runtimes[1], &alice, net_config(vec![], vec![relay_addr.clone()])).await;
    let bob_net = online_on(&runtimes[2], &bob, net_config(vec![], vec![relay_addr.clone()])).await;

    alice.send("bob".into(), "on wi-fi".into()).await.expect("a send");
    eventually("bob to read alice over the relay", 60, || async { texts(&bob, "alice").await.len() == 1 }).await;

    let old = lab.addr(2);
    let new = lab.move_host(2).expect("bob's phone changes network");
    println!("bob moved from {old} to {new}");
    let moved = Instant::now();
    alice.send("bob".into(), "after you moved".into()).await.expect("a send");
    bob.send("alice".into(), "from mobile data".into()).await.expect("a send");
    let reads = |node: &Arc<Node>, contact: &'static str, body: &'static str| {
        let node = node.clone();
        async move { texts(&node, contact).await.iter().any(|line| line.ends_with(body)) }
    };
    eventually("bob to read alice at his new address", 60, || reads(&bob, "alice", "after you moved")).await;
    eventually("alice to read bob from his new address", 60, || reads(&alice, "bob", "from mobile data")).await;
    println!("both ways again {:.1} s after the move, with no restart", moved.elapsed().as_secs_f64());
    // (The messages may have come the direct way: Alice and Bob met at the relay and punched a
    // hole. His relay must take him back all the same.)
    eventually("bob to be connected to his relay again", 60, || async {
        bob_net.status().await.is_ok_and(|s| s.relays.iter().all(|r| r.connected))
    })
    .await;
    println!("bob's relay took him back {:.1} s after the move", moved.elapsed().as_secs_f64());
    let status = bob_net.status().await.expect("status");
    assert!(
        status.listening.iter().all(|a| !a.contains(&old.to_string())),
        "bob no longer claims his old address: {:?}",
        status.listening
    );
    drop((relay_net, alice_net, bob_net));
    drop(runtimes);
}

/// How `from` is connected to `to`, if it is: through a relay's circuit (true) or directly, and
/// at which address.
async fn link(from: &NetHandle, to: &NetHandle) -> Option<(bool, String)> {
    let to = to.peer_id().to_string();
    let status = from.status().await.expect("status");
    status.peers.iter().find(|p| p.peer == to).map(|p| (p.relayed, p.addr.clone()))
}

/// Members at home behind NATs, with only a relay in common. Alice and Bob are behind NATs that
/// keep a port for every destination (most home routers); Carol behind one that picks a new
/// port for each connection (a carrier-grade NAT). They meet at the relay by their
/// conversation's meet token, dial each other through its circuit, and punch holes: Alice and
/// Bob end up connected directly, NAT to NAT; Carol, whose NAT no hole gets through, stays on
/// the relay's circuit; every status says which. A fourth member, Dave, turned hole punching
/// off: nobody meets him, and what he writes still arrives through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_behind_nats_connect_directly_where_the_nats_allow_and_through_the_relay_where_not() {
    init_logging();
    let Some(mut lab) = lab_or_skip(5) else { return };
    for (host, nat) in [(1, Nat::EndpointIndependent), (2, Nat::EndpointIndependent), (3, Nat::Symmetric)] {
        lab.put_behind_nat(host, nat).expect("a NAT");
    }
    lab.put_behind_nat(4, Nat::EndpointIndependent).expect("a NAT");
    let dir = tempfile::tempdir().unwrap();
    let nodes = in_a_group(dir.path(), &["alice", "bob", "carol", "dave"]).await;
    let runtimes: Vec<NsRuntime> = (0..lab.hosts()).map(|h| NsRuntime::start(lab.netns(h)).expect("a host")).collect();
    let (relay_net, relay_addr) = relay_on(&lab, 0, &runtimes[0], dir.path()).await;
    let mut nets = vec![relay_net];
    for (k, node) in nodes.iter().enumerate() {
        let config = NetConfig { hole_punching: k != 3, ..net_config(vec![], vec![relay_addr.clone()]) };
        nets.push(online_on(&runtimes[k + 1], node, config).await);
    }
    let started = Instant::now();
    let (alice, bob, carol, dave) = (&nets[1], &nets[2], &nets[3], &nets[4]);
    eventually("alice and bob to punch a hole to each other", 90, || async {
        matches!(link(alice, bob).await, Some((false, _))) && matches!(link(bob, alice).await, Some((false, _)))
    })
    .await;
    let direct = started.elapsed().as_secs_f64();
    let (_, seen_at) = link(alice, bob).await.expect("connected");
    assert!(
        seen_at.contains(&format!("/ip4/{}/", lab.addr(2))),
        "alice reaches bob at his NAT's public address, not his own: {seen_at}"
    );
    eventually("carol to meet alice and bob through the relay", 90, || async {
        matches!(link(carol, alice).await, Some((true, _))) && matches!(link(carol, bob).await, Some((true, _)))
    })
    .await;
    // Hole punching had its chance (DCUtR tries three times within seconds); Carol's NAT
    // lets none through.
    tokio::time::sleep(Duration::from_secs(15)).await;
    for other in [alice, bob] {
        assert!(
            !matches!(link(carol, other).await, Some((false, _))),
            "no hole gets through a symmetric NAT: {:?}",
            link(carol, other).await
        );
    }
    for other in [alice, bob, carol] {
        assert!(link(dave, other).await.is_none(), "dave, who turned hole punching off, meets nobody");
        assert!(link(other, dave).await.is_none(), "nobody meets dave");
    }
    println!(
        "NATs: alice and bob direct {direct:.1} s after start (alice sees bob at {seen_at}); carol through the relay's circuit"
    );

    // Whatever the path, every message arrives everywhere once.
    let mut bodies = HashSet::new();
    for (k, node) in nodes.iter().enumerate() {
        let body = format!("from behind NAT {k}");
        node.send(GROUP.into(), body.clone()).await.expect("a send");
        bodies.insert(body);
    }
    for (k, node) in nodes.iter().enumerate() {
        let what = format!("node {k} to read everyone");
        within(&what, 90, &nodes, &nets, &bodies, || holds_all(node, &bodies)).await;
        assert!(counted(node).await.values().all(|n| *n == 1), "node {k} shows a message twice");
    }
    drop(nets);
    drop(runtimes);
}
