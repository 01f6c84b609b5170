//! Every `weft` command that reads or changes an account, as one method table over a [`Node`].
//!
//! The daemon (and `weft run`) serves it on the control socket as JSON-RPC 2.0; a command with no
//! daemon to talk to opens the home itself and calls the same table in-process. So each command
//! has exactly one implementation, and the JSON a script gets is the same either way
//! (docs/JSONRPC.md lists the methods).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use weft_core::account::ConversationKind;
use weft_core::mesh::driver::MeshHandle;
use weft_core::net::NetHandle;
use weft_core::node::Node;

use crate::output::{Contact, Message, hex};

/// What a method call can fail with, in JSON-RPC's terms.
#[derive(Debug)]
pub enum ApiError {
    MethodNotFound(String),
    InvalidParams(String),
    Weft(weft_core::Error),
}

impl From<weft_core::Error> for ApiError {
    fn from(e: weft_core::Error) -> Self {
        ApiError::Weft(e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::MethodNotFound(m) => write!(f, "no method {m:?}; the methods are {}", METHODS.join(", ")),
            ApiError::InvalidParams(why) => write!(f, "invalid params: {why}"),
            ApiError::Weft(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ApiError {}

type Outcome = Result<Value, ApiError>;

/// The methods a client may call, for `help` and the docs test.
pub const METHODS: &[&str] = &[
    "identity",
    "contact.add",
    "contact.list",
    "contact.accept",
    "contact.safety_number",
    "contact.verify",
    "conversations",
    "group.create",
    "group.list",
    "group.invite",
    "group.remove",
    "group.members",
    "send",
    "log",
    "read",
    "resend",
    "settings",
    "settings.set",
    "export",
    "import",
    "status",
    "subscribe",
    "unsubscribe",
];

/// Where a long call tells how far it got.
pub type Progress = tokio::sync::watch::Sender<weft_core::account::ImportProgress>;

/// A node and whatever transports it runs (none when a command opened the home itself).
pub struct Api {
    pub node: Arc<Node>,
    /// Whether this process runs the node's network (then `net` is set once it started).
    runs_network: bool,
    pub net: OnceLock<Arc<NetHandle>>,
    pub mesh: OnceLock<Arc<MeshHandle>>,
}

impl Api {
    /// The methods over a home this process opened for one command: no network.
    pub fn offline(node: Arc<Node>) -> Api {
        Api { node, runs_network: false, net: OnceLock::new(), mesh: OnceLock::new() }
    }

    /// The methods of a node whose network is starting: `net` (and `mesh`) are set once up.
    pub fn networked(node: Arc<Node>) -> Api {
        Api { node, runs_network: true, net: OnceLock::new(), mesh: OnceLock::new() }
    }

    /// Answers one method call. (`subscribe` is the server's: it needs the connection.)
    pub async fn call(&self, method: &str, params: &Value) -> Outcome {
        self.call_watched(method, params, None).await
    }

    /// Answers one method call, publishing how far a long one (`import`) got on `progress`.
    pub async fn call_watched(&self, method: &str, params: &Value, progress: Option<Progress>) -> Outcome {
        let node = &self.node;
        match method {
            "identity" => node
                .call(|a| {
                    let card = a.card();
                    Ok(json!({
                        "name": a.name(),
                        "link": card.to_link(),
                        "fingerprint": a.fingerprint(),
                        "account": hex(&a.account_public()),
                        "qr": card.to_qr_text(),
                    }))
                })
                .await
                .map_err(Into::into),
            "contact.add" => {
                let link = string(params, "link")?;
                let name = optional_string(params, "name")?;
                let c = node.add_contact(link, name).await?;
                Ok(to_value(Contact::from(&c)))
            }
            "contact.list" => {
                let contacts: Vec<Contact> = node.contacts().await?.iter().map(Contact::from).collect();
                Ok(to_value(contacts))
            }
            "contact.accept" => {
                let name = string(params, "name")?;
                let was_incoming = node
                    .contacts()
                    .await?
                    .iter()
                    .any(|c| c.name == name && c.status == weft_core::store::ContactStatus::Incoming);
                let (c, joined) = node.accept_contact_and_join(name).await?;
                Ok(json!({ "contact": Contact::from(&c), "joined_groups": joined, "was_request": was_incoming }))
            }
            "contact.safety_number" | "contact.verify" => {
                let name = string(params, "name")?;
                let mark = method == "contact.verify";
                node.call(move |a| {
                    let number = a.safety_number(&name)?;
                    let verified = if mark {
                        a.mark_verified(&name)?.verified
                    } else {
                        a.contacts()?.iter().any(|c| c.name == name && c.verified)
                    };
                    Ok(json!({ "contact": name, "safety_number": number, "verified": verified }))
                })
                .await
                .map_err(Into::into)
            }
            "conversations" => node
                .call(|a| {
                    let contacts = a.contacts()?;
                    a.conversations()?
                        .into_iter()
                        .map(|c| {
                            let contact = contacts.iter().find(|k| k.conversation == c.id);
                            Ok(json!({
                                "name": c.name,
                                "id": hex(&c.id),
                                "group": c.kind == ConversationKind::Group,
                                "members": c.members,
                                "active": c.active,
                                "unread": a.unread_count(&c.id)?,
                                "verified": contact.map(|k| k.verified),
                            }))
                        })
                        .collect::<weft_core::Result<Vec<Value>>>()
                        .map(Value::Array)
                })
                .await
                .map_err(Into::into),
            "group.create" => {
                let g = node.create_group(string(params, "name")?).await?;
                Ok(json!({ "name": g.name, "id": hex(&g.id), "members": g.members, "active": g.active }))
            }
            "group.list" => {
                let groups: Vec<Value> = node
                    .conversations()
                    .await?
                    .into_iter()
                    .filter(|c| c.kind == ConversationKind::Group)
                    .map(|g| json!({ "name": g.name, "id": hex(&g.id), "members": g.members, "active": g.active }))
                    .collect();
                Ok(Value::Array(groups))
            }
            "group.invite" => {
                let (group, contact) = (string(params, "group")?, string(params, "contact")?);
                node.invite(group.clone(), contact.clone()).await?;
                let (id, who) = node
                    .call({
                        let (group, contact) = (group.clone(), contact.clone());
                        move |a| {
                            let id = hex(&a.resolve(&group)?.id);
                            let who = a.contacts()?.into_iter().find(|c| c.name == contact).map(|c| hex(&c.account));
                            Ok((id, who))
                        }
                    })
                    .await?;
                Ok(json!({ "group": group, "group_id": id, "invited": contact, "account": who }))
            }
            "group.remove" => {
                let (group, member) = (string(params, "group")?, string(params, "member")?);
                let who =
                    node.members(group.clone()).await?.into_iter().find(|m| m.name == member).map(|m| hex(&m.account));
                node.remove_member(group.clone(), member.clone()).await?;
                let id = node.call({
                    let group = group.clone();
                    move |a| Ok(hex(&a.resolve(&group)?.id))
                });
                Ok(json!({ "group": group, "group_id": id.await?, "removed": member, "account": who }))
            }
            "group.members" => {
                let members: Vec<Value> = node
                    .members(string(params, "group")?)
                    .await?
                    .into_iter()
                    .map(|m| json!({ "name": m.name, "account": hex(&m.account), "admin": m.admin, "me": m.is_me }))
                    .collect();
                Ok(Value::Array(members))
            }
            "send" => {
                let m = node.send(string(params, "conversation")?, string(params, "text")?).await?;
                Ok(to_value(Message::from(&m)))
            }
            "log" => {
                let conversation = string(params, "conversation")?;
                let limit = optional_u64(params, "limit")?.unwrap_or(50).min(100_000) as usize;
                let before = optional_string(params, "before")?;
                let messages: Vec<Message> =
                    node.history_before(conversation, before, limit).await?.iter().map(Message::from).collect();
                Ok(to_value(messages))
            }
            "read" => {
                let conversation = string(params, "conversation")?;
                let marked = node.mark_read(conversation.clone()).await?;
                Ok(json!({ "conversation": conversation, "marked": marked }))
            }
            "resend" => {
                let m = node.resend(string(params, "message")?).await?;
                Ok(to_value(Message::from(&m)))
            }
            "keys.update" => {
                let conversation = optional_string(params, "conversation")?;
                Ok(json!({ "updated": node.update_keys(conversation).await? }))
            }
            "retention" => {
                let conversation = string(params, "conversation")?;
                let keep_ms = node.retention(conversation.clone()).await?;
                Ok(json!({ "conversation": conversation, "keep_ms": keep_ms }))
            }
            "retention.set" => {
                let conversation = string(params, "conversation")?;
                let keep_ms = match params.get("keep_ms") {
                    Some(Value::Null) => None,
                    Some(v) => Some(v.as_u64().filter(|ms| *ms > 0).ok_or_else(|| {
                        ApiError::InvalidParams("\"keep_ms\" must be a positive number of milliseconds, or null".into())
                    })?),
                    None => {
                        return Err(ApiError::InvalidParams("\"keep_ms\" is required (null keeps for ever)".into()));
                    }
                };
                let deleted = node.set_retention(conversation.clone(), keep_ms).await?;
                Ok(json!({ "conversation": conversation, "keep_ms": keep_ms, "deleted": deleted }))
            }
            "settings" => Ok(json!({ "read_receipts": node.read_receipts().await? })),
            "settings.set" => {
                match params.get("read_receipts") {
                    Some(Value::Bool(on)) => node.set_read_receipts(*on).await?,
                    Some(_) => return Err(ApiError::InvalidParams("\"read_receipts\" must be true or false".into())),
                    None => {}
                }
                Ok(json!({ "read_receipts": node.read_receipts().await? }))
            }
            "export" => {
                let path = absolute_path(params, "path")?;
                let bytes = node.export_bundle().await?;
                write_atomically(&path, &bytes)?;
                Ok(json!({ "file": path.display().to_string(), "bytes": bytes.len() }))
            }
            "import" => {
                let path = absolute_path(params, "path")?;
                let bytes = read_bundle(&path)?;
                let r = node.import_bundle_watched(bytes, progress).await?;
                Ok(json!({
                    "new_contacts": r.new_contacts,
                    "answered": r.answered,
                    "joined_groups": r.joined_groups,
                    "messages": r.messages.iter().map(Message::from).collect::<Vec<_>>(),
                    "duplicates": r.duplicates,
                    "waiting": r.waiting,
                    "unreadable": r.unreadable,
                    "rejected": r.rejected,
                }))
            }
            "status" => self.status().await,
            other => Err(ApiError::MethodNotFound(other.to_owned())),
        }
    }

    async fn status(&self) -> Outcome {
        let outbox = self.node.call(|a| a.outbox_len()).await?;
        let Some(net) = self.net.get() else {
            return Ok(match self.runs_network {
                true => json!({ "running": true, "starting": true, "outbox": outbox }),
                false => json!({ "running": false, "outbox": outbox }),
            });
        };
        let status = net.status().await?;
        let mut json = crate::commands::status::to_json(&status, outbox);
        json["mesh"] = match self.mesh.get() {
            Some(m) => {
                let stats = m.stats();
                json!({
                    "radio": m.radio(),
                    "links": stats.links,
                    "carried_envelopes": stats.carried_envelopes,
                    "carried_bytes": stats.carried_bytes,
                })
            }
            None => Value::Null,
        };
        Ok(json)
    }
}

fn to_value(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).expect("plain data serialises")
}

fn string(params: &Value, key: &str) -> Result<String, ApiError> {
    match params.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::InvalidParams(format!("{key:?} must be a string"))),
        None => Err(ApiError::InvalidParams(format!("{key:?} is missing"))),
    }
}

fn optional_string(params: &Value, key: &str) -> Result<Option<String>, ApiError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::InvalidParams(format!("{key:?} must be a string"))),
    }
}

