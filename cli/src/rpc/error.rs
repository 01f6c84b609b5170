//! What a call can fail with, in JSON-RPC's terms.

use super::request::{Request, Unreadable};

#[derive(Debug)]
pub enum ApiError {
    /// `-32601`: no method by that name.
    MethodNotFound(String),
    /// `-32602`: the params are missing a member, have one too many, or one of the wrong type.
    InvalidParams(String),
    /// A method only a connection to the daemon answers (`subscribe`: events need the
    /// connection); the daemon's socket takes these before the method table.
    NeedsConnection(&'static str),
    /// `-32000`: Weft refused.
    Weft(weft_core::Error),
}

impl From<weft_core::Error> for ApiError {
    fn from(e: weft_core::Error) -> Self {
        ApiError::Weft(e)
    }
}

impl From<Unreadable> for ApiError {
    fn from(e: Unreadable) -> Self {
        match e {
            Unreadable::NoSuchMethod(method) => ApiError::MethodNotFound(method),
            Unreadable::Params(e) => ApiError::InvalidParams(e.to_string()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::MethodNotFound(m) => {
                write!(f, "no method {m:?}; the methods are {}", Request::METHODS.join(", "))
            }
            ApiError::InvalidParams(why) => write!(f, "invalid params: {why}"),
            ApiError::NeedsConnection(m) => write!(f, "{m} is answered on the daemon's socket only"),
            ApiError::Weft(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ApiError {}
