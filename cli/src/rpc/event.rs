//! What the daemon tells a client unasked: node events (`event` notifications, after
//! `subscribe`) and how far a long call got (`progress` notifications). `weft run --json`
//! prints the same events.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use weft_core::node::NodeEvent;

use super::answer::Message;

/// A node event: `{"event": "message", …}` and so on (docs/JSONRPC.md, `subscribe`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[expect(clippy::large_enum_variant, reason = "one short-lived value per event; boxing buys nothing")]
pub enum Event {
    Message {
        message: Message,
        via: String,
    },
    ContactRequest {
        name: String,
    },
    ContactAnswered {
        name: String,
    },
    JoinedGroup {
        name: String,
    },
    PeerConnected {
        peer: String,
        via: String,
    },
    PeerDisconnected {
        peer: String,
        via: String,
    },
    Delivery {
        id: String,
        state: String,
    },
    Resealed {
        old_id: String,
        new_id: String,
    },
    /// A new device answered the device link over the network; `code` is what its screen
    /// must show before `device.accept` grants it.
    LinkRequested {
        name: String,
        device: String,
        code: String,
    },
    /// A piece of a file arrived, checked and stored: `have` of `total` envelopes of the file
    /// message `message` carries.
    Attachment {
        message: String,
        have: u32,
        total: u32,
    },
    /// A message on the nearby channel, from a stranger's session key (`sender`, hex) under
    /// the name it chose (with the key's first 8 hex digits).
    Nearby {
        sender: String,
        name: String,
        text: String,
        sent_ms: u64,
        hops: u8,
    },
    /// The account revoked this device: it reads and sends nothing more.
    ThisDeviceRevoked,
    /// The client read too slowly and `missed` events were dropped.
    Lagged {
        missed: u64,
    },
}

impl From<NodeEvent> for Event {
    fn from(event: NodeEvent) -> Self {
        match event {
            NodeEvent::MessageReceived { message, via } => {
                Event::Message { message: Message::from(&message), via: via.to_owned() }
            }
            NodeEvent::ContactRequest { name, .. } => Event::ContactRequest { name },
            NodeEvent::ContactAnswered { name, .. } => Event::ContactAnswered { name },
            NodeEvent::JoinedGroup { name, .. } => Event::JoinedGroup { name },
            NodeEvent::PeerConnected { peer, via } => Event::PeerConnected { peer, via: via.to_owned() },
            NodeEvent::PeerDisconnected { peer, via } => Event::PeerDisconnected { peer, via: via.to_owned() },
            NodeEvent::DeliveryChanged { id, state } => Event::Delivery { id, state: state.as_str().to_owned() },
            NodeEvent::MessageResealed { old_id, new_id } => Event::Resealed { old_id, new_id },
            NodeEvent::LinkRequested { name, device, code } => {
                Event::LinkRequested { name, device: super::answer::hex(&device), code }
            }
            NodeEvent::AttachmentProgress { message, have, total, .. } => Event::Attachment { message, have, total },
            NodeEvent::Nearby { message } => Event::Nearby {
                sender: super::answer::hex(&message.sender),
                name: message.name,
                text: message.text,
                sent_ms: message.sent_ms,
                hops: message.hops,
            },
            NodeEvent::ThisDeviceRevoked => Event::ThisDeviceRevoked,
        }
    }
}

impl Event {
    /// The event for a subscriber from what its broadcast receiver gave: a missed burst is
    /// [`Event::Lagged`]; `None` once the node is gone.
    pub fn received(received: Result<NodeEvent, RecvError>) -> Option<Event> {
        match received {
            Ok(event) => Some(Event::from(event)),
            Err(RecvError::Lagged(missed)) => Some(Event::Lagged { missed }),
            Err(RecvError::Closed) => None,
        }
    }
}

/// How far a call got: `{"id": …, "done": n, "total": n}`, `id` being the call's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub id: Value,
    pub done: usize,
    pub total: usize,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Event;

    #[test]
    fn events_keep_their_wire_shape() {
        let lagged = Event::Lagged { missed: 3 };
        assert_eq!(serde_json::to_value(&lagged).unwrap(), json!({ "event": "lagged", "missed": 3 }));
        let delivery: Event =
            serde_json::from_value(json!({ "event": "delivery", "id": "m", "state": "read" })).unwrap();
        assert_eq!(delivery, Event::Delivery { id: "m".into(), state: "read".into() });
    }
}
