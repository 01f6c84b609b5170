//! Printing for people and for programs (`--json`).

use serde::Serialize;
use weft_core::account::MessageInfo;

use crate::failure::hint_of;
use crate::rpc::answer::Message;
use crate::rpc::jsonrpc::RemoteError;

pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON, or `text()` for people.
    pub fn print<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value).expect("plain data serialises"));
        } else {
            let t = text();
            if !t.is_empty() {
                println!("{}", t.trim_end());
            }
        }
    }

    pub fn error(&self, err: &anyhow::Error) {
        let hint = err.chain().find_map(|e| {
            if let Some(weft) = e.downcast_ref::<weft_core::Error>() {
                return hint_of(weft);
            }
            e.downcast_ref::<RemoteError>().and_then(|r| r.hint.clone())
        });
        if self.json {
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("{}", serde_json::json!({ "error": err.to_string(), "causes": chain, "hint": hint }));
        } else {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if let Some(hint) = hint {
                eprintln!("  hint: {hint}");
            }
        }
    }
}

/// One line of history, for people.
pub fn message_line(m: &MessageInfo) -> String {
    let reactions: Vec<(String, u32)> = m.reactions.iter().map(|r| (r.emoji.clone(), r.count)).collect();
    let body = match m.kind.as_str() {
        "text" => shown_body(&m.body, m.reply_to.as_deref(), m.edited, m.deleted, &reactions),
        _ => m.body.clone(),
    };
    line(m.sent_ms, &m.kind, &m.sender, &body)
}

/// A message as people read it. (Its data is the API's: [`crate::rpc::answer`], in the library;
/// how it reads is the binary's.)
pub trait MessageLines {
    /// The message as one line of a conversation's log.
    fn line(&self) -> String;
    /// [`Self::line`], and for a received message the path that brought it.
    fn line_with_path(&self) -> String;
}

/// A text's body as shown: deleted, edited, a reply, its reactions.
fn shown_body(body: &str, reply_to: Option<&str>, edited: bool, deleted: bool, reactions: &[(String, u32)]) -> String {
    if deleted {
        return "(deleted)".to_owned();
    }
    let mut shown = String::new();
    if let Some(to) = reply_to {
        shown.push_str(&format!("(reply to {}) ", &to[..8.min(to.len())]));
    }
    shown.push_str(body);
    if edited {
        shown.push_str(" (edited)");
    }
    if !reactions.is_empty() {
        let each: Vec<String> = reactions.iter().map(|(emoji, count)| format!("{emoji} {count}")).collect();
        shown.push_str(&format!("  [{}]", each.join(", ")));
    }
    shown
}

impl MessageLines for Message {
    fn line(&self) -> String {
        let reactions: Vec<(String, u32)> = self.reactions.iter().map(|r| (r.emoji.clone(), r.count)).collect();
        let body = match self.kind.as_str() {
            "text" => shown_body(&self.body, self.reply_to.as_deref(), self.edited, self.deleted, &reactions),
            _ => self.body.clone(),
        };
        let body = match &self.attachment {
            Some(a) if !self.deleted => format!("{} {}", file_label(a), body).trim_end().to_owned(),
            _ => body,
        };
        let line = line(self.sent_ms, &self.kind, &self.sender, &body);
        match &self.state {
            Some(state) => format!("{line}  [{state}]"),
            None => line,
        }
    }

    fn line_with_path(&self) -> String {
        match &self.via {
            Some(via) if !self.outgoing => format!("{}  (via {via})", self.line()),
            _ => self.line(),
        }
    }
}

/// A file as a line shows it: `[file map.jpg, 1.2 MiB]`, and how far it came while it comes.
pub fn file_label(a: &crate::rpc::answer::Attachment) -> String {
    let size = human_size(a.size);
    match (a.complete, a.fetching) {
        (true, _) => format!("[file {}, {size}]", a.name),
        (false, true) => format!("[file {}, {size}, {}/{} here]", a.name, a.have, a.total),
        (false, false) => format!("[file {}, {size}, not fetched: `weft save`]", a.name),
    }
}

/// Bytes as people read them.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn line(sent_ms: u64, kind: &str, sender: &str, body: &str) -> String {
    let time = format_time(sent_ms);
    match kind {
        "text" => format!("[{time}] {sender}: {body}"),
        "created" => format!("[{time}] — {sender} created the group {body:?} —"),
        "joined" => format!("[{time}] — you joined {body:?} —"),
        "rekeyed" => format!("[{time}] — {sender} renewed the group's keys —"),
        "accepted" => format!("[{time}] — {sender} accepted your contact request —"),
        "left" if body == "you" => format!("[{time}] — you asked to leave; an admin removes you —"),
        "left" => format!("[{time}] — {body} asked to leave —"),
        "renamed" => format!("[{time}] — {sender} renamed the group {body:?} —"),
        "device_linked" => format!("[{time}] — {body} linked a new device (the safety number is the same) —"),
        "timer" if body == "off" => format!("[{time}] — {sender} turned disappearing messages off —"),
        "timer" => match body.parse::<u64>() {
            Ok(ms) => format!(
                "[{time}] — {sender} set messages to disappear {} after they arrive —",
                crate::commands::keys::show_duration(ms)
            ),
            Err(_) => format!("[{time}] — {sender} set disappearing messages —"),
        },
        kind => format!("[{time}] — {sender} {kind} {body} —"),
    }
}

/// UTC `YYYY-MM-DD HH:MM`, without a date library.
pub fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, (rem % 3600) / 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_time() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00");
        assert_eq!(super::format_time(1_700_000_000_000), "2023-11-14 22:13");
    }
}
