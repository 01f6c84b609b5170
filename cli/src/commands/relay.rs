//! `weft relay`: a headless relay: circuit relay, Kademlia server and a store-and-forward cache
//! of ciphertext for the topics its peers follow. It holds no account and no keys but its own
//! network key (so clients can list it by peer id).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use weft_core::net::NetConfig;
use weft_core::node::NodeEvent;
use weft_core::relay::CacheLimits;

use super::run::parse_addrs;
use crate::output::Output;

#[derive(clap::Args)]
pub struct Args {
    /// An address to listen on, e.g. /ip4/0.0.0.0/tcp/4001 (repeatable)
    /// [default: the config's [relay] listen]
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Another relay or peer to connect to (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Bytes of ciphertext held in all, in MiB; the oldest go first
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    max_mib: usize,
    /// Bytes held for any one peer, in MiB; a peer's own oldest go first
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    per_peer_mib: usize,
    /// Bytes of files' pieces held in all, in MiB (apart from messages: a file never pushes
    /// a message out)
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    max_file_mib: usize,
    /// Bytes of files' pieces held for any one peer, in MiB
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    per_peer_file_mib: usize,
    /// Hours an envelope is held
    #[arg(long, default_value_t = 14 * 24, value_name = "HOURS")]
    expiry_hours: u64,
}

impl Args {
    /// These flags over the config file's `[relay]`.
    pub fn over(mut self, config: &crate::config::Relay) -> Args {
        super::run::fill(&mut self.listen, &config.listen);
        super::run::fill(&mut self.bootstrap, &config.bootstrap);
        self
    }
}

#[derive(Serialize)]
struct Started {
    peer_id: String,
    listening: Vec<String>,
    cache_bytes: usize,
    cache_envelopes: usize,
}

pub fn run(home_dir: &Path, args: Args, out: &Output) -> Result<()> {
    let limits = CacheLimits {
        max_bytes: args.max_mib << 20,
        max_bytes_per_peer: args.per_peer_mib << 20,
        max_bulk_bytes: args.max_file_mib << 20,
        max_bulk_bytes_per_peer: args.per_peer_file_mib << 20,
        max_age_ms: args.expiry_hours * 3600 * 1000,
    };
    if args.listen.is_empty() {
        anyhow::bail!(
            "a relay needs an address to listen on: --listen /ip4/0.0.0.0/tcp/4001, or [relay] listen in the config"
        );
    }
    let config = NetConfig {
        listen: parse_addrs(&args.listen)?,
        bootstrap: parse_addrs(&args.bootstrap)?,
        mdns: false,
        tick: Duration::from_secs(2),
        ..NetConfig::default()
    };
    let dir = home_dir.join("relay");
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let (net, host) = weft_core::relay::start(&dir, config, limits).await?;
        let mut events = host.subscribe();
        let (bytes, envelopes) = host.usage();
        let started = Started {
            peer_id: net.peer_id().to_string(),
            listening: net.listen_addrs().await.iter().map(|a| format!("{a}/p2p/{}", net.peer_id())).collect(),
            cache_bytes: bytes,
            cache_envelopes: envelopes,
        };
        out.print(&started, || {
            let mut s =
                format!("weft relay {} holding {envelopes} envelopes ({bytes} bytes)\nclients add:\n", started.peer_id);
            for a in &started.listening {
                s.push_str(&format!("  --relay {a}\n"));
            }
            s.push_str("Ctrl-C to stop.");
            s
        });
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                event = events.recv() => match event {
                    Ok(NodeEvent::PeerConnected { peer, .. }) if !out.json => println!("connected to {peer}"),
                    Ok(NodeEvent::PeerDisconnected { peer, .. }) if !out.json => println!("disconnected from {peer}"),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
            }
        }
        net.stop();
        Ok(())
    })
}
