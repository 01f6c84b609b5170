//! Members behind NATs meet through their relay, then punch a hole to each other.
//!
//! Two members at home behind NATs both reach their relay and hold a reservation on it (a
//! circuit address), but neither can dial the other, and neither knows the other's session peer
//! id (it is random, and changes every day). Each asks the relay, over `/weft/meet/1`, which
//! peers holding a reservation there showed the same *meet tokens*: secrets derived from the
//! conversation's epoch and the day, which only its members can compute (unlike its gossip
//! topic, which every peer of the relay sees followed). Each dials the others through the
//! relay's circuit; libp2p's DCUtR then tries a direct connection (hole punching), and where
//! the NATs do not allow one (a symmetric NAT) the circuit stays.
//!
//! What it costs: the relay learns the tokens, which tell it nothing it did not know (who
//! follows what was already in front of it); a member learns the session peer id of each other
//! member at the relay and, once a hole is punched, their IP address. A user who would rather
//! no member learn it turns hole punching off (`NetConfig::hole_punching`) and stays behind
//! the relay; THREAT_MODEL N18.
//!
//! [`MeetingPoint`] is the relay's side, a plain value; [`MeetCodec`] carries the two messages,
//! decoded with bounds before anything is held.

use std::collections::HashMap;
use std::io;

use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol, request_response};

use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

pub const MEET_PROTOCOL: StreamProtocol = StreamProtocol::new("/weft/meet/1");

/// A conversation's meet token for one day (`crate::group::Epoch::meet_token`).
pub type MeetToken = [u8; 16];

/// Tokens in one request, at most: one per conversation the asker is in (more are left out
/// by the asker; a relay refuses the request).
pub const MAX_TOKENS: usize = 64;
/// Peers in one answer, and peers registered under one token, at most.
pub const MAX_MET: usize = 64;
/// An Ed25519 peer id takes 38 bytes; no key type libp2p knows takes more than this.
const MAX_PEER_ID_LEN: usize = 64;
/// Largest message either side reads.
const MAX_MESSAGE: usize = 4 + MAX_MET * (4 + MAX_PEER_ID_LEN);

const REQUEST: &str = "meet request";
const ANSWER: &str = "meet answer";

/// "Register me under these tokens, and tell me who else is under them."
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeetRequest {
    pub tokens: Vec<MeetToken>,
}

impl MeetRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(4 + self.tokens.len() * 16);
        w.count(self.tokens.len());
        for token in &self.tokens {
            w.raw(token);
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<MeetRequest> {
        let mut r = Reader::new(bytes, REQUEST);
        let n = r.count(MAX_TOKENS, 16)?;
        let tokens = (0..n).map(|_| r.array()).collect::<Result<_>>()?;
        r.finish()?;
        Ok(MeetRequest { tokens })
    }
}

/// The session peer ids that showed one of the asker's tokens and can be reached through the
/// relay's circuit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeetAnswer {
    pub peers: Vec<PeerId>,
}

