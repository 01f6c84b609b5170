//! `weft panic`: erase this account now. No passphrase is asked (someone may be at the door): a
//! node running on the home erases it and exits, then this process erases whatever is left,
//! and takes the passphrase out of the OS keyring.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::control::client;
use crate::output::Output;
use crate::passphrase;
use crate::rpc::Request;
use crate::rpc::answer::Wiped;
use crate::rpc::request::Wipe;

#[derive(clap::Args)]
pub struct Args {
    /// Erase now (required: `weft panic` alone only says what it would do)
    #[arg(long)]
    now: bool,
}

pub fn panic(home_dir: &Path, args: Args, out: &Output) -> Result<()> {
    if !args.now {
        bail!(
            "`weft panic --now` erases this account's keys and database in {} at once, with no way back \
             (contacts, groups and every message); nothing was erased",
            home_dir.display()
        );
    }
    let started = Instant::now();
    let remembered = passphrase::is_remembered(home_dir);
    // A running node holds the keys in memory: it erases and exits. Whether it answered or not
    // (it may be gone before it can), what is left is erased here.
    let by_node = client::call(home_dir, &Request::Wipe(Wipe {})).ok().flatten().is_some();
    let here = weft_core::wipe::wipe_home(home_dir)?;
    let keyring =
        if remembered { passphrase::erase_from_keyring(home_dir).map_err(|e| e.to_string()) } else { Ok(false) };
    let report = Wiped {
        files: here.files,
        overwritten: here.overwritten,
        held: here.held,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    out.print(&report, || {
        let mut said = format!(
            "Erased in {} ms: the keys first, then the database ({} files{}). Nothing left here opens.",
            report.elapsed_ms,
            report.files,
            if by_node { ", and the running node, which exited" } else { "" }
        );
        match &keyring {
            Ok(true) => said.push_str(" The passphrase is out of the OS keyring."),
            Ok(false) => {}
            Err(e) => said.push_str(&format!(" The OS keyring may still hold the passphrase: {e}")),
        }
        said
    });
    Ok(())
}
