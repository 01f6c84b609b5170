//! The passphrase that opens an account: from `WEFT_PASSPHRASE`, else from the OS keyring when
//! `weft passphrase remember` put it there, else asked for on the terminal.
//!
//! The keyring is consulted only for a home whose owner asked for it (a marker file in the
//! home says so): a machine without a keyring, or a user who never opted in, never waits on
//! one. The keyring entry is named after the home's full path, so each home has its own.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub const PASSPHRASE_ENV: &str = "WEFT_PASSPHRASE";

/// The keyring's service name for every Weft entry.
const KEYRING_SERVICE: &str = "weft";
/// Present in a home whose passphrase is in the keyring; holds no secret.
const REMEMBERED_MARKER: &str = "passphrase-in-keyring";

/// The passphrase of the existing account in `home`.
pub fn for_home(home: &Path) -> Result<String> {
    if !home.join(weft_core::store::DB_FILE).exists() {
        return Err(weft_core::Error::NoAccount(home.to_path_buf()).into());
    }
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(p);
    }
    if is_remembered(home) {
        match entry(home).and_then(|e| e.get_password().map_err(keyring_error)) {
            Ok(p) => return Ok(p),
            Err(e) if std::io::stdin().is_terminal() => {
                eprintln!("weft: the OS keyring did not give the passphrase ({e:#}); asking instead.");
            }
            Err(e) => {
                bail!("the passphrase is remembered in the OS keyring, which did not give it: {e:#}");
            }
        }
    }
    prompt(false)
}

/// The passphrase from the environment, else typed (twice when `confirm`, for a new account);
/// never the keyring.
pub fn typed(confirm: bool) -> Result<String> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(p);
    }
    prompt(confirm)
}

fn prompt(confirm: bool) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "no passphrase: set {PASSPHRASE_ENV}, run weft in a terminal, or keep it in the OS keyring with \
             `weft passphrase remember`"
        );
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

/// Whether the owner of `home` asked for its passphrase to come from the keyring.
pub fn is_remembered(home: &Path) -> bool {
    home.join(REMEMBERED_MARKER).exists()
}

/// Puts `passphrase` in the OS keyring for `home` (the caller has checked it opens the account).
pub fn remember(home: &Path, passphrase: &str) -> Result<()> {
    entry(home)?.set_password(passphrase).map_err(keyring_error)?;
    std::fs::write(home.join(REMEMBERED_MARKER), b"")
        .with_context(|| format!("writing {}", home.join(REMEMBERED_MARKER).display()))?;
    Ok(())
}

/// Stops taking a new account's passphrase from an entry an earlier account in the same home
/// left; the entry itself is replaced by the next `weft passphrase remember`.
pub fn forget_stale(home: &Path) {
    let _ = std::fs::remove_file(home.join(REMEMBERED_MARKER));
}

/// Takes `home`'s passphrase out of the keyring; says whether there was one.
pub fn forget(home: &Path) -> Result<bool> {
    let marker = is_remembered(home);
    let removed = match entry(home)?.delete_credential() {
        Ok(()) => true,
        Err(keyring::Error::NoEntry) => false,
        // Weft stops asking the keyring all the same; what it may still hold is said.
        Err(e @ (keyring::Error::NoStorageAccess(_) | keyring::Error::PlatformFailure(_))) if marker => {
            eprintln!("weft: the OS keyring did not answer, so it may still hold the passphrase ({e})");
            false
        }
        Err(e) => return Err(keyring_error(e)),
    };
    if marker {
        std::fs::remove_file(home.join(REMEMBERED_MARKER))
            .with_context(|| format!("removing {}", home.join(REMEMBERED_MARKER).display()))?;
    }
    Ok(removed || marker)
}

/// The panic wipe's part: takes the passphrase out of the OS keyring, if it is there, saying
/// nothing on the way (the files are already gone; a keyring that does not answer is reported).
pub fn erase_from_keyring(home: &Path) -> Result<bool> {
    match entry(home)?.delete_credential() {
        Ok(()) => Ok(true),
        Err(keyring::Error::NoEntry) => Ok(false),
        Err(e) => Err(keyring_error(e)),
    }
}

/// The keyring entry of `home`: one per home, named by its full path.
fn entry(home: &Path) -> Result<keyring::Entry> {
    let full: PathBuf = std::fs::canonicalize(home).with_context(|| format!("finding {}", home.display()))?;
    let user = full.to_str().with_context(|| format!("{} is not valid UTF-8", full.display()))?;
    keyring::Entry::new(KEYRING_SERVICE, user).map_err(keyring_error)
}

/// What went wrong with the keyring, and what to do about it.
fn keyring_error(e: keyring::Error) -> anyhow::Error {
    match e {
        keyring::Error::NoStorageAccess(_) | keyring::Error::PlatformFailure(_) => anyhow::anyhow!(
            "no OS keyring answered ({e}). On Linux that is a Secret Service such as GNOME Keyring or KWallet, \
             in a desktop session; unlock it, or set {PASSPHRASE_ENV}"
        ),
        keyring::Error::NoEntry => anyhow::anyhow!(
            "the OS keyring has no passphrase for this home; run `weft passphrase remember` again, or set \
             {PASSPHRASE_ENV}"
        ),
        other => anyhow::anyhow!("the OS keyring failed: {other}"),
    }
}