impl MeetAnswer {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.count(self.peers.len());
        for peer in &self.peers {
            w.bytes(&peer.to_bytes());
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<MeetAnswer> {
        let mut r = Reader::new(bytes, ANSWER);
        let n = r.count(MAX_MET, 4)?;
        let peers = (0..n)
            .map(|_| {
                PeerId::from_bytes(r.bytes(MAX_PEER_ID_LEN)?)
                    .map_err(|_| Error::Malformed { what: ANSWER, why: "not a peer id" })
            })
            .collect::<Result<_>>()?;
        r.finish()?;
        Ok(MeetAnswer { peers })
    }
}

/// The relay's register: which reachable peers showed which tokens. Bounded by the relay's
/// reservations (only a peer holding one registers), [`MAX_TOKENS`] per peer and [`MAX_MET`]
/// per token.
#[derive(Debug, Default)]
pub struct MeetingPoint {
    /// Peers under each token, oldest registration first.
    by_token: HashMap<MeetToken, Vec<PeerId>>,
    by_peer: HashMap<PeerId, Vec<MeetToken>>,
}

impl MeetingPoint {
    /// Answers `asker` with the other peers under its tokens, and registers it under them
    /// (replacing what it showed before) if others can reach it through us (`reachable`: it
    /// holds a reservation).
    pub fn meet(&mut self, asker: PeerId, tokens: &[MeetToken], reachable: bool) -> Vec<PeerId> {
        self.leave(&asker);
        let mut met = Vec::new();
        for token in tokens.iter().take(MAX_TOKENS) {
            for peer in self.by_token.get(token).into_iter().flatten() {
                if met.len() < MAX_MET && !met.contains(peer) {
                    met.push(*peer);
                }
            }
        }
        if reachable {
            let mut shown: Vec<MeetToken> = tokens.iter().take(MAX_TOKENS).copied().collect();
            shown.sort_unstable();
            shown.dedup();
            for token in &shown {
                let peers = self.by_token.entry(*token).or_default();
                // Full: the oldest registration goes. An honest member shows its tokens again
                // at its next round; whoever floods a token can do so only in a conversation
                // whose token it holds, that is, its own.
                if peers.len() >= MAX_MET {
                    let gone = peers.remove(0);
                    if let Some(theirs) = self.by_peer.get_mut(&gone) {
                        theirs.retain(|t| t != token);
                    }
                }
                peers.push(asker);
            }
            self.by_peer.insert(asker, shown);
        }
        met
    }

    /// Forgets `peer` (it disconnected, or its reservation ended).
    pub fn leave(&mut self, peer: &PeerId) {
        for token in self.by_peer.remove(peer).unwrap_or_default() {
            if let Some(peers) = self.by_token.get_mut(&token) {
                peers.retain(|p| p != peer);
                if peers.is_empty() {
                    self.by_token.remove(&token);
                }
            }
        }
    }

    /// Registrations held, for the relay's bounds.
    pub fn registrations(&self) -> usize {
        self.by_token.values().map(Vec::len).sum()
    }
}

/// The request-response codec of `/weft/meet/1`: each side reads at most [`MAX_MESSAGE`]
/// bytes and decodes them before handing them on.
#[derive(Clone, Copy, Debug, Default)]
pub struct MeetCodec;

async fn read_bounded<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(MAX_MESSAGE as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > MAX_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "meet message too large"));
    }
    Ok(buf)
}

