//! Carries the linking exchange as envelopes, so that it travels wherever envelopes do
//! (gossipsub and reconciliation over libp2p, a relay's cache, the Bluetooth mesh) with no
//! protocol of its own.
//!
//! Each leg of the exchange (the request, the grant) has a topic of its own, derived from the
//! link's token: only those who saw the link know it, and nothing in it names the account. A
//! message is cut into chunks; each chunk is sealed under a key derived from the token and the
//! leg, with its place in the message, and padded to an envelope size bucket. Without the
//! token a chunk is as random as any envelope of the same size. The message inside keeps the
//! linking exchange's own protection (`super::linking`): a chunk only gets bytes to the right
//! door; what opens them is the exchange.
//!
//! `version (1) | topic (16) | nonce (24) | sealed (message id 16 | index 2 | count 2 | length 4 | chunk | zeros)`

use std::collections::HashMap;

use crate::crypto::{AEAD_TAG_LEN, Entropy, NONCE_LEN, keyed_hash, label};
use crate::envelope::{ENVELOPE_VERSION, MAX_ENVELOPE_LEN, PREFIX_LEN, SIZE_BUCKETS, TOPIC_LEN, Topic};
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

const TOPIC: &[u8] = label("weft/v1/link/topic");
const CHUNK_KEY: &[u8] = label("weft/v1/link/chunk");
const CHUNK_HEADER_LEN: usize = 16 + 2 + 2 + 4;
/// The most message bytes one envelope carries.
pub const MAX_CHUNK_LEN: usize = MAX_ENVELOPE_LEN - PREFIX_LEN - AEAD_TAG_LEN - CHUNK_HEADER_LEN;
/// Messages being put together at once on one leg: a real one and a few that someone who saw
/// the link sent beside it.
const MAX_MESSAGES_IN_PROGRESS: usize = 4;
/// Messages handed out whose late chunks are recognised and dropped.
const MAX_DONE: usize = 64;

/// Which way a message of the exchange goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leg {
    /// From the new device to the account's device.
    Request,
    /// From the account's device to the new device.
    Grant,
    /// The account's device's nonce for one request (the network path), before any code shows.
    Nonce,
}

impl Leg {
    fn tag(self) -> u8 {
        match self {
            Leg::Request => 1,
            Leg::Grant => 2,
            Leg::Nonce => 3,
        }
    }

    /// The largest message this leg carries.
    fn max_message_len(self) -> usize {
        match self {
            // A request is an ephemeral key and a sealed device key, dh key and name.
            Leg::Request => 4 * 1024,
            Leg::Grant => super::linking::MAX_GRANT_LEN + 1 + AEAD_TAG_LEN,
            Leg::Nonce => 32,
        }
    }
}

/// The topic a leg of the link with this token travels on.
pub fn topic(token: &[u8; 16], leg: Leg) -> Topic {
    let hash = keyed_hash(TOPIC, &[token, &[leg.tag()]]);
    hash[..TOPIC_LEN].try_into().expect("16 of 32 bytes")
}

fn chunk_key(token: &[u8; 16], leg: Leg) -> [u8; 32] {
    keyed_hash(CHUNK_KEY, &[token, &[leg.tag()]])
}

/// Cuts `message` into envelopes on the leg's topic, sealed under the token's key for the leg.
pub fn wrap(token: &[u8; 16], leg: Leg, message: &[u8], entropy: &mut dyn Entropy) -> Result<Vec<Vec<u8>>> {
    wrap_with(token, leg, &chunk_key(token, leg), message, entropy)
}

/// [`wrap`] under a key of the caller's (the grant: a key of the exchange, which only its two
/// ends hold).
pub fn wrap_with(
    token: &[u8; 16],
    leg: Leg,
    key: &[u8; 32],
    message: &[u8],
    entropy: &mut dyn Entropy,
) -> Result<Vec<Vec<u8>>> {
    if message.len() > leg.max_message_len() {
        return Err(Error::TooLong { what: "device link message", len: message.len(), max: leg.max_message_len() });
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&entropy.bytes32()?[..16]);
    let chunks: Vec<&[u8]> = if message.is_empty() { vec![&[][..]] } else { message.chunks(MAX_CHUNK_LEN).collect() };
    let count = u16::try_from(chunks.len()).map_err(|_| Error::Limit("a device link message of too many chunks"))?;
    let topic = topic(token, leg);
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| seal_chunk(&topic, key, &id, index as u16, count, chunk, entropy))
        .collect()
}

