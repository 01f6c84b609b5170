//! `Node`: the one async facade over an account. Clients (the CLI, the bindings) use only this.
//!
//! The account (SQLite, Argon2, the group machines) is blocking and single-threaded, so it lives
//! on a thread of its own and the node sends it closures to run, one at a time; every call
//! answers through a oneshot channel. Events go to every subscriber through a broadcast channel,
//! as Delta Chat's event emitter does. The transports (next) will run as tasks beside it.

mod nearby;
use std::path::PathBuf;
use std::thread::JoinHandle;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::account::{
    Account, ContactInfo, ConversationInfo, ConversationOverview, ImportProgress, ImportReport, MemberInfo, MessageInfo,
};
use crate::error::{Error, Result};
use crate::store::DatabaseKey;

/// What a node tells its clients.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(clippy::large_enum_variant, reason = "one short-lived value per message; boxing buys nothing")]
pub enum NodeEvent {
    /// A message arrived and is stored; `via` names the path that brought it first
    /// (`bundle`, `libp2p`).
    MessageReceived {
        message: MessageInfo,
        via: &'static str,
    },
    /// A transport connected to a peer, or lost it.
    PeerConnected {
        peer: String,
        via: &'static str,
    },
    PeerDisconnected {
        peer: String,
        via: &'static str,
    },
    /// Someone asked to be a contact: `name` to show, `account` to act on.
    ContactRequest {
        name: String,
        account: [u8; 32],
    },
    /// A contact we had added accepted our request (they wrote in our conversation), or
    /// introduced themselves in turn.
    ContactAnswered {
        name: String,
        account: [u8; 32],
    },
    /// We joined a group: `name` to show, `conversation` its id.
    JoinedGroup {
        name: String,
        conversation: [u8; 32],
    },
    /// A message of ours moved on its way (its id as in [`MessageInfo::id`]).
    DeliveryChanged {
        id: String,
        state: Delivery,
    },
    /// A message waited past its day or epoch before any peer took it, and its sender sealed it
    /// again where its recipients look now: it goes by `new_id` from now on (history shows it
    /// once, under the new id, with its original time). Sent for our own messages, and for a
    /// member's that we showed under `old_id` before its new envelope came.
    MessageResealed {
        old_id: String,
        new_id: String,
    },
    /// A new device answered the device link that is out, over the network: grant it with
    /// [`Node::grant_arrived`] once the user saw its screen show the same `code` ("123 456").
    LinkRequested {
        name: String,
        device: [u8; 32],
        code: String,
    },
    /// A piece of a file arrived, was verified and stored: `have` of `total` envelopes of the
    /// file message `message` (its id) carries are here; complete when equal.
    AttachmentProgress {
        message: String,
        conversation: [u8; 32],
        have: u32,
        total: u32,
    },
    /// A new message on the nearby channel (not muted, not blocked): from a stranger's
    /// session key, never an account.
    Nearby {
        message: crate::nearby::Shown,
    },
    /// The account revoked this device (it was lost, or given away): from now on it opens
    /// nothing new and every send fails with [`Error::Revoked`]. Sent once, when the
    /// revocation arrives.
    ThisDeviceRevoked,
}

/// How far a message of ours got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Stored durably; no peer has taken it yet.
    Queued,
    /// At least one peer (a member, a relay) took it.
    Sent,
    /// Every other member has it on a device (their receipts say so).
    Delivered,
    /// Every other member read it.
    Read,
    /// It cannot be delivered: we are no longer a member of its conversation (the reason is in
    /// [`crate::account::Account::expired_reason`]). A message whose day or epoch merely passed
    /// is sealed again instead ([`NodeEvent::MessageResealed`]).
    Expired,
}

impl Delivery {
    pub fn as_str(&self) -> &'static str {
        match self {
            Delivery::Queued => "queued",
            Delivery::Sent => "sent",
            Delivery::Delivered => "delivered",
            Delivery::Read => "read",
            Delivery::Expired => "expired",
        }
    }
}

type Job = Box<dyn FnOnce(&mut Account) + Send>;

/// An envelope from a transport waiting to be received, with whoever waits for the outcome.
struct PendingReceive {
    bytes: Vec<u8>,
    via: &'static str,
    reply: oneshot::Sender<Result<()>>,
}

/// A message waiting to be sealed and stored, with whoever waits for the outcome.
struct PendingSend {
    conversation: String,
    text: String,
    reply: oneshot::Sender<Result<MessageInfo>>,
}

/// A running account. Cheap to share behind an `Arc`; every method may be called from any task.
pub struct Node {
    jobs: mpsc::UnboundedSender<Job>,
    events: broadcast::Sender<NodeEvent>,
    /// Bumped when something enters the outbox, so every transport pushes it at once.
    outbox: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    /// Sends not yet taken by the account thread: taken all at once, stored in one transaction.
    sends: std::sync::Arc<std::sync::Mutex<Vec<PendingSend>>>,
    /// Envelopes not yet taken by the account thread: received together, committed once.
    receives: std::sync::Arc<std::sync::Mutex<Vec<PendingReceive>>>,
    /// The nearby channel's session, shared by every mesh.
    nearby: nearby::NearbySession,
    worker: Option<JoinHandle<()>>,
}

