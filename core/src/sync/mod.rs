//! Set reconciliation: two peers find out which envelope ids each lacks, exchanging bytes in
//! proportion to the difference, not to the history; and a relay catch-up by time and bucket.
//! Pure state machines: messages in, messages out; the transports carry them.

mod peer;
mod riblt;
mod scope;
mod session;
mod since;

pub use peer::{EnvelopeSource, Expired, MAX_HAVE_BYTES, MAX_WANT, PeerSync, Step, SyncMessage};
pub use riblt::{CodedSymbol, Decoder, Encoder, Item, ItemHasher, MAX_SYMBOLS, SYMBOL_BOUND_SLACK};
pub use scope::{PeerBound, Scope, bind_history, history_request};
pub use session::{INCONSISTENT_SYMBOLS, Initiator, Message, Outcome, Responder, short_id};
pub use since::{Buckets, Cursor, MAX_BUCKET_BITS, MAX_HELD_COUNT};
