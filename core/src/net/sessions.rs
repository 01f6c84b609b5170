//! A node's network identity rotates. A session (a libp2p swarm: peer id, ports,
//! subscriptions) serves one period's topics; a new one, under a fresh peer id, starts shortly
//! before the next period, and the one it replaces is frozen: it keeps the topics it followed,
//! so that envelopes written just before midnight still arrive, and stops two hours into the
//! next period. When a conversation's epoch changes (a removal, an add), its new topics go to
//! a session of their own for the rest of the period.
//!
//! What this buys: no peer, relay or LAN observer sees one peer id follow yesterday's and
//! today's topics, nor an epoch's topics beside those of the epoch that replaced it, nor two
//! sessions follow the same topic. What it does not hide: the IP address (see THREAT_MODEL).
//!
//! [`Plan`] decides, as a pure state machine, which sessions run; the driver starts, freezes
//! and stops them.

use std::collections::{BTreeMap, BTreeSet};

use crate::account::{TOMORROW_LEAD_MS, YESTERDAY_GRACE_MS};
use crate::group::{GroupId, PERIOD_MS};

/// Sessions frozen and still running at most, besides the current one (each costs a swarm and
/// its connections); beyond it the oldest stops early.
pub const MAX_FROZEN: usize = 3;

/// What a host wants its current session to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKey {
    /// The period whose topics it follows.
    pub period: u64,
    /// The current epoch of each conversation.
    pub epochs: BTreeMap<GroupId, [u8; 32]>,
    /// The host's time now.
    pub now_ms: u64,
}

/// The period a new session should serve at `now_ms`: today's, or tomorrow's in the last
/// [`TOMORROW_LEAD_MS`] before midnight.
pub fn period_to_serve(now_ms: u64) -> u64 {
    let today = now_ms / PERIOD_MS;
    if PERIOD_MS - now_ms % PERIOD_MS <= TOMORROW_LEAD_MS { today + 1 } else { today }
}

/// When a frozen session of `period` stops: [`YESTERDAY_GRACE_MS`] into the next period.
pub fn frozen_until(period: u64) -> u64 {
    (period + 1) * PERIOD_MS + YESTERDAY_GRACE_MS
}

/// Which conversations a session serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Serves {
    /// Every conversation but these (moved to sessions of their own by an epoch change); also
    /// our rendezvous point and contact requests.
    All { except: BTreeSet<GroupId> },
    /// Only these: conversations whose epoch changed during the period.
    Only(BTreeSet<GroupId>),
}

/// What one session follows: the topics of `period` of the conversations it serves, each in
/// the epoch it had when the session took it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionScope {
    pub period: u64,
    pub serves: Serves,
    /// The epoch each conversation had when this scope was set: a session never follows a
    /// later epoch's topics (between an epoch change and the driver's next step, those would
    /// otherwise appear beside the old ones, under one peer id).
    pub epochs: BTreeMap<GroupId, [u8; 32]>,
}

impl SessionScope {
    /// Whether this session follows `group` in `epoch`.
    pub fn serves(&self, group: &GroupId, epoch: &[u8; 32]) -> bool {
        let listed = match &self.serves {
            Serves::All { except } => !except.contains(group),
            Serves::Only(groups) => groups.contains(group),
        };
        listed && self.epochs.get(group).is_none_or(|e| e == epoch)
    }

    /// Whether this session also serves our rendezvous point and contact requests.
    pub fn is_base(&self) -> bool {
        matches!(self.serves, Serves::All { .. })
    }
}

