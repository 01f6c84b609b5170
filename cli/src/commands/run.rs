//! `weft run`: the node in the foreground, on the network until Ctrl-C.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use weft_core::mesh::driver::MeshHandle;
use weft_core::net::{Keypair, Multiaddr, NetConfig, NetHandle};
use weft_core::node::{Node, NodeEvent};

use crate::home;
use crate::output::{Message, Output, message_line};

#[derive(clap::Args)]
pub struct Args {
    /// An address to listen on, e.g. /ip4/0.0.0.0/tcp/4001 (repeatable)
    /// [default: every interface, TCP and QUIC, any free port]
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// A peer to connect to at start, e.g. /ip4/192.0.2.7/tcp/4001 (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// A relay to hold our envelopes while we are away and to make us reachable, with its
    /// peer id, e.g. /ip4/192.0.2.9/tcp/4001/p2p/12D3Koo... (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    relay: Vec<String>,
    /// Do not discover peers on the local network with mDNS
    #[arg(long)]
    no_mdns: bool,
    /// Do not use Bluetooth (the mesh that carries messages when there is no network)
    #[arg(long)]
    no_ble: bool,
}

#[derive(Serialize)]
struct Started {
    peer_id: String,
    listening: Vec<String>,
}

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event {
    Message { message: Message, via: &'static str },
    ContactRequest { name: String },
    ContactAnswered { name: String },
    JoinedGroup { name: String },
    PeerConnected { peer: String, via: &'static str },
    PeerDisconnected { peer: String, via: &'static str },
    Delivery { id: String, state: &'static str },
}

pub fn parse_addrs(addrs: &[String]) -> Result<Vec<Multiaddr>> {
    addrs
        .iter()
        .map(|a| a.parse().with_context(|| format!("{a:?} is not a multiaddr (try /ip4/127.0.0.1/tcp/4001)")))
        .collect()
}

pub fn run(home_dir: &Path, args: Args, out: &Output) -> Result<()> {
    if !home_dir.join(weft_core::store::DB_FILE).exists() {
        return Err(weft_core::Error::NoAccount(home_dir.to_path_buf()).into());
    }
    let passphrase = home::passphrase(false)?;
    let mut config = NetConfig { mdns: !args.no_mdns, tick: Duration::from_secs(2), ..NetConfig::default() };
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
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let node = Arc::new(Node::open(home_dir.to_path_buf(), passphrase).await?);
        let mut events = node.subscribe();
        // A fresh network identity each run: peers cannot link this run to the last one.
        let net = Arc::new(weft_core::net::start(node.clone(), config, Keypair::generate_ed25519()).await?);
        let mesh = if args.no_ble { None } else { start_ble(&node).await };
        let control = serve_control(home_dir, node.clone(), net.clone(), mesh.clone()).await?;
        let started = Started {
            peer_id: net.peer_id.to_string(),
            listening: net.listen_addrs().await.iter().map(ToString::to_string).collect(),
        };
        out.print(&started, || {
            let mut s = format!("weft is running as {}\nlistening on:\n", started.peer_id);
            for a in &started.listening {
                s.push_str(&format!("  {a}/p2p/{}\n", started.peer_id));
            }
            s.push_str("Ctrl-C to stop.");
            s
        });
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                event = events.recv() => match event {
                    Ok(event) => print_event(event, out),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => eprintln!("({n} events skipped)"),
                    Err(_) => break,
                },
            }
        }
        control.abort();
        let _ = std::fs::remove_file(crate::control::socket_path(home_dir));
        net.stop();
        Ok(())
    })
}

/// Joins the Bluetooth mesh if this machine has a radio. Without one, says so once and goes on
/// with libp2p alone.
async fn start_ble(node: &Arc<Node>) -> Option<Arc<MeshHandle>> {
    match weft_core::mesh::radio::ble::open().await {
        Ok(radio) => Some(Arc::new(weft_core::mesh::driver::start(
            node.clone(),
            radio,
            weft_core::mesh::RouterConfig::default(),
        ))),
        Err(e) => {
            tracing::warn!("Bluetooth mesh off ({e}); running on libp2p only. Use --no-ble to skip this check.");
            None
        }
    }
}

