//! Syncing one topic with one peer: reconcile which envelopes each side holds, then fetch what
//! is missing by id. A pure state machine: the node (or the mesh) carries its messages over
//! request-response streams and feeds it the replies.
//!
//! ```text
//! A → B  Reconcile { topic, Symbols }   …   B → A  Reconcile { topic, Done { you_lack } }
//! A → B  Want { topic, ids }                B → A  Have { envelopes }
//! B → A  Want { topic, ids }                A → B  Have { envelopes }     (B learned it lacks these)
//! ```

use std::collections::HashMap;

use super::Item;
use super::session::{Initiator, Message, Outcome, Responder};
use crate::envelope::{MAX_ENVELOPE_LEN, TOPIC_LEN, Topic};
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

/// Ids asked for in one `Want`.
pub const MAX_WANT: usize = 512;
/// Reconciliations one peer may have open with us at once.
pub const MAX_SESSIONS: usize = 64;
/// Bytes of envelopes in one `Have`: a reply stays a few MiB at most.
pub const MAX_HAVE_BYTES: usize = 4 * 1024 * 1024;

/// What a node's envelope store answers for the sync.
pub trait EnvelopeSource {
    /// Short ids of the envelopes held for a topic.
    fn ids(&self, topic: &Topic) -> Vec<Item>;
    /// The envelope with this short id on this topic, if held.
    fn envelope(&self, topic: &Topic, id: &Item) -> Option<Vec<u8>>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncMessage {
    Reconcile { topic: Topic, message: Message },
    Want { topic: Topic, ids: Vec<Item> },
    Have { topic: Topic, envelopes: Vec<Vec<u8>> },
}

impl SyncMessage {
    pub fn topic(&self) -> Topic {
        match self {
            SyncMessage::Reconcile { topic, .. }
            | SyncMessage::Want { topic, .. }
            | SyncMessage::Have { topic, .. } => *topic,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            SyncMessage::Reconcile { topic, message } => {
                w.u8(1).raw(topic).bytes(&message.encode());
            }
            SyncMessage::Want { topic, ids } => {
                w.u8(2).raw(topic).count(ids.len());
                for id in ids {
                    w.raw(id);
                }
            }
            SyncMessage::Have { topic, envelopes } => {
                w.u8(3).raw(topic).count(envelopes.len());
                for e in envelopes {
                    w.bytes(e);
                }
            }
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_HAVE_BYTES + 64 * 1024 {
            return Err(Error::TooLong { what: "sync message", len: bytes.len(), max: MAX_HAVE_BYTES + 64 * 1024 });
        }
        let mut r = Reader::new(bytes, "sync message");
        let kind = r.u8()?;
        let topic: [u8; TOPIC_LEN] = r.array()?;
        let message = match kind {
            1 => SyncMessage::Reconcile { topic, message: Message::decode(r.bytes(MAX_HAVE_BYTES)?)? },
            2 => {
                let n = r.count(MAX_WANT, 16)?;
                SyncMessage::Want { topic, ids: (0..n).map(|_| r.array()).collect::<Result<_>>()? }
            }
            3 => {
                let n = r.count(MAX_HAVE_BYTES / 256, 4)?;
                let envelopes = (0..n).map(|_| r.bytes(MAX_ENVELOPE_LEN).map(<[u8]>::to_vec)).collect::<Result<_>>()?;
                SyncMessage::Have { topic, envelopes }
            }
            _ => return Err(Error::Malformed { what: "sync message", why: "unknown kind" }),
        };
        r.finish()?;
        Ok(message)
    }
}

enum Side {
    Initiating(Initiator),
    Responding(Box<Responder>),
}

/// Sync state with one peer, across topics.
#[derive(Default)]
pub struct PeerSync {
    sessions: HashMap<Topic, Side>,
    /// Ids we lack, per topic, not yet asked for.
    wanted: HashMap<Topic, Vec<Item>>,
    /// The one `Want` out: its topic and ids. A `Have` may only answer these. One at a time,
    /// because every `Have` may be MAX_HAVE_BYTES and a frame must hold what answers it.
    asked: Option<(Topic, Vec<Item>)>,
}

/// What handling a message produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Messages to send to the peer.
    pub send: Vec<SyncMessage>,
    /// Envelopes fetched from the peer, to hand to the account (which checks them).
    pub received: Vec<Vec<u8>>,
}

impl PeerSync {
    /// Starts reconciling `topic` as the initiator.
    pub fn start(&mut self, topic: Topic, salt: [u8; 16], source: &dyn EnvelopeSource) -> SyncMessage {
        let mut initiator = Initiator::new(salt, source.ids(&topic));
        let message = initiator.next_batch();
        self.sessions.insert(topic, Side::Initiating(initiator));
        SyncMessage::Reconcile { topic, message }
    }

