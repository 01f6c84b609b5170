//! `weft update-keys` and `weft retention`: what a person does about a device that was out of
//! their hands, and about how long a conversation's messages stay on this one.

use std::path::Path;

use anyhow::{Result, bail};

use crate::backend;
use crate::output::Output;
use crate::rpc::request::{SetDisappearing, SetRetention, ShowDisappearing, ShowRetention, UpdateKeys};

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// A contact's or a group's name (every conversation if none)
    conversation: Option<String>,
}

/// Fresh keys now, in one conversation or all: whoever copied this device before reads nothing
/// written after the others process them. (They also go out by themselves once a day.)
pub fn update(home_dir: &Path, args: UpdateArgs, out: &Output) -> Result<()> {
    let result = backend::call(home_dir, UpdateKeys { conversation: args.conversation })?;
    out.print(&result, || match result.updated {
        0 => "No conversation with anyone to send keys to.".to_owned(),
        1 => "Fresh keys are on their way in 1 conversation.".to_owned(),
        n => format!("Fresh keys are on their way in {n} conversations."),
    });
    Ok(())
}

#[derive(clap::Args)]
pub struct RetentionArgs {
    /// A contact's or a group's name
    conversation: String,
    /// Keep messages this long after they reached this device (e.g. 30m, 12h, 7d, 4w), or
    /// `forever`; without it, show the current setting
    keep: Option<String>,
}

pub fn retention(home_dir: &Path, args: RetentionArgs, out: &Output) -> Result<()> {
    let conversation = args.conversation.clone();
    let result = match &args.keep {
        None => backend::call(home_dir, ShowRetention { conversation })?,
        Some(keep) => backend::call(home_dir, SetRetention { conversation, keep_ms: parse_duration(keep)? })?,
    };
    out.print(&result, || {
        let kept = match result.keep_ms {
            None => "kept for ever".to_owned(),
            Some(ms) => format!("deleted {} after they arrive", show_duration(ms)),
        };
        match result.deleted {
            Some(n) if n > 0 => format!("Messages with {} are {kept}; {n} older ones were deleted.", args.conversation),
            _ => format!("Messages with {} are {kept}.", args.conversation),
        }
    });
    Ok(())
}

#[derive(clap::Args)]
pub struct DisappearArgs {
    /// A contact's or a group's name
    conversation: String,
    /// Delete texts written from now on this long after they reach each member (1m to 52w:
    /// e.g. 5m, 12h, 7d), or `off`; without it, show the current timer
    after: Option<String>,
}

pub fn disappear(home_dir: &Path, args: DisappearArgs, out: &Output) -> Result<()> {
    let conversation = args.conversation.clone();
    let Some(after) = &args.after else {
        let shown = backend::call(home_dir, ShowDisappearing { conversation })?;
        out.print(&shown, || match shown.keep_ms {
            None => format!("Messages with {} do not disappear.", args.conversation),
            Some(ms) => {
                format!("Messages with {} disappear {} after they arrive.", args.conversation, show_duration(ms))
            }
        });
        return Ok(());
    };
    let keep_ms = match after.as_str() {
        "off" => None,
        text => parse_duration(text)?,
    };
    let row = backend::call(home_dir, SetDisappearing { conversation, keep_ms })?;
    out.print(&row, || match keep_ms {
        None => format!("Messages with {} no longer disappear (every member is told).", args.conversation),
        Some(ms) => format!(
            "Messages with {} written from now on disappear from every member's devices {} after they arrive.",
            args.conversation,
            show_duration(ms)
        ),
    });
    Ok(())
}

/// `30m`, `12h`, `7d`, `4w` (or `forever`) in milliseconds.
fn parse_duration(text: &str) -> Result<Option<u64>> {
    if text == "forever" {
        return Ok(None);
    }
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let minutes: u64 = match unit {
        "m" => 1,
        "h" => 60,
        "d" => 24 * 60,
        "w" => 7 * 24 * 60,
        _ => bail!("{text:?} is not a duration: write e.g. 30m, 12h, 7d, 4w, or forever"),
    };
    let n: u64 = number.parse().map_err(|_| anyhow::anyhow!("{text:?} is not a duration: write e.g. 7d"))?;
    match n.checked_mul(minutes * 60_000) {
        Some(0) => bail!("a retention must be longer than nothing"),
        Some(ms) => Ok(Some(ms)),
        None => bail!("{text:?} is too long: use forever"),
    }
}

pub(crate) fn show_duration(ms: u64) -> String {
    let minutes = ms / 60_000;
    for (unit, size) in [("week", 7 * 24 * 60), ("day", 24 * 60), ("hour", 60)] {
        if minutes >= size && minutes.is_multiple_of(size) {
            let n = minutes / size;
            return format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
        }
    }
    format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("30m").unwrap(), Some(30 * 60_000));
        assert_eq!(parse_duration("7d").unwrap(), Some(7 * 24 * 3_600_000));
        assert_eq!(parse_duration("forever").unwrap(), None);
        for bad in ["", "7", "d", "7x", "0d", "99999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(show_duration(14 * 24 * 3_600_000), "2 weeks");
        assert_eq!(show_duration(90 * 60_000), "90 minutes");
    }
}
