//! A new device joining an account over the network (libp2p, the mesh), before it has an
//! account of its own: a host that follows only the link's two topics (`crate::devices::carrier`), offers its
//! request there and waits for the grant. It runs under a fresh peer id that it never uses
//! again, so nothing it does on the network ties it to the device it becomes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use libp2p::{Multiaddr, PeerId};
use tokio::sync::watch;

use super::driver::{NetConfig, NetHandle, start_host};
use super::host::{Host, Interests, OutboxChanges, RequestCheck};
use crate::devices::carrier::{self, Inbox, Leg};
use crate::devices::linking::{Joining, ShortCode};
use crate::envelope::{EnvelopeId, Topic};
use crate::error::{Error, Result};
use crate::node::NodeEvent;
use crate::sync::{EnvelopeSource, Item, Scope, short_id};

fn id_of(envelope: &[u8]) -> EnvelopeId {
    EnvelopeId(*blake3::hash(envelope).as_bytes())
}

/// What a joining device holds on the link's topics: its request's envelopes.
#[derive(Default)]
struct Held(HashMap<Topic, Vec<Vec<u8>>>);

impl EnvelopeSource for Held {
    fn ids(&self, scope: &Scope) -> Option<Vec<Item>> {
        let Scope::Topic(topic) = scope else { return None };
        Some(self.0.get(topic).map(|held| held.iter().map(|e| short_id(&id_of(e))).collect()).unwrap_or_default())
    }

    fn envelope(&self, scope: &Scope, id: &Item) -> Option<Vec<u8>> {
        let Scope::Topic(topic) = scope else { return None };
        self.0.get(topic)?.iter().find(|e| short_id(&id_of(e)) == *id).cloned()
    }
}

struct State {
    held: Held,
    /// The request's envelopes no peer took yet.
    unpushed: Vec<Vec<u8>>,
    nonces: Inbox,
    /// The exchange bound to the primary's nonce, and the grant's inbox under its key, once
    /// the nonce came.
    bound: Option<(Joining, Inbox)>,
}

/// The joining device as the network driver's host.
struct JoinHost {
    joining: Joining,
    /// The request's, the grant's and the nonce's topics.
    topics: [Topic; 3],
    state: Mutex<State>,
    code: watch::Sender<Option<ShortCode>>,
    grant: watch::Sender<Option<Granted>>,
}

/// A grant that came over the network, with the exchange it opens under (bound to the
/// primary's nonce): what [`crate::account::Account::create_linked`] takes.
#[derive(Clone)]
pub struct Granted {
    pub joining: Joining,
    pub grant: Vec<u8>,
}

impl JoinHost {
    fn take(&self, envelope: &[u8]) {
        let Some(topic) = envelope.get(1..17) else { return };
        let Ok(mut state) = self.state.lock() else { return };
        if topic == self.topics[2] {
            // The primary answers our request with a nonce: only the first counts (it is
            // sealed to us; nobody else can make one we open).
            match state.nonces.take(envelope) {
                Ok(Some(nonce)) if state.bound.is_none() => {
                    let Ok(nonce) = <[u8; 32]>::try_from(nonce.as_slice()) else { return };
                    let bound = self.joining.with_nonce(&nonce);
                    let inbox = Inbox::with_key(&bound.ticket().token, Leg::Grant, bound.grant_chunk_key());
                    self.code.send_replace(Some(bound.code()));
                    state.bound = Some((bound, inbox));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(%e, "not a chunk of our link's nonce"),
            }
        } else if topic == self.topics[1] {
            // (Chunks before the nonce are fetched again later by reconciliation.)
            let Some((bound, grants)) = state.bound.as_mut() else { return };
            match grants.take(envelope) {
                // Only a grant that opens for this request ends the wait: someone else who saw
                // the link can put bytes on its topic, not a grant this device opens.
                Ok(Some(grant)) if bound.open_grant(&grant).is_ok() => {
                    self.grant.send_replace(Some(Granted { joining: bound.clone(), grant }));
                }
                Ok(Some(_)) => tracing::debug!("a message on the link's grant topic that is not our grant"),
                Ok(None) => {}
                Err(e) => tracing::debug!(%e, "not a chunk of our link's grant"),
            }
        }
    }
}

impl Host for JoinHost {
    async fn interests(&self, _scope: Option<super::sessions::SessionScope>) -> Result<Interests> {
        Ok(Interests { topics: self.topics.to_vec(), ..Interests::default() })
    }

