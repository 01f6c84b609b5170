//! Conversations: groups and 1:1 chats, sending, membership changes and history.

use super::{
    Account, ConversationInfo, ConversationKind, ConversationOverview, MemberInfo, MessageAction, MessageInfo,
};
use crate::envelope::EnvelopeId;
use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::group::{Action, Group, GroupId, GroupKind, Sealed};
use crate::store::{EnvelopeStatus, MessageRow, Rows};

impl Account {
    /// Every conversation: contacts' 1:1 chats and groups.
    pub fn conversations(&self) -> Result<Vec<ConversationInfo>> {
        let left = self.store.read().left_groups()?;
        let mut out = Vec::new();
        for contact in self.store.read().contacts()? {
            out.push(ConversationInfo {
                kind: ConversationKind::Contact,
                name: contact.name,
                id: contact.group_id,
                members: 2,
                active: true,
            });
        }
        for group in self.groups.values().filter(|g| g.kind == GroupKind::Many) {
            out.push(ConversationInfo {
                kind: ConversationKind::Group,
                name: shown_group_name(group.name(), &group.id),
                id: group.id,
                members: group.members().len(),
                active: group.is_member(&self.account_public()) && !left.contains(&group.id),
            });
        }
        Ok(out)
    }

    /// Finds a conversation by its id (64 hex characters: always the conversation with that
    /// id, whatever anyone is named), then by contact or group name, then by a prefix of the
    /// id of at least 6 characters. A name never shadows an id: a contact who chose a group's
    /// id as their name does not receive what is sent to that group by id.
    pub fn resolve(&self, name: &str) -> Result<ConversationInfo> {
        let all = self.conversations()?;
        if let Some(id) = exact_id(name)
            && let Some(c) = all.iter().find(|c| c.id == id)
        {
            return Ok(c.clone());
        }
        // What looks like an id's prefix is one before it is a name: nobody can take the
        // short id an ambiguity error or a listing printed (names that look like ids are
        // refused or replaced, but an older store may hold one).
        let lower = name.to_ascii_lowercase();
        let by_id: Vec<_> = all
            .iter()
            .filter(|c| looks_like_an_id(&lower) && data_encoding::HEXLOWER.encode(&c.id).starts_with(&lower))
            .collect();
        match by_id.len() {
            1 => return Ok(by_id[0].clone()),
            0 => {}
            _ => return Err(ambiguous("conversation", name, by_id.iter().map(|c| describe(c)))),
        }
        let exact: Vec<_> = all.iter().filter(|c| c.name == name).collect();
        match exact.len() {
            1 => Ok(exact[0].clone()),
            0 => Err(Error::NotFound { what: "contact or group", name: name.to_owned() }),
            _ => Err(ambiguous("conversation", name, exact.iter().map(|c| describe(c)))),
        }
    }

    /// Every conversation with its unread count and its last message, newest first (by last
    /// message; conversations with none last): what a conversation list shows.
    ///
    /// "Newest" is when the last message was written, as its sender says, but never later than
    /// when it reached this device: a member whose clock claims the future cannot pin their
    /// conversation at the top.
    pub fn overview(&self) -> Result<Vec<ConversationOverview>> {
        let mut out = Vec::new();
        for info in self.conversations()? {
            let unread = self.unread_count(&info.id)?;
            let rows = self.store.read().messages_before(&info.id, None, 1)?;
            let when = match rows.first() {
                Some(m) => {
                    let arrived = self.store.read().received_ms(&m.id)?.unwrap_or(m.sent_ms);
                    Some((m.sent_ms.min(arrived), m.lamport))
                }
                None => None,
            };
            let shown = rows.iter().map(|m| self.message_info(m, &info.name)).collect();
            let last = self.with_states(&info.id, &rows, shown)?;
            out.push((when, ConversationOverview { info, unread, last: last.into_iter().next() }));
        }
        out.sort_by_key(|(when, _)| std::cmp::Reverse(*when));
        Ok(out.into_iter().map(|(_, o)| o).collect())
    }