/// Envelopes from transports waiting for the account thread; more are dropped.
const MAX_QUEUED_RECEIVES: usize = 4096;

/// Events kept for slow subscribers before they start missing some: a burst of a thousand
/// messages each way makes about four thousand (received, sent, delivered, read).
const EVENT_BUFFER: usize = 4096;

impl Node {
    /// Opens the account in `home` with its passphrase (the CLI's way).
    pub async fn open(home: PathBuf, passphrase: String) -> Result<Node> {
        Self::start(move || Account::open(&home, &passphrase)).await
    }

    /// Opens the account in `home` with a raw database key (a mobile app's way).
    pub async fn open_with_key(home: PathBuf, key: [u8; 32]) -> Result<Node> {
        Self::start(move || {
            let key = DatabaseKey::from_bytes(key);
            Account::open_with_key(&home, &key, Box::new(crate::crypto::OsEntropy), crate::account::system_clock())
        })
        .await
    }

    /// Runs an account that `open` makes on the node's own thread.
    pub async fn start(open: impl FnOnce() -> Result<Account> + Send + 'static) -> Result<Node> {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let worker = std::thread::Builder::new()
            .name("weft-account".into())
            .spawn(move || {
                let mut account = match open() {
                    Ok(a) => {
                        let _ = ready_tx.send(Ok(()));
                        a
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Some(job) = queue.blocking_recv() {
                    job(&mut account);
                }
            })
            .map_err(|e| Error::io("starting the account thread", e))?;
        ready_rx.await.map_err(|_| Error::Closed)??;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Ok(Node {
            jobs,
            events,
            outbox: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
            sends: Default::default(),
            receives: Default::default(),
            nearby: Default::default(),
            worker: Some(worker),
        })
    }

    /// Runs `f` on the account and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Account) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |account| {
                // A panic inside the account must not take the node down with it.
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(account)))
                    .unwrap_or(Err(Error::Internal("the account panicked; the call was not applied")));
                let _ = tx.send(out);
            }))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// A stream of everything that happens from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// A watch that changes whenever something enters the outbox; each transport holds its own.
    pub fn outbox_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.outbox.subscribe()
    }

    /// Runs `f` and then wakes the transports: `f` may have put envelopes in the outbox.
    async fn call_and_push<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Account) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let out = self.call(f).await;
        self.outbox.send_modify(|v| *v += 1);
        out
    }

    /// Tells subscribers what the outbox sealed again or gave up, and returns what to push.
    pub(crate) fn take_outbox(&self, batch: crate::account::OutboxBatch) -> Vec<Vec<u8>> {
        for (old_id, new_id) in batch.resealed {
            self.emit(NodeEvent::MessageResealed { old_id, new_id });
        }
        for (id, _reason) in batch.expired {
            self.emit(NodeEvent::DeliveryChanged { id, state: Delivery::Expired });
        }
        batch.live
    }

    pub(crate) fn emit(&self, event: NodeEvent) {
        // No subscriber is fine: events are also reflected in the store.
        let _ = self.events.send(event);
    }

    pub async fn link(&self) -> Result<String> {
        self.call(|a| Ok(a.card().to_link())).await
    }

    /// Replaces the contact link (one that leaked); see [`Account::replace_link`].
    pub async fn replace_link(&self) -> Result<String> {
        self.call_and_push(|a| a.replace_link()).await
    }

    pub async fn add_contact(&self, link: String, name: Option<String>) -> Result<ContactInfo> {
        self.call_and_push(move |a| a.add_contact(&link, name.as_deref())).await
    }

    pub async fn accept_contact(&self, name: String) -> Result<ContactInfo> {
        Ok(self.accept_contact_and_join(name).await?.0)
    }

    /// Accepts a contact and joins the groups they had invited us to; returns those groups.
    pub async fn accept_contact_and_join(&self, name: String) -> Result<(ContactInfo, Vec<String>)> {
        let (contact, joined, ids) = self
            .call_and_push(move |a| {
                let (contact, joined) = a.accept_contact(&name)?;
                let ids: Vec<Option<[u8; 32]>> = joined.iter().map(|g| a.resolve(g).ok().map(|c| c.id)).collect();
                Ok((contact, joined, ids))
            })
            .await?;
        for (name, id) in joined.iter().zip(ids) {
            if let Some(conversation) = id {
                self.emit(NodeEvent::JoinedGroup { name: name.clone(), conversation });
            }
        }
        Ok((contact, joined))
    }

    pub async fn contacts(&self) -> Result<Vec<ContactInfo>> {
        self.call(|a| a.contacts()).await
    }

    pub async fn conversations(&self) -> Result<Vec<ConversationInfo>> {
        self.call(|a| a.conversations()).await
    }

    /// A one-time link for a new device (the account's first device only).
    pub async fn link_offer(&self) -> Result<String> {
        self.call(|a| a.link_offer()).await
    }

    /// Who a new device's request comes from, and the code its screen should show.
    pub async fn open_link_request(
        &self,
        request: Vec<u8>,
    ) -> Result<(crate::devices::linking::Applicant, crate::devices::linking::ShortCode)> {
        self.call(move |a| a.open_link_request(&request)).await
    }

    /// Grants the device whose request this is, if `code` is the one both screens show;
    /// otherwise the link is cancelled and nothing is granted.
    pub async fn grant_link(
        &self,
        request: Vec<u8>,
        code: u32,
        history: crate::account::HistoryChoice,
    ) -> Result<(crate::devices::linking::Applicant, Vec<u8>)> {
        self.call_and_push(move |a| {
            let (applicant, _) = a.open_link_request(&request)?;
            Ok((applicant, a.grant_link(&request, crate::devices::linking::ShortCode(code), history)?))
        })
        .await
    }

    /// Grants the device whose request arrived over the network showing `code`, and hands the
    /// grant out there; with a code no arrived request shows, the link is cancelled.
    pub async fn grant_arrived(
        &self,
        code: u32,
        history: crate::account::HistoryChoice,
    ) -> Result<crate::devices::linking::Applicant> {
        self.call_and_push(move |a| a.grant_arrived(crate::devices::linking::ShortCode(code), history)).await
    }

    /// The requests that arrived over the network for the link that is out.
    pub async fn arrived_link_requests(&self) -> Result<Vec<crate::account::ArrivedRequest>> {
        self.call(|a| Ok(a.arrived_link_requests())).await
    }

    pub async fn cancel_link(&self) -> Result<()> {
        self.call(|a| a.cancel_link()).await
    }

    pub async fn devices(&self) -> Result<Vec<crate::account::DeviceInfo>> {
        self.call(|a| a.devices()).await
    }

    pub async fn revoke_device(&self, device: String) -> Result<crate::account::DeviceInfo> {
        self.call_and_push(move |a| a.revoke_device(&device)).await
    }

    /// Conversations with their unread counts and last messages, newest first.
    pub async fn overview(&self) -> Result<Vec<ConversationOverview>> {
        self.call(|a| a.overview()).await
    }

    /// The safety number shared with a contact, to compare out of band.
    pub async fn safety_number(&self, contact: String) -> Result<String> {
        self.call(move |a| a.safety_number(&contact)).await
    }

    /// Records that the user compared safety numbers with a contact.
    pub async fn mark_verified(&self, contact: String) -> Result<ContactInfo> {
        self.call(move |a| a.mark_verified(&contact)).await
    }

    pub async fn reject_contact(&self, contact: String) -> Result<()> {
        self.call(move |a| a.reject_contact(&contact)).await
    }

    pub async fn delete_contact(&self, contact: String) -> Result<()> {
        self.call(move |a| a.delete_contact(&contact)).await
    }

    pub async fn block(&self, account: String) -> Result<()> {
        self.call(move |a| a.block(&account)).await
    }

    pub async fn unblock(&self, account: String) -> Result<()> {
        self.call(move |a| a.unblock(&account)).await
    }

    pub async fn leave_group(&self, group: String) -> Result<()> {
        self.call_and_push(move |a| a.leave_group(&group)).await
    }

    pub async fn rename_group(&self, group: String, name: String) -> Result<()> {
        self.call_and_push(move |a| a.rename_group(&group, &name)).await
    }

    pub async fn create_group(&self, name: String) -> Result<ConversationInfo> {
        self.call_and_push(move |a| a.create_group(&name)).await
    }

    pub async fn invite(&self, group: String, contact: String) -> Result<()> {
        self.call_and_push(move |a| a.invite(&group, &contact)).await
    }

    pub async fn remove_member(&self, group: String, member: String) -> Result<()> {
        self.call_and_push(move |a| a.remove_member(&group, &member)).await
    }

    pub async fn members(&self, group: String) -> Result<Vec<MemberInfo>> {
        self.call(move |a| a.members(&group)).await
    }

    /// Stores a message durably and returns it; transports deliver it from the store.
    ///
    /// The message takes its place in the conversation when this is called, not when the future
    /// is first polled. Sends that queue up while the account thread is busy are sealed in
    /// order and stored in one transaction (group commit): under load the disk waits once for
    /// many messages.
    pub fn send(
        &self,
        conversation: String,
        text: String,
    ) -> impl std::future::Future<Output = Result<MessageInfo>> + Send + 'static {
        let (reply, outcome) = oneshot::channel();
        let first = match self.sends.lock() {
            Ok(mut queue) => {
                queue.push(PendingSend { conversation, text, reply });
                queue.len() == 1
            }
            Err(_) => {
                let _ = reply.send(Err(Error::Internal("the send queue is poisoned")));
                false
            }
        };
        if first {
            let (sends, outbox) = (self.sends.clone(), self.outbox.clone());
            let job: Job = Box::new(move |account| {
                let batch = sends.lock().map(|mut q| std::mem::take(&mut *q)).unwrap_or_default();
                let messages: Vec<(String, String)> =
                    batch.iter().map(|p| (p.conversation.clone(), p.text.clone())).collect();
                let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| account.send_batch(&messages)));
                outbox.send_modify(|v| *v += 1);
                match results {
                    Ok(results) => {
                        for (pending, result) in batch.into_iter().zip(results) {
                            let _ = pending.reply.send(result);
                        }
                    }
                    Err(_) => {
                        account.recover_after_panic();
                        for pending in batch {
                            let _ = pending.reply.send(Err(Error::Internal("the account panicked; nothing was sent")));
                        }
                    }
                }
            });
            if self.jobs.send(job).is_err() {
                // The account thread is gone: dropping the queued replies answers `Closed`.
                if let Ok(mut queue) = self.sends.lock() {
                    queue.clear();
                }
            }
        }
        async move { outcome.await.map_err(|_| Error::Closed)? }
    }

    /// Replies to, reacts to, edits or deletes a message (see [`Account::act`]).
    pub async fn act(&self, conversation: String, action: crate::account::MessageAction) -> Result<MessageInfo> {
        self.call_and_push(move |a| a.act(&conversation, action)).await
    }

    /// Sends a file with a caption (see [`Account::send_file`]).
    pub async fn send_file(
        &self,
        conversation: String,
        file: Vec<u8>,
        name: String,
        mime: String,
        caption: String,
    ) -> Result<MessageInfo> {
        self.call_and_push(move |a| a.send_file(&conversation, &file, &name, &mime, &caption)).await
    }

    /// The message carrying a file whose id is `given` or starts with it.
    pub async fn attachment_message(&self, given: String) -> Result<crate::envelope::EnvelopeId> {
        self.call(move |a| a.attachment_message(&given)).await
    }

    /// How far the file message `message` carries has come; asks for it if it is not here.
    pub async fn fetch_attachment(
        &self,
        message: crate::envelope::EnvelopeId,
    ) -> Result<crate::account::AttachmentInfo> {
        self.call(move |a| a.fetch_attachment(&message)).await
    }

    /// The whole file message `message` carries, checked; `None` while pieces are missing
    /// (it is then asked for).
    pub async fn attachment_bytes(
        &self,
        message: crate::envelope::EnvelopeId,
    ) -> Result<Option<(crate::account::AttachmentInfo, Vec<u8>)>> {
        self.call(move |a| a.attachment_bytes(&message)).await
    }

    /// The panic wipe (see [`crate::wipe`]): erases this node's home, keys first, while it is
    /// open. The node holds the keys in memory until it is shut down, which the caller does next
    /// (the daemon exits).
    pub async fn wipe(&self) -> Result<crate::wipe::Wiped> {
        self.call(|a| crate::wipe::wipe_home(a.home())).await
    }

    /// Sets a conversation's disappearing-message timer for every member (see
    /// [`Account::set_disappearing`]).
    pub async fn set_disappearing(&self, conversation: String, keep_ms: Option<u64>) -> Result<MessageInfo> {
        self.call_and_push(move |a| a.set_disappearing(&conversation, keep_ms)).await
    }

    /// A conversation's disappearing-message timer; `None` when off.
    pub async fn disappearing(&self, conversation: String) -> Result<Option<u64>> {
        self.call(move |a| a.disappearing(&conversation)).await
    }

    pub async fn history(&self, conversation: String, limit: usize) -> Result<Vec<MessageInfo>> {
        self.call(move |a| a.history(&conversation, limit)).await
    }

    /// The page of `limit` messages just before message `before` (hex id); `None` for the last.
    pub async fn history_before(
        &self,
        conversation: String,
        before: Option<String>,
        limit: usize,
    ) -> Result<Vec<MessageInfo>> {
        self.call(move |a| a.history_before(&conversation, before.as_deref(), limit)).await
    }

    /// Sends again a message of ours that expired (see [`Account::resend`]); subscribers hear
    /// of its new id.
    pub async fn resend(&self, message: String) -> Result<MessageInfo> {
        let old = message.clone();
        let info = self.call_and_push(move |a| a.resend(&message)).await?;
        self.emit(NodeEvent::MessageResealed { old_id: old, new_id: info.id.clone() });
        Ok(info)
    }

    /// Marks a conversation read (telling the others, unless read receipts are off); returns
    /// how many messages were unread.
    pub async fn mark_read(&self, conversation: String) -> Result<usize> {
        self.call_and_push(move |a| a.mark_read(&conversation)).await
    }

    /// Sends fresh keys in one conversation, or in all (see [`Account::update_keys`]); returns
    /// in how many one went out.
    pub async fn update_keys(&self, conversation: Option<String>) -> Result<usize> {
        self.call_and_push(move |a| a.update_keys(conversation.as_deref())).await
    }

    /// Keeps a conversation's messages for `keep_ms` (`None`: for ever); returns how many
    /// older ones were deleted now.
    pub async fn set_retention(&self, conversation: String, keep_ms: Option<u64>) -> Result<usize> {
        self.call(move |a| a.set_retention(&conversation, keep_ms)).await
    }

    pub async fn retention(&self, conversation: String) -> Result<Option<u64>> {
        self.call(move |a| a.retention(&conversation)).await
    }

    pub async fn read_receipts(&self) -> Result<bool> {
        self.call(|a| a.read_receipts()).await
    }

    pub async fn set_read_receipts(&self, on: bool) -> Result<()> {
        self.call(move |a| a.set_read_receipts(on)).await
    }

    pub async fn export_bundle(&self) -> Result<Vec<u8>> {
        self.call(|a| a.export_bundle()).await
    }

    /// Imports a bundle and tells subscribers what it brought.
    pub async fn import_bundle(&self, bytes: Vec<u8>) -> Result<ImportReport> {
        self.import_bundle_watched(bytes, None).await
    }

    /// [`Self::import_bundle`], publishing how far it got on `progress` as it goes.
    pub async fn import_bundle_watched(
        &self,
        bytes: Vec<u8>,
        progress: Option<tokio::sync::watch::Sender<ImportProgress>>,
    ) -> Result<ImportReport> {
        let (report, acknowledged, accounts, revoked_now) = self
            .call_and_push(move |a| {
                let was_revoked = a.is_revoked();
                let mut tell = |p| {
                    if let Some(tx) = &progress {
                        tx.send_replace(p);
                    }
                };
                let report = a.import_bundle_with_progress(&bytes, &mut tell)?;
                let contacts = a.contacts()?;
                let accounts: std::collections::HashMap<String, [u8; 32]> =
                    contacts.into_iter().map(|c| (c.name, c.account)).collect();
                Ok((report, a.take_acknowledged(), accounts, !was_revoked && a.is_revoked()))
            })
            .await?;
        emit_acknowledged(&self.events, acknowledged);
        if revoked_now {
            self.emit(NodeEvent::ThisDeviceRevoked);
        }
        for name in &report.new_contacts {
            if let Some(account) = accounts.get(name) {
                self.emit(NodeEvent::ContactRequest { name: name.clone(), account: *account });
            }
        }
        for name in &report.answered {
            if let Some(account) = accounts.get(name) {
                self.emit(NodeEvent::ContactAnswered { name: name.clone(), account: *account });
            }
        }
        emit_messages(&self.events, report.messages.clone(), "bundle");
        Ok(report)
    }

    /// Receives an envelope from a transport and tells subscribers what it made visible.
    ///
    /// The envelope is queued when this is called (a transport may drop the future without
    /// waiting); envelopes that queue up while the account thread is busy are received together
    /// with one commit.
    pub fn receive_envelope(
        &self,
        bytes: Vec<u8>,
        via: &'static str,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let (reply, outcome) = oneshot::channel();
        let first = match self.receives.lock() {
            // A flood cannot outgrow memory: beyond the cap, envelopes are dropped (a peer
            // that has them offers them again at the next reconciliation).
            Ok(queue) if queue.len() >= MAX_QUEUED_RECEIVES => {
                let _ = reply.send(Err(Error::Limit("too many envelopes waiting to be received")));
                false
            }
            Ok(mut queue) => {
                queue.push(PendingReceive { bytes, via, reply });
                queue.len() == 1
            }
            Err(_) => false,
        };
        if first {
            let (receives, outbox, events) = (self.receives.clone(), self.outbox.clone(), self.events.clone());
            let job: Job = Box::new(move |account| {
                let batch = receives.lock().map(|mut q| std::mem::take(&mut *q)).unwrap_or_default();
                let was_revoked = account.is_revoked();
                let (replies, envelopes): (Vec<_>, Vec<_>) =
                    batch.into_iter().map(|p| ((p.reply, p.via), (p.bytes, p.via))).unzip();
                let results =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| account.receive_batch(envelopes)));
                outbox.send_modify(|v| *v += 1);
                let Ok(results) = results else {
                    account.recover_after_panic();
                    return;
                };
                for ((reply, via), result) in replies.into_iter().zip(results) {
                    let outcome = result.map(|received| match received {
                        crate::account::Received::Applied(messages) => emit_messages(&events, messages, via),
                        crate::account::Received::LinkRequest(arrived) => {
                            let _ = events.send(NodeEvent::LinkRequested {
                                name: arrived.applicant.name,
                                device: arrived.applicant.device,
                                code: arrived.code.to_string(),
                            });
                        }
                        crate::account::Received::Attachment(progress) => {
                            let _ = events.send(NodeEvent::AttachmentProgress {
                                message: progress.message,
                                conversation: progress.conversation_id,
                                have: progress.have,
                                total: progress.total,
                            });
                        }
                        crate::account::Received::Waiting => {}
                    });
                    let _ = reply.send(outcome);
                }
                emit_acknowledged(&events, account.take_acknowledged());
                if !was_revoked && account.is_revoked() {
                    let _ = events.send(NodeEvent::ThisDeviceRevoked);
                }
            });
            if self.jobs.send(job).is_err()
                && let Ok(mut queue) = self.receives.lock()
            {
                queue.clear();
            }
        }
        async move { outcome.await.map_err(|_| Error::Closed)? }
    }

    /// Receives a contact request from a transport; requests for others fail quietly.
    pub async fn receive_request(&self, bytes: Vec<u8>) -> Result<()> {
        let (outcome, account) = self
            .call(move |a| {
                let outcome = a.receive_request(&bytes)?;
                let account = match &outcome {
                    crate::account::RequestOutcome::New(name) | crate::account::RequestOutcome::Answered(name) => {
                        a.contacts()?.into_iter().find(|c| c.name == *name).map(|c| c.account)
                    }
                    crate::account::RequestOutcome::Known => None,
                };
                Ok((outcome, account))
            })
            .await?;
        match (outcome, account) {
            (crate::account::RequestOutcome::New(name), Some(account)) => {
                self.emit(NodeEvent::ContactRequest { name, account })
            }
            (crate::account::RequestOutcome::Answered(name), Some(account)) => {
                self.emit(NodeEvent::ContactAnswered { name, account })
            }
            _ => {}
        }
        Ok(())
    }

    /// Stops the account thread after the calls already queued; the store checkpoints on close.
    pub async fn close(mut self) {
        let worker = self.worker.take();
        drop(self);
        if let Some(w) = worker {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
    }
}

