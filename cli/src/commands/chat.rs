//! `weft chat`: the terminal chat, connected to a node. With a daemon (or `weft run`) on the home
//! it is a client of that node's socket; with none, it runs the node itself — network included,
//! and the socket served, so other `weft` commands still work while it is open.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use crossterm::event::{self, Event as TermEvent, KeyEventKind};

use super::run::LocalNode;
use crate::backend::Route;
use crate::chat::app::{App, PAGE_LIMIT, Request};
use crate::chat::view;
use crate::rpc::event::Event;
use crate::rpc::request::{
    AcceptContact, DeleteMessage, EditMessage, ListContacts, ListConversations, MarkRead, PostNearby, React, ReadLog,
    SendFile, SendMessage, ShowIdentity,
};

#[derive(clap::Args)]
pub struct ChatArgs {
    /// The conversation to open first [default: the first one]
    conversation: Option<String>,
    #[command(flatten)]
    pub net: super::run::Args,
}

/// Where the chat's node is.
enum Session {
    /// A daemon on the home: calls go to its socket.
    Daemon { home: PathBuf },
    /// This process runs the node (and serves its socket).
    Local { runtime: tokio::runtime::Runtime, node: LocalNode },
}

impl Session {
    fn node(&self) -> Route<'_> {
        match self {
            Session::Daemon { home } => Route::Socket(home),
            Session::Local { runtime, node } => Route::Local { runtime, api: &node.api },
        }
    }
}

/// The latest page of a conversation's history.
fn latest(conversation: &str) -> ReadLog {
    ReadLog { conversation: conversation.to_owned(), limit: Some(PAGE_LIMIT as u64), before: None }
}

pub fn run(home_dir: &Path, args: ChatArgs) -> Result<()> {
    let (events_in, events) = mpsc::channel::<Event>();
    let session = connect(home_dir, &args, events_in)?;
    let me = session.node().call(ShowIdentity {})?.name.unwrap_or_else(|| "me".to_owned());
    let mut app = App { me, ..App::default() };
    perform(&session, &mut app, Request::Refresh);
    let first = args.conversation.clone().or_else(|| app.current().map(|c| c.name.clone()));
    if let Some(request) = first.and_then(|name| app.select(&name)) {
        perform(&session, &mut app, request);
    }

    let mut terminal = ratatui::init();
    let result = (|| -> Result<()> {
        while !app.quit {
            terminal.draw(|frame| view::render(&app, frame))?;
            while let Ok(event) = events.try_recv() {
                if let Some(request) = app.on_event(&event) {
                    perform(&session, &mut app, request);
                }
            }
            if event::poll(Duration::from_millis(100))?
                && let TermEvent::Key(key) = event::read()?
                && key.kind == KeyEventKind::Press
                && let Some(request) = app.on_key(key)
            {
                perform(&session, &mut app, request);
            }
        }
        Ok(())
    })();
    ratatui::restore();
    if let Session::Local { runtime, node } = session {
        node.stop();
        runtime.shutdown_timeout(Duration::from_secs(2));
    }
    result
}

/// Carries out what the chat asked for; a failure is shown, not fatal.
fn perform(session: &Session, app: &mut App, request: Request) {
    let node = session.node();
    let outcome = (|| -> Result<()> {
        match request {
            Request::Refresh => {
                app.set_conversations(node.call(ListConversations {})?);
                let contacts = node.call(ListContacts {})?;
                app.set_requests(contacts.into_iter().filter(|c| c.status == "incoming").map(|c| c.name).collect());
            }
            Request::Open(name) => {
                let messages = node.call(latest(&name))?;
                node.call(MarkRead { conversation: name.clone() })?;
                app.set_messages(&name, messages);
            }
            Request::Send { conversation, text } => {
                node.call(SendMessage { conversation: conversation.clone(), text, reply_to: None })?;
                app.set_messages(&conversation, node.call(latest(&conversation))?);
            }
            Request::Reply { conversation, to, text } => {
                node.call(SendMessage { conversation: conversation.clone(), text, reply_to: Some(to) })?;
                app.set_messages(&conversation, node.call(latest(&conversation))?);
            }
            Request::React { conversation, message, emoji } => {
                node.call(React { conversation: conversation.clone(), message, emoji })?;
                app.set_messages(&conversation, node.call(latest(&conversation))?);
            }
            Request::Edit { conversation, message, text } => {
                node.call(EditMessage { conversation: conversation.clone(), message, text })?;
                app.set_messages(&conversation, node.call(latest(&conversation))?);
            }
            Request::Delete { conversation, message } => {
                node.call(DeleteMessage { conversation: conversation.clone(), message })?;
                app.set_messages(&conversation, node.call(latest(&conversation))?);
            }
            Request::SendFile { conversation, path, caption } => {
                // The node may run elsewhere (the daemon): it is given an absolute path.
                let path = std::path::absolute(&path).with_context(|| format!("reading {path}"))?;
                let path = path.to_str().context("the file's path is not UTF-8")?.to_owned();
                node.call(SendFile { conversation: conversation.clone(), path, caption, mime: None })?;
                app.set_messages(&conversation, node.call(latest(&conversation))?);
            }
            Request::PostNearby(text) => {
                let posted = node.call(PostNearby { text })?;
                app.notice = format!("nearby · you ({}): {}", posted.name, posted.text);
            }
            Request::Older { conversation, before } => {
                let page = node.call(ReadLog { before: Some(before), ..latest(&conversation) })?;
                app.prepend_older(&conversation, page);
            }
            Request::Accept(name) => {
                node.call(AcceptContact { name: name.clone() })?;
                app.notice = format!("you and {name} are contacts");
                app.requests.retain(|r| *r != name);
                perform(session, app, Request::Refresh);
                if let Some(open) = app.select(&name) {
                    perform(session, app, open);
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = outcome {
        app.notice = e.to_string();
    }
}

/// Attaches to the daemon on the home, or starts the node here; node events go to `events`.
fn connect(home_dir: &Path, args: &ChatArgs, events: mpsc::Sender<Event>) -> Result<Session> {
    if let Some(subscription) = crate::control::client::subscribe(home_dir)? {
        std::thread::spawn(move || {
            for event in subscription {
                if events.send(event).is_err() {
                    return;
                }
            }
        });
        return Ok(Session::Daemon { home: home_dir.to_path_buf() });
    }
    let passphrase = crate::passphrase::for_home(home_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let node = runtime.block_on(async {
        let (node, mut node_events) = LocalNode::start(home_dir, passphrase, &args.net).await?;
        tokio::spawn(async move {
            // A missed burst arrives as `lagged`, and the chat reloads what it shows.
            while let Some(event) = Event::received(node_events.recv().await) {
                if events.send(event).is_err() {
                    return;
                }
            }
        });
        anyhow::Ok(node)
    })?;
    Ok(Session::Local { runtime, node })
}