/// What the driver does with its sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start session `id` for this scope, under a fresh peer id. A session of `Serves::All`
    /// becomes the current one.
    Start {
        id: u64,
        scope: SessionScope,
    },
    /// Session `id` serves this scope from now on.
    Rescope {
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

/// Which sessions run. In a period: one that serves every conversation (the base), and one
/// more for each epoch change, serving only the conversations it changed for the rest of the
/// period. A session that followed an epoch's topics never follows those of the epoch that
/// replaced it, and a session started for a change follows nothing an older session did: so a
/// removed member sees the old topics under one peer id and nothing ties another peer id to
/// them. At the next period everything moves to one new base session.
#[derive(Debug)]
pub struct Plan {
    period: u64,
    base: (u64, BTreeSet<GroupId>),
    changed: Vec<(u64, BTreeSet<GroupId>)>,
    epochs: BTreeMap<GroupId, [u8; 32]>,
    frozen: Vec<Frozen>,
    next_id: u64,
}

impl Plan {
    /// A plan whose first session (id 0) is the base of `key`'s period.
    pub fn new(key: SessionKey) -> Plan {
        Plan {
            period: key.period,
            base: (0, BTreeSet::new()),
            changed: Vec::new(),
            epochs: key.epochs,
            frozen: Vec::new(),
            next_id: 1,
        }
    }

    /// The first session's scope.
    pub fn first_scope(&self) -> SessionScope {
        SessionScope {
            period: self.period,
            serves: Serves::All { except: self.base.1.clone() },
            epochs: self.epochs.clone(),
        }
    }

    fn only(&self, groups: &BTreeSet<GroupId>) -> SessionScope {
        SessionScope { period: self.period, serves: Serves::Only(groups.clone()), epochs: self.epochs.clone() }
    }

    pub fn current(&self) -> u64 {
        self.base.0
    }

    pub fn frozen(&self) -> usize {
        self.frozen.len()
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    fn freeze(&mut self, id: u64, actions: &mut Vec<Action>) {
        actions.push(Action::Freeze { id });
        self.frozen.push(Frozen { id, until_ms: frozen_until(self.period) });
    }

    /// The host wants `wanted` now: start, rescope, freeze and stop what that takes.
    pub fn step(&mut self, wanted: SessionKey) -> Vec<Action> {
        let now = wanted.now_ms;
        let mut actions = Vec::new();
        if wanted.period != self.period {
            let old: Vec<u64> = std::iter::once(self.base.0).chain(self.changed.iter().map(|(id, _)| *id)).collect();
            for id in old {
                self.freeze(id, &mut actions);
            }
            self.period = wanted.period;
            self.epochs = wanted.epochs.clone();
            self.changed.clear();
            let id = self.fresh_id();
            self.base = (id, BTreeSet::new());
            actions.push(Action::Start { id, scope: self.first_scope() });
        } else {
            let changed: BTreeSet<GroupId> = self
                .epochs
                .iter()
                .filter(|(g, e)| wanted.epochs.get(*g).is_some_and(|n| n != *e))
                .map(|(g, _)| *g)
                .collect();
            let joined = wanted.epochs.keys().any(|g| !self.epochs.contains_key(g));
            self.epochs = wanted.epochs.clone();
            if !changed.is_empty() {
                for (id, groups) in std::mem::take(&mut self.changed) {
                    if groups.is_subset(&changed) {
                        self.freeze(id, &mut actions);
                    } else if groups.is_disjoint(&changed) {
                        self.changed.push((id, groups));
                    } else {
                        let rest: BTreeSet<GroupId> = groups.difference(&changed).copied().collect();
                        actions.push(Action::Rescope { id, scope: self.only(&rest) });
                        self.changed.push((id, rest));
                    }
                }
                self.base.1.extend(changed.iter().copied());
                actions.push(Action::Rescope { id: self.base.0, scope: self.first_scope() });
                let id = self.fresh_id();
                actions.push(Action::Start { id, scope: self.only(&changed) });
                self.changed.push((id, changed));
            } else if joined {
                // New conversations join the base session, in the epoch they have now.
                actions.push(Action::Rescope { id: self.base.0, scope: self.first_scope() });
            }
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

    fn key(now_ms: u64, epochs: &[(u8, u8)]) -> SessionKey {
        SessionKey {
            period: period_to_serve(now_ms),
            epochs: epochs.iter().map(|(g, e)| ([*g; 32], [*e; 32])).collect(),
            now_ms,
        }
    }

    fn epochs(list: &[(u8, u8)]) -> BTreeMap<GroupId, [u8; 32]> {
        list.iter().map(|(g, e)| ([*g; 32], [*e; 32])).collect()
    }

    fn all(period: u64, except: &[u8], list: &[(u8, u8)]) -> SessionScope {
        SessionScope {
            period,
            serves: Serves::All { except: except.iter().map(|g| [*g; 32]).collect() },
            epochs: epochs(list),
        }
    }

    fn only(period: u64, groups: &[u8], list: &[(u8, u8)]) -> SessionScope {
        SessionScope { period, serves: Serves::Only(groups.iter().map(|g| [*g; 32]).collect()), epochs: epochs(list) }
    }

    #[test]
    fn a_new_session_starts_an_hour_before_midnight_and_the_old_one_stops_two_hours_after() {
        let day = 100 * PERIOD_MS;
        let mut plan = Plan::new(SessionKey { period: 100, ..key(day + 12 * HOUR, &[(1, 1)]) });
        assert_eq!(plan.step(key(day + 22 * HOUR, &[(1, 1)])), vec![]);
        assert_eq!(
            plan.step(key(day + 23 * HOUR, &[(1, 1)])),
            vec![Action::Freeze { id: 0 }, Action::Start { id: 1, scope: all(101, &[], &[(1, 1)]) }]
        );
        assert_eq!(plan.step(key(day + PERIOD_MS + HOUR, &[(1, 1)])), vec![], "yesterday's session lingers");
        assert_eq!(plan.step(key(day + PERIOD_MS + 2 * HOUR, &[(1, 1)])), vec![Action::Stop { id: 0 }]);
        assert_eq!(plan.current(), 1);
    }

    #[test]
    fn an_epoch_change_moves_its_conversation_to_a_session_of_its_own_until_the_day_turns() {
        let day = 100 * PERIOD_MS;
        let mut plan = Plan::new(key(day + 9 * HOUR, &[(1, 1)]));
        assert_eq!(
            plan.step(key(day + 10 * HOUR, &[(1, 1), (2, 1)])),
            vec![Action::Rescope { id: 0, scope: all(100, &[], &[(1, 1), (2, 1)]) }],
            "a new conversation joins the base session"
        );
        assert_eq!(
            plan.step(key(day + 11 * HOUR, &[(1, 1), (2, 2)])),
            vec![
                Action::Rescope { id: 0, scope: all(100, &[2], &[(1, 1), (2, 2)]) },
                Action::Start { id: 1, scope: only(100, &[2], &[(1, 1), (2, 2)]) },
            ],
            "the base session drops the changed conversation, a new one takes it"
        );
        assert_eq!(
            plan.step(key(day + 12 * HOUR, &[(1, 1), (2, 3)])),
            vec![
                Action::Freeze { id: 1 },
                Action::Rescope { id: 0, scope: all(100, &[2], &[(1, 1), (2, 3)]) },
                Action::Start { id: 2, scope: only(100, &[2], &[(1, 1), (2, 3)]) },
            ],
            "a second change of it freezes the first change's session"
        );
        assert_eq!(plan.step(key(day + 13 * HOUR, &[(1, 1)])), vec![], "leaving a conversation is not a change");
        let turn = plan.step(key(day + 23 * HOUR, &[(1, 1), (2, 3)]));
        assert_eq!(
            turn,
            vec![
                Action::Freeze { id: 0 },
                Action::Freeze { id: 2 },
                Action::Start { id: 3, scope: all(101, &[], &[(1, 1), (2, 3)]) }
            ],
            "at the day's turn every conversation is in one new session"
        );
    }

    #[test]
    fn a_session_never_follows_an_epoch_later_than_the_one_it_took() {
        let scope = all(100, &[], &[(1, 1)]);
        assert!(scope.serves(&[1; 32], &[1; 32]));
        assert!(!scope.serves(&[1; 32], &[2; 32]), "the next epoch waits for its own session");
        assert!(scope.serves(&[9; 32], &[5; 32]), "a conversation new since the scope was set joins");
        let only = only(100, &[1], &[(1, 2)]);
        assert!(only.serves(&[1; 32], &[2; 32]) && !only.serves(&[9; 32], &[5; 32]));
    }

    #[test]
    fn days_away_stop_every_old_session_and_many_changes_keep_a_few() {
        let day = 100 * PERIOD_MS;
        let mut plan = Plan::new(key(day + 9 * HOUR, &[(1, 0)]));
        for e in 1..=5u8 {
            plan.step(key(day + 9 * HOUR + u64::from(e), &[(1, e)]));
        }
        assert_eq!(plan.frozen(), MAX_FROZEN);
        let actions = plan.step(key(day + 3 * PERIOD_MS, &[(1, 5)]));
        assert_eq!(plan.frozen(), 0, "{actions:?}");
        assert!(actions.contains(&Action::Start { id: 6, scope: all(103, &[], &[(1, 5)]) }), "{actions:?}");
    }
}
