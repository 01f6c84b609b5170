//! What travels inside an envelope's body: the signed inner payload and its kinds of content.
//!
//! Body plaintext = `inner length (4) | inner | signature (64) | zero padding`, where the
//! signature is the sender device's over `label | group | epoch | nonce | header | inner`.
//! Binding the group, the epoch, the nonce and the chain position into the signature stops a
//! member from replaying a message into another group, at another position, or re-encrypted.

use crate::crypto::label;
use crate::envelope::EnvelopeId;
use crate::error::{Error, Result};
use crate::identity::{DeviceCert, DeviceId, SignedPrekey};
use crate::wire::{Reader, Writer};

use super::GroupId;
use super::membership::{MAX_MEMBERS, SignedOp};

pub const MESSAGE_SIGNATURE_CONTEXT: &[u8] = label("weft/v1/message");
pub const MAX_PARENTS: usize = 16;
/// Longest text message, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 60_000;
const MAX_SHARES: usize = MAX_MEMBERS * super::membership::MAX_DEVICES_PER_ACCOUNT;
/// Shares one message may carry (a sender puts 400 in each).
const MAX_SHARES_PER_MESSAGE: usize = 512;
const MAX_SEALED_LEN: usize = super::channel::SEALED_LEN;
const MAX_WELCOME_OPS: usize = super::membership::MAX_OPS;
const MAX_OP_LEN: usize = 4096;
// Content kinds. Version 1's key shares, changes and invitations sealed secrets to long-term
// keys; their kinds are refused by name.
const KIND_V1_KEY_SHARE: u8 = 2;
const KIND_V1_MEMBERSHIP: u8 = 3;
const KIND_V1_INVITE: u8 = 4;
const KIND_KEY_SHARE: u8 = 6;
const KIND_MEMBERSHIP: u8 = 7;
const KIND_INVITE: u8 = 8;
const KIND_INVITE_PART: u8 = 9;
const KIND_EPOCH_SHARES: u8 = 10;
const KIND_RESENT: u8 = 11;
const KIND_LEAVE: u8 = 12;
const KIND_DEVICE_REVOKED: u8 = 13;
const KIND_CONTACT_SHARED: u8 = 14;
const KIND_SETTING_SHARED: u8 = 15;
const KIND_LINK_ROTATED: u8 = 16;
const KIND_INVITE_KEYS_SHARED: u8 = 17;
const KIND_REPLY: u8 = 18;
const KIND_REACTION: u8 = 19;
const KIND_EDIT: u8 = 20;
const KIND_DELETE: u8 = 21;
const KIND_TIMER: u8 = 22;
const KIND_ATTACHMENT: u8 = 23;
/// The shortest and longest disappearing-message timers: under a minute a message could be gone
/// before it is read; a year is what "for ever, but not quite" needs.
pub const MIN_TIMER_MS: u64 = 60 * 1000;
pub const MAX_TIMER_MS: u64 = 366 * 24 * 60 * 60 * 1000;
/// Bytes of a reaction: one emoji, however many code points it is made of (a family with skin
/// tones is 25 bytes), and never a message in disguise.
pub const MAX_REACTION_LEN: usize = 32;
/// Ids a receipt acknowledges in each of its lists; more wait for the next receipt.
pub const MAX_RECEIPT_IDS: usize = 512;

/// Names a device among a group's, in a share: the first bytes of its id (a share that does
/// not open for a device that happens to match is ignored; the full id is bound inside).
pub type DeviceTag = [u8; 8];

pub fn tag_of(device: &DeviceId) -> DeviceTag {
    device[..8].try_into().expect("32 > 8")
}

/// A secret sealed to one device through the sender's channel with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub to: DeviceTag,
    pub sealed: Vec<u8>,
}

/// A device announces itself and its prekey, and hands its current chain key to the devices
/// listed. An update asks every member to start a new chain at its next message: the sender
/// may have been copied, and answers sealed to its fresh keys heal that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyShare {
    pub cert: DeviceCert,
    pub prekey: SignedPrekey,
    pub generation: u32,
    pub start_index: u32,
    pub update: bool,
    pub shares: Vec<Share>,
}

