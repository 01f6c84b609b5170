//! The node for apps: one object over `weft_core::node::Node`, async where it does IO, events
//! through a listener the app implements, and a Bluetooth radio the app drives.
//!
//! The bindings own the tokio runtime: every async method runs on it and the host language only
//! awaits the result, so calls are safe from any host thread and need no runtime of the host's.
//! A panic inside Weft ends that call with `WeftError::Internal`, never the host process.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use weft_core::account::{
    Account, ContactInfo, ConversationInfo, ConversationKind, ConversationOverview, MemberInfo, MessageAction,
    MessageInfo, system_clock,
};
use weft_core::crypto::OsEntropy;
use weft_core::mesh::driver::MeshHandle;
use weft_core::mesh::radio::feed::{self, RadioEvents};
use weft_core::net::{Keypair, NetConfig, NetHandle};
use weft_core::node::{Node, NodeEvent};
use weft_core::store::DatabaseKey;

use crate::enums::{ContactStatus, DeliveryState, MessageKind, Via};
use weft_core::identity::fingerprint;

use crate::{Identity, WeftError, hex};

pub(crate) static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("weft")
        .enable_all()
        .build()
        .expect("the Weft runtime starts")
});

/// Runs `f` on the bindings' runtime; a panic becomes an error.
pub(crate) async fn on_runtime<T: Send + 'static>(
    f: impl Future<Output = Result<T, WeftError>> + Send + 'static,
) -> Result<T, WeftError> {
    match crate::host_wakes::CountingWakes(RUNTIME.spawn(f)).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(WeftError::Internal { detail: "a panic inside Weft ended this call".into() }),
        Err(_) => Err(WeftError::Internal { detail: "the call was cancelled".into() }),
    }
}

#[derive(uniffi::Record)]
pub struct Contact {
    pub name: String,
    pub account: String,
    pub fingerprint: String,
    pub status: ContactStatus,
    pub verified: bool,
    /// The user blocked them (see `WeftNode.block`).
    pub blocked: bool,
    pub conversation_id: String,
}

impl From<ContactInfo> for Contact {
    fn from(c: ContactInfo) -> Self {
        Contact {
            name: c.name,
            account: hex(&c.account),
            fingerprint: c.fingerprint,
            status: c.status.into(),
            verified: c.verified,
            blocked: c.blocked,
            conversation_id: hex(&c.conversation),
        }
    }
}

#[derive(uniffi::Record)]
pub struct Conversation {
    pub id: String,
    pub name: String,
    pub is_group: bool,
    pub members: u32,
    /// False once we were removed from the group, or asked to leave it.
    pub active: bool,
    /// Others' messages after the read mark (in `conversations()`; 0 elsewhere).
    pub unread: u32,
    /// The newest message or event (in `conversations()`; `None` elsewhere).
    pub last_message: Option<Message>,
}

impl From<ConversationInfo> for Conversation {
    fn from(c: ConversationInfo) -> Self {
        Conversation {
            id: hex(&c.id),
            name: c.name,
            is_group: c.kind == ConversationKind::Group,
            members: c.members as u32,
            active: c.active,
            unread: 0,
            last_message: None,
        }
    }
}

impl From<ConversationOverview> for Conversation {
    fn from(o: ConversationOverview) -> Self {
        Conversation { unread: o.unread as u32, last_message: o.last.map(Into::into), ..o.info.into() }
    }
}

/// How a `sync_once` ended.
#[derive(uniffi::Record)]
pub struct SyncReport {
    /// Envelopes fetched from peers while it ran.
    pub envelopes: u32,
    /// Peers connected at the end.
    pub peers: u32,
    /// Caught up before the deadline (false: the deadline came first).
    pub finished_early: bool,
}

#[derive(uniffi::Record)]
pub struct Message {
    pub id: String,
    /// The conversation's name, as shown (never to address it by: use `conversation_id`).
    pub conversation: String,
    pub conversation_id: String,
    /// The sender's name, as shown.
    pub sender: String,
    /// The sender's account id.
    pub sender_account: String,
    pub outgoing: bool,
    pub sent_ms: u64,
    pub kind: MessageKind,
    pub body: String,
    /// Our text messages: how far they got.
    pub state: Option<DeliveryState>,
    /// Received messages: the path that brought them first.
    pub via: Option<Via>,
    /// The message this one replies to (its id).
    pub reply_to: Option<String>,
    /// Its sender edited it: `body` is the latest text.
    pub edited: bool,
    /// Its sender deleted it for everyone: `body` is empty.
    pub deleted: bool,
    /// Each emoji given to it, most given first.
    pub reactions: Vec<Reaction>,
    /// In `MessageReceived` events only: the message is not new; the reaction, edit or delete
    /// with this id changed it (update the message shown, do not add one).
    pub changed_by: Option<String>,
    /// The file it carries (`body` is then its caption).
    pub attachment: Option<Attachment>,
}

/// A message of the nearby channel: public, from whoever is in radio range, signed by a
/// session key that changes with each session and is never an account's.
#[derive(uniffi::Record, Clone, Debug, PartialEq, Eq)]
pub struct NearbyMessage {
    /// The session key that signed it (hex): what to mute or block.
    pub sender: String,
    /// The nickname its author chose, with the key's first 8 hex digits (two people who chose
    /// the same nickname still look different).
    pub name: String,
    pub text: String,
    pub sent_ms: u64,
    /// Radio hops it travelled (0: from its author's own radio).
    pub hops: u8,
}

impl From<weft_core::nearby::Shown> for NearbyMessage {
    fn from(m: weft_core::nearby::Shown) -> Self {
        NearbyMessage { sender: hex(&m.sender), name: m.name, text: m.text, sent_ms: m.sent_ms, hops: m.hops }
    }
}

