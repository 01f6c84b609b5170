//! A simulated radio medium: nodes at positions in a field, moving or not, that discover each
//! other by scanning, hold a few links each, and move fragments over them at BLE-like speeds
//! with loss. Pure and deterministic for a seed: time advances only through [`Medium::step`].
//!
//! It stands in for Bluetooth where there is none: the simulator drives routers over it
//! directly, and the in-process radio driver (`crate::mesh::radio::sim`) runs it in real time
//! behind the same `Radio` trait as the btleplug driver.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::router::LinkId;

/// A node of the medium, by index.
pub type NodeIndex = usize;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MediumConfig {
    /// Distance at which two radios hear each other, in metres.
    pub range_m: f64,
    /// ATT MTU of every link.
    pub mtu: usize,
    /// Throughput of a link's notifications (peripheral to central).
    pub bytes_per_sec: u32,
    /// Throughput of a link's writes (central to peripheral). The phones and the desktop write
    /// with response: one write per two connection events.
    pub write_bytes_per_sec: u32,
    /// Links one radio holds at once (stock Android manages about 7).
    pub max_links: usize,
    /// How often a radio scans for new neighbours.
    pub scan_interval_ms: u64,
    /// Chance that one scan finds a given neighbour in range (the scan's duty cycle).
    pub discovery: f64,
    /// Time from finding a neighbour to a link that carries data (connection, MTU exchange,
    /// service discovery, subscription), uniform in this range. The link holds a place on both
    /// radios meanwhile.
    pub connect_ms: (u64, u64),
    /// Chance that a connection attempt fails once its time is spent (Android's status 133).
    pub connect_failure: f64,
    /// Bytes on the air beyond each fragment's own: a write's (its headers and the response)
    /// and a notification's.
    pub write_overhead: usize,
    pub notify_overhead: usize,
    /// Bytes on the air to set a link up.
    pub link_setup_bytes: usize,
    /// Share of radios nobody finds (an iPhone whose app is in the background advertises only
    /// in Apple's overflow area): they find others, so two of them never link.
    pub hidden_share: f64,
    /// Chance that a fragment is lost on the air.
    pub loss: f64,
    /// Bytes a link direction buffers before it drops what is written to it.
    pub max_queued_bytes: usize,
}

impl Default for MediumConfig {
    /// The ideal radio: links come up the moment two radios are in range and every scan finds
    /// everyone, 20 kB/s both ways, no overhead, no failures.
    fn default() -> Self {
        MediumConfig {
            range_m: 30.0,
            mtu: 247,
            bytes_per_sec: 20_000,
            write_bytes_per_sec: 20_000,
            max_links: 7,
            scan_interval_ms: 2_000,
            discovery: 1.0,
            connect_ms: (0, 0),
            connect_failure: 0.0,
            write_overhead: 0,
            notify_overhead: 0,
            link_setup_bytes: 0,
            hidden_share: 0.0,
            loss: 0.0,
            max_queued_bytes: 256 * 1024,
        }
    }
}

