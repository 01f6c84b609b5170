//! Replacing the account's contact link, and taking the links contacts replaced.
//!
//! The account's first device replaces the link when it revokes a device (and when the user
//! asks: a link that leaked): a new request key and rendezvous seed, signed by the account key.
//! The account's other devices get the new keys in its conversation with itself (kind 17),
//! contacts the signed card in their 1:1 conversation (kind 16), both sealed in the current
//! epochs under chains the revoked device no longer gets. Each 1:1 conversation then follows
//! the epoch the new key gives ([`Group::take_pair_keys`]) and writes there once the other side
//! does: the revoked device opens no request sent to the new link and, from then on, no longer
//! sees when or how much is written there.

use std::collections::HashMap;

use x25519_dalek::{PublicKey, StaticSecret};

use crate::crypto::Secret32;
use crate::devices::rotation::RotatedLink;
use crate::error::{Error, Result};
use crate::group::{Content, Group, GroupId, GroupKind, KeyChange, Sealed};
use crate::identity::{AccountPublic, ContactCard, InviteKeys};
use crate::store::Rows;

use super::Account;
use super::conversations::put_sent;

/// How often a contact who writes where our newest link does not reach is reminded of it.
const REMIND_EVERY_MS: u64 = 24 * 60 * 60 * 1000;

/// A replaced link an envelope brought, taken once its group is back with the others.
pub(super) enum ArrivedLink {
    /// Ours, from another of our devices, with its request key's secret.
    Ours { request_secret: Secret32, link: RotatedLink },
    /// A contact's.
    Contact(RotatedLink),
}

impl Account {
    /// Replaces the account's contact link and returns the new one (only on the account's first
    /// device: the new link is signed by the account key). Requests sent to the old link are no
    /// longer opened; contacts and the account's other devices are told, and every 1:1
    /// conversation moves to a new epoch once the other side took the new link. All of it in
    /// one transaction: a crash leaves the old link, whole, or the new one.
    pub fn replace_link(&mut self) -> Result<String> {
        self.require_primary()?;
        let now = self.now();
        let invite = InviteKeys::generate(self.entropy.as_mut())?;
        let card = ContactCard {
            account: self.account_public(),
            request_key: invite.request_public(),
            rendezvous_seed: invite.rendezvous_seed,
            name: self.name().map(str::to_owned),
        };
        // Each link signed later than the last, whatever the clock did since.
        let issued = match self.store.read().link_rotated_ms(&self.account_public())? {
            Some(last) => now.max(last + 1),
            None => now,
        };
        let link = RotatedLink::sign(self.require_primary()?, card, issued)?;
        // Every 1:1 conversation with a contact follows the epoch the new key gives; the link
        // is sealed in its current epoch, which the contact reads. (Blocked contacts learn
        // nothing of it; one conversation where it cannot be sealed does not keep it from the
        // others: that contact is reminded when it next writes.)
        let mut told = self.pairs_taking_keys(&invite.request, None, KeyChange::Ours)?;
        let me = self.account_public();
        for (group, sealed) in told.iter_mut() {
            if peer_of(group, &me).is_some_and(|p| self.is_blocked(&p).unwrap_or(true)) {
                continue;
            }
            match group.send_rotated_link(&self.me, link.clone(), now, self.entropy.as_mut()) {
                Ok(more) => sealed.extend(more),
                Err(e) => tracing::warn!(%e, "a replaced link could not be sealed in one conversation"),
            }
        }
        // The keys, for our other devices, in our conversation with ourselves.
        let mut failed = None;
        if let Some(mut own) = self.groups.remove(&self.self_conversation_id()) {
            let content =
                Content::InviteKeysShared { request_secret: invite.request.to_bytes().into(), link: link.clone() };
            match own.send_to_own_devices(&self.me, content, now, self.entropy.as_mut()) {
                Ok(sealed) => told.push((own, sealed)),
                Err(e) => {
                    told.push((own, Vec::new()));
                    failed = Some(e);
                }
            }
        }
        // All of it in one transaction with the new keys.
        let result = match failed {
            Some(e) => Err(e),
            None => self.store.write(|tx| {
                tx.set_invite_keys(&invite.request.to_bytes(), &invite.rendezvous_seed)?;
                tx.put_link_rotation(&link)?;
                store_sealed(tx, &mut told, now)
            }),
        };
        self.settle(told.into_iter().map(|(g, _)| g), result)?;
        self.invite = invite;
        Ok(link.card.to_link())
    }

