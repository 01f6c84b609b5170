//! The node's session of the nearby channel (issue 19): one ephemeral key for every radio the
//! node drives, never tied to the account. What the user posts goes out on every mesh; what a
//! mesh hears is checked by the session ([`crate::nearby::Channel`]), shown as an event, and
//! handed back to be passed on within its hop limit.

use std::sync::Mutex;

use tokio::sync::broadcast;

use super::{Node, NodeEvent};
use crate::crypto::OsEntropy;
use crate::error::{Error, Result};
use crate::nearby::{Channel, Received, Sender, Shown};

/// Posts waiting for the meshes to take them (each mesh reads them as they come).
const POSTS_BUFFER: usize = 64;

/// The session and the posts on their way to the meshes.
pub(super) struct NearbySession {
    channel: Mutex<Option<Channel>>,
    posts: broadcast::Sender<Vec<u8>>,
}

impl Default for NearbySession {
    fn default() -> Self {
        NearbySession { channel: Mutex::new(None), posts: broadcast::channel(POSTS_BUFFER).0 }
    }
}

impl NearbySession {
    /// Runs `f` on the session, made on first use (a fresh key, no nickname).
    fn with<T>(&self, f: impl FnOnce(&mut Channel) -> Result<T>) -> Result<T> {
        let mut channel = self.channel.lock().map_err(|_| Error::Internal("nearby session poisoned"))?;
        if channel.is_none() {
            *channel = Some(Channel::new("", &mut OsEntropy)?);
        }
        f(channel.as_mut().expect("just made"))
    }
}

fn now_ms() -> u64 {
    crate::clock::system_ms()
}

impl Node {
    /// Starts a new session of the nearby channel under `nick` (may be empty): a new key, so
    /// the key does not tie what follows to what we posted before (a neighbour on the same
    /// radio link still can, by the link: rotate the radio's token too). Returns the key.
    pub fn nearby_session(&self, nick: &str) -> Result<Sender> {
        let channel = Channel::new(nick, &mut OsEntropy)?;
        let me = channel.me();
        *self.nearby.channel.lock().map_err(|_| Error::Internal("nearby session poisoned"))? = Some(channel);
        Ok(me)
    }

    /// Posts on the nearby channel: signed by the session's key and broadcast on every mesh
    /// (within our own rate: one every 10 s, 5 saved up). Fails with no mesh running: nobody
    /// would hear it.
    pub fn nearby_post(&self, text: &str) -> Result<Shown> {
        if self.nearby.posts.receiver_count() == 0 {
            return Err(Error::NotAllowed("the nearby channel needs the Bluetooth mesh, and none is running"));
        }
        let (bytes, shown) = self.nearby.with(|c| c.post(text, now_ms()))?;
        let _ = self.nearby.posts.send(bytes);
        Ok(shown)
    }

    /// The recent window of the channel (at most 200), oldest first.
    pub fn nearby_recent(&self) -> Result<Vec<Shown>> {
        self.nearby.with(|c| Ok(c.recent().cloned().collect()))
    }

    /// Hides a sender's messages (still passed on for others).
    pub fn nearby_mute(&self, sender: Sender) -> Result<()> {
        self.nearby.with(|c| {
            c.mute(sender);
            Ok(())
        })
    }

    /// Refuses a sender: neither shown nor passed on.
    pub fn nearby_block(&self, sender: Sender) -> Result<()> {
        self.nearby.with(|c| {
            c.block(sender);
            Ok(())
        })
    }

    /// What a mesh heard on the channel: checked, shown as an event if new, and the bytes to
    /// pass on, if any.
    pub fn nearby_heard(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        match self.nearby.with(|c| Ok(c.receive(bytes, now_ms()))).ok()? {
            Received::New { shown, relay } => {
                if let Some(shown) = shown {
                    self.emit(NodeEvent::Nearby { message: shown });
                }
                relay
            }
            Received::Further { relay } => Some(relay),
            Received::Again => None,
            Received::Refused(why) => {
                tracing::debug!(why, "a nearby message refused");
                None
            }
        }
    }

    /// Our posts, for a mesh to broadcast.
    pub fn nearby_posts(&self) -> broadcast::Receiver<Vec<u8>> {
        self.nearby.posts.subscribe()
    }
}
