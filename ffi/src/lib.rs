//! `weft-ffi`: Weft's core for Kotlin, Swift and Python, through uniffi.
//!
//! - [`WeftNode`] (`open_node`): a running account home, opened with a database key the app
//!   supplies (from the Android Keystore or the iOS Keychain): network, contacts, groups, send,
//!   history, bundles, status; events through an [`EventListener`] the app implements; a
//!   Bluetooth radio the app drives through [`RadioDriver`] and [`RadioHandle`] (see `node`).
//! - [`WeftAccount`]: the identity alone (link, fingerprint, QR text) without running a node.
//!
//! The core never knows it is being bound: everything here is a thin translation.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use weft_core::account::{Account, system_clock};
use weft_core::crypto::OsEntropy;
use weft_core::identity::{ContactCard, fingerprint, safety_number};
use weft_core::store::DatabaseKey;

mod devices;
mod enums;
mod host_wakes;
mod listeners;
mod logging;
mod node;

pub use devices::{Device, LinkRequest, WeftJoin};
pub use enums::{ContactStatus, DeliveryState, MessageKind, Via};
pub use logging::{LogLevel, LogListener, LogRecord, clear_log_listener, set_log_listener};
pub use node::{
    CallbackError, Contact, Conversation, Event, EventListener, Member, Message, NetworkConfig, RadioDriver,
    RadioError, RadioHandle, Status, Subscription, SyncReport, WeftNode, open_node,
};

uniffi::setup_scaffolding!();

/// Every error the bindings raise: an enum whose variants say what went wrong, each with its
/// readable text in `detail` (a variant without a field reached Kotlin with an empty message).
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum WeftError {
    #[error("the database key does not open this home: {detail}")]
    WrongKey { detail: String },
    #[error("no account in this home: {detail}")]
    NoAccount { detail: String },
    #[error("this home is open elsewhere: {detail}")]
    HomeBusy { detail: String },
    #[error("already exists: {detail}")]
    AlreadyExists { detail: String },
    #[error("invalid input: {detail}")]
    InvalidInput { detail: String },
    #[error("storage failed: {detail}")]
    Storage { detail: String },
    #[error("the node is closed: {detail}")]
    Closed { detail: String },
    #[error("not found: {detail}")]
    NotFound { detail: String },
    #[error("network: {detail}")]
    Network { detail: String },
    #[error("internal error: {detail}")]
    Internal { detail: String },
    /// The account revoked this device: it reads and sends nothing more.
    #[error("this device was revoked: {detail}")]
    Revoked { detail: String },
}

impl From<weft_core::Error> for WeftError {
    fn from(e: weft_core::Error) -> Self {
        use weft_core::Error as E;
        match e {
            E::WrongPassphrase(_) => WeftError::WrongKey { detail: e.to_string() },
            E::NoAccount(_) => WeftError::NoAccount { detail: e.to_string() },
            E::HomeBusy(_) => WeftError::HomeBusy { detail: e.to_string() },
            E::AlreadyExists(what) => WeftError::AlreadyExists { detail: what },
            E::Database(_) | E::Io { .. } | E::SchemaTooNew { .. } => WeftError::Storage { detail: e.to_string() },
            E::Closed => WeftError::Closed { detail: e.to_string() },
            E::NotFound { .. } => WeftError::NotFound { detail: e.to_string() },
            E::Network(_) | E::NoRadio(_) => WeftError::Network { detail: e.to_string() },
            E::Entropy | E::Internal(_) => WeftError::Internal { detail: e.to_string() },
            E::Revoked => WeftError::Revoked { detail: e.to_string() },
            other => WeftError::InvalidInput { detail: other.to_string() },
        }
    }
}

/// The version of the Weft core inside these bindings.
#[uniffi::export]
pub fn weft_version() -> String {
    weft_core::VERSION.to_owned()
}

