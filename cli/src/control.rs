//! The local control socket of a running node (`weft run`): other `weft` invocations on the
//! same home hand it their work instead of opening the home, which the node holds locked.
//!
//! `<home>/weft.sock`, a Unix socket only its owner may use. One JSON-RPC 2.0 request per line,
//! one response per line. Methods: `send {conversation, text}` and `status`. (The daemon issue
//! grows this into the full API.)

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
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixStream;
    let Ok(mut stream) = UnixStream::connect(socket_path(home)) else { return Ok(None) };
    // A node that accepts but never answers must not hang the command.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).context("setting a timeout")?;
    let request = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    writeln!(stream, "{request}").context("writing to the running node")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).context("reading the running node's answer")?;
    let response: Value = serde_json::from_str(&line).context("the running node answered with something not JSON")?;
    if let Some(err) = response.get("error") {
        let message = err["message"].as_str().unwrap_or("unknown error").to_string();
        let exit_code = err["data"]["exit_code"].as_u64().unwrap_or(1) as u8;
        return Err(RemoteError { message, exit_code }.into());
    }
    Ok(Some(response.get("result").cloned().unwrap_or(Value::Null)))
}

#[cfg(not(unix))]
pub fn call(_home: &Path, _method: &str, _params: Value) -> Result<Option<Value>> {
    Ok(None)
}

/// Serves the control socket for a running node until the task is dropped. `handle` answers
/// one method call.
#[cfg(unix)]
pub async fn serve<F, Fut>(home: &Path, handle: F) -> Result<tokio::task::JoinHandle<()>>
where
    F: Fn(String, Value) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::result::Result<Value, (i64, String, u8)>> + Send,
{
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
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
    let handle = std::sync::Arc::new(handle);
    Ok(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read.take(MAX_REQUEST as u64 * 16));
                let mut line = String::new();
                loop {
                    line.clear();
                    match (&mut lines).take(MAX_REQUEST as u64 + 1).read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let response = if line.len() > MAX_REQUEST {
                        error_response(Value::Null, INVALID_REQUEST, "request too large", 1)
                    } else {
                        answer(&line, &*handle).await
                    };
                    if write.write_all(format!("{response}\n").as_bytes()).await.is_err() || line.len() > MAX_REQUEST {
                        return;
                    }
                }
            });
        }
    }))
}

#[cfg(unix)]
async fn answer<F, Fut>(line: &str, handle: &F) -> Value
where
    F: Fn(String, Value) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Value, (i64, String, u8)>>,
{
    let Ok(request) = serde_json::from_str::<Value>(line) else {
        return error_response(Value::Null, PARSE_ERROR, "not JSON", 1);
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let (Some("2.0"), Some(method)) = (request["jsonrpc"].as_str(), request["method"].as_str()) else {
        return error_response(id, INVALID_REQUEST, "not a JSON-RPC 2.0 request", 1);
    };
    match handle(method.to_string(), request.get("params").cloned().unwrap_or(Value::Null)).await {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err((code, message, exit_code)) => error_response(id, code, &message, exit_code),
    }
}
