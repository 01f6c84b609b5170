//! What a client may ask: one [`Request`] variant per JSON-RPC method, holding the method's
//! params as a struct, and through [`Method`] the type of its answer. The CLI builds these, the
//! socket carries them (`{"method": "contact.add", "params": {…}}`), and the method table
//! matches them, so the compiler checks every method's params at both ends.
//!
//! Params refuse members they do not know (`deny_unknown_fields`): a misspelt optional param
//! (`"befor"`, `"read_reciepts"`) would otherwise be dropped in silence and the call would do
//! something else than asked. The CLI leaves out optional params it does not use, so what it
//! sends is also read by a daemon that predates them.

use std::path::Path;

use serde::de::{self, DeserializeOwned, Unexpected};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::answer;
use super::params::{self, ParamError};

/// A method's params, naming the method and the answer it gets.
pub trait Method: Into<Request> {
    /// The JSON-RPC method's name.
    const NAME: &'static str;
    type Answer: Serialize + DeserializeOwned;
}

/// Declares the methods: each one's name, its params struct (also the [`Request`] variant's
/// name) and its answer. The order is docs/JSONRPC.md's.
macro_rules! methods {
    ($($name:literal => $Params:ident -> $Answer:ty;)*) => {
        /// One call: `{"method": NAME, "params": {…}}` on the wire.
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "method", content = "params")]
        pub enum Request {
            $(#[serde(rename = $name)] $Params($Params),)*
        }

        impl Request {
            /// Every method's name.
            pub const METHODS: &[&str] = &[$($name),*];

            /// This call's method name.
            pub fn method(&self) -> &'static str {
                match self {
                    $(Request::$Params(_) => $name,)*
                }
            }
        }

        $(
            impl Method for $Params {
                const NAME: &'static str = $name;
                type Answer = $Answer;
            }

            impl From<$Params> for Request {
                fn from(params: $Params) -> Request {
                    Request::$Params(params)
                }
            }
        )*

        /// Each method's name with the members of its params and of its answer, for the docs test.
        #[cfg(test)]
        pub(super) fn shapes() -> Vec<(&'static str, &'static [&'static str], &'static [&'static str])> {
            vec![$(($name, super::shape::members::<$Params>(), super::shape::members::<$Answer>())),*]
        }
    };
}

methods! {
    "identity" => ShowIdentity -> answer::Identity;
    "identity.replace_link" => ReplaceLink -> answer::Identity;
    "contact.add" => AddContact -> answer::Contact;
    "contact.list" => ListContacts -> Vec<answer::Contact>;
    "contact.accept" => AcceptContact -> answer::Accepted;
    "contact.safety_number" => ShowSafetyNumber -> answer::Verification;
    "contact.verify" => VerifyContact -> answer::Verification;
    "contact.reject" => RejectContact -> answer::Forgotten;
    "contact.delete" => DeleteContact -> answer::Forgotten;
    "contact.block" => BlockContact -> answer::Blocking;
    "contact.unblock" => UnblockContact -> answer::Blocking;
    "conversations" => ListConversations -> Vec<answer::Conversation>;
    "group.create" => CreateGroup -> answer::Group;
    "group.list" => ListGroups -> Vec<answer::Group>;
    "group.invite" => InviteToGroup -> answer::Invited;
    "group.remove" => RemoveFromGroup -> answer::Removed;
    "group.members" => ListMembers -> Vec<answer::Member>;
    "group.leave" => LeaveGroup -> answer::Left;
    "group.rename" => RenameGroup -> answer::Renamed;
    "send" => SendMessage -> answer::Message;
    "send.file" => SendFile -> answer::Message;
    "attachment" => ShowAttachment -> answer::Attachment;
    "attachment.save" => SaveAttachment -> answer::Attachment;
    "react" => React -> answer::Message;
    "edit" => EditMessage -> answer::Message;
    "delete" => DeleteMessage -> answer::Message;
    "log" => ReadLog -> Vec<answer::Message>;
    "read" => MarkRead -> answer::Marked;
    "resend" => Resend -> answer::Message;
    "settings" => ShowSettings -> answer::Settings;
    "settings.set" => ChangeSettings -> answer::Settings;
    "keys.update" => UpdateKeys -> answer::KeysUpdated;
    "disappearing" => ShowDisappearing -> answer::Disappearing;
    "disappearing.set" => SetDisappearing -> answer::Message;
    "retention" => ShowRetention -> answer::Retention;
    "retention.set" => SetRetention -> answer::Retention;
    "export" => Export -> answer::Exported;
    "import" => Import -> answer::Imported;
    "device.link" => LinkDevice -> answer::DeviceLink;
    "device.request" => ShowLinkRequest -> answer::LinkRequest;
    "device.accept" => AcceptDevice -> answer::LinkRequest;
    "device.arrived" => ArrivedLinkRequests -> Vec<answer::LinkRequest>;
    "device.grant" => GrantArrived -> answer::LinkRequest;
    "device.cancel" => CancelLink -> answer::LinkCancelled;
    "device.list" => ListDevices -> Vec<answer::Device>;
    "device.revoke" => RevokeDevice -> answer::Device;
    "nearby" => ShowNearby -> Vec<answer::Nearby>;
    "nearby.post" => PostNearby -> answer::Nearby;
    "nearby.session" => NewNearbySession -> answer::NearbySession;
    "nearby.mute" => MuteNearby -> answer::NearbyMuted;
    "status" => ShowStatus -> answer::Status;
    "wipe" => Wipe -> answer::Wiped;
    "subscribe" => Subscribe -> answer::Subscription;
    "unsubscribe" => Unsubscribe -> answer::Subscription;
}

