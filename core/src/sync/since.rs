//! Catching up from a relay by time and bucket rather than by topic.
//!
//! A device back after days must fetch what a relay holds under its conversations' topics of
//! the days it missed. Asking for those topics by name would tell the relay that they belong
//! with the topics the device follows today (the link that rotating topics exist to break).
//! Instead the device asks for *everything the relay stored since a moment*, restricted to
//! *buckets*: topics are spread over `2^bits` buckets by their first bits, and the device names
//! the buckets its missed topics fall in, among which the relay cannot tell its topics from the
//! others'. `bits = 0` is one bucket: everything since the moment. The device drops what it
//! cannot read. See docs/DECISIONS.md for the cost of each choice.

use crate::envelope::Topic;
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

use super::Item;

/// The finest bucketing a request may use: 4,096 buckets, a 512-byte map.
pub const MAX_BUCKET_BITS: u8 = 12;
/// Envelopes in one answer: what a node takes into its receive queue at once.
pub const MAX_HELD_COUNT: usize = 1024;

/// A set of topic buckets: bit `b` of the map stands for the topics whose first `bits` bits,
/// read as a big-endian number, are `b`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buckets {
    bits: u8,
    map: Vec<u8>,
}

impl Buckets {
    /// No bucket yet, at `bits` bits (at most [`MAX_BUCKET_BITS`]).
    pub fn new(bits: u8) -> Buckets {
        let bits = bits.min(MAX_BUCKET_BITS);
        Buckets { bits, map: vec![0; Self::map_len(bits)] }
    }

    fn map_len(bits: u8) -> usize {
        (1usize << bits).div_ceil(8)
    }

    pub fn bits(&self) -> u8 {
        self.bits
    }

    fn index(&self, topic: &Topic) -> usize {
        if self.bits == 0 {
            return 0;
        }
        (u16::from_be_bytes([topic[0], topic[1]]) >> (16 - u32::from(self.bits))) as usize
    }

    /// Adds the bucket `topic` falls in.
    pub fn insert(&mut self, topic: &Topic) {
        let i = self.index(topic);
        self.map[i / 8] |= 1 << (i % 8);
    }

    /// Whether `topic` falls in one of these buckets.
    pub fn contains(&self, topic: &Topic) -> bool {
        let i = self.index(topic);
        self.map[i / 8] & (1 << (i % 8)) != 0
    }

    /// How many buckets are named.
    pub fn len(&self) -> usize {
        let all = 1usize << self.bits;
        (0..all).filter(|i| self.map[i / 8] & (1 << (i % 8)) != 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.map.iter().all(|b| *b == 0)
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u8(self.bits).raw(&self.map);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Buckets> {
        let bits = r.u8()?;
        if bits > MAX_BUCKET_BITS {
            return Err(Error::Malformed { what: "catch-up buckets", why: "too many bits" });
        }
        let map = r.take(Self::map_len(bits))?.to_vec();
        Ok(Buckets { bits, map })
    }
}

/// A position in a relay's store: everything stored after it comes next. Opaque to the
/// device: the time is the relay's own clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    pub stored_ms: u64,
    pub id: Item,
}

impl Cursor {
    /// The position just before everything stored from `ms` on.
    pub fn at(ms: u64) -> Cursor {
        Cursor { stored_ms: ms, id: [0; 16] }
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u64(self.stored_ms).raw(&self.id);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Cursor> {
        Ok(Cursor { stored_ms: r.u64()?, id: r.array()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_topics_by_their_first_bits() {
        let mut b = Buckets::new(8);
        let t = |first: u8| -> Topic {
            let mut t = [0x55; 16];
            t[0] = first;
            t
        };
        b.insert(&t(0x12));
        assert!(b.contains(&t(0x12)));
        assert!(!b.contains(&t(0x13)));
        assert_eq!(b.len(), 1);
        let everything = Buckets::new(0);
        assert!(everything.is_empty());
        let mut everything = everything;
        everything.insert(&t(1));
        assert!(everything.contains(&t(0xff)), "one bucket holds every topic");
        let mut w = Writer::new();
        b.encode(&mut w);
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), 1 + 32);
        assert_eq!(Buckets::decode(&mut Reader::new(&bytes, "t")).unwrap(), b);
    }

    #[test]
    fn twelve_bits_at_most() {
        let mut w = Writer::new();
        w.u8(13).raw(&[0; 1024]);
        let bytes = w.into_bytes();
        assert!(Buckets::decode(&mut Reader::new(&bytes, "t")).is_err());
        let mut b = Buckets::new(12);
        b.insert(&[0xff; 16]);
        assert!(
            b.contains(&[0xff; 16])
                && !b.contains(&[0xfe; 16])
                && b.contains(&[0xff, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        );
    }
}
