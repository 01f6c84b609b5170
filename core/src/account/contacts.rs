//! Contacts: adding by link, incoming requests, acceptance and verification.

use super::{Account, ContactInfo, check_name};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::handshake::ContactRequest;
use crate::identity::{ContactCard, fingerprint, safety_number};
use crate::store::{ContactRow, ContactStatus, Rows};

/// What a contact request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Someone new asks to be a contact; they are listed as incoming under this name.
    New(String),
    /// Someone whose link we had added introduced themselves in turn.
    Answered(String),
    /// Seen before, or nothing new.
    Known,
}

/// Contact requests that may wait for an answer; beyond, the oldest is forgotten.
const MAX_PENDING_REQUESTS: usize = 1_000;
/// How far back a conversation begun by a request is read, from when its request says it was
/// written: as far as relays keep envelopes.
const STRANGER_HISTORY_MS: u64 = 14 * 24 * 60 * 60 * 1000;

impl Account {
    fn info_of(row: &ContactRow, blocked: bool) -> ContactInfo {
        ContactInfo {
            name: row.name.clone(),
            account: row.account,
            fingerprint: fingerprint(&row.account),
            status: row.status,
            verified: row.verified,
            blocked,
            conversation: row.group_id,
        }
    }

    fn contact_info(&self, row: &ContactRow) -> Result<ContactInfo> {
        Ok(Self::info_of(row, self.store.read().is_blocked(&row.account)?))
    }

    pub fn contacts(&self) -> Result<Vec<ContactInfo>> {
        let blocked = self.store.read().blocked()?;
        Ok(self.store.read().contacts()?.iter().map(|c| Self::info_of(c, blocked.contains(&c.account))).collect())
    }

    /// Whether the user blocked this account.
    pub(super) fn is_blocked(&self, account: &[u8; 32]) -> Result<bool> {
        self.store.read().is_blocked(account)
    }

    /// Declines someone's contact request: they and their conversation are forgotten, and the
    /// same request (which their node republishes daily) is not shown again.
    pub fn reject_contact(&mut self, name: &str) -> Result<()> {
        let row = self.contact_row(name)?;
        if row.status != ContactStatus::Incoming {
            return Err(Error::NotAllowed("only a request that waits for an answer can be rejected"));
        }
        self.delete_contact(name)
    }

    /// Forgets a contact and our 1:1 conversation with them (its messages too). Groups shared
    /// with them are not touched. They can ask again with a new request.
    pub fn delete_contact(&mut self, name: &str) -> Result<()> {
        let row = self.contact_row(name)?;
        self.store.write(|tx| tx.forget_contact(&row.account, &row.group_id))?;
        self.groups.remove(&row.group_id);
        self.rebuild_topics();
        self.share_setting(crate::group::SharedSetting::ContactForgotten { account: row.account });
        Ok(())
    }

    /// Blocks an account (a contact's, or a group member's by account id): their requests are
    /// dropped, their messages are not shown in any conversation, and nothing of ours (messages,
    /// receipts) goes to our 1:1 conversation with them. Undone by [`Account::unblock`].
    pub fn block(&mut self, name: &str) -> Result<()> {
        let account = self.account_to_block(name)?;
        let now = self.now();
        self.store.write(|tx| tx.set_blocked(&account, true, now))?;
        self.share_setting(crate::group::SharedSetting::Blocked { account, blocked: true });
        Ok(())
    }

    pub fn unblock(&mut self, name: &str) -> Result<()> {
        let account = self.account_to_block(name)?;
        let now = self.now();
        self.store.write(|tx| tx.set_blocked(&account, false, now))?;
        self.share_setting(crate::group::SharedSetting::Blocked { account, blocked: false });
        // A link replaced while they were blocked was not sent to them.
        self.send_our_link_to(&account);
        Ok(())
    }

    fn account_to_block(&self, name: &str) -> Result<[u8; 32]> {
        let account = match self.contact_row(name) {
            Ok(row) => row.account,
            Err(e) => super::conversations::exact_id(name).ok_or(e)?,
        };
        if account == self.account_public() {
            return Err(Error::NotAllowed("you cannot block yourself"));
        }
        Ok(account)
    }

