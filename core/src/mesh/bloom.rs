//! A Bloom filter of envelope ids: the summary that filter-based epidemic routing (and bitchat's
//! sync, with a Golomb-coded set of the same size class) sends instead of every id. About 10 bits
//! an id for one false positive in a hundred, against 128 bits an id in a summary vector.
//!
//! Used by the simulator's strongest epidemic baseline ([`super::Strategy::EpidemicFilter`]);
//! the salt is fresh for every filter, so an id that collides in one is unlikely to in the next.

use crate::error::{Error, Result};
use crate::sync::Item;

/// Bits per id: with [`HASHES`] hashes, about 1 % false positives.
pub const BITS_PER_ID: usize = 10;
/// Hashes per id (the optimum for 10 bits an id is 6.9).
pub const HASHES: u8 = 7;
/// The largest filter carried (52,000 ids at 10 bits), so that one fits a mesh frame.
pub const MAX_FILTER_BYTES: usize = 65_000;
/// The most hashes a filter from outside may ask us to compute per id.
const MAX_HASHES: u8 = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    pub salt: [u8; 16],
    pub hashes: u8,
    pub bits: Vec<u8>,
}

impl Bloom {
    /// A filter sized for `ids` (at most [`MAX_FILTER_BYTES`]: beyond, false positives rise).
    pub fn of<'a>(salt: [u8; 16], ids: impl ExactSizeIterator<Item = &'a Item>) -> Bloom {
        let len = (ids.len() * BITS_PER_ID).div_ceil(8).clamp(8, MAX_FILTER_BYTES);
        let mut bloom = Bloom { salt, hashes: HASHES, bits: vec![0; len] };
        for id in ids {
            let bits: Vec<usize> = bloom.positions(id).collect();
            for bit in bits {
                bloom.bits[bit / 8] |= 1 << (bit % 8);
            }
        }
        bloom
    }

    /// Whether `id` may be in the set (false positives at the filter's rate, never a false
    /// negative).
    pub fn may_contain(&self, id: &Item) -> bool {
        self.positions(id).all(|bit| self.bits[bit / 8] & (1 << (bit % 8)) != 0)
    }

    /// Checks a filter that came from outside: a clear error, never a panic later.
    pub fn check(&self) -> Result<()> {
        if self.bits.is_empty() || self.bits.len() > MAX_FILTER_BYTES {
            return Err(Error::TooLong { what: "mesh filter", len: self.bits.len(), max: MAX_FILTER_BYTES });
        }
        if self.hashes == 0 || self.hashes > MAX_HASHES {
            return Err(Error::Malformed { what: "mesh filter", why: "hash count out of range" });
        }
        Ok(())
    }

    /// The bit positions of `id`: double hashing over two salted 64-bit mixes of the id (ids are
    /// hash prefixes already; the salt keeps one filter's collisions out of the next).
    fn positions(&self, id: &Item) -> impl Iterator<Item = usize> + '_ {
        let word = |i: usize| u64::from_le_bytes(id[i..i + 8].try_into().expect("8 bytes"));
        let salt = |i: usize| u64::from_le_bytes(self.salt[i..i + 8].try_into().expect("8 bytes"));
        let h1 = mix(word(0) ^ salt(0));
        let h2 = mix(word(8) ^ salt(8)) | 1;
        let m = (self.bits.len() * 8) as u64;
        (0..u64::from(self.hashes)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }
}

/// SplitMix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::medium::SimRng;

    #[test]
    fn members_are_always_found_and_strangers_rarely() {
        let mut rng = SimRng::new(3);
        let ids: Vec<Item> = (0..5_000).map(|_| rng.bytes16()).collect();
        let bloom = Bloom::of(rng.bytes16(), ids.iter());
        assert_eq!(bloom.bits.len(), 5_000 * BITS_PER_ID / 8);
        assert!(ids.iter().all(|id| bloom.may_contain(id)));
        let false_positives = (0..100_000).filter(|_| bloom.may_contain(&rng.bytes16())).count();
        assert!(false_positives < 1_500, "{false_positives} in 100,000");
    }

    #[test]
    fn outside_filters_are_checked() {
        let empty = Bloom { salt: [0; 16], hashes: 7, bits: Vec::new() };
        assert!(empty.check().is_err());
        let greedy = Bloom { salt: [0; 16], hashes: 200, bits: vec![0; 8] };
        assert!(greedy.check().is_err());
        assert!(Bloom::of([1; 16], [[2u8; 16]].iter()).check().is_ok());
    }
}
