//! The envelope: the only thing of a conversation the network sees.
//!
//! `version (1) | topic (16) | nonce (24) | header ciphertext (40 + 16) | body ciphertext`,
//! always exactly one of [`SIZE_BUCKETS`] long. The header (sender device, chain generation,
//! chain index) is sealed under the epoch's header key; the body under the message key. The id
//! of an envelope is the BLAKE3 hash of its bytes: envelopes are immutable and deduplicated by id
//! on every path.

use crate::crypto::{AEAD_TAG_LEN, NONCE_LEN};
use crate::error::{Error, Result};

pub const ENVELOPE_VERSION: u8 = 1;
pub const TOPIC_LEN: usize = 16;
/// Plaintext of the sealed header: device id, generation, index.
pub const HEADER_PLAIN_LEN: usize = 32 + 4 + 4;
pub const HEADER_SEALED_LEN: usize = HEADER_PLAIN_LEN + AEAD_TAG_LEN;
/// Bytes before the body ciphertext.
pub const PREFIX_LEN: usize = 1 + TOPIC_LEN + NONCE_LEN;
/// Everything in an envelope that is not padded body plaintext.
pub const OVERHEAD: usize = PREFIX_LEN + HEADER_SEALED_LEN + AEAD_TAG_LEN;
/// Every envelope is exactly one of these sizes, so its length says little about its content.
pub const SIZE_BUCKETS: [usize; 9] = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];
pub const MAX_ENVELOPE_LEN: usize = SIZE_BUCKETS[SIZE_BUCKETS.len() - 1];

pub type Topic = [u8; TOPIC_LEN];

/// BLAKE3 of an envelope's bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvelopeId(pub [u8; 32]);

impl EnvelopeId {
    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    /// The id a [`Self::to_hex`] string names; `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<EnvelopeId> {
        let bytes = data_encoding::HEXLOWER_PERMISSIVE.decode(hex.as_bytes()).ok()?;
        Some(EnvelopeId(bytes.try_into().ok()?))
    }
}

impl std::fmt::Debug for EnvelopeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnvelopeId({})", &self.to_hex()[..12])
    }
}

/// The smallest bucket that holds `padded_plain_len` bytes of body plaintext, as an envelope size.
pub fn bucket_for(body_plain_len: usize) -> Result<usize> {
    SIZE_BUCKETS.iter().copied().find(|b| *b >= body_plain_len + OVERHEAD).ok_or(Error::TooLong {
        what: "message",
        len: body_plain_len,
        max: MAX_ENVELOPE_LEN - OVERHEAD,
    })
}

/// A well-formed envelope: right version, a bucket size. Says nothing yet about who can open it.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    bytes: Vec<u8>,
}

impl Envelope {
    /// Checks the outer form of bytes from the network. Cheap: no cryptography.
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(Error::TooLong { what: "envelope", len: bytes.len(), max: MAX_ENVELOPE_LEN });
        }
        if bytes.len() < SIZE_BUCKETS[0] {
            return Err(Error::Truncated { what: "envelope", needed: SIZE_BUCKETS[0] - bytes.len() });
        }
        if bytes[0] != ENVELOPE_VERSION {
            return Err(Error::UnsupportedVersion { what: "envelope", found: bytes[0], supported: ENVELOPE_VERSION });
        }
        if !SIZE_BUCKETS.contains(&bytes.len()) {
            return Err(Error::Malformed { what: "envelope", why: "length is not a padding bucket" });
        }
        Ok(Envelope { bytes })
    }

    /// Wraps bytes the sealing side assembled.
    pub(crate) fn from_sealed_bytes(bytes: Vec<u8>) -> Self {
        debug_assert!(SIZE_BUCKETS.contains(&bytes.len()) && bytes[0] == ENVELOPE_VERSION);
        Envelope { bytes }
    }

    pub fn topic(&self) -> Topic {
        self.bytes[1..1 + TOPIC_LEN].try_into().expect("length checked in parse")
    }

    pub fn nonce(&self) -> [u8; NONCE_LEN] {
        self.bytes[1 + TOPIC_LEN..PREFIX_LEN].try_into().expect("length checked in parse")
    }

    /// What the header's encryption authenticates besides the header: `version | topic`.
    pub fn header_associated_data(&self) -> &[u8] {
        &self.bytes[..1 + TOPIC_LEN]
    }

    /// What the body's encryption authenticates besides the body: everything before it
    /// (`version | topic | nonce | sealed header`).
    pub fn body_associated_data(&self) -> &[u8] {
        &self.bytes[..PREFIX_LEN + HEADER_SEALED_LEN]
    }

    pub fn sealed_header(&self) -> &[u8] {
        &self.bytes[PREFIX_LEN..PREFIX_LEN + HEADER_SEALED_LEN]
    }

    pub fn sealed_body(&self) -> &[u8] {
        &self.bytes[PREFIX_LEN + HEADER_SEALED_LEN..]
    }

    pub fn id(&self) -> EnvelopeId {
        EnvelopeId(*blake3::hash(&self.bytes).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Envelope({:?}, {} bytes)", self.id(), self.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn outer_form_is_checked() {
        assert!(matches!(Envelope::parse(vec![1; 10]), Err(Error::Truncated { .. })));
        assert!(matches!(Envelope::parse(vec![1; 300]), Err(Error::Malformed { .. })));
        assert!(matches!(Envelope::parse(vec![2; 256]), Err(Error::UnsupportedVersion { found: 2, .. })));
        assert!(matches!(Envelope::parse(vec![1; 70_000]), Err(Error::TooLong { .. })));
        assert!(Envelope::parse(vec![1; 256]).is_ok());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = Envelope::parse(bytes);
        }
    }
}
