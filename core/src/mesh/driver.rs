//! Runs a node's [`Router`] over a [`Radio`]: the IO edge of the mesh.
//!
//! One task owns the router. Each link gets a reader task (fragments in) and a writer task
//! (fragments out, in order); everything else happens in the owning task, so the router needs
//! no locks. The node's outbox is pushed over the mesh as well as over libp2p, so when libp2p
//! has no peers delivery goes on here with no user action; what the mesh delivers goes through
//! the same receive path as everything else, so an envelope arriving both ways is stored and
//! shown once.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::radio::{Link, Radio, RadioReport, ReportSource};
use super::router::{LinkId, Output, Router, RouterConfig, RouterStats};
use crate::envelope::{EnvelopeId, Topic};
use crate::net::OutboxChanges;
use crate::node::{Delivery, Node, NodeEvent};
use crate::sync::{EnvelopeSource, Item};

/// How the node's events name the mesh.
pub const VIA: &str = "mesh";
const TICK: Duration = Duration::from_secs(1);
/// Topics and our own envelopes are read from the account this often.
const REFRESH_TICKS: u64 = 10;
/// Our own envelopes the router carries for neighbours who share our groups.
const MAX_OWN_ENVELOPES: usize = 2_048;
/// Fragments queued for one link's writer before more are dropped.
const WRITE_QUEUE: usize = 4_096;

/// A running mesh.
pub struct MeshHandle {
    task: Option<JoinHandle<()>>,
    stats: Arc<Mutex<RouterStats>>,
    radio: &'static str,
    report: Option<ReportSource>,
}

impl MeshHandle {
    /// What the router holds and how many links are open.
    pub fn stats(&self) -> RouterStats {
        *self.stats.lock().expect("stats lock")
    }

    /// The radio's name (`sim`, `ble`, `app`).
    pub fn radio(&self) -> &'static str {
        self.radio
    }

    /// The radio's roles and their links, for radios that say (`ble`).
    pub fn radio_report(&self) -> Option<RadioReport> {
        self.report.as_ref().map(|report| report())
    }

    pub fn stop(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }

    /// Stops the mesh and waits until its task, and with it every link, is gone.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for MeshHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a mesh host wants: the topics delivered to it, and its own recent envelopes (short
/// id, topic) that the router carries for neighbours.
pub struct MeshInterests {
    pub delivered: Vec<Topic>,
    pub carried: Vec<(Item, Topic)>,
}

/// What the mesh serves: a node's account, or a device joining one (`crate::net::join`).
pub trait MeshHost: Send + Sync + 'static {
    /// What we want now; `None` if the host cannot tell now.
    fn interests(&self) -> impl Future<Output = Option<MeshInterests>> + Send;
    /// Our envelopes with these ids.
    fn envelopes(&self, wanted: Vec<(Item, Topic)>) -> impl Future<Output = Vec<Vec<u8>>> + Send;
    /// What waits to go out, and ids the router must forget (sealed again, so nobody gets both).
    fn outbox(&self) -> impl Future<Output = Option<(Vec<Vec<u8>>, Vec<EnvelopeId>)>> + Send;
    /// A neighbour took these.
    fn handed_over(&self, ids: Vec<EnvelopeId>) -> impl Future<Output = ()> + Send;
    /// An envelope of one of our topics arrived.
    fn deliver(&self, envelope: Vec<u8>);
    fn emit(&self, event: NodeEvent);
    /// Wakes the mesh when something entered the outbox.
    fn outbox_changes(&self) -> OutboxChanges;
    /// What the mesh heard on the nearby channel: the bytes to pass on, if any. (A host with
    /// no nearby session, a device joining an account, hears nothing.)
    fn nearby_heard(&self, _bytes: &[u8]) -> Option<Vec<u8>> {
        None
    }
    /// The host's own posts on the nearby channel, to broadcast.
    fn nearby_posts(&self) -> Option<tokio::sync::broadcast::Receiver<Vec<u8>>> {
        None
    }
    /// The host's events, if it has any: what came another way is carried at once.
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<NodeEvent>>;
}

