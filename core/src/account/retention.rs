//! How long a conversation's messages are kept: the basis of disappearing messages. What
//! outlives it is deleted, and the write-ahead log is folded back in so that deleted bodies
//! (and used keys) leave the file, not only the tables.

use super::Account;
use crate::error::{Error, Result};
use crate::store::Rows;

/// How often messages past their retention are looked for (as the node goes about its work):
/// the finest retention worth setting is a few times this.
pub const RETENTION_CHECK_MS: u64 = 10 * 60 * 1000;

impl Account {
    /// Keeps a conversation's messages for `keep_ms` from when they reached each device (`None`:
    /// for ever), on every device of the account, and deletes those already older here.
    /// Returns how many were deleted here.
    pub fn set_retention(&mut self, conversation: &str, keep_ms: Option<u64>) -> Result<usize> {
        if keep_ms == Some(0) {
            return Err(Error::Malformed { what: "retention", why: "it must be longer than nothing" });
        }
        let c = self.resolve(conversation)?;
        self.store.write(|tx| tx.set_retention(&c.id, keep_ms))?;
        // A device that kept what this one deletes would undo the choice.
        self.share_setting(crate::group::SharedSetting::Retention { conversation: c.id, keep_ms });
        self.forget_expired_messages()
    }

    /// How long a conversation keeps its messages; `None` for ever.
    pub fn retention(&self, conversation: &str) -> Result<Option<u64>> {
        let c = self.resolve(conversation)?;
        self.store.read().retention(&c.id)
    }

    /// Deletes every message that outlived its conversation's retention, then checkpoints.
    /// Runs every ten minutes and when a retention is set; with no retention set, it does
    /// nothing (no write, no checkpoint), and with nothing to delete, no checkpoint.
    pub(super) fn forget_expired_messages(&mut self) -> Result<usize> {
        let now = self.now();
        let retentions = self.store.read().retentions()?;
        if retentions.is_empty() {
            return Ok(0);
        }
        let forgotten = self.store.write(|tx| {
            let mut n = 0;
            for (group, keep_ms) in &retentions {
                n += tx.forget_messages_before(group, now.saturating_sub(*keep_ms))?;
            }
            Ok(n)
        })?;
        if forgotten > 0 {
            self.store.checkpoint()?;
        }
        Ok(forgotten)
    }
}
