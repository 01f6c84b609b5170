//! Connections that come from another address: a forwarder on loopback that opens its side of
//! each connection from an address of the loopback range other than 127.0.0.1 (Linux routes
//! all of 127.0.0.0/8 to the loopback interface).
//!
//! Every process of a test on one machine dials from 127.0.0.1, so a limit or a ban by address
//! would treat a crowd of attackers and the honest nodes as one neighbour; on a real network
//! they are not. Attackers dial through this and are seen at their own addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, TcpSocket};

pub struct Elsewhere {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Elsewhere {
    /// Listens on a free loopback port and forwards each connection to `target`, opened from
    /// `source` (e.g. 127.0.0.2).
    pub async fn start(source: Ipv4Addr, target: SocketAddr) -> std::io::Result<Elsewhere> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(socket) = TcpSocket::new_v4() else { return };
                    if socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).is_err() {
                        return;
                    }
                    let Ok(mut outbound) = socket.connect(target).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Ok(Elsewhere { addr, task })
    }

    /// `target` (a libp2p address of the forwarded socket, with or without its `/p2p/` part)
    /// as reached through this forwarder.
    pub fn multiaddr(&self, target: &weft_core::net::Multiaddr) -> weft_core::net::Multiaddr {
        use weft_core::net::Protocol;
        let mut out: weft_core::net::Multiaddr =
            format!("/ip4/{}/tcp/{}", self.addr.ip(), self.addr.port()).parse().expect("valid");
        for p in target.iter().filter(|p| matches!(p, Protocol::P2p(_))) {
            out.push(p);
        }
        out
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        self.task.abort();
    }
}
