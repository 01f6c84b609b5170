//! The local control socket of a running node (`weft run`): other `weft` invocations on the
//! same home hand it their work instead of opening the home, which the node holds locked.
//!
//! `<home>/weft.sock`, a Unix socket only its owner may use. One JSON-RPC 2.0 request per line,
//! one response per line; the methods are [`crate::api`]'s, plus `subscribe`, after which the
//! connection also carries `event` notifications (docs/JSONRPC.md).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};

pub const SOCKET_FILE: &str = "weft.sock";
/// Longest request line the node reads.
pub const MAX_REQUEST: usize = 64 * 1024;

pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET_FILE)
}

/// JSON-RPC error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
/// A Weft error; `data.exit_code` carries the CLI's exit code for it.
pub const WEFT_ERROR: i64 = -32000;

pub fn error_response(id: Value, code: i64, message: &str, exit_code: u8) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message, "data": { "exit_code": exit_code } } })
}

/// An error the node answered with.
#[derive(Debug)]
pub struct RemoteError {
    pub message: String,
    pub exit_code: u8,
    /// What to do next, when the node said.
    pub hint: Option<String>,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (answered by the running node)", self.message)
    }
}

impl std::error::Error for RemoteError {}

/// Calls `method` on the node running on `home`. `Ok(None)` when no node runs there (no
/// socket, or a stale one left by a crash): the caller then opens the home itself.
#[cfg(unix)]
pub fn call(home: &Path, method: &str, params: Value) -> Result<Option<Value>> {
    request(home, method, params, &mut |_, _| {})
}

