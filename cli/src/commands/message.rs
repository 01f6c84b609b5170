use std::path::Path;

use anyhow::Result;

use serde_json::json;

use crate::backend;
use crate::output::{Message, Output, parse};

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
    /// Show the messages before this one (a message id, as `--json` prints it): the page above
    #[arg(long, value_name = "ID")]
    before: Option<String>,
}

pub fn send(home_dir: &Path, args: SendArgs, out: &Output) -> Result<()> {
    let params = json!({ "conversation": args.conversation, "text": args.text });
    let (result, answered) = backend::call_reporting(home_dir, "send", params)?;
    let daemon = answered == backend::Answered::ByRunningNode;
    let m: Message = parse(&result)?;
    out.print(&result, || {
        if daemon {
            format!("Sent to {} through the running node (queued until a peer takes it).", m.conversation)
        } else {
            format!(
                "Queued for {} (stored encrypted; it leaves when `weft run` runs, or with your next export).",
                m.conversation
            )
        }
    });
    Ok(())
}

pub fn log(home_dir: &Path, args: LogArgs, out: &Output) -> Result<()> {
    let params = json!({ "conversation": args.conversation, "limit": args.limit, "before": args.before });
    let result = backend::call(home_dir, "log", params)?;
    let messages: Vec<Message> = parse(&result)?;
    out.print(&result, || {
        if messages.is_empty() {
            return format!("No messages with {} yet.", args.conversation);
        }
        messages.iter().map(Message::line_with_path).collect::<Vec<_>>().join("\n")
    });
    Ok(())
}

#[derive(clap::Args)]
pub struct ReadArgs {
    /// A contact's or a group's name
    conversation: String,
}

pub fn read(home_dir: &Path, args: ReadArgs, out: &Output) -> Result<()> {
    let result = backend::call(home_dir, "read", json!({ "conversation": args.conversation }))?;
    out.print(&result, || match result["marked"].as_u64().unwrap_or(0) {
        0 => format!("Nothing unread with {}.", args.conversation),
        n => format!("Marked {n} message(s) from {} read.", args.conversation),
    });
    Ok(())
}

#[derive(clap::Args)]
pub struct ResendArgs {
    /// The message's id, as `weft log --json` prints it
    message: String,
}

pub fn resend(home_dir: &Path, args: ResendArgs, out: &Output) -> Result<()> {
    let result = backend::call(home_dir, "resend", json!({ "message": args.message }))?;
    let m: Message = parse(&result)?;
    out.print(&result, || format!("Queued again for {} (its id is now {}).", m.conversation, m.id));
    Ok(())
}