    /// Asks to leave a group: a request to the admins (one of whose devices removes us,
    /// starting an epoch we cannot read), and from now on nothing more is sent there.
    pub fn leave_group(&mut self, group_name: &str) -> Result<()> {
        let gid = self.resolve_group(group_name)?;
        let leaving = self.store.read().leave_requests(&gid)?;
        if self.group(&gid)?.last_admin_staying(&self.me, &leaving) {
            return Err(Error::NotAllowed(
                "you are the last admin of this group who stays: remove the other members first (no one else could remove you)",
            ));
        }
        let now = self.now();
        let mut group = self.groups.remove(&gid).expect("resolved");
        let result = group.send_leave(&self.me, now, self.entropy.as_mut()).and_then(|sealed| {
            let me = self.account_public();
            let event = system_row(&gid, sealed.last().expect("sealed"), me, "left", "you");
            self.store.write(|tx| {
                put_sent(tx, &gid, &sealed, now)?;
                tx.insert_message(&event)?;
                tx.set_left(&gid, now)?;
                tx.save_group(&mut group)
            })
        });
        self.settle([group], result)
    }

    /// Renames a group (admins only): a membership change every member applies.
    pub fn rename_group(&mut self, group_name: &str, new_name: &str) -> Result<()> {
        super::check_name(new_name)?;
        if looks_like_an_id(new_name.trim()) {
            return Err(Error::Malformed { what: "group name", why: "it could be taken for an id" });
        }
        let gid = self.resolve_group(group_name)?;
        self.change_membership(&gid, Action::Rename { name: new_name.to_owned() }, "renamed", new_name)
    }

    /// Whether we asked to leave this group (and may still be in it until an admin acts).
    pub(super) fn has_left(&self, gid: &GroupId) -> Result<bool> {
        Ok(self.store.read().left_groups()?.contains(gid))
    }

    /// Acts on the requests to leave a group whose senders are still members, where this
    /// device is the one to remove them (see [`Group::removes_leaver`]). Run when a request
    /// arrives and when who acts may have changed (a membership change, keys that arrived), so
    /// a request that came while another admin's device should have acted (or before this one
    /// was the one) is acted on later; not after every envelope, which would read the group's
    /// history each time. Best effort.
    pub(super) fn act_on_leave_requests(&mut self, gid: &GroupId) -> Result<()> {
        let leaving = self.store.read().leave_requests(gid)?;
        let me = self.account_public();
        for leaver in leaving.iter().filter(|a| **a != me) {
            if self.groups.get(gid).is_some_and(|g| g.removes_leaver(&self.me, leaver, &leaving)) {
                let name = self.display_name(leaver);
                self.change_membership(gid, Action::Remove { member: *leaver }, "removed", &name)?;
            }
        }
        Ok(())
    }

    /// Refuses a conversation we left, or the 1:1 conversation with someone we blocked.
    pub(super) fn may_write_to(&self, c: &ConversationInfo) -> Result<()> {
        if self.is_revoked() {
            return Err(Error::Revoked);
        }
        let store = self.store.read();
        if c.kind == ConversationKind::Group && store.left_groups()?.contains(&c.id) {
            return Err(Error::NotAllowed("you left this group"));
        }
        let blocked = store.blocked()?;
        if c.kind == ConversationKind::Contact
            && !blocked.is_empty()
            && store.contacts()?.iter().any(|row| row.group_id == c.id && blocked.contains(&row.account))
        {
            return Err(Error::NotAllowed("you blocked this contact: unblock them to write to them"));
        }
        Ok(())
    }

    fn resolve_group(&self, name: &str) -> Result<GroupId> {
        let c = self.resolve(name)?;
        if c.kind != ConversationKind::Group {
            return Err(Error::NotFound { what: "group", name: name.to_owned() });
        }
        Ok(c.id)
    }