/// What a new member needs to join: the log, the current epoch and the inviter's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    pub group: [u8; 32],
    pub ops: Vec<SignedOp>,
    pub epoch: [u8; 32],
    pub epoch_secret: crate::crypto::Secret32,
    pub devices: Vec<DeviceCert>,
    /// The latest prekey the inviter knows of each device, to reach them with the newcomer's
    /// first key share.
    pub prekeys: Vec<SignedPrekey>,
    pub inviter_generation: u32,
    pub inviter_index: u32,
    pub inviter_chain_key: crate::crypto::Secret32,
    /// The group's clock at the inviter when the newcomer was added: her first message comes
    /// after her addition in everyone's history, not beside it.
    pub lamport: u64,
}

impl Welcome {
    pub fn encode(&self, w: &mut Writer) {
        w.raw(&self.group).count(self.ops.len());
        for op in &self.ops {
            w.bytes(&op.to_bytes());
        }
        w.raw(&self.epoch).raw(&self.epoch_secret[..]).count(self.devices.len());
        for d in &self.devices {
            d.encode(w);
        }
        encode_prekeys(w, &self.prekeys);
        w.u32(self.inviter_generation).u32(self.inviter_index).raw(&self.inviter_chain_key[..]);
        w.u64(self.lamport);
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let group = r.array()?;
        let n_ops = r.count(MAX_WELCOME_OPS, 4)?;
        let ops = (0..n_ops).map(|_| SignedOp::from_bytes(r.bytes(MAX_OP_LEN)?)).collect::<Result<Vec<_>>>()?;
        let epoch = r.array()?;
        let epoch_secret = r.array()?;
        let n_devices = r.count(MAX_SHARES, DeviceCert::ENCODED_LEN)?;
        let devices = (0..n_devices).map(|_| DeviceCert::decode(r)).collect::<Result<Vec<_>>>()?;
        let prekeys = decode_prekeys(r)?;
        Ok(Welcome {
            group,
            ops,
            epoch,
            epoch_secret: epoch_secret.into(),
            devices,
            prekeys,
            inviter_generation: r.u32()?,
            inviter_index: r.u32()?,
            inviter_chain_key: r.array::<32>()?.into(),
            // Last, and absent from a welcome made before it was added (one held in a store
            // from then, or from a member not yet updated): the clock then starts at 0.
            lamport: if r.remaining() >= 8 { r.u64()? } else { 0 },
        })
    }

    /// The welcome as bytes, and the BLAKE3 hash its parts name it by.
    pub fn to_bytes(&self) -> (Vec<u8>, [u8; 32]) {
        let mut w = Writer::with_capacity(4096);
        self.encode(&mut w);
        let bytes = w.into_bytes();
        let hash = *blake3::hash(&bytes).as_bytes();
        (bytes, hash)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "invitation");
        let welcome = Welcome::decode(&mut r)?;
        r.finish()?;
        Ok(welcome)
    }
}

/// One part of a welcome too big for one envelope (a large group's log, devices and
/// prekeys), sent in order in the 1:1 conversation and put together by the invitee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvitePart {
    /// BLAKE3 of the whole welcome's bytes.
    pub welcome: [u8; 32],
    pub index: u16,
    pub count: u16,
    pub bytes: Vec<u8>,
}

/// Bytes of a welcome each part carries (one part fits the largest envelope).
pub const WELCOME_PART_LEN: usize = 60_000;
/// Parts a welcome may have: 3.8 MB, a group of 1,000 members with 4 devices each and room.
pub const MAX_WELCOME_PARTS: usize = 64;

/// Longest contact card a shared contact carries.
const MAX_SHARED_CARD_LEN: usize = 1024;

/// A contact as shared between an account's devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedContact {
    /// The contact's card, as [`crate::identity::ContactCard::to_bytes`] wrote it.
    pub card: Vec<u8>,
    pub name: String,
    /// Both sides know each other (else we added their link and wait for their answer).
    pub accepted: bool,
    pub verified: bool,
    pub created_ms: u64,
    /// The epoch our 1:1 conversation with them is in on the sharing device, when either side
    /// replaced a link since it began (absent from shares made before this was added).
    pub pair_epoch: Option<[u8; 32]>,
}

