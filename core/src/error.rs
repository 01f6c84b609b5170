//! The one error type of `weft-core`. Every variant says what went wrong in terms a caller can
//! act on; none carries secret material.

use std::path::PathBuf;

/// What can go wrong in the engine and the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bytes from outside ended before a field was complete.
    #[error("truncated input: {what} needs {needed} more bytes")]
    Truncated { what: &'static str, needed: usize },
    /// A declared length is larger than the protocol allows.
    #[error("{what} is {len} bytes, more than the limit of {max}")]
    TooLong { what: &'static str, len: usize, max: usize },
    /// A field holds a value the protocol does not define.
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: &'static str },
    /// Bytes follow the end of a structure that should have ended.
    #[error("{what} has {extra} unexpected trailing bytes")]
    TrailingBytes { what: &'static str, extra: usize },
    /// A version byte this build does not speak.
    #[error("{what} has version {found}; this build understands version {supported}")]
    UnsupportedVersion { what: &'static str, found: u8, supported: u8 },
    /// A link whose checksum does not match: usually a typo or a cut-off copy.
    #[error("the link's checksum does not match; copy the whole link again")]
    BadChecksum,
    /// A link that is not a Weft link of the expected kind.
    #[error("not a Weft {expected} link (it should start with {prefix})")]
    NotALink { expected: &'static str, prefix: &'static str },
    /// This device (or the one named) was revoked by its account.
    #[error("the device was revoked by its account's first device: it can no longer read or send")]
    Revoked,
    /// Something that is valid only for a while (a device link) is no longer.
    #[error("the {what} expired: make a new one")]
    Expired { what: &'static str },
    /// Authenticated decryption failed. Deliberately says nothing about why.
    #[error("decryption failed")]
    DecryptionFailed,
    /// A signature did not verify.
    #[error("invalid signature on {what}")]
    BadSignature { what: &'static str },
    /// An envelope for a topic of no group we are in (or no longer in).
    #[error("envelope for an unknown topic")]
    UnknownTopic,
    /// The sender is not (or no longer) a member of the group.
    #[error("sender is not a member of the group")]
    NotAMember,
    /// We are not (or no longer) a member of the group, or lack its current keys.
    #[error("you are not a member of this group (you were removed, or have not received its current keys)")]
    NotInGroup,
    /// The author of a membership change lacks the right to make it.
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    /// A reconciliation message for a session we do not hold: a stale message after both
    /// sides started the same reconciliation at once, or a peer's mistake.
    #[error("a reconciliation message for no reconciliation under way")]
    StaleReconciliation,
    /// A membership change that its author had no right to make where it says it was made
    /// (a non-admin, a removed device): refused, and stored nowhere.
    #[error("membership change refused: {0}")]
    VoidOperation(&'static str),
    /// A membership change names an earlier change that has not arrived yet: it waits.
    #[error("a membership change waits for an earlier one that has not arrived yet")]
    MissingParent,
    /// The key for a message is not known yet (its key share has not arrived).
    #[error("the sender's key for this message has not arrived yet")]
    MissingKey,
    /// The message key was already used: a replay, or a duplicate on another path.
    #[error("message already received")]
    Duplicate,
    /// A message claims a chain position too far ahead of what we have seen.
    #[error("message is {gap} steps ahead of its chain; at most {max} are accepted")]
    GapTooLarge { gap: u32, max: u32 },
    /// Reaching this message would skip more of its chain than is kept (or than a step may):
    /// it waits for the messages before it.
    #[error("the message is too far ahead of its chain to open without dropping the keys of earlier ones")]
    AheadOfChain,
    /// A lookup by name or id found nothing.
    #[error("no {what} named {name:?}")]
    NotFound { what: &'static str, name: String },
    /// A lookup by name matched several things: each candidate, with its id.
    #[error("{name:?} is ambiguous: it names {} {what}s ({}); use the id", candidates.len(), candidates.join(", "))]
    Ambiguous { what: &'static str, name: String, candidates: Vec<String> },
    /// Something already exists where the caller meant to create it.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A limit of the protocol or of this build was reached.
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The passphrase does not open this home's database.
    #[error("wrong passphrase for {0}")]
    WrongPassphrase(PathBuf),
    /// No account has been created in this home yet.
    #[error("no Weft account in {0}; create one with `weft init --name NAME`")]
    NoAccount(PathBuf),
    /// Another process has this home open.
    #[error(
        "another weft process is using {0} (a running `weft run` or `weft daemon`?); stop it, or wait and try again"
    )]
    HomeBusy(PathBuf),
    /// The database was written by a newer Weft.
    #[error("the database at {path} has schema version {found}, newer than this build's {supported}; upgrade weft")]
    SchemaTooNew { path: PathBuf, found: u32, supported: u32 },
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The file system reported an error.
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// There is no Bluetooth radio to use (no adapter, no system bus, no bluetoothd).
    #[error("no Bluetooth: {0}")]
    NoRadio(crate::mesh::radio::RadioUnavailable),
    /// The network transport failed to start or to listen.
    #[error("network: {0}")]
    Network(String),
    /// A group commit failed: none of the messages committed with it were stored.
    #[error("nothing was stored: the transaction for this message and others sent with it failed ({0})")]
    NotStored(String),
    /// The node was closed, or its account thread stopped.
    #[error("the node is closed")]
    Closed,
    /// A bug: something that should not happen did. Nothing was applied.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Entropy,
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
