//! What neighbours say to each other over a link, one message per frame.
//!
//! Nothing here names a person, a device or a group: only envelope ids (their 16-byte prefix),
//! topics and envelopes, which a libp2p relay sees too.

use crate::envelope::{MAX_ENVELOPE_LEN, TOPIC_LEN, Topic};
use crate::error::{Error, Result};
use crate::sync::{self, Item};
use crate::wire::{Reader, Writer};

/// Entries in one offer, ids in one want or summary: each message stays well under a frame.
pub const MAX_IDS: usize = 2_048;
/// Topics in one offer.
pub const MAX_TOPICS: usize = 256;
/// The first four bytes of a topic: what an offer says of each envelope's topic, so that a
/// neighbour can weigh it against that topic's budget before asking (topics are hashes, so four
/// bytes tell the topics of a crowd apart; the whole topic is in the envelope, in clear).
pub type TopicTag = [u8; 4];

pub fn topic_tag(topic: &Topic) -> TopicTag {
    [topic[0], topic[1], topic[2], topic[3]]
}

/// Why a message of a kind this node does not know failed to decode (a newer node's).
pub const UNKNOWN_KIND: &str = "unknown kind";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeshMessage {
    /// An envelope handed over: `hops_left` > 0 asks the receiver to push it on (a fresh
    /// envelope); `copies` is how many more copies the receiver may make of it.
    Carry { hops_left: u8, copies: u16, envelope: Vec<u8> },
    /// Set reconciliation of the ids each side holds.
    Reconcile(sync::Message),
    /// Ends a reconciliation: the responder lacks these ids and asks for them to be offered.
    Describe { ids: Vec<Item> },
    /// Every id the sender holds (the summary vector of epidemic routing; baselines only).
    Summary { ids: Vec<Item> },
    /// Envelopes the receiver lacks, by topic, each with the copies the sender could hand over.
    Offer { topics: Vec<(Topic, Vec<(Item, u16)>)> },
    /// Envelopes from an offer the sender wants.
    Want { ids: Vec<Item> },
    /// Envelopes the receiver lacks that the sender holds with unlimited copies (ours by
    /// default): their ids alone. With every copy given, a topic decides nothing, so it is not
    /// said: 21 bytes for one envelope where an `Offer` takes 43.
    OfferIds { ids: Vec<Item> },
    /// A Bloom filter of every id the sender holds (filter-based epidemic; a baseline only).
    Filter(super::bloom::Bloom),
    /// Envelopes the receiver lacks that the sender holds with unlimited copies (ours), each
    /// with its topic's tag: 25 bytes for one envelope, where an `Offer` takes 43 and
    /// `OfferIds` 21 without saying what a budget per topic needs (docs/DECISIONS.md, "A
    /// flooder's budget").
    OfferTagged { entries: Vec<(Item, TopicTag)> },
    /// The PRoPHET baseline's delivery predictabilities, by topic (in 65,535ths), with the
    /// sender's pseudonym `node` (random for the router's life: PRoPHET's transitive step
    /// weighs a neighbour by how often we meet it); `answer` asks the receiver to send its own
    /// back.
    Predictability { answer: bool, node: [u8; 16], entries: Vec<(Topic, u16)> },
    /// A message of the nearby channel (`crate::nearby`), opaque here: the host checks and
    /// shows it, and hands back what to pass on. Never stored by a carrier.
    Nearby(Vec<u8>),
}

/// The largest nearby-channel message a frame carries (one is ~650 bytes at most).
pub const MAX_NEARBY_LEN: usize = 1024;

const CARRY: u8 = 1;
const RECONCILE: u8 = 2;
const DESCRIBE: u8 = 3;
const SUMMARY: u8 = 4;
const OFFER: u8 = 5;
const WANT: u8 = 6;
const FILTER: u8 = 7;
const OFFER_IDS: u8 = 8;
const OFFER_TAGGED: u8 = 9;
const PREDICTABILITY: u8 = 10;
const NEARBY: u8 = 11;

