//! A radio over Unix sockets in a folder: every node given the same folder is in range of every
//! other, as phones on one table are. It is for tests and demos of the mesh between real
//! processes on a machine with no Bluetooth adapter (`weft run --mesh-dir DIR`); the mesh sees it
//! as it sees Bluetooth, through a [`FedRadio`]: links with an MTU, one initiator a pair,
//! fragments in order, and fragments dropped when a link's queue is full, as on the air.
//!
//! Each node listens on `<dir>/<16 hex>.sock` under a random name, and every [`SCAN_EVERY`]
//! connects to the names greater than its own (one link a pair, as the phones' who-connects rule
//! makes). A connection opens with the connecting node's name (16 hex digits); after it, each
//! fragment is `length (2, big-endian) || bytes`, 1 to [`MAX_MTU`] bytes. Anything else ends the
//! link: what a neighbour sends costs a bounded buffer.
//!
//! Whoever can connect to a socket in the folder is a neighbour, as whoever is in Bluetooth range
//! is: the folder is made owner-only when the radio makes it, and entries that are not sockets
//! (a symlink planted to another socket) are skipped, but a folder others can write is theirs to
//! join. A neighbour says a name, which must be one in the folder; a local process can still claim
//! a real neighbour's name and keep it out, which a test radio accepts.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use super::feed::{Driver, FedRadio, MAX_LINKS, RadioEvents, fed_radio};
use crate::error::{Error, Result};
use crate::mesh::fragment::MAX_MTU;

/// How often the folder is read for new neighbours.
pub const SCAN_EVERY: Duration = Duration::from_millis(250);
/// The MTU every link reports: a common one between phones.
pub const SOCKET_MTU: u32 = 185;
/// Fragments queued for one neighbour before more are dropped.
const WRITE_QUEUE: usize = 4096;
/// How long a connecting node has to say its name, and a connection to be made.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// A node's name: 16 lowercase hex digits.
const NAME_LEN: usize = 16;
/// Connections that have not said their name yet, at most.
const MAX_UNNAMED: usize = 8;
/// A neighbour whose link we closed is not linked again before this (a link the mesh closed for
/// misbehaving would otherwise come back at the next scan).
const RELINK_AFTER: Duration = Duration::from_secs(5);
/// A write that takes longer (a neighbour that stopped reading) ends the link.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A link's two ends in this process: the queue its writer drains, and its reader task.
struct Open {
    writer: mpsc::Sender<Vec<u8>>,
    reader: tokio::task::AbortHandle,
}

/// The links of one radio by id, the link with each neighbour by name, and the neighbours
/// whose links we closed lately.
#[derive(Default)]
struct Links {
    open: HashMap<u64, Open>,
    by_name: HashMap<String, u64>,
    closed: HashMap<String, tokio::time::Instant>,
    /// Sockets that refused a connection once: removed if they refuse again (the first may be a
    /// node between binding its socket and listening on it).
    refused: HashSet<String>,
    next_id: u64,
}

impl Links {
    /// Ends a link here: its reader stops and its writer's queue closes, so the connection is
    /// dropped whatever the neighbour does.
    fn forget(&mut self, link: u64) {
        if let Some(open) = self.open.remove(&link) {
            open.reader.abort();
        }
        let now = tokio::time::Instant::now();
        self.closed.retain(|_, at| now.duration_since(*at) < RELINK_AFTER);
        let names: Vec<String> = self.by_name.iter().filter(|(_, id)| **id == link).map(|(n, _)| n.clone()).collect();
        for name in names {
            self.by_name.remove(&name);
            self.closed.insert(name, now);
        }
    }

    /// Whether a link with `name` may be made now.
    fn may_link(&self, name: &str) -> bool {
        !self.by_name.contains_key(name)
            && self.closed.get(name).is_none_or(|at| at.elapsed() >= RELINK_AFTER)
            && self.open.len() < MAX_LINKS
    }
}

struct SocketDriver {
    links: Arc<Mutex<Links>>,
}

impl Driver for SocketDriver {
    fn send(&self, link: u64, fragment: Vec<u8>) -> Result<()> {
        let writer = self.links.lock().expect("socket radio lock").open.get(&link).map(|o| o.writer.clone());
        match writer {
            Some(writer) => match writer.try_send(fragment) {
                // A neighbour that reads too slowly loses fragments, as on the air.
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => Err(Error::Closed),
            },
            None => Err(Error::Closed),
        }
    }

