//! `weft nearby`: the public channel of everyone within a few Bluetooth hops. It runs in the
//! node that drives the radio (`weft daemon`, `weft run`, the chat), so these commands go
//! through it; without one, there is no radio and nothing to read or post.

use std::path::Path;

use anyhow::Result;

use crate::backend;
use crate::output::{Output, format_time};
use crate::rpc::request::{MuteNearby, NewNearbySession, PostNearby, ShowNearby};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Show what was said nearby lately (the node keeps the last 200 in memory, nothing on disk)
    Show,
    /// Say something to everyone within radio range (signed by this session's key, never your
    /// account's)
    Post { text: String },
    /// Start a new session: a new key, so the key does not tie what follows to what you posted
    /// before (a phone on the same radio link still can, by the link)
    Session {
        /// The name others see, beside your key's first 8 hex digits
        #[arg(long, default_value = "")]
        nick: String,
    },
    /// Hide a sender (still passed on for others); with --block, also stop passing them on
    Mute {
        /// The sender's key, as `weft --json nearby show` gives it
        sender: String,
        #[arg(long)]
        block: bool,
    },
}

pub fn run(home_dir: &Path, command: Option<Command>, out: &Output) -> Result<()> {
    match command.unwrap_or(Command::Show) {
        Command::Show => {
            let recent = backend::call(home_dir, ShowNearby {})?;
            out.print(&recent, || {
                if recent.is_empty() {
                    return "Nothing said nearby yet (the channel needs a running node with Bluetooth).".to_owned();
                }
                recent
                    .iter()
                    .map(|m| format!("[{}] {}: {}  ({} hops)", format_time(m.sent_ms), m.name, m.text, m.hops))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        Command::Post { text } => {
            let m = backend::call(home_dir, PostNearby { text })?;
            out.print(&m, || format!("Said nearby as {}: {}", m.name, m.text));
        }
        Command::Session { nick } => {
            let s = backend::call(home_dir, NewNearbySession { nick })?;
            out.print(&s, || format!("A new nearby session: key {}", &s.sender[..16]));
        }
        Command::Mute { sender, block } => {
            let m = backend::call(home_dir, MuteNearby { sender, block })?;
            out.print(&m, || {
                format!("{} {}.", if m.blocked { "Blocked" } else { "Muted" }, &m.sender[..16.min(m.sender.len())])
            });
        }
    }
    Ok(())
}
