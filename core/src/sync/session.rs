//! A reconciliation session over rateless IBLT symbols.
//!
//! The initiator streams coded symbols of its set in growing batches; the responder, which holds
//! its own set, peels each batch and answers `More` or `Done` with the ids the initiator lacks.
//! The responder then knows what it lacks too, and fetches it by id.
//!
//! ```text
//! initiator → Symbols { salt, start, symbols }     (batch 1: 64 symbols)
//! responder → More                                (not decoded yet)
//! initiator → Symbols { salt, start, symbols }     (each batch half of all sent so far)
//! responder → Done { you_lack }                    (ids only the responder holds)
//! ```

#[cfg(test)]
use super::riblt::SYMBOL_BOUND_SLACK;
use super::riblt::{CodedSymbol, Decoder, Encoder, Item, ItemHasher, MAX_SYMBOLS};
use crate::envelope::EnvelopeId;
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

const FIRST_BATCH: usize = 64;
/// Symbols in one message, so that a message stays under 64 KiB on any transport.
pub const MAX_BATCH: usize = 2_400;
const MAX_LIST: usize = 1 << 20;

/// Why a session whose symbols peel in a way no honest stream can is abandoned.
pub const INCONSISTENT_SYMBOLS: &str = "inconsistent symbols";

/// The 16-byte prefix of an envelope id that reconciliation works on.
pub fn short_id(id: &EnvelopeId) -> Item {
    id.0[..16].try_into().expect("16 of 32 bytes")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Symbols { salt: [u8; 16], start: u32, symbols: Vec<CodedSymbol> },
    More,
    Done { you_lack: Vec<Item> },
}

impl Message {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Message::Symbols { salt, start, symbols } => {
                w.u8(1).raw(salt).u32(*start).count(symbols.len());
                for s in symbols {
                    w.raw(&s.sum).u64(s.hash);
                    write_varint(&mut w, zigzag(s.count));
                }
            }
            Message::More => {
                w.u8(2);
            }
            Message::Done { you_lack } => {
                w.u8(3).count(you_lack.len());
                for id in you_lack {
                    w.raw(id);
                }
            }
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "reconciliation message");
        let message = match r.u8()? {
            1 => {
                let salt = r.array()?;
                let start = r.u32()?;
                let n = r.count(MAX_BATCH, 25)?;
                let mut symbols = Vec::with_capacity(n);
                for _ in 0..n {
                    let sum = r.array()?;
                    let hash = r.u64()?;
                    let count = unzigzag(read_varint(&mut r)?);
                    symbols.push(CodedSymbol { sum, hash, count });
                }
                Message::Symbols { salt, start, symbols }
            }
            2 => Message::More,
            3 => {
                let n = r.count(MAX_LIST, 16)?;
                Message::Done { you_lack: (0..n).map(|_| r.array()).collect::<Result<_>>()? }
            }
            _ => return Err(Error::Malformed { what: "reconciliation message", why: "unknown kind" }),
        };
        r.finish()?;
        Ok(message)
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn write_varint(w: &mut Writer, mut v: u64) {
    while v >= 0x80 {
        w.u8((v as u8) | 0x80);
        v >>= 7;
    }
    w.u8(v as u8);
}

fn read_varint(r: &mut Reader<'_>) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = r.u8()?;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Error::Malformed { what: "reconciliation message", why: "varint longer than 64 bits" })
}

/// The side that streams its set.
pub struct Initiator {
    salt: [u8; 16],
    encoder: Encoder,
    sent: usize,
    first_batch: usize,
}

/// What a finished session learned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Ids the other side holds and we lack: fetch them.
    pub we_lack: Vec<Item>,
    /// Ids we hold and the other side lacks: offer them.
    pub they_lack: Vec<Item>,
}

impl Initiator {
    pub fn new(salt: [u8; 16], items: impl IntoIterator<Item = Item>) -> Self {
        let hasher = ItemHasher::new(&salt);
        Initiator {
            salt,
            encoder: Encoder::new(items.into_iter().map(|i| hasher.hashed(i))),
            sent: 0,
            first_batch: FIRST_BATCH,
        }
    }

    /// Starts with `first_batch` symbols: fewer suit a slow link whose peers mostly hold the
    /// same set (a Bluetooth mesh), at the cost of a round trip when they differ more.
    pub fn with_first_batch(mut self, first_batch: usize) -> Self {
        self.first_batch = first_batch.clamp(1, MAX_BATCH);
        self
    }

