//! `weft run`: the node in the foreground, on the network until Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use weft_core::mesh::driver::MeshHandle;
use weft_core::net::{Keypair, Multiaddr, NetConfig};
use weft_core::node::{Node, NodeEvent};

use crate::output::MessageLines;
use crate::output::Output;
use crate::rpc::Api;
use crate::rpc::event::Event;

/// Where the network flags are listed in `--help`.
const NETWORK: &str = "Network (defaults from the config's [network])";

/// How a command that goes on the network reaches it.
#[derive(clap::Args, Clone, Default)]
pub struct NetworkArgs {
    /// An address to listen on, e.g. /ip4/0.0.0.0/tcp/4001 (repeatable)
    /// [default: every interface, TCP and QUIC, any free port]
    #[arg(long, value_name = "MULTIADDR", help_heading = NETWORK)]
    listen: Vec<String>,
    /// A peer to connect to at start, e.g. /ip4/192.0.2.7/tcp/4001 (repeatable)
    #[arg(long, value_name = "MULTIADDR", help_heading = NETWORK)]
    bootstrap: Vec<String>,
    /// A relay to hold our envelopes while we are away and to make us reachable, with its
    /// peer id, e.g. /ip4/192.0.2.9/tcp/4001/p2p/12D3Koo... (repeatable)
    #[arg(long, value_name = "MULTIADDR", help_heading = NETWORK)]
    relay: Vec<String>,
    /// Do not discover peers on the local network with mDNS
    #[arg(long, help_heading = NETWORK)]
    no_mdns: bool,
    /// Do not connect directly to members behind NATs (hole punching through a relay): no
    /// member learns this machine's IP address; the relay carries everything
    #[arg(long, help_heading = NETWORK)]
    no_hole_punching: bool,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Do not use Bluetooth (the mesh that carries messages when there is no network)
    #[arg(long, help_heading = NETWORK)]
    pub no_ble: bool,
    /// Mesh with every `weft` on this machine given the same folder (over Unix sockets), in
    /// place of Bluetooth: the mesh between processes, for trying it and testing it with no
    /// adapter
    #[arg(long, value_name = "DIR", help_heading = NETWORK)]
    pub mesh_dir: Option<PathBuf>,
}

#[derive(Serialize)]
struct Started {
    peer_id: String,
    listening: Vec<String>,
}

pub fn parse_addrs(addrs: &[String]) -> Result<Vec<Multiaddr>> {
    addrs
        .iter()
        .map(|a| a.parse().with_context(|| format!("{a:?} is not a multiaddr (try /ip4/127.0.0.1/tcp/4001)")))
        .collect()
}

/// `weft run`: prints what happens, for a person watching the terminal.
pub fn run(home_dir: &Path, args: Args, out: &Output) -> Result<()> {
    serve(home_dir, args, out, Mode::Foreground)
}

/// `weft daemon`: the same node with nobody watching: what happens goes to the log (tracing,
/// `RUST_LOG`), and clients follow events by subscribing on the socket.
pub fn daemon(home_dir: &Path, args: Args, out: &Output) -> Result<()> {
    serve(home_dir, args, out, Mode::Daemon)
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Foreground,
    Daemon,
}

impl Args {
    /// These flags over the config file's `[network]`: a flag given wins; a list given on the
    /// command line replaces the file's.
    pub fn over(mut self, config: &crate::config::Network) -> Args {
        self.network = self.network.over(config);
        self.no_ble |= config.bluetooth == Some(false);
        self
    }
}

impl NetworkArgs {
    /// These flags over the config file's `[network]`, as [`Args::over`].
    pub fn over(mut self, config: &crate::config::Network) -> NetworkArgs {
        fill(&mut self.listen, &config.listen);
        fill(&mut self.bootstrap, &config.bootstrap);
        fill(&mut self.relay, &config.relays);
        self.no_mdns |= config.mdns == Some(false);
        self.no_hole_punching |= config.hole_punching == Some(false);
        self
    }
}

pub fn fill(flag: &mut Vec<String>, config: &[String]) {
    if flag.is_empty() {
        flag.extend_from_slice(config);
    }
}

