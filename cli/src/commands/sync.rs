//! `weft sync`: go online, catch up with peers and relays, and exit — for a laptop that does not
//! keep a daemon running. With a node already running on the home, it follows that node's
//! catch-up instead. Either way a bar shows envelopes fetched against those still wanted.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::run::LocalNode;
use crate::backend::Route;
use crate::control::client;
use crate::output::Output;
use crate::progress::Bar;
use crate::rpc::answer::Status;
use crate::rpc::request::{ListConversations, ShowStatus};
use weft_core::net::catch_up::{CatchUp, Look, POLL, Verdict};

#[derive(clap::Args)]
pub struct SyncArgs {
    /// Give up after this many seconds
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    #[command(flatten)]
    pub net: super::run::Args,
}

/// One look at the node's status, as far as catching up goes (none before the network is up).
fn look_at(status: &Status) -> Look {
    match &status.network {
        Some(net) => Look {
            peers: net.peers.len(),
            reconciling: net.sync.reconciling,
            wanted: net.sync.wanted,
            fetched: net.sync.fetched,
        },
        None => Look::default(),
    }
}

pub fn run(home_dir: &Path, args: SyncArgs, out: &Output) -> Result<()> {
    let timeout = Duration::from_secs(args.timeout);
    let running = || -> Result<bool> { Ok(client::call(home_dir, &ShowStatus {}.into())?.is_some()) };
    // A node already running on the home does the work; this command only watches it.
    if running()? {
        return catch_up(&Route::Socket(home_dir), timeout, out);
    }
    let passphrase = crate::passphrase::for_home(home_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (local, _events) = match runtime.block_on(LocalNode::start(home_dir, passphrase, &args.net)) {
        Ok(started) => started,
        // A node started on the home meanwhile: follow it.
        Err(e) if crate::backend::is_home_busy(&e) && running()? => {
            return catch_up(&Route::Socket(home_dir), timeout, out);
        }
        Err(e) => return Err(e),
    };
    let result = catch_up(&Route::Local { runtime: &runtime, api: &local.api }, timeout, out);
    // What peers gave is stored as it came; so are the receipts and pushes it caused.
    local.stop();
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

/// What `weft sync` found, as `--json` prints it.
#[derive(Serialize)]
struct Summary {
    caught_up: bool,
    peers: usize,
    fetched: u64,
    wanted: usize,
    outbox: usize,
    unread: Vec<Unread>,
}

#[derive(Serialize)]
struct Unread {
    conversation: String,
    unread: usize,
}

/// Follows the node's status until it caught up or time ran out, drawing the bar, then says
/// what came and what waits.
fn catch_up(node: &Route, timeout: Duration, out: &Output) -> Result<()> {
    let (verdict, last, fetched) = {
        let bar = Bar::new("catching up", "envelopes", out.json);
        let mut catch_up = CatchUp::new(Instant::now(), timeout);
        loop {
            let look = look_at(&node.call(ShowStatus {})?);
            match catch_up.observe(look, Instant::now()) {
                Verdict::Going { done, total } => bar.set(done as usize, total as usize),
                verdict => break (verdict, look, catch_up.fetched(look)),
            }
            std::thread::sleep(POLL);
        }
    };
    if verdict == Verdict::TimedOut && last.peers == 0 {
        bail!(
            "no peer reached in {} s: give one with --bootstrap or --relay (or in the config's [network]); \
             on a local network, mDNS finds others running weft",
            timeout.as_secs()
        );
    }
    let outbox = node.call(ShowStatus {})?.outbox;
    let unread = node
        .call(ListConversations {})?
        .into_iter()
        .filter(|c| c.unread > 0)
        .map(|c| Unread { conversation: c.name, unread: c.unread })
        .collect();
    let caught_up = verdict == Verdict::CaughtUp;
    let summary = Summary { caught_up, peers: last.peers, fetched, wanted: last.wanted, outbox, unread };
    out.print(&summary, || {
        let mut s = if caught_up {
            format!("Caught up with {} peers: {fetched} envelopes fetched.", last.peers)
        } else {
            format!("Fetched {fetched} envelopes from {} peers; {} more still to come.", last.peers, last.wanted)
        };
        for u in &summary.unread {
            s.push_str(&format!("\n  {}: {} unread", u.conversation, u.unread));
        }
        if outbox > 0 {
            s.push_str(&format!(
                "\n{outbox} of your messages wait for a peer to take them (`weft daemon` keeps trying)."
            ));
        }
        s
    });
    if !caught_up {
        bail!(
            "still catching up after {} s ({} reconciliations open, {} envelopes wanted); run `weft sync` again, \
             or keep `weft daemon` running",
            timeout.as_secs(),
            last.reconciling,
            last.wanted
        );
    }
    Ok(())
}
