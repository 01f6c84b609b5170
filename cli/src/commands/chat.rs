//! `weft chat`: the terminal chat, connected to a node. With a daemon (or `weft run`) on the home
//! it is a client of that node's socket; with none, it runs the node itself — network included,
//! and the socket served, so other `weft` commands still work while it is open.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result};
use crossterm::event::{self, Event as TermEvent, KeyEventKind};
use serde_json::{Value, json};

use super::run::LocalNode;
use crate::chat::app::{App, Conversation, PAGE_LIMIT, Request};
use crate::chat::view;
use crate::output::Message;

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
    fn call(&self, method: &str, params: Value) -> Result<Value> {
        match self {
            Session::Daemon { home } => crate::control::call(home, method, params)?
                .ok_or_else(|| anyhow::anyhow!("the daemon on this home stopped")),
            Session::Local { runtime, node } => {
                runtime.block_on(node.api.call(method, &params)).map_err(|e| anyhow::anyhow!("{e}"))
            }
        }
    }
}

pub fn run(home_dir: &Path, args: ChatArgs) -> Result<()> {
    let (events_in, events) = mpsc::channel::<Value>();
    let session = connect(home_dir, &args, events_in)?;
    let me = session.call("identity", json!({}))?["name"].as_str().unwrap_or("me").to_owned();
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
    let outcome = (|| -> Result<()> {
        match request {
            Request::Refresh => {
                let list: Vec<Conversation> = crate::output::parse(&session.call("conversations", json!({}))?)?;
                app.set_conversations(list);
                let contacts: Vec<crate::output::Contact> =
                    crate::output::parse(&session.call("contact.list", json!({}))?)?;
                app.set_requests(contacts.into_iter().filter(|c| c.status == "incoming").map(|c| c.name).collect());
            }
            Request::Open(name) => {
                let page = session.call("log", json!({ "conversation": name, "limit": PAGE_LIMIT }))?;
                let messages: Vec<Message> = crate::output::parse(&page)?;
                session.call("read", json!({ "conversation": name }))?;
                app.set_messages(&name, messages);
            }
            Request::Send { conversation, text } => {
                session.call("send", json!({ "conversation": conversation, "text": text }))?;
                let page = session.call("log", json!({ "conversation": conversation, "limit": PAGE_LIMIT }))?;
                app.set_messages(&conversation, crate::output::parse(&page)?);
            }
            Request::Older { conversation, before } => {
                let page = session
                    .call("log", json!({ "conversation": conversation, "limit": PAGE_LIMIT, "before": before }))?;
                app.prepend_older(&conversation, crate::output::parse(&page)?);
            }
            Request::Accept(name) => {
                session.call("contact.accept", json!({ "name": name }))?;
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
fn connect(home_dir: &Path, args: &ChatArgs, events: mpsc::Sender<Value>) -> Result<Session> {
    if let Some(reader) = subscribe_to_daemon(home_dir)? {
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
                if message["method"] == "event" && events.send(message["params"].clone()).is_err() {
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
            while let Some(json) = crate::output::event_json(node_events.recv().await) {
                if events.send(json).is_err() {
                    return;
                }
            }
        });
        anyhow::Ok(node)
    })?;
    Ok(Session::Local { runtime, node })
}

/// A connection to the daemon's socket that has subscribed to events, if a daemon runs; its
/// reader is handed on whole, so nothing it buffered is lost.
#[cfg(unix)]
fn subscribe_to_daemon(home: &Path) -> Result<Option<BufReader<std::os::unix::net::UnixStream>>> {
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(crate::control::socket_path(home)) else {
        return Ok(None);
    };
    writeln!(stream, "{}", json!({ "jsonrpc": "2.0", "id": 1, "method": "subscribe" }))?;
    // A node that accepts but never answers must not hang the chat at start.
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer)?;
    reader.get_ref().set_read_timeout(None)?;
    let answer: Value = serde_json::from_str(&answer).context("the daemon answered with something not JSON")?;
    if answer["result"]["subscribed"] != json!(true) {
        anyhow::bail!("the daemon refused the subscription: {answer}");
    }
    Ok(Some(reader))
}

#[cfg(not(unix))]
fn subscribe_to_daemon(_: &Path) -> Result<Option<BufReader<std::fs::File>>> {
    Ok(None)
}