    fn close(&self, link: u64) {
        // The writer's queue closes, and with it our side of the connection.
        self.links.lock().expect("socket radio lock").forget(link);
    }
}

/// Joins the mesh of every node listening in `dir` (made if missing). Must be called inside a
/// tokio runtime; the socket file goes when the radio does.
pub fn open(dir: &Path) -> Result<FedRadio> {
    let io = |context: String| move |source| Error::Io { context, source };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io(format!("making the mesh folder {}", dir.display())))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("making the mesh folder {} owner-only", dir.display())))?;
    }
    let mut raw = [0u8; NAME_LEN / 2];
    getrandom::fill(&mut raw).map_err(|_| Error::Entropy)?;
    let name: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("{name}.sock"));
    let listener = UnixListener::bind(&path).map_err(io(format!("listening on {}", path.display())))?;
    let links = Arc::new(Mutex::new(Links::default()));
    let (radio, events) = fed_radio(Arc::new(SocketDriver { links: links.clone() }), "socket");
    let unnamed = Arc::new(tokio::sync::Semaphore::new(MAX_UNNAMED));
    let node = Node { dir: dir.to_owned(), name, links, events, unnamed };
    tokio::spawn(node.run(listener, RemoveOnDrop(path)));
    Ok(radio)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Clone)]
struct Node {
    dir: PathBuf,
    name: String,
    links: Arc<Mutex<Links>>,
    events: RadioEvents,
    unnamed: Arc<tokio::sync::Semaphore>,
}

impl Node {
    async fn run(self, listener: UnixListener, _socket: RemoveOnDrop) {
        let mut scan = tokio::time::interval(SCAN_EVERY);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.events.is_closed() {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    // Beyond the connections waiting to say their name, more are dropped.
                    Ok((stream, _)) => {
                        if let Ok(permit) = self.unnamed.clone().try_acquire_owned() {
                            tokio::spawn(self.clone().answer(stream, permit));
                        }
                    }
                    // Out of file descriptors, say: not a busy loop.
                    Err(_) => tokio::time::sleep(SCAN_EVERY).await,
                },
                _ = scan.tick() => self.connect_to_new().await,
            }
        }
        let mut links = self.links.lock().expect("socket radio lock");
        let ids: Vec<u64> = links.open.keys().copied().collect();
        for id in ids {
            links.forget(id);
        }
    }

    /// A neighbour connected: it says its name, which must be below ours (the lower name
    /// connects), a socket in the folder, and not linked already.
    async fn answer(self, mut stream: UnixStream, _unnamed: tokio::sync::OwnedSemaphorePermit) {
        let mut name = [0u8; NAME_LEN];
        let Ok(Ok(_)) = tokio::time::timeout(HELLO_TIMEOUT, stream.read_exact(&mut name)).await else { return };
        let Some(peer) = std::str::from_utf8(&name).ok().filter(|n| is_name(n)).map(str::to_owned) else { return };
        if peer < self.name && is_socket(&self.dir.join(format!("{peer}.sock"))) {
            self.link(stream, peer, false);
        }
    }

    /// Connects to every node in the folder whose name is above ours and is not linked yet. A
    /// socket nobody listens on any more (its node was killed) is removed.
    async fn connect_to_new(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| f.strip_suffix(".sock").filter(|n| is_name(n)).map(str::to_owned))
            .filter(|n| *n > self.name)
            .collect();
        for peer in names {
            if !self.links.lock().expect("socket radio lock").may_link(&peer) {
                continue;
            }
            let path = self.dir.join(format!("{peer}.sock"));
            if !is_socket(&path) {
                continue;
            }
            match tokio::time::timeout(HELLO_TIMEOUT, UnixStream::connect(&path)).await {
                Ok(Ok(mut stream)) => {
                    let introduced = stream.write_all(self.name.as_bytes()).await;
                    if introduced.is_ok() {
                        self.link(stream, peer, true);
                    }
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    let mut links = self.links.lock().expect("socket radio lock");
                    if !links.refused.insert(peer.clone()) {
                        links.refused.remove(&peer);
                        let _ = std::fs::remove_file(&path);
                    }
                }
                _ => {}
            }
        }
    }

    fn link(&self, stream: UnixStream, peer: String, initiator: bool) {
        let (writer, rx) = mpsc::channel(WRITE_QUEUE);
        let (read, write) = stream.into_split();
        let mut links = self.links.lock().expect("socket radio lock");
        if !links.may_link(&peer) {
            return;
        }
        links.refused.remove(&peer);
        links.next_id += 1;
        let id = links.next_id;
        // Its reader starts once the link is recorded (it takes the lock we hold).
        let reader = tokio::spawn(self.clone().read_fragments(read, id)).abort_handle();
        links.open.insert(id, Open { writer, reader });
        links.by_name.insert(peer, id);
        drop(links);
        if self.events.link_up(id, SOCKET_MTU, initiator).is_err() {
            self.links.lock().expect("socket radio lock").forget(id);
            return;
        }
        tokio::spawn(write_fragments(write, rx));
    }

    async fn read_fragments(self, mut read: OwnedReadHalf, link: u64) {
        let mut buf = vec![0u8; MAX_MTU];
        loop {
            let mut len = [0u8; 2];
            if read.read_exact(&mut len).await.is_err() {
                break;
            }
            let len = u16::from_be_bytes(len) as usize;
            if len == 0 || len > MAX_MTU || read.read_exact(&mut buf[..len]).await.is_err() {
                break;
            }
            self.events.frame(link, buf[..len].to_vec());
        }
        self.events.link_down(link);
        self.links.lock().expect("socket radio lock").forget(link);
    }
}

