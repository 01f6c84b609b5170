//! What each method answers: plain data, serialised as the daemon sends it and `weft --json`
//! prints it, and read back by the CLI when a daemon answered. docs/JSONRPC.md describes each.
//!
//! Answers do not refuse members they do not know: a client keeps working against a newer
//! daemon that says more.

use serde::{Deserialize, Serialize};
use weft_core::account::{ContactInfo, ConversationInfo, ImportReport, MemberInfo, MessageInfo};
use weft_core::net::NetStatus;

/// Bytes (an account key, a conversation id) as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `identity`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: Option<String>,
    /// The `weft://contact/…` link to share.
    pub link: String,
    pub fingerprint: String,
    pub account: String,
    /// The link as a QR code drawn in Unicode blocks.
    pub qr: String,
}

/// A contact: `contact.add`, `contact.list`, and inside `contact.accept`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub account: String,
    pub fingerprint: String,
    /// `added`, `incoming` or `accepted`.
    pub status: String,
    pub verified: bool,
    /// Blocked by us: nothing of theirs is shown, nothing of ours goes to them.
    #[serde(default)]
    pub blocked: bool,
    pub conversation_id: String,
}

impl From<&ContactInfo> for Contact {
    fn from(c: &ContactInfo) -> Self {
        Contact {
            name: c.name.clone(),
            account: hex(&c.account),
            fingerprint: c.fingerprint.clone(),
            status: c.status.as_str().to_owned(),
            verified: c.verified,
            blocked: c.blocked,
            conversation_id: hex(&c.conversation),
        }
    }
}

/// `device.link`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLink {
    pub link: String,
    /// The link as a QR code for a terminal.
    pub qr: String,
}

/// `device.request`, `device.accept`: the device that asks, and the code both screens show.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRequest {
    pub name: String,
    pub device: String,
    pub code: String,
    /// `device.accept` only: the grant was written.
    #[serde(default)]
    pub granted: bool,
}

/// `device.cancel`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCancelled {
    pub cancelled: bool,
}

/// One of `device.list`; `device.revoke`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    pub device: String,
    pub linked_ms: u64,
    #[serde(default)]
    pub last_seen_ms: Option<u64>,
    pub this_device: bool,
    pub primary: bool,
}

impl From<&weft_core::account::DeviceInfo> for Device {
    fn from(d: &weft_core::account::DeviceInfo) -> Self {
        Device {
            name: d.name.clone(),
            device: hex(&d.device),
            linked_ms: d.linked_ms,
            last_seen_ms: d.last_seen_ms,
            this_device: d.this_device,
            primary: d.primary,
        }
    }
}

/// `contact.reject`, `contact.delete`: who was forgotten.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forgotten {
    pub contact: String,
    pub account: String,
}

/// `contact.block`, `contact.unblock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocking {
    pub contact: String,
    pub account: String,
    pub blocked: bool,
}

/// `group.leave`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    pub group: String,
    pub group_id: String,
}

/// `group.rename`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renamed {
    pub group_id: String,
    pub name: String,
}

/// `contact.accept`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub contact: Contact,
    /// The groups they had invited us to, joined now.
    pub joined_groups: Vec<String>,
    /// False when they were already a contact.
    pub was_request: bool,
}

/// `contact.safety_number` and `contact.verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub contact: String,
    pub safety_number: String,
    pub verified: bool,
}

/// One of `conversations`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub name: String,
    pub id: String,
    pub group: bool,
    pub members: usize,
    pub active: bool,
    /// The others' messages after the read mark.
    pub unread: usize,
    /// The contact's verification for a 1:1 conversation; `None` for a group.
    pub verified: Option<bool>,
}

/// A group: `group.create`, `group.list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub id: String,
    pub members: usize,
    /// False once we were removed.
    pub active: bool,
}

impl From<&ConversationInfo> for Group {
    fn from(g: &ConversationInfo) -> Self {
        Group { name: g.name.clone(), id: hex(&g.id), members: g.members, active: g.active }
    }
}

/// `group.invite`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invited {
    pub group: String,
    pub group_id: String,
    pub invited: String,
    pub account: Option<String>,
}

/// `group.remove`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub group: String,
    pub group_id: String,
    pub removed: String,
    pub account: Option<String>,
}

/// One of `group.members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub account: String,
    pub admin: bool,
    pub me: bool,
}

impl From<&MemberInfo> for Member {
    fn from(m: &MemberInfo) -> Self {
        Member { name: m.name.clone(), account: hex(&m.account), admin: m.admin, me: m.is_me }
    }
}

