//! Epochs: a group's shared secret between two membership changes. Everything derived from it
//! (topics, the header key, the control key) changes when membership does, so a removed member
//! can neither read new headers nor recognise the group's new topics.

use crate::crypto::{Secret32, derive_array, label, secret};
use crate::envelope::{TOPIC_LEN, Topic};

/// Topics rotate once a day.
pub const PERIOD_MS: u64 = 24 * 60 * 60 * 1000;

/// How long before midnight tomorrow's topics are followed, and new envelopes sealed under them.
pub const TOMORROW_LEAD_MS: u64 = 60 * 60 * 1000;

pub fn period_of(time_ms: u64) -> u64 {
    time_ms / PERIOD_MS
}

/// The period under which an envelope sealed at `time_ms` goes, and the one a new network
/// session serves: today's, or tomorrow's in the last [`TOMORROW_LEAD_MS`] before midnight, when
/// a network session for tomorrow's topics runs beside today's. What is written then is published by the session that will carry the next
/// day, and read by everyone from their own 23:00 (see docs/DECISIONS.md, "The last hour").
pub fn serving_period(time_ms: u64) -> u64 {
    let today = period_of(time_ms);
    if PERIOD_MS - time_ms % PERIOD_MS <= TOMORROW_LEAD_MS { today + 1 } else { today }
}

const TOPIC: &[u8] = label("weft/v1/topic");
const HEADER_KEY: &[u8] = label("weft/v1/header-key");
const CONTROL_KEY: &[u8] = label("weft/v1/control-key");
const HISTORY_TOKEN: &[u8] = label("weft/v1/history-token");
const MEET_TOKEN: &[u8] = label("weft/v1/meet-token");

#[derive(Clone)]
pub struct Epoch {
    /// The membership operation that started the epoch (or the pair group's id).
    pub id: [u8; 32],
    pub secret: Secret32,
    header_key: Secret32,
    /// The last topic computed, by period: senders ask for the same one again and again.
    topic_cache: std::cell::Cell<Option<(u64, Topic)>>,
}

impl Epoch {
    pub fn new(id: [u8; 32], secret_bytes: [u8; 32]) -> Self {
        let header_key = secret(derive_array(&id, &secret_bytes, &[HEADER_KEY]));
        Epoch { id, secret: secret(secret_bytes), header_key, topic_cache: std::cell::Cell::new(None) }
    }

    /// The topic for a period: unlinkable across periods without the secret.
    pub fn topic(&self, period: u64) -> Topic {
        if let Some((p, topic)) = self.topic_cache.get()
            && p == period
        {
            return topic;
        }
        let full: [u8; 32] = derive_array(&period.to_be_bytes(), &self.secret[..], &[TOPIC, &self.id]);
        let topic: Topic = full[..TOPIC_LEN].try_into().expect("32 > 16");
        self.topic_cache.set(Some((period, topic)));
        topic
    }

    /// What a member shows another to be served the epoch's history, for a period: derived
    /// from the secret, unlike the topic, which every peer on the network sees subscribed to.
    pub fn history_token(&self, period: u64) -> [u8; 16] {
        let full: [u8; 32] = derive_array(&period.to_be_bytes(), &self.secret[..], &[HISTORY_TOKEN, &self.id]);
        full[..16].try_into().expect("32 > 16")
    }

    /// What members show their relay to be introduced to each other for a period
    /// (`crate::net::meet`): derived from the secret, so a peer that only saw the topic
    /// followed cannot ask.
    pub fn meet_token(&self, period: u64) -> [u8; 16] {
        let full: [u8; 32] = derive_array(&period.to_be_bytes(), &self.secret[..], &[MEET_TOKEN, &self.id]);
        full[..16].try_into().expect("32 > 16")
    }

    pub fn header_key(&self) -> &[u8; 32] {
        &self.header_key
    }

    /// Body key of control messages (key shares, membership changes), which must be readable
    /// by members that do not hold the sender's chain yet. Salted by the envelope's nonce, so
    /// each control message has a key of its own.
    pub fn control_key(&self, nonce: &[u8]) -> Secret32 {
        secret(derive_array(nonce, &self.secret[..], &[CONTROL_KEY, &self.id]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_sealed_in_the_last_hour_go_under_tomorrows_topics() {
        let day = 20_000 * PERIOD_MS;
        assert_eq!(serving_period(day), 20_000);
        assert_eq!(serving_period(day + PERIOD_MS - TOMORROW_LEAD_MS - 1), 20_000);
        assert_eq!(serving_period(day + PERIOD_MS - TOMORROW_LEAD_MS), 20_001, "from 23:00");
        assert_eq!(serving_period(day + PERIOD_MS - 1), 20_001);
        assert_eq!(serving_period(day + PERIOD_MS), 20_001);
    }
}