/// One chunk of message `id` as an envelope of the smallest bucket that holds it.
fn seal_chunk(
    topic: &Topic,
    key: &[u8; 32],
    id: &[u8; 16],
    index: u16,
    count: u16,
    chunk: &[u8],
    entropy: &mut dyn Entropy,
) -> Result<Vec<u8>> {
    let needed = PREFIX_LEN + CHUNK_HEADER_LEN + chunk.len() + AEAD_TAG_LEN;
    let size = SIZE_BUCKETS.iter().copied().find(|b| *b >= needed).ok_or(Error::TooLong {
        what: "device link chunk",
        len: chunk.len(),
        max: MAX_CHUNK_LEN,
    })?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&entropy.bytes32()?[..NONCE_LEN]);
    let mut plain = Writer::with_capacity(size);
    plain.raw(id).u16(index).u16(count).u32(chunk.len() as u32).raw(chunk);
    let mut plain = plain.into_bytes();
    plain.resize(size - PREFIX_LEN - AEAD_TAG_LEN, 0);
    let mut envelope = Vec::with_capacity(size);
    envelope.push(ENVELOPE_VERSION);
    envelope.extend_from_slice(topic);
    envelope.extend_from_slice(&nonce);
    crate::crypto::seal_in_place(key, &nonce, &envelope.clone(), &mut plain);
    envelope.extend_from_slice(&plain);
    Ok(envelope)
}

/// One message being put together.
struct Parts {
    count: u16,
    chunks: HashMap<u16, Vec<u8>>,
    bytes: usize,
    /// When the first chunk came, in arrivals: the oldest is let go first.
    started: u64,
}

/// Puts together the messages of one leg from its envelopes, in any order and with
/// duplicates, within bounded memory.
pub struct Inbox {
    token: [u8; 16],
    leg: Leg,
    topic: Topic,
    key: [u8; 32],
    messages: HashMap<[u8; 16], Parts>,
    /// The latest messages handed out: their late chunks are dropped.
    done: std::collections::VecDeque<[u8; 16]>,
    arrivals: u64,
}

impl Inbox {
    pub fn new(token: &[u8; 16], leg: Leg) -> Inbox {
        Inbox::with_key(token, leg, chunk_key(token, leg))
    }

    /// An inbox for chunks sealed under `key` (see [`wrap_with`]).
    pub fn with_key(token: &[u8; 16], leg: Leg, key: [u8; 32]) -> Inbox {
        Inbox {
            token: *token,
            leg,
            topic: topic(token, leg),
            key,
            messages: HashMap::new(),
            done: std::collections::VecDeque::new(),
            arrivals: 0,
        }
    }

    pub fn topic(&self) -> Topic {
        self.topic
    }

    pub fn token(&self) -> &[u8; 16] {
        &self.token
    }

    /// How far the message furthest along is: (chunks here, chunks in all), for a progress
    /// bar; `None` before its first chunk.
    pub fn progress(&self) -> Option<(usize, usize)> {
        self.messages.values().map(|p| (p.chunks.len(), usize::from(p.count))).max_by_key(|(have, _)| *have)
    }

