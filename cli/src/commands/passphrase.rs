//! `weft passphrase`: keep the account's passphrase in the OS keyring (Keychain, Credential
//! Manager, GNOME Keyring or KWallet), so weft stops asking for it.

use std::path::Path;

use anyhow::Result;
use serde_json::json;
use weft_core::account::Account;

use crate::output::Output;
use crate::passphrase;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Check the passphrase (from WEFT_PASSPHRASE, or typed) and keep it in the OS keyring
    Remember,
    /// Remove this home's passphrase from the OS keyring; weft asks for it again
    Forget,
    /// Say whether this home's passphrase comes from the OS keyring
    Status,
    /// Set a duress passphrase: typed where the passphrase is asked, it erases the account
    /// instead of opening it (from WEFT_DURESS_PASSPHRASE, or typed twice)
    ///
    /// Whoever forces you to open weft sees an empty home. What it cannot do: stop someone who
    /// copied the disk first, or hide that a duress passphrase is set (its file is beside the
    /// database). Typed by mistake, it erases the account all the same.
    Duress {
        /// Remove the duress passphrase instead
        #[arg(long)]
        remove: bool,
    },
}

pub fn run(home: &Path, command: Command, out: &Output) -> Result<()> {
    if !home.join(weft_core::store::DB_FILE).exists() {
        return Err(weft_core::Error::NoAccount(home.to_path_buf()).into());
    }
    match command {
        Command::Remember => {
            let typed = passphrase::typed(false)?;
            // Only a passphrase that opens the account goes in; a daemon on the home may keep running.
            Account::check_passphrase(home, &typed)?;
            passphrase::remember(home, &typed)?;
            out.print(&json!({ "remembered": true }), || {
                "The passphrase is in the OS keyring: weft will not ask for it on this machine. \
                 `weft passphrase forget` undoes this."
                    .to_owned()
            });
        }
        Command::Forget => {
            let removed = passphrase::forget(home)?;
            out.print(&json!({ "removed": removed }), || {
                if removed {
                    "weft no longer takes the passphrase from the OS keyring; it will ask for it again.".to_owned()
                } else {
                    "The OS keyring held no passphrase for this home.".to_owned()
                }
            });
        }
        Command::Duress { remove: true } => {
            let removed = weft_core::store::clear_duress(home)?;
            out.print(&json!({ "removed": removed }), || match removed {
                true => "The duress passphrase is removed.".to_owned(),
                false => "This home had no duress passphrase.".to_owned(),
            });
        }
        Command::Duress { remove: false } => {
            let duress = match std::env::var("WEFT_DURESS_PASSPHRASE") {
                Ok(p) if !p.is_empty() => p,
                _ => {
                    let first = rpassword::prompt_password("Duress passphrase (it erases the account): ")?;
                    let second = rpassword::prompt_password("Same duress passphrase again: ")?;
                    anyhow::ensure!(first == second, "the two passphrases differ; nothing was set");
                    first
                }
            };
            anyhow::ensure!(!duress.is_empty(), "a duress passphrase cannot be empty");
            // The real passphrase is tried first, so one that opens the account would never erase it.
            if Account::is_account_passphrase(home, &duress)? {
                anyhow::bail!("that is the account's passphrase: choose another one for duress");
            }
            weft_core::store::set_duress(home, &duress, &mut weft_core::crypto::OsEntropy)?;
            out.print(&json!({ "duress": true }), || {
                "Duress passphrase set: typed where weft asks for the passphrase, it erases this account \
                 instead of opening it. `weft passphrase duress --remove` takes it away."
                    .to_owned()
            });
        }
        Command::Status => {
            let remembered = passphrase::is_remembered(home);
            out.print(&json!({ "remembered": remembered }), || {
                if remembered {
                    "The passphrase comes from the OS keyring (unless WEFT_PASSPHRASE is set).".to_owned()
                } else {
                    "The passphrase comes from WEFT_PASSPHRASE or is asked for; `weft passphrase remember` \
                     keeps it in the OS keyring."
                        .to_owned()
                }
            });
        }
    }
    Ok(())
}
