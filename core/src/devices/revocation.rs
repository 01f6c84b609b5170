//! A device revoked by its account: a statement the account key signs (only the primary holds
//! it), carried in every conversation of the account. Whoever processed it refuses the device's
//! envelopes, seals nothing more to it and starts new chains it does not get.

use crate::error::{Error, Result};
use crate::identity::{AccountKey, AccountPublic, DeviceId, verify_signature};
use crate::wire::{Reader, Writer};

const CONTEXT: &[u8] = crate::crypto::label("weft/v1/device-revocation");

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub account: AccountPublic,
    pub device: DeviceId,
    pub revoked_ms: u64,
    pub signature: [u8; 64],
}

impl Revocation {
    pub const ENCODED_LEN: usize = 32 + 32 + 8 + 64;

    fn signed_bytes(account: &AccountPublic, device: &DeviceId, revoked_ms: u64) -> Vec<u8> {
        let mut w = Writer::with_capacity(CONTEXT.len() + 72);
        w.raw(CONTEXT).raw(account).raw(device).u64(revoked_ms);
        w.into_bytes()
    }

    pub fn sign(account: &AccountKey, device: &DeviceId, revoked_ms: u64) -> Revocation {
        let signature = account.sign(&Self::signed_bytes(&account.public(), device, revoked_ms));
        Revocation { account: account.public(), device: *device, revoked_ms, signature }
    }

    pub fn verify(&self) -> Result<()> {
        let signed = Self::signed_bytes(&self.account, &self.device, self.revoked_ms);
        verify_signature(&self.account, &signed, &self.signature, "device revocation")
    }

    pub fn encode(&self, w: &mut Writer) {
        w.raw(&self.account).raw(&self.device).u64(self.revoked_ms).raw(&self.signature);
    }

    /// Decodes and verifies a revocation.
    pub fn decode(r: &mut Reader<'_>) -> Result<Revocation> {
        let revocation =
            Revocation { account: r.array()?, device: r.array()?, revoked_ms: r.u64()?, signature: r.array()? };
        if revocation.device == revocation.account {
            return Err(Error::Malformed { what: "device revocation", why: "it names the account, not a device" });
        }
        revocation.verify()?;
        Ok(revocation)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(Self::ENCODED_LEN);
        self.encode(&mut w);
        w.into_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Revocation> {
        let mut r = Reader::new(bytes, "device revocation");
        let revocation = Revocation::decode(&mut r)?;
        r.finish()?;
        Ok(revocation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;

    #[test]
    fn only_the_account_key_revokes_and_any_change_is_refused() {
        let mut rng = SeededEntropy::new(3);
        let account = AccountKey::generate(&mut rng).unwrap();
        let other = AccountKey::generate(&mut rng).unwrap();
        let r = Revocation::sign(&account, &[7; 32], 1_000);
        let bytes = r.to_bytes();
        assert_eq!(Revocation::from_bytes(&bytes).unwrap(), r);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(Revocation::from_bytes(&bad).is_err(), "byte {i}");
        }
        let forged = Revocation { account: account.public(), ..Revocation::sign(&other, &[7; 32], 1_000) };
        assert!(forged.verify().is_err());
    }
}