    /// Takes one envelope of this leg's topic: `Some(message)` once its last chunk came.
    /// Bytes that are not a chunk of this link are an error and change nothing.
    pub fn take(&mut self, envelope: &[u8]) -> Result<Option<Vec<u8>>> {
        if envelope.len() < PREFIX_LEN + CHUNK_HEADER_LEN + AEAD_TAG_LEN || envelope.len() > MAX_ENVELOPE_LEN {
            return Err(Error::Malformed { what: "device link envelope", why: "not an envelope's length" });
        }
        if envelope[0] != ENVELOPE_VERSION || envelope[1..1 + TOPIC_LEN] != self.topic {
            return Err(Error::Malformed { what: "device link envelope", why: "not of this link's topic" });
        }
        let nonce: [u8; NONCE_LEN] = envelope[1 + TOPIC_LEN..PREFIX_LEN].try_into().expect("24 bytes");
        let plain = crate::crypto::open_into(&self.key, &nonce, &envelope[..PREFIX_LEN], &envelope[PREFIX_LEN..])?;
        let mut r = Reader::new(&plain, "device link chunk");
        let id: [u8; 16] = r.array()?;
        let (index, count, len) = (r.u16()?, r.u16()?, r.u32()? as usize);
        let chunk = r.take(len)?;
        if count == 0 || index >= count {
            return Err(Error::Malformed { what: "device link chunk", why: "its place is outside its message" });
        }
        if (usize::from(count) - 1) * MAX_CHUNK_LEN >= self.leg.max_message_len().max(1) {
            return Err(Error::TooLong {
                what: "device link message",
                len: usize::from(count) * MAX_CHUNK_LEN,
                max: self.leg.max_message_len(),
            });
        }
        if self.done.contains(&id) {
            return Ok(None);
        }
        self.arrivals += 1;
        if !self.messages.contains_key(&id) && self.messages.len() >= MAX_MESSAGES_IN_PROGRESS {
            let oldest = self.messages.iter().min_by_key(|(_, p)| p.started).map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.messages.remove(&oldest);
            }
        }
        let parts = self.messages.entry(id).or_insert_with(|| Parts {
            count,
            chunks: HashMap::new(),
            bytes: 0,
            started: self.arrivals,
        });
        if parts.count != count {
            return Err(Error::Malformed { what: "device link chunk", why: "its message's length changed" });
        }
        if parts.chunks.contains_key(&index) {
            return Ok(None);
        }
        if parts.bytes + chunk.len() > self.leg.max_message_len() {
            self.messages.remove(&id);
            return Err(Error::TooLong {
                what: "device link message",
                len: self.leg.max_message_len() + 1,
                max: self.leg.max_message_len(),
            });
        }
        parts.bytes += chunk.len();
        parts.chunks.insert(index, chunk.to_vec());
        if parts.chunks.len() < usize::from(count) {
            return Ok(None);
        }
        let mut parts = self.messages.remove(&id).expect("present");
        if self.done.len() >= MAX_DONE {
            self.done.pop_front();
        }
        self.done.push_back(id);
        let mut message = Vec::with_capacity(parts.bytes);
        for i in 0..count {
            message.extend(parts.chunks.remove(&i).expect("every index below count is present"));
        }
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;

    const TOKEN: [u8; 16] = [7; 16];

    #[test]
    fn a_message_of_many_chunks_comes_back_whole_in_any_order_and_with_duplicates() {
        let mut entropy = SeededEntropy::new(1);
        let message: Vec<u8> = (0..3 * MAX_CHUNK_LEN + 123).map(|i| (i % 251) as u8).collect();
        let mut envelopes = wrap(&TOKEN, Leg::Grant, &message, &mut entropy).unwrap();
        assert_eq!(envelopes.len(), 4);
        for e in &envelopes {
            crate::envelope::Envelope::parse(e.clone()).expect("every chunk is a well-formed envelope");
            assert_eq!(e[1..17], topic(&TOKEN, Leg::Grant));
        }
        envelopes.reverse();
        let mut inbox = Inbox::new(&TOKEN, Leg::Grant);
        assert_eq!(inbox.progress(), None);
        assert_eq!(inbox.take(&envelopes[0]).unwrap(), None);
        assert_eq!(inbox.take(&envelopes[0]).unwrap(), None);
        assert_eq!(inbox.progress(), Some((1, 4)));
        assert_eq!(inbox.take(&envelopes[1]).unwrap(), None);
        assert_eq!(inbox.take(&envelopes[2]).unwrap(), None);
        assert_eq!(inbox.take(&envelopes[3]).unwrap(), Some(message));
        // A late duplicate of a message handed out is dropped.
        assert_eq!(inbox.take(&envelopes[1]).unwrap(), None);
    }

    #[test]
    fn a_small_message_is_one_envelope_of_the_smallest_bucket_that_holds_it() {
        let mut entropy = SeededEntropy::new(2);
        let envelopes = wrap(&TOKEN, Leg::Request, &[5; 150], &mut entropy).unwrap();
        assert_eq!(envelopes.len(), 1);
        assert_eq!(envelopes[0].len(), 256);
        let mut inbox = Inbox::new(&TOKEN, Leg::Request);
        assert_eq!(inbox.take(&envelopes[0]).unwrap(), Some(vec![5; 150]));
    }

