use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::home;
use crate::output::{Message, Output, message_line};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// Where to write the bundle
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// A bundle written by `weft export`
    file: PathBuf,
}

#[derive(Serialize)]
struct Exported {
    file: String,
    bytes: usize,
}

#[derive(Serialize)]
struct Imported {
    new_contacts: Vec<String>,
    answered: Vec<String>,
    joined_groups: Vec<String>,
    messages: Vec<Message>,
    duplicates: usize,
    waiting: usize,
    unreadable: usize,
    rejected: usize,
}

pub fn export(home_dir: &Path, args: ExportArgs, out: &Output) -> Result<()> {
    let account = home::open(home_dir)?;
    let bytes = account.export_bundle()?;
    // Write beside the target and rename, so a crash never leaves half a bundle behind.
    let tmp = args.out.with_extension("partial");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out).with_context(|| format!("moving the bundle to {}", args.out.display()))?;
    let e = Exported { file: args.out.display().to_string(), bytes: bytes.len() };
    out.print(&e, || {
        format!("Wrote {} ({} bytes). Carry it to the other side and run `weft import` there.", e.file, e.bytes)
    });
    Ok(())
}

pub fn import(home_dir: &Path, args: ImportArgs, out: &Output) -> Result<()> {
    let mut account = home::open(home_dir)?;
    let len = std::fs::metadata(&args.file).with_context(|| format!("reading {}", args.file.display()))?.len();
    if len > weft_core::bundle::MAX_BUNDLE_LEN as u64 {
        anyhow::bail!(
            "{} is {len} bytes; bundles are at most {} bytes",
            args.file.display(),
            weft_core::bundle::MAX_BUNDLE_LEN
        );
    }
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let r = account.import_bundle(&bytes)?;
    let imported = Imported {
        new_contacts: r.new_contacts.clone(),
        answered: r.answered.clone(),
        joined_groups: r.joined_groups.clone(),
        messages: r.messages.iter().map(Message::from).collect(),
        duplicates: r.duplicates,
        waiting: r.waiting,
        unreadable: r.unreadable,
        rejected: r.rejected,
    };
    out.print(&imported, || {
        let mut lines = Vec::new();
        for c in &r.new_contacts {
            lines.push(format!("Contact request from {c} (accept with `weft contact accept {c}`; verify with `weft contact verify {c}`)"));
        }
        for c in &r.answered {
            lines.push(format!("{c} answered: you are now contacts"));
        }
        for g in &r.joined_groups {
            lines.push(format!("Joined the group {g:?}"));
        }
        for m in &r.messages {
            lines.push(format!("{}  {}", m.conversation, message_line(m)));
        }
        lines.push(format!(
            "{} new messages, {} already known, {} waiting for keys, {} not for you, {} rejected",
            r.messages.iter().filter(|m| m.kind == "text").count(),
            r.duplicates,
            r.waiting,
            r.unreadable,
            r.rejected
        ));
        lines.join("\n")
    });
    Ok(())
}