/// A setting changed on one of an account's devices, for the others to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SharedSetting {
    /// Whether we tell others when we read their messages.
    ReadReceipts(bool),
    /// How long a conversation's messages are kept (`None`: for ever).
    Retention { conversation: GroupId, keep_ms: Option<u64> },
    /// The user blocked (or unblocked) this account.
    Blocked { account: [u8; 32], blocked: bool },
    /// The user deleted this contact, or rejected their request: forget them and our 1:1
    /// conversation with them.
    ContactForgotten { account: [u8; 32] },
}

impl SharedSetting {
    pub fn encode(&self, w: &mut Writer) {
        match self {
            SharedSetting::ReadReceipts(on) => {
                w.u8(1).bool(*on);
            }
            SharedSetting::Retention { conversation, keep_ms } => {
                w.u8(2).raw(conversation).bool(keep_ms.is_some()).u64(keep_ms.unwrap_or(0));
            }
            SharedSetting::Blocked { account, blocked } => {
                w.u8(3).raw(account).bool(*blocked);
            }
            SharedSetting::ContactForgotten { account } => {
                w.u8(4).raw(account);
            }
        }
    }

    pub fn decode(r: &mut Reader) -> Result<SharedSetting> {
        Ok(match r.u8()? {
            1 => SharedSetting::ReadReceipts(r.bool()?),
            2 => {
                let conversation = r.array()?;
                let set = r.bool()?;
                let keep_ms = r.u64()?;
                if set && keep_ms == 0 {
                    return Err(Error::Malformed { what: "setting", why: "a retention of nothing" });
                }
                SharedSetting::Retention { conversation, keep_ms: set.then_some(keep_ms) }
            }
            3 => SharedSetting::Blocked { account: r.array()?, blocked: r.bool()? },
            4 => SharedSetting::ContactForgotten { account: r.array()? },
            _ => return Err(Error::Malformed { what: "setting", why: "unknown setting" }),
        })
    }
}

/// What a member does to a message already in the conversation. Edits and deletes count only
/// when they come from the account that wrote the message (checked where both are known: a
/// change may arrive before its message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageChange {
    /// The sender's reaction to `to`, replacing any earlier one of theirs; empty withdraws it.
    Reaction { to: EnvelopeId, emoji: String },
    /// New text for the sender's own message `of`.
    Edit { of: EnvelopeId, text: String },
    /// The sender's own message `of`, deleted for everyone: its text (and its edits') leave
    /// every member's store.
    Delete { of: EnvelopeId },
}

impl MessageChange {
    /// The message it changes.
    pub fn target(&self) -> EnvelopeId {
        match self {
            MessageChange::Reaction { to, .. } => *to,
            MessageChange::Edit { of, .. } | MessageChange::Delete { of } => *of,
        }
    }
}

/// Refuses a reaction that is not one short emoji-like sequence: too long, or with control
/// characters or letters (a reaction is shown beside someone else's message, so it must not
/// pass for text of theirs).
pub fn check_reaction(emoji: &str) -> Result<()> {
    if emoji.len() > MAX_REACTION_LEN {
        return Err(Error::TooLong { what: "reaction", len: emoji.len(), max: MAX_REACTION_LEN });
    }
    // Invisible and reordering characters too (bidirectional marks, zero-width and other
    // format characters, combining marks that draw over what is beside them), but what emoji
    // sequences are made of: the zero-width joiner, variation selectors, the keycap mark, and
    // tag characters after a black flag (the flags of England, Scotland, Wales).
    let invisible = |c: char| {
        matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200C}' | '\u{200E}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
            | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}'
            | '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20E2}'
            | '\u{20E4}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}' | '\u{1D173}'..='\u{1D17A}')
    };
    let tags = |c: char| ('\u{E0000}'..='\u{E007F}').contains(&c);
    if emoji.chars().any(|c| c.is_control() || c.is_alphanumeric() || c.is_whitespace() || invisible(c))
        || (emoji.chars().any(tags) && !emoji.starts_with('\u{1F3F4}'))
    {
        return Err(Error::Malformed {
            what: "reaction",
            why: "letters, digits, spaces, control, invisible or combining characters",
        });
    }
    Ok(())
}

