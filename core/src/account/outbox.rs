//! The outbox: our envelopes that no peer has taken yet, and what becomes of one that waits
//! past its day or epoch.
//!
//! Members follow each conversation's topics of yesterday, today and tomorrow in the current
//! epoch (and a few ended epochs' for a day or two). An envelope sealed on a day that has since
//! gone by, or in an epoch that has since ended, would go out where nobody looks: it is sealed
//! again instead, with the same content and its author's original time, under today's topic of
//! the current epoch (a membership change or key share: of its own epoch, which those who have
//! not applied the change still read). The old envelope is forgotten so that no peer is ever
//! handed both, and a message keeps its place in history under its new id. Only what cannot be
//! delivered at all (we are no longer a member) expires, with the reason.

use std::collections::BTreeMap;

use super::{Account, MessageInfo};
use crate::envelope::EnvelopeId;
use crate::error::{Error, Result};
use crate::group::{Content, Group, GroupId, Inner, period_of};
use crate::store::{MessageRow, OutboxEntry, Rows};

/// What the transports should do with the outbox now.
#[derive(Debug, Default)]
pub struct OutboxBatch {
    /// Envelopes to push, oldest first.
    pub live: Vec<Vec<u8>>,
    /// Our messages sealed again, as (old id, new id): their day or epoch passed while they
    /// waited.
    pub resealed: Vec<(String, String)>,
    /// Our messages that cannot be delivered, with why.
    pub expired: Vec<(String, String)>,
    /// Envelopes of ours that were sealed again or dropped, and deleted: a transport that
    /// holds a copy (the mesh's cache) must forget it, so that nobody gets both.
    pub forgotten: Vec<EnvelopeId>,
}

/// Why a message of ours expires when we are no longer in its conversation.
pub const NOT_A_MEMBER: &str = "you are no longer a member of this conversation";
/// Why a message queued by a version of Weft that did not keep what it says expires.
pub const QUEUED_BY_AN_OLDER_VERSION: &str = "it waited too long, queued by an older version of Weft: send it again";
/// Why a membership change expires: so many changes came since that nobody reads its epoch.
pub const THE_GROUP_MOVED_ON: &str = "the group changed too often while it waited";

/// One stale envelope, sorted out.
enum Fate {
    /// Sealed again as these envelopes (the last is the message itself).
    Resealed(GroupId, Vec<crate::group::Sealed>),
    /// A key share of an ended epoch, or one we cannot read back: dropped; its group starts a
    /// new chain (with a new share) at its next message.
    Dropped,
    Expired(&'static str),
    /// It could not be sealed again just now (not for want of membership): it stays, and the
    /// next look tries again.
    Kept,
}

impl Account {
    /// Our envelopes that no peer has taken yet (at most `limit`, oldest first), after sealing
    /// again those whose day or epoch passed.
    pub fn outbox(&mut self, limit: usize) -> Result<OutboxBatch> {
        self.follow_the_day();
        let entries = self.store.read().outbox_entries(limit)?;
        let mut batch = OutboxBatch::default();
        let mut stale = Vec::new();
        for entry in entries {
            let inner = entry.inner.as_deref().and_then(|b| Inner::decode(b).ok());
            if self.still_current(&entry, inner.as_ref()) {
                batch.live.push(entry.bytes);
            } else {
                stale.push((entry, inner));
            }
        }
        if !stale.is_empty() {
            self.seal_again(stale, &mut batch)?;
        }
        batch.live.extend(self.unpushed_link_envelopes(limit));
        Ok(batch)
    }

    /// Whether members read this envelope where it is: a message under a topic of the current
    /// epoch from yesterday on; a control message under a topic of its own epoch from
    /// yesterday on (it is read by those who have not applied it yet).
    fn still_current(&self, entry: &OutboxEntry, inner: Option<&Inner>) -> bool {
        let topic: [u8; 16] = entry.bytes[1..17].try_into().expect("an envelope holds a topic");
        let Some(((gid, epoch), period)) = self.topics.locate(&topic) else { return false };
        // Yesterday's topics are followed only early in the day (by yesterday's network
        // session): after that, an envelope of theirs is sealed again for today rather than
        // published on yesterday's topic under today's peer id.
        let now = self.now();
        let today = period_of(now);
        let early = now % crate::group::PERIOD_MS < super::YESTERDAY_GRACE_MS;
        let recent = (period == today || period == today + 1) || (period + 1 == today && early);
        let control = matches!(
            inner.map(|i| &i.content),
            None | Some(
                Content::Membership { .. }
                    | Content::KeyShare(_)
                    | Content::EpochShares { .. }
                    | Content::LinkRotated(_)
            )
        );
        let current = self.groups.get(&gid).and_then(|g| g.current_epoch()).map(|e| e.id);
        recent && (control || current == Some(epoch))
    }

