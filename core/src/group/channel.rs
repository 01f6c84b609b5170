//! The forward-secure two-party channel through which one device hands another the secrets of a
//! group (chain keys, epoch secrets). It follows the two-party channel (2SM) of Weidner,
//! Kleppmann, Hugenroth and Beresford ("Key Agreement for Decentralized Secure Group Messaging
//! with Strong Security Guarantees", CCS 2021), shaped for envelopes that arrive in any order,
//! late, or never (a device never reads the epochs before it joined):
//! - every message hands the recipient a fresh key of the sender's to answer to;
//! - every message is sealed, with a fresh ephemeral key, to the latest key the recipient
//!   handed the sender, or to the recipient's signed prekey while it has handed none;
//! - the recipient deletes a handed key once the sender has used a newer one twice over
//!   (one generation of grace for messages still on their way).
//!
//! The paper's variant also seals a sender's second message to a key derived from its first,
//! so that every key opens exactly one message; that makes each message wait for the one
//! before, and a device that joins never reads the epochs where those were sent. Here a key
//! may open several messages until its holder answers: a copy of a device's state opens what
//! was sealed to the keys it still holds (since its last two answers to each device; it answers
//! at least daily), and nothing older (forward secrecy); once the device answers with fresh
//! keys, nothing sealed to those is open to the copy (post-compromise security).
//!
//! Wire form of one sealed secret (121 bytes): `reference kind (1) | reference index (4) |
//! sender's message index (4) | ephemeral X25519 key (32) | XChaCha20-Poly1305 of
//! (secret (32) | handed key (32)) with a zero nonce`, its key being used once.

use std::collections::BTreeMap;

use x25519_dalek::{PublicKey, StaticSecret};

use crate::crypto::{self, Entropy, Secret32, derive_array, label, secret};
use crate::error::{Error, Result};
use crate::identity::{PrekeyRing, SignedPrekey};
use crate::wire::{Reader, Writer};

const CHANNEL_KEY: &[u8] = label("weft/v2/channel");
const HEADER_LEN: usize = 1 + 4 + 4;
/// Length of one sealed secret.
pub const SEALED_LEN: usize = HEADER_LEN + 32 + 32 + 32 + crypto::AEAD_TAG_LEN;
/// Keys handed to the peer and still held. It answers to the latest it has seen, so older ones
/// matter only for messages already on their way.
const MAX_HANDED: usize = 8;

/// Which of the recipient's keys a message is sealed to, as the recipient names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyRef {
    Prekey(u32),
    /// A key the recipient handed over in its own message of this index.
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
    /// Keys we handed the peer, by the index of our message that carried them.
    handed: BTreeMap<u32, Secret32>,
    /// Where our next message goes, as the peer names it, and its public key.
    target: Option<(KeyRef, [u8; 32])>,
    sent: u32,
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
    /// Whether we know where to send without the peer's prekey.
    pub fn has_target(&self) -> bool {
        self.target.is_some()
    }

    /// Seals `secret` for the peer. `prekey` is the peer's latest known signed prekey, used
    /// while the peer has handed us no key. `context` binds the secret to its use.
    pub fn send(
        &mut self,
        prekey: Option<&SignedPrekey>,
        context: &[u8],
        secret_bytes: &[u8; 32],
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<u8>> {
        let (key, target) = match (&self.target, prekey) {
            (Some(t), _) => *t,
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
        let handed = StaticSecret::from(entropy.bytes32()?);
        let handed_public = PublicKey::from(&handed).to_bytes();

        let (kind, reference) = key.encode();
        let mut out = Vec::with_capacity(SEALED_LEN);
        out.push(kind);
        out.extend_from_slice(&reference.to_be_bytes());
        out.extend_from_slice(&index.to_be_bytes());
        let message_key = message_key(shared.as_bytes(), &ephemeral_public, &target, context, &out);
        let mut plain = zeroize::Zeroizing::new([0u8; 64]);
        plain[..32].copy_from_slice(secret_bytes);
        plain[32..].copy_from_slice(&handed_public);
        let body = crypto::seal(&message_key, &[0; crypto::NONCE_LEN], &aad(&out, context), &plain[..]);
        out.extend_from_slice(&ephemeral_public);
        out.extend_from_slice(&body);

        self.sent = index.checked_add(1).ok_or(Error::Limit("channel messages exhausted"))?;
        self.handed.insert(index, secret(handed.to_bytes()));
        while self.handed.len() > MAX_HANDED {
            self.handed.pop_first();
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

    /// Opens a secret the peer sealed to us. Nothing changes if it does not open.
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
        let handed_public: [u8; 32] = plain[32..64].try_into().expect("sealed length is fixed");

        // The peer answers to our key `n`: it has seen it, so keys before `n - 1` serve only
        // messages it sent before it saw `n - 1`, which are long on their way.
        if let KeyRef::Handed(n) = parsed.key {
            self.handed.retain(|k, _| k.saturating_add(1) >= n);
        }
        if self.received.is_none_or(|r| parsed.index > r) {
            self.received = Some(parsed.index);
            self.target = Some((KeyRef::Handed(parsed.index), handed_public));
        }
        Ok(shared_secret)
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.sent);
        match self.received {
            Some(r) => w.u8(1).u32(r),
            None => w.u8(0),
        };
        match &self.target {
            Some((key, public)) => {
                let (kind, n) = key.encode();
                w.u8(kind).u32(n).raw(public)
            }
            None => w.u8(0),
        };
        w.count(self.handed.len());
        for (n, s) in &self.handed {
            w.u32(*n).raw(&s[..]);
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let sent = r.u32()?;
        let received = if r.bool()? { Some(r.u32()?) } else { None };
        let target = match r.u8()? {
            0 => None,
            kind => {
                let n = r.u32()?;
                Some((KeyRef::decode(kind, n)?, r.array()?))
            }
        };
        let mut handed = BTreeMap::new();
        for _ in 0..r.count(MAX_HANDED, 36)? {
            let n = r.u32()?;
            handed.insert(n, secret(r.array()?));
        }
        Ok(Channel { handed, target, sent, received })
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
        assert_eq!(receive(&mut b, &third).unwrap(), [4; 32]);
        assert!(b.channel.can_open(&third, &b.prekeys));
    }

    #[test]
    fn handed_keys_are_deleted_once_the_peer_answered_to_newer_ones() {
        let mut rng = SeededEntropy::new(2);
        let (mut a, mut b) = (side(&mut rng), side(&mut rng));
        let first = send(&mut a, &b, 0, &mut rng);
        receive(&mut b, &first).unwrap();
        let mut sealed_to_b = Vec::new();
        for n in 1..6u8 {
            let to_a = send(&mut b, &a, n, &mut rng);
            receive(&mut a, &to_a).unwrap();
            let to_b = send(&mut a, &b, n, &mut rng);
            receive(&mut b, &to_b).unwrap();
            sealed_to_b.push(to_b);
        }
        assert!(b.channel.held() <= 3, "b holds {} keys", b.channel.held());
        // All but the last two of a's messages are out of reach of b's keys now.
        for old in &sealed_to_b[..3] {
            assert!(!b.channel.can_open(old, &b.prekeys));
        }
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
        // What b still holds opens only what was sealed to its last two answers.
        let mut seized = b.channel.clone();
        let (old, recent) = recorded.split_at(recorded.len() - 2);
        for sealed in old {
            assert!(seized.receive(sealed, b"ctx", &b.prekeys).is_err());
        }
        assert!(recent.iter().all(|s| b.channel.can_open(s, &b.prekeys)), "the window is two answers, no less");
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