    /// Founds a group with us as its only member.
    pub fn create_group(&mut self, name: &str) -> Result<ConversationInfo> {
        super::check_name(name)?;
        if looks_like_an_id(name.trim()) {
            return Err(Error::Malformed { what: "group name", why: "it could be taken for an id" });
        }
        if self.conversations()?.iter().any(|c| c.name == name) {
            return Err(Error::AlreadyExists(format!("a conversation named {name:?}")));
        }
        let now = self.now();
        let mut group = Group::create(&self.me, name, now, self.entropy.as_mut())?;
        let me = self.account_public();
        let row = MessageRow {
            id: EnvelopeId(group.id),
            group_id: group.id,
            sender: me,
            lamport: 0,
            sent_ms: now,
            kind: "created".into(),
            body: name.to_owned(),
            outgoing: true,
            via: None,
            reply_to: None,
        };
        self.store.write(|tx| {
            tx.save_group(&mut group)?;
            tx.insert_message(&row)
        })?;
        let info = ConversationInfo {
            kind: ConversationKind::Group,
            name: name.to_owned(),
            id: group.id,
            members: 1,
            active: true,
        };
        self.groups.insert(group.id, group);
        self.rebuild_topics();
        Ok(info)
    }

    /// Adds a contact to a group: a signed `Add` in the group, and the invitation in our 1:1
    /// chat with them.
    pub fn invite(&mut self, group_name: &str, contact_name: &str) -> Result<()> {
        let gid = self.resolve_group(group_name)?;
        let contact = self.contact_row(contact_name)?;
        let now = self.now();
        let devices = self.group(&contact.group_id)?.devices_of(&contact.account);
        let card_name = crate::identity::ContactCard::from_bytes(&contact.card)?.name;
        if self.group(&gid)?.is_member(&contact.account) {
            return Err(Error::AlreadyExists(format!("{contact_name} as a member of {group_name}")));
        }
        let mut group = self.groups.remove(&gid).expect("resolved");
        let mut pair = match self.groups.remove(&contact.group_id) {
            Some(p) => p,
            None => {
                self.groups.insert(gid, group);
                return Err(Error::NotFound { what: "conversation with", name: contact_name.to_owned() });
            }
        };
        let result = (|| {
            for cert in &devices {
                if let Some(prekey) = pair.prekey_of(&cert.device) {
                    group.note_prekey(prekey);
                }
            }
            let add = Action::Add { member: contact.account, name: card_name, devices, admin: false };
            let op = group.change_membership(&self.me, add, now, self.entropy.as_mut())?;
            let welcome = group.welcome(&self.me, &contact.account, now, self.entropy.as_mut())?;
            let invite = pair.send_invite(&self.me, welcome, now, self.entropy.as_mut())?;
            let me = self.account_public();
            let event = system_row(&group.id, &op[0], me, "added", &contact.name);
            self.store.write(|tx| {
                put_sent(tx, &group.id, &op, now)?;
                put_sent(tx, &pair.id, &invite, now)?;
                tx.insert_message(&event)?;
                tx.save_group(&mut group)?;
                tx.save_group(&mut pair)
            })
        })();
        self.settle([group, pair], result)
    }

    /// Removes a member: everyone left moves to a new epoch the removed member cannot enter.
    pub fn remove_member(&mut self, group_name: &str, member: &str) -> Result<()> {
        let gid = self.resolve_group(group_name)?;
        let lower = member.to_ascii_lowercase();
        let members = self.members(group_name)?;
        // An account id names that member, whatever anyone is called.
        let by_account: Vec<_> = members.iter().filter(|m| exact_id(member) == Some(m.account)).cloned().collect();
        let matches: Vec<_> = if by_account.is_empty() {
            members
                .into_iter()
                .filter(|m| {
                    m.name == member
                        || (lower.len() >= 8 && data_encoding::HEXLOWER.encode(&m.account).starts_with(&lower))
                })
                .collect()
        } else {
            by_account
        };
        let account = match matches.as_slice() {
            [one] => one.account,
            [] => return Err(Error::NotFound { what: "member", name: member.to_owned() }),
            many => {
                let candidates =
                    many.iter().map(|m| format!("{} {}", m.name, data_encoding::HEXLOWER.encode(&m.account[..4])));
                return Err(ambiguous("member", member, candidates));
            }
        };
        self.change_membership(&gid, Action::Remove { member: account }, "removed", member)
    }

