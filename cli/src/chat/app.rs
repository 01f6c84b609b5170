//! The chat's state, and what keys and node events do to it. Pure: what needs the node comes
//! out as a [`Request`] for the caller to carry out.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

pub use crate::rpc::answer::Conversation;
use crate::rpc::answer::Message;
use crate::rpc::event::Event;

/// Messages asked for per page of history.
pub const PAGE_LIMIT: usize = 200;
/// Messages one PageUp or PageDown moves the history by.
const SCROLL_STEP: usize = 10;

/// What the node must do for the chat.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Show this conversation's latest history (and mark it read).
    Open(String),
    /// Fetch the page of history before this message.
    Older {
        conversation: String,
        before: String,
    },
    /// Accept this contact's request.
    Accept(String),
    Send {
        conversation: String,
        text: String,
    },
    /// `/reply TEXT`: a reply to the latest message of someone else's.
    Reply {
        conversation: String,
        to: String,
        text: String,
    },
    /// `/react EMOJI` (`/react` alone takes ours back): on the latest message of someone else's.
    React {
        conversation: String,
        message: String,
        emoji: String,
    },
    /// `/edit TEXT`: new text for our latest message.
    Edit {
        conversation: String,
        message: String,
        text: String,
    },
    /// `/delete`: our latest message, deleted for everyone.
    Delete {
        conversation: String,
        message: String,
    },
    /// `/file PATH [CAPTION]` (a path with spaces in double quotes): a file to the open
    /// conversation.
    SendFile {
        conversation: String,
        path: String,
        caption: Option<String>,
    },
    /// `/nearby TEXT`: said to everyone within radio range, under the nearby session's key.
    PostNearby(String),
    /// Reload the conversation list.
    Refresh,
}

#[derive(Default)]
pub struct App {
    pub me: String,
    pub conversations: Vec<Conversation>,
    pub selected: usize,
    /// The open conversation's messages loaded so far, oldest first.
    pub messages: Vec<Message>,
    /// Messages hidden below the view: 0 follows the newest.
    pub scroll_back: usize,
    /// Whether the open conversation's first message is loaded.
    pub history_complete: bool,
    /// Contact requests not yet accepted, oldest first.
    pub requests: Vec<String>,
    pub input: String,
    pub peers: usize,
    /// The last thing worth telling (an error, a contact request).
    pub notice: String,
    pub quit: bool,
}

impl App {
    pub fn current(&self) -> Option<&Conversation> {
        self.conversations.get(self.selected)
    }

    /// Replaces the conversation list, keeping the selection on the same name.
    pub fn set_conversations(&mut self, conversations: Vec<Conversation>) {
        let name = self.current().map(|c| c.name.clone());
        self.conversations = conversations;
        self.selected = name.and_then(|n| self.conversations.iter().position(|c| c.name == n)).unwrap_or(0);
    }

    /// Selects a conversation by name; the request to show it, if there is one by that name.
    pub fn select(&mut self, name: &str) -> Option<Request> {
        let index = self.conversations.iter().position(|c| c.name == name)?;
        self.selected = index;
        self.messages.clear();
        self.scroll_back = 0;
        self.history_complete = false;
        Some(Request::Open(name.to_owned()))
    }

    /// The open conversation's latest page arrived (and it was marked read). Older pages
    /// loaded before stay above it, so reading back is not lost when a message comes in.
    pub fn set_messages(&mut self, conversation: &str, messages: Vec<Message>) {
        if self.current().is_some_and(|c| c.name == conversation) {
            let complete = messages.len() < PAGE_LIMIT;
            let overlap = messages.first().and_then(|first| self.messages.iter().position(|m| m.id == first.id));
            // Pages read back stay above the new latest page when the two meet; when they do
            // not (more arrived than a page holds), the gap is fetched again by paging.
            let mut merged: Vec<Message> = self.messages.drain(..overlap.unwrap_or(0)).collect();
            self.history_complete = match overlap {
                Some(_) => self.history_complete || complete,
                None => complete,
            };
            merged.extend(messages);
            self.messages = merged;
        }
        if let Some(c) = self.conversations.iter_mut().find(|c| c.name == conversation) {
            c.unread = 0;
        }
    }