    async fn session(&self) -> Option<super::SessionKey> {
        None
    }

    async fn outbox(&self, _limit: usize) -> Result<Vec<Vec<u8>>> {
        Ok(self.state.lock().map(|s| s.unpushed.clone()).unwrap_or_default())
    }

    fn outbox_changes(&self) -> OutboxChanges {
        OutboxChanges::never()
    }

    async fn handed_over(&self, ids: Vec<EnvelopeId>) {
        if let Ok(mut s) = self.state.lock() {
            s.unpushed.retain(|e| !ids.contains(&id_of(e)));
        }
    }

    fn receive_envelope(&self, bytes: Vec<u8>, _from: PeerId) {
        self.take(&bytes);
    }

    async fn receive_fetched(&self, envelopes: Vec<Vec<u8>>, _from: PeerId) {
        for e in envelopes {
            self.take(&e);
        }
    }

    async fn catch_up_plan(&self, _settled: bool) -> Option<crate::account::CatchUpPlan> {
        None
    }

    async fn caught_up(&self, _plan: crate::account::CatchUpPlan) {}

    async fn receive_request(&self, _bytes: Vec<u8>) -> RequestCheck {
        RequestCheck::CannotTell
    }

    async fn with_source<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn EnvelopeSource) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let state = self.state.lock().map_err(|_| Error::Internal("joining state poisoned"))?;
        f(&state.held)
    }

    async fn peer_addrs(&self) -> Vec<Multiaddr> {
        Vec::new()
    }

    async fn note_peer_addr(&self, _addr: Multiaddr) {}

    fn emit(&self, _event: NodeEvent) {}
}

impl crate::mesh::driver::MeshHost for JoinHost {
    async fn interests(&self) -> Option<crate::mesh::driver::MeshInterests> {
        let state = self.state.lock().ok()?;
        let carried =
            state.held.0.iter().flat_map(|(t, held)| held.iter().map(|e| (short_id(&id_of(e)), *t))).collect();
        Some(crate::mesh::driver::MeshInterests { delivered: self.topics.to_vec(), carried })
    }

    async fn envelopes(&self, wanted: Vec<(Item, Topic)>) -> Vec<Vec<u8>> {
        let Ok(state) = self.state.lock() else { return Vec::new() };
        wanted.iter().filter_map(|(id, topic)| state.held.envelope(&Scope::Topic(*topic), id)).collect()
    }

    async fn outbox(&self) -> Option<(Vec<Vec<u8>>, Vec<EnvelopeId>)> {
        Some((self.state.lock().ok()?.unpushed.clone(), Vec::new()))
    }

    async fn handed_over(&self, ids: Vec<EnvelopeId>) {
        Host::handed_over(self, ids).await;
    }

    fn deliver(&self, envelope: Vec<u8>) {
        self.take(&envelope);
    }

    fn emit(&self, _event: NodeEvent) {}

    fn outbox_changes(&self) -> OutboxChanges {
        OutboxChanges::never()
    }

    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<NodeEvent>> {
        None
    }
}

/// A joining device on the network and the mesh: its request offered on the link's topic
/// until the grant comes, over whichever of them reaches the account's device.
pub struct JoinOverNetwork {
    host: Arc<JoinHost>,
    net: Option<NetHandle>,
    meshes: Vec<crate::mesh::driver::MeshHandle>,
    grant: watch::Receiver<Option<Granted>>,
    code: watch::Receiver<Option<ShortCode>>,
}

