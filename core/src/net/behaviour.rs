//! The libp2p behaviours a Weft node runs, composed in one `NetworkBehaviour`.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, autonat, dcutr, gossipsub, identify, identity, kad, mdns, ping, relay, request_response};

use super::codec::{SYNC_PROTOCOL, SyncCodec};
use crate::envelope::MAX_ENVELOPE_LEN;

#[derive(NetworkBehaviour)]
pub struct WeftBehaviour {
    pub relay_client: relay::client::Behaviour,
    pub ping: ping::Behaviour,
    pub identify: identify::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub sync: request_response::Behaviour<SyncCodec>,
    pub dcutr: dcutr::Behaviour,
    pub autonat: autonat::Behaviour,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl WeftBehaviour {
    pub fn new(key: &identity::Keypair, relay_client: relay::client::Behaviour, mdns: bool) -> Result<Self, BoxError> {
        let peer_id = key.public().to_peer_id();
        // Anonymous gossip: no author, no sequence number, no signature on messages. Envelopes
        // are content-addressed, so the message id is the envelope's hash.
        let gossip_config = gossipsub::ConfigBuilder::default()
            .max_transmit_size(MAX_ENVELOPE_LEN + 1024)
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            .message_id_fn(|m: &gossipsub::Message| {
                gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec())
            })
            .build()?;
        let gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)?;
        let mut kad = kad::Behaviour::with_config(
            peer_id,
            kad::store::MemoryStore::new(peer_id),
            kad::Config::new(StreamProtocol::new("/weft/kad/1")),
        );
        kad.set_mode(Some(kad::Mode::Server));
        let mdns = if mdns { Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)?) } else { None };
        Ok(WeftBehaviour {
            relay_client,
            ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
            identify: identify::Behaviour::new(identify::Config::new("/weft/1".into(), key.public())),
            kad,
            gossipsub,
            mdns: mdns.into(),
            sync: request_response::Behaviour::with_codec(
                SyncCodec,
                [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            ),
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat: autonat::Behaviour::new(peer_id, autonat::Config::default()),
        })
    }
}