fn nearby_sender(sender: &str) -> Result<[u8; 32], WeftError> {
    weft_core::nearby::sender_from_hex(sender).ok_or_else(|| WeftError::InvalidInput {
        detail: format!("{sender:?} is not a nearby sender (64 hex digits, as its messages give it)"),
    })
}

/// A file a message carries, and how far it has come.
#[derive(uniffi::Record, Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The name its sender gave it (checked: no folders, no hidden extension).
    pub name: String,
    /// Its media type as its sender said: show it, never trust it.
    pub mime: String,
    pub size: u64,
    /// Envelopes here, of `total`: whole (and each checked) when equal.
    pub have: u32,
    pub total: u32,
    /// Being fetched now (files over 25 MiB wait until `fetch_attachment`).
    pub fetching: bool,
}

impl From<weft_core::account::AttachmentInfo> for Attachment {
    fn from(a: weft_core::account::AttachmentInfo) -> Self {
        Attachment { name: a.name, mime: a.mime, size: a.size, have: a.have, total: a.total, fetching: a.fetching }
    }
}

/// One emoji given to a message: by how many members, and whether by us.
#[derive(uniffi::Record)]
pub struct Reaction {
    pub emoji: String,
    pub count: u32,
    pub mine: bool,
}

impl From<MessageInfo> for Message {
    fn from(m: MessageInfo) -> Self {
        Message {
            id: m.id,
            conversation: m.conversation,
            conversation_id: hex(&m.conversation_id),
            sender: m.sender,
            sender_account: hex(&m.sender_account),
            outgoing: m.outgoing,
            sent_ms: m.sent_ms,
            kind: MessageKind::from_core(&m.kind),
            body: m.body,
            state: m.state.map(DeliveryState::from_core),
            via: m.via.as_deref().map(Via::from_core),
            reply_to: m.reply_to,
            edited: m.edited,
            deleted: m.deleted,
            reactions: m
                .reactions
                .into_iter()
                .map(|r| Reaction { emoji: r.emoji, count: r.count, mine: r.mine })
                .collect(),
            changed_by: m.changed_by,
            attachment: m.attachment.map(Attachment::from),
        }
    }
}

/// What a panic wipe erased.
#[derive(uniffi::Record)]
pub struct Wiped {
    /// Files erased.
    pub files: u32,
    /// Bytes overwritten before the files were unlinked.
    pub overwritten: u64,
    /// Bytes the files held.
    pub held: u64,
    pub elapsed_ms: u64,
}

impl From<&weft_core::wipe::Wiped> for Wiped {
    fn from(w: &weft_core::wipe::Wiped) -> Self {
        Wiped {
            files: w.files as u32,
            overwritten: w.overwritten,
            held: w.held,
            elapsed_ms: w.elapsed.as_millis() as u64,
        }
    }
}

/// The panic wipe of a home no node has open (the app is starting, or its node is gone): see
/// [`WeftNode::wipe`].
#[uniffi::export]
pub fn wipe_home(home: String) -> Result<Wiped, WeftError> {
    Ok(Wiped::from(&weft_core::wipe::wipe_home(std::path::Path::new(&home))?))
}

#[derive(uniffi::Record)]
pub struct Member {
    pub name: String,
    pub account: String,
    pub admin: bool,
    pub is_me: bool,
}

impl From<MemberInfo> for Member {
    fn from(m: MemberInfo) -> Self {
        Member { name: m.name, account: hex(&m.account), admin: m.admin, is_me: m.is_me }
    }
}

/// What the node tells the app.
#[derive(uniffi::Enum)]
#[allow(clippy::large_enum_variant, reason = "one short-lived value per event, handed across the FFI by value")]
pub enum Event {
    MessageReceived {
        message: Message,
        via: Via,
    },
    DeliveryChanged {
        message_id: String,
        state: DeliveryState,
    },
    /// A message of ours that waited past its day or epoch was sealed again: it goes by
    /// `new_id` from now on.
    MessageResealed {
        old_id: String,
        new_id: String,
    },
    /// Someone asked to be a contact: `name` to show; `account` to accept them by, and its
    /// `fingerprint` to compare out of band.
    ContactRequest {
        name: String,
        account: String,
        fingerprint: String,
    },
    /// A contact we had asked accepted (or asked us in turn).
    ContactAnswered {
        name: String,
        account: String,
        fingerprint: String,
    },
    JoinedGroup {
        name: String,
        conversation_id: String,
    },
    PeerConnected {
        peer: String,
        via: Via,
    },
    PeerDisconnected {
        peer: String,
        via: Via,
    },
    /// A new device answered this device's link over the network: once the user saw its
    /// screen show `code`, grant it with `grant_arrived_device(code_value)`.
    LinkRequested {
        request: crate::devices::LinkRequest,
    },
    /// A piece of a file arrived, checked and stored: `have` of `total` envelopes of the file
    /// message `message_id` carries are here (whole when equal: `attachment_bytes` or
    /// `save_attachment` then give it).
    AttachmentProgress {
        message_id: String,
        conversation_id: String,
        have: u32,
        total: u32,
    },
    /// A message on the nearby channel (not muted, not blocked), from a stranger's session.
    Nearby {
        message: NearbyMessage,
    },
    /// The account revoked this device: it reads and sends nothing more (sends fail with
    /// `WeftError.Revoked`). The app should say so and offer to link the device anew.
    ThisDeviceRevoked,
    /// This listener fell behind (it took longer than events came) and `missed` events were
    /// dropped before this one; the app should reload what it shows (history, contacts).
    Lagged {
        missed: u64,
    },
}

