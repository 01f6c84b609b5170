//! The task that drives the libp2p swarm for a node.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, gossipsub, identify, identity, mdns, noise, request_response, tcp, yamux,
};
use tokio::sync::{mpsc, watch};

use super::behaviour::{WeftBehaviour, WeftBehaviourEvent};
use crate::error::{Error, Result};
use crate::node::{Node, NodeEvent};
use crate::sync::{PeerSync, SyncMessage};
use crate::wire::{Reader, Writer};

const VIA: &str = "libp2p";
/// Every this many ticks, every shared topic is reconciled with every peer on it.
const RESYNC_EVERY_TICKS: u64 = 15;
/// Sync messages in one request or response.
const MAX_BATCH: usize = 1024;

/// How a node joins the network.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub mdns: bool,
    /// How often topics, pushes and contact requests are refreshed.
    pub tick: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().expect("valid"),
                "/ip4/0.0.0.0/udp/0/quic-v1".parse().expect("valid"),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            tick: Duration::from_secs(5),
        }
    }
}

enum Command {
    Dial(Multiaddr),
    Refresh,
}

/// A running network transport.
pub struct NetHandle {
    pub peer_id: PeerId,
    commands: mpsc::UnboundedSender<Command>,
    listening: watch::Receiver<Vec<Multiaddr>>,
    connected: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl NetHandle {
    pub fn dial(&self, addr: Multiaddr) {
        let _ = self.commands.send(Command::Dial(addr));
    }

    /// Pushes what was sent since the last tick now rather than at the next tick.
    pub fn refresh(&self) {
        let _ = self.commands.send(Command::Refresh);
    }

    /// The addresses the node listens on, once it does.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let mut rx = self.listening.clone();
        let _ = rx.wait_for(|a| !a.is_empty()).await;
        rx.borrow().clone()
    }

    /// Waits until at least `n` peers are connected.
    pub async fn wait_for_peers(&self, n: usize) {
        let mut rx = self.connected.clone();
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

fn gossip_topic(topic: &[u8]) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("weft/{}", data_encoding::HEXLOWER.encode(topic)))
}

fn rendezvous_topic(point: &[u8; 32]) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("weft-rv/{}", data_encoding::HEXLOWER.encode(point)))
}

fn encode_batch(messages: &[SyncMessage]) -> Vec<u8> {
    let mut w = Writer::new();
    w.count(messages.len());
    for m in messages {
        w.bytes(&m.encode());
    }
    w.into_bytes()
}

fn decode_batch(bytes: &[u8]) -> Result<Vec<SyncMessage>> {
    let mut r = Reader::new(bytes, "sync batch");
    let n = r.count(MAX_BATCH, 4)?;
    let out = (0..n).map(|_| SyncMessage::decode(r.bytes(super::codec::MAX_FRAME as usize)?)).collect::<Result<_>>()?;
    r.finish()?;
    Ok(out)
}

/// Starts the network for `node`.
pub async fn start(node: Arc<Node>, config: NetConfig, keypair: identity::Keypair) -> Result<NetHandle> {
    let net_err = |e: &dyn std::fmt::Display| Error::Network(e.to_string());
    let mdns = config.mdns;
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| net_err(&e))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| net_err(&e))?
        .with_behaviour(|key, relay| WeftBehaviour::new(key, relay, mdns))
        .map_err(|e| net_err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    for addr in &config.listen {
        swarm.listen_on(addr.clone()).map_err(|e| net_err(&e))?;
    }
    for addr in &config.bootstrap {
        swarm.dial(addr.clone()).map_err(|e| net_err(&e))?;
    }
    let peer_id = *swarm.local_peer_id();
    let cursor = node.call(|a| a.outgoing_cursor()).await?;
    let (commands, rx) = mpsc::unbounded_channel();
    let (listening_tx, listening) = watch::channel(Vec::new());
    let (connected_tx, connected) = watch::channel(0);
    let driver = Driver {
        node,
        swarm,
        cursor,
        subscribed: HashSet::new(),
        rendezvous: HashSet::new(),
        syncs: Arc::new(Mutex::new(HashMap::new())),
        listening: listening_tx,
        connected: connected_tx,
        tick: config.tick,
        ticks: 0,
    };
    let task = tokio::spawn(driver.run(rx));
    Ok(NetHandle { peer_id, commands, listening, connected, task })
}

