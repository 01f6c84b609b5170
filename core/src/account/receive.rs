//! Receiving: envelopes and requests from any path (bundle now, network and mesh later), the
//! retry of envelopes that waited for keys, and the offline bundle.

use std::collections::VecDeque;

use super::{Account, ImportProgress, ImportReport, MessageInfo, Received, RequestOutcome};
use crate::bundle::Bundle;
use crate::envelope::{Envelope, EnvelopeId};
use crate::error::{Error, Result};
use crate::group::{Action, Event, Group, GroupId};
use crate::store::{EnvelopeStatus, MessageRow, ParkedPlace, Rows};

/// Envelopes one group may park while their senders' keys, or earlier messages of their
/// chains, have not arrived. A catch-up of a big backlog parks most of it for a while (it comes
/// in hash order), so this is a backlog's size, not a handful; a member could make us store as
/// much by sending it.
const MAX_WAITING_PER_GROUP: usize = 20_000;
/// Bytes one sender device may have parked in a group: a backlog of small messages fits many
/// times over; a hostile member filling it with 64 KiB envelopes stops at 512 of them.
const MAX_PARKED_BYTES_PER_DEVICE: usize = 32 << 20;
/// Bytes all the sender devices a group does not know may have parked in it together.
const MAX_PARKED_BYTES_UNKNOWN_DEVICES: usize = 4 << 20;
/// How long a parked envelope waits: a relay keeps envelopes two weeks, so what it waits for
/// will not come later than that.
const PARKED_FOR_AT_MOST_MS: u64 = 14 * 24 * 60 * 60 * 1000;
/// Parked envelopes read back at once.
const PARKED_PAGE: usize = 256;
/// Epochs before the current one whose topics are still followed, per group.
pub(super) const PREVIOUS_EPOCHS_FOLLOWED: usize = 4;
/// Peer addresses remembered for reconnecting after a restart.
const MAX_PEER_ADDRS: usize = 32;

/// Envelopes of an import committed together.
const IMPORT_BATCH: usize = 1024;

/// How often a device notes when another of our devices was last heard from.
const SEEN_EVERY_MS: u64 = 10 * 60 * 1000;

impl Account {
    /// Receives one envelope. Duplicates are [`Error::Duplicate`]; envelopes of conversations
    /// we are not in are [`Error::UnknownTopic`]; neither changes the store.
    pub fn receive_envelope(&mut self, envelope: Envelope) -> Result<Received> {
        self.follow_the_day();
        if self.is_link_envelope(&envelope.topic()) {
            return Ok(match self.take_link_envelope(envelope.as_bytes())? {
                Some(arrived) => Received::LinkRequest(arrived),
                None => Received::Waiting,
            });
        }
        if self.topics.get(&envelope.topic()).is_none() && self.is_attachment_topic(&envelope.topic()) {
            return self.take_attachment_envelope(&envelope);
        }
        let Some((mut shown, unblocked)) = self.receive_one(&envelope)? else { return Ok(Received::Waiting) };
        shown.extend(self.retry_groups(unblocked)?);
        Ok(Received::Applied(shown))
    }