/// Refuses a disappearing-message timer shorter than a minute or longer than a year.
pub fn check_timer(keep_ms: u64) -> Result<()> {
    if !(MIN_TIMER_MS..=MAX_TIMER_MS).contains(&keep_ms) {
        return Err(Error::Malformed { what: "timer", why: "disappearing messages last between a minute and a year" });
    }
    Ok(())
}

/// A member's acknowledgement of messages in the group: which arrived on one of their devices,
/// and which they read. Sent inside the group's encryption like any message, so a carrier sees
/// one more small envelope and nothing of what it acknowledges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    pub delivered: Vec<EnvelopeId>,
    pub read: Vec<EnvelopeId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Text(String),
    /// A text message quoting an earlier message of the conversation; `replaces`, as for
    /// [`Content::Resent`], when it was sealed again.
    Reply {
        to: EnvelopeId,
        text: String,
        replaces: Option<EnvelopeId>,
    },
    /// A reaction, edit or delete (see [`MessageChange`]).
    Change(MessageChange),
    /// Disappearing messages: from this message on, every member's devices delete the
    /// conversation's texts `keep_ms` after they arrived (`None`: turned off). Any member may
    /// set it; everyone is shown who did.
    Timer {
        keep_ms: Option<u64>,
    },
    /// A file (see [`crate::attachment`]): what a member needs to fetch, check and open it,
    /// and a caption; `replaces`, as for [`Content::Resent`], when it was sealed again.
    Attachment {
        manifest: Box<crate::attachment::Manifest>,
        caption: String,
        replaces: Option<EnvelopeId>,
    },
    /// A text message sealed again (its day or epoch passed before a peer was known to have
    /// taken it): `replaces` is the envelope it was sealed in before. That envelope may still
    /// reach members, so they show the message once, under this id, whichever comes first.
    Resent {
        replaces: EnvelopeId,
        text: String,
    },
    KeyShare(KeyShare),
    /// A membership change and the new epoch's secret sealed to every remaining device, with
    /// the prekeys of devices an `Add` brings, so members can reach them at once.
    Membership {
        op: SignedOp,
        prekeys: Vec<SignedPrekey>,
        epoch_shares: Vec<Share>,
    },
    /// More of a membership change's epoch shares, when a large group's do not fit with it:
    /// sealed in the same epoch by the change's author.
    EpochShares {
        op: [u8; 32],
        shares: Vec<Share>,
    },
    /// An invitation to another group, sent inside a 1:1 conversation.
    Invite(Box<Welcome>),
    /// A part of an invitation too big for one envelope.
    InvitePart(InvitePart),
    Receipt(Receipt),
    /// A contact, as one of the account's devices added or accepted it, for the others (sent
    /// only in the account's conversation with itself).
    ContactShared(SharedContact),
    /// A setting changed on another of the account's devices (only in the account's
    /// conversation with itself).
    SettingShared(SharedSetting),
    /// The sender's account replaced its contact link (signed by the account key): its request
    /// key, and with it the 1:1 conversation's epoch, change (only in 1:1 conversations).
    LinkRotated(crate::devices::rotation::RotatedLink),
    /// The account's new link with the secret of its request key, for the account's other
    /// devices (only in the account's conversation with itself).
    InviteKeysShared {
        request_secret: crate::crypto::Secret32,
        link: crate::devices::rotation::RotatedLink,
    },
    /// A device its account revoked (signed by the account key): refuse it from now on.
    DeviceRevoked(crate::devices::revocation::Revocation),
    /// Its sender asks to leave the group: an admin's device removes them (a member cannot
    /// start the next epoch themselves, since whoever starts one knows its secret).
    Leave,
}

