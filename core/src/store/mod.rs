//! The encrypted store: one SQLite file per account home, encrypted with SQLCipher under a key
//! the caller supplies (derived from a passphrase with Argon2id on the CLI, or handed over by a
//! mobile app from its keystore). It is the only owner of durable state; every state change is
//! one transaction, committed with `synchronous=FULL` before the caller reports success.

mod key;
mod rows;
mod schema;

use std::path::{Path, PathBuf};

use rusqlite::OpenFlags;

pub use key::{DURESS_FILE, DatabaseKey, KDF_FILE, KdfParams, clear_duress, is_duress, set_duress};
pub use rows::{
    AttachmentRow, ChangeKind, ChangeRow, ContactRow, ContactStatus, EnvelopeStatus, IdentityRow, MessageRow,
    OutboxEntry, ParkedKey, ParkedPlace, Rows,
};
pub use rusqlite::Connection;
pub use schema::SCHEMA_VERSION;

use crate::error::{Error, Result};

pub const DB_FILE: &str = "weft.db";

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Whether a batch is open (see [`Store::begin_batch`]).
    batch: bool,
    /// Whether a batch lost writes it had already reported as done (see [`Store::take_batch_broken`]).
    batch_broken: bool,
    /// A checkpoint was asked for inside a batch: it runs when the batch ends.
    checkpoint_due: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Creates a new database at `path`; fails if one exists.
    pub fn create(path: &Path, key: &DatabaseKey) -> Result<Store> {
        if path.exists() {
            return Err(Error::AlreadyExists(format!("a database at {}", path.display())));
        }
        Self::open_with(path, key, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)
    }

    /// Opens an existing database; a wrong key is [`Error::WrongPassphrase`] and writes nothing.
    pub fn open(path: &Path, key: &DatabaseKey) -> Result<Store> {
        if !path.exists() {
            return Err(Error::NoAccount(path.parent().unwrap_or(path).to_path_buf()));
        }
        Self::open_with(path, key, OpenFlags::SQLITE_OPEN_READ_WRITE)
    }

    /// Whether `key` opens the database at `path`, read-only: it writes nothing and may run
    /// while another process has the database open.
    pub fn check_key(path: &Path, key: &DatabaseKey) -> Result<()> {
        if !path.exists() {
            return Err(Error::NoAccount(path.parent().unwrap_or(path).to_path_buf()));
        }
        Self::keyed(path, key, OpenFlags::SQLITE_OPEN_READ_ONLY).map(drop)
    }

    /// A connection with the key applied and checked.
    fn keyed(path: &Path, key: &DatabaseKey, flags: OpenFlags) -> Result<Connection> {
        // Keying failed about once in a few hundred CI runs with nodes starting in parallel,
        // inside SQLCipher's crypto provider (never with a wrong key: that shows at the first
        // read below). A failed key leaves the connection in an error state, so each attempt
        // takes a fresh one.
        let mut attempt = 0;
        let conn = loop {
            let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
            match key.apply(&conn) {
                Ok(()) => break conn,
                Err(e) if attempt >= 2 => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "keying the database failed; trying again");
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        };
        // The first read is where SQLCipher finds out whether the key is right.
        match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => Ok(conn),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::NotADatabase => {
                Err(Error::WrongPassphrase(path.to_path_buf()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn open_with(path: &Path, key: &DatabaseKey, flags: OpenFlags) -> Result<Store> {
        let conn = Self::keyed(path, key, flags)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Freed pages are zeroed, so erased keys do not linger in the file.
        conn.pragma_update(None, "secure_delete", "ON")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            batch: false,
            batch_broken: false,
            checkpoint_due: Default::default(),
        };
        schema::migrate(&mut store.conn, path)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SQLite's check of the whole file (`PRAGMA integrity_check`): the problems it found,
    /// none when the file is sound. It reads every page: the crash tests run it after each
    /// kill; nothing on a user's path does.
    pub fn integrity_problems(&self) -> Result<Vec<String>> {
        let mut statement = self.conn.prepare("PRAGMA integrity_check")?;
        let lines = statement.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(lines.into_iter().filter(|l| l != "ok").collect())
    }

    /// Reads outside a transaction.
    pub fn read(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in one transaction; commits only if it succeeds, durably. Inside a batch, the
    /// batch so far is committed first and `f` gets a durable commit of its own (which syncs
    /// the log, the batch's earlier writes included); then the batch goes on.
    pub fn write<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.batch {
            if let Err(e) = self.end_batch() {
                // The batch's earlier writes are gone; whoever opened it must know.
                self.batch_broken = true;
                return Err(e);
            }
            let out = self.write(f);
            // Should reopening fail, the rest of the batch commits write by write: slower, same data.
            let _ = self.begin_batch();
            return out;
        }
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Opens a batch: relaxed writes until [`Store::end_batch`] share one commit (one write of
    /// the log for all), each still atomic on its own (a savepoint). Durable writes inside a
    /// batch still get their own durable commit.
    pub fn begin_batch(&mut self) -> Result<()> {
        if self.batch {
            return Ok(());
        }
        // The safety level cannot change inside a transaction: set it first.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            self.conn.pragma_update(None, "synchronous", "FULL")?;
            return Err(e.into());
        }
        self.batch = true;
        Ok(())
    }

    /// Whether writes of the last batch that were reported as done were rolled back after all
    /// (a commit inside the batch failed); clears the mark. The caller must then reload.
    pub fn take_batch_broken(&mut self) -> bool {
        std::mem::take(&mut self.batch_broken)
    }

    /// Rolls an open batch back (after a panic in the middle of one).
    pub fn abort_batch(&mut self) {
        if std::mem::take(&mut self.batch) {
            let _ = self.conn.execute_batch("ROLLBACK");
            let _ = self.conn.pragma_update(None, "synchronous", "FULL");
        }
    }

    /// Commits a batch. On failure nothing of it is stored, and the caller must reload what it
    /// keeps in memory.
    pub fn end_batch(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.batch) {
            return Ok(());
        }
        let committed = self.conn.execute_batch("COMMIT");
        if committed.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        committed?;
        // The batch is committed whatever the checkpoint does: a failure is logged, and the
        // next checkpoint folds the log in.
        if self.checkpoint_due.swap(false, std::sync::atomic::Ordering::Relaxed)
            && let Err(e) = self.checkpoint()
        {
            tracing::warn!(%e, "a checkpoint asked for inside a batch failed");
        }
        Ok(())
    }

    /// Like [`Store::write`], but the commit does not wait for the disk (`synchronous=NORMAL`):
    /// still atomic, and a crash of the process loses nothing, but a power cut may roll the
    /// database back to an earlier commit. Only for changes that are safe to lose that way:
    /// what a peer can hand us again (received envelopes) or what is only bookkeeping (the
    /// outbox, peer addresses). Never for anything we sign, seal or acknowledge: the next
    /// ordinary commit syncs the log, these frames included, so order is kept.
    pub fn write_relaxed<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        if self.batch {
            let savepoint = self.conn.savepoint()?;
            let out = f(&savepoint)?;
            savepoint.commit()?;
            return Ok(out);
        }
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let out = self.write(f);
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        out
    }

    /// Folds the write-ahead log back into the database and truncates it, so that superseded
    /// page images (old chain keys among them) leave the disk.
    /// Inside a batch it waits for the batch's end (a deleted message's text stays in the log
    /// until then: a bundle's import, a network round).
    pub fn checkpoint(&self) -> Result<()> {
        if self.batch {
            self.checkpoint_due.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(());
        }
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.checkpoint();
    }
}
