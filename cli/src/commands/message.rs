use std::path::Path;

use anyhow::Result;

use crate::home;
use crate::output::{Message, Output, message_line};

#[derive(clap::Args)]
pub struct SendArgs {
    /// A contact's or a group's name
    conversation: String,
    /// The message
    text: String,
}

#[derive(clap::Args)]
pub struct LogArgs {
    /// A contact's or a group's name
    conversation: String,
    /// How many of the latest messages to show
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

pub fn send(home_dir: &Path, args: SendArgs, out: &Output) -> Result<()> {
    // A node running on this home takes the message and pushes it at once.
    let params = serde_json::json!({ "conversation": args.conversation, "text": args.text });
    if let Some(m) = crate::control::call(home_dir, "send", params)? {
        let to = m["conversation"].as_str().unwrap_or_default().to_string();
        out.print(&m, || format!("Sent to {to} through the running node (queued until a peer takes it)."));
        return Ok(());
    }
    let mut account = home::open(home_dir)?;
    let m = account.send(&args.conversation, &args.text)?;
    out.print(&Message::from(&m), || {
        format!(
            "Queued for {} (stored encrypted; it leaves when `weft run` runs, or with your next export).",
            m.conversation
        )
    });
    Ok(())
}

pub fn log(home_dir: &Path, args: LogArgs, out: &Output) -> Result<()> {
    let account = home::open(home_dir)?;
    let history = account.history(&args.conversation, args.limit)?;
    let messages: Vec<Message> = history.iter().map(Message::from).collect();
    out.print(&messages, || {
        if history.is_empty() {
            return format!("No messages with {} yet.", args.conversation);
        }
        history.iter().map(message_line).collect::<Vec<_>>().join("\n")
    });
    Ok(())
}
