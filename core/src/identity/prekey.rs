//! Signed prekeys: the X25519 key a device publishes so that someone who never exchanged a
//! message with it can still hand it a secret without touching its long-term key. A prekey
//! is replaced every week and its secret deleted two weeks later, so a secret sealed to it is
//! out of reach of whoever seizes the device after that; every later secret between the two
//! devices travels through their forward-secure channel (`group::channel`), whose keys are
//! deleted as they are used.

use x25519_dalek::{PublicKey, StaticSecret};

use super::device::{DeviceId, DeviceKeys, verify_signature};
use crate::crypto::{Entropy, Secret32, label, secret};
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

const PREKEY_CONTEXT: &[u8] = label("weft/v2/prekey");
/// A prekey is replaced after a week...
pub const PREKEY_ROTATE_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// ...and its secret kept two more weeks, for secrets sealed to it by devices that had not yet
/// heard of its successor.
pub const PREKEY_GRACE_MS: u64 = 14 * 24 * 60 * 60 * 1000;
/// Prekeys a device keeps at once (current and retired, within their grace).
const MAX_PREKEYS: usize = 8;

/// A device's prekey, signed by the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPrekey {
    pub device: DeviceId,
    /// Counts up from 0 as the device replaces its prekey: the higher, the newer.
    pub number: u32,
    pub public: [u8; 32],
    pub signature: [u8; 64],
}

impl SignedPrekey {
    pub const ENCODED_LEN: usize = 32 + 4 + 32 + 64;

    fn signed_bytes(device: &DeviceId, number: u32, public: &[u8; 32]) -> Vec<u8> {
        let mut w = Writer::with_capacity(PREKEY_CONTEXT.len() + 68);
        w.raw(PREKEY_CONTEXT).raw(device).u32(number).raw(public);
        w.into_bytes()
    }

    /// Checks the device's signature, and that the key is one a secret can be sealed to.
    pub fn verify(&self) -> Result<()> {
        let signed = Self::signed_bytes(&self.device, self.number, &self.public);
        verify_signature(&self.device, &signed, &self.signature, "prekey")?;
        if crate::crypto::is_low_order(&self.public) {
            return Err(Error::Malformed { what: "prekey", why: "low-order X25519 point" });
        }
        Ok(())
    }

    pub fn encode(&self, w: &mut Writer) {
        w.raw(&self.device).u32(self.number).raw(&self.public).raw(&self.signature);
    }

    /// Decodes and verifies a prekey.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let prekey = SignedPrekey { device: r.array()?, number: r.u32()?, public: r.array()?, signature: r.array()? };
        prekey.verify()?;
        Ok(prekey)
    }
}

struct Held {
    number: u32,
    secret: Secret32,
    created_ms: u64,
    retired_ms: Option<u64>,
}

/// This device's prekeys: the current one and the retired ones still within their grace.
pub struct PrekeyRing {
    held: Vec<Held>,
    current: SignedPrekey,
}

impl PrekeyRing {
    pub fn generate(keys: &DeviceKeys, now_ms: u64, entropy: &mut dyn Entropy) -> Result<Self> {
        let held = Held { number: 0, secret: secret(entropy.bytes32()?), created_ms: now_ms, retired_ms: None };
        let current = Self::sign(keys, &held);
        Ok(PrekeyRing { held: vec![held], current })
    }

    fn sign(keys: &DeviceKeys, held: &Held) -> SignedPrekey {
        let public = PublicKey::from(&StaticSecret::from(*held.secret)).to_bytes();
        let signature = keys.sign(&SignedPrekey::signed_bytes(&keys.id(), held.number, &public));
        SignedPrekey { device: keys.id(), number: held.number, public, signature }
    }

    /// The prekey to publish.
    pub fn current(&self) -> &SignedPrekey {
        &self.current
    }

    /// The secret of a prekey still held.
    pub fn secret(&self, number: u32) -> Option<StaticSecret> {
        self.held.iter().find(|h| h.number == number).map(|h| StaticSecret::from(*h.secret))
    }

    /// Replaces the current prekey when it is a week old, and deletes the secrets of retired
    /// ones past their grace. Returns whether anything changed (the ring must be stored).
    pub fn rotate_if_due(&mut self, keys: &DeviceKeys, now_ms: u64, entropy: &mut dyn Entropy) -> Result<bool> {
        let before = self.held.len();
        self.held.retain(|h| h.retired_ms.is_none_or(|r| now_ms.saturating_sub(r) < PREKEY_GRACE_MS));
        let mut changed = before != self.held.len();
        let due = self
            .held
            .iter()
            .find(|h| h.retired_ms.is_none())
            .is_none_or(|h| now_ms.saturating_sub(h.created_ms) >= PREKEY_ROTATE_MS);
        if due {
            self.rotate(keys, now_ms, entropy)?;
            changed = true;
        }
        Ok(changed)
    }

