//! Offences counted against peers, forgiven with time.
//!
//! A peer that sends junk is cut off after a limit of offences in quick succession. An honest
//! peer offends now and then too (a reconciliation message that crossed the end of the same
//! reconciliation on our side): before, offences were counted for as long as a connection
//! lasted, so an honest peer connected for hours, or one whose messages time out under a flood,
//! was cut off in the end by its own rare mistakes. One strike is now forgiven every period: a
//! flood still reaches the limit in seconds, a mistake a minute never does. A plain value,
//! tested without sockets.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Strikes<P> {
    limit: u32,
    forgive_every: Duration,
    /// Each peer's strikes as of when they were last brought up to date.
    counts: HashMap<P, (u32, Instant)>,
}

impl<P: Hash + Eq> Strikes<P> {
    pub fn new(limit: u32, forgive_every: Duration) -> Self {
        Strikes { limit, forgive_every, counts: HashMap::new() }
    }

    /// Counts an offence of `weight`; true when the peer reached the limit (its count starts
    /// over: the caller cuts it off).
    pub fn strike(&mut self, peer: P, weight: u32, now: Instant) -> bool {
        let forgive_every = self.forgive_every;
        let (count, since) = self.counts.entry(peer).or_insert((0, now));
        let forgiven = forgiven(now.saturating_duration_since(*since), forgive_every);
        *count = count.saturating_sub(forgiven);
        // Only whole periods are forgiven: what is left of the current one still counts.
        if forgiven > 0 || *count == 0 {
            *since = if *count == 0 { now } else { *since + forgive_every * forgiven };
        }
        *count = count.saturating_add(weight);
        if *count >= self.limit {
            *count = 0;
            *since = now;
            return true;
        }
        false
    }

    /// Forgets peers whose strikes were all forgiven. A peer's strikes outlive its connection:
    /// one that reconnected with a clean slate could send a limit's worth of junk per
    /// connection and never be cut off.
    pub fn prune(&mut self, now: Instant) {
        let every = self.forgive_every;
        self.counts.retain(|_, (count, since)| *count > forgiven(now.saturating_duration_since(*since), every));
    }

    /// A peer's strikes now.
    #[cfg(test)]
    pub fn count(&self, peer: &P, now: Instant) -> u32 {
        self.counts.get(peer).map_or(0, |(count, since)| {
            count.saturating_sub(forgiven(now.saturating_duration_since(*since), self.forgive_every))
        })
    }
}

fn forgiven(elapsed: Duration, every: Duration) -> u32 {
    if every.is_zero() {
        return u32::MAX;
    }
    u32::try_from(elapsed.as_nanos() / every.as_nanos()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(10);

    #[test]
    fn a_flood_reaches_the_limit() {
        let mut strikes = Strikes::new(16, EVERY);
        let t = Instant::now();
        let cut: Vec<bool> = (0..16).map(|i| strikes.strike(1, 1, t + Duration::from_millis(100 * i))).collect();
        assert_eq!(cut.iter().filter(|c| **c).count(), 1);
        assert!(cut[15], "the sixteenth offence in under two seconds cuts the peer off");
        assert_eq!(strikes.count(&1, t + Duration::from_secs(2)), 0, "and its count starts over");
    }

    /// Before, the strikes of a connection were never forgiven: an honest peer that offended
    /// once every 30 s was cut off after 8 minutes.
    #[test]
    fn rare_mistakes_over_hours_never_cut_an_honest_peer_off() {
        let mut strikes = Strikes::new(16, EVERY);
        let t = Instant::now();
        for i in 0..1_000u64 {
            assert!(!strikes.strike(1, 1, t + Duration::from_secs(30 * i)), "cut off at offence {i}");
        }
        // Even one every 11 s, for a day.
        for i in 0..8_000u64 {
            assert!(!strikes.strike(2, 1, t + Duration::from_secs(11 * i)), "cut off at offence {i}");
        }
    }

    #[test]
    fn one_strike_is_forgiven_per_period_and_no_more() {
        let mut strikes = Strikes::new(16, EVERY);
        let t = Instant::now();
        for _ in 0..10 {
            strikes.strike(1, 1, t);
        }
        assert_eq!(strikes.count(&1, t + Duration::from_secs(9)), 10);
        assert_eq!(strikes.count(&1, t + Duration::from_secs(25)), 8);
        // A strike part-way through a period does not reset it.
        strikes.strike(1, 1, t + Duration::from_secs(25));
        assert_eq!(strikes.count(&1, t + Duration::from_secs(29)), 9);
        assert_eq!(strikes.count(&1, t + Duration::from_secs(30)), 8);
        assert_eq!(strikes.count(&1, t + Duration::from_secs(1_000)), 0);
    }

    #[test]
    fn a_heavy_offence_cuts_off_at_once_and_peers_are_counted_apart() {
        let mut strikes = Strikes::new(16, EVERY);
        let t = Instant::now();
        strikes.strike(1, 15, t);
        assert!(!strikes.strike(2, 1, t), "another peer's offences are not this one's");
        assert!(strikes.strike(1, 1, t));
        assert!(strikes.strike(3, 16, t), "a breach of the protocol cuts off at once");
        strikes.prune(t + Duration::from_secs(10));
        assert_eq!(strikes.count(&2, t + Duration::from_secs(10)), 0);
        assert_eq!(strikes.counts.len(), 0, "peers whose strikes were forgiven are forgotten");
    }

    #[test]
    fn strikes_outlive_a_reconnection() {
        let mut strikes = Strikes::new(16, EVERY);
        let t = Instant::now();
        // Fifteen junk messages, a reconnection (which no longer wipes the count), one more.
        for _ in 0..15 {
            assert!(!strikes.strike(1, 1, t));
        }
        strikes.prune(t + Duration::from_millis(500));
        assert!(strikes.strike(1, 1, t + Duration::from_secs(1)));
    }
}
