//! Cryptographic building blocks with Weft's domain separation. Everything above this module
//! speaks in keys and labels; nothing above it touches a cipher directly.

mod aead;
mod entropy;
mod kdf;
mod sealed;

pub use aead::{AEAD_TAG_LEN, NONCE_LEN, open, open_in_place, open_into, seal, seal_detached, seal_in_place};
pub use entropy::{Entropy, OsEntropy, SeededEntropy};
pub use kdf::{derive, derive_array, keyed_hash, label};
pub use sealed::{SEALED_OVERHEAD, is_low_order, open_sealed, seal_to};

/// A 32-byte secret: wiped from memory when dropped, and never printed (its `Debug` says only
/// that it is one), so a secret inside a logged or `Debug`-printed value does not leak.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret32(zeroize::Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

impl std::ops::Deref for Secret32 {
    type Target = [u8; 32];
    fn deref(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::ops::DerefMut for Secret32 {
    fn deref_mut(&mut self) -> &mut [u8; 32] {
        &mut self.0
    }
}

impl From<[u8; 32]> for Secret32 {
    fn from(bytes: [u8; 32]) -> Self {
        Secret32(zeroize::Zeroizing::new(bytes))
    }
}

/// Wraps 32 bytes as a [`Secret32`].
pub fn secret(bytes: [u8; 32]) -> Secret32 {
    Secret32::from(bytes)
}
