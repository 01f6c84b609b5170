//! A relay: a headless node that serves as circuit relay, Kademlia server and store-and-forward
//! cache of ciphertext for whatever topics its peers follow. It holds no keys and opens nothing;
//! it keeps envelopes within a byte quota, a per-peer quota and an expiry (see [`cache`]), in a
//! plain SQLite file so a restart loses nothing it held.

pub mod cache;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use libp2p::{Multiaddr, PeerId};
use rusqlite::{Connection, params};

pub use cache::{Cache, CacheLimits};

use crate::clock::{SharedClock, shared_system_clock};
use crate::envelope::EnvelopeId;
use crate::error::{Error, Result};
use crate::net::{Host, Interests, Keypair, NetConfig, NetHandle};
use crate::node::NodeEvent;
use crate::sync::EnvelopeSource;

pub const CACHE_FILE: &str = "relay.db";
pub const KEY_FILE: &str = "relay.key";

/// The relay's cache and its file.
pub struct RelayHost {
    /// Keys the owners recorded in the cache (see `owner_of`); never written anywhere.
    owner_key: [u8; 32],
    cache: Mutex<Cache>,
    db: Mutex<Connection>,
    events: tokio::sync::broadcast::Sender<NodeEvent>,
    clock: SharedClock,
}

impl RelayHost {
    /// Opens (or creates) the cache in `dir`, reloading what it held.
    pub fn open(dir: &Path, limits: CacheLimits) -> Result<RelayHost> {
        Self::open_with_clock(dir, limits, shared_system_clock())
    }

    /// [`Self::open`] with a clock of the caller's.
    pub fn open_with_clock(dir: &Path, limits: CacheLimits, clock: SharedClock) -> Result<RelayHost> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the relay directory", e))?;
        let db = Connection::open(dir.join(CACHE_FILE))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // A cache: a power cut may cost the last envelopes, which their senders still hold.
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS cached (
                id BLOB PRIMARY KEY,
                bytes BLOB NOT NULL,
                stored_ms INTEGER NOT NULL,
                owner BLOB NOT NULL
            );",
        )?;
        let mut cache = Cache::new(limits);
        let mut dropped = Vec::new();
        {
            let mut stmt = db.prepare("SELECT bytes, owner, stored_ms FROM cached ORDER BY stored_ms")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)? as u64))
            })?;
            for row in rows {
                let (bytes, owner, stored) = row?;
                if let Ok(inserted) = cache.insert(bytes, owner, stored) {
                    dropped.extend(inserted.evicted);
                }
            }
        }
        dropped.extend(cache.expire(clock()));
        let host = RelayHost {
            cache: Mutex::new(cache),
            db: Mutex::new(db),
            events: tokio::sync::broadcast::channel(256).0,
            clock,
            owner_key: {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|_| Error::Internal("no randomness for the relay"))?;
                key
            },
        };
        host.forget(&dropped)?;
        Ok(host)
    }

    /// Who handed an envelope over, as the per-peer quota counts it: the peer id under a key
    /// that lives only in this process, so that `relay.db` (in clear) names no peer id, and a
    /// seized relay does not tell which peer handed over what.
    fn owner_of(&self, peer: &PeerId) -> Vec<u8> {
        blake3::keyed_hash(&self.owner_key, &peer.to_bytes()).as_bytes()[..16].to_vec()
    }

    /// Bytes and envelopes held.
    pub fn usage(&self) -> (usize, usize) {
        self.cache.lock().map(|c| (c.bytes(), c.len())).unwrap_or_default()
    }

    /// Every envelope held (for inspection and tests).
    pub fn envelopes(&self) -> Vec<Vec<u8>> {
        self.cache.lock().map(|c| c.envelopes().map(<[u8]>::to_vec).collect()).unwrap_or_default()
    }

    /// Peer events, as a node's subscribers get them.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    fn forget(&self, ids: &[EnvelopeId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut db = self.db.lock().map_err(|_| Error::Internal("relay db poisoned"))?;
        let tx = db.transaction()?;
        for id in ids {
            tx.execute("DELETE FROM cached WHERE id = ?1", [&id.0[..]])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn hold(&self, bytes: Vec<u8>, owner: Vec<u8>) -> Result<()> {
        let now = (self.clock)();
        let (inserted, id) = {
            let mut cache = self.cache.lock().map_err(|_| Error::Internal("relay cache poisoned"))?;
            let id = blake3::hash(&bytes);
            (cache.insert(bytes.clone(), owner.clone(), now)?, id)
        };
        self.forget(&inserted.evicted)?;
        if inserted.new {
            let db = self.db.lock().map_err(|_| Error::Internal("relay db poisoned"))?;
            db.execute(
                "INSERT OR IGNORE INTO cached (id, bytes, stored_ms, owner) VALUES (?1, ?2, ?3, ?4)",
                params![&id.as_bytes()[..], bytes, now as i64, owner],
            )?;
        }
        Ok(())
    }
}

