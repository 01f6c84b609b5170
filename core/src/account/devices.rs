//! The account's devices: the primary links a new one (a one-time link, a code both screens
//! show, a grant), and the new device starts from what the grant hands it.

use std::path::Path;

use super::{Account, DB_FILE, conversations::put_sent};
use crate::clock::Clock;
use crate::crypto::Entropy;
use crate::devices::grant::{Grant, GrantedContact, GrantedGroup, HISTORY_BUDGET, History, HistoryMessage};
use crate::devices::linking::{Applicant, Joining, Offer, ShortCode, check_certificate};
use crate::devices::revocation::Revocation;
use crate::error::{Error, Result};
use crate::group::{Group, GroupKind};
use crate::identity::{DeviceCert, DeviceKeys};
use crate::store::{ContactRow, DatabaseKey, IdentityRow, Rows, Store};
use crate::wire::{Reader, Writer};

/// Whether a grant carries the conversations' history (the user chooses, on the first device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistoryChoice {
    /// The new device reads from its link on.
    Leave,
    /// The messages this device holds, newest first up to [`HISTORY_BUDGET`] bytes.
    Include,
}

/// One of the account's devices, as this device knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub device: [u8; 32],
    pub name: String,
    pub linked_ms: u64,
    /// When this device last had an envelope of it (`None`: not since it was linked).
    pub last_seen_ms: Option<u64>,
    pub this_device: bool,
    pub primary: bool,
}

fn cert_bytes(cert: &DeviceCert) -> Vec<u8> {
    let mut w = Writer::new();
    cert.encode(&mut w);
    w.into_bytes()
}

impl Account {
    pub(super) fn require_primary(&self) -> Result<&crate::identity::AccountKey> {
        self.account_key
            .as_ref()
            .ok_or(Error::NotAllowed("only the account's first device (which holds the account key) links devices"))
    }

    /// Makes a one-time link for a new device (valid ten minutes; a new one replaces it).
    pub fn link_offer(&mut self) -> Result<String> {
        self.require_primary()?;
        let offer = Offer::new(self.now(), self.entropy.as_mut())?;
        let link = offer.ticket().to_link();
        self.store.write(|tx| tx.set_link_offer(Some(&offer.to_bytes())))?;
        self.watch_link(Some(&offer));
        Ok(link)
    }

    pub(super) fn stored_offer(&self) -> Result<Offer> {
        let bytes = self.store.read().link_offer()?.ok_or(Error::NotFound {
            what: "device link",
            name: "(none is waiting: make one with `weft device link`)".into(),
        })?;
        Offer::from_bytes(&bytes)
    }

    /// Opens a new device's request: who asks, and the code to compare with its screen.
    /// Changes nothing.
    pub fn open_link_request(&self, request: &[u8]) -> Result<(Applicant, ShortCode)> {
        self.require_primary()?;
        let opened = self.stored_offer()?.open(request, self.now())?;
        Ok((opened.applicant.clone(), opened.code))
    }

    /// Forgets the waiting link (the codes did not match): its requests open nothing.
    pub fn cancel_link(&mut self) -> Result<()> {
        self.link_watch = None;
        self.store.write(|tx| tx.set_link_offer(None))
    }

    /// Grants the device whose request this is, if `code` is the one both screens showed: its
    /// certificate and what it needs of the account, sealed to it, with the conversations'
    /// history if `history` says so. The link is used up. With another code, the link is
    /// cancelled and nothing is granted.
    pub fn grant_link(&mut self, request: &[u8], code: ShortCode, history: HistoryChoice) -> Result<Vec<u8>> {
        let now = self.now();
        let offer = self.stored_offer()?;
        let opened = offer.open(request, now)?;
        if opened.code != code {
            self.cancel_link()?;
            return Err(Error::NotAllowed("the codes differ: the link is cancelled and nothing was granted"));
        }
        self.grant_opened(offer, opened, history)
    }