    /// A contact by account id (64 hex characters), else by name.
    pub(super) fn contact_row(&self, name: &str) -> Result<ContactRow> {
        let all = self.store.read().contacts()?;
        let by_id = super::conversations::exact_id(name).and_then(|id| all.iter().position(|c| c.account == id));
        let at = by_id.or_else(|| all.iter().position(|c| c.name == name));
        at.map(|i| all[i].clone()).ok_or_else(|| Error::NotFound { what: "contact", name: name.to_owned() })
    }

    /// The 1:1 group with the holder of `card`, derived from both request keys.
    pub(super) fn pair_group(&self, card: &ContactCard, created_ms: u64) -> Result<Group> {
        let shared = self.invite.request.diffie_hellman(&x25519_dalek::PublicKey::from(card.request_key));
        if !shared.was_contributory() {
            return Err(Error::Malformed { what: "contact card", why: "request key is a low-order point" });
        }
        Ok(Group::pair(&self.me, card.account, shared.as_bytes(), created_ms))
    }

    /// Adds a contact from their link and prepares the request that introduces us to them. It
    /// travels in the next exported bundle (and, later, over the network).
    pub fn add_contact(&mut self, link: &str, name: Option<&str>) -> Result<ContactInfo> {
        let card = ContactCard::from_link(link)?;
        if card.account == self.account_public() {
            return Err(Error::Malformed { what: "contact link", why: "it is your own link" });
        }
        let existing = self.store.read().contact_by_account(&card.account)?;
        if let Some(row) = &existing
            && row.status != ContactStatus::Incoming
        {
            return Err(Error::AlreadyExists(format!("contact {:?} with this link", row.name)));
        }
        let name = match (name, &existing, &card.name) {
            (Some(n), _, _) => n.to_owned(),
            (None, Some(row), _) => row.name.clone(),
            // A card's name is what its holder chose: one that could be taken for an id
            // (another conversation's) is not made a key here.
            (None, None, Some(n)) if super::conversations::looks_like_an_id(n) => {
                return Err(Error::Malformed {
                    what: "contact link",
                    why: "its name looks like an id; give the contact a name of your own",
                });
            }
            (None, None, Some(n)) => n.clone(),
            (None, None, None) => {
                return Err(Error::Malformed { what: "contact link", why: "it carries no name; give one with --name" });
            }
        };
        check_name(&name)?;
        if existing.as_ref().is_none_or(|r| r.name != name) && !self.name_is_free(&name)? {
            return Err(Error::AlreadyExists(format!("a contact or group named {name:?}")));
        }
        let now = self.now();
        // A stranger's conversation (their request waits) is stored, not loaded: it keeps the
        // chain their request brought and the day it began.
        let stored = |a: &Self, id: &[u8; 32]| a.store.read().load_group(id);
        let mut group = match &existing {
            Some(row) => match self.groups.remove(&row.group_id) {
                Some(g) => g,
                None => stored(self, &row.group_id)?.map_or_else(|| self.pair_group(&card, now), Ok)?,
            },
            None => self.pair_group(&card, now)?,
        };
        let result = self.introduce(&mut group, card, name, existing, now);
        let row = self.settle([group], result)?;
        self.share_contact(&row.account);
        self.contact_info(&row)
    }

