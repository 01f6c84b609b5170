//! The task that drives the libp2p swarm for a host (a node or a relay).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, dcutr, gossipsub, identify, identity, mdns, noise, ping, relay,
    request_response, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::VIA;
use super::admission::remote_ip;
use super::behaviour::{Limits, WeftBehaviour, WeftBehaviourEvent};
use super::codec::{decode_batch, encode_batch};
use super::host::{Host, NodeHost, RequestCheck};
use super::meet::{MeetAnswer, MeetRequest, MeetToken, MeetingPoint};
use super::sessions::SessionScope;
use super::strikes::Strikes;
use crate::account::CatchUpPlan;
use crate::envelope::{Envelope, EnvelopeId, Topic};
use crate::error::{Error, Result};
use crate::node::{Node, NodeEvent};
use crate::sync::{Expired, PeerBound, PeerSync, Scope, SyncMessage, history_request};

/// Every this many ticks, every shared topic is reconciled with every peer on it.
const RESYNC_EVERY_TICKS: u64 = 15;
/// Every this many ticks, lost relays and bootstrap peers are dialled again.
const REDIAL_EVERY_TICKS: u64 = 5;
/// How long a relay catch-up waits for every listed relay to be connected before it asks
/// those that are.
const WAIT_FOR_RELAYS_TICKS: u64 = 2 * REDIAL_EVERY_TICKS;
/// An exchange with a peer that stood still this long is given up (longer than a request's
/// timeout, so that a failing request is what ends it when it can).
const SYNC_IDLE: Duration = Duration::from_secs(45);
/// Outbox envelopes pushed per round.
const PUSH_BATCH: usize = 256;
/// Topics a relay follows on behalf of one peer, and in all (its own subscriptions must stay
/// under what every peer's gossipsub accepts from one peer: 4096).
const MAX_FOLLOWED_PER_PEER: usize = 512;
const MAX_FOLLOWED: usize = 4000;
/// Invalid gossip messages a peer may send in quick succession before it is cut off (one is
/// forgiven every [`FORGIVE_EVERY`]), and for how long.
const MAX_STRIKES: u32 = 16;
const FORGIVE_EVERY: Duration = Duration::from_secs(10);
/// Contact requests taken from one peer per minute. Honest requests are few (one per contact
/// added, republished about every two minutes until answered); a relay forwards those of many.
const RENDEZVOUS_PER_MINUTE: u32 = 120;
const BAN: Duration = Duration::from_secs(600);
/// Connections kept to one peer (a dial each way); more are closed as they come.
const MAX_CONNECTIONS_PER_PEER: usize = 2;
/// Addresses that go away within this long of one another are one change of network.
const ADDRESS_LOST_SETTLES: Duration = Duration::from_secs(2);

/// How a node joins the network.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub listen: Vec<Multiaddr>,
    /// Peers dialled on start and again whenever the connection is lost.
    pub bootstrap: Vec<Multiaddr>,
    /// Relays (with their `/p2p/ID`): dialled and kept, reserved on for reachability, and
    /// followed by our topics so they hold what we miss while offline.
    pub relays: Vec<Multiaddr>,
    pub mdns: bool,
    /// How often topics, pushes and contact requests are refreshed.
    pub tick: Duration,
    /// Serve as a relay: circuit relay server, and follow every peer's topics.
    pub relay_server: bool,
    /// How many connections are accepted ([`Limits::RELAY`] for a relay).
    pub limits: Limits,
    /// Meet the other members at our relays and punch holes to them through our NATs
    /// (`super::meet`): a direct connection where the NATs allow one, the relay's circuit
    /// where they do not. Off, no member learns our IP address; the relay still carries
    /// everything (THREAT_MODEL N18).
    pub hole_punching: bool,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().expect("valid"),
                "/ip4/0.0.0.0/udp/0/quic-v1".parse().expect("valid"),
            ],
            bootstrap: Vec::new(),
            relays: Vec::new(),
            mdns: true,
            tick: Duration::from_secs(5),
            relay_server: false,
            limits: Limits::NODE,
            hole_punching: true,
        }
    }
}

/// A snapshot of the transport, for `weft status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetStatus {
    pub peer_id: String,
    pub listening: Vec<String>,
    pub peers: Vec<PeerStatus>,
    pub relays: Vec<RelayStatus>,
    pub topics: usize,
    pub sync: SyncStatus,
}

/// How far catching up with peers has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStatus {
    /// Reconciliations open with peers.
    pub reconciling: usize,
    /// Envelopes asked of peers and not yet received.
    pub wanted: usize,
    /// Envelopes received by reconciliation since the node started.
    pub fetched: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub peer: String,
    pub addr: String,
    /// Reached through a relay's circuit rather than directly.
    pub relayed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayStatus {
    pub addr: String,
    pub connected: bool,
    /// The relay accepted our reservation: peers can reach us through it.
    pub reserved: bool,
}

enum Command {
    Dial(Multiaddr),
    Refresh,
    Status(oneshot::Sender<NetStatus>),
    /// Keep what is followed, take nothing new: a newer session serves what comes.
    Freeze,
    /// The device's network changed under us: connections may be dead without knowing it.
    NetworkChanged,
    /// The day turned: this session no longer serves the conversations of the day, and gives
    /// the configured fixed ports to the one that does (it listens on any port instead).
    ReleasePorts,
    /// This session serves the conversations of the day now: it listens on the configured
    /// fixed ports.
    TakePorts,
}

/// One running session, as the host may see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub peer_id: PeerId,
    /// What it serves (`None`: a relay's only session).
    pub serves: Option<super::sessions::Serves>,
}

/// How to reach one running session.
#[derive(Clone)]
struct SessionHandle {
    peer_id: PeerId,
    commands: mpsc::UnboundedSender<Command>,
    listening: watch::Receiver<Vec<Multiaddr>>,
    connected: watch::Receiver<usize>,
}

/// A running session; dropping it stops it.
struct Running {
    handle: SessionHandle,
    serves: Option<super::sessions::Serves>,
    /// The period whose topics it follows (`None`: a relay's only session).
    period: Option<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the sessions of one node know of each other: their peer ids (they never connect to
/// each other, which would tie them together for whoever sees it), and the topics each
/// follows (an envelope is pushed by the session that follows its topic).
#[derive(Default)]
struct Siblings {
    peers: HashSet<PeerId>,
    topics: HashMap<PeerId, HashSet<gossipsub::TopicHash>>,
    /// Where the peers any session met listen (newest last): a session that starts later, or
    /// follows only some topics, reaches the same peers as the others.
    addresses: std::collections::VecDeque<Multiaddr>,
    /// How to reach each running session.
    commands: HashMap<PeerId, mpsc::UnboundedSender<Command>>,
}

/// Peers' listen addresses the sessions share.
const SHARED_ADDRESSES: usize = 64;
/// A session with fewer peers than this dials the shared addresses again at each redial.
const FEW_PEERS: usize = 3;

type SharedSiblings = Arc<Mutex<Siblings>>;

/// A running network transport: the current session, and (for a node) the task that rotates
/// sessions (`super::sessions`).
pub struct NetHandle {
    current: watch::Receiver<SessionHandle>,
    sessions: watch::Receiver<Vec<SessionInfo>>,
    siblings: SharedSiblings,
    task: tokio::task::JoinHandle<()>,
}

impl NetHandle {
    /// The current session's peer id (a node's changes with the day and at epoch changes).
    pub fn peer_id(&self) -> PeerId {
        self.current.borrow().peer_id
    }

    /// Every running session (frozen ones included), the current one first.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.sessions.borrow().clone()
    }

    fn commands(&self) -> mpsc::UnboundedSender<Command> {
        self.current.borrow().commands.clone()
    }

    pub fn dial(&self, addr: Multiaddr) {
        let _ = self.commands().send(Command::Dial(addr));
    }

    /// Refreshes topics, pushes and requests now rather than at the next tick.
    pub fn refresh(&self) {
        let _ = self.commands().send(Command::Refresh);
    }

    /// Tells every session that the device's network changed (Wi-Fi to mobile data, a new
    /// address): each drops its connections, which may have died silently with the old
    /// interface, dials its relays and peers again at once and refreshes what it publishes.
    pub fn network_changed(&self) {
        let all: Vec<_> = self.siblings.lock().map(|s| s.commands.values().cloned().collect()).unwrap_or_default();
        for commands in all {
            let _ = commands.send(Command::NetworkChanged);
        }
    }

    /// The addresses the current session listens on, once it does.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let mut rx = self.current.borrow().listening.clone();
        let _ = rx.wait_for(|a| !a.is_empty()).await;
        rx.borrow().clone()
    }