    /// The grant for a request `offer` opened (and whose code the user confirmed): the new
    /// device's certificate and what it needs of the account, sealed to it. Uses the offer up.
    pub(super) fn grant_opened(
        &mut self,
        offer: Offer,
        opened: crate::devices::linking::Opened,
        history: HistoryChoice,
    ) -> Result<Vec<u8>> {
        let now = self.now();
        let applicant = opened.applicant.clone();
        let cert = self.require_primary()?.certify_public(&applicant.device, &applicant.dh, now);
        let me = self.account_public();
        // The devices' own conversation goes with the others: what one of them adds later
        // reaches the rest through it.
        self.ensure_self_conversation()?;
        let contacts = self
            .store
            .read()
            .contacts()?
            .into_iter()
            .map(|c| GrantedContact {
                account: c.account,
                name: c.name,
                card: c.card,
                status: c.status,
                verified: c.verified,
                created_ms: c.created_ms,
            })
            .collect();
        let ids: Vec<_> = self.groups.keys().copied().collect();
        // (Read before the groups leave memory below.)
        let history = match history {
            HistoryChoice::Include => Some(self.history_for_grant()?),
            HistoryChoice::Leave => None,
        };
        let mut granted = Vec::new();
        let mut changed = Vec::new();
        for id in ids {
            let Some(mut group) = self.groups.remove(&id) else { continue };
            let pair_with = match &group.kind {
                // (The account's conversation with itself is a 1:1 with itself.)
                GroupKind::Pair { accounts } => Some(accounts.iter().find(|a| **a != me).copied().unwrap_or(me)),
                GroupKind::Many => None,
            };
            let welcome = match group.is_member(&me) {
                true => group.welcome(&self.me, &me, now, self.entropy.as_mut()).ok(),
                false => None,
            };
            if let Some(welcome) = welcome {
                // The grant hands this epoch over: not again through our own conversation.
                self.shared_epochs.insert(group.id, welcome.epoch);
                granted.push(GrantedGroup { pair_with, welcome });
            }
            changed.push(group);
        }
        let grant = Grant {
            cert: cert.clone(),
            primary: self.me.cert.clone(),
            account_name: self.name.clone(),
            request_secret: crate::crypto::secret(self.invite.request.to_bytes()),
            rendezvous_seed: self.invite.rendezvous_seed,
            contacts,
            groups: granted,
            revocations: self.store.read().revocations()?,
            history,
            settings: self.settings_for_grant()?,
        };
        let sealed = offer.grant(opened, &grant.encode());
        let result = self.store.write(|tx| {
            for group in changed.iter_mut() {
                tx.save_group(group)?;
            }
            tx.put_device(&applicant.device, &cert_bytes(&cert), &applicant.name, now)?;
            tx.set_link_offer(None)
        });
        self.own_devices = None;
        self.settle(changed, result)?;
        Ok(sealed)
    }

    /// The account's settings as a grant hands them over.
    fn settings_for_grant(&self) -> Result<Vec<crate::group::SharedSetting>> {
        let mut settings = vec![crate::group::SharedSetting::ReadReceipts(self.read_receipts()?)];
        for (conversation, keep_ms) in self.store.read().retentions()? {
            settings.push(crate::group::SharedSetting::Retention { conversation, keep_ms: Some(keep_ms) });
        }
        Ok(settings)
    }

    /// The messages of every conversation a grant hands over (the newest that fit the budget)
    /// and how far each was read.
    fn history_for_grant(&self) -> Result<History> {
        self.history_within(HISTORY_BUDGET)
    }

    /// The newest messages of our conversations that fit `budget` encoded bytes, oldest first,
    /// with how far each conversation was read.
    fn history_within(&self, budget: usize) -> Result<History> {
        let store = self.store.read();
        let mut messages = Vec::new();
        let mut read_marks = Vec::new();
        let me = self.account_public();
        // The conversations the grant hands over: those we are in.
        let granted: Vec<_> = self.groups.values().filter(|g| g.is_member(&me)).map(|g| g.id).collect();
        for gid in &granted {
            if let Some((lamport, id)) = store.read_mark(gid)? {
                read_marks.push((*gid, lamport, id.0));
            }
        }
        // The newest first into the budget (read no further); handed over oldest first.
        let mut used = 0;
        store.newest_messages(&granted, |row| {
            let message = HistoryMessage {
                group: row.group_id,
                id: row.id.0,
                sender: row.sender,
                lamport: row.lamport,
                sent_ms: row.sent_ms,
                kind: row.kind,
                body: row.body,
            };
            used += message.encoded_len();
            let fits = used <= budget;
            if fits {
                messages.push(message);
            }
            fits
        })?;
        messages.reverse();
        Ok(History { messages, read_marks })
    }

