//! What a reconciliation covers: one topic (what anyone on that topic, a relay included, can
//! answer), or an epoch's history (what only a member of that epoch can answer).

use super::{EnvelopeSource, Item};
use crate::envelope::Topic;
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The envelopes of one topic.
    Topic(Topic),
    /// The envelopes of an epoch on its topics from period `from` to tomorrow: how a member who
    /// was away catches up from another member. On the wire `key` is the epoch's history token
    /// (of yesterday, today or tomorrow: derived from its secret, so only members ask and only
    /// members answer) bound to the two peers ([`bind_history`]), so that a peer handed it
    /// cannot use it with anyone else; a node's own store is asked with the token itself.
    History { key: [u8; 16], from: u64 },
}

impl Scope {
    /// What names this scope: a topic, or a history key (a token bound to a connection on the
    /// wire, the token itself in our own store).
    pub fn key(&self) -> [u8; 16] {
        match self {
            Scope::Topic(t) | Scope::History { key: t, .. } => *t,
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        match self {
            Scope::Topic(t) => {
                w.u8(0).raw(t);
            }
            Scope::History { key, from } => {
                w.u8(1).raw(key).u64(*from);
            }
        }
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Scope> {
        match r.u8()? {
            0 => Ok(Scope::Topic(r.array()?)),
            1 => Ok(Scope::History { key: r.array()?, from: r.u64()? }),
            _ => Err(Error::Malformed { what: "sync scope", why: "unknown kind" }),
        }
    }
}

/// A history token bound to one connection and one direction: `asker` asks `server`. Only a
/// member can make the key with itself as the asker, so a key we sent a stranger (it poses as a
/// member on today's topic) is of no use to it against us: we serve a key only when the peer is
/// its asker.
pub fn bind_history(token: &[u8; 16], asker: &[u8], server: &[u8]) -> [u8; 16] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(token);
    let mut hasher = blake3::Hasher::new_keyed(&blake3::derive_key("weft/v1/history-binding", &key));
    hasher.update(&(asker.len() as u32).to_be_bytes()).update(asker).update(server);
    hasher.finalize().as_bytes()[..16].try_into().expect("32 > 16")
}

/// A history asked of `server` by `asker` from period `from`, as it travels: the bound key, and
/// `from` masked under the token (in the clear it would say, day after day, when a
/// conversation began, to every stranger on its topic).
pub fn history_request(token: &[u8; 16], asker: &[u8], server: &[u8], from: u64) -> Scope {
    let key = bind_history(token, asker, server);
    Scope::History { key, from: from ^ from_mask(token, &key) }
}

fn from_mask(token: &[u8; 16], key: &[u8; 16]) -> u64 {
    let mut material = [0u8; 32];
    material[..16].copy_from_slice(token);
    material[16..].copy_from_slice(key);
    let mask = blake3::derive_key("weft/v1/history-from", &material);
    u64::from_be_bytes(mask[..8].try_into().expect("8 of 32 bytes"))
}

/// Ids of an epoch's history as a reconciliation with one peer names them: through a keyed
/// permutation of 16 bytes (a four-round Feistel network over two 64-bit halves, BLAKE3 keyed
/// as its round function: Luby and Rackoff's construction). Why: every id enters the first
/// coded symbols of a reconciliation as it is (their sums are XORs of ids), and the salt is
/// public, so whoever knew a set of envelope ids (anyone on yesterday's topic, or a stranger the
/// history was offered to on today's) could test whether a session holds that set, and so link
/// a member's peer ids across days. Blinded under a key only members of the epoch can make, the
/// symbols say nothing to anyone else; the member that answers unblinds what it decodes.
struct Blinding {
    rounds: [[u8; 32]; 4],
}

impl Blinding {
    fn new(token: &[u8; 16], bound: &[u8; 16]) -> Blinding {
        let mut material = [0u8; 32];
        material[..16].copy_from_slice(token);
        material[16..].copy_from_slice(bound);
        let key = blake3::derive_key("weft/v1/history-blinding", &material);
        let rounds = std::array::from_fn(|i| blake3::keyed_hash(&key, &[i as u8]).into());
        Blinding { rounds }
    }

    fn round(&self, i: usize, half: u64) -> u64 {
        let out = blake3::keyed_hash(&self.rounds[i], &half.to_le_bytes());
        u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 of 32 bytes"))
    }

    fn halves(id: &Item) -> (u64, u64) {
        let (l, r) = id.split_at(8);
        (u64::from_le_bytes(l.try_into().expect("8 bytes")), u64::from_le_bytes(r.try_into().expect("8 bytes")))
    }

