//! What the network driver serves: a node's account ([`NodeHost`]) or a relay's ciphertext
//! cache (`crate::relay`). The driver owns the sockets; the host owns the envelopes.

use std::future::Future;
use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};

use super::sessions::{SessionKey, SessionScope};
use crate::account::CatchUpPlan;
use crate::envelope::{EnvelopeId, Topic};
use crate::error::{Error, Result};
use crate::node::{Node, NodeEvent};
use crate::sync::{EnvelopeSource, Scope};

/// What a host wants to follow on the network.
#[derive(Clone, Debug, Default)]
pub struct Interests {
    /// Envelope topics to subscribe to and reconcile.
    pub topics: Vec<Topic>,
    /// Rendezvous points where contact requests to us appear.
    pub rendezvous: Vec<[u8; 32]>,
    /// Our unanswered contact requests, each with the rendezvous point to publish it at.
    pub requests: Vec<([u8; 32], Vec<u8>)>,
    /// Member catch-ups to start with peers that follow the topic (of the same epoch).
    pub history: Vec<(Topic, Scope)>,
    /// Tokens to meet the other members at our relays (`super::meet`).
    pub meet: Vec<super::meet::MeetToken>,
}

/// What a host made of a contact request at one of its rendezvous points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestCheck {
    /// It opened: a request to us (new or seen before).
    Ours,
    /// It does not open with our keys: junk (or a request to a link we reset).
    NotOurs,
    /// The host cannot tell (a relay holds no keys), or could not look now.
    CannotTell,
}

/// Wakes one session when the outbox changed. Each session holds its own: one shared by all
/// woke only whichever session waited on it first, and the session that pushes a message's
/// topic then waited for its next tick (the loopback benchmark's p99 went from 3 to 200 ms).
pub struct OutboxChanges(Option<tokio::sync::watch::Receiver<u64>>);

impl OutboxChanges {
    /// Changes as this watch (a node's outbox counter) tells them.
    pub fn of(watch: tokio::sync::watch::Receiver<u64>) -> Self {
        OutboxChanges(Some(watch))
    }

    /// Changes that never come (a host with no outbox).
    pub fn never() -> Self {
        OutboxChanges(None)
    }

    /// Resolves at the next change.
    pub async fn changed(&mut self) {
        let woke = match &mut self.0 {
            Some(rx) => rx.changed().await.is_ok(),
            None => false,
        };
        if !woke {
            // No outbox, or the node is gone: never wake again.
            std::future::pending::<()>().await
        }
    }
}

pub trait Host: Send + Sync + 'static {
    /// What a session of this scope should follow (`None`: a host whose identity does not
    /// rotate, which follows what it follows).
    fn interests(&self, scope: Option<SessionScope>) -> impl Future<Output = Result<Interests>> + Send;
    /// What the current network session should serve now; `None` if this host's network
    /// identity does not rotate (a relay's peer id is how its clients find it).
    fn session(&self) -> impl Future<Output = Option<SessionKey>> + Send;
    /// Envelopes waiting to be pushed, oldest first.
    fn outbox(&self, limit: usize) -> impl Future<Output = Result<Vec<Vec<u8>>>> + Send;
    /// What wakes a session when something new entered the outbox: each session asks for
    /// its own.
    fn outbox_changes(&self) -> OutboxChanges;
    /// A peer took these envelopes.
    fn handed_over(&self, ids: Vec<EnvelopeId>) -> impl Future<Output = ()> + Send;
    /// Hands over an envelope (already checked for shape) from `from`. Returns at once: the
    /// host stores it in its own time (a node batches what arrives together).
    fn receive_envelope(&self, bytes: Vec<u8>, from: PeerId);
    /// Hands over envelopes a catch-up fetched, and resolves once they are stored (so the next
    /// page is asked for only then, and what follows sees them).
    fn receive_fetched(&self, envelopes: Vec<Vec<u8>>, from: PeerId) -> impl Future<Output = ()> + Send;
    /// Connected to a listed relay (`settled`: for a whole resync round): what to catch up
    /// from the relays, if anything.
    fn catch_up_plan(&self, settled: bool) -> impl Future<Output = Option<CatchUpPlan>> + Send;
    /// A relay answered the whole of `plan`.
    fn caught_up(&self, plan: CatchUpPlan) -> impl Future<Output = ()> + Send;
    /// A contact request seen at one of our rendezvous points: whether it was for us.
    fn receive_request(&self, bytes: Vec<u8>) -> impl Future<Output = RequestCheck> + Send;
    /// Runs `f` against the envelope store, on whichever thread owns it.
    fn with_source<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn EnvelopeSource) -> Result<T> + Send + 'static,
    ) -> impl Future<Output = Result<T>> + Send;
    /// Addresses worth dialling on start (peers reached before).
    fn peer_addrs(&self) -> impl Future<Output = Vec<Multiaddr>> + Send;
    /// Remembers an address a peer was reached at.
    fn note_peer_addr(&self, addr: Multiaddr) -> impl Future<Output = ()> + Send;
    fn emit(&self, event: NodeEvent);
}