    /// Revokes one of the account's other devices (by name or id), for a lost or stolen one:
    /// the revocation goes out in every conversation (the device itself reads it, and stops),
    /// every conversation moves on to chains it does not get, and groups where we are an admin
    /// to an epoch it does not get. Members who processed it refuse what the device sends.
    /// Then the contact link, whose keys the device held, is replaced ([`Account::replace_link`]).
    pub fn revoke_device(&mut self, name: &str) -> Result<DeviceInfo> {
        let key = self.require_primary()?;
        let lower = name.to_ascii_lowercase();
        let target = self
            .devices()?
            .into_iter()
            .find(|d| d.name == name || data_encoding::HEXLOWER.encode(&d.device) == lower)
            .ok_or_else(|| Error::NotFound { what: "device", name: name.to_owned() })?;
        if target.this_device {
            return Err(Error::NotAllowed("a device cannot revoke itself: revoke it from the account's first device"));
        }
        let now = self.now();
        let revocation = Revocation::sign(key, &target.device, now);
        let me = self.account_public();
        // Told in every conversation under the chains the device still holds, so it learns it too.
        let ids: Vec<_> = self.groups.iter().filter(|(_, g)| g.is_member(&me)).map(|(id, _)| *id).collect();
        for id in &ids {
            let told = self.seal_in(id, |g, me, now, entropy| g.send_revocation(me, revocation.clone(), now, entropy));
            // A conversation where it cannot go out now does not stop the others, nor the
            // revocation itself.
            if let Err(e) = told {
                tracing::warn!(%e, "a revocation could not be sealed in one conversation");
            }
        }
        self.apply_revocation(&revocation)?;
        // Everyone starts new chains (an update asks it of them), which the device does not get.
        for id in &ids {
            if let Err(e) = self.seal_in(id, |g, me, now, entropy| g.update(me, now, entropy)) {
                tracing::warn!(%e, "a key update after a revocation could not be sealed in one conversation");
            }
        }
        // The device held the keys behind the account's link: a new link, which it opens
        // nothing of, and 1:1 conversations in epochs it cannot compute. (The revocation stands
        // if this fails; `replace_link` can be asked again.)
        if let Err(e) = self.replace_link() {
            tracing::warn!(%e, "the contact link could not be replaced after a revocation");
        }
        Ok(target)
    }

    /// Applies a revocation (ours, or one a member's envelope brought) once: the device is
    /// forgotten in every conversation, and where this is the admin device that acts for the
    /// group, a new epoch starts without it.
    pub(super) fn apply_revocation(&mut self, revocation: &Revocation) -> Result<()> {
        revocation.verify()?;
        let key = (revocation.account, revocation.device);
        if self.revoked.contains(&key) {
            return Ok(());
        }
        // The record and every group's forgetting in one transaction: a crash between them
        // would leave chains the device holds in use, and the record would stop a second try.
        let ids: Vec<_> = self.groups.keys().copied().collect();
        let mut changed: Vec<Group> = ids.iter().filter_map(|id| self.groups.remove(id)).collect();
        for group in changed.iter_mut() {
            group.forget_device(&revocation.account, &revocation.device);
        }
        let result = self.store.write(|tx| {
            tx.put_revocation(revocation)?;
            for group in changed.iter_mut() {
                tx.save_group(group)?;
            }
            Ok(())
        });
        if result.is_ok() {
            self.revoked.insert(key);
        }
        self.settle(changed, result)?;
        if revocation.device == self.me.id() {
            return Ok(());
        }
        for id in &ids {
            let acts = self.groups.get(id).is_some_and(|g| {
                g.kind == GroupKind::Many && g.is_member(&revocation.account) && g.is_lowest_admin_device(&self.me)
            });
            if acts {
                let _ = self.rekey(id);
            }
        }
        Ok(())
    }

    /// Whether the account revoked this device.
    pub fn is_revoked(&self) -> bool {
        self.revoked.contains(&(self.account_public(), self.me.id()))
    }

    /// The account's devices this device knows of, this one first.
    pub fn devices(&self) -> Result<Vec<DeviceInfo>> {
        let mine = self.me.id();
        let mut out = vec![DeviceInfo {
            device: mine,
            name: "this device".into(),
            linked_ms: self.me.cert.issued_at_ms,
            last_seen_ms: None,
            this_device: true,
            primary: self.is_primary(),
        }];
        let rows = self.store.read().devices()?;
        // On a linked device the primary is the row its grant wrote first.
        let primary = rows.first().map(|row| row.0.clone()).filter(|_| !self.is_primary());
        for (bytes, name, linked_ms, revoked, last_seen_ms) in rows {
            let cert = DeviceCert::decode(&mut Reader::new(&bytes, "stored device certificate"))?;
            if cert.device == mine || revoked.is_some() || self.revoked.contains(&(cert.account, cert.device)) {
                continue;
            }
            let primary = primary.as_ref() == Some(&bytes);
            out.push(DeviceInfo { device: cert.device, name, linked_ms, last_seen_ms, this_device: false, primary });
        }
        Ok(out)
    }

