//! A hostile crowd: 50 peers, built from plain libp2p, do their worst for 60 s against a relay
//! and a node, each a `weft` process of its own (so that its memory is its own to measure):
//! sync requests of the largest size on every stream they may open, junk on rendezvous and
//! group topics (malformed, and well-formed envelopes nobody can open), and a new peer id each
//! time they are cut off. Meanwhile two honest nodes talk through that relay: every message
//! arrives, and its latency is recorded against the same run without attackers.
//!
//! The crowd comes from five addresses of its own (127.0.0.2 to .6, through [`Elsewhere`]), as
//! it would on a network: from the honest nodes' 127.0.0.1, the bans by address it earns would
//! shut them out too, which says nothing about the relay. (Honest peers behind the same NAT
//! as a crowd are shut out with it: THREAT_MODEL N12.)
//!
//! Prints the figures BENCHMARKS.md records.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm, gossipsub, request_response};
use weft_core::node::{Node, NodeEvent};
use weft_tests::elsewhere::Elsewhere;
use weft_tests::hostile::{Hostile, HostileEvent, hostile_as};
use weft_tests::nodes::{config, create, eventually, introduce, online, texts};

use weft_tests::{Home, Running};

const ATTACKERS: usize = 50;
/// The crowd's addresses: 127.0.0.2 and on.
const CROWD_ADDRESSES: u8 = 5;
const ATTACK: Duration = Duration::from_secs(60);
const BASELINE: Duration = Duration::from_secs(30);
/// One honest message every this often.
const EVERY: Duration = Duration::from_millis(250);
/// Peak resident memory each process must stay within under attack.
const RELAY_BOUND_MIB: u64 = 256;
const NODE_BOUND_MIB: u64 = 256;

fn hostile() -> Swarm<Hostile> {
    // More streams than a Weft node allows, each as long as it reads.
    let sync = request_response::Config::default()
        .with_max_concurrent_streams(64)
        .with_request_timeout(Duration::from_secs(60));
    hostile_as(libp2p::identity::Keypair::generate_ed25519(), sync)
}