impl MediumConfig {
    /// Phones as they are, each figure from a source or, where none was found, an assumption
    /// said to be one (docs/BENCHMARKS.md, "A realistic radio"):
    /// - **Scans find a neighbour half the time.** Android's `SCAN_MODE_BALANCED`, which the
    ///   app uses, listens 183 ms of every 730 ms, and a screen-off phone 512 ms of every
    ///   10,240 ms (AOSP, `packages/modules/Bluetooth`, `le_scan/ScanUtil.kt`); against an
    ///   advertiser every 250 ms (`ADVERTISE_MODE_BALANCED`), a 2 s scan finds it with a
    ///   chance of about 0.97 screen on and 0.2 screen off. Half the phones in pockets: 0.5.
    /// - **Connections take 0.5 to 3 s** (connection request at the next advertisement, then
    ///   the MTU exchange, service discovery and the subscription, each a round trip of two
    ///   connection events of 30 to 50 ms, more on a busy radio), **and one in ten fails**:
    ///   Android's GATT status 133 is common enough that every BLE library retries (an
    ///   assumption: no measured rate was found).
    /// - **Writes carry 4 kB/s, notifications 10 kB/s.** A write with response sends one
    ///   packet every second connection event (Nordic SoftDevice specification, "Bluetooth Low
    ///   Energy data throughput"): 244 bytes each 60 ms at a 30 ms interval. Notifications
    ///   need no response; two a 50 ms event give about 10 kB/s.
    /// - **Headers and responses:** a link-layer packet costs 10 bytes beyond its payload
    ///   (preamble, access address, header, CRC), L2CAP 4 and ATT 3 (Bluetooth Core 5.4,
    ///   Vol 6 Part B 2.1, Vol 3 Part A 3.1, Part F 3.4): 17 bytes a notification, 32 a write
    ///   with its 15-byte response. A link-up costs about 400 bytes: the connection request,
    ///   the feature, length and MTU exchanges, service discovery and the subscription.
    /// - **One radio in five is hidden:** an iPhone whose app is in the background puts its
    ///   service in the overflow area, which only an iPhone scanning in the foreground
    ///   decodes (Apple, Core Bluetooth Programming Guide, "Performing Long-Term Actions in
    ///   the Background"); iPhones are about a quarter of phones, most of them in pockets (an
    ///   assumption). The simulated radio lets nobody find a hidden one.
    pub fn realistic() -> Self {
        MediumConfig {
            bytes_per_sec: 10_000,
            write_bytes_per_sec: 4_000,
            discovery: 0.5,
            connect_ms: (500, 3_000),
            connect_failure: 0.1,
            write_overhead: 32,
            notify_overhead: 17,
            link_setup_bytes: 400,
            hidden_share: 0.2,
            ..MediumConfig::default()
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
    /// Nobody finds it; it finds others ([`MediumConfig::hidden_share`]).
    hidden: bool,
}

struct Link {
    /// The central (who found the other and connected) first.
    ends: [NodeIndex; 2],
    queues: [VecDeque<Vec<u8>>; 2],
    queued_bytes: [usize; 2],
    credit: [f64; 2],
    /// Until then the link is being set up: it holds its places and carries nothing.
    ready_at_ms: u64,
    /// The set-up fails when its time is spent.
    fails: bool,
    up: bool,
}

pub struct Medium {
    config: MediumConfig,
    /// Walks and scan phases.
    rng: SimRng,
    /// Loss on the air, a stream of its own: with one shared stream, a strategy that sends more
    /// fragments would also change everyone's walk, and runs of two strategies on one seed
    /// would no longer be paired.
    loss_rng: SimRng,
    /// Discovery, connection and hiding draws: a stream of their own for the same reason, and
    /// untouched by the ideal radio, whose runs stay what they were before it existed.
    radio_rng: SimRng,
    radios: Vec<Radio>,
    links: BTreeMap<LinkId, Link>,
    next_link: LinkId,
    now_ms: u64,
    bytes_on_air: u64,
    /// Bytes each radio wrote to the air (link set-ups not counted).
    sent_by: Vec<u64>,
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
            radio_rng: SimRng::new(seed ^ 0x0AD1_0AD1_0AD1_0AD1),
            radios: Vec::new(),
            links: BTreeMap::new(),
            next_link: 1,
            now_ms: 0,
            bytes_on_air: 0,
            sent_by: Vec::new(),
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

    /// The bytes `node` wrote to the air so far (of [`Medium::bytes_on_air`], less link
    /// set-ups).
    pub fn bytes_sent_by(&self, node: NodeIndex) -> u64 {
        self.sent_by.get(node).copied().unwrap_or(0)
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
        let hidden = self.config.hidden_share > 0.0 && self.radio_rng.unit() < self.config.hidden_share;
        self.sent_by.push(0);
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
            hidden,
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

    /// The links a node holds, those being set up included.
    pub fn links_of(&self, node: NodeIndex) -> &[LinkId] {
        &self.radios[node].links
    }

    /// The nodes `node` has a link up with now.
    pub fn neighbours(&self, node: NodeIndex) -> Vec<NodeIndex> {
        self.radios[node]
            .links
            .iter()
            .filter_map(|link| self.links.get(link))
            .filter(|l| l.up)
            .map(|l| if l.ends[0] == node { l.ends[1] } else { l.ends[0] })
            .collect()
    }

    /// Whether nobody can find this node ([`MediumConfig::hidden_share`]).
    pub fn is_hidden(&self, node: NodeIndex) -> bool {
        self.radios[node].hidden
    }

    /// Queues a fragment from `node` on `link`. A fragment on a link that is gone, or beyond
    /// what the link buffers, is dropped as a radio would.
    pub fn send(&mut self, node: NodeIndex, link: LinkId, fragment: Vec<u8>) {
        let max = self.config.max_queued_bytes;
        let Some(l) = self.links.get_mut(&link).filter(|l| l.up) else { return };
        let Some(side) = l.ends.iter().position(|&n| n == node) else { return };
        if l.queued_bytes[side] + fragment.len() > max {
            self.fragments_lost += 1;
            return;
        }
        l.queued_bytes[side] += fragment.len();
        l.queues[side].push_back(fragment);
    }

    /// Closes a link from either end (one being set up goes without a word: nobody knew of it).
    pub fn close(&mut self, link: LinkId, events: &mut Vec<MediumEvent>) {
        if let Some(l) = self.links.remove(&link) {
            for node in l.ends {
                self.radios[node].links.retain(|&x| x != link);
                if l.up {
                    events.push(MediumEvent::LinkDown { node, link });
                }
            }
        }
    }

    /// Advances time by `dt_ms`: nodes move, links break and form, fragments cross.
    pub fn step(&mut self, dt_ms: u64) -> Vec<MediumEvent> {
        self.now_ms += dt_ms;
        let mut events = Vec::new();
        self.move_nodes(dt_ms);
        self.break_links(&mut events);
        self.scan();
        self.establish(&mut events);
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

    fn scan(&mut self) {
        let interval = self.config.scan_interval_ms.max(1);
        // Radios by square of the range's side: a scan looks at the nine squares around it, not
        // at every radio (with thousands, the all-pairs scan was most of the simulator's time).
        // Built only when someone scans with a place free, of the radios with a place free
        // (a full one was skipped before any draw); the candidates are sorted so the draws come
        // in the order of the all-pairs scan, and a seed's run is what it was.
        let mut cells: Option<HashMap<(i64, i64), Vec<NodeIndex>>> = None;
        let mut candidates: Vec<NodeIndex> = Vec::new();
        for a in 0..self.radios.len() {
            if self.radios[a].next_scan_ms > self.now_ms {
                continue;
            }
            self.radios[a].next_scan_ms += interval;
            if !self.radios[a].enabled || self.radios[a].links.len() >= self.config.max_links {
                continue;
            }
            let cells = cells.get_or_insert_with(|| self.cells());
            let (cx, cy) = self.cell_of(a);
            candidates.clear();
            for dx in -1..=1 {
                for dy in -1..=1 {
                    candidates.extend(cells.get(&(cx.saturating_add(dx), cy.saturating_add(dy))).into_iter().flatten());
                }
            }
            candidates.sort_unstable();
            for &b in &candidates {
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
                // Nobody finds a hidden radio; the scan finds the others by its duty cycle.
                if self.radios[b].hidden
                    || (self.config.discovery < 1.0 && self.radio_rng.unit() >= self.config.discovery)
                {
                    continue;
                }
                let (low, high) = self.config.connect_ms;
                let setup_ms = if high > low { low + self.radio_rng.below(high - low + 1) } else { low };
                let fails = self.config.connect_failure > 0.0 && self.radio_rng.unit() < self.config.connect_failure;
                let link = self.next_link;
                self.next_link += 1;
                self.links.insert(
                    link,
                    Link {
                        ends: [a, b],
                        queues: Default::default(),
                        queued_bytes: [0; 2],
                        credit: [0.0; 2],
                        ready_at_ms: self.now_ms + setup_ms,
                        fails,
                        up: false,
                    },
                );
                self.radios[a].links.push(link);
                self.radios[b].links.push(link);
            }
        }
    }

    fn cell_of(&self, node: NodeIndex) -> (i64, i64) {
        // A shade wider than the range, so a neighbour at exactly the range is never two squares
        // away by a rounding.
        let side = (self.config.range_m.abs() * (1.0 + 1e-9)).max(1.0);
        let r = &self.radios[node];
        ((r.x / side).floor() as i64, (r.y / side).floor() as i64)
    }

    /// Every radio that could take a link (enabled, with a place free), by its square. In a
    /// dense crowd most radios are full, and a scan that went through them all found nothing.
    fn cells(&self) -> HashMap<(i64, i64), Vec<NodeIndex>> {
        let mut cells: HashMap<(i64, i64), Vec<NodeIndex>> = HashMap::new();
        for node in 0..self.radios.len() {
            if self.radios[node].enabled && self.radios[node].links.len() < self.config.max_links {
                cells.entry(self.cell_of(node)).or_default().push(node);
            }
        }
        cells
    }

    /// Links whose set-up time is spent come up (or fail, freeing their places).
    fn establish(&mut self, events: &mut Vec<MediumEvent>) {
        let now = self.now_ms;
        let ready: Vec<LinkId> =
            self.links.iter().filter(|(_, l)| !l.up && l.ready_at_ms <= now).map(|(id, _)| *id).collect();
        for link in ready {
            if self.links[&link].fails {
                self.close(link, events);
                continue;
            }
            let l = self.links.get_mut(&link).expect("listed above");
            l.up = true;
            let [a, b] = l.ends;
            self.bytes_on_air += self.config.link_setup_bytes as u64;
            let mtu = self.config.mtu;
            events.push(MediumEvent::LinkUp { node: a, link, mtu, initiator: true });
            events.push(MediumEvent::LinkUp { node: b, link, mtu, initiator: false });
        }
    }

    fn transmit(&mut self, dt_ms: u64, events: &mut Vec<MediumEvent>) {
        let seconds = dt_ms as f64 / 1000.0;
        // Side 0 is the central: it writes; side 1 notifies.
        let budget = [self.config.write_bytes_per_sec as f64 * seconds, self.config.bytes_per_sec as f64 * seconds];
        let overhead = [self.config.write_overhead, self.config.notify_overhead];
        for (&id, link) in &mut self.links {
            for side in 0..2 {
                if link.queues[side].is_empty() {
                    link.credit[side] = 0.0;
                    continue;
                }
                link.credit[side] += budget[side];
                while let Some(front) = link.queues[side].front() {
                    let air = front.len() + overhead[side];
                    if air as f64 > link.credit[side] {
                        break;
                    }
                    let fragment = link.queues[side].pop_front().expect("front exists");
                    link.credit[side] -= air as f64;
                    link.queued_bytes[side] -= fragment.len();
                    self.bytes_on_air += air as u64;
                    self.sent_by[link.ends[side]] += air as u64;
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
        let config = MediumConfig { bytes_per_sec: 1_000, write_bytes_per_sec: 1_000, ..MediumConfig::default() };
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

    fn pair(config: MediumConfig, seed: u64) -> Medium {
        let mut m = Medium::new(config, seed);
        m.add_node(0.0, 0.0, Mobility::Static);
        m.add_node(1.0, 0.0, Mobility::Static);
        m
    }

    fn ups(events: &[MediumEvent]) -> usize {
        events.iter().filter(|e| matches!(e, MediumEvent::LinkUp { .. })).count()
    }

    /// A connection takes its time, and holds a place on both radios meanwhile.
    #[test]
    fn a_link_carries_nothing_until_it_is_set_up() {
        let mut m = pair(MediumConfig { connect_ms: (1_500, 1_500), ..MediumConfig::default() }, 4);
        let mut waited = 0;
        while m.links_of(0).is_empty() {
            assert_eq!(ups(&m.step(100)), 0);
            waited += 100;
            assert!(waited < 5_000, "never found");
        }
        let link = m.links_of(0)[0];
        assert_eq!(m.links_of(1), &[link], "the place is held on both radios");
        m.send(0, link, vec![1; 50]);
        let mut events = Vec::new();
        for _ in 0..14 {
            events.extend(m.step(100));
        }
        assert_eq!(ups(&events), 0, "still connecting after 1.4 s");
        assert_eq!(m.bytes_on_air(), 0, "what was sent before the link was up went nowhere");
        let events = m.step(100);
        assert_eq!(ups(&events), 2, "{events:?}");
    }

    #[test]
    fn a_failed_connection_frees_its_places_without_a_word() {
        let config = MediumConfig { connect_ms: (500, 500), connect_failure: 1.0, ..MediumConfig::default() };
        let mut m = pair(config, 5);
        let events: Vec<MediumEvent> = (0..40).flat_map(|_| m.step(100)).collect();
        assert!(events.is_empty(), "no link ever came up, and none went down: {events:?}");
        assert!(m.links_of(0).len() <= 1 && m.links_of(1).len() <= 1);
    }

    /// Writes (the central's) are slower than notifications, and headers count on the air.
    #[test]
    fn writes_are_slower_than_notifications_and_headers_are_on_the_air() {
        let config = MediumConfig {
            bytes_per_sec: 2_000,
            write_bytes_per_sec: 1_000,
            write_overhead: 32,
            notify_overhead: 17,
            link_setup_bytes: 400,
            ..MediumConfig::default()
        };
        let mut m = pair(config, 6);
        let mut initiator = None;
        while initiator.is_none() {
            initiator = m.step(100).into_iter().find_map(|e| match e {
                MediumEvent::LinkUp { node, initiator: true, .. } => Some(node),
                _ => None,
            });
        }
        let central = initiator.unwrap();
        let link = m.links_of(central)[0];
        assert_eq!(m.bytes_on_air(), 400, "the link's set-up");
        for _ in 0..10 {
            m.send(central, link, vec![0; 68]);
            m.send(1 - central, link, vec![0; 83]);
        }
        let mut by_node = [0; 2];
        for _ in 0..10 {
            for e in m.step(100) {
                if let MediumEvent::Fragment { node, .. } = e {
                    by_node[node] += 1;
                }
            }
        }
        // One second: 1,000 bytes of writes carry 10 fragments of 68 + 32; 2,000 of
        // notifications 20 of 83 + 17 (only 10 were sent).
        assert_eq!((by_node[1 - central], by_node[central]), (10, 10));
        assert_eq!(m.bytes_on_air(), 400 + 10 * 100 + 10 * 100);
    }

    #[test]
    fn hidden_radios_find_others_but_never_each_other() {
        let config = MediumConfig { hidden_share: 1.0, ..MediumConfig::default() };
        let mut m = pair(config, 7);
        assert!(m.is_hidden(0) && m.is_hidden(1));
        let events: Vec<MediumEvent> = (0..50).flat_map(|_| m.step(100)).collect();
        assert_eq!(ups(&events), 0);

        // One hidden, one not: the hidden one connects, as the central.
        for seed in 0..50 {
            let mut m = pair(MediumConfig { hidden_share: 0.5, ..MediumConfig::default() }, seed);
            if m.is_hidden(0) == m.is_hidden(1) {
                continue;
            }
            let events: Vec<MediumEvent> = (0..50).flat_map(|_| m.step(100)).collect();
            let central = events.iter().find_map(|e| match e {
                MediumEvent::LinkUp { node, initiator: true, .. } => Some(*node),
                _ => None,
            });
            assert!(central.is_some_and(|c| m.is_hidden(c)), "seed {seed}: {events:?}");
            return;
        }
        panic!("no seed gave one hidden radio of two");
    }

    #[test]
    fn a_scan_that_listens_half_the_time_finds_a_neighbour_later() {
        let found_after = |discovery: f64, seed: u64| {
            let mut m = pair(MediumConfig { discovery, ..MediumConfig::default() }, seed);
            (1..).find(|_| ups(&m.step(100)) > 0).unwrap()
        };
        let ideal: u64 = (0..40).map(|s| found_after(1.0, s)).sum();
        let half: u64 = (0..40).map(|s| found_after(0.5, s)).sum();
        assert!(half > ideal, "{half} steps against {ideal}");
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
