//! The nearby channel (issue 19), as a pure state machine: a public conversation of everyone in
//! radio range, readable without being anyone's contact, in the way bitchat's public chat is
//! used at festivals and protests.
//!
//! Nothing in it is the account's: each session draws an ephemeral signing key from the
//! operating system's generator (never derived from the account, so two sessions, or a session
//! and the account, cannot be linked by their keys), and a message says only that key, an
//! optional nickname, a time and a text, signed by the key. Relayers pass a message on with
//! one hop less (the hop count is outside the signature, so they can lower it but not raise it
//! past what the author set, which is at most [`MAX_HOPS`]). What a stranger sends costs
//! bounded memory: a window of recent messages, a bounded memory of what was seen, rate limits
//! per sender, mute and block. Bytes and events in, bytes and events out; the mesh carries the
//! bytes.

use std::collections::{HashMap, HashSet, VecDeque};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::crypto::Entropy;
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

/// Radio hops a message travels at most (its author's own broadcast is the first): a few radio
/// ranges, a stage and its crowd, not a city.
pub const MAX_HOPS: u8 = 4;
pub const MAX_TEXT_LEN: usize = 500;
pub const MAX_NICK_LEN: usize = 32;
/// Messages kept to show: the channel is a window, never a history.
pub const WINDOW: usize = 200;
/// A message whose time is further than this from ours is refused: replays of old traffic, and
/// clocks set far ahead to stay at the top.
pub const MAX_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;
/// Per sender: one message at first, then one every 10 s, saved up to a burst of 5.
pub const SENDER_BURST: f64 = 5.0;
pub const SENDER_REFILL_MS: u64 = 10_000;
/// New senders heard from, over all: a burst of 60, then one every 2 s. Keys cost nothing to
/// make, so a flooder with a new key per message is held by this, not by the rate per sender.
pub const NEW_SENDERS_BURST: f64 = 60.0;
pub const NEW_SENDER_REFILL_MS: u64 = 2_000;
/// Senders whose rate is remembered, and messages remembered as seen.
const MAX_SENDERS: usize = 4_096;
const MAX_SEEN: usize = 8_192;
const SIGNING_LABEL: &[u8] = b"weft/v1/nearby";

/// A sender as the channel knows them: their session's key.
pub type Sender = [u8; 32];

/// A sender's key from the 64 hex digits an app or the CLI shows.
pub fn sender_from_hex(hex: &str) -> Option<Sender> {
    let bytes = data_encoding::HEXLOWER_PERMISSIVE.decode(hex.as_bytes()).ok()?;
    bytes.try_into().ok()
}

/// One message of the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NearbyMessage {
    pub sender: Sender,
    pub sent_ms: u64,
    pub nick: String,
    pub text: String,
    /// Times it may still be passed on (outside the signature): `MAX_HOPS - 1` from its author.
    pub hops_left: u8,
    pub signature: [u8; 64],
}

impl NearbyMessage {
    fn signed_bytes(sender: &Sender, sent_ms: u64, nick: &str, text: &str) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(SIGNING_LABEL).raw(sender).u64(sent_ms).string(nick).string(text);
        w.into_bytes()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&self.sender).u64(self.sent_ms).u8(self.hops_left).string(&self.nick).string(&self.text);
        w.raw(&self.signature);
        w.into_bytes()
    }

    /// Reads a message from outside bytes; its signature is checked by [`Channel::receive`].
    pub fn decode(bytes: &[u8]) -> Result<NearbyMessage> {
        let mut r = Reader::new(bytes, "nearby message");
        let sender = r.array()?;
        let sent_ms = r.u64()?;
        let hops_left = r.u8()?;
        let nick = r.string(MAX_NICK_LEN)?;
        let text = r.string(MAX_TEXT_LEN)?;
        let signature = r.array()?;
        r.finish()?;
        if hops_left >= MAX_HOPS {
            return Err(Error::Malformed { what: "nearby message", why: "more hops than any author may ask" });
        }
        check_shown(&nick, "nearby nickname")?;
        check_shown(&text, "nearby text")?;
        Ok(NearbyMessage { sender, sent_ms, nick, text, hops_left, signature })
    }

    /// What identifies a message whatever its hop count: relayed copies are the same message.
    fn key(&self) -> [u8; 32] {
        *blake3::hash(&Self::signed_bytes(&self.sender, self.sent_ms, &self.nick, &self.text)).as_bytes()
    }
}

