//! A simulated radio medium: nodes at positions in a field, moving or not, that discover each
//! other by scanning, hold a few links each, and move fragments over them at BLE-like speeds
//! with loss. Pure and deterministic for a seed: time advances only through [`Medium::step`].
//!
//! It stands in for Bluetooth where there is none: the simulator drives routers over it
//! directly, and the in-process radio driver (`crate::mesh::radio::sim`) runs it in real time
//! behind the same `Radio` trait as the btleplug driver.

use std::collections::{BTreeMap, VecDeque};

use super::router::LinkId;

/// A node of the medium, by index.
pub type NodeIndex = usize;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MediumConfig {
    /// Distance at which two radios hear each other, in metres.
    pub range_m: f64,
    /// ATT MTU of every link.
    pub mtu: usize,
    /// Throughput of one direction of one link.
    pub bytes_per_sec: u32,
    /// Links one radio holds at once (stock Android manages about 7).
    pub max_links: usize,
    /// How often a radio scans for new neighbours.
    pub scan_interval_ms: u64,
    /// Chance that a fragment is lost on the air.
    pub loss: f64,
    /// Bytes a link direction buffers before it drops what is written to it.
    pub max_queued_bytes: usize,
}

impl Default for MediumConfig {
    fn default() -> Self {
        MediumConfig {
            range_m: 30.0,
            mtu: 247,
            bytes_per_sec: 20_000,
            max_links: 7,
            scan_interval_ms: 2_000,
            loss: 0.0,
            max_queued_bytes: 256 * 1024,
        }
    }
}

/// How a node moves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mobility {
    Static,
    /// Walks to random points of a `width` × `height` field at a random speed between
    /// `min_speed` and `max_speed` (m/s), pausing up to `max_pause_ms` at each.
    RandomWaypoint {
        width: f64,
        height: f64,
        min_speed: f64,
        max_speed: f64,
        max_pause_ms: u64,
    },
}

/// What happened on the air during a step, per node.
#[derive(Clone, Debug, PartialEq)]
pub enum MediumEvent {
    LinkUp { node: NodeIndex, link: LinkId, mtu: usize, initiator: bool },
    LinkDown { node: NodeIndex, link: LinkId },
    Fragment { node: NodeIndex, link: LinkId, fragment: Vec<u8> },
}

/// Deterministic random numbers (SplitMix64): the simulator must not depend on a crate's
/// algorithm changing under it.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        out
    }
}

struct Radio {
    x: f64,
    y: f64,
    mobility: Mobility,
    target: (f64, f64),
    speed: f64,
    paused_until_ms: u64,
    links: Vec<LinkId>,
    next_scan_ms: u64,
    enabled: bool,
}

struct Link {
    ends: [NodeIndex; 2],
    queues: [VecDeque<Vec<u8>>; 2],
    queued_bytes: [usize; 2],
    credit: [f64; 2],
}

pub struct Medium {
    config: MediumConfig,
    /// Walks and scan phases.
    rng: SimRng,
    /// Loss on the air, a stream of its own: with one shared stream, a strategy that sends more
    /// fragments would also change everyone's walk, and runs of two strategies on one seed
    /// would no longer be paired.
    loss_rng: SimRng,
    radios: Vec<Radio>,
    links: BTreeMap<LinkId, Link>,
    next_link: LinkId,
    now_ms: u64,
    bytes_on_air: u64,
    fragments_lost: u64,
    /// Every byte sent on the air, when a test listens like an eavesdropper.
    capture: Option<Vec<u8>>,
}

/// The most an eavesdropping capture keeps.
const MAX_CAPTURE: usize = 64 << 20;

impl Medium {
    pub fn new(config: MediumConfig, seed: u64) -> Self {
        Medium {
            config,
            rng: SimRng::new(seed),
            loss_rng: SimRng::new(seed ^ 0x1055_1055_1055_1055),
            radios: Vec::new(),
            links: BTreeMap::new(),
            next_link: 1,
            now_ms: 0,
            bytes_on_air: 0,
            fragments_lost: 0,
            capture: None,
        }
    }

