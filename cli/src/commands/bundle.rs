use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::backend;
use crate::output::MessageLines;
use crate::output::Output;
use crate::rpc::request::{AbsolutePath, Export, Import};

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

/// The path as the daemon must see it: absolute (its working directory is not ours), and as
/// text, which JSON needs.
fn absolute(path: &Path) -> Result<AbsolutePath> {
    let path: PathBuf = std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    path.to_str()
        .and_then(|text| AbsolutePath::new(text.to_owned()))
        .ok_or_else(|| anyhow::anyhow!("{} is not valid UTF-8; use another file name", path.display()))
}

pub fn export(home_dir: &Path, args: ExportArgs, out: &Output) -> Result<()> {
    let path = absolute(&args.out)?;
    let exported = backend::call(home_dir, Export { path })?;
    out.print(&exported, || {
        format!(
            "Wrote {} ({} bytes). Carry it to the other side and run `weft import` there.",
            exported.file, exported.bytes
        )
    });
    Ok(())
}

pub fn import(home_dir: &Path, args: ImportArgs, out: &Output) -> Result<()> {
    let path = absolute(&args.file)?;
    let r = {
        let bar = crate::progress::Bar::new("importing", "envelopes", out.json);
        backend::import(home_dir, Import { path, progress: true }, &mut |done, total| bar.set(done, total))?
    };
    out.print(&r, || {
        let mut lines = Vec::new();
        for c in &r.new_contacts {
            lines.push(format!("Contact request from {c} (accept with `weft contact accept {c}`; verify with `weft contact verify {c}`)"));
        }
        if !r.new_contacts.is_empty() && r.unreadable > 0 {
            // A stranger's conversation is not read before it is accepted.
            lines.push("What they wrote is read once you accept them: import this file again then".to_owned());
        }
        for c in &r.answered {
            lines.push(format!("{c} answered: you are now contacts"));
        }
        for g in &r.joined_groups {
            lines.push(format!("Joined the group {g:?}"));
        }
        for m in &r.messages {
            lines.push(format!("{}  {}", m.conversation, m.line()));
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
