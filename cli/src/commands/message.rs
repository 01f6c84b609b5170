use std::path::Path;

use anyhow::Result;

use crate::backend;
use crate::output::MessageLines;
use crate::output::Output;
use crate::rpc::request::{DeleteMessage, EditMessage, MarkRead, React, ReadLog, Resend, SendFile, SendMessage};

#[derive(clap::Args)]
pub struct SendArgs {
    /// A contact's or a group's name
    conversation: String,
    /// The message (with --file: the file's caption, may be left out)
    #[arg(required_unless_present = "file")]
    text: Option<String>,
    /// Send this file (up to 100 MiB): members fetch it piece by piece, checked, from whoever
    /// holds it
    #[arg(long, value_name = "PATH", conflicts_with = "reply_to")]
    file: Option<std::path::PathBuf>,
    /// Reply to this message (its id, or the start of it, as `weft log --ids` shows it)
    #[arg(long, value_name = "ID")]
    reply_to: Option<String>,
}

#[derive(clap::Args)]
pub struct ReactArgs {
    /// A contact's or a group's name
    conversation: String,
    /// The message (its id, or the start of it, as `weft log --ids` shows it)
    message: String,
    /// One emoji
    #[arg(required_unless_present = "remove")]
    emoji: Option<String>,
    /// Take your reaction back
    #[arg(long, conflicts_with = "emoji")]
    remove: bool,
}

#[derive(clap::Args)]
pub struct EditArgs {
    /// A contact's or a group's name
    conversation: String,
    /// Your message (its id, or the start of it, as `weft log --ids` shows it)
    message: String,
    /// Its new text
    text: String,
}

#[derive(clap::Args)]
pub struct DeleteArgs {
    /// A contact's or a group's name
    conversation: String,
    /// Your message (its id, or the start of it, as `weft log --ids` shows it)
    message: String,
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
    /// Start each line with the message's id (its first 12 digits: enough for `weft react`,
    /// `edit`, `delete` and `send --reply-to`)
    #[arg(long)]
    ids: bool,
}

/// Shown ids: long enough never to collide within a conversation in practice, short enough to
/// type.
const SHORT_ID: usize = 12;

/// A message of `conversation` named by its id or the start of it (at least 6 digits), read
/// from the conversation's history: the full id, or a clear error.
fn full_id(home_dir: &Path, conversation: &str, given: &str) -> Result<String> {
    let given = given.to_ascii_lowercase();
    if given.len() == 64 {
        return Ok(given);
    }
    if given.len() < 6 || !given.chars().all(|c| c.is_ascii_hexdigit()) {
        anyhow::bail!(
            "{given:?} is not a message id: give at least its first 6 hex digits, as `weft log --ids` shows them"
        );
    }
    let history = backend::call(
        home_dir,
        ReadLog { conversation: conversation.to_owned(), limit: Some(ReadLog::MAX_LIMIT), before: None },
    )?;
    let mut matching = history.iter().filter(|m| m.id.starts_with(&given)).map(|m| m.id.clone());
    match (matching.next(), matching.next()) {
        (Some(id), None) => Ok(id),
        (None, _) => anyhow::bail!("no message of {conversation} has an id starting {given}"),
        (Some(_), Some(_)) => {
            anyhow::bail!("several messages of {conversation} have ids starting {given}: give more digits")
        }
    }
}

pub fn send(home_dir: &Path, args: SendArgs, out: &Output) -> Result<()> {
    let (m, answered) = match args.file {
        Some(file) => {
            // The node may run elsewhere in the file tree (a daemon): it is given the whole path.
            let path = std::path::absolute(&file)?;
            let path = path.to_str().ok_or_else(|| anyhow::anyhow!("{} is not a UTF-8 path", file.display()))?;
            let params =
                SendFile { conversation: args.conversation, path: path.to_owned(), caption: args.text, mime: None };
            backend::call_reporting(home_dir, params)?
        }
        None => {
            let reply_to = args.reply_to.map(|id| full_id(home_dir, &args.conversation, &id)).transpose()?;
            let text = args.text.unwrap_or_default();
            backend::call_reporting(home_dir, SendMessage { conversation: args.conversation, text, reply_to })?
        }
    };
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
        messages
            .iter()
            .map(|m| match args.ids {
                true => format!("{}  {}", &m.id[..SHORT_ID.min(m.id.len())], m.line_with_path()),
                false => m.line_with_path(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}

pub fn react(home_dir: &Path, args: ReactArgs, out: &Output) -> Result<()> {
    let message = full_id(home_dir, &args.conversation, &args.message)?;
    let emoji = if args.remove { String::new() } else { args.emoji.unwrap_or_default() };
    let m = backend::call(home_dir, React { conversation: args.conversation, message, emoji })?;
    out.print(&m, || format!("Reacted. {}", m.line()));
    Ok(())
}

pub fn edit(home_dir: &Path, args: EditArgs, out: &Output) -> Result<()> {
    let message = full_id(home_dir, &args.conversation, &args.message)?;
    let m = backend::call(home_dir, EditMessage { conversation: args.conversation, message, text: args.text })?;
    out.print(&m, || format!("Edited for everyone. {}", m.line()));
    Ok(())
}

pub fn delete(home_dir: &Path, args: DeleteArgs, out: &Output) -> Result<()> {
    let message = full_id(home_dir, &args.conversation, &args.message)?;
    let m = backend::call(home_dir, DeleteMessage { conversation: args.conversation, message })?;
    out.print(&m, || {
        format!("Deleted for everyone: its text leaves each member's device as the delete reaches it. {}", m.line())
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
