//! What the account hands to its callers: plain data, ready to print or to bind.

use crate::store::ContactStatus;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactInfo {
    pub name: String,
    pub account: [u8; 32],
    pub fingerprint: String,
    pub status: ContactStatus,
    pub verified: bool,
    /// The user blocked them: nothing of theirs is shown, nothing of ours goes to them.
    pub blocked: bool,
    /// The id of the 1:1 conversation with them.
    pub conversation: [u8; 32],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversationKind {
    Contact,
    Group,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationInfo {
    pub kind: ConversationKind,
    pub name: String,
    pub id: [u8; 32],
    pub members: usize,
    /// False once we were removed from the group.
    pub active: bool,
}

/// A conversation as a list of conversations shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationOverview {
    pub info: ConversationInfo,
    /// Others' messages after the read mark.
    pub unread: usize,
    /// The newest message or event, if any.
    pub last: Option<MessageInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub name: String,
    pub account: [u8; 32],
    pub admin: bool,
    pub is_me: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    pub id: String,
    /// The conversation's name, as shown.
    pub conversation: String,
    /// The conversation's id: what to address it by.
    pub conversation_id: [u8; 32],
    /// The sender's name, as shown.
    pub sender: String,
    /// The sender's account id.
    pub sender_account: [u8; 32],
    pub outgoing: bool,
    pub sent_ms: u64,
    pub lamport: u64,
    /// `text`, or a membership event: `created`, `added`, `removed`, `rekeyed`, `joined`; or
    /// `accepted` (a contact we asked accepted), `device_linked` (a contact linked a new device).
    pub kind: String,
    pub body: String,
    /// Our text messages only: `queued`, `sent`, `delivered` or `read` (as far as receipts
    /// tell; in history pages, not in the events of the moment).
    pub state: Option<&'static str>,
    /// Received messages: the path that brought them (`libp2p`, `mesh`, `bundle`).
    pub via: Option<String>,
    /// In the event of the moment only: the id this message was shown under before its sender
    /// sealed it again (the message moves; it is not a new one).
    pub replaces: Option<String>,
    /// The message this one replies to (its id).
    pub reply_to: Option<String>,
    /// Its sender edited it: `body` is the latest text.
    pub edited: bool,
    /// Its sender deleted it for everyone: `body` is empty, and the text has left the store.
    pub deleted: bool,
    /// Reactions, each emoji once, most given first.
    pub reactions: Vec<ReactionInfo>,
    /// In the event of the moment only: this message is not new; the reaction, edit or delete
    /// in this envelope (its id) changed it.
    pub changed_by: Option<String>,
    /// The file it carries (`body` is then its caption).
    pub attachment: Option<AttachmentInfo>,
}

/// A file a message carries, and how far it has come.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// The name its sender gave it (no directories; checked).
    pub name: String,
    /// Its media type, as its sender said: shown, never trusted.
    pub mime: String,
    pub size: u64,
    /// Chunks here, of `total`: complete when equal.
    pub have: u32,
    pub total: u32,
    /// Being fetched (small files are, unasked; larger ones once asked for).
    pub fetching: bool,
}

impl AttachmentInfo {
    pub fn is_complete(&self) -> bool {
        self.have >= self.total
    }
}

/// A step of a file's download: which message, and how far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentProgress {
    /// The message that carries it (its id, as in [`MessageInfo::id`]).
    pub message: String,
    pub conversation_id: [u8; 32],
    pub have: u32,
    pub total: u32,
}

/// One emoji given to a message: by how many members, and whether by us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactionInfo {
    pub emoji: String,
    pub count: u32,
    pub mine: bool,
}

/// What to do to a message already in a conversation (see [`crate::group::MessageChange`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageAction {
    /// A text that quotes message `to`.
    Reply { to: crate::envelope::EnvelopeId, text: String },
    /// Our reaction to `to`, replacing any earlier one; an empty emoji withdraws it.
    React { to: crate::envelope::EnvelopeId, emoji: String },
    /// New text for our message `of`.
    Edit { of: crate::envelope::EnvelopeId, text: String },
    /// Our message `of`, deleted for everyone.
    Delete { of: crate::envelope::EnvelopeId },
}

/// What one received envelope did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// Applied; carries the messages it made visible (its own and any that were waiting on it).
    Applied(Vec<MessageInfo>),
    /// Stored until its sender's key arrives.
    Waiting,
    /// A new device's request for the link that is out arrived over the network: the user
    /// compares its code with the new device's screen before granting it.
    LinkRequest(super::ArrivedRequest),
    /// A piece of a file being fetched, verified and stored.
    Attachment(AttachmentProgress),
}

/// How far an import has got: requests and envelopes looked at, of all in the bundle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportProgress {
    pub done: usize,
    pub total: usize,
}

/// The outcome of importing a bundle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub new_contacts: Vec<String>,
    /// Contacts we had added who introduced themselves in turn.
    pub answered: Vec<String>,
    pub messages: Vec<MessageInfo>,
    pub joined_groups: Vec<String>,
    pub duplicates: usize,
    pub waiting: usize,
    /// Envelopes of conversations we are not in (or no longer in): carried, not readable.
    pub unreadable: usize,
    /// Envelopes or requests that failed to authenticate or decode.
    pub rejected: usize,
}
