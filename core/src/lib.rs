//! `weft-core`: the engine and the store of the Weft messenger.
//!
//! - [`identity`]: account and device keys, contact cards, safety numbers;
//! - [`group`]: the group state machine (sender chains, membership log, epochs);
//! - [`envelope`]: what the network sees;
//! - [`handshake`]: contact requests;
//! - [`bundle`]: the offline exchange file;
//! - [`store`]: the encrypted SQLite store;
//! - [`account`]: an opened account home, binding the engine to its store;
//! - [`node`]: the async facade clients use; [`net`]: its libp2p transport;
//! - [`sync`]: set reconciliation; [`relay`]: the headless store-and-forward relay;
//! - [`mesh`]: the Bluetooth store-carry-forward mesh.
//!
//! The engine modules are pure: time and randomness are passed in.
#![forbid(unsafe_code)]

pub mod account;
pub mod attachment;
pub mod bundle;
pub mod clock;
pub mod crypto;
pub mod devices;
pub mod envelope;
mod error;
pub mod group;
pub mod handshake;
pub mod identity;
pub mod mesh;
pub mod nearby;
pub mod net;
pub mod node;
pub mod relay;
pub mod store;
pub mod sync;
pub mod wipe;
pub mod wire;

pub use error::{Error, Result};

/// The version of this build of Weft.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