impl From<NodeEvent> for Event {
    fn from(e: NodeEvent) -> Self {
        match e {
            NodeEvent::MessageReceived { message, via } => {
                Event::MessageReceived { message: message.into(), via: Via::from_core(via) }
            }
            NodeEvent::DeliveryChanged { id, state } => Event::DeliveryChanged { message_id: id, state: state.into() },
            NodeEvent::MessageResealed { old_id, new_id } => Event::MessageResealed { old_id, new_id },
            NodeEvent::ContactRequest { name, account } => {
                Event::ContactRequest { name, account: hex(&account), fingerprint: fingerprint(&account) }
            }
            NodeEvent::ContactAnswered { name, account } => {
                Event::ContactAnswered { name, account: hex(&account), fingerprint: fingerprint(&account) }
            }
            NodeEvent::JoinedGroup { name, conversation } => {
                Event::JoinedGroup { name, conversation_id: hex(&conversation) }
            }
            NodeEvent::PeerConnected { peer, via } => Event::PeerConnected { peer, via: Via::from_core(via) },
            NodeEvent::PeerDisconnected { peer, via } => Event::PeerDisconnected { peer, via: Via::from_core(via) },
            NodeEvent::LinkRequested { name, device, code } => Event::LinkRequested {
                request: crate::devices::LinkRequest {
                    name,
                    device: hex(&device),
                    code_value: code.chars().filter(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0),
                    code,
                },
            },
            NodeEvent::AttachmentProgress { message, conversation, have, total } => {
                Event::AttachmentProgress { message_id: message, conversation_id: hex(&conversation), have, total }
            }
            NodeEvent::Nearby { message } => Event::Nearby { message: message.into() },
            NodeEvent::ThisDeviceRevoked => Event::ThisDeviceRevoked,
        }
    }
}

/// What an app's callback may throw; Weft logs it and carries on.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum CallbackError {
    #[error("the app's callback failed: {detail}")]
    Failed { detail: String },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for CallbackError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        CallbackError::Failed { detail: e.reason }
    }
}

/// Implemented by the app to hear what happens. Called on a thread of the listener's own, one
/// event at a time, in order: a listener that takes its time delays its own events only, never
/// the app's calls into Weft; one that falls too far behind gets `Event::Lagged`.
/// Every method returns a result so that an exception in the app's code comes back as an
/// error (uniffi would otherwise panic on it) and is only logged.
#[uniffi::export(foreign)]
pub trait EventListener: Send + Sync {
    fn on_event(&self, event: Event) -> Result<(), CallbackError>;
}

/// A listener's registration: events stop when it is cancelled or dropped.
#[derive(uniffi::Object)]
pub struct Subscription {
    delivery: Arc<crate::listeners::Delivery>,
}

#[uniffi::export]
impl Subscription {
    /// Stops the events; the listener is not called after the event it may be handling now.
    pub fn cancel(&self) {
        self.delivery.stop();
    }

    /// Events this listener missed because it fell behind (each time, it got `Lagged`).
    pub fn missed(&self) -> u64 {
        self.delivery.missed()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.delivery.stop();
    }
}

/// Errors a radio driver reports to Weft.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum RadioError {
    #[error("the link is gone")]
    LinkGone,
    #[error("the radio failed: {detail}")]
    Failed { detail: String },
}

impl From<uniffi::UnexpectedUniFFICallbackError> for RadioError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        RadioError::Failed { detail: e.reason }
    }
}

/// Implemented by the app over its platform's Bluetooth (peripheral and central). Link ids and
/// fragments are opaque: the app moves bytes, Weft decides what they are.
#[uniffi::export(foreign)]
pub trait RadioDriver: Send + Sync {
    /// Writes one fragment to `link`, in order.
    fn send(&self, link: u64, fragment: Vec<u8>) -> Result<(), RadioError>;
    /// Disconnects `link`.
    fn disconnect(&self, link: u64) -> Result<(), RadioError>;
}

/// The app's driver as the mesh sees it. Once the node is closed it is never called again, so
/// no Weft thread calls into a host that may be shutting down.
pub(crate) struct ForeignDriver {
    pub(crate) driver: Arc<dyn RadioDriver>,
    pub(crate) silenced: Arc<AtomicBool>,
}

impl feed::Driver for ForeignDriver {
    fn send(&self, link: u64, fragment: Vec<u8>) -> weft_core::Result<()> {
        if self.silenced.load(Ordering::SeqCst) {
            return Err(weft_core::Error::Closed);
        }
        // A driver that throws loses this fragment and the link; nothing else. (uniffi turns
        // a host exception into an error; no Rust unwinding crosses the boundary.)
        self.driver.send(link, fragment).map_err(|_| weft_core::Error::Closed)
    }

    fn close(&self, link: u64) {
        if !self.silenced.load(Ordering::SeqCst)
            && let Err(e) = self.driver.disconnect(link)
        {
            tracing::debug!(link, error = %e, "the app's radio failed to close a link");
        }
    }
}

/// How the app reports what its radio does. Safe from any thread; calls after the node closed
/// do nothing.
#[derive(uniffi::Object)]
pub struct RadioHandle {
    pub(crate) events: RadioEvents,
    /// Which of the node's meshes this radio drives (for `detach_radio`).
    pub(crate) id: u64,
}

#[uniffi::export]
impl RadioHandle {
    /// A neighbour connected; `initiator` is true on the side that opened the link (central).
    pub fn link_up(&self, link: u64, mtu: u32, initiator: bool) -> Result<(), WeftError> {
        Ok(self.events.link_up(link, mtu, initiator)?)
    }

    /// A fragment arrived on `link`. Oversized fragments and unknown links are dropped.
    pub fn frame(&self, link: u64, fragment: Vec<u8>) {
        self.events.frame(link, fragment);
    }

    pub fn link_down(&self, link: u64) {
        self.events.link_down(link);
    }
}

