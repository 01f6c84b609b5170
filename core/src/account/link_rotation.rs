//! Replacing the account's contact link, and taking the links contacts replaced.
//!
//! The account's first device replaces the link when it revokes a device (and when the user
//! asks: a link that leaked): a new request key and rendezvous seed, signed by the account key.
//! The account's other devices get the new keys in its conversation with itself, contacts the
//! signed card in their 1:1 conversation, both sealed under chains the revoked device no longer
//! gets; then every 1:1 conversation moves to the epoch the new key gives
//! ([`Group::move_pair_epoch`]). The revoked device opens no request sent to the new link and
//! no longer sees when or how much is written in 1:1 conversations.

use std::collections::HashMap;

use x25519_dalek::{PublicKey, StaticSecret};

use crate::crypto::Secret32;
use crate::devices::rotation::RotatedLink;
use crate::error::{Error, Result};
use crate::group::{Content, Group, GroupKind};
use crate::identity::{AccountPublic, ContactCard, InviteKeys};
use crate::store::Rows;

use super::Account;
use super::conversations::put_sent;

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
    /// conversation moves to a new epoch.
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
        // Told in the current epochs, which the others read, before moving them.
        self.send_to_own_devices(Content::InviteKeysShared {
            request_secret: invite.request.to_bytes().into(),
            link: link.clone(),
        });
        let me = self.account_public();
        let pairs: Vec<_> = self
            .groups
            .iter()
            .filter(|(_, g)| matches!(g.kind, GroupKind::Pair { .. }) && !g.is_own_conversation() && g.is_member(&me))
            .map(|(id, _)| *id)
            .collect();
        for id in pairs {
            let Some(mut group) = self.groups.remove(&id) else { continue };
            let result =
                group.send_rotated_link(&self.me, link.clone(), now, self.entropy.as_mut()).and_then(|sealed| {
                    self.store.write(|tx| {
                        put_sent(tx, &id, &sealed, now)?;
                        tx.save_group(&mut group)
                    })
                });
            if let Err(e) = self.settle([group], result) {
                tracing::warn!(%e, "a replaced link could not be sealed in one conversation");
            }
        }
        self.take_invite_keys(invite, &link)?;
        Ok(link.card.to_link())
    }

    /// Hands a contact our latest replaced link in our 1:1 conversation and moves it to the
    /// epoch the new key gives (a conversation made under the old link: a request from before
    /// the link was replaced, accepted after). Best effort: the conversation works either way.
    pub(super) fn send_our_link_to(&mut self, contact: &AccountPublic) {
        let me = self.account_public();
        let link = match self.store.read().link_rotation(&me) {
            Ok(Some(link)) => link,
            _ => return,
        };
        let (id, _) = Group::pair_id(&me, contact);
        let Some(mut group) = self.groups.remove(&id) else { return };
        let now = self.now();
        let result = group.send_rotated_link(&self.me, link, now, self.entropy.as_mut()).and_then(|sealed| {
            self.store.write(|tx| {
                put_sent(tx, &id, &sealed, now)?;
                tx.save_group(&mut group)
            })
        });
        let moved = self.settle([group], result).and_then(|()| self.move_pair_epochs(Some(*contact)));
        if let Err(e) = moved {
            tracing::warn!(%e, "our replaced link could not be handed to a contact");
        }
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
                if self.is_newer(&link)? {
                    self.take_invite_keys(invite, &link)?;
                }
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
                self.move_pair_epochs(Some(account))?;
            }
        }
        Ok(())
    }

    fn is_newer(&self, link: &RotatedLink) -> Result<bool> {
        Ok(self.store.read().link_rotated_ms(&link.card.account)?.is_none_or(|last| link.issued_ms > last))
    }

    /// Makes `invite` the keys behind our link and moves every 1:1 conversation to the epoch
    /// they give.
    fn take_invite_keys(&mut self, invite: InviteKeys, link: &RotatedLink) -> Result<()> {
        self.store.write(|tx| {
            tx.set_invite_keys(&invite.request.to_bytes(), &invite.rendezvous_seed)?;
            tx.put_link_rotation(link)
        })?;
        self.invite = invite;
        self.move_pair_epochs(None)
    }

    /// Moves the 1:1 conversations (with `only`, or all, ours with ourselves included) to the
    /// epoch our request key and theirs now give.
    fn move_pair_epochs(&mut self, only: Option<AccountPublic>) -> Result<()> {
        let me = self.account_public();
        let request_keys: HashMap<AccountPublic, [u8; 32]> = self
            .store
            .read()
            .contacts()?
            .into_iter()
            .filter_map(|c| ContactCard::from_bytes(&c.card).ok().map(|card| (c.account, card.request_key)))
            .chain(std::iter::once((me, self.invite.request_public())))
            .collect();
        let mut moved: Vec<Group> = Vec::new();
        let ids: Vec<_> = self.groups.keys().copied().collect();
        for id in ids {
            let Some(GroupKind::Pair { accounts }) = self.groups.get(&id).map(|g| g.kind.clone()) else { continue };
            let peer = if accounts[0] == me { accounts[1] } else { accounts[0] };
            if only.is_some_and(|o| o != peer) {
                continue;
            }
            let Some(theirs) = request_keys.get(&peer) else { continue };
            let shared = self.invite.request.diffie_hellman(&PublicKey::from(*theirs));
            if !shared.was_contributory() {
                continue;
            }
            let Some(mut group) = self.groups.remove(&id) else { continue };
            if group.move_pair_epoch(shared.as_bytes()) {
                moved.push(group);
            } else {
                self.groups.insert(id, group);
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        let result = self.store.write(|tx| moved.iter_mut().try_for_each(|g| tx.save_group(g)));
        self.settle(moved, result)
    }
}
