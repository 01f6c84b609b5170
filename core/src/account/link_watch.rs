//! The linking exchange on the network, on the account's device: while its link is out, the
//! node follows the link's two topics (`crate::devices::carrier`), puts together the requests
//! that arrive, and once the user confirmed a code hands the grant out there.
//!
//! Held in memory only: the link lives ten minutes, and a grant not fetched before a restart
//! is made again by linking again. The stored offer brings the watch back after a restart.

use std::collections::HashMap;

use super::Account;
use crate::devices::carrier::{self, Inbox, Leg};
use crate::devices::linking::{Applicant, LINK_LIFETIME_MS, Offer, ShortCode};
use crate::envelope::{EnvelopeId, Topic};
use crate::error::{Error, Result};
use crate::sync::Item;

fn short_id(envelope: &[u8]) -> Item {
    crate::sync::short_id(&EnvelopeId(*blake3::hash(envelope).as_bytes()))
}

/// Requests kept for the user to choose from: the new device's, and a few from whoever else
/// saw the link.
const MAX_ARRIVED: usize = 8;

/// A request that arrived and opened: who asks, and the code its screen shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrivedRequest {
    pub applicant: Applicant,
    pub code: ShortCode,
}

pub(super) struct LinkWatch {
    token: [u8; 16],
    /// The offer while it is out (parsed once: an outsider's junk costs no store read and no
    /// key agreement); `None` once it granted.
    offer: Option<Offer>,
    /// Whom the offer granted, once it did.
    granted: Option<Applicant>,
    /// Followed until then: the link's expiry, or a while after the grant for it to be fetched.
    until_ms: u64,
    requests: Inbox,
    /// Each request that opened, with the nonce we answered it with, and what it shows.
    arrived: Vec<(Vec<u8>, [u8; 32], ArrivedRequest)>,
    /// Envelopes on the link's topics (the grant's, the requests that arrived), served to peers.
    held: HashMap<Topic, Vec<Vec<u8>>>,
    /// Envelopes of the nonces and the grant no peer took yet.
    unpushed: Vec<Vec<u8>>,
}

impl LinkWatch {
    fn new(token: [u8; 16], offer: Option<Offer>, until_ms: u64) -> LinkWatch {
        LinkWatch {
            token,
            offer,
            granted: None,
            until_ms,
            requests: Inbox::new(&token, Leg::Request),
            arrived: Vec::new(),
            held: HashMap::new(),
            unpushed: Vec::new(),
        }
    }

    fn topics(&self) -> [Topic; 3] {
        [
            carrier::topic(&self.token, Leg::Request),
            carrier::topic(&self.token, Leg::Grant),
            carrier::topic(&self.token, Leg::Nonce),
        ]
    }

    fn hold(&mut self, envelope: Vec<u8>) {
        let topic: Topic = envelope[1..17].try_into().expect("an envelope holds a topic");
        let held = self.held.entry(topic).or_default();
        if !held.contains(&envelope) {
            held.push(envelope);
        }
    }
}

impl Account {
    /// Starts following the link's topics for `offer` (a new link, or the stored one after a
    /// restart).
    pub(super) fn watch_link(&mut self, offer: Option<&Offer>) {
        let now = self.now();
        self.link_watch = offer.filter(|o| o.ticket().expires_ms > now).and_then(|o| {
            let kept = Offer::from_bytes(&o.to_bytes()).ok()?;
            Some(LinkWatch::new(o.ticket().token, Some(kept), o.ticket().expires_ms))
        });
    }

    /// The link's watch while it is followed.
    fn live_watch(&self) -> Option<&LinkWatch> {
        let now = self.now();
        self.link_watch.as_ref().filter(|w| w.until_ms > now)
    }

    /// The link's topics while it is followed.
    pub(super) fn link_topics(&self) -> Vec<Topic> {
        self.live_watch().map(|w| w.topics().to_vec()).unwrap_or_default()
    }

    /// Whether this envelope travels on the link's topics (while the link is followed).
    pub(super) fn is_link_envelope(&self, topic: &Topic) -> bool {
        self.live_watch().is_some_and(|w| w.topics().contains(topic))
    }