    fn seal_again(&mut self, stale: Vec<(OutboxEntry, Option<Inner>)>, batch: &mut OutboxBatch) -> Result<()> {
        let now = self.now();
        let mut taken: BTreeMap<GroupId, Group> = BTreeMap::new();
        let mut fates = Vec::with_capacity(stale.len());
        for (entry, inner) in stale {
            let message = self.store.read().is_message(&entry.id)?;
            let topic: [u8; 16] = entry.bytes[1..17].try_into().expect("an envelope holds a topic");
            let located = self.topics.locate(&topic);
            let Some(gid) = entry.group.or(located.map(|((g, _), _)| g)) else {
                fates.push((entry, message, Fate::Expired(NOT_A_MEMBER)));
                continue;
            };
            let group = match taken.entry(gid) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    let Some(group) = self.groups.remove(&gid) else {
                        fates.push((entry, message, Fate::Expired(NOT_A_MEMBER)));
                        continue;
                    };
                    v.insert(group)
                }
            };
            let fate = self.fate_of(group, &entry, inner, message, located.map(|((_, e), _)| e), now);
            fates.push((entry, message, fate));
        }
        let written = self.store.write(|tx| {
            for (entry, message, fate) in &fates {
                match fate {
                    Fate::Resealed(gid, sealed) => {
                        tx.forget_unsent(&entry.id)?;
                        super::conversations::put_sent(tx, gid, sealed, now)?;
                        let last = sealed.last().expect("a reseal makes at least one envelope");
                        if *message {
                            tx.rename_message(&entry.id, &last.envelope.id(), last.inner.lamport)?;
                        }
                        // A reaction, edit or delete of ours keeps its place under its new id.
                        tx.rename_change(&entry.id, &last.envelope.id(), last.inner.lamport)?;
                    }
                    Fate::Dropped => tx.forget_unsent(&entry.id)?,
                    Fate::Expired(reason) => {
                        tx.outbox_remove(&entry.id)?;
                        tx.mark_expired(&entry.id, reason)?;
                    }
                    Fate::Kept => {}
                }
            }
            for group in taken.values_mut() {
                tx.save_group(group)?;
            }
            Ok(())
        });
        self.settle(taken.into_values(), written)?;
        for (entry, message, fate) in fates {
            match fate {
                Fate::Resealed(_, sealed) => {
                    let last = sealed.last().expect("a reseal makes at least one envelope");
                    if message {
                        batch.resealed.push((entry.id.to_hex(), last.envelope.id().to_hex()));
                    }
                    batch.forgotten.push(entry.id);
                    batch.live.extend(sealed.iter().map(|s| s.envelope.as_bytes().to_vec()));
                }
                Fate::Dropped => batch.forgotten.push(entry.id),
                Fate::Expired(reason) if message => batch.expired.push((entry.id.to_hex(), reason.to_owned())),
                Fate::Expired(_) | Fate::Kept => {}
            }
        }
        Ok(())
    }

    /// What becomes of one stale envelope of `group` (`message`: a message of our history).
    fn fate_of(
        &mut self,
        group: &mut Group,
        entry: &OutboxEntry,
        inner: Option<Inner>,
        message: bool,
        epoch: Option<[u8; 32]>,
        now: u64,
    ) -> Fate {
        let gid = group.id;
        // What is sealed again must not name its old self as a parent.
        group.forget_head(&entry.id);
        let Some(inner) = inner else {
            if message {
                return Fate::Expired(QUEUED_BY_AN_OLDER_VERSION);
            }
            group.restart_chain();
            return Fate::Dropped;
        };
        let result = match inner.content {
            content @ (Content::Membership { .. }
            | Content::KeyShare(_)
            | Content::EpochShares { .. }
            | Content::LinkRotated(_)) => {
                let is_share = matches!(content, Content::KeyShare(_));
                let current = group.current_epoch().map(|e| e.id);
                let followed = epoch.is_some_and(|e| {
                    current == Some(e)
                        || group.previous_epochs(super::receive::PREVIOUS_EPOCHS_FOLLOWED).any(|p| p.id == e)
                });
                match epoch {
                    // Its chain ended with its epoch; the messages on it are sealed again on a
                    // new chain of the current epoch, which brings its own share.
                    _ if is_share && (epoch != current || epoch.is_none()) => return Fate::Dropped,
                    Some(e) if followed => group
                        .reseal_control(&self.me, &e, content, inner.sent_ms, now, self.entropy.as_mut())
                        .map(|s| vec![s]),
                    _ => return Fate::Expired(THE_GROUP_MOVED_ON),
                }
            }
            // The envelope may have reached someone after all: the new one names it, so that
            // members show the message once.
            Content::Text(text) | Content::Resent { text, .. } => {
                let content = Content::Resent { replaces: entry.id, text };
                group.reseal(&self.me, content, inner.sent_ms, now, self.entropy.as_mut())
            }
            Content::Reply { to, text, .. } => {
                let content = Content::Reply { to, text, replaces: Some(entry.id) };
                group.reseal(&self.me, content, inner.sent_ms, now, self.entropy.as_mut())
            }
            Content::Attachment { manifest, caption, .. } => {
                let content = Content::Attachment { manifest, caption, replaces: Some(entry.id) };
                group.reseal(&self.me, content, inner.sent_ms, now, self.entropy.as_mut())
            }
            content => group.reseal(&self.me, content, inner.sent_ms, now, self.entropy.as_mut()),
        };
        match result {
            Ok(sealed) => Fate::Resealed(gid, sealed),
            Err(Error::NotInGroup | Error::NotAMember) => Fate::Expired(NOT_A_MEMBER),
            Err(e) => {
                tracing::debug!(error = %e, "an envelope could not be sealed again; it stays queued");
                Fate::Kept
            }
        }
    }

    pub fn outbox_len(&self) -> Result<usize> {
        self.store.read().outbox_len()
    }

    /// Records that a peer took these envelopes (a push was accepted, or a peer fetched them);
    /// returns the ids of the messages among them that were still in the outbox.
    pub fn handed_over(&mut self, ids: &[EnvelopeId]) -> Result<Vec<String>> {
        self.link_handed_over(ids);
        self.store.write_relaxed(|tx| {
            let mut sent = Vec::new();
            for id in ids {
                if tx.outbox_remove(id)? && tx.is_message(id)? {
                    sent.push(id.to_hex());
                }
            }
            Ok(sent)
        })
    }

    /// Sends again a message of ours that expired (we had left its conversation before it went
    /// out, and are back in it): the same text and time, sealed anew; it goes by the new id.
    /// A message still on its way is refused, so nobody gets it twice.
    pub fn resend(&mut self, message: &str) -> Result<MessageInfo> {
        let not_found = || Error::NotFound { what: "message", name: message.to_owned() };
        let id = EnvelopeId::from_hex(message).ok_or_else(not_found)?;
        let row = self.store.read().message(&id)?.filter(|m| m.outgoing && m.kind == "text").ok_or_else(not_found)?;
        if self.store.read().expired_reason(&id)?.is_none() {
            return Err(Error::NotAllowed("that message is still on its way; only an expired one is sent again"));
        }
        let now = self.now();
        let mut group = self.groups.remove(&row.group_id).ok_or_else(not_found)?;
        if self.message_info(&row, "").deleted {
            return Err(Error::NotAllowed("that message was deleted"));
        }
        let file = self.store.read().attachment(&id)?;
        let content = match (row.reply_to, file) {
            // A file goes again with its message: the same manifest, sealed anew.
            (_, Some(file)) => {
                let manifest =
                    crate::attachment::Manifest::decode(&mut crate::wire::Reader::new(&file.manifest, "attachment"))?;
                Content::Attachment { manifest: Box::new(manifest), caption: row.body.clone(), replaces: Some(id) }
            }
            (Some(to), None) => Content::Reply { to, text: row.body.clone(), replaces: Some(id) },
            (None, None) => Content::Resent { replaces: id, text: row.body.clone() },
        };
        let sealed = group.reseal(&self.me, content, row.sent_ms, now, self.entropy.as_mut());
        let written = sealed.and_then(|sealed| {
            let last = sealed.last().expect("a reseal makes at least one envelope");
            let (new, lamport) = (last.envelope.id(), last.inner.lamport);
            self.store.write(|tx| {
                super::conversations::put_sent(tx, &row.group_id, &sealed, now)?;
                tx.rename_message(&id, &new, lamport)?;
                // A file sent again is served again for its full while, however long its
                // message waited expired.
                tx.restart_serving(&new, now)?;
                tx.clear_expired(&id)?;
                tx.forget_unsent(&id)?;
                tx.save_group(&mut group)?;
                Ok(())
            })?;
            Ok((new, lamport))
        });
        let (new, lamport) = self.settle([group], written)?;
        let conversation = self.conversation_name(&row.group_id);
        let mut info = self.message_info(&MessageRow { id: new, lamport, ..row }, &conversation);
        info.state = Some("queued");
        Ok(info)
    }

    /// Why a message of ours cannot be delivered, if it cannot.
    pub fn expired_reason(&self, message: &EnvelopeId) -> Result<Option<String>> {
        self.store.read().expired_reason(message)
    }
}
