//! A hostile peer built from plain libp2p: gossipsub (anonymous, like Weft's) and Weft's sync
//! protocol over a codec of raw bytes that sends whatever it is given and reads whatever comes,
//! with none of Weft's limits. What the hostile tests attack a node or a relay with.

use std::time::Duration;

use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, Swarm, gossipsub, identity, noise, request_response, tcp, yamux};

/// The most a hostile peer reads of one answer.
const READ_LIMIT: u64 = 16 << 20;

async fn read_all<T: AsyncRead + Unpin + Send>(io: &mut T) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(READ_LIMIT).read_to_end(&mut buf).await?;
    Ok(buf)
}

/// Raw bytes for the sync protocol: the hostile side.
#[derive(Clone, Default)]
pub struct Raw;

impl request_response::Codec for Raw {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_all(io).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Vec<u8>> {
        read_all(io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> std::io::Result<()> {
        io.write_all(&req).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> std::io::Result<()> {
        io.write_all(&res).await
    }
}

#[derive(NetworkBehaviour)]
pub struct Hostile {
    pub gossipsub: gossipsub::Behaviour,
    pub sync: request_response::Behaviour<Raw>,
}

/// A hostile peer under a fresh identity.
pub fn hostile() -> Swarm<Hostile> {
    hostile_as(identity::Keypair::generate_ed25519(), request_response::Config::default())
}

/// Gossipsub as a Weft node speaks it (anonymous, messages named by their hash).
pub fn weft_gossipsub() -> gossipsub::Behaviour {
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        .max_transmit_size(1 << 20)
        .message_id_fn(|m: &gossipsub::Message| gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec()))
        .build()
        .expect("a gossipsub configuration");
    gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, config).expect("gossipsub")
}

/// Weft's sync protocol over raw bytes.
pub fn raw_sync(config: request_response::Config) -> request_response::Behaviour<Raw> {
    request_response::Behaviour::with_codec(
        Raw,
        [(StreamProtocol::new("/weft/sync/1"), request_response::ProtocolSupport::Full)],
        config,
    )
}

/// A hostile peer under `key`, its sync streams as `sync` says (e.g. more streams than a Weft
/// node allows).
pub fn hostile_as(key: identity::Keypair, sync: request_response::Config) -> Swarm<Hostile> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .expect("a TCP transport")
        .with_behaviour(|_| Hostile { gossipsub: weft_gossipsub(), sync: raw_sync(sync) })
        .expect("the hostile behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}
