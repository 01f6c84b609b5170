//! What the primary hands a newly linked device, inside the sealed grant: its certificate and
//! what it needs to act for the account from now on (never the account key), in one encoding.

use crate::crypto::Secret32;
use crate::error::{Error, Result};
use crate::group::Welcome;
use crate::identity::{DeviceCert, MAX_NAME_LEN};
use crate::store::ContactStatus;
use crate::wire::{Reader, Writer};

const GRANT_VERSION: u8 = 1;
/// Contacts and conversations a grant may carry: what an account may hold.
const MAX_CONTACTS: usize = 100_000;
const MAX_GROUPS: usize = 100_000;
const MAX_CARD_LEN: usize = 1024;
const MAX_WELCOME_LEN: usize = 4 * 1024 * 1024;
const MAX_REVOCATIONS: usize = 100_000;
/// What a grant's history may hold; the primary keeps it under [`HISTORY_BUDGET`] bytes.
const MAX_HISTORY_MESSAGES: usize = 4_000_000;
const MAX_KIND_LEN: usize = 32;
const MAX_BODY_LEN: usize = 256 * 1024;
/// The bytes of history a grant carries at most (the newest messages that fit): the grant as a
/// whole stays under [`super::linking::MAX_GRANT_LEN`].
pub const HISTORY_BUDGET: usize = 48 * 1024 * 1024;

/// One contact as the primary holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantedContact {
    pub account: [u8; 32],
    pub name: String,
    pub card: Vec<u8>,
    pub status: ContactStatus,
    pub verified: bool,
    pub created_ms: u64,
}

/// One conversation: whether it is a 1:1 one, and what a member needs to read and write in it
/// from now on (its log, current epoch and the primary's chain), as a welcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantedGroup {
    pub pair_with: Option<[u8; 32]>,
    pub welcome: Welcome,
}

/// One message of the history, as the primary shows it (its keys are long gone: a new device
/// gets the text, not the envelope).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryMessage {
    pub group: [u8; 32],
    pub id: [u8; 32],
    pub sender: [u8; 32],
    pub lamport: u64,
    pub sent_ms: u64,
    pub kind: String,
    pub body: String,
}

impl HistoryMessage {
    /// Its size in a grant.
    pub fn encoded_len(&self) -> usize {
        32 * 3 + 8 * 2 + 4 + self.kind.len() + 4 + self.body.len()
    }
}

/// The conversations' history, when the user chose to send it: the messages, and how far each
/// conversation was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub messages: Vec<HistoryMessage>,
    /// (conversation, lamport, envelope id) of the last message read in each.
    pub read_marks: Vec<([u8; 32], u64, [u8; 32])>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The new device's certificate, signed by the account key.
    pub cert: DeviceCert,
    /// The primary's certificate: the welcomes' inviter.
    pub primary: DeviceCert,
    pub account_name: Option<String>,
    /// The account's invitation keys: contact requests to the account open on every device.
    pub request_secret: Secret32,
    pub rendezvous_seed: [u8; 32],
    pub contacts: Vec<GrantedContact>,
    pub groups: Vec<GrantedGroup>,
    /// The revocations the primary processed: the new device refuses those devices too.
    pub revocations: Vec<crate::devices::revocation::Revocation>,
    /// The history, if the user chose to send it (a grant without one ends before it).
    pub history: Option<History>,
    /// The account's settings (read receipts, retentions), as on the primary.
    pub settings: Vec<crate::group::SharedSetting>,
}

fn status_byte(s: ContactStatus) -> u8 {
    match s {
        ContactStatus::Added => 0,
        ContactStatus::Incoming => 1,
        ContactStatus::Accepted => 2,
    }
}

