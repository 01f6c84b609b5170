//! Sender chains: each device's per-group symmetric ratchet. A chain key yields one message key
//! and the next chain key; the old chain key and every used message key are erased, which gives
//! forward secrecy. Receivers keep a bounded set of skipped message keys for messages that
//! arrive out of order.

use std::collections::BTreeMap;

use hkdf::Hkdf;
use sha2::Sha256;

use crate::crypto::{Secret32, label, secret};
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

/// How far ahead of its chain a message may be. Beyond this, deriving the keys in between would
/// let one forged header cost us unbounded work.
pub const MAX_GAP: u32 = 2_000;
/// Skipped message keys kept per chain; the oldest go first.
pub const MAX_SKIPPED_PER_CHAIN: usize = 1_000;

const MESSAGE_KEY: &[u8] = label("weft/v1/chain/message-key");
const NEXT_CHAIN_KEY: &[u8] = label("weft/v1/chain/next-chain-key");

/// One ratchet step: (message key, next chain key). The chain key is uniformly random (fresh
/// randomness or a previous HKDF output), so it serves directly as the HKDF pseudorandom key.
pub fn step(chain_key: &[u8; 32]) -> (Secret32, Secret32) {
    let hk = Hkdf::<Sha256>::from_prk(chain_key).expect("32 bytes is a valid SHA-256 PRK");
    let mut message_key = secret([0u8; 32]);
    let mut next = secret([0u8; 32]);
    hk.expand(MESSAGE_KEY, &mut message_key[..]).expect("32 bytes");
    hk.expand(NEXT_CHAIN_KEY, &mut next[..]).expect("32 bytes");
    (message_key, next)
}

/// The sending side of this device's chain in one group.
#[derive(Clone)]
pub struct OwnChain {
    pub generation: u32,
    pub next_index: u32,
    pub chain_key: Secret32,
    pub created_ms: u64,
    /// The epoch this chain was made for; a new epoch always gets a new chain.
    pub epoch: [u8; 32],
}

impl OwnChain {
    /// Takes the next message key and advances, erasing the chain key it came from.
    pub fn advance(&mut self) -> Result<(u32, Secret32)> {
        let index = self.next_index;
        let next_index = index.checked_add(1).ok_or(Error::Limit("sender chain exhausted"))?;
        let (message_key, next) = step(&self.chain_key);
        self.chain_key = next;
        self.next_index = next_index;
        Ok((index, message_key))
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.generation).u32(self.next_index).raw(&self.chain_key[..]).u64(self.created_ms).raw(&self.epoch);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(OwnChain {
            generation: r.u32()?,
            next_index: r.u32()?,
            chain_key: secret(r.array()?),
            created_ms: r.u64()?,
            epoch: r.array()?,
        })
    }
}

/// What we know of another device's chain.
#[derive(Clone)]
pub struct PeerChain {
    pub next_index: u32,
    pub chain_key: Secret32,
    skipped: BTreeMap<u32, Secret32>,
}

impl PeerChain {
    pub fn new(start_index: u32, chain_key: [u8; 32]) -> Self {
        PeerChain { next_index: start_index, chain_key: secret(chain_key), skipped: BTreeMap::new() }
    }

    pub fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    /// The message key for `index`, and the chain as it will be once that message is accepted.
    /// `self` is left untouched, so a message that then fails to authenticate changes nothing.
    /// Reaching far ahead drops the oldest skipped keys (their messages can then never be read).
    pub fn key_for(&self, index: u32) -> Result<(Secret32, PeerChain)> {
        self.key(index, true)
    }

    /// [`Self::key_for`], refusing with [`Error::AheadOfChain`] what would drop skipped keys
    /// or skip more than MAX_GAP: such a message is better held until those before it come
    /// (a catch-up brings a backlog in no particular order).
    pub fn key_in_order(&self, index: u32) -> Result<(Secret32, PeerChain)> {
        self.key(index, false)
    }

    fn key(&self, index: u32, may_drop: bool) -> Result<(Secret32, PeerChain)> {
        if index < self.next_index {
            let mut next = self.clone();
            let key = next.skipped.remove(&index).ok_or(Error::Duplicate)?;
            return Ok((key, next));
        }
        let gap = index - self.next_index;
        if !may_drop && (gap > MAX_GAP || self.skipped.len() + gap as usize > MAX_SKIPPED_PER_CHAIN) {
            return Err(Error::AheadOfChain);
        }
        if gap > MAX_GAP {
            return Err(Error::GapTooLarge { gap, max: MAX_GAP });
        }
        let mut next = self.clone();
        while next.next_index < index {
            let (skipped_key, following) = step(&next.chain_key);
            next.skipped.insert(next.next_index, skipped_key);
            next.chain_key = following;
            next.next_index += 1;
        }
        while next.skipped.len() > MAX_SKIPPED_PER_CHAIN {
            next.skipped.pop_first();
        }
        let (message_key, following) = step(&next.chain_key);
        next.chain_key = following;
        next.next_index = index.checked_add(1).ok_or(Error::Limit("sender chain exhausted"))?;
        Ok((message_key, next))
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.next_index).raw(&self.chain_key[..]).count(self.skipped.len());
        for (index, key) in &self.skipped {
            w.u32(*index).raw(&key[..]);
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let next_index = r.u32()?;
        let chain_key = secret(r.array()?);
        let n = r.count(MAX_SKIPPED_PER_CHAIN, 36)?;
        let mut skipped = BTreeMap::new();
        for _ in 0..n {
            skipped.insert(r.u32()?, secret(r.array()?));
        }
        Ok(PeerChain { next_index, chain_key, skipped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_matches_sender_in_any_order_once() {
        let mut own =
            OwnChain { generation: 0, next_index: 0, chain_key: secret([9; 32]), created_ms: 0, epoch: [0; 32] };
        let peer = PeerChain::new(0, [9; 32]);
        let keys: Vec<_> = (0..10).map(|_| own.advance().unwrap()).collect();
        let (k5, peer) = peer.key_for(5).unwrap();
        assert_eq!(*k5, *keys[5].1);
        assert_eq!(peer.skipped_len(), 5);
        let (k2, peer) = peer.key_for(2).unwrap();
        assert_eq!(*k2, *keys[2].1);
        assert!(matches!(peer.key_for(2), Err(Error::Duplicate)));
        assert!(matches!(peer.key_for(5), Err(Error::Duplicate)));
        let (k9, _) = peer.key_for(9).unwrap();
        assert_eq!(*k9, *keys[9].1);
        assert!(matches!(peer.key_for(6 + MAX_GAP + 1), Err(Error::GapTooLarge { .. })));
    }

    #[test]
    fn skipped_keys_stay_bounded() {
        let mut peer = PeerChain::new(0, [1; 32]);
        for i in 0..3 {
            peer = peer.key_for((i + 1) * MAX_GAP).unwrap().1;
        }
        assert!(peer.skipped_len() <= MAX_SKIPPED_PER_CHAIN);
    }
}