impl JoinOverNetwork {
    /// Holds `joining`'s request ready to offer, on no transport yet.
    pub fn new(joining: &Joining, entropy: &mut (dyn crate::crypto::Entropy + Send)) -> Result<Self> {
        let token = joining.ticket().token;
        let envelopes = carrier::wrap(&token, Leg::Request, joining.request(), entropy)?;
        let topics = [
            carrier::topic(&token, Leg::Request),
            carrier::topic(&token, Leg::Grant),
            carrier::topic(&token, Leg::Nonce),
        ];
        let mut held = Held::default();
        held.0.insert(topics[0], envelopes.clone());
        let (grant_tx, grant) = watch::channel(None);
        let (code_tx, code) = watch::channel(None);
        let host = Arc::new(JoinHost {
            joining: joining.clone(),
            topics,
            state: Mutex::new(State {
                held,
                unpushed: envelopes,
                nonces: Inbox::with_key(&token, Leg::Nonce, joining.nonce_chunk_key()),
                bound: None,
            }),
            code: code_tx,
            grant: grant_tx,
        });
        Ok(JoinOverNetwork { host, net: None, meshes: Vec::new(), grant, code })
    }

    /// Offers `joining`'s request on the network `config` reaches (a bootstrap peer, a relay,
    /// the LAN by mDNS). Must be called inside a tokio runtime.
    pub async fn start(
        joining: &Joining,
        config: NetConfig,
        entropy: &mut (dyn crate::crypto::Entropy + Send),
    ) -> Result<Self> {
        let mut join = Self::new(joining, entropy)?;
        join.start_libp2p(config).await?;
        Ok(join)
    }

    /// Goes on libp2p too, under a peer id of its own.
    pub async fn start_libp2p(&mut self, config: NetConfig) -> Result<()> {
        let net = start_host(self.host.clone(), config, libp2p::identity::Keypair::generate_ed25519()).await?;
        if let Some(old) = self.net.replace(net) {
            old.stop();
        }
        Ok(())
    }

    /// Goes on the mesh over `radio` too. Must be called inside a tokio runtime.
    pub fn attach_radio(&mut self, radio: impl crate::mesh::radio::Radio, config: crate::mesh::RouterConfig) {
        self.meshes.push(crate::mesh::driver::start_host(self.host.clone(), radio, config));
    }

    /// The code to show once the primary answered (its nonce came): over the network the code
    /// covers that nonce, so it differs from [`Joining::code`] (the file path's).
    pub fn code(&self) -> Option<ShortCode> {
        *self.code.borrow()
    }

    /// What tells when the code is known.
    pub fn code_receiver(&self) -> watch::Receiver<Option<ShortCode>> {
        self.code.clone()
    }

    /// The grant, once it came.
    pub fn try_grant(&self) -> Option<Granted> {
        self.grant.borrow().clone()
    }

    /// How much of the grant came: (chunks here, chunks in all), once its first chunk did; a
    /// grant with the history may be many.
    pub fn progress(&self) -> Option<(usize, usize)> {
        self.host.state.lock().ok()?.bound.as_ref()?.1.progress()
    }

    /// What tells when the grant came.
    pub fn grant_receiver(&self) -> watch::Receiver<Option<Granted>> {
        self.grant.clone()
    }

    /// Waits for the grant.
    pub async fn grant(&mut self) -> Result<Granted> {
        let got = self.grant.wait_for(Option::is_some).await.map_err(|_| Error::Closed)?;
        Ok(got.clone().expect("waited for Some"))
    }

    /// The libp2p side of this join, if it is on libp2p.
    pub fn net(&self) -> Option<&NetHandle> {
        self.net.as_ref()
    }

    /// Leaves libp2p and the mesh.
    pub fn stop(&self) {
        if let Some(net) = &self.net {
            net.stop();
        }
        for mesh in &self.meshes {
            mesh.stop();
        }
    }
}

impl Drop for JoinOverNetwork {
    fn drop(&mut self) {
        self.stop();
    }
}