impl Grant {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(4096);
        w.u8(GRANT_VERSION);
        self.cert.encode(&mut w);
        self.primary.encode(&mut w);
        w.string(self.account_name.as_deref().unwrap_or(""));
        w.raw(&self.request_secret[..]).raw(&self.rendezvous_seed);
        w.count(self.contacts.len());
        for c in &self.contacts {
            w.raw(&c.account)
                .string(&c.name)
                .bytes(&c.card)
                .u8(status_byte(c.status))
                .bool(c.verified)
                .u64(c.created_ms);
        }
        w.count(self.groups.len());
        for g in &self.groups {
            match &g.pair_with {
                Some(peer) => w.u8(1).raw(peer),
                None => w.u8(0),
            };
            let mut inner = Writer::with_capacity(1024);
            g.welcome.encode(&mut inner);
            w.bytes(&inner.into_bytes());
        }
        w.count(self.revocations.len());
        for r in &self.revocations {
            r.encode(&mut w);
        }
        // Optional sections, each after a tag: 1 the history, 2 the settings.
        if let Some(history) = &self.history {
            w.u8(1);
            w.count(history.messages.len());
            for m in &history.messages {
                w.raw(&m.group).raw(&m.id).raw(&m.sender).u64(m.lamport).u64(m.sent_ms).string(&m.kind).string(&m.body);
            }
            w.count(history.read_marks.len());
            for (group, lamport, id) in &history.read_marks {
                w.raw(group).u64(*lamport).raw(id);
            }
        }
        if !self.settings.is_empty() {
            w.u8(2).count(self.settings.len());
            for s in &self.settings {
                s.encode(&mut w);
            }
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Grant> {
        let mut r = Reader::new(bytes, "device grant");
        let version = r.u8()?;
        if version != GRANT_VERSION {
            return Err(Error::UnsupportedVersion { what: "device grant", found: version, supported: GRANT_VERSION });
        }
        let cert = DeviceCert::decode(&mut r)?;
        let primary = DeviceCert::decode(&mut r)?;
        let name = r.string(MAX_NAME_LEN)?;
        let request_secret: Secret32 = r.array::<32>()?.into();
        let rendezvous_seed = r.array()?;
        let n = r.count(MAX_CONTACTS, 32 + 4 + 4 + 1 + 1 + 8)?;
        let contacts = (0..n)
            .map(|_| {
                Ok(GrantedContact {
                    account: r.array()?,
                    name: r.string(MAX_NAME_LEN)?,
                    card: r.bytes(MAX_CARD_LEN)?.to_vec(),
                    status: match r.u8()? {
                        0 => ContactStatus::Added,
                        1 => ContactStatus::Incoming,
                        2 => ContactStatus::Accepted,
                        _ => return Err(Error::Malformed { what: "device grant", why: "unknown contact status" }),
                    },
                    verified: r.bool()?,
                    created_ms: r.u64()?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let n = r.count(MAX_GROUPS, 1 + 4)?;
        let groups = (0..n)
            .map(|_| {
                let pair_with = match r.u8()? {
                    0 => None,
                    1 => Some(r.array()?),
                    _ => return Err(Error::Malformed { what: "device grant", why: "unknown conversation kind" }),
                };
                let welcome = Welcome::from_bytes(r.bytes(MAX_WELCOME_LEN)?)?;
                Ok(GrantedGroup { pair_with, welcome })
            })
            .collect::<Result<Vec<_>>>()?;
        let n = r.count(MAX_REVOCATIONS, crate::devices::revocation::Revocation::ENCODED_LEN)?;
        let revocations =
            (0..n).map(|_| crate::devices::revocation::Revocation::decode(&mut r)).collect::<Result<Vec<_>>>()?;
        let (mut history, mut settings) = (None, Vec::new());
        let mut last_tag = 0;
        while r.remaining() > 0 {
            let tag = r.u8()?;
            if tag <= last_tag {
                return Err(Error::Malformed { what: "device grant", why: "its sections are out of order" });
            }
            last_tag = tag;
            match tag {
                1 => history = Some(decode_history(&mut r)?),
                2 => {
                    let n = r.count(MAX_GROUPS + 1, 2)?;
                    settings = (0..n).map(|_| crate::group::SharedSetting::decode(&mut r)).collect::<Result<_>>()?;
                }
                _ => return Err(Error::Malformed { what: "device grant", why: "unknown section" }),
            }
        }
        r.finish()?;
        cert.verify()?;
        primary.verify()?;
        if cert.account != primary.account {
            return Err(Error::Malformed { what: "device grant", why: "its two certificates name different accounts" });
        }
        Ok(Grant {
            cert,
            primary,
            account_name: (!name.is_empty()).then_some(name),
            request_secret,
            rendezvous_seed,
            contacts,
            groups,
            revocations,
            history,
            settings,
        })
    }
}

fn decode_history(r: &mut Reader<'_>) -> Result<History> {
    let n = r.count(MAX_HISTORY_MESSAGES, 32 * 3 + 8 * 2 + 4 + 4)?;
    let messages = (0..n)
        .map(|_| {
            Ok(HistoryMessage {
                group: r.array()?,
                id: r.array()?,
                sender: r.array()?,
                lamport: r.u64()?,
                sent_ms: r.u64()?,
                kind: r.string(MAX_KIND_LEN)?,
                body: r.string(MAX_BODY_LEN)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let n = r.count(MAX_GROUPS, 32 + 8 + 32)?;
    let read_marks = (0..n).map(|_| Ok((r.array()?, r.u64()?, r.array()?))).collect::<Result<Vec<_>>>()?;
    Ok(History { messages, read_marks })
}