/// Why a call could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    NoSuchMethod(String),
    Params(ParamError),
}

impl Request {
    /// The call of `method` with `params` (an object).
    pub fn read(method: &str, params: Value) -> Result<Request, Unreadable> {
        if !Request::METHODS.contains(&method) {
            return Err(Unreadable::NoSuchMethod(method.to_owned()));
        }
        let call =
            serde_json::Map::from_iter([("method".to_owned(), Value::from(method)), ("params".to_owned(), params)]);
        params::from_value(Value::Object(call)).map_err(Unreadable::Params)
    }

    /// Whether the client asked to hear how far the call got (`import` with `progress`).
    pub fn wants_progress(&self) -> bool {
        matches!(self, Request::Import(Import { progress: true, .. }))
    }

    /// Whether the call may take as long as a bundle is large.
    pub fn may_take_long(&self) -> bool {
        matches!(self, Request::Import(_) | Request::Export(_))
    }
}

macro_rules! no_params {
    ($($(#[$doc:meta])* $Params:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $Params {}
    )*};
}

no_params! {
    /// `identity`: our name, link and fingerprint.
    ShowIdentity;
    /// `identity.replace_link`: a new contact link (the old one leaked).
    ReplaceLink;
    /// `contact.list`.
    ListContacts;
    /// `conversations`: every conversation, with its unread count.
    ListConversations;
    /// `group.list`.
    ListGroups;
    /// `settings`.
    ShowSettings;
    /// `status`: the node's network, catch-up and outbox.
    ShowStatus;
    /// `subscribe`: node events on this connection from now on.
    Subscribe;
    /// `unsubscribe`.
    Unsubscribe;
    /// `device.link`: a one-time link for a new device.
    LinkDevice;
    /// `device.cancel`: forgets the waiting link.
    CancelLink;
    /// `device.arrived`: the requests that came over the network for the link that is out.
    ArrivedLinkRequests;
    /// `device.list`.
    ListDevices;
}

/// `contact.add`: someone from their `weft://contact/…` link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddContact {
    pub link: String,
    /// What to call them instead of the name on the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `contact.accept`: a contact request, by the requester's name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptContact {
    pub name: String,
}

/// `contact.safety_number`: the number to compare with a contact in person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowSafetyNumber {
    pub name: String,
}

/// `contact.verify`: marks a contact verified, after the numbers matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyContact {
    pub name: String,
}

/// `contact.reject`: declines a request that waits, by the requester's name or account id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectContact {
    pub name: String,
}

/// `contact.delete`: forgets a contact and the 1:1 conversation with them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteContact {
    pub name: String,
}

/// `contact.block`: a contact (by name or account id) or any account (by id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockContact {
    pub name: String,
}

/// `contact.unblock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnblockContact {
    pub name: String,
}

/// `group.create`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    pub name: String,
}