    /// Receives several envelopes with one commit for all (each applied atomically on its own):
    /// what a transport hands over in a burst. One result per envelope; if the commit fails,
    /// every result is an error and memory is reloaded from the store.
    pub fn receive_batch(&mut self, envelopes: Vec<(Vec<u8>, &'static str)>) -> Vec<Result<Received>> {
        if let Err(e) = self.store.begin_batch() {
            let why = e.to_string();
            return envelopes.iter().map(|_| Err(Error::NotStored(why.clone()))).collect();
        }
        let mut advanced: Vec<(GroupId, usize)> = Vec::new();
        let mut results: Vec<Result<Received>> = Vec::with_capacity(envelopes.len());
        let mut vias = Vec::with_capacity(envelopes.len());
        for (bytes, via) in envelopes {
            let result = Envelope::parse(bytes).and_then(|e| {
                let gid = self.topics.get(&e.topic()).map(|(gid, _)| gid);
                let received = self.receive_envelope(e)?;
                if let (Some(gid), Received::Applied(m)) = (gid, &received)
                    && !m.is_empty()
                {
                    advanced.retain(|(g, _)| *g != gid);
                    advanced.push((gid, results.len()));
                }
                Ok(self.record_via(received, via))
            });
            results.push(result);
            vias.push(via);
        }
        // Held envelopes of groups that moved on may open now; what they show joins the result
        // of the last envelope of that group in the batch.
        for (gid, at) in advanced {
            if self.count_waiting(Some(&gid)).unwrap_or(0) == 0 {
                continue;
            }
            let Ok(shown) = self.retry_waiting(&gid) else { continue };
            if shown.is_empty() {
                continue;
            }
            if let Received::Applied(more) = self.record_via(Received::Applied(shown), vias[at])
                && let Some(Ok(Received::Applied(messages))) = results.get_mut(at)
            {
                messages.extend(more);
            }
        }
        let ended = self.store.end_batch();
        let broken = self.store.take_batch_broken();
        match ended {
            Ok(()) if !broken => {
                // Best effort: a receipt that fails to seal leaves its messages "sent" for the
                // sender; the messages themselves are stored.
                if let Err(e) = self.flush_receipts() {
                    tracing::debug!(error = %e, "receipts were not sealed");
                }
                results
            }
            other => {
                // Nothing of the batch is stored: nothing of it may be acknowledged either.
                self.forget_pending_receipts();
                self.downloads.clear();
                let why = other.err().map_or_else(|| "a commit inside the batch failed".to_owned(), |e| e.to_string());
                let _ = self.settle([], Err::<(), _>(Error::NotStored(why.clone())));
                results.iter().map(|_| Err(Error::NotStored(why.clone()))).collect()
            }
        }
    }

    /// Notes on what it made visible, in the store and in the infos, how an envelope came.
    /// Best effort: a message whose path is not recorded shows none.
    fn record_via(&mut self, received: Received, via: &'static str) -> Received {
        let Received::Applied(mut messages) = received else { return received };
        let ids: Vec<EnvelopeId> = messages.iter().filter_map(|m| EnvelopeId::from_hex(&m.id)).collect();
        if let Err(e) = self.store.write_relaxed(|tx| tx.set_via(&ids, via)) {
            tracing::debug!(error = %e, "the messages' path was not recorded");
        }
        for m in &mut messages {
            m.via.get_or_insert_with(|| via.to_owned());
        }
        Received::Applied(messages)
    }

    /// Puts the account back in step with its store after a panic in the middle of a change:
    /// an open batch is rolled back and the groups are reloaded.
    pub fn recover_after_panic(&mut self) {
        self.store.abort_batch();
        self.downloads.clear();
        self.forget_pending_receipts();
        let _ = self.settle([], Err::<(), _>(Error::Internal("recovering from a panic")));
    }

    /// Retries the envelopes of a group that waited for keys or for earlier messages, in their
    /// chains' order (so one pass opens every one that can be), while passes open some.
    pub(super) fn retry_waiting(&mut self, gid: &GroupId) -> Result<Vec<MessageInfo>> {
        self.retry_groups(vec![*gid])
    }

    /// [`Self::retry_waiting`] for each group, and for the groups that opening their envelopes
    /// unblocked in turn (a welcome joins one). What waits is read a page at a time: a group
    /// may hold thousands of envelopes of up to 64 KiB.
    fn retry_groups(&mut self, groups: Vec<GroupId>) -> Result<Vec<MessageInfo>> {
        let mut queue = VecDeque::from(groups);
        let mut shown = Vec::new();
        while let Some(gid) = queue.pop_front() {
            loop {
                let mut opened_any = false;
                let mut after = None;
                loop {
                    let page = self.store.read().parked_page(&gid, after.as_ref(), PARKED_PAGE)?;
                    let Some((last, _)) = page.last() else { break };
                    after = Some(*last);
                    for (_, bytes) in page {
                        if let Ok(Some((messages, unblocked))) = self.receive_one(&Envelope::parse(bytes)?) {
                            opened_any = true;
                            shown.extend(messages);
                            for g in unblocked {
                                if g != gid && !queue.contains(&g) {
                                    queue.push_back(g);
                                }
                            }
                        }
                    }
                }
                if !opened_any {
                    break;
                }
            }
        }
        Ok(shown)
    }

    /// Opens and applies one envelope. `Ok(None)`: stored to wait for its key. Otherwise the
    /// messages it made visible and the groups in which waiting envelopes may now open.
    fn receive_one(&mut self, envelope: &Envelope) -> Result<Option<(Vec<MessageInfo>, Vec<GroupId>)>> {
        let id = envelope.id();
        let already_held = match self.store.read().has_envelope(&id)? {
            Some(EnvelopeStatus::Waiting) => true,
            None => false,
            Some(_) => return Err(Error::Duplicate),
        };
        let (gid, epoch) = self.topics.get(&envelope.topic()).ok_or(Error::UnknownTopic)?;
        let now = self.now();
        let group = self.groups.get(&gid).expect("the topic index names only loaded groups");
        let opened = match group.open_in_order(&self.me, envelope, &epoch) {
            Ok(o) => o,
            // Its header authenticated under the group's secret, so a member sent it: it waits
            // for its sender's key, for the messages before it in its chain (a catch-up
            // brings a backlog in no particular order, and opening a message far ahead would
            // drop the keys of those), or for the membership changes it builds on. Each group
            // holds a bounded number.
            Err(e @ (Error::MissingKey | Error::AheadOfChain | Error::MissingParent)) => {
                if already_held {
                    return Ok(None);
                }
                if let Some((place, known)) = self.room_to_park(group, envelope, &epoch)? {
                    self.store
                        .write_relaxed(|tx| tx.park_envelope(&id, &gid, envelope.as_bytes(), &place, known, now))?;
                    return Ok(None);
                }
                match e {
                    // No room to hold it: open it now, at the cost of older messages of its
                    // chain that have not come yet.
                    Error::AheadOfChain => group.open(&self.me, envelope, &epoch)?,
                    _ => return Err(Error::Limit("no room to hold this envelope until what it waits for comes")),
                }
            }
            Err(e) => return Err(e),
        };
        // A member device we learn of through an envelope of a past epoch was never sent the
        // secrets of the epochs since (whoever changed the membership did not know it). The
        // admin who started the current epoch (only they, so admins do not race) starts a new
        // one, shared with every device now known.
        let device_is_new = !group.devices_of(&opened.sender.account).iter().any(|c| c.device == opened.sender.device);
        let behind = group.current_epoch().is_some_and(|current| current.id != epoch);
        let share_anew = device_is_new
            && behind
            && group.kind == crate::group::GroupKind::Many
            && group.is_admin(&self.account_public())
            && group.current_epoch_author() == Some(self.account_public())
            && group.is_member(&opened.sender.account);
        // A member's second (third...) device speaking in a conversation for the first time:
        // they linked a new device, which each conversation says once (a group member who is
        // not our contact is told in the group, as a contact is in the 1:1).
        let linked_device = device_is_new
            && opened.sender.account != self.account_public()
            && !group.devices_of(&opened.sender.account).is_empty();
        let (sender_account, sender_device) = (opened.sender.account, opened.sender.device);
        let own_other_device = (sender_account == self.account_public() && sender_device != self.me.id()).then(|| {
            let mut w = crate::wire::Writer::new();
            opened.sender.encode(&mut w);
            w.into_bytes()
        });
        // A device its account revoked: whatever it sends after we learned of it is refused.
        if self.revoked.contains(&(opened.sender.account, opened.sender.device)) {
            return Err(Error::Revoked);
        }
        let mut group = self.groups.remove(&gid).expect("checked above");
        let result = self.apply_opened(&mut group, envelope, opened, now);
        let (mut rows, mut unblocked, joined, moved, changed) = self.settle([group], result)?;
        // When another of our devices was last heard from: written at most every ten minutes
        // per device, not once per envelope of a catch-up.
        if let Some(cert) = own_other_device
            && self.seen_written.get(&sender_device).is_none_or(|t| now.saturating_sub(*t) >= SEEN_EVERY_MS)
        {
            self.store.write_relaxed(|tx| tx.device_seen(&sender_device, &cert, now))?;
            self.seen_written.insert(sender_device, now);
            // (The device list is read again only when a device it lacks was written.)
            if !self.own_devices.as_ref().is_some_and(|known| known.contains(&sender_device)) {
                self.own_devices = None;
            }
        }
        if linked_device {
            let id = EnvelopeId(
                *blake3::hash(&[&b"weft/device-linked/"[..], &sender_device[..], &gid[..]].concat()).as_bytes(),
            );
            if self.store.read().message(&id)?.is_none() {
                let row = MessageRow {
                    id,
                    group_id: gid,
                    sender: sender_account,
                    lamport: self.groups.get(&gid).map_or(0, |g| g.lamport()),
                    sent_ms: now,
                    kind: "device_linked".into(),
                    body: self.display_name(&sender_account),
                    outgoing: false,
                    via: None,
                    reply_to: None,
                };
                self.store.write_relaxed(|tx| tx.insert_message(&row))?;
                rows.push(row);
            }
        }
        if let Some(new_gid) = joined {
            unblocked.push(new_gid);
        }
        // Healing is best effort: the envelope is applied whatever happens here.
        let _ = self.heal_if_needed(&gid);
        // Members who asked to leave: one admin's device removes them (best effort too). Looked
        // at when a request came, or when who acts may have changed (a membership change, keys
        // that arrived): not for every envelope, which would read the group's history each time.
        if rows.iter().any(|r| r.kind == "left") || unblocked.contains(&gid) {
            let _ = self.act_on_leave_requests(&gid);
        }
        for revocation in std::mem::take(&mut self.pending_revocations) {
            let _ = self.apply_revocation(&revocation);
        }
        let settings = std::mem::take(&mut self.pending_settings);
        if let Err(e) = self.take_shared_settings(&settings) {
            tracing::debug!(%e, "settings changed on another of our devices were not taken");
        }
        for contact in std::mem::take(&mut self.pending_contacts) {
            if let Err(e) = self.take_shared_contact(&contact) {
                tracing::debug!(%e, "a contact shared by another of our devices was not taken");
            }
        }
        for link in std::mem::take(&mut self.pending_links) {
            if let Err(e) = self.take_arrived_link(link) {
                tracing::debug!(%e, "a replaced link was not taken");
            }
        }
        if sender_account != self.account_public() {
            self.remind_of_our_link(&gid, &epoch, &sender_account);
        }
        // A device our latest change could not reach (we knew no prekey of it) just spoke:
        // it gets the current secrets through a new epoch.
        let owes_epoch = self.groups.get(&gid).is_some_and(|g| g.owes_epoch(&self.me));
        if share_anew || owes_epoch {
            let _ = self.rekey(&gid);
        }
        let mut shown: Vec<MessageInfo> = rows
            .iter()
            .map(|r| {
                let mut info = self.message_info(r, &self.conversation_name(&r.group_id));
                info.replaces = moved.filter(|_| r.id == id).map(|old| old.to_hex());
                info
            })
            .collect();
        // A change to a message we hold: the message as it now shows.
        if let Some(target) = changed {
            let mut info = self.message_info(&target, &self.conversation_name(&target.group_id));
            info.changed_by = Some(id.to_hex());
            shown.push(info);
        }
        Ok(Some((shown, unblocked)))
    }

    #[allow(clippy::type_complexity)]
    fn apply_opened(
        &mut self,
        group: &mut Group,
        envelope: &Envelope,
        opened: crate::group::Opened,
        now: u64,
    ) -> Result<(Vec<MessageRow>, Vec<GroupId>, Option<GroupId>, Option<EnvelopeId>, Option<MessageRow>)> {
        let id = envelope.id();
        let gid = group.id;
        // In a 1:1 conversation, a reply that names one of our envelopes as parent proves the
        // other side holds our chain: our contact request has done its job.
        let replied_to_us = group.kind != crate::group::GroupKind::Many
            && opened
                .inner
                .parents
                .iter()
                .any(|p| matches!(self.store.read().has_envelope(p), Ok(Some(EnvelopeStatus::Sent))));
        let replier = opened.sender.account;
        // Someone we asked (their link, our request) writes in our conversation: they accepted.
        // Until they do, they have nothing to write there with (a stranger's side sends us
        // nothing, not even receipts, before accepting).
        let answered = match group.kind {
            crate::group::GroupKind::Many => None,
            _ => self
                .store
                .read()
                .contact_by_account(&replier)?
                .filter(|c| c.status == crate::store::ContactStatus::Added && c.group_id == gid),
        };
        // What a contact claims is clamped as the group machine clamps any clock.
        let lamport_seen = opened.inner.lamport.min(group.lamport().saturating_add(crate::group::MAX_LAMPORT_JUMP));
        let event = group.accept(&self.me, opened)?;
        let mut rows = Vec::new();
        let mut unblocked = Vec::new();
        let mut joined: Option<Group> = None;
        let mut announce = None;
        let mut held_invite = None;
        let mut receipt = None;
        let mut replacing = None;
        let mut change_row = None;
        let mut changed = None;
        let mut timer = None;
        let mut attachment = None;
        let mut removed_us = false;
        let mut revocation = None;
        if let Some(contact) = &answered {
            rows.push(MessageRow {
                id: EnvelopeId(*blake3::hash(&[&b"weft/accepted/"[..], &id.0[..]].concat()).as_bytes()),
                group_id: gid,
                sender: replier,
                lamport: lamport_seen,
                sent_ms: now,
                kind: "accepted".into(),
                body: contact.name.clone(),
                outgoing: false,
                via: None,
                reply_to: None,
            });
        }
        // Acknowledged only once it is stored (see below).
        let mut acknowledge = None;
        match event {
            // Someone the user blocked: applied (their chain moves on) but neither shown nor
            // acknowledged.
            Event::Message { sender, .. } if self.is_blocked(&sender)? => {}
            Event::Message { id, sender, lamport, sent_ms, text, replaces, reply_to, attachment: file } => {
                if sender != self.account_public() {
                    acknowledge = Some(id);
                }
                // A message sealed again reaches us in both envelopes, in either order: it is
                // shown once, under the newer one.
                if let Some(original) = replaces {
                    replacing = Some((original, sender));
                }
                if !self.store.read().is_replaced(&id, &sender)? {
                    if let Some(manifest) = file {
                        let ours = sender == self.account_public();
                        let fetch = super::attachments::fetch_unasked(self.store.read(), manifest.size, now);
                        attachment =
                            Some(super::attachments::attachment_row(id, gid, &manifest, (false, fetch, ours), now));
                    }
                    rows.push(MessageRow {
                        id,
                        group_id: gid,
                        sender,
                        lamport,
                        sent_ms,
                        kind: "text".into(),
                        body: text,
                        // Written on another of our devices: ours.
                        outgoing: sender == self.account_public(),
                        via: None,
                        reply_to,
                    })
                }
            }
            // Any member may set it, whoever they are to us: it is shown, and every device of
            // the group follows it, or the group's devices would keep different histories.
            // Someone blocked sets nothing here.
            Event::TimerSet { sender, .. } if self.is_blocked(&sender)? => {}
            Event::TimerSet { id, sender, lamport, sent_ms, keep_ms } => {
                timer = Some((id, lamport, keep_ms));
                rows.push(MessageRow {
                    id,
                    group_id: gid,
                    sender,
                    lamport,
                    sent_ms,
                    kind: "timer".into(),
                    body: super::disappearing::timer_body(keep_ms),
                    outgoing: sender == self.account_public(),
                    via: None,
                    reply_to: None,
                });
            }
            // Someone blocked changes nothing we show.
            Event::MessageChanged { sender, .. } if self.is_blocked(&sender)? => {}
            Event::MessageChanged { id, sender, lamport, change } => {
                changed = self.store.read().message(&change.target())?.filter(|m| m.group_id == gid);
                change_row = Some(super::conversations::change_row(id, gid, sender, lamport, change));
            }
            Event::Receipt { sender, receipt: r } => receipt = Some((sender, r)),
            Event::DeviceRevoked { revocation: r } => revocation = Some(r),
            // What another of our devices added: taken once the envelope is applied.
            Event::ContactShared { sender, contact } if sender == self.account_public() => {
                self.pending_contacts.push(contact);
            }
            Event::ContactShared { .. } => {}
            Event::SettingShared { sender, setting } if sender == self.account_public() => {
                self.pending_settings.push(setting);
            }
            Event::SettingShared { .. } => {}
            Event::InviteKeysShared { sender, request_secret, link } if sender == self.account_public() => {
                self.pending_links.push(super::link_rotation::ArrivedLink::Ours { request_secret, link });
            }
            Event::InviteKeysShared { .. } => {}
            Event::LinkRotated { link } => self.pending_links.push(super::link_rotation::ArrivedLink::Contact(link)),
            Event::LeaveAsked { id, sender, lamport, sent_ms } => rows.push(MessageRow {
                id,
                group_id: gid,
                sender,
                lamport,
                sent_ms,
                kind: "left".into(),
                body: self.name_in(group, &sender, None),
                outgoing: false,
                via: None,
                reply_to: None,
            }),
            // Changes that named this one as parent may enter the log now.
            Event::KeysArrived { .. } | Event::ChangeOutranked { .. } => unblocked.push(gid),
            Event::MembershipChanged { id, op, lamport, we_were_removed } => {
                // Changes that named this one as parent may enter the log now.
                unblocked.push(gid);
                let (kind, body) = match &op.action {
                    Action::Create { name, .. } => ("created", name.clone()),
                    Action::Add { member, name, .. } => ("added", self.name_in(group, member, name.as_deref())),
                    Action::Remove { .. } if we_were_removed => ("removed", "you".to_owned()),
                    Action::Remove { member } => ("removed", self.name_in(group, member, None)),
                    Action::Rekey => ("rekeyed", String::new()),
                    Action::Rename { name } => ("renamed", name.clone()),
                };
                removed_us |= we_were_removed;
                rows.push(MessageRow {
                    id,
                    group_id: gid,
                    sender: op.author.account,
                    lamport,
                    sent_ms: op.created_ms,
                    kind: kind.into(),
                    body,
                    outgoing: false,
                    via: None,
                    reply_to: None,
                });
            }
            Event::Invited { id: invite_id, from, welcome } => {
                // Only people we chose to talk to can put us in a group; a request plus an
                // invitation from a stranger joins nothing.
                let trusted = self
                    .store
                    .read()
                    .contact_by_account(&from.account)?
                    .is_some_and(|c| c.status != crate::store::ContactStatus::Incoming);
                // Someone blocked puts us nowhere, now or after an accept.
                let blocked = self.is_blocked(&from.account)?;
                let rejoin = self.groups.get(&welcome.group).is_none_or(|g| !g.is_member(&self.account_public()));
                // Another of our devices hands us a group it made or joined, or the epoch of one
                // we missed (`Account::share_groups_with_own_devices`): only in the account's
                // conversation with itself.
                let own = from.account == self.account_public() && gid == self.self_conversation_id();
                let trusted = trusted || own;
                // A group we know is caught up with the log both hold (a welcome our other device
                // made before it heard of our removal leaves us out; one after a new `Add` takes
                // us back); a group we asked to leave is not entered again.
                let known = self.groups.contains_key(&welcome.group);
                if own && known && self.has_left(&welcome.group)? {
                    tracing::debug!("a welcome from another of our devices to a group we asked to leave");
                } else if own && known {
                    if let Some(mut g) = self.groups.remove(&welcome.group) {
                        let moved = g.take_own_welcome(&self.me, &welcome, &from).and_then(|moved| match moved {
                            true => g.announce(&self.me, now, self.entropy.as_mut()).map(Some),
                            false => Ok(None),
                        });
                        match moved {
                            Ok(Some(a)) => {
                                announce = Some(a);
                                joined = Some(g);
                            }
                            other => {
                                if let Err(e) = other {
                                    tracing::debug!(%e, "a group another of our devices handed over was not taken");
                                }
                                self.groups.insert(g.id, g);
                            }
                        }
                    }
                } else if trusted && rejoin && !blocked {
                    let (g, a, row) = self.join(&welcome, &from, invite_id, now)?;
                    announce = Some(a);
                    rows.push(row);
                    joined = Some(g);
                } else if rejoin && !blocked {
                    // Kept until the user accepts the contact (or forever ignored).
                    held_invite = Some((invite_id, from, welcome));
                }
            }
            Event::Nothing => {}
        }
        // A received envelope is safe to lose to a power cut (a peer hands it over again);
        // joining a group is not: it seals our announcement with a fresh chain position.
        let durable = announce.is_some();
        let others = group.member_count().saturating_sub(1);
        let me = self.account_public();
        let apply = |tx: &rusqlite::Connection| -> Result<(Vec<(String, super::Acknowledged)>, Option<EnvelopeId>)> {
            tx.put_envelope(&id, Some(&gid), envelope.as_bytes(), EnvelopeStatus::Opened, now)?;
            let moved = match &replacing {
                Some((original, sender)) => tx.replace_message(&gid, original, sender, &id)?.then_some(*original),
                None => None,
            };
            let acknowledged = match &receipt {
                // Another of our devices read these: what it read is read here too.
                Some((sender, r)) if *sender == me => {
                    tx.advance_read_mark(&gid, &r.read)?;
                    Vec::new()
                }
                Some((sender, r)) => super::receipts::record(tx, &gid, others, sender, r)?,
                None => Vec::new(),
            };
            for row in &rows {
                tx.insert_message(row)?;
            }
            if let Some((id, lamport, keep_ms)) = &timer {
                tx.add_timer(&gid, id, *lamport, *keep_ms)?;
            }
            if let Some(a) = &attachment {
                tx.put_attachment(a)?;
            }
            if let Some(change) = &change_row {
                tx.insert_change(change)?;
            }
            tx.save_group(group)?;
            if removed_us {
                tx.clear_left(&gid)?;
            }
            if replied_to_us {
                tx.clear_request(&replier)?;
            }
            if let Some(contact) = &answered {
                tx.upsert_contact(&crate::store::ContactRow {
                    status: crate::store::ContactStatus::Accepted,
                    request: None,
                    ..contact.clone()
                })?;
            }
            if let Some((invite_id, from, welcome)) = &held_invite {
                tx.hold_invite(invite_id, from, welcome)?;
            }
            if let Some(g) = joined.as_mut() {
                tx.save_group(g)?;
                for a in announce.iter().flatten() {
                    tx.put_envelope(&a.envelope.id(), Some(&g.id), a.envelope.as_bytes(), EnvelopeStatus::Sent, now)?;
                }
            }
            Ok((acknowledged, moved))
        };
        if let Some(r) = revocation {
            self.pending_revocations.push(r);
        }
        let (acknowledged, moved) = if durable { self.store.write(apply)? } else { self.store.write_relaxed(apply)? };
        // A deleted message's text leaves the file now (the write-ahead log folded back in),
        // not at some later checkpoint.
        if change_row.as_ref().is_some_and(|c| c.kind == crate::store::ChangeKind::Delete)
            && let Err(e) = self.store.checkpoint()
        {
            tracing::warn!(%e, "the log was not folded back in after a delete; the next checkpoint does it");
        }
        self.note_acknowledged(acknowledged);
        if let Some(id) = acknowledge {
            self.acknowledge_later(gid, id);
        }
        let joined_id = joined.as_ref().map(|g| g.id);
        if let Some(mut g) = joined {
            for (account, device) in &self.revoked {
                g.mark_revoked(account, device);
            }
            self.groups.insert(g.id, g);
        }
        Ok((rows, unblocked, joined_id, moved, changed))
    }

    /// A member's name: our contact name, else the name the admin gave them in this group.
    fn name_in(&self, group: &Group, account: &[u8; 32], given: Option<&str>) -> String {
        if *account == self.account_public() || self.store.read().contact_by_account(account).ok().flatten().is_some() {
            return self.display_name(account);
        }
        given.map(str::to_owned).or_else(|| group.name_given_to(account)).unwrap_or_else(|| self.display_name(account))
    }

    /// Joins a group from a welcome: the group, our announcement in it, and the history row.
    pub(super) fn join(
        &mut self,
        welcome: &crate::group::Welcome,
        from: &crate::identity::DeviceCert,
        invite_id: crate::envelope::EnvelopeId,
        now: u64,
    ) -> Result<(Group, Vec<crate::group::Sealed>, MessageRow)> {
        let mut g = Group::from_welcome(&self.me, welcome, from, now)?;
        let announce = g.announce(&self.me, now, self.entropy.as_mut())?;
        let row = MessageRow {
            id: invite_id,
            group_id: g.id,
            sender: self.account_public(),
            lamport: 0,
            sent_ms: now,
            kind: "joined".into(),
            body: g.name().to_owned(),
            outgoing: false,
            via: None,
            reply_to: None,
        };
        Ok((g, announce, row))
    }

    /// Joins the groups a contact invited us to before we accepted them.
    pub(super) fn join_held_invites(&mut self, from_account: &[u8; 32]) -> Result<Vec<String>> {
        let now = self.now();
        let mut joined = Vec::new();
        for (invite_id, from, welcome) in self.store.read().held_invites(from_account)? {
            let result = self.join(&welcome, &from, invite_id, now).and_then(|(mut g, announce, row)| {
                self.store.write(|tx| {
                    tx.save_group(&mut g)?;
                    for a in &announce {
                        tx.put_envelope(
                            &a.envelope.id(),
                            Some(&g.id),
                            a.envelope.as_bytes(),
                            EnvelopeStatus::Sent,
                            now,
                        )?;
                    }
                    tx.insert_message(&row)?;
                    tx.drop_held_invite(&invite_id)
                })?;
                Ok(g)
            });
            match result {
                Ok(g) => {
                    joined.push(g.name().to_owned());
                    self.settle([g], Ok(()))?;
                }
                Err(e @ (Error::Database(_) | Error::Io { .. })) => return Err(e),
                Err(_) => self.store.write(|tx| tx.drop_held_invite(&invite_id))?,
            }
        }
        Ok(joined)
    }

    /// Everything another device may lack: our pending contact requests and every envelope we
    /// hold. All of it is already encrypted.
    pub fn export_bundle(&self) -> Result<Vec<u8>> {
        let requests = self.store.read().contacts()?.into_iter().filter_map(|c| c.request).collect();
        let envelopes =
            self.store.read().all_envelopes()?.into_iter().map(Envelope::parse).collect::<Result<Vec<_>>>()?;
        Ok(Bundle { requests, envelopes }.encode())
    }

    /// Imports a bundle: requests first, then envelopes, repeated while any pass makes progress
    /// so that the order inside the file does not matter.
    pub fn import_bundle(&mut self, bytes: &[u8]) -> Result<ImportReport> {
        self.import_bundle_with_progress(bytes, &mut |_| {})
    }

    /// [`Self::import_bundle`], telling `progress` after each request and envelope of the first
    /// pass (later passes only retry what waited for an earlier one, and are quick).
    pub fn import_bundle_with_progress(
        &mut self,
        bytes: &[u8],
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportReport> {
        let (bundle, malformed) = Bundle::decode(bytes)?;
        let mut report = ImportReport { rejected: malformed, ..ImportReport::default() };
        let waiting_before = self.count_waiting(None)?;
        let total = bundle.requests.len() + bundle.envelopes.len();
        let mut done = 0;
        progress(ImportProgress { done, total });
        for request in &bundle.requests {
            done += 1;
            progress(ImportProgress { done, total });
            match self.receive_request(request) {
                Ok(RequestOutcome::New(name)) => report.new_contacts.push(name),
                Ok(RequestOutcome::Answered(name)) => report.answered.push(name),
                Ok(RequestOutcome::Known) => report.duplicates += 1,
                Err(Error::DecryptionFailed) => {} // for someone else: carried, not ours
                Err(e @ (Error::Database(_) | Error::Io { .. })) => return Err(e),
                Err(_) => report.rejected += 1,
            }
        }
        // Envelopes are received as from a peer: relaxed commits, a batch of them at a time
        // (a crash loses none, a power cut at worst the last batches, which the bundle still
        // holds). A transaction per envelope cost three times as much.
        self.store.begin_batch()?;
        let mut committed = 0;
        let passes = self.import_envelopes(bundle.envelopes, &mut report, &mut committed, done, total, progress);
        let ended = self.store.end_batch();
        let broken = self.store.take_batch_broken();
        let unreadable = match (passes, ended) {
            (Ok(unreadable), Ok(())) if !broken => unreadable,
            (passes, ended) => {
                // What the failed batch applied is not stored: memory goes back to the store,
                // and nothing of it may be acknowledged. (Earlier batches are stored, and their
                // receipts were sealed with them.)
                self.forget_pending_receipts();
                let why = match (passes, ended) {
                    (Err(e), _) | (_, Err(e)) => e.to_string(),
                    _ => "a commit inside the import failed".to_owned(),
                };
                let why = format!(
                    "{why}; what the first {committed} envelopes brought was stored before that: import the file again for the rest"
                );
                return self.settle([], Err(Error::NotStored(why)));
            }
        };
        report.unreadable = unreadable;
        report.waiting = self.count_waiting(None)?.saturating_sub(waiting_before);
        report.joined_groups = report.messages.iter().filter(|m| m.kind == "joined").map(|m| m.body.clone()).collect();
        // The receipts for what came in go out with the next export (or over the network).
        if let Err(e) = self.flush_receipts() {
            tracing::debug!(error = %e, "receipts were not sealed");
        }
        Ok(report)
    }

    /// The envelopes of an import, in passes while any pass makes progress (so that the order
    /// inside the file does not matter), committing every [`IMPORT_BATCH`]; returns how many
    /// stayed unreadable.
    fn import_envelopes(
        &mut self,
        mut pending: Vec<Envelope>,
        report: &mut ImportReport,
        committed: &mut usize,
        mut done: usize,
        total: usize,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<usize> {
        let mut first_pass = true;
        let mut handled = 0;
        loop {
            let mut applied_any = false;
            let mut unknown = Vec::new();
            for envelope in pending {
                if first_pass {
                    done += 1;
                    progress(ImportProgress { done, total });
                }
                if handled > 0 && handled % IMPORT_BATCH == 0 {
                    self.store.end_batch()?;
                    *committed = handled;
                    // The receipts for what is now stored go with it: a later batch that fails
                    // must not take them along.
                    if let Err(e) = self.flush_receipts() {
                        tracing::debug!(error = %e, "receipts were not sealed");
                    }
                    self.store.begin_batch()?;
                }
                match self.receive_envelope(envelope.clone()).map(|r| self.record_via(r, "bundle")) {
                    Ok(Received::Applied(messages)) => {
                        applied_any = true;
                        report.messages.extend(messages);
                    }
                    // A piece of a file: later pieces of the bundle may now be told.
                    Ok(Received::Attachment(_)) => applied_any = true,
                    // (A device link's request in a bundle is taken like one from the network.)
                    Ok(Received::Waiting | Received::LinkRequest(_)) => {}
                    Err(Error::Duplicate) => report.duplicates += 1,
                    Err(Error::UnknownTopic) => unknown.push(envelope),
                    Err(e @ (Error::Database(_) | Error::Io { .. })) => return Err(e),
                    Err(_) => report.rejected += 1,
                }
                handled += 1;
            }
            pending = unknown;
            first_pass = false;
            if !applied_any || pending.is_empty() {
                return Ok(pending.len());
            }
        }
    }

    /// Where an envelope that waits would be parked, and whether its sender device is one the
    /// group knows, if there is room. A header names any device it likes, so each known device
    /// has its own quota and all unknown ones share a small one (a message that comes before
    /// its sender's key share, which brings the device's certificate, waits there).
    fn room_to_park(
        &self,
        group: &Group,
        envelope: &Envelope,
        epoch: &[u8; 32],
    ) -> Result<Option<(ParkedPlace, bool)>> {
        let Some((device, generation, index)) = group.chain_position(envelope, epoch) else { return Ok(None) };
        // A revoked device's envelopes wait for nothing: it gets no key again.
        if group.refuses_device(&device) {
            return Ok(None);
        }
        if self.count_waiting(Some(&group.id))? >= MAX_WAITING_PER_GROUP {
            return Ok(None);
        }
        let known = group.knows_device(&device);
        let (used, quota) = if known {
            (self.store.read().parked_bytes(&group.id, Some(&device))?, MAX_PARKED_BYTES_PER_DEVICE)
        } else {
            (self.store.read().parked_bytes(&group.id, None)?, MAX_PARKED_BYTES_UNKNOWN_DEVICES)
        };
        if used + envelope.as_bytes().len() > quota {
            return Ok(None);
        }
        Ok(Some((ParkedPlace::new(&device, generation, index), known)))
    }

    /// Drops what has waited longer than anything it waits for can still come.
    pub(super) fn expire_parked(&mut self) -> Result<usize> {
        let before = self.now().saturating_sub(PARKED_FOR_AT_MOST_MS);
        self.store.write_relaxed(|tx| tx.expire_parked(before))
    }

    /// Envelopes held until what they wait for comes (keys, earlier messages of their chain,
    /// the membership changes they build on), in every conversation.
    pub fn waiting(&self) -> Result<usize> {
        self.count_waiting(None)
    }

    /// Envelopes waiting for keys, in one group or in all.
    fn count_waiting(&self, group: Option<&GroupId>) -> Result<usize> {
        self.store.read().count_waiting(group)
    }
}

/// How long into the day yesterday's topics are still followed on the network.
pub const YESTERDAY_GRACE_MS: u64 = 2 * 60 * 60 * 1000;
pub use crate::group::TOMORROW_LEAD_MS;

/// The first period, today and the last period followed on the network at `now_ms`.
pub(super) fn network_days(now_ms: u64) -> (u64, u64, u64) {
    let today = crate::group::period_of(now_ms);
    let into = now_ms % crate::group::PERIOD_MS;
    let first = if into < YESTERDAY_GRACE_MS { today.saturating_sub(1) } else { today };
    let last = if crate::group::PERIOD_MS - into <= TOMORROW_LEAD_MS { today + 1 } else { today };
    (first, today, last)
}

impl Account {
    /// The topics worth following and reconciling with peers now: each group's current epoch
    /// for the last `days` periods and tomorrow (clock skew), and its few previous epochs for
    /// yesterday and today (membership changes and messages written just before an epoch
    /// change still travel on them).
    pub fn sync_topics(&self, days: u64) -> Vec<crate::envelope::Topic> {
        let today = crate::group::period_of(self.now());
        let mut topics = Vec::new();
        for group in self.groups.values() {
            if let Some(epoch) = group.current_epoch() {
                for period in today.saturating_sub(days)..=today + 1 {
                    topics.push(epoch.topic(period));
                }
            }
            for epoch in group.previous_epochs(PREVIOUS_EPOCHS_FOLLOWED) {
                for period in today.saturating_sub(1)..=today {
                    topics.push(epoch.topic(period));
                }
            }
        }
        topics.extend(self.link_topics());
        topics
    }

    /// The topics to follow on the network now: as [`Account::sync_topics`] for today, but
    /// yesterday's only in the first hours of the day (for envelopes written just before
    /// midnight) and tomorrow's only in the last hour before it (for peers whose clock runs
    /// ahead). Whatever a peer sees us follow is what it can link to us, and a peer may ask us
    /// only for what we follow: yesterday's topics, followed all day, would let a peer that saw
    /// them yesterday find us again today.
    pub fn network_topics(&self) -> Vec<crate::envelope::Topic> {
        let (first, today, last) = network_days(self.now());
        let mut topics = Vec::new();
        for group in self.groups.values() {
            if let Some(epoch) = group.current_epoch() {
                topics.extend((first..=last).map(|p| epoch.topic(p)));
            }
            for epoch in group.previous_epochs(PREVIOUS_EPOCHS_FOLLOWED) {
                topics.extend((first..=today).map(|p| epoch.topic(p)));
            }
        }
        topics.extend(self.link_topics());
        topics.extend(self.attachment_topics(None));
        topics
    }

    /// The meet tokens of each conversation's current epoch for `period`, at most
    /// `crate::net::meet::MAX_TOKENS` (the relay refuses more): what the session serving the
    /// conversations shows its relay to meet the other members there.
    pub fn meet_tokens(&self, period: u64) -> Vec<[u8; 16]> {
        let mut tokens: Vec<[u8; 16]> =
            self.groups.values().filter_map(|g| g.current_epoch()).map(|e| e.meet_token(period)).collect();
        tokens.sort_unstable();
        tokens.truncate(crate::net::meet::MAX_TOKENS);
        tokens
    }

    /// What this device's network session should serve now (see `crate::net::sessions`).
    pub fn network_session(&self) -> crate::net::SessionKey {
        let now_ms = self.now();
        let previous =
            self.groups.values().flat_map(|g| g.previous_epochs(PREVIOUS_EPOCHS_FOLLOWED).map(|e| e.id)).collect();
        let asking = self.store.read().contacts().is_ok_and(|all| all.iter().any(|c| c.request.is_some()));
        crate::net::SessionKey { period: crate::group::serving_period(now_ms), now_ms, previous, asking }
    }

    /// What a network session follows, and our rendezvous point of its period: the base, the
    /// current epoch's topic of that period of each conversation and the epochs that ended
    /// since it started; the session of ended epochs, those that had ended before; the others
    /// no topic. Nothing of another period: the sessions that followed those are kept running,
    /// frozen, for a while.
    pub fn session_topics(
        &self,
        scope: &crate::net::sessions::SessionScope,
    ) -> (Vec<crate::envelope::Topic>, [u8; 32]) {
        use crate::net::sessions::Serves;
        let base = scope.serves == Serves::Current;
        let mut topics = Vec::new();
        for g in self.groups.values().filter(|_| matches!(scope.serves, Serves::Current | Serves::Previous)) {
            if base && let Some(current) = g.current_epoch() {
                topics.push(current.topic(scope.period));
            }
            // Ended epochs: the base follows those that ended since it started (written just
            // before the change, control messages still travel on them), the other session
            // those that had ended before.
            for e in g.previous_epochs(PREVIOUS_EPOCHS_FOLLOWED) {
                if scope.ended.contains(&e.id) != base {
                    topics.push(e.topic(scope.period));
                }
            }
        }
        // A device link is followed by the session of our rendezvous point, not by the one of
        // our conversations: whoever sees the exchange cannot tie it to what we follow.
        if scope.serves == Serves::Rendezvous {
            topics.extend(self.link_topics());
        }
        // Files are fetched and served by the session of today's conversations. (An
        // attachment's topic does not change with the day: a peer that saw it yesterday can
        // tell it is followed today too, for as long as the file is.)
        if base && scope.period == crate::group::serving_period(self.now()) {
            topics.extend(self.attachment_topics(None));
        }
        (topics, self.card().rendezvous_point(scope.period))
    }

    /// Every topic this device can read (each group's current epoch back to its start, ended
    /// epochs for a while): what the mesh delivers to us, from whenever it was written.
    pub fn readable_topics(&self) -> Vec<crate::envelope::Topic> {
        self.topics.all().chain(self.link_topics()).collect()
    }

    /// The files being fetched or served that the mesh carries: those within its size policy
    /// ([`Account::mesh_file_limit`]; larger ones wait for a network).
    pub fn mesh_attachment_topics(&self) -> Vec<crate::envelope::Topic> {
        self.attachment_topics(Some(self.mesh_file_limit()))
    }

    /// Remembers an address a peer was reached at (without its peer id, which rotates).
    pub fn note_peer_addr(&mut self, addr: &str) -> Result<()> {
        let now = self.now();
        self.store.write_relaxed(|tx| tx.note_peer_addr(addr, now, MAX_PEER_ADDRS))
    }

    /// Addresses peers were reached at, most recent first: dialled again on start.
    pub fn peer_addrs(&self) -> Result<Vec<String>> {
        self.store.read().peer_addrs()
    }

    /// Our own rendezvous points, where requests to us appear: today's, and yesterday's and
    /// tomorrow's near midnight (as [`Account::network_topics`]).
    pub fn rendezvous_points(&self) -> Vec<[u8; 32]> {
        let (first, _, last) = network_days(self.now());
        (first..=last).map(|p| self.card().rendezvous_point(p)).collect()
    }

    /// Our unanswered contact requests, each with the recipient's rendezvous point for today.
    pub fn pending_requests(&mut self) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        self.pending_requests_at(crate::group::period_of(self.now()))
    }

    /// Our unanswered contact requests as the network carries them (wrapped for `period`,
    /// the same bytes all day), each with the recipient's rendezvous point of that period.
    pub fn pending_requests_at(&mut self, period: u64) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        let mut out = Vec::new();
        self.request_wraps.retain(|(_, p), _| *p + 1 >= period);
        for c in self.store.read().contacts()? {
            if let Some(request) = c.request {
                let card = crate::identity::ContactCard::from_bytes(&c.card)?;
                let key = (*blake3::hash(&request).as_bytes(), period);
                let wrapped = match self.request_wraps.entry(key) {
                    std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(crate::handshake::wrap(&request, &card, self.entropy.as_mut())?).clone()
                    }
                };
                out.push((card.rendezvous_point(period), wrapped));
            }
        }
        Ok(out)
    }
}
