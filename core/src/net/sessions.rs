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
    /// Whether any conversation has ended epochs still followed.
    pub previous: bool,
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
    /// Every conversation (the base session), with our rendezvous point and contact requests.
    All,
    /// Only these: conversations whose epoch changed during the period.
    Only(BTreeSet<GroupId>),
    /// The ended epochs still followed (control messages written just before an epoch change
    /// still travel on them), apart from the current epochs.
    Previous,
}

/// What one session follows: the topics of `period` of the conversations it serves, each in
/// the epoch it had when the session took it (or, for a conversation new since, its current
/// one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionScope {
    pub period: u64,
    pub serves: Serves,
    /// The epoch each conversation had when the session took it: a session never follows a
    /// later epoch's topics (a removed member would see them beside the old ones, under one
    /// peer id); those go to a session of their own.
    pub epochs: BTreeMap<GroupId, [u8; 32]>,
}

impl SessionScope {
    /// Whether this session follows `group` (in its current or taken epoch).
    pub fn serves(&self, group: &GroupId) -> bool {
        match &self.serves {
            Serves::All => true,
            Serves::Only(groups) => groups.contains(group),
            Serves::Previous => false,
        }
    }

    /// Whether this session also serves our rendezvous point and contact requests.
    pub fn is_base(&self) -> bool {
        matches!(self.serves, Serves::All)
    }
}

/// What the driver does with its sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start session `id` for this scope, under a fresh peer id. The base session of a
    /// period becomes the current one.
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

/// Which sessions run. In a period: a base session that follows every conversation in the
/// epoch it had when the base took it, and one more session for each epoch change, which
/// follows the new epoch of the conversations it changed for the rest of the period. So no
/// session follows an epoch's topics beside those of the epoch that replaced it, and a session
/// started for a change follows nothing another session did. At the next period everything
/// moves to one new base session, and the old ones are frozen.
#[derive(Debug)]
pub struct Plan {
    period: u64,
    base: u64,
    /// The epochs the base session follows.
    base_epochs: BTreeMap<GroupId, [u8; 32]>,
    changed: Vec<(u64, BTreeSet<GroupId>)>,
    /// The session of ended epochs' topics, if any.
    previous: Option<u64>,
    /// The epochs as last seen.
    epochs: BTreeMap<GroupId, [u8; 32]>,
    frozen: Vec<Frozen>,
    next_id: u64,
}

impl Plan {
    /// A plan whose first session (id 0) is the base of `key`'s period.
    pub fn new(key: SessionKey) -> Plan {
        Plan {
            period: key.period,
            base: 0,
            base_epochs: key.epochs.clone(),
            changed: Vec::new(),
            previous: None,
            epochs: key.epochs,
            frozen: Vec::new(),
            next_id: 1,
        }
    }

    /// The base session's scope.
    pub fn first_scope(&self) -> SessionScope {
        SessionScope { period: self.period, serves: Serves::All, epochs: self.base_epochs.clone() }
    }

    fn only(&self, groups: &BTreeSet<GroupId>) -> SessionScope {
        let epochs = self.epochs.iter().filter(|(g, _)| groups.contains(*g)).map(|(g, e)| (*g, *e)).collect();
        SessionScope { period: self.period, serves: Serves::Only(groups.clone()), epochs }
    }

