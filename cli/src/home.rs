//! Where the account lives and how its passphrase is obtained.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

pub const PASSPHRASE_ENV: &str = "WEFT_PASSPHRASE";

pub fn resolve(home: Option<PathBuf>) -> PathBuf {
    home.unwrap_or_else(|| dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("weft"))
}

/// The passphrase from the environment, or asked for on the terminal (twice when `confirm`).
pub fn passphrase(confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no passphrase: set {PASSPHRASE_ENV} or run weft in a terminal");
    }
    let first = rpassword::prompt_password("Passphrase: ").context("reading the passphrase")?;
    if confirm {
        let second = rpassword::prompt_password("Same passphrase again: ").context("reading the passphrase")?;
        if first != second {
            bail!("the two passphrases differ; nothing was created");
        }
    }
    Ok(first)
}
