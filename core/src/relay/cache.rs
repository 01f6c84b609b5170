//! The relay's ciphertext cache: envelopes held for whoever asks, bounded three ways.
//!
//! - a byte quota for the whole cache: when full, the oldest envelopes go first;
//! - a byte quota per peer (the peer that handed the envelope over): a peer that floods the
//!   relay only pushes out its own oldest envelopes. Best effort: the peer is the neighbour that
//!   handed it over (gossip forwards), and a flooder can come back under new peer ids, so the
//!   total quota is what finally bounds the cache;
//! - an expiry: envelopes older than `max_age_ms` are dropped.
//!
//! Envelopes of the largest size (the pieces of files, and the rare longest message) have quotas
//! of their own, total and per peer, and push out only each other: a photo never pushes a text
//! out of the cache.
//!
//! Pure: time comes in as milliseconds, peers as opaque keys. The relay cannot open anything it
//! holds; all it checks is that the bytes have the shape of an envelope.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use crate::envelope::{Envelope, EnvelopeId, Topic};
use crate::error::Result;
use crate::sync::{Buckets, Cursor, EnvelopeSource, Item, MAX_HELD_COUNT, Scope};

/// An opaque key for the peer that handed an envelope over (its libp2p peer id's bytes).
pub type Owner = Vec<u8>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    pub max_bytes: usize,
    pub max_bytes_per_peer: usize,
    /// The same for envelopes of the largest size (files' pieces), held apart.
    pub max_bulk_bytes: usize,
    pub max_bulk_bytes_per_peer: usize,
    pub max_age_ms: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_bytes: 256 << 20,
            max_bytes_per_peer: 32 << 20,
            max_bulk_bytes: 256 << 20,
            max_bulk_bytes_per_peer: 64 << 20,
            max_age_ms: 14 * 24 * 3600 * 1000,
        }
    }
}

/// Which quota an envelope counts against: 0 for messages, 1 for the largest envelopes.
fn class_of(len: usize) -> usize {
    usize::from(len >= crate::envelope::MAX_ENVELOPE_LEN)
}

struct Entry {
    topic: Topic,
    bytes: Vec<u8>,
    stored_ms: u64,
    owner: Owner,
}

impl Entry {
    fn class(&self) -> usize {
        class_of(self.bytes.len())
    }
}

#[derive(Default)]
struct OwnerUse {
    bytes: usize,
    order: BTreeSet<(u64, [u8; 32])>,
}

/// What an insert did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    /// False if the envelope was already held.
    pub new: bool,
    /// Envelopes evicted to make room.
    pub evicted: Vec<EnvelopeId>,
}

#[derive(Default)]
pub struct Cache {
    limits: CacheLimits,
    entries: HashMap<[u8; 32], Entry>,
    by_topic: HashMap<Topic, HashMap<Item, [u8; 32]>>,
    /// Everything by when it was stored (for catch-ups and expiry)...
    order: BTreeSet<(u64, [u8; 32])>,
    /// ...and each class apart, with its bytes (for its quota).
    class_order: [BTreeSet<(u64, [u8; 32])>; 2],
    class_bytes: [usize; 2],
    owners: HashMap<(Owner, usize), OwnerUse>,
    bytes: usize,
}

impl Cache {
    pub fn new(limits: CacheLimits) -> Self {
        Cache { limits, ..Cache::default() }
    }

    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// Bytes of envelopes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held on behalf of one peer.
    pub fn bytes_of(&self, owner: &[u8]) -> usize {
        (0..2).map(|class| self.owners.get(&(owner.to_vec(), class)).map_or(0, |o| o.bytes)).sum()
    }

    pub fn topics(&self) -> usize {
        self.by_topic.len()
    }

