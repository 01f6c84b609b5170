//! Catching up after time away. A device follows each conversation's topics of today (of
//! yesterday too in the first hours of the day, and of tomorrow in its last hour); what was
//! written on the days it missed lies under topics it no longer follows, with relays and members.
//! Per conversation the store keeps `synced_through`: the period from which the device has
//! followed the conversation (every period before it is complete here; that one may have had
//! envelopes after the device left). A conversation whose `synced_through` is no longer followed
//! is behind (a device away overnight is, from 02:00), and the device asks
//!
//! - relays by time and bucket ([`crate::sync::Buckets`]): everything stored since it left, in
//!   the buckets its missed topics fall in, never the topics themselves;
//! - members by epoch ([`Scope::History`]): a reconciliation of the epoch's history from the
//!   missed period on, keyed by the epoch's history token of the day (derived from its secret:
//!   a peer that merely saw the epoch's topic cannot ask).
//!
//! Only relays the user listed move the period: once every one of them has answered a round
//! whole, unless the round taught the device a new epoch (a membership change while it was
//! away), whose days the next round asks for. A member's answer is never taken as proof of
//! being complete (the member may have been away too, or lie): histories are asked of members
//! for as long as the conversation is behind.

use std::collections::HashSet;

use super::Account;
use crate::envelope::Topic;
use crate::error::Result;
use crate::group::{GroupId, PERIOD_MS, period_of};
use crate::store::Rows;
use crate::sync::{Buckets, Cursor, EnvelopeSource, Item, Scope};

/// Topics are spread over 2^8 buckets for a relay catch-up: see docs/DECISIONS.md.
pub const CATCH_UP_BUCKET_BITS: u8 = 8;
/// What a relay keeps, in periods (14 days by default), and one more for clock skew.
const RELAY_KEEPS_PERIODS: u64 = 15;
/// Relays and devices disagree on the time by up to this much; a catch-up asks from this much
/// before the device left.
const CLOCK_SLACK_MS: u64 = PERIOD_MS;

/// What a relay catch-up asks for, and the conversations it covers with the epochs they had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatchUpPlan {
    pub after: Cursor,
    pub buckets: Buckets,
    /// The topics missed: never sent, kept to tell what the buckets cover.
    missed: Vec<Topic>,
    covers: Vec<(GroupId, Vec<[u8; 32]>)>,
    /// The first period followed when the plan was made: what a whole round marks (read again
    /// at the end, after 02:00 had passed meanwhile, it would skip yesterday).
    through: u64,
}

impl CatchUpPlan {
    /// How many conversations it catches up.
    pub fn conversations(&self) -> usize {
        self.covers.len()
    }

    /// The topics the device missed (it never names them to the relay).
    pub fn missed_topics(&self) -> &[Topic] {
        &self.missed
    }

    /// The same plan over `2^bits` buckets: the trade between what the relay sends and how
    /// many others' topics share each bucket named (see docs/DECISIONS.md).
    pub fn with_bucket_bits(&self, bits: u8) -> CatchUpPlan {
        let mut buckets = Buckets::new(bits);
        for topic in &self.missed {
            buckets.insert(topic);
        }
        CatchUpPlan { buckets, ..self.clone() }
    }
}

impl Account {
    /// The period a conversation is caught up through: as recorded, else since it began. A
    /// record later than today was made while the clock was set ahead and says nothing: it is
    /// read as "since it began" (a catch-up as far back as relays keep), never as "in step",
    /// which would switch catching up off until that day comes.
    fn synced_period(&self, gid: &GroupId) -> u64 {
        let today = period_of(self.now());
        let began = || self.groups.get(gid).map_or(0, |g| period_of(g.created_ms)).min(today);
        match self.store.read().synced_through(gid).ok().flatten() {
            Some(p) if p <= today => p,
            _ => began(),
        }
    }

    /// Conversations with a day no longer followed (yesterday's topics are followed until
    /// 02:00 only) that was not followed to its end, with the first such period. A device online
    /// every day is never behind: while it follows today's topics with a relay it moves to today,
    /// before yesterday's are left.
    fn behind(&self) -> Vec<(GroupId, u64)> {
        let (first_followed, _, _) = super::receive::network_days(self.now());
        self.groups
            .values()
            .filter(|g| g.current_epoch().is_some())
            .map(|g| (g.id, self.synced_period(&g.id)))
            .filter(|(_, synced)| *synced < first_followed)
            .collect()
    }

    fn epochs_of(&self, gid: &GroupId) -> Vec<[u8; 32]> {
        let mut epochs: Vec<[u8; 32]> =
            self.groups.get(gid).map(|g| g.epochs().map(|e| e.id).collect()).unwrap_or_default();
        epochs.sort_unstable();
        epochs
    }

