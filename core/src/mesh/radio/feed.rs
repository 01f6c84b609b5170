//! A radio run by a driver outside the mesh: it reports links and fragments through
//! [`RadioEvents`] and is asked to write through [`Driver`]. A mobile app implements `Driver`
//! over its platform's Bluetooth (peripheral and central) through the bindings; the in-process
//! simulated radio uses it too. Link ids and fragments are opaque to the driver.
//!
//! Whatever the driver does, the mesh stays bounded: a fragment larger than any MTU is dropped,
//! each link buffers at most [`LINK_BUFFER`] fragments (more are dropped, as on the air), and
//! calls after the radio is gone do nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;

use super::{BoxFuture, Link, Radio, ReportSource};
use crate::error::{Error, Result};
use crate::mesh::fragment::{MAX_MTU, MIN_MTU};

/// Fragments one link buffers before the mesh reads them.
pub const LINK_BUFFER: usize = 1024;
/// Links a driver may report before it closes one.
pub const MAX_LINKS: usize = 32;

/// What the mesh asks of a driver.
pub trait Driver: Send + Sync + 'static {
    /// Writes one fragment to `link`, in order. An error closes the link.
    fn send(&self, link: u64, fragment: Vec<u8>) -> Result<()>;
    /// Disconnects `link`.
    fn close(&self, link: u64);
}

type Links = Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>;

/// How a driver reports what its radio does. Cheap to clone; safe from any thread.
#[derive(Clone)]
pub struct RadioEvents {
    links: Weak<Links>,
    new_links: mpsc::Sender<Arc<dyn Link>>,
    driver: Weak<dyn Driver>,
}

impl RadioEvents {
    /// A neighbour connected. `initiator` must be true on exactly one side of a link (the
    /// central). Refused once [`MAX_LINKS`] are open or the radio stopped.
    pub fn link_up(&self, link: u64, mtu: u32, initiator: bool) -> Result<()> {
        let (Some(links), Some(driver)) = (self.links.upgrade(), self.driver.upgrade()) else {
            return Err(Error::Closed);
        };
        let (tx, rx) = mpsc::channel(LINK_BUFFER);
        let probe = tx.downgrade();
        {
            let mut map = links.lock().expect("links lock");
            if map.contains_key(&link) {
                return Err(Error::AlreadyExists(format!("mesh link {link}")));
            }
            if map.len() >= MAX_LINKS {
                return Err(Error::Limit("too many mesh links"));
            }
            map.insert(link, tx);
        }
        let fed = FedLink {
            id: link,
            mtu: (mtu as usize).clamp(MIN_MTU, MAX_MTU),
            initiator,
            driver,
            links: self.links.clone(),
            rx: tokio::sync::Mutex::new(rx),
            probe,
        };
        self.new_links.try_send(Arc::new(fed)).map_err(|_| {
            // Not taken: the slot is free again, whatever the driver does next.
            links.lock().expect("links lock").remove(&link);
            Error::Limit("mesh is not taking links")
        })
    }

    /// Whether the radio is gone (the mesh stopped): the driver may stop scanning.
    pub fn is_closed(&self) -> bool {
        self.links.strong_count() == 0
    }

    /// A fragment arrived on `link`. Dropped if it is larger than any MTU allows, if the link
    /// is unknown, or if the link's buffer is full.
    pub fn frame(&self, link: u64, fragment: Vec<u8>) {
        if fragment.len() > MAX_MTU {
            return;
        }
        let Some(links) = self.links.upgrade() else { return };
        let tx = links.lock().expect("links lock").get(&link).cloned();
        if let Some(tx) = tx {
            let _ = tx.try_send(fragment);
        }
    }

    /// The neighbour went away.
    pub fn link_down(&self, link: u64) {
        if let Some(links) = self.links.upgrade() {
            links.lock().expect("links lock").remove(&link);
        }
    }
}

/// The radio side the mesh reads.
pub struct FedRadio {
    name: &'static str,
    new_links: mpsc::Receiver<Arc<dyn Link>>,
    // Holds what `RadioEvents` only point to, so that dropping the radio makes every late
    // call from the driver a no-op.
    _links: Arc<Links>,
    _driver: Arc<dyn Driver>,
    report: Option<ReportSource>,
}

impl FedRadio {
    /// The radio, telling its roles through `report`.
    pub fn with_report(mut self, report: ReportSource) -> Self {
        self.report = Some(report);
        self
    }
}