    /// Holds an envelope handed over by `owner`; fails only if the bytes are not an envelope.
    pub fn insert(&mut self, bytes: Vec<u8>, owner: Owner, now_ms: u64) -> Result<Inserted> {
        let envelope = Envelope::parse(bytes)?;
        let id = envelope.id();
        if self.entries.contains_key(&id.0) {
            return Ok(Inserted::default());
        }
        let size = envelope.as_bytes().len();
        let class = class_of(size);
        let (total, per_peer) = match class {
            0 => (self.limits.max_bytes, self.limits.max_bytes_per_peer),
            _ => (self.limits.max_bulk_bytes, self.limits.max_bulk_bytes_per_peer),
        };
        let key = (owner.clone(), class);
        let mut evicted = Vec::new();
        // This peer's own oldest of the class go first, then everyone's oldest of the class.
        while self.owners.get(&key).map_or(0, |o| o.bytes) + size > per_peer {
            let Some(&(_, oldest)) = self.owners.get(&key).and_then(|o| o.order.first()) else { break };
            evicted.push(self.remove(&oldest));
        }
        while self.class_bytes[class] + size > total {
            let Some(&(_, oldest)) = self.class_order[class].first() else { break };
            evicted.push(self.remove(&oldest));
        }
        let topic = envelope.topic();
        let item: Item = id.0[..16].try_into().expect("16 of 32");
        self.by_topic.entry(topic).or_default().insert(item, id.0);
        self.order.insert((now_ms, id.0));
        self.class_order[class].insert((now_ms, id.0));
        self.class_bytes[class] += size;
        let usage = self.owners.entry(key).or_default();
        usage.bytes += size;
        usage.order.insert((now_ms, id.0));
        self.bytes += size;
        self.entries.insert(id.0, Entry { topic, bytes: envelope.into_bytes(), stored_ms: now_ms, owner });
        Ok(Inserted { new: true, evicted })
    }

    /// Drops what is older than the expiry; returns what was dropped.
    pub fn expire(&mut self, now_ms: u64) -> Vec<EnvelopeId> {
        let cutoff = now_ms.saturating_sub(self.limits.max_age_ms);
        let mut dropped = Vec::new();
        while let Some(&(stored, id)) = self.order.first() {
            if stored >= cutoff {
                break;
            }
            dropped.push(self.remove(&id));
        }
        dropped
    }

    /// Every envelope held, for persisting or inspecting.
    pub fn envelopes(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.values().map(|e| e.bytes.as_slice())
    }

    fn remove(&mut self, id: &[u8; 32]) -> EnvelopeId {
        if let Some(e) = self.entries.remove(id) {
            let class = e.class();
            self.bytes -= e.bytes.len();
            self.order.remove(&(e.stored_ms, *id));
            self.class_order[class].remove(&(e.stored_ms, *id));
            self.class_bytes[class] -= e.bytes.len();
            let key = (e.owner, class);
            if let Some(usage) = self.owners.get_mut(&key) {
                usage.bytes -= e.bytes.len();
                usage.order.remove(&(e.stored_ms, *id));
                if usage.order.is_empty() {
                    self.owners.remove(&key);
                }
            }
            if let Some(items) = self.by_topic.get_mut(&e.topic) {
                items.remove(&<Item>::try_from(&id[..16]).expect("16 of 32"));
                if items.is_empty() {
                    self.by_topic.remove(&e.topic);
                }
            }
        }
        EnvelopeId(*id)
    }
}

/// Envelopes looked at for one page of a catch-up, whether taken or not: a request for rare
/// buckets costs the relay a bounded scan, and the device asks again from where it stopped.
const MAX_SCANNED_PER_PAGE: usize = 65_536;

impl EnvelopeSource for Cache {
    /// A relay serves topics only: it cannot tell which topics make up an epoch's history.
    fn ids(&self, scope: &Scope) -> Option<Vec<Item>> {
        let Scope::Topic(topic) = scope else { return None };
        Some(self.by_topic.get(topic).map(|items| items.keys().copied().collect()).unwrap_or_default())
    }

    fn envelope(&self, scope: &Scope, id: &Item) -> Option<Vec<u8>> {
        let Scope::Topic(topic) = scope else { return None };
        let full = self.by_topic.get(topic)?.get(id)?;
        self.entries.get(full).map(|e| e.bytes.clone())
    }

    fn since(&self, after: Cursor, buckets: &Buckets, max_bytes: usize) -> Option<(Vec<Vec<u8>>, Option<Cursor>)> {
        let mut from = [0xffu8; 32];
        from[..16].copy_from_slice(&after.id);
        let mut page = Vec::new();
        let mut bytes = 0;
        for (scanned, &(stored_ms, id)) in
            self.order.range((Bound::Excluded((after.stored_ms, from)), Bound::Unbounded)).enumerate()
        {
            let cursor = Cursor { stored_ms, id: id[..16].try_into().expect("16 of 32") };
            let Some(entry) = self.entries.get(&id) else { continue };
            if !buckets.contains(&entry.topic) {
                if scanned + 1 >= MAX_SCANNED_PER_PAGE {
                    return Some((page, Some(cursor)));
                }
                continue;
            }
            if bytes + entry.bytes.len() > max_bytes || page.len() == MAX_HELD_COUNT {
                // Resume with this one (one that alone outgrows a page is skipped, so paging ends).
                let resume =
                    if page.is_empty() { cursor } else { previous(&self.order, stored_ms, id).unwrap_or_default() };
                return Some((page, Some(resume)));
            }
            bytes += entry.bytes.len();
            page.push(entry.bytes.clone());
            if scanned + 1 >= MAX_SCANNED_PER_PAGE {
                return Some((page, Some(cursor)));
            }
        }
        Some((page, None))
    }
}

