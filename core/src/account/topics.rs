//! Which group and epoch each topic belongs to. Updated incrementally: a topic costs an HKDF to
//! compute, and envelopes arrive far more often than groups, epochs or days change.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;

use crate::envelope::Topic;
use crate::group::{Group, GroupId, PERIOD_MS, period_of};

/// Epochs that ended are listened to this many days more, for envelopes still on their way.
const OLD_EPOCH_GRACE_PERIODS: u64 = 30;
/// The current epoch is listened to back to the group's creation, but at most this far.
const MAX_HISTORY_PERIODS: u64 = crate::group::MAX_HISTORY_MS / PERIOD_MS;

type EpochKey = (GroupId, [u8; 32]);

#[derive(Default)]
pub(super) struct TopicIndex {
    /// Each topic's group and epoch, and the period it is for.
    by_topic: HashMap<Topic, (EpochKey, u64)>,
    built: HashMap<EpochKey, (RangeInclusive<u64>, Vec<Topic>)>,
    /// Each epoch's history tokens of yesterday, today and tomorrow.
    by_token: HashMap<[u8; 16], EpochKey>,
}

impl TopicIndex {
    pub fn get(&self, topic: &Topic) -> Option<EpochKey> {
        self.by_topic.get(topic).map(|(key, _)| *key)
    }

    /// The epoch whose history this token (of yesterday, today or tomorrow) asks for.
    pub fn epoch_of_token(&self, token: &[u8; 16]) -> Option<EpochKey> {
        self.by_token.get(token).copied()
    }

    /// Every history token indexed.
    pub fn tokens(&self) -> impl Iterator<Item = [u8; 16]> + '_ {
        self.by_token.keys().copied()
    }

    /// Every topic indexed.
    pub fn all(&self) -> impl Iterator<Item = Topic> + '_ {
        self.by_topic.keys().copied()
    }

    /// The group, epoch and period of a topic.
    pub fn locate(&self, topic: &Topic) -> Option<(EpochKey, u64)> {
        self.by_topic.get(topic).copied()
    }

    /// The topics of an epoch from period `from` on, as far as the index reaches.
    pub fn epoch_topics(&self, key: &EpochKey, from: u64) -> Vec<Topic> {
        let Some((range, topics)) = self.built.get(key) else { return Vec::new() };
        let skip = from.saturating_sub(*range.start()) as usize;
        topics.iter().skip(skip).copied().collect()
    }

    pub fn refresh(&mut self, groups: &BTreeMap<GroupId, Group>, now_ms: u64) {
        let today = period_of(now_ms);
        let mut wanted: HashMap<EpochKey, RangeInclusive<u64>> = HashMap::new();
        for group in groups.values() {
            let created = period_of(group.created_ms).saturating_sub(1).max(today.saturating_sub(MAX_HISTORY_PERIODS));
            let current = group.current_epoch().map(|e| e.id);
            for epoch in group.epochs() {
                let first = if Some(epoch.id) == current {
                    created
                } else {
                    created.max(today.saturating_sub(OLD_EPOCH_GRACE_PERIODS))
                };
                wanted.insert((group.id, epoch.id), first..=today + 1);
            }
        }
        self.by_token.clear();
        for group in groups.values() {
            for epoch in group.epochs() {
                for period in today.saturating_sub(1)..=today + 1 {
                    self.by_token.insert(epoch.history_token(period), (group.id, epoch.id));
                }
            }
        }
        let stale: Vec<EpochKey> =
            self.built.iter().filter(|(k, (range, _))| wanted.get(*k) != Some(range)).map(|(k, _)| *k).collect();
        for key in stale {
            if let Some((_, topics)) = self.built.remove(&key) {
                for t in topics {
                    self.by_topic.remove(&t);
                }
            }
        }
        for (key, range) in wanted {
            if self.built.contains_key(&key) {
                continue;
            }
            let Some(epoch) = groups.get(&key.0).and_then(|g| g.epochs().find(|e| e.id == key.1)) else { continue };
            let topics: Vec<Topic> = range.clone().map(|p| epoch.topic(p)).collect();
            for (t, period) in topics.iter().zip(range.clone()) {
                self.by_topic.insert(*t, (key, period));
            }
            self.built.insert(key, (range, topics));
        }
    }
}
