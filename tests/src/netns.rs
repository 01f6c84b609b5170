//! Hosts of their own on one machine, over the kernel's real network stack: each host is a Linux
//! network namespace joined by a veth pair to a hub namespace that routes between them. The hub
//! can split the hosts in two (a partition: what crosses is dropped, silently, as when a link is
//! gone) and impair everything it forwards (loss, delay with jitter, and so reordering).
//!
//! `tc netem` would be the usual impairment, but the kernels of our machines are built without
//! it ("Specified qdisc kind is unknown"): the hub instead queues what it forwards to user space
//! (`iptables -j NFQUEUE`), where [`Impairment`] drops a share and lets the rest go after a
//! random delay. The sockets at both ends are the kernel's; only the link is emulated.
//!
//! Nodes run in this process: [`NsRuntime`] is a Tokio runtime on a thread that entered a
//! host's namespace, so every socket its tasks open belongs to that host.

use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The NFQUEUE number the hub hands forwarded packets to.
const QUEUE: u16 = 0;

/// Set (by CI) when a machine that cannot build a lab is a failure rather than a skip.
pub const REQUIRE_ENV: &str = "WEFT_REQUIRE_NETNS";

/// A hub and its hosts; removed when dropped.
pub struct Lab {
    hub: String,
    hosts: Vec<String>,
    /// Which subnet each host is on now: `10.77.<subnet>.0/24` (hosts move to 100 + index).
    subnets: Vec<u8>,
    impairer: Option<Impairer>,
    split: Vec<(usize, usize)>,
    /// Hosts behind a NAT: the namespace on the NAT's inside, where the node runs (the host's
    /// own namespace is then the NAT).
    inside: Vec<Option<String>>,
}

/// How a NAT maps what goes out (RFC 4787).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// One public port for a private one, whatever the destination (most home routers):
    /// Linux's MASQUERADE keeps the source port where it can. A hole can be punched.
    EndpointIndependent,
    /// A new public port for each connection (`--random-fully`), as carrier-grade NATs and some
    /// firewalls do: the port a peer learns from the relay is not the one it would have to
    /// reach, so no hole can be punched.
    Symmetric,
}

/// What the hub does to everything it forwards.
#[derive(Clone, Copy, Debug)]
pub struct Impairment {
    /// Share of packets dropped.
    pub loss: f64,
    /// One-way delay, drawn uniformly from `delay ± jitter`, as netem does without a table.
    pub delay: Duration,
    pub jitter: Duration,
    pub seed: u64,
}

/// What crossed the hub since it started impairing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Packets and bytes (IP packets, headers included) let through.
    pub packets: u64,
    pub bytes: u64,
    /// Packets the impairment dropped (a partition's drops are not counted).
    pub lost: u64,
    /// Packets released after one that arrived later between the same two hosts.
    pub reordered: u64,
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;
    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            packets: self.packets - earlier.packets,
            bytes: self.bytes - earlier.bytes,
            lost: self.lost - earlier.lost,
            reordered: self.reordered - earlier.reordered,
        }
    }
}

