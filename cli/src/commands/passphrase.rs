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