/// Where to listen and whom to call on the internet.
#[derive(uniffi::Record)]
pub struct NetworkConfig {
    /// Multiaddrs, e.g. `/ip4/0.0.0.0/tcp/0`; empty for the default (every interface).
    pub listen: Vec<String>,
    pub bootstrap: Vec<String>,
    pub relays: Vec<String>,
    pub mdns: bool,
    /// Connect directly to members behind NATs by punching holes through a relay: they learn
    /// this device's IP address. Off, the relay carries everything (THREAT_MODEL N18).
    #[uniffi(default = true)]
    pub hole_punching: bool,
}

impl NetworkConfig {
    pub(crate) fn into_core(self) -> Result<NetConfig, WeftError> {
        let mut net_config = NetConfig { mdns: self.mdns, hole_punching: self.hole_punching, ..NetConfig::default() };
        if !self.listen.is_empty() {
            net_config.listen = parse_addrs(self.listen)?;
        }
        net_config.bootstrap = parse_addrs(self.bootstrap)?;
        net_config.relays = parse_addrs(self.relays)?;
        Ok(net_config)
    }
}

#[derive(uniffi::Record)]
pub struct Status {
    pub peers: u32,
    pub relays_connected: u32,
    /// Radios attached and not detached.
    pub radios: u32,
    pub mesh_links: u32,
    pub outbox: u32,
}

/// An open account home, running. Every method is safe from any thread.
#[derive(uniffi::Object)]
pub struct WeftNode {
    /// Taken out when the node closes, so the account (and its home's lock) is released then,
    /// not when the host's garbage collector gets to this object.
    node: Mutex<Option<Arc<Node>>>,
    net: Mutex<Option<Arc<NetHandle>>>,
    /// The meshes of the attached radios, by radio id.
    meshes: Mutex<Vec<(u64, MeshHandle)>>,
    next_radio: std::sync::atomic::AtomicU64,
    closed: AtomicBool,
    /// Set once closed: app drivers and listeners are not called after that.
    silenced: Arc<AtomicBool>,
    /// Every listener's delivery, so that shutdown can wait for each to let go of the listener.
    deliveries: Mutex<Vec<Arc<crate::listeners::Delivery>>>,
}

/// Opens the account in `home` with the 32-byte database key the app keeps in the platform
/// keystore, creating it (named `name`) when the home has none yet.
#[uniffi::export]
pub async fn open_node(home: String, database_key: Vec<u8>, name: Option<String>) -> Result<Arc<WeftNode>, WeftError> {
    on_runtime(async move {
        let key: [u8; 32] = database_key
            .try_into()
            .map_err(|_| WeftError::InvalidInput { detail: "the database key must be 32 bytes".into() })?;
        let home = PathBuf::from(home);
        let exists = home.join(weft_core::store::DB_FILE).exists();
        let node = Node::start(move || {
            let key = DatabaseKey::from_bytes(key);
            if exists {
                Account::open_with_key(&home, &key, Box::new(OsEntropy), system_clock())
            } else {
                Account::create_with_key(&home, &key, name.as_deref(), Box::new(OsEntropy), system_clock())
            }
        })
        .await?;
        Ok(WeftNode::over(node))
    })
    .await
}

impl WeftNode {
    /// The bindings' node over a started core node.
    pub(crate) fn over(node: Node) -> Arc<WeftNode> {
        Arc::new(WeftNode {
            node: Mutex::new(Some(Arc::new(node))),
            net: Mutex::new(None),
            meshes: Mutex::new(Vec::new()),
            next_radio: std::sync::atomic::AtomicU64::new(0),
            closed: AtomicBool::new(false),
            silenced: Arc::new(AtomicBool::new(false)),
            deliveries: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn core(&self) -> Result<Arc<Node>, WeftError> {
        self.node()
    }
}

fn parse_addrs(addrs: Vec<String>) -> Result<Vec<weft_core::net::Multiaddr>, WeftError> {
    addrs
        .into_iter()
        .map(|a| a.parse().map_err(|_| WeftError::InvalidInput { detail: format!("{a:?} is not a multiaddr") }))
        .collect()
}

/// An id as the API takes it: 64 hex characters, exactly. The API takes no names: a name is
/// what someone chose to be shown as, and a contact could choose one that is another
/// conversation's (issue 15). Conversations go by `Conversation.id` (a contact's is
/// `Contact.conversation_id`), contacts and members by their account id.
pub(crate) fn exact(what: &str, id: String) -> Result<String, WeftError> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(WeftError::InvalidInput {
            detail: format!("a {what} id is 64 hex characters, and {id:?} is not one (names are not taken)"),
        })
    }
}

/// A message id as the bindings give them (64 hex characters).
fn io_error(path: &str, e: std::io::Error) -> WeftError {
    WeftError::Storage { detail: format!("{path}: {e}") }
}

fn message_id(id: String) -> Result<weft_core::envelope::EnvelopeId, WeftError> {
    let id = exact("message", id)?;
    weft_core::envelope::EnvelopeId::from_hex(&id)
        .ok_or_else(|| WeftError::InvalidInput { detail: format!("{id:?} is not a message id") })
}

impl WeftNode {
    async fn act(&self, conversation: String, action: MessageAction) -> Result<Message, WeftError> {
        let conversation = exact("conversation", conversation)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.act(conversation, action).await?.into()) }).await
    }

    fn node(&self) -> Result<Arc<Node>, WeftError> {
        self.node.lock().map_err(poisoned)?.clone().ok_or_else(|| WeftError::Closed {
            detail: "shutdown() was called; open the home again for a new node".into(),
        })
    }
}