/// `group.invite`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteToGroup {
    pub group: String,
    pub contact: String,
}

/// `group.remove`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveFromGroup {
    pub group: String,
    pub member: String,
}

/// `group.members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListMembers {
    pub group: String,
}

/// `group.leave`: asks the admins to remove us; nothing more is sent there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaveGroup {
    pub group: String,
}

/// `group.rename`: a new name for every member (admins only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameGroup {
    pub group: String,
    pub name: String,
}

/// `send`: a text message to a contact or group, or a reply to one of its messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    pub conversation: String,
    pub text: String,
    /// A message id: the message this one replies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// `wipe`: the panic wipe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wipe {}

/// `disappearing`: a conversation's disappearing-message timer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowDisappearing {
    pub conversation: String,
}

/// `disappearing.set`: the timer for every member (`keep_ms` absent or null: off).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetDisappearing {
    pub conversation: String,
    #[serde(default)]
    pub keep_ms: Option<u64>,
}

/// `send.file`: a file (read by the node from `path`, up to 100 MiB) with a caption.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendFile {
    pub conversation: String,
    /// An absolute path the node can read.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// Its media type (`image/jpeg`); guessed from the name's extension when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime: Option<String>,
}

/// `attachment`: how far the file a message carries has come (it is asked for if it was not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowAttachment {
    /// The message's id, or its first 6 hex digits or more.
    pub message: String,
}

/// `attachment.save`: writes the file a message carries to `path` once it is whole and checked
/// (a directory: under the file's own name); until then, asks for it and says how far it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveAttachment {
    /// The message's id, or its first 6 hex digits or more.
    pub message: String,
    /// An absolute path the node can write.
    pub path: String,
}

/// `nearby`: the nearby channel's recent window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowNearby {}

/// `nearby.post`: a public message to everyone within radio range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostNearby {
    pub text: String,
}

/// `nearby.session`: a new session of the nearby channel (a new key) under a nickname.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNearbySession {
    #[serde(default)]
    pub nick: String,
}

/// `nearby.mute`: hides a sender of the nearby channel; with `block`, also stops passing them on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuteNearby {
    /// The sender's key (64 hex digits, as their messages give it).
    pub sender: String,
    #[serde(default)]
    pub block: bool,
}

/// `react`: our reaction to a message (an empty emoji withdraws it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct React {
    pub conversation: String,
    pub message: String,
    pub emoji: String,
}

/// `edit`: new text for a message of ours.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    pub conversation: String,
    pub message: String,
    pub text: String,
}

/// `delete`: a message of ours, deleted for everyone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteMessage {
    pub conversation: String,
    pub message: String,
}

/// `log`: a page of a conversation's history, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadLog {
    pub conversation: String,
    /// How many messages [default: 50].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// A message id: the page just before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

impl ReadLog {
    pub const DEFAULT_LIMIT: u64 = 50;
    /// No page is longer, whatever the client asks.
    pub const MAX_LIMIT: u64 = 100_000;
}

/// `read`: marks a conversation read up to its last message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkRead {
    pub conversation: String,
}

/// `resend`: a message of ours that expired, by its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resend {
    pub message: String,
}

/// `settings.set`: changes what is given, answers all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_receipts: Option<bool>,
}

/// `keys.update`: fresh keys now, in one conversation or (without one) all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
}

/// `retention`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowRetention {
    pub conversation: String,
}

/// `retention.set`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRetention {
    pub conversation: String,
    /// Required, and `null` keeps for ever (so leaving it out by mistake changes nothing).
    #[serde(deserialize_with = "positive_or_null")]
    pub keep_ms: Option<u64>,
}

fn positive_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<u64>::deserialize(d)? {
        Some(0) => {
            Err(de::Error::invalid_value(Unexpected::Unsigned(0), &"a positive number of milliseconds, or null"))
        }
        keep => Ok(keep),
    }
}

/// `export`: a bundle of everything others may lack, written to `path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    pub path: AbsolutePath,
}

/// `import`: a bundle someone exported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Import {
    pub path: AbsolutePath,
    /// Send `progress` notifications before the answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub progress: bool,
}

/// `device.request`: who a new device's request (a file) comes from, and its code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowLinkRequest {
    pub request: AbsolutePath,
}

