//! Printing for people and for programs (`--json`).

use serde::{Deserialize, Serialize};
use weft_core::account::{ContactInfo, MessageInfo};
use weft_core::node::NodeEvent;

pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON, or `text()` for people.
    pub fn print<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value).expect("plain data serialises"));
        } else {
            let t = text();
            if !t.is_empty() {
                println!("{}", t.trim_end());
            }
        }
    }

    pub fn error(&self, err: &anyhow::Error) {
        let hint = err.chain().find_map(|e| {
            if let Some(weft) = e.downcast_ref::<weft_core::Error>() {
                return hint_of(weft);
            }
            e.downcast_ref::<crate::control::RemoteError>().and_then(|r| r.hint.clone())
        });
        if self.json {
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("{}", serde_json::json!({ "error": err.to_string(), "causes": chain, "hint": hint }));
        } else {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if let Some(hint) = hint {
                eprintln!("  hint: {hint}");
            }
        }
    }
}

/// What to do next about an error, where the error itself does not say.
pub fn hint_of(err: &weft_core::Error) -> Option<String> {
    use weft_core::Error;
    let hint = match err {
        Error::WrongPassphrase(_) => {
            "check WEFT_PASSPHRASE, or type it again; a passphrase kept in the OS keyring is replaced with \
             `weft passphrase remember`"
        }
        Error::NotFound { what: "contact", .. } => "`weft contact list` shows your contacts' names",
        Error::NotFound { what: "group", .. } => "`weft group list` shows your groups",
        Error::NotFound { what: "member", .. } => "`weft group members GROUP` shows who is in it",
        Error::NotFound { what: "contact or group" | "conversation with", .. } => {
            "`weft contact list` and `weft group list` show the names you can use"
        }
        Error::NoRadio(_) => "run with --no-ble to use the network alone",
        Error::Network(_) => "check the --listen, --bootstrap and --relay addresses (or the config's [network])",
        _ => return None,
    };
    Some(hint.to_owned())
}

/// The exit code that tells scripts what went wrong (see `weft --help`).
pub fn exit_code_of(err: &weft_core::Error) -> u8 {
    use weft_core::Error;
    match err {
        Error::WrongPassphrase(_) => 3,
        Error::NoAccount(_) => 4,
        Error::NotFound { .. } => 5,
        Error::HomeBusy(_) => 6,
        _ => 1,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize, Deserialize)]
pub struct Contact {
    pub name: String,
    pub account: String,
    pub fingerprint: String,
    pub status: String,
    pub verified: bool,
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
            conversation_id: hex(&c.conversation),
        }
    }
}

#[derive(Serialize, Deserialize)]
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
        }
    }
}

/// One line of history, for people.
/// What a node tells its user, as `weft run --json` prints it and the daemon sends it.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Message { message: Message, via: &'static str },
    ContactRequest { name: String },
    ContactAnswered { name: String },
    JoinedGroup { name: String },
    PeerConnected { peer: String, via: &'static str },
    PeerDisconnected { peer: String, via: &'static str },
    Delivery { id: String, state: &'static str },
    Resealed { old_id: String, new_id: String },
}

impl From<NodeEvent> for Event {
    fn from(event: NodeEvent) -> Self {
        match event {
            NodeEvent::MessageReceived { message, via } => Event::Message { message: Message::from(&message), via },
            NodeEvent::ContactRequest { name, .. } => Event::ContactRequest { name },
            NodeEvent::ContactAnswered { name, .. } => Event::ContactAnswered { name },
            NodeEvent::JoinedGroup { name, .. } => Event::JoinedGroup { name },
            NodeEvent::PeerConnected { peer, via } => Event::PeerConnected { peer, via },
            NodeEvent::PeerDisconnected { peer, via } => Event::PeerDisconnected { peer, via },
            NodeEvent::DeliveryChanged { id, state } => Event::Delivery { id, state: state.as_str() },
            NodeEvent::MessageResealed { old_id, new_id } => Event::Resealed { old_id, new_id },
        }
    }
}

/// A node event as JSON for a subscriber, from what its broadcast receiver gave: a missed
/// burst becomes `{"event": "lagged", "missed": N}`; `None` once the node is gone.
pub fn event_json(received: Result<NodeEvent, tokio::sync::broadcast::error::RecvError>) -> Option<serde_json::Value> {
    use tokio::sync::broadcast::error::RecvError;
    match received {
        Ok(event) => Some(serde_json::to_value(Event::from(event)).expect("plain data")),
        Err(RecvError::Lagged(missed)) => Some(serde_json::json!({ "event": "lagged", "missed": missed })),
        Err(RecvError::Closed) => None,
    }
}

pub fn message_line(m: &MessageInfo) -> String {
    line(m.sent_ms, &m.kind, &m.sender, &m.body)
}

impl Message {
    /// The message as one line of a conversation's log.
    pub fn line(&self) -> String {
        let line = line(self.sent_ms, &self.kind, &self.sender, &self.body);
        match &self.state {
            Some(state) => format!("{line}  [{state}]"),
            None => line,
        }
    }

    /// [`Self::line`], and for a received message the path that brought it.
    pub fn line_with_path(&self) -> String {
        match &self.via {
            Some(via) if !self.outgoing => format!("{}  (via {via})", self.line()),
            _ => self.line(),
        }
    }
}

fn line(sent_ms: u64, kind: &str, sender: &str, body: &str) -> String {
    let time = format_time(sent_ms);
    match kind {
        "text" => format!("[{time}] {sender}: {body}"),
        "created" => format!("[{time}] — {sender} created the group {body:?} —"),
        "joined" => format!("[{time}] — you joined {body:?} —"),
        "rekeyed" => format!("[{time}] — {sender} renewed the group's keys —"),
        "accepted" => format!("[{time}] — {sender} accepted your contact request —"),
        kind => format!("[{time}] — {sender} {kind} {body} —"),
    }
}

/// Reads a method's result back into the shape it was written from.
pub fn parse<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> anyhow::Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| anyhow::anyhow!("an answer of unexpected shape: {e}"))
}

/// UTC `YYYY-MM-DD HH:MM`, without a date library.
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, (rem % 3600) / 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_time() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00");
        assert_eq!(super::format_time(1_700_000_000_000), "2023-11-14 22:13");
    }
}
