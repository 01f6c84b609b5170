//! One account on several devices: linking a new device to the account (`linking`), carried
//! as envelopes over any path (`carrier`).

pub mod carrier;
pub mod grant;
pub mod linking;
pub mod revocation;
pub mod rotation;
