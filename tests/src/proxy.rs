//! A TCP proxy on loopback between two nodes: it can cut the link (a partition) and heal it,
//! and it records every byte that crosses, so tests can check what an observer of the wire
//! sees.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: SocketAddr,
    open: watch::Sender<bool>,
    captured: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (open, open_rx) = watch::channel(true);
        let captured = Arc::new(Mutex::new(Vec::new()));
        let capture = captured.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !*open_rx.borrow() {
                    continue; // dropped: the far side is unreachable
                }
                let Ok(outbound) = TcpStream::connect(target).await else { continue };
                tokio::spawn(pipe(inbound, outbound, open_rx.clone(), capture.clone()));
            }
        });
        Proxy { addr, open, captured, task }
    }

    /// The proxy as a libp2p address.
    pub fn multiaddr(&self) -> weft_core::net::Multiaddr {
        format!("/ip4/{}/tcp/{}", self.addr.ip(), self.addr.port()).parse().expect("valid")
    }

    /// Cuts every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn heal(&self) {
        self.open.send_replace(true);
    }

    /// Every byte that crossed, both directions, in arrival order.
    pub fn captured(&self) -> Vec<u8> {
        self.captured.lock().expect("capture").clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(a: TcpStream, b: TcpStream, mut open: watch::Receiver<bool>, capture: Arc<Mutex<Vec<u8>>>) {
    let (mut ar, mut aw) = a.into_split();
    let (mut br, mut bw) = b.into_split();
    let (mut buf_a, mut buf_b) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        tokio::select! {
            changed = open.changed() => {
                let still_open = changed.is_ok() && *open.borrow();
                if !still_open { return }
            }
            n = ar.read(&mut buf_a) => {
                let Ok(n @ 1..) = n else { return };
                capture.lock().expect("capture").extend_from_slice(&buf_a[..n]);
                if bw.write_all(&buf_a[..n]).await.is_err() { return }
            }
            n = br.read(&mut buf_b) => {
                let Ok(n @ 1..) = n else { return };
                capture.lock().expect("capture").extend_from_slice(&buf_b[..n]);
                if aw.write_all(&buf_b[..n]).await.is_err() { return }
            }
        }
    }
}
