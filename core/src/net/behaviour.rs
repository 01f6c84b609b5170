//! The libp2p behaviours a Weft node runs, composed in one `NetworkBehaviour`.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, autonat, connection_limits, dcutr, gossipsub, identify, identity, kad, mdns, ping, relay,
    request_response,
};

use super::admission::Admission;
use super::codec::{Budget, REQUEST_BUDGET, SYNC_PROTOCOL, SyncCodec};
use super::meet::{MEET_PROTOCOL, MeetCodec};
use crate::envelope::MAX_ENVELOPE_LEN;

/// The agent version a relay announces; a relay does not follow the topics of another relay.
pub const RELAY_AGENT: &str = "weft-relay/";

/// Gossip topics a peer may follow and what one subscription message may carry: anything more
/// is refused by gossipsub before it costs us memory.
const MAX_TOPICS_PER_PEER: usize = 4096;
const MAX_SUBSCRIPTIONS_PER_MESSAGE: usize = 4096;

/// Only Weft's two kinds of topics: `weft/<32 hex>` and `weft-rv/<64 hex>`.
#[derive(Default)]
pub struct WeftTopics;

impl gossipsub::TopicSubscriptionFilter for WeftTopics {
    fn can_subscribe(&mut self, topic: &gossipsub::TopicHash) -> bool {
        let hex_of = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        let t = topic.as_str();
        t.strip_prefix("weft/").is_some_and(|h| hex_of(h, 32))
            || t.strip_prefix("weft-rv/").is_some_and(|h| hex_of(h, 64))
    }
}

pub type Gossip = gossipsub::Behaviour<gossipsub::IdentityTransform, gossipsub::MaxCountSubscriptionFilter<WeftTopics>>;

/// How many connections a node accepts. Relays accept more: they serve everyone behind a
/// campus NAT at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Inbound connections from one IP address.
    pub per_ip: u32,
    /// Peers banned from one address before the address is banned (for ten minutes).
    pub bans_per_ip: u32,
    /// Inbound connections in all, established and still in their handshake.
    pub incoming: u32,
    pub pending_incoming: u32,
    /// Sync streams open at once on one connection (libp2p's default is 100).
    pub streams_per_connection: usize,
}

impl Limits {
    pub const NODE: Limits =
        Limits { per_ip: 16, bans_per_ip: 4, incoming: 128, pending_incoming: 32, streams_per_connection: 16 };
    pub const RELAY: Limits =
        Limits { per_ip: 64, bans_per_ip: 16, incoming: 1024, pending_incoming: 128, streams_per_connection: 16 };
}

#[derive(NetworkBehaviour)]
pub struct WeftBehaviour {
    /// First, so a connection it refuses costs the others nothing.
    pub admission: Admission,
    pub limits: connection_limits::Behaviour,
    pub relay_client: relay::client::Behaviour,
    pub relay_server: Toggle<relay::Behaviour>,
    pub ping: ping::Behaviour,
    pub identify: identify::Behaviour,
    pub kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    pub gossipsub: Gossip,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub sync: request_response::Behaviour<SyncCodec>,
    /// Members behind NATs meet at their relay (`super::meet`): a relay answers, a node asks.
    pub meet: request_response::Behaviour<MeetCodec>,
    /// Hole punching over a relay's circuit; off when the user would rather no member learn
    /// their IP address.
    pub dcutr: Toggle<dcutr::Behaviour>,
    pub autonat: autonat::Behaviour,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl WeftBehaviour {
    pub fn new(
        key: &identity::Keypair,
        relay_client: relay::client::Behaviour,
        mdns: bool,
        relay_server: bool,
        hole_punching: bool,
        limits: Limits,
    ) -> Result<Self, BoxError> {
        let peer_id = key.public().to_peer_id();
        // Anonymous gossip: no author, no sequence number, no signature on messages. Envelopes
        // are content-addressed, so the message id is the envelope's hash.
        let gossip_config = gossipsub::ConfigBuilder::default()
            // Room for an envelope, and for one subscription message listing every topic a peer
            // may follow (about 47 bytes each).
            .max_transmit_size(MAX_ENVELOPE_LEN.max(MAX_TOPICS_PER_PEER * 64) + 1024)
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            // Nothing is forwarded before the driver has checked its shape.
            .validate_messages()
            .message_id_fn(|m: &gossipsub::Message| {
                gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
            })
            .build()?;
        let filter = gossipsub::MaxCountSubscriptionFilter {
            filter: WeftTopics,
            max_subscribed_topics: MAX_TOPICS_PER_PEER,
            max_subscriptions_per_request: MAX_SUBSCRIPTIONS_PER_MESSAGE,
        };
        let gossipsub = gossipsub::Behaviour::new_with_subscription_filter(
            gossipsub::MessageAuthenticity::Anonymous,
            gossip_config,
            filter,
        )?;
        // Kademlia runs on relays only, as servers. A node does not walk the DHT: it connects
        // only to the peers it is told of (configuration, mDNS, its stored addresses), so what
        // it reaches stays predictable, and a partition stays a partition. (Rendezvous by
        // provider records is the next use; see docs/DECISIONS.md.)
        let kad = relay_server.then(|| {
            let mut config = kad::Config::new(StreamProtocol::new("/weft/kad/1"));
            config.set_periodic_bootstrap_interval(None);
            let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), config);
            kad.set_mode(Some(kad::Mode::Server));
            kad
        });
        let mdns = if mdns { Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)?) } else { None };
        let relay_behaviour = relay_server.then(|| relay::Behaviour::new(peer_id, relay::Config::default()));
        // Connections per peer are bounded by the driver, which first looks at where a new one
        // comes from: a peer that moved connects again while its old connections still look
        // alive, and then those go, not the new one.
        let connection_limits = connection_limits::ConnectionLimits::default()
            .with_max_established_incoming(Some(limits.incoming))
            .with_max_pending_incoming(Some(limits.pending_incoming));
        Ok(WeftBehaviour {
            admission: Admission::new(limits.per_ip, limits.bans_per_ip),
            limits: connection_limits::Behaviour::new(connection_limits),
            relay_client,
            relay_server: relay_behaviour.into(),
            // A ping unanswered for 20 s closes its connection (the driver does): at most 35 s
            // after a connection died without a word, it is dialled again.
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(Duration::from_secs(15)).with_timeout(Duration::from_secs(20)),
            ),
            identify: identify::Behaviour::new(
                identify::Config::new("/weft/1".into(), key.public()).with_agent_version(if relay_server {
                    format!("{RELAY_AGENT}{}", crate::VERSION)
                } else {
                    // No version: it would tell a connected peer (or whoever scans a LAN)
                    // which build a person runs, a fingerprint that lasts across peer ids.
                    "weft".to_string()
                }),
            ),
            kad: kad.into(),
            gossipsub,
            mdns: mdns.into(),
            sync: request_response::Behaviour::with_codec(
                SyncCodec::new(Budget::new(REQUEST_BUDGET)),
                [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(30))
                    .with_max_concurrent_streams(limits.streams_per_connection),
            ),
            meet: request_response::Behaviour::with_codec(
                MeetCodec,
                [(
                    MEET_PROTOCOL,
                    if relay_server {
                        request_response::ProtocolSupport::Inbound
                    } else {
                        request_response::ProtocolSupport::Outbound
                    },
                )],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(20))
                    .with_max_concurrent_streams(4),
            ),
            dcutr: (hole_punching && !relay_server).then(|| dcutr::Behaviour::new(peer_id)).into(),
            autonat: autonat::Behaviour::new(peer_id, autonat::Config::default()),
        })
    }
}
