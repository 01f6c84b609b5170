//! A node's network identity rotates. A session (a libp2p swarm: peer id, ports,
//! subscriptions) serves one period's topics; a new one, under a fresh peer id, starts shortly
//! before the next period, and the one it replaces is frozen: it keeps the topics it followed,
//! so that envelopes written just before midnight still arrive, and stops two hours into the
//! next period. Ended epochs still followed get a session apart from the current ones; our
//! rendezvous point a session of its own, which follows nothing else; and our contact requests,
//! while any is pending, another.
//!
//! What this buys: no peer, relay or LAN observer sees one peer id follow yesterday's and
//! today's topics, nor, from the day after an epoch change, an epoch's topics beside those of
//! the epoch that replaced it. What it does not hide: the IP address, and on the day of an
//! epoch change the base session follows both epochs (see THREAT_MODEL).
//!
//! [`Plan`] decides, as a pure state machine, which sessions run; the driver starts, freezes
//! and stops them.

use crate::account::YESTERDAY_GRACE_MS;
use crate::group::PERIOD_MS;

/// Sessions frozen and still running at most, besides the current ones (each costs a swarm and
/// its connections); beyond it the oldest stops early.
pub const MAX_FROZEN: usize = 4;

/// What a host wants its current session to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKey {
    /// The period whose topics it follows.
    pub period: u64,
    /// The host's time now.
    pub now_ms: u64,
    /// The ended epochs still followed.
    pub previous: Vec<[u8; 32]>,
    /// Whether contact requests of ours wait for an answer.
    pub asking: bool,
}

/// When a frozen session of `period` stops: [`YESTERDAY_GRACE_MS`] into the next period.
pub fn frozen_until(period: u64) -> u64 {
    (period + 1) * PERIOD_MS + YESTERDAY_GRACE_MS
}

/// Which topics a session serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serves {
    /// Every conversation's current epoch and the epochs that ended since the base started
    /// (the base session).
    Current,
    /// The epochs that had already ended when the base started and are still followed
    /// (control messages written just before an epoch change still travel on them).
    Previous,
    /// Our rendezvous point, and nothing else: whoever holds our published link finds this
    /// session, and no conversation beside it.
    Rendezvous,
    /// Our contact requests, published on their recipients' rendezvous points; it follows
    /// nothing, so who asks whom is tied neither to our point nor to our conversations.
    Requests,
}

/// What one session follows: topics of `period`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionScope {
    pub period: u64,
    pub serves: Serves,
    /// The epochs that had ended when the base session of the period started: the base does
    /// not follow them, a session apart does.
    pub ended: Vec<[u8; 32]>,
}

impl SessionScope {
    /// Whether this is the base session: the one that catches up with relays and pushes
    /// envelopes no other session follows.
    pub fn is_base(&self) -> bool {
        matches!(self.serves, Serves::Current)
    }
}

/// What the driver does with its sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start session `id` for this scope, under a fresh peer id. A base session becomes the
    /// current one.
    Start {
        id: u64,
        scope: SessionScope,
    },
    /// Session `id` keeps what it follows and takes nothing new.
    Freeze {
        id: u64,
    },
    Stop {
        id: u64,
    },
}

#[derive(Debug)]
struct Frozen {
    id: u64,
    until_ms: u64,
}

/// Which sessions run: a base session per period, which follows every conversation; when
/// epochs that ended before the period are still followed, a session for those apart; a session
/// for our rendezvous point; and while requests are pending, one for them. At the next period
/// all are frozen and new ones start.
#[derive(Debug)]
pub struct Plan {
    period: u64,
    base: u64,
    /// The epochs that had ended when the base session started.
    ended: Vec<[u8; 32]>,
    /// The session of ended epochs, if one runs.
    previous: Option<u64>,
    rendezvous: Option<u64>,
    requests: Option<u64>,
    frozen: Vec<Frozen>,
    next_id: u64,
}

impl Plan {
    /// A plan whose first session (id 0) is the base of `key`'s period.
    pub fn new(key: SessionKey) -> Plan {
        Plan {
            period: key.period,
            base: 0,
            ended: key.previous,
            previous: None,
            rendezvous: None,
            requests: None,
            frozen: Vec::new(),
            next_id: 1,
        }
    }