/// The network settings `args` ask for.
pub fn net_config(args: &NetworkArgs) -> Result<NetConfig> {
    let mut config = NetConfig {
        mdns: !args.no_mdns,
        hole_punching: !args.no_hole_punching,
        tick: Duration::from_secs(2),
        ..NetConfig::default()
    };
    if !args.listen.is_empty() {
        config.listen = parse_addrs(&args.listen)?;
    }
    config.bootstrap = parse_addrs(&args.bootstrap)?;
    config.relays = parse_addrs(&args.relay)?;
    if let Some(bad) = config.relays.iter().find(|a| !a.iter().any(|p| matches!(p, weft_core::net::Protocol::P2p(_)))) {
        anyhow::bail!(
            "the relay address {bad} lacks the relay's /p2p/ID (the relay prints its full addresses on start)"
        );
    }
    Ok(config)
}

fn serve(home_dir: &Path, args: Args, out: &Output, mode: Mode) -> Result<()> {
    let passphrase = crate::passphrase::for_home(home_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let (local, mut events) = LocalNode::start(home_dir, passphrase, &args).await?;
        let net = local.net().clone();
        let started = Started {
            peer_id: net.peer_id().to_string(),
            listening: net.listen_addrs().await.iter().map(ToString::to_string).collect(),
        };
        out.print(&started, || {
            let mut s = format!("weft is running as {}\nlistening on:\n", started.peer_id);
            for a in &started.listening {
                s.push_str(&format!("  {a}/p2p/{}\n", started.peer_id));
            }
            if mode == Mode::Daemon {
                s.push_str(&format!(
                    "serving JSON-RPC on {} (other weft commands use it)\n",
                    crate::control::socket_path(home_dir).display()
                ));
            }
            s.push_str("Ctrl-C to stop.");
            s
        });
        tracing::info!(peer_id = %started.peer_id, "node started");
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = terminated() => break,
                event = events.recv() => match event {
                    Ok(event) if mode == Mode::Daemon => log_event(event),
                    Ok(event) => print_event(event, out),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => eprintln!("({n} events skipped)"),
                    Err(_) => break,
                },
            }
        }
        local.stop();
        tracing::info!("node stopped");
        Ok(())
    })
}

/// A node this process runs on a home: the account, the control socket that other `weft`
/// commands use, libp2p, and the Bluetooth mesh when there is a radio.
pub struct LocalNode {
    pub api: Arc<Api>,
    control: tokio::task::JoinHandle<()>,
    home: std::path::PathBuf,
}

impl LocalNode {
    /// Opens the home and starts everything. The socket is served as soon as the account is
    /// open, before the network, so a command run meanwhile is answered rather than finding the
    /// home locked and no socket. The node's events come with it, from before the network
    /// started, so none is missed.
    pub async fn start(
        home_dir: &Path,
        passphrase: String,
        args: &Args,
    ) -> Result<(LocalNode, tokio::sync::broadcast::Receiver<NodeEvent>)> {
        let config = net_config(&args.network)?;
        let node = Arc::new(Node::open(home_dir.to_path_buf(), passphrase).await?);
        let events = node.subscribe();
        let api = Arc::new(Api::networked(node.clone()));
        let control = serve_control(home_dir, api.clone()).await?;
        let local = LocalNode { api, control, home: home_dir.to_path_buf() };
        // A fresh network identity each run: peers cannot link this run to the last one.
        let net = match weft_core::net::start(node.clone(), config, Keypair::generate_ed25519()).await {
            Ok(net) => Arc::new(net),
            Err(e) => {
                local.stop();
                return Err(e.into());
            }
        };
        let _ = local.api.net.set(net);
        if let Some(dir) = &args.mesh_dir {
            match start_socket_mesh(&node, dir) {
                Ok(mesh) => {
                    let _ = local.api.mesh.set(mesh);
                }
                Err(e) => {
                    local.stop();
                    return Err(e);
                }
            }
        } else if !args.no_ble {
            match start_ble(&node).await {
                Ok(mesh) => {
                    let _ = local.api.mesh.set(mesh);
                }
                Err(why) => {
                    let _ = local.api.mesh_off.set(why);
                }
            }
        }
        Ok((local, events))
    }