/// The signed part of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inner {
    pub lamport: u64,
    pub sent_ms: u64,
    pub parents: Vec<EnvelopeId>,
    pub content: Content,
}

fn encode_shares(w: &mut Writer, shares: &[Share]) {
    w.count(shares.len());
    for s in shares {
        w.raw(&s.to).bytes(&s.sealed);
    }
}

fn decode_shares(r: &mut Reader<'_>) -> Result<Vec<Share>> {
    let n = r.count(MAX_SHARES_PER_MESSAGE, 12)?;
    (0..n).map(|_| Ok(Share { to: r.array()?, sealed: r.bytes(MAX_SEALED_LEN)?.to_vec() })).collect()
}

fn encode_prekeys(w: &mut Writer, prekeys: &[SignedPrekey]) {
    w.count(prekeys.len());
    for p in prekeys {
        p.encode(w);
    }
}

fn decode_prekeys(r: &mut Reader<'_>) -> Result<Vec<SignedPrekey>> {
    let n = r.count(MAX_SHARES, SignedPrekey::ENCODED_LEN)?;
    (0..n).map(|_| SignedPrekey::decode(r)).collect()
}

impl Inner {
    pub fn encode(&self) -> Vec<u8> {
        self.encode_after(Vec::with_capacity(self.encoded_len_hint()))
    }

    /// About how long the encoding is (exact for text).
    pub fn encoded_len_hint(&self) -> usize {
        let content = match &self.content {
            Content::Text(t) => 5 + t.len(),
            Content::Resent { text, .. } => 37 + text.len(),
            Content::Reply { text, replaces, .. } => 37 + text.len() + if replaces.is_some() { 32 } else { 0 },
            Content::Change(MessageChange::Edit { text, .. }) => 37 + text.len(),
            Content::Change(MessageChange::Reaction { emoji, .. }) => 37 + emoji.len(),
            Content::Change(MessageChange::Delete { .. }) => 33,
            Content::Timer { .. } => 10,
            Content::Attachment { manifest, caption, replaces } => {
                86 + manifest.name.len()
                    + manifest.mime.len()
                    + 32 * manifest.index.len()
                    + caption.len()
                    + if replaces.is_some() { 32 } else { 0 }
            }
            _ => 1024,
        };
        17 + 32 * self.parents.len() + content
    }

