//! Syncing with one peer, scope by scope (a topic, or an epoch's history), and catching up from
//! a relay page by page: reconcile which envelopes each side holds, then fetch what
//! is missing by id. A pure state machine: the node (or the mesh) carries its messages over
//! request-response streams and feeds it the replies.
//!
//! ```text
//! A → B  Reconcile { topic, Symbols }   …   B → A  Reconcile { topic, Done { you_lack } }
//! A → B  Want { topic, ids }                B → A  Have { envelopes }
//! B → A  Want { topic, ids }                A → B  Have { envelopes }     (B learned it lacks these)
//! A → R  Since { after, buckets }           R → A  Held { envelopes, next }  (a relay, page by page)
//! ```

use std::collections::HashMap;

use super::Item;
use super::scope::Scope;
use super::session::{Initiator, Message, Outcome, Responder};
use super::since::{Buckets, Cursor, MAX_HELD_COUNT};
use crate::envelope::{MAX_ENVELOPE_LEN, Topic};
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
    /// Short ids of the envelopes held in a scope; `None` if this source does not serve that
    /// scope (a relay cannot tell an epoch's history; a member serves only its own epochs).
    fn ids(&self, scope: &Scope) -> Option<Vec<Item>>;
    /// The envelope with this short id in this scope, if held.
    fn envelope(&self, scope: &Scope, id: &Item) -> Option<Vec<u8>>;
    /// What was stored after `after` in these buckets, at most `max_bytes` and
    /// [`MAX_HELD_COUNT`] envelopes, oldest first, with where to go on from if there is more.
    /// Only relays serve this; a member never hands its store to whoever asks.
    fn since(&self, after: Cursor, buckets: &Buckets, max_bytes: usize) -> Option<(Vec<Vec<u8>>, Option<Cursor>)> {
        let _ = (after, buckets, max_bytes);
        None
    }
    /// The history tokens this store answers for (a member's epochs, of yesterday, today and
    /// tomorrow); none for a relay.
    fn history_tokens(&self) -> Vec<[u8; 16]> {
        Vec::new()
    }
    /// An envelope's short id as this scope's reconciliation names it: itself, but blinded in
    /// an epoch's history with a peer (see [`super::PeerBound`]).
    fn item_in(&self, scope: &Scope, id: Item) -> Item {
        let _ = scope;
        id
    }
    /// Whether we answer the peer on this scope (reconcile it with them, hand them its
    /// envelopes): a history only when the peer asked it (see [`super::bind_history`]).
    fn serves(&self, scope: &Scope) -> bool {
        let _ = scope;
        true
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncMessage {
    Reconcile {
        scope: Scope,
        message: Message,
    },
    Want {
        scope: Scope,
        ids: Vec<Item>,
    },
    Have {
        scope: Scope,
        envelopes: Vec<Vec<u8>>,
    },
    /// The scope is not served here: the initiator gives its reconciliation up.
    Refuse {
        scope: Scope,
    },
    /// Everything stored after `after` in these buckets, please (a relay catch-up).
    Since {
        after: Cursor,
        buckets: Buckets,
    },
    /// The answer to `Since`: a page of envelopes, and where the next page starts, if any.
    Held {
        envelopes: Vec<Vec<u8>>,
        next: Option<Cursor>,
    },
}

impl SyncMessage {
    /// The scope a message is about (`None` for a relay catch-up, which has none).
    pub fn scope(&self) -> Option<Scope> {
        match self {
            SyncMessage::Reconcile { scope, .. }
            | SyncMessage::Want { scope, .. }
            | SyncMessage::Have { scope, .. }
            | SyncMessage::Refuse { scope } => Some(*scope),
            SyncMessage::Since { .. } | SyncMessage::Held { .. } => None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            SyncMessage::Reconcile { scope, message } => {
                w.u8(1);
                scope.encode(&mut w);
                w.bytes(&message.encode());
            }
            SyncMessage::Want { scope, ids } => {
                w.u8(2);
                scope.encode(&mut w);
                w.count(ids.len());
                for id in ids {
                    w.raw(id);
                }
            }
            SyncMessage::Have { scope, envelopes } => {
                w.u8(3);
                scope.encode(&mut w);
                w.count(envelopes.len());
                for e in envelopes {
                    w.bytes(e);
                }
            }
            SyncMessage::Refuse { scope } => {
                w.u8(4);
                scope.encode(&mut w);
            }
            SyncMessage::Since { after, buckets } => {
                w.u8(5);
                after.encode(&mut w);
                buckets.encode(&mut w);
            }
            SyncMessage::Held { envelopes, next } => {
                w.u8(6).count(envelopes.len());
                for e in envelopes {
                    w.bytes(e);
                }
                match next {
                    Some(cursor) => {
                        w.u8(1);
                        cursor.encode(&mut w);
                    }
                    None => {
                        w.u8(0);
                    }
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
        let envelopes = |r: &mut Reader<'_>, max: usize| -> Result<Vec<Vec<u8>>> {
            let n = r.count(max, 4)?;
            (0..n).map(|_| r.bytes(MAX_ENVELOPE_LEN).map(<[u8]>::to_vec)).collect()
        };
        let message = match r.u8()? {
            1 => {
                let scope = Scope::decode(&mut r)?;
                SyncMessage::Reconcile { scope, message: Message::decode(r.bytes(MAX_HAVE_BYTES)?)? }
            }
            2 => {
                let scope = Scope::decode(&mut r)?;
                let n = r.count(MAX_WANT, 16)?;
                SyncMessage::Want { scope, ids: (0..n).map(|_| r.array()).collect::<Result<_>>()? }
            }
            3 => {
                let scope = Scope::decode(&mut r)?;
                SyncMessage::Have { scope, envelopes: envelopes(&mut r, MAX_HAVE_BYTES / 256)? }
            }
            4 => SyncMessage::Refuse { scope: Scope::decode(&mut r)? },
            5 => SyncMessage::Since { after: Cursor::decode(&mut r)?, buckets: Buckets::decode(&mut r)? },
            6 => {
                let envelopes = envelopes(&mut r, MAX_HELD_COUNT)?;
                let next = if r.bool()? { Some(Cursor::decode(&mut r)?) } else { None };
                SyncMessage::Held { envelopes, next }
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

/// A reconciliation open with the peer, and the ticks since it last moved.
struct Open {
    side: Side,
    idle: u32,
}

impl Open {
    fn new(side: Side) -> Open {
        Open { side, idle: 0 }
    }
}

/// What [`PeerSync::tick`] gave up: exchanges that stood still for the idle limit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Reconciliations given up (ours and the peer's).
    pub scopes: Vec<Scope>,
    /// The relay catch-up was given up.
    pub catch_up: bool,
    /// The next `Want`, for what else is lacking, when the one out was given up.
    pub send: Vec<SyncMessage>,
}

/// Sync state with one peer, across scopes.
#[derive(Default)]
pub struct PeerSync {
    sessions: HashMap<Scope, Open>,
    /// Ids we lack, per scope, not yet asked for.
    wanted: HashMap<Scope, Vec<Item>>,
    /// The one `Want` out: its scope and ids. A `Have` may only answer these. One at a time,
    /// because every `Have` may be MAX_HAVE_BYTES and a frame must hold what answers it.
    asked: Option<(Scope, Vec<Item>)>,
    /// The relay catch-up under way: the buckets asked for.
    catching_up: Option<Buckets>,
    /// Ticks since the `Want` out, and since the relay catch-up last moved.
    asked_idle: u32,
    catching_up_idle: u32,
    /// When both sides start reconciling the same scope at once (two members catching up the
    /// same history), this side's reconciliation goes on and the peer's is ignored; the peer
    /// (for which this is false) answers ours instead.
    wins_ties: bool,
}

/// What handling a message produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Messages to send to the peer.
    pub send: Vec<SyncMessage>,
    /// Envelopes fetched from the peer, to hand to the account (which checks them).
    pub received: Vec<Vec<u8>>,
    /// A relay catch-up ended with this message: the relay has nothing more in its buckets.
    pub caught_up: bool,
}

impl PeerSync {
    /// Sync state with a peer; `wins_ties` on exactly one of the two sides (the lower peer id).
    pub fn new(wins_ties: bool) -> PeerSync {
        PeerSync { wins_ties, ..PeerSync::default() }
    }

    /// Starts reconciling `scope` as the initiator; `None` if our source does not serve it.
    pub fn start(&mut self, scope: Scope, salt: [u8; 16], source: &dyn EnvelopeSource) -> Option<SyncMessage> {
        let mut initiator = Initiator::new(salt, source.ids(&scope)?);
        let message = initiator.next_batch();
        self.sessions.insert(scope, Open::new(Side::Initiating(initiator)));
        Some(SyncMessage::Reconcile { scope, message })
    }

    /// Starts a relay catch-up: everything stored after `after` in `buckets`, page by page.
    /// `None` while one is under way.
    pub fn start_catch_up(&mut self, after: Cursor, buckets: Buckets) -> Option<SyncMessage> {
        if self.catching_up.is_some() {
            return None;
        }
        self.catching_up = Some(buckets.clone());
        self.catching_up_idle = 0;
        Some(SyncMessage::Since { after, buckets })
    }

    /// Whether a relay catch-up is under way with this peer.
    pub fn is_catching_up(&self) -> bool {
        self.catching_up.is_some()
    }

    /// Whether a reconciliation of `scope` is under way.
    pub fn is_syncing(&self, scope: &Scope) -> bool {
        self.sessions.contains_key(scope)
            || self.wanted.contains_key(scope)
            || self.asked.as_ref().is_some_and(|(s, _)| s == scope)
    }

    /// Reconciliations open, and envelopes lacked and not yet received: how far a catch-up
    /// with this peer has to go.
    pub fn pending(&self) -> (usize, usize) {
        let asked = self.asked.as_ref().map_or(0, |(_, ids)| ids.len());
        let open = self.sessions.len() + usize::from(self.catching_up.is_some());
        (open, self.wanted.values().map(Vec::len).sum::<usize>() + asked)
    }

    /// Handles one message from the peer. A peer that breaks the protocol gets an error; the
    /// caller should then cut it off.
    pub fn handle(&mut self, message: SyncMessage, source: &dyn EnvelopeSource) -> Result<Step> {
        let mut step = Step::default();
        match message {
            SyncMessage::Reconcile { scope, message } => {
                let restart = matches!(message, Message::Symbols { start: 0, .. });
                let respond = |step: &mut Step| -> Option<Side> {
                    match source.ids(&scope).filter(|_| source.serves(&scope)) {
                        Some(ids) => Some(Side::Responding(Box::new(Responder::new(ids)))),
                        None => {
                            step.send.push(SyncMessage::Refuse { scope });
                            None
                        }
                    }
                };
                if restart
                    && self.wins_ties
                    && matches!(self.sessions.get(&scope), Some(Open { side: Side::Initiating(_), .. }))
                {
                    // Both started this scope at once: ours goes on, and the peer answers it.
                    return Ok(step);
                }
                let side = match self.sessions.remove(&scope) {
                    // The peer started over (its side of an earlier round failed): so do we.
                    Some(_) if restart => respond(&mut step),
                    Some(open) => Some(open.side),
                    None if self.sessions.len() >= MAX_SESSIONS => {
                        return Err(Error::Limit("too many reconciliations open with one peer"));
                    }
                    None if restart => respond(&mut step),
                    None => return Err(Error::StaleReconciliation),
                };
                // A message for the other side of the round, or out of its sequence, crossed a
                // restart on the wire (one side's request failed or timed out, and it started
                // over): stale, not hostile. The round is dropped; the next one starts afresh.
                let crossed = match &side {
                    Some(Side::Initiating(_)) => matches!(message, Message::Symbols { .. }),
                    Some(Side::Responding(responder)) => !responder.expects(&message),
                    None => false,
                };
                if crossed {
                    return Err(Error::StaleReconciliation);
                }
                match side {
                    None => {}
                    Some(Side::Initiating(mut initiator)) => match initiator.handle(message)? {
                        std::ops::ControlFlow::Continue(next) => {
                            self.sessions.insert(scope, Open::new(Side::Initiating(initiator)));
                            step.send.push(SyncMessage::Reconcile { scope, message: next });
                        }
                        std::ops::ControlFlow::Break(outcome) => self.want(scope, outcome, &mut step),
                    },
                    Some(Side::Responding(mut responder)) => {
                        let (reply, outcome) = responder.handle(message)?;
                        step.send.push(SyncMessage::Reconcile { scope, message: reply });
                        match outcome {
                            // A history is the asker's: its server does not ask back under the
                            // asker's key (it would be refused), but asks its own if behind.
                            Some(_) if matches!(scope, Scope::History { .. }) => {}
                            Some(outcome) => self.want(scope, outcome, &mut step),
                            None => {
                                self.sessions.insert(scope, Open::new(Side::Responding(responder)));
                            }
                        }
                    }
                }
            }
            SyncMessage::Refuse { scope } => {
                // Only our own reconciliation can be refused; anything else is ignored.
                if matches!(self.sessions.get(&scope), Some(Open { side: Side::Initiating(_), .. })) {
                    self.sessions.remove(&scope);
                }
            }
            SyncMessage::Want { scope, ids } => {
                let mut envelopes = Vec::new();
                let mut bytes = 0;
                let served = if source.serves(&scope) { ids } else { Vec::new() };
                for id in served {
                    if let Some(e) = source.envelope(&scope, &id) {
                        bytes += e.len();
                        if bytes > MAX_HAVE_BYTES {
                            break;
                        }
                        envelopes.push(e);
                    }
                }
                step.send.push(SyncMessage::Have { scope, envelopes });
            }
            SyncMessage::Have { scope, envelopes } => {
                // Only an answer to the `Want` out: a peer cannot push unrequested bytes.
                let Some((asked_scope, mut asked)) = self.asked.take() else { return Ok(step) };
                if asked_scope != scope {
                    self.asked = Some((asked_scope, asked));
                    return Ok(step);
                }
                let before = asked.len();
                for e in envelopes {
                    let id: Item = blake3::hash(&e).as_bytes()[..16].try_into().expect("16 of 32");
                    let id = source.item_in(&scope, id);
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
                    self.wanted.entry(scope).or_default().splice(0..0, asked);
                }
                self.next_want(&mut step);
            }
            SyncMessage::Since { after, buckets } => {
                let (envelopes, next) = source.since(after, &buckets, MAX_HAVE_BYTES).unwrap_or_default();
                step.send.push(SyncMessage::Held { envelopes, next });
            }
            SyncMessage::Held { envelopes, next } => {
                // Only an answer to our `Since`, and only envelopes of the buckets asked for.
                let Some(buckets) = self.catching_up.take() else { return Ok(step) };
                step.received.extend(envelopes.into_iter().filter(|e| e.len() > 17 && buckets.contains(&topic_of(e))));
                match next {
                    Some(after) => {
                        step.send.push(SyncMessage::Since { after, buckets: buckets.clone() });
                        self.catching_up = Some(buckets);
                        self.catching_up_idle = 0;
                    }
                    None => step.caught_up = true,
                }
            }
        }
        Ok(step)
    }

    /// Gives up what was under way on `scopes` after an exchange about them failed (timed
    /// out, or the stream broke): their reconciliations and the `Want` out, if it was about
    /// one of them. Returns the next `Want`, for what else is lacking.
    pub fn abandon(&mut self, scopes: &[Scope]) -> Vec<SyncMessage> {
        for scope in scopes {
            self.sessions.remove(scope);
        }
        if self.asked.as_ref().is_some_and(|(s, _)| scopes.contains(s)) {
            self.asked = None;
        }
        let mut step = Step::default();
        self.next_want(&mut step);
        step.send
    }

    /// Gives up the relay catch-up under way (its exchange failed); the next round starts over.
    pub fn abandon_catch_up(&mut self) {
        self.catching_up = None;
    }

    fn want(&mut self, scope: Scope, outcome: Outcome, step: &mut Step) {
        if outcome.we_lack.is_empty() {
            return;
        }
        let asked: &[Item] = self.asked.as_ref().filter(|(s, _)| *s == scope).map_or(&[], |(_, ids)| ids);
        let known: std::collections::HashSet<Item> =
            self.wanted.get(&scope).into_iter().flatten().chain(asked).copied().collect();
        let fresh: Vec<Item> = outcome.we_lack.into_iter().filter(|id| !known.contains(id)).collect();
        if !fresh.is_empty() {
            self.wanted.entry(scope).or_default().extend(fresh);
        }
        self.next_want(step);
    }

    /// Sends the next `Want` (at most MAX_WANT ids of one scope) unless one is out.
    fn next_want(&mut self, step: &mut Step) {
        if self.asked.is_some() {
            return;
        }
        let Some(scope) = self.wanted.keys().min().copied() else { return };
        let lacking = self.wanted.get_mut(&scope).expect("a key just listed");
        let ids: Vec<Item> = lacking.drain(..lacking.len().min(MAX_WANT)).collect();
        if lacking.is_empty() {
            self.wanted.remove(&scope);
        }
        step.send.push(SyncMessage::Want { scope, ids: ids.clone() });
        self.asked = Some((scope, ids));
        self.asked_idle = 0;
    }

    /// One tick of the node's clock: gives up every exchange that stood still for more than
    /// `idle_limit` ticks. An exchange normally ends or fails (a request times out, a stream
    /// breaks), but a peer that answers with nothing, or a side that gave up a round without
    /// the other hearing, would otherwise keep a topic "reconciling" with this peer for as long
    /// as the link lasts: never reconciled again, and a catch-up never done.
    pub fn tick(&mut self, idle_limit: u32) -> Expired {
        let mut expired = Expired::default();
        for open in self.sessions.values_mut() {
            open.idle += 1;
        }
        let mut stale: Vec<Scope> =
            self.sessions.iter().filter(|(_, open)| open.idle > idle_limit).map(|(scope, _)| *scope).collect();
        stale.sort();
        for scope in &stale {
            self.sessions.remove(scope);
        }
        expired.scopes = stale;
        if self.asked.is_some() {
            self.asked_idle += 1;
            if self.asked_idle > idle_limit {
                self.asked = None;
                let mut step = Step::default();
                self.next_want(&mut step);
                expired.send = step.send;
            }
        }
        if self.catching_up.is_some() {
            self.catching_up_idle += 1;
            if self.catching_up_idle > idle_limit {
                self.catching_up = None;
                expired.catch_up = true;
            }
        }
        expired
    }
}

/// The topic of an envelope's bytes (checked to be long enough by the caller).
fn topic_of(envelope: &[u8]) -> Topic {
    envelope[1..17].try_into().expect("checked by the caller")
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
        fn ids(&self, scope: &Scope) -> Option<Vec<Item>> {
            let Scope::Topic(topic) = scope else { return None };
            Some(self.0.get(topic).map(|m| m.keys().copied().collect()).unwrap_or_default())
        }
        fn envelope(&self, scope: &Scope, id: &Item) -> Option<Vec<u8>> {
            self.0.get(&scope.key())?.get(id).cloned()
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
        let mut to_b: VecDeque<Vec<u8>> = VecDeque::from([sa.start(Scope::Topic(topic), [3; 16], a).unwrap().encode()]);
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
        assert_eq!(a.ids(&Scope::Topic(topic)).unwrap().len(), 3_720);
        assert_eq!(a.ids(&Scope::Topic(topic)), b.ids(&Scope::Topic(topic)));
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
        assert_eq!(a.ids(&Scope::Topic(topic)).unwrap().len(), 200);
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
        let mut to_b =
            vec![sa.start(Scope::Topic(t1), [1; 16], &a).unwrap(), sa.start(Scope::Topic(t2), [2; 16], &a).unwrap()];
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
        assert_eq!((a.ids(&Scope::Topic(t1)).unwrap().len(), a.ids(&Scope::Topic(t2)).unwrap().len()), (1_500, 1_500));
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
        let mut to_b =
            vec![sa.start(Scope::Topic(t1), [1; 16], &a).unwrap(), sa.start(Scope::Topic(t2), [2; 16], &a).unwrap()];
        let mut wants = Vec::new();
        while !to_b.is_empty() {
            let replies: Vec<SyncMessage> = to_b.drain(..).flat_map(|m| sb.handle(m, &b).unwrap().send).collect();
            for m in replies {
                for next in sa.handle(m, &a).unwrap().send {
                    match next {
                        SyncMessage::Want { scope, .. } => wants.push(scope.key()),
                        other => to_b.push(other),
                    }
                }
            }
        }
        assert_eq!(wants.len(), 1, "one Want at a time");
        assert_eq!(sa.pending(), (0, 601), "the rest waits its turn");
        let (failed, other) = if wants[0] == t1 { (t1, t2) } else { (t2, t1) };
        let next = sa.abandon(&[Scope::Topic(failed)]);
        assert!(!sa.is_syncing(&Scope::Topic(failed)), "the failed topic is free for the next round");
        assert!(
            matches!(next.as_slice(), [SyncMessage::Want { scope, .. }] if scope.key() == other),
            "the other is asked next"
        );

        // B still holds a session for a topic A abandons mid-reconciliation; A's fresh start is
        // answered.
        let first = sa.start(Scope::Topic(t1), [3; 16], &a).unwrap();
        sb.handle(first.clone(), &b).unwrap();
        assert!(sb.handle(first, &b).is_ok(), "a restart is not a protocol error");
    }

    /// A peer that answers with nothing (a hostile one, or one that gave up the round without
    /// our hearing) held the topic "reconciling" for as long as the link lasted: it was never
    /// reconciled with that peer again, and a catch-up never ended. Exchanges that stand still
    /// are given up after the idle limit, on both sides, and the topic is free again.
    #[test]
    fn exchanges_that_stand_still_are_given_up() {
        let (t1, t2) = ([12; 16], [13; 16]);
        let (mut a, mut b) = (Store::default(), Store::default());
        // Differences enough that one batch of symbols does not settle them.
        for n in 0..2_000 {
            a.put(t2, envelope(n));
            b.put(t2, envelope(50_000 + n));
        }
        let (mut sa, mut sb) = (PeerSync::default(), PeerSync::default());
        // A starts t1; B's answer never comes.
        sa.start(Scope::Topic(t1), [1; 16], &a).unwrap();
        // A starts t2; B answers, and A's reply (B's next turn) is lost: B waits as responder.
        let first = sa.start(Scope::Topic(t2), [2; 16], &a).unwrap();
        let replies = sb.handle(first, &b).unwrap().send;
        assert_eq!(sb.pending().0, 1, "B responds to t2");
        for m in replies {
            sa.handle(m, &a).unwrap();
        }
        for _ in 0..3 {
            assert_eq!(sa.tick(3), Expired::default(), "not yet idle for long");
            assert_eq!(sb.tick(3), Expired::default());
        }
        let expired = sa.tick(3);
        assert!(expired.scopes.contains(&Scope::Topic(t1)), "{expired:?}");
        assert!(!sa.is_syncing(&Scope::Topic(t1)), "t1 can be reconciled with this peer again");
        assert_eq!(sb.tick(3).scopes, vec![Scope::Topic(t2)], "the responder left waiting gives up too");
        assert_eq!(sb.pending(), (0, 0));
        assert!(sa.start(Scope::Topic(t1), [3; 16], &a).is_some());

        // A `Want` never answered is given up, and what else is lacking is asked next.
        let (mut sa, sb) = (PeerSync::default(), PeerSync::default());
        let (a, mut b) = (Store::default(), Store::default());
        for n in 0..(MAX_WANT as u32 + 5) {
            b.put(t1, envelope(n));
        }
        let mut to_b = vec![sa.start(Scope::Topic(t1), [4; 16], &a).unwrap()];
        let mut sb = sb;
        let mut want = None;
        while let Some(m) = to_b.pop() {
            for reply in sb.handle(m, &b).unwrap().send {
                for next in sa.handle(reply, &a).unwrap().send {
                    match next {
                        SyncMessage::Want { .. } => want = Some(next),
                        other => to_b.push(other),
                    }
                }
            }
        }
        assert!(want.is_some());
        assert_eq!(sa.pending(), (0, MAX_WANT + 5));
        for _ in 0..3 {
            assert!(sa.tick(3).send.is_empty());
        }
        let expired = sa.tick(3);
        assert!(matches!(expired.send.as_slice(), [SyncMessage::Want { ids, .. }] if ids.len() == 5), "{expired:?}");
        assert_eq!(sa.pending(), (0, 5), "the unanswered ids are dropped; the next round finds them again");

        // A relay catch-up whose next page never comes.
        let mut sa = PeerSync::default();
        sa.start_catch_up(Cursor::default(), Buckets::new(4)).unwrap();
        for _ in 0..3 {
            assert!(!sa.tick(3).catch_up);
        }
        assert!(sa.tick(3).catch_up);
        assert!(!sa.is_catching_up());
    }

    #[test]
    fn ids_the_peer_no_longer_holds_do_not_block_the_topic() {
        let topic = [7; 16];
        let (a, mut b) = (Store::default(), Store::default());
        b.put(topic, envelope(1));
        let (mut sa, mut sb) = (PeerSync::default(), PeerSync::default());
        let mut to_b = vec![sa.start(Scope::Topic(topic), [3; 16], &a).unwrap()];
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
        assert!(!sa.is_syncing(&Scope::Topic(topic)), "the topic is free for the next reconciliation");
        assert_eq!(sa.pending(), (0, 0));
    }

    #[test]
    fn unrequested_envelopes_are_not_taken() {
        let topic = [5; 16];
        let mut sync = PeerSync::default();
        let step = sync
            .handle(SyncMessage::Have { scope: Scope::Topic(topic), envelopes: vec![envelope(1)] }, &Store::default())
            .unwrap();
        assert!(step.received.is_empty());
    }

    /// Seen under load: a request of ours failed, we started the round over as its initiator,
    /// and the peer's next symbols of the round before came in. A race an honest peer causes
    /// costs one strike (stale), not a ban.
    #[test]
    fn symbols_that_crossed_a_restart_are_stale() {
        let topic = [12; 16];
        let scope = Scope::Topic(topic);
        let (a, mut b) = (Store::default(), Store::default());
        for n in 0..2000 {
            b.put(topic, envelope(n));
        }
        let (mut sa, mut sb) = (PeerSync::default(), PeerSync::default());
        let first = sb.start(scope, [3; 16], &b).unwrap();
        let more = sa.handle(first, &a).unwrap().send;
        assert!(matches!(more[..], [SyncMessage::Reconcile { message: Message::More, .. }]), "{more:?}");
        // A starts over as initiator; B's next symbols of the old round arrive.
        let _ = sa.start(scope, [4; 16], &a).unwrap();
        let next = sb.handle(more.into_iter().next().unwrap(), &b).unwrap().send;
        assert!(matches!(next[..], [SyncMessage::Reconcile { message: Message::Symbols { .. }, .. }]), "{next:?}");
        let err = sa.handle(next.into_iter().next().unwrap(), &a).unwrap_err();
        assert!(matches!(err, Error::StaleReconciliation), "{err:?}");
    }

    #[test]
    fn protocol_violations_are_errors() {
        let topic = [5; 16];
        let mut sync = PeerSync::default();
        let stray = SyncMessage::Reconcile { scope: Scope::Topic(topic), message: Message::More };
        assert!(sync.handle(stray, &Store::default()).is_err());
        assert!(SyncMessage::decode(&[9, 1, 2]).is_err());
        assert!(SyncMessage::decode(&[]).is_err());
    }
}
