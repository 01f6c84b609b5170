//! Cryptographic building blocks with Weft's domain separation. Everything above this module
//! speaks in keys and labels; nothing above it touches a cipher directly.

mod aead;
mod entropy;
mod kdf;
mod sealed;

pub use aead::{AEAD_TAG_LEN, NONCE_LEN, open, open_in_place, open_into, seal, seal_detached, seal_in_place};
pub use entropy::{Entropy, OsEntropy, SeededEntropy};
pub use kdf::{derive, derive_array, keyed_hash, label};
pub use sealed::{SEALED_OVERHEAD, open_sealed, seal_to};

/// A 32-byte secret that is wiped from memory when dropped.
pub type Secret32 = zeroize::Zeroizing<[u8; 32]>;

/// Wraps 32 bytes as a [`Secret32`].
pub fn secret(bytes: [u8; 32]) -> Secret32 {
    zeroize::Zeroizing::new(bytes)
}
