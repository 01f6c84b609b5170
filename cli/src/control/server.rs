//! Serving the method table on a home's socket: one JSON-RPC 2.0 request per line, one
//! response per line, requests on a connection answered in order; after `subscribe` the
//! connection also carries `event` notifications, and a call that asks for it `progress` ones.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::rpc::answer::Subscription;
use crate::rpc::event::{Event, Progress};
use crate::rpc::jsonrpc::{ErrorObject, Failure, INVALID_REQUEST, Notification, Success, line, parse_envelope};
use crate::rpc::{Api, ApiError, Request};

/// Longest request line the node reads.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Serves the method table on the control socket until the task is aborted.
pub async fn serve(home: &Path, api: Arc<Api>) -> Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    let path = super::socket_path(home);
    // The home is its owner's alone, so the socket is never reachable by others, not even in
    // the moment between binding it and restricting it.
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", home.display()))?;
    // We hold the home's lock, so a socket file here was left by a process that died.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(stream, api.clone()));
        }
    }))
}

/// One client: requests in, one response per request with an id, and event notifications once
/// it subscribed. A request too large ends the connection (after saying so); anything else
/// malformed gets an error response and the connection goes on.
async fn connection(stream: tokio::net::UnixStream, api: Arc<Api>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = stream.into_split();
    // Responses and notifications share the socket through one queue, so lines never interleave.
    let (out, mut queue) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        while let Some(message) = queue.recv().await {
            if write.write_all(format!("{message}\n").as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut events: Option<tokio::task::JoinHandle<()>> = None;
    let mut reader = BufReader::new(read);
    let mut text = Vec::new();
    loop {
        text.clear();
        match (&mut reader).take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut text).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if text.len() > MAX_REQUEST {
            let too_large = format!("request larger than {MAX_REQUEST} bytes; closing the connection");
            let _ = out.send(line(&Failure::new(Value::Null, ErrorObject::new(INVALID_REQUEST, too_large, 1)))).await;
            break;
        }
        let envelope = match parse_envelope(&text) {
            Ok(envelope) => envelope,
            Err(failure) => {
                let _ = out.send(line(&failure)).await;
                continue;
            }
        };
        let id = envelope.id;
        let request = Request::read(&envelope.method, envelope.params);
        if let Ok(request) = &request {
            tracing::debug!(method = request.method(), notification = id.is_none(), "call");
        }
        let answer = match request {
            Err(unreadable) => Err(ApiError::from(unreadable)),
            Ok(Request::Subscribe(_)) => {
                // The answer goes out before the first event, so a client reads it first. (The
                // node's stream is taken before answering: nothing that happens after is missed.)
                let stream = api.node.subscribe();
                if let Some(id) = id
                    && out.send(line(&Success::new(id, Subscription { subscribed: true }))).await.is_err()
                {
                    break;
                }
                if events.is_none() {
                    events = Some(tokio::spawn(forward_events(stream, out.clone())));
                }
                continue;
            }
            Ok(Request::Unsubscribe(_)) => {
                if let Some(task) = events.take() {
                    task.abort();
                }
                Ok(serde_json::to_value(Subscription { subscribed: false }).expect("plain data"))
            }
            // A client that asks for progress hears how far a long call got, by notifications
            // that name the request, before its answer.
            Ok(request) if request.wants_progress() && id.is_some() => {
                let (tx, rx) = tokio::sync::watch::channel(Default::default());
                let forward = tokio::spawn(forward_progress(rx, id.clone().unwrap_or_default(), out.clone()));
                let answer = api.answer(request, Some(tx)).await;
                let _ = forward.await;
                answer
            }
            Ok(request) => api.answer(request, None).await,
        };
        // A request without an id is a notification: it is carried out, and not answered.
        let Some(id) = id else { continue };
        let message = match answer {
            Ok(result) => line(&Success::new(id, result)),
            Err(e) => line(&Failure::new(id, ErrorObject::of(&e))),
        };
        if out.send(message).await.is_err() {
            break;
        }
    }
    if let Some(task) = events {
        task.abort();
    }
    drop(out);
    let _ = writer.await;
}

async fn forward_events(
    mut events: tokio::sync::broadcast::Receiver<weft_core::node::NodeEvent>,
    out: mpsc::Sender<String>,
) {
    // A client that reads too slowly is told how much it missed rather than cut off.
    while let Some(event) = Event::received(events.recv().await) {
        if out.send(line(&Notification::event(event))).await.is_err() {
            return;
        }
    }
}

/// How far a call got, as `progress` notifications, until the call lets go of its sender. At
/// most ten a second (a bar needs no more), and always the last, at once, so the answer that
/// follows is not held back.
async fn forward_progress(
    mut progress: tokio::sync::watch::Receiver<weft_core::account::ImportProgress>,
    id: Value,
    out: mpsc::Sender<String>,
) {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(100);
    let mut last_sent: Option<std::time::Instant> = None;
    let mut unsent = false;
    loop {
        let closed = progress.changed().await.is_err();
        if closed && !unsent {
            return;
        }
        if !closed && last_sent.is_some_and(|at| at.elapsed() < EVERY) {
            unsent = true;
            continue;
        }
        let p = *progress.borrow_and_update();
        let notification = Notification::progress(Progress { id: id.clone(), done: p.done, total: p.total });
        if out.send(line(&notification)).await.is_err() || closed {
            return;
        }
        last_sent = Some(std::time::Instant::now());
        unsent = false;
    }
}