    /// Whether a reconciliation of `topic` is under way.
    pub fn is_syncing(&self, topic: &Topic) -> bool {
        self.sessions.contains_key(topic)
            || self.wanted.contains_key(topic)
            || self.asked.as_ref().is_some_and(|(t, _)| t == topic)
    }

    /// Reconciliations open, and envelopes lacked and not yet received: how far a catch-up
    /// with this peer has to go.
    pub fn pending(&self) -> (usize, usize) {
        let asked = self.asked.as_ref().map_or(0, |(_, ids)| ids.len());
        (self.sessions.len(), self.wanted.values().map(Vec::len).sum::<usize>() + asked)
    }

    /// Handles one message from the peer. A peer that breaks the protocol gets an error; the
    /// caller should then cut it off.
    pub fn handle(&mut self, message: SyncMessage, source: &dyn EnvelopeSource) -> Result<Step> {
        let mut step = Step::default();
        match message {
            SyncMessage::Reconcile { topic, message } => {
                let restart = matches!(message, Message::Symbols { start: 0, .. });
                let side = match self.sessions.remove(&topic) {
                    // The peer started over (its side of an earlier round failed): so do we.
                    Some(_) if restart => Side::Responding(Box::new(Responder::new(source.ids(&topic)))),
                    Some(side) => side,
                    None if self.sessions.len() >= MAX_SESSIONS => {
                        return Err(Error::Limit("too many reconciliations open with one peer"));
                    }
                    None if restart => Side::Responding(Box::new(Responder::new(source.ids(&topic)))),
                    None => return Err(Error::Malformed { what: "sync", why: "reconciliation without a session" }),
                };
                match side {
                    Side::Initiating(mut initiator) => match initiator.handle(message)? {
                        std::ops::ControlFlow::Continue(next) => {
                            self.sessions.insert(topic, Side::Initiating(initiator));
                            step.send.push(SyncMessage::Reconcile { topic, message: next });
                        }
                        std::ops::ControlFlow::Break(outcome) => self.want(topic, outcome, &mut step),
                    },
                    Side::Responding(mut responder) => {
                        let (reply, outcome) = responder.handle(message)?;
                        step.send.push(SyncMessage::Reconcile { topic, message: reply });
                        match outcome {
                            Some(outcome) => self.want(topic, outcome, &mut step),
                            None => {
                                self.sessions.insert(topic, Side::Responding(responder));
                            }
                        }
                    }
                }
            }
            SyncMessage::Want { topic, ids } => {
                let mut envelopes = Vec::new();
                let mut bytes = 0;
                for id in ids {
                    if let Some(e) = source.envelope(&topic, &id) {
                        bytes += e.len();
                        if bytes > MAX_HAVE_BYTES {
                            break;
                        }
                        envelopes.push(e);
                    }
                }
                step.send.push(SyncMessage::Have { topic, envelopes });
            }
            SyncMessage::Have { topic, envelopes } => {
                // Only an answer to the `Want` out: a peer cannot push unrequested bytes.
                let Some((asked_topic, mut asked)) = self.asked.take() else { return Ok(step) };
                if asked_topic != topic {
                    self.asked = Some((asked_topic, asked));
                    return Ok(step);
                }
                let before = asked.len();
                for e in envelopes {
                    let id: Item = blake3::hash(&e).as_bytes()[..16].try_into().expect("16 of 32");
                    if let Some(pos) = asked.iter().position(|w| *w == id) {
                        asked.swap_remove(pos);
                        step.received.push(e);
                    }
                }
                // A `Have` stops at MAX_HAVE_BYTES: what it left out is asked for again while
                // answers bring something. An answer that brought nothing means the peer no
                // longer holds those (expired, say): they are given up, and every round ends
                // with fewer ids, so this always ends.
                if asked.len() < before && !asked.is_empty() {
                    self.wanted.entry(topic).or_default().splice(0..0, asked);
                }
                self.next_want(&mut step);
            }
        }
        Ok(step)
    }