    /// The next batch of symbols: the first is small (most peers differ little), later ones
    /// half of everything sent so far, so overshoot stays a third at most and round trips grow
    /// with the logarithm of the difference.
    pub fn next_batch(&mut self) -> Message {
        let n = if self.sent == 0 { self.first_batch } else { (self.sent / 2).clamp(self.first_batch, MAX_BATCH) };
        let start = self.sent as u32;
        let symbols = (0..n).map(|_| self.encoder.next_symbol()).collect();
        self.sent += n;
        Message::Symbols { salt: self.salt, start, symbols }
    }

    /// Handles the responder's answer: another batch, or the end.
    pub fn handle(&mut self, message: Message) -> Result<std::ops::ControlFlow<Outcome, Message>> {
        match message {
            Message::More if self.sent < MAX_SYMBOLS => Ok(std::ops::ControlFlow::Continue(self.next_batch())),
            Message::More => Err(Error::Limit("the difference is too large to reconcile")),
            Message::Done { you_lack } => {
                Ok(std::ops::ControlFlow::Break(Outcome { we_lack: you_lack, they_lack: Vec::new() }))
            }
            Message::Symbols { .. } => Err(Error::Malformed { what: "reconciliation", why: "unexpected symbols" }),
        }
    }
}

/// The side that decodes.
pub struct Responder {
    local: Option<Vec<Item>>,
    decoder: Option<Decoder>,
}

impl Responder {
    pub fn new(items: Vec<Item>) -> Self {
        Responder { local: Some(items), decoder: None }
    }

    /// Whether `message` is the batch this side waits for (the next symbols in sequence).
    pub fn expects(&self, message: &Message) -> bool {
        let received = self.decoder.as_ref().map_or(0, Decoder::symbols_received);
        matches!(message, Message::Symbols { start, .. } if *start as usize == received)
    }

