//! Ids remembered for a while, at most so many, the oldest forgotten first.

use std::collections::{HashMap, VecDeque};

use crate::sync::Item;

#[derive(Debug)]
pub struct Remembered {
    since: HashMap<Item, u64>,
    order: VecDeque<(u64, Item)>,
    for_ms: u64,
    most: usize,
}

impl Remembered {
    pub fn new(for_ms: u64, most: usize) -> Self {
        Remembered { since: HashMap::new(), order: VecDeque::new(), for_ms, most }
    }

    pub fn insert(&mut self, id: Item, now_ms: u64) {
        self.since.insert(id, now_ms);
        self.order.push_back((now_ms, id));
        while self.order.len() > self.most {
            self.forget_front();
        }
    }

    pub fn contains(&self, id: &Item) -> bool {
        self.since.contains_key(id)
    }

    pub fn remove(&mut self, id: &Item) {
        self.since.remove(id);
    }

    pub fn ids(&self) -> impl Iterator<Item = &Item> {
        self.since.keys()
    }

    /// Forgets what has been remembered for longer than its time.
    pub fn expire(&mut self, now_ms: u64) {
        while self.order.front().is_some_and(|(at, _)| now_ms.saturating_sub(*at) > self.for_ms) {
            self.forget_front();
        }
    }

    /// Forgets the oldest id (unless it was remembered again since).
    fn forget_front(&mut self) {
        if let Some((at, id)) = self.order.pop_front()
            && self.since.get(&id) == Some(&at)
        {
            self.since.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_forgotten_after_their_time_or_past_the_most() {
        let mut r = Remembered::new(1_000, 2);
        r.insert([1; 16], 0);
        r.insert([2; 16], 500);
        r.expire(1_200);
        assert!(!r.contains(&[1; 16]) && r.contains(&[2; 16]));
        r.insert([3; 16], 1_200);
        r.insert([4; 16], 1_200);
        assert!(!r.contains(&[2; 16]), "the oldest goes past the most");
        // Remembered again: the older entry's expiry does not forget it.
        r.insert([3; 16], 1_900);
        r.expire(2_300);
        assert!(r.contains(&[3; 16]) && !r.contains(&[4; 16]));
    }
}