    /// [`Account::create_linked`] with a database keyed from `passphrase`, as [`Account::create`].
    pub fn create_linked_with_passphrase(
        home: &Path,
        passphrase: &str,
        device: &DeviceKeys,
        device_name: &str,
        joining: &Joining,
        sealed_grant: &[u8],
    ) -> Result<Account> {
        let mut entropy = crate::crypto::OsEntropy;
        let params = crate::store::KdfParams::generate(&mut entropy)?;
        let key = DatabaseKey::from_passphrase(passphrase, &params)?;
        std::fs::create_dir_all(home).map_err(|e| Error::io(format!("creating {}", home.display()), e))?;
        if home.join(DB_FILE).exists() {
            return Err(Error::AlreadyExists(format!("an account in {}", home.display())));
        }
        // The grant opens before anything is written: a wrong one leaves no home behind.
        Grant::decode(&joining.open_grant(sealed_grant)?)?;
        params.write(home)?;
        let clock = crate::clock::system_clock();
        Self::create_linked(home, &key, device, device_name, joining, sealed_grant, Box::new(entropy), clock)
    }

    /// Makes a home for this device from the primary's grant: `device` is the key pair the
    /// request named, `joining` the exchange it started. Every conversation is taken up and
    /// announced, so members' devices learn of this one with its first envelopes.
    #[allow(clippy::too_many_arguments)]
    pub fn create_linked(
        home: &Path,
        key: &DatabaseKey,
        device: &DeviceKeys,
        device_name: &str,
        joining: &Joining,
        sealed_grant: &[u8],
        entropy: Box<dyn Entropy + Send>,
        clock: Clock,
    ) -> Result<Account> {
        let grant = Grant::decode(&joining.open_grant(sealed_grant)?)?;
        check_certificate(&grant.cert, device)?;
        std::fs::create_dir_all(home).map_err(|e| Error::io(format!("creating {}", home.display()), e))?;
        if home.join(DB_FILE).exists() {
            return Err(Error::AlreadyExists(format!("an account in {}", home.display())));
        }
        let now = clock();
        let mut store = Store::create(&home.join(DB_FILE), key)?;
        let me = grant.cert.account;
        store.write(|tx| {
            tx.insert_identity(&IdentityRow {
                name: grant.account_name.clone(),
                account_secret: None,
                device_sign_secret: device.sign_secret(),
                device_dh_secret: device.dh_secret_bytes(),
                device_cert: cert_bytes(&grant.cert),
                request_secret: grant.request_secret.clone(),
                rendezvous_seed: grant.rendezvous_seed,
                created_ms: now,
            })?;
            tx.put_device(
                &grant.primary.device,
                &cert_bytes(&grant.primary),
                "first device",
                grant.primary.issued_at_ms,
            )?;
            tx.put_device(&device.id(), &cert_bytes(&grant.cert), device_name, now)?;
            for r in &grant.revocations {
                tx.put_revocation(r)?;
            }
            if let Some(history) = &grant.history {
                for m in &history.messages {
                    tx.insert_message(&crate::store::MessageRow {
                        id: crate::envelope::EnvelopeId(m.id),
                        group_id: m.group,
                        sender: m.sender,
                        lamport: m.lamport,
                        sent_ms: m.sent_ms,
                        kind: m.kind.clone(),
                        body: m.body.clone(),
                        outgoing: m.sender == me,
                        via: None,
                        reply_to: None,
                    })?;
                }
                for (group, lamport, id) in &history.read_marks {
                    tx.set_read_mark(group, *lamport, &crate::envelope::EnvelopeId(*id))?;
                }
            }
            for c in &grant.contacts {
                tx.upsert_contact(&ContactRow {
                    account: c.account,
                    name: c.name.clone(),
                    card: c.card.clone(),
                    status: c.status,
                    verified: c.verified,
                    group_id: Group::pair_id(&me, &c.account).0,
                    request: None,
                    created_ms: c.created_ms,
                })?;
            }
            Ok(())
        })?;
        drop(store);
        let mut account = Account::open_with_key(home, key, entropy, clock)?;
        account.take_up(&grant.groups, &grant.primary)?;
        account.take_shared_settings(&grant.settings)?;
        // A link the primary replaced since a 1:1 conversation last moved: follow the epoch it
        // gives, as the primary does.
        account.take_new_request_keys(None, crate::group::KeyChange::Ours)?;
        Ok(account)
    }

