use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::home;
use crate::output::Output;

#[derive(clap::Args)]
pub struct Args {
    /// Print only the bare link (for scripts and copy-paste)
    #[arg(long)]
    link: bool,
    /// Leave out the QR code
    #[arg(long)]
    no_qr: bool,
}

#[derive(Serialize)]
struct Identity {
    name: Option<String>,
    link: String,
    fingerprint: String,
    account: String,
}

pub fn run(home_dir: &Path, args: Args, out: &Output) -> Result<()> {
    let account = home::open(home_dir)?;
    let card = account.card();
    let id = Identity {
        name: account.name().map(str::to_owned),
        link: card.to_link(),
        fingerprint: account.fingerprint(),
        account: crate::output::hex(&account.account_public()),
    };
    if args.link && !out.json {
        println!("{}", id.link);
        return Ok(());
    }
    out.print(&id, || {
        let mut s = format!(
            "Name:        {}\nFingerprint: {}\nLink:        {}\n",
            id.name.as_deref().unwrap_or("(none)"),
            id.fingerprint,
            id.link
        );
        if !args.no_qr {
            s.push('\n');
            s.push_str(&card.to_qr_text());
        }
        s
    });
    Ok(())
}