/// A message: `send`, `resend`, `log`, and in `import` and events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    /// The message's place in the conversation's causal order.
    pub lamport: u64,
    pub conversation: String,
    pub sender: String,
    pub outgoing: bool,
    pub sent_ms: u64,
    pub kind: String,
    pub body: String,
    /// Our text messages: `queued`, `sent`, `delivered`, `read`, `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Received messages: the path that brought them (`libp2p`, `mesh`, `bundle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The message this one replies to (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// Its sender edited it (`body` is the latest text).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub edited: bool,
    /// Its sender deleted it for everyone (`body` is empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Each emoji given to it, most given first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// In events only: the message is not new; the reaction, edit or delete with this id
    /// changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    /// The file it carries (`body` is its caption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
}

/// A message of the nearby channel: `nearby`, `nearby.post`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nearby {
    /// The session key that signed it (hex): what to mute or block.
    pub sender: String,
    /// The nickname it chose and its key's first 8 hex digits.
    pub name: String,
    pub text: String,
    pub sent_ms: u64,
    pub hops: u8,
}

impl From<&weft_core::nearby::Shown> for Nearby {
    fn from(m: &weft_core::nearby::Shown) -> Nearby {
        Nearby { sender: hex(&m.sender), name: m.name.clone(), text: m.text.clone(), sent_ms: m.sent_ms, hops: m.hops }
    }
}

/// `nearby.session`: the new session's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearbySession {
    pub sender: String,
}

/// `nearby.mute`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearbyMuted {
    pub sender: String,
    pub blocked: bool,
}

/// A file a message carries: `attachment`, `attachment.save`, and in messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The message that carries it (absent inside a message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub name: String,
    pub mime: String,
    pub size: u64,
    /// Envelopes here, of `total`.
    pub have: u32,
    pub total: u32,
    pub complete: bool,
    /// Being fetched now.
    pub fetching: bool,
    /// `attachment.save`: where it was written, once whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_to: Option<String>,
}

impl Attachment {
    pub fn new(message: Option<String>, a: &weft_core::account::AttachmentInfo) -> Attachment {
        Attachment {
            message,
            name: a.name.clone(),
            mime: a.mime.clone(),
            size: a.size,
            have: a.have,
            total: a.total,
            complete: a.is_complete(),
            fetching: a.fetching,
            saved_to: None,
        }
    }
}

/// `wipe`: what was erased.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wiped {
    /// Files erased (keys and database first).
    pub files: usize,
    /// Bytes overwritten before the files were unlinked.
    pub overwritten: u64,
    /// Bytes the files held.
    pub held: u64,
    pub elapsed_ms: u64,
}

impl From<&weft_core::wipe::Wiped> for Wiped {
    fn from(w: &weft_core::wipe::Wiped) -> Self {
        Wiped { files: w.files, overwritten: w.overwritten, held: w.held, elapsed_ms: w.elapsed.as_millis() as u64 }
    }
}

/// `disappearing`: a conversation's timer (`keep_ms` absent: off).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disappearing {
    pub conversation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_ms: Option<u64>,
}

/// One emoji given to a message: by how many members, and whether by us.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub emoji: String,
    pub count: u32,
    pub mine: bool,
}

impl From<&MessageInfo> for Message {
    fn from(m: &MessageInfo) -> Self {
        Message {
            id: m.id.clone(),
            lamport: m.lamport,
            conversation: m.conversation.clone(),
            sender: m.sender.clone(),
            outgoing: m.outgoing,
            sent_ms: m.sent_ms,
            kind: m.kind.clone(),
            body: m.body.clone(),
            state: m.state.map(str::to_owned),
            via: m.via.clone(),
            reply_to: m.reply_to.clone(),
            edited: m.edited,
            deleted: m.deleted,
            reactions: m
                .reactions
                .iter()
                .map(|r| Reaction { emoji: r.emoji.clone(), count: r.count, mine: r.mine })
                .collect(),
            changed_by: m.changed_by.clone(),
            attachment: m.attachment.as_ref().map(|a| Attachment::new(None, a)),
        }
    }
}

/// `read`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marked {
    pub conversation: String,
    /// How many messages were unread.
    pub marked: usize,
}

/// `keys.update`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysUpdated {
    /// Conversations that fresh keys went out in.
    pub updated: usize,
}

/// `retention` and `retention.set`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub conversation: String,
    /// How long messages stay after they arrived; `None`: for ever.
    pub keep_ms: Option<u64>,
    /// `retention.set`: messages deleted now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<usize>,
}

/// `settings` and `settings.set`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub read_receipts: bool,
}

/// `export`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    pub file: String,
    pub bytes: usize,
}

/// `import`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    pub new_contacts: Vec<String>,
    pub answered: Vec<String>,
    pub joined_groups: Vec<String>,
    pub messages: Vec<Message>,
    pub duplicates: usize,
    pub waiting: usize,
    pub unreadable: usize,
    pub rejected: usize,
}

