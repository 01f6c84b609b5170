//! The forward-secure two-party channel through which one device hands another the secrets of a
//! group (chain keys, epoch secrets). It follows the two-party channel (2SM) of Weidner,
//! Kleppmann, Hugenroth and Beresford ("Key Agreement for Decentralized Secure Group Messaging
//! with Strong Security Guarantees", CCS 2021), shaped for envelopes that arrive in any order,
//! late, or never (a device never reads the epochs before it joined):
//! - every message hands the recipient two fresh keys of the sender's to answer to;
//! - every message is sealed, with a fresh ephemeral key, to a key the recipient handed the
//!   sender and the sender has not used yet (the newest), or, when none is left, to the
//!   recipient's signed prekey;
//! - a handed key seals one message and is deleted as that message opens.
//!
//! So a copy of a device's state opens nothing that device already opened, except what was
//! sealed to its prekey within the prekey's three weeks (a first message, or a third one before
//! the device answered): forward secrecy. Once the device writes again with fresh keys, nothing
//! sealed to those is open to the copy: post-compromise security.
//!
//! The paper's variant seals a sender's second message, when the recipient has not answered,
//! to a key derived from the first, so that no prekey is needed after the first message; that
//! makes each message wait for the one before it, and a device never reads some of them (the
//! epochs before it joined). Two keys handed per message make that fallback rare instead.
//!
//! Wire form of one sealed secret (157 bytes): `reference kind (1) | reference (4) | sender's
//! message index (4) | ephemeral X25519 key (32) | XChaCha20-Poly1305, zero nonce, of (secret (32)
//! | number of the first handed key (4) | two handed keys (64))`, its key used once.

use std::collections::BTreeMap;

use x25519_dalek::{PublicKey, StaticSecret};

use crate::crypto::{self, Entropy, Secret32, derive_array, label, secret};
use crate::error::{Error, Result};
use crate::identity::{PrekeyRing, SignedPrekey};
use crate::wire::{Reader, Writer};

const CHANNEL_KEY: &[u8] = label("weft/v2/channel");
const HEADER_LEN: usize = 1 + 4 + 4;
/// Keys handed per message.
const HANDED_PER_MESSAGE: usize = 2;
const PLAIN_LEN: usize = 32 + 4 + 32 * HANDED_PER_MESSAGE;
/// Length of one sealed secret.
pub const SEALED_LEN: usize = HEADER_LEN + 32 + PLAIN_LEN + crypto::AEAD_TAG_LEN;
/// Unused keys handed to the peer that are kept: it uses those of our newest message first, so
/// older ones matter only for messages already on their way.
const MAX_HANDED: usize = 8;

/// Which of the recipient's keys a message is sealed to, as the recipient names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyRef {
    Prekey(u32),
    /// A key the recipient handed over, by its number.
    Handed(u32),
}

impl KeyRef {
    fn encode(self) -> (u8, u32) {
        match self {
            KeyRef::Prekey(n) => (1, n),
            KeyRef::Handed(n) => (2, n),
        }
    }

    fn decode(kind: u8, n: u32) -> Result<Self> {
        match kind {
            1 => Ok(KeyRef::Prekey(n)),
            2 => Ok(KeyRef::Handed(n)),
            _ => Err(Error::Malformed { what: "sealed secret", why: "unknown key reference" }),
        }
    }
}

/// One device's side of its channel with one other device, within one group.
#[derive(Clone, Default)]
pub struct Channel {
    /// Keys we handed the peer that it has not used, by number.
    handed: BTreeMap<u32, Secret32>,
    next_key: u32,
    /// Keys the peer handed us in its newest message, not used yet (newest last).
    unused: Vec<(u32, [u8; 32])>,
    sent: u32,
    /// The peer's newest message index seen.
    received: Option<u32>,
}

struct Parsed<'a> {
    key: KeyRef,
    index: u32,
    ephemeral: [u8; 32],
    header: &'a [u8],
    body: &'a [u8],
}

fn parse(sealed: &[u8]) -> Result<Parsed<'_>> {
    if sealed.len() != SEALED_LEN {
        return Err(Error::Malformed { what: "sealed secret", why: "wrong length" });
    }
    let mut r = Reader::new(sealed, "sealed secret");
    let kind = r.u8()?;
    let reference = r.u32()?;
    let index = r.u32()?;
    let ephemeral = r.array()?;
    Ok(Parsed {
        key: KeyRef::decode(kind, reference)?,
        index,
        ephemeral,
        header: &sealed[..HEADER_LEN],
        body: &sealed[HEADER_LEN + 32..],
    })
}

