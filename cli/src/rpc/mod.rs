//! The daemon's JSON-RPC API (docs/JSONRPC.md), as types: what a client asks
//! ([`request::Request`], one variant per method with its params), what each method answers
//! ([`answer`]), what the daemon tells unasked ([`event`]), how these travel as JSON-RPC 2.0
//! ([`jsonrpc`]), and the method table that answers calls over a node ([`dispatch::Api`]).
//!
//! Both ends use these types: the socket's server and the CLI commands that call it, so the
//! compiler checks every method's params and answer at both. Nothing here does IO but the
//! method table's, nor knows of the socket, the command line or how things are printed.
//!
//! To add a method: a params struct and a row in `methods!` (request.rs), an answer type
//! (answer.rs) if no existing one fits, a handler and a `match` arm (dispatch.rs), and its
//! section in docs/JSONRPC.md (the `docs` test fails until it is there).

pub mod answer;
pub mod dispatch;
pub mod error;
pub mod event;
pub mod jsonrpc;
mod params;
pub mod request;

#[cfg(test)]
mod docs;
#[cfg(test)]
mod shape;

pub use dispatch::Api;
pub use error::ApiError;
pub use request::{Method, Request};