impl MeshHost for Node {
    async fn interests(&self) -> Option<MeshInterests> {
        self.call(|a| {
            a.follow_the_day();
            // Our recent envelopes (of the followed topics) are carried for neighbours.
            // Files within the mesh's size policy too, being fetched or served; larger ones
            // wait for a network, so that a photo never starves text on a Bluetooth link.
            let files = a.mesh_attachment_topics();
            let topics: Vec<_> = a.sync_topics(1).into_iter().chain(files.iter().copied()).collect();
            let readable: Vec<_> = a.readable_topics().into_iter().chain(files).collect();
            let mut own = Vec::new();
            'topics: for topic in &topics {
                for id in a.ids(&crate::sync::Scope::Topic(*topic)).unwrap_or_default() {
                    if own.len() >= MAX_OWN_ENVELOPES {
                        break 'topics;
                    }
                    own.push((id, *topic));
                }
            }
            Ok(MeshInterests { delivered: readable, carried: own })
        })
        .await
        .ok()
    }

    async fn envelopes(&self, wanted: Vec<(Item, Topic)>) -> Vec<Vec<u8>> {
        self.call(move |a| {
            Ok(wanted.iter().filter_map(|(id, topic)| a.envelope(&crate::sync::Scope::Topic(*topic), id)).collect())
        })
        .await
        .unwrap_or_default()
    }

    async fn outbox(&self) -> Option<(Vec<Vec<u8>>, Vec<EnvelopeId>)> {
        let batch = self.call(|a| a.outbox(256)).await.ok()?;
        let forgotten = batch.forgotten.clone();
        Some((self.take_outbox(batch), forgotten))
    }

    async fn handed_over(&self, ids: Vec<EnvelopeId>) {
        if let Ok(sent) = self.call(move |a| a.handed_over(&ids)).await {
            for id in sent {
                self.emit(NodeEvent::DeliveryChanged { id, state: Delivery::Sent });
            }
        }
    }

    fn deliver(&self, envelope: Vec<u8>) {
        drop(self.receive_envelope(envelope, VIA));
    }

    fn emit(&self, event: NodeEvent) {
        Node::emit(self, event);
    }

    fn outbox_changes(&self) -> OutboxChanges {
        OutboxChanges::of(self.outbox_watch())
    }

    fn nearby_heard(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        Node::nearby_heard(self, bytes)
    }

    fn nearby_posts(&self) -> Option<tokio::sync::broadcast::Receiver<Vec<u8>>> {
        Some(Node::nearby_posts(self))
    }

    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<NodeEvent>> {
        Some(self.subscribe())
    }
}

/// Starts the mesh for `node` on `radio`. Must be called inside a tokio runtime.
pub fn start(node: Arc<Node>, radio: impl Radio, config: RouterConfig) -> MeshHandle {
    start_host(node, radio, config)
}

/// [`start`] for any host.
pub fn start_host<H: MeshHost>(host: Arc<H>, radio: impl Radio, config: RouterConfig) -> MeshHandle {
    // The system's time at start, moved on by the monotonic clock: a wall clock set back or
    // forward while the mesh runs does not expire what it carries or cut links short.
    let (base, started) = (crate::clock::system_ms(), Instant::now());
    start_with_clock(host, radio, config, Arc::new(move || base + started.elapsed().as_millis() as u64))
}

/// [`start_host`] with a clock of the caller's (the router ages what it carries by it).
pub fn start_with_clock<H: MeshHost>(
    host: Arc<H>,
    radio: impl Radio,
    config: RouterConfig,
    clock: crate::clock::SharedClock,
) -> MeshHandle {
    let stats = Arc::new(Mutex::new(RouterStats::default()));
    let (name, report) = (radio.name(), radio.report());
    let task = tokio::spawn(run(host, radio, Router::new(config), stats.clone(), clock));
    MeshHandle { task: Some(task), stats, radio: name, report }
}

enum LinkEvent {
    Fragment(LinkId, Vec<u8>),
    Down(LinkId),
}

struct OpenLink {
    link: Arc<dyn Link>,
    writer: mpsc::Sender<Vec<u8>>,
}

