//! JSON-RPC 2.0 framing: one message per line, requests and answers with an `id`,
//! notifications without one, and the error codes. Both ends use it: the daemon's socket
//! (reading calls, writing answers) and the CLI (writing calls, reading answers).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::event::{Event, Progress};
use super::request::Request;
use crate::failure::{exit_code_of, hint_of};

pub const VERSION: &str = "2.0";

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
/// A Weft error; `data.exit_code` carries the CLI's exit code for it.
pub const WEFT_ERROR: i64 = -32000;

/// A call as the client writes it: `{"jsonrpc": "2.0", "id": 1, "method": …, "params": …}`.
#[derive(Serialize)]
pub struct Call<'a> {
    jsonrpc: &'static str,
    id: u64,
    #[serde(flatten)]
    request: &'a Request,
}

impl<'a> Call<'a> {
    pub fn new(id: u64, request: &'a Request) -> Self {
        Call { jsonrpc: VERSION, id, request }
    }
}

/// A successful answer.
#[derive(Serialize)]
pub struct Success<R> {
    jsonrpc: &'static str,
    id: Value,
    result: R,
}

impl<R: Serialize> Success<R> {
    pub fn new(id: Value, result: R) -> Self {
        Success { jsonrpc: VERSION, id, result }
    }
}

/// An error answer.
#[derive(Debug, Serialize)]
pub struct Failure {
    jsonrpc: &'static str,
    pub id: Value,
    pub error: ErrorObject,
}

impl Failure {
    pub fn new(id: Value, error: ErrorObject) -> Self {
        Failure { jsonrpc: VERSION, id, error }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub code: i64,
    pub message: String,
    #[serde(default)]
    pub data: ErrorData,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorData {
    /// The exit code the CLI gives the same error.
    pub exit_code: u8,
    /// What to do next, when there is something to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Default for ErrorData {
    fn default() -> Self {
        ErrorData { exit_code: 1, hint: None }
    }
}

impl ErrorObject {
    pub fn new(code: i64, message: impl Into<String>, exit_code: u8) -> Self {
        ErrorObject { code, message: message.into(), data: ErrorData { exit_code, hint: None } }
    }

    /// A failed call's error, with the CLI's exit code and hint for it.
    pub fn of(e: &ApiError) -> Self {
        let (code, exit_code, hint) = match e {
            ApiError::MethodNotFound(_) => (METHOD_NOT_FOUND, 2, None),
            ApiError::InvalidParams(_) => (INVALID_PARAMS, 2, None),
            ApiError::NeedsConnection(_) => (INVALID_REQUEST, 2, None),
            ApiError::Weft(weft) => (WEFT_ERROR, exit_code_of(weft), hint_of(weft)),
        };
        ErrorObject { code, message: e.to_string(), data: ErrorData { exit_code, hint } }
    }
}

/// A notification: `{"jsonrpc": "2.0", "method": "event" | "progress", "params": …}`.
#[derive(Serialize)]
pub struct Notification<P> {
    jsonrpc: &'static str,
    method: &'static str,
    params: P,
}

impl Notification<Event> {
    pub fn event(event: Event) -> Self {
        Notification { jsonrpc: VERSION, method: "event", params: event }
    }
}

impl Notification<Progress> {
    pub fn progress(progress: Progress) -> Self {
        Notification { jsonrpc: VERSION, method: "progress", params: progress }
    }
}

/// One message as a line (without its `\n`).
pub fn line(message: &impl Serialize) -> String {
    serde_json::to_string(message).expect("plain data serialises")
}

/// A request line with its envelope checked: the id, and the method and params to read.
#[derive(Debug)]
pub struct Envelope {
    /// `None` for a notification (no `id` member): carried out, not answered.
    pub id: Option<Value>,
    pub method: String,
    /// An object (`{}` when absent).
    pub params: Value,
}

/// A JSON-RPC 2.0 request from one line, or the error answer it deserves.
pub fn parse_envelope(line: &[u8]) -> Result<Envelope, Failure> {
    let refuse = |id: Option<Value>, code, message: &str, exit_code| {
        Failure::new(id.unwrap_or(Value::Null), ErrorObject::new(code, message, exit_code))
    };
    let Ok(request) = serde_json::from_slice::<Value>(line) else {
        return Err(refuse(None, PARSE_ERROR, "not JSON", 1));
    };
    if request.is_array() {
        return Err(refuse(None, INVALID_REQUEST, "batches are not supported: one request per line", 1));
    }
    let id = request.get("id").cloned();
    if let Some(id) = &id
        && !(id.is_string() || id.is_number() || id.is_null())
    {
        return Err(refuse(None, INVALID_REQUEST, "the id must be a string, a number or null", 1));
    }
    let (Some(VERSION), Some(method)) = (request["jsonrpc"].as_str(), request["method"].as_str()) else {
        return Err(refuse(id, INVALID_REQUEST, "not a JSON-RPC 2.0 request", 1));
    };
    let params = match request.get("params") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => return Err(refuse(id, INVALID_PARAMS, "params must be an object", 2)),
    };
    Ok(Envelope { id, method: method.to_owned(), params })
}

/// A line from the daemon, as a client reads it.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "one short-lived value per line read; boxing buys nothing")]
pub enum Incoming {
    /// An answer: the result, or the error the node answered with.
    Answer(Result<Value, RemoteError>),
    Event(Event),
    Progress(Progress),
    /// A notification this client does not know (from a newer daemon).
    Unknown,
}

/// Reads one line from the daemon.
pub fn read_incoming(line: &str) -> Result<Incoming, serde_json::Error> {
    #[derive(Deserialize)]
    struct Raw {
        method: Option<String>,
        #[serde(default)]
        params: Value,
        #[serde(default)]
        result: Value,
        error: Option<ErrorObject>,
    }
    let raw: Raw = serde_json::from_str(line)?;
    Ok(match (raw.method.as_deref(), raw.error) {
        (Some("event"), _) => serde_json::from_value(raw.params).map_or(Incoming::Unknown, Incoming::Event),
        (Some("progress"), _) => serde_json::from_value(raw.params).map_or(Incoming::Unknown, Incoming::Progress),
        (Some(_), _) => Incoming::Unknown,
        (None, Some(error)) => Incoming::Answer(Err(RemoteError::from(error))),
        (None, None) => Incoming::Answer(Ok(raw.result)),
    })
}

/// An error the node answered with.
#[derive(Debug)]
pub struct RemoteError {
    pub message: String,
    pub exit_code: u8,
    /// What to do next, when the node said.
    pub hint: Option<String>,
}

impl From<ErrorObject> for RemoteError {
    fn from(e: ErrorObject) -> Self {
        RemoteError { message: e.message, exit_code: e.data.exit_code, hint: e.data.hint }
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (answered by the running node)", self.message)
    }
}

impl std::error::Error for RemoteError {}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rpc::request::SendMessage;

