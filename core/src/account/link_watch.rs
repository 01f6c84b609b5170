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
use crate::store::Rows;
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
    /// Followed until then: the link's expiry, or a while after the grant for it to be fetched.
    until_ms: u64,
    requests: Inbox,
    arrived: Vec<(Vec<u8>, ArrivedRequest)>,
    /// Envelopes on the link's topics (the grant's, the requests seen), served to peers.
    held: HashMap<Topic, Vec<Vec<u8>>>,
    /// Envelopes of the grant no peer took yet.
    unpushed: Vec<Vec<u8>>,
}

impl LinkWatch {
    fn new(token: [u8; 16], until_ms: u64) -> LinkWatch {
        LinkWatch {
            token,
            until_ms,
            requests: Inbox::new(&token, Leg::Request),
            arrived: Vec::new(),
            held: HashMap::new(),
            unpushed: Vec::new(),
        }
    }

    fn topics(&self) -> [Topic; 2] {
        [carrier::topic(&self.token, Leg::Request), carrier::topic(&self.token, Leg::Grant)]
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
        self.link_watch = offer
            .filter(|o| o.ticket().expires_ms > self.now())
            .map(|o| LinkWatch::new(o.ticket().token, o.ticket().expires_ms));
    }

    /// The link's topics while it is followed.
    pub(super) fn link_topics(&self) -> Vec<Topic> {
        let now = self.now();
        self.link_watch.as_ref().filter(|w| w.until_ms > now).map(|w| w.topics().to_vec()).unwrap_or_default()
    }

    /// Whether this envelope travels on the link's topics.
    pub(super) fn is_link_envelope(&self, topic: &Topic) -> bool {
        self.link_watch.as_ref().is_some_and(|w| w.topics().contains(topic))
    }

    /// Takes an envelope of the link's topics: a request that opened, once its chunks are all
    /// here. Requests that do not open for our offer are an error and kept nowhere.
    pub(super) fn take_link_envelope(&mut self, envelope: &[u8]) -> Result<Option<ArrivedRequest>> {
        let now = self.now();
        let offer = self.store.read().link_offer()?.map(|b| Offer::from_bytes(&b)).transpose()?;
        let Some(watch) = self.link_watch.as_mut() else { return Err(Error::UnknownTopic) };
        let topic: Topic = envelope[1..17].try_into().expect("an envelope holds a topic");
        if topic != watch.requests.topic() {
            // Our own grant coming back from a peer, or someone else's on our grant topic.
            return Err(Error::Duplicate);
        }
        // After the grant, the offer is gone: requests are no longer taken.
        let offer = offer.ok_or(Error::Expired { what: "device link" })?;
        let Some(request) = watch.requests.take(envelope)? else { return Ok(None) };
        let opened = offer.open(&request, now)?;
        let arrived = ArrivedRequest { applicant: opened.applicant, code: opened.code };
        watch.hold(envelope.to_vec());
        if watch.arrived.iter().any(|(r, _)| *r == request) {
            return Ok(None);
        }
        if watch.arrived.len() >= MAX_ARRIVED {
            return Err(Error::Limit("requests for one device link"));
        }
        watch.arrived.push((request, arrived.clone()));
        Ok(Some(arrived))
    }

    /// The requests that arrived over the network for the link that is out.
    pub fn arrived_link_requests(&self) -> Vec<ArrivedRequest> {
        self.link_watch.as_ref().map(|w| w.arrived.iter().map(|(_, a)| a.clone()).collect()).unwrap_or_default()
    }

    /// Grants the device whose request arrived over the network and shows `code`, and hands the
    /// grant out on the link's topic. If no request that arrived shows that code, the link is
    /// cancelled and nothing is granted (someone else answered it, or the code was mistyped).
    pub fn grant_arrived(&mut self, code: ShortCode) -> Result<Applicant> {
        let found = self
            .link_watch
            .as_ref()
            .and_then(|w| w.arrived.iter().find(|(_, a)| a.code == code))
            .map(|(request, a)| (request.clone(), a.applicant.clone()));
        let Some((request, applicant)) = found else {
            self.cancel_link()?;
            return Err(Error::NotAllowed(
                "no request that arrived shows this code: the link is cancelled and nothing was granted",
            ));
        };
        let token = self.link_watch.as_ref().map(|w| w.token).expect("found above");
        let sealed = self.grant_link(&request, code)?;
        let envelopes = carrier::wrap(&token, Leg::Grant, &sealed, self.entropy.as_mut())?;
        // The offer is used up: from now on the watch only hands out the grant.
        let mut watch = LinkWatch::new(token, self.now().saturating_add(LINK_LIFETIME_MS));
        for e in &envelopes {
            watch.hold(e.clone());
        }
        watch.unpushed = envelopes;
        self.link_watch = Some(watch);
        Ok(applicant)
    }

    /// The grant's envelopes no peer took yet: offered with the outbox (to every session,
    /// as only the one that follows the link's topics pushes them) until one is taken.
    pub(super) fn unpushed_link_envelopes(&self) -> Vec<Vec<u8>> {
        self.link_watch.as_ref().map(|w| w.unpushed.clone()).unwrap_or_default()
    }

    /// A peer took these: those of the grant are pushed no more (and still served).
    pub(super) fn link_handed_over(&mut self, ids: &[EnvelopeId]) {
        if let Some(w) = self.link_watch.as_mut() {
            w.unpushed.retain(|e| !ids.contains(&EnvelopeId(*blake3::hash(e).as_bytes())));
        }
    }

    /// Short ids of what we hold on one of the link's topics.
    pub(super) fn link_ids(&self, topic: &Topic) -> Option<Vec<Item>> {
        let watch = self.link_watch.as_ref().filter(|w| w.topics().contains(topic))?;
        Some(watch.held.get(topic).map(|held| held.iter().map(|e| short_id(e)).collect()).unwrap_or_default())
    }

    pub(super) fn link_envelope(&self, topic: &Topic, id: &Item) -> Option<Vec<u8>> {
        let held = self.link_watch.as_ref()?.held.get(topic)?;
        held.iter().find(|e| short_id(e) == *id).cloned()
    }
}
