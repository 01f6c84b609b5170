//! What the group-level tests share: devices with seeded keys, and a receiver that behaves as
//! the account does (dedup by id, park what waits for keys or earlier changes, retry it).

use std::collections::HashSet;

use weft_core::Error;
use weft_core::crypto::SeededEntropy;
use weft_core::envelope::{Envelope, EnvelopeId};
use weft_core::group::{Event, Group, LocalDevice, Sealed, period_of};
use weft_core::identity::AccountKey;

pub const NOW: u64 = 1_750_000_000_000;

pub fn device(seed: u64) -> LocalDevice {
    let mut rng = SeededEntropy::new(seed);
    LocalDevice::generate(&AccountKey::generate(&mut rng).unwrap(), 0, &mut rng).unwrap()
}

/// The epoch an envelope belongs to, as the account's topic index would find it.
pub fn epoch_of(group: &Group, envelope: &Envelope) -> Option<[u8; 32]> {
    let p = period_of(NOW);
    group.epochs().find(|e| (p - 1..=p + 1).any(|q| e.topic(q) == envelope.topic())).map(|e| e.id)
}

/// A receiver as the account behaves: dedup by id, park envelopes whose key is missing, retry
/// them when keys arrive.
pub struct Receiver {
    pub me: LocalDevice,
    pub group: Group,
    pub seen: HashSet<EnvelopeId>,
    pub parked: Vec<Envelope>,
    pub texts: Vec<(u64, EnvelopeId, String)>,
}

impl Receiver {
    pub fn new(me: LocalDevice, group: Group) -> Self {
        Receiver { me, group, seen: HashSet::new(), parked: Vec::new(), texts: Vec::new() }
    }

    pub fn deliver(&mut self, envelope: &Envelope) -> Result<(), Error> {
        if self.seen.contains(&envelope.id()) {
            return Err(Error::Duplicate);
        }
        let epoch = epoch_of(&self.group, envelope).ok_or(Error::UnknownTopic)?;
        match self.group.open(&self.me, envelope, &epoch) {
            Err(Error::MissingKey | Error::MissingParent) => {
                self.parked.push(envelope.clone());
                Ok(())
            }
            Err(e) => Err(e),
            Ok(opened) => {
                self.seen.insert(envelope.id());
                match self.group.accept(&self.me, opened)? {
                    Event::Message { id, lamport, text, .. } => self.texts.push((lamport, id, text)),
                    Event::KeysArrived { .. } | Event::MembershipChanged { .. } | Event::ChangeOutranked { .. } => {
                        for parked in std::mem::take(&mut self.parked) {
                            let _ = self.deliver(&parked);
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
        }
    }

    pub fn history(&self) -> Vec<(u64, EnvelopeId, String)> {
        let mut h = self.texts.clone();
        h.sort();
        h
    }
}

pub fn envelopes(sealed: Vec<Sealed>) -> Vec<Envelope> {
    sealed.into_iter().map(|s| s.envelope).collect()
}