    /// Gives up what was under way on `topics` after an exchange about them failed (timed
    /// out, or the stream broke): their reconciliations and the `Want` out, if it was about
    /// one of them. Returns the next `Want`, for what else is lacking.
    pub fn abandon(&mut self, topics: &[Topic]) -> Vec<SyncMessage> {
        for topic in topics {
            self.sessions.remove(topic);
        }
        if self.asked.as_ref().is_some_and(|(t, _)| topics.contains(t)) {
            self.asked = None;
        }
        let mut step = Step::default();
        self.next_want(&mut step);
        step.send
    }

    fn want(&mut self, topic: Topic, outcome: Outcome, step: &mut Step) {
        if outcome.we_lack.is_empty() {
            return;
        }
        let asked: &[Item] = self.asked.as_ref().filter(|(t, _)| *t == topic).map_or(&[], |(_, ids)| ids);
        let known: std::collections::HashSet<Item> =
            self.wanted.get(&topic).into_iter().flatten().chain(asked).copied().collect();
        let fresh: Vec<Item> = outcome.we_lack.into_iter().filter(|id| !known.contains(id)).collect();
        if !fresh.is_empty() {
            self.wanted.entry(topic).or_default().extend(fresh);
        }
        self.next_want(step);
    }

    /// Sends the next `Want` (at most MAX_WANT ids of one topic) unless one is out.
    fn next_want(&mut self, step: &mut Step) {
        if self.asked.is_some() {
            return;
        }
        let Some(topic) = self.wanted.keys().min().copied() else { return };
        let lacking = self.wanted.get_mut(&topic).expect("a key just listed");
        let ids: Vec<Item> = lacking.drain(..lacking.len().min(MAX_WANT)).collect();
        if lacking.is_empty() {
            self.wanted.remove(&topic);
        }
        step.send.push(SyncMessage::Want { topic, ids: ids.clone() });
        self.asked = Some((topic, ids));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, VecDeque};

    /// An in-memory envelope store.
    #[derive(Default)]
    struct Store(BTreeMap<Topic, BTreeMap<Item, Vec<u8>>>);

    impl Store {
        fn put(&mut self, topic: Topic, bytes: Vec<u8>) {
            let id: Item = blake3::hash(&bytes).as_bytes()[..16].try_into().unwrap();
            self.0.entry(topic).or_default().insert(id, bytes);
        }
    }

    impl EnvelopeSource for Store {
        fn ids(&self, topic: &Topic) -> Vec<Item> {
            self.0.get(topic).map(|m| m.keys().copied().collect()).unwrap_or_default()
        }
        fn envelope(&self, topic: &Topic, id: &Item) -> Option<Vec<u8>> {
            self.0.get(topic)?.get(id).cloned()
        }
    }

    fn envelope(n: u32) -> Vec<u8> {
        let mut e = vec![1u8; 256];
        e[17..21].copy_from_slice(&n.to_be_bytes());
        e
    }

    /// Runs a sync of `topic` between two peers over a lossless in-memory wire (every message
    /// encoded and decoded) until both are quiet; returns the messages exchanged.
    fn run(a: &mut Store, b: &mut Store, topic: Topic) -> usize {
        let (mut sa, mut sb) = (PeerSync::default(), PeerSync::default());
        let mut to_b: VecDeque<Vec<u8>> = VecDeque::from([sa.start(topic, [3; 16], a).encode()]);
        let mut to_a: VecDeque<Vec<u8>> = VecDeque::new();
        let mut exchanged = 0;
        while !(to_a.is_empty() && to_b.is_empty()) {
            exchanged += to_a.len() + to_b.len();
            while let Some(m) = to_b.pop_front() {
                let step = sb.handle(SyncMessage::decode(&m).unwrap(), b).unwrap();
                to_a.extend(step.send.iter().map(SyncMessage::encode));
                for e in step.received {
                    b.put(topic, e);
                }
            }
            while let Some(m) = to_a.pop_front() {
                let step = sa.handle(SyncMessage::decode(&m).unwrap(), a).unwrap();
                to_b.extend(step.send.iter().map(SyncMessage::encode));
                for e in step.received {
                    a.put(topic, e);
                }
            }
        }
        exchanged
    }

