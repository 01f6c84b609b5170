//! What of `weft` reads outside input with no terminal or socket around it: the daemon's
//! JSON-RPC API as types ([`rpc`]), the configuration file ([`config`]) and what an error means
//! to whoever ran `weft` ([`failure`]). A library so that the fuzzer (fuzz/) reaches the
//! JSON-RPC line parser and the config file's reader as the binary runs them; the binary
//! (main.rs) is everything else.

pub mod config;
pub mod failure;
pub mod mime;
pub mod rpc;