    #[test]
    fn malformed_requests_get_the_right_errors() {
        let code = |line: &str| parse_envelope(line.as_bytes()).err().map(|e| e.error.code);
        assert_eq!(code("{not json"), Some(PARSE_ERROR));
        assert!(parse_envelope(&[0xff, 0xfe, b'{']).is_err_and(|e| e.error.code == PARSE_ERROR));
        assert_eq!(code("[]"), Some(INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"1.0","id":1,"method":"status"}"#), Some(INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":{},"method":"status"}"#), Some(INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":7}"#), Some(INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"send","params":[1]}"#), Some(INVALID_PARAMS));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"status"}"#), None);
        let notification = parse_envelope(br#"{"jsonrpc":"2.0","method":"status"}"#).unwrap();
        assert!(notification.id.is_none());
        assert_eq!(notification.params, json!({}));
    }

    #[test]
    fn messages_keep_the_wire_format() {
        let request = Request::from(SendMessage { conversation: "bob".into(), text: "hi".into(), reply_to: None });
        assert_eq!(
            serde_json::from_str::<Value>(&line(&Call::new(7, &request))).unwrap(),
            json!({ "jsonrpc": "2.0", "id": 7, "method": "send", "params": { "conversation": "bob", "text": "hi" } })
        );
        let failure = Failure::new(json!(3), ErrorObject::new(INVALID_PARAMS, "bad", 2));
        assert_eq!(
            serde_json::to_value(&failure).unwrap(),
            json!({ "jsonrpc": "2.0", "id": 3, "error": { "code": -32602, "message": "bad", "data": { "exit_code": 2 } } })
        );
        let answer = read_incoming(&line(&Success::new(json!(1), json!({ "marked": 0 })))).unwrap();
        assert!(matches!(answer, Incoming::Answer(Ok(v)) if v == json!({ "marked": 0 })));
        let refused = read_incoming(&line(&failure)).unwrap();
        assert!(matches!(refused, Incoming::Answer(Err(RemoteError { exit_code: 2, .. }))));
        let progress = Progress { id: json!(1), done: 2, total: 3 };
        let heard = read_incoming(&line(&Notification::progress(progress.clone()))).unwrap();
        assert!(matches!(heard, Incoming::Progress(p) if p == progress));
        let lagged = read_incoming(&line(&Notification::event(Event::Lagged { missed: 1 }))).unwrap();
        assert!(matches!(lagged, Incoming::Event(Event::Lagged { missed: 1 })));
    }
}