    pub fn current(&self) -> u64 {
        self.base
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
            let old: Vec<u64> = std::iter::once(self.base)
                .chain(self.changed.iter().map(|(id, _)| *id))
                .chain(self.previous.take())
                .collect();
            for id in old {
                self.freeze(id, &mut actions);
            }
            self.period = wanted.period;
            self.epochs = wanted.epochs.clone();
            self.base_epochs = wanted.epochs;
            self.changed.clear();
            self.base = self.fresh_id();
            actions.push(Action::Start { id: self.base, scope: self.first_scope() });
            if wanted.previous {
                // Ended epochs' topics of the new period, apart from the current ones.
                let id = self.fresh_id();
                let scope = SessionScope { period: self.period, serves: Serves::Previous, epochs: BTreeMap::new() };
                actions.push(Action::Start { id, scope });
                self.previous = Some(id);
            }
        } else {
            let changed: BTreeSet<GroupId> = self
                .epochs
                .iter()
                .filter(|(g, e)| wanted.epochs.get(*g).is_some_and(|n| n != *e))
                .map(|(g, _)| *g)
                .collect();
            let joined: Vec<(GroupId, [u8; 32])> = wanted
                .epochs
                .iter()
                .filter(|(g, _)| !self.base_epochs.contains_key(*g))
                .map(|(g, e)| (*g, *e))
                .collect();
            self.epochs = wanted.epochs;
            if !joined.is_empty() {
                // New conversations join the base session, in the epoch they have now.
                self.base_epochs.extend(joined);
                actions.push(Action::Rescope { id: self.base, scope: self.first_scope() });
            }
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
                let id = self.fresh_id();
                actions.push(Action::Start { id, scope: self.only(&changed) });
                self.changed.push((id, changed));
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
            previous: false,
        }
    }

    fn epochs(list: &[(u8, u8)]) -> BTreeMap<GroupId, [u8; 32]> {
        list.iter().map(|(g, e)| ([*g; 32], [*e; 32])).collect()
    }

    fn all(period: u64, list: &[(u8, u8)]) -> SessionScope {
        SessionScope { period, serves: Serves::All, epochs: epochs(list) }
    }

    fn only(period: u64, groups: &[u8], list: &[(u8, u8)]) -> SessionScope {
        SessionScope { period, serves: Serves::Only(groups.iter().map(|g| [*g; 32]).collect()), epochs: epochs(list) }
    }

    #[test]
    fn a_new_session_starts_an_hour_before_midnight_and_the_old_one_stops_two_hours_after() {
        let day = 100 * PERIOD_MS;
        let mut plan = Plan::new(key(day + 12 * HOUR, &[(1, 1)]));
        assert_eq!(plan.step(key(day + 22 * HOUR, &[(1, 1)])), vec![]);
        assert_eq!(
            plan.step(key(day + 23 * HOUR, &[(1, 1)])),
            vec![Action::Freeze { id: 0 }, Action::Start { id: 1, scope: all(101, &[(1, 1)]) }]
        );
        assert_eq!(plan.step(key(day + PERIOD_MS + HOUR, &[(1, 1)])), vec![], "yesterday's session lingers");
        assert_eq!(plan.step(key(day + PERIOD_MS + 2 * HOUR, &[(1, 1)])), vec![Action::Stop { id: 0 }]);
        assert_eq!(plan.current(), 1);
    }

    #[test]
    fn an_epoch_change_gives_the_new_epoch_a_session_of_its_own_until_the_day_turns() {
        let day = 100 * PERIOD_MS;
        let mut plan = Plan::new(key(day + 9 * HOUR, &[(1, 1)]));
        assert_eq!(
            plan.step(key(day + 10 * HOUR, &[(1, 1), (2, 1)])),
            vec![Action::Rescope { id: 0, scope: all(100, &[(1, 1), (2, 1)]) }],
            "a new conversation joins the base session"
        );
        assert_eq!(
            plan.step(key(day + 11 * HOUR, &[(1, 1), (2, 2)])),
            vec![Action::Start { id: 1, scope: only(100, &[2], &[(2, 2)]) }],
            "the base keeps the old epoch, a new session takes the new one"
        );
        assert_eq!(
            plan.step(key(day + 12 * HOUR, &[(1, 1), (2, 3)])),
            vec![Action::Freeze { id: 1 }, Action::Start { id: 2, scope: only(100, &[2], &[(2, 3)]) }],
            "a second change of it freezes the first change's session"
        );
        assert_eq!(plan.step(key(day + 13 * HOUR, &[(1, 1)])), vec![], "leaving a conversation is not a change");
        let turn = plan.step(key(day + 23 * HOUR, &[(1, 1), (2, 3)]));
        assert_eq!(
            turn,
            vec![
                Action::Freeze { id: 0 },
                Action::Freeze { id: 2 },
                Action::Start { id: 3, scope: all(101, &[(1, 1), (2, 3)]) }
            ],
            "at the day's turn every conversation is in one new session"
        );
    }

    #[test]
    fn ended_epochs_of_the_new_day_get_a_session_apart_from_the_current_ones() {
        let day = 100 * PERIOD_MS;
        let mut plan = Plan::new(key(day + 9 * HOUR, &[(1, 1)]));
        plan.step(key(day + 10 * HOUR, &[(1, 2)]));
        let previous = SessionScope { period: 101, serves: Serves::Previous, epochs: BTreeMap::new() };
        let turn = plan.step(SessionKey { previous: true, ..key(day + 23 * HOUR, &[(1, 2)]) });
        assert_eq!(
            turn,
            vec![
                Action::Freeze { id: 0 },
                Action::Freeze { id: 1 },
                Action::Start { id: 2, scope: all(101, &[(1, 2)]) },
                Action::Start { id: 3, scope: previous },
            ]
        );
        let next = plan.step(SessionKey { previous: true, ..key(day + PERIOD_MS + 23 * HOUR, &[(1, 2)]) });
        assert!(next.contains(&Action::Freeze { id: 3 }), "{next:?}");
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
        assert!(actions.contains(&Action::Start { id: 6, scope: all(103, &[(1, 5)]) }), "{actions:?}");
    }
}