/// [`call`], asking the node for progress and handing each report (done, total) to
/// `on_progress` until the answer comes.
#[cfg(unix)]
pub fn call_with_progress(
    home: &Path,
    method: &str,
    mut params: Value,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<Value>> {
    if let Some(p) = params.as_object_mut() {
        p.insert("progress".into(), json!(true));
    }
    request(home, method, params, on_progress)
}

#[cfg(unix)]
fn request(
    home: &Path,
    method: &str,
    params: Value,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<Value>> {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let Ok(mut stream) = UnixStream::connect(socket_path(home)) else { return Ok(None) };
    // A node that accepts but never answers must not hang the command; reading or writing a
    // bundle takes as long as the bundle is large.
    let timeout = (!matches!(method, "import" | "export")).then_some(std::time::Duration::from_secs(60));
    stream.set_read_timeout(timeout).context("setting a timeout")?;
    let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    writeln!(stream, "{request}").context("writing to the running node")?;
    let mut reader = BufReader::new(stream);
    let response = loop {
        let mut line = String::new();
        reader.read_line(&mut line).context("reading the running node's answer")?;
        if line.is_empty() {
            anyhow::bail!("the running node stopped before it answered; run the command again");
        }
        let message: Value =
            serde_json::from_str(&line).context("the running node answered with something not JSON")?;
        if message["method"] == "progress" {
            let count = |k: &str| message["params"][k].as_u64().unwrap_or(0) as usize;
            on_progress(count("done"), count("total"));
            continue;
        }
        break message;
    };
    if let Some(err) = response.get("error") {
        let message = err["message"].as_str().unwrap_or("unknown error").to_string();
        let exit_code = err["data"]["exit_code"].as_u64().unwrap_or(1) as u8;
        let hint = err["data"]["hint"].as_str().map(str::to_owned);
        return Err(RemoteError { message, exit_code, hint }.into());
    }
    Ok(Some(response.get("result").cloned().unwrap_or(Value::Null)))
}

#[cfg(not(unix))]
pub fn call(_home: &Path, _method: &str, _params: Value) -> Result<Option<Value>> {
    Ok(None)
}

#[cfg(not(unix))]
pub fn call_with_progress(
    _home: &Path,
    _method: &str,
    _params: Value,
    _on_progress: &mut dyn FnMut(usize, usize),
) -> Result<Option<Value>> {
    Ok(None)
}

/// Serves the method table on the control socket until the task is aborted.
#[cfg(unix)]
pub async fn serve(home: &Path, api: std::sync::Arc<crate::api::Api>) -> Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(home);
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
#[cfg(unix)]
async fn connection(stream: tokio::net::UnixStream, api: std::sync::Arc<crate::api::Api>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::sync::mpsc;
    let (read, mut write) = stream.into_split();
    // Responses and notifications share the socket through one queue, so lines never interleave.
    let (out, mut queue) = mpsc::channel::<Value>(256);
    let writer = tokio::spawn(async move {
        while let Some(message) = queue.recv().await {
            if write.write_all(format!("{message}\n").as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut events: Option<tokio::task::JoinHandle<()>> = None;
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader).take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.len() > MAX_REQUEST {
            let too_large = format!("request larger than {MAX_REQUEST} bytes; closing the connection");
            let _ = out.send(error_response(Value::Null, INVALID_REQUEST, &too_large, 1)).await;
            break;
        }
        let request = match parse_request(&line) {
            Ok(request) => request,
            Err(response) => {
                let _ = out.send(response).await;
                continue;
            }
        };
        if request.method == "subscribe" {
            // The answer goes out before the first event, so a client reads it first. (The
            // node's stream is taken before answering: nothing that happens after is missed.)
            let stream = api.node.subscribe();
            if let Some(id) = request.id.clone()
                && out.send(json!({ "jsonrpc": "2.0", "id": id, "result": { "subscribed": true } })).await.is_err()
            {
                break;
            }
            if events.is_none() {
                events = Some(tokio::spawn(forward_events(stream, out.clone())));
            }
            continue;
        }
        let response = match request.method.as_str() {
            "unsubscribe" => {
                if let Some(task) = events.take() {
                    task.abort();
                }
                Ok(json!({ "subscribed": false }))
            }
            // A client that asks for progress hears how far a long call got, by notifications
            // that name the request, before its answer.
            method if request.params.get("progress") == Some(&json!(true)) && request.id.is_some() => {
                let (tx, rx) = tokio::sync::watch::channel(Default::default());
                let forward = tokio::spawn(forward_progress(rx, request.id.clone().unwrap_or_default(), out.clone()));
                let response = api.call_watched(method, &request.params, Some(tx)).await;
                let _ = forward.await;
                response
            }
            method => api.call(method, &request.params).await,
        };
        // A request without an id is a notification: it is carried out, and not answered.
        let Some(id) = request.id else { continue };
        let message = match response {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err(e) => {
                let (code, exit_code) = match &e {
                    crate::api::ApiError::MethodNotFound(_) => (METHOD_NOT_FOUND, 2),
                    crate::api::ApiError::InvalidParams(_) => (INVALID_PARAMS, 2),
                    crate::api::ApiError::Weft(e) => (WEFT_ERROR, crate::output::exit_code_of(e)),
                };
                let mut response = error_response(id, code, &e.to_string(), exit_code);
                if let crate::api::ApiError::Weft(weft) = &e
                    && let Some(hint) = crate::output::hint_of(weft)
                {
                    response["error"]["data"]["hint"] = json!(hint);
                }
                response
            }
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

#[cfg(unix)]
async fn forward_events(
    mut events: tokio::sync::broadcast::Receiver<weft_core::node::NodeEvent>,
    out: tokio::sync::mpsc::Sender<Value>,
) {
    // A client that reads too slowly is told how much it missed rather than cut off.
    while let Some(params) = crate::output::event_json(events.recv().await) {
        if out.send(json!({ "jsonrpc": "2.0", "method": "event", "params": params })).await.is_err() {
            return;
        }
    }
}

/// How far a call got, as `progress` notifications, until the call lets go of its sender. At
/// most ten a second (a bar needs no more), and always the last, at once, so the answer that
/// follows is not held back.
#[cfg(unix)]
async fn forward_progress(
    mut progress: tokio::sync::watch::Receiver<weft_core::account::ImportProgress>,
    id: Value,
    out: tokio::sync::mpsc::Sender<Value>,
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
        let params = json!({ "id": id, "done": p.done, "total": p.total });
        if out.send(json!({ "jsonrpc": "2.0", "method": "progress", "params": params })).await.is_err() || closed {
            return;
        }
        last_sent = Some(std::time::Instant::now());
        unsent = false;
    }
}

struct Request {
    /// `None` for a notification (no `id` member).
    id: Option<Value>,
    method: String,
    params: Value,
}

/// A JSON-RPC 2.0 request from one line, or the error response it deserves.
fn parse_request(line: &[u8]) -> std::result::Result<Request, Value> {
    let Ok(request) = serde_json::from_slice::<Value>(line) else {
        return Err(error_response(Value::Null, PARSE_ERROR, "not JSON", 1));
    };
    if request.is_array() {
        return Err(error_response(Value::Null, INVALID_REQUEST, "batches are not supported: one request per line", 1));
    }
    let id = request.get("id").cloned();
    if let Some(id) = &id
        && !(id.is_string() || id.is_number() || id.is_null())
    {
        return Err(error_response(Value::Null, INVALID_REQUEST, "the id must be a string, a number or null", 1));
    }
    let (Some("2.0"), Some(method)) = (request["jsonrpc"].as_str(), request["method"].as_str()) else {
        return Err(error_response(id.unwrap_or(Value::Null), INVALID_REQUEST, "not a JSON-RPC 2.0 request", 1));
    };
    let params = match request.get("params") {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => {
            return Err(error_response(id.unwrap_or(Value::Null), INVALID_PARAMS, "params must be an object", 2));
        }
    };
    Ok(Request { id, method: method.to_owned(), params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_requests_get_the_right_errors() {
        let code = |line: &str| parse_request(line.as_bytes()).err().map(|e| e["error"]["code"].as_i64().unwrap());
        assert_eq!(code("{not json"), Some(PARSE_ERROR));
        assert!(parse_request(&[0xff, 0xfe, b'{']).is_err_and(|e| e["error"]["code"] == PARSE_ERROR));
        assert_eq!(code("[]"), Some(INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"1.0","id":1,"method":"status"}"#), Some(INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":{},"method":"status"}"#), Some(INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":7}"#), Some(INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"send","params":[1]}"#), Some(INVALID_PARAMS));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"status"}"#), None);
        let notification = parse_request(br#"{"jsonrpc":"2.0","method":"status"}"#).ok().unwrap();
        assert!(notification.id.is_none());
    }
}
