//! Delivery receipts and read markers, end to end: a member acknowledges what arrived and what
//! they read with a receipt sealed inside the group's encryption, so a relay or a carrier sees
//! one more small envelope and learns nothing of what it acknowledges.
//!
//! - Every text message from someone else is acknowledged as delivered: the ids collect while
//!   a batch of envelopes is received, and one receipt per conversation goes out at the end of
//!   the batch (not one per message). They are kept in memory: a crash before the batch ends
//!   loses the acknowledgement, never a message (the sender then shows "sent", not "delivered").
//! - Reading a conversation moves its read mark to the last message and, unless read receipts
//!   are off (a setting of the account), sends one receipt naming what was read.
//! - Receipts are never acknowledged themselves; ids that are not the recipient's own messages
//!   are ignored, so a member cannot make anyone store what they invent.

use std::collections::{BTreeMap, HashMap};

use super::{Account, MessageInfo};
use crate::envelope::EnvelopeId;
use crate::error::Result;
use crate::group::{GroupId, MAX_RECEIPT_IDS, Receipt};
use crate::store::{MessageRow, Rows};

pub(super) const READ_RECEIPTS: &str = "read_receipts";

/// How far one of our messages got, as receipts tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acknowledged {
    /// Every other member has it on a device.
    Delivered,
    /// Every other member read it.
    Read,
}

/// Receipt work between batches.
#[derive(Default)]
pub(super) struct Pending {
    /// Others' messages received and not yet acknowledged, by conversation.
    acks: BTreeMap<GroupId, Vec<EnvelopeId>>,
    /// Our messages whose state moved on, for the node to announce.
    acknowledged: Vec<(String, Acknowledged)>,
}

/// Records what `member` acknowledged of our messages in `group` (which has `others` members
/// besides us); returns the messages whose state moved on: all others have it, or all read it.
pub(super) fn record(
    tx: &rusqlite::Connection,
    group: &GroupId,
    others: usize,
    member: &[u8; 32],
    receipt: &Receipt,
) -> Result<Vec<(String, Acknowledged)>> {
    let marks = receipt.delivered.iter().map(|id| (id, 1u8)).chain(receipt.read.iter().map(|id| (id, 2u8)));
    let mut moved = Vec::new();
    for (id, state) in marks {
        if tx.record_receipt(group, id, member, state)? && !moved.contains(id) {
            moved.push(*id);
        }
    }
    if moved.is_empty() || others == 0 {
        return Ok(Vec::new());
    }
    let counts = tx.receipt_counts(&moved)?;
    let others = others as u32;
    Ok(moved
        .into_iter()
        .filter_map(|id| {
            let (acks, reads) = counts.get(&id).copied().unwrap_or_default();
            let state = if reads >= others {
                Acknowledged::Read
            } else if acks >= others {
                Acknowledged::Delivered
            } else {
                return None;
            };
            Some((id.to_hex(), state))
        })
        .collect())
}

impl Account {
    /// Notes a message from someone else, to acknowledge at the end of the batch.
    pub(super) fn acknowledge_later(&mut self, group: GroupId, id: EnvelopeId) {
        self.receipts.acks.entry(group).or_default().push(id);
    }

    /// Notes our messages whose state moved on, for [`Account::take_acknowledged`].
    pub(super) fn note_acknowledged(&mut self, acknowledged: Vec<(String, Acknowledged)>) {
        for entry in acknowledged {
            if !self.receipts.acknowledged.contains(&entry) {
                self.receipts.acknowledged.push(entry);
            }
        }
    }

