use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use weft_core::account::Account;

use crate::output::Output;

#[derive(clap::Args)]
pub struct Args {
    /// The name others see on your contact link
    #[arg(long)]
    name: String,
}

#[derive(Serialize)]
struct Created {
    home: String,
    name: String,
    link: String,
    fingerprint: String,
}

pub fn run(home_dir: &Path, args: Args, out: &Output) -> Result<()> {
    let passphrase = crate::passphrase::typed(true)?;
    let account = Account::create(home_dir, &passphrase, Some(&args.name))?;
    // A keyring entry left by an account that lived here before does not open this one.
    crate::passphrase::forget_stale(home_dir);
    let created = Created {
        home: home_dir.display().to_string(),
        name: args.name,
        link: account.card().to_link(),
        fingerprint: account.fingerprint(),
    };
    out.print(&created, || {
        format!(
            "Created the account {:?} in {}\n\nYour contact link (share it with people you trust):\n{}\n\nFingerprint: {}\n\nNext: `weft contact add LINK` with someone else's link; `weft passphrase remember` keeps the\npassphrase in the OS keyring.",
            created.name, created.home, created.link, created.fingerprint
        )
    });
    Ok(())
}