    /// Takes up the conversations a grant hands over, announcing this device in each.
    fn take_up(&mut self, groups: &[GrantedGroup], primary: &DeviceCert) -> Result<()> {
        let now = self.now();
        for granted in groups {
            let mut group = Group::for_linked_device(&self.me, &granted.welcome, primary, granted.pair_with, now)?;
            for (account, device) in &self.revoked {
                group.mark_revoked(account, device);
            }
            let announce = group.announce(&self.me, now, self.entropy.as_mut())?;
            self.store.write(|tx| {
                tx.save_group(&mut group)?;
                put_sent(tx, &group.id, &announce, now)
            })?;
            self.groups.insert(group.id, group);
        }
        self.rebuild_topics();
        Ok(())
    }
}

/// The account's conversation with itself: how its devices tell each other of contacts and
/// groups one of them added after the others were linked. It exists once a device was linked
/// (the grant hands it over), is never listed, and takes what it carries only from the
/// account's own devices that are not revoked.
impl Account {
    pub(super) fn self_conversation_id(&self) -> crate::group::GroupId {
        let me = self.account_public();
        Group::pair_id(&me, &me).0
    }

    /// Makes the account's conversation with itself, if there is none yet.
    pub(super) fn ensure_self_conversation(&mut self) -> Result<()> {
        let id = self.self_conversation_id();
        if self.groups.contains_key(&id) {
            return Ok(());
        }
        let mut group = self.pair_group(&self.card(), self.now())?;
        let result = self.store.write(|tx| tx.save_group(&mut group));
        self.settle([group], result)?;
        self.rebuild_topics();
        Ok(())
    }

    /// Hands our other devices the groups among `changed` that one of them is not known in
    /// (made or joined here since the link, or moved to an epoch whose change could not reach
    /// it): a welcome to the account itself, in the account's conversation with itself. Once
    /// per group and epoch; best effort. When that conversation itself changed (a device of
    /// ours announced itself there), every group is looked at.
    pub(super) fn share_groups_with_own_devices(&mut self, changed: &[crate::group::GroupId]) {
        // A revoked device hands nothing on (what it sends is refused anyway).
        if self.is_revoked() {
            return;
        }
        let self_id = self.self_conversation_id();
        let me = self.account_public();
        let Some(heard) = self.groups.get(&self_id).map(|g| g.devices_of(&me)) else { return };
        if self.own_devices.is_none() {
            let listed = self.devices().map(|all| all.into_iter().filter(|d| !d.this_device).map(|d| d.device));
            self.own_devices = Some(listed.map(Iterator::collect).unwrap_or_default());
        }
        // The device list (a device linked here is on it at once), and those heard of in the
        // account's conversation with itself.
        let mut others: Vec<_> = self.own_devices.clone().unwrap_or_default();
        others.extend(heard.iter().map(|c| c.device));
        others.sort_unstable();
        others.dedup();
        others.retain(|d| *d != self.me.id() && !self.revoked.contains(&(me, *d)));
        if others.is_empty() {
            return;
        }
        let candidates: Vec<_> = match changed.contains(&self_id) {
            true => self.groups.keys().copied().collect(),
            false => changed.to_vec(),
        };
        for gid in candidates {
            let Some(group) = self.groups.get(&gid) else { continue };
            let Some(epoch) = group.current_epoch().map(|e| e.id) else { continue };
            let wanted = group.kind == GroupKind::Many
                && group.is_member(&me)
                && self.shared_epochs.get(&gid) != Some(&epoch)
                // (An epoch this device did not see start since it was opened is not its to hand
                // over: the device that saw it does, and a restart does not send it again.)
                && others.iter().any(|d| group.reached_in_current_epoch(d) == Some(false));
            if !wanted {
                continue;
            }
            self.shared_epochs.insert(gid, epoch);
            if let Err(e) = self.share_group(gid, self_id) {
                tracing::warn!(%e, "a group could not be handed to the account's other devices");
            }
        }
    }