fn run(what: &str, args: &[&str]) -> Result<(), String> {
    let out =
        Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{what}: cannot run {}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what}: `{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Whether a test that needs a lab must fail (CI) rather than skip where none can be built.
pub fn required() -> bool {
    std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1")
}

/// Builds a lab of `hosts` hosts, or says why this machine cannot; the caller skips (with that
/// message) or, under [`required`], fails.
pub fn lab_or_skip(hosts: usize) -> Option<Lab> {
    match Lab::new(hosts) {
        Ok(lab) => Some(lab),
        Err(why) if required() => panic!("{REQUIRE_ENV}=1 and no network namespaces: {why}"),
        Err(why) => {
            eprintln!("SKIPPED: this test needs network namespaces (root, iproute2, iptables): {why}");
            None
        }
    }
}

static LABS: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Hub `weftlab-<pid>-<n>-hub` and hosts `…-<i>`, host `i` at `10.77.i.2` behind the hub's
    /// `10.77.i.1`.
    pub fn new(hosts: usize) -> Result<Lab, String> {
        assert!(hosts < 100, "hosts are numbered in one octet, with room to move");
        let tag = format!("weftlab-{}-{}", std::process::id(), LABS.fetch_add(1, Ordering::Relaxed));
        let mut lab = Lab {
            hub: format!("{tag}-hub"),
            hosts: (0..hosts).map(|i| format!("{tag}-{i}")).collect(),
            subnets: (0..hosts).map(|i| i as u8).collect(),
            impairer: None,
            split: Vec::new(),
            inside: vec![None; hosts],
        };
        run("creating the hub", &["ip", "netns", "add", &lab.hub])?;
        let hub = lab.hub.clone();
        run("hub loopback", &["ip", "-n", &hub, "link", "set", "lo", "up"])?;
        run("hub forwarding", &["ip", "netns", "exec", &hub, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        for i in 0..hosts {
            let host = lab.hosts[i].clone();
            run("creating a host", &["ip", "netns", "add", &host])?;
            let hub_side = format!("h{i}");
            run(
                "a veth pair",
                &["ip", "-n", &hub, "link", "add", &hub_side, "type", "veth", "peer", "name", "eth0", "netns", &host],
            )?;
            run("hub side up", &["ip", "-n", &hub, "link", "set", &hub_side, "up"])?;
            run("host loopback", &["ip", "-n", &host, "link", "set", "lo", "up"])?;
            run("host side up", &["ip", "-n", &host, "link", "set", "eth0", "up"])?;
            lab.address(i, i as u8)?;
        }
        Ok(lab)
    }

    fn address(&mut self, host: usize, subnet: u8) -> Result<(), String> {
        let (hub, name) = (self.hub.clone(), self.hosts[host].clone());
        let hub_side = format!("h{host}");
        run("hub address", &["ip", "-n", &hub, "addr", "add", &format!("10.77.{subnet}.1/24"), "dev", &hub_side])?;
        run("host address", &["ip", "-n", &name, "addr", "add", &format!("10.77.{subnet}.2/24"), "dev", "eth0"])?;
        run("host route", &["ip", "-n", &name, "route", "replace", "default", "via", &format!("10.77.{subnet}.1")])?;
        self.subnets[host] = subnet;
        Ok(())
    }

    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// The namespace of `host`, for [`NsRuntime::start`]: behind its NAT, if it has one.
    pub fn netns(&self, host: usize) -> &str {
        self.inside[host].as_deref().unwrap_or(&self.hosts[host])
    }

    /// Puts `host` behind a NAT of kind `nat`: its namespace becomes the NAT, holding the
    /// public address [`Lab::addr`], and a namespace inside it, on `192.168.<host>.2/24`, is
    /// where the node runs. From outside nothing reaches the inside but answers to what it
    /// sent (the kernel's connection tracking), as with a home router.
    pub fn put_behind_nat(&mut self, host: usize, nat: Nat) -> Result<(), String> {
        assert!(self.inside[host].is_none(), "one NAT per host");
        let router = self.hosts[host].clone();
        let inside = format!("{router}-in");
        run("creating the inside of a NAT", &["ip", "netns", "add", &inside])?;
        self.inside[host] = Some(inside.clone());
        run(
            "the NAT's inner veth pair",
            &["ip", "-n", &router, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", &inside],
        )?;
        let lan = format!("192.168.{host}");
        run("the NAT's inner address", &["ip", "-n", &router, "addr", "add", &format!("{lan}.1/24"), "dev", "lan0"])?;
        run("the NAT's inner side up", &["ip", "-n", &router, "link", "set", "lan0", "up"])?;
        run("inside loopback", &["ip", "-n", &inside, "link", "set", "lo", "up"])?;
        run("inside address", &["ip", "-n", &inside, "addr", "add", &format!("{lan}.2/24"), "dev", "eth0"])?;
        run("inside up", &["ip", "-n", &inside, "link", "set", "eth0", "up"])?;
        run("inside route", &["ip", "-n", &inside, "route", "add", "default", "via", &format!("{lan}.1")])?;
        run("NAT forwarding", &["ip", "netns", "exec", &router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        let mut masquerade = vec![
            "ip",
            "netns",
            "exec",
            &router,
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "eth0",
            "-j",
            "MASQUERADE",
        ];
        if nat == Nat::Symmetric {
            masquerade.push("--random-fully");
        }
        run("the NAT's rule", &masquerade)?;
        // What comes from outside and does not answer something sent from inside is dropped
        // without a word, as home routers do (a reset would end a hole punch's first attempt).
        for rule in [
            &["-A", "FORWARD", "-i", "eth0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"][..],
            &["-A", "FORWARD", "-i", "eth0", "-j", "DROP"][..],
            &["-A", "INPUT", "-i", "eth0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"][..],
            &["-A", "INPUT", "-i", "eth0", "-j", "DROP"][..],
        ] {
            let mut args = vec!["ip", "netns", "exec", &router, "iptables"];
            args.extend_from_slice(rule);
            run("the NAT's filter", &args)?;
        }
        Ok(())
    }

    /// Where `host` is reachable now.
    pub fn addr(&self, host: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnets[host], 2)
    }

    /// `host` changes network, as a phone moving from Wi-Fi to mobile data: it gets an address
    /// on a new subnet, and its old address and the route back to it go away. Connections made
    /// from the old address are dead; nothing tells their ends so.
    pub fn move_host(&mut self, host: usize) -> Result<Ipv4Addr, String> {
        assert!(self.split.is_empty(), "partition rules name subnets: move hosts while healed");
        let old = self.subnets[host];
        let new = if old >= 100 { host as u8 } else { 100 + host as u8 };
        self.address(host, new)?;
        let (hub, name) = (self.hub.clone(), self.hosts[host].clone());
        run("old host address", &["ip", "-n", &name, "addr", "del", &format!("10.77.{old}.2/24"), "dev", "eth0"])?;
        run(
            "old hub address",
            &["ip", "-n", &hub, "addr", "del", &format!("10.77.{old}.1/24"), "dev", &format!("h{host}")],
        )?;
        Ok(self.addr(host))
    }

    /// Splits the hosts in two: those in `side` and the rest reach each other no more.
    pub fn partition(&mut self, side: &[usize]) -> Result<(), String> {
        self.heal()?;
        let hub = self.hub.clone();
        for a in side.iter().copied() {
            for b in (0..self.hosts.len()).filter(|b| !side.contains(b)) {
                for (from, to) in [(a, b), (b, a)] {
                    let (src, dst) =
                        (format!("10.77.{}.0/24", self.subnets[from]), format!("10.77.{}.0/24", self.subnets[to]));
                    run(
                        "a partition rule",
                        &[
                            "ip", "netns", "exec", &hub, "iptables", "-I", "FORWARD", "1", "-s", &src, "-d", &dst,
                            "-j", "DROP",
                        ],
                    )?;
                }
                self.split.push((a, b));
                self.split.push((b, a));
            }
        }
        Ok(())
    }

    /// Ends the partition.
    pub fn heal(&mut self) -> Result<(), String> {
        let hub = self.hub.clone();
        for (from, to) in std::mem::take(&mut self.split) {
            let (src, dst) = (format!("10.77.{}.0/24", self.subnets[from]), format!("10.77.{}.0/24", self.subnets[to]));
            run(
                "removing a partition rule",
                &["ip", "netns", "exec", &hub, "iptables", "-D", "FORWARD", "-s", &src, "-d", &dst, "-j", "DROP"],
            )?;
        }
        Ok(())
    }

    /// From now on every packet the hub forwards goes through `impairment`.
    pub fn impair(&mut self, impairment: Impairment) -> Result<(), String> {
        assert!(self.impairer.is_none(), "one impairment per lab");
        let impairer = Impairer::start(&self.hub, impairment)?;
        // Appended: partition rules, inserted first, drop before anything is queued.
        run(
            "queueing forwarded packets",
            &[
                "ip",
                "netns",
                "exec",
                &self.hub,
                "iptables",
                "-A",
                "FORWARD",
                "-j",
                "NFQUEUE",
                "--queue-num",
                &QUEUE.to_string(),
            ],
        )?;
        self.impairer = Some(impairer);
        Ok(())
    }

    /// What the impairment let through, dropped and reordered so far.
    pub fn traffic(&self) -> Traffic {
        self.impairer.as_ref().map(|i| *i.traffic.lock().expect("traffic")).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The hub first: with it go the veths, and no packet waits on a queue nobody reads.
        let _ = run("removing the hub", &["ip", "netns", "del", &self.hub]);
        if let Some(impairer) = self.impairer.take() {
            impairer.stop();
        }
        for host in self.hosts.iter().chain(self.inside.iter().flatten()) {
            let _ = run("removing a host", &["ip", "netns", "del", host]);
        }
    }
}

/// Enters the network namespace `name` on the calling thread (only this thread).
fn enter(name: &str) -> Result<(), String> {
    let file = File::open(format!("/var/run/netns/{name}")).map_err(|e| format!("opening namespace {name}: {e}"))?;
    // SAFETY: setns on a namespace file descriptor we hold open; it changes this thread only.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!("entering namespace {name}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A small deterministic generator (SplitMix64): the impairment's draws repeat with its seed.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A packet held until its release time; ordered so the heap pops the earliest first.
struct Held {
    release: Instant,
    arrival: u64,
    message: nfq::Message,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.release == other.release && self.arrival == other.arrival
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.release, other.arrival).cmp(&(self.release, self.arrival))
    }
}

/// The thread in the hub that reads the queue and decides each packet's fate.
struct Impairer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    traffic: Arc<Mutex<Traffic>>,
}

impl Impairer {
    fn start(hub: &str, impairment: Impairment) -> Result<Impairer, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let hub = hub.to_string();
        let thread = {
            let (stop, traffic) = (stop.clone(), traffic.clone());
            std::thread::Builder::new()
                .name("lab-impairer".into())
                .spawn(move || {
                    let queue = enter(&hub).and_then(|()| open_queue());
                    match queue {
                        Ok(queue) => {
                            let _ = ready_tx.send(Ok(()));
                            impair(queue, impairment, &stop, &traffic);
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                })
                .map_err(|e| format!("starting the impairment: {e}"))?
        };
        ready_rx.recv().map_err(|_| "the impairment thread ended".to_string())??;
        Ok(Impairer { stop, thread: Some(thread), traffic })
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open_queue() -> Result<nfq::Queue, String> {
    let mut queue = nfq::Queue::open().map_err(|e| format!("opening an NFQUEUE socket: {e}"))?;
    queue.bind(QUEUE).map_err(|e| format!("binding NFQUEUE {QUEUE}: {e}"))?;
    // Only the headers come up to us; the packet waits in the kernel for its verdict.
    queue.set_copy_range(QUEUE, 64).map_err(|e| format!("NFQUEUE copy range: {e}"))?;
    queue.set_queue_max_len(QUEUE, 65_536).map_err(|e| format!("NFQUEUE length: {e}"))?;
    queue.set_nonblocking(true);
    Ok(queue)
}

fn impair(mut queue: nfq::Queue, impairment: Impairment, stop: &AtomicBool, traffic: &Mutex<Traffic>) {
    let mut draws = Draws(impairment.seed);
    let mut held = BinaryHeap::new();
    let mut arrivals = 0u64;
    // Per pair of hosts (IPv4 source and destination), the latest arrival released so far.
    let mut last_released: HashMap<[u8; 8], u64> = HashMap::new();
    let delay_ms = impairment.delay.as_secs_f64() * 1000.0;
    let jitter_ms = impairment.jitter.as_secs_f64() * 1000.0;
    while !stop.load(Ordering::Relaxed) {
        loop {
            match queue.recv() {
                Ok(mut message) => {
                    arrivals += 1;
                    if draws.unit() < impairment.loss {
                        message.set_verdict(nfq::Verdict::Drop);
                        let _ = queue.verdict(message);
                        traffic.lock().expect("traffic").lost += 1;
                        continue;
                    }
                    let ms = (delay_ms + (draws.unit() * 2.0 - 1.0) * jitter_ms).max(0.0);
                    let release = Instant::now() + Duration::from_micros((ms * 1000.0) as u64);
                    held.push(Held { release, arrival: arrivals, message });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        let now = Instant::now();
        while held.peek().is_some_and(|h: &Held| h.release <= now) {
            let Held { arrival, mut message, .. } = held.pop().expect("peeked");
            let len = message.get_original_len() as u64;
            let pair: [u8; 8] = message.get_payload().get(12..20).and_then(|p| p.try_into().ok()).unwrap_or_default();
            message.set_verdict(nfq::Verdict::Accept);
            let _ = queue.verdict(message);
            let mut t = traffic.lock().expect("traffic");
            t.packets += 1;
            t.bytes += len;
            let last = last_released.entry(pair).or_default();
            if arrival < *last {
                t.reordered += 1;
            }
            *last = (*last).max(arrival);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Whatever is still held goes: the lab is being taken down.
    while let Some(Held { mut message, .. }) = held.pop() {
        message.set_verdict(nfq::Verdict::Accept);
        let _ = queue.verdict(message);
    }
}

/// A Tokio runtime whose thread lives in one host's namespace: sockets opened by its tasks
/// belong to that host.
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl NsRuntime {
    pub fn start(netns: &str) -> Result<NsRuntime, String> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (netns, name) = (netns.to_string(), format!("in-{netns}"));
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let runtime = enter(&netns).and_then(|()| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("a runtime in {netns}: {e}"))
                });
                match runtime {
                    Ok(runtime) => {
                        let _ = handle_tx.send(Ok(runtime.handle().clone()));
                        runtime.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| format!("a thread for a host: {e}"))?;
        let handle = handle_rx.recv().map_err(|_| "the namespace thread ended".to_string())??;
        Ok(NsRuntime { handle, stop: Some(stop), thread: Some(thread) })
    }

    /// Runs `work` on this host; its tasks (a node's network driver) stay here.
    pub async fn run<F>(&self, work: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(work).await.expect("a task in the namespace")
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Bytes as MB with one decimal, for figures.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}
