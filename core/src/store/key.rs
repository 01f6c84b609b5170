//! The database key. SQLCipher is given a raw 256-bit key, so its own PBKDF2 is skipped: on the
//! CLI the key comes from the passphrase through Argon2id with parameters kept beside the
//! database; a mobile app passes a key from its keystore.

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use rusqlite::Connection;
use zeroize::Zeroizing;

use crate::crypto::Entropy;
use crate::error::{Error, Result};

pub const KDF_FILE: &str = "weft.kdf";
const KDF_MAGIC: &[u8; 8] = b"WEFTKDF1";

/// A raw SQLCipher key.
pub struct DatabaseKey(Option<Zeroizing<[u8; 32]>>);

impl DatabaseKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DatabaseKey(Some(Zeroizing::new(bytes)))
    }

    /// No encryption at rest. Only for tests that inspect the raw file (for example that
    /// erased keys are gone from it); never used by the CLI or the bindings.
    #[doc(hidden)]
    pub fn plaintext_for_tests() -> Self {
        DatabaseKey(None)
    }

    pub fn from_passphrase(passphrase: &str, params: &KdfParams) -> Result<Self> {
        let p = Params::new(params.memory_kib, params.iterations, params.lanes, Some(32))
            .map_err(|_| Error::Malformed { what: "key derivation parameters", why: "out of range" })?;
        let mut out = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
            .hash_password_into(passphrase.as_bytes(), &params.salt, &mut out[..])
            .map_err(|_| Error::Malformed { what: "passphrase", why: "rejected by Argon2" })?;
        Ok(DatabaseKey(Some(out)))
    }

    pub(super) fn apply(&self, conn: &Connection) -> Result<()> {
        let Some(key) = &self.0 else { return Ok(()) };
        // SQLCipher logs a wrong key to stderr on its own; the caller reports it as a typed error.
        conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
        let hex = Zeroizing::new(data_encoding::HEXLOWER.encode(&key[..]));
        // SQLCipher sets up its crypto provider when a connection is keyed and tears it down when
        // the last keyed connection closes; keying on one thread while the last connection closes
        // on another failed now and then ("An error occurred with PRAGMA key", seen in CI with
        // nodes starting and stopping in parallel). One keyed connection kept for the life of the
        // process keeps the provider up, and keying is done one connection at a time.
        let _one_at_a_time = provider_kept_up().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", hex.as_str()))?;
        Ok(())
    }
}

/// Argon2id parameters and salt, stored in the clear beside the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
    pub salt: [u8; 16],
}

impl KdfParams {
    /// Parameters for a new home: 64 MiB, 3 passes (OWASP's first recommendation).
    pub fn generate(entropy: &mut dyn Entropy) -> Result<Self> {
        let mut salt = [0u8; 16];
        entropy.fill(&mut salt)?;
        Ok(KdfParams { memory_kib: 64 * 1024, iterations: 3, lanes: 1, salt })
    }

    pub fn write(&self, home: &Path) -> Result<()> {
        let mut bytes = KDF_MAGIC.to_vec();
        for v in [self.memory_kib, self.iterations, self.lanes] {
            bytes.extend_from_slice(&v.to_be_bytes());
        }
        bytes.extend_from_slice(&self.salt);
        let path = home.join(KDF_FILE);
        std::fs::write(&path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    pub fn read(home: &Path) -> Result<Self> {
        let path = home.join(KDF_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoAccount(home.to_path_buf()));
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        if bytes.len() != 8 + 12 + 16 || &bytes[..8] != KDF_MAGIC {
            return Err(Error::Malformed { what: "key derivation file", why: "unknown format" });
        }
        let word = |i: usize| u32::from_be_bytes(bytes[8 + 4 * i..12 + 4 * i].try_into().expect("length checked"));
        let params = KdfParams {
            memory_kib: word(0),
            iterations: word(1),
            lanes: word(2),
            salt: bytes[20..36].try_into().expect("length checked"),
        };
        // A damaged or planted file must not make opening the home exhaust memory or time.
        if params.memory_kib > 4 * 1024 * 1024 || params.iterations > 64 || params.lanes > 16 {
            return Err(Error::Malformed { what: "key derivation file", why: "parameters out of range" });
        }
        Ok(params)
    }
}

/// A keyed in-memory connection that lives as long as the process (see [`DatabaseKey::apply`]),
/// behind the lock that keying takes.
fn provider_kept_up() -> &'static std::sync::Mutex<Option<Connection>> {
    static KEEPER: std::sync::OnceLock<std::sync::Mutex<Option<Connection>>> = std::sync::OnceLock::new();
    KEEPER.get_or_init(|| {
        let keeper = Connection::open_in_memory().ok().filter(|c| {
            c.execute_batch("PRAGMA cipher_log_level = NONE; PRAGMA key = 'keep the provider up';").is_ok()
                && c.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).is_ok()
        });
        std::sync::Mutex::new(keeper)
    })
}

/// A duress passphrase's file: its Argon2id (the home's parameters, a salt of its own), so that
/// typing it wipes the home instead of opening it (docs/DECISIONS.md, "The panic wipe").
pub const DURESS_FILE: &str = "weft.duress";
const DURESS_MAGIC: &[u8; 8] = b"WEFTDUR1";

/// Sets `passphrase` as the home's duress passphrase (replacing any earlier one).
pub fn set_duress(home: &Path, passphrase: &str, entropy: &mut dyn Entropy) -> Result<()> {
    let mut params = KdfParams::read(home)?;
    entropy.fill(&mut params.salt)?;
    let derived = DatabaseKey::from_passphrase(passphrase, &params)?;
    let Some(hash) = &derived.0 else { return Err(Error::Internal("a derived key is always some")) };
    let mut bytes = DURESS_MAGIC.to_vec();
    bytes.extend_from_slice(&params.salt);
    bytes.extend_from_slice(&hash[..]);
    let path = home.join(DURESS_FILE);
    std::fs::write(&path, bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Removes the home's duress passphrase; says whether there was one.
pub fn clear_duress(home: &Path) -> Result<bool> {
    let path = home.join(DURESS_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// Whether `passphrase` is the home's duress passphrase (false when none is set).
pub fn is_duress(home: &Path, passphrase: &str) -> Result<bool> {
    let path = home.join(DURESS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    if bytes.len() != 8 + 16 + 32 || &bytes[..8] != DURESS_MAGIC {
        return Err(Error::Malformed { what: "duress file", why: "unknown format" });
    }
    let mut params = KdfParams::read(home)?;
    params.salt = bytes[8..24].try_into().expect("length checked");
    let derived = DatabaseKey::from_passphrase(passphrase, &params)?;
    let Some(hash) = &derived.0 else { return Ok(false) };
    // Constant time: how much of it matched says nothing.
    Ok(hash.iter().zip(&bytes[24..]).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
}