/// The one-use key of a message: both public keys in the salt, the context and header bound.
fn message_key(shared: &[u8; 32], ephemeral: &[u8; 32], target: &[u8; 32], context: &[u8], header: &[u8]) -> Secret32 {
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral);
    salt[32..].copy_from_slice(target);
    secret(derive_array(&salt, shared, &[CHANNEL_KEY, context, header]))
}

fn aad(header: &[u8], context: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + context.len());
    out.extend_from_slice(header);
    out.extend_from_slice(context);
    out
}

impl Channel {
    /// Whether the peer handed us a key we have not used (else we need its prekey).
    pub fn has_target(&self) -> bool {
        !self.unused.is_empty()
    }

    /// Seals `secret` for the peer. `prekey` is the peer's latest known signed prekey, used
    /// when no key it handed us is left. `context` binds the secret to its use.
    pub fn send(
        &mut self,
        prekey: Option<&SignedPrekey>,
        context: &[u8],
        secret_bytes: &[u8; 32],
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<u8>> {
        let (key, target) = match (self.unused.last(), prekey) {
            (Some((n, public)), _) => (KeyRef::Handed(*n), *public),
            (None, Some(p)) => (KeyRef::Prekey(p.number), p.public),
            (None, None) => return Err(Error::MissingKey),
        };
        let index = self.sent;
        let ephemeral = StaticSecret::from(entropy.bytes32()?);
        let ephemeral_public = PublicKey::from(&ephemeral).to_bytes();
        let shared = ephemeral.diffie_hellman(&PublicKey::from(target));
        if !shared.was_contributory() {
            return Err(Error::Malformed { what: "recipient key", why: "low-order X25519 point" });
        }
        let first = self.next_key;
        let handed: Vec<StaticSecret> =
            (0..HANDED_PER_MESSAGE).map(|_| entropy.bytes32().map(StaticSecret::from)).collect::<Result<_>>()?;

        let (kind, reference) = key.encode();
        let mut out = Vec::with_capacity(SEALED_LEN);
        out.push(kind);
        out.extend_from_slice(&reference.to_be_bytes());
        out.extend_from_slice(&index.to_be_bytes());
        let message_key = message_key(shared.as_bytes(), &ephemeral_public, &target, context, &out);
        let mut plain = zeroize::Zeroizing::new([0u8; PLAIN_LEN]);
        plain[..32].copy_from_slice(secret_bytes);
        plain[32..36].copy_from_slice(&first.to_be_bytes());
        for (i, h) in handed.iter().enumerate() {
            plain[36 + 32 * i..68 + 32 * i].copy_from_slice(PublicKey::from(h).as_bytes());
        }
        let body = crypto::seal(&message_key, &[0; crypto::NONCE_LEN], &aad(&out, context), &plain[..]);
        out.extend_from_slice(&ephemeral_public);
        out.extend_from_slice(&body);

        self.sent = index.checked_add(1).ok_or(Error::Limit("channel messages exhausted"))?;
        self.next_key = first.checked_add(HANDED_PER_MESSAGE as u32).ok_or(Error::Limit("channel keys exhausted"))?;
        for (i, h) in handed.into_iter().enumerate() {
            self.handed.insert(first + i as u32, secret(h.to_bytes()));
        }
        while self.handed.len() > MAX_HANDED {
            self.handed.pop_first();
        }
        // A key the peer handed seals one message only.
        if matches!(key, KeyRef::Handed(_)) {
            self.unused.pop();
        }
        Ok(out)
    }

    /// Whether `sealed` can be opened here: its key is still held.
    #[cfg(test)]
    fn can_open(&self, sealed: &[u8], prekeys: &PrekeyRing) -> bool {
        match parse(sealed).map(|p| p.key) {
            Ok(KeyRef::Prekey(n)) => prekeys.secret(n).is_some(),
            Ok(KeyRef::Handed(n)) => self.handed.contains_key(&n),
            Err(_) => false,
        }
    }

    /// Opens a secret the peer sealed to us, deleting the handed key it used. Nothing changes
    /// if it does not open.
    pub fn receive(&mut self, sealed: &[u8], context: &[u8], prekeys: &PrekeyRing) -> Result<Secret32> {
        let parsed = parse(sealed)?;
        let key = match parsed.key {
            KeyRef::Prekey(n) => prekeys.secret(n),
            KeyRef::Handed(n) => self.handed.get(&n).map(|s| StaticSecret::from(**s)),
        }
        .ok_or(Error::MissingKey)?;
        let target = PublicKey::from(&key).to_bytes();
        let shared = key.diffie_hellman(&PublicKey::from(parsed.ephemeral));
        if !shared.was_contributory() {
            return Err(Error::DecryptionFailed);
        }
        let message_key = message_key(shared.as_bytes(), &parsed.ephemeral, &target, context, parsed.header);
        let plain = zeroize::Zeroizing::new(crypto::open(
            &message_key,
            &[0; crypto::NONCE_LEN],
            &aad(parsed.header, context),
            parsed.body,
        )?);
        let shared_secret = secret(plain[..32].try_into().expect("sealed length is fixed"));
        let first = u32::from_be_bytes(plain[32..36].try_into().expect("sealed length is fixed"));

        let handed_keys: Vec<[u8; 32]> = (0..HANDED_PER_MESSAGE)
            .map(|i| plain[36 + 32 * i..68 + 32 * i].try_into().expect("sealed length is fixed"))
            .collect();
        // Keys nothing can be sealed to would make every later send to the peer fail.
        if handed_keys.iter().any(crypto::is_low_order) {
            return Err(Error::Malformed { what: "sealed secret", why: "a handed key is a low-order point" });
        }
        if let KeyRef::Handed(n) = parsed.key {
            self.handed.remove(&n);
        }
        if self.received.is_none_or(|r| parsed.index > r) {
            self.received = Some(parsed.index);
            self.unused = handed_keys.into_iter().enumerate().map(|(i, k)| (first.wrapping_add(i as u32), k)).collect();
        }
        Ok(shared_secret)
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.sent).u32(self.next_key);
        match self.received {
            Some(r) => w.u8(1).u32(r),
            None => w.u8(0),
        };
        w.count(self.unused.len());
        for (n, public) in &self.unused {
            w.u32(*n).raw(public);
        }
        w.count(self.handed.len());
        for (n, s) in &self.handed {
            w.u32(*n).raw(&s[..]);
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let sent = r.u32()?;
        let next_key = r.u32()?;
        let received = if r.bool()? { Some(r.u32()?) } else { None };
        let mut unused = Vec::new();
        for _ in 0..r.count(HANDED_PER_MESSAGE, 36)? {
            let n = r.u32()?;
            unused.push((n, r.array()?));
        }
        let mut handed = BTreeMap::new();
        for _ in 0..r.count(MAX_HANDED, 36)? {
            let n = r.u32()?;
            handed.insert(n, secret(r.array()?));
        }
        Ok(Channel { handed, next_key, unused, sent, received })
    }

    /// Keys this side holds, for tests that bound what a copy of the state can open.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.handed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;
    use crate::identity::DeviceKeys;

    struct Side {
        keys: DeviceKeys,
        prekeys: PrekeyRing,
        channel: Channel,
    }

    fn side(rng: &mut SeededEntropy) -> Side {
        let keys = DeviceKeys::generate(rng).unwrap();
        let prekeys = PrekeyRing::generate(&keys, 0, rng).unwrap();
        Side { keys, prekeys, channel: Channel::default() }
    }

    fn send(from: &mut Side, to: &Side, n: u8, rng: &mut SeededEntropy) -> Vec<u8> {
        from.channel.send(Some(to.prekeys.current()), b"ctx", &[n; 32], rng).unwrap()
    }

    fn receive(to: &mut Side, sealed: &[u8]) -> Result<[u8; 32]> {
        to.channel.receive(sealed, b"ctx", &to.prekeys).map(|s| *s)
    }

    #[test]
    fn secrets_flow_both_ways_in_any_order() {
        let mut rng = SeededEntropy::new(1);
        let (mut a, mut b) = (side(&mut rng), side(&mut rng));
        let first = send(&mut a, &b, 1, &mut rng);
        assert_eq!(first.len(), SEALED_LEN);
        let second = send(&mut a, &b, 2, &mut rng);
        assert_eq!(receive(&mut b, &second).unwrap(), [2; 32], "the second before the first");
        assert_eq!(receive(&mut b, &first).unwrap(), [1; 32]);
        let reply = send(&mut b, &a, 3, &mut rng);
        assert_eq!(receive(&mut a, &reply).unwrap(), [3; 32]);
        let third = send(&mut a, &b, 4, &mut rng);
        assert_eq!(third[0], 2, "sealed to a key b handed over");
        assert_eq!(receive(&mut b, &third).unwrap(), [4; 32]);
        assert!(!b.channel.can_open(&third, &b.prekeys), "its key is gone once used");
        assert!(receive(&mut b, &third).is_err());
    }

    #[test]
    fn two_keys_are_handed_per_message_then_the_prekey_serves() {
        let mut rng = SeededEntropy::new(8);
        let (mut a, mut b) = (side(&mut rng), side(&mut rng));
        let hello = send(&mut b, &a, 0, &mut rng);
        receive(&mut a, &hello).unwrap();
        let kinds: Vec<u8> = (1..=3u8).map(|n| send(&mut a, &b, n, &mut rng)[0]).collect();
        assert_eq!(kinds, [2, 2, 1], "two handed keys, then b's prekey until b answers");
    }

    #[test]
    fn a_handed_key_opens_one_message_and_the_held_keys_stay_bounded() {
        let mut rng = SeededEntropy::new(2);
        let (mut a, mut b) = (side(&mut rng), side(&mut rng));
        let first = send(&mut a, &b, 0, &mut rng);
        receive(&mut b, &first).unwrap();
        for n in 1..20u8 {
            let to_a = send(&mut b, &a, n, &mut rng);
            receive(&mut a, &to_a).unwrap();
            let to_b = send(&mut a, &b, n, &mut rng);
            receive(&mut b, &to_b).unwrap();
            assert!(!b.channel.can_open(&to_b, &b.prekeys));
        }
        assert!(b.channel.held() <= MAX_HANDED, "b holds {} keys", b.channel.held());
    }

    #[test]
    fn a_copy_of_the_state_opens_nothing_already_opened() {
        let mut rng = SeededEntropy::new(3);
        let (mut a, mut b) = (side(&mut rng), side(&mut rng));
        let mut recorded = Vec::new();
        for n in 0..6u8 {
            let to_b = send(&mut a, &b, n, &mut rng);
            receive(&mut b, &to_b).unwrap();
            recorded.push(to_b);
            let to_a = send(&mut b, &a, 100 + n, &mut rng);
            receive(&mut a, &to_a).unwrap();
        }
        // b's prekey is past its grace: the first message, sealed to it, is out of reach too.
        let day = 24 * 60 * 60 * 1000;
        b.prekeys.rotate_if_due(&b.keys, 7 * day, &mut rng).unwrap();
        b.prekeys.rotate_if_due(&b.keys, 21 * day, &mut rng).unwrap();
        let mut seized = b.channel.clone();
        for sealed in &recorded {
            assert!(seized.receive(sealed, b"ctx", &b.prekeys).is_err());
        }
    }

    #[test]
    fn a_copy_of_the_state_opens_nothing_after_the_copied_side_writes_again() {
        let mut rng = SeededEntropy::new(4);
        let (mut a, mut b) = (side(&mut rng), side(&mut rng));
        let first = send(&mut a, &b, 1, &mut rng);
        receive(&mut b, &first).unwrap();
        // The adversary copies b (its channel and prekeys) and then only listens.
        let (mut copy, copied_prekeys) = (b.channel.clone(), PrekeyRing::decode(&b.prekeys.encode(), &b.keys).unwrap());
        // b writes with fresh keys; a answers to them.
        let update = send(&mut b, &a, 2, &mut rng);
        receive(&mut a, &update).unwrap();
        let after = send(&mut a, &b, 3, &mut rng);
        assert!(copy.receive(&after, b"ctx", &copied_prekeys).is_err(), "healed");
        assert_eq!(receive(&mut b, &after).unwrap(), [3; 32]);
    }

    #[test]
    fn a_secret_is_bound_to_its_context() {
        let mut rng = SeededEntropy::new(5);
        let (mut a, mut b) = (side(&mut rng), side(&mut rng));
        let sealed = send(&mut a, &b, 1, &mut rng);
        assert!(b.channel.receive(&sealed, b"other", &b.prekeys).is_err());
        assert_eq!(receive(&mut b, &sealed).unwrap(), [1; 32], "a failed open changes nothing");
    }

    #[test]
    fn state_round_trips() {
        let mut rng = SeededEntropy::new(6);
        let (mut a, mut b) = (side(&mut rng), side(&mut rng));
        let first = send(&mut a, &b, 1, &mut rng);
        receive(&mut b, &first).unwrap();
        let mut w = Writer::new();
        b.channel.encode(&mut w);
        let bytes = w.into_bytes();
        b.channel = Channel::decode(&mut Reader::new(&bytes, "channel")).unwrap();
        let reply = send(&mut b, &a, 2, &mut rng);
        assert_eq!(receive(&mut a, &reply).unwrap(), [2; 32]);
    }

    proptest::proptest! {
        #[test]
        fn outside_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut rng = SeededEntropy::new(7);
            let mut b = side(&mut rng);
            let _ = b.channel.can_open(&bytes, &b.prekeys);
            let _ = b.channel.receive(&bytes, b"ctx", &b.prekeys);
            let _ = Channel::decode(&mut Reader::new(&bytes, "channel"));
        }
    }
}