impl MeshMessage {
    /// The name of a message kind (a frame's first byte), for figures.
    pub fn kind_name(kind: u8) -> Option<&'static str> {
        Some(match kind {
            CARRY => "carry",
            RECONCILE => "reconcile",
            DESCRIBE => "describe",
            SUMMARY => "summary",
            OFFER => "offer",
            WANT => "want",
            FILTER => "filter",
            OFFER_IDS => "offer-ids",
            OFFER_TAGGED => "offer-tagged",
            PREDICTABILITY => "predictability",
            NEARBY => "nearby",
            _ => return None,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            MeshMessage::Carry { hops_left, copies, envelope } => {
                w.u8(CARRY).u8(*hops_left).u16(*copies).raw(envelope);
            }
            MeshMessage::Reconcile(m) => {
                w.u8(RECONCILE).raw(&m.encode());
            }
            MeshMessage::Describe { ids } => write_ids(w.u8(DESCRIBE), ids),
            MeshMessage::Summary { ids } => write_ids(w.u8(SUMMARY), ids),
            MeshMessage::Want { ids } => write_ids(w.u8(WANT), ids),
            MeshMessage::OfferIds { ids } => write_ids(w.u8(OFFER_IDS), ids),
            MeshMessage::OfferTagged { entries } => {
                w.u8(OFFER_TAGGED).count(entries.len());
                for (id, tag) in entries {
                    w.raw(id).raw(tag);
                }
            }
            MeshMessage::Nearby(bytes) => {
                w.u8(NEARBY).bytes(bytes);
            }
            MeshMessage::Predictability { answer, node, entries } => {
                w.u8(PREDICTABILITY).u8(u8::from(*answer)).raw(node).count(entries.len());
                for (topic, p) in entries {
                    w.raw(topic).u16(*p);
                }
            }
            MeshMessage::Filter(bloom) => {
                w.u8(FILTER).raw(&bloom.salt).u8(bloom.hashes).raw(&bloom.bits);
            }
            MeshMessage::Offer { topics } => {
                w.u8(OFFER).count(topics.len());
                for (topic, entries) in topics {
                    w.raw(topic).count(entries.len());
                    for (id, copies) in entries {
                        w.raw(id).u16(*copies);
                    }
                }
            }
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "mesh message");
        let message = match r.u8()? {
            CARRY => {
                let hops_left = r.u8()?;
                let copies = r.u16()?;
                let len = r.remaining();
                if len > MAX_ENVELOPE_LEN {
                    return Err(Error::TooLong { what: "carried envelope", len, max: MAX_ENVELOPE_LEN });
                }
                MeshMessage::Carry { hops_left, copies, envelope: r.take(len)?.to_vec() }
            }
            RECONCILE => MeshMessage::Reconcile(sync::Message::decode(r.take(r.remaining())?)?),
            DESCRIBE => MeshMessage::Describe { ids: read_ids(&mut r)? },
            SUMMARY => MeshMessage::Summary { ids: read_ids(&mut r)? },
            WANT => MeshMessage::Want { ids: read_ids(&mut r)? },
            OFFER_IDS => MeshMessage::OfferIds { ids: read_ids(&mut r)? },
            NEARBY => MeshMessage::Nearby(r.bytes(MAX_NEARBY_LEN)?.to_vec()),
            PREDICTABILITY => {
                let answer = r.bool()?;
                let node = r.array()?;
                let n = r.count(MAX_TOPICS, TOPIC_LEN + 2)?;
                MeshMessage::Predictability {
                    answer,
                    node,
                    entries: (0..n).map(|_| Ok((r.array()?, r.u16()?))).collect::<Result<_>>()?,
                }
            }
            OFFER_TAGGED => {
                let n = r.count(MAX_IDS, 20)?;
                MeshMessage::OfferTagged {
                    entries: (0..n).map(|_| Ok((r.array()?, r.array()?))).collect::<Result<_>>()?,
                }
            }
            FILTER => {
                let salt = r.array()?;
                let hashes = r.u8()?;
                let bloom = super::bloom::Bloom { salt, hashes, bits: r.take(r.remaining())?.to_vec() };
                bloom.check()?;
                MeshMessage::Filter(bloom)
            }
            OFFER => {
                let n = r.count(MAX_TOPICS, TOPIC_LEN + 1)?;
                let mut topics = Vec::with_capacity(n);
                let mut total = 0;
                for _ in 0..n {
                    let topic: Topic = r.array()?;
                    let m = r.count(MAX_IDS, 18)?;
                    total += m;
                    if total > MAX_IDS {
                        return Err(Error::TooLong { what: "mesh offer", len: total, max: MAX_IDS });
                    }
                    let entries = (0..m).map(|_| Ok((r.array()?, r.u16()?))).collect::<Result<_>>()?;
                    topics.push((topic, entries));
                }
                MeshMessage::Offer { topics }
            }
            _ => return Err(Error::Malformed { what: "mesh message", why: UNKNOWN_KIND }),
        };
        r.finish()?;
        Ok(message)
    }
}

fn write_ids(w: &mut Writer, ids: &[Item]) {
    w.count(ids.len());
    for id in ids {
        w.raw(id);
    }
}

fn read_ids(r: &mut Reader<'_>) -> Result<Vec<Item>> {
    let n = r.count(MAX_IDS, 16)?;
    (0..n).map(|_| r.array()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_kind_round_trips() {
        let messages = [
            MeshMessage::Carry { hops_left: 3, copies: 16, envelope: vec![1; 256] },
            MeshMessage::Reconcile(sync::Message::More),
            MeshMessage::Describe { ids: vec![[2; 16]] },
            MeshMessage::Summary { ids: vec![[3; 16], [4; 16]] },
            MeshMessage::Offer { topics: vec![([5; 16], vec![([6; 16], 8), ([7; 16], 1)])] },
            MeshMessage::Want { ids: vec![] },
            MeshMessage::OfferIds { ids: vec![[8; 16], [9; 16]] },
            MeshMessage::OfferTagged { entries: vec![([8; 16], [1, 2, 3, 4]), ([9; 16], [5; 4])] },
            MeshMessage::Predictability { answer: true, node: [5; 16], entries: vec![([3; 16], 65_535), ([4; 16], 7)] },
            MeshMessage::Filter(crate::mesh::bloom::Bloom::of([9; 16], [[1u8; 16]].iter())),
        ];
        for m in messages {
            assert_eq!(MeshMessage::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn oversized_lists_are_refused() {
        let ids = vec![[0u8; 16]; MAX_IDS + 1];
        let bytes = MeshMessage::Want { ids }.encode();
        assert!(MeshMessage::decode(&bytes).is_err());
        let split = vec![([1; 16], vec![([0; 16], 1); MAX_IDS]), ([2; 16], vec![([0; 16], 1)])];
        assert!(MeshMessage::decode(&MeshMessage::Offer { topics: split }.encode()).is_err());
        let tagged = MeshMessage::OfferTagged { entries: vec![([0; 16], [0; 4]); MAX_IDS + 1] };
        assert!(MeshMessage::decode(&tagged.encode()).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = MeshMessage::decode(&bytes);
        }
    }
}