/// What the crowd did, summed over its members.
#[derive(Default)]
struct Tally {
    identities: AtomicU64,
    connections: AtomicU64,
    requests: AtomicU64,
    junk: AtomicU64,
    /// Every peer id the crowd used, to tell its members from honest peers in the relay's log.
    ids: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// One attacker: connects to both targets, floods them until cut off, and comes back under a
/// new peer id, until `until`.
async fn attack(targets: Vec<Multiaddr>, until: Instant, tally: Arc<Tally>, seed: u64) {
    let frame = vec![0xA5u8; weft_core::net::MAX_FRAME as usize];
    let mut n = seed;
    while Instant::now() < until {
        let mut swarm = hostile();
        tally.identities.fetch_add(1, Ordering::Relaxed);
        tally.ids.lock().unwrap().insert(swarm.local_peer_id().to_string());
        for t in &targets {
            let _ = swarm.dial(t.clone());
        }
        let mut topics: Vec<gossipsub::IdentTopic> = Vec::new();
        let mut connected = 0usize;
        let mut publish = tokio::time::interval(Duration::from_millis(100));
        let life = tokio::time::sleep(Duration::from_secs(10).min(until.saturating_duration_since(Instant::now())));
        tokio::pin!(life);
        loop {
            tokio::select! {
                _ = &mut life => break,
                _ = publish.tick() => {
                    for topic in &topics {
                        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let data = if topic.hash().as_str().starts_with("weft-rv/") {
                            // The size and version of a contact request.
                            let mut d = vec![(n >> 7) as u8; weft_core::handshake::WRAPPED_LEN];
                            d[0] = weft_core::handshake::WRAPPED_VERSION;
                            d[1..9].copy_from_slice(&n.to_be_bytes());
                            d
                        } else if n.is_multiple_of(2) {
                            // A well-formed envelope of that very topic, which nobody can open.
                            let hex = topic.hash().as_str().trim_start_matches("weft/").to_string();
                            let mut d = vec![(n >> 9) as u8; 1024];
                            d[0] = weft_core::envelope::ENVELOPE_VERSION;
                            d[1..17].copy_from_slice(&data_encoding::HEXLOWER.decode(hex.as_bytes()).unwrap());
                            d[17..25].copy_from_slice(&n.to_be_bytes());
                            d
                        } else {
                            n.to_be_bytes().repeat(40)
                        };
                        if swarm.behaviour_mut().gossipsub.publish(topic.clone(), data).is_ok() {
                            tally.junk.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                event = swarm.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        connected += 1;
                        tally.connections.fetch_add(1, Ordering::Relaxed);
                        for _ in 0..8 {
                            swarm.behaviour_mut().sync.send_request(&peer_id, frame.clone());
                            tally.requests.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    SwarmEvent::ConnectionClosed { num_established: 0, .. } => {
                        connected = connected.saturating_sub(1);
                        if connected == 0 { break; }
                    }
                    SwarmEvent::OutgoingConnectionError { .. } if connected == 0 => {
                        // Refused: wait a little before the next identity.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                    SwarmEvent::Behaviour(HostileEvent::Gossipsub(gossipsub::Event::Subscribed { topic, .. })) => {
                        let t = gossipsub::IdentTopic::new(topic.as_str());
                        if !topics.iter().any(|x| x.hash() == t.hash()) && topics.len() < 64 {
                            let _ = swarm.behaviour_mut().gossipsub.subscribe(&t);
                            topics.push(t);
                        }
                    }
                    _ => {}
                },
            }
        }
    }
}

/// Alice sends to Bob every [`EVERY`] for `period`; returns the latencies seen, once all
/// arrived or 60 s after the last was sent, how many were sent, and how many arrived (counted in
/// bob's history: a listener that falls behind the node's events misses some of them).
async fn talk(alice: &Arc<Node>, bob: &Arc<Node>, period: Duration, tag: &str) -> (Vec<Duration>, usize, usize) {
    let mut events = bob.subscribe();
    let sent: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
    let (sent2, lat2) = (sent.clone(), latencies.clone());
    let listener = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(NodeEvent::MessageReceived { message, .. }) => {
                    if let Some(at) = sent2.lock().unwrap().remove(&message.body) {
                        lat2.lock().unwrap().push(at.elapsed());
                    }
                }
                // Before, the first lag ended the listener: under attack it stopped counting
                // after a few messages although they went on arriving.
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    let start = Instant::now();
    let mut count = 0;
    let mut tick = tokio::time::interval(EVERY);
    while start.elapsed() < period {
        tick.tick().await;
        let body = format!("{tag} {count}");
        sent.lock().unwrap().insert(body.clone(), Instant::now());
        alice.send("bob".into(), body).await.unwrap();
        count += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let prefix = format!("alice: {tag} ");
    let arrived = || async { texts(bob, "alice").await.iter().filter(|t| t.starts_with(&prefix)).count() };
    while arrived().await < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = arrived().await;
    listener.abort();
    let mut all = latencies.lock().unwrap().clone();
    all.sort();
    (all, count, got)
}

/// The socket address of a `/ip4/…/tcp/…` address.
fn socket_of(addr: &Multiaddr) -> std::net::SocketAddr {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    std::net::SocketAddr::new(ip.expect("an IPv4 address"), port.expect("a TCP port"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Peak and current resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_crowd_neither_exhausts_a_relay_or_a_node_nor_stops_honest_traffic() {
    let root = tempfile::tempdir().unwrap();
    let relay_log = root.path().join("relay.log");
    let relay = Running::spawn_logging(
        &Home::new(root.path(), "relay"),
        &["relay", "--listen", "/ip4/127.0.0.1/tcp/0"],
        &relay_log,
    );
    let relay_addr: Multiaddr =
        relay.wait_for("--relay /ip4/127.0.0.1/tcp/").trim().trim_start_matches("--relay ").parse().unwrap();
    let target_home = Home::new(root.path(), "target");
    target_home.ok(&["init", "--name", "target"]);
    let target = Running::start(&target_home, &["--no-ble"]);
    let target_addr: Multiaddr = target.wait_for("/ip4/127.0.0.1/tcp/").trim().parse().unwrap();

    let alice = create(root.path(), "alice").await;
    let bob = create(root.path(), "bob").await;
    introduce(&alice, &bob).await;
    let (alice_net, _) = online(&alice, config(vec![], vec![relay_addr.clone()])).await;
    let (bob_net, _) = online(&bob, config(vec![], vec![relay_addr.clone()])).await;
    alice.send("bob".into(), "through the relay".into()).await.unwrap();
    eventually("the first message", 60, || async { texts(&bob, "alice").await.len() == 1 }).await;

    let (calm, calm_sent, calm_arrived) = talk(&alice, &bob, BASELINE, "calm").await;
    assert_eq!(calm_arrived, calm_sent, "every message arrives without attackers");
    let before = (memory_kib(relay.pid()), memory_kib(target.pid()));

    let tally = Arc::new(Tally::default());
    // (WEFT_CROWD_SECS shortens the attack when looking into a failure.)
    let attack_for =
        std::env::var("WEFT_CROWD_SECS").ok().and_then(|s| s.parse().ok()).map_or(ATTACK, Duration::from_secs);
    let until = Instant::now() + attack_for;
    // The crowd runs on threads of its own, as another machine would: sharing the honest
    // nodes' runtime would measure how the test starves itself, not how the targets hold.
    let targets = vec![relay_addr.clone(), target_addr.clone()];
    let crowd_tally = tally.clone();
    let crowd = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let mut forwarders = Vec::new();
            let mut from: Vec<Vec<Multiaddr>> = Vec::new();
            for n in 0..CROWD_ADDRESSES {
                let source = std::net::Ipv4Addr::new(127, 0, 0, 2 + n);
                let mut addrs = Vec::new();
                for t in &targets {
                    let forwarder = Elsewhere::start(source, socket_of(t)).await.expect("a forwarder");
                    addrs.push(forwarder.multiaddr(t));
                    forwarders.push(forwarder);
                }
                from.push(addrs);
            }
            let attackers: Vec<_> = (0..ATTACKERS)
                .map(|i| {
                    let targets = from[i % from.len()].clone();
                    tokio::spawn(attack(targets, until, crowd_tally.clone(), i as u64))
                })
                .collect();
            for a in attackers {
                let _ = a.await;
            }
        });
    });
    let lost_peers = Arc::new(AtomicU64::new(0));
    let counters: Vec<_> = [&alice, &bob]
        .into_iter()
        .map(|node| {
            let (mut events, lost) = (node.subscribe(), lost_peers.clone());
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(NodeEvent::PeerDisconnected { .. }) => {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
            })
        })
        .collect();
    let (stormy, stormy_sent, stormy_arrived) = talk(&alice, &bob, attack_for, "stormy").await;
    crowd.join().unwrap();
    counters.iter().for_each(|c| c.abort());
    let after = (memory_kib(relay.pid()), memory_kib(target.pid()));

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "crowd: {ATTACKERS} attackers, {} identities, {} connections, {} max-size requests, {} junk messages in {} s",
        tally.identities.load(Ordering::Relaxed),
        tally.connections.load(Ordering::Relaxed),
        tally.requests.load(Ordering::Relaxed),
        tally.junk.load(Ordering::Relaxed),
        attack_for.as_secs()
    );
    println!(
        "honest: calm {} messages p50 {:.1} ms p99 {:.1} ms; under attack {} of {} arrived, p50 {:.1} ms p99 {:.1} ms",
        calm_arrived,
        ms(percentile(&calm, 0.5)),
        ms(percentile(&calm, 0.99)),
        stormy_arrived,
        stormy_sent,
        ms(percentile(&stormy, 0.5)),
        ms(percentile(&stormy, 0.99)),
    );
    println!(
        "memory (peak RSS): relay {} MiB before, {} MiB after; node {} MiB before, {} MiB after",
        before.0.0 / 1024,
        after.0.0 / 1024,
        before.1.0 / 1024,
        after.1.0 / 1024
    );
    println!("honest nodes lost a peer {} times under attack", lost_peers.load(Ordering::Relaxed));
    if stormy_arrived != stormy_sent {
        // What the relay did to peers outside the crowd: the honest nodes' sessions.
        let crowd_ids = tally.ids.lock().unwrap().clone();
        let log = std::fs::read_to_string(&relay_log).unwrap_or_default();
        let honest: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("strike") || l.contains("disconnected") || l.contains("failed"))
            .filter(|l| !crowd_ids.iter().any(|id| l.contains(id.as_str())))
            .collect();
        println!("the relay's log about honest peers ({} lines, the last 60):", honest.len());
        for line in honest.iter().skip(honest.len().saturating_sub(60)) {
            println!("  {line}");
        }
    }
    assert_eq!(stormy_arrived, stormy_sent, "every message arrives under attack");
    assert!(after.0.0 / 1024 <= RELAY_BOUND_MIB, "the relay stayed within {RELAY_BOUND_MIB} MiB");
    assert!(after.1.0 / 1024 <= NODE_BOUND_MIB, "the node stayed within {NODE_BOUND_MIB} MiB");
    assert!(tally.connections.load(Ordering::Relaxed) > 0, "the crowd reached its targets");
    alice_net.stop();
    bob_net.stop();
}
