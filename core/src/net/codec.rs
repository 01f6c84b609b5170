//! The request-response codec of the sync protocol: raw bytes, length-limited on read, with
//! every request read counted against one budget shared by all connections. The bytes are
//! `SyncMessage`s, decoded (and bounded again) by `crate::sync`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{StreamProtocol, request_response};

use crate::error::Result;
use crate::sync::{MAX_HAVE_BYTES, SyncMessage};
use crate::wire::{Reader, Writer};

/// Sync messages in one request or answer, at most.
const MAX_BATCH: usize = 1024;

pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/weft/sync/1");

/// Largest request and response read from a peer: one page of envelopes (a `Have` or a relay's
/// `Held`, at most [`MAX_HAVE_BYTES`]) and the reconciliation messages beside it. Anything
/// longer ends the stream.
pub const MAX_FRAME: u64 = (MAX_HAVE_BYTES + 512 * 1024) as u64;

/// Bytes of peers' requests held in memory at once, across every connection: the most that
/// whoever connects can make us hold (about seven full frames). A request that would go over
/// it is refused (its stream ends) and the peer may ask again later.
pub const REQUEST_BUDGET: usize = 32 * 1024 * 1024;

/// Requests are read in steps of this size, each counted before it is held.
const READ_STEP: usize = 64 * 1024;

/// Bytes held by requests being read or waiting to be answered.
#[derive(Debug, Default)]
pub struct Budget {
    held: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget { held: AtomicUsize::new(0), limit })
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        let mut current = self.held.load(Ordering::Relaxed);
        loop {
            if current + n > self.limit {
                return false;
            }
            match self.held.compare_exchange_weak(current, current + n, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Bytes of a budget held until dropped.
#[derive(Debug)]
struct Held {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// A request or response: its bytes, and (for a request read from a peer) its share of the
/// budget, given back when the frame is dropped.
#[derive(Debug)]
pub struct Frame {
    pub bytes: Vec<u8>,
    _held: Option<Held>,
}

impl From<Vec<u8>> for Frame {
    fn from(bytes: Vec<u8>) -> Self {
        Frame { bytes, _held: None }
    }
}

#[derive(Clone)]
pub struct SyncCodec {
    requests: Arc<Budget>,
}

impl SyncCodec {
    pub fn new(requests: Arc<Budget>) -> Self {
        SyncCodec { requests }
    }
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "sync frame too large")
}

/// Reads a request, counting it against `budget` step by step before holding it.
async fn read_counted<T: AsyncRead + Unpin + Send>(io: &mut T, budget: &Arc<Budget>) -> io::Result<Frame> {
    let mut held = Held { budget: budget.clone(), bytes: 0 };
    let mut buf = Vec::new();
    let mut step = vec![0u8; READ_STEP];
    loop {
        let n = io.read(&mut step).await?;
        if n == 0 {
            return Ok(Frame { bytes: buf, _held: Some(held) });
        }
        if (buf.len() + n) as u64 > MAX_FRAME {
            return Err(too_large());
        }
        if !budget.take(n) {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "too many requests held: asked again later"));
        }
        held.bytes += n;
        buf.extend_from_slice(&step[..n]);
    }
}

/// Reads a response to a request of ours: bounded by the frame size alone (we choose how many
/// requests are out).
async fn read_limited<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Frame> {
    let mut buf = Vec::new();
    io.take(MAX_FRAME + 1).read_to_end(&mut buf).await?;
    if buf.len() as u64 > MAX_FRAME {
        return Err(too_large());
    }
    Ok(buf.into())
}

impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Frame;

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_counted(io, &self.requests).await
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io).await
    }

    async fn write_request<T>(&mut self, _: &Self::Protocol, io: &mut T, req: Frame) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req.bytes).await
    }

    async fn write_response<T>(&mut self, _: &Self::Protocol, io: &mut T, res: Frame) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&res.bytes).await
    }
}

/// The bytes of one request or answer of the sync protocol: a count, then each message with its
/// length.
pub fn encode_batch(messages: &[SyncMessage]) -> Vec<u8> {
    let mut w = Writer::new();
    w.count(messages.len());
    for m in messages {
        w.bytes(&m.encode());
    }
    w.into_bytes()
}

/// What a batch's own framing is called in its errors (a cut-short batch is told apart by it).
pub(crate) const BATCH: &str = "sync batch";

/// Reads what [`encode_batch`] wrote: bytes from a peer, refused whole if any message is
/// malformed.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<SyncMessage>> {
    let mut r = Reader::new(bytes, BATCH);
    let n = r.count(MAX_BATCH, 4)?;
    let out = (0..n).map(|_| SyncMessage::decode(r.bytes(MAX_FRAME as usize)?)).collect::<Result<_>>()?;
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], budget: &Arc<Budget>) -> io::Result<Frame> {
        futures::executor::block_on(read_counted(&mut futures::io::Cursor::new(bytes.to_vec()), budget))
    }

    #[test]
    fn a_request_holds_its_bytes_until_dropped() {
        let budget = Budget::new(1 << 20);
        let frame = read(&[7u8; 100_000], &budget).unwrap();
        assert_eq!(frame.bytes.len(), 100_000);
        assert_eq!(budget.held(), 100_000);
        drop(frame);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn requests_beyond_the_budget_are_refused_and_give_back_what_they_took() {
        let budget = Budget::new(300_000);
        let first = read(&[1u8; 200_000], &budget).unwrap();
        let refused = read(&[2u8; 200_000], &budget).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::OutOfMemory);
        assert_eq!(budget.held(), 200_000, "the refused request holds nothing");
        drop(first);
        assert!(read(&[2u8; 200_000], &budget).is_ok(), "room again once the first is answered");
    }

    #[test]
    fn a_frame_longer_than_the_limit_ends_the_stream() {
        let budget = Budget::new(REQUEST_BUDGET);
        let err = read(&vec![0u8; MAX_FRAME as usize + 1], &budget).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(budget.held(), 0);
        assert!(read(&vec![0u8; MAX_FRAME as usize], &budget).is_ok());
    }
}