    /// Seals one receipt per conversation for what arrived since the last call; stored in the
    /// outbox like any message. Returns how many receipts were sealed.
    pub fn flush_receipts(&mut self) -> Result<usize> {
        let acks = std::mem::take(&mut self.receipts.acks);
        let mut sent = 0;
        for (group, ids) in acks {
            for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                let receipt = Receipt { delivered: chunk.to_vec(), read: Vec::new() };
                if self.send_receipt(&group, receipt)? {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }

    /// Drops what was waiting to be acknowledged or announced: the batch it came from was not
    /// stored.
    pub(super) fn forget_pending_receipts(&mut self) {
        self.receipts = Pending::default();
    }

    /// Our messages whose state moved on since the last call.
    pub fn take_acknowledged(&mut self) -> Vec<(String, Acknowledged)> {
        std::mem::take(&mut self.receipts.acknowledged)
    }

    /// Marks everything in a conversation as read: moves its read mark to the last message
    /// and, when read receipts are on, tells the others which messages were read. Returns how
    /// many messages were unread.
    pub fn mark_read(&mut self, conversation: &str) -> Result<usize> {
        let c = self.resolve(conversation)?;
        let unread = self.store.read().unread(&c.id, &self.account_public(), usize::MAX >> 1)?;
        let Some(&(lamport, last)) = unread.last() else { return Ok(0) };
        self.store.write(|tx| tx.set_read_mark(&c.id, lamport, &last))?;
        if self.read_receipts()? {
            let newest = unread.len().saturating_sub(MAX_RECEIPT_IDS);
            let read = unread[newest..].iter().map(|(_, id)| *id).collect();
            self.send_receipt(&c.id, Receipt { delivered: Vec::new(), read })?;
        }
        Ok(unread.len())
    }

    /// Others' text messages in a conversation after its read mark.
    pub fn unread_count(&self, group: &GroupId) -> Result<usize> {
        Ok(self.store.read().unread(group, &self.account_public(), 10_000)?.len())
    }

    /// Whether we tell others when we read their messages (on unless turned off).
    pub fn read_receipts(&self) -> Result<bool> {
        Ok(self.store.read().setting(READ_RECEIPTS)?.is_none_or(|v| v != "off"))
    }

    /// Turns read receipts on or off, on every device of the account.
    pub fn set_read_receipts(&mut self, on: bool) -> Result<()> {
        self.store.write(|tx| tx.set_setting(READ_RECEIPTS, if on { "on" } else { "off" }))?;
        self.share_setting(crate::group::SharedSetting::ReadReceipts(on));
        Ok(())
    }

    /// Seals and stores a receipt in `group`; false when there is nobody to tell (we left, or
    /// the group is ours alone).
    fn send_receipt(&mut self, group: &GroupId, receipt: Receipt) -> Result<bool> {
        let now = self.now();
        let me = self.account_public();
        if !self.may_acknowledge(group)? {
            return Ok(false);
        }
        let Some(mut g) = self.groups.remove(group) else { return Ok(false) };
        if !g.is_member(&me) || g.member_count() < 2 {
            self.groups.insert(*group, g);
            return Ok(false);
        }
        let sealed = match g.send_receipt(&self.me, receipt, now, self.entropy.as_mut()) {
            Ok(sealed) => sealed,
            Err(e) => {
                self.groups.insert(*group, g);
                return Err(e);
            }
        };
        let gid = g.id;
        let written = self.store.write(|tx| {
            super::conversations::put_sent(tx, &gid, &sealed, now)?;
            tx.save_group(&mut g)
        });
        self.settle([g], written)?;
        Ok(true)
    }

    /// A receipt is sent only where we chose to talk: not in the 1:1 conversation of someone
    /// whose request we have not accepted (sending there would hand them our chain and tell
    /// them we are online before we said yes).
    fn may_acknowledge(&self, group: &GroupId) -> Result<bool> {
        let Some(g) = self.groups.get(group) else { return Ok(false) };
        if g.kind == crate::group::GroupKind::Many {
            // Once we asked to leave, nothing more of ours goes there.
            return Ok(!self.has_left(group)?);
        }
        let me = self.account_public();
        let Some((other, _)) = g.members().into_iter().find(|(a, _)| *a != me) else { return Ok(false) };
        Ok(self
            .store
            .read()
            .contact_by_account(&other)?
            .is_some_and(|c| c.status != crate::store::ContactStatus::Incoming))
    }

    /// The state of our text messages among `rows`: `queued` (no peer took it), `sent`,
    /// `delivered` (every other member has it), `read` (every other member read it) or
    /// `expired` (it cannot be delivered: we left the conversation before it went out).
    pub(super) fn delivery_states(
        &self,
        group: &GroupId,
        rows: &[MessageRow],
    ) -> Result<HashMap<EnvelopeId, &'static str>> {
        let ours: Vec<EnvelopeId> = rows.iter().filter(|m| m.outgoing && m.kind == "text").map(|m| m.id).collect();
        if ours.is_empty() {
            return Ok(HashMap::new());
        }
        let store = self.store.read();
        let queued = store.queued_among(&ours)?;
        let expired = store.expired_among(&ours)?;
        let counts = store.receipt_counts(&ours)?;
        let others = self.groups.get(group).map_or(0, |g| g.member_count().saturating_sub(1)) as u32;
        Ok(ours
            .into_iter()
            .map(|id| {
                let (acks, reads) = counts.get(&id).copied().unwrap_or_default();
                let state = match () {
                    _ if others > 0 && reads >= others => "read",
                    _ if others > 0 && acks >= others => "delivered",
                    _ if expired.contains(&id) => "expired",
                    _ if queued.contains(&id) => "queued",
                    _ => "sent",
                };
                (id, state)
            })
            .collect())
    }

    /// Fills in the state of our messages in a page of history.
    pub(super) fn with_states(
        &self,
        group: &GroupId,
        rows: &[MessageRow],
        mut infos: Vec<MessageInfo>,
    ) -> Result<Vec<MessageInfo>> {
        let states = self.delivery_states(group, rows)?;
        for (info, row) in infos.iter_mut().zip(rows) {
            info.state = states.get(&row.id).copied();
        }
        Ok(infos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DatabaseKey, Store};

    fn row(id: u8, group: GroupId, outgoing: bool) -> MessageRow {
        MessageRow {
            id: EnvelopeId([id; 32]),
            group_id: group,
            sender: [9; 32],
            lamport: u64::from(id),
            sent_ms: 0,
            kind: "text".into(),
            body: "hi".into(),
            outgoing,
            via: None,
            reply_to: None,
        }
    }

    /// A member can acknowledge only our own text messages in the group the receipt came in:
    /// ids they invent, others' messages and ours in another group store nothing.
    #[test]
    fn only_our_messages_in_that_group_can_be_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(&dir.path().join("db"), &DatabaseKey::plaintext_for_tests()).unwrap();
        let (here, elsewhere) = ([1; 32], [2; 32]);
        store
            .write(|tx| {
                tx.insert_message(&row(1, here, true))?;
                tx.insert_message(&row(2, here, false))?;
                tx.insert_message(&row(3, elsewhere, true))
            })
            .unwrap();
        let member = [7; 32];
        let receipt = Receipt {
            delivered: vec![EnvelopeId([1; 32]), EnvelopeId([2; 32]), EnvelopeId([3; 32]), EnvelopeId([99; 32])],
            read: vec![EnvelopeId([99; 32])],
        };
        let moved = store.write(|tx| record(tx, &here, 1, &member, &receipt)).unwrap();
        assert_eq!(moved, vec![(EnvelopeId([1; 32]).to_hex(), Acknowledged::Delivered)]);
        let ids: Vec<EnvelopeId> = [1, 2, 3, 99].map(|i| EnvelopeId([i; 32])).to_vec();
        let counts = store.read().receipt_counts(&ids).unwrap();
        assert_eq!(counts.len(), 1, "nothing stored for ids that are not ours here: {counts:?}");
        // The same receipt again moves nothing; reading moves it on, and never back.
        assert!(store.write(|tx| record(tx, &here, 1, &member, &receipt)).unwrap().is_empty());
        let read = Receipt { delivered: vec![], read: vec![EnvelopeId([1; 32])] };
        assert_eq!(store.write(|tx| record(tx, &here, 1, &member, &read)).unwrap()[0].1, Acknowledged::Read);
        assert!(store.write(|tx| record(tx, &here, 1, &member, &receipt)).unwrap().is_empty());
    }
}
