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

#[derive(clap::Args)]
pub struct SyncArgs {
    /// Give up after this many seconds
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    #[command(flatten)]
    pub net: super::run::Args,
}

/// Nothing open and nothing wanted for this long, with a peer connected: caught up. (Longer
/// than the node's refresh tick, so a round that was about to start has started.)
const QUIET: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(250);

/// One look at the node's status, as far as catching up goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Look {
    pub peers: usize,
    pub reconciling: usize,
    pub wanted: usize,
    pub fetched: u64,
}

impl Look {
    fn from_status(status: &Status) -> Look {
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
}

/// What the catch-up is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still at it: envelopes fetched since we started looking, of those fetched and wanted.
    Going {
        done: u64,
        total: u64,
    },
    CaughtUp,
    TimedOut,
}

/// Decides from successive looks when catching up is done. Pure: time comes in with each look.
pub struct CatchUp {
    started: Instant,
    timeout: Duration,
    quiet_since: Option<Instant>,
    /// `fetched` at the first look: a running node may have fetched much before we came.
    baseline: Option<u64>,
}

impl CatchUp {
    pub fn new(started: Instant, timeout: Duration) -> CatchUp {
        CatchUp { started, timeout, quiet_since: None, baseline: None }
    }

    pub fn observe(&mut self, look: Look, now: Instant) -> Verdict {
        let baseline = *self.baseline.get_or_insert(look.fetched);
        let done = look.fetched.saturating_sub(baseline);
        if look.peers > 0 && look.reconciling == 0 && look.wanted == 0 {
            let since = *self.quiet_since.get_or_insert(now);
            if now.duration_since(since) >= QUIET {
                return Verdict::CaughtUp;
            }
        } else {
            self.quiet_since = None;
        }
        if now.duration_since(self.started) >= self.timeout {
            return Verdict::TimedOut;
        }
        Verdict::Going { done, total: done + look.wanted as u64 }
    }

    pub fn fetched(&self, look: Look) -> u64 {
        look.fetched.saturating_sub(self.baseline.unwrap_or(look.fetched))
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
            let look = Look::from_status(&node.call(ShowStatus {})?);
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
        bail!("still catching up after {} s; run `weft sync` again, or keep `weft daemon` running", timeout.as_secs());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(peers: usize, reconciling: usize, wanted: usize, fetched: u64) -> Look {
        Look { peers, reconciling, wanted, fetched }
    }

    #[test]
    fn caught_up_once_quiet_with_a_peer() {
        let t0 = Instant::now();
        let mut c = CatchUp::new(t0, Duration::from_secs(60));
        assert_eq!(c.observe(look(0, 0, 0, 10), t0), Verdict::Going { done: 0, total: 0 });
        assert_eq!(c.observe(look(1, 2, 0, 10), t0 + Duration::from_secs(1)), Verdict::Going { done: 0, total: 0 });
        assert_eq!(c.observe(look(1, 0, 40, 15), t0 + Duration::from_secs(2)), Verdict::Going { done: 5, total: 45 });
        assert_eq!(c.observe(look(1, 0, 0, 55), t0 + Duration::from_secs(3)), Verdict::Going { done: 45, total: 45 });
        // Quiet, but not for long enough yet; then a new round starts and the clock resets.
        assert_eq!(c.observe(look(1, 0, 0, 55), t0 + Duration::from_secs(5)), Verdict::Going { done: 45, total: 45 });
        assert_eq!(c.observe(look(2, 1, 0, 55), t0 + Duration::from_secs(6)), Verdict::Going { done: 45, total: 45 });
        assert_eq!(c.observe(look(2, 0, 0, 56), t0 + Duration::from_secs(7)), Verdict::Going { done: 46, total: 46 });
        assert_eq!(c.observe(look(2, 0, 0, 56), t0 + Duration::from_secs(10)), Verdict::CaughtUp);
        assert_eq!(c.fetched(look(2, 0, 0, 56)), 46, "counted from the first look, not the node's start");
    }

    #[test]
    fn no_peer_means_never_caught_up() {
        let t0 = Instant::now();
        let mut c = CatchUp::new(t0, Duration::from_secs(5));
        assert!(matches!(c.observe(look(0, 0, 0, 0), t0 + Duration::from_secs(4)), Verdict::Going { .. }));
        assert_eq!(c.observe(look(0, 0, 0, 0), t0 + Duration::from_secs(5)), Verdict::TimedOut);
    }

    #[test]
    fn a_catch_up_that_never_settles_times_out() {
        let t0 = Instant::now();
        let mut c = CatchUp::new(t0, Duration::from_secs(5));
        for s in 0..5 {
            assert!(matches!(c.observe(look(1, 1, 3, s), t0 + Duration::from_secs(s)), Verdict::Going { .. }));
        }
        assert_eq!(c.observe(look(1, 1, 3, 5), t0 + Duration::from_secs(5)), Verdict::TimedOut);
    }
}
