//! Contact requests: how a person who holds someone's card introduces themselves, with no
//! need for both to be online at once. A request is sealed to the card's request key, so the
//! network (or whoever carries a bundle) learns nothing about who asks whom; inside, it carries
//! the sender's own card, device certificate, signed prekey and their chain for the 1:1
//! conversation, all signed by the sender's device. The chain is as forward-secret as the link's
//! request key (until the link is reset): it is replaced as soon as the two devices' channel
//! works (`group::channel`).
//!
//! Wire form: `version (1) | sealed box`, padded inside the box to a fixed size so that every
//! request looks alike. On the network a request is wrapped once more, afresh each day it is
//! published (`version (3) | sealed box of the request`): a request republished for days would
//! otherwise be the same bytes every day, and tie the days together for whoever sees them.

use crate::crypto::{Entropy, SEALED_OVERHEAD, label, open_sealed, seal_to};
use crate::error::{Error, Result};
use crate::identity::{ContactCard, DeviceCert, DeviceKeys, InviteKeys, SignedPrekey, verify_signature};
use crate::wire::{Reader, Writer};

/// Version 2 carries the sender's prekey (group protocol v2).
pub const REQUEST_VERSION: u8 = 2;
const REQUEST_CONTEXT: &[u8] = label("weft/v1/contact-request");
const REQUEST_SIGNATURE: &[u8] = label("weft/v1/contact-request-signature");
/// Plaintext size inside the box; every request is padded to it.
const PADDED_LEN: usize = 672;
/// The size of every request on the wire.
pub const REQUEST_LEN: usize = 1 + SEALED_OVERHEAD + PADDED_LEN;
/// A request wrapped for one day's publication on the network.
pub const WRAPPED_VERSION: u8 = 3;
/// The size of a wrapped request: what a rendezvous point carries.
pub const WRAPPED_LEN: usize = 1 + SEALED_OVERHEAD + REQUEST_LEN;
const WRAP_CONTEXT: &[u8] = label("weft/v1/contact-request-wrap");

/// Wraps a sealed request to the recipient's card once more, with fresh randomness.
pub fn wrap(request: &[u8], to: &ContactCard, entropy: &mut dyn Entropy) -> Result<Vec<u8>> {
    if request.len() != REQUEST_LEN {
        return Err(Error::Malformed { what: "contact request", why: "wrong length" });
    }
    let mut out = vec![WRAPPED_VERSION];
    out.extend_from_slice(&seal_to(&to.request_key, &wrap_context(&to.request_key), request, entropy)?);
    Ok(out)
}

/// The request inside what a rendezvous point carried (wrapped), or a bundle (as it is).
pub fn unwrap(bytes: &[u8], keys: &InviteKeys) -> Result<Vec<u8>> {
    match bytes.first() {
        Some(&WRAPPED_VERSION) if bytes.len() == WRAPPED_LEN => {
            open_sealed(&keys.request, &wrap_context(&keys.request_public()), &bytes[1..])
        }
        Some(&WRAPPED_VERSION) => Err(Error::Malformed { what: "contact request", why: "wrong length" }),
        _ => Ok(bytes.to_vec()),
    }
}