    /// Replaces the current prekey now.
    pub fn rotate(&mut self, keys: &DeviceKeys, now_ms: u64, entropy: &mut dyn Entropy) -> Result<()> {
        let number = self.current.number.checked_add(1).ok_or(Error::Limit("prekeys exhausted"))?;
        for h in self.held.iter_mut().filter(|h| h.retired_ms.is_none()) {
            h.retired_ms = Some(now_ms);
        }
        let held = Held { number, secret: secret(entropy.bytes32()?), created_ms: now_ms, retired_ms: None };
        self.current = Self::sign(keys, &held);
        self.held.push(held);
        while self.held.len() > MAX_PREKEYS {
            self.held.remove(0);
        }
        Ok(())
    }

    /// Numbers of the prekeys whose secrets are held.
    pub fn held_numbers(&self) -> Vec<u32> {
        self.held.iter().map(|h| h.number).collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(8 + self.held.len() * 53);
        w.u8(1).count(self.held.len());
        for h in &self.held {
            w.u32(h.number).raw(&h.secret[..]).u64(h.created_ms);
            match h.retired_ms {
                Some(r) => w.u8(1).u64(r),
                None => w.u8(0),
            };
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8], keys: &DeviceKeys) -> Result<Self> {
        let mut r = Reader::new(bytes, "stored prekeys");
        if r.u8()? != 1 {
            return Err(Error::Malformed { what: "stored prekeys", why: "unknown version" });
        }
        let n = r.count(MAX_PREKEYS, 45)?;
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            let number = r.u32()?;
            let secret_bytes: [u8; 32] = r.array()?;
            let created_ms = r.u64()?;
            let retired_ms = if r.bool()? { Some(r.u64()?) } else { None };
            held.push(Held { number, secret: secret(secret_bytes), created_ms, retired_ms });
        }
        r.finish()?;
        let newest = held
            .iter()
            .filter(|h| h.retired_ms.is_none())
            .max_by_key(|h| h.number)
            .ok_or(Error::Malformed { what: "stored prekeys", why: "no current prekey" })?;
        let current = Self::sign(keys, newest);
        Ok(PrekeyRing { held, current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;

    const DAY: u64 = 24 * 60 * 60 * 1000;

    #[test]
    fn a_prekey_verifies_and_rejects_tampering() {
        let mut rng = SeededEntropy::new(1);
        let keys = DeviceKeys::generate(&mut rng).unwrap();
        let ring = PrekeyRing::generate(&keys, 0, &mut rng).unwrap();
        let mut w = Writer::new();
        ring.current().encode(&mut w);
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), SignedPrekey::ENCODED_LEN);
        assert_eq!(&SignedPrekey::decode(&mut Reader::new(&bytes, "prekey")).unwrap(), ring.current());
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(SignedPrekey::decode(&mut Reader::new(&bad, "prekey")).is_err(), "bit {bit}");
        }
    }

    /// A member who signs a low-order key as its prekey would make every share sealed to it
    /// fail, and with it every key share that includes it: the prekey is refused.
    #[test]
    fn a_low_order_prekey_is_refused() {
        let mut rng = SeededEntropy::new(3);
        let keys = DeviceKeys::generate(&mut rng).unwrap();
        for public in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            let signature = keys.sign(&SignedPrekey::signed_bytes(&keys.id(), 1, &public));
            let bad = SignedPrekey { device: keys.id(), number: 1, public, signature };
            assert!(matches!(bad.verify(), Err(Error::Malformed { .. })));
        }
        assert!(PrekeyRing::generate(&keys, 0, &mut rng).unwrap().current().verify().is_ok());
    }

    #[test]
    fn a_prekey_is_replaced_weekly_and_its_secret_deleted_two_weeks_later() {
        let mut rng = SeededEntropy::new(2);
        let keys = DeviceKeys::generate(&mut rng).unwrap();
        let mut ring = PrekeyRing::generate(&keys, 0, &mut rng).unwrap();
        assert!(!ring.rotate_if_due(&keys, 6 * DAY, &mut rng).unwrap());
        assert!(ring.rotate_if_due(&keys, 7 * DAY, &mut rng).unwrap());
        assert_eq!(ring.current().number, 1);
        assert!(ring.secret(0).is_some(), "the retired prekey is kept through its grace");
        ring.rotate_if_due(&keys, 20 * DAY, &mut rng).unwrap();
        assert!(ring.secret(0).is_some());
        ring.rotate_if_due(&keys, 21 * DAY, &mut rng).unwrap();
        assert!(ring.secret(0).is_none(), "deleted once its grace ended");
        let stored = PrekeyRing::decode(&ring.encode(), &keys).unwrap();
        assert_eq!(stored.current(), ring.current());
        assert_eq!(stored.held_numbers(), ring.held_numbers());
    }
}