impl Host for RelayHost {
    async fn session(&self) -> Option<crate::net::SessionKey> {
        None
    }

    async fn interests(&self, _scope: Option<crate::net::sessions::SessionScope>) -> Result<Interests> {
        // A relay follows its peers' topics (the driver does that); here it only ages its cache.
        let expired = self.cache.lock().map(|mut c| c.expire((self.clock)())).unwrap_or_default();
        self.forget(&expired)?;
        Ok(Interests::default())
    }

    async fn outbox(&self, _limit: usize) -> Result<Vec<Vec<u8>>> {
        Ok(Vec::new())
    }

    fn outbox_changes(&self) -> crate::net::OutboxChanges {
        crate::net::OutboxChanges::never()
    }

    async fn handed_over(&self, _ids: Vec<EnvelopeId>) {}

    fn receive_envelope(&self, bytes: Vec<u8>, from: PeerId) {
        if let Err(e) = self.hold(bytes, self.owner_of(&from)) {
            tracing::debug!(%from, %e, "not held");
        }
    }

    async fn receive_fetched(&self, envelopes: Vec<Vec<u8>>, from: PeerId) {
        for e in envelopes {
            self.receive_envelope(e, from);
        }
    }

    async fn catch_up_plan(&self, _settled: bool) -> Option<crate::account::CatchUpPlan> {
        None
    }

    async fn caught_up(&self, _plan: crate::account::CatchUpPlan) {}

    async fn receive_request(&self, _bytes: Vec<u8>) -> crate::net::RequestCheck {
        crate::net::RequestCheck::CannotTell
    }

    async fn with_source<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn EnvelopeSource) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let cache = self.cache.lock().map_err(|_| Error::Internal("relay cache poisoned"))?;
        f(&*cache)
    }

    async fn peer_addrs(&self) -> Vec<Multiaddr> {
        Vec::new()
    }

    async fn note_peer_addr(&self, _addr: Multiaddr) {}

    fn emit(&self, event: NodeEvent) {
        let _ = self.events.send(event);
    }
}

/// The relay's network identity, kept in `dir` so clients can list it by peer id.
pub fn load_or_create_key(dir: &Path) -> Result<Keypair> {
    let path: PathBuf = dir.join(KEY_FILE);
    if let Ok(bytes) = std::fs::read(&path) {
        return Keypair::from_protobuf_encoding(&bytes)
            .map_err(|_| Error::Malformed { what: "relay key", why: "not a libp2p key" });
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the relay directory", e))?;
    let key = Keypair::generate_ed25519();
    let bytes = key.to_protobuf_encoding().map_err(|_| Error::Internal("encoding the relay key"))?;
    write_private_file(&path, &bytes)?;
    Ok(key)
}

/// Writes a file only its owner may read.
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all(bytes).and_then(|_| file.sync_all()).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Starts a relay with its cache in `dir`.
pub async fn start(dir: &Path, config: NetConfig, limits: CacheLimits) -> Result<(NetHandle, Arc<RelayHost>)> {
    start_with_clock(dir, config, limits, shared_system_clock()).await
}

/// [`start`] with a clock of the caller's.
pub async fn start_with_clock(
    dir: &Path,
    mut config: NetConfig,
    limits: CacheLimits,
    clock: SharedClock,
) -> Result<(NetHandle, Arc<RelayHost>)> {
    let key = load_or_create_key(dir)?;
    let host = Arc::new(RelayHost::open_with_clock(dir, limits, clock)?);
    config.relay_server = true;
    if config.limits == crate::net::Limits::NODE {
        config.limits = crate::net::Limits::RELAY;
    }
    let handle = crate::net::start_host(host.clone(), config, key).await?;
    Ok((handle, host))
}
