//! Contacts: adding by link, incoming requests, acceptance and verification.

use super::{Account, ContactInfo, check_name};
use crate::error::{Error, Result};
use crate::group::Group;
use crate::handshake::ContactRequest;
use crate::identity::{ContactCard, fingerprint, safety_number};
use crate::store::{ContactRow, ContactStatus, Rows};

/// Contact requests that may wait for an answer; more are refused until some are answered.
const MAX_PENDING_REQUESTS: usize = 1_000;

impl Account {
    fn contact_info(row: &ContactRow) -> ContactInfo {
        ContactInfo {
            name: row.name.clone(),
            account: row.account,
            fingerprint: fingerprint(&row.account),
            status: row.status,
            verified: row.verified,
        }
    }

    pub fn contacts(&self) -> Result<Vec<ContactInfo>> {
        Ok(self.store.read().contacts()?.iter().map(Self::contact_info).collect())
    }

    pub(super) fn contact_row(&self, name: &str) -> Result<ContactRow> {
        self.store
            .read()
            .contacts()?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::NotFound { what: "contact", name: name.to_owned() })
    }

    /// The 1:1 group with the holder of `card`, derived from both request keys.
    fn pair_group(&self, card: &ContactCard, created_ms: u64) -> Result<Group> {
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
            (None, None, Some(n)) => n.clone(),
            (None, None, None) => {
                return Err(Error::Malformed { what: "contact link", why: "it carries no name; give one with --name" });
            }
        };
        check_name(&name)?;
        if existing.as_ref().is_none_or(|r| r.name != name) && self.store.read().contact_name_taken(&name)? {
            return Err(Error::AlreadyExists(format!("a contact named {name:?}")));
        }
        let now = self.now();
        let mut group = match &existing {
            Some(row) => self.groups.remove(&row.group_id).map_or_else(|| self.pair_group(&card, now), Ok)?,
            None => self.pair_group(&card, now)?,
        };
        let own = group.ensure_own_chain(now, self.entropy.as_mut())?.clone();
        group.mark_shared(card.account);
        let request = ContactRequest {
            card: self.card(),
            device: self.me.cert.clone(),
            chain_generation: own.generation,
            chain_index: own.next_index,
            chain_key: *own.chain_key,
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
        let result = self.store.write(|tx| {
            tx.upsert_contact(&row)?;
            tx.save_group(&mut group)
        });
        self.settle([group], result)?;
        Ok(Self::contact_info(&row))
    }

    /// Applies a contact request from a bundle or a rendezvous point. Returns the name of a
    /// contact it created, `Ok(None)` for a request we already knew, and `DecryptionFailed`
    /// when the request is not for us.
    pub fn receive_request(&mut self, bytes: &[u8]) -> Result<Option<String>> {
        let hash = *blake3::hash(bytes).as_bytes();
        if self.store.read().request_seen(&hash)? {
            return Ok(None);
        }
        let request = ContactRequest::open(bytes, &self.invite)?;
        if request.card.account == self.account_public() {
            return Ok(None);
        }
        // The 1:1 conversation is listened to from when the request was written (within reason),
        // so messages sent before it arrived are not lost.
        let now = self.now();
        let since = request.sent_ms.clamp(now.saturating_sub(crate::group::MAX_HISTORY_MS), now);
        let existing = self.store.read().contact_by_account(&request.card.account)?;
        let mut created = None;
        let mut row = match existing {
            Some(mut row) => {
                if row.status == ContactStatus::Added {
                    row.status = ContactStatus::Accepted;
                }
                row
            }
            None => {
                let pending = self.contacts()?.iter().filter(|c| c.status == ContactStatus::Incoming).count();
                if pending >= MAX_PENDING_REQUESTS {
                    return Err(Error::Limit("too many contact requests wait for an answer"));
                }
                let base = request
                    .card
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("contact-{}", &fingerprint(&request.card.account)[..5]));
                let mut name = base.clone();
                let mut n = 2;
                while self.store.read().contact_name_taken(&name)? {
                    name = format!("{base}-{n}");
                    n += 1;
                }
                created = Some(name.clone());
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
        let mut group = match self.groups.remove(&row.group_id) {
            Some(g) => g,
            None => self.pair_group(&request.card, since)?,
        };
        group.created_ms = group.created_ms.min(since);
        row.group_id = group.id;
        let learned = group.learn_device(&request.device).map(|()| {
            group.learn_chain(request.device.device, request.chain_generation, request.chain_index, request.chain_key)
        });
        let result = learned.and_then(|()| {
            self.store.write(|tx| {
                tx.note_request(&hash)?;
                tx.upsert_contact(&row)?;
                tx.save_group(&mut group)
            })
        });
        let group_id = group.id;
        self.settle([group], result)?;
        self.retry_waiting(&group_id)?;
        Ok(created)
    }

    /// Accepts an incoming request.
    pub fn accept_contact(&mut self, name: &str) -> Result<ContactInfo> {
        let mut row = self.contact_row(name)?;
        if row.status == ContactStatus::Incoming {
            row.status = ContactStatus::Accepted;
            self.store.write(|tx| tx.upsert_contact(&row))?;
        }
        Ok(Self::contact_info(&row))
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
        Ok(Self::contact_info(&row))
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