    /// Waits until the current session has at least `n` peers connected.
    pub async fn wait_for_peers(&self, n: usize) {
        let mut rx = self.current.borrow().connected.clone();
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    pub async fn status(&self) -> Result<NetStatus> {
        let (tx, rx) = oneshot::channel();
        self.commands().send(Command::Status(tx)).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

fn gossip_topic(topic: &[u8]) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("weft/{}", data_encoding::HEXLOWER.encode(topic)))
}

fn rendezvous_topic(point: &[u8; 32]) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("weft-rv/{}", data_encoding::HEXLOWER.encode(point)))
}

/// The envelope topic a gossip topic names, if it names one.
fn topic_of_hash(hash: &gossipsub::TopicHash) -> Option<Topic> {
    let hex = hash.as_str().strip_prefix("weft/")?;
    data_encoding::HEXLOWER.decode(hex.as_bytes()).ok()?.try_into().ok()
}

/// The peer id an address ends with, if any.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().last().and_then(|p| if let Protocol::P2p(id) = p { Some(id) } else { None })
}

/// An error and its causes in words. A transport's error can say nothing itself (an address
/// that is not this machine's gave "network: " and nothing else): its cause says what it was.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !text.is_empty() && !parts.contains(&text) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() { format!("{e:?}") } else { parts.join(": ") }
}

fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// The address a connection is known by: where we dialled, or where the peer came from; for a
/// peer that came through a relay's circuit (its address then is only `/p2p/ID`), our
/// address on that circuit, so that it shows as relayed.
fn shown_addr(endpoint: &libp2p::core::ConnectedPoint) -> Multiaddr {
    match endpoint {
        libp2p::core::ConnectedPoint::Dialer { address, .. } => address.clone(),
        libp2p::core::ConnectedPoint::Listener { local_addr, send_back_addr } => {
            if is_relayed(local_addr) {
                local_addr.clone()
            } else {
                send_back_addr.clone()
            }
        }
    }
}

/// Whether these bytes may travel on this gossip topic: an envelope of that very topic, or a
/// contact request of the right size on a rendezvous topic.
fn well_formed(topic: &gossipsub::TopicHash, data: &[u8], rendezvous: bool) -> bool {
    if rendezvous {
        return data.len() == crate::handshake::WRAPPED_LEN && data[0] == crate::handshake::WRAPPED_VERSION;
    }
    Envelope::parse(data.to_vec()).is_ok() && gossip_topic(&data[1..17]).hash() == *topic
}

/// Starts the network for `node`.
pub async fn start(node: Arc<Node>, config: NetConfig, keypair: identity::Keypair) -> Result<NetHandle> {
    start_host(Arc::new(NodeHost::new(node)), config, keypair).await
}

/// Starts the network for any host (a node's account or a relay's cache): its first session
/// under `keypair`, and for a host whose identity rotates, the task that rotates it.
pub async fn start_host<H: Host>(host: Arc<H>, config: NetConfig, keypair: identity::Keypair) -> Result<NetHandle> {
    let siblings = SharedSiblings::default();
    let siblings_of_handle = siblings.clone();
    // The first session serves today (a node started in the hour before midnight gets
    // tomorrow's session at once, beside it).
    let plan = host.session().await.map(|mut key| {
        key.period = key.now_ms / crate::group::PERIOD_MS;
        super::sessions::Plan::new(key)
    });
    let scope = plan.as_ref().map(super::sessions::Plan::first_scope);
    let first = start_session(host.clone(), config.clone(), keypair, scope, siblings.clone(), false).await?;
    let (current_tx, current) = watch::channel(first.handle.clone());
    let (sessions_tx, sessions) =
        watch::channel(vec![SessionInfo { peer_id: first.handle.peer_id, serves: first.serves.clone() }]);
    let task = match plan {
        None => tokio::spawn(async move {
            let _first = first;
            std::future::pending::<()>().await
        }),
        Some(plan) => tokio::spawn(rotate(host, config, first, plan, current_tx, sessions_tx, siblings)),
    };
    Ok(NetHandle { current, sessions, siblings: siblings_of_handle, task })
}

/// Starts, freezes and stops a node's sessions as its [`super::sessions::Plan`] says.
async fn rotate<H: Host>(
    host: Arc<H>,
    config: NetConfig,
    first: Running,
    mut plan: super::sessions::Plan,
    current: watch::Sender<SessionHandle>,
    sessions: watch::Sender<Vec<SessionInfo>>,
    siblings: SharedSiblings,
) {
    use super::sessions::Action;
    let mut running: HashMap<u64, Running> = HashMap::from([(plan.current(), first)]);
    // The current session (whose address and peer id the app gives out, which listens on the
    // configured fixed ports) is the base of the period the clock is in. A new base starts an
    // hour before midnight, but until midnight what is written goes on today's topics, which
    // the old one follows: peers told of our address must reach that one.
    let mut port_holder = plan.current();
    // Sessions the plan counts as started that could not start (a port, a socket): tried
    // again at every tick, or the day would go on with no session for what they serve.
    let mut to_start: Vec<(u64, SessionScope)> = Vec::new();
    let mut freeze_at_midnight: Vec<u64> = Vec::new();
    let mut tick = tokio::time::interval(config.tick);
    loop {
        tick.tick().await;
        let Some(wanted) = host.session().await else { continue };
        let today = wanted.now_ms / crate::group::PERIOD_MS;
        freeze_at_midnight.retain(|id| match running.get(id) {
            Some(r) if r.period.is_some_and(|p| p < today) => {
                let _ = r.handle.commands.send(Command::Freeze);
                false
            }
            Some(_) => true,
            None => false,
        });
        let retries = std::mem::take(&mut to_start).into_iter().map(|(id, scope)| Action::Start { id, scope });
        let actions: Vec<Action> = retries.chain(plan.step(wanted)).collect();
        for action in actions {
            match action {
                // Tomorrow's sessions start an hour early, but what is written until midnight
                // goes on today's topics: today's sessions go on serving them (new
                // conversations, contact requests, pushes) until the day ends.
                Action::Freeze { id } if running.get(&id).is_some_and(|r| r.period == Some(today)) => {
                    freeze_at_midnight.push(id);
                }
                Action::Freeze { id } => {
                    if let Some(r) = running.get(&id) {
                        let _ = r.handle.commands.send(Command::Freeze);
                    }
                }
                Action::Stop { id } => {
                    if let Some(r) = running.remove(&id)
                        && let Ok(mut s) = siblings.lock()
                    {
                        s.peers.remove(&r.handle.peer_id);
                        s.topics.remove(&r.handle.peer_id);
                        s.commands.remove(&r.handle.peer_id);
                    }
                }
                // One that failed and was frozen or stopped since is not started late.
                Action::Start { id, .. } if !plan.serves_now(id) => {}
                Action::Start { id, scope } => {
                    let key = identity::Keypair::generate_ed25519();
                    let base = scope.is_base();
                    let started =
                        start_session(host.clone(), config.clone(), key, Some(scope.clone()), siblings.clone(), true);
                    match started.await {
                        Ok(r) => {
                            tracing::debug!(peer = %r.handle.peer_id, base, "new network session");
                            running.insert(id, r);
                        }
                        Err(e) => {
                            tracing::warn!(%e, "a new network session could not start; trying again");
                            to_start.push((id, scope));
                        }
                    }
                }
            }
        }
        // The base of today's period; if there is none (the clock jumped days ahead late in a
        // day, and the plan started only the next day's), the newest base.
        let bases = running.iter().filter(|(_, r)| r.serves == Some(super::sessions::Serves::Current));
        let day_base = bases
            .clone()
            .filter(|(_, r)| r.period == Some(today))
            .map(|(id, _)| *id)
            .max()
            .or_else(|| bases.map(|(id, _)| *id).max());
        if let Some(holder) = day_base
            && holder != port_holder
        {
            if let Some(old) = running.get(&port_holder) {
                let _ = old.handle.commands.send(Command::ReleasePorts);
            }
            let _ = running[&holder].handle.commands.send(Command::TakePorts);
            current.send_replace(running[&holder].handle.clone());
            port_holder = holder;
        }
        let base = current.borrow().peer_id;
        let mut ids: Vec<SessionInfo> =
            running.values().map(|r| SessionInfo { peer_id: r.handle.peer_id, serves: r.serves.clone() }).collect();
        ids.sort_by_key(|s| s.peer_id != base);
        sessions.send_if_modified(|old| {
            let changed = *old != ids;
            *old = ids;
            changed
        });
    }
}