    /// A page of older history arrived; an empty one means the start was reached.
    pub fn prepend_older(&mut self, conversation: &str, older: Vec<Message>) {
        if self.current().is_none_or(|c| c.name != conversation) {
            return;
        }
        if older.len() < PAGE_LIMIT {
            self.history_complete = true;
        }
        let mut merged: Vec<Message> =
            older.into_iter().filter(|m| !self.messages.iter().any(|k| k.id == m.id)).collect();
        merged.append(&mut self.messages);
        self.messages = merged;
    }

    /// The contacts list arrived: who asked and is not yet accepted.
    pub fn set_requests(&mut self, requests: Vec<String>) {
        self.requests = requests;
    }

    pub fn on_key(&mut self, key: KeyEvent) -> Option<Request> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => self.quit = true,
            KeyCode::Char('c' | 'd') if ctrl => self.quit = true,
            KeyCode::Char('a') if ctrl => {
                let name = self.requests.first()?.clone();
                return Some(Request::Accept(name));
            }
            KeyCode::PageUp => return self.scroll_up(),
            KeyCode::PageDown => self.scroll_back = self.scroll_back.saturating_sub(SCROLL_STEP),
            KeyCode::End => self.scroll_back = 0,
            KeyCode::Up | KeyCode::BackTab => return self.move_selection(-1),
            KeyCode::Down | KeyCode::Tab => return self.move_selection(1),
            KeyCode::Enter => {
                let text = self.input.trim().to_owned();
                let conversation = self.current().map(|c| c.name.clone());
                // `/nearby` needs no conversation: a stranger with none can speak nearby.
                if text.is_empty() || (conversation.is_none() && !text.starts_with("/nearby")) {
                    return None;
                }
                self.input.clear();
                self.scroll_back = 0;
                if text.starts_with('/') {
                    return self.command(conversation, &text);
                }
                return Some(Request::Send { conversation: conversation?, text });
            }
            KeyCode::Backspace => {
                self.input.pop();
            }
            KeyCode::Char(c) if !ctrl => self.input.push(c),
            _ => {}
        }
        None
    }

    fn move_selection(&mut self, by: isize) -> Option<Request> {
        if self.conversations.is_empty() {
            return None;
        }
        let n = self.conversations.len() as isize;
        self.selected = (self.selected as isize + by).rem_euclid(n) as usize;
        self.messages.clear();
        self.scroll_back = 0;
        self.history_complete = false;
        Some(Request::Open(self.conversations[self.selected].name.clone()))
    }

    /// Shows older messages; at the top of what is loaded, asks for the page before it.
    fn scroll_up(&mut self) -> Option<Request> {
        let top = self.messages.len().saturating_sub(1);
        self.scroll_back = (self.scroll_back + SCROLL_STEP).min(top);
        if self.scroll_back + SCROLL_STEP > top && !self.history_complete {
            let conversation = self.current()?.name.clone();
            let before = self.messages.first()?.id.clone();
            return Some(Request::Older { conversation, before });
        }
        None
    }

    /// A slash command: on the open conversation's latest message (someone else's for `/reply`
    /// and `/react`, ours for `/edit` and `/delete`), a file, or a word to everyone nearby. What
    /// cannot be done is a notice.
    fn command(&mut self, conversation: Option<String>, text: &str) -> Option<Request> {
        let (command, rest) = text.split_once(' ').map_or((text, ""), |(c, r)| (c, r.trim()));
        match command {
            "/nearby" if rest.is_empty() => {
                self.notice = "/nearby needs a text".into();
                return None;
            }
            "/nearby" => return Some(Request::PostNearby(rest.to_owned())),
            _ => {}
        }
        let conversation = conversation?;
        if command == "/file" {
            let Some((path, caption)) = file_argument(rest) else {
                self.notice = "/file needs a path (in double quotes if it has spaces)".into();
                return None;
            };
            return Some(Request::SendFile { conversation, path, caption });
        }
        let latest = |ours: bool| {
            self.messages
                .iter()
                .rev()
                .find(|m| m.kind == "text" && m.outgoing == ours && !m.deleted)
                .map(|m| m.id.clone())
        };
        let request = match command {
            "/reply" | "/react" => latest(false).map(|id| match command {
                "/reply" => Request::Reply { conversation, to: id, text: rest.to_owned() },
                _ => Request::React { conversation, message: id, emoji: rest.to_owned() },
            }),
            "/edit" | "/delete" => latest(true).map(|id| match command {
                "/edit" => Request::Edit { conversation, message: id, text: rest.to_owned() },
                _ => Request::Delete { conversation, message: id },
            }),
            _ => {
                self.notice = "commands: /reply TEXT, /react EMOJI (alone: take it back), /edit TEXT, /delete, \
                               /file PATH [CAPTION], /nearby TEXT"
                    .into();
                return None;
            }
        };
        let needs_text =
            matches!(&request, Some(Request::Reply { text, .. } | Request::Edit { text, .. }) if text.is_empty());
        if needs_text {
            self.notice = format!("{command} needs a text");
            return None;
        }
        if request.is_none() {
            self.notice = match command {
                "/reply" | "/react" => "nothing of anyone else's here to answer yet".into(),
                _ => "nothing of yours here yet".into(),
            };
        }
        request
    }

    /// A node event, as the daemon sends it.
    pub fn on_event(&mut self, event: &Event) -> Option<Request> {
        match event {
            Event::Message { message, .. } => {
                if self.current().is_some_and(|c| c.name == message.conversation) {
                    // Reloading marks it read too: the others see it was read while in view.
                    return Some(Request::Open(message.conversation.clone()));
                }
                match self.conversations.iter_mut().find(|c| c.name == message.conversation) {
                    // What we wrote on another of our devices is ours, read where it was written;
                    // a reaction, edit or delete changes a message, it is not a new one.
                    Some(_) if message.outgoing || message.changed_by.is_some() => {}
                    Some(c) => c.unread += 1,
                    None => return Some(Request::Refresh),
                }
                None
            }
            Event::Delivery { id, state } => {
                // States only move on: a late "sent" never hides "delivered".
                if let Some(m) = self.messages.iter_mut().find(|m| m.id == *id)
                    && rank(Some(state)) > rank(m.state.as_deref())
                {
                    m.state = Some(state.clone());
                }
                None
            }
            Event::Resealed { old_id, new_id } => {
                if let Some(m) = self.messages.iter_mut().find(|m| m.id == *old_id) {
                    m.id = new_id.clone();
                }
                None
            }
            Event::Lagged { .. } => Some(Request::Refresh),
            Event::Nearby { name, text, .. } => {
                self.notice = format!("nearby · {name}: {text}");
                None
            }
            // A file finished coming: the history shows it whole.
            Event::Attachment { message, have, total } => (have >= total
                && self.messages.iter().any(|m| m.id == *message))
            .then(|| Request::Open(self.current().map(|c| c.name.clone()).unwrap_or_default())),
            Event::PeerConnected { .. } => {
                self.peers += 1;
                None
            }
            Event::PeerDisconnected { .. } => {
                self.peers = self.peers.saturating_sub(1);
                None
            }
            Event::ContactRequest { name } => {
                if !self.requests.iter().any(|r| r == name) {
                    self.requests.push(name.clone());
                }
                self.notice = format!("contact request from {name}");
                Some(Request::Refresh)
            }
            Event::ContactAnswered { .. } | Event::JoinedGroup { .. } => Some(Request::Refresh),
            Event::ThisDeviceRevoked => {
                self.notice = crate::commands::run::REVOKED_NOTICE.to_owned();
                None
            }
            Event::LinkRequested { name, code, .. } => {
                self.notice = format!(
                    "device {name:?} asks to join: if it shows {code}, run `weft device accept --code {}`",
                    code.replace(' ', "")
                );
                None
            }
        }
    }
}