    fn join(l: u64, r: u64) -> Item {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&l.to_le_bytes());
        id[8..].copy_from_slice(&r.to_le_bytes());
        id
    }

    fn blind(&self, id: &Item) -> Item {
        let (mut l, mut r) = Self::halves(id);
        for i in 0..4 {
            (l, r) = (r, l ^ self.round(i, r));
        }
        Self::join(l, r)
    }

    fn unblind(&self, id: &Item) -> Item {
        let (mut l, mut r) = Self::halves(id);
        for i in (0..4).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        Self::join(l, r)
    }
}

/// A node's store as one peer may ask it: history keys bound to that peer and us are read as
/// the tokens they bind; any other history key is not served; and, over the network, only the
/// topics both follow now (see [`PeerBound::topics`]).
pub struct PeerBound<'a> {
    source: &'a dyn EnvelopeSource,
    pair: (&'a [u8], &'a [u8]),
    /// The topics this peer may reconcile, if limited.
    topics: Option<std::collections::HashSet<Topic>>,
    /// Each token of ours bound to this pair of peers both ways, with whether the peer is the
    /// asker: made at the first history asked about (most exchanges are about topics only).
    bound: std::cell::OnceCell<Vec<Bound>>,
}

struct Bound {
    key: [u8; 16],
    token: [u8; 16],
    asked_by_peer: bool,
}

impl<'a> PeerBound<'a> {
    pub fn new(source: &'a dyn EnvelopeSource, us: &'a [u8], peer: &'a [u8]) -> PeerBound<'a> {
        PeerBound { source, pair: (us, peer), topics: None, bound: std::cell::OnceCell::new() }
    }

    /// Serves only these topics: over the network, those we follow now and the peer subscribes
    /// to. A peer that saw a topic once (yesterday's, under another peer id) and asks for it
    /// later learns nothing, not even that we hold it: otherwise its answer would link our
    /// peer ids across days.
    pub fn topics(mut self, topics: std::collections::HashSet<Topic>) -> Self {
        self.topics = Some(topics);
        self
    }

    /// The key that blinds the ids of a history reconciliation with this peer: made from the
    /// token, which only members hold, and the bound key, so it differs per connection.
    fn blinding(&self, scope: &Scope) -> Option<Blinding> {
        match scope {
            Scope::History { key, .. } => Some(Blinding::new(&self.bound(key)?.token, key)),
            Scope::Topic(_) => None,
        }
    }

    /// Our token a history key binds to this pair, either way.
    fn bound(&self, key: &[u8; 16]) -> Option<&Bound> {
        let bound = self.bound.get_or_init(|| {
            let (us, peer) = self.pair;
            let tokens = self.source.history_tokens();
            let asked = tokens.iter().map(|t| Bound { key: bind_history(t, peer, us), token: *t, asked_by_peer: true });
            let ours = tokens.iter().map(|t| Bound { key: bind_history(t, us, peer), token: *t, asked_by_peer: false });
            asked.chain(ours).collect()
        });
        bound.iter().find(|b| b.key == *key)
    }

    /// The scope as our own store knows it; `None` for a history key not bound to this pair
    /// (either way: our own requests are read through it too).
    fn unbind(&self, scope: &Scope) -> Option<Scope> {
        match scope {
            Scope::Topic(topic) => match &self.topics {
                Some(served) if !served.contains(topic) => None,
                _ => Some(*scope),
            },
            Scope::History { key, from } => {
                let token = self.bound(key)?.token;
                Some(Scope::History { key: token, from: from ^ from_mask(&token, key) })
            }
        }
    }
}

impl EnvelopeSource for PeerBound<'_> {
    fn ids(&self, scope: &Scope) -> Option<Vec<Item>> {
        let ids = self.source.ids(&self.unbind(scope)?)?;
        Some(match self.blinding(scope) {
            Some(blinding) => ids.iter().map(|id| blinding.blind(id)).collect(),
            None => ids,
        })
    }

    fn envelope(&self, scope: &Scope, id: &Item) -> Option<Vec<u8>> {
        let id = self.blinding(scope).map_or(*id, |b| b.unblind(id));
        self.source.envelope(&self.unbind(scope)?, &id)
    }

    fn item_in(&self, scope: &Scope, id: Item) -> Item {
        self.blinding(scope).map_or(id, |b| b.blind(&id))
    }