/// The same address with any port (TCP or UDP): where a later session listens when the
/// configured port is held by the session before it.
fn any_port(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .map(|p| match p {
            Protocol::Tcp(_) => Protocol::Tcp(0),
            Protocol::Udp(_) => Protocol::Udp(0),
            other => other,
        })
        .collect()
}

/// Starts one session: a swarm under `keypair` serving the topics of `scope`.
async fn start_session<H: Host>(
    host: Arc<H>,
    config: NetConfig,
    keypair: identity::Keypair,
    scope: Option<SessionScope>,
    siblings: SharedSiblings,
    later: bool,
) -> Result<Running> {
    let net_err = |e: &dyn std::fmt::Display| Error::Network(e.to_string());
    let serves = scope.as_ref().map(|s| s.serves.clone());
    let period = scope.as_ref().map(|s| s.period);
    let (mdns, relay_server, limits, holes) = (config.mdns, config.relay_server, config.limits, config.hole_punching);
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| net_err(&e))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| net_err(&e))?
        .with_behaviour(|key, relay| WeftBehaviour::new(key, relay, mdns, relay_server, holes, limits))
        .map_err(|e| net_err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    // A port given in the configuration is where peers are told to find our conversations:
    // only the session that serves the day's conversations listens there (the first; later,
    // whichever `rotate` hands the ports to). libp2p's TCP listeners share ports
    // (SO_REUSEPORT), so had every session bound it, the kernel would hand each incoming
    // connection to any of them, the rendezvous session as often as the conversations'.
    let holds_fixed_ports = !later && scope.as_ref().is_none_or(SessionScope::is_base);
    let mut fixed_listeners = Vec::new();
    for addr in &config.listen {
        let fixed = holds_fixed_ports && *addr != any_port(addr);
        let first_try = if holds_fixed_ports { addr.clone() } else { any_port(addr) };
        match swarm.listen_on(first_try) {
            Ok(id) if fixed => fixed_listeners.push((addr.clone(), id)),
            Ok(_) => {}
            Err(e) if !later => {
                return Err(Error::Network(format!("cannot listen on {addr}: {}", describe(&e))));
            }
            Err(_) => {
                swarm
                    .listen_on(any_port(addr))
                    .map_err(|e| Error::Network(format!("cannot listen on {addr}: {}", describe(&e))))?;
            }
        }
    }
    let known = host.peer_addrs().await;
    let shared: Vec<Multiaddr> = siblings.lock().map(|s| s.addresses.iter().cloned().collect()).unwrap_or_default();
    for addr in config.bootstrap.iter().chain(&config.relays).chain(&known).chain(&shared) {
        let _ = swarm.dial(addr.clone());
    }
    let peer_id = *swarm.local_peer_id();
    let (commands, rx) = mpsc::unbounded_channel();
    if let Ok(mut s) = siblings.lock() {
        s.peers.insert(peer_id);
        s.commands.insert(peer_id, commands.clone());
    }
    let (listening_tx, listening) = watch::channel(Vec::new());
    let (connected_tx, connected) = watch::channel(0);
    let driver = Driver {
        host,
        swarm,
        config,
        scope,
        frozen: false,
        dialed_shared: HashSet::new(),
        siblings,
        subscribed: HashSet::new(),
        rendezvous: HashSet::new(),
        syncs: Arc::new(Mutex::new(HashMap::new())),
        sync_requests: HashMap::new(),
        sync_answers: HashMap::new(),
        history: HashMap::new(),
        catch_up: None,
        relays_since: None,
        listening: listening_tx,
        connected: connected_tx,
        peers: HashMap::new(),
        connections: HashMap::new(),
        circuits: HashMap::new(),
        reserved: HashSet::new(),
        relay_peers: HashSet::new(),
        strikes: Strikes::new(MAX_STRIKES, FORGIVE_EVERY),
        banned: HashMap::new(),
        rendezvous_rate: Rate::new(RENDEZVOUS_PER_MINUTE, Duration::from_secs(60)),
        ticks: 0,
        fetched: 0,
        address_lost: None,
        fixed_listeners,
        holds_ports: holds_fixed_ports,
        meet_tokens: Vec::new(),
        meeting: MeetingPoint::default(),
        reservations: HashMap::new(),
    };
    let task = tokio::spawn(driver.run(rx));
    Ok(Running { handle: SessionHandle { peer_id, commands, listening, connected }, serves, period, task })
}

struct Driver<H: Host> {
    host: Arc<H>,
    swarm: Swarm<WeftBehaviour>,
    config: NetConfig,
    /// What this session serves (`None`: a host whose identity does not rotate).
    scope: Option<SessionScope>,
    /// A newer session serves what comes; this one keeps what it follows until it stops.
    frozen: bool,
    /// Shared addresses this session dialled once already.
    dialed_shared: HashSet<Multiaddr>,
    siblings: SharedSiblings,
    subscribed: HashSet<gossipsub::TopicHash>,
    rendezvous: HashSet<gossipsub::TopicHash>,
    /// Sync state per peer; used only inside `Host::with_source`.
    syncs: Arc<Mutex<HashMap<PeerId, PeerSync>>>,
    /// The scopes each sync request in flight carries (and whether it asks a relay for a
    /// catch-up), and each answer being sent: if one fails, those reconciliations are
    /// abandoned rather than left waiting forever.
    sync_requests: HashMap<request_response::OutboundRequestId, (Vec<Scope>, bool)>,
    sync_answers: HashMap<request_response::InboundRequestId, Vec<Scope>>,
    /// Member catch-ups we want, by the gossip topic of their key.
    history: HashMap<gossipsub::TopicHash, Scope>,
    /// The relay catch-up under way, and the relays that have not answered it whole yet.
    catch_up: Option<(CatchUpPlan, HashSet<PeerId>)>,
    /// Since when (in ticks) a listed relay has been connected without a break.
    relays_since: Option<u64>,
    listening: watch::Sender<Vec<Multiaddr>>,
    connected: watch::Sender<usize>,
    /// Listeners on the configured fixed ports, held while this session serves the
    /// conversations, by the address configured.
    fixed_listeners: Vec<(Multiaddr, ListenerId)>,
    /// Whether this session should hold the configured fixed ports (a UDP port can only be
    /// taken once the session before lets it go: tried again at every tick).
    holds_ports: bool,
    /// Connected peers and the address of their first connection.
    peers: HashMap<PeerId, Multiaddr>,
    /// Each connected peer's connections, with the IP address it dialled us from (`None`:
    /// we dialled, or through a relay's circuit).
    connections: HashMap<PeerId, Vec<Link>>,
    /// Our circuit listeners, per relay.
    circuits: HashMap<PeerId, ListenerId>,
    reserved: HashSet<PeerId>,
    /// Peers that said they are relays: a relay does not follow another relay's topics.
    relay_peers: HashSet<PeerId>,
    strikes: Strikes<PeerId>,
    banned: HashMap<PeerId, Instant>,
    /// Contact requests taken from each peer lately.
    rendezvous_rate: Rate,
    ticks: u64,
    /// Envelopes received by reconciliation, for the status.
    fetched: u64,
    /// When an address of ours last went away under us (several go at once: one reconnect).
    address_lost: Option<Instant>,
    /// What we show our relays to meet the other members there (`super::meet`).
    meet_tokens: Vec<MeetToken>,
    /// A relay's register of who can be met through it, and the peers holding a reservation
    /// on it (only those can be reached through its circuit).
    meeting: MeetingPoint,
    reservations: HashMap<PeerId, u32>,
}

/// One connection to a peer.
struct Link {
    id: ConnectionId,
    /// The IP address the peer dialled us from (`None`: we dialled, or through a circuit).
    inbound_from: Option<std::net::IpAddr>,
    addr: Multiaddr,
}

/// Peers met at a relay dialled at once through its circuit, at most: the rest at the next
/// round.
const MEET_DIALS: usize = 16;

