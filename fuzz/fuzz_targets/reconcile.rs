//! A peer's side of reconciliation and catch-up, fed a stream of messages from a hostile peer
//! against a store of a few envelopes: no message panics, and no answer carries more than a
//! page of envelopes.
//!
//! The store keeps the sources' contract (an envelope only of the scope asked, none of a scope
//! not served: `PeerBound` narrows a node's store to what the peer may ask). A first version of
//! this target asserted that the store is never asked about a scope it does not serve, and
//! failed at once: `PeerSync` answers a `Want` by asking the store, which refuses; the contract,
//! not `PeerSync`, is what keeps other scopes out of reach.
#![no_main]
use libfuzzer_sys::fuzz_target;
use weft_core::sync::{EnvelopeSource, Item, MAX_HAVE_BYTES, PeerSync, Scope, SyncMessage};

const TOPIC: [u8; 16] = [7; 16];

struct Store(Vec<(Item, Vec<u8>)>);

impl EnvelopeSource for Store {
    fn ids(&self, scope: &Scope) -> Option<Vec<Item>> {
        (*scope == Scope::Topic(TOPIC)).then(|| self.0.iter().map(|(id, _)| *id).collect())
    }
    fn envelope(&self, scope: &Scope, id: &Item) -> Option<Vec<u8>> {
        if *scope != Scope::Topic(TOPIC) {
            return None;
        }
        self.0.iter().find(|(i, _)| i == id).map(|(_, e)| e.clone())
    }
}

fuzz_target!(|data: &[u8]| {
    let store = Store((0u8..5).map(|n| ([n; 16], vec![n; 256])).collect());
    let mut ours = PeerSync::new(data.first().is_some_and(|b| b & 1 == 1));
    let _ = ours.start(Scope::Topic(TOPIC), [1; 16], &store);
    // Messages, each preceded by a two-byte length.
    let mut rest = data.get(1..).unwrap_or_default();
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (message, tail) = rest[2..].split_at(len);
        rest = tail;
        let Ok(message) = SyncMessage::decode(message) else { continue };
        match ours.handle(message, &store) {
            Ok(step) => {
                for sent in step.send {
                    if let SyncMessage::Have { envelopes, .. } = sent {
                        assert!(envelopes.iter().map(Vec::len).sum::<usize>() <= MAX_HAVE_BYTES);
                    }
                }
            }
            // An error ends the session with that peer; a new one may start.
            Err(_) => ours = PeerSync::new(false),
        }
    }
});
