//! Rateless invertible Bloom lookup tables (Yang, Gilad, Alizadeh: "Practical Rateless Set
//! Reconciliation", SIGCOMM 2024), written from the paper.
//!
//! An encoder turns a set into an endless stream of coded symbols; a decoder that holds its own
//! set subtracts it and peels the stream until it has recovered the symmetric difference. About
//! 1.35–1.7 coded symbols per differing item suffice, however large the sets are, so the cost
//! grows with the difference, not with the history.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Items are 16-byte ids (a prefix of the envelope id: collisions need 2^64 work).
pub type Item = [u8; 16];

/// An item with its keyed 64-bit hash (the checksum, and the seed of its index sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hashed {
    pub item: Item,
    pub hash: u64,
}

/// The sum of the items mapped to one index of the stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CodedSymbol {
    pub sum: Item,
    pub hash: u64,
    pub count: i64,
}

impl CodedSymbol {
    fn apply(&mut self, h: &Hashed, direction: i64) {
        for (a, b) in self.sum.iter_mut().zip(h.item.iter()) {
            *a ^= b;
        }
        self.hash ^= h.hash;
        // Wrapping: counts come from the network, and a forged one must not panic.
        self.count = self.count.wrapping_add(direction);
    }

    fn is_pure(&self, hasher: &ItemHasher) -> bool {
        (self.count == 1 || self.count == -1) && hasher.hash(&self.sum) == self.hash
    }

    fn is_empty(&self) -> bool {
        self.count == 0 && self.hash == 0 && self.sum == [0; 16]
    }
}

/// The keyed hash of items, so that nobody can craft items that collide in a session.
#[derive(Clone)]
pub struct ItemHasher {
    key: [u8; 32],
}

impl ItemHasher {
    pub fn new(session_salt: &[u8; 16]) -> Self {
        let mut h = blake3::Hasher::new_derive_key("weft/v1/riblt-item-hash");
        h.update(session_salt);
        ItemHasher { key: *h.finalize().as_bytes() }
    }

    pub fn hash(&self, item: &Item) -> u64 {
        let out = blake3::keyed_hash(&self.key, item);
        u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 of 32 bytes"))
    }

    pub fn hashed(&self, item: Item) -> Hashed {
        Hashed { item, hash: self.hash(&item) }
    }
}

/// The pseudo-random, ever sparser sequence of stream indices an item is mapped to.
#[derive(Clone, Copy, Debug)]
struct Mapping {
    prng: u64,
    last: u64,
}

impl Mapping {
    fn new(hash: u64) -> Self {
        Mapping { prng: hash, last: 0 }
    }

    fn next_index(&mut self) -> u64 {
        let r = self.prng.wrapping_mul(0xda94_2042_e4dd_58b5);
        self.prng = r;
        let step = ((self.last as f64 + 1.5) * ((1u64 << 32) as f64 / ((r as f64) + 1.0).sqrt() - 1.0)).ceil();
        self.last = self.last.saturating_add(step.max(1.0) as u64);
        self.last
    }
}

/// Items with the next index each contributes to, in index order.
#[derive(Default)]
struct Window {
    items: Vec<Hashed>,
    mappings: Vec<Mapping>,
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    next: u64,
}

impl Window {
    fn add(&mut self, item: Hashed, mapping: Mapping) {
        self.queue.push(Reverse((mapping.last, self.items.len())));
        self.items.push(item);
        self.mappings.push(mapping);
    }

    /// Applies every item mapped to the next index of the stream to `symbol`.
    fn apply_next(&mut self, symbol: &mut CodedSymbol, direction: i64) {
        while let Some(&Reverse((index, i))) = self.queue.peek() {
            if index != self.next {
                break;
            }
            self.queue.pop();
            symbol.apply(&self.items[i], direction);
            let next = self.mappings[i].next_index();
            self.queue.push(Reverse((next, i)));
        }
        self.next += 1;
    }
}

