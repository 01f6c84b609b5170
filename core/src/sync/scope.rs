//! What a reconciliation covers: one topic (what anyone on that topic, a relay included, can
//! answer), or an epoch's history (what only a member of that epoch can answer).

use crate::envelope::Topic;
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

/// The most periods (days) a history reconciliation may reach back.
pub const MAX_HISTORY_PERIODS: u64 = 366;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The envelopes of one topic.
    Topic(Topic),
    /// The envelopes of the epoch whose history token of yesterday, today or tomorrow is `key`,
    /// on that epoch's topics from period `from` to tomorrow: how a member who was away catches
    /// up from another member. The token is derived from the epoch's secret, so only members
    /// ask, and only members answer; the request travels inside their connection, never on
    /// gossip.
    History { key: [u8; 16], from: u64 },
}

impl Scope {
    /// What names this scope on the wire: a topic, or an epoch's history token.
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