/// A radio for `driver`, and the handle its driver reports through.
pub fn fed_radio(driver: Arc<dyn Driver>, name: &'static str) -> (FedRadio, RadioEvents) {
    let links: Arc<Links> = Arc::new(Mutex::new(HashMap::new()));
    let (tx, rx) = mpsc::channel(MAX_LINKS);
    let events = RadioEvents { links: Arc::downgrade(&links), new_links: tx, driver: Arc::downgrade(&driver) };
    (FedRadio { name, new_links: rx, _links: links, _driver: driver, report: None }, events)
}

impl Radio for FedRadio {
    fn next_link(&mut self) -> BoxFuture<'_, Option<Arc<dyn Link>>> {
        Box::pin(self.new_links.recv())
    }

    fn name(&self) -> &'static str {
        self.name
    }

    fn report(&self) -> Option<ReportSource> {
        self.report.clone()
    }
}

struct FedLink {
    id: u64,
    mtu: usize,
    initiator: bool,
    driver: Arc<dyn Driver>,
    links: Weak<Links>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Vec<u8>>>,
    /// Tells our channel from a newer link's under the same id, without keeping ours open.
    probe: mpsc::WeakSender<Vec<u8>>,
}

impl Link for FedLink {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn initiator(&self) -> bool {
        self.initiator
    }

    fn send(&self, fragment: Vec<u8>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.driver.send(self.id, fragment) })
    }

    fn recv(&self) -> BoxFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move { self.rx.lock().await.recv().await })
    }

    fn close(&self) {
        if let Some(links) = self.links.upgrade() {
            let mut map = links.lock().expect("links lock");
            match map.get(&self.id) {
                // The driver reused the id for a newer link: that one is not ours to close.
                Some(tx) if !self.probe.upgrade().is_some_and(|ours| ours.same_channel(tx)) => return,
                Some(_) => {
                    map.remove(&self.id);
                }
                None => {}
            }
        }
        self.driver.close(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<(u64, Vec<u8>)>>,
        closed: Mutex<Vec<u64>>,
        fail: bool,
    }

    impl Driver for Recorder {
        fn send(&self, link: u64, fragment: Vec<u8>) -> Result<()> {
            if self.fail {
                return Err(Error::Closed);
            }
            self.sent.lock().unwrap().push((link, fragment));
            Ok(())
        }

        fn close(&self, link: u64) {
            self.closed.lock().unwrap().push(link);
        }
    }

    #[tokio::test]
    async fn links_and_frames_flow_and_bad_input_is_dropped() {
        let driver = Arc::new(Recorder::default());
        let (mut radio, events) = fed_radio(driver.clone(), "app");
        events.link_up(7, 9_999, true).unwrap();
        let link = radio.next_link().await.unwrap();
        assert_eq!((link.mtu(), link.initiator()), (MAX_MTU, true), "the MTU is clamped");
        events.frame(7, vec![1, 2, 3]);
        events.frame(7, vec![0; MAX_MTU + 1]);
        events.frame(8, vec![4]);
        assert_eq!(link.recv().await, Some(vec![1, 2, 3]));
        link.send(vec![9]).await.unwrap();
        assert_eq!(driver.sent.lock().unwrap().as_slice(), &[(7, vec![9])]);
        events.link_down(7);
        assert_eq!(link.recv().await, None, "the oversized and the unknown-link frames were dropped");
        link.close();
        assert_eq!(driver.closed.lock().unwrap().as_slice(), &[7]);
    }

    #[tokio::test]
    async fn a_failing_driver_and_calls_after_shutdown_are_harmless() {
        let driver = Arc::new(Recorder { fail: true, ..Recorder::default() });
        let (mut radio, events) = fed_radio(driver, "app");
        events.link_up(1, 185, false).unwrap();
        let link = radio.next_link().await.unwrap();
        assert!(link.send(vec![1]).await.is_err());
        for n in 2..=MAX_LINKS as u64 {
            events.link_up(n, 185, false).unwrap();
        }
        assert!(matches!(events.link_up(99, 185, false), Err(Error::Limit(_))));
        drop(radio);
        drop(link);
        assert!(matches!(events.link_up(100, 185, false), Err(Error::Closed)));
        events.frame(1, vec![1]);
        events.link_down(1);
    }
}