fn wrap_context(request_key: &[u8; 32]) -> Vec<u8> {
    let mut c = WRAP_CONTEXT.to_vec();
    c.extend_from_slice(request_key);
    c
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactRequest {
    /// The sender's own card, so the recipient can reach them back.
    pub card: ContactCard,
    pub device: DeviceCert,
    /// Where the recipient seals its first key share for us.
    pub prekey: SignedPrekey,
    pub chain_generation: u32,
    pub chain_index: u32,
    pub chain_key: crate::crypto::Secret32,
    pub sent_ms: u64,
}

impl ContactRequest {
    fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(PADDED_LEN);
        w.bytes(&self.card.to_bytes());
        self.device.encode(&mut w);
        self.prekey.encode(&mut w);
        w.u32(self.chain_generation).u32(self.chain_index).raw(&self.chain_key[..]).u64(self.sent_ms);
        w.into_bytes()
    }

    /// Seals the request to the recipient's card.
    pub fn seal(&self, to: &ContactCard, device: &DeviceKeys, entropy: &mut dyn Entropy) -> Result<Vec<u8>> {
        if self.device.account != self.card.account
            || self.device.device != device.id()
            || self.prekey.device != device.id()
        {
            return Err(Error::Malformed { what: "contact request", why: "device does not belong to the card" });
        }
        let body = self.body();
        let mut signed = REQUEST_SIGNATURE.to_vec();
        signed.extend_from_slice(&to.request_key);
        signed.extend_from_slice(&body);
        let signature = device.sign(&signed);
        let mut plain = Vec::with_capacity(PADDED_LEN);
        plain.extend_from_slice(&(body.len() as u16).to_be_bytes());
        plain.extend_from_slice(&body);
        plain.extend_from_slice(&signature);
        if plain.len() > PADDED_LEN {
            return Err(Error::TooLong { what: "contact request", len: plain.len(), max: PADDED_LEN });
        }
        plain.resize(PADDED_LEN, 0);
        let mut out = vec![REQUEST_VERSION];
        out.extend_from_slice(&seal_to(&to.request_key, &context(&to.request_key), &plain, entropy)?);
        Ok(out)
    }

    /// Opens a request sealed to one of our invite keys. Fails with `DecryptionFailed` when the
    /// request is not for us, which is the common case when scanning a rendezvous point.
    pub fn open(bytes: &[u8], keys: &InviteKeys) -> Result<Self> {
        if bytes.len() != REQUEST_LEN {
            return Err(Error::Malformed { what: "contact request", why: "wrong length" });
        }
        if bytes[0] != REQUEST_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "contact request",
                found: bytes[0],
                supported: REQUEST_VERSION,
            });
        }
        let ours = keys.request_public();
        let plain = open_sealed(&keys.request, &context(&ours), &bytes[1..])?;
        Self::from_opened(&plain, &ours)
    }

    /// Reads a request once opened with our request key `ours`: what anyone holding our link
    /// can make (the fuzzer reaches this decoder directly; the sealing keeps it out of reach).
    pub fn from_opened(plain: &[u8], ours: &[u8; 32]) -> Result<Self> {
        let mut r = Reader::new(plain, "contact request");
        let body_len = r.u16()? as usize;
        let body = r.take(body_len)?;
        let signature: [u8; 64] = r.array()?;
        let mut b = Reader::new(body, "contact request");
        let card = ContactCard::from_bytes(b.bytes(256)?)?;
        let device = DeviceCert::decode(&mut b)?;
        let prekey = SignedPrekey::decode(&mut b)?;
        let request = ContactRequest {
            card,
            device,
            prekey,
            chain_generation: b.u32()?,
            chain_index: b.u32()?,
            chain_key: b.array::<32>()?.into(),
            sent_ms: b.u64()?,
        };
        b.finish()?;
        if request.device.account != request.card.account || request.prekey.device != request.device.device {
            return Err(Error::Malformed { what: "contact request", why: "device does not belong to the card" });
        }
        let mut signed = REQUEST_SIGNATURE.to_vec();
        signed.extend_from_slice(ours);
        signed.extend_from_slice(body);
        verify_signature(&request.device.device, &signed, &signature, "contact request")?;
        Ok(request)
    }
}