    /// Takes an envelope of the link's topics: a request that opened, once its chunks are all
    /// here. It is answered with a fresh nonce (on the nonce leg, sealed to that requester), which
    /// its code and grant key cover: a request made after someone saw the new device's code
    /// cannot be ground to show it. The cheap checks come first (the topic, the chunk's seal);
    /// a whole request costs one key agreement. What does not open is an error and kept
    /// nowhere.
    pub(super) fn take_link_envelope(&mut self, envelope: &[u8]) -> Result<Option<ArrivedRequest>> {
        let now = self.now();
        let Some(watch) = self.link_watch.as_mut() else { return Err(Error::UnknownTopic) };
        let topic: Topic = envelope[1..17].try_into().expect("an envelope holds a topic");
        if topic != watch.requests.topic() {
            // Our own grant or nonce coming back from a peer, or someone else's on those topics.
            return Err(Error::Duplicate);
        }
        // After the grant, or with the requests we keep all here, nothing more is taken.
        if watch.offer.is_none() {
            return Err(Error::Expired { what: "device link" });
        }
        if watch.arrived.len() >= MAX_ARRIVED {
            return Err(Error::Limit("requests for one device link"));
        }
        let Some(request) = watch.requests.take(envelope)? else { return Ok(None) };
        if watch.arrived.iter().any(|(r, _, _)| *r == request) {
            return Ok(None);
        }
        // A whole request that is new: it gets a nonce of its own (the same one after a restart).
        let offer = watch.offer.as_ref().expect("checked above");
        let nonce = offer.nonce_for(&request);
        let opened = offer.open_with_nonce(&request, now, Some(&nonce))?;
        let token = watch.token;
        let answer = carrier::wrap_with(&token, Leg::Nonce, &opened.nonce_chunk_key(), &nonce, self.entropy.as_mut())?;
        let watch = self.link_watch.as_mut().expect("checked above");
        let arrived = ArrivedRequest { applicant: opened.applicant, code: opened.code };
        watch.hold(envelope.to_vec());
        for e in answer {
            watch.hold(e.clone());
            watch.unpushed.push(e);
        }
        watch.arrived.push((request, nonce, arrived.clone()));
        Ok(Some(arrived))
    }

    /// The requests that arrived over the network for the link that is out.
    pub fn arrived_link_requests(&self) -> Vec<ArrivedRequest> {
        self.live_watch().map(|w| w.arrived.iter().map(|(_, _, a)| a.clone()).collect()).unwrap_or_default()
    }

    /// Grants the device whose request arrived over the network and shows `code`, and hands the
    /// grant out on the link's topic. If no request that arrived shows that code, or more than
    /// one does, the link is cancelled and nothing is granted.
    pub fn grant_arrived(&mut self, code: ShortCode, history: super::HistoryChoice) -> Result<Applicant> {
        if let Some(granted) = self.link_watch.as_ref().and_then(|w| w.granted.as_ref()) {
            // (Asked again: the grant already went; the watch goes on serving it.)
            return Err(Error::AlreadyExists(format!("a grant for {:?} from this link", granted.name)));
        }
        let matching: Vec<(Vec<u8>, [u8; 32])> = self
            .live_watch()
            .map(|w| w.arrived.iter().filter(|(_, _, a)| a.code == code).map(|(r, n, _)| (r.clone(), *n)).collect())
            .unwrap_or_default();
        let [(request, nonce)] = &matching[..] else {
            self.cancel_link()?;
            return Err(Error::NotAllowed(match matching.len() {
                0 => "no request that arrived shows this code: the link is cancelled and nothing was granted",
                _ => {
                    "several requests that arrived show this code (someone else answered the link too): the link is cancelled and nothing was granted"
                }
            }));
        };
        let (request, nonce) = (request.clone(), *nonce);
        let now = self.now();
        let watch = self.link_watch.as_mut().expect("a live watch above");
        let token = watch.token;
        let offer = watch.offer.take().ok_or(Error::Expired { what: "device link" })?;
        let opened = offer.open_with_nonce(&request, now, Some(&nonce))?;
        let key = opened.grant_chunk_key();
        let applicant = opened.applicant.clone();
        let sealed = match self.grant_opened(offer, opened, history) {
            Ok(sealed) => sealed,
            Err(e) => {
                // Nothing was granted: the link goes on as it was.
                self.watch_link(self.stored_offer().ok().as_ref());
                return Err(e);
            }
        };
        let envelopes = carrier::wrap_with(&token, Leg::Grant, &key, &sealed, self.entropy.as_mut())?;
        // The offer is used up: from now on the watch only hands out the grant.
        let mut watch = LinkWatch::new(token, None, now.saturating_add(LINK_LIFETIME_MS));
        watch.granted = Some(applicant.clone());
        for e in &envelopes {
            watch.hold(e.clone());
        }
        watch.unpushed = envelopes;
        self.link_watch = Some(watch);
        Ok(applicant)
    }

    /// The grant's envelopes no peer took yet (at most `limit`): offered with the outbox (to
    /// every session, as only the one that follows the link's topics pushes them) until one is
    /// taken, and not after the watch ends.
    pub(super) fn unpushed_link_envelopes(&self, limit: usize) -> Vec<Vec<u8>> {
        self.live_watch().map(|w| w.unpushed.iter().take(limit).cloned().collect()).unwrap_or_default()
    }

    /// A peer took these: those of the grant are pushed no more (and still served).
    pub(super) fn link_handed_over(&mut self, ids: &[EnvelopeId]) {
        if let Some(w) = self.link_watch.as_mut() {
            w.unpushed.retain(|e| !ids.contains(&EnvelopeId(*blake3::hash(e).as_bytes())));
        }
    }

    /// Short ids of what we hold on one of the link's topics.
    pub(super) fn link_ids(&self, topic: &Topic) -> Option<Vec<Item>> {
        let watch = self.live_watch().filter(|w| w.topics().contains(topic))?;
        Some(watch.held.get(topic).map(|held| held.iter().map(|e| short_id(e)).collect()).unwrap_or_default())
    }

    pub(super) fn link_envelope(&self, topic: &Topic, id: &Item) -> Option<Vec<u8>> {
        let held = self.live_watch()?.held.get(topic)?;
        held.iter().find(|e| short_id(e) == *id).cloned()
    }
}