/// How far a message got, for comparing states.
fn rank(state: Option<&str>) -> u8 {
    match state {
        Some("expired") => 1,
        Some("queued") => 2,
        Some("sent") => 3,
        Some("delivered") => 4,
        Some("read") => 5,
        _ => 0,
    }
}

/// `/file`'s argument: a path, in double quotes if it holds spaces, and an optional caption.
fn file_argument(rest: &str) -> Option<(String, Option<String>)> {
    let (path, caption) = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"')?,
        None => rest.split_once(' ').unwrap_or((rest, "")),
    };
    let caption = caption.trim();
    (!path.is_empty()).then(|| (path.to_owned(), (!caption.is_empty()).then(|| caption.to_owned())))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// An event as the daemon sends it.
    fn event(json: serde_json::Value) -> Event {
        serde_json::from_value(json).unwrap()
    }

    fn conversation(name: &str, unread: usize) -> Conversation {
        Conversation {
            name: name.into(),
            id: format!("id-{name}"),
            group: false,
            members: 2,
            active: true,
            unread,
            verified: Some(false),
        }
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn typing_and_enter_send_to_the_open_conversation() {
        let mut app = App::default();
        app.set_conversations(vec![conversation("bob", 0), conversation("carol", 2)]);
        for c in "hi bob".chars() {
            assert_eq!(app.on_key(key(KeyCode::Char(c))), None);
        }
        app.on_key(key(KeyCode::Backspace));
        assert_eq!(app.input, "hi bo");
        let sent = app.on_key(key(KeyCode::Enter));
        assert_eq!(sent, Some(Request::Send { conversation: "bob".into(), text: "hi bo".into() }));
        assert!(app.input.is_empty());
        assert_eq!(app.on_key(key(KeyCode::Enter)), None, "nothing to send");
        assert_eq!(app.on_key(key(KeyCode::Down)), Some(Request::Open("carol".into())));
        assert_eq!(app.on_key(key(KeyCode::Down)), Some(Request::Open("bob".into())), "wraps around");
        app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(app.quit);
    }

    /// Issue 19: replies, reactions, edits and deletes from the chat, on the latest message.
    #[test]
    fn slash_commands_act_on_the_latest_message() {
        let mut app = App::default();
        app.set_conversations(vec![conversation("bob", 0)]);
        let mut ours = text(3);
        ours.outgoing = true;
        app.messages = vec![text(1), text(2), ours];
        let enter = |app: &mut App, line: &str| {
            app.input = line.into();
            app.on_key(key(KeyCode::Enter))
        };
        let bob = || "bob".to_string();
        assert_eq!(
            enter(&mut app, "/react 👍"),
            Some(Request::React { conversation: bob(), message: "m2".into(), emoji: "👍".into() })
        );
        assert_eq!(
            enter(&mut app, "/react"),
            Some(Request::React { conversation: bob(), message: "m2".into(), emoji: "".into() })
        );
        assert_eq!(
            enter(&mut app, "/reply yes"),
            Some(Request::Reply { conversation: bob(), to: "m2".into(), text: "yes".into() })
        );
        assert_eq!(
            enter(&mut app, "/edit at seven"),
            Some(Request::Edit { conversation: bob(), message: "m3".into(), text: "at seven".into() })
        );
        assert_eq!(enter(&mut app, "/delete"), Some(Request::Delete { conversation: bob(), message: "m3".into() }));
        assert_eq!(enter(&mut app, "/edit"), None);
        assert!(app.notice.contains("needs a text"));
        assert_eq!(enter(&mut app, "/shrug"), None);
        assert!(app.notice.contains("/reply"));
        app.messages.clear();
        assert_eq!(enter(&mut app, "/delete"), None);
        assert!(app.notice.contains("nothing of yours"));
        assert_eq!(enter(&mut app, "/nearby north gate"), Some(Request::PostNearby("north gate".into())));
        assert_eq!(enter(&mut app, "/nearby"), None);
        assert!(app.notice.contains("needs a text"));
        assert_eq!(
            enter(&mut app, "/file /tmp/map.png the gates"),
            Some(Request::SendFile {
                conversation: bob(),
                path: "/tmp/map.png".into(),
                caption: Some("the gates".into())
            })
        );
        assert_eq!(
            enter(&mut app, "/file \"/tmp/festival map.png\""),
            Some(Request::SendFile { conversation: bob(), path: "/tmp/festival map.png".into(), caption: None })
        );
        assert_eq!(enter(&mut app, "/file \"/tmp/unclosed"), None);
        assert!(app.notice.contains("/file needs a path"));
        // With no conversation at all, only the nearby channel is there to speak on.
        let mut stranger = App::default();
        assert_eq!(enter(&mut stranger, "/nearby hello"), Some(Request::PostNearby("hello".into())));
        assert_eq!(enter(&mut stranger, "hello"), None);
    }

    fn text(id: usize) -> Message {
        serde_json::from_value(json!({ "id": format!("m{id}"), "lamport": id, "conversation": "bob",
            "sender": "bob", "outgoing": false, "sent_ms": 0, "kind": "text", "body": format!("text {id}") }))
        .unwrap()
    }

    #[test]
    fn page_up_reads_back_and_fetches_older_pages_until_the_start() {
        let mut app = App::default();
        app.set_conversations(vec![conversation("bob", 0)]);
        app.set_messages("bob", (300..500).map(text).collect());
        assert!(!app.history_complete, "a full page: there may be more");
        assert_eq!(app.on_key(key(KeyCode::PageUp)), None);
        assert_eq!(app.scroll_back, 10);
        for _ in 0..18 {
            app.on_key(key(KeyCode::PageUp));
        }
        let asked = app.on_key(key(KeyCode::PageUp));
        assert_eq!(asked, Some(Request::Older { conversation: "bob".into(), before: "m300".into() }));
        app.prepend_older("bob", (100..300).map(text).collect());
        assert_eq!((app.messages.len(), app.messages[0].id.as_str()), (400, "m100"));
        // A new message reloads the latest page; what was read back stays above it.
        app.set_messages("bob", (301..501).map(text).collect());
        assert_eq!((app.messages.len(), app.messages.last().unwrap().id.as_str()), (401, "m500"));
        app.prepend_older("bob", (0..100).map(text).collect());
        assert!(app.history_complete, "a short page is the start");
        assert_eq!(app.messages.len(), 501);
        app.scroll_back = 495;
        assert_eq!(app.on_key(key(KeyCode::PageUp)), None, "nothing older to ask for");
        assert_eq!(app.scroll_back, 500, "stops at the first message");
        app.on_key(key(KeyCode::PageDown));
        assert_eq!(app.scroll_back, 490);
        app.on_key(key(KeyCode::End));
        assert_eq!(app.scroll_back, 0);

        // More than a page arrives at once: what was loaded no longer meets the new page, so
        // the history above it is fetched again by paging.
        app.set_messages("bob", (1000..1200).map(text).collect());
        assert_eq!((app.messages.len(), app.history_complete), (200, false));
        app.scroll_back = 190;
        let asked = app.on_key(key(KeyCode::PageUp));
        assert_eq!(asked, Some(Request::Older { conversation: "bob".into(), before: "m1000".into() }));
    }

    #[test]
    fn ctrl_a_accepts_the_oldest_request() {
        let mut app = App::default();
        assert_eq!(app.on_key(KeyEvent::new(KeyCode::Char('a'), KeyModifiers::CONTROL)), None);
        app.on_event(&event(json!({ "event": "contact_request", "name": "dave" })));
        app.on_event(&event(json!({ "event": "contact_request", "name": "erin" })));
        app.on_event(&event(json!({ "event": "contact_request", "name": "dave" })));
        assert_eq!(app.requests, vec!["dave", "erin"]);
        let accept = app.on_key(KeyEvent::new(KeyCode::Char('a'), KeyModifiers::CONTROL));
        assert_eq!(accept, Some(Request::Accept("dave".into())));
        assert!(app.input.is_empty(), "Ctrl-A is not typed");
    }

    #[test]
    fn events_count_unread_elsewhere_and_reload_the_open_conversation() {
        let mut app = App::default();
        app.set_conversations(vec![conversation("bob", 0), conversation("carol", 0)]);
        let message = |conversation: &str| {
            event(json!({ "event": "message", "via": "mesh", "message": {
                "id": format!("id-{conversation}"), "lamport": 1, "conversation": conversation, "sender": conversation,
                "outgoing": false, "sent_ms": 0, "kind": "text", "body": "hello" } }))
        };
        assert_eq!(app.on_event(&message("carol")), None);
        assert_eq!(app.conversations[1].unread, 1);
        let from_our_laptop = event(json!({ "event": "message", "via": "libp2p", "message": {
            "id": "id-laptop", "lamport": 2, "conversation": "carol", "sender": "me",
            "outgoing": true, "sent_ms": 0, "kind": "text", "body": "written on the laptop" } }));
        assert_eq!(app.on_event(&from_our_laptop), None);
        assert_eq!(app.conversations[1].unread, 1, "what another of our devices wrote is not unread");
        assert_eq!(app.on_event(&message("bob")), Some(Request::Open("bob".into())));
        assert_eq!(app.on_event(&message("dave")), Some(Request::Refresh), "a conversation we did not list");
        app.on_event(&event(json!({ "event": "peer_connected", "peer": "p", "via": "libp2p" })));
        assert_eq!(app.peers, 1);
        app.messages = vec![
            serde_json::from_value(json!({ "id": "m", "lamport": 1, "conversation": "bob",
            "sender": "me", "outgoing": true, "sent_ms": 0, "kind": "text", "body": "x", "state": "queued" }))
            .unwrap(),
        ];
        app.on_event(&event(json!({ "event": "delivery", "id": "m", "state": "delivered" })));
        app.on_event(&event(json!({ "event": "delivery", "id": "m", "state": "sent" })));
        assert_eq!(app.messages[0].state.as_deref(), Some("delivered"), "a state never goes back");
    }
}