/// Text shown to strangers: no control characters (a terminal's escapes) and no bidirectional
/// overrides (which reorder what is shown around it).
fn check_shown(text: &str, what: &'static str) -> Result<()> {
    // Line breaks too: a message must not fake lines of its own, as if others had written them.
    let hidden = |c: char| matches!(c, '\u{061C}' | '\u{200B}' | '\u{200E}' | '\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    if text.chars().any(|c| c.is_control() || hidden(c)) {
        return Err(Error::Malformed { what, why: "control, line-break, invisible or bidirectional characters" });
    }
    Ok(())
}

/// A message as the app shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    pub sender: Sender,
    /// The nickname and the first 8 hex digits of the sender's key: two people who chose the
    /// same nickname still look different (matching someone's takes ~2^32 keys).
    pub name: String,
    pub sent_ms: u64,
    pub text: String,
    /// Hops it travelled to reach us (0: heard from its author's own radio).
    pub hops: u8,
}

/// What receiving bytes did.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// New: shown (unless muted), and these bytes to pass on (unless no hops are left or the
    /// sender is blocked).
    New { shown: Option<Shown>, relay: Option<Vec<u8>> },
    /// Seen already (another neighbour relayed it too).
    Again,
    /// Seen already, but this copy came by a shorter way: passed on again with the hops it has
    /// left (the first copy to arrive need not have come the shortest way), not shown again.
    Further { relay: Vec<u8> },
    /// Refused: a bad signature, a time too far from ours, a sender over their rate, or one the
    /// user blocked. Nothing kept, nothing relayed.
    Refused(&'static str),
}

/// A sender's budget: a token bucket.
struct Rate {
    tokens: f64,
    at_ms: u64,
    last_used_ms: u64,
}

/// One session of the nearby channel.
pub struct Channel {
    key: SigningKey,
    nick: String,
    window: VecDeque<Shown>,
    /// Messages seen: the most hops left any copy had, and the hash of the signature that was
    /// checked (a later copy must carry the same one to be passed on again).
    seen: HashMap<[u8; 32], (u8, [u8; 32])>,
    /// Seen messages in the order they came, with when: one is forgotten only once its time
    /// could no longer pass the clock check, so nothing can be replayed as new.
    seen_order: VecDeque<([u8; 32], u64)>,
    /// Our own rate, kept as strangers keep it (one at first, then one every 10 s) but apart
    /// from theirs: what we post is what they take.
    own_rate: Option<Rate>,
    rates: HashMap<Sender, Rate>,
    muted: HashSet<Sender>,
    blocked: HashSet<Sender>,
    new_senders: Rate,
}

impl Channel {
    /// A new session: a fresh key from `entropy` (the operating system's, in an app), and the
    /// nickname the user chose for it (may be empty).
    pub fn new(nick: &str, entropy: &mut dyn Entropy) -> Result<Channel> {
        if nick.len() > MAX_NICK_LEN {
            return Err(Error::TooLong { what: "nearby nickname", len: nick.len(), max: MAX_NICK_LEN });
        }
        check_shown(nick, "nearby nickname")?;
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        entropy.fill(&mut seed[..])?;
        Ok(Channel {
            key: SigningKey::from_bytes(&seed),
            nick: nick.to_owned(),
            window: VecDeque::new(),
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            own_rate: None,
            rates: HashMap::new(),
            muted: HashSet::new(),
            blocked: HashSet::new(),
            new_senders: Rate { tokens: NEW_SENDERS_BURST, at_ms: 0, last_used_ms: 0 },
        })
    }

    /// This session's key: what others see of us.
    pub fn me(&self) -> Sender {
        self.key.verifying_key().to_bytes()
    }

