//! `weft status`: what the node on this home is doing — from the running node if there is one,
//! or from the store (the outbox) if there is none.

use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};
use weft_core::net::NetStatus;

use crate::output::Output;

/// The status as `weft run` answers it on its control socket.
pub fn to_json(net: &NetStatus, outbox: usize) -> Value {
    json!({
        "running": true,
        "peer_id": net.peer_id,
        "listening": net.listening,
        "peers": net.peers.iter().map(|p| json!({
            "peer": p.peer, "transport": weft_core::net::VIA, "addr": p.addr, "relayed": p.relayed,
        })).collect::<Vec<_>>(),
        "relays": net.relays.iter().map(|r| json!({
            "addr": r.addr, "connected": r.connected, "reserved": r.reserved,
        })).collect::<Vec<_>>(),
        "topics": net.topics,
        "sync": { "reconciling": net.sync.reconciling, "wanted": net.sync.wanted, "fetched": net.sync.fetched },
        "outbox": outbox,
    })
}

pub fn run(home_dir: &Path, out: &Output) -> Result<()> {
    let status = crate::backend::call(home_dir, "status", json!({}))?;
    out.print(&status, || text(&status));
    Ok(())
}

fn text(status: &Value) -> String {
    let outbox = status["outbox"].as_u64().unwrap_or(0);
    if status["starting"] == json!(true) {
        return format!("The node on this home is starting; its network is not up yet.\noutbox: {outbox} waiting");
    }
    if status["running"] != json!(true) {
        return format!("No node is running on this home (start one with `weft run`).\noutbox: {outbox} waiting");
    }
    let empty = Vec::new();
    let peers = status["peers"].as_array().unwrap_or(&empty);
    let mut s = format!("running as {}\n", status["peer_id"].as_str().unwrap_or("?"));
    s.push_str(&format!("peers: {} ({} libp2p)\n", peers.len(), peers.len()));
    for p in peers {
        let how = if p["relayed"] == json!(true) { " via a relay" } else { "" };
        s.push_str(&format!("  {}  {}{how}\n", p["peer"].as_str().unwrap_or("?"), p["addr"].as_str().unwrap_or("?")));
    }
    for r in status["relays"].as_array().unwrap_or(&empty) {
        let state = match (r["connected"] == json!(true), r["reserved"] == json!(true)) {
            (true, true) => "connected, reachable through it",
            (true, false) => "connected",
            _ => "not connected",
        };
        s.push_str(&format!("relay {}: {state}\n", r["addr"].as_str().unwrap_or("?")));
    }
    match status["mesh"].as_object() {
        Some(m) => s.push_str(&format!(
            "bluetooth mesh ({}): {} links, carrying {} envelopes for others ({} bytes)\n",
            m["radio"].as_str().unwrap_or("?"),
            m["links"],
            m["carried_envelopes"],
            m["carried_bytes"]
        )),
        None => s.push_str("bluetooth mesh: off\n"),
    }
    let sync = &status["sync"];
    let catching_up = if sync["reconciling"] == json!(0) && sync["wanted"] == json!(0) {
        "caught up".to_owned()
    } else {
        format!("catching up ({} reconciliations open, {} envelopes to fetch)", sync["reconciling"], sync["wanted"])
    };
    s.push_str(&format!("sync: {catching_up}; {} envelopes fetched since start\n", sync["fetched"]));
    s.push_str(&format!("topics followed: {}\noutbox: {outbox} waiting for a peer", status["topics"]));
    s
}