/// `device.accept`: grants the new device (writing the grant to `grant`) if `code` is the one
/// both screens show; otherwise cancels the link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptDevice {
    pub request: AbsolutePath,
    pub grant: AbsolutePath,
    pub code: u32,
    /// Hand the conversations' history over too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub history: bool,
}

/// `device.grant`: grants the new device whose request came over the network and shows
/// `code`, and hands the grant out there; with a code none shows, cancels the link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantArrived {
    pub code: u32,
    /// Hand the conversations' history over too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub history: bool,
}

/// `device.revoke`: a lost device, by name or id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeDevice {
    pub device: String,
}

/// A file's path as a client gives it: absolute, because the daemon's working directory is not
/// the client's; and text, which JSON needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AbsolutePath(String);

impl AbsolutePath {
    /// `None` unless `path` is absolute.
    pub fn new(path: String) -> Option<AbsolutePath> {
        Path::new(&path).is_absolute().then_some(AbsolutePath(path))
    }

    pub fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl<'de> Deserialize<'de> for AbsolutePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = String::deserialize(d)?;
        AbsolutePath::new(path.clone())
            .ok_or_else(|| de::Error::invalid_value(Unexpected::Str(&path), &"an absolute path"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(method: &str, params: Value) -> Result<Request, String> {
        Request::read(method, params).map_err(|e| match e {
            Unreadable::NoSuchMethod(m) => format!("no method {m}"),
            Unreadable::Params(e) => e.to_string(),
        })
    }

    #[test]
    fn calls_read_into_their_variant_and_back() {
        let send = read("send", json!({ "conversation": "bob", "text": "hi" })).unwrap();
        assert_eq!(send, Request::from(SendMessage { conversation: "bob".into(), text: "hi".into(), reply_to: None }));
        assert_eq!(send.method(), "send");
        assert_eq!(
            serde_json::to_value(&send).unwrap(),
            json!({ "method": "send", "params": { "conversation": "bob", "text": "hi" } })
        );
        // Optional params left out are not sent, so an older daemon reads the call too.
        let log = Request::from(ReadLog { conversation: "bob".into(), limit: None, before: None });
        assert_eq!(serde_json::to_value(&log).unwrap()["params"], json!({ "conversation": "bob" }));
        assert_eq!(serde_json::to_value(Request::from(ShowStatus {})).unwrap()["params"], json!({}));
        for method in Request::METHODS {
            if let Ok(request) = read(method, json!({})) {
                assert_eq!(request.method(), *method);
                assert_eq!(Request::deserialize(serde_json::to_value(&request).unwrap()).unwrap(), request);
            }
        }
    }

    #[test]
    fn bad_calls_say_what_is_wrong() {
        assert_eq!(read("contact.delete_everything", json!({})), Err("no method contact.delete_everything".into()));
        assert_eq!(read("send", json!({ "conversation": "bob" })), Err("\"text\" is missing".into()));
        assert_eq!(
            read("send", json!({ "conversation": "bob", "text": 7 })),
            Err("\"text\" must be a string, not integer `7`".into())
        );
        assert_eq!(
            read("log", json!({ "conversation": "bob", "limit": "ten" })),
            Err("\"limit\" must be u64, not string \"ten\"".into())
        );
        assert_eq!(
            read("settings.set", json!({ "read_reciepts": false })),
            Err("\"read_reciepts\" is not a param of this method; it takes \"read_receipts\"".into())
        );
        assert_eq!(
            read("status", json!({ "verbose": true })),
            Err("\"verbose\" is not a param of this method; it takes none".into())
        );
        assert!(read("export", json!({ "path": "relative.weft" })).unwrap_err().contains("must be an absolute path"));
        assert_eq!(read("retention.set", json!({ "conversation": "bob" })), Err("\"keep_ms\" is missing".into()));
        assert!(
            read("retention.set", json!({ "conversation": "bob", "keep_ms": 0 })).unwrap_err().contains("positive")
        );
        let forever = read("retention.set", json!({ "conversation": "bob", "keep_ms": null })).unwrap();
        assert_eq!(forever, Request::from(SetRetention { conversation: "bob".into(), keep_ms: None }));
        assert!(read("import", json!({ "path": "/b.weft", "progress": true })).unwrap().wants_progress());
    }
}