    /// Writes a message: the bytes to broadcast, and what to show at once.
    pub fn post(&mut self, text: &str, now_ms: u64) -> Result<(Vec<u8>, Shown)> {
        if text.trim().is_empty() {
            return Err(Error::Malformed { what: "nearby text", why: "it is empty" });
        }
        if text.len() > MAX_TEXT_LEN {
            return Err(Error::TooLong { what: "nearby text", len: text.len(), max: MAX_TEXT_LEN });
        }
        check_shown(text, "nearby text")?;
        // Held to the rate everyone holds us to: what we send is what they take.
        let own = self.own_rate.get_or_insert(Rate { tokens: 1.0, at_ms: now_ms, last_used_ms: now_ms });
        if !take(own, now_ms, SENDER_BURST, SENDER_REFILL_MS) {
            return Err(Error::Limit("one nearby message every 10 seconds (5 saved up at most)"));
        }
        let message = self.sign(text, now_ms);
        if !self.remember(message.key(), MAX_HOPS, &message.signature, now_ms) {
            return Err(Error::Limit("too many nearby messages lately"));
        }
        let shown = shown(&message);
        self.keep(shown.clone());
        Ok((message.encode(), shown))
    }

    /// A message of ours, signed, with every hop left.
    fn sign(&self, text: &str, now_ms: u64) -> NearbyMessage {
        let sender = self.me();
        let signature = self.key.sign(&NearbyMessage::signed_bytes(&sender, now_ms, &self.nick, text)).to_bytes();
        NearbyMessage {
            sender,
            sent_ms: now_ms,
            nick: self.nick.clone(),
            text: text.to_owned(),
            hops_left: MAX_HOPS - 1,
            signature,
        }
    }

    /// Takes bytes a neighbour sent.
    pub fn receive(&mut self, bytes: &[u8], now_ms: u64) -> Received {
        let Ok(message) = NearbyMessage::decode(bytes) else { return Received::Refused("malformed") };
        let key = message.key();
        if let Some((best, signature)) = self.seen.get_mut(&key) {
            // The same signature as the copy checked when it first came (Ed25519's are
            // deterministic, so an honest relay carries the same bytes); from someone blocked,
            // nothing is passed on.
            let same = *signature == *blake3::hash(&message.signature).as_bytes();
            if same && message.hops_left > *best && message.hops_left > 0 && !self.blocked.contains(&message.sender) {
                *best = message.hops_left;
                return Received::Further {
                    relay: NearbyMessage { hops_left: message.hops_left - 1, ..message }.encode(),
                };
            }
            return Received::Again;
        }
        if message.sent_ms.abs_diff(now_ms) > MAX_CLOCK_SKEW_MS {
            return Received::Refused("its time is too far from ours");
        }
        let Ok(verifying) = VerifyingKey::from_bytes(&message.sender) else { return Received::Refused("bad key") };
        let signed = NearbyMessage::signed_bytes(&message.sender, message.sent_ms, &message.nick, &message.text);
        if verifying.verify_strict(&signed, &Signature::from_bytes(&message.signature)).is_err() {
            return Received::Refused("bad signature");
        }
        if self.blocked.contains(&message.sender) {
            return Received::Refused("blocked");
        }
        if !self.spend(&message.sender, now_ms) {
            return Received::Refused("over its rate");
        }
        if !self.remember(key, message.hops_left, &message.signature, now_ms) {
            return Received::Refused("too many messages lately");
        }
        let relay = (message.hops_left > 0)
            .then(|| NearbyMessage { hops_left: message.hops_left - 1, ..message.clone() }.encode());
        let shown = (!self.muted.contains(&message.sender)).then(|| shown(&message));
        if let Some(s) = &shown {
            self.keep(s.clone());
        }
        Received::New { shown, relay }
    }

    /// Hides a sender's messages (still relayed for others).
    pub fn mute(&mut self, sender: Sender) {
        self.muted.insert(sender);
        self.window.retain(|m| m.sender != sender);
    }