#[uniffi::export]
impl WeftNode {
    /// Joins the internet side (libp2p); returns the addresses it listens on.
    pub async fn start_network(&self, config: NetworkConfig) -> Result<Vec<String>, WeftError> {
        let node = self.node()?;
        let net_config = config.into_core()?;
        let net = on_runtime(async move {
            Ok(Arc::new(weft_core::net::start(node, net_config, Keypair::generate_ed25519()).await?))
        })
        .await?;
        let addrs = {
            let net = net.clone();
            on_runtime(async move { Ok(net.listen_addrs().await) }).await?
        };
        if let Some(old) = self.net.lock().map_err(poisoned)?.replace(net) {
            old.stop();
        }
        Ok(addrs.iter().map(|a| a.to_string()).collect())
    }

    pub fn stop_network(&self) {
        if let Ok(Some(net)) = self.net.lock().map(|mut n| n.take()) {
            net.stop();
        }
    }

    /// Hands Weft a Bluetooth radio the app drives; returns where the app reports its links
    /// and fragments.
    pub fn attach_radio(&self, driver: Arc<dyn RadioDriver>) -> Result<Arc<RadioHandle>, WeftError> {
        let node = self.node()?;
        let driver = ForeignDriver { driver, silenced: self.silenced.clone() };
        let (radio, events) = feed::fed_radio(Arc::new(driver), "app");
        let _guard = RUNTIME.enter();
        let mesh = weft_core::mesh::driver::start(node, radio, weft_core::mesh::RouterConfig::default());
        let id = self.next_radio.fetch_add(1, Ordering::SeqCst);
        self.meshes.lock().map_err(poisoned)?.push((id, mesh));
        Ok(Arc::new(RadioHandle { events, id }))
    }

    /// Stops the mesh over a radio the app attached (the Bluetooth adapter went off, the app
    /// stops its radio) and waits until it stopped: the driver is not called after this
    /// returns. Each attach ran a mesh until shutdown before, so start/stop cycles piled up.
    pub fn detach_radio(&self, radio: Arc<RadioHandle>) -> Result<(), WeftError> {
        let mesh = {
            let mut meshes = self.meshes.lock().map_err(poisoned)?;
            let at = meshes.iter().position(|(id, _)| *id == radio.id);
            at.map(|i| meshes.remove(i).1)
        };
        let mesh = mesh.ok_or_else(|| WeftError::NotFound { detail: "that radio is not attached".into() })?;
        RUNTIME.block_on(mesh.shutdown());
        Ok(())
    }

    /// Calls `listener` with every event from now on, until the subscription is cancelled.
    pub fn subscribe(&self, listener: Arc<dyn EventListener>) -> Result<Arc<Subscription>, WeftError> {
        let events = self.node()?.subscribe();
        let delivery = {
            let _guard = RUNTIME.enter();
            crate::listeners::Delivery::start(events, listener)
                .map_err(|e| WeftError::Internal { detail: format!("no thread for the listener: {e}") })?
        };
        let delivery = Arc::new(delivery);
        let mut all = self.deliveries.lock().map_err(poisoned)?;
        all.retain(|d| !d.is_stopped());
        all.push(delivery.clone());
        Ok(Arc::new(Subscription { delivery }))
    }

    /// Replaces the contact link (one that leaked) and returns the new one: requests sent to
    /// the old one are no longer opened, contacts get the new one, the fingerprint stays. The
    /// account's first device only (a device revocation does it too).
    pub async fn replace_link(&self) -> Result<String, WeftError> {
        let node = self.node()?;
        on_runtime(async move { Ok(node.replace_link().await?) }).await
    }

    pub async fn link(&self) -> Result<String, WeftError> {
        let node = self.node()?;
        on_runtime(async move { Ok(node.link().await?) }).await
    }

    pub async fn add_contact(&self, link: String, name: Option<String>) -> Result<Contact, WeftError> {
        let node = self.node()?;
        on_runtime(async move { Ok(node.add_contact(link, name).await?.into()) }).await
    }