    /// Connected to the relays the user listed: conversations in step move on (through today
    /// once the device has followed the day's topics with a relay for a whole round, `settled`;
    /// through yesterday before that, so that a visit of a few seconds does not skip what
    /// reached the relay late yesterday), and for those that missed whole days, the catch-up to
    /// ask the relays for (`None` if none did).
    pub fn catch_up_plan(&mut self, settled: bool) -> Result<Option<CatchUpPlan>> {
        self.follow_the_day();
        let today = period_of(self.now());
        let (first_followed, _, _) = super::receive::network_days(self.now());
        let behind = self.behind();
        let lagging: HashSet<GroupId> = behind.iter().map(|(g, _)| *g).collect();
        // Not settled: to the first period followed (a conversation with no record yet is then
        // not "behind" at once).
        let target = if settled { today } else { first_followed };
        let moving: Vec<GroupId> = self
            .groups
            .values()
            .filter(|g| g.current_epoch().is_some() && !lagging.contains(&g.id))
            // Forward only, but a record from a clock set ahead is overwritten.
            .filter(|g| self.store.read().synced_through(&g.id).ok().flatten().is_none_or(|p| p < target || p > today))
            .map(|g| g.id)
            .collect();
        if !moving.is_empty() {
            self.store.write_relaxed(|tx| {
                for gid in &moving {
                    tx.set_synced_through(gid, target)?;
                }
                Ok(())
            })?;
        }
        // Nothing older than what a relay keeps is asked of one.
        let oldest = today.saturating_sub(RELAY_KEEPS_PERIODS);
        let behind: Vec<(GroupId, u64)> = behind.into_iter().map(|(g, p)| (g, p.max(oldest))).collect();
        let Some(earliest) = behind.iter().map(|(_, p)| *p).min() else { return Ok(None) };
        let mut buckets = Buckets::new(CATCH_UP_BUCKET_BITS);
        let mut missed = Vec::new();
        let mut covers = Vec::new();
        for (gid, synced) in behind {
            let epochs = self.epochs_of(&gid);
            // The missed periods: from the last one synced (envelopes may have reached the
            // relay after we left) to the last one no longer followed (yesterday from 02:00).
            let missing = first_followed.saturating_sub(synced) as usize;
            for epoch in &epochs {
                for topic in self.topics.epoch_topics(&(gid, *epoch), synced).into_iter().take(missing) {
                    buckets.insert(&topic);
                    missed.push(topic);
                }
            }
            covers.push((gid, epochs));
        }
        let after = Cursor::at((earliest * PERIOD_MS).saturating_sub(CLOCK_SLACK_MS));
        Ok(Some(CatchUpPlan { after, buckets, missed, covers, through: first_followed }))
    }

    /// Every listed relay answered a whole catch-up (and what they sent was received before
    /// this call): the conversations it covered are caught up to the first period followed
    /// now, unless they learned of a new epoch meanwhile, whose days the next plan asks for.
    /// Returns how many conversations caught up.
    pub fn caught_up(&mut self, plan: &CatchUpPlan) -> Result<usize> {
        let first_followed = plan.through;
        let done: Vec<GroupId> =
            plan.covers.iter().filter(|(gid, epochs)| self.epochs_of(gid) == *epochs).map(|(gid, _)| *gid).collect();
        self.store.write_relaxed(|tx| {
            for gid in &done {
                tx.set_synced_through(gid, first_followed)?;
            }
            Ok(())
        })?;
        Ok(done.len())
    }

    /// The member catch-ups to start: for each conversation that missed whole days, its current
    /// epoch's topic of today (peers on it may be members) and the history scope to ask them
    /// for: the epoch's history token of today and the first period missed.
    pub fn history_wanted(&self) -> Vec<(Topic, Scope)> {
        let today = period_of(self.now());
        self.behind()
            .into_iter()
            .filter_map(|(gid, from)| {
                let epoch = self.groups.get(&gid)?.current_epoch()?;
                Some((epoch.topic(today), Scope::History { key: epoch.history_token(today), from }))
            })
            .collect()
    }

    /// The topics a history scope covers: those of the token's epoch from `from` on (as far
    /// back as the index reaches). `None` unless the token is one of an epoch of ours: a peer
    /// that only saw our topics (every connected peer does) is refused.
    fn history_topics(&self, token: &[u8; 16], from: u64) -> Option<Vec<Topic>> {
        let epoch = self.topics.epoch_of_token(token)?;
        Some(self.topics.epoch_topics(&epoch, from))
    }
}

/// The account as the source of envelopes for reconciliation with peers. Store errors read as
/// "nothing held": the sync then simply asks for more than it needs.
impl EnvelopeSource for Account {
    fn ids(&self, scope: &Scope) -> Option<Vec<Item>> {
        let store = self.store.read();
        match scope {
            Scope::Topic(topic) if self.is_link_envelope(topic) => self.link_ids(topic),
            Scope::Topic(topic) => Some(store.short_ids_on_topic(topic).unwrap_or_default()),
            Scope::History { key, from } => {
                Some(store.short_ids_on_topics(&self.history_topics(key, *from)?).unwrap_or_default())
            }
        }
    }

    fn history_tokens(&self) -> Vec<[u8; 16]> {
        self.topics.tokens().collect()
    }

    fn envelope(&self, scope: &Scope, id: &Item) -> Option<Vec<u8>> {
        let store = self.store.read();
        match scope {
            Scope::Topic(topic) if self.is_link_envelope(topic) => self.link_envelope(topic, id),
            Scope::Topic(topic) => store.envelope_by_short_id(topic, id).ok().flatten(),
            Scope::History { key, from } => {
                let (topic, bytes) = store.envelope_by_short_id_any(id).ok().flatten()?;
                let ((epoch, period), asked) = (self.topics.locate(&topic)?, self.topics.epoch_of_token(key)?);
                (epoch == asked && period >= *from).then_some(bytes)
            }
        }
    }
}
