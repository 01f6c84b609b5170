//! The simulated radio: a shared [`Medium`] stepped in real time, each node's radio a
//! [`FedRadio`] like a mobile app's. Tests and the demo put real nodes on it.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::feed::{Driver, FedRadio, RadioEvents, fed_radio};
use crate::error::Result;
use crate::mesh::medium::{Medium, MediumConfig, MediumEvent, Mobility, NodeIndex};

/// Real time between steps of the medium.
const STEP: Duration = Duration::from_millis(20);

struct Air {
    medium: Medium,
    radios: Vec<Option<RadioEvents>>,
}

impl Air {
    fn dispatch(&mut self, events: Vec<MediumEvent>) {
        let mut refused = Vec::new();
        for event in events {
            match event {
                MediumEvent::LinkUp { node, link, mtu, initiator } => {
                    let ok = self.radios[node].as_ref().is_some_and(|r| r.link_up(link, mtu as u32, initiator).is_ok());
                    if !ok {
                        refused.push(link);
                    }
                }
                MediumEvent::LinkDown { node, link } => {
                    if let Some(r) = &self.radios[node] {
                        r.link_down(link);
                    }
                }
                MediumEvent::Fragment { node, link, fragment } => {
                    if let Some(r) = &self.radios[node] {
                        r.frame(link, fragment);
                    }
                }
            }
        }
        for link in refused {
            let mut more = Vec::new();
            self.medium.close(link, &mut more);
            self.dispatch(more);
        }
    }
}

/// A medium shared by the radios of one process, stepped by a tokio task while it lives.
pub struct SimAir {
    air: Arc<Mutex<Air>>,
}

impl SimAir {
    /// Starts the medium. Must be called inside a tokio runtime.
    pub fn start(config: MediumConfig, seed: u64) -> Arc<SimAir> {
        let air = Arc::new(Mutex::new(Air { medium: Medium::new(config, seed), radios: Vec::new() }));
        let weak = Arc::downgrade(&air);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(STEP);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(air) = weak.upgrade() else { break };
                let mut air = air.lock().expect("air lock");
                let events = air.medium.step(STEP.as_millis() as u64);
                air.dispatch(events);
            }
        });
        Arc::new(SimAir { air })
    }

    /// A radio at (x, y), in metres.
    pub fn add_radio(&self, x: f64, y: f64, mobility: Mobility) -> (FedRadio, NodeIndex) {
        let mut air = self.air.lock().expect("air lock");
        let node = air.medium.add_node(x, y, mobility);
        let driver = Arc::new(SimDriver { air: Arc::downgrade(&self.air), node });
        let (radio, events) = fed_radio(driver, "sim");
        air.radios.push(Some(events));
        (radio, node)
    }

    /// Moves a radio; links form and break at the next scan.
    pub fn set_position(&self, node: NodeIndex, x: f64, y: f64) {
        self.air.lock().expect("air lock").medium.set_position(node, x, y);
    }

    pub fn set_enabled(&self, node: NodeIndex, enabled: bool) {
        self.air.lock().expect("air lock").medium.set_enabled(node, enabled);
    }

    /// Starts keeping every fragment sent on the air (an eavesdropper in range of all).
    pub fn start_capture(&self) {
        self.air.lock().expect("air lock").medium.start_capture();
    }

    pub fn captured(&self) -> Vec<u8> {
        self.air.lock().expect("air lock").medium.captured().to_vec()
    }

    pub fn bytes_on_air(&self) -> u64 {
        self.air.lock().expect("air lock").medium.bytes_on_air()
    }

    /// Links a radio holds now.
    pub fn links_of(&self, node: NodeIndex) -> usize {
        self.air.lock().expect("air lock").medium.links_of(node).len()
    }
}

struct SimDriver {
    air: Weak<Mutex<Air>>,
    node: NodeIndex,
}

impl Driver for SimDriver {
    fn send(&self, link: u64, fragment: Vec<u8>) -> Result<()> {
        if let Some(air) = self.air.upgrade() {
            air.lock().expect("air lock").medium.send(self.node, link, fragment);
        }
        Ok(())
    }

    fn close(&self, link: u64) {
        if let Some(air) = self.air.upgrade() {
            let mut air = air.lock().expect("air lock");
            let mut events = Vec::new();
            air.medium.close(link, &mut events);
            air.dispatch(events);
        }
    }
}