    /// Accepts a contact's request; `account` is their account id (`Contact.account`).
    pub async fn accept_contact(&self, account: String) -> Result<Contact, WeftError> {
        let name = exact("contact", account)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.accept_contact(name).await?.into()) }).await
    }

    pub async fn contacts(&self) -> Result<Vec<Contact>, WeftError> {
        let node = self.node()?;
        on_runtime(async move { Ok(node.contacts().await?.into_iter().map(Into::into).collect()) }).await
    }

    /// Every conversation with its unread count and last message, the one written in last
    /// first.
    pub async fn conversations(&self) -> Result<Vec<Conversation>, WeftError> {
        let node = self.node()?;
        on_runtime(async move { Ok(node.overview().await?.into_iter().map(Into::into).collect()) }).await
    }

    /// The safety number shared with a contact (by account id), to compare in person or over
    /// another channel; the same on both sides.
    pub async fn safety_number(&self, contact: String) -> Result<String, WeftError> {
        let contact = exact("contact", contact)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.safety_number(contact).await?) }).await
    }

    /// Records that the user compared safety numbers with a contact (by account id).
    pub async fn verify_contact(&self, contact: String) -> Result<Contact, WeftError> {
        let contact = exact("contact", contact)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.mark_verified(contact).await?.into()) }).await
    }

    /// Declines a contact request (by account id): they are forgotten and the same request is
    /// not shown again. Only a request that waits for an answer can be rejected.
    pub async fn reject_contact(&self, contact: String) -> Result<(), WeftError> {
        let contact = exact("contact", contact)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.reject_contact(contact).await?) }).await
    }

    /// Forgets a contact (by account id) and the 1:1 conversation with them; shared groups
    /// stay.
    pub async fn delete_contact(&self, contact: String) -> Result<(), WeftError> {
        let contact = exact("contact", contact)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.delete_contact(contact).await?) }).await
    }

    /// Blocks an account (a contact's or a group member's id): their requests are dropped,
    /// their messages not shown anywhere, and nothing of ours goes to them.
    pub async fn block(&self, account: String) -> Result<(), WeftError> {
        let account = exact("contact or member", account)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.block(account).await?) }).await
    }

    pub async fn unblock(&self, account: String) -> Result<(), WeftError> {
        let account = exact("contact or member", account)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.unblock(account).await?) }).await
    }

    /// Leaves a group (by conversation id): an admin's device removes us when our request
    /// reaches it; from now on nothing more is sent there. The group's only admin cannot leave
    /// while others are in it.
    pub async fn leave_group(&self, group: String) -> Result<(), WeftError> {
        let group = exact("conversation", group)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.leave_group(group).await?) }).await
    }

    /// Renames a group (by conversation id) for every member; admins only.
    pub async fn rename_group(&self, group: String, name: String) -> Result<(), WeftError> {
        let group = exact("conversation", group)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.rename_group(group, name).await?) }).await
    }

    /// Tells Weft that the device's network changed (Android's `NetworkCallback`, iOS's
    /// `NWPathMonitor`): connections that died with the old network are dropped and peers
    /// and relays dialled again at once, rather than after a timeout. Does nothing while the
    /// network is stopped.
    pub fn network_changed(&self) {
        if let Ok(Some(net)) = self.net.lock().map(|n| n.clone()) {
            net.network_changed();
        }
    }

    /// Catches up with the network once, for work the OS schedules in the background (a
    /// `BGAppRefreshTask`, a `WorkManager` job): waits until every peer's news is fetched and
    /// ours pushed, or until `deadline_ms` (milliseconds from now) passes, whichever comes
    /// first. The network must be started (`start_network`).
    pub async fn sync_once(&self, deadline_ms: u64) -> Result<SyncReport, WeftError> {
        let net = self.net.lock().map_err(poisoned)?.clone().ok_or_else(|| WeftError::Network {
            detail: "the network is not started: call start_network first".into(),
        })?;
        on_runtime(async move {
            net.refresh();
            let report = net.catch_up(std::time::Duration::from_millis(deadline_ms)).await?;
            Ok(SyncReport {
                envelopes: report.fetched.min(u32::MAX as u64) as u32,
                peers: report.peers as u32,
                finished_early: report.caught_up,
            })
        })
        .await
    }

    pub async fn create_group(&self, name: String) -> Result<Conversation, WeftError> {
        let node = self.node()?;
        on_runtime(async move { Ok(node.create_group(name).await?.into()) }).await
    }

    /// Invites a contact (by account id) into a group (by conversation id).
    pub async fn invite(&self, group: String, contact: String) -> Result<(), WeftError> {
        let (group, contact) = (exact("conversation", group)?, exact("contact", contact)?);
        let node = self.node()?;
        on_runtime(async move { Ok(node.invite(group, contact).await?) }).await
    }

    /// Removes a member (by account id) from a group (by conversation id).
    pub async fn remove_member(&self, group: String, member: String) -> Result<(), WeftError> {
        let (group, member) = (exact("conversation", group)?, exact("member", member)?);
        let node = self.node()?;
        on_runtime(async move { Ok(node.remove_member(group, member).await?) }).await
    }

    /// Stores the message durably and queues it on every path; returns when it is stored.
    pub async fn send(&self, conversation: String, text: String) -> Result<Message, WeftError> {
        let conversation = exact("conversation", conversation)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.send(conversation, text).await?.into()) }).await
    }

    /// A reply quoting message `to` (its id) of the conversation; stored durably, like `send`.
    pub async fn reply(&self, conversation: String, to: String, text: String) -> Result<Message, WeftError> {
        let to = message_id(to)?;
        self.act(conversation, MessageAction::Reply { to, text }).await
    }

    /// Sends a file (up to 100 MiB) with a caption (may be empty). Its envelopes are stored
    /// and served to whoever asks; members fetch them piece by piece from any peer, relay,
    /// mesh neighbour (files up to 256 KiB by default) or bundle, each piece checked.
    pub async fn send_file_bytes(
        &self,
        conversation: String,
        name: String,
        mime: String,
        bytes: Vec<u8>,
        caption: String,
    ) -> Result<Message, WeftError> {
        let conversation = exact("conversation", conversation)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.send_file(conversation, bytes, name, mime, caption).await?.into()) }).await
    }

    /// [`Self::send_file_bytes`] with the file at `path` (its name is the path's last part).
    pub async fn send_file(
        &self,
        conversation: String,
        path: String,
        mime: String,
        caption: String,
    ) -> Result<Message, WeftError> {
        let file = std::path::Path::new(&path);
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
            .ok_or_else(|| WeftError::InvalidInput { detail: format!("{path} has no file name Weft can send") })?;
        let len = std::fs::metadata(file).map_err(|e| io_error(&path, e))?.len();
        if len > weft_core::attachment::MAX_ATTACHMENT_LEN {
            return Err(WeftError::InvalidInput { detail: format!("{path} is over 100 MiB") });
        }
        let bytes = std::fs::read(file).map_err(|e| io_error(&path, e))?;
        self.send_file_bytes(conversation, name, mime, bytes, caption).await
    }

    /// How far the file message `message_id` carries has come; asks for it if it was not
    /// being fetched (files over 25 MiB are not, unasked).
    pub async fn fetch_attachment(&self, message_id: String) -> Result<Attachment, WeftError> {
        let id = self::message_id(message_id)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.fetch_attachment(id).await?.into()) }).await
    }

    /// The whole file message `message_id` carries, its BLAKE3 hash checked; `None` while
    /// pieces are missing (it is then asked for; `AttachmentProgress` events say how far).
    pub async fn attachment_bytes(&self, message_id: String) -> Result<Option<Vec<u8>>, WeftError> {
        let id = self::message_id(message_id)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.attachment_bytes(id).await?.map(|(_, bytes)| bytes)) }).await
    }

    /// Writes the file message `message_id` carries to `path` once it is whole and checked;
    /// `false` while pieces are missing (it is then asked for).
    pub async fn save_attachment(&self, message_id: String, path: String) -> Result<bool, WeftError> {
        let Some(bytes) = self.attachment_bytes(message_id).await? else { return Ok(false) };
        // Its own temporary name: two saves at once never share one.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let partial = format!("{path}.{}-{n}.partial", std::process::id());
        std::fs::write(&partial, &bytes).map_err(|e| io_error(&partial, e))?;
        std::fs::rename(&partial, &path).map_err(|e| io_error(&path, e))?;
        Ok(true)
    }

    /// Starts a new session of the nearby channel under `nick` (may be empty): a new key, so
    /// the key does not tie what follows to what was posted before (a neighbour on the same
    /// radio link still can, by the link). Returns the key (hex). A node starts with a session
    /// of no nickname.
    pub fn nearby_session(&self, nick: String) -> Result<String, WeftError> {
        Ok(hex(&self.node()?.nearby_session(&nick)?))
    }

    /// Posts on the nearby channel, on every radio attached (one every 10 s, 5 saved up).
    pub fn nearby_post(&self, text: String) -> Result<NearbyMessage, WeftError> {
        Ok(self.node()?.nearby_post(&text)?.into())
    }

    /// The channel's recent window (at most 200 messages), oldest first.
    pub fn nearby_recent(&self) -> Result<Vec<NearbyMessage>, WeftError> {
        Ok(self.node()?.nearby_recent()?.into_iter().map(NearbyMessage::from).collect())
    }

    /// Hides a sender's messages (still passed on for others).
    pub fn nearby_mute(&self, sender: String) -> Result<(), WeftError> {
        Ok(self.node()?.nearby_mute(nearby_sender(&sender)?)?)
    }

    /// Refuses a sender: neither shown nor passed on.
    pub fn nearby_block(&self, sender: String) -> Result<(), WeftError> {
        Ok(self.node()?.nearby_block(nearby_sender(&sender)?)?)
    }

    /// Our reaction to a text message (one emoji; an empty one takes ours back). Returns the
    /// message as it now shows.
    pub async fn react(&self, conversation: String, message: String, emoji: String) -> Result<Message, WeftError> {
        let to = message_id(message)?;
        self.act(conversation, MessageAction::React { to, emoji }).await
    }

    /// New text for a text message of ours; every member shows it marked edited.
    pub async fn edit(&self, conversation: String, message: String, text: String) -> Result<Message, WeftError> {
        let of = message_id(message)?;
        self.act(conversation, MessageAction::Edit { of, text }).await
    }

    /// Deletes a text message of ours for everyone: its text leaves each member's device as the
    /// delete arrives. What someone already read or copied cannot be taken back.
    pub async fn delete_message(&self, conversation: String, message: String) -> Result<Message, WeftError> {
        let of = message_id(message)?;
        self.act(conversation, MessageAction::Delete { of }).await
    }

    /// Sets the conversation's disappearing-message timer for every member (`null`: off): texts
    /// written from now on are deleted on each member's devices `keep_ms` after they arrived
    /// there (a minute to a year). Returns the history line every member is shown.
    pub async fn set_disappearing(&self, conversation: String, keep_ms: Option<u64>) -> Result<Message, WeftError> {
        let conversation = exact("conversation", conversation)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.set_disappearing(conversation, keep_ms).await?.into()) }).await
    }

    /// The conversation's disappearing-message timer; `null` when off.
    pub async fn disappearing(&self, conversation: String) -> Result<Option<u64>, WeftError> {
        let conversation = exact("conversation", conversation)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.disappearing(conversation).await?) }).await
    }

    /// A page of a conversation, oldest first: the last `limit` messages, or with `before` (a
    /// message id) the `limit` messages just before that one. Pass the first id of a page to
    /// get the page above it; an empty page means the start of the conversation.
    pub async fn history(
        &self,
        conversation: String,
        before: Option<String>,
        limit: u32,
    ) -> Result<Vec<Message>, WeftError> {
        let conversation = exact("conversation", conversation)?;
        let before = before.map(|b| exact("message", b)).transpose()?;
        let node = self.node()?;
        on_runtime(async move {
            Ok(node.history_before(conversation, before, limit as usize).await?.into_iter().map(Into::into).collect())
        })
        .await
    }

    /// Sends again a message of ours that expired (we were out of its conversation when it
    /// would have gone); it goes by the returned message's id from now on. A message still on
    /// its way is refused (`InvalidInput`).
    pub async fn resend(&self, message_id: String) -> Result<Message, WeftError> {
        let message_id = exact("message", message_id)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.resend(message_id).await?.into()) }).await
    }

    /// Marks a conversation read, telling its members unless read receipts are off; returns
    /// how many messages were unread.
    pub async fn mark_read(&self, conversation: String) -> Result<u32, WeftError> {
        let conversation = exact("conversation", conversation)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.mark_read(conversation).await? as u32) }).await
    }

    /// Whether others see when we read their messages (on unless turned off).
    pub async fn set_read_receipts(&self, on: bool) -> Result<(), WeftError> {
        let node = self.node()?;
        on_runtime(async move { Ok(node.set_read_receipts(on).await?) }).await
    }

    pub async fn read_receipts(&self) -> Result<bool, WeftError> {
        let node = self.node()?;
        on_runtime(async move { Ok(node.read_receipts().await?) }).await
    }

    /// Sends fresh keys now in one conversation (or all, with none), for after the device was
    /// out of its owner's hands: whoever copied it reads nothing written after the members
    /// process them. They also go out by themselves once a day. Returns in how many
    /// conversations keys went out.
    pub async fn update_keys(&self, conversation: Option<String>) -> Result<u32, WeftError> {
        let conversation = conversation.map(|c| exact("conversation", c)).transpose()?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.update_keys(conversation).await? as u32) }).await
    }

    /// Keeps a conversation's messages for `keep_ms` after they reached this device (`None`:
    /// for ever); older ones are deleted within ten minutes. Returns how many were deleted now.
    pub async fn set_retention(&self, conversation: String, keep_ms: Option<u64>) -> Result<u32, WeftError> {
        let conversation = exact("conversation", conversation)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.set_retention(conversation, keep_ms).await? as u32) }).await
    }

    pub async fn retention(&self, conversation: String) -> Result<Option<u64>, WeftError> {
        let conversation = exact("conversation", conversation)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.retention(conversation).await?) }).await
    }

    /// The group's current members.
    pub async fn members(&self, group: String) -> Result<Vec<Member>, WeftError> {
        let group = exact("conversation", group)?;
        let node = self.node()?;
        on_runtime(async move { Ok(node.members(group).await?.into_iter().map(Into::into).collect()) }).await
    }

    /// This account's identity: name, contact link, fingerprint and the link as a QR code.
    pub async fn identity(&self) -> Result<Identity, WeftError> {
        let node = self.node()?;
        on_runtime(async move { Ok(node.call(|a| Ok(crate::identity_of(a))).await?) }).await
    }

    pub async fn export_bundle(&self) -> Result<Vec<u8>, WeftError> {
        let node = self.node()?;
        on_runtime(async move { Ok(node.export_bundle().await?) }).await
    }

    /// Reads a bundle another person exported; returns the number of messages it brought.
    pub async fn import_bundle(&self, bundle: Vec<u8>) -> Result<u32, WeftError> {
        let node = self.node()?;
        on_runtime(async move { Ok(node.import_bundle(bundle).await?.messages.len() as u32) }).await
    }

    pub async fn status(&self) -> Result<Status, WeftError> {
        let node = self.node()?;
        let net = self.net.lock().map_err(poisoned)?.clone();
        let (radios, mesh_links) = {
            let meshes = self.meshes.lock().map_err(poisoned)?;
            (meshes.len() as u32, meshes.iter().map(|(_, m)| m.stats().links as u32).sum())
        };
        on_runtime(async move {
            let outbox = node.call(|a| a.outbox_len()).await? as u32;
            let (peers, relays_connected) = match net {
                Some(net) => {
                    let s = net.status().await?;
                    (s.peers.len() as u32, s.relays.iter().filter(|r| r.connected).count() as u32)
                }
                None => (0, 0),
            };
            Ok(Status { peers, relays_connected, radios, mesh_links, outbox })
        })
        .await
    }

    /// The panic wipe: erases this node's home (the database's salt and first pages first, so
    /// that within milliseconds nothing left opens, then the rest) and shuts the node down, so
    /// its memory lets go of the keys. The app then deletes its database key from the platform
    /// keystore (`DatabaseKeyStore.destroy()` in the Android and iOS packages). Returns the
    /// files erased.
    pub fn wipe(&self) -> Result<Wiped, WeftError> {
        let node = self.node()?;
        let wiped = RUNTIME.block_on(async move { node.wipe().await });
        self.shutdown();
        Ok(Wiped::from(&wiped?))
    }

    /// Stops every transport and waits until they are gone; later calls fail with `Closed`.
    /// It blocks the calling thread (for as long as the transports take to stop, a second or
    /// so) rather than being awaited: an awaited call is finished by a Weft thread waking the
    /// host's event loop, and a process that exited right after it was sometimes woken while
    /// its interpreter was finalising (Python aborted with `FATAL: exception not rethrown`, 5
    /// runs in 40). When this returns, nothing calls into the host any more: app drivers and
    /// listeners are released, and no wake of an earlier call is still running in the host
    /// (see `host_wakes`).
    pub fn shutdown(&self) {
        RUNTIME.block_on(self.close());
        if !crate::host_wakes::wait_until_quiet(std::time::Duration::from_secs(5)) {
            tracing::warn!("a call's wake was still inside the host after five seconds");
        }
    }
}