/// Produces the coded symbol stream of a set.
pub struct Encoder {
    window: Window,
}

impl Encoder {
    pub fn new(items: impl IntoIterator<Item = Hashed>) -> Self {
        let mut window = Window::default();
        for item in items {
            window.add(item, Mapping::new(item.hash));
        }
        Encoder { window }
    }

    /// The next coded symbol of the stream.
    pub fn next_symbol(&mut self) -> CodedSymbol {
        let mut symbol = CodedSymbol::default();
        self.window.apply_next(&mut symbol, 1);
        symbol
    }
}

/// Recovers the difference between a remote set (whose stream it is fed) and its own.
pub struct Decoder {
    hasher: ItemHasher,
    symbols: Vec<CodedSymbol>,
    local: Window,
    /// Decoded remote-only items, removed from symbols still to come.
    decoded_remote: Window,
    /// Decoded local-only items, added back to symbols still to come.
    decoded_local: Window,
    pure: Vec<usize>,
    pub remote_only: Vec<Item>,
    pub local_only: Vec<Item>,
    /// Forged symbols made peeling decode more than any honest stream can.
    broken: bool,
    /// How many symbols this session may take: known from the first symbol (see
    /// [`Decoder::symbol_limit`]).
    limit: usize,
}

/// A decoder gives up past this many symbols: the difference is then too large to be worth
/// reconciling (the caller falls back to exchanging the whole id list).
pub const MAX_SYMBOLS: usize = 1 << 17;

/// Symbols beyond three per item either set could hold, for the tail of small differences.
pub const SYMBOL_BOUND_SLACK: usize = 256;

impl Decoder {
    pub fn new(hasher: ItemHasher, local: impl IntoIterator<Item = Item>) -> Self {
        let mut window = Window::default();
        for item in local {
            let h = hasher.hashed(item);
            window.add(h, Mapping::new(h.hash));
        }
        Decoder {
            hasher,
            symbols: Vec::new(),
            local: window,
            decoded_remote: Window::default(),
            decoded_local: Window::default(),
            pure: Vec::new(),
            remote_only: Vec::new(),
            local_only: Vec::new(),
            broken: false,
            limit: MAX_SYMBOLS,
        }
    }

    /// The most symbols an honest stream needs here. Every item maps to the stream's first
    /// symbol, so its count, once our set is subtracted, is the remote set's size less ours:
    /// the first symbol says how large the remote set is, and the two sets cannot differ by
    /// more than both together. Decoding takes 1.35–1.7 symbols per differing item and an
    /// initiator's batches overshoot by half at most, so three per item and a slack are more
    /// than any honest session sends; a stream of junk is stopped there instead of running
    /// to [`MAX_SYMBOLS`] (issue 18: 131,072 junk symbols, 3.4 MB on the air, before one
    /// penalty). A forged first count only moves the bound within `MAX_SYMBOLS`.
    pub fn symbol_limit(&self) -> usize {
        self.limit
    }

