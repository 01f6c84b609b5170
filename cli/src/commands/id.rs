use std::path::Path;

use anyhow::Result;
use serde_json::json;

use crate::backend;
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

pub fn run(home_dir: &Path, args: Args, out: &Output) -> Result<()> {
    let mut id = backend::call(home_dir, "identity", json!({}))?;
    let qr = id.as_object_mut().and_then(|o| o.remove("qr")).and_then(|q| q.as_str().map(str::to_owned));
    let link = id["link"].as_str().unwrap_or_default().to_owned();
    if args.link && !out.json {
        println!("{link}");
        return Ok(());
    }
    out.print(&id, || {
        let mut s = format!(
            "Name:        {}\nFingerprint: {}\nLink:        {link}\n",
            id["name"].as_str().unwrap_or("(none)"),
            id["fingerprint"].as_str().unwrap_or_default(),
        );
        if !args.no_qr
            && let Some(qr) = qr
        {
            s.push('\n');
            s.push_str(&qr);
        }
        s
    });
    Ok(())
}