    /// The base session's scope.
    pub fn first_scope(&self) -> SessionScope {
        SessionScope { period: self.period, serves: Serves::Current, ended: self.ended.clone() }
    }

    fn scope(&self, serves: Serves) -> SessionScope {
        SessionScope { period: self.period, serves, ended: Vec::new() }
    }

    pub fn current(&self) -> u64 {
        self.base
    }

    /// Whether session `id` is one the plan runs now and not frozen: one that could not start
    /// is worth starting again only then.
    pub fn serves_now(&self, id: u64) -> bool {
        id == self.base || [self.previous, self.rendezvous, self.requests].contains(&Some(id))
    }

    pub fn frozen(&self) -> usize {
        self.frozen.len()
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// The host wants `wanted` now: start, freeze and stop what that takes.
    pub fn step(&mut self, wanted: SessionKey) -> Vec<Action> {
        let now = wanted.now_ms;
        let mut actions = Vec::new();
        if wanted.period != self.period {
            let others = [self.previous.take(), self.rendezvous.take(), self.requests.take()];
            for id in std::iter::once(self.base).chain(others.into_iter().flatten()) {
                actions.push(Action::Freeze { id });
                self.frozen.push(Frozen { id, until_ms: frozen_until(self.period) });
            }
            self.period = wanted.period;
            self.ended = wanted.previous.clone();
            self.base = self.fresh_id();
            actions.push(Action::Start { id: self.base, scope: self.first_scope() });
        }
        if !self.ended.is_empty() && self.previous.is_none() {
            let id = self.fresh_id();
            let scope = SessionScope { serves: Serves::Previous, ..self.first_scope() };
            actions.push(Action::Start { id, scope });
            self.previous = Some(id);
        }
        if self.rendezvous.is_none() {
            let id = self.fresh_id();
            actions.push(Action::Start { id, scope: self.scope(Serves::Rendezvous) });
            self.rendezvous = Some(id);
        }
        match self.requests {
            None if wanted.asking => {
                let id = self.fresh_id();
                actions.push(Action::Start { id, scope: self.scope(Serves::Requests) });
                self.requests = Some(id);
            }
            // Nothing left to ask: the session goes (it follows nothing, so nothing is late).
            Some(id) if !wanted.asking => {
                actions.push(Action::Stop { id });
                self.requests = None;
            }
            _ => {}
        }
        let mut kept = Vec::new();
        for f in std::mem::take(&mut self.frozen) {
            if f.until_ms <= now { actions.push(Action::Stop { id: f.id }) } else { kept.push(f) }
        }
        while kept.len() > MAX_FROZEN {
            actions.push(Action::Stop { id: kept.remove(0).id });
        }
        self.frozen = kept;
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 60 * 60 * 1000;

    fn key(now_ms: u64, previous: &[u8]) -> SessionKey {
        SessionKey {
            period: crate::group::serving_period(now_ms),
            now_ms,
            previous: previous.iter().map(|e| [*e; 32]).collect(),
            asking: false,
        }
    }

    fn asking(now_ms: u64) -> SessionKey {
        SessionKey { asking: true, ..key(now_ms, &[]) }
    }

    fn scope(period: u64, serves: Serves, ended: &[u8]) -> SessionScope {
        SessionScope { period, serves, ended: ended.iter().map(|e| [*e; 32]).collect() }
    }

    fn start(id: u64, period: u64, serves: Serves) -> Action {
        Action::Start { id, scope: scope(period, serves, &[]) }
    }

    /// A plan at `now_ms` past its first step (which starts the rendezvous session, id 1).
    fn started(now_ms: u64, previous: &[u8]) -> Plan {
        let mut plan = Plan::new(key(now_ms, previous));
        let first = plan.step(key(now_ms, previous));
        assert!(first.contains(&start(1, now_ms / PERIOD_MS, Serves::Rendezvous)), "{first:?}");
        plan
    }

    #[test]
    fn a_new_session_starts_an_hour_before_midnight_and_the_old_one_stops_two_hours_after() {
        let day = 100 * PERIOD_MS;
        let mut plan = started(day + 12 * HOUR, &[]);
        assert_eq!(plan.step(key(day + 22 * HOUR, &[])), vec![]);
        assert_eq!(
            plan.step(key(day + 23 * HOUR, &[])),
            vec![
                Action::Freeze { id: 0 },
                Action::Freeze { id: 1 },
                start(2, 101, Serves::Current),
                start(3, 101, Serves::Rendezvous)
            ]
        );
        assert_eq!(plan.step(key(day + PERIOD_MS + HOUR, &[])), vec![], "yesterday's sessions linger");
        assert_eq!(
            plan.step(key(day + PERIOD_MS + 2 * HOUR, &[])),
            vec![Action::Stop { id: 0 }, Action::Stop { id: 1 }]
        );
        assert_eq!(plan.current(), 2);
    }

    #[test]
    fn an_ended_epoch_is_followed_apart_from_the_new_one_from_the_next_day() {
        let day = 100 * PERIOD_MS;
        let mut plan = started(day + 9 * HOUR, &[]);
        // A removal: epoch 1 ended today; the base follows it beside the new one until the
        // day turns.
        assert_eq!(plan.step(key(day + 10 * HOUR, &[1])), vec![], "the base follows epoch 1 today");
        let turn = plan.step(key(day + 23 * HOUR, &[1]));
        assert_eq!(
            turn,
            vec![
                Action::Freeze { id: 0 },
                Action::Freeze { id: 1 },
                Action::Start { id: 2, scope: scope(101, Serves::Current, &[1]) },
                Action::Start { id: 3, scope: scope(101, Serves::Previous, &[1]) },
                start(4, 101, Serves::Rendezvous),
            ],
            "tomorrow, epoch 1's topics have a session apart from the new epoch's"
        );
        let next = plan.step(key(day + PERIOD_MS + 23 * HOUR, &[]));
        assert_eq!(next[..3], [Action::Freeze { id: 2 }, Action::Freeze { id: 3 }, Action::Freeze { id: 4 }]);
        assert!(
            !next.iter().any(|a| matches!(a, Action::Start { scope, .. } if scope.serves == Serves::Previous)),
            "no session for ended epochs once none is followed: {next:?}"
        );
    }

    #[test]
    fn a_node_started_after_an_epoch_change_follows_the_ended_epoch_apart() {
        let day = 100 * PERIOD_MS;
        let mut plan = Plan::new(key(day + 9 * HOUR, &[1]));
        assert_eq!(
            plan.step(key(day + 9 * HOUR + 1, &[1])),
            vec![Action::Start { id: 1, scope: scope(100, Serves::Previous, &[1]) }, start(2, 100, Serves::Rendezvous)]
        );
    }

    #[test]
    fn contact_requests_go_from_a_session_of_their_own_while_any_is_pending() {
        let day = 100 * PERIOD_MS;
        let mut plan = started(day + 9 * HOUR, &[]);
        assert_eq!(plan.step(asking(day + 10 * HOUR)), vec![start(2, 100, Serves::Requests)]);
        assert_eq!(plan.step(asking(day + 11 * HOUR)), vec![], "one session for every request");
        assert_eq!(plan.step(key(day + 12 * HOUR, &[])), vec![Action::Stop { id: 2 }], "answered: it goes");
        plan.step(asking(day + 13 * HOUR));
        let turn = plan.step(asking(day + 23 * HOUR));
        assert!(turn.contains(&Action::Freeze { id: 3 }), "{turn:?}");
        assert!(turn.contains(&start(6, 101, Serves::Requests)), "a new one for the new day: {turn:?}");
    }

    #[test]
    fn only_sessions_that_serve_now_are_worth_starting_again() {
        let day = 100 * PERIOD_MS;
        let mut plan = started(day + 9 * HOUR, &[]);
        assert!(plan.serves_now(0) && plan.serves_now(1));
        plan.step(key(day + 23 * HOUR, &[]));
        assert!(!plan.serves_now(0) && !plan.serves_now(1), "frozen at the turn of the day");
        assert!(plan.serves_now(2) && plan.serves_now(3));
    }

    #[test]
    fn days_away_stop_every_old_session() {
        let day = 100 * PERIOD_MS;
        let mut plan = started(day + 9 * HOUR, &[]);
        plan.step(key(day + 23 * HOUR, &[]));
        assert_eq!(plan.frozen(), 2);
        let actions = plan.step(key(day + 3 * PERIOD_MS, &[]));
        assert_eq!(plan.frozen(), 0, "{actions:?}");
        assert!(actions.contains(&start(4, 103, Serves::Current)), "{actions:?}");
    }
}
