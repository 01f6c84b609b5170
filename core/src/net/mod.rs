//! The network transport: libp2p (TCP and QUIC with Noise and Yamux; identify, ping, mDNS,
//! Kademlia, gossipsub, request-response, relay client, DCUtR, AutoNAT), driven by one task
//! beside the node.
//!
//! What it carries: envelopes, pushed live on gossipsub topics named after the (rotating)
//! envelope topics; contact requests, published on the recipient's rendezvous topic; and the
//! sync protocol (`crate::sync`) over request-response, run with every peer that shares a topic
//! so that whatever a push missed arrives. Peers see libp2p peer ids, topics and envelopes —
//! never an account key, a device key or a group id.

mod admission;
mod behaviour;
pub mod catch_up;
mod codec;
mod driver;
mod host;
pub mod join;
pub mod meet;
pub mod sessions;
mod strikes;

pub use admission::{IpCounts, Refused};
pub use behaviour::Limits;
pub use codec::{Budget, MAX_FRAME, REQUEST_BUDGET, SYNC_PROTOCOL, SyncCodec, decode_batch, encode_batch};
pub use driver::{
    NetConfig, NetHandle, NetStatus, PeerStatus, RelayStatus, SessionInfo, SyncStatus, start, start_host,
};
pub use host::{Host, Interests, NodeHost, OutboxChanges, RequestCheck};
pub use join::{Granted, JoinOverNetwork};
pub use libp2p::identity::Keypair;
pub use libp2p::multiaddr::Protocol;
pub use libp2p::{Multiaddr, PeerId};
pub use sessions::{Serves, SessionKey};

/// How events name this transport.
pub const VIA: &str = "libp2p";