/// A link the mesh lets go of (it went down, or the mesh stopped) is closed.
impl Drop for OpenLink {
    fn drop(&mut self) {
        self.link.close();
    }
}

async fn run<H: MeshHost>(
    node: Arc<H>,
    mut radio: impl Radio,
    mut router: Router,
    stats: Arc<Mutex<RouterStats>>,
    clock: crate::clock::SharedClock,
) {
    let now = move || clock();
    let (events_tx, mut events) = mpsc::channel::<LinkEvent>(4_096);
    let mut links: HashMap<LinkId, OpenLink> = HashMap::new();
    let mut next_link: LinkId = 1;
    let mut radio_open = true;
    let mut outbox = node.outbox_changes();
    let mut node_events = node.events();
    let mut posts = node.nearby_posts();
    let mut tick = tokio::time::interval(TICK);
    let mut ticks = 0u64;
    let outputs = refresh(&node, &mut router, now()).await;
    apply(&node, outputs, &mut links).await;
    push_outbox(&node, &mut router, now(), &mut links).await;
    loop {
        let outputs = tokio::select! {
            link = radio.next_link(), if radio_open => match link {
                Some(link) => {
                    let id = next_link;
                    next_link += 1;
                    let (writer, queue) = mpsc::channel(WRITE_QUEUE);
                    tokio::spawn(read_link(link.clone(), id, events_tx.clone()));
                    tokio::spawn(write_link(link.clone(), queue));
                    let (mtu, initiator) = (link.mtu(), link.initiator());
                    links.insert(id, OpenLink { link, writer });
                    node.emit(NodeEvent::PeerConnected { peer: format!("{}-{id}", radio.name()), via: VIA });
                    router.link_up(id, mtu, initiator, salt(), now())
                }
                None => {
                    tracing::info!(radio = radio.name(), "the radio stopped; the mesh carries on with what it holds");
                    radio_open = false;
                    Vec::new()
                }
            },
            Some(event) = events.recv() => match event {
                LinkEvent::Fragment(id, fragment) => router.fragment(id, &fragment, now()),
                LinkEvent::Down(id) => {
                    if links.remove(&id).is_some() {
                        router.link_down(id);
                        node.emit(NodeEvent::PeerDisconnected { peer: format!("{}-{id}", radio.name()), via: VIA });
                    }
                    Vec::new()
                }
            },
            event = next_event(&mut node_events) => match event {
                // Something came another way: carry it for neighbours in the group now.
                Ok(NodeEvent::MessageReceived { via, .. }) if via != VIA => refresh(&node, &mut router, now()).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => refresh(&node, &mut router, now()).await,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                Ok(_) => Vec::new(),
            },
            () = outbox.changed() => {
                push_outbox(&node, &mut router, now(), &mut links).await;
                Vec::new()
            }
            post = next_post(&mut posts) => match post {
                Ok(bytes) => router.nearby(&bytes, None),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Vec::new(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    posts = None;
                    Vec::new()
                }
            },
            _ = tick.tick() => {
                ticks += 1;
                let mut outputs = router.tick(now(), salt());
                if ticks.is_multiple_of(REFRESH_TICKS) {
                    outputs.extend(refresh(&node, &mut router, now()).await);
                }
                outputs
            }
        };
        let outputs = hear_nearby(&node, &mut router, outputs);
        apply(&node, outputs, &mut links).await;
        *stats.lock().expect("stats lock") = router.stats();
    }
}

/// The host's next nearby post; never, for a host that posts none.
async fn next_post(
    posts: &mut Option<tokio::sync::broadcast::Receiver<Vec<u8>>>,
) -> Result<Vec<u8>, tokio::sync::broadcast::error::RecvError> {
    match posts {
        Some(posts) => posts.recv().await,
        None => std::future::pending().await,
    }
}

