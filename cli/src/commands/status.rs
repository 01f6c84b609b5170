//! `weft status`: what the node on this home is doing — from the running node if there is one,
//! or from the store (the outbox) if there is none.

use std::path::Path;

use anyhow::Result;

use crate::output::Output;
use crate::rpc::answer::Status;
use crate::rpc::request::ShowStatus;

pub fn run(home_dir: &Path, out: &Output) -> Result<()> {
    let status = crate::backend::call(home_dir, ShowStatus {})?;
    out.print(&status, || text(&status));
    Ok(())
}

fn text(status: &Status) -> String {
    let outbox = status.outbox;
    let net = match &status.network {
        Some(net) => net,
        None if status.starting => {
            return format!("The node on this home is starting; its network is not up yet.\noutbox: {outbox} waiting");
        }
        None => {
            return format!("No node is running on this home (start one with `weft run`).\noutbox: {outbox} waiting");
        }
    };
    let mut s = format!("running as {}\n", net.peer_id);
    s.push_str(&format!("peers: {} ({} libp2p)\n", net.peers.len(), net.peers.len()));
    for p in &net.peers {
        let how = if p.relayed { "through a relay's circuit" } else { "direct" };
        s.push_str(&format!("  {}  {}  ({how})\n", p.peer, p.addr));
    }
    for r in &net.relays {
        let state = match (r.connected, r.reserved) {
            (true, true) => "connected, reachable through it",
            (true, false) => "connected",
            _ => "not connected",
        };
        s.push_str(&format!("relay {}: {state}\n", r.addr));
    }
    match &net.mesh {
        Some(m) => {
            s.push_str(&format!(
                "bluetooth mesh ({}): {} links, carrying {} envelopes for others ({} bytes)\n",
                m.radio, m.links, m.carried_envelopes, m.carried_bytes
            ));
            for r in &m.roles {
                match &r.off_because {
                    None => s.push_str(&format!("  as {}: {} links\n", r.role, r.links)),
                    Some(why) => s.push_str(&format!("  as {}: off ({why})\n", r.role)),
                }
            }
        }
        None => match &net.mesh_off {
            Some(why) => s.push_str(&format!("bluetooth mesh: off ({why})\n")),
            None => s.push_str("bluetooth mesh: off\n"),
        },
    }
    let sync = &net.sync;
    let catching_up = if sync.reconciling == 0 && sync.wanted == 0 {
        "caught up".to_owned()
    } else {
        format!("catching up ({} reconciliations open, {} envelopes to fetch)", sync.reconciling, sync.wanted)
    };
    s.push_str(&format!("sync: {catching_up}; {} envelopes fetched since start\n", sync.fetched));
    s.push_str(&format!("topics followed: {}\noutbox: {outbox} waiting for a peer", net.topics));
    s
}
