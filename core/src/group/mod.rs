//! Groups: every conversation is one (a 1:1 chat is a group of two). A group is a pure state
//! machine: envelopes and the current time in, envelopes and events out. It never touches the
//! disk or the network; `crate::account` stores it and carries its envelopes.

mod chain;
mod channel;
mod content;
mod epoch;
mod membership;
mod state;

pub use chain::{MAX_GAP, MAX_SKIPPED_PER_CHAIN, OwnChain, PeerChain, step as chain_step};
pub use content::{
    Content, Inner, InvitePart, KeyShare, MAX_REACTION_LEN, MAX_RECEIPT_IDS, MAX_TEXT_LEN, MAX_TIMER_MS, MIN_TIMER_MS,
    MessageChange, Receipt, Share, SharedContact, SharedSetting, Welcome, check_reaction, check_timer,
};
pub use epoch::{Epoch, PERIOD_MS, TOMORROW_LEAD_MS, period_of, serving_period};
pub use membership::{Action, MAX_MEMBERS, Member, Membership, OpHash, SignedOp};
pub use state::{
    ChainPosition, EPOCH_GRACE_MS, Event, Group, GroupKind, KeyChange, LocalDevice, MAX_HISTORY_MS, MAX_LAMPORT_JUMP,
    Opened, RESEED_AFTER_MESSAGES, RESEED_AFTER_MS, SHARES_PER_MESSAGE, Sealed,
};

/// A group's id. Never sent in clear: it lives only inside encrypted headers and signatures.
pub type GroupId = [u8; 32];