    /// Hands a contact our latest replaced link in our 1:1 conversation and follows the epoch
    /// the new key gives (a conversation made under the old link: a request from before the
    /// link was replaced, accepted after). Best effort: the conversation works either way.
    pub(super) fn send_our_link_to(&mut self, contact: &AccountPublic) {
        let me = self.account_public();
        let link = match self.store.read().link_rotation(&me) {
            Ok(Some(link)) => link,
            _ => return,
        };
        let (id, _) = Group::pair_id(&me, contact);
        if !self.groups.contains_key(&id) {
            return;
        }
        // The epoch the new key gives is followed (the current one does not change), and the
        // link sealed in the current one, where the contact reads it: one transaction.
        let request = self.invite.request.clone();
        let mut changed = match self.pairs_taking_keys(&request, Some(*contact), KeyChange::Ours) {
            Ok(changed) => changed,
            Err(e) => return tracing::warn!(%e, "our replaced link could not be handed to a contact"),
        };
        if changed.is_empty() {
            let Some(group) = self.groups.remove(&id) else { return };
            changed.push((group, Vec::new()));
        }
        let now = self.now();
        let (group, sealed) = &mut changed[0];
        let result = match group.send_rotated_link(&self.me, link, now, self.entropy.as_mut()) {
            Ok(more) => {
                sealed.extend(more);
                self.store.write(|tx| store_sealed(tx, &mut changed, now))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = self.settle(changed.into_iter().map(|(g, _)| g), result) {
            tracing::warn!(%e, "our replaced link could not be handed to a contact");
        }
    }

    /// A contact wrote where our newest link does not reach (an epoch before the one it gives,
    /// or while we wait for them to take it): it may have missed the link (lost, expired, or
    /// sent while it was blocked). It is sealed again in the epoch they wrote in, at most daily.
    pub(super) fn remind_of_our_link(&mut self, gid: &GroupId, epoch: &[u8; 32], contact: &AccountPublic) {
        let Some(group) = self.groups.get(gid) else { return };
        let behind = group.awaits_our_link() || group.current_epoch().is_some_and(|e| e.id != *epoch);
        if !behind || !matches!(group.kind, GroupKind::Pair { .. }) || group.is_own_conversation() {
            return;
        }
        let now = self.now();
        if self.link_reminded.get(contact).is_some_and(|t| now.saturating_sub(*t) < REMIND_EVERY_MS) {
            return;
        }
        let Ok(Some(link)) = self.store.read().link_rotation(&self.account_public()) else { return };
        self.link_reminded.insert(*contact, now);
        let sealed = self.seal_in(gid, |group, me, now, entropy| {
            group.send_rotated_link_in(me, epoch, link, now, entropy).map(|sealed| vec![sealed])
        });
        if let Err(e) = sealed {
            tracing::debug!(%e, "a contact could not be reminded of our replaced link");
        }
    }

    /// Whether our own account revoked a device since this device last took our link: its
    /// request key is then one the revoked device holds, and nothing moves on it until the new
    /// keys come (kind 17).
    fn own_link_is_stale(&self) -> Result<bool> {
        let me = self.account_public();
        let store = self.store.read();
        let last = store.link_rotated_ms(&me)?.unwrap_or(0);
        Ok(store.revocations()?.iter().any(|r| r.account == me && r.revoked_ms > last))
    }

    /// Takes a replaced link an envelope brought: ours from another of our devices (its keys
    /// become ours), or a contact's (their card, and our 1:1 conversation's epoch). Only one
    /// newer than the last taken of that account: an old one is never taken again.
    pub(super) fn take_arrived_link(&mut self, arrived: ArrivedLink) -> Result<()> {
        let me = self.account_public();
        match arrived {
            ArrivedLink::Ours { request_secret, link } => {
                let invite = InviteKeys {
                    request: StaticSecret::from(*request_secret),
                    rendezvous_seed: link.card.rendezvous_seed,
                };
                if link.card.account != me || invite.request_public() != link.card.request_key {
                    return Err(Error::Malformed { what: "replaced link", why: "its keys are not the account's" });
                }
                if !self.is_newer(&link)? {
                    return Ok(());
                }
                // The keys and the epochs they give, in one transaction.
                let mut moved = self.pairs_taking_keys(&invite.request, None, KeyChange::Ours)?;
                let now = self.now();
                let result = self.store.write(|tx| {
                    tx.set_invite_keys(&invite.request.to_bytes(), &invite.rendezvous_seed)?;
                    tx.put_link_rotation(&link)?;
                    store_sealed(tx, &mut moved, now)
                });
                self.settle(moved.into_iter().map(|(g, _)| g), result)?;
                self.invite = invite;
            }
            // (Ours, seen in a 1:1 conversation: our devices take it from the one above.)
            ArrivedLink::Contact(link) if link.card.account == me => {}
            ArrivedLink::Contact(link) => {
                let account = link.card.account;
                if self.store.read().contact_by_account(&account)?.is_none() || !self.is_newer(&link)? {
                    return Ok(());
                }
                self.store.write(|tx| {
                    tx.set_contact_card(&account, &link.card.to_bytes())?;
                    tx.put_link_rotation(&link)
                })?;
                // (With a key the revoked device holds, the card waits for our new keys, which
                // move the conversation as ours: see `take_new_request_keys`.)
                if !self.own_link_is_stale()? {
                    self.take_new_request_keys(Some(account), KeyChange::Theirs)?;
                }
            }
        }
        Ok(())
    }

    fn is_newer(&self, link: &RotatedLink) -> Result<bool> {
        Ok(self.store.read().link_rotated_ms(&link.card.account)?.is_none_or(|last| link.issued_ms > last))
    }

    /// Each 1:1 conversation with a contact (with `only`, or all) takes the epoch our request
    /// key and theirs now give: where `change` is theirs, at once, announcing this device there
    /// (which tells the other side we took their link, and it writes there too); where it is
    /// ours, once the other side wrote there. The account's conversation with itself keeps its
    /// epoch: the new keys travel in it, to devices that do not hold them yet.
    pub(super) fn take_new_request_keys(&mut self, only: Option<AccountPublic>, change: KeyChange) -> Result<()> {
        let request = self.invite.request.clone();
        let mut changed = self.pairs_taking_keys(&request, only, change)?;
        if changed.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let result = self.store.write(|tx| store_sealed(tx, &mut changed, now));
        self.settle(changed.into_iter().map(|(g, _)| g), result)
    }

    /// Takes out of memory each 1:1 conversation with a contact (with `only`, or all) that moves
    /// with our request key `request` and theirs, moved (see [`Account::take_new_request_keys`]),
    /// with what it sealed. Nothing is stored: the caller stores them with the rest of its change,
    /// in one transaction (a crash between new keys and the epochs they give would leave this
    /// device unable to follow the contacts who took the new link).
    fn pairs_taking_keys(
        &mut self,
        request: &StaticSecret,
        only: Option<AccountPublic>,
        change: KeyChange,
    ) -> Result<Vec<(Group, Vec<Sealed>)>> {
        let me = self.account_public();
        let request_keys: HashMap<AccountPublic, [u8; 32]> = self
            .store
            .read()
            .contacts()?
            .into_iter()
            .filter_map(|c| ContactCard::from_bytes(&c.card).ok().map(|card| (c.account, card.request_key)))
            .collect();
        let now = self.now();
        let mut changed: Vec<(Group, Vec<Sealed>)> = Vec::new();
        let ids: Vec<_> = self.groups.keys().copied().collect();
        for id in ids {
            let Some(peer) = self.groups.get(&id).and_then(|g| peer_of(g, &me)) else { continue };
            if peer == me || only.is_some_and(|o| o != peer) {
                continue;
            }
            let Some(theirs) = request_keys.get(&peer) else { continue };
            let shared = request.diffie_hellman(&PublicKey::from(*theirs));
            if !shared.was_contributory() {
                continue;
            }
            let Some(mut group) = self.groups.remove(&id) else { continue };
            if !group.take_pair_keys(shared.as_bytes(), change) {
                self.groups.insert(id, group);
                continue;
            }
            let announced = match change {
                KeyChange::Theirs if group.is_member(&me) => group.announce(&self.me, now, self.entropy.as_mut()),
                _ => Ok(Vec::new()),
            };
            match announced {
                Ok(sealed) => changed.push((group, sealed)),
                Err(e) => {
                    tracing::debug!(%e, "no announcement in a 1:1 conversation's new epoch");
                    changed.push((group, Vec::new()));
                }
            }
        }
        Ok(changed)
    }
}

/// Stores the groups of one change with what each sealed.
fn store_sealed(tx: &rusqlite::Connection, groups: &mut [(Group, Vec<Sealed>)], now: u64) -> Result<()> {
    for (group, sealed) in groups.iter_mut() {
        if !sealed.is_empty() {
            put_sent(tx, &group.id, sealed, now)?;
        }
        tx.save_group(group)?;
    }
    Ok(())
}

/// The other account of a 1:1 conversation (ours, for the account's conversation with itself).
fn peer_of(group: &Group, me: &AccountPublic) -> Option<AccountPublic> {
    let GroupKind::Pair { accounts } = group.kind else { return None };
    Some(if accounts[0] == *me { accounts[1] } else { accounts[0] })
}
