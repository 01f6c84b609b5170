//! What a connected peer records of a node, across two days and a removal: a peer (or a relay,
//! which is a peer that also keeps the envelopes) that follows every topic it sees the node
//! follow, and records every byte it is handed: peer ids, identify information, subscriptions,
//! gossip and sync requests. It also holds the link of someone the node asks to be a contact, so
//! it sees the node's request. No 8-byte string it recorded of one of the node's sessions
//! appears in what it records of another (what a stranger's node says too aside): not across
//! days, not between the new epoch's topics and the ended epoch's on the day after a removal,
//! and not between the conversations, the node's rendezvous point and its contact requests.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, noise, request_response, tcp, yamux};
use weft_core::net::SessionInfo;
use weft_tests::hostile::{Raw, raw_sync, weft_gossipsub};
use weft_tests::nodes::{Clock, config, create_with_clock, introduce, online};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(NetworkBehaviour)]
struct Observer {
    identify: identify::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::Behaviour<Raw>,
}

fn observer() -> Swarm<Observer> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|key| Observer {
            identify: identify::Behaviour::new(identify::Config::new("/weft/1".into(), key.public())),
            gossipsub: weft_gossipsub(),
            sync: raw_sync(request_response::Config::default()),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build()
}

/// What the observer recorded, by the node's peer id; and what every Weft node says alike.
#[derive(Default)]
struct Recording {
    by_peer: BTreeMap<PeerId, Vec<Vec<u8>>>,
    /// The gossip topics each peer subscribed to, and those it published on.
    subscribed: BTreeMap<PeerId, Vec<String>>,
    published: BTreeMap<PeerId, Vec<String>>,
    constants: Vec<Vec<u8>>,
}

impl Recording {
    fn note(&mut self, peer: PeerId, bytes: Vec<u8>) {
        self.by_peer.entry(peer).or_default().push(bytes);
    }
}

/// Runs the observer for `secs`: follows every topic a peer subscribes to, answers every sync
/// request with an empty batch, and records it all.
async fn observe(swarm: &mut Swarm<Observer>, rec: &mut Recording, secs: u64) {
    let deadline = tokio::time::sleep(Duration::from_secs(secs));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => rec.note(peer_id, peer_id.to_bytes()),
                SwarmEvent::Behaviour(ObserverEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                    rec.note(peer_id, info.public_key.encode_protobuf());
                    for addr in &info.listen_addrs {
                        rec.note(peer_id, addr.to_vec());
                    }
                    // What every Weft node says alike, and our own address as it saw it.
                    rec.constants.push(info.agent_version.into_bytes());
                    rec.constants.push(info.protocol_version.into_bytes());
                    rec.constants.extend(info.protocols.iter().map(|p| p.as_ref().as_bytes().to_vec()));
                    rec.constants.push(info.observed_addr.to_vec());
                }
                SwarmEvent::Behaviour(ObserverEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic })) => {
                    let name = topic.as_str();
                    rec.subscribed.entry(peer_id).or_default().push(name.to_owned());
                    let hex = name.trim_start_matches("weft-rv/").trim_start_matches("weft/");
                    rec.note(peer_id, data_encoding::HEXLOWER.decode(hex.as_bytes()).unwrap());
                    let _ = swarm.behaviour_mut().gossipsub.subscribe(&gossipsub::IdentTopic::new(name));
                }
                SwarmEvent::Behaviour(ObserverEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message, .. })) => {
                    rec.published.entry(propagation_source).or_default().push(message.topic.as_str().to_owned());
                    rec.note(propagation_source, message.data);
                }
                SwarmEvent::Behaviour(ObserverEvent::Sync(request_response::Event::Message { peer, message: request_response::Message::Request { request, channel, .. }, .. })) => {
                    rec.note(peer, request);
                    let _ = swarm.behaviour_mut().sync.send_response(channel, vec![0]);
                }
                _ => {}
            },
        }
    }
}

/// The 8-byte strings of `items` that could identify something. Every identifier a node has
/// (peer ids, keys, topics, envelopes, reconciliation symbols) is uniformly random: 8 random
/// bytes hold fewer than 6 distinct values about once in 6,000, and an identifier of 32 bytes
/// has 25 such strings, so none escapes; lengths, counts, framing and padding
/// (`01 00 00 06 6f 01 00 03`, `00 00 00 00 00 00 00 55`) do, and are the protocol's structure.
fn windows(items: &[Vec<u8>]) -> HashSet<[u8; 8]> {
    let random = |w: &[u8]| w.iter().collect::<HashSet<_>>().len() >= 6;
    items.iter().flat_map(|i| i.windows(8).filter(|w| random(w)).map(|w| w.try_into().unwrap())).collect()
}