impl Drop for Node {
    /// Closing the job queue ends the account thread after the jobs already queued; waiting for
    /// it means the store is checkpointed and closed before anything else goes (a process that
    /// exits under a running SQLCipher connection can crash in its crypto library).
    fn drop(&mut self) {
        let Some(worker) = self.worker.take() else { return };
        self.jobs = mpsc::unbounded_channel().0;
        if worker.thread().id() != std::thread::current().id() {
            let _ = worker.join();
        }
    }
}

/// Tells subscribers which of our messages reached everyone, or were read by everyone.
fn emit_acknowledged(events: &broadcast::Sender<NodeEvent>, acknowledged: Vec<(String, crate::account::Acknowledged)>) {
    for (id, state) in acknowledged {
        let state = match state {
            crate::account::Acknowledged::Delivered => Delivery::Delivered,
            crate::account::Acknowledged::Read => Delivery::Read,
        };
        let _ = events.send(NodeEvent::DeliveryChanged { id, state });
    }
}

/// Tells subscribers about messages that became visible (joining a group is its own event).
fn emit_messages(events: &broadcast::Sender<NodeEvent>, messages: Vec<MessageInfo>, via: &'static str) {
    for m in messages {
        let event = match m.kind.as_str() {
            "joined" => NodeEvent::JoinedGroup { name: m.body, conversation: m.conversation_id },
            // Someone we asked to be our contact accepted.
            "accepted" => NodeEvent::ContactAnswered { name: m.conversation, account: m.sender_account },
            _ if let Some(old_id) = m.replaces.clone() => NodeEvent::MessageResealed { old_id, new_id: m.id },
            _ => NodeEvent::MessageReceived { message: m, via },
        };
        let _ = events.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;

    async fn node(dir: &std::path::Path, name: &'static str, seed: u64) -> Node {
        let home = dir.join(name);
        Node::start(move || {
            Account::create_with_key(
                &home,
                &DatabaseKey::from_bytes([seed as u8; 32]),
                Some(name),
                Box::new(SeededEntropy::new(seed)),
                crate::account::system_clock(),
            )
        })
        .await
        .unwrap()
    }

    /// Alice adds Bob by link and Bob accepts, by bundles both ways.
    async fn contacts_by_bundle(alice: &Node, bob: &Node) {
        alice.add_contact(bob.link().await.unwrap(), None).await.unwrap();
        bob.import_bundle(alice.export_bundle().await.unwrap()).await.unwrap();
        bob.accept_contact("alice".into()).await.unwrap();
        alice.import_bundle(bob.export_bundle().await.unwrap()).await.unwrap();
    }

    /// Alice's message goes from queued to sent to delivered to read as Bob's receipts come
    /// back; with read receipts off, Bob's reading stays his own.
    #[tokio::test]
    async fn receipts_tell_the_sender_delivered_and_read_unless_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let alice = node(dir.path(), "alice", 11).await;
        let bob = node(dir.path(), "bob", 12).await;
        contacts_by_bundle(&alice, &bob).await;
        let state = |history: Vec<MessageInfo>, id: &str| history.into_iter().find(|m| m.id == id).unwrap().state;

        let hi = alice.send("bob".into(), "hi".into()).await.unwrap();
        assert_eq!(state(alice.history("bob".into(), 10).await.unwrap(), &hi.id), Some("queued"));
        let mut events = alice.subscribe();
        bob.import_bundle(alice.export_bundle().await.unwrap()).await.unwrap();
        alice.import_bundle(bob.export_bundle().await.unwrap()).await.unwrap();
        assert_eq!(state(alice.history("bob".into(), 10).await.unwrap(), &hi.id), Some("delivered"));
        let delivered = loop {
            if let NodeEvent::DeliveryChanged { id, state } = events.recv().await.unwrap() {
                break (id, state);
            }
        };
        assert_eq!(delivered, (hi.id.clone(), Delivery::Delivered));

        // Bob reads: one unread message, and Alice learns it was read.
        assert_eq!(bob.call(|a| a.unread_count(&a.resolve("alice")?.id)).await.unwrap(), 1);
        assert_eq!(bob.mark_read("alice".into()).await.unwrap(), 1);
        assert_eq!(bob.mark_read("alice".into()).await.unwrap(), 0, "nothing left unread");
        alice.import_bundle(bob.export_bundle().await.unwrap()).await.unwrap();
        assert_eq!(state(alice.history("bob".into(), 10).await.unwrap(), &hi.id), Some("read"));
        // Receipts are not messages: neither history has more than the one text.
        assert_eq!(bob.history("alice".into(), 10).await.unwrap().iter().filter(|m| m.kind == "text").count(), 1);

        // With read receipts off, delivery is still acknowledged but reading is not.
        bob.set_read_receipts(false).await.unwrap();
        assert!(!bob.read_receipts().await.unwrap());
        let again = alice.send("bob".into(), "are you there?".into()).await.unwrap();
        bob.import_bundle(alice.export_bundle().await.unwrap()).await.unwrap();
        assert_eq!(bob.mark_read("alice".into()).await.unwrap(), 1);
        alice.import_bundle(bob.export_bundle().await.unwrap()).await.unwrap();
        assert_eq!(state(alice.history("bob".into(), 10).await.unwrap(), &again.id), Some("delivered"));
        alice.close().await;
        bob.close().await;
    }

    /// History remembers the path that first brought each received message, whichever comes
    /// again later; our own messages have none.
    #[tokio::test]
    async fn history_shows_how_each_message_came() {
        let dir = tempfile::tempdir().unwrap();
        let alice = node(dir.path(), "alice", 21).await;
        let bob = node(dir.path(), "bob", 22).await;
        contacts_by_bundle(&alice, &bob).await;

        let by_bundle = alice.send("bob".into(), "by hand".into()).await.unwrap();
        let report = bob.import_bundle(alice.export_bundle().await.unwrap()).await.unwrap();
        assert!(report.messages.iter().any(|m| m.id == by_bundle.id && m.via.as_deref() == Some("bundle")));
        let by_mesh = alice.send("bob".into(), "by radio".into()).await.unwrap();
        let envelope = alice.call(|a| Ok(a.outbox(10)?.live)).await.unwrap().pop().unwrap();
        let mut events = bob.subscribe();
        bob.receive_envelope(envelope.clone(), "mesh").await.unwrap();
        let NodeEvent::MessageReceived { message, via } = events.recv().await.unwrap() else { panic!("a message") };
        assert_eq!((message.via.as_deref(), via), (Some("mesh"), "mesh"));
        // The same envelope again by another path is a duplicate: the first path stays.
        let _ = bob.receive_envelope(envelope, "libp2p").await;

        let history = bob.history("alice".into(), 10).await.unwrap();
        let via = |id: &str| history.iter().find(|m| m.id == id).unwrap().via.clone();
        assert_eq!(via(&by_bundle.id).as_deref(), Some("bundle"));
        assert_eq!(via(&by_mesh.id).as_deref(), Some("mesh"));
        let mine = alice.history("bob".into(), 10).await.unwrap();
        assert!(mine.iter().filter(|m| m.outgoing).all(|m| m.via.is_none()), "ours came by no path");
        alice.close().await;
        bob.close().await;
    }

    /// A stranger's message is not acknowledged until we accept them: a receipt would hand them
    /// our chain and tell them we are here.
    #[tokio::test]
    async fn no_receipt_goes_to_someone_we_did_not_accept() {
        let dir = tempfile::tempdir().unwrap();
        let carol = node(dir.path(), "carol", 13).await;
        let dave = node(dir.path(), "dave", 14).await;
        carol.add_contact(dave.link().await.unwrap(), None).await.unwrap();
        carol.send("dave".into(), "remember me?".into()).await.unwrap();
        dave.import_bundle(carol.export_bundle().await.unwrap()).await.unwrap();
        // A stranger's conversation is not read until dave accepts: nothing of it is stored,
        // and nothing goes back.
        assert_eq!(dave.history("carol".into(), 10).await.unwrap().len(), 0, "nothing read before accepting");
        assert_eq!(dave.call(|a| a.outbox_len()).await.unwrap(), 0, "and nothing goes back");
        assert_eq!(dave.mark_read("carol".into()).await.unwrap(), 0);
        assert_eq!(dave.call(|a| a.outbox_len()).await.unwrap(), 0, "not even a read receipt");
        carol.close().await;
        dave.close().await;
    }

    #[tokio::test]
    async fn two_nodes_chat_by_bundle_and_emit_events() {
        let dir = tempfile::tempdir().unwrap();
        let alice = node(dir.path(), "alice", 1).await;
        let bob = node(dir.path(), "bob", 2).await;
        let mut events = bob.subscribe();
        alice.add_contact(bob.link().await.unwrap(), None).await.unwrap();
        alice.send("bob".into(), "hello".into()).await.unwrap();
        let bundle = alice.export_bundle().await.unwrap();
        bob.import_bundle(bundle.clone()).await.unwrap();
        let alice_account = alice.call(|a| Ok(a.account_public())).await.unwrap();
        assert_eq!(
            events.recv().await.unwrap(),
            NodeEvent::ContactRequest { name: "alice".into(), account: alice_account },
            "the event carries the account to act on, not only the name"
        );
        // Alice's message is read once bob accepts her and her envelopes come again.
        bob.accept_contact("alice".into()).await.unwrap();
        bob.import_bundle(bundle).await.unwrap();
        match events.recv().await.unwrap() {
            NodeEvent::MessageReceived { message, via } => {
                assert_eq!((message.body.as_str(), via), ("hello", "bundle"))
            }
            other => panic!("unexpected {other:?}"),
        }
        // Calls from many tasks at once are serialised on the account.
        let bob = std::sync::Arc::new(bob);
        let sends: Vec<_> = (0..20)
            .map(|i| {
                let bob = bob.clone();
                tokio::spawn(async move { bob.send("alice".into(), format!("m{i}")).await })
            })
            .collect();
        for s in sends {
            s.await.unwrap().unwrap();
        }
        let all = bob.history("alice".into(), 100).await.unwrap();
        assert_eq!(all.len(), 21);
        // Paging back by message id walks the same history, page by page, with no gap or repeat.
        let (mut paged, mut before) = (Vec::new(), None);
        loop {
            let page = bob.history_before("alice".into(), before.clone(), 8).await.unwrap();
            if page.is_empty() {
                break;
            }
            before = Some(page[0].id.clone());
            paged.splice(0..0, page);
        }
        assert_eq!(paged, all);
        assert!(bob.history_before("alice".into(), Some("00".repeat(32)), 8).await.is_err(), "an unknown cursor");
        alice.close().await;
        match std::sync::Arc::try_unwrap(bob) {
            Ok(bob) => bob.close().await,
            Err(_) => panic!("still shared"),
        }
    }

    #[tokio::test]
    async fn queued_sends_share_a_commit_and_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let alice = std::sync::Arc::new(node(dir.path(), "alice", 1).await);
        alice.create_group("crew".into()).await.unwrap();
        // Hold the account thread so that the sends below queue up and go as one batch.
        let busy = alice.clone();
        let blocker = tokio::spawn(async move {
            busy.call(|_| {
                std::thread::sleep(std::time::Duration::from_millis(200));
                Ok(())
            })
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let sends: Vec<_> = (0..50).map(|i| alice.send("crew".into(), format!("m{i}"))).collect();
        let unknown = alice.send("nobody".into(), "x".into());
        let more: Vec<_> = (50..60).map(|i| alice.send("crew".into(), format!("m{i}"))).collect();
        blocker.await.unwrap().unwrap();
        for (i, s) in sends.into_iter().chain(more).enumerate() {
            assert_eq!(s.await.unwrap().body, format!("m{i}"));
        }
        assert!(matches!(unknown.await, Err(Error::NotFound { .. })), "a bad send fails alone");
        let texts: Vec<String> = alice
            .history("crew".into(), 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.kind == "text")
            .map(|m| m.body)
            .collect();
        assert_eq!(texts, (0..60).map(|i| format!("m{i}")).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_wrong_key_fails_to_open() {
        let dir = tempfile::tempdir().unwrap();
        node(dir.path(), "alice", 1).await.close().await;
        let err = Node::open_with_key(dir.path().join("alice"), [9; 32]).await.err().unwrap();
        assert!(matches!(err, Error::WrongPassphrase(_)));
    }
}
