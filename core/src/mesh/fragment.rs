//! Frames cut into fragments that fit one BLE write, and put back together.
//!
//! A GATT write carries `mtu - 3` bytes; the ATT MTU is 23 unless both sides negotiate more
//! (Android asks for 517). Every fragment starts with a 4-byte header:
//!
//! ```text
//! frame: u16    per-link counter of frames, wrapping
//! index: u16    fragment number; the high bit marks the last fragment
//! ```
//!
//! The first fragment then carries the frame's length (u32) and the first 4 bytes of its BLAKE3
//! hash, so a corrupt fragment is caught when the frame completes. Links deliver writes in
//! order, so a receiver keeps at most one frame in progress: a fragment that does not continue it
//! (lost fragment, new frame) drops the partial frame and nothing else.

use crate::error::{Error, Result};
use crate::wire::Reader;

/// The smallest ATT MTU (BLE's default) and the largest a link may claim.
pub const MIN_MTU: usize = 23;
pub const MAX_MTU: usize = 517;
/// ATT's own header inside every write.
const ATT_OVERHEAD: usize = 3;
const HEADER_LEN: usize = 4;
const FIRST_HEADER_LEN: usize = HEADER_LEN + 4 + 4;
const LAST_FLAG: u16 = 0x8000;
/// The largest frame a link carries: one envelope of the largest bucket with room for its
/// mesh message header.
pub const MAX_FRAME_LEN: usize = crate::envelope::MAX_ENVELOPE_LEN + 1024;
/// A partial frame that saw no fragment for this long is dropped.
pub const PARTIAL_TIMEOUT_MS: u64 = 30_000;

/// Bytes of frame one fragment carries on a link with this MTU.
fn room(mtu: usize) -> usize {
    mtu.clamp(MIN_MTU, MAX_MTU) - ATT_OVERHEAD - HEADER_LEN
}

fn checksum(frame: &[u8]) -> [u8; 4] {
    blake3::hash(frame).as_bytes()[..4].try_into().expect("4 of 32 bytes")
}

/// Cuts frames for one link.
#[derive(Debug, Default)]
pub struct Fragmenter {
    next_frame: u16,
}

impl Fragmenter {
    /// The fragments of `frame`, each at most `mtu - 3` bytes.
    pub fn fragment(&mut self, frame: &[u8], mtu: usize) -> Result<Vec<Vec<u8>>> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(Error::TooLong { what: "mesh frame", len: frame.len(), max: MAX_FRAME_LEN });
        }
        let seq = self.next_frame;
        self.next_frame = self.next_frame.wrapping_add(1);
        let room = room(mtu);
        let first_room = room - (FIRST_HEADER_LEN - HEADER_LEN);
        let mut chunks = vec![&frame[..frame.len().min(first_room)]];
        chunks.extend(frame[chunks[0].len()..].chunks(room));
        let last = chunks.len() - 1;
        Ok(chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let mut index = i as u16;
                if i == last {
                    index |= LAST_FLAG;
                }
                let mut out = Vec::with_capacity(FIRST_HEADER_LEN + chunk.len());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&index.to_be_bytes());
                if i == 0 {
                    out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
                    out.extend_from_slice(&checksum(frame));
                }
                out.extend_from_slice(chunk);
                out
            })
            .collect())
    }
}

/// Why a partial frame was given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// A fragment did not continue the frame in progress (one was lost or reordered).
    Gap,
    /// The frame's bytes did not match its checksum.
    Corrupt,
    /// The first fragment declared a frame longer than [`MAX_FRAME_LEN`], or the fragments
    /// ran past what it declared.
    TooLong,
    /// The fragment was shorter than its header.
    Truncated,
    /// No fragment arrived for [`PARTIAL_TIMEOUT_MS`].
    TimedOut,
}

/// What one fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembled {
    /// A whole frame, checksum verified.
    Frame(Vec<u8>),
    /// The frame is still in progress.
    Pending,
    /// This fragment, or the frame it belonged to, was dropped.
    Dropped(Dropped),
}

struct Partial {
    frame: u16,
    next_index: u16,
    declared_len: usize,
    checksum: [u8; 4],
    bytes: Vec<u8>,
    last_seen_ms: u64,
}

