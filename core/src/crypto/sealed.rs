//! Sealing to a static X25519 key: a fresh ephemeral key, X25519, HKDF with both public keys in
//! the salt, XChaCha20-Poly1305. The recipient learns nothing about the sender from the outer
//! layer; senders authenticate themselves inside, by signature, where they need to.

use x25519_dalek::{PublicKey, StaticSecret};

use super::aead::{NONCE_LEN, open, seal};
use super::entropy::Entropy;
use super::kdf::{derive_array, label};
use crate::error::{Error, Result};

/// Whether an X25519 public key lies in the small subgroup, where an agreement with it is
/// all zeros whatever the secret: nothing may be sealed to it. (A clamped scalar is a
/// multiple of the cofactor, so it zeroes exactly those points.)
pub fn is_low_order(public: &[u8; 32]) -> bool {
    !StaticSecret::from([1u8; 32]).diffie_hellman(&PublicKey::from(*public)).was_contributory()
}

/// Bytes added by [`seal_to`]: ephemeral key, nonce and tag.
pub const SEALED_OVERHEAD: usize = 32 + NONCE_LEN + super::aead::AEAD_TAG_LEN;

const SEALED_KEY: &[u8] = label("weft/v1/sealed/key");

fn sealing_key(shared: &[u8; 32], ephemeral: &[u8; 32], recipient: &[u8; 32], context: &[u8]) -> [u8; 32] {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(recipient);
    derive_array(&salt, shared, &[SEALED_KEY, context])
}

/// Seals `plaintext` to `recipient`. `context` binds the result to its use (it is authenticated
/// but not sent), so a sealed box cannot be replayed in another role.
pub fn seal_to(recipient: &[u8; 32], context: &[u8], plaintext: &[u8], entropy: &mut dyn Entropy) -> Result<Vec<u8>> {
    let ephemeral = StaticSecret::from(entropy.bytes32()?);
    let ephemeral_pub = PublicKey::from(&ephemeral).to_bytes();
    let shared = ephemeral.diffie_hellman(&PublicKey::from(*recipient));
    if !shared.was_contributory() {
        return Err(Error::Malformed { what: "recipient key", why: "low-order X25519 point" });
    }
    let key = zeroize::Zeroizing::new(sealing_key(shared.as_bytes(), &ephemeral_pub, recipient, context));
    let nonce = entropy.nonce()?;
    let mut out = Vec::with_capacity(SEALED_OVERHEAD + plaintext.len());
    out.extend_from_slice(&ephemeral_pub);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&seal(&key, &nonce, context, plaintext));
    Ok(out)
}

/// Opens a box made by [`seal_to`] for the holder of `secret`.
pub fn open_sealed(secret: &StaticSecret, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < SEALED_OVERHEAD {
        return Err(Error::DecryptionFailed);
    }
    let ephemeral: [u8; 32] = sealed[..32].try_into().expect("length checked");
    let nonce: [u8; NONCE_LEN] = sealed[32..32 + NONCE_LEN].try_into().expect("length checked");
    let recipient = PublicKey::from(secret).to_bytes();
    let shared = secret.diffie_hellman(&PublicKey::from(ephemeral));
    if !shared.was_contributory() {
        return Err(Error::DecryptionFailed);
    }
    let key = zeroize::Zeroizing::new(sealing_key(shared.as_bytes(), &ephemeral, &recipient, context));
    open(&key, &nonce, context, &sealed[32 + NONCE_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;

    #[test]
    fn sealed_round_trip_and_context_binding() {
        let mut rng = SeededEntropy::new(1);
        let secret = StaticSecret::from(rng.bytes32().unwrap());
        let public = PublicKey::from(&secret).to_bytes();
        let boxed = seal_to(&public, b"ctx", b"hello", &mut rng).unwrap();
        assert_eq!(open_sealed(&secret, b"ctx", &boxed).unwrap(), b"hello");
        assert!(matches!(open_sealed(&secret, b"other", &boxed), Err(Error::DecryptionFailed)));
        let other = StaticSecret::from(rng.bytes32().unwrap());
        assert!(open_sealed(&other, b"ctx", &boxed).is_err());
        assert!(open_sealed(&secret, b"ctx", &boxed[..10]).is_err());
    }
}
