//! The panic wipe: an account's home erased so that nothing in it opens again, in well under a
//! second. What makes it final is erasing the key material, not the bulk: the passphrase's salt
//! (`weft.kdf`) goes first, and with it the passphrase opens nothing; the database's first page
//! (SQLCipher's salt, which an app's raw key needs too) goes next. Then, within a time budget,
//! the rest of each file is overwritten, and every file is unlinked. Flash storage keeps old
//! blocks where a filesystem cannot reach them: overwriting is a best effort, the erased salts
//! are the guarantee (docs/DECISIONS.md, "The panic wipe").

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The files of a home, key material first. Only these are touched: a home given by mistake
/// (a user's own home directory) loses nothing else.
const FILES: &[&str] = &[
    crate::store::KDF_FILE,
    crate::store::DB_FILE,
    crate::store::DURESS_FILE,
    "weft.db-wal",
    "weft.db-journal",
    "weft.db-shm",
    "passphrase-in-keyring",
    "weft.lock",
    "weft.sock",
    "relay/relay.key",
    "relay/relay.db",
    "relay/relay.db-wal",
    "relay/relay.db-shm",
];

/// How long overwriting the bulk may take, beyond the key material (which is always
/// overwritten whole).
const OVERWRITE_BUDGET: Duration = Duration::from_millis(400);
/// Bytes at the start of each file overwritten whatever the budget: the KDF file whole, a
/// database's header and first pages.
const ALWAYS_OVERWRITTEN: u64 = 64 * 1024;

/// What a wipe did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wiped {
    /// Files erased.
    pub files: usize,
    /// Bytes overwritten before the files were unlinked.
    pub overwritten: u64,
    /// Bytes the files held, all of them unlinked.
    pub held: u64,
    pub elapsed: Duration,
}

/// Erases the account (and relay) files of `home`. A file that cannot be overwritten is still
/// unlinked; the first error is returned only after every file was tried.
pub fn wipe_home(home: &Path) -> Result<Wiped> {
    let started = Instant::now();
    let mut wiped = Wiped::default();
    let mut first_error = None;
    for name in FILES {
        let path = home.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            continue;
        }
        if !meta.is_file() {
            // A socket or a link: unlinked, nothing to overwrite.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        wiped.held += meta.len();
        let budget_left = OVERWRITE_BUDGET.saturating_sub(started.elapsed());
        match overwrite(&path, meta.len(), budget_left) {
            Ok(n) => wiped.overwritten += n,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        match std::fs::remove_file(&path) {
            Ok(()) => wiped.files += 1,
            Err(e) => {
                first_error.get_or_insert(Error::io(format!("removing {}", path.display()), e));
            }
        }
    }
    let _ = std::fs::remove_dir(home.join("relay"));
    sync_dir(home);
    wiped.elapsed = started.elapsed();
    match first_error {
        Some(e) => Err(e),
        None => Ok(wiped),
    }
}

/// Overwrites `len` bytes of `path` from its start: the first [`ALWAYS_OVERWRITTEN`] always,
/// the rest while `budget` lasts; synced to the disk. Returns the bytes overwritten.
fn overwrite(path: &PathBuf, len: u64, budget: Duration) -> Result<u64> {
    let io = |e| Error::io(format!("overwriting {}", path.display()), e);
    let started = Instant::now();
    let mut file = std::fs::OpenOptions::new().write(true).open(path).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let chunk = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        if done >= ALWAYS_OVERWRITTEN && started.elapsed() >= budget {
            break;
        }
        let n = (len - done).min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n]).map_err(io)?;
        done += n as u64;
    }
    file.sync_data().map_err(io)?;
    Ok(done)
}

/// Makes the unlinks durable: a power cut right after must not bring the names back.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_weft_files_go_and_key_material_is_overwritten_first() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(home.path().join(crate::store::KDF_FILE), [7u8; 64]).unwrap();
        std::fs::write(home.path().join(crate::store::DB_FILE), vec![9u8; 3 << 20]).unwrap();
        std::fs::write(home.path().join("notes.txt"), b"not weft's").unwrap();
        let wiped = wipe_home(home.path()).unwrap();
        assert_eq!(wiped.files, 2);
        assert_eq!(wiped.held, 64 + (3 << 20));
        assert!(wiped.overwritten >= 64 + ALWAYS_OVERWRITTEN);
        assert!(!home.path().join(crate::store::KDF_FILE).exists());
        assert!(!home.path().join(crate::store::DB_FILE).exists());
        assert_eq!(std::fs::read(home.path().join("notes.txt")).unwrap(), b"not weft's");
        // Nothing there: a second wipe does nothing, and fails nothing.
        assert_eq!(wipe_home(home.path()).unwrap().files, 0);
    }
}