fn optional_u64(params: &Value, key: &str) -> Result<Option<u64>, ApiError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| ApiError::InvalidParams(format!("{key:?} must be a count"))),
    }
}

/// A file path from a client: absolute, because the daemon's working directory is not the
/// client's (the CLI makes its argument absolute before calling).
fn absolute_path(params: &Value, key: &str) -> Result<PathBuf, ApiError> {
    let path = PathBuf::from(string(params, key)?);
    if !path.is_absolute() {
        return Err(ApiError::InvalidParams(format!("{key:?} must be an absolute path")));
    }
    Ok(path)
}

/// Writes beside the target and renames, so a crash never leaves half a bundle under its name.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), ApiError> {
    let tmp = path.with_extension("partial");
    let io = |e: std::io::Error, what: &str| {
        ApiError::Weft(weft_core::Error::Io { context: format!("{what} {}", path.display()), source: e })
    };
    std::fs::write(&tmp, bytes).map_err(|e| io(e, "writing"))?;
    std::fs::rename(&tmp, path).map_err(|e| io(e, "moving the bundle to"))
}

fn read_bundle(path: &std::path::Path) -> Result<Vec<u8>, ApiError> {
    let io = |e: std::io::Error| {
        ApiError::Weft(weft_core::Error::Io { context: format!("reading {}", path.display()), source: e })
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > weft_core::bundle::MAX_BUNDLE_LEN as u64 {
        return Err(ApiError::InvalidParams(format!(
            "{} is {len} bytes; bundles are at most {} bytes",
            path.display(),
            weft_core::bundle::MAX_BUNDLE_LEN
        )));
    }
    std::fs::read(path).map_err(io)
}
