//! Set reconciliation: two peers that share a topic find out which envelope ids each lacks,
//! exchanging bytes in proportion to the difference, not to the history. Pure state machines:
//! messages in, messages out; the transports carry them.

mod peer;
mod riblt;
mod session;

pub use peer::{EnvelopeSource, MAX_HAVE_BYTES, MAX_WANT, PeerSync, Step, SyncMessage};
pub use riblt::{CodedSymbol, Decoder, Encoder, Item, ItemHasher, MAX_SYMBOLS};
pub use session::{Initiator, Message, Outcome, Responder, short_id};