    #[test]
    fn the_legs_and_links_do_not_mix_and_tampering_is_refused() {
        let mut entropy = SeededEntropy::new(3);
        let envelopes = wrap(&TOKEN, Leg::Request, b"hello", &mut entropy).unwrap();
        assert_ne!(topic(&TOKEN, Leg::Request), topic(&TOKEN, Leg::Grant));
        assert!(Inbox::new(&TOKEN, Leg::Grant).take(&envelopes[0]).is_err());
        assert!(Inbox::new(&[8; 16], Leg::Request).take(&envelopes[0]).is_err());
        let mut inbox = Inbox::new(&TOKEN, Leg::Request);
        for at in [0, 20, 60, 255] {
            let mut bad = envelopes[0].clone();
            bad[at] ^= 1;
            assert!(inbox.take(&bad).is_err(), "byte {at}");
        }
        assert!(inbox.take(&envelopes[0][..100]).is_err());
        assert_eq!(inbox.take(&envelopes[0]).unwrap(), Some(b"hello".to_vec()));
    }

    #[test]
    fn chunks_under_the_exchange_s_key_refuse_those_of_whoever_only_saw_the_link() {
        let mut entropy = SeededEntropy::new(5);
        let exchange = [9; 32];
        let real = wrap_with(&TOKEN, Leg::Grant, &exchange, &[1; 500], &mut entropy).unwrap();
        let junk = wrap(&TOKEN, Leg::Grant, &[2; 500], &mut entropy).unwrap();
        let mut inbox = Inbox::with_key(&TOKEN, Leg::Grant, exchange);
        assert!(inbox.take(&junk[0]).is_err(), "junk under the token's key");
        assert_eq!(inbox.messages.len(), 0, "junk holds nothing");
        assert_eq!(inbox.take(&real[0]).unwrap(), Some(vec![1; 500]));
        // Late copies are recognised within a bounded memory of what was handed out.
        for _ in 0..2 * MAX_DONE {
            let m = wrap_with(&TOKEN, Leg::Grant, &exchange, &[3; 10], &mut entropy).unwrap();
            assert!(inbox.take(&m[0]).unwrap().is_some());
        }
        assert_eq!(inbox.done.len(), MAX_DONE);
    }

    #[test]
    fn someone_who_saw_the_link_cannot_crowd_out_the_real_message_or_grow_memory() {
        let mut entropy = SeededEntropy::new(4);
        let real = wrap(&TOKEN, Leg::Grant, &vec![1; 2 * MAX_CHUNK_LEN], &mut entropy).unwrap();
        let mut inbox = Inbox::new(&TOKEN, Leg::Grant);
        assert_eq!(inbox.take(&real[0]).unwrap(), None);
        // Junk messages that never finish: the oldest in progress is let go, not the newest.
        for i in 0..3 {
            let junk = wrap(&TOKEN, Leg::Grant, &vec![i; 3 * MAX_CHUNK_LEN], &mut entropy).unwrap();
            assert_eq!(inbox.take(&junk[0]).unwrap(), None);
        }
        assert_eq!(inbox.take(&real[1]).unwrap().map(|m| m.len()), Some(2 * MAX_CHUNK_LEN));
        for _ in 0..100 {
            let junk = wrap(&TOKEN, Leg::Grant, &vec![9; 2 * MAX_CHUNK_LEN], &mut entropy).unwrap();
            let _ = inbox.take(&junk[0]);
        }
        assert!(inbox.messages.len() <= MAX_MESSAGES_IN_PROGRESS);
        // A request claiming more chunks than a request can be is refused.
        let (topic, key) = (topic(&TOKEN, Leg::Request), chunk_key(&TOKEN, Leg::Request));
        let big = seal_chunk(&topic, &key, &[3; 16], 0, 2, &[1; 100], &mut entropy).unwrap();
        let mut requests = Inbox::new(&TOKEN, Leg::Request);
        assert!(matches!(requests.take(&big), Err(Error::TooLong { .. })));
    }
}
