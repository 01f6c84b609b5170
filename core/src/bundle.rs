//! The offline exchange file: contact requests and envelopes, carried by hand (a USB stick, a
//! file transfer) where there is no network, as Briar does with removable drives. Everything in
//! it is already encrypted; the file adds only framing and a checksum against damage.
//!
//! `magic "WEFTBNDL" | version (1) | request count (4) | requests | envelope count (4) |
//! (length (4) | envelope)* | BLAKE3 of all preceding bytes (32)`

use crate::envelope::{Envelope, MAX_ENVELOPE_LEN};
use crate::error::{Error, Result};
use crate::handshake::REQUEST_LEN;
use crate::wire::{Reader, Writer};

const MAGIC: &[u8; 8] = b"WEFTBNDL";
pub const BUNDLE_VERSION: u8 = 1;
/// The largest bundle we read into memory.
pub const MAX_BUNDLE_LEN: usize = 512 * 1024 * 1024;
const MAX_REQUESTS: usize = 100_000;
const MAX_ENVELOPES: usize = 10_000_000;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bundle {
    pub requests: Vec<Vec<u8>>,
    pub envelopes: Vec<Envelope>,
}

impl Bundle {
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self.envelopes.iter().map(|e| e.as_bytes().len() + 4).sum();
        let mut w = Writer::with_capacity(64 + size + self.requests.len() * REQUEST_LEN);
        w.raw(MAGIC).u8(BUNDLE_VERSION).count(self.requests.len());
        for r in &self.requests {
            w.raw(r);
        }
        w.count(self.envelopes.len());
        for e in &self.envelopes {
            w.bytes(e.as_bytes());
        }
        let mut bytes = w.into_bytes();
        let sum = *blake3::hash(&bytes).as_bytes();
        bytes.extend_from_slice(&sum);
        bytes
    }

    /// Decodes a bundle. A damaged file is refused whole (checksum); a well-formed file whose
    /// envelopes are malformed keeps the good ones and counts the rest.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize)> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(Error::TooLong { what: "bundle", len: bytes.len(), max: MAX_BUNDLE_LEN });
        }
        if bytes.len() < MAGIC.len() + 1 + 8 + 32 || &bytes[..MAGIC.len()] != MAGIC {
            return Err(Error::Malformed { what: "bundle", why: "not a Weft bundle file" });
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err(Error::Malformed {
                what: "bundle",
                why: "checksum mismatch: the file is damaged or cut short",
            });
        }
        let mut r = Reader::new(&body[MAGIC.len()..], "bundle");
        let version = r.u8()?;
        if version != BUNDLE_VERSION {
            return Err(Error::UnsupportedVersion { what: "bundle", found: version, supported: BUNDLE_VERSION });
        }
        let n = r.count(MAX_REQUESTS, REQUEST_LEN)?;
        let requests = (0..n).map(|_| r.take(REQUEST_LEN).map(<[u8]>::to_vec)).collect::<Result<Vec<_>>>()?;
        let n = r.count(MAX_ENVELOPES, 4)?;
        let mut envelopes = Vec::with_capacity(n.min(1 << 16));
        let mut malformed = 0;
        for _ in 0..n {
            // The length is checked against what is left, not against the envelope limit, so
            // an oversized entry is skipped and counted like any other malformed one.
            let len = r.u32()? as usize;
            let bytes = r.take(len)?;
            match (len <= MAX_ENVELOPE_LEN).then(|| Envelope::parse(bytes.to_vec())) {
                Some(Ok(e)) => envelopes.push(e),
                _ => malformed += 1,
            }
        }
        r.finish()?;
        Ok((Bundle { requests, envelopes }, malformed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_damage() {
        let b =
            Bundle { requests: vec![vec![1; REQUEST_LEN]], envelopes: vec![Envelope::parse(vec![1; 256]).unwrap()] };
        let bytes = b.encode();
        assert_eq!(Bundle::decode(&bytes).unwrap(), (b, 0));
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(Bundle::decode(&bad).is_err());
        assert!(Bundle::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Bundle::decode(&bytes);
        }
    }
}
