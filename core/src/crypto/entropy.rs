//! Randomness reaches the engine through [`Entropy`], so tests can seed it and the engine never
//! reads the operating system behind the caller's back.

use crate::error::{Error, Result};

/// A source of cryptographically strong random bytes.
pub trait Entropy {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<()>;

    /// 32 random bytes.
    fn bytes32(&mut self) -> Result<[u8; 32]> {
        let mut out = [0u8; 32];
        self.fill(&mut out)?;
        Ok(out)
    }

    /// 24 random bytes, the size of an XChaCha20 nonce.
    fn nonce(&mut self) -> Result<[u8; 24]> {
        let mut out = [0u8; 24];
        self.fill(&mut out)?;
        Ok(out)
    }
}

/// The operating system's generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        getrandom::fill(buf).map_err(|_| Error::Entropy)
    }
}

/// A deterministic generator for tests, simulations and test vectors: BLAKE3 in XOF mode keyed
/// by the seed. Never use it for real keys.
pub struct SeededEntropy {
    reader: blake3::OutputReader,
}

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("weft/v1/test-entropy");
        hasher.update(&seed.to_be_bytes());
        SeededEntropy { reader: hasher.finalize_xof() }
    }
}

impl Entropy for SeededEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        self.reader.fill(buf);
        Ok(())
    }
}