    pub fn net(&self) -> &Arc<weft_core::net::NetHandle> {
        self.api.net.get().expect("the network is set when start returns")
    }

    /// Stops serving the socket and the network. (The node closes when the last `Arc` goes.)
    pub fn stop(self) {
        self.control.abort();
        let _ = std::fs::remove_file(crate::control::socket_path(&self.home));
        if let Some(net) = self.api.net.get() {
            net.stop();
        }
    }
}

/// Joins the Bluetooth mesh if this machine has a radio. Without one, says so once and goes on
/// with libp2p alone; the reason is returned for `status`.
pub async fn start_ble(node: &Arc<Node>) -> std::result::Result<Arc<MeshHandle>, String> {
    match weft_core::mesh::radio::ble::open().await {
        Ok(radio) => {
            if let Some(report) = weft_core::mesh::radio::Radio::report(&radio) {
                // Which roles run, and why one does not: one line each way.
                tracing::info!("Bluetooth mesh on ({})", report());
            }
            Ok(Arc::new(weft_core::mesh::driver::start(node.clone(), radio, weft_core::mesh::RouterConfig::default())))
        }
        Err(e) => {
            tracing::warn!("Bluetooth mesh off ({e}); running on libp2p only. Use --no-ble to skip this check.");
            Err(e.to_string())
        }
    }
}

/// Joins the mesh of the nodes listening in `dir` (see `--mesh-dir`).
#[cfg(unix)]
fn start_socket_mesh(node: &Arc<Node>, dir: &Path) -> Result<Arc<MeshHandle>> {
    let radio = weft_core::mesh::radio::socket::open(dir)?;
    tracing::info!("mesh over the sockets in {} (no Bluetooth)", dir.display());
    Ok(Arc::new(weft_core::mesh::driver::start(node.clone(), radio, weft_core::mesh::RouterConfig::default())))
}

#[cfg(not(unix))]
fn start_socket_mesh(_: &Arc<Node>, _: &Path) -> Result<Arc<MeshHandle>> {
    anyhow::bail!("--mesh-dir needs Unix sockets, which this system does not have")
}

/// Serves every method to other `weft` commands and to scripts on this home.
#[cfg(unix)]
async fn serve_control(home: &Path, api: Arc<Api>) -> Result<tokio::task::JoinHandle<()>> {
    crate::control::server::serve(home, api).await
}

#[cfg(not(unix))]
async fn serve_control(_: &Path, _: Arc<Api>) -> Result<tokio::task::JoinHandle<()>> {
    Ok(tokio::spawn(async {}))
}

/// SIGTERM (what `kill` and service managers send) stops the node as Ctrl-C does.
async fn terminated() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        term.recv().await;
        return;
    }
    std::future::pending::<()>().await
}

fn log_event(event: NodeEvent) {
    match Event::from(event) {
        // Message text stays out of logs.
        Event::Message { message, via } => {
            tracing::info!(conversation = %message.conversation, id = %message.id, %via, "message received")
        }
        Event::ContactRequest { name } => tracing::info!(%name, "contact request"),
        Event::ContactAnswered { name } => tracing::info!(%name, "contact answered"),
        Event::JoinedGroup { name } => tracing::info!(%name, "joined a group"),
        Event::PeerConnected { peer, via } => tracing::debug!(%peer, %via, "peer connected"),
        Event::PeerDisconnected { peer, via } => tracing::debug!(%peer, %via, "peer disconnected"),
        Event::Delivery { id, state } => tracing::debug!(%id, %state, "delivery"),
        Event::Resealed { old_id, new_id } => tracing::info!(%old_id, %new_id, "a queued message was sealed again"),
        Event::LinkRequested { name, code, .. } => tracing::info!(%name, %code, "a new device asks to join"),
        Event::Attachment { message, have, total } => tracing::debug!(%message, have, total, "a file's piece"),
        // What strangers write stays out of logs.
        Event::Nearby { hops, .. } => tracing::debug!(hops, "a nearby message"),
        Event::ThisDeviceRevoked => tracing::warn!("this device was revoked by its account"),
        Event::Lagged { missed } => tracing::warn!(missed, "events skipped"),
    }
}