    /// A topic we serve this peer, or a history the peer asked (never one of our own requests
    /// played back to us).
    fn serves(&self, scope: &Scope) -> bool {
        match scope {
            Scope::Topic(_) => self.unbind(scope).is_some(),
            Scope::History { key, .. } => self.bound(key).is_some_and(|b| b.asked_by_peer),
        }
    }

    fn since(
        &self,
        after: super::Cursor,
        buckets: &super::Buckets,
        max_bytes: usize,
    ) -> Option<(Vec<Vec<u8>>, Option<super::Cursor>)> {
        self.source.since(after, buckets, max_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_key_names_one_direction_of_one_connection() {
        let token = [7u8; 16];
        let (a, b, c) = (b"peer-a".as_slice(), b"peer-b".as_slice(), b"peer-c".as_slice());
        assert_ne!(bind_history(&token, a, b), bind_history(&token, b, a), "a asks b, or b asks a");
        assert_ne!(bind_history(&token, a, b), bind_history(&token, a, c));
        assert_ne!(bind_history(&token, a, b), bind_history(&[8u8; 16], a, b));
        assert_ne!(bind_history(&token, a, b)[..], token[..]);
    }

    /// A member of one epoch (token 9) holding two envelopes of its history.
    struct Member;
    impl EnvelopeSource for Member {
        fn ids(&self, scope: &Scope) -> Option<Vec<Item>> {
            matches!(scope, Scope::History { key: [9, ..], .. }).then(|| vec![[1; 16], [2; 16]])
        }
        fn envelope(&self, _: &Scope, id: &Item) -> Option<Vec<u8>> {
            (*id == [1; 16]).then(|| vec![1])
        }
        fn history_tokens(&self) -> Vec<[u8; 16]> {
            vec![[9; 16]]
        }
    }

    /// Ids of a history reach the wire blinded under the token, and differently on each
    /// connection: the coded symbols' sums (XORs of ids) say nothing to whoever knows the ids
    /// but not the token. Both ends of one connection name them alike, and serve them.
    #[test]
    fn a_history_names_its_ids_blinded_and_per_connection() {
        let (a, b, c) = (b"peer-a".as_slice(), b"peer-b".as_slice(), b"peer-c".as_slice());
        let ab = Scope::History { key: bind_history(&[9; 16], a, b), from: 0 };
        let ac = Scope::History { key: bind_history(&[9; 16], a, c), from: 0 };
        let with_b = PeerBound::new(&Member, a, b);
        let named = with_b.ids(&ab).unwrap();
        assert_eq!(named.len(), 2);
        assert!(!named.contains(&[1; 16]) && !named.contains(&[2; 16]), "blinded");
        let with_c = PeerBound::new(&Member, a, c).ids(&ac).unwrap();
        assert!(named.iter().all(|id| !with_c.contains(id)), "another connection, other names");
        assert_eq!(PeerBound::new(&Member, b, a).ids(&ab).unwrap(), named, "both ends alike");
        assert_eq!(with_b.envelope(&ab, &named[0]), Some(vec![1]), "a Want of a blinded id is served");
        assert_eq!(with_b.item_in(&ab, [2; 16]), named[1], "a Have is matched to the Want");
        let topic = Scope::Topic([3; 16]);
        assert_eq!(with_b.item_in(&topic, [2; 16]), [2; 16], "a topic's ids are its envelopes'");
        let blinding = Blinding::new(&[9; 16], &[4; 16]);
        for n in 0..=255u8 {
            let id = [n; 16];
            assert_eq!(blinding.unblind(&blinding.blind(&id)), id);
        }
    }

    struct One;
    impl EnvelopeSource for One {
        fn ids(&self, _: &Scope) -> Option<Vec<Item>> {
            Some(vec![[1; 16]])
        }
        fn envelope(&self, _: &Scope, _: &Item) -> Option<Vec<u8>> {
            Some(vec![1])
        }
    }

    #[test]
    fn only_the_topics_given_are_served() {
        let (us, peer) = (b"us".as_slice(), b"peer".as_slice());
        let open = PeerBound::new(&One, us, peer);
        assert!(open.ids(&Scope::Topic([9; 16])).is_some());
        let limited = PeerBound::new(&One, us, peer).topics([[1; 16]].into());
        assert!(limited.ids(&Scope::Topic([1; 16])).is_some());
        assert_eq!(limited.ids(&Scope::Topic([9; 16])), None, "a topic not shared now is refused");
        assert_eq!(limited.envelope(&Scope::Topic([9; 16]), &[1; 16]), None, "and so are its envelopes");
    }
}