    /// Seals our contact request to `card` and stores the contact, in one transaction.
    fn introduce(
        &mut self,
        group: &mut Group,
        card: ContactCard,
        name: String,
        existing: Option<ContactRow>,
        now: u64,
    ) -> Result<ContactRow> {
        let own = group.ensure_own_chain(now, self.entropy.as_mut())?.clone();
        group.mark_shared(card.account);
        let request = ContactRequest {
            card: self.card(),
            device: self.me.cert.clone(),
            prekey: self.me.prekeys.current().clone(),
            chain_generation: own.generation,
            chain_index: own.next_index,
            chain_key: own.chain_key.clone(),
            sent_ms: now,
        }
        .seal(&card, &self.me.keys, self.entropy.as_mut())?;
        let row = ContactRow {
            account: card.account,
            name,
            card: card.to_bytes(),
            status: if existing.is_some() { ContactStatus::Accepted } else { ContactStatus::Added },
            verified: existing.as_ref().is_some_and(|r| r.verified),
            group_id: group.id,
            request: Some(request),
            created_ms: existing.as_ref().map_or(now, |r| r.created_ms),
        };
        self.store.write(|tx| {
            tx.upsert_contact(&row)?;
            tx.save_group(group)
        })?;
        Ok(row)
    }

    /// Whether no contact and no group is called `name`.
    pub(super) fn name_is_free(&self, name: &str) -> Result<bool> {
        Ok(!self.store.read().contact_name_taken(name)? && !self.groups.values().any(|g| g.name() == name))
    }

    /// A name for someone who introduced themselves: theirs, cleaned of control characters and
    /// cut to length, made unique with a number.
    pub(super) fn name_for_stranger(&self, card: &ContactCard) -> Result<String> {
        let cleaned: String = card.name.as_deref().unwrap_or("").chars().filter(|c| !c.is_control()).collect();
        let mut base = cleaned.trim().to_owned();
        while base.len() > crate::identity::MAX_NAME_LEN - 8 {
            base.pop();
        }
        // A name that could be taken for an id (or an id's prefix) would shadow it when
        // typed: a stranger could name themselves after the start of one of our group's ids.
        if base.is_empty() || super::conversations::looks_like_an_id(&base) {
            base = format!("contact-{}", &fingerprint(&card.account)[..5]);
        }
        let mut name = base.clone();
        let mut n = 2;
        while !self.name_is_free(&name)? {
            name = format!("{base}-{n}");
            n += 1;
        }
        Ok(name)
    }

    /// Applies a contact request from a bundle or a rendezvous point. Returns the name of a
    /// contact it created, `Ok(None)` for a request we already knew, and `DecryptionFailed`
    /// when the request is not for us.
    ///
    /// A stranger's request costs one contact row and their 1:1 conversation's state, stored
    /// and not loaded: nothing of that conversation is followed, indexed or read until we
    /// accept. When too many wait, the one who has waited longest is forgotten.
    pub fn receive_request(&mut self, bytes: &[u8]) -> Result<RequestOutcome> {
        // Each day's wrapping differs; the request inside is what was seen before.
        let inner = crate::handshake::unwrap(bytes, &self.invite)?;
        let hash = *blake3::hash(&inner).as_bytes();
        if self.store.read().request_seen(&hash)? {
            return Ok(RequestOutcome::Known);
        }
        let request = ContactRequest::open(&inner, &self.invite)?;
        if request.card.account == self.account_public() || self.is_blocked(&request.card.account)? {
            return Ok(RequestOutcome::Known);
        }
        // The 1:1 conversation is listened to from when the request was written (within what a
        // relay keeps), so messages sent before it arrived are not lost.
        let now = self.now();
        let since = request.sent_ms.clamp(now.saturating_sub(STRANGER_HISTORY_MS), now);
        let existing = self.store.read().contact_by_account(&request.card.account)?;
        let mut outcome = RequestOutcome::Known;
        let mut evict = None;
        let mut row = match existing {
            Some(mut row) => {
                if row.status == ContactStatus::Added {
                    row.status = ContactStatus::Accepted;
                    outcome = RequestOutcome::Answered(row.name.clone());
                }
                row
            }
            None => {
                let (oldest, waiting) = self.store.read().oldest_stranger()?;
                if waiting >= MAX_PENDING_REQUESTS {
                    evict = oldest;
                }
                let name = self.name_for_stranger(&request.card)?;
                outcome = RequestOutcome::New(name.clone());
                ContactRow {
                    account: request.card.account,
                    name,
                    card: request.card.to_bytes(),
                    status: ContactStatus::Incoming,
                    verified: false,
                    group_id: [0; 32],
                    request: None,
                    created_ms: now,
                }
            }
        };
        let stranger = row.status == ContactStatus::Incoming;
        let mut group = match self.groups.remove(&row.group_id) {
            Some(g) => g,
            None => match self.store.read().load_group(&row.group_id)? {
                Some(g) if row.group_id != [0; 32] => g,
                _ => self.pair_group(&request.card, since)?,
            },
        };
        group.created_ms = group.created_ms.min(since);
        row.group_id = group.id;
        let learned = group.learn_device(&request.device).map(|()| {
            group.note_prekey(&request.prekey);
            group.learn_chain(request.device.device, request.chain_generation, request.chain_index, *request.chain_key)
        });
        let result = learned.and_then(|()| {
            self.store.write(|tx| {
                if let Some((account, group)) = &evict {
                    tx.forget_stranger(account, group)?;
                }
                tx.note_request(&hash)?;
                tx.upsert_contact(&row)?;
                tx.save_group(&mut group)
            })
        });
        let group_id = group.id;
        if stranger {
            result?;
            return Ok(outcome);
        }
        self.settle([group], result)?;
        self.retry_waiting(&group_id)?;
        Ok(outcome)
    }