/// What a revoked device says, in `weft run` and the chat.
pub const REVOKED_NOTICE: &str = "this device was revoked by your account (from your phone or first device): it reads \
     and sends nothing more; to use it again, remove its home and link it anew with `weft init --join`";

fn print_event(event: NodeEvent, out: &Output) {
    let e = Event::from(event);
    if out.json {
        println!("{}", serde_json::to_string(&e).expect("plain data"));
        return;
    }
    let short = |id: &str| id[..12.min(id.len())].to_owned();
    let text = match &e {
        Event::Message { message, via } => format!("{}  {}  (via {via})", message.conversation, message.line()),
        Event::ContactRequest { name } => {
            format!("contact request from {name} (accept with `weft contact accept {name}`)")
        }
        Event::ContactAnswered { name } => format!("{name} answered: you are now contacts"),
        Event::JoinedGroup { name } => format!("joined the group {name:?}"),
        Event::PeerConnected { peer, via } => format!("connected to {peer} ({via})"),
        Event::PeerDisconnected { peer, via } => format!("disconnected from {peer} ({via})"),
        Event::Delivery { id, state } => format!("message {} {state}", short(id)),
        Event::Resealed { old_id, new_id } => {
            format!("message {} waited past its day and was sealed again as {}", short(old_id), short(new_id))
        }
        Event::LinkRequested { name, code, .. } => format!(
            "the device {name:?} asks to join this account: if its screen shows {code}, grant it with \
             `weft device accept --code {}`",
            code.replace(' ', "")
        ),
        Event::Attachment { message, have, total } if have >= total => {
            format!("the file of message {} is here (save it with `weft save {}`)", short(message), short(message))
        }
        Event::Attachment { .. } => return,
        Event::Nearby { name, text, hops, .. } => format!("nearby  {name}: {text}  ({hops} hops)"),
        Event::ThisDeviceRevoked => REVOKED_NOTICE.to_owned(),
        Event::Lagged { missed } => format!("({missed} events skipped)"),
    };
    println!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Network;

    fn args(listen: &[&str], bootstrap: &[&str], no_mdns: bool) -> Args {
        Args {
            network: NetworkArgs {
                listen: listen.iter().map(|s| s.to_string()).collect(),
                bootstrap: bootstrap.iter().map(|s| s.to_string()).collect(),
                relay: Vec::new(),
                no_mdns,
                no_hole_punching: false,
            },
            no_ble: false,
            mesh_dir: None,
        }
    }

    #[test]
    fn flags_replace_the_configs_lists_and_the_config_fills_the_rest() {
        let config = Network {
            listen: vec!["/ip4/0.0.0.0/tcp/4001".into()],
            bootstrap: vec!["/ip4/192.0.2.7/tcp/4001".into()],
            relays: vec!["/ip4/198.51.100.2/tcp/4001/p2p/12D3KooWExample".into()],
            mdns: Some(false),
            hole_punching: None,
            bluetooth: Some(false),
        };
        let merged = args(&["/ip4/127.0.0.1/tcp/0"], &[], false).over(&config);
        assert_eq!(merged.network.listen, vec!["/ip4/127.0.0.1/tcp/0"], "a flag replaces the file's list");
        assert_eq!(merged.network.bootstrap, config.bootstrap, "the file fills what no flag gave");
        assert_eq!(merged.network.relay, config.relays);
        assert!(merged.network.no_mdns && merged.no_ble, "the file can turn mDNS and Bluetooth off");
        let merged = args(&[], &["/ip4/203.0.113.1/tcp/1"], true).over(&Network::default());
        assert_eq!((merged.network.listen.len(), merged.network.bootstrap.len(), merged.network.no_mdns), (0, 1, true));
    }
}
