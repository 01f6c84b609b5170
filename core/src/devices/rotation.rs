//! A contact link replaced by its account: the new card (a new request key and rendezvous
//! seed), signed by the account key, which only the primary holds. The primary replaces the
//! link when it revokes a device, so the revoked device, which held the old request key, opens
//! no request sent to the new link, and every 1:1 conversation moves to an epoch whose secret
//! comes from the new key: the device no longer sees when or how much is written there.
//!
//! Contacts take a replaced link only from the account itself (a device of it cannot sign one),
//! and only one newer than the last they took: a thief holding a revoked device can neither
//! make up a link nor bring back an old one.

use crate::error::{Error, Result};
use crate::identity::{AccountKey, ContactCard, verify_signature};
use crate::wire::{Reader, Writer};

const CONTEXT: &[u8] = crate::crypto::label("weft/v1/link-rotation");
/// A card is 103 bytes with no name, 64 bytes more with the longest.
const MAX_CARD_LEN: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotatedLink {
    pub card: ContactCard,
    pub issued_ms: u64,
    pub signature: [u8; 64],
}

impl RotatedLink {
    fn signed_bytes(card: &ContactCard, issued_ms: u64) -> Vec<u8> {
        let mut w = Writer::with_capacity(CONTEXT.len() + MAX_CARD_LEN + 8);
        w.raw(CONTEXT).bytes(&card.to_bytes()).u64(issued_ms);
        w.into_bytes()
    }

    /// Signs `card` as the account's link from `issued_ms` on.
    pub fn sign(account: &AccountKey, card: ContactCard, issued_ms: u64) -> Result<RotatedLink> {
        if card.account != account.public() {
            return Err(Error::NotAllowed("an account signs only its own link"));
        }
        let signature = account.sign(&Self::signed_bytes(&card, issued_ms));
        Ok(RotatedLink { card, issued_ms, signature })
    }

    pub fn verify(&self) -> Result<()> {
        let signed = Self::signed_bytes(&self.card, self.issued_ms);
        verify_signature(&self.card.account, &signed, &self.signature, "replaced link")
    }

    pub fn encode(&self, w: &mut Writer) {
        w.bytes(&self.card.to_bytes()).u64(self.issued_ms).raw(&self.signature);
    }

    /// Decodes and verifies a replaced link.
    pub fn decode(r: &mut Reader<'_>) -> Result<RotatedLink> {
        let card = ContactCard::from_bytes(r.bytes(MAX_CARD_LEN)?)?;
        let link = RotatedLink { card, issued_ms: r.u64()?, signature: r.array()? };
        link.verify()?;
        Ok(link)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(MAX_CARD_LEN + 72);
        self.encode(&mut w);
        w.into_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<RotatedLink> {
        let mut r = Reader::new(bytes, "replaced link");
        let link = RotatedLink::decode(&mut r)?;
        r.finish()?;
        Ok(link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;
    use crate::identity::InviteKeys;

    fn card_of(account: &AccountKey, keys: &InviteKeys) -> ContactCard {
        ContactCard {
            account: account.public(),
            request_key: keys.request_public(),
            rendezvous_seed: keys.rendezvous_seed,
            name: Some("alice".into()),
        }
    }

    #[test]
    fn only_the_account_key_replaces_its_link_and_any_change_is_refused() {
        let mut rng = SeededEntropy::new(4);
        let account = AccountKey::generate(&mut rng).unwrap();
        let other = AccountKey::generate(&mut rng).unwrap();
        let card = card_of(&account, &InviteKeys::generate(&mut rng).unwrap());
        let link = RotatedLink::sign(&account, card.clone(), 5_000).unwrap();
        let bytes = link.to_bytes();
        assert_eq!(RotatedLink::from_bytes(&bytes).unwrap(), link);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(RotatedLink::from_bytes(&bad).is_err(), "byte {i}");
        }
        // Someone else's key signs no link of alice's, and cannot be made to.
        assert!(RotatedLink::sign(&other, card.clone(), 5_000).is_err());
        let forged = RotatedLink { signature: other.sign(&RotatedLink::signed_bytes(&card, 5_000)), ..link };
        assert!(forged.verify().is_err());
    }

    #[test]
    fn outside_bytes_never_panic() {
        let mut rng = SeededEntropy::new(5);
        let account = AccountKey::generate(&mut rng).unwrap();
        let link = RotatedLink::sign(&account, card_of(&account, &InviteKeys::generate(&mut rng).unwrap()), 1).unwrap();
        let bytes = link.to_bytes();
        for len in 0..bytes.len() {
            assert!(RotatedLink::from_bytes(&bytes[..len]).is_err());
        }
        for fill in [0u8, 0xff] {
            assert!(RotatedLink::from_bytes(&vec![fill; 400]).is_err());
        }
    }
}
