//! Which central owns which notify slot of our GATT server.
//!
//! BlueZ sends a characteristic's notifications to every central subscribed to it; it cannot
//! notify one of them. So the peripheral serves one notify characteristic per link (a slot): a
//! central first reads the slot characteristic (BlueZ tells us who reads), is given a free slot,
//! and subscribes to that slot's characteristic alone. This table is that bookkeeping, without
//! D-Bus, so it is tested on its own.
//!
//! A slot claimed and never subscribed (the central walked away, or a stranger only reads)
//! frees itself after [`CLAIM_TIMEOUT_MS`]; a device holds at most one slot.

/// Notify slots a peripheral serves: the most centrals linked to it at once.
pub const SLOTS: usize = 7;
/// How long a claimed slot waits for its subscription.
pub const CLAIM_TIMEOUT_MS: u64 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Claimed { at_ms: u64 },
    Subscribed { link: u64 },
}

#[derive(Clone, Debug)]
struct Slot<D> {
    device: D,
    mtu: u16,
    state: State,
}

/// The slots, each free or held by one device.
#[derive(Debug)]
pub struct SlotTable<D> {
    slots: Vec<Option<Slot<D>>>,
}

/// Every slot is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotsFull;

impl<D: Clone + PartialEq> Default for SlotTable<D> {
    fn default() -> Self {
        SlotTable { slots: vec![None; SLOTS] }
    }
}

impl<D: Clone + PartialEq> SlotTable<D> {
    /// `device` read the slot characteristic: its slot (the one it has, or a free one).
    pub fn claim(&mut self, device: &D, mtu: u16, now_ms: u64) -> Result<u8, SlotsFull> {
        if let Some(k) = self.index_of(device) {
            let slot = self.slots[k].as_mut().expect("index_of found it");
            slot.mtu = mtu;
            if let State::Claimed { at_ms } = &mut slot.state {
                *at_ms = now_ms;
            }
            return Ok(k as u8);
        }
        for entry in &mut self.slots {
            let stale = matches!(entry, Some(Slot { state: State::Claimed { at_ms }, .. })
                if now_ms.saturating_sub(*at_ms) >= CLAIM_TIMEOUT_MS);
            if stale {
                *entry = None;
            }
        }
        let k = self.slots.iter().position(Option::is_none).ok_or(SlotsFull)?;
        self.slots[k] = Some(Slot { device: device.clone(), mtu, state: State::Claimed { at_ms: now_ms } });
        Ok(k as u8)
    }

    /// Slot `k` was subscribed to: it becomes `link`. The device and MTU it was claimed with,
    /// or `None` if nobody claimed it (or it is already a link).
    pub fn subscribe(&mut self, k: u8, link: u64) -> Option<(D, u16)> {
        let slot = self.slots.get_mut(k as usize)?.as_mut()?;
        if !matches!(slot.state, State::Claimed { .. }) {
            return None;
        }
        slot.state = State::Subscribed { link };
        Some((slot.device.clone(), slot.mtu))
    }

    /// The link `device` writes on, once it subscribed.
    pub fn link_of(&self, device: &D) -> Option<u64> {
        match self.slots[self.index_of(device)?].as_ref()?.state {
            State::Subscribed { link } => Some(link),
            State::Claimed { .. } => None,
        }
    }

    /// Slot `k`'s link, if it is one.
    pub fn link_at(&self, k: u8) -> Option<u64> {
        match self.slots.get(k as usize)?.as_ref()?.state {
            State::Subscribed { link } => Some(link),
            State::Claimed { .. } => None,
        }
    }

    /// Frees `link`'s slot; the device it was, if any.
    pub fn release_link(&mut self, link: u64) -> Option<D> {
        let k = self
            .slots
            .iter()
            .position(|s| matches!(s, Some(Slot { state: State::Subscribed { link: l }, .. }) if *l == link))?;
        self.slots[k].take().map(|s| s.device)
    }

    /// `device` disconnected: frees its slot; its link, if it had one.
    pub fn device_gone(&mut self, device: &D) -> Option<u64> {
        let k = self.index_of(device)?;
        match self.slots[k].take()?.state {
            State::Subscribed { link } => Some(link),
            State::Claimed { .. } => None,
        }
    }

    /// Links open through the slots.
    pub fn links(&self) -> usize {
        self.slots.iter().flatten().filter(|s| matches!(s.state, State::Subscribed { .. })).count()
    }

    fn index_of(&self, device: &D) -> Option<usize> {
        self.slots.iter().position(|s| s.as_ref().is_some_and(|s| &s.device == device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_central_gets_its_own_slot_and_keeps_it() {
        let mut t = SlotTable::default();
        assert_eq!(t.claim(&"a", 185, 0), Ok(0));
        assert_eq!(t.claim(&"b", 23, 0), Ok(1));
        assert_eq!(t.claim(&"a", 247, 5), Ok(0), "reading again gives the same slot");
        assert_eq!(t.subscribe(0, 11), Some(("a", 247)));
        assert_eq!(t.subscribe(0, 12), None, "a slot is one link");
        assert_eq!(t.link_of(&"a"), Some(11));
        assert_eq!(t.link_of(&"b"), None, "b has not subscribed");
        assert_eq!(t.links(), 1);
        assert_eq!(t.device_gone(&"a"), Some(11));
        assert_eq!(t.claim(&"c", 23, 6), Ok(0), "a freed slot is reused");
    }

    #[test]
    fn an_unsubscribed_claim_expires_and_a_full_table_refuses() {
        let mut t = SlotTable::default();
        for n in 0..SLOTS as u64 {
            assert_eq!(t.claim(&n, 23, 0), Ok(n as u8));
        }
        t.subscribe(0, 100).unwrap();
        assert_eq!(t.claim(&99, 23, CLAIM_TIMEOUT_MS - 1), Err(SlotsFull));
        assert_eq!(t.claim(&99, 23, CLAIM_TIMEOUT_MS), Ok(1), "stale claims are freed, links are not");
        assert_eq!(t.subscribe(2, 101), None, "the expired claim cannot be subscribed");
        assert_eq!(t.release_link(100), Some(0));
        assert_eq!(t.link_at(0), None);
    }
}