/// Puts frames back together for one link, holding at most one frame in progress, so its
/// memory is bounded by [`MAX_FRAME_LEN`] whatever arrives.
#[derive(Default)]
pub struct Reassembler {
    partial: Option<Partial>,
}

impl Reassembler {
    pub fn push(&mut self, fragment: &[u8], now_ms: u64) -> Reassembled {
        self.expire(now_ms);
        match self.accept(fragment, now_ms) {
            Ok(done) => done,
            Err(why) => {
                self.partial = None;
                Reassembled::Dropped(why)
            }
        }
    }

    /// Bytes held for the frame in progress.
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.bytes.capacity())
    }

    /// Drops a partial frame that went quiet. Returns whether one was dropped.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let stale = self.partial.as_ref().is_some_and(|p| now_ms.saturating_sub(p.last_seen_ms) > PARTIAL_TIMEOUT_MS);
        if stale {
            self.partial = None;
        }
        stale
    }

    fn accept(&mut self, fragment: &[u8], now_ms: u64) -> Result<Reassembled, Dropped> {
        let mut r = Reader::new(fragment, "mesh fragment");
        let (frame, index) = match (r.u16(), r.u16()) {
            (Ok(frame), Ok(index)) => (frame, index),
            _ => return Err(Dropped::Truncated),
        };
        let last = index & LAST_FLAG != 0;
        let index = index & !LAST_FLAG;
        if index == 0 {
            // A new frame. Whatever was in progress lost its tail.
            let (declared_len, checksum) = match (r.u32(), r.array::<4>()) {
                (Ok(len), Ok(sum)) => (len as usize, sum),
                _ => return Err(Dropped::Truncated),
            };
            if declared_len > MAX_FRAME_LEN {
                return Err(Dropped::TooLong);
            }
            // Allocate by what arrived, never by what was declared.
            let bytes = Vec::with_capacity(r.remaining().min(declared_len));
            self.partial = Some(Partial { frame, next_index: 0, declared_len, checksum, bytes, last_seen_ms: now_ms });
            return self.extend(r.take(r.remaining()).unwrap_or_default(), last, now_ms);
        }
        match &self.partial {
            Some(p) if p.frame == frame && p.next_index == index => {}
            _ => return Err(Dropped::Gap),
        }
        self.extend(r.take(r.remaining()).unwrap_or_default(), last, now_ms)
    }

    fn extend(&mut self, data: &[u8], last: bool, now_ms: u64) -> Result<Reassembled, Dropped> {
        let p = self.partial.as_mut().expect("a frame is in progress");
        if p.bytes.len() + data.len() > p.declared_len {
            return Err(Dropped::TooLong);
        }
        p.bytes.extend_from_slice(data);
        p.next_index = p.next_index.wrapping_add(1);
        p.last_seen_ms = now_ms;
        if !last {
            if p.next_index >= LAST_FLAG {
                return Err(Dropped::TooLong);
            }
            return Ok(Reassembled::Pending);
        }
        let p = self.partial.take().expect("a frame is in progress");
        if p.bytes.len() != p.declared_len {
            return Err(Dropped::Gap);
        }
        if checksum(&p.bytes) != p.checksum {
            return Err(Dropped::Corrupt);
        }
        Ok(Reassembled::Frame(p.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn deliver(fragments: &[Vec<u8>], r: &mut Reassembler) -> Vec<Reassembled> {
        fragments.iter().map(|f| r.push(f, 0)).collect()
    }

    #[test]
    fn frames_survive_every_mtu() {
        let frame: Vec<u8> = (0..5_000u32).map(|i| i as u8).collect();
        for mtu in [MIN_MTU, 24, 100, 185, 247, 512, MAX_MTU] {
            let fragments = Fragmenter::default().fragment(&frame, mtu).unwrap();
            assert!(fragments.iter().all(|f| f.len() <= mtu - 3), "mtu {mtu}");
            let results = deliver(&fragments, &mut Reassembler::default());
            assert_eq!(results.last(), Some(&Reassembled::Frame(frame.clone())));
        }
    }

    #[test]
    fn empty_and_largest_frames() {
        let mut f = Fragmenter::default();
        let mut r = Reassembler::default();
        assert_eq!(deliver(&f.fragment(&[], 23).unwrap(), &mut r), vec![Reassembled::Frame(vec![])]);
        let big = vec![7u8; MAX_FRAME_LEN];
        assert_eq!(deliver(&f.fragment(&big, 23).unwrap(), &mut r).pop(), Some(Reassembled::Frame(big)));
        assert!(matches!(f.fragment(&vec![0; MAX_FRAME_LEN + 1], 23), Err(Error::TooLong { .. })));
    }

    #[test]
    fn a_lost_fragment_drops_that_frame_only() {
        let mut f = Fragmenter::default();
        let mut r = Reassembler::default();
        let first = f.fragment(&[1; 100], 23).unwrap();
        let second = f.fragment(&[2; 100], 23).unwrap();
        let mut sent: Vec<Vec<u8>> = first.clone();
        sent.remove(3);
        sent.extend(second);
        let results = deliver(&sent, &mut r);
        assert!(results.contains(&Reassembled::Dropped(Dropped::Gap)));
        assert_eq!(results.last(), Some(&Reassembled::Frame(vec![2; 100])));
        assert_eq!(results.iter().filter(|x| matches!(x, Reassembled::Frame(_))).count(), 1);
    }

    #[test]
    fn a_lost_last_fragment_is_noticed_by_the_next_frame() {
        let mut f = Fragmenter::default();
        let mut r = Reassembler::default();
        let mut first = f.fragment(&[1; 100], 23).unwrap();
        first.pop();
        deliver(&first, &mut r);
        let results = deliver(&f.fragment(&[2; 10], 23).unwrap(), &mut r);
        assert_eq!(results, vec![Reassembled::Pending, Reassembled::Frame(vec![2; 10])]);
    }

    #[test]
    fn a_corrupt_fragment_is_caught() {
        let mut fragments = Fragmenter::default().fragment(&[5; 300], 50).unwrap();
        fragments[2][10] ^= 1;
        let results = deliver(&fragments, &mut Reassembler::default());
        assert_eq!(results.last(), Some(&Reassembled::Dropped(Dropped::Corrupt)));
    }

    #[test]
    fn lies_about_length_are_refused_without_allocating() {
        let mut r = Reassembler::default();
        let mut huge = vec![0, 0, 0, 0];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(r.push(&huge, 0), Reassembled::Dropped(Dropped::TooLong));
        // Declares 10 bytes, sends more.
        let mut liar = vec![0, 1, 0, 0];
        liar.extend_from_slice(&10u32.to_be_bytes());
        liar.extend_from_slice(&[0; 4]);
        liar.extend_from_slice(&[9; 8]);
        assert_eq!(r.push(&liar, 0), Reassembled::Pending);
        assert_eq!(r.push(&[0, 1, 0x80, 1, 9, 9, 9, 9], 0), Reassembled::Dropped(Dropped::TooLong));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn a_never_ending_frame_times_out() {
        let mut r = Reassembler::default();
        let fragments = Fragmenter::default().fragment(&[3; 1000], 23).unwrap();
        assert_eq!(r.push(&fragments[0], 0), Reassembled::Pending);
        assert!(r.buffered() > 0);
        assert!(r.expire(PARTIAL_TIMEOUT_MS + 1));
        assert_eq!(r.buffered(), 0);
        assert_eq!(r.push(&fragments[1], PARTIAL_TIMEOUT_MS + 2), Reassembled::Dropped(Dropped::Gap));
    }

    proptest! {
        #[test]
        fn junk_never_panics_and_stays_bounded(junk in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..50)) {
            let mut r = Reassembler::default();
            for f in &junk {
                let _ = r.push(f, 0);
                prop_assert!(r.buffered() <= MAX_FRAME_LEN);
            }
        }

        #[test]
        fn round_trips(frame in proptest::collection::vec(any::<u8>(), 0..3000), mtu in MIN_MTU..=MAX_MTU) {
            let fragments = Fragmenter::default().fragment(&frame, mtu).unwrap();
            let results = deliver(&fragments, &mut Reassembler::default());
            prop_assert_eq!(results.last(), Some(&Reassembled::Frame(frame)));
        }
    }
}