    /// Takes a batch; answers `More`, or `Done` together with what this side learned.
    pub fn handle(&mut self, message: Message) -> Result<(Message, Option<Outcome>)> {
        let Message::Symbols { salt, start, symbols } = message else {
            return Err(Error::Malformed { what: "reconciliation", why: "expected symbols" });
        };
        let decoder = match (&mut self.decoder, self.local.take()) {
            (Some(d), _) => d,
            (None, Some(items)) => self.decoder.insert(Decoder::new(ItemHasher::new(&salt), items)),
            (None, None) => unreachable!("the local set is only taken to build the decoder"),
        };
        if start as usize != decoder.symbols_received() {
            return Err(Error::Malformed { what: "reconciliation", why: "symbols out of sequence" });
        }
        if decoder.symbols_received() + symbols.len() > MAX_SYMBOLS {
            return Err(Error::Limit("the difference is too large to reconcile"));
        }
        for s in symbols {
            decoder.add_symbol(s);
            if decoder.symbols_received() > decoder.symbol_limit() {
                return Err(Error::Limit("more symbols than the two sets can differ by"));
            }
        }
        if decoder.is_broken() {
            return Err(Error::Malformed { what: "reconciliation", why: INCONSISTENT_SYMBOLS });
        }
        if decoder.is_done() {
            let outcome = Outcome { we_lack: decoder.remote_only.clone(), they_lack: decoder.local_only.clone() };
            Ok((Message::Done { you_lack: outcome.they_lack.clone() }, Some(outcome)))
        } else {
            Ok((Message::More, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_session_finds_both_directions() {
        let item = |n: u32| -> Item { blake3::hash(&n.to_be_bytes()).as_bytes()[..16].try_into().unwrap() };
        let a: Vec<Item> = (0..2_000).map(item).collect();
        let mut b: Vec<Item> = (30..2_050).map(item).collect();
        b.push(item(9_999));
        let mut initiator = Initiator::new([1; 16], a.clone());
        let mut responder = Responder::new(b.clone());
        let mut message = initiator.next_batch();
        let (initiator_outcome, responder_outcome) = loop {
            let wire = Message::decode(&message.encode()).unwrap();
            let (reply, outcome) = responder.handle(wire).unwrap();
            let reply = Message::decode(&reply.encode()).unwrap();
            match initiator.handle(reply).unwrap() {
                std::ops::ControlFlow::Continue(next) => message = next,
                std::ops::ControlFlow::Break(done) => break (done, outcome.unwrap()),
            }
        };
        let mut lacks_b = responder_outcome.we_lack.clone();
        lacks_b.sort();
        let mut want: Vec<Item> = (0..30).map(item).collect();
        want.sort();
        assert_eq!(lacks_b, want);
        assert_eq!(initiator_outcome.we_lack.len(), 51);
    }

    fn item(n: u32) -> Item {
        blake3::hash(&n.to_be_bytes()).as_bytes()[..16].try_into().unwrap()
    }

    /// Runs a session to its end; the symbols it took, or the responder's error.
    fn reconcile(a: &[Item], b: &[Item], salt: [u8; 16]) -> Result<usize> {
        let mut initiator = Initiator::new(salt, a.iter().copied()).with_first_batch(2);
        let mut responder = Responder::new(b.to_vec());
        let mut message = initiator.next_batch();
        loop {
            let (reply, outcome) = responder.handle(message)?;
            if outcome.is_some() {
                return Ok(initiator.sent);
            }
            match initiator.handle(reply)? {
                std::ops::ControlFlow::Continue(next) => message = next,
                std::ops::ControlFlow::Break(_) => unreachable!("the responder said done"),
            }
        }
    }

    /// The bound on symbols never stops an honest session, even where the sets share nothing
    /// (the difference is then both sets, the most the bound allows for).
    #[test]
    fn honest_sessions_finish_within_the_symbol_bound() {
        for (salt, (ours, theirs)) in
            [(0u8, (0, 1)), (1, (1, 0)), (2, (3, 5)), (3, (40, 0)), (4, (700, 900)), (5, (0, 3_000))]
                .into_iter()
                .enumerate()
                .map(|(i, sizes)| (i as u8, sizes.1))
        {
            let a: Vec<Item> = (0..ours).map(item).collect();
            let b: Vec<Item> = (100_000..100_000 + theirs).map(item).collect();
            let sent = reconcile(&a, &b, [salt; 16]).unwrap_or_else(|e| panic!("{ours} against {theirs}: {e}"));
            assert!(sent <= 3 * (ours + theirs) as usize + SYMBOL_BOUND_SLACK);
        }
        // And with much in common: the usual case.
        let a: Vec<Item> = (0..2_000).map(item).collect();
        let b: Vec<Item> = (10..2_010).map(item).collect();
        assert!(reconcile(&a, &b, [9; 16]).unwrap() < 100);
    }

    /// Issue 18: junk symbols ran to 131,072 (3.4 MB on the air) before one penalty. A stream
    /// that does not decode stops at three symbols per item the two sets could hold, as its
    /// first symbol declares them, and a declared set of negative size is refused at once.
    #[test]
    fn a_stream_of_junk_symbols_stops_at_what_the_sets_could_differ_by() {
        let ours: Vec<Item> = (0..100).map(item).collect();
        let junk = |start: u32, n: usize, first_count: i64| Message::Symbols {
            salt: [3; 16],
            start,
            symbols: (0..n)
                .map(|k| CodedSymbol {
                    sum: item(50_000 + start + k as u32),
                    hash: k as u64,
                    count: if start == 0 && k == 0 { first_count } else { 0 },
                })
                .collect(),
        };
        // Claims 20 ids of its own: 3 × (20 + 100) + the slack.
        let bound = 3 * 120 + SYMBOL_BOUND_SLACK;
        let mut responder = Responder::new(ours.clone());
        let mut received = 0;
        let error = loop {
            match responder.handle(junk(received as u32, 50, 20)) {
                Ok((Message::More, None)) => received += 50,
                Ok(other) => panic!("junk decoded: {other:?}"),
                Err(e) => break e,
            }
            assert!(received <= bound, "{received} symbols taken");
        };
        assert!(matches!(error, Error::Limit(_)), "{error} after {received}");
        assert!(received + 50 > bound, "stopped at {received}, before the bound");

        let mut responder = Responder::new(ours);
        let negative = responder.handle(junk(0, 1, -1));
        assert!(matches!(negative, Err(Error::Malformed { why: INCONSISTENT_SYMBOLS, .. })), "{negative:?}");
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn forged_symbols_never_panic(counts in proptest::collection::vec(any::<i64>(), 1..40), seed in any::<u8>()) {
            let local: Vec<Item> = (0..50u32).map(|n| blake3::hash(&[seed, n as u8]).as_bytes()[..16].try_into().unwrap()).collect();
            let mut responder = Responder::new(local);
            let symbols = counts.iter().enumerate().map(|(i, c)| CodedSymbol { sum: [i as u8; 16], hash: *c as u64, count: *c }).collect();
            let _ = responder.handle(Message::Symbols { salt: [seed; 16], start: 0, symbols });
        }

        #[test]
        fn zigzag_round_trips(v in any::<i64>()) {
            prop_assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