impl WeftNode {
    async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stop_network();
        let meshes: Vec<MeshHandle> =
            self.meshes.lock().map(|mut m| m.drain(..).map(|(_, mesh)| mesh).collect()).unwrap_or_default();
        let node = self.node.lock().ok().and_then(|mut n| n.take());
        let _ = on_runtime(async move {
            for mesh in meshes {
                mesh.shutdown().await;
            }
            // The transports' tasks let go of the node as they wind down; then the account
            // thread is joined and the home is free for the next open.
            let Some(mut node) = node else { return Ok(()) };
            for _ in 0..100 {
                match Arc::try_unwrap(node) {
                    Ok(node) => {
                        node.close().await;
                        return Ok(());
                    }
                    Err(shared) => node = shared,
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Ok(())
        })
        .await;
        self.silenced.store(true, Ordering::SeqCst);
        // Nothing calls into the host after this returns: each listener's thread has let go
        // of its listener (a task that dropped it later, on a runtime thread, could call into
        // an interpreter that is already finalising).
        let deliveries: Vec<_> = self.deliveries.lock().map(|mut d| d.drain(..).collect()).unwrap_or_default();
        for delivery in deliveries {
            delivery.stop_and_join();
        }
    }
}

fn poisoned<T>(_: T) -> WeftError {
    WeftError::Internal { detail: "an earlier call panicked".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_weft_ends_the_call_with_an_error() {
        let outcome: Result<(), WeftError> = RUNTIME.block_on(on_runtime(async { panic!("a bug") }));
        assert!(matches!(outcome, Err(WeftError::Internal { .. })));
        // The runtime is still there for the next call.
        assert!(matches!(RUNTIME.block_on(on_runtime(async { Ok(7) })), Ok(7)));
    }
}
