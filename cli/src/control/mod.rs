//! The local control socket of a running node (the daemon, `weft run`, `weft chat`): other
//! `weft` invocations on the same home hand it their work instead of opening the home, which
//! the node holds locked.
//!
//! `<home>/weft.sock`, a Unix socket only its owner may use, carrying the JSON-RPC API of
//! [`crate::rpc`] (docs/JSONRPC.md): the [`server`] answers it, the [`client`] asks.

use std::path::{Path, PathBuf};

pub mod client;
#[cfg(unix)]
pub mod server;

pub const SOCKET_FILE: &str = "weft.sock";

pub fn socket_path(home: &Path) -> PathBuf {
    home.join(SOCKET_FILE)
}