impl From<&ImportReport> for Imported {
    fn from(r: &ImportReport) -> Self {
        Imported {
            new_contacts: r.new_contacts.clone(),
            answered: r.answered.clone(),
            joined_groups: r.joined_groups.clone(),
            messages: r.messages.iter().map(Message::from).collect(),
            duplicates: r.duplicates,
            waiting: r.waiting,
            unreadable: r.unreadable,
            rejected: r.rejected,
        }
    }
}

/// `status`: `{running: false, outbox}` with no node running, `{running: true, starting: true,
/// outbox}` while its network starts, and the network's state once it is up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub running: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub starting: bool,
    #[serde(flatten)]
    pub network: Option<Network>,
    /// Our messages no peer took yet.
    pub outbox: usize,
}

/// What a running node's network does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub peer_id: String,
    pub listening: Vec<String>,
    pub peers: Vec<Peer>,
    pub relays: Vec<Relay>,
    pub topics: usize,
    pub sync: Sync,
    /// The Bluetooth mesh, when one runs.
    pub mesh: Option<Mesh>,
    /// Why no Bluetooth mesh runs, when one was tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_off: Option<String>,
}

impl Network {
    pub fn new(net: &NetStatus, mesh: Option<Mesh>) -> Network {
        Network {
            peer_id: net.peer_id.clone(),
            listening: net.listening.clone(),
            peers: net
                .peers
                .iter()
                .map(|p| Peer {
                    peer: p.peer.clone(),
                    transport: weft_core::net::VIA.to_owned(),
                    addr: p.addr.clone(),
                    relayed: p.relayed,
                })
                .collect(),
            relays: net
                .relays
                .iter()
                .map(|r| Relay { addr: r.addr.clone(), connected: r.connected, reserved: r.reserved })
                .collect(),
            topics: net.topics,
            sync: Sync { reconciling: net.sync.reconciling, wanted: net.sync.wanted, fetched: net.sync.fetched },
            mesh,
            mesh_off: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub peer: String,
    pub transport: String,
    pub addr: String,
    /// Reached through a relay's circuit.
    pub relayed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    pub addr: String,
    pub connected: bool,
    /// Peers can reach us through it.
    pub reserved: bool,
}

/// How far catching up with peers has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sync {
    /// Reconciliations open.
    pub reconciling: usize,
    /// Envelopes asked for and not yet received.
    pub wanted: usize,
    /// Envelopes received by reconciliation since the node started.
    pub fetched: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mesh {
    pub radio: String,
    /// The radio's roles: each one's links, or why it is off (`ble` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<MeshRole>,
    pub links: usize,
    pub carried_envelopes: usize,
    pub carried_bytes: usize,
}

/// One role of the Bluetooth radio in `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshRole {
    /// `central` or `peripheral`.
    pub role: String,
    pub on: bool,
    pub links: usize,
    /// Why the role is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_because: Option<String>,
}

impl MeshRole {
    pub fn list(report: Option<weft_core::mesh::radio::RadioReport>) -> Vec<MeshRole> {
        use weft_core::mesh::radio::RoleState;
        let Some(report) = report else { return Vec::new() };
        report
            .roles
            .into_iter()
            .map(|(role, state)| match state {
                RoleState::On { links } => MeshRole { role: role.to_string(), on: true, links, off_because: None },
                RoleState::Off(why) => {
                    MeshRole { role: role.to_string(), on: false, links: 0, off_because: Some(why.to_string()) }
                }
            })
            .collect()
    }
}

/// `subscribe` and `unsubscribe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub subscribed: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The three shapes of `status` read back as they were written.
    #[test]
    fn status_keeps_its_shapes() {
        let stopped = Status { running: false, starting: false, network: None, outbox: 2 };
        assert_eq!(serde_json::to_value(&stopped).unwrap(), json!({ "running": false, "outbox": 2 }));
        let starting = Status { running: true, starting: true, network: None, outbox: 0 };
        assert_eq!(serde_json::to_value(&starting).unwrap(), json!({ "running": true, "starting": true, "outbox": 0 }));
        let network = Network {
            peer_id: "12D3".into(),
            listening: vec!["/ip4/127.0.0.1/tcp/1".into()],
            peers: vec![Peer { peer: "p".into(), transport: "libp2p".into(), addr: "a".into(), relayed: false }],
            relays: vec![],
            topics: 3,
            sync: Sync { reconciling: 0, wanted: 1, fetched: 9 },
            mesh: None,
            mesh_off: None,
        };
        let running = Status { running: true, starting: false, network: Some(network), outbox: 0 };
        let json = serde_json::to_value(&running).unwrap();
        assert_eq!(json["mesh"], serde_json::Value::Null, "{json}");
        assert_eq!(json["sync"], json!({ "reconciling": 0, "wanted": 1, "fetched": 9 }));
        for status in [stopped, starting, running] {
            let back: Status = serde_json::from_value(serde_json::to_value(&status).unwrap()).unwrap();
            assert_eq!(back, status);
        }
    }
}
