//! Disappearing messages: a timer any member of a conversation sets for everyone. From the
//! message that sets it on, each member's devices delete the conversation's texts (with their
//! reactions and edits) that long after they arrived, and fold the log back in so the text
//! leaves the file. A timer never reaches back to what was written before it: a member cannot
//! wipe the group's history by setting one.

use super::{Account, MessageInfo};
use crate::error::Result;
use crate::group::Content;
use crate::store::{MessageRow, Rows};

/// How often texts past their conversation's timer are looked for, when any conversation has
/// one: the shortest timer is a minute, so a text outlives it by a quarter at most.
pub const DISAPPEARING_CHECK_MS: u64 = 15 * 1000;

/// A timer as the history row says it: its milliseconds, or `off`.
pub(super) fn timer_body(keep_ms: Option<u64>) -> String {
    keep_ms.map_or_else(|| "off".to_owned(), |k| k.to_string())
}

impl Account {
    /// Sets the conversation's disappearing-message timer for every member (`None`: off):
    /// texts written from now on are deleted on every member's devices `keep_ms` after they
    /// reached each. Returns the history row every member is shown.
    pub fn set_disappearing(&mut self, conversation: &str, keep_ms: Option<u64>) -> Result<MessageInfo> {
        let c = self.resolve(conversation)?;
        self.may_write_to(&c)?;
        let now = self.now();
        let me = self.account_public();
        let (mut group, sealed) = self.seal_about(&c, Content::Timer { keep_ms }, now)?;
        let last = sealed.last().expect("a message is always sealed");
        let (id, lamport) = (last.envelope.id(), last.inner.lamport);
        let row = MessageRow {
            id,
            group_id: c.id,
            sender: me,
            lamport,
            sent_ms: now,
            kind: "timer".into(),
            body: timer_body(keep_ms),
            outgoing: true,
            via: None,
            reply_to: None,
        };
        let written = self.store.write(|tx| {
            super::conversations::put_sent(tx, &c.id, &sealed, now)?;
            tx.insert_message(&row)?;
            tx.add_timer(&c.id, &id, lamport, keep_ms)?;
            tx.save_group(&mut group)
        });
        self.settle([group], written)?;
        Ok(self.message_info(&row, &c.name))
    }

    /// The conversation's disappearing-message timer now; `None` when off (or never set).
    pub fn disappearing(&self, conversation: &str) -> Result<Option<u64>> {
        let c = self.resolve(conversation)?;
        Ok(self.store.read().timers(&c.id)?.last().and_then(|(_, keep_ms)| *keep_ms))
    }

    /// Deletes the texts whose timer ran out, then checkpoints. With nothing due it writes
    /// nothing (one read of an index), and with nothing deleted, no checkpoint.
    pub(super) fn forget_disappeared_messages(&mut self) -> Result<usize> {
        let now = self.now();
        if !self.store.read().anything_disappears_by(now)? {
            return Ok(0);
        }
        let forgotten = self.store.write(|tx| tx.forget_disappeared(now))?;
        if forgotten > 0
            && let Err(e) = self.store.checkpoint()
        {
            tracing::warn!(%e, "the log was not folded back in after messages disappeared");
        }
        Ok(forgotten)
    }
}