    pub(super) fn change_membership(&mut self, gid: &GroupId, action: Action, kind: &str, body: &str) -> Result<()> {
        if self.has_left(gid)? {
            return Err(Error::NotAllowed("you left this group"));
        }
        let now = self.now();
        let mut group = self
            .groups
            .remove(gid)
            .ok_or_else(|| Error::NotFound { what: "group", name: data_encoding::HEXLOWER.encode(gid) })?;
        let me = self.account_public();
        let result = group.change_membership(&self.me, action, now, self.entropy.as_mut()).and_then(|op| {
            let event = system_row(&group.id, &op[0], me, kind, body);
            self.store.write(|tx| {
                put_sent(tx, &group.id, &op, now)?;
                tx.insert_message(&event)?;
                tx.save_group(&mut group)
            })
        });
        self.settle([group], result)
    }

    /// Starts a new epoch with the same members, shared with every device we know of.
    pub(super) fn rekey(&mut self, gid: &GroupId) -> Result<()> {
        self.change_membership(gid, Action::Rekey, "rekeyed", "")
    }

    /// Heals a fork in a group's membership log (see [`Group::needs_heal`]).
    pub(super) fn heal_if_needed(&mut self, gid: &GroupId) -> Result<()> {
        if self.groups.get(gid).is_some_and(|g| g.needs_heal(&self.me)) {
            self.change_membership(gid, Action::Rekey, "rekeyed", "")?;
        }
        Ok(())
    }

    pub fn members(&self, conversation: &str) -> Result<Vec<MemberInfo>> {
        let c = self.resolve(conversation)?;
        let me = self.account_public();
        Ok(self
            .group(&c.id)?
            .members()
            .into_iter()
            .map(|(account, m)| MemberInfo {
                name: self.display_name(&account),
                account,
                admin: m.admin,
                is_me: account == me,
            })
            .collect())
    }

    /// Seals a message and stores it; durable when this returns.
    pub fn send(&mut self, conversation: &str, text: &str) -> Result<MessageInfo> {
        self.send_batch(&[(conversation.to_owned(), text.to_owned())]).pop().expect("one result per message")
    }