    #[test]
    fn both_sides_end_with_the_union() {
        let topic = [5; 16];
        let (mut a, mut b) = (Store::default(), Store::default());
        for n in 0..3_000 {
            a.put(topic, envelope(n));
            b.put(topic, envelope(n));
        }
        for n in 10_000..10_020 {
            a.put(topic, envelope(n));
        }
        for n in 20_000..20_700 {
            b.put(topic, envelope(n));
        }
        run(&mut a, &mut b, topic);
        assert_eq!(a.ids(&topic).len(), 3_720);
        assert_eq!(a.ids(&topic), b.ids(&topic));
    }

    /// A 64 KiB envelope: bucket-sized, as the largest messages are.
    fn large_envelope(n: u32) -> Vec<u8> {
        let mut e = vec![2u8; crate::envelope::MAX_ENVELOPE_LEN];
        e[17..21].copy_from_slice(&n.to_be_bytes());
        e
    }

    #[test]
    fn more_than_one_have_can_carry_is_fetched_in_rounds() {
        let topic = [6; 16];
        let (mut a, mut b) = (Store::default(), Store::default());
        // 200 × 64 KiB is 12.5 MiB: four `Have`s' worth, asked for in one `Want`.
        for n in 0..200 {
            b.put(topic, large_envelope(n));
        }
        run(&mut a, &mut b, topic);
        assert_eq!(a.ids(&topic).len(), 200);
    }

    /// Two topics of 1,500 missing envelopes each, reconciled at once: everything arrives, and
    /// no exchange ever carries more than one `Want` or one `Have`, so no answer can outgrow
    /// a frame however large the envelopes are.
    #[test]
    fn one_want_at_a_time_across_topics() {
        let (t1, t2) = ([8; 16], [9; 16]);
        let (a, mut b) = (Store::default(), Store::default());
        for n in 0..1_500 {
            b.put(t1, envelope(n));
            b.put(t2, envelope(100_000 + n));
        }
        let (mut sa, mut sb) = (PeerSync::default(), PeerSync::default());
        let mut a = a;
        let mut to_b = vec![sa.start(t1, [1; 16], &a), sa.start(t2, [2; 16], &a)];
        let count = |batch: &[SyncMessage], want: bool| {
            batch
                .iter()
                .filter(|m| matches!((m, want), (SyncMessage::Want { .. }, true) | (SyncMessage::Have { .. }, false)))
                .count()
        };
        let mut rounds = 0;
        while !to_b.is_empty() {
            rounds += 1;
            assert!(count(&to_b, true) <= 1, "two Wants in one exchange");
            let mut to_a = Vec::new();
            for m in to_b.drain(..) {
                to_a.extend(sb.handle(SyncMessage::decode(&m.encode()).unwrap(), &b).unwrap().send);
            }
            assert!(count(&to_a, false) <= 1, "two Haves in one exchange");
            for m in to_a {
                let step = sa.handle(SyncMessage::decode(&m.encode()).unwrap(), &a).unwrap();
                for e in step.received {
                    let n = u32::from_be_bytes(e[17..21].try_into().unwrap());
                    let topic = if n >= 100_000 { t2 } else { t1 };
                    a.put(topic, e);
                }
                to_b.extend(step.send);
            }
        }
        assert_eq!((a.ids(&t1).len(), a.ids(&t2).len()), (1_500, 1_500));
        assert_eq!(sa.pending(), (0, 0));
        assert!(rounds >= 6, "{rounds} exchanges: 3,000 ids take six Wants of 512");
    }

