//! When catching up with the network is done: a pure judge of successive looks at the
//! transport's status, for `weft sync` and the bindings' `sync_once` (an app's background task,
//! which the OS gives a deadline).

use std::time::{Duration, Instant};

use super::NetStatus;

/// Nothing open and nothing wanted for this long, with a peer connected: caught up. (Longer
/// than the node's refresh tick, so a round that was about to start has started.)
pub const QUIET: Duration = Duration::from_secs(3);
/// How often a catch-up looks at the status.
pub const POLL: Duration = Duration::from_millis(250);

/// One look at the node's status, as far as catching up goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Look {
    pub peers: usize,
    pub reconciling: usize,
    pub wanted: usize,
    pub fetched: u64,
}

impl From<&NetStatus> for Look {
    fn from(status: &NetStatus) -> Look {
        Look {
            peers: status.peers.len(),
            reconciling: status.sync.reconciling,
            wanted: status.sync.wanted,
            fetched: status.sync.fetched,
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

/// How a catch-up ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatchUpReport {
    /// Envelopes fetched by reconciliation while it ran.
    pub fetched: u64,
    /// Peers connected at the end.
    pub peers: usize,
    /// Caught up before the deadline.
    pub caught_up: bool,
}

impl super::NetHandle {
    /// Waits until the node has caught up with its peers (see [`CatchUp`]) or `timeout` passed.
    pub async fn catch_up(&self, timeout: Duration) -> crate::error::Result<CatchUpReport> {
        let mut judge = CatchUp::new(Instant::now(), timeout);
        loop {
            let look = Look::from(&self.status().await?);
            match judge.observe(look, Instant::now()) {
                Verdict::Going { .. } => tokio::time::sleep(POLL).await,
                verdict => {
                    let caught_up = verdict == Verdict::CaughtUp;
                    return Ok(CatchUpReport { fetched: judge.fetched(look), peers: look.peers, caught_up });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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