impl<H: Host> Driver<H> {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        // Sessions that follow no conversation are not woken by the outbox: they do not read it
        // at every send.
        let mut outbox_changes = match self.follows_conversations() {
            true => self.host.outbox_changes(),
            false => super::host::OutboxChanges::never(),
        };
        let mut tick = tokio::time::interval(self.config.tick);
        // A driver held up (a large file handed to the account) must not fire the missed ticks
        // in a burst: idle exchanges are counted in ticks.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event).await,
                command = commands.recv() => match command {
                    Some(Command::Dial(addr)) => { let _ = self.swarm.dial(addr); }
                    Some(Command::Refresh) => self.refresh().await,
                    Some(Command::NetworkChanged) => self.after_network_change().await,
                    Some(Command::ReleasePorts) => self.release_ports(),
                    Some(Command::TakePorts) => self.take_ports(),
                    Some(Command::Status(reply)) => { let _ = reply.send(self.status()); }
                    Some(Command::Freeze) => {
                        tracing::debug!(peer = %self.swarm.local_peer_id(), "session frozen");
                        self.frozen = true;
                        self.catch_up = None;
                        self.history.clear();
                    }
                    None => return,
                },
                _ = outbox_changes.changed() => self.push_outbox().await,
                _ = tick.tick() => {
                    self.ticks += 1;
                    let now = Instant::now();
                    self.banned.retain(|_, until| *until > now);
                    self.strikes.prune(now);
                    self.rendezvous_rate.expire(now);
                    self.swarm.behaviour_mut().admission.expire();
                    if self.holds_ports && self.fixed_listeners.len() < self.fixed_configured() {
                        self.take_ports();
                    }
                    self.expire_syncs().await;
                    self.refresh().await;
                }
            }
        }
    }

    /// How many configured listen addresses name a fixed port.
    fn fixed_configured(&self) -> usize {
        self.config.listen.iter().filter(|a| **a != any_port(a)).count()
    }

    fn status(&self) -> NetStatus {
        let mut peers: Vec<PeerStatus> = self
            .peers
            .iter()
            .map(|(p, a)| PeerStatus { peer: p.to_string(), addr: a.to_string(), relayed: is_relayed(a) })
            .collect();
        peers.sort_by(|a, b| a.peer.cmp(&b.peer));
        let relays = self
            .config
            .relays
            .iter()
            .map(|addr| {
                let id = peer_of(addr);
                RelayStatus {
                    addr: addr.to_string(),
                    connected: id.is_some_and(|p| self.peers.contains_key(&p)),
                    reserved: id.is_some_and(|p| self.reserved.contains(&p)),
                }
            })
            .collect();
        let mut sync = SyncStatus { fetched: self.fetched, ..SyncStatus::default() };
        if let Ok(syncs) = self.syncs.lock() {
            for (reconciling, wanted) in syncs.values().map(PeerSync::pending) {
                sync.reconciling += reconciling;
                sync.wanted += wanted;
            }
        }
        NetStatus {
            peer_id: self.swarm.local_peer_id().to_string(),
            listening: self.swarm.listeners().map(ToString::to_string).collect(),
            peers,
            relays,
            topics: self.subscribed.len(),
            sync,
        }
    }

    /// Follows the topics of the day, reconciles new ones, republishes contact requests,
    /// pushes the outbox and dials lost peers.
    async fn refresh(&mut self) {
        // A frozen session keeps what it follows: it asks for nothing new.
        let interests = if self.frozen {
            None
        } else {
            let Ok(interests) = self.host.interests(self.scope.clone()).await else { return };
            Some(interests)
        };
        let mut fresh = HashSet::new();
        if let Some(interests) = &interests {
            let mut topics: HashSet<_> = interests.topics.iter().map(|t| gossip_topic(t).hash()).collect();
            let mut points: HashSet<_> = interests.rendezvous.iter().map(|p| rendezvous_topic(p).hash()).collect();
            if self.config.relay_server {
                self.follow_peers(&mut topics, &mut points);
            }
            fresh = self.resubscribe(topics, points);
            self.meet_tokens = interests.meet.clone();
            self.history =
                interests.history.iter().map(|(topic, scope)| (gossip_topic(topic).hash(), *scope)).collect();
        }
        // Reconcile new topics with peers already on them, and every topic now and then, so
        // that nothing depends on having been online when an envelope was pushed.
        let resync_all = self.ticks.is_multiple_of(RESYNC_EVERY_TICKS);
        let subscribed = &self.subscribed;
        let peers_on_topics: Vec<(PeerId, gossipsub::TopicHash)> = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .flat_map(|(peer, topics)| topics.into_iter().map(move |t| (*peer, t.clone())))
            .filter(|(_, t)| (resync_all && subscribed.contains(t)) || fresh.contains(t))
            .collect();
        for (peer, topic) in peers_on_topics {
            self.start_sync(peer, &topic).await;
        }
        for (point, request) in interests.map(|i| i.requests).unwrap_or_default() {
            // Duplicates are refused by gossipsub's seen-cache and by the recipient.
            let _ = self.swarm.behaviour_mut().gossipsub.publish(rendezvous_topic(&point), request);
        }
        self.push_outbox().await;
        if !self.frozen && self.is_base() {
            self.catch_up_with_relays().await;
        }
        if self.ticks % REDIAL_EVERY_TICKS == 1 {
            self.redial().await;
        }
        if self.ticks % REDIAL_EVERY_TICKS == 2 {
            let reserved: Vec<PeerId> = self.reserved.iter().copied().collect();
            for relay in reserved {
                self.meet_at(relay);
            }
        }
    }

    /// Gives up the configured fixed TCP ports, and listens on any port instead (so that peers
    /// told of the new address can still reach what this session follows). A QUIC listener
    /// is kept until the session stops: closing it would close every QUIC connection of the
    /// session at once (they share its socket).
    fn release_ports(&mut self) {
        self.holds_ports = false;
        let (tcp, udp): (Vec<_>, Vec<_>) = std::mem::take(&mut self.fixed_listeners)
            .into_iter()
            .partition(|(addr, _)| addr.iter().any(|p| matches!(p, Protocol::Tcp(_))));
        self.fixed_listeners = udp;
        for (addr, id) in tcp {
            self.swarm.remove_listener(id);
            let _ = self.swarm.listen_on(any_port(&addr));
        }
    }

    /// Listens on the configured fixed ports not held yet. TCP ports are shared for the
    /// moment the session before lets go; a UDP port is free only once that session stops.
    fn take_ports(&mut self) {
        self.holds_ports = true;
        for addr in self.config.listen.clone() {
            if addr == any_port(&addr) || self.fixed_listeners.iter().any(|(a, _)| *a == addr) {
                continue;
            }
            match self.swarm.listen_on(addr.clone()) {
                Ok(id) => self.fixed_listeners.push((addr, id)),
                Err(e) => tracing::debug!(%addr, error = %describe(&e), "the configured port is not free yet"),
            }
        }
    }

    /// Shows `relay` our meet tokens, to be told which members can be reached through it.
    fn meet_at(&mut self, relay: PeerId) {
        if !self.config.hole_punching || self.frozen || !self.is_base() || self.meet_tokens.is_empty() {
            return;
        }
        let tokens = self.meet_tokens.clone();
        self.swarm.behaviour_mut().meet.send_request(&relay, MeetRequest { tokens });
    }

    /// Dials, through `relay`'s circuit, the members it says can be reached there; DCUtR then
    /// tries a direct connection from the circuit.
    fn met(&mut self, relay: PeerId, peers: Vec<PeerId>) {
        let Some(relay_addr) = self.config.relays.iter().find(|a| peer_of(a) == Some(relay)).cloned() else { return };
        let me = *self.swarm.local_peer_id();
        let siblings = self.siblings.lock().map(|s| s.peers.clone()).unwrap_or_default();
        let now = Instant::now();
        let new = peers.into_iter().filter(|p| {
            *p != me
                && !self.peers.contains_key(p)
                && !siblings.contains(p)
                && self.banned.get(p).is_none_or(|until| *until <= now)
        });
        for peer in new.take(MEET_DIALS).collect::<Vec<_>>() {
            let circuit = relay_addr.clone().with(Protocol::P2pCircuit).with(Protocol::P2p(peer));
            tracing::debug!(%peer, %circuit, "met at a relay: dialling through its circuit");
            let _ = self.swarm.dial(
                DialOpts::peer_id(peer)
                    .addresses(vec![circuit])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
            );
        }
    }

    /// Asks each connected relay that is not busy with one already for what we missed while
    /// away, if we did (see `crate::account::catch_up`).
    async fn catch_up_with_relays(&mut self) {
        // Only the relays the user listed: any peer may call itself a relay, and an empty
        // answer would mark us caught up.
        let listed: Vec<PeerId> = self.config.relays.iter().filter_map(peer_of).collect();
        let relays: Vec<PeerId> = listed.iter().copied().filter(|p| self.peers.contains_key(p)).collect();
        if relays.is_empty() || self.config.relay_server {
            self.relays_since = None;
            return;
        }
        let since = *self.relays_since.get_or_insert(self.ticks);
        if self.catch_up.is_some() {
            return;
        }
        // A round with the first relay to connect would mark us caught up before the others
        // are asked; one that is down is waited for only so long.
        if relays.len() < listed.len() && self.ticks.saturating_sub(since) < WAIT_FOR_RELAYS_TICKS {
            return;
        }
        // Following the day's topics with a relay for a whole resync round means being in step.
        let settled = self.ticks.saturating_sub(since) >= RESYNC_EVERY_TICKS;
        let Some(plan) = self.host.catch_up_plan(settled).await else { return };
        let (after, buckets) = (plan.after, plan.buckets.clone());
        let syncs = self.syncs.clone();
        let wins: Vec<(PeerId, bool)> = relays.iter().map(|r| (*r, *self.swarm.local_peer_id() < *r)).collect();
        // Every listed relay is asked, and the round ends when all have answered whole: one
        // that holds nothing for us (new, or wiped) must not end it for the others.
        let firsts = self
            .host
            .with_source(move |_| {
                let mut syncs = syncs.lock().map_err(|_| Error::Internal("sync state poisoned"))?;
                if wins.iter().any(|(r, _)| syncs.get(r).is_some_and(PeerSync::is_catching_up)) {
                    return Ok(Vec::new()); // an earlier round's answer is still coming
                }
                Ok(wins
                    .iter()
                    .filter_map(|(r, w)| {
                        let sync = syncs.entry(*r).or_insert_with(|| PeerSync::new(*w));
                        Some((*r, sync.start_catch_up(after, buckets.clone())?))
                    })
                    .collect())
            })
            .await
            .unwrap_or_default();
        if firsts.is_empty() {
            return;
        }
        tracing::debug!(relays = firsts.len(), conversations = plan.conversations(), "catching up from relays");
        self.catch_up = Some((plan, firsts.iter().map(|(r, _)| *r).collect()));
        for (relay, message) in firsts {
            self.send_sync_request(relay, &[message]);
        }
    }

    /// A relay follows the topics its peers follow, so that it holds their envelopes.
    fn follow_peers(&self, topics: &mut HashSet<gossipsub::TopicHash>, points: &mut HashSet<gossipsub::TopicHash>) {
        let mut count = topics.len() + points.len();
        for (peer, peer_topics) in self.swarm.behaviour().gossipsub.all_peers() {
            if self.relay_peers.contains(peer) {
                continue;
            }
            for t in peer_topics.into_iter().take(MAX_FOLLOWED_PER_PEER) {
                if count >= MAX_FOLLOWED {
                    return;
                }
                let added = if t.as_str().starts_with("weft/") {
                    topics.insert(t.clone())
                } else if t.as_str().starts_with("weft-rv/") {
                    points.insert(t.clone())
                } else {
                    false
                };
                count += usize::from(added);
            }
        }
    }

    /// Subscribes to what is wanted and leaves the rest; returns the new envelope topics.
    fn resubscribe(
        &mut self,
        topics: HashSet<gossipsub::TopicHash>,
        points: HashSet<gossipsub::TopicHash>,
    ) -> HashSet<gossipsub::TopicHash> {
        let gossip = &mut self.swarm.behaviour_mut().gossipsub;
        let mut fresh = HashSet::new();
        for (wanted, current, is_topic) in [(topics, &mut self.subscribed, true), (points, &mut self.rendezvous, false)]
        {
            for stale in current.iter().filter(|h| !wanted.contains(h)).cloned().collect::<Vec<_>>() {
                let _ = gossip.unsubscribe(&gossipsub::IdentTopic::new(stale.as_str()));
                current.remove(&stale);
            }
            for t in wanted {
                if !current.contains(&t) && gossip.subscribe(&gossipsub::IdentTopic::new(t.as_str())).is_ok() {
                    tracing::debug!(topic = %t, "subscribed");
                    current.insert(t.clone());
                    if is_topic {
                        fresh.insert(t);
                    }
                }
            }
        }
        if let Ok(mut s) = self.siblings.lock() {
            s.topics.insert(*self.swarm.local_peer_id(), self.subscribed.clone());
        }
        fresh
    }

    /// Publishes what waits in the outbox; what a peer took leaves it.
    async fn push_outbox(&mut self) {
        if !self.pushes() {
            return;
        }
        let Ok(envelopes) = self.host.outbox(PUSH_BATCH).await else { return };
        // Each session pushes the envelopes of the topics it follows (publishing on a topic
        // of another session's would tie the two peer ids together); the current one also
        // pushes those no session follows.
        let me = *self.swarm.local_peer_id();
        let elsewhere: HashSet<gossipsub::TopicHash> = match self.siblings.lock() {
            Ok(s) if self.scope.is_some() => {
                s.topics.iter().filter(|(p, _)| **p != me).flat_map(|(_, t)| t.iter().cloned()).collect()
            }
            _ => HashSet::new(),
        };
        let mut taken = Vec::new();
        for e in envelopes {
            let id = EnvelopeId(*blake3::hash(&e).as_bytes());
            let topic = gossip_topic(&e[1..17]);
            let ours = self.subscribed.contains(&topic.hash());
            if self.scope.is_some() && !ours && (self.frozen || !self.is_base() || elsewhere.contains(&topic.hash())) {
                continue;
            }
            match self.swarm.behaviour_mut().gossipsub.publish(topic.clone(), e) {
                // A duplicate was published before, or came back to us from a peer.
                Ok(_) | Err(gossipsub::PublishError::Duplicate) => taken.push(id),
                Err(err) => tracing::trace!(%topic, %err, "push postponed"),
            }
        }
        if !taken.is_empty() {
            self.host.handed_over(taken).await;
        }
    }

    /// Drops every connection and dials again: a connection over an interface that went away
    /// can look alive for minutes (until TCP or QUIC gives up on it).
    async fn after_network_change(&mut self) {
        tracing::debug!(peer = %self.swarm.local_peer_id(), "network changed: reconnecting");
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        // Dialled whatever `peers` says: the closings are still on their way.
        let mut again: Vec<Multiaddr> = self.config.relays.iter().chain(&self.config.bootstrap).cloned().collect();
        again.extend(self.peers.values().cloned());
        again.extend(self.host.peer_addrs().await);
        if let Ok(s) = self.siblings.lock() {
            again.extend(s.addresses.iter().cloned());
        }
        let mut seen = HashSet::new();
        for addr in again {
            if seen.insert(addr.clone()) {
                let _ = self.swarm.dial(addr);
            }
        }
        self.refresh().await;
    }

    /// Dials configured relays and bootstrap peers we lost; with no peer at all, also the
    /// addresses peers were reached at before.
    async fn redial(&mut self) {
        let configured: Vec<Multiaddr> = self.config.relays.iter().chain(&self.config.bootstrap).cloned().collect();
        for addr in configured {
            let connected = match peer_of(&addr) {
                Some(id) => self.peers.contains_key(&id),
                None => self.peers.values().any(|a| *a == addr),
            };
            if !connected {
                let _ = self.swarm.dial(addr);
            }
        }
        if self.peers.is_empty() {
            for addr in self.host.peer_addrs().await {
                let _ = self.swarm.dial(addr);
            }
        }
        // A session apart from the base (ended epochs) meets peers only through the addresses
        // the base learned: it dials each once; any session short of peers dials them again.
        if self.scope.is_some() {
            let shared: Vec<Multiaddr> =
                self.siblings.lock().map(|s| s.addresses.iter().cloned().collect()).unwrap_or_default();
            let few = self.peers.len() < FEW_PEERS;
            for addr in shared {
                let new = !self.is_base() && self.dialed_shared.insert(addr.clone());
                if (new || few) && !self.peers.values().any(|a| *a == addr) {
                    let _ = self.swarm.dial(addr);
                }
            }
        }
    }

    /// Counts a sync error against `peer`. A relay we were told to use is not blamed for a
    /// reconciliation message that crossed the end of ours: under load (a crowd at the relay)
    /// such crossings come in runs, and cutting the relay off for ten minutes cuts us off from
    /// everyone we reach through it.
    fn sync_offence(&mut self, peer: PeerId, error: &Error) {
        if matches!(error, Error::StaleReconciliation) && self.config.relays.iter().any(|a| peer_of(a) == Some(peer)) {
            tracing::debug!(%peer, %error, "a stale reconciliation message from our relay");
            return;
        }
        self.strike(peer, strike_weight(error), error);
    }

    /// Counts a protocol offence; too many in quick succession and the peer is cut off for a
    /// while.
    fn strike(&mut self, peer: PeerId, weight: u32, why: &dyn std::fmt::Display) {
        tracing::debug!(me = %self.swarm.local_peer_id(), %peer, weight, %why, "strike");
        if self.strikes.strike(peer, weight, Instant::now()) {
            let until = Instant::now() + BAN;
            self.banned.insert(peer, until);
            // A new peer id costs nothing: enough bans from one address ban the address.
            if let Some(addr) = self.peers.get(&peer) {
                self.swarm.behaviour_mut().admission.peer_banned(addr, until);
            }
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<WeftBehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                if self.config.relay_server && !is_relayed(&address) {
                    // A relay server serves only once it knows an address to hand out.
                    self.swarm.add_external_address(address.clone());
                }
                self.listening.send_modify(|a| a.push(address));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listening.send_modify(|a| a.retain(|x| *x != address));
                // An interface address went away (Wi-Fi to mobile data, a new DHCP lease): the
                // connections made from it are dead, and nothing will tell us for minutes.
                let now = Instant::now();
                let recent = self.address_lost.is_some_and(|t| now.duration_since(t) < ADDRESS_LOST_SETTLES);
                // (Not a circuit through a relay, whose address is the relay's; not loopback.)
                let interface = remote_ip(&address).is_some_and(|ip| !ip.is_loopback());
                if interface && !recent {
                    self.address_lost = Some(now);
                    tracing::debug!(%address, "an address of ours went away");
                    self.after_network_change().await;
                }
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                self.circuits.retain(|_, l| *l != listener_id);
                // A fixed port's listener that closed is taken again at the next tick.
                self.fixed_listeners.retain(|(_, l)| *l != listener_id);
            }
            SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, num_established, .. } => {
                let sibling = self.siblings.lock().is_ok_and(|s| s.peers.contains(&peer_id));
                if sibling || self.banned.get(&peer_id).is_some_and(|until| *until > Instant::now()) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                self.banned.remove(&peer_id);
                let addr = endpoint.get_remote_address().clone();
                // The peer dials us from another address than before: it moved (Wi-Fi to mobile
                // data), and its old connections are most likely dead with nobody told. Keeping
                // them would not do: gossipsub greets a peer only on its first connection, so
                // the peer would never learn what we follow. Everything goes; it dials again
                // and both sides start afresh.
                let here = (!endpoint.is_dialer()).then(|| remote_ip(&addr)).flatten();
                let links = self.connections.entry(peer_id).or_default();
                if here.is_some() && links.iter().any(|l| l.inbound_from.is_some_and(|ip| Some(ip) != here)) {
                    tracing::debug!(peer = %peer_id, %addr, "the peer moved: closing its connections");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                // A direct connection where a relay's circuit was: a hole was punched (or the
                // peer became reachable). The circuits go (the relay bounds their time and
                // bytes anyway), even if both sides dialled one; the status shows the direct
                // address.
                let seen_at = shown_addr(&endpoint);
                let direct = !is_relayed(&seen_at);
                let circuits: Vec<ConnectionId> = if direct {
                    links.iter().filter(|l| is_relayed(&l.addr)).map(|l| l.id).collect()
                } else {
                    Vec::new()
                };
                let punched = !circuits.is_empty();
                if links.len() - circuits.len() >= MAX_CONNECTIONS_PER_PEER {
                    // A dial each way is enough; one more is a redial that crossed, and closing
                    // an older one instead would cut whatever runs on it.
                    self.swarm.close_connection(connection_id);
                    return;
                }
                links.push(Link { id: connection_id, inbound_from: here, addr: seen_at.clone() });
                let shown = self.peers.entry(peer_id).or_insert_with(|| seen_at.clone());
                if direct && is_relayed(shown) {
                    *shown = seen_at;
                }
                for circuit in circuits {
                    tracing::debug!(peer = %peer_id, %addr, "direct now: closing the relay's circuit");
                    self.swarm.close_connection(circuit);
                }
                tracing::debug!(me = %self.swarm.local_peer_id(), peer = %peer_id, %addr, "connected");
                self.connected.send_replace(self.peers.len());
                if num_established.get() == 1 {
                    self.host.emit(NodeEvent::PeerConnected { peer: peer_id.to_string(), via: VIA });
                }
                // (Not a member's address found by hole punching: members learn each other's
                // addresses, they do not keep them, N18.)
                if endpoint.is_dialer() && !is_relayed(&addr) && !punched {
                    if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                        kad.add_address(&peer_id, addr.clone());
                    }
                    // Peer ids rotate; the address is what lets a restart find the peer again.
                    let bare: Multiaddr = addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect();
                    self.host.note_peer_addr(bare).await;
                }
                self.reserve_on(peer_id);
            }
            SwarmEvent::ConnectionClosed { peer_id, connection_id, num_established, .. } if num_established > 0 => {
                if let Some(links) = self.connections.get_mut(&peer_id) {
                    links.retain(|l| l.id != connection_id);
                    // The status shows an address the peer is still connected at.
                    if let (Some(shown), Some(left)) = (self.peers.get_mut(&peer_id), links.first())
                        && !links.iter().any(|l| l.addr == *shown)
                    {
                        *shown = left.addr.clone();
                    }
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.connections.remove(&peer_id);
                self.reservations.remove(&peer_id);
                self.meeting.leave(&peer_id);
                tracing::debug!(peer = %peer_id, "disconnected");
                self.peers.remove(&peer_id);
                self.abandon_catch_up(peer_id);
                self.relay_peers.remove(&peer_id);
                self.reserved.remove(&peer_id);
                self.connected.send_replace(self.peers.len());
                self.host.emit(NodeEvent::PeerDisconnected { peer: peer_id.to_string(), via: VIA });
                let syncs = self.syncs.clone();
                let _ = self.host.with_source(move |_| Ok(syncs.lock().map(|mut s| s.remove(&peer_id)).ok())).await;
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event).await,
            _ => {}
        }
    }

    /// Listens through a configured relay once connected to it, so peers can reach us there.
    fn reserve_on(&mut self, peer: PeerId) {
        if self.circuits.contains_key(&peer) {
            return;
        }
        let Some(relay) = self.config.relays.iter().find(|a| peer_of(a) == Some(peer)).cloned() else { return };
        if let Ok(id) = self.swarm.listen_on(relay.with(Protocol::P2pCircuit)) {
            self.circuits.insert(peer, id);
        }
    }

    async fn on_behaviour_event(&mut self, event: WeftBehaviourEvent) {
        match event {
            WeftBehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message }) => {
                let rendezvous = self.rendezvous.contains(&message.topic);
                let mut ok = well_formed(&message.topic, &message.data, rendezvous);
                // What only a length could vouch for is checked further: a request is opened
                // before it goes on (a node opens what is at its own rendezvous points; a relay
                // cannot, and takes only so many from one peer).
                // A relay forwards what it cannot open: junk (or too much) through it is not its
                // fault, and striking it would let a stranger cut us off from our relay.
                let mut blameless = false;
                if ok && rendezvous {
                    blameless = self.relay_peers.contains(&propagation_source);
                    ok = self.rendezvous_rate.admit(propagation_source, Instant::now())
                        && self.host.receive_request(message.data.clone()).await != RequestCheck::NotOurs;
                }
                let verdict =
                    if ok { gossipsub::MessageAcceptance::Accept } else { gossipsub::MessageAcceptance::Reject };
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    verdict,
                );
                tracing::debug!(from = %propagation_source, topic = %message.topic, ok, "gossip message");
                if !ok && !blameless {
                    self.strike(propagation_source, 1, &"a gossip message that is not an envelope");
                } else if ok && !rendezvous {
                    self.host.receive_envelope(message.data, propagation_source);
                }
            }
            WeftBehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic }) => {
                tracing::debug!(peer = %peer_id, %topic, "peer subscribed");
                // (A relay follows new topics at its next tick: one subscription message may name
                // thousands, and each must not cost a refresh.)
                if self.subscribed.contains(&topic) {
                    self.start_sync(peer_id, &topic).await;
                }
            }
            WeftBehaviourEvent::Ping(ping::Event { peer, connection, result: Err(error) })
                if !matches!(error, ping::Failure::Unsupported) =>
            {
                // No answer within the ping's timeout (a peer that does not speak ping at all
                // is another matter): the connection is dead though nothing said so (our
                // address or the peer's changed, a NAT forgot us, a partition). Left open, it
                // holds one of the peer's two connection slots and swallows what we send on it;
                // closed, the next redial finds the peer again.
                tracing::debug!(%peer, %error, "a ping failed: closing the connection");
                self.swarm.close_connection(connection);
            }
            WeftBehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let siblings = self.siblings.lock().map(|s| s.peers.clone()).unwrap_or_default();
                for (peer, addr) in found {
                    if !self.peers.contains_key(&peer) && !siblings.contains(&peer) {
                        let _ = self.swarm.dial(addr);
                    }
                }
            }
            WeftBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.agent_version.starts_with(super::behaviour::RELAY_AGENT) && self.relay_peers.insert(peer_id) {
                    // Back from days away: ask the relay at once, not at the next tick.
                    self.catch_up_with_relays().await;
                }
                if self.scope.is_some()
                    && !info.agent_version.starts_with(super::behaviour::RELAY_AGENT)
                    && let Ok(mut s) = self.siblings.lock()
                {
                    for addr in info.listen_addrs.iter().filter(|a| !is_relayed(a)) {
                        if !s.addresses.contains(addr) {
                            s.addresses.push_back(addr.clone());
                            if s.addresses.len() > SHARED_ADDRESSES {
                                s.addresses.pop_front();
                            }
                        }
                    }
                }
                if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                    for addr in info.listen_addrs.into_iter().filter(|a| !is_relayed(a)) {
                        kad.add_address(&peer_id, addr);
                    }
                }
            }
            WeftBehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted { relay_peer_id, .. })
                if self.reserved.insert(relay_peer_id) =>
            {
                self.meet_at(relay_peer_id);
            }
            // libp2p keeps a reservation per connection: a peer is reachable through us while
            // any of its connections holds one.
            WeftBehaviourEvent::RelayServer(relay::Event::ReservationReqAccepted { src_peer_id, renewed: false }) => {
                *self.reservations.entry(src_peer_id).or_default() += 1;
            }
            WeftBehaviourEvent::RelayServer(
                relay::Event::ReservationTimedOut { src_peer_id } | relay::Event::ReservationClosed { src_peer_id },
            ) => {
                let left = self.reservations.get_mut(&src_peer_id).map(|n| {
                    *n = n.saturating_sub(1);
                    *n
                });
                if left.unwrap_or(0) == 0 {
                    self.reservations.remove(&src_peer_id);
                    self.meeting.leave(&src_peer_id);
                }
            }
            WeftBehaviourEvent::Meet(request_response::Event::Message { peer, message, .. }) => match message {
                request_response::Message::Request { request, channel, .. } => {
                    let reachable = self.reservations.contains_key(&peer);
                    let peers = self.meeting.meet(peer, &request.tokens, reachable);
                    tracing::debug!(%peer, reachable, met = peers.len(), "a meet request");
                    let _ = self.swarm.behaviour_mut().meet.send_response(channel, MeetAnswer { peers });
                }
                request_response::Message::Response { response, .. } => self.met(peer, response.peers),
            },
            WeftBehaviourEvent::Dcutr(dcutr::Event { remote_peer_id, result }) => {
                tracing::debug!(peer = %remote_peer_id, ?result, "hole punching");
            }
            WeftBehaviourEvent::Sync(request_response::Event::Message { peer, message, .. }) => match message {
                request_response::Message::Request { request_id, request, channel } => {
                    let reply = self.handle_sync(peer, &request.bytes).await;
                    drop(request);
                    let reply = match reply {
                        Ok(reply) => reply,
                        Err(e) => {
                            self.sync_offence(peer, &e);
                            return;
                        }
                    };
                    let served = served_ids(&reply);
                    let scopes = scopes_of(&reply);
                    if self.swarm.behaviour_mut().sync.send_response(channel, encode_batch(&reply).into()).is_ok()
                        && !scopes.is_empty()
                    {
                        self.sync_answers.insert(request_id, scopes);
                    }
                    if !served.is_empty() {
                        self.host.handed_over(served).await;
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    let asked = self.sync_requests.remove(&request_id);
                    match self.handle_sync(peer, &response.bytes).await {
                        Ok(next) if !next.is_empty() => {
                            let served = served_ids(&next);
                            self.send_sync_request(peer, &next);
                            if !served.is_empty() {
                                self.host.handed_over(served).await;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.sync_offence(peer, &e);
                            // What the answer left half done is abandoned, as when a request
                            // fails: its reconciliations stayed open before, and their topics
                            // were never reconciled with this peer again while it stayed
                            // connected (a relay, whose crossed answers are not counted, stays).
                            if let Some((scopes, catch_up)) = asked {
                                self.abandon_sync(peer, scopes, catch_up).await;
                            }
                        }
                    }
                }
            },
            WeftBehaviourEvent::Sync(request_response::Event::ResponseSent { request_id, .. }) => {
                self.sync_answers.remove(&request_id);
            }
            // A request or answer that timed out or whose stream broke leaves its
            // reconciliations waiting for a message that will not come, and their topics
            // blocked with that peer: they are abandoned, and the next round starts afresh.
            WeftBehaviourEvent::Sync(request_response::Event::OutboundFailure { peer, request_id, error, .. }) => {
                tracing::debug!(%peer, %error, "a sync request failed");
                if let Some((scopes, catch_up)) = self.sync_requests.remove(&request_id) {
                    self.abandon_sync(peer, scopes, catch_up).await;
                }
            }
            WeftBehaviourEvent::Sync(request_response::Event::InboundFailure { peer, request_id, error, .. }) => {
                tracing::debug!(%peer, %error, "a sync answer failed");
                if let Some(scopes) = self.sync_answers.remove(&request_id) {
                    self.abandon_sync(peer, scopes, false).await;
                }
            }
            _ => {}
        }
    }

    /// Whether this session follows conversations' topics: it is woken to push at every change
    /// of the outbox.
    fn follows_conversations(&self) -> bool {
        use super::sessions::Serves;
        self.scope.as_ref().is_none_or(|s| matches!(s.serves, Serves::Current | Serves::Previous))
    }

    /// Whether this session publishes envelopes now: one that follows conversations, or the
    /// rendezvous session while it follows a device link's topics (it pushes the grant at its
    /// ticks, and reads the outbox at no send otherwise).
    fn pushes(&self) -> bool {
        use super::sessions::Serves;
        self.follows_conversations()
            || self.scope.as_ref().is_some_and(|s| s.serves == Serves::Rendezvous) && !self.subscribed.is_empty()
    }

    /// Whether this session serves everything not moved elsewhere (a relay's only session does).
    fn is_base(&self) -> bool {
        self.scope.as_ref().is_none_or(SessionScope::is_base)
    }

    /// The topics we follow now that `peer` subscribes to: the only ones it may reconcile with
    /// us or ask envelopes of (a relay: every topic the peer subscribes to).
    fn shared_topics(&self, peer: &PeerId) -> HashSet<Topic> {
        let gossip = &self.swarm.behaviour().gossipsub;
        let Some((_, theirs)) = gossip.all_peers().find(|(p, _)| *p == peer) else { return HashSet::new() };
        // A relay follows whatever its peers follow (from its next tick): it serves them at once.
        let relay = self.config.relay_server;
        theirs.into_iter().filter(|t| relay || self.subscribed.contains(*t)).filter_map(topic_of_hash).collect()
    }

    /// Starts reconciling one topic with a peer that subscribed to it too, and the history of
    /// its epoch if we missed days of it and the peer is a member (not a relay).
    async fn start_sync(&mut self, peer: PeerId, topic: &gossipsub::TopicHash) {
        let Some(topic_bytes) = topic_of_hash(topic) else { return };
        // For a topic, one side starts, the other answers: the lower peer id initiates. A
        // history is started by whoever lacks it.
        let wins = *self.swarm.local_peer_id() < peer;
        let mut scopes = Vec::new();
        if wins {
            scopes.push(Scope::Topic(topic_bytes));
        }
        let (us, them) = (self.swarm.local_peer_id().to_bytes(), peer.to_bytes());
        if let Some(Scope::History { key: token, from }) = self.history.get(topic)
            && !self.relay_peers.contains(&peer)
        {
            scopes.push(history_request(token, &us, &them, *from));
        }
        for scope in scopes {
            let syncs = self.syncs.clone();
            let salt: [u8; 16] = rand_salt();
            let (us, them) = (us.clone(), them.clone());
            let first = self
                .host
                .with_source(move |source| {
                    let mut syncs = syncs.lock().map_err(|_| Error::Internal("sync state poisoned"))?;
                    let sync = syncs.entry(peer).or_insert_with(|| PeerSync::new(wins));
                    if sync.is_syncing(&scope) {
                        return Ok(None);
                    }
                    Ok(sync.start(scope, salt, &PeerBound::new(source, &us, &them)))
                })
                .await;
            tracing::debug!(me = %self.swarm.local_peer_id(), %peer, ?scope, started = ?first.as_ref().map(|m| m.is_some()), "sync start");
            if let Ok(Some(message)) = first {
                self.send_sync_request(peer, &[message]);
            }
        }
    }

    /// A relay of the catch-up round failed or left: the round ends unfinished (nothing is
    /// marked caught up), and the next tick plans a new one.
    fn abandon_catch_up(&mut self, relay: PeerId) {
        if self.catch_up.as_ref().is_some_and(|(_, waiting)| waiting.contains(&relay)) {
            self.catch_up = None;
        }
    }

    /// Gives up the exchanges with peers that stood still for [`SYNC_IDLE`], and starts afresh
    /// the topic reconciliations among them with peers still connected (a catch-up must not
    /// end on a topic that was never reconciled).
    async fn expire_syncs(&mut self) {
        let limit =
            u32::try_from(SYNC_IDLE.as_millis().div_ceil(self.config.tick.as_millis().max(1))).unwrap_or(u32::MAX);
        let expired: Vec<(PeerId, Expired)> = match self.syncs.lock() {
            Ok(mut syncs) => syncs
                .iter_mut()
                .map(|(peer, sync)| (*peer, sync.tick(limit)))
                .filter(|(_, e)| *e != Expired::default())
                .collect(),
            Err(_) => return,
        };
        for (peer, expired) in expired {
            tracing::debug!(%peer, ?expired.scopes, expired.catch_up, "sync exchanges stood still; given up");
            if expired.catch_up {
                self.abandon_catch_up(peer);
            }
            if !self.peers.contains_key(&peer) {
                continue;
            }
            if !expired.send.is_empty() {
                self.send_sync_request(peer, &expired.send);
            }
            let shared = self.shared_topics(&peer);
            for scope in expired.scopes {
                if let Scope::Topic(topic) = scope
                    && shared.contains(&topic)
                {
                    self.start_sync(peer, &gossip_topic(&topic).hash()).await;
                }
            }
        }
    }

    /// Sends sync messages as a request, noting the scopes it carries.
    fn send_sync_request(&mut self, peer: PeerId, messages: &[SyncMessage]) {
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, encode_batch(messages).into());
        let catch_up = messages.iter().any(|m| matches!(m, SyncMessage::Since { .. }));
        self.sync_requests.insert(id, (scopes_of(messages), catch_up));
    }

    /// Gives up the reconciliations of `scopes` (and the relay catch-up, if `catch_up`) with
    /// `peer` after an exchange failed, and asks for what else is lacking.
    async fn abandon_sync(&mut self, peer: PeerId, scopes: Vec<Scope>, catch_up: bool) {
        if catch_up {
            self.abandon_catch_up(peer);
        }
        let syncs = self.syncs.clone();
        let next = self
            .host
            .with_source(move |_| {
                let mut syncs = syncs.lock().map_err(|_| Error::Internal("sync state poisoned"))?;
                let Some(sync) = syncs.get_mut(&peer) else { return Ok(Vec::new()) };
                if catch_up {
                    sync.abandon_catch_up();
                }
                Ok(sync.abandon(&scopes))
            })
            .await
            .unwrap_or_default();
        if !next.is_empty() && self.peers.contains_key(&peer) {
            self.send_sync_request(peer, &next);
        }
    }

    /// Runs a batch of sync messages from `peer` through its state machine next to the store;
    /// hands fetched envelopes to the host (and waits until they are stored); returns the
    /// replies.
    async fn handle_sync(&mut self, peer: PeerId, bytes: &[u8]) -> Result<Vec<SyncMessage>> {
        let messages = decode_batch(bytes)?;
        // An honest peer asks for at most one page of envelopes per request (one `Want` out at
        // a time, one `Since` page at a time); more would make us read and hold many pages.
        let asks =
            messages.iter().filter(|m| matches!(m, SyncMessage::Want { .. } | SyncMessage::Since { .. })).count();
        if asks > 1 {
            return Err(Error::Malformed { what: "sync batch", why: "more than one request for envelopes" });
        }
        let syncs = self.syncs.clone();
        let wins = *self.swarm.local_peer_id() < peer;
        let (us, them) = (self.swarm.local_peer_id().to_bytes(), peer.to_bytes());
        let shared = self.shared_topics(&peer);
        let (replies, received, caught_up) = self
            .host
            .with_source(move |source| {
                let mut syncs = syncs.lock().map_err(|_| Error::Internal("sync state poisoned"))?;
                let sync = syncs.entry(peer).or_insert_with(|| PeerSync::new(wins));
                let source = PeerBound::new(source, &us, &them).topics(shared);
                let (mut replies, mut received, mut caught_up) = (Vec::new(), Vec::new(), false);
                for m in messages {
                    let step = sync.handle(m, &source)?;
                    replies.extend(step.send);
                    received.extend(step.received);
                    caught_up |= step.caught_up;
                }
                Ok((replies, received, caught_up))
            })
            .await?;
        tracing::debug!(me = %self.swarm.local_peer_id(), %peer, ?replies, received = received.len(), "sync step");
        self.fetched += received.len() as u64;
        if !received.is_empty() {
            self.host.receive_fetched(received, peer).await;
        }
        if caught_up && let Some((_, waiting)) = self.catch_up.as_mut() {
            waiting.remove(&peer);
            if waiting.is_empty()
                && let Some((plan, _)) = self.catch_up.take()
            {
                self.host.caught_up(plan).await;
            }
        }
        Ok(replies)
    }
}