/// Answers `weft send` and `weft status` from other processes on this home.
#[cfg(unix)]
async fn serve_control(
    home: &Path,
    node: Arc<Node>,
    net: Arc<NetHandle>,
    mesh: Option<Arc<MeshHandle>>,
) -> Result<tokio::task::JoinHandle<()>> {
    use crate::control::{INVALID_PARAMS, METHOD_NOT_FOUND, WEFT_ERROR};
    let fail = |e: weft_core::Error| (WEFT_ERROR, e.to_string(), crate::output::exit_code_of(&e));
    crate::control::serve(home, move |method, params| {
        let (node, net, mesh) = (node.clone(), net.clone(), mesh.clone());
        async move {
            match method.as_str() {
                "send" => {
                    let (Some(to), Some(text)) = (params["conversation"].as_str(), params["text"].as_str()) else {
                        return Err((INVALID_PARAMS, "send needs conversation and text".into(), 2));
                    };
                    let m = node.send(to.to_string(), text.to_string()).await.map_err(fail)?;
                    Ok(serde_json::to_value(Message::from(&m)).expect("plain data"))
                }
                "status" => {
                    let status = net.status().await.map_err(fail)?;
                    let outbox = node.call(|a| a.outbox_len()).await.map_err(fail)?;
                    let mut json = super::status::to_json(&status, outbox);
                    json["mesh"] = match &mesh {
                        Some(m) => {
                            let stats = m.stats();
                            serde_json::json!({
                                "radio": m.radio(),
                                "links": stats.links,
                                "carried_envelopes": stats.carried_envelopes,
                                "carried_bytes": stats.carried_bytes,
                            })
                        }
                        None => serde_json::Value::Null,
                    };
                    Ok(json)
                }
                other => Err((METHOD_NOT_FOUND, format!("no method {other:?} (try send, status)"), 2)),
            }
        }
    })
    .await
}

#[cfg(not(unix))]
async fn serve_control(
    _: &Path,
    _: Arc<Node>,
    _: Arc<NetHandle>,
    _: Option<Arc<MeshHandle>>,
) -> Result<tokio::task::JoinHandle<()>> {
    Ok(tokio::spawn(async {}))
}

fn print_event(event: NodeEvent, out: &Output) {
    let e = match event {
        NodeEvent::MessageReceived { message, via } => {
            if out.json {
                let e = Event::Message { message: Message::from(&message), via };
                println!("{}", serde_json::to_string(&e).expect("plain data"));
            } else {
                println!("{}  {}  (via {via})", message.conversation, message_line(&message));
            }
            return;
        }
        NodeEvent::ContactRequest { name } => Event::ContactRequest { name },
        NodeEvent::ContactAnswered { name } => Event::ContactAnswered { name },
        NodeEvent::JoinedGroup { name } => Event::JoinedGroup { name },
        NodeEvent::PeerConnected { peer, via } => Event::PeerConnected { peer, via },
        NodeEvent::PeerDisconnected { peer, via } => Event::PeerDisconnected { peer, via },
        NodeEvent::DeliveryChanged { id, state } => Event::Delivery { id, state: state.as_str() },
    };
    let text = match &e {
        Event::ContactRequest { name } => {
            format!("contact request from {name} (accept with `weft contact accept {name}`)")
        }
        Event::ContactAnswered { name } => format!("{name} answered: you are now contacts"),
        Event::JoinedGroup { name } => format!("joined the group {name:?}"),
        Event::PeerConnected { peer, via } => format!("connected to {peer} ({via})"),
        Event::PeerDisconnected { peer, via } => format!("disconnected from {peer} ({via})"),
        Event::Delivery { id, state } => format!("message {} {state}", &id[..12.min(id.len())]),
        Event::Message { .. } => unreachable!("printed above"),
    };
    if out.json {
        println!("{}", serde_json::to_string(&e).expect("plain data"));
    } else {
        println!("{text}");
    }
}
