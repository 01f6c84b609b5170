use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::backend;
use crate::output::Output;
use crate::rpc::request::{ReplaceLink, ShowIdentity};

#[derive(clap::Args)]
pub struct Args {
    /// Print only the bare link (for scripts and copy-paste)
    #[arg(long)]
    link: bool,
    /// Leave out the QR code
    #[arg(long)]
    no_qr: bool,
    /// Replace the link first (one that leaked): requests to the old one are no longer opened,
    /// your contacts get the new one, your fingerprint stays (the account's first device only)
    #[arg(long)]
    new_link: bool,
}

/// What `weft --json id` prints: the identity without its QR code.
#[derive(Serialize)]
struct Shown<'a> {
    name: Option<&'a str>,
    link: &'a str,
    fingerprint: &'a str,
    account: &'a str,
}

pub fn run(home_dir: &Path, args: Args, out: &Output) -> Result<()> {
    let id = match args.new_link {
        true => backend::call(home_dir, ReplaceLink {})?,
        false => backend::call(home_dir, ShowIdentity {})?,
    };
    if args.link && !out.json {
        println!("{}", id.link);
        return Ok(());
    }
    let shown = Shown { name: id.name.as_deref(), link: &id.link, fingerprint: &id.fingerprint, account: &id.account };
    out.print(&shown, || {
        let mut s = format!(
            "Name:        {}\nFingerprint: {}\nLink:        {}\n",
            id.name.as_deref().unwrap_or("(none)"),
            id.fingerprint,
            id.link
        );
        if !args.no_qr {
            s.push('\n');
            s.push_str(&id.qr);
        }
        s
    });
    Ok(())
}