/// At most `limit` events per peer in each window.
struct Rate {
    limit: u32,
    window: Duration,
    seen: HashMap<PeerId, (Instant, u32)>,
}

impl Rate {
    fn new(limit: u32, window: Duration) -> Self {
        Rate { limit, window, seen: HashMap::new() }
    }

    /// Counts one event from `peer`; false if it is over the limit of its window.
    fn admit(&mut self, peer: PeerId, now: Instant) -> bool {
        let (start, count) = self.seen.entry(peer).or_insert((now, 0));
        if now.duration_since(*start) >= self.window {
            (*start, *count) = (now, 0);
        }
        *count += 1;
        *count <= self.limit
    }

    fn expire(&mut self, now: Instant) {
        let window = self.window;
        self.seen.retain(|_, (start, _)| now.duration_since(*start) < window);
    }
}

/// How much a sync error counts against a peer. A peer that breaks the protocol is cut off at
/// once; a message for a reconciliation we no longer hold happens between honest peers who
/// started the same one at the same moment (seen in CI: the ban that followed stopped a
/// member's receipts for ten minutes), so it counts one strike, and only a stream of them cuts
/// the peer off.
fn strike_weight(error: &Error) -> u32 {
    match error {
        Error::StaleReconciliation => 1,
        // A batch cut short is what a request looks like when its sender gave up on it: on a
        // slow or broken link its timeout drops the stream and we read what had arrived. Banned
        // for it, honest peers cut each other off for ten minutes after every partition.
        Error::Truncated { what, .. } if *what == super::codec::BATCH => 1,
        _ => MAX_STRIKES,
    }
}