    fn share_group(&mut self, gid: crate::group::GroupId, self_id: crate::group::GroupId) -> Result<()> {
        let (now, me) = (self.now(), self.account_public());
        // Either may be out of memory for a moment (an envelope of it is being applied): the
        // group is handed over at its next change instead.
        if !self.groups.contains_key(&gid) || !self.groups.contains_key(&self_id) {
            self.shared_epochs.remove(&gid);
            return Ok(());
        }
        let mut group = self.groups.remove(&gid).expect("checked above");
        let mut pair = self.groups.remove(&self_id).expect("checked above");
        let result = group.welcome(&self.me, &me, now, self.entropy.as_mut()).and_then(|welcome| {
            let invite = pair.send_invite(&self.me, welcome, now, self.entropy.as_mut())?;
            self.store.write(|tx| {
                put_sent(tx, &pair.id, &invite, now)?;
                tx.save_group(&mut group)?;
                tx.save_group(&mut pair)
            })
        });
        // Not through `settle`, which would look at these groups again.
        self.groups.insert(gid, group);
        self.groups.insert(self_id, pair);
        if result.is_err() {
            self.groups = self.store.read().load_groups()?.into_iter().map(|g| (g.id, g)).collect();
        }
        result
    }

    /// Tells the account's other devices of a contact (added or accepted here). Best effort:
    /// nothing to do before a device was linked.
    pub(super) fn share_contact(&mut self, account: &[u8; 32]) {
        let row = match self.store.read().contact_by_account(account) {
            Ok(Some(row)) => row,
            _ => return,
        };
        let pair_epoch = self.groups.get(&row.group_id).and_then(Group::moved_pair_epoch);
        self.send_to_own_devices(crate::group::Content::ContactShared(crate::group::SharedContact {
            card: row.card,
            name: row.name,
            accepted: row.status == crate::store::ContactStatus::Accepted,
            verified: row.verified,
            created_ms: row.created_ms,
            pair_epoch,
        }));
    }

    /// Tells the account's other devices of a setting changed here. Best effort: nothing to do
    /// before a device was linked.
    pub(super) fn share_setting(&mut self, setting: crate::group::SharedSetting) {
        self.send_to_own_devices(crate::group::Content::SettingShared(setting));
    }

    /// Seals `content` in the account's conversation with itself, if there is one (a device
    /// was linked). Best effort: a failure is logged, and what it changed is undone.
    pub(super) fn send_to_own_devices(&mut self, content: crate::group::Content) {
        let id = self.self_conversation_id();
        if !self.groups.contains_key(&id) {
            return;
        }
        let sealed = self.seal_in(&id, |group, me, now, entropy| group.send_to_own_devices(me, content, now, entropy));
        if let Err(e) = sealed {
            tracing::warn!(%e, "a contact or setting could not be shared with the account's other devices");
        }
    }

    /// Takes settings another of our devices changed (without sharing them again), in one
    /// write, and deletes what a retention among them ends once.
    pub(super) fn take_shared_settings(&mut self, settings: &[crate::group::SharedSetting]) -> Result<()> {
        use crate::group::SharedSetting;
        if settings.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let own = self.account_public();
        // A forgotten contact's 1:1 conversation, as this device has it.
        let mut forgotten = Vec::new();
        for setting in settings {
            if let SharedSetting::ContactForgotten { account } = setting
                && let Some(row) = self.store.read().contact_by_account(account)?
            {
                forgotten.push((row.account, row.group_id));
            }
        }
        self.store.write(|tx| {
            for setting in settings {
                match setting {
                    SharedSetting::ReadReceipts(on) => {
                        tx.set_setting(super::receipts::READ_RECEIPTS, if *on { "on" } else { "off" })?
                    }
                    // (A conversation this device does not have keeps the setting for when it
                    // comes.)
                    SharedSetting::Retention { conversation, keep_ms } => tx.set_retention(conversation, *keep_ms)?,
                    SharedSetting::Blocked { account, blocked } if *account != own => {
                        tx.set_blocked(account, *blocked, now)?
                    }
                    SharedSetting::Blocked { .. } | SharedSetting::ContactForgotten { .. } => {}
                }
            }
            for (account, group) in &forgotten {
                tx.forget_contact(account, group)?;
            }
            Ok(())
        })?;
        if !forgotten.is_empty() {
            for (_, group) in &forgotten {
                self.groups.remove(group);
            }
            self.rebuild_topics();
        }
        if settings.iter().any(|s| matches!(s, SharedSetting::Retention { .. })) {
            self.forget_expired_messages()?;
        }
        Ok(())
    }