/// A node's account as the network's host.
pub struct NodeHost(pub Arc<Node>, tokio::sync::watch::Receiver<u64>);

impl NodeHost {
    pub fn new(node: Arc<Node>) -> Self {
        let watch = node.outbox_watch();
        NodeHost(node, watch)
    }
}

impl Host for NodeHost {
    async fn interests(&self, scope: Option<SessionScope>) -> Result<Interests> {
        self.0
            .call(move |a| {
                a.follow_the_day();
                let Some(scope) = scope else {
                    return Ok(Interests {
                        topics: a.network_topics(),
                        rendezvous: a.rendezvous_points(),
                        requests: a.pending_requests()?,
                        history: a.history_wanted(),
                        meet: a.meet_tokens(crate::group::period_of(a.now())),
                    });
                };
                use super::sessions::Serves;
                let (topics, point) = a.session_topics(&scope);
                Ok(Interests {
                    topics,
                    rendezvous: if scope.serves == Serves::Rendezvous { vec![point] } else { Vec::new() },
                    requests: if scope.serves == Serves::Requests {
                        a.pending_requests_at(scope.period)?
                    } else {
                        Vec::new()
                    },
                    history: if matches!(scope.serves, Serves::Current | Serves::Previous) {
                        a.history_wanted()
                    } else {
                        Vec::new()
                    },
                    meet: if scope.serves == Serves::Current { a.meet_tokens(scope.period) } else { Vec::new() },
                })
            })
            .await
    }

    async fn session(&self) -> Option<SessionKey> {
        self.0.call(|a| Ok(a.network_session())).await.ok()
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<Vec<u8>>> {
        let batch = self.0.call(move |a| a.outbox(limit)).await?;
        Ok(self.0.take_outbox(batch))
    }

    fn outbox_changes(&self) -> OutboxChanges {
        OutboxChanges(Some(self.1.clone()))
    }

    async fn handed_over(&self, ids: Vec<EnvelopeId>) {
        if let Ok(sent) = self.0.call(move |a| a.handed_over(&ids)).await {
            for id in sent {
                self.0.emit(NodeEvent::DeliveryChanged { id, state: crate::node::Delivery::Sent });
            }
        }
    }

    fn receive_envelope(&self, bytes: Vec<u8>, _from: PeerId) {
        // Queued by the call; nobody needs to wait for the outcome.
        drop(self.0.receive_envelope(bytes, super::VIA));
    }

    async fn receive_fetched(&self, envelopes: Vec<Vec<u8>>, _from: PeerId) {
        let pending: Vec<_> = envelopes.into_iter().map(|e| self.0.receive_envelope(e, super::VIA)).collect();
        futures::future::join_all(pending).await;
    }

    async fn catch_up_plan(&self, settled: bool) -> Option<CatchUpPlan> {
        self.0.call(move |a| a.catch_up_plan(settled)).await.ok().flatten()
    }

    async fn caught_up(&self, plan: CatchUpPlan) {
        if let Ok(n) = self.0.call(move |a| a.caught_up(&plan)).await {
            tracing::debug!(conversations = n, "caught up from a relay");
        }
    }

    async fn receive_request(&self, bytes: Vec<u8>) -> RequestCheck {
        match self.0.receive_request(bytes).await {
            Ok(()) => RequestCheck::Ours,
            Err(Error::DecryptionFailed | Error::Malformed { .. } | Error::UnsupportedVersion { .. }) => {
                RequestCheck::NotOurs
            }
            Err(_) => RequestCheck::CannotTell,
        }
    }

    async fn with_source<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn EnvelopeSource) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.0.call(move |a| f(&*a)).await
    }

    async fn peer_addrs(&self) -> Vec<Multiaddr> {
        let addrs = self.0.call(|a| a.peer_addrs()).await.unwrap_or_default();
        addrs.iter().filter_map(|a| a.parse().ok()).collect()
    }

    async fn note_peer_addr(&self, addr: Multiaddr) {
        let _ = self.0.call(move |a| a.note_peer_addr(&addr.to_string())).await;
    }

    fn emit(&self, event: NodeEvent) {
        self.0.emit(event);
    }
}