    /// Appends the encoding to `prefix`.
    pub fn encode_after(&self, prefix: Vec<u8>) -> Vec<u8> {
        let mut w = Writer::from_vec(prefix);
        w.u64(self.lamport).u64(self.sent_ms).u8(self.parents.len() as u8);
        for p in &self.parents {
            w.raw(&p.0);
        }
        match &self.content {
            Content::Text(text) => {
                w.u8(1).string(text);
            }
            Content::Resent { replaces, text } => {
                w.u8(KIND_RESENT).raw(&replaces.0).string(text);
            }
            Content::Reply { to, text, replaces } => {
                w.u8(KIND_REPLY).raw(&to.0).string(text);
                if let Some(replaces) = replaces {
                    w.raw(&replaces.0);
                }
            }
            Content::Change(MessageChange::Reaction { to, emoji }) => {
                w.u8(KIND_REACTION).raw(&to.0).string(emoji);
            }
            Content::Change(MessageChange::Edit { of, text }) => {
                w.u8(KIND_EDIT).raw(&of.0).string(text);
            }
            Content::Change(MessageChange::Delete { of }) => {
                w.u8(KIND_DELETE).raw(&of.0);
            }
            Content::Timer { keep_ms } => {
                w.u8(KIND_TIMER).bool(keep_ms.is_some()).u64(keep_ms.unwrap_or(0));
            }
            Content::Attachment { manifest, caption, replaces } => {
                w.u8(KIND_ATTACHMENT);
                manifest.encode(&mut w);
                w.string(caption);
                if let Some(replaces) = replaces {
                    w.raw(&replaces.0);
                }
            }
            Content::KeyShare(ks) => {
                w.u8(KIND_KEY_SHARE);
                ks.cert.encode(&mut w);
                ks.prekey.encode(&mut w);
                w.u32(ks.generation).u32(ks.start_index).bool(ks.update);
                encode_shares(&mut w, &ks.shares);
            }
            Content::Membership { op, prekeys, epoch_shares } => {
                w.u8(KIND_MEMBERSHIP).bytes(&op.to_bytes());
                encode_prekeys(&mut w, prekeys);
                encode_shares(&mut w, epoch_shares);
            }
            Content::Invite(welcome) => {
                w.u8(KIND_INVITE);
                welcome.encode(&mut w);
            }
            Content::EpochShares { op, shares } => {
                w.u8(KIND_EPOCH_SHARES).raw(op);
                encode_shares(&mut w, shares);
            }
            Content::InvitePart(part) => {
                w.u8(KIND_INVITE_PART).raw(&part.welcome).u16(part.index).u16(part.count).bytes(&part.bytes);
            }
            Content::Leave => {
                w.u8(KIND_LEAVE);
            }
            Content::DeviceRevoked(revocation) => {
                w.u8(KIND_DEVICE_REVOKED);
                revocation.encode(&mut w);
            }
            Content::ContactShared(c) => {
                w.u8(KIND_CONTACT_SHARED)
                    .bytes(&c.card)
                    .string(&c.name)
                    .bool(c.accepted)
                    .bool(c.verified)
                    .u64(c.created_ms);
                if let Some(epoch) = &c.pair_epoch {
                    w.raw(epoch);
                }
            }
            Content::SettingShared(setting) => {
                w.u8(KIND_SETTING_SHARED);
                setting.encode(&mut w);
            }
            Content::LinkRotated(link) => {
                w.u8(KIND_LINK_ROTATED);
                link.encode(&mut w);
            }
            Content::InviteKeysShared { request_secret, link } => {
                w.u8(KIND_INVITE_KEYS_SHARED).raw(&request_secret[..]);
                link.encode(&mut w);
            }
            Content::Receipt(receipt) => {
                w.u8(5);
                for ids in [&receipt.delivered, &receipt.read] {
                    w.count(ids.len());
                    for id in ids {
                        w.raw(&id.0);
                    }
                }
            }
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "message");
        let lamport = r.u64()?;
        let sent_ms = r.u64()?;
        let n = r.u8()? as usize;
        if n > MAX_PARENTS {
            return Err(Error::TooLong { what: "message parents", len: n, max: MAX_PARENTS });
        }
        let parents = (0..n).map(|_| r.array().map(EnvelopeId)).collect::<Result<Vec<_>>>()?;
        let content = match r.u8()? {
            1 => Content::Text(r.string(MAX_TEXT_LEN)?),
            KIND_RESENT => Content::Resent { replaces: EnvelopeId(r.array()?), text: r.string(MAX_TEXT_LEN)? },
            KIND_REPLY => Content::Reply {
                to: EnvelopeId(r.array()?),
                text: r.string(MAX_TEXT_LEN)?,
                replaces: if r.remaining() > 0 { Some(EnvelopeId(r.array()?)) } else { None },
            },
            KIND_REACTION => {
                let to = EnvelopeId(r.array()?);
                let emoji = r.string(MAX_REACTION_LEN)?;
                check_reaction(&emoji)?;
                Content::Change(MessageChange::Reaction { to, emoji })
            }
            KIND_EDIT => {
                Content::Change(MessageChange::Edit { of: EnvelopeId(r.array()?), text: r.string(MAX_TEXT_LEN)? })
            }
            KIND_DELETE => Content::Change(MessageChange::Delete { of: EnvelopeId(r.array()?) }),
            KIND_TIMER => {
                let set = r.bool()?;
                let keep_ms = r.u64()?;
                if set {
                    check_timer(keep_ms)?;
                }
                Content::Timer { keep_ms: set.then_some(keep_ms) }
            }
            KIND_ATTACHMENT => Content::Attachment {
                manifest: Box::new(crate::attachment::Manifest::decode(&mut r)?),
                caption: r.string(MAX_TEXT_LEN)?,
                replaces: if r.remaining() > 0 { Some(EnvelopeId(r.array()?)) } else { None },
            },
            KIND_KEY_SHARE => Content::KeyShare(KeyShare {
                cert: DeviceCert::decode(&mut r)?,
                prekey: SignedPrekey::decode(&mut r)?,
                generation: r.u32()?,
                start_index: r.u32()?,
                update: r.bool()?,
                shares: decode_shares(&mut r)?,
            }),
            KIND_MEMBERSHIP => Content::Membership {
                op: SignedOp::from_bytes(r.bytes(MAX_OP_LEN)?)?,
                prekeys: decode_prekeys(&mut r)?,
                epoch_shares: decode_shares(&mut r)?,
            },
            KIND_V1_KEY_SHARE | KIND_V1_MEMBERSHIP | KIND_V1_INVITE => {
                return Err(Error::Malformed {
                    what: "message",
                    why: "it is from version 1 of the group protocol, which this version no longer reads",
                });
            }
            KIND_INVITE => Content::Invite(Box::new(Welcome::decode(&mut r)?)),
            KIND_LEAVE => Content::Leave,
            KIND_CONTACT_SHARED => Content::ContactShared(SharedContact {
                card: r.bytes(MAX_SHARED_CARD_LEN)?.to_vec(),
                name: r.string(crate::identity::MAX_NAME_LEN)?,
                accepted: r.bool()?,
                verified: r.bool()?,
                created_ms: r.u64()?,
                pair_epoch: if r.remaining() >= 32 { Some(r.array()?) } else { None },
            }),
            KIND_SETTING_SHARED => Content::SettingShared(SharedSetting::decode(&mut r)?),
            KIND_LINK_ROTATED => Content::LinkRotated(crate::devices::rotation::RotatedLink::decode(&mut r)?),
            KIND_INVITE_KEYS_SHARED => Content::InviteKeysShared {
                request_secret: r.array::<32>()?.into(),
                link: crate::devices::rotation::RotatedLink::decode(&mut r)?,
            },
            KIND_DEVICE_REVOKED => Content::DeviceRevoked(crate::devices::revocation::Revocation::decode(&mut r)?),
            KIND_EPOCH_SHARES => Content::EpochShares { op: r.array()?, shares: decode_shares(&mut r)? },
            KIND_INVITE_PART => {
                let welcome = r.array()?;
                let index = r.u16()?;
                let count = r.u16()?;
                if count == 0 || count as usize > MAX_WELCOME_PARTS || index >= count {
                    return Err(Error::Malformed { what: "invitation part", why: "index or count out of range" });
                }
                Content::InvitePart(InvitePart { welcome, index, count, bytes: r.bytes(WELCOME_PART_LEN)?.to_vec() })
            }
            5 => {
                let mut ids = || -> Result<Vec<EnvelopeId>> {
                    let n = r.count(MAX_RECEIPT_IDS, 32)?;
                    (0..n).map(|_| r.array().map(EnvelopeId)).collect()
                };
                let delivered = ids()?;
                let read = ids()?;
                Content::Receipt(Receipt { delivered, read })
            }
            _ => {
                return Err(Error::Malformed { what: "message", why: "unknown content kind" });
            }
        };
        r.finish()?;
        Ok(Inner { lamport, sent_ms, parents, content })
    }
}