/// Writes what the mesh sends to one neighbour; when the link is closed (its queue's sender
/// dropped), the connection's write side is shut, and the neighbour sees the link end.
async fn write_fragments(mut write: OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(fragment) = rx.recv().await {
        let mut frame = Vec::with_capacity(2 + fragment.len());
        frame.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
        frame.extend_from_slice(&fragment);
        if !matches!(tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&frame)).await, Ok(Ok(()))) {
            break;
        }
    }
    let _ = write.shutdown().await;
}

/// Whether `path` is a socket itself (not a symlink to one, nor anything else).
fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

fn is_name(name: &str) -> bool {
    name.len() == NAME_LEN && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::radio::Radio;

    #[tokio::test]
    async fn two_radios_in_one_folder_link_once_and_carry_fragments_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = open(dir.path()).unwrap();
        let mut b = open(dir.path()).unwrap();
        let wait = Duration::from_secs(5);
        let la = tokio::time::timeout(wait, a.next_link()).await.unwrap().unwrap();
        let lb = tokio::time::timeout(wait, b.next_link()).await.unwrap().unwrap();
        assert_ne!(la.initiator(), lb.initiator(), "one side connects");
        assert_eq!(la.mtu(), SOCKET_MTU as usize);
        la.send(b"hello".to_vec()).await.unwrap();
        lb.send(vec![7; MAX_MTU]).await.unwrap();
        assert_eq!(tokio::time::timeout(wait, lb.recv()).await.unwrap().unwrap(), b"hello");
        assert_eq!(tokio::time::timeout(wait, la.recv()).await.unwrap().unwrap(), vec![7; MAX_MTU]);
        // No second link forms between the two at later scans.
        assert!(tokio::time::timeout(4 * SCAN_EVERY, a.next_link()).await.is_err());
        la.close();
        assert_eq!(tokio::time::timeout(wait, lb.recv()).await.unwrap(), None, "a closed link ends on both sides");
    }

    #[tokio::test]
    async fn junk_from_a_neighbour_ends_its_link_and_a_stale_socket_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut radio = open(dir.path()).unwrap();
        let ours = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
        // A name with no socket in the folder is not linked.
        let mut nameless = UnixStream::connect(&ours).await.unwrap();
        nameless.write_all(b"0000000000000001").await.unwrap();
        // A name below any (so ours accepts it) with a socket in the folder, then a fragment
        // longer than any MTU.
        let _named = std::os::unix::net::UnixListener::bind(dir.path().join("0000000000000000.sock")).unwrap();
        let mut stream = UnixStream::connect(&ours).await.unwrap();
        stream.write_all(b"0000000000000000").await.unwrap();
        let link = tokio::time::timeout(Duration::from_secs(5), radio.next_link()).await.unwrap().unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(nameless.read(&mut buf).await.unwrap(), 0, "a name with no socket is refused");
        stream.write_all(&u16::MAX.to_be_bytes()).await.unwrap();
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), link.recv()).await.unwrap(), None);
        // A socket file with no listener behind it (a killed node's) is cleared at the next scan.
        let stale = dir.path().join("ffffffffffffffff.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        tokio::time::sleep(4 * SCAN_EVERY).await;
        assert!(!stale.exists());
        drop(radio);
        tokio::time::sleep(2 * SCAN_EVERY).await;
        assert!(!ours.exists(), "the radio's socket goes with it");
    }
}