struct Driver {
    node: Arc<Node>,
    swarm: Swarm<WeftBehaviour>,
    /// Store row of the last envelope pushed.
    cursor: i64,
    subscribed: HashSet<gossipsub::TopicHash>,
    rendezvous: HashSet<gossipsub::TopicHash>,
    /// Sync state per peer; used only from the account thread (inside `Node::call`).
    syncs: Arc<Mutex<HashMap<PeerId, PeerSync>>>,
    listening: watch::Sender<Vec<Multiaddr>>,
    connected: watch::Sender<usize>,
    tick: Duration,
    ticks: u64,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(self.tick);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                command = commands.recv() => match command {
                    Some(Command::Dial(addr)) => { let _ = self.swarm.dial(addr); }
                    Some(Command::Refresh) => self.refresh().await,
                    None => return,
                },
                _ = tick.tick() => self.refresh().await,
            }
        }
    }

    /// Follows the topics of the day, pushes new envelopes and republishes contact requests.
    async fn refresh(&mut self) {
        let Ok((topics, points, requests)) =
            self.node.call(|a| Ok((a.sync_topics(1), a.rendezvous_points(), a.pending_requests()?))).await
        else {
            return;
        };
        let wanted: HashSet<_> = topics.iter().map(|t| gossip_topic(t).hash()).collect();
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        let mut fresh = Vec::new();
        for t in &topics {
            if self.subscribed.insert(gossip_topic(t).hash()) {
                let _ = gossip.subscribe(&gossip_topic(t));
                fresh.push(gossip_topic(t).hash());
            }
        }
        // Reconcile new topics with peers already on them, and every topic now and then, so
        // that nothing depends on having been online when an envelope was pushed.
        self.ticks += 1;
        let resync_all = self.ticks.is_multiple_of(RESYNC_EVERY_TICKS);
        let peers_on_topics: Vec<(PeerId, gossipsub::TopicHash)> = gossip
            .all_peers()
            .flat_map(|(peer, topics)| topics.into_iter().map(move |t| (*peer, t.clone())))
            .filter(|(_, t)| (resync_all && wanted.contains(t)) || fresh.contains(t))
            .collect();
        for stale in self.subscribed.iter().filter(|h| !wanted.contains(h)).cloned().collect::<Vec<_>>() {
            let _ = gossip.unsubscribe(&gossipsub::IdentTopic::new(stale.as_str()));
            self.subscribed.remove(&stale);
        }
        for p in &points {
            if self.rendezvous.insert(rendezvous_topic(p).hash()) {
                let _ = gossip.subscribe(&rendezvous_topic(p));
            }
        }
        for (peer, topic) in peers_on_topics {
            self.start_sync(peer, &topic).await;
        }
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        for (point, request) in requests {
            // Duplicates are refused by gossipsub's seen-cache and by the recipient.
            let _ = gossip.publish(rendezvous_topic(&point), request);
        }
        let cursor = self.cursor;
        if let Ok((envelopes, next)) = self.node.call(move |a| a.outgoing_since(cursor)).await {
            for e in envelopes {
                let topic = gossip_topic(&e[1..17]);
                let _ = self.swarm.behaviour_mut().gossipsub.publish(topic, e);
            }
            self.cursor = next;
        }
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<WeftBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                self.listening.send_modify(|a| a.push(address));
            }
            SwarmEvent::ConnectionEstablished { peer_id, num_established, .. } => {
                self.connected.send_replace(self.swarm.connected_peers().count());
                if num_established.get() == 1 {
                    self.node.emit(NodeEvent::PeerConnected { peer: peer_id.to_string(), via: VIA });
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, .. } => {
                self.connected.send_replace(self.swarm.connected_peers().count());
                if num_established == 0 {
                    self.node.emit(NodeEvent::PeerDisconnected { peer: peer_id.to_string(), via: VIA });
                    let syncs = self.syncs.clone();
                    let _ = self.node.call(move |_| Ok(syncs.lock().map(|mut s| s.remove(&peer_id)).ok())).await;
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event).await,
            _ => {}
        }
    }

    async fn on_behaviour_event(&mut self, event: WeftBehaviourEvent) {
        match event {
            WeftBehaviourEvent::Gossipsub(gossipsub::Event::Message { message, .. }) => {
                if self.rendezvous.contains(&message.topic) {
                    let _ = self.node.receive_request(message.data).await;
                } else {
                    let _ = self.node.receive_envelope(message.data, VIA).await;
                }
            }
            WeftBehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic })
                if self.subscribed.contains(&topic) =>
            {
                self.start_sync(peer_id, &topic).await;
            }
            WeftBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    let _ = self.swarm.dial(addr);
                }
            }
            WeftBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            WeftBehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let reply = match self.handle_sync(peer, &request).await {
                        Ok(reply) => reply,
                        Err(_) => {
                            // A peer that breaks the protocol is cut off.
                            let _ = self.swarm.disconnect_peer_id(peer);
                            return;
                        }
                    };
                    let _ = self.swarm.behaviour_mut().sync.send_response(channel, encode_batch(&reply));
                }
                request_response::Message::Response { response, .. } => match self.handle_sync(peer, &response).await {
                    Ok(next) if !next.is_empty() => {
                        self.swarm.behaviour_mut().sync.send_request(&peer, encode_batch(&next));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                },
            },
            _ => {}
        }
    }

    /// Starts reconciling one topic with a peer that subscribed to it too.
    async fn start_sync(&mut self, peer: PeerId, topic: &gossipsub::TopicHash) {
        // One side starts, the other answers: the lower peer id initiates.
        if *self.swarm.local_peer_id() > peer {
            return;
        }
        let Some(hex) = topic.as_str().strip_prefix("weft/") else { return };
        let Ok(bytes) = data_encoding::HEXLOWER.decode(hex.as_bytes()) else { return };
        let Ok(topic): std::result::Result<[u8; 16], _> = bytes.try_into() else { return };
        let syncs = self.syncs.clone();
        let salt: [u8; 16] = rand_salt();
        let first = self
            .node
            .call(move |a| {
                let mut syncs = syncs.lock().map_err(|_| Error::Internal("sync state poisoned"))?;
                let sync = syncs.entry(peer).or_default();
                if sync.is_syncing(&topic) {
                    return Ok(None);
                }
                Ok(Some(sync.start(topic, salt, a)))
            })
            .await;
        if let Ok(Some(message)) = first {
            self.swarm.behaviour_mut().sync.send_request(&peer, encode_batch(&[message]));
        }
    }

    /// Runs a batch of sync messages from `peer` through its state machine on the account
    /// thread; hands fetched envelopes to the node; returns the replies.
    async fn handle_sync(&mut self, peer: PeerId, bytes: &[u8]) -> Result<Vec<SyncMessage>> {
        let messages = decode_batch(bytes)?;
        let syncs = self.syncs.clone();
        let (replies, received) = self
            .node
            .call(move |a| {
                let mut syncs = syncs.lock().map_err(|_| Error::Internal("sync state poisoned"))?;
                let sync = syncs.entry(peer).or_default();
                let mut replies = Vec::new();
                let mut received = Vec::new();
                for m in messages {
                    let step = sync.handle(m, a)?;
                    replies.extend(step.send);
                    received.extend(step.received);
                }
                Ok((replies, received))
            })
            .await?;
        for e in received {
            let _ = self.node.receive_envelope(e, VIA).await;
        }
        Ok(replies)
    }
}

fn rand_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    let _ = getrandom::fill(&mut salt);
    salt
}