    /// Starts keeping every fragment sent from now on, as an eavesdropper in range of
    /// everyone would.
    pub fn start_capture(&mut self) {
        self.capture.get_or_insert_with(Vec::new);
    }

    /// What the capture heard.
    pub fn captured(&self) -> &[u8] {
        self.capture.as_deref().unwrap_or_default()
    }

    pub fn config(&self) -> &MediumConfig {
        &self.config
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Every byte written to the air so far, lost fragments included.
    pub fn bytes_on_air(&self) -> u64 {
        self.bytes_on_air
    }

    pub fn fragments_lost(&self) -> u64 {
        self.fragments_lost
    }

    pub fn len(&self) -> usize {
        self.radios.len()
    }

    pub fn is_empty(&self) -> bool {
        self.radios.is_empty()
    }

    pub fn add_node(&mut self, x: f64, y: f64, mobility: Mobility) -> NodeIndex {
        // Scans start at a random phase, as real radios do.
        let next_scan_ms = self.rng.below(self.config.scan_interval_ms.max(1));
        self.radios.push(Radio {
            x,
            y,
            mobility,
            target: (x, y),
            speed: 0.0,
            paused_until_ms: 0,
            links: Vec::new(),
            next_scan_ms,
            enabled: true,
        });
        self.radios.len() - 1
    }

    pub fn position(&self, node: NodeIndex) -> (f64, f64) {
        (self.radios[node].x, self.radios[node].y)
    }

    /// Moves a node at once (a scripted walk); its links follow at the next step.
    pub fn set_position(&mut self, node: NodeIndex, x: f64, y: f64) {
        self.radios[node].x = x;
        self.radios[node].y = y;
    }

    /// Turns a node's radio off (dropping its links) or on.
    pub fn set_enabled(&mut self, node: NodeIndex, enabled: bool) {
        self.radios[node].enabled = enabled;
    }

    /// The links a node holds.
    pub fn links_of(&self, node: NodeIndex) -> &[LinkId] {
        &self.radios[node].links
    }

    /// Queues a fragment from `node` on `link`. A fragment on a link that is gone, or beyond
    /// what the link buffers, is dropped as a radio would.
    pub fn send(&mut self, node: NodeIndex, link: LinkId, fragment: Vec<u8>) {
        let max = self.config.max_queued_bytes;
        let Some(l) = self.links.get_mut(&link) else { return };
        let Some(side) = l.ends.iter().position(|&n| n == node) else { return };
        if l.queued_bytes[side] + fragment.len() > max {
            self.fragments_lost += 1;
            return;
        }
        l.queued_bytes[side] += fragment.len();
        l.queues[side].push_back(fragment);
    }

    /// Closes a link from either end.
    pub fn close(&mut self, link: LinkId, events: &mut Vec<MediumEvent>) {
        if let Some(l) = self.links.remove(&link) {
            for node in l.ends {
                self.radios[node].links.retain(|&x| x != link);
                events.push(MediumEvent::LinkDown { node, link });
            }
        }
    }

    /// Advances time by `dt_ms`: nodes move, links break and form, fragments cross.
    pub fn step(&mut self, dt_ms: u64) -> Vec<MediumEvent> {
        self.now_ms += dt_ms;
        let mut events = Vec::new();
        self.move_nodes(dt_ms);
        self.break_links(&mut events);
        self.scan(&mut events);
        self.transmit(dt_ms, &mut events);
        events
    }

    fn move_nodes(&mut self, dt_ms: u64) {
        let now = self.now_ms;
        for r in &mut self.radios {
            let Mobility::RandomWaypoint { width, height, min_speed, max_speed, max_pause_ms } = r.mobility else {
                continue;
            };
            if now < r.paused_until_ms {
                continue;
            }
            let (dx, dy) = (r.target.0 - r.x, r.target.1 - r.y);
            let distance = (dx * dx + dy * dy).sqrt();
            let stride = r.speed * dt_ms as f64 / 1000.0;
            if distance <= stride || r.speed == 0.0 {
                r.x = r.target.0;
                r.y = r.target.1;
                if r.speed > 0.0 {
                    r.paused_until_ms = now + self.rng.below(max_pause_ms + 1);
                }
                r.target = (self.rng.range(0.0, width), self.rng.range(0.0, height));
                r.speed = self.rng.range(min_speed, max_speed);
            } else {
                r.x += dx / distance * stride;
                r.y += dy / distance * stride;
            }
        }
    }

    fn in_range(&self, a: NodeIndex, b: NodeIndex) -> bool {
        let (ra, rb) = (&self.radios[a], &self.radios[b]);
        let (dx, dy) = (ra.x - rb.x, ra.y - rb.y);
        ra.enabled && rb.enabled && dx * dx + dy * dy <= self.config.range_m * self.config.range_m
    }

    fn break_links(&mut self, events: &mut Vec<MediumEvent>) {
        let broken: Vec<LinkId> =
            self.links.iter().filter(|(_, l)| !self.in_range(l.ends[0], l.ends[1])).map(|(id, _)| *id).collect();
        for link in broken {
            self.close(link, events);
        }
    }

    fn scan(&mut self, events: &mut Vec<MediumEvent>) {
        let interval = self.config.scan_interval_ms.max(1);
        for a in 0..self.radios.len() {
            if self.radios[a].next_scan_ms > self.now_ms {
                continue;
            }
            self.radios[a].next_scan_ms += interval;
            if !self.radios[a].enabled {
                continue;
            }
            for b in 0..self.radios.len() {
                if self.radios[a].links.len() >= self.config.max_links {
                    break;
                }
                if b == a || self.radios[b].links.len() >= self.config.max_links || !self.in_range(a, b) {
                    continue;
                }
                let linked = self.radios[a].links.iter().any(|l| self.links[l].ends.contains(&b));
                if linked {
                    continue;
                }
                let link = self.next_link;
                self.next_link += 1;
                self.links.insert(
                    link,
                    Link { ends: [a, b], queues: Default::default(), queued_bytes: [0; 2], credit: [0.0; 2] },
                );
                self.radios[a].links.push(link);
                self.radios[b].links.push(link);
                let mtu = self.config.mtu;
                events.push(MediumEvent::LinkUp { node: a, link, mtu, initiator: true });
                events.push(MediumEvent::LinkUp { node: b, link, mtu, initiator: false });
            }
        }
    }

    fn transmit(&mut self, dt_ms: u64, events: &mut Vec<MediumEvent>) {
        let budget = self.config.bytes_per_sec as f64 * dt_ms as f64 / 1000.0;
        for (&id, link) in &mut self.links {
            for side in 0..2 {
                if link.queues[side].is_empty() {
                    link.credit[side] = 0.0;
                    continue;
                }
                link.credit[side] += budget;
                while let Some(front) = link.queues[side].front() {
                    if front.len() as f64 > link.credit[side] {
                        break;
                    }
                    let fragment = link.queues[side].pop_front().expect("front exists");
                    link.credit[side] -= fragment.len() as f64;
                    link.queued_bytes[side] -= fragment.len();
                    self.bytes_on_air += fragment.len() as u64;
                    if let Some(capture) = &mut self.capture
                        && capture.len() + fragment.len() <= MAX_CAPTURE
                    {
                        capture.extend_from_slice(&fragment);
                    }
                    if self.config.loss > 0.0 && self.loss_rng.unit() < self.config.loss {
                        self.fragments_lost += 1;
                        continue;
                    }
                    events.push(MediumEvent::Fragment { node: link.ends[1 - side], link: id, fragment });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_in_range_link_and_out_of_range_unlink() {
        let mut m = Medium::new(MediumConfig::default(), 1);
        let a = m.add_node(0.0, 0.0, Mobility::Static);
        let b = m.add_node(20.0, 0.0, Mobility::Static);
        let c = m.add_node(60.0, 0.0, Mobility::Static);
        let events: Vec<_> = (0..30).flat_map(|_| m.step(100)).collect();
        let ups = events.iter().filter(|e| matches!(e, MediumEvent::LinkUp { .. })).count();
        assert_eq!(ups, 2, "one link, both ends: {events:?}");
        assert!(m.links_of(c).is_empty());
        m.set_position(b, 100.0, 0.0);
        let events = m.step(100);
        assert!(events.contains(&MediumEvent::LinkDown { node: a, link: 1 }));
    }

    #[test]
    fn bandwidth_paces_fragments_and_counts_bytes() {
        let config = MediumConfig { bytes_per_sec: 1_000, ..MediumConfig::default() };
        let mut m = Medium::new(config, 2);
        m.add_node(0.0, 0.0, Mobility::Static);
        m.add_node(1.0, 0.0, Mobility::Static);
        while m.links_of(0).is_empty() {
            m.step(100);
        }
        let link = m.links_of(0)[0];
        for _ in 0..10 {
            m.send(0, link, vec![0; 100]);
        }
        let delivered =
            |events: Vec<MediumEvent>| events.iter().filter(|e| matches!(e, MediumEvent::Fragment { .. })).count();
        assert_eq!(delivered(m.step(100)), 1);
        let rest: usize = (0..20).map(|_| delivered(m.step(100))).sum();
        assert_eq!(rest, 9);
        assert_eq!(m.bytes_on_air(), 1_000);
    }

    #[test]
    fn connection_limit_holds() {
        let config = MediumConfig { max_links: 2, ..MediumConfig::default() };
        let mut m = Medium::new(config, 3);
        for i in 0..6 {
            m.add_node(i as f64, 0.0, Mobility::Static);
        }
        for _ in 0..50 {
            m.step(100);
        }
        assert!((0..6).all(|n| m.links_of(n).len() <= 2));
    }

    #[test]
    fn same_seed_same_walk() {
        let walk = |seed| {
            let mobility = Mobility::RandomWaypoint {
                width: 100.0,
                height: 100.0,
                min_speed: 0.5,
                max_speed: 1.5,
                max_pause_ms: 10_000,
            };
            let mut m = Medium::new(MediumConfig::default(), seed);
            m.add_node(50.0, 50.0, mobility);
            for _ in 0..1000 {
                m.step(100);
            }
            m.position(0)
        };
        assert_eq!(walk(7), walk(7));
        assert_ne!(walk(7), walk(8));
    }

    /// Two strategies run on one seed must see the same walks: losing a fragment draws from a
    /// stream of its own, so sending more changes no one's path.
    #[test]
    fn loss_draws_do_not_change_the_walks() {
        let walk = |fragments: usize| {
            let mobility = Mobility::RandomWaypoint {
                width: 40.0,
                height: 40.0,
                min_speed: 0.5,
                max_speed: 1.5,
                max_pause_ms: 1_000,
            };
            let mut m = Medium::new(MediumConfig { loss: 0.3, ..MediumConfig::default() }, 11);
            m.add_node(10.0, 10.0, mobility);
            m.add_node(12.0, 10.0, mobility);
            for _ in 0..600 {
                if let Some(&link) = m.links_of(0).first() {
                    for _ in 0..fragments {
                        m.send(0, link, vec![0; 20]);
                    }
                }
                m.step(100);
            }
            (m.position(0), m.position(1), m.fragments_lost() > 0)
        };
        let (quiet, busy) = (walk(0), walk(5));
        assert_eq!((quiet.0, quiet.1), (busy.0, busy.1));
        assert!(busy.2, "the busy run lost fragments");
    }
}