    /// Seals several messages, in order, and stores them in one transaction (one wait for the
    /// disk for all of them); durable when this returns. Each message gets its own result: one
    /// that cannot be sealed (unknown conversation, too long) fails alone; if the transaction
    /// fails, they all fail and nothing is stored.
    pub fn send_batch(&mut self, messages: &[(String, String)]) -> Vec<Result<MessageInfo>> {
        let now = self.now();
        let me = self.account_public();
        let mut taken: BTreeMap<GroupId, Group> = BTreeMap::new();
        let mut results: Vec<Result<(MessageRow, ConversationInfo)>> = Vec::with_capacity(messages.len());
        let mut sealed_all: Vec<(GroupId, Vec<Sealed>)> = Vec::new();
        // Resolve every name before any group leaves `self.groups` for sealing.
        let mut resolved: Vec<Result<ConversationInfo>> = messages.iter().map(|(c, _)| self.resolve(c)).collect();
        // Writing to someone who asked is accepting them: only then is their conversation
        // loaded and followed.
        for r in resolved.iter_mut() {
            if let Ok(c) = r
                && let Err(e) = self.may_write_to(c)
            {
                *r = Err(e);
            }
        }
        for r in resolved.iter_mut() {
            if let Ok(c) = r
                && c.kind == ConversationKind::Contact
                && self.contact_row(&c.name).is_ok_and(|row| row.status == crate::store::ContactStatus::Incoming)
                && let Err(e) = self.accept_contact(&c.name.clone())
            {
                *r = Err(e);
            }
        }
        for ((_, text), resolved) in messages.iter().zip(resolved) {
            let prepared = resolved.and_then(|c| {
                let group = match taken.entry(c.id) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => v.insert(
                        self.groups
                            .remove(&c.id)
                            .ok_or_else(|| Error::NotFound { what: "conversation", name: c.name.clone() })?,
                    ),
                };
                let sealed = group.send_text(&self.me, text, now, self.entropy.as_mut())?;
                let last = sealed.last().expect("a text is always sealed");
                let row = MessageRow {
                    id: last.envelope.id(),
                    group_id: group.id,
                    sender: me,
                    lamport: last.inner.lamport,
                    sent_ms: now,
                    kind: "text".into(),
                    body: text.clone(),
                    outgoing: true,
                    via: None,
                    reply_to: None,
                };
                sealed_all.push((group.id, sealed));
                Ok((row, c))
            });
            results.push(prepared);
        }
        if taken.is_empty() {
            return results.into_iter().map(|r| r.map(|(row, c)| self.message_info(&row, &c.name))).collect();
        }
        let written = self.store.write(|tx| {
            for (gid, sealed) in &sealed_all {
                put_sent(tx, gid, sealed, now)?;
            }
            for (row, _) in results.iter().flatten() {
                tx.insert_message(row)?;
            }
            for group in taken.values_mut() {
                tx.save_group(group)?;
            }
            Ok(())
        });
        if let Err(e) = self.settle(taken.into_values(), written) {
            let why = e.to_string();
            let mut first = Some(e);
            return messages
                .iter()
                .map(|_| Err(first.take().unwrap_or_else(|| Error::NotStored(why.clone()))))
                .collect();
        }
        results
            .into_iter()
            .map(|r| {
                let (row, c) = r?;
                Ok(self.message_info(&row, &c.name))
            })
            .collect()
    }

    /// Replies to, reacts to, edits or deletes a message of `conversation`; durable when this
    /// returns. A reply is a new message (returned); otherwise the message changed, as it now
    /// shows (`changed_by` names the change). Only text messages are answered or changed, and
    /// only our own are edited or deleted.
    pub fn act(&mut self, conversation: &str, action: MessageAction) -> Result<MessageInfo> {
        let c = self.resolve(conversation)?;
        self.may_write_to(&c)?;
        let now = self.now();
        let me = self.account_public();
        let (target, content) = match action {
            MessageAction::Reply { to, text } => (to, crate::group::Content::Reply { to, text, replaces: None }),
            MessageAction::React { to, emoji } => {
                (to, crate::group::Content::Change(crate::group::MessageChange::Reaction { to, emoji }))
            }
            MessageAction::Edit { of, text } => {
                (of, crate::group::Content::Change(crate::group::MessageChange::Edit { of, text }))
            }
            MessageAction::Delete { of } => {
                (of, crate::group::Content::Change(crate::group::MessageChange::Delete { of }))
            }
        };
        let not_found = || Error::NotFound { what: "message", name: target.to_hex() };
        let row = self.store.read().message(&target)?.filter(|m| m.group_id == c.id).ok_or_else(not_found)?;
        if row.kind != "text" {
            return Err(Error::NotAllowed("only text messages can be answered, reacted to, edited or deleted"));
        }
        let shown = self.message_info(&row, &c.name);
        if shown.deleted {
            return Err(Error::NotAllowed("that message was deleted"));
        }
        let edits = matches!(
            content,
            crate::group::Content::Change(
                crate::group::MessageChange::Edit { .. } | crate::group::MessageChange::Delete { .. }
            )
        );
        if edits && row.sender != me {
            return Err(Error::NotAllowed("only its sender can edit or delete a message"));
        }
        let (mut group, sealed) = self.seal_about(&c, content.clone(), now)?;
        let last = sealed.last().expect("a message is always sealed");
        let (id, lamport) = (last.envelope.id(), last.inner.lamport);
        let (message, change) = match content {
            crate::group::Content::Reply { to, text, .. } => (
                Some(MessageRow {
                    id,
                    group_id: c.id,
                    sender: me,
                    lamport,
                    sent_ms: now,
                    kind: "text".into(),
                    body: text,
                    outgoing: true,
                    via: None,
                    reply_to: Some(to),
                }),
                None,
            ),
            crate::group::Content::Change(change) => (None, Some(change_row(id, c.id, me, lamport, change))),
            _ => unreachable!("only replies and changes are sealed here"),
        };
        let written = self.store.write(|tx| {
            put_sent(tx, &c.id, &sealed, now)?;
            if let Some(m) = &message {
                tx.insert_message(m)?;
            }
            if let Some(ch) = &change {
                tx.insert_change(ch)?;
            }
            tx.save_group(&mut group)
        });
        self.settle([group], written)?;
        // The delete is stored and on its way: a checkpoint that fails now is reported, not
        // returned as if the delete had failed.
        if change.as_ref().is_some_and(|c| c.kind == crate::store::ChangeKind::Delete)
            && let Err(e) = self.store.checkpoint()
        {
            tracing::warn!(%e, "the log was not folded back in after a delete; the next checkpoint does it");
        }
        Ok(match message {
            Some(m) => self.message_info(&m, &c.name),
            None => {
                let mut info = self.message_info(&row, &c.name);
                info.changed_by = Some(id.to_hex());
                info
            }
        })
    }

    /// Seals a reply, change or timer in conversation `c` (see [`Group::send_about`]), taking
    /// its group out of `self.groups` for the caller to store and settle; on failure the group
    /// goes back.
    pub(super) fn seal_about(
        &mut self,
        c: &ConversationInfo,
        content: crate::group::Content,
        now: u64,
    ) -> Result<(Group, Vec<Sealed>)> {
        let mut group =
            self.groups.remove(&c.id).ok_or_else(|| Error::NotFound { what: "conversation", name: c.name.clone() })?;
        match group.send_about(&self.me, content, now, self.entropy.as_mut()) {
            Ok(sealed) => Ok((group, sealed)),
            Err(e) => {
                self.groups.insert(group.id, group);
                Err(e)
            }
        }
    }

    /// The last `limit` messages of a conversation, oldest first, in causal order.
    pub fn history(&self, conversation: &str, limit: usize) -> Result<Vec<MessageInfo>> {
        self.history_before(conversation, None, limit)
    }

    /// The `limit` messages just before message `before` (a message id in hex), oldest first:
    /// the next page back when scrolling up. `None` gives the last page.
    pub fn history_before(&self, conversation: &str, before: Option<&str>, limit: usize) -> Result<Vec<MessageInfo>> {
        let c = self.resolve(conversation)?;
        let before = before
            .map(|hex| {
                EnvelopeId::from_hex(hex).ok_or_else(|| Error::NotFound { what: "message", name: hex.to_owned() })
            })
            .transpose()?;
        let rows = self.store.read().messages_before(&c.id, before.as_ref(), limit)?;
        let infos = rows.iter().map(|m| self.message_info(m, &c.name)).collect();
        self.with_states(&c.id, &rows, infos)
    }

    pub(super) fn message_info(&self, m: &MessageRow, conversation: &str) -> MessageInfo {
        let mut info = MessageInfo {
            id: m.id.to_hex(),
            conversation: conversation.to_owned(),
            conversation_id: m.group_id,
            sender: self.display_name(&m.sender),
            sender_account: m.sender,
            outgoing: m.outgoing,
            sent_ms: m.sent_ms,
            lamport: m.lamport,
            kind: m.kind.clone(),
            body: m.body.clone(),
            state: (m.outgoing && m.kind == "text").then_some("queued"),
            via: m.via.clone(),
            replaces: None,
            reply_to: m.reply_to.map(|r| r.to_hex()),
            edited: false,
            deleted: false,
            reactions: Vec::new(),
            changed_by: None,
            attachment: None,
        };
        if m.kind == "text" {
            match self.store.read().attachment(&m.id) {
                Ok(row) => info.attachment = row.as_ref().and_then(super::attachments::attachment_info),
                Err(e) => tracing::warn!(%e, "a message's attachment could not be read"),
            }
            match self.store.read().changes_of(&m.id, &m.group_id) {
                Ok(changes) => show_changes(&mut info, m, &changes, &self.account_public()),
                Err(e) => tracing::warn!(%e, "the changes to a message could not be read"),
            }
        }
        info
    }

    pub(super) fn conversation_name(&self, gid: &GroupId) -> String {
        self.conversations()
            .ok()
            .and_then(|all| all.into_iter().find(|c| c.id == *gid))
            .map_or_else(|| data_encoding::HEXLOWER.encode(&gid[..4]), |c| c.name)
    }
}

