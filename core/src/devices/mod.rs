//! One account on several devices: linking a new device to the account (`linking`).

pub mod grant;
pub mod linking;
pub mod revocation;