/// The start of the bytes a sender signs: `label | group | epoch | nonce | header`; the inner
/// payload follows. Binding the epoch and the envelope's nonce means a holder of the epoch
/// secret cannot re-encrypt a signed message into a new envelope. `room` is how many more
/// bytes the caller will append.
pub fn signature_prefix(group: &[u8; 32], epoch: &[u8; 32], nonce: &[u8; 24], header: &[u8], room: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(MESSAGE_SIGNATURE_CONTEXT.len() + 32 + 32 + 24 + header.len() + room);
    out.extend_from_slice(MESSAGE_SIGNATURE_CONTEXT);
    out.extend_from_slice(group);
    out.extend_from_slice(epoch);
    out.extend_from_slice(nonce);
    out.extend_from_slice(header);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn text_round_trip() {
        let inner =
            Inner { lamport: 3, sent_ms: 9, parents: vec![EnvelopeId([1; 32])], content: Content::Text("hi".into()) };
        assert_eq!(Inner::decode(&inner.encode()).unwrap(), inner);
        let resent =
            Inner { content: Content::Resent { replaces: EnvelopeId([7; 32]), text: "hi again".into() }, ..inner };
        assert_eq!(Inner::decode(&resent.encode()).unwrap(), resent);
        assert_eq!(resent.encode().len(), resent.encoded_len_hint());
    }

    fn manifest() -> crate::attachment::Manifest {
        crate::attachment::Manifest {
            hash: [3; 32],
            name: "map.jpg".into(),
            mime: "image/jpeg".into(),
            size: 200_000,
            key: [9; 32].into(),
            index: vec![EnvelopeId([8; 32])],
        }
    }

    /// Issue 19: replies, reactions, edits and deletes, each its own kind.
    #[test]
    fn conversation_features_round_trip_and_reactions_are_bounded() {
        let to = EnvelopeId([4; 32]);
        for content in [
            Content::Reply { to, text: "yes, at six".into(), replaces: None },
            Content::Reply { to, text: "yes, at six".into(), replaces: Some(EnvelopeId([5; 32])) },
            Content::Change(MessageChange::Reaction { to, emoji: "👍🏽".into() }),
            Content::Change(MessageChange::Reaction { to, emoji: String::new() }),
            Content::Change(MessageChange::Edit { of: to, text: "at seven".into() }),
            Content::Change(MessageChange::Delete { of: to }),
            Content::Timer { keep_ms: Some(24 * 60 * 60 * 1000) },
            Content::Timer { keep_ms: None },
            Content::Attachment { manifest: Box::new(manifest()), caption: "the map".into(), replaces: None },
            Content::Attachment { manifest: Box::new(manifest()), caption: String::new(), replaces: Some(to) },
        ] {
            let inner = Inner { lamport: 2, sent_ms: 5, parents: vec![], content };
            assert_eq!(Inner::decode(&inner.encode()).unwrap(), inner);
            assert_eq!(inner.encode().len(), inner.encoded_len_hint());
        }
        // A reaction is one emoji, never text passed off beside someone else's message.
        for refused in [
            "ok",
            "👍 the plan is off",
            "\u{202e}👍",
            &"👍".repeat(9),
            "\u{200b}",
            "\u{061c}👍",
            "👍\u{0336}\u{0336}",
            "\u{e0041}",
        ] {
            let inner = Inner {
                lamport: 1,
                sent_ms: 1,
                parents: vec![],
                content: Content::Change(MessageChange::Reaction { to, emoji: refused.into() }),
            };
            assert!(Inner::decode(&inner.encode()).is_err(), "{refused:?}");
        }
        // What emoji are made of passes: skin tones, joiners, keycaps, a subdivision flag.
        for allowed in [
            "👍🏽",
            "👩\u{200d}👩\u{200d}👧",
            "#\u{fe0f}\u{20e3}",
            "🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}",
        ] {
            assert!(check_reaction(allowed).is_ok(), "{allowed:?}");
        }
    }

    #[test]
    fn receipt_round_trip_and_bounds() {
        let receipt =
            Receipt { delivered: vec![EnvelopeId([2; 32]), EnvelopeId([3; 32])], read: vec![EnvelopeId([2; 32])] };
        let inner = Inner { lamport: 4, sent_ms: 10, parents: vec![], content: Content::Receipt(receipt) };
        assert_eq!(Inner::decode(&inner.encode()).unwrap(), inner);
        // A count beyond the bound is refused before anything is allocated for it.
        let mut w = Writer::new();
        w.u64(1).u64(1).u8(0).u8(5).u32((MAX_RECEIPT_IDS + 1) as u32);
        assert!(matches!(Inner::decode(&w.into_bytes()), Err(Error::TooLong { .. })));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Inner::decode(&bytes);
        }
    }
}
