//! Account and device keys. The account key is the person's long-term identity; each device
//! has its own signing and X25519 keys, certified by the account key, so that a later version
//! can link several devices without changing the protocol.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::crypto::{Entropy, label};
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

const DEVICE_CERT_CONTEXT: &[u8] = label("weft/v1/device-cert");

/// The public half of an account key: 32 bytes of Ed25519.
pub type AccountPublic = [u8; 32];
/// A device is named by its Ed25519 public key.
pub type DeviceId = [u8; 32];

/// The account's Ed25519 signing key.
pub struct AccountKey(SigningKey);

impl AccountKey {
    pub fn generate(entropy: &mut dyn Entropy) -> Result<Self> {
        Ok(AccountKey(SigningKey::from_bytes(&entropy.bytes32()?)))
    }

    pub fn from_secret(bytes: &[u8; 32]) -> Self {
        AccountKey(SigningKey::from_bytes(bytes))
    }

    pub fn secret_bytes(&self) -> crate::crypto::Secret32 {
        crate::crypto::secret(self.0.to_bytes())
    }

    pub fn public(&self) -> AccountPublic {
        self.0.verifying_key().to_bytes()
    }

    /// Signs a statement of the account (a device revocation) under its own context.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Certifies a device's keys as belonging to this account.
    pub fn certify(&self, device: &DeviceKeys, issued_at_ms: u64) -> DeviceCert {
        self.certify_public(&device.id(), &device.dh_public(), issued_at_ms)
    }

    /// Certifies another device's public keys (a device being linked).
    pub fn certify_public(&self, device: &DeviceId, dh: &[u8; 32], issued_at_ms: u64) -> DeviceCert {
        let mut cert =
            DeviceCert { account: self.public(), device: *device, dh: *dh, issued_at_ms, signature: [0u8; 64] };
        cert.signature = self.0.sign(&cert.signed_bytes()).to_bytes();
        cert
    }
}

/// One device's keys: Ed25519 to sign what it sends, X25519 to receive sealed keys.
pub struct DeviceKeys {
    sign: SigningKey,
    dh: StaticSecret,
}

impl DeviceKeys {
    pub fn generate(entropy: &mut dyn Entropy) -> Result<Self> {
        Ok(DeviceKeys { sign: SigningKey::from_bytes(&entropy.bytes32()?), dh: StaticSecret::from(entropy.bytes32()?) })
    }

    pub fn from_secrets(sign: &[u8; 32], dh: &[u8; 32]) -> Self {
        DeviceKeys { sign: SigningKey::from_bytes(sign), dh: StaticSecret::from(*dh) }
    }

    pub fn sign_secret(&self) -> crate::crypto::Secret32 {
        crate::crypto::secret(self.sign.to_bytes())
    }

    pub fn dh_secret_bytes(&self) -> crate::crypto::Secret32 {
        crate::crypto::secret(self.dh.to_bytes())
    }

    pub fn id(&self) -> DeviceId {
        self.sign.verifying_key().to_bytes()
    }

    pub fn dh_public(&self) -> [u8; 32] {
        PublicKey::from(&self.dh).to_bytes()
    }

    pub fn dh_secret(&self) -> &StaticSecret {
        &self.dh
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.sign.sign(message).to_bytes()
    }
}

/// The keys behind a contact link: the X25519 key contact requests are sealed to, and the seed
/// of the rotating rendezvous point. Both are replaced when the link is reset, which revokes
/// the old link.
pub struct InviteKeys {
    pub request: StaticSecret,
    pub rendezvous_seed: [u8; 32],
}

impl InviteKeys {
    pub fn generate(entropy: &mut dyn Entropy) -> Result<Self> {
        Ok(InviteKeys { request: StaticSecret::from(entropy.bytes32()?), rendezvous_seed: entropy.bytes32()? })
    }

    pub fn request_public(&self) -> [u8; 32] {
        PublicKey::from(&self.request).to_bytes()
    }
}

/// An account's statement that a device is its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCert {
    pub account: AccountPublic,
    pub device: DeviceId,
    pub dh: [u8; 32],
    pub issued_at_ms: u64,
    pub signature: [u8; 64],
}

impl DeviceCert {
    pub const ENCODED_LEN: usize = 32 + 32 + 32 + 8 + 64;

    fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(DEVICE_CERT_CONTEXT.len() + 104);
        w.raw(DEVICE_CERT_CONTEXT).raw(&self.account).raw(&self.device).raw(&self.dh).u64(self.issued_at_ms);
        w.into_bytes()
    }

    /// Checks the account's signature.
    pub fn verify(&self) -> Result<()> {
        verify_signature(&self.account, &self.signed_bytes(), &self.signature, "device certificate")
    }

    pub fn encode(&self, w: &mut Writer) {
        w.raw(&self.account).raw(&self.device).raw(&self.dh).u64(self.issued_at_ms).raw(&self.signature);
    }

    /// Decodes and verifies a certificate.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let cert = DeviceCert {
            account: r.array()?,
            device: r.array()?,
            dh: r.array()?,
            issued_at_ms: r.u64()?,
            signature: r.array()?,
        };
        cert.verify()?;
        Ok(cert)
    }
}

/// Verifies an Ed25519 signature by `signer` in strict mode (no malleable encodings).
pub fn verify_signature(signer: &[u8; 32], message: &[u8], signature: &[u8; 64], what: &'static str) -> Result<()> {
    let key = VerifyingKey::from_bytes(signer).map_err(|_| Error::BadSignature { what })?;
    key.verify_strict(message, &Signature::from_bytes(signature)).map_err(|_| Error::BadSignature { what })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;

    #[test]
    fn certificate_verifies_and_rejects_tampering() {
        let mut rng = SeededEntropy::new(7);
        let account = AccountKey::generate(&mut rng).unwrap();
        let device = DeviceKeys::generate(&mut rng).unwrap();
        let cert = account.certify(&device, 1_000);
        let mut w = Writer::new();
        cert.encode(&mut w);
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), DeviceCert::ENCODED_LEN);
        assert_eq!(DeviceCert::decode(&mut Reader::new(&bytes, "cert")).unwrap(), cert);
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(DeviceCert::decode(&mut Reader::new(&bad, "cert")).is_err(), "bit {bit}");
        }
    }
}