fn context(request_key: &[u8; 32]) -> Vec<u8> {
    let mut c = REQUEST_CONTEXT.to_vec();
    c.extend_from_slice(request_key);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;
    use crate::identity::AccountKey;

    fn request(rng: &mut SeededEntropy) -> (ContactRequest, DeviceKeys) {
        let account = AccountKey::generate(rng).unwrap();
        let device = DeviceKeys::generate(rng).unwrap();
        let invite = InviteKeys::generate(rng).unwrap();
        let card = ContactCard {
            account: account.public(),
            request_key: invite.request_public(),
            rendezvous_seed: invite.rendezvous_seed,
            name: Some("alice".into()),
        };
        let cert = account.certify(&device, 5);
        let prekey = crate::identity::PrekeyRing::generate(&device, 5, rng).unwrap().current().clone();
        let req = ContactRequest {
            card,
            device: cert,
            prekey,
            chain_generation: 0,
            chain_index: 3,
            chain_key: [8; 32].into(),
            sent_ms: 9,
        };
        (req, device)
    }

    /// Republished for days, a request is wrapped afresh for each: no two publications share
    /// a byte string an observer could match, and the recipient finds the same request inside.
    #[test]
    fn each_wrapping_of_a_request_looks_new_and_opens_to_the_same_request() {
        let mut rng = SeededEntropy::new(11);
        let (req, device) = request(&mut rng);
        let (keys, card) = recipient(&mut rng);
        let sealed = req.seal(&card, &device, &mut rng).unwrap();
        let (day_one, day_two) = (wrap(&sealed, &card, &mut rng).unwrap(), wrap(&sealed, &card, &mut rng).unwrap());
        assert_eq!((day_one.len(), day_two.len()), (WRAPPED_LEN, WRAPPED_LEN));
        let windows = |b: &[u8]| b.windows(8).map(|w| w.to_vec()).collect::<std::collections::HashSet<_>>();
        assert!(windows(&day_one[1..]).is_disjoint(&windows(&day_two[1..])), "the two days share bytes");
        assert!(windows(&day_one[1..]).is_disjoint(&windows(&sealed[1..])));
        for wrapped in [&day_one, &day_two, &sealed] {
            assert_eq!(unwrap(wrapped, &keys).unwrap(), sealed);
        }
        let (stranger, _) = recipient(&mut rng);
        assert!(matches!(unwrap(&day_one, &stranger), Err(Error::DecryptionFailed)));
        assert!(unwrap(&day_one[..100], &keys).is_err(), "a short wrapping is refused");
    }

    fn recipient(rng: &mut SeededEntropy) -> (InviteKeys, ContactCard) {
        let keys = InviteKeys::generate(rng).unwrap();
        let card = ContactCard {
            account: AccountKey::generate(rng).unwrap().public(),
            request_key: keys.request_public(),
            rendezvous_seed: keys.rendezvous_seed,
            name: None,
        };
        (keys, card)
    }

    #[test]
    fn requests_round_trip_only_for_their_recipient_and_all_look_alike() {
        let mut rng = SeededEntropy::new(1);
        let (req, device) = request(&mut rng);
        let (bob_keys, bob_card) = recipient(&mut rng);
        let (carol_keys, _) = recipient(&mut rng);
        let sealed = req.seal(&bob_card, &device, &mut rng).unwrap();
        assert_eq!(sealed.len(), REQUEST_LEN);
        assert_eq!(ContactRequest::open(&sealed, &bob_keys).unwrap(), req);
        assert!(matches!(ContactRequest::open(&sealed, &carol_keys), Err(Error::DecryptionFailed)));
        // Nothing identifying is in the clear.
        for secret in [&req.card.account[..], &req.device.device[..], &req.card.request_key[..], b"alice"] {
            assert!(!sealed.windows(secret.len()).any(|w| w == secret));
        }
        // A short name and a long one give requests of one size.
        let mut long = req.clone();
        long.card.name = Some("x".repeat(64));
        assert_eq!(long.seal(&bob_card, &device, &mut rng).unwrap().len(), REQUEST_LEN);
    }

    #[test]
    fn any_single_bit_flip_is_rejected() {
        let mut rng = SeededEntropy::new(2);
        let (req, device) = request(&mut rng);
        let (bob_keys, bob_card) = recipient(&mut rng);
        let sealed = req.seal(&bob_card, &device, &mut rng).unwrap();
        for bit in (0..sealed.len() * 8).step_by(7) {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(ContactRequest::open(&bad, &bob_keys).is_err(), "bit {bit}");
        }
        assert!(ContactRequest::open(&sealed[..100], &bob_keys).is_err());
    }

    #[test]
    fn a_device_cannot_speak_for_another_account() {
        let mut rng = SeededEntropy::new(3);
        let (mut req, device) = request(&mut rng);
        let (_, bob_card) = recipient(&mut rng);
        req.card.account = AccountKey::generate(&mut rng).unwrap().public();
        assert!(req.seal(&bob_card, &device, &mut rng).is_err());
    }
}
