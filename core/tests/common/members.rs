//! Members of large groups, shared by `tests/large_groups.rs` and `benches/group_keys.rs` (which
//! includes this file by path): an account with four devices, and the `Add` that brings it.

use weft_core::crypto::Entropy;
use weft_core::group::{Action, LocalDevice};
use weft_core::identity::AccountKey;

/// Devices each member has.
pub const DEVICES: usize = 4;

/// A member: an account and its four devices.
pub fn member(rng: &mut dyn Entropy) -> Vec<LocalDevice> {
    let account = AccountKey::generate(rng).unwrap();
    (0..DEVICES).map(|_| LocalDevice::generate(&account, 0, rng).unwrap()).collect()
}

/// The `Add` of a member with all its devices.
pub fn add(devices: &[LocalDevice]) -> Action {
    Action::Add {
        member: devices[0].account(),
        name: None,
        devices: devices.iter().map(|d| d.cert.clone()).collect(),
        admin: false,
    }
}