    /// Takes a contact another of our devices shared: a new one is added (its 1:1 conversation
    /// derived as that device derived it), a known one is marked accepted or verified if it was
    /// there.
    pub(super) fn take_shared_contact(&mut self, shared: &crate::group::SharedContact) -> Result<()> {
        use crate::store::ContactStatus;
        let card = crate::identity::ContactCard::from_bytes(&shared.card)?;
        if card.account == self.account_public() || self.is_blocked(&card.account)? {
            return Ok(());
        }
        let status = if shared.accepted { ContactStatus::Accepted } else { ContactStatus::Added };
        let stored = self.store.read().contact_by_account(&card.account)?;
        let became_accepted = shared.accepted && stored.as_ref().is_some_and(|r| r.status != ContactStatus::Accepted);
        let mut row = match stored {
            Some(mut row) => {
                let accepted = shared.accepted && row.status != ContactStatus::Accepted;
                if !accepted && (row.verified || !shared.verified) {
                    return Ok(());
                }
                if accepted {
                    row.status = ContactStatus::Accepted;
                }
                row.verified |= shared.verified;
                row
            }
            None => {
                let name = match self.name_is_free(&shared.name)?
                    && !super::conversations::looks_like_an_id(&shared.name)
                    && super::check_name(&shared.name).is_ok()
                {
                    true => shared.name.clone(),
                    false => self.name_for_stranger(&card)?,
                };
                ContactRow {
                    account: card.account,
                    name,
                    card: shared.card.clone(),
                    status,
                    verified: shared.verified,
                    group_id: Group::pair_id(&self.account_public(), &card.account).0,
                    request: None,
                    created_ms: shared.created_ms.min(self.now()),
                }
            }
        };
        let mut group = match self.groups.remove(&row.group_id) {
            Some(g) => g,
            None => match self.store.read().load_group(&row.group_id)? {
                Some(g) => g,
                None => {
                    // Made here from their card: under the id the sharing device's epoch has.
                    let mut made = self.pair_group(&card, row.created_ms)?;
                    if let Some(id) = shared.pair_epoch {
                        made.name_pair_epoch(id);
                    }
                    made
                }
            },
        };
        row.group_id = group.id;
        let result = self.store.write(|tx| {
            tx.upsert_contact(&row)?;
            tx.save_group(&mut group)
        });
        self.settle([group], result)?;
        // A conversation stored from before our link was replaced (a request not yet accepted
        // here) follows the epoch our new key gives, as the device that shared it does.
        self.take_new_request_keys(Some(card.account), crate::group::KeyChange::Ours)?;
        // A request accepted on a device that does not hold our replaced link (linked after
        // it): this one sends it.
        if became_accepted {
            self.send_our_link_to(&card.account);
        }
        self.rebuild_topics();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::crypto::SeededEntropy;
    use crate::store::DatabaseKey;

    /// The history reads the newest messages only as far as the budget, and hands them over
    /// oldest first.
    #[test]
    fn a_grant_s_history_is_the_newest_that_fit_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicU64::new(1_000_000));
        let c = clock.clone();
        let mut alice = Account::create_with_key(
            dir.path(),
            &DatabaseKey::from_bytes([1; 32]),
            Some("alice"),
            Box::new(SeededEntropy::new(1)),
            Box::new(move || c.fetch_add(1, Ordering::SeqCst)),
        )
        .unwrap();
        alice.create_group("notes").unwrap();
        for i in 0..5 {
            alice.send("notes", &format!("note {i}")).unwrap();
        }
        let texts =
            |h: &History| h.messages.iter().filter(|m| m.kind == "text").map(|m| m.body.clone()).collect::<Vec<_>>();
        let all = alice.history_within(usize::MAX).unwrap();
        assert_eq!(texts(&all), (0..5).map(|i| format!("note {i}")).collect::<Vec<_>>());
        let last_two: usize = all.messages[all.messages.len() - 2..].iter().map(HistoryMessage::encoded_len).sum();
        let cut = alice.history_within(last_two).unwrap();
        assert_eq!(texts(&cut), ["note 3", "note 4"]);
        assert_eq!(cut.messages.len(), 2);
    }
}