    /// A failed exchange (timeout, broken stream) gives up its topics' reconciliations and
    /// `Want`, and the peer's fresh start is answered, not treated as a protocol error.
    #[test]
    fn a_failed_exchange_frees_its_topics_and_a_restart_is_answered() {
        let (t1, t2) = ([10; 16], [11; 16]);
        let (a, mut b) = (Store::default(), Store::default());
        for n in 0..600 {
            b.put(t1, envelope(n));
        }
        b.put(t2, envelope(9_000));
        let (mut sa, mut sb) = (PeerSync::default(), PeerSync::default());
        // Reconcile both topics to the end; the one `Want` out never gets its answer.
        let mut to_b = vec![sa.start(t1, [1; 16], &a), sa.start(t2, [2; 16], &a)];
        let mut wants = Vec::new();
        while !to_b.is_empty() {
            let replies: Vec<SyncMessage> = to_b.drain(..).flat_map(|m| sb.handle(m, &b).unwrap().send).collect();
            for m in replies {
                for next in sa.handle(m, &a).unwrap().send {
                    match next {
                        SyncMessage::Want { topic, .. } => wants.push(topic),
                        other => to_b.push(other),
                    }
                }
            }
        }
        assert_eq!(wants.len(), 1, "one Want at a time");
        assert_eq!(sa.pending(), (0, 601), "the rest waits its turn");
        let (failed, other) = if wants[0] == t1 { (t1, t2) } else { (t2, t1) };
        let next = sa.abandon(&[failed]);
        assert!(!sa.is_syncing(&failed), "the failed topic is free for the next round");
        assert!(
            matches!(next.as_slice(), [SyncMessage::Want { topic, .. }] if *topic == other),
            "the other is asked next"
        );

        // B still holds a session for a topic A abandons mid-reconciliation; A's fresh start is
        // answered.
        let first = sa.start(t1, [3; 16], &a);
        sb.handle(first.clone(), &b).unwrap();
        assert!(sb.handle(first, &b).is_ok(), "a restart is not a protocol error");
    }

    #[test]
    fn ids_the_peer_no_longer_holds_do_not_block_the_topic() {
        let topic = [7; 16];
        let (a, mut b) = (Store::default(), Store::default());
        b.put(topic, envelope(1));
        let (mut sa, mut sb) = (PeerSync::default(), PeerSync::default());
        let mut to_b = vec![sa.start(topic, [3; 16], &a)];
        let mut wants = Vec::new();
        // Reconcile until A asks for the envelope.
        while let Some(m) = to_b.pop() {
            for reply in sb.handle(m, &b).unwrap().send {
                for next in sa.handle(reply, &a).unwrap().send {
                    match next {
                        SyncMessage::Want { .. } => wants.push(next),
                        other => to_b.push(other),
                    }
                }
            }
        }
        assert_eq!(wants.len(), 1);
        assert_eq!(sa.pending(), (0, 1));
        // B dropped it meanwhile: its answer is empty, and A gives up rather than wait forever.
        let empty = Store::default();
        let answer = sb.handle(wants.remove(0), &empty).unwrap().send;
        let step = sa.handle(answer.into_iter().next().unwrap(), &a).unwrap();
        assert!(step.send.is_empty() && step.received.is_empty());
        assert!(!sa.is_syncing(&topic), "the topic is free for the next reconciliation");
        assert_eq!(sa.pending(), (0, 0));
    }

    #[test]
    fn unrequested_envelopes_are_not_taken() {
        let topic = [5; 16];
        let mut sync = PeerSync::default();
        let step = sync.handle(SyncMessage::Have { topic, envelopes: vec![envelope(1)] }, &Store::default()).unwrap();
        assert!(step.received.is_empty());
    }

    #[test]
    fn protocol_violations_are_errors() {
        let topic = [5; 16];
        let mut sync = PeerSync::default();
        let stray = SyncMessage::Reconcile { topic, message: Message::More };
        assert!(sync.handle(stray, &Store::default()).is_err());
        assert!(SyncMessage::decode(&[9, 1, 2]).is_err());
        assert!(SyncMessage::decode(&[]).is_err());
    }
}