    /// Refuses a sender: neither shown nor relayed.
    pub fn block(&mut self, sender: Sender) {
        self.blocked.insert(sender);
        self.mute(sender);
    }

    /// The recent window, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Shown> {
        self.window.iter()
    }

    fn keep(&mut self, shown: Shown) {
        self.window.push_back(shown);
        while self.window.len() > WINDOW {
            self.window.pop_front();
        }
    }

    /// Remembers a message as seen; false when the memory is full of messages recent enough
    /// to be replayed if forgotten (then the new one is refused, not taken).
    fn remember(&mut self, key: [u8; 32], hops_left: u8, signature: &[u8; 64], now_ms: u64) -> bool {
        while self.seen_order.len() >= MAX_SEEN {
            match self.seen_order.front() {
                Some((old, at)) if at.saturating_add(2 * MAX_CLOCK_SKEW_MS) < now_ms => {
                    self.seen.remove(old);
                    self.seen_order.pop_front();
                }
                _ => return false,
            }
        }
        if self.seen.insert(key, (hops_left, *blake3::hash(signature).as_bytes())).is_none() {
            self.seen_order.push_back((key, now_ms));
        }
        true
    }

    /// Takes one token of `sender`'s bucket, if there is one (a new sender's first comes out of
    /// the budget for new senders).
    fn spend(&mut self, sender: &Sender, now_ms: u64) -> bool {
        if !self.rates.contains_key(sender) {
            if !take(&mut self.new_senders, now_ms, NEW_SENDERS_BURST, NEW_SENDER_REFILL_MS) {
                return false;
            }
            self.insert_sender(*sender, now_ms);
            return true;
        }
        let rate = self.rates.get_mut(sender).expect("checked above");
        take(rate, now_ms, SENDER_BURST, SENDER_REFILL_MS)
    }

    fn insert_sender(&mut self, sender: Sender, now_ms: u64) {
        if self.rates.len() >= MAX_SENDERS {
            // Forget the sender heard from least lately; a stranger who comes back starts full,
            // which a flood of fresh keys gains nothing from: each key is one burst.
            if let Some(oldest) = self.rates.iter().min_by_key(|(_, r)| r.last_used_ms).map(|(s, _)| *s) {
                self.rates.remove(&oldest);
            }
        }
        // Its first message was spent from the new senders' budget.
        self.rates.insert(sender, Rate { tokens: 0.0, at_ms: now_ms, last_used_ms: now_ms });
    }
}

/// Takes a token of a bucket refilled one per `refill_ms` up to `burst`, if there is one.
fn take(rate: &mut Rate, now_ms: u64, burst: f64, refill_ms: u64) -> bool {
    let refill = now_ms.saturating_sub(rate.at_ms) as f64 / refill_ms as f64;
    rate.tokens = (rate.tokens + refill).min(burst);
    rate.at_ms = rate.at_ms.max(now_ms);
    rate.last_used_ms = now_ms;
    if rate.tokens < 1.0 {
        return false;
    }
    rate.tokens -= 1.0;
    true
}