/// A received or sent change, as stored.
pub(super) fn change_row(
    id: crate::envelope::EnvelopeId,
    group: GroupId,
    sender: [u8; 32],
    lamport: u64,
    change: crate::group::MessageChange,
) -> crate::store::ChangeRow {
    use crate::group::MessageChange;
    use crate::store::ChangeKind;
    let target = change.target();
    let (kind, body) = match change {
        MessageChange::Reaction { emoji, .. } => (ChangeKind::Reaction, Some(emoji)),
        MessageChange::Edit { text, .. } => (ChangeKind::Edit, Some(text)),
        MessageChange::Delete { .. } => (ChangeKind::Delete, None),
    };
    crate::store::ChangeRow { id, group_id: group, target, sender, lamport, kind, body }
}

/// What a message shows once its changes are applied: its sender's latest edit, its sender's
/// delete (which empties it and its reactions), and each member's latest reaction. Edits and
/// deletes by anyone else are ignored: a member cannot put words in another's mouth.
pub(super) fn show_changes(info: &mut MessageInfo, m: &MessageRow, changes: &[crate::store::ChangeRow], me: &[u8; 32]) {
    use crate::store::ChangeKind;
    let mut latest_reaction: BTreeMap<[u8; 32], &str> = BTreeMap::new();
    for change in changes {
        match change.kind {
            ChangeKind::Edit if change.sender == m.sender => {
                if let Some(text) = &change.body {
                    info.body = text.clone();
                    info.edited = true;
                }
            }
            ChangeKind::Delete if change.sender == m.sender => info.deleted = true,
            ChangeKind::Reaction => {
                latest_reaction.insert(change.sender, change.body.as_deref().unwrap_or(""));
            }
            ChangeKind::Edit | ChangeKind::Delete => {}
        }
    }
    if info.deleted {
        info.body.clear();
        return;
    }
    let mut reactions: Vec<super::ReactionInfo> = Vec::new();
    for (sender, emoji) in latest_reaction.into_iter().filter(|(_, e)| !e.is_empty()) {
        match reactions.iter_mut().find(|r| r.emoji == emoji) {
            Some(r) => {
                r.count += 1;
                r.mine |= sender == *me;
            }
            None => reactions.push(super::ReactionInfo { emoji: emoji.to_owned(), count: 1, mine: sender == *me }),
        }
    }
    reactions.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.emoji.cmp(&b.emoji)));
    info.reactions = reactions;
}