/// The scopes a batch of sync messages is about.
fn scopes_of(messages: &[SyncMessage]) -> Vec<Scope> {
    let mut scopes: Vec<Scope> = messages.iter().filter_map(SyncMessage::scope).collect();
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}

/// Ids of the envelopes a batch of replies hands to the peer.
fn served_ids(replies: &[SyncMessage]) -> Vec<EnvelopeId> {
    replies
        .iter()
        .filter_map(|m| if let SyncMessage::Have { envelopes, .. } = m { Some(envelopes) } else { None })
        .flatten()
        .map(|e| EnvelopeId(*blake3::hash(e).as_bytes()))
        .collect()
}

fn rand_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    let _ = getrandom::fill(&mut salt);
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_cut_short_is_one_strike_and_a_malformed_one_a_ban() {
        let mut whole = encode_batch(&[]);
        whole.truncate(2);
        let cut = decode_batch(&whole).expect_err("two bytes of a count");
        assert_eq!(strike_weight(&cut), 1, "{cut}");
        // One message of four junk bytes: the batch is whole, what it carries is not a message.
        let junk = [0, 0, 0, 1, 0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef];
        let malformed = decode_batch(&junk).expect_err("junk");
        assert_eq!(strike_weight(&malformed), MAX_STRIKES, "{malformed}");
        assert_eq!(strike_weight(&Error::StaleReconciliation), 1);
    }
}