/// The 8-byte strings of `before` that appear again in `after`, constants aside.
fn repeated(before: &[Vec<u8>], after: &[Vec<u8>], constants: &[Vec<u8>]) -> Vec<[u8; 8]> {
    let constant = windows(constants);
    let mut out: Vec<[u8; 8]> =
        windows(before).intersection(&windows(after)).filter(|w| !constant.contains(*w)).copied().collect();
    out.sort();
    out
}

/// Alice's sessions as her network handle lists them, by what each serves.
fn by_role(sessions: &[SessionInfo], before: &[PeerId]) -> BTreeMap<String, PeerId> {
    sessions
        .iter()
        .filter(|s| !before.contains(&s.peer_id))
        .map(|s| (format!("{:?}", s.serves.clone().unwrap()), s.peer_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_peer_records_nothing_that_links_two_days_or_an_epoch_change() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::default();
    clock.advance_to_hour(12);
    let alice = create_with_clock(dir.path(), "alice", &clock).await;
    let bob = create_with_clock(dir.path(), "bob", &clock).await;
    let carol = create_with_clock(dir.path(), "carol", &clock).await;
    introduce(&alice, &bob).await;
    introduce(&alice, &carol).await;
    alice.create_group("crew".into()).await.unwrap();
    alice.invite("crew".into(), "bob".into()).await.unwrap();
    alice.invite("crew".into(), "carol".into()).await.unwrap();
    // Alice asks Frank, who is never online, to be her contact: her request is republished all
    // along. The observer holds Frank's link, so it follows his rendezvous point.
    let frank = create_with_clock(dir.path(), "frank", &clock).await;
    alice.add_contact(frank.link().await.unwrap(), None).await.unwrap();
    let point_of = |node: &std::sync::Arc<weft_core::node::Node>, day: u64| {
        let node = node.clone();
        async move {
            let point = node.call(move |a| Ok(a.card().rendezvous_point(day))).await.unwrap();
            format!("weft-rv/{}", data_encoding::HEXLOWER.encode(&point))
        }
    };
    let day = clock.now_ms() / DAY_MS;

    let mut watcher = observer();
    watcher.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
    for d in [day, day + 1] {
        let _ = watcher.behaviour_mut().gossipsub.subscribe(&gossipsub::IdentTopic::new(point_of(&frank, d).await));
    }
    let watcher_addr: Multiaddr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = watcher.select_next_some().await {
            break address;
        }
    };
    // Alice finds the observer by its address (a bootstrap peer or a relay would be the same).
    let (alice_net, _) = online(&alice, config(vec![watcher_addr.clone()], vec![])).await;
    // Dave, a stranger to Alice, on the same observer: what it records of him too is what
    // every Weft node says alike (framing, constants), not something of Alice's.
    let dave = create_with_clock(dir.path(), "dave", &clock).await;
    let erin = create_with_clock(dir.path(), "erin", &clock).await;
    introduce(&dave, &erin).await;
    let (dave_net, _) = online(&dave, config(vec![watcher_addr], vec![])).await;
    dave.send("erin".into(), "day one".into()).await.unwrap();
    let mut rec = Recording::default();
    let mut daves: HashSet<PeerId> = HashSet::new();

    // Day one, before the removal.
    alice.send("crew".into(), "before".into()).await.unwrap();
    alice.send("bob".into(), "to bob, day one".into()).await.unwrap();
    observe(&mut watcher, &mut rec, 3).await;
    daves.extend(dave_net.sessions().iter().map(|s| s.peer_id));
    let day_one = by_role(&alice_net.sessions(), &[]);
    // (Adding Bob and Carol ended two epochs of the group already: a session follows those.)
    assert_eq!(day_one.keys().collect::<Vec<_>>(), ["Current", "Previous", "Rendezvous", "Requests"], "{day_one:?}");

    // Carol is removed: a new epoch. On this day the base session follows both epochs.
    alice.remove_member("crew".into(), "carol".into()).await.unwrap();
    alice.send("crew".into(), "after the removal".into()).await.unwrap();
    observe(&mut watcher, &mut rec, 3).await;
    daves.extend(dave_net.sessions().iter().map(|s| s.peer_id));

    // What the rendezvous and requests sessions did on day one, seen by whoever holds the
    // links: Alice's point under a peer id that follows nothing else; her request to Frank
    // from a peer id that follows nothing at all.
    let subscribed = |p: &PeerId| rec.subscribed.get(p).cloned().unwrap_or_default();
    assert_eq!(subscribed(&day_one["Rendezvous"]), vec![point_of(&alice, day).await]);
    assert!(subscribed(&day_one["Requests"]).is_empty(), "{:?}", subscribed(&day_one["Requests"]));
    let frank_today = point_of(&frank, day).await;
    let asked_from: Vec<&PeerId> =
        rec.published.iter().filter(|(_, topics)| topics.contains(&frank_today)).map(|(p, _)| p).collect();
    assert_eq!(asked_from, vec![&day_one["Requests"]], "the request comes from the requests session only");
    assert!(!subscribed(&day_one["Current"]).iter().any(|t| t.starts_with("weft-rv/")));

    // Day two.
    let seen_on_day_one: Vec<PeerId> = day_one.values().copied().collect();
    clock.advance_days(1);
    let first = day_one["Current"];
    for _ in 0..30 {
        observe(&mut watcher, &mut rec, 1).await;
        if alice_net.peer_id() != first {
            break;
        }
    }
    assert_ne!(alice_net.peer_id(), first, "the day turns to a new session");
    alice.send("crew".into(), "day two".into()).await.unwrap();
    alice.send("bob".into(), "to bob, day two".into()).await.unwrap();
    dave.send("erin".into(), "day two".into()).await.unwrap();
    observe(&mut watcher, &mut rec, 3).await;
    daves.extend(dave_net.sessions().iter().map(|s| s.peer_id));
    // On day two: Alice's base (the new epoch), the session that follows the ended epoch's
    // topics of the day, her rendezvous point's and her requests'.
    let day_two = by_role(&alice_net.sessions(), &seen_on_day_one);
    assert_eq!(day_two.keys().collect::<Vec<_>>(), ["Current", "Previous", "Rendezvous", "Requests"], "{day_two:?}");

    let frank_tomorrow = point_of(&frank, day + 1).await;
    let asked_from: Vec<&PeerId> =
        rec.published.iter().filter(|(_, topics)| topics.contains(&frank_tomorrow)).map(|(p, _)| p).collect();
    assert_eq!(asked_from, vec![&day_two["Requests"]], "on day two, from that day's requests session");

    let others: Vec<Vec<u8>> = daves.iter().flat_map(|p| rec.by_peer.get(p).cloned().unwrap_or_default()).collect();
    assert!(!others.is_empty(), "the observer saw Dave too");
    rec.constants.extend(others);
    let of = |p: &PeerId| rec.by_peer.get(p).cloned().unwrap_or_default();
    let sessions: Vec<(String, PeerId)> = day_one
        .iter()
        .map(|(role, p)| (format!("day one {role}"), *p))
        .chain(day_two.iter().map(|(role, p)| (format!("day two {role}"), *p)))
        .collect();
    let counts: Vec<String> = sessions.iter().map(|(what, p)| format!("{what}: {}", of(p).len())).collect();
    println!("recorded items per session: {}; {} constants", counts.join(", "), rec.constants.len());
    for (what, p) in &sessions {
        assert!(!of(p).is_empty(), "the observer saw {what} at work");
    }
    assert!(of(&first).len() > 3 && of(&day_two["Current"]).len() > 3);
    for (i, (what_a, a)) in sessions.iter().enumerate() {
        for (what_b, b) in &sessions[i + 1..] {
            let (before, after) = (of(a), of(b));
            let links = repeated(&before, &after, &rec.constants);
            if let Some(w) = links.first() {
                for (side, items) in [(what_a, &before), (what_b, &after)] {
                    for item in items.iter().filter(|i| i.windows(8).any(|x| x == w)) {
                        println!("{side}: {} bytes: {:02x?}", item.len(), &item[..item.len().min(48)]);
                    }
                }
            }
            assert!(
                links.is_empty(),
                "{what_a} and {what_b} share {} 8-byte strings, e.g. {:02x?}",
                links.len(),
                &links[..links.len().min(4)]
            );
        }
    }
    // And the check can fail: within one session the same strings recur.
    assert!(!repeated(&of(&first), &of(&first), &rec.constants).is_empty());
    alice_net.stop();
    dave_net.stop();
}