    /// True once the symbols proved inconsistent (forged): the session must be abandoned.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    pub fn symbols_received(&self) -> usize {
        self.symbols.len()
    }

    /// Takes the next symbol of the remote stream and peels what it can.
    pub fn add_symbol(&mut self, mut symbol: CodedSymbol) {
        self.decoded_remote.apply_next(&mut symbol, -1);
        self.decoded_local.apply_next(&mut symbol, 1);
        self.local.apply_next(&mut symbol, -1);
        if self.symbols.is_empty() {
            let ours = self.local.items.len() as i64;
            match symbol.count.checked_add(ours) {
                Some(theirs) if theirs >= 0 => {
                    let both = (theirs as u64).saturating_add(ours as u64);
                    self.limit =
                        both.saturating_mul(3).saturating_add(SYMBOL_BOUND_SLACK as u64).min(MAX_SYMBOLS as u64)
                            as usize;
                }
                // A set of negative size.
                _ => self.broken = true,
            }
        }
        if symbol.is_pure(&self.hasher) {
            self.pure.push(self.symbols.len());
        }
        self.symbols.push(symbol);
        self.peel();
    }

    fn peel(&mut self) {
        while let Some(index) = self.pure.pop() {
            // An honest stream decodes at most one item per symbol; forged symbols can make
            // peeling go round in circles, so stop there.
            if self.remote_only.len() + self.local_only.len() > 2 * self.symbols.len() + 64 {
                self.broken = true;
                self.pure.clear();
                return;
            }
            let symbol = self.symbols[index];
            if !symbol.is_pure(&self.hasher) {
                continue;
            }
            let item = Hashed { item: symbol.sum, hash: symbol.hash };
            // A remote-only item is taken out of every symbol it went into; a local-only item,
            // which we subtracted, is added back.
            let direction = -symbol.count;
            let mut mapping = Mapping::new(item.hash);
            let mut at = 0u64;
            while (at as usize) < self.symbols.len() {
                let s = &mut self.symbols[at as usize];
                s.apply(&item, direction);
                if s.is_pure(&self.hasher) {
                    self.pure.push(at as usize);
                }
                at = mapping.next_index();
            }
            mapping.last = at;
            if symbol.count == 1 {
                self.decoded_remote.add(item, mapping);
                self.remote_only.push(item.item);
            } else {
                self.decoded_local.add(item, mapping);
                self.local_only.push(item.item);
            }
        }
    }

    /// Whether every symbol received so far peeled to nothing: the difference is complete.
    pub fn is_done(&self) -> bool {
        !self.symbols.is_empty() && self.symbols.iter().all(CodedSymbol::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(n: u64) -> Item {
        let mut out = [0u8; 16];
        out.copy_from_slice(&blake3::hash(&n.to_le_bytes()).as_bytes()[..16]);
        out
    }

    fn reconcile(common: u64, remote_only: u64, local_only: u64) -> (Vec<Item>, Vec<Item>, usize) {
        let hasher = ItemHasher::new(&[7; 16]);
        let remote: Vec<Item> = (0..common).chain(1_000_000..1_000_000 + remote_only).map(item).collect();
        let local: Vec<Item> = (0..common).chain(2_000_000..2_000_000 + local_only).map(item).collect();
        let mut encoder = Encoder::new(remote.iter().map(|i| hasher.hashed(*i)));
        let mut decoder = Decoder::new(hasher.clone(), local.iter().copied());
        while !decoder.is_done() {
            decoder.add_symbol(encoder.next_symbol());
            assert!(decoder.symbols_received() < 100_000);
        }
        let mut r = decoder.remote_only.clone();
        let mut l = decoder.local_only.clone();
        r.sort();
        l.sort();
        (r, l, decoder.symbols_received())
    }

    #[test]
    fn recovers_both_sides_of_the_difference() {
        let (r, l, used) = reconcile(5_000, 60, 40);
        let mut want_r: Vec<Item> = (1_000_000..1_000_060).map(item).collect();
        let mut want_l: Vec<Item> = (2_000_000..2_000_040).map(item).collect();
        want_r.sort();
        want_l.sort();
        assert_eq!(r, want_r);
        assert_eq!(l, want_l);
        assert!(used < 100 * 3, "{used} symbols for 100 differences");
    }

    #[test]
    fn equal_sets_finish_at_once() {
        let (r, l, used) = reconcile(1_000, 0, 0);
        assert!(r.is_empty() && l.is_empty());
        assert_eq!(used, 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_difference_is_recovered(common in 0u64..300, remote in 0u64..40, local in 0u64..40) {
            let (r, l, _) = reconcile(common, remote, local);
            prop_assert_eq!(r.len() as u64, remote);
            prop_assert_eq!(l.len() as u64, local);
        }
    }
}