/// What the router heard on the nearby channel goes to the host's session; what the session
/// passes on goes out again, to every neighbour but the one it came from.
fn hear_nearby<H: MeshHost>(node: &Arc<H>, router: &mut Router, outputs: Vec<Output>) -> Vec<Output> {
    let mut out = Vec::with_capacity(outputs.len());
    let mut pending = outputs;
    while !pending.is_empty() {
        let mut next = Vec::new();
        for output in pending {
            match output {
                Output::Nearby { link, bytes } => {
                    if let Some(relay) = node.nearby_heard(&bytes) {
                        next.extend(router.nearby(&relay, Some(link)));
                    }
                }
                other => out.push(other),
            }
        }
        pending = next;
    }
    out
}

/// The next event of a host that has events; never, for one that has none.
async fn next_event(
    events: &mut Option<tokio::sync::broadcast::Receiver<NodeEvent>>,
) -> Result<NodeEvent, tokio::sync::broadcast::error::RecvError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Follows the host's topics and carries its recent envelopes for neighbours in its groups
/// (envelopes that came by libp2p or a bundle included).
async fn refresh<H: MeshHost>(node: &Arc<H>, router: &mut Router, now_ms: u64) -> Vec<Output> {
    let Some(MeshInterests { delivered: readable, carried: own }) = node.interests().await else { return Vec::new() };
    // Every topic we can read is ours, back to the start of history: a carrier may bring
    // what was written days ago.
    let mut outputs = router.set_interests(readable);
    let missing: Vec<_> = own.into_iter().filter(|(id, _)| !router.knows(id)).collect();
    if missing.is_empty() {
        return outputs;
    }
    let envelopes = node.envelopes(missing).await;
    outputs.extend(envelopes.into_iter().flat_map(|envelope| router.adopt(envelope, now_ms)));
    outputs
}

/// Originates what waits in the outbox.
async fn push_outbox<H: MeshHost>(
    node: &Arc<H>,
    router: &mut Router,
    now_ms: u64,
    links: &mut HashMap<LinkId, OpenLink>,
) {
    let Some((live, forgotten)) = node.outbox().await else { return };
    // What was sealed again went out of the store: our cache must not hand the old copy on.
    for id in &forgotten {
        router.forget(&crate::sync::short_id(id));
    }
    for envelope in live {
        // Held already (adopted, or pushed before): the router reports a hand-over it made.
        let outputs = router.originate(envelope, now_ms);
        apply(node, outputs, links).await;
    }
}

async fn apply<H: MeshHost>(node: &Arc<H>, outputs: Vec<Output>, links: &mut HashMap<LinkId, OpenLink>) {
    let mut handed = Vec::new();
    let mut closed = HashSet::new();
    for output in outputs {
        match output {
            Output::Send { link, fragment } => {
                if let Some(open) = links.get(&link) {
                    // A full queue drops the fragment, as the air would; the frame is lost and
                    // reconciliation brings its content back.
                    let _ = open.writer.try_send(fragment);
                }
            }
            Output::Deliver { envelope } => node.deliver(envelope),
            Output::Close { link, why } => {
                tracing::debug!(link, why, "closing a mesh link");
                closed.insert(link);
            }
            Output::HandedOver { id } => handed.push(id),
            // Taken by the host's session before (`hear_nearby`).
            Output::Nearby { .. } => {}
        }
    }
    for link in closed {
        if let Some(open) = links.get(&link) {
            open.link.close();
        }
    }
    if !handed.is_empty() {
        node.handed_over(handed).await;
    }
}

async fn read_link(link: Arc<dyn Link>, id: LinkId, events: mpsc::Sender<LinkEvent>) {
    while let Some(fragment) = link.recv().await {
        if events.send(LinkEvent::Fragment(id, fragment)).await.is_err() {
            return;
        }
    }
    let _ = events.send(LinkEvent::Down(id)).await;
}

async fn write_link(link: Arc<dyn Link>, mut queue: mpsc::Receiver<Vec<u8>>) {
    while let Some(fragment) = queue.recv().await {
        match link.send(fragment).await {
            Ok(()) => {}
            // The radio's own queue is full: this fragment is lost, as on the air, and the
            // next reconciliation brings back what its frame carried.
            Err(crate::Error::Limit(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => {
                link.close();
                return;
            }
        }
    }
}

fn salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    // A failing OS generator only weakens the reconciliation's hash salt, not any secret.
    let _ = getrandom::fill(&mut salt);
    salt
}