    /// Accepts an incoming request, and joins the groups they invited us to meanwhile. Returns
    /// the contact and the names of the groups joined.
    pub fn accept_contact(&mut self, name: &str) -> Result<(ContactInfo, Vec<String>)> {
        let mut row = self.contact_row(name)?;
        if row.status == ContactStatus::Incoming {
            row.status = ContactStatus::Accepted;
            // Answer in our 1:1 conversation: the key share carries our device certificate, so
            // they can add this device to groups (and share epochs with it) before we ever write.
            // The conversation was stored, not followed: it is followed from now on, and what
            // was written in it since the request is caught up on like any day missed.
            let now = self.now();
            let mut pair = match self.groups.remove(&row.group_id) {
                Some(g) => Some(g),
                None => self.store.read().load_group(&row.group_id)?,
            };
            let result = (|| {
                let announce = match pair.as_mut() {
                    Some(p) => Some(p.announce(&self.me, now, self.entropy.as_mut())?),
                    None => None,
                };
                self.store.write(|tx| {
                    tx.upsert_contact(&row)?;
                    if let (Some(p), Some(a)) = (pair.as_mut(), &announce) {
                        super::conversations::put_sent(tx, &p.id, a, now)?;
                        tx.save_group(p)?;
                    }
                    Ok(())
                })
            })();
            self.settle(pair, result)?;
            // A request that came before we replaced our link made the conversation under the
            // old one: they get the new link there, and it moves on.
            self.send_our_link_to(&row.account);
        }
        let joined = self.join_held_invites(&row.account)?;
        self.share_contact(&row.account);
        Ok((self.contact_info(&row)?, joined))
    }

    /// The safety number shared with a contact.
    pub fn safety_number(&self, name: &str) -> Result<String> {
        let row = self.contact_row(name)?;
        Ok(safety_number(&self.account_public(), &row.account))
    }

    /// Records that the user compared safety numbers with a contact.
    pub fn mark_verified(&mut self, name: &str) -> Result<ContactInfo> {
        let mut row = self.contact_row(name)?;
        row.verified = true;
        self.store.write(|tx| tx.upsert_contact(&row))?;
        self.share_contact(&row.account);
        self.contact_info(&row)
    }

    /// The name we show for an account.
    pub(super) fn display_name(&self, account: &[u8; 32]) -> String {
        if *account == self.account_public() {
            return self.name.clone().unwrap_or_else(|| "me".to_owned());
        }
        if let Ok(Some(row)) = self.store.read().contact_by_account(account) {
            return row.name;
        }
        if let Some(name) = self.groups.values().find_map(|g| g.name_given_to(account)) {
            return name;
        }
        format!("user-{}", &fingerprint(account)[..5])
    }
}
