//! What bounds a flooder: how many envelopes of each topic a node carries for others, and how
//! many topics it starts carrying.
//!
//! A flooder writing junk under topics nobody reads would be carried by everyone (every node
//! takes every envelope), so one radio writing ten envelopes a second raised the festival's air
//! traffic thirtyfold (issue 18). Nothing in an envelope tells junk from a message and nothing
//! names its author, but a flood is fast where people are slow: a group's members write a few
//! messages a minute at most, and a crowd starts few new conversations a minute. So a node takes
//! at most `PER_TOPIC_PER_MINUTE` envelopes a minute of any one topic (after a burst a busy chat
//! never reaches), and starts carrying at most `NEW_TOPICS_PER_MINUTE` topics it has not seen
//! (after a burst larger than the groups of a stadium): a flooder under one topic or a topic per
//! envelope adds at most a few envelopes a minute to what each node carries, whatever its rate.
//! Offers name each envelope's topic by a four-byte tag (`MeshMessage::OfferTagged`), so what
//! is over budget is not asked for: it never crosses the air to us.
//!
//! Our own topics are always taken (we read them). So, once a topic is over its budget, a
//! neighbour that offers its envelopes can tell a member (which asks) from a stranger (which
//! does not): docs/THREAT_MODEL.md, B5, says what this costs.

use std::collections::HashMap;

use super::message::TopicTag;

pub const PER_TOPIC_BURST: f64 = 32.0;
pub const PER_TOPIC_PER_MINUTE: f64 = 4.0;
pub const NEW_TOPICS_BURST: f64 = 256.0;
pub const NEW_TOPICS_PER_MINUTE: f64 = 2.0;
/// Topics whose budget is kept; past this the longest known is forgotten (it starts again
/// with a full burst, paid for by a new topic's token).
pub const MAX_BUDGETED_TOPICS: usize = 4_096;

/// Tokens that come back at a steady rate, up to a burst.
#[derive(Clone, Copy, Debug)]
pub struct TokenBucket {
    tokens: f64,
    at_ms: u64,
    burst: f64,
    per_minute: f64,
}

impl TokenBucket {
    pub fn full(burst: f64, per_minute: f64, now_ms: u64) -> Self {
        TokenBucket { tokens: burst, at_ms: now_ms, burst, per_minute }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives a token back (what it paid for never came), up to the burst.
    pub fn give_back(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }

    /// When a token was last taken or counted.
    fn last_used_ms(&self) -> u64 {
        self.at_ms
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.at_ms = self.at_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed as f64 * self.per_minute / 60_000.0).min(self.burst);
    }
}

/// How many envelopes of each topic, and how many new topics, a node still takes.
/// Topics are known by their tags (an offer says no more), so topics that share a tag share
/// a budget: among a crowd's few hundred topics, one in ten million pairs does.
#[derive(Debug)]
pub struct TopicBudget {
    topics: HashMap<TopicTag, Budgeted>,
    new_topics: TokenBucket,
}

#[derive(Debug)]
struct Budgeted {
    bucket: TokenBucket,
    /// Whether an envelope of it ever came: until then, a want never answered gives back the
    /// new topic's token too.
    came: bool,
}

impl Default for TopicBudget {
    fn default() -> Self {
        TopicBudget {
            topics: HashMap::new(),
            new_topics: TokenBucket::full(NEW_TOPICS_BURST, NEW_TOPICS_PER_MINUTE, 0),
        }
    }
}

impl TopicBudget {
    /// Whether one more envelope of the topic tagged `topic` is carried; if so, it is counted.
    pub fn admit(&mut self, topic: &TopicTag, now_ms: u64) -> bool {
        if let Some(budgeted) = self.topics.get_mut(topic) {
            return budgeted.bucket.take(now_ms);
        }
        if !self.new_topics.take(now_ms) {
            return false;
        }
        if self.topics.len() >= MAX_BUDGETED_TOPICS {
            // The one used least lately goes (a scan, at most two new topics a minute).
            let stalest = self.topics.iter().min_by_key(|(tag, b)| (b.bucket.last_used_ms(), **tag)).map(|(t, _)| *t);
            if let Some(stalest) = stalest {
                self.topics.remove(&stalest);
            }
        }
        let mut bucket = TokenBucket::full(PER_TOPIC_BURST, PER_TOPIC_PER_MINUTE, now_ms);
        bucket.take(now_ms);
        self.topics.insert(*topic, Budgeted { bucket, came: false });
        true
    }

    /// An envelope of the topic came.
    pub fn came(&mut self, topic: &TopicTag) {
        if let Some(budgeted) = self.topics.get_mut(topic) {
            budgeted.came = true;
        }
    }

    /// What was admitted for the topic never came (a want not answered): its token is given
    /// back, and a topic nothing ever came of is forgotten with its new topic's token given
    /// back, so a neighbour offering what it withholds cannot spend our budgets for long.
    pub fn refund(&mut self, topic: &TopicTag) {
        let Some(budgeted) = self.topics.get_mut(topic) else { return };
        if budgeted.came {
            budgeted.bucket.give_back();
        } else {
            self.topics.remove(topic);
            self.new_topics.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_takes_its_burst_then_its_rate() {
        let mut budget = TopicBudget::default();
        let taken = (0..100).filter(|_| budget.admit(&[1; 4], 0)).count();
        assert_eq!(taken, PER_TOPIC_BURST as usize);
        let a_minute_on = (0..100).filter(|_| budget.admit(&[1; 4], 60_000)).count();
        assert_eq!(a_minute_on, PER_TOPIC_PER_MINUTE as usize);
    }

    #[test]
    fn a_topic_per_envelope_runs_out_of_new_topics() {
        let mut budget = TopicBudget::default();
        let taken = (0..10_000u32).filter(|n| budget.admit(&topic(*n), 0)).count();
        assert_eq!(taken, NEW_TOPICS_BURST as usize);
        let an_hour_on = (10_000..20_000u32).filter(|n| budget.admit(&topic(*n), 3_600_000)).count();
        assert_eq!(an_hour_on, (60.0 * NEW_TOPICS_PER_MINUTE) as usize, "an hour's worth, and no more");
    }

    #[test]
    fn the_topics_kept_are_bounded() {
        let mut budget = TopicBudget::default();
        for n in 0..20_000u32 {
            budget.admit(&topic(n), u64::from(n) * 60_000);
        }
        assert!(budget.topics.len() <= MAX_BUDGETED_TOPICS);
    }

    fn topic(n: u32) -> TopicTag {
        n.to_le_bytes()
    }
}
