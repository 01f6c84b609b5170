//! What the core says in words, as the host language's enums: the compiler (Kotlin's `when`,
//! Swift's `switch`) then checks that an app handles every case, and a misspelt state cannot
//! slip through as a string.

use weft_core::node::Delivery;
use weft_core::store::ContactStatus as CoreContactStatus;

/// Where a contact stands.
#[derive(uniffi::Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactStatus {
    /// We added their link; they have not answered yet.
    Added,
    /// They asked to be our contact; we have not accepted.
    Incoming,
    /// Both sides know each other.
    Accepted,
}

impl From<CoreContactStatus> for ContactStatus {
    fn from(s: CoreContactStatus) -> Self {
        match s {
            CoreContactStatus::Added => ContactStatus::Added,
            CoreContactStatus::Incoming => ContactStatus::Incoming,
            CoreContactStatus::Accepted => ContactStatus::Accepted,
        }
    }
}

/// What a line of history is.
#[derive(uniffi::Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    Text,
    /// The group was created.
    Created,
    /// A member was added.
    Added,
    /// A member was removed (`body` names them, or "you").
    Removed,
    /// The group's keys were renewed.
    Rekeyed,
    /// We joined the group.
    Joined,
    /// A contact we asked accepted.
    Accepted,
    /// A member asked to leave (`body` names them, or "you"); an admin's device removes them
    /// (a `Removed` line follows).
    Left,
    /// An admin renamed the group (`body` is the new name).
    Renamed,
    /// A contact linked a new device (`body` names them); their safety number is unchanged.
    DeviceLinked,
    /// A member set the disappearing-message timer (`body`: its milliseconds, or "off"); the
    /// sender is who set it.
    Timer,
}

impl MessageKind {
    pub fn from_core(kind: &str) -> Self {
        match kind {
            "created" => MessageKind::Created,
            "added" => MessageKind::Added,
            "removed" => MessageKind::Removed,
            "rekeyed" => MessageKind::Rekeyed,
            "joined" => MessageKind::Joined,
            "accepted" => MessageKind::Accepted,
            "left" => MessageKind::Left,
            "renamed" => MessageKind::Renamed,
            "device_linked" => MessageKind::DeviceLinked,
            "timer" => MessageKind::Timer,
            // The core writes no other kind (see `all_core_kinds_have_a_case`).
            _ => MessageKind::Text,
        }
    }
}

/// How far a message of ours got.
#[derive(uniffi::Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    /// Stored; no peer has taken it yet.
    Queued,
    /// A peer (a member, a relay) took it.
    Sent,
    /// Every other member has it on a device.
    Delivered,
    /// Every other member read it.
    Read,
    /// It cannot be delivered (we are no longer a member); `resend` once back in.
    Expired,
}

impl From<Delivery> for DeliveryState {
    fn from(d: Delivery) -> Self {
        match d {
            Delivery::Queued => DeliveryState::Queued,
            Delivery::Sent => DeliveryState::Sent,
            Delivery::Delivered => DeliveryState::Delivered,
            Delivery::Read => DeliveryState::Read,
            Delivery::Expired => DeliveryState::Expired,
        }
    }
}

impl DeliveryState {
    pub fn from_core(state: &str) -> Self {
        match state {
            "sent" => DeliveryState::Sent,
            "delivered" => DeliveryState::Delivered,
            "read" => DeliveryState::Read,
            "expired" => DeliveryState::Expired,
            _ => DeliveryState::Queued,
        }
    }
}

/// The path that brought something (named `Via` rather than `Path`, which SwiftUI and
/// java.nio take).
#[derive(uniffi::Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The internet side (TCP/QUIC, relays, the LAN).
    Libp2p,
    /// The Bluetooth mesh.
    Mesh,
    /// A bundle file carried by hand.
    Bundle,
}

impl Via {
    pub fn from_core(via: &str) -> Self {
        match via {
            "mesh" => Via::Mesh,
            "bundle" => Via::Bundle,
            _ => Via::Libp2p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every word the core writes has its own case (none falls through to the default).
    #[test]
    fn all_core_kinds_have_a_case() {
        for kind in [
            "created",
            "added",
            "removed",
            "rekeyed",
            "joined",
            "accepted",
            "left",
            "renamed",
            "device_linked",
            "timer",
        ] {
            assert_ne!(MessageKind::from_core(kind), MessageKind::Text, "{kind}");
        }
        for d in [Delivery::Queued, Delivery::Sent, Delivery::Delivered, Delivery::Read, Delivery::Expired] {
            assert_eq!(DeliveryState::from_core(d.as_str()), d.into());
        }
        assert_eq!(Via::from_core(weft_core::mesh::driver::VIA), Via::Mesh);
        assert_eq!(Via::from_core(weft_core::net::VIA), Via::Libp2p);
        assert_eq!(Via::from_core("bundle"), Via::Bundle);
    }
}