fn system_row(group: &GroupId, sealed: &Sealed, sender: [u8; 32], kind: &str, body: &str) -> MessageRow {
    MessageRow {
        id: sealed.envelope.id(),
        group_id: *group,
        sender,
        lamport: sealed.inner.lamport,
        sent_ms: sealed.inner.sent_ms,
        kind: kind.to_owned(),
        body: body.to_owned(),
        outgoing: true,
        via: None,
        reply_to: None,
    }
}

/// Stores envelopes of ours and puts them in the outbox, each with what it says, so that one
/// that waits past its day or epoch can be sealed again.
pub(super) fn put_sent(tx: &rusqlite::Connection, group: &GroupId, sealed: &[Sealed], now: u64) -> Result<()> {
    for s in sealed {
        let id = s.envelope.id();
        tx.put_envelope(&id, Some(group), s.envelope.as_bytes(), EnvelopeStatus::Sent, now)?;
        tx.set_outbox_inner(&id, &s.inner.encode())?;
    }
    Ok(())
}

/// The id `text` spells out whole (64 hex characters), if it does.
pub(super) fn exact_id(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    data_encoding::HEXLOWER_PERMISSIVE.decode(text.as_bytes()).ok()?.try_into().ok()
}

/// Whether a name could be taken for an id or an id's prefix (6 hex characters or more).
/// A group's name as shown: the name its admins gave it, without control characters (no
/// escape sequence reaches a terminal), or `group-` and the start of its id where that name is
/// empty or could be taken for an id.
pub(super) fn shown_group_name(name: &str, id: &GroupId) -> String {
    let cleaned: String = name.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || looks_like_an_id(cleaned) {
        return format!("group-{}", data_encoding::HEXLOWER.encode(&id[..3]));
    }
    cleaned.to_owned()
}