/// The cursor of the entry stored just before `(stored_ms, id)`.
fn previous(order: &BTreeSet<(u64, [u8; 32])>, stored_ms: u64, id: [u8; 32]) -> Option<Cursor> {
    order
        .range(..(stored_ms, id))
        .next_back()
        .map(|&(ms, prev)| Cursor { stored_ms: ms, id: prev[..16].try_into().expect("16 of 32") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn envelope(topic: u8, n: u32, len: usize) -> Vec<u8> {
        let mut e = vec![0u8; len];
        e[0] = crate::envelope::ENVELOPE_VERSION;
        e[1..17].fill(topic);
        e[17..21].copy_from_slice(&n.to_be_bytes());
        e
    }

    fn limits(max_bytes: usize, per_peer: usize) -> CacheLimits {
        CacheLimits {
            max_bytes,
            max_bytes_per_peer: per_peer,
            max_bulk_bytes: max_bytes,
            max_bulk_bytes_per_peer: per_peer,
            max_age_ms: 1_000,
        }
    }

    /// Issue 19: files' pieces (envelopes of the largest size) have a quota of their own. A
    /// member sending large files through the relay pushes out only their own older pieces,
    /// never the texts the relay holds, theirs or anyone's.
    #[test]
    fn files_push_out_only_files() {
        let big = crate::envelope::MAX_ENVELOPE_LEN;
        let mut cache = Cache::new(CacheLimits {
            max_bytes: 20 * 256,
            max_bytes_per_peer: 10 * 256,
            max_bulk_bytes: 8 * big,
            max_bulk_bytes_per_peer: 4 * big,
            max_age_ms: 1_000,
        });
        for n in 0..5 {
            cache.insert(envelope(1, n, 256), b"sender".to_vec(), u64::from(n)).unwrap();
        }
        for n in 0..100 {
            let inserted = cache.insert(envelope(2, n, big), b"sender".to_vec(), 10 + u64::from(n)).unwrap();
            assert!(inserted.new);
        }
        assert_eq!(cache.ids(&Scope::Topic([1; 16])).unwrap().len(), 5, "every text stays");
        assert_eq!(cache.ids(&Scope::Topic([2; 16])).unwrap().len(), 4, "the newest pieces, within the quota");
        assert_eq!(cache.bytes_of(b"sender"), 5 * 256 + 4 * big);
    }

    #[test]
    fn holds_and_serves_by_topic() {
        let mut cache = Cache::new(CacheLimits::default());
        let e = envelope(7, 1, 256);
        assert!(cache.insert(e.clone(), b"p".to_vec(), 0).unwrap().new);
        assert!(!cache.insert(e.clone(), b"q".to_vec(), 0).unwrap().new);
        let ids = cache.ids(&Scope::Topic([7; 16])).unwrap();
        assert_eq!(ids.len(), 1);
        assert_eq!(cache.envelope(&Scope::Topic([7; 16]), &ids[0]), Some(e));
        assert!(cache.ids(&Scope::Topic([8; 16])).unwrap().is_empty());
        assert_eq!(cache.ids(&Scope::History { key: [7; 16], from: 0 }), None, "a relay serves no history");
    }

    #[test]
    fn a_flooding_peer_only_evicts_its_own() {
        let mut cache = Cache::new(limits(100 * 256, 10 * 256));
        let honest = envelope(1, 0, 256);
        cache.insert(honest.clone(), b"honest".to_vec(), 0).unwrap();
        for n in 0..1_000 {
            cache.insert(envelope(2, n, 256), b"flood".to_vec(), n as u64).unwrap();
            assert!(cache.bytes_of(b"flood") <= 10 * 256);
        }
        assert_eq!(cache.ids(&Scope::Topic([1; 16])).unwrap().len(), 1, "the honest envelope stays");
        assert_eq!(cache.len(), 11);
    }

    #[test]
    fn the_total_quota_evicts_the_oldest() {
        let mut cache = Cache::new(limits(4 * 512, 4 * 512));
        for n in 0..20u32 {
            cache.insert(envelope(1, n, 512), n.to_be_bytes().to_vec(), n as u64).unwrap();
            assert!(cache.bytes() <= 4 * 512);
        }
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn expiry_drops_old_envelopes() {
        let mut cache = Cache::new(limits(1 << 20, 1 << 20));
        cache.insert(envelope(1, 1, 256), b"p".to_vec(), 0).unwrap();
        cache.insert(envelope(1, 2, 256), b"p".to_vec(), 900).unwrap();
        assert_eq!(cache.expire(1_500).len(), 1);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes_of(b"p"), 256);
    }

    #[test]
    fn junk_is_refused() {
        let mut cache = Cache::new(CacheLimits::default());
        assert!(cache.insert(vec![1, 2, 3], b"p".to_vec(), 0).is_err());
        assert!(cache.insert(vec![0; 300], b"p".to_vec(), 0).is_err());
        assert_eq!(cache.bytes(), 0);
    }

    /// Pages everything a cursor and buckets select, in order, each page within its limits.
    fn read_since(cache: &Cache, after: Cursor, buckets: &Buckets, max_bytes: usize) -> (Vec<Vec<u8>>, usize) {
        let (mut all, mut pages, mut cursor) = (Vec::new(), 0, Some(after));
        while let Some(after) = cursor {
            let (page, next) = cache.since(after, buckets, max_bytes).unwrap();
            assert!(page.iter().map(Vec::len).sum::<usize>() <= max_bytes && page.len() <= MAX_HELD_COUNT);
            all.extend(page);
            pages += 1;
            cursor = next;
            assert!(pages < 10_000, "paging must end");
        }
        (all, pages)
    }

    #[test]
    fn since_pages_what_was_stored_later_in_the_buckets_asked() {
        let mut cache = Cache::new(CacheLimits::default());
        // Topics 0x10.. and 0x20..; stored at 1..=3000 ms, several per millisecond.
        for n in 0..3_000u32 {
            let topic = if n % 3 == 0 { 0x10 } else { 0x20 };
            cache.insert(envelope(topic, n, 256), b"p".to_vec(), u64::from(n / 4)).unwrap();
        }
        let mut only_10 = Buckets::new(8);
        only_10.insert(&[0x10; 16]);
        let (got, pages) = read_since(&cache, Cursor::at(0), &only_10, 64 * 256);
        assert_eq!(got.len(), 1_000);
        assert!(got.iter().all(|e| e[1] == 0x10));
        assert!(pages >= 1_000 / 64, "{pages} pages of at most 64 envelopes");
        let ids: HashSet<_> = got.iter().map(|e| blake3::hash(e)).collect();
        assert_eq!(ids.len(), 1_000, "no envelope twice, none left out at page boundaries");
        // From a later moment: only what was stored after it.
        let (later, _) = read_since(&cache, Cursor::at(500), &Buckets::new(0).tap_insert(), 1 << 20);
        assert_eq!(later.len(), 3_000 - 500 * 4, "from the moment on, that moment included");
    }

    trait TapInsert {
        fn tap_insert(self) -> Self;
    }
    impl TapInsert for Buckets {
        /// With no bits, one insert names the only bucket: everything.
        fn tap_insert(mut self) -> Self {
            self.insert(&[0; 16]);
            self
        }
    }

    #[test]
    fn since_scans_a_bounded_number_per_page() {
        let mut cache = Cache::new(CacheLimits::default());
        for n in 0..70_000u32 {
            cache.insert(envelope(0x20, n, 256), b"p".to_vec(), u64::from(n)).unwrap();
        }
        cache.insert(envelope(0x10, 0, 256), b"p".to_vec(), 80_000).unwrap();
        let mut rare = Buckets::new(8);
        rare.insert(&[0x10; 16]);
        let (page, next) = cache.since(Cursor::at(0), &rare, 1 << 20).unwrap();
        assert!(page.is_empty() && next.is_some(), "a page stops after its scan budget");
        let (all, pages) = read_since(&cache, Cursor::at(0), &rare, 1 << 20);
        assert_eq!((all.len(), pages), (1, 2));
    }
}