fn invalid(e: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl request_response::Codec for MeetCodec {
    type Protocol = StreamProtocol;
    type Request = MeetRequest;
    type Response = MeetAnswer;

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<MeetRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        MeetRequest::decode(&read_bounded(io).await?).map_err(invalid)
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<MeetAnswer>
    where
        T: AsyncRead + Unpin + Send,
    {
        MeetAnswer::decode(&read_bounded(io).await?).map_err(invalid)
    }

    async fn write_request<T>(&mut self, _: &Self::Protocol, io: &mut T, req: MeetRequest) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req.encode()).await
    }

    async fn write_response<T>(&mut self, _: &Self::Protocol, io: &mut T, res: MeetAnswer) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&res.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn members_meet_under_a_shared_token_and_nobody_else_does() {
        let mut point = MeetingPoint::default();
        let (alice, bob, stranger) = (peer(), peer(), peer());
        let (ours, theirs) = ([1u8; 16], [2u8; 16]);
        assert!(point.meet(alice, &[ours], true).is_empty(), "nobody yet");
        assert_eq!(point.meet(bob, &[theirs, ours], true), vec![alice]);
        assert_eq!(point.meet(alice, &[ours], true), vec![bob], "and back");
        assert!(point.meet(stranger, &[[3u8; 16]], true).is_empty(), "a token nobody showed");
    }

    /// Every peer of a relay sees a conversation's topic followed; only members can compute its
    /// meet token, and the topic is no meet token.
    #[test]
    fn a_stranger_who_saw_the_topic_meets_nobody() {
        let epoch = crate::group::Epoch::new([0x22; 32], [0x11; 32]);
        let removed_from = crate::group::Epoch::new([0x23; 32], [0x12; 32]);
        let mut point = MeetingPoint::default();
        let (alice, stranger, removed) = (peer(), peer(), peer());
        point.meet(alice, &[epoch.meet_token(20_000)], true);
        assert!(point.meet(stranger, &[epoch.topic(20_000)], true).is_empty());
        assert!(point.meet(removed, &[removed_from.meet_token(20_000)], true).is_empty(), "an ended epoch's token");
        assert!(point.meet(removed, &[epoch.meet_token(19_999)], true).is_empty(), "yesterday's token");
        assert_eq!(point.meet(peer(), &[epoch.meet_token(20_000)], false), vec![alice]);
    }

    #[test]
    fn a_peer_the_relay_cannot_reach_is_answered_but_not_registered() {
        let mut point = MeetingPoint::default();
        let (alice, bob) = (peer(), peer());
        point.meet(alice, &[[1; 16]], true);
        assert_eq!(point.meet(bob, &[[1; 16]], false), vec![alice]);
        assert_eq!(point.registrations(), 1);
        assert!(point.meet(alice, &[[1; 16]], true).is_empty());
    }

    #[test]
    fn a_peer_that_leaves_or_shows_other_tokens_is_forgotten() {
        let mut point = MeetingPoint::default();
        let (alice, bob, carol) = (peer(), peer(), peer());
        point.meet(alice, &[[1; 16]], true);
        point.meet(bob, &[[1; 16]], true);
        point.leave(&alice);
        assert_eq!(point.meet(carol, &[[1; 16]], false), vec![bob]);
        point.meet(bob, &[[2; 16]], true);
        assert!(point.meet(carol, &[[1; 16]], false).is_empty(), "bob's old token went with the new");
        assert_eq!(point.registrations(), 1);
    }

    #[test]
    fn registrations_stay_within_their_bounds_under_a_flood() {
        let mut point = MeetingPoint::default();
        let tokens: Vec<MeetToken> = (0..=255u8).map(|i| [i; 16]).collect();
        for _ in 0..500 {
            point.meet(peer(), &tokens, true);
        }
        // At most MAX_TOKENS tokens per peer, and MAX_MET peers per token.
        assert!(point.by_token.len() <= MAX_TOKENS, "{}", point.by_token.len());
        assert!(point.by_token.values().all(|p| p.len() <= MAX_MET));
        assert!(point.registrations() <= MAX_TOKENS * MAX_MET);
        let answer = point.meet(peer(), &tokens, false);
        assert_eq!(answer.len(), MAX_MET);
    }

    #[test]
    fn messages_read_back_and_junk_is_refused_not_panicked_on() {
        let request = MeetRequest { tokens: vec![[7; 16], [9; 16]] };
        assert_eq!(MeetRequest::decode(&request.encode()).unwrap(), request);
        let answer = MeetAnswer { peers: vec![peer(), peer()] };
        assert_eq!(MeetAnswer::decode(&answer.encode()).unwrap(), answer);
        let too_many = MeetRequest { tokens: vec![[0; 16]; MAX_TOKENS + 1] };
        assert!(matches!(MeetRequest::decode(&too_many.encode()), Err(Error::TooLong { .. })));
        assert!(MeetRequest::decode(&[0, 0, 0, 1, 5]).is_err(), "cut short");
        let mut trailing = request.encode();
        trailing.push(0);
        assert!(matches!(MeetRequest::decode(&trailing), Err(Error::TrailingBytes { .. })));
        let not_a_peer = {
            let mut w = Writer::new();
            w.count(1).bytes(&[0xff; 20]);
            w.into_bytes()
        };
        assert!(matches!(MeetAnswer::decode(&not_a_peer), Err(Error::Malformed { .. })));
        assert!(MeetAnswer::decode(&[0xff, 0xff, 0xff, 0xff]).is_err(), "a count beyond the bytes");
    }
}