fn shown(message: &NearbyMessage) -> Shown {
    let tag = data_encoding::HEXLOWER.encode(&message.sender[..4]);
    let name = if message.nick.is_empty() { format!("anon#{tag}") } else { format!("{}#{tag}", message.nick) };
    Shown {
        sender: message.sender,
        name,
        sent_ms: message.sent_ms,
        text: message.text.clone(),
        hops: (MAX_HOPS - 1).saturating_sub(message.hops_left),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;

    const NOW: u64 = 1_750_000_000_000;

    fn channel(nick: &str, seed: u64) -> Channel {
        Channel::new(nick, &mut SeededEntropy::new(seed)).unwrap()
    }

    #[test]
    fn a_message_is_shown_and_relayed_hop_by_hop_until_its_hops_run_out() {
        let mut alice = channel("alice", 1);
        let (mut bytes, _) = alice.post("water at the north gate", NOW).unwrap();
        let mut hops = 0;
        loop {
            let mut next = channel("", 10 + u64::from(hops));
            match next.receive(&bytes, NOW + 1_000) {
                Received::New { shown, relay } => {
                    let shown = shown.unwrap();
                    assert_eq!((shown.text.as_str(), shown.hops), ("water at the north gate", hops));
                    assert!(shown.name.starts_with("alice#"));
                    match relay {
                        Some(b) => bytes = b,
                        None => break,
                    }
                }
                other => panic!("{other:?}"),
            }
            hops += 1;
        }
        assert_eq!(hops + 1, MAX_HOPS, "passed on until it travelled MAX_HOPS radio hops, no further");
        // The same message again, from another neighbour: seen.
        let mut bob = channel("bob", 2);
        let (first, _) = alice.post("second", NOW + SENDER_REFILL_MS).unwrap();
        assert!(matches!(bob.receive(&first, NOW), Received::New { .. }));
        assert_eq!(bob.receive(&first, NOW), Received::Again);
        // Our own client holds us to the rate the others hold us to.
        assert!(matches!(alice.post("third", NOW + SENDER_REFILL_MS + 1), Err(Error::Limit(_))));
    }

    /// A relayer can lower the hop count but not raise it past the limit, and nothing it
    /// changes inside the signature is taken.
    #[test]
    fn forged_and_stale_messages_are_refused() {
        let mut alice = channel("alice", 1);
        let (bytes, _) = alice.post("hello", NOW).unwrap();
        let mut message = NearbyMessage::decode(&bytes).unwrap();
        let mut bob = channel("bob", 2);
        message.text = "goodbye".into();
        assert_eq!(bob.receive(&message.encode(), NOW), Received::Refused("bad signature"));
        let mut raised = NearbyMessage::decode(&bytes).unwrap();
        raised.hops_left = MAX_HOPS;
        assert_eq!(bob.receive(&raised.encode(), NOW), Received::Refused("malformed"));
        assert_eq!(
            bob.receive(&bytes, NOW + 2 * MAX_CLOCK_SKEW_MS),
            Received::Refused("its time is too far from ours")
        );
        for junk in [&b""[..], &[0u8; 10], &[0xff; 400]] {
            assert_eq!(bob.receive(junk, NOW), Received::Refused("malformed"));
        }
        assert!(alice.post("\u{1b}[2Jcleared", NOW).is_err(), "no terminal escapes");
        assert!(alice.post(&"x".repeat(MAX_TEXT_LEN + 1), NOW).is_err());
    }

    /// Review: a copy with more hops left is passed on again only with the signature that was
    /// checked; a forged one (any signature) is not, and cannot spoil the real one that comes
    /// later by the shorter way.
    #[test]
    fn only_a_true_copy_with_more_hops_is_passed_on_again() {
        let mut alice = channel("alice", 1);
        let (bytes, _) = alice.post("meet at the tree", NOW).unwrap();
        let mut far = NearbyMessage::decode(&bytes).unwrap();
        far.hops_left = 0;
        let mut bob = channel("bob", 2);
        assert!(matches!(bob.receive(&far.encode(), NOW), Received::New { relay: None, .. }));
        let forged = NearbyMessage { hops_left: MAX_HOPS - 1, signature: [0; 64], ..far.clone() };
        assert_eq!(bob.receive(&forged.encode(), NOW), Received::Again);
        match bob.receive(&bytes, NOW) {
            Received::Further { relay } => assert_eq!(NearbyMessage::decode(&relay).unwrap().hops_left, MAX_HOPS - 2),
            other => panic!("the true copy by the shorter way: {other:?}"),
        }
        assert_eq!(bob.receive(&bytes, NOW), Received::Again, "once");
    }

    #[test]
    fn a_flooding_sender_is_held_to_its_rate_muted_hidden_and_blocked_not_relayed() {
        let mut flooder = channel("loud", 3);
        let mut bob = channel("bob", 2);
        let mut taken = 0;
        for n in 0..50 {
            // A hostile client skips its own rate.
            let bytes = flooder.sign(&format!("buy now {n}"), NOW + n).encode();
            if matches!(bob.receive(&bytes, NOW + n), Received::New { .. }) {
                taken += 1;
            }
        }
        assert_eq!(taken, 1, "a new sender's first message, then its rate");
        let (later, _) = flooder.post("after a while", NOW + SENDER_REFILL_MS + 100).unwrap();
        assert!(matches!(bob.receive(&later, NOW + SENDER_REFILL_MS + 100), Received::New { .. }));
        // Saved up over a quiet minute: a burst of 5 at most.
        let quiet = NOW + 20 * SENDER_REFILL_MS;
        let burst = (0..20)
            .filter(|n| {
                let bytes = flooder.sign(&format!("again {n}"), quiet + n).encode();
                matches!(bob.receive(&bytes, quiet + n), Received::New { .. })
            })
            .count();
        assert_eq!(burst, SENDER_BURST as usize);

        let loud = flooder.me();
        bob.mute(loud);
        assert!(bob.recent().all(|m| m.sender != loud), "muted: its window is cleared");
        let (muted, _) = flooder.post("still here", NOW + 30 * SENDER_REFILL_MS).unwrap();
        match bob.receive(&muted, NOW + 30 * SENDER_REFILL_MS) {
            Received::New { shown: None, relay: Some(_) } => {}
            other => panic!("a muted sender is hidden but relayed for others: {other:?}"),
        }
        bob.block(loud);
        let (blocked, _) = flooder.post("let me in", NOW + 40 * SENDER_REFILL_MS).unwrap();
        assert_eq!(bob.receive(&blocked, NOW + 40 * SENDER_REFILL_MS), Received::Refused("blocked"));
    }

    /// Keys cost nothing: a flooder with a new key per message is held to the budget for new
    /// senders (a burst of 60, then one every 2 s), and someone already heard keeps talking.
    #[test]
    fn a_new_key_per_message_buys_no_more_than_the_new_senders_budget() {
        let mut bob = channel("bob", 2);
        let mut friend = channel("friend", 3);
        let (hello, _) = friend.post("hello", NOW).unwrap();
        assert!(matches!(bob.receive(&hello, NOW), Received::New { .. }));
        let taken = (0..300u64)
            .filter(|n| {
                let (bytes, _) = channel("", 5_000 + n).post("spam", NOW + n).unwrap();
                matches!(bob.receive(&bytes, NOW + n), Received::New { .. })
            })
            .count();
        assert_eq!(taken, NEW_SENDERS_BURST as usize - 1, "the burst, less the friend's first message");
        let (again, _) = friend.post("still here", NOW + SENDER_REFILL_MS).unwrap();
        assert!(matches!(bob.receive(&again, NOW + SENDER_REFILL_MS), Received::New { .. }));
    }

    /// Memory stays bounded whatever strangers send: the window, what was seen, and the senders
    /// whose rates are remembered.
    #[test]
    fn what_strangers_send_costs_bounded_memory() {
        let mut bob = channel("bob", 2);
        for n in 0..(MAX_SENDERS as u64 + 100) {
            // Two seconds apart: each one is taken (the new senders' budget refills).
            let at = NOW + n * NEW_SENDER_REFILL_MS;
            let mut stranger = channel("", 1_000 + n);
            let (bytes, _) = stranger.post("hi", at).unwrap();
            assert!(matches!(bob.receive(&bytes, at), Received::New { .. }));
        }
        assert!(bob.window.len() <= WINDOW);
        assert!(bob.seen.len() <= MAX_SEEN && bob.seen_order.len() <= MAX_SEEN);
        assert!(bob.rates.len() <= MAX_SENDERS);
    }

    /// A session's key is drawn fresh, never from the account: two sessions do not share it.
    #[test]
    fn each_session_has_a_key_of_its_own() {
        let mut os = crate::crypto::OsEntropy;
        let a = Channel::new("me", &mut os).unwrap();
        let b = Channel::new("me", &mut os).unwrap();
        assert_ne!(a.me(), b.me());
    }

    proptest::proptest! {
        #[test]
        fn outside_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700)) {
            let mut bob = channel("bob", 2);
            let _ = bob.receive(&bytes, NOW);
        }
    }
}