/// What a contact link says.
#[derive(uniffi::Record)]
pub struct ContactLink {
    pub name: Option<String>,
    /// The account key, in lowercase hex.
    pub account: String,
    pub fingerprint: String,
}

/// Parses and checks a `weft://contact/...` link.
#[uniffi::export]
pub fn parse_contact_link(link: String) -> Result<ContactLink, WeftError> {
    let card = ContactCard::from_link(&link)?;
    Ok(ContactLink { name: card.name.clone(), account: hex(&card.account), fingerprint: fingerprint(&card.account) })
}

/// This account's identity, as shown to its owner.
#[derive(uniffi::Record)]
pub struct Identity {
    pub name: Option<String>,
    pub link: String,
    pub fingerprint: String,
    pub account: String,
    /// The link as a QR code drawn with Unicode block characters (for a terminal).
    pub qr_text: String,
    /// The link as a QR code for an app to draw (`None` only if the link cannot fit one).
    pub qr: Option<QrCode>,
}

/// A QR code as data: draw `modules` (row by row, `width` × `width`, true for dark) with a
/// light margin of four modules, or show `svg` as it is. `payload` is what it encodes: the
/// contact link, upper-cased for QR's denser alphanumeric mode (links ignore case).
#[derive(uniffi::Record)]
pub struct QrCode {
    pub payload: String,
    pub width: u32,
    pub modules: Vec<bool>,
    pub svg: String,
}

/// An opened account home. Calls are safe from any thread.
#[derive(uniffi::Object)]
pub struct WeftAccount {
    inner: Mutex<Account>,
}

fn database_key(key: Vec<u8>) -> Result<DatabaseKey, WeftError> {
    let bytes: [u8; 32] =
        key.try_into().map_err(|_| WeftError::InvalidInput { detail: "the database key must be 32 bytes".into() })?;
    Ok(DatabaseKey::from_bytes(bytes))
}

#[uniffi::export]
impl WeftAccount {
    /// Creates an account in `home` (a directory the app owns), its database encrypted with
    /// `database_key` (32 bytes from the platform keystore).
    #[uniffi::constructor]
    pub fn create(home: String, database_key_bytes: Vec<u8>, name: Option<String>) -> Result<Arc<Self>, WeftError> {
        let key = database_key(database_key_bytes)?;
        let account =
            Account::create_with_key(&PathBuf::from(home), &key, name.as_deref(), Box::new(OsEntropy), system_clock())?;
        Ok(Arc::new(WeftAccount { inner: Mutex::new(account) }))
    }

    /// Opens an existing account home.
    #[uniffi::constructor]
    pub fn open(home: String, database_key_bytes: Vec<u8>) -> Result<Arc<Self>, WeftError> {
        let key = database_key(database_key_bytes)?;
        let account = Account::open_with_key(&PathBuf::from(home), &key, Box::new(OsEntropy), system_clock())?;
        Ok(Arc::new(WeftAccount { inner: Mutex::new(account) }))
    }

    pub fn identity(&self) -> Result<Identity, WeftError> {
        Ok(identity_of(&*self.lock()?))
    }

    /// The safety number this account shares with the holder of `link`.
    pub fn safety_number_with(&self, link: String) -> Result<String, WeftError> {
        let card = ContactCard::from_link(&link)?;
        Ok(safety_number(&self.lock()?.account_public(), &card.account))
    }
}

impl WeftAccount {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Account>, WeftError> {
        self.inner.lock().map_err(|_| WeftError::Internal { detail: "an earlier call panicked".into() })
    }
}

pub(crate) fn identity_of(account: &Account) -> Identity {
    let card = account.card();
    Identity {
        name: account.name().map(str::to_owned),
        link: card.to_link(),
        fingerprint: account.fingerprint(),
        account: hex(&account.account_public()),
        qr_text: card.to_qr_text(),
        qr: card.to_qr().map(|q| QrCode { payload: q.payload, width: q.width as u32, modules: q.dark, svg: q.svg }),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
