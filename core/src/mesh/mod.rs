//! The Bluetooth mesh: neighbours in radio range carry each other's envelopes, hop by hop and
//! over time as people move, when there is no network.
//!
//! - [`budget`]: what bounds a flooder (envelopes per topic, new topics, refusals per link);
//! - [`bloom`]: a Bloom filter of ids, the strongest epidemic baseline's summary;
//! - [`fragment`]: frames cut to the link's MTU and put back together, with bounded memory;
//! - [`message`]: what neighbours say to each other;
//! - [`router`]: the store-carry-forward state machine (and the simulator's baselines);
//! - [`medium`]: a simulated radio medium (range, MTU, bandwidth, loss, connection limits,
//!   mobility), deterministic for a seed;
//! - [`sim`]: the simulator's scenarios and figures;
//! - [`remembered`]: ids remembered for a while, bounded;
//! - [`radio`]: the `Link` and `Radio` traits and the radios behind them (simulated,
//!   btleplug, and one fed by a mobile app's driver);
//! - [`driver`]: runs a node's router over a radio.

pub mod bloom;
pub mod budget;
pub mod driver;
pub mod fragment;
pub mod medium;
pub mod message;
pub mod radio;
pub mod remembered;
pub mod router;
pub mod sim;

pub use router::{LinkId, Output, Router, RouterConfig, RouterStats, Strategy};
