//! In-process nodes on loopback for the network scenarios.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use weft_core::account::Account;
use weft_core::crypto::OsEntropy;
use weft_core::net::{Keypair, Multiaddr, NetConfig, NetHandle};
use weft_core::node::Node;
use weft_core::store::DatabaseKey;

/// The database key of `name`'s home in these tests (as an app's keystore would hand it over).
pub fn key_of(name: &str) -> [u8; 32] {
    let mut k = [7u8; 32];
    for (i, b) in name.bytes().enumerate() {
        k[i % 32] ^= b.rotate_left(i as u32);
    }
    k
}

/// Logs to stderr as `RUST_LOG` asks (e.g. `RUST_LOG=weft_core=debug`); quiet by default.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Creates `name`'s account under `dir` and runs it as a node.
pub async fn create(dir: &Path, name: &str) -> Arc<Node> {
    create_with_clock(dir, name, &Clock::default()).await
}

/// A clock that tests move forward: the system's time plus an offset, shared by every node
/// and relay made with it, so that "three days later" takes no time.
#[derive(Clone, Default)]
pub struct Clock(Arc<AtomicU64>);

impl Clock {
    pub fn now_ms(&self) -> u64 {
        let system = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        system as u64 + self.0.load(Ordering::SeqCst)
    }

    /// Moves every holder of this clock `days` days ahead.
    pub fn advance_days(&self, days: u64) {
        self.0.fetch_add(days * 24 * 60 * 60 * 1000, Ordering::SeqCst);
    }

    /// Moves every holder of this clock ahead to the next time it is `hour` o'clock (UTC).
    pub fn advance_to_hour(&self, hour: u64) {
        self.advance_to(hour, 0);
    }

    /// Moves every holder of this clock ahead to the next time it is `hour`:`minute` (UTC).
    pub fn advance_to(&self, hour: u64, minute: u64) {
        const DAY: u64 = 24 * 60 * 60 * 1000;
        let into = self.now_ms() % DAY;
        let at = (hour * 60 + minute) * 60 * 1000;
        self.0.fetch_add((at + DAY - into) % DAY, Ordering::SeqCst);
    }

    /// As an account's clock.
    pub fn for_account(&self) -> weft_core::account::Clock {
        let clock = self.clone();
        Box::new(move || clock.now_ms())
    }

    /// As a relay's or a mesh driver's clock.
    pub fn shared(&self) -> weft_core::clock::SharedClock {
        let clock = self.clone();
        Arc::new(move || clock.now_ms())
    }
}

/// Creates `name`'s account under `dir`, on `clock`'s time, and runs it as a node.
pub async fn create_with_clock(dir: &Path, name: &str, clock: &Clock) -> Arc<Node> {
    init_logging();
    let (home, name, clock) = (dir.join(name), name.to_string(), clock.for_account());
    let node = Node::start(move || {
        Account::create_with_key(
            &home,
            &DatabaseKey::from_bytes(key_of(&name)),
            Some(&name),
            Box::new(OsEntropy),
            clock,
        )
    })
    .await
    .expect("creating a node");
    Arc::new(node)
}

/// Opens `name`'s existing account under `dir` again (after a crash or a stop).
pub async fn reopen(dir: &Path, name: &str) -> Arc<Node> {
    Arc::new(Node::open_with_key(dir.join(name), key_of(name)).await.expect("reopening a node"))
}

/// A relay in this process (its cache in `dir/relay`), on loopback and on `clock`'s time; with
/// its address, peer id included.
pub async fn relay_with_clock(dir: &Path, clock: &Clock) -> (NetHandle, Arc<weft_core::relay::RelayHost>, Multiaddr) {
    let (net, relay) = weft_core::relay::start_with_clock(
        &dir.join("relay"),
        config(vec![], vec![]),
        weft_core::relay::CacheLimits::default(),
        clock.shared(),
    )
    .await
    .expect("starting a relay");
    let addr = net.listen_addrs().await[0].clone().with_p2p(net.peer_id()).expect("a plain address");
    (net, relay, addr)
}

/// Loopback TCP only, no mDNS, a fast tick.
pub fn config(bootstrap: Vec<Multiaddr>, relays: Vec<Multiaddr>) -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid")],
        bootstrap,
        relays,
        mdns: false,
        tick: Duration::from_millis(200),
        ..NetConfig::default()
    }
}

/// Starts the network for `node` with a fresh peer id; returns it with its first address.
pub async fn online(node: &Arc<Node>, config: NetConfig) -> (NetHandle, Multiaddr) {
    let net = weft_core::net::start(node.clone(), config, Keypair::generate_ed25519()).await.expect("starting libp2p");
    let addr = net.listen_addrs().await[0].clone();
    (net, addr)
}

/// `sender: body` of the text messages of a conversation, in its order.
pub async fn texts(node: &Node, conversation: &str) -> Vec<String> {
    node.history(conversation.into(), 100_000)
        .await
        .expect("history")
        .into_iter()
        .filter(|m| m.kind == "text")
        .map(|m| format!("{}: {}", m.sender, m.body))
        .collect()
}

/// Waits (bounded: `secs`, generous for loaded CI machines) until `check` holds.
pub async fn eventually<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// Makes two nodes contacts without a network (bundles carried by hand).
pub async fn introduce(a: &Node, b: &Node) {
    a.add_contact(b.link().await.expect("link"), None).await.expect("add contact");
    b.import_bundle(a.export_bundle().await.expect("export")).await.expect("import");
    let a_name = a.call(|acc| Ok(acc.name().unwrap_or_default().to_string())).await.expect("name");
    b.accept_contact(a_name).await.expect("accept");
    a.import_bundle(b.export_bundle().await.expect("export")).await.expect("import");
}

/// Everything that must never cross the wire in clear about these nodes: each one's account,
/// device and request keys and name (the caller adds group ids, group names, message words).
pub async fn secrets_of(nodes: &[&Arc<Node>]) -> Vec<(String, Vec<u8>)> {
    let mut secrets = Vec::new();
    for node in nodes {
        let (name, account, device, request) = node
            .call(|a| {
                Ok((a.name().unwrap_or_default().to_string(), a.account_public(), a.device_id(), a.card().request_key))
            })
            .await
            .expect("reading keys");
        secrets.push((format!("{name}'s account key"), account.to_vec()));
        secrets.push((format!("{name}'s device key"), device.to_vec()));
        secrets.push((format!("{name}'s request key"), request.to_vec()));
        secrets.push((format!("{name}'s name"), name.into_bytes()));
    }
    secrets
}