pub(super) fn looks_like_an_id(name: &str) -> bool {
    name.len() >= 6 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn describe(c: &ConversationInfo) -> String {
    let kind = match c.kind {
        ConversationKind::Contact => "contact",
        ConversationKind::Group => "group",
    };
    format!("{} ({kind} {})", c.name, data_encoding::HEXLOWER.encode(&c.id[..4]))
}

fn ambiguous(what: &'static str, name: &str, candidates: impl Iterator<Item = String>) -> Error {
    Error::Ambiguous { what, name: name.to_owned(), candidates: candidates.collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_name_that_looks_like_an_id_is_not_shown() {
        let id = [0xab; 32];
        assert_eq!(shown_group_name("trip", &id), "trip");
        assert_eq!(shown_group_name("1a2b3c4d", &id), "group-ababab");
        assert_eq!(shown_group_name("  ", &id), "group-ababab");
        assert_eq!(shown_group_name("red\u{1b}[31malert", &id), "red[31malert");
    }

    /// Issue 19: a hostile member's edit or delete of someone else's message changes nothing
    /// shown; each member's latest reaction counts once.
    #[test]
    fn only_the_sender_edits_or_deletes_and_each_member_reacts_once() {
        use crate::store::{ChangeKind, ChangeRow};
        let (alice, bob, mallory) = ([1; 32], [2; 32], [3; 32]);
        let m = MessageRow {
            id: EnvelopeId([9; 32]),
            group_id: [5; 32],
            sender: alice,
            lamport: 1,
            sent_ms: 1,
            kind: "text".into(),
            body: "at six".into(),
            outgoing: false,
            via: None,
            reply_to: None,
        };
        let info = || MessageInfo {
            id: m.id.to_hex(),
            conversation: "trip".into(),
            conversation_id: m.group_id,
            sender: "alice".into(),
            sender_account: alice,
            outgoing: false,
            sent_ms: 1,
            lamport: 1,
            kind: "text".into(),
            body: m.body.clone(),
            state: None,
            via: None,
            replaces: None,
            reply_to: None,
            edited: false,
            deleted: false,
            reactions: Vec::new(),
            changed_by: None,
            attachment: None,
        };
        let change = |n: u8, sender, kind, body: Option<&str>| ChangeRow {
            id: EnvelopeId([n; 32]),
            group_id: m.group_id,
            target: m.id,
            sender,
            lamport: u64::from(n),
            kind,
            body: body.map(str::to_owned),
        };
        let changes = vec![
            change(2, mallory, ChangeKind::Edit, Some("cancelled")),
            change(3, bob, ChangeKind::Reaction, Some("🎉")),
            change(4, bob, ChangeKind::Reaction, Some("👍")),
            change(5, mallory, ChangeKind::Reaction, Some("👍")),
            change(6, alice, ChangeKind::Edit, Some("at seven")),
            change(7, mallory, ChangeKind::Delete, None),
        ];
        let mut shown = info();
        show_changes(&mut shown, &m, &changes, &bob);
        assert_eq!((shown.body.as_str(), shown.edited, shown.deleted), ("at seven", true, false));
        assert_eq!(shown.reactions, vec![crate::account::ReactionInfo { emoji: "👍".into(), count: 2, mine: true }]);

        let mut withdrawn = changes.clone();
        withdrawn.push(change(8, bob, ChangeKind::Reaction, Some("")));
        let mut shown = info();
        show_changes(&mut shown, &m, &withdrawn, &bob);
        assert_eq!(shown.reactions, vec![crate::account::ReactionInfo { emoji: "👍".into(), count: 1, mine: false }]);

        withdrawn.push(change(9, alice, ChangeKind::Delete, None));
        let mut shown = info();
        show_changes(&mut shown, &m, &withdrawn, &bob);
        assert!(shown.deleted && shown.body.is_empty() && shown.reactions.is_empty());
    }
}
