use std::path::Path;

use anyhow::Result;

use crate::backend;
use crate::output::MessageLines;
use crate::output::Output;
use crate::rpc::answer::Message;
use crate::rpc::request::{MarkRead, ReadLog, Resend, SendMessage};

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
    #[arg(long, default_value_t = ReadLog::DEFAULT_LIMIT)]
    limit: u64,
    /// Show the messages before this one (a message id, as `--json` prints it): the page above
    #[arg(long, value_name = "ID")]
    before: Option<String>,
}

pub fn send(home_dir: &Path, args: SendArgs, out: &Output) -> Result<()> {
    let params = SendMessage { conversation: args.conversation, text: args.text };
    let (m, answered) = backend::call_reporting(home_dir, params)?;
    let daemon = answered == backend::Answered::ByRunningNode;
    out.print(&m, || {
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
    let params = ReadLog { conversation: args.conversation.clone(), limit: Some(args.limit), before: args.before };
    let messages = backend::call(home_dir, params)?;
    out.print(&messages, || {
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
    let marked = backend::call(home_dir, MarkRead { conversation: args.conversation.clone() })?;
    out.print(&marked, || match marked.marked {
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
    let m = backend::call(home_dir, Resend { message: args.message })?;
    out.print(&m, || format!("Queued again for {} (its id is now {}).", m.conversation, m.id));
    Ok(())
}
