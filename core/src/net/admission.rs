//! Who may connect: a cap on connections per remote IP address, and bans by address.
//!
//! A libp2p peer id costs nothing to make, so a limit or a ban by peer id is sidestepped by
//! reconnecting under a new one; an IP address costs the attacker something. Totals (pending
//! and established connections, per peer) are libp2p's `connection_limits`; this adds what it
//! lacks. The bookkeeping is [`IpCounts`], a plain value tested without sockets; [`Admission`]
//! is the behaviour that feeds it the swarm's events.

use std::collections::HashMap;
use std::net::IpAddr;
use std::task::{Context, Poll};
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// The remote IP address of a direct connection; `None` for a relayed one (its address is the
/// relay's, shared by everyone it carries).
pub fn remote_ip(addr: &Multiaddr) -> Option<IpAddr> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The address has as many connections as one address may have.
    AddressFull,
    /// The address is banned for a while.
    AddressBanned,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::AddressFull => "too many connections from this address",
            Refused::AddressBanned => "this address is banned for a while",
        })
    }
}

impl std::error::Error for Refused {}

/// Connections and bans per remote IP address.
#[derive(Debug)]
pub struct IpCounts {
    per_ip: u32,
    /// Peers banned from one address before the address itself is banned: a few peers behind
    /// one NAT may misbehave by accident, a stream of fresh ids from one address does not.
    bans_per_ip: u32,
    established: HashMap<IpAddr, u32>,
    /// Peers banned from each address, and until when the latest ban lasts.
    bans: HashMap<IpAddr, (u32, Instant)>,
}

impl IpCounts {
    pub fn new(per_ip: u32, bans_per_ip: u32) -> Self {
        IpCounts { per_ip, bans_per_ip, established: HashMap::new(), bans: HashMap::new() }
    }

    /// Whether a connection from `ip` may be opened now.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Result<(), Refused> {
        if self.bans.get(&ip).is_some_and(|(n, until)| *n >= self.bans_per_ip && *until > now) {
            return Err(Refused::AddressBanned);
        }
        if self.established.get(&ip).copied().unwrap_or(0) >= self.per_ip {
            return Err(Refused::AddressFull);
        }
        Ok(())
    }

    pub fn opened(&mut self, ip: IpAddr) {
        *self.established.entry(ip).or_default() += 1;
    }

    pub fn closed(&mut self, ip: IpAddr) {
        if let Some(n) = self.established.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.established.remove(&ip);
            }
        }
    }

    /// A peer from `ip` was banned until `until`: enough of them and the address is banned too.
    pub fn peer_banned(&mut self, ip: IpAddr, until: Instant) {
        let entry = self.bans.entry(ip).or_insert((0, until));
        entry.0 += 1;
        entry.1 = entry.1.max(until);
    }

    /// Forgets bans that ended.
    pub fn expire(&mut self, now: Instant) {
        self.bans.retain(|_, (_, until)| *until > now);
    }

    /// Addresses with connections open now (for tests and status).
    pub fn addresses(&self) -> usize {
        self.established.len()
    }
}

/// The behaviour that enforces [`IpCounts`] on inbound connections.
pub struct Admission {
    pub counts: IpCounts,
    /// The address of each direct connection counted, to uncount it when it closes.
    open: HashMap<ConnectionId, IpAddr>,
}

impl Admission {
    pub fn new(per_ip: u32, bans_per_ip: u32) -> Self {
        Admission { counts: IpCounts::new(per_ip, bans_per_ip), open: HashMap::new() }
    }

    /// Records that `peer`, connected from `addr`, was banned until `until`.
    pub fn peer_banned(&mut self, addr: &Multiaddr, until: Instant) {
        if let Some(ip) = remote_ip(addr) {
            self.counts.peer_banned(ip, until);
        }
    }

    pub fn expire(&mut self) {
        self.counts.expire(Instant::now());
    }
}

impl NetworkBehaviour for Admission {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        match remote_ip(remote_addr) {
            Some(ip) => self.counts.admit(ip, Instant::now()).map_err(ConnectionDenied::new),
            None => Ok(()),
        }
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if let Some(ip) = remote_ip(remote_addr) {
            self.counts.admit(ip, Instant::now()).map_err(ConnectionDenied::new)?;
            self.counts.opened(ip);
            self.open.insert(connection_id, ip);
        }
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Whom we dial is our choice; only what dials us is counted.
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, endpoint, .. }) = event
            && matches!(endpoint, ConnectedPoint::Listener { .. })
            && let Some(ip) = self.open.remove(&connection_id)
        {
            self.counts.closed(ip);
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS_BAN: Duration = Duration::from_secs(600);

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn an_address_gets_at_most_its_share_of_connections() {
        let now = Instant::now();
        let mut counts = IpCounts::new(2, 4);
        for _ in 0..2 {
            counts.admit(ip(1), now).unwrap();
            counts.opened(ip(1));
        }
        assert_eq!(counts.admit(ip(1), now), Err(Refused::AddressFull));
        assert_eq!(counts.admit(ip(2), now), Ok(()), "other addresses are not affected");
        counts.closed(ip(1));
        assert_eq!(counts.admit(ip(1), now), Ok(()), "a closed connection frees its place");
        counts.closed(ip(1));
        counts.closed(ip(1));
        assert_eq!(counts.addresses(), 0);
    }

    #[test]
    fn fresh_peer_ids_from_one_address_get_the_address_banned() {
        let now = Instant::now();
        let mut counts = IpCounts::new(8, 4);
        for _ in 0..3 {
            counts.peer_banned(ip(1), now + ADDRESS_BAN);
        }
        assert_eq!(counts.admit(ip(1), now), Ok(()), "a few bans behind one NAT do not shut it out");
        counts.peer_banned(ip(1), now + ADDRESS_BAN);
        assert_eq!(counts.admit(ip(1), now), Err(Refused::AddressBanned));
        assert_eq!(counts.admit(ip(2), now), Ok(()));
        counts.expire(now + ADDRESS_BAN + Duration::from_secs(1));
        assert_eq!(counts.admit(ip(1), now + ADDRESS_BAN + Duration::from_secs(1)), Ok(()), "bans end");
    }

    #[test]
    fn relayed_connections_are_not_counted_against_the_relay() {
        let relayed: Multiaddr =
            "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWGzXzcbqxxpcsiBS9i1PFkUtbsQMfUwgmuqSL9aCUHDJm/p2p-circuit"
                .parse()
                .unwrap();
        assert_eq!(remote_ip(&relayed), None);
        let direct: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        assert_eq!(remote_ip(&direct), Some(ip(1)));
    }
}
