//! The group state machine: sealing messages into envelopes and opening envelopes into events.
//!
//! Opening is split in two: [`Group::open`] authenticates an envelope without changing anything,
//! and [`Group::accept`] applies what was opened. A tampered, replayed or forged envelope thus
//! never touches the state, and the caller can persist the change in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use zeroize::Zeroizing;

use super::GroupId;
use super::chain::{OwnChain, PeerChain};
use super::channel::Channel;
use super::content::{
    Content, DeviceTag, Inner, InvitePart, KeyShare, MAX_PARENTS, MAX_WELCOME_PARTS, Receipt, Share, WELCOME_PART_LEN,
    Welcome, signature_prefix, tag_of,
};
use super::epoch::{Epoch, serving_period};
use super::membership::{
    Action, MAX_DEVICES_PER_ACCOUNT, MAX_MEMBERS, MAX_OPS, Membership, OpHash, SignedOp, group_id_of,
};
use crate::crypto::{self, Entropy, label};
use crate::envelope::{self, Envelope, EnvelopeId, HEADER_PLAIN_LEN};
use crate::error::{Error, Result};
use crate::identity::{AccountPublic, DeviceCert, DeviceId, DeviceKeys, PrekeyRing, SignedPrekey};
use crate::wire::{Reader, Writer};

/// Chain index that marks a control message (key share or membership change), whose body is
/// sealed under the epoch's control key rather than a chain's message key.
const CONTROL_INDEX: u32 = u32::MAX;
/// A chain is re-seeded with fresh randomness after this long...
pub const RESEED_AFTER_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// ...or after this many messages, whichever comes first.
pub const RESEED_AFTER_MESSAGES: u32 = 10_000;

const CHAIN_SHARE: &[u8] = label("weft/v2/chain-share");
const EPOCH_SHARE: &[u8] = label("weft/v2/epoch-share");
const PAIR_GROUP_ID: &str = "weft/v1/pair-group-id";
const PAIR_SECRET: &[u8] = label("weft/v1/pair-secret");
const PAIR_EPOCH_ID: &str = "weft/v1/pair-epoch-id";
/// Past epochs a 1:1 conversation keeps beside its current and pending ones.
const MAX_PAST_PAIR_EPOCHS: usize = 3;
/// Version 2 adds the prekeys and channels of forward-secret key delivery; a version 1 state
/// is read with none (its devices are reached through their prekeys once they announce).
/// Version 3 keeps a 1:1 conversation's current epoch (it moves when a link is replaced);
/// version 4 also the one our new link gives.
const STATE_VERSION: u8 = 4;
/// How far back a group's topics are listened to.
pub const MAX_HISTORY_MS: u64 = 365 * 24 * 60 * 60 * 1000;
/// Lamport clocks above this are refused: they would overflow the store's integers and pin a
/// message to the end of every history.
const MAX_LAMPORT: u64 = 1 << 53;
/// How far ahead of the highest clock value seen a received one may be; beyond, it is clamped.
/// Two weeks of a busy group's messages is far below it.
pub const MAX_LAMPORT_JUMP: u64 = 1 << 20;
/// A past epoch's secret is deleted once the epoch has not been current for this long: what
/// is still sealed in it (late messages, changes for members who have not applied the next
/// one) has had a relay's retention to arrive.
pub const EPOCH_GRACE_MS: u64 = 14 * 24 * 60 * 60 * 1000;
/// Shares one message carries: 340 of 169 bytes, with a membership change of 4 KiB and its
/// prekeys, fit the largest envelope.
pub const SHARES_PER_MESSAGE: usize = 340;
/// Generations of a device's chain kept behind its newest (see [`Group::learn_chain`]).
pub const GENERATIONS_KEPT: u32 = 32;
/// Heads kept as parents for the next message.
const MAX_HEADS: usize = 32;

/// This device, as the group machine needs it.
pub struct LocalDevice {
    pub cert: DeviceCert,
    pub keys: DeviceKeys,
    /// Where devices that never heard from us seal their first secret for us.
    pub prekeys: PrekeyRing,
}

impl LocalDevice {
    /// A new device of `account`, certified as of `now_ms`.
    pub fn generate(account: &crate::identity::AccountKey, now_ms: u64, entropy: &mut dyn Entropy) -> Result<Self> {
        let keys = DeviceKeys::generate(entropy)?;
        let prekeys = PrekeyRing::generate(&keys, now_ms, entropy)?;
        Ok(LocalDevice { cert: account.certify(&keys, now_ms), keys, prekeys })
    }

    pub fn account(&self) -> AccountPublic {
        self.cert.account
    }
    pub fn id(&self) -> DeviceId {
        self.cert.device
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// A 1:1 conversation; its membership never changes.
    Pair { accounts: [AccountPublic; 2] },
    /// A group with a membership log.
    Many,
}

/// When a message is sealed: `now_ms` picks its topic (the day's), `sent_ms` is what it says
/// of when its author wrote it (earlier for a queued message sealed again).
#[derive(Clone, Copy)]
struct When {
    now_ms: u64,
    sent_ms: u64,
}

/// An envelope this device made, with what it says.
#[derive(Clone, Debug)]
pub struct Sealed {
    pub envelope: Envelope,
    pub inner: Inner,
}

/// An authenticated envelope, not yet applied.
pub struct Opened {
    pub id: EnvelopeId,
    pub sender: DeviceCert,
    pub inner: Inner,
    /// The epoch it was sealed in.
    pub epoch: [u8; 32],
    chain_update: Option<((DeviceId, u32), PeerChain)>,
}

/// What applying an envelope meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Message {
        id: EnvelopeId,
        sender: AccountPublic,
        lamport: u64,
        sent_ms: u64,
        text: String,
        /// The envelope this message was sealed in before, when it was sealed again.
        replaces: Option<EnvelopeId>,
        /// The message it quotes, for a reply.
        reply_to: Option<EnvelopeId>,
        /// The file it carries (`text` is then its caption).
        attachment: Option<Box<crate::attachment::Manifest>>,
    },
    /// A member set the conversation's disappearing-message timer (`None`: off).
    TimerSet {
        id: EnvelopeId,
        sender: AccountPublic,
        lamport: u64,
        sent_ms: u64,
        keep_ms: Option<u64>,
    },
    /// A member reacted to, edited or deleted a message (whether the change counts, the
    /// store decides: an edit or delete only from the message's own sender).
    MessageChanged {
        id: EnvelopeId,
        sender: AccountPublic,
        lamport: u64,
        change: super::MessageChange,
    },
    /// A device handed us its chain: messages waiting for it can now be opened.
    KeysArrived {
        device: DeviceId,
    },
    MembershipChanged {
        id: EnvelopeId,
        op: SignedOp,
        lamport: u64,
        we_were_removed: bool,
    },
    /// A membership change made in good faith that lost to a concurrent removal of its author:
    /// kept in the log, since later changes may name it, but it changes nothing.
    ChangeOutranked {
        id: EnvelopeId,
    },
    Invited {
        id: EnvelopeId,
        from: DeviceCert,
        welcome: Box<Welcome>,
    },
    /// Another device of the sender's account shares a contact (in a 1:1 conversation only:
    /// the account's own).
    ContactShared {
        sender: AccountPublic,
        contact: super::SharedContact,
    },
    /// Another device of the sender's account changed a setting (in the account's own
    /// conversation only).
    SettingShared {
        sender: AccountPublic,
        setting: super::SharedSetting,
    },
    /// Another device of the sender's account shares the account's new link and its request
    /// key's secret (in the account's own conversation only; the signature is checked).
    InviteKeysShared {
        sender: AccountPublic,
        request_secret: crate::crypto::Secret32,
        link: crate::devices::rotation::RotatedLink,
    },
    /// The sender's account replaced its link (signed by the account key, in a 1:1
    /// conversation with it).
    LinkRotated {
        link: crate::devices::rotation::RotatedLink,
    },
    /// A device was revoked by its account (the signature is checked).
    DeviceRevoked {
        revocation: crate::devices::revocation::Revocation,
    },
    /// A member asks to leave the group.
    LeaveAsked {
        id: EnvelopeId,
        sender: AccountPublic,
        lamport: u64,
        sent_ms: u64,
    },
    /// A member acknowledged messages: arrived, or read.
    Receipt {
        sender: AccountPublic,
        receipt: Receipt,
    },
    /// A control message with nothing new in it.
    Nothing,
}

/// Whose request key changed, for a 1:1 conversation's epoch ([`Group::take_pair_keys`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// Ours: our new link is on its way to the other side.
    Ours,
    /// Theirs: we read their new link (or, in the account's own conversation, took ours).
    Theirs,
}

/// A 1:1 conversation's epoch secret from the two accounts (in order) and their request keys'
/// agreement.
fn pair_secret(accounts: &[AccountPublic; 2], shared: &[u8; 32]) -> [u8; 32] {
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(&accounts[0]);
    both[32..].copy_from_slice(&accounts[1]);
    crypto::derive_array(&both, shared, &[PAIR_SECRET])
}

/// Where a message sits in its sender's chains: device, generation, index.
pub type ChainPosition = (DeviceId, u32, u32);

/// One group's whole state.
pub struct Group {
    pub id: GroupId,
    pub kind: GroupKind,
    pub created_ms: u64,
    ops: BTreeMap<OpHash, SignedOp>,
    membership: Membership,
    devices: BTreeMap<DeviceId, DeviceCert>,
    epochs: BTreeMap<[u8; 32], Epoch>,
    own: Option<OwnChain>,
    /// The generation our next chain takes: generations never repeat, since members keep
    /// chains by device and generation and would take a new chain for the old one.
    next_generation: u32,
    /// Devices (or, for a welcome, accounts) that hold our current chain.
    shared_with: BTreeSet<[u8; 32]>,
    peers: BTreeMap<(DeviceId, u32), PeerChain>,
    /// The latest prekey known of each member device.
    prekeys: BTreeMap<DeviceId, SignedPrekey>,
    /// Our forward-secure channel with each member device.
    channels: BTreeMap<DeviceId, Channel>,
    last_update_ms: Option<u64>,
    /// Member devices our latest membership change could not reach (no prekey known yet): when
    /// one becomes reachable we owe it an epoch, and start a new one.
    unreached: BTreeSet<DeviceId>,
    /// The devices (by tag) that the change starting an epoch was sealed to, as seen here:
    /// the latest such change only, in memory only (see [`Group::reached_in_current_epoch`]).
    reached: Option<(OpHash, BTreeSet<DeviceTag>)>,
    /// Parts of welcomes too big for one envelope, by the welcome's hash, until all came.
    invite_parts: BTreeMap<[u8; 32], BTreeMap<u16, Vec<u8>>>,
    /// Past epochs whose secrets we hold, with when we first saw them no longer current.
    retired_epochs: BTreeMap<[u8; 32], u64>,
    heads: BTreeSet<EnvelopeId>,
    lamport: u64,
    dirty_peers: BTreeSet<(DeviceId, u32)>,
    verifying_keys: std::cell::RefCell<std::collections::HashMap<DeviceId, ed25519_dalek::VerifyingKey>>,
    /// Devices their accounts revoked, with the account that revoked each (a revocation says
    /// nothing of another account's devices): never learned again, sealed nothing. Not stored
    /// with the group: the account keeps them and hands them over ([`Group::mark_revoked`]).
    revoked: BTreeSet<(AccountPublic, DeviceId)>,
    /// A 1:1 conversation's current epoch once either side replaced its link (`None`: the
    /// first, named by the group's id).
    pair_epoch: Option<[u8; 32]>,
    /// The 1:1 epoch our own new link gives, followed but not yet written in: the other side
    /// reads our new link in the current epoch, then writes there, and so do we from then on.
    pair_pending: Option<[u8; 32]>,
}

impl Group {
    fn empty(id: GroupId, kind: GroupKind, created_ms: u64) -> Self {
        Group {
            id,
            kind,
            created_ms,
            ops: BTreeMap::new(),
            membership: Membership::default(),
            devices: BTreeMap::new(),
            epochs: BTreeMap::new(),
            own: None,
            next_generation: 0,
            shared_with: BTreeSet::new(),
            peers: BTreeMap::new(),
            prekeys: BTreeMap::new(),
            channels: BTreeMap::new(),
            last_update_ms: None,
            unreached: BTreeSet::new(),
            reached: None,
            invite_parts: BTreeMap::new(),
            retired_epochs: BTreeMap::new(),
            heads: BTreeSet::new(),
            lamport: 0,
            dirty_peers: BTreeSet::new(),
            verifying_keys: Default::default(),
            revoked: BTreeSet::new(),
            pair_epoch: None,
            pair_pending: None,
        }
    }

    /// Founds a group with this device's account as its only member and admin.
    pub fn create(me: &LocalDevice, name: &str, now_ms: u64, entropy: &mut dyn Entropy) -> Result<Self> {
        if name.len() > super::membership::MAX_GROUP_NAME_LEN {
            return Err(Error::TooLong {
                what: "group name",
                len: name.len(),
                max: super::membership::MAX_GROUP_NAME_LEN,
            });
        }
        let mut salt = [0u8; 16];
        entropy.fill(&mut salt)?;
        let create = Action::Create { name: name.to_owned(), salt };
        let op = SignedOp::new([0; 32], vec![], me.cert.clone(), &me.keys, now_ms, create);
        let id = group_id_of(&op);
        let mut group = Group::empty(id, GroupKind::Many, now_ms);
        group.epochs.insert(op.hash(), Epoch::new(op.hash(), entropy.bytes32()?));
        // The first epoch's secret is ours alone.
        group.reached = Some((op.hash(), BTreeSet::from([tag_of(&me.id())])));
        group.ops.insert(op.hash(), op);
        group.refresh_membership();
        Ok(group)
    }

    /// The 1:1 group of two accounts. Both sides derive the same id and secret from the X25519
    /// agreement of their request keys, so two people who add each other at the same time end
    /// up in one conversation, not two.
    /// The id of the 1:1 conversation of two accounts, and the two in order.
    pub fn pair_id(a: &AccountPublic, b: &AccountPublic) -> (GroupId, [AccountPublic; 2]) {
        let accounts = if a <= b { [*a, *b] } else { [*b, *a] };
        let mut both = [0u8; 64];
        both[..32].copy_from_slice(&accounts[0]);
        both[32..].copy_from_slice(&accounts[1]);
        (blake3::derive_key(PAIR_GROUP_ID, &both), accounts)
    }

    /// Another device of an account takes its place in a conversation the account is in, from
    /// what the account's primary handed it (a welcome to the account itself): for a group, as
    /// a newcomer joins; for a 1:1 conversation (`pair_with`), with its current secret, the
    /// devices and prekeys the primary knows and the primary's chain.
    pub fn for_linked_device(
        me: &LocalDevice,
        welcome: &Welcome,
        primary: &DeviceCert,
        pair_with: Option<AccountPublic>,
        now_ms: u64,
    ) -> Result<Self> {
        let Some(peer) = pair_with else { return Group::from_welcome(me, welcome, primary, now_ms) };
        let (id, accounts) = Group::pair_id(&me.account(), &peer);
        if id != welcome.group || primary.account != me.account() {
            return Err(Error::Malformed { what: "device grant", why: "a 1:1 conversation that is not ours" });
        }
        let mut group = Group::empty(id, GroupKind::Pair { accounts }, now_ms);
        group.take_welcome(me, welcome, primary)?;
        // (The primary's conversation may have moved from its first epoch.)
        group.pair_epoch = (welcome.epoch != id).then_some(welcome.epoch);
        Ok(group)
    }

    pub fn pair(me: &LocalDevice, peer: AccountPublic, shared_secret: &[u8; 32], created_ms: u64) -> Self {
        let (id, accounts) = Group::pair_id(&me.account(), &peer);
        let mut group = Group::empty(id, GroupKind::Pair { accounts }, created_ms);
        group.epochs.insert(id, Epoch::new(id, pair_secret(&accounts, shared_secret)));
        group.devices.insert(me.id(), me.cert.clone());
        group
    }

    /// Takes the epoch the two accounts' request keys now give (`shared` is their X25519
    /// agreement) after a side replaced its link: both sides come to the same epoch from the
    /// same two keys, and a revoked device, which holds neither secret key any more, cannot
    /// compute it. When the other side's key changed (`KeyChange::Theirs`: we read their new
    /// link), we write there at once; when ours did, the epoch waits, followed, until another
    /// device writes there (the other side took our link, which it reads in the current epoch).
    /// The epochs left stay readable for their grace. Returns whether anything changed.
    pub fn take_pair_keys(&mut self, shared: &[u8; 32], change: KeyChange) -> bool {
        let GroupKind::Pair { accounts } = self.kind else { return false };
        let secret = pair_secret(&accounts, shared);
        if self.current_epoch().is_some_and(|e| e.secret[..] == secret[..]) {
            // (Already there: a link made after the conversation, or taken twice.)
            return self.pair_pending.take().is_some();
        }
        let id = blake3::derive_key(PAIR_EPOCH_ID, &secret);
        let before = (self.pair_epoch, self.pair_pending, self.epochs.len());
        self.epochs.entry(id).or_insert_with(|| Epoch::new(id, secret));
        self.retired_epochs.remove(&id);
        match change {
            KeyChange::Theirs => {
                self.pair_epoch = Some(id);
                self.pair_pending = None;
            }
            KeyChange::Ours => self.pair_pending = Some(id),
        }
        self.bound_pair_epochs();
        before != (self.pair_epoch, self.pair_pending, self.epochs.len())
    }

    /// The id of a 1:1 conversation's current epoch, when either side replaced a link since the
    /// conversation began (what another of our devices needs to find it: the first epoch is
    /// named by the group's id, later ones by their secret).
    pub fn moved_pair_epoch(&self) -> Option<[u8; 32]> {
        // The one our newest key gives, which a device holding that key computes.
        self.pair_pending.or(self.pair_epoch)
    }

    /// Names the current epoch of a 1:1 conversation made here from a contact's card as another
    /// of our devices names it (`id`, from [`Group::moved_pair_epoch`]): the same secret, under
    /// the id a moved epoch has. Anything else is refused.
    pub fn name_pair_epoch(&mut self, id: [u8; 32]) -> bool {
        let Some(current) = self.current_epoch().cloned() else { return false };
        if !matches!(self.kind, GroupKind::Pair { .. })
            || current.id == id
            || blake3::derive_key(PAIR_EPOCH_ID, &current.secret[..]) != id
        {
            return false;
        }
        self.epochs.insert(id, Epoch::new(id, *current.secret));
        self.pair_epoch = Some(id);
        true
    }

    /// Keeps a 1:1 conversation's past epochs to the few newest: a contact who replaces its
    /// link again and again adds an epoch each time.
    fn bound_pair_epochs(&mut self) {
        let keep = [self.current_epoch().map(|e| e.id), self.pair_pending];
        let mut past: Vec<([u8; 32], u64)> = self
            .epochs
            .keys()
            .filter(|id| !keep.contains(&Some(**id)))
            .map(|id| (*id, self.retired_epochs.get(id).copied().unwrap_or(u64::MAX)))
            .collect();
        // Newest retired first; one not yet stamped has just been left.
        past.sort_by_key(|(_, since)| std::cmp::Reverse(*since));
        for (id, _) in past.into_iter().skip(MAX_PAST_PAIR_EPOCHS) {
            self.epochs.remove(&id);
            self.retired_epochs.remove(&id);
        }
    }

    /// Joins a group from an invitation.
    pub fn from_welcome(me: &LocalDevice, welcome: &Welcome, inviter: &DeviceCert, now_ms: u64) -> Result<Self> {
        let mut group = Group::empty(welcome.group, GroupKind::Many, now_ms);
        if welcome.ops.len() > MAX_OPS {
            return Err(Error::TooLong { what: "invitation", len: welcome.ops.len(), max: MAX_OPS });
        }
        group.ops = Membership::admit_all(&welcome.group, &welcome.ops)?;
        group.refresh_membership();
        if group.membership.applied.last() != Some(&welcome.epoch) {
            return Err(Error::Malformed { what: "invitation", why: "epoch is not the log's latest" });
        }
        if !group.membership.members.contains_key(&me.account()) {
            return Err(Error::NotInGroup);
        }
        if !group.membership.members.contains_key(&inviter.account) {
            return Err(Error::NotAMember);
        }
        // Topics are listened to from the group's creation on; the creation time comes from the
        // log, so it is bounded to keep the topic index small.
        let oldest = group.ops.values().map(|o| o.created_ms).min().unwrap_or(now_ms);
        group.created_ms = oldest.clamp(now_ms.saturating_sub(MAX_HISTORY_MS), now_ms);
        group.take_welcome(me, welcome, inviter)?;
        Ok(group)
    }

    /// What a welcome hands over beside the membership: the current epoch, the devices and
    /// prekeys the inviter knows, the inviter's chain and the group's clock.
    fn take_welcome(&mut self, me: &LocalDevice, welcome: &Welcome, inviter: &DeviceCert) -> Result<()> {
        self.epochs.insert(welcome.epoch, Epoch::new(welcome.epoch, *welcome.epoch_secret));
        // The epoch reached us through this welcome, and its sender holds it: of the devices of
        // ours, nobody else is known to.
        self.reached = Some((welcome.epoch, BTreeSet::from([tag_of(&me.id()), tag_of(&inviter.device)])));
        for cert in &welcome.devices {
            // (A device revoked here stays out, whatever the welcome's sender had heard.)
            if cert.verify().is_ok()
                && self.is_member(&cert.account)
                && !self.revoked.contains(&(cert.account, cert.device))
            {
                self.devices.insert(cert.device, cert.clone());
            }
        }
        self.learn_device(inviter)?;
        self.devices.insert(me.id(), me.cert.clone());
        for prekey in &welcome.prekeys {
            self.note_prekey(prekey);
        }
        let key = (inviter.device, welcome.inviter_generation);
        self.peers.insert(key, PeerChain::new(welcome.inviter_index, *welcome.inviter_chain_key));
        self.dirty_peers.insert(key);
        // The inviter is a member we trust with the group's secrets; the bound only keeps the
        // clock far from overflowing.
        self.lamport = welcome.lamport.min(u64::MAX >> 2);
        Ok(())
    }

    /// Catches up from a welcome that another device of our own account made of this group (it
    /// was in an epoch we missed, sealed to devices of ours it knew): takes the changes we lack
    /// and, if the welcome's epoch is where the whole log now leads, that epoch. Returns whether
    /// we moved to it (a welcome no newer than what we hold changes nothing).
    pub fn take_own_welcome(&mut self, me: &LocalDevice, welcome: &Welcome, from: &DeviceCert) -> Result<bool> {
        if welcome.group != self.id || from.account != me.account() || self.kind != GroupKind::Many {
            return Err(Error::Malformed { what: "invitation", why: "not a group of ours from one of our devices" });
        }
        // What can fail on our side fails before anything changes: its certificate, a revoked
        // device or one too many.
        from.verify()?;
        if self.revoked.contains(&(from.account, from.device)) {
            return Err(Error::Revoked);
        }
        let ours = self.devices.values().filter(|c| c.account == from.account).count();
        if !self.devices.contains_key(&from.device) && ours >= MAX_DEVICES_PER_ACCOUNT {
            return Err(Error::Limit("an account has at most 4 devices in a group"));
        }
        if self.epochs.contains_key(&welcome.epoch) {
            // We have the epoch: the welcome still hands over its sender's chain, which that
            // device then counts us as holding (it sends us no key share for it).
            let current = self.membership.applied.last() == Some(&welcome.epoch);
            let key = (from.device, welcome.inviter_generation);
            if current && self.is_member(&me.account()) && !self.peers.contains_key(&key) {
                self.devices.insert(from.device, from.clone());
                self.peers.insert(key, PeerChain::new(welcome.inviter_index, *welcome.inviter_chain_key));
                self.dirty_peers.insert(key);
            }
            return Ok(false);
        }
        if self.ops.len() + welcome.ops.len() > MAX_OPS {
            return Err(Error::TooLong { what: "invitation", len: welcome.ops.len(), max: MAX_OPS });
        }
        let all: Vec<SignedOp> = self.ops.values().chain(&welcome.ops).cloned().collect();
        let ops = Membership::admit_all(&self.id, &all)?;
        let membership = Membership::replay(&self.id, &ops);
        if membership.applied.last() != Some(&welcome.epoch) || !membership.members.contains_key(&me.account()) {
            // Ours and the welcome's logs lead elsewhere together (changes it does not know):
            // the epoch that follows reaches us the usual way.
            return Ok(false);
        }
        self.ops = ops;
        self.adopt_membership(membership);
        let lamport = self.lamport;
        self.take_welcome(me, welcome, from)?;
        self.lamport = self.lamport.max(lamport);
        Ok(true)
    }

    fn refresh_membership(&mut self) {
        let membership = Membership::replay(&self.id, &self.ops);
        self.adopt_membership(membership);
    }

    /// Takes a replay of the current log (computed by the caller, who often needed it first).
    fn adopt_membership(&mut self, membership: Membership) {
        self.membership = membership;
        for (id, cert) in &self.membership.devices {
            if !self.revoked.contains(&(cert.account, *id)) {
                self.devices.entry(*id).or_insert_with(|| cert.clone());
            }
        }
        if self.kind == GroupKind::Many {
            let members = self.membership.members.clone();
            self.devices.retain(|_, cert| members.contains_key(&cert.account));
            // Channels with devices that left are kept, like the epochs: a removal can be
            // overturned by a concurrent one of its author, and the device then answers to
            // the keys we handed it. A removed device gets nothing sealed to it any more.
            // Prekeys are public and bounded in `note_prekey`.
        }
    }

    /// Forgets what we kept of the devices an `Add` brings (a member removed and added again):
    /// they come back with fresh channels and chains numbered from 0, and ours must not answer
    /// to keys they no longer hold nor keep their old chains in the place of new ones.
    fn start_afresh_with(&mut self, action: &Action) {
        let Action::Add { devices, .. } = action else { return };
        for cert in devices {
            self.channels.remove(&cert.device);
            let old: Vec<_> = self.peers.keys().filter(|(d, _)| *d == cert.device).copied().collect();
            for key in old {
                self.peers.remove(&key);
                self.dirty_peers.insert(key);
            }
        }
    }

    /// Registers a device's prekey, if it is newer than the one we know. Prekeys come checked
    /// (signature and point) from `SignedPrekey::decode`, or from this device's own ring.
    /// Those of devices that are not (yet) members' are bounded: an `Add` brings them first,
    /// and those of devices that left go when room is needed.
    pub fn note_prekey(&mut self, prekey: &SignedPrekey) {
        if self.refuses_device(&prekey.device) {
            return;
        }
        let cap = MAX_MEMBERS * MAX_DEVICES_PER_ACCOUNT;
        if !self.prekeys.contains_key(&prekey.device) && self.prekeys.len() >= cap {
            let devices = &self.devices;
            self.prekeys.retain(|d, _| devices.contains_key(d));
            if !self.devices.contains_key(&prekey.device) && self.prekeys.len() >= cap {
                return;
            }
        }
        match self.prekeys.get(&prekey.device) {
            Some(known) if known.number >= prekey.number => {}
            _ => {
                self.prekeys.insert(prekey.device, prekey.clone());
            }
        }
    }

    /// Keeps a part of a big welcome; returns the welcome once every part came and it matches
    /// its hash. At most two welcomes wait at once (a third pushes out the one with fewest
    /// parts): an invitation is one person's, in one conversation.
    fn take_invite_part(&mut self, part: InvitePart) -> Option<Welcome> {
        if !self.invite_parts.contains_key(&part.welcome) && self.invite_parts.len() >= 2 {
            let fewest = self.invite_parts.iter().min_by_key(|(_, p)| p.len()).map(|(h, _)| *h)?;
            self.invite_parts.remove(&fewest);
        }
        let parts = self.invite_parts.entry(part.welcome).or_default();
        parts.insert(part.index, part.bytes);
        if parts.len() < part.count as usize || (0..part.count).any(|i| !parts.contains_key(&i)) {
            return None;
        }
        let parts = self.invite_parts.remove(&part.welcome)?;
        let bytes: Vec<u8> = parts.into_values().flatten().collect();
        if *blake3::hash(&bytes).as_bytes() != part.welcome {
            return None;
        }
        Welcome::from_bytes(&bytes).ok()
    }

    /// Deletes the secrets of past epochs that have not been current for [`EPOCH_GRACE_MS`]
    /// (noting, for those that just stopped being current, from when). Returns whether anything
    /// changed, for the caller to store.
    pub fn forget_old_epochs(&mut self, now_ms: u64) -> bool {
        let current = self.current_epoch().map(|e| e.id);
        let pending = self.pair_pending;
        let before = (self.epochs.len(), self.retired_epochs.len());
        let retired = &mut self.retired_epochs;
        retired.retain(|id, _| Some(*id) != current && Some(*id) != pending);
        for id in self.epochs.keys().filter(|id| Some(**id) != current && Some(**id) != pending) {
            retired.entry(*id).or_insert(now_ms);
        }
        let expired: Vec<[u8; 32]> = retired
            .iter()
            .filter(|(_, since)| now_ms.saturating_sub(**since) >= EPOCH_GRACE_MS)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.epochs.remove(&id);
            self.retired_epochs.remove(&id);
        }
        before != (self.epochs.len(), self.retired_epochs.len())
    }

    /// Whether a device our latest change could not reach has since become reachable, while
    /// that change still starts the current epoch: we then start a new epoch that reaches it.
    pub fn owes_epoch(&self, me: &LocalDevice) -> bool {
        self.current_epoch_author() == Some(me.account())
            && self.is_admin(&me.account())
            && self.unreached.iter().any(|d| self.devices.contains_key(d) && self.reachable(d))
    }

    /// Whether a member device other than `me` is known: someone to hand keys to.
    pub fn has_other_devices(&self, me: &DeviceId) -> bool {
        self.devices.values().any(|c| c.device != *me && self.is_member(&c.account))
    }

    /// The latest prekey known of a device.
    pub fn prekey_of(&self, device: &DeviceId) -> Option<&SignedPrekey> {
        self.prekeys.get(device)
    }

    /// Whether a secret can be sealed to this device: through our channel with it, or to its
    /// prekey for the first one. A device we cannot reach yet gets its share once its prekey
    /// comes (in its first key share, or with the change that added it).
    fn reachable(&self, device: &DeviceId) -> bool {
        self.channels.get(device).is_some_and(Channel::has_target) || self.prekeys.contains_key(device)
    }

    /// Seals `secret` to one device through our channel with it.
    fn seal_share(
        &mut self,
        device: &DeviceId,
        context: &[u8],
        secret: &[u8; 32],
        entropy: &mut dyn Entropy,
    ) -> Result<Share> {
        let prekey = self.prekeys.get(device).cloned();
        let channel = self.channels.entry(*device).or_default();
        Ok(Share { to: tag_of(device), sealed: channel.send(prekey.as_ref(), context, secret, entropy)? })
    }

    pub fn name(&self) -> &str {
        &self.membership.name
    }

    pub fn is_member(&self, account: &AccountPublic) -> bool {
        match &self.kind {
            GroupKind::Pair { accounts } => accounts.contains(account),
            GroupKind::Many => self.membership.members.contains_key(account),
        }
    }

    pub fn is_admin(&self, account: &AccountPublic) -> bool {
        matches!(self.kind, GroupKind::Many) && self.membership.members.get(account).is_some_and(|m| m.admin)
    }

    pub fn member_count(&self) -> usize {
        match &self.kind {
            GroupKind::Pair { accounts } => accounts.len(),
            GroupKind::Many => self.membership.members.len(),
        }
    }

    /// Member accounts with their names from the log (pair groups have none).
    pub fn members(&self) -> Vec<(AccountPublic, super::Member)> {
        match &self.kind {
            GroupKind::Pair { accounts } => {
                accounts.iter().map(|a| (*a, super::Member { name: None, admin: false })).collect()
            }
            GroupKind::Many => self.membership.members.iter().map(|(a, m)| (*a, m.clone())).collect(),
        }
    }

    /// The epoch messages are sent in now, if we hold its secret.
    pub fn current_epoch(&self) -> Option<&Epoch> {
        let id = match &self.kind {
            GroupKind::Pair { .. } => self.pair_epoch.unwrap_or(self.id),
            GroupKind::Many => *self.membership.applied.last()?,
        };
        self.epochs.get(&id)
    }

    /// The account whose membership change started the current epoch (none for a 1:1 chat).
    pub fn current_epoch_author(&self) -> Option<AccountPublic> {
        match &self.kind {
            GroupKind::Pair { .. } => None,
            GroupKind::Many => self.ops.get(self.membership.applied.last()?).map(|op| op.author.account),
        }
    }

    /// Up to `n` epochs beside the current one whose secrets we hold, newest first: a group's
    /// before the current one; a 1:1 conversation's the one our new link gives and those left.
    pub fn previous_epochs(&self, n: usize) -> Box<dyn Iterator<Item = &Epoch> + '_> {
        match &self.kind {
            GroupKind::Pair { .. } => {
                let current = self.current_epoch().map(|e| e.id);
                let mut others: Vec<&Epoch> = self.epochs.values().filter(|e| Some(e.id) != current).collect();
                let pending = self.pair_pending;
                others.sort_by_key(|e| {
                    (
                        Some(e.id) != pending,
                        std::cmp::Reverse(self.retired_epochs.get(&e.id).copied().unwrap_or(u64::MAX)),
                    )
                });
                Box::new(others.into_iter().take(n))
            }
            GroupKind::Many => {
                Box::new(self.membership.applied.iter().rev().skip(1).filter_map(|id| self.epochs.get(id)).take(n))
            }
        }
    }

    /// Every epoch whose secret we hold.
    pub fn epochs(&self) -> impl Iterator<Item = &Epoch> {
        self.epochs.values()
    }

    /// The name an admin gave an account when adding it, even if it has since left.
    pub fn name_given_to(&self, account: &AccountPublic) -> Option<String> {
        self.ops.values().find_map(|op| match &op.action {
            Action::Add { member, name, .. } if member == account => name.clone(),
            _ => None,
        })
    }

    /// Whether a device is known to belong to a member (from the log, a key share or a request).
    pub fn knows_device(&self, device: &DeviceId) -> bool {
        self.devices.contains_key(device)
    }

    /// Whether the change that started the current epoch (or the welcome that brought it here)
    /// was sealed to `device`, if this device saw that change since it was last opened; `None`
    /// otherwise.
    pub fn reached_in_current_epoch(&self, device: &DeviceId) -> Option<bool> {
        let current = *self.membership.applied.last()?;
        let (_, tags) = self.reached.as_ref().filter(|(hash, _)| *hash == current)?;
        Some(tags.contains(&tag_of(device)))
    }

    /// Known devices of one account.
    pub fn devices_of(&self, account: &AccountPublic) -> Vec<DeviceCert> {
        self.devices.values().filter(|c| c.account == *account).cloned().collect()
    }

    /// Registers a device certificate of a member (from a contact request, for example).
    pub fn learn_device(&mut self, cert: &DeviceCert) -> Result<()> {
        cert.verify()?;
        if self.revoked.contains(&(cert.account, cert.device)) {
            return Err(Error::Revoked);
        }
        if !self.is_member(&cert.account) {
            return Err(Error::NotAMember);
        }
        let known = self.devices.values().filter(|c| c.account == cert.account).count();
        if !self.devices.contains_key(&cert.device) && known >= MAX_DEVICES_PER_ACCOUNT {
            return Err(Error::Limit("an account has at most 4 devices in a group"));
        }
        self.devices.insert(cert.device, cert.clone());
        Ok(())
    }

    /// Registers a chain another device handed us (in a key share, or out of band in a contact
    /// request). Chains more than [`GENERATIONS_KEPT`] generations older are erased: a device
    /// starts a new chain at every update (daily, and after anyone's), and a member back from
    /// weeks away receives them in any order, so the late messages of recent generations
    /// must still open; only a chain's unused keys are kept, which open nothing already read.
    pub fn learn_chain(&mut self, device: DeviceId, generation: u32, start_index: u32, chain_key: [u8; 32]) {
        let key = (device, generation);
        if self.peers.contains_key(&key) {
            return;
        }
        let stale: Vec<_> = self
            .peers
            .keys()
            .filter(|(d, g)| *d == device && g.saturating_add(GENERATIONS_KEPT) < generation)
            .copied()
            .collect();
        for k in stale {
            self.peers.remove(&k);
            self.dirty_peers.insert(k);
        }
        self.peers.insert(key, PeerChain::new(start_index, chain_key));
        self.dirty_peers.insert(key);
    }

    /// Marks that `holder` (a device or an account) received our current chain out of band.
    pub fn mark_shared(&mut self, holder: [u8; 32]) {
        self.shared_with.insert(holder);
    }

    /// Our current chain, created (and so re-seeded) when missing, when the epoch changed, or
    /// when the schedule says so. Returns whether it is new.
    pub fn ensure_own_chain(&mut self, now_ms: u64, entropy: &mut dyn Entropy) -> Result<&OwnChain> {
        let epoch = self.current_epoch().ok_or(Error::NotInGroup)?.id;
        let due = match &self.own {
            None => true,
            Some(own) => {
                own.epoch != epoch
                    || now_ms.saturating_sub(own.created_ms) >= RESEED_AFTER_MS
                    || own.next_index >= RESEED_AFTER_MESSAGES
            }
        };
        if due {
            let generation = self.next_generation;
            self.next_generation = generation.checked_add(1).ok_or(Error::Limit("chain generations exhausted"))?;
            self.own = Some(OwnChain {
                generation,
                next_index: 0,
                chain_key: crypto::secret(entropy.bytes32()?),
                created_ms: now_ms,
                epoch,
            });
            self.shared_with.clear();
        }
        Ok(self.own.as_ref().expect("set above"))
    }

    /// Member devices other than ours that lack our current chain.
    fn devices_lacking_chain(&self, me: &LocalDevice) -> Vec<DeviceCert> {
        self.devices
            .values()
            .filter(|c| c.device != me.id() && self.is_member(&c.account))
            .filter(|c| !self.shared_with.contains(&c.device) && !self.shared_with.contains(&c.account))
            .filter(|c| self.reachable(&c.device))
            .cloned()
            .collect()
    }

    /// Seals a text message, preceded by a key share when some member device lacks our chain.
    pub fn send_text(
        &mut self,
        me: &LocalDevice,
        text: &str,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        if text.len() > super::content::MAX_TEXT_LEN {
            return Err(Error::TooLong { what: "message", len: text.len(), max: super::content::MAX_TEXT_LEN });
        }
        self.send(me, Content::Text(text.to_owned()), now_ms, entropy)
    }

    /// Seals a reply, reaction, edit or delete (see [`MessageChange`]): like a text, from a
    /// member only. Whether the message it names exists, and is ours to edit, the caller checks
    /// against its store.
    pub fn send_about(
        &mut self,
        me: &LocalDevice,
        content: Content,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        match &content {
            Content::Reply { text, .. }
            | Content::Change(super::MessageChange::Edit { text, .. })
            | Content::Attachment { caption: text, .. }
                if text.len() > super::content::MAX_TEXT_LEN =>
            {
                return Err(Error::TooLong { what: "message", len: text.len(), max: super::content::MAX_TEXT_LEN });
            }
            Content::Reply { .. }
            | Content::Attachment { .. }
            | Content::Change(super::MessageChange::Edit { .. } | super::MessageChange::Delete { .. }) => {}
            Content::Change(super::MessageChange::Reaction { emoji, .. }) => super::content::check_reaction(emoji)?,
            Content::Timer { keep_ms } => {
                if let Some(keep_ms) = keep_ms {
                    super::content::check_timer(*keep_ms)?;
                }
            }
            _ => return Err(Error::Internal("send_about takes replies and changes only")),
        }
        if !self.is_member(&me.account()) {
            return Err(Error::NotInGroup);
        }
        self.send(me, content, now_ms, entropy)
    }

    /// Seals our request to leave the group (see [`Content::Leave`]).
    pub fn send_leave(&mut self, me: &LocalDevice, now_ms: u64, entropy: &mut dyn Entropy) -> Result<Vec<Sealed>> {
        if self.kind != GroupKind::Many {
            return Err(Error::NotAllowed("a 1:1 conversation cannot be left: delete the contact instead"));
        }
        if !self.is_member(&me.account()) {
            return Err(Error::NotInGroup);
        }
        self.send(me, Content::Leave, now_ms, entropy)
    }

    /// Whether this device is the one to act on a member's request to leave: the lowest
    /// device of an admin other than the one leaving, so that exactly one removes them. Admins
    /// who asked to leave themselves (`leaving`) act only when no other admin is left to.
    pub fn removes_leaver(&self, me: &LocalDevice, leaver: &AccountPublic, leaving: &BTreeSet<AccountPublic>) -> bool {
        if !self.is_member(leaver) || !self.is_admin(&me.account()) || me.account() == *leaver {
            return false;
        }
        let lowest_of = |staying_only: bool| {
            self.devices
                .values()
                .filter(|c| c.account != *leaver && self.is_admin(&c.account))
                .filter(|c| !staying_only || !leaving.contains(&c.account))
                .map(|c| c.device)
                .min()
        };
        lowest_of(true).or_else(|| lowest_of(false)) == Some(me.id())
    }

    /// Whether every admin but us asked to leave (`leaving`) while others stay: then our
    /// leaving would leave nobody to remove anyone.
    pub fn last_admin_staying(&self, me: &LocalDevice, leaving: &BTreeSet<AccountPublic>) -> bool {
        let me = me.account();
        let others_staying = self.membership.members.keys().any(|a| *a != me && !leaving.contains(a));
        let admins_staying = self.membership.members.iter().any(|(a, m)| m.admin && *a != me && !leaving.contains(a));
        self.is_admin(&me) && others_staying && !admins_staying
    }

    /// Seals a receipt for messages of this group.
    pub fn send_receipt(
        &mut self,
        me: &LocalDevice,
        receipt: Receipt,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        self.send(me, Content::Receipt(receipt), now_ms, entropy)
    }

    /// Seals an invitation (sent inside a 1:1 group).
    pub fn send_invite(
        &mut self,
        me: &LocalDevice,
        welcome: Welcome,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        let (bytes, hash) = welcome.to_bytes();
        // One envelope when it fits (with room for the header, signature and parents)...
        if bytes.len() + 1 + 4 + 64 + MAX_PARENTS * 32 + 17 + envelope::OVERHEAD <= envelope::MAX_ENVELOPE_LEN {
            return self.send(me, Content::Invite(Box::new(welcome)), now_ms, entropy);
        }
        // ...else in parts, which the invitee puts together.
        let count = bytes.len().div_ceil(WELCOME_PART_LEN);
        if count > MAX_WELCOME_PARTS {
            return Err(Error::Limit("this group's membership no longer fits in an invitation"));
        }
        let mut out = Vec::new();
        for (index, chunk) in bytes.chunks(WELCOME_PART_LEN).enumerate() {
            let part = InvitePart { welcome: hash, index: index as u16, count: count as u16, bytes: chunk.to_vec() };
            out.extend(self.send(me, Content::InvitePart(part), now_ms, entropy)?);
        }
        Ok(out)
    }

    fn send(
        &mut self,
        me: &LocalDevice,
        content: Content,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        self.send_at(me, content, When { now_ms, sent_ms: now_ms }, entropy)
    }

    /// Seals again what was sealed before and never left this device (its day or epoch passed
    /// while it waited): the same content, under today's topic of the current epoch, on our
    /// current chain, saying when its author wrote it (`sent_ms`).
    /// The group's Lamport clock: the latest of what we wrote and what we took in.
    pub fn lamport(&self) -> u64 {
        self.lamport
    }

    pub fn reseal(
        &mut self,
        me: &LocalDevice,
        content: Content,
        sent_ms: u64,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        if matches!(content, Content::KeyShare(_) | Content::Membership { .. } | Content::EpochShares { .. }) {
            return Err(Error::NotAllowed("only messages are sealed again; control messages have their own epoch"));
        }
        self.send_at(me, content, When { now_ms, sent_ms }, entropy)
    }

    /// Seals a control message (a membership change, a key share) again under today's topic of
    /// the epoch it was made in: the members who have not applied the change yet read that
    /// epoch, and a chain is shared within its own epoch.
    pub fn reseal_control(
        &mut self,
        me: &LocalDevice,
        epoch: &[u8; 32],
        content: Content,
        sent_ms: u64,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Sealed> {
        if !matches!(
            content,
            Content::Membership { .. } | Content::KeyShare(_) | Content::EpochShares { .. } | Content::LinkRotated(_)
        ) {
            return Err(Error::NotAllowed("only control messages are sealed in their own epoch"));
        }
        self.seal_control_in(me, epoch, content, When { now_ms, sent_ms }, entropy)
    }

    /// Whether a device is one its account revoked, as far as what we know of it shows: a
    /// revocation by another account than the one its certificate names changes nothing.
    pub fn refuses_device(&self, device: &DeviceId) -> bool {
        self.revoked.iter().any(|(account, d)| d == device && self.devices.get(d).is_none_or(|c| c.account == *account))
    }

    /// Marks a device of `account` revoked: its certificate (if it is that account's), channel,
    /// prekey and chains go, and it is never learned again. Idempotent: the account calls it
    /// on every group it loads or takes up. Says whether it held anything of the device.
    pub fn mark_revoked(&mut self, account: &AccountPublic, device: &DeviceId) -> bool {
        // Once marked, nothing of it comes back (it is never learned again): the account calls
        // this after every change, and it must cost nothing then.
        if !self.revoked.insert((*account, *device)) {
            return false;
        }
        if self.devices.get(device).is_some_and(|c| c.account != *account) {
            return false;
        }
        let mut held = self.devices.remove(device).is_some();
        held |= self.channels.remove(device).is_some();
        held |= self.prekeys.remove(device).is_some();
        self.unreached.remove(device);
        let chains: Vec<_> = self.peers.keys().filter(|(d, _)| d == device).copied().collect();
        for key in chains {
            self.peers.remove(&key);
            self.dirty_peers.insert(key);
            held = true;
        }
        held
    }

    /// Forgets a device its account revoked ([`Group::mark_revoked`]), and our next message
    /// starts a chain it does not get.
    pub fn forget_device(&mut self, account: &AccountPublic, device: &DeviceId) {
        self.mark_revoked(account, device);
        self.restart_chain();
    }

    /// Whether this is the lowest device of an admin: the one that acts for all admins.
    pub fn is_lowest_admin_device(&self, me: &LocalDevice) -> bool {
        self.kind == GroupKind::Many
            && self.devices.values().filter(|c| self.is_admin(&c.account)).map(|c| c.device).min() == Some(me.id())
    }

    /// Whether this is an account's conversation with itself (where its devices tell each other
    /// of contacts and settings).
    pub fn is_own_conversation(&self) -> bool {
        matches!(self.kind, GroupKind::Pair { accounts } if accounts[0] == accounts[1])
    }

    /// Seals a contact or a setting for the account's other devices, in its conversation with
    /// itself (and nowhere else).
    pub fn send_to_own_devices(
        &mut self,
        me: &LocalDevice,
        content: Content,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        if !matches!(content, Content::ContactShared(_) | Content::SettingShared(_) | Content::InviteKeysShared { .. })
        {
            return Err(Error::NotAllowed("only contacts, settings and links go to the account's own devices"));
        }
        if !(self.is_own_conversation() && self.is_member(&me.account())) {
            return Err(Error::NotAllowed("contacts and settings are shared only in the account's own conversation"));
        }
        self.send(me, content, now_ms, entropy)
    }

    /// Seals our account's replaced link in this 1:1 conversation with a contact.
    pub fn send_rotated_link(
        &mut self,
        me: &LocalDevice,
        link: crate::devices::rotation::RotatedLink,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        if !matches!(self.kind, GroupKind::Pair { .. })
            || self.is_own_conversation()
            || link.card.account != me.account()
        {
            return Err(Error::NotAllowed("a replaced link goes to contacts, in 1:1 conversations, and only our own"));
        }
        // A control message, off the chains: whoever holds the epoch reads it (the card is
        // public, and signed), and it can be sealed again in this epoch, where the contact
        // reads it, after ours moved on (see `reseal_control`).
        Ok(vec![self.seal_control(me, Content::LinkRotated(link), now_ms, entropy)?])
    }

    /// Seals our replaced link again in `epoch` (one the contact still writes in: it may have
    /// missed the link), as a control message of that epoch.
    pub fn send_rotated_link_in(
        &mut self,
        me: &LocalDevice,
        epoch: &[u8; 32],
        link: crate::devices::rotation::RotatedLink,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Sealed> {
        if !matches!(self.kind, GroupKind::Pair { .. })
            || self.is_own_conversation()
            || link.card.account != me.account()
        {
            return Err(Error::NotAllowed("a replaced link goes to contacts, in 1:1 conversations, and only our own"));
        }
        self.seal_control_in(me, epoch, Content::LinkRotated(link), When { now_ms, sent_ms: now_ms }, entropy)
    }

    /// Whether this 1:1 conversation waits for the other side to take our new link.
    pub fn awaits_our_link(&self) -> bool {
        self.pair_pending.is_some()
    }

    /// Seals a device revocation of our account in this conversation.
    pub fn send_revocation(
        &mut self,
        me: &LocalDevice,
        revocation: crate::devices::revocation::Revocation,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        self.send(me, Content::DeviceRevoked(revocation), now_ms, entropy)
    }

    /// Starts a new chain at the next message (with a key share to every member device): what
    /// was shared of the current one may never have left this device.
    pub fn restart_chain(&mut self) {
        self.own = None;
        self.shared_with.clear();
    }

    /// Forgets one of our envelopes that never left (it was sealed again): later messages must
    /// not name it as a parent.
    pub fn forget_head(&mut self, id: &EnvelopeId) {
        self.heads.remove(id);
    }

    fn send_at(
        &mut self,
        me: &LocalDevice,
        content: Content,
        when: When,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        let now_ms = when.now_ms;
        if !self.is_member(&me.account()) {
            return Err(Error::NotInGroup);
        }
        let is_new = self.own.as_ref().map(|o| (o.generation, o.epoch));
        self.ensure_own_chain(now_ms, entropy)?;
        let fresh = is_new != self.own.as_ref().map(|o| (o.generation, o.epoch));
        let mut out = Vec::new();
        let lacking = self.devices_lacking_chain(me);
        if fresh || !lacking.is_empty() {
            out.extend(self.key_share(me, &lacking, false, now_ms, entropy)?);
        }
        let own = self.own.as_mut().expect("ensured above");
        let generation = own.generation;
        let (index, message_key) = own.advance()?;
        out.push(self.seal(me, generation, index, &message_key, content, when, entropy)?);
        Ok(out)
    }

    /// Announces this device and hands our chain to every member device that lacks it.
    pub fn announce(&mut self, me: &LocalDevice, now_ms: u64, entropy: &mut dyn Entropy) -> Result<Vec<Sealed>> {
        self.ensure_own_chain(now_ms, entropy)?;
        let lacking = self.devices_lacking_chain(me);
        self.key_share(me, &lacking, false, now_ms, entropy)
    }

    /// Heals this device's keys in the group: a new chain, handed to every member device through
    /// its channel with fresh keys of ours to answer to, and a request that every member start
    /// a new chain too. Whoever copied this device's state before reads nothing written after
    /// the members processed it (sent daily, and when the app asks).
    pub fn update(&mut self, me: &LocalDevice, now_ms: u64, entropy: &mut dyn Entropy) -> Result<Vec<Sealed>> {
        if !self.is_member(&me.account()) {
            return Err(Error::NotInGroup);
        }
        self.restart_chain();
        self.ensure_own_chain(now_ms, entropy)?;
        let to = self.devices_lacking_chain(me);
        self.key_share(me, &to, true, now_ms, entropy)
    }

    /// When this device last sent an update here (or first held a chain), for the schedule.
    pub fn last_update_ms(&self) -> Option<u64> {
        self.last_update_ms
    }

    fn key_share(
        &mut self,
        me: &LocalDevice,
        to: &[DeviceCert],
        update: bool,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        let own = self.own.as_ref().ok_or(Error::NotInGroup)?;
        let (generation, start_index, chain_key) = (own.generation, own.next_index, own.chain_key.clone());
        let mut shares = Vec::with_capacity(to.len());
        let mut reached = Vec::with_capacity(to.len());
        for cert in to {
            let context = self.chain_share_context(&me.id(), generation, start_index, &cert.device);
            // A device whose keys cannot be sealed to (a hostile member's low-order key) is
            // skipped: it must not stop us writing to everyone else.
            match self.seal_share(&cert.device, &context, &chain_key, entropy) {
                Ok(share) => {
                    shares.push(share);
                    reached.push(cert.device);
                }
                Err(Error::Malformed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if update || self.last_update_ms.is_none() {
            self.last_update_ms = Some(now_ms);
        }
        // A large group's shares take several envelopes, each a key share of its own.
        let mut out = Vec::with_capacity(shares.len().div_ceil(SHARES_PER_MESSAGE).max(1));
        let mut chunks: Vec<Vec<Share>> = shares.chunks(SHARES_PER_MESSAGE).map(<[Share]>::to_vec).collect();
        if chunks.is_empty() {
            chunks.push(Vec::new());
        }
        for shares in chunks {
            let content = Content::KeyShare(KeyShare {
                cert: me.cert.clone(),
                prekey: me.prekeys.current().clone(),
                generation,
                start_index,
                update,
                shares,
            });
            out.push(self.seal_control(me, content, now_ms, entropy)?);
        }
        for device in reached {
            self.shared_with.insert(device);
        }
        Ok(out)
    }

    fn chain_share_context(&self, sender: &DeviceId, generation: u32, start: u32, recipient: &DeviceId) -> Vec<u8> {
        let mut w = Writer::with_capacity(128);
        w.raw(CHAIN_SHARE).raw(&self.id).raw(sender).u32(generation).u32(start).raw(recipient);
        w.into_bytes()
    }

    fn epoch_share_context(&self, epoch: &[u8; 32], recipient: &DeviceId) -> Vec<u8> {
        let mut w = Writer::with_capacity(128);
        w.raw(EPOCH_SHARE).raw(&self.id).raw(epoch).raw(recipient);
        w.into_bytes()
    }

    /// Proposes a membership change: an admin's operation, sealed in the current epoch, with the
    /// next epoch's secret sealed to every device that remains.
    pub fn change_membership(
        &mut self,
        me: &LocalDevice,
        action: Action,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Vec<Sealed>> {
        if self.kind != GroupKind::Many {
            return Err(Error::NotAllowed("the members of a 1:1 conversation cannot change"));
        }
        if !self.is_member(&me.account()) || self.current_epoch().is_none() {
            return Err(Error::NotInGroup);
        }
        if !self.is_admin(&me.account()) {
            return Err(Error::NotAllowed("only an admin can change who is in a group"));
        }
        let mut action = action;
        if let Action::Add { member, devices, .. } = &mut action {
            if self.is_member(member) {
                return Err(Error::AlreadyExists("that member".into()));
            }
            if self.membership.members.len() >= MAX_MEMBERS {
                return Err(Error::Limit("a group has at most 1,000 members"));
            }
            devices.truncate(MAX_DEVICES_PER_ACCOUNT);
        }
        if let Action::Remove { member } = &action {
            if !self.is_member(member) {
                return Err(Error::NotAMember);
            }
            if *member == me.account() {
                return Err(Error::NotAllowed("an admin cannot remove themselves yet"));
            }
        }
        let parents: Vec<OpHash> = self.membership.heads.iter().copied().collect();
        let op = SignedOp::new(self.id, parents, me.cert.clone(), &me.keys, now_ms, action);
        Membership::admits(&self.id, &self.ops, &op)?;
        let hash = op.hash();
        let mut next_ops = self.ops.clone();
        next_ops.insert(hash, op.clone());
        let next = Membership::replay(&self.id, &next_ops);
        if next.applied.last() != Some(&hash) {
            return Err(Error::NotAllowed("the change is not valid in the current log"));
        }
        let secret = Zeroizing::new(entropy.bytes32()?);
        let mut epoch_shares = Vec::new();
        let mut unreached = BTreeSet::new();
        let mut recipients: BTreeMap<DeviceId, DeviceCert> = self.devices.clone();
        recipients.extend(next.devices.clone());
        recipients.retain(|device, cert| !self.revoked.contains(&(cert.account, *device)));
        for cert in recipients.values() {
            if cert.device == me.id() || !next.members.contains_key(&cert.account) {
                continue;
            }
            let context = self.epoch_share_context(&hash, &cert.device);
            match self.reachable(&cert.device).then(|| self.seal_share(&cert.device, &context, &secret, entropy)) {
                Some(Ok(share)) => epoch_shares.push(share),
                Some(Err(e)) if !matches!(e, Error::Malformed { .. }) => return Err(e),
                _ => {
                    unreached.insert(cert.device);
                }
            }
        }
        // The members reach the devices an `Add` brings through the prekeys we know of them.
        let prekeys = match &op.action {
            Action::Add { devices, .. } => {
                devices.iter().filter_map(|c| self.prekeys.get(&c.device).cloned()).collect()
            }
            _ => Vec::new(),
        };
        // The change with the first shares; a large group's others follow, sealed in the same
        // epoch, each naming the change.
        let mut chunks = epoch_shares.chunks(SHARES_PER_MESSAGE).map(<[Share]>::to_vec);
        let first = chunks.next().unwrap_or_default();
        let content = Content::Membership { op: op.clone(), prekeys, epoch_shares: first };
        let mut sealed = vec![self.seal_control(me, content, now_ms, entropy)?];
        for shares in chunks {
            sealed.push(self.seal_control(me, Content::EpochShares { op: hash, shares }, now_ms, entropy)?);
        }
        self.ops = next_ops;
        self.epochs.insert(hash, Epoch::new(hash, *secret));
        self.adopt_membership(next);
        self.start_afresh_with(&op.action);
        self.unreached = unreached;
        let tags = epoch_shares.iter().map(|s| s.to).chain([tag_of(&me.id())]).collect();
        self.reached = Some((hash, tags));
        Ok(sealed)
    }

    /// What `invitee` needs to join, after their `Add` was applied. Hands over our chain for
    /// the current epoch, so the invitee reads us from our next message on.
    pub fn welcome(
        &mut self,
        me: &LocalDevice,
        invitee: &AccountPublic,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Welcome> {
        if !self.is_member(invitee) {
            return Err(Error::NotAMember);
        }
        let epoch = self.current_epoch().ok_or(Error::NotInGroup)?.clone();
        let own = self.ensure_own_chain(now_ms, entropy)?.clone();
        self.shared_with.insert(*invitee);
        // The whole log, rejected operations included: applied ones may name them as parents.
        let ops: Vec<SignedOp> = self.ops.values().cloned().collect();
        // Devices the log names travel in it; the others (learned from key shares) beside it.
        let devices = self.devices.values().filter(|c| self.membership.devices.get(&c.device) != Some(c)).cloned();
        let welcome = Welcome {
            group: self.id,
            ops,
            epoch: epoch.id,
            epoch_secret: epoch.secret.clone(),
            devices: devices.collect(),
            prekeys: std::iter::once(me.prekeys.current().clone())
                .chain(self.prekeys.values().filter(|p| self.devices.contains_key(&p.device)).cloned())
                .collect(),
            inviter_generation: own.generation,
            inviter_index: own.next_index,
            inviter_chain_key: own.chain_key.clone(),
            lamport: self.lamport,
        };
        // (Whether it fits an invitation, 64 parts at most, `send_invite` says.)
        Ok(welcome)
    }

    fn next_inner(&self, content: Content, sent_ms: u64) -> Inner {
        let parents: Vec<EnvelopeId> = self.heads.iter().rev().take(MAX_PARENTS).copied().collect();
        Inner { lamport: self.lamport.saturating_add(1).min(MAX_LAMPORT), sent_ms, parents, content }
    }

    fn seal_control(
        &mut self,
        me: &LocalDevice,
        content: Content,
        now_ms: u64,
        entropy: &mut dyn Entropy,
    ) -> Result<Sealed> {
        let epoch = self.current_epoch().ok_or(Error::NotInGroup)?.id;
        self.seal_control_in(me, &epoch, content, When { now_ms, sent_ms: now_ms }, entropy)
    }

    fn seal_control_in(
        &mut self,
        me: &LocalDevice,
        epoch: &[u8; 32],
        content: Content,
        when: When,
        entropy: &mut dyn Entropy,
    ) -> Result<Sealed> {
        let nonce = entropy.nonce()?;
        let key = self.epochs.get(epoch).ok_or(Error::NotInGroup)?.control_key(&nonce);
        self.seal_with_nonce(me, *epoch, 0, CONTROL_INDEX, &key, content, when, nonce)
    }

    #[allow(clippy::too_many_arguments)]
    fn seal(
        &mut self,
        me: &LocalDevice,
        generation: u32,
        index: u32,
        message_key: &[u8; 32],
        content: Content,
        when: When,
        entropy: &mut dyn Entropy,
    ) -> Result<Sealed> {
        let nonce = entropy.nonce()?;
        let epoch = self.current_epoch().ok_or(Error::NotInGroup)?.id;
        self.seal_with_nonce(me, epoch, generation, index, message_key, content, when, nonce)
    }

    #[allow(clippy::too_many_arguments)]
    fn seal_with_nonce(
        &mut self,
        me: &LocalDevice,
        epoch: [u8; 32],
        generation: u32,
        index: u32,
        body_key: &[u8; 32],
        content: Content,
        when: When,
        nonce: [u8; 24],
    ) -> Result<Sealed> {
        let epoch = self.epochs.get(&epoch).ok_or(Error::NotInGroup)?;
        let topic = epoch.topic(serving_period(when.now_ms));
        let header_key = crypto::secret(*epoch.header_key());
        let inner = self.next_inner(content, when.sent_ms);
        let mut header = [0u8; HEADER_PLAIN_LEN];
        header[..32].copy_from_slice(&me.id());
        header[32..36].copy_from_slice(&generation.to_be_bytes());
        header[36..].copy_from_slice(&index.to_be_bytes());
        // The inner payload is encoded straight after the signature prefix, so that the signed
        // bytes need no second copy.
        let prefix = signature_prefix(&self.id, &epoch.id, &nonce, &header, inner.encoded_len_hint());
        let prefix_len = prefix.len();
        let signed = inner.encode_after(prefix);
        let signature = me.keys.sign(&signed);
        let inner_bytes = &signed[prefix_len..];

        let total = envelope::bucket_for(4 + inner_bytes.len() + 64)?;
        let mut bytes = Vec::with_capacity(total);
        bytes.push(envelope::ENVELOPE_VERSION);
        bytes.extend_from_slice(&topic);
        bytes.extend_from_slice(&nonce);
        let sealed_header = crypto::seal(&header_key, &nonce, &bytes[..1 + envelope::TOPIC_LEN], &header);
        bytes.extend_from_slice(&sealed_header);
        let body_start = bytes.len();
        bytes.extend_from_slice(&(inner_bytes.len() as u32).to_be_bytes());
        bytes.extend_from_slice(inner_bytes);
        bytes.extend_from_slice(&signature);
        bytes.resize(total - crypto::AEAD_TAG_LEN, 0);
        let (aad, body) = bytes.split_at_mut(body_start);
        let tag = crypto::seal_detached(body_key, &nonce, aad, body);
        bytes.extend_from_slice(&tag);
        let envelope = Envelope::from_sealed_bytes(bytes);

        let id = envelope.id();
        for p in &inner.parents {
            self.heads.remove(p);
        }
        self.heads.insert(id);
        self.lamport = inner.lamport;
        Ok(Sealed { envelope, inner })
    }

    /// Authenticates and decrypts an envelope of `epoch` without changing any state.
    pub fn open(&self, me: &LocalDevice, envelope: &Envelope, epoch_id: &[u8; 32]) -> Result<Opened> {
        self.open_with(me, envelope, epoch_id, true)
    }

    /// Where an envelope of `epoch` sits in its sender's chain (device, generation, index), from
    /// its header alone; `None` if the header does not open. For putting held envelopes in order.
    pub fn chain_position(&self, envelope: &Envelope, epoch_id: &[u8; 32]) -> Option<ChainPosition> {
        self.open_header(envelope, epoch_id).ok().map(|(_, position)| position)
    }

    /// The envelope's sealed header, and what it says: the sender's device, chain generation
    /// and index.
    fn open_header(&self, envelope: &Envelope, epoch_id: &[u8; 32]) -> Result<(Vec<u8>, ChainPosition)> {
        let epoch = self.epochs.get(epoch_id).ok_or(Error::UnknownTopic)?;
        let header = crypto::open(
            epoch.header_key(),
            &envelope.nonce(),
            envelope.header_associated_data(),
            envelope.sealed_header(),
        )?;
        let device: DeviceId = header[..32].try_into().expect("fixed header size");
        let generation = u32::from_be_bytes(header[32..36].try_into().expect("fixed"));
        let index = u32::from_be_bytes(header[36..40].try_into().expect("fixed"));
        Ok((header, (device, generation, index)))
    }

    /// [`Self::open`], refusing with [`Error::AheadOfChain`] a message that would drop the
    /// keys of earlier ones of its chain (see [`PeerChain::key_in_order`]).
    pub fn open_in_order(&self, me: &LocalDevice, envelope: &Envelope, epoch_id: &[u8; 32]) -> Result<Opened> {
        self.open_with(me, envelope, epoch_id, false)
    }

    fn open_with(&self, me: &LocalDevice, envelope: &Envelope, epoch_id: &[u8; 32], may_drop: bool) -> Result<Opened> {
        let (header, (device, generation, index)) = self.open_header(envelope, epoch_id)?;
        let epoch = self.epochs.get(epoch_id).ok_or(Error::UnknownTopic)?;
        if device == me.id() {
            return Err(Error::Duplicate);
        }
        let control = index == CONTROL_INDEX;
        let (body_key, chain_update) = if control {
            (epoch.control_key(&envelope.nonce()), None)
        } else {
            let chain = self.peers.get(&(device, generation)).ok_or(Error::MissingKey)?;
            let (key, next) = if may_drop { chain.key_for(index)? } else { chain.key_in_order(index)? };
            (key, Some(((device, generation), next)))
        };
        let body =
            crypto::open_into(&body_key, &envelope.nonce(), envelope.body_associated_data(), envelope.sealed_body())?;

        let mut r = Reader::new(&body, "message body");
        let inner_len = r.u32()? as usize;
        let inner_bytes = r.take(inner_len)?;
        let signature: [u8; 64] = r.array()?;
        let inner = Inner::decode(inner_bytes)?;
        if inner.lamport > MAX_LAMPORT {
            return Err(Error::Malformed { what: "message", why: "clock value out of range" });
        }
        // Control content speaks for its sender only: a member cannot relay someone else's
        // membership change with shares of its own, nor announce another device.
        match &inner.content {
            Content::Membership { op, .. } if op.author.device != device => {
                return Err(Error::Malformed { what: "message", why: "membership change relayed by another device" });
            }
            Content::Membership { .. } | Content::EpochShares { .. } if self.kind != GroupKind::Many => {
                return Err(Error::Malformed { what: "message", why: "1:1 conversations have no membership changes" });
            }
            Content::KeyShare(ks) if ks.cert.device != device || ks.prekey.device != device => {
                return Err(Error::Malformed { what: "message", why: "key share for another device" });
            }
            _ => {}
        }
        let sender = match (&inner.content, self.devices.get(&device)) {
            (_, Some(cert)) => cert.clone(),
            (Content::KeyShare(ks), None) if ks.cert.device == device => ks.cert.clone(),
            (Content::Membership { op, .. }, None) if op.author.device == device => op.author.clone(),
            (Content::EpochShares { op, .. }, None) => match self.ops.get(op) {
                Some(o) if o.author.device == device => o.author.clone(),
                _ => return Err(Error::NotAMember),
            },
            _ => return Err(Error::NotAMember),
        };
        let mut signed = signature_prefix(&self.id, &epoch.id, &envelope.nonce(), &header, inner_bytes.len());
        signed.extend_from_slice(inner_bytes);
        self.verify_device_signature(&device, &signed, &signature)?;
        // A change its author could not make never enters the log: it would count against
        // nobody's quota but the author's, and hold nothing up for anyone.
        if let Content::Membership { op, .. } = &inner.content {
            Membership::admits(&self.id, &self.ops, op)?;
        }
        // More shares of a change come from its author, once the change is in the log.
        if let Content::EpochShares { op, .. } = &inner.content {
            match self.ops.get(op) {
                None => return Err(Error::MissingParent),
                Some(o) if o.author.device != device => {
                    return Err(Error::Malformed { what: "message", why: "epoch shares for another's change" });
                }
                Some(_) => {}
            }
        }
        let is_control_content = matches!(
            inner.content,
            Content::KeyShare(_) | Content::Membership { .. } | Content::EpochShares { .. } | Content::LinkRotated(_)
        );
        if control != is_control_content {
            return Err(Error::Malformed { what: "message", why: "content kind does not match its key" });
        }
        if !matches!(inner.content, Content::Membership { .. } | Content::EpochShares { .. })
            && !self.is_member(&sender.account)
        {
            return Err(Error::NotAMember);
        }
        if matches!(inner.content, Content::Invite(_) | Content::InvitePart(_)) && self.kind == GroupKind::Many {
            return Err(Error::Malformed { what: "message", why: "invitations travel in 1:1 conversations" });
        }
        Ok(Opened { id: envelope.id(), sender, inner, epoch: *epoch_id, chain_update })
    }

    /// Verifies a device's signature, keeping the device's decompressed public key: decompressing
    /// a point costs about as much as the rest of opening a small message.
    fn verify_device_signature(&self, device: &DeviceId, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        let bad = || Error::BadSignature { what: "message" };
        let mut cache = self.verifying_keys.borrow_mut();
        if !cache.contains_key(device) {
            if cache.len() >= 4 * MAX_MEMBERS {
                cache.clear();
            }
            cache.insert(*device, ed25519_dalek::VerifyingKey::from_bytes(device).map_err(|_| bad())?);
        }
        let key = cache.get(device).expect("inserted above");
        key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(signature)).map_err(|_| bad())
    }

    /// Applies an opened envelope. Everything that can fail is checked before anything changes.
    pub fn accept(&mut self, me: &LocalDevice, opened: Opened) -> Result<Event> {
        let (sealed_in, sender_device) = (opened.epoch, opened.sender.device);
        let event = self.accept_opened(me, opened)?;
        // Another device wrote in the 1:1 epoch our new link gives: it took the link, so we
        // write there too from now on.
        if self.pair_pending == Some(sealed_in) && sender_device != me.id() {
            self.pair_epoch = self.pair_pending.take();
        }
        Ok(event)
    }

    fn accept_opened(&mut self, me: &LocalDevice, opened: Opened) -> Result<Event> {
        let Opened { id, sender, inner, chain_update, .. } = opened;
        // The channel's keys change as a secret opens: that is applied with everything else,
        // once nothing can fail. A share that does not open (its key used, expired, or a
        // hostile sender's) is ignored; the rest of the message still counts.
        let carries_secrets =
            matches!(inner.content, Content::KeyShare(_) | Content::Membership { .. } | Content::EpochShares { .. });
        let mut channel = match carries_secrets {
            true => self.channels.get(&sender.device).cloned().unwrap_or_default(),
            false => Channel::default(),
        };
        let mut opened_share = false;
        // Every share tagged for us is tried: a member who made a device id with our tag cannot
        // hide ours behind theirs.
        let mine = tag_of(&me.id());
        let mut unseal = |channel: &mut Channel, shares: &[Share], context: Vec<u8>| {
            let secret = shares
                .iter()
                .filter(|s| s.to == mine)
                .find_map(|s| channel.receive(&s.sealed, &context, &me.prekeys).ok());
            opened_share |= secret.is_some();
            secret
        };
        let unsealed_chain = match &inner.content {
            Content::KeyShare(ks) => {
                let context = self.chain_share_context(&sender.device, ks.generation, ks.start_index, &me.id());
                unseal(&mut channel, &ks.shares, context)
            }
            _ => None,
        };
        if let Content::KeyShare(_) = &inner.content {
            let known = self.devices.values().filter(|c| c.account == sender.account).count();
            if !self.devices.contains_key(&sender.device) && known >= MAX_DEVICES_PER_ACCOUNT {
                return Err(Error::Limit("an account has at most 4 devices in a group"));
            }
        }
        let mut next_log = None;
        let unsealed_epoch = match &inner.content {
            Content::Membership { op, epoch_shares, .. } => {
                let hash = op.hash();
                Membership::admits(&self.id, &self.ops, op)?;
                let mut ops = self.ops.clone();
                ops.insert(hash, op.clone());
                let replayed = Membership::replay(&self.id, &ops);
                next_log = Some((ops, replayed));
                // Only the first secret for an epoch counts. It is kept even if the change lost
                // to a concurrent removal of its author: later changes and messages of members
                // who applied it first are sealed in its epoch. Such an epoch never becomes the
                // current one, so its author cannot make anyone send in it.
                let context = self.epoch_share_context(&hash, &me.id());
                let secret = unseal(&mut channel, epoch_shares, context);
                if self.epochs.contains_key(&hash) { None } else { secret }
            }
            Content::EpochShares { op, shares } => {
                let context = self.epoch_share_context(op, &me.id());
                let secret = unseal(&mut channel, shares, context);
                if self.epochs.contains_key(op) { None } else { secret }
            }
            _ => None,
        };
        if opened_share {
            self.channels.insert(sender.device, channel);
        }
        // Which devices a change was sealed to, as its author says (see `reached`).
        match &inner.content {
            Content::Membership { op, epoch_shares, .. } => {
                let tags = epoch_shares.iter().map(|s| s.to).chain([tag_of(&sender.device)]).collect();
                self.reached = Some((op.hash(), tags));
            }
            Content::EpochShares { op, shares } => {
                if let Some((_, tags)) = self.reached.as_mut().filter(|(hash, _)| hash == op) {
                    tags.extend(shares.iter().map(|s| s.to));
                }
            }
            _ => {}
        }

        if let Some((key, chain)) = chain_update {
            self.peers.insert(key, chain);
            self.dirty_peers.insert(key);
        }
        for p in &inner.parents {
            self.heads.remove(p);
        }
        self.heads.insert(id);
        while self.heads.len() > MAX_HEADS {
            self.heads.pop_first();
        }
        // A member's clock may run ahead of ours by what was written while we were away, not
        // by more: one message with a huge value would pin every later clock at the top.
        let lamport = inner.lamport.min(self.lamport.saturating_add(MAX_LAMPORT_JUMP));
        self.lamport = self.lamport.max(lamport);
        let event = match inner.content {
            Content::Text(text) => Event::Message {
                id,
                sender: sender.account,
                lamport,
                sent_ms: inner.sent_ms,
                text,
                replaces: None,
                reply_to: None,
                attachment: None,
            },
            Content::Resent { replaces, text } => Event::Message {
                id,
                sender: sender.account,
                lamport,
                sent_ms: inner.sent_ms,
                text,
                replaces: Some(replaces),
                reply_to: None,
                attachment: None,
            },
            Content::Reply { to, text, replaces } => Event::Message {
                id,
                sender: sender.account,
                lamport,
                sent_ms: inner.sent_ms,
                text,
                replaces,
                reply_to: Some(to),
                attachment: None,
            },
            Content::Attachment { manifest, caption, replaces } => Event::Message {
                id,
                sender: sender.account,
                lamport,
                sent_ms: inner.sent_ms,
                text: caption,
                replaces,
                reply_to: None,
                attachment: Some(manifest),
            },
            Content::Change(change) => Event::MessageChanged { id, sender: sender.account, lamport, change },
            Content::Timer { keep_ms } => {
                Event::TimerSet { id, sender: sender.account, lamport, sent_ms: inner.sent_ms, keep_ms }
            }
            Content::KeyShare(_) if self.revoked.contains(&(sender.account, sender.device)) => Event::Nothing,
            Content::KeyShare(ks) => {
                self.devices.insert(sender.device, sender.clone());
                self.note_prekey(&ks.prekey);
                // A chain we handed over outside the channel (in a contact request or an
                // invitation) lasts only until the channel works: the next message starts a
                // new one, which only the channel carries. An update asks the same of everyone.
                let handed_outside = self.shared_with.contains(&sender.account);
                if opened_share && (ks.update || handed_outside) {
                    self.restart_chain();
                }
                match unsealed_chain {
                    Some(key) if !self.peers.contains_key(&(sender.device, ks.generation)) => {
                        self.learn_chain(sender.device, ks.generation, ks.start_index, *key);
                        Event::KeysArrived { device: sender.device }
                    }
                    // A channel that moved may let a waiting share open.
                    _ if opened_share => Event::KeysArrived { device: sender.device },
                    _ => Event::Nothing,
                }
            }
            Content::Membership { op, prekeys, .. } => {
                let hash = op.hash();
                if let Some(secret) = unsealed_epoch {
                    self.epochs.insert(hash, Epoch::new(hash, *secret));
                }
                let (ops, replayed) = next_log.expect("set for every membership message above");
                self.ops = ops;
                self.adopt_membership(replayed);
                if self.membership.applied.contains(&hash) && op.author.device != me.id() {
                    self.start_afresh_with(&op.action);
                }
                for prekey in &prekeys {
                    if self.devices.contains_key(&prekey.device) {
                        self.note_prekey(prekey);
                    }
                }
                let we_were_removed = !self.is_member(&me.account());
                if we_were_removed {
                    self.forget_secrets();
                }
                // A change made in good faith that lost to a concurrent removal of its author
                // stays in the log (later changes may name it) but changes nothing.
                if self.membership.applied.contains(&hash) || we_were_removed {
                    Event::MembershipChanged { id, op, lamport, we_were_removed }
                } else {
                    Event::ChangeOutranked { id }
                }
            }
            Content::EpochShares { op, .. } => match unsealed_epoch {
                // The epoch's envelopes that waited for its secret can open now.
                Some(secret) => {
                    self.epochs.insert(op, Epoch::new(op, *secret));
                    Event::KeysArrived { device: sender.device }
                }
                None => Event::Nothing,
            },
            Content::Invite(welcome) => Event::Invited { id, from: sender, welcome },
            Content::InvitePart(part) => match self.take_invite_part(part) {
                Some(welcome) => Event::Invited { id, from: sender, welcome: Box::new(welcome) },
                None => Event::Nothing,
            },
            Content::Receipt(receipt) => Event::Receipt { sender: sender.account, receipt },
            Content::Leave if self.kind == GroupKind::Many => {
                Event::LeaveAsked { id, sender: sender.account, lamport, sent_ms: inner.sent_ms }
            }
            Content::Leave => Event::Nothing,
            // Only an account revokes its own devices: a member cannot relay (or sign) a
            // revocation of someone else's.
            Content::DeviceRevoked(revocation) if revocation.account == sender.account => {
                Event::DeviceRevoked { revocation }
            }
            Content::DeviceRevoked(_) => Event::Nothing,
            Content::ContactShared(contact) if self.is_own_conversation() => {
                Event::ContactShared { sender: sender.account, contact }
            }
            Content::SettingShared(setting) if self.is_own_conversation() => {
                Event::SettingShared { sender: sender.account, setting }
            }
            Content::InviteKeysShared { request_secret, link } if self.is_own_conversation() => {
                Event::InviteKeysShared { sender: sender.account, request_secret, link }
            }
            // Only the account replaces its link, in its 1:1 conversations with contacts.
            Content::LinkRotated(link)
                if link.card.account == sender.account
                    && matches!(self.kind, GroupKind::Pair { .. })
                    && !self.is_own_conversation() =>
            {
                Event::LinkRotated { link }
            }
            // Anywhere else, from anyone: nothing.
            Content::ContactShared(_)
            | Content::SettingShared(_)
            | Content::InviteKeysShared { .. }
            | Content::LinkRotated(_) => Event::Nothing,
        };
        Ok(event)
    }

    /// After removal no chain is kept: there is nothing left to read. The epochs' secrets
    /// are, for now: a removal made concurrently with a removal of its author by a senior
    /// admin is overturned when that arrives, and the changes that say so are sealed in epochs
    /// we already hold (nobody removed shares in a later one).
    /// Our channels' keys are kept too, for the same reason: members who overturned the
    /// removal answer to the keys we handed them; members who applied it send us nothing more.
    fn forget_secrets(&mut self) {
        self.own = None;
        for key in std::mem::take(&mut self.peers).into_keys() {
            self.dirty_peers.insert(key);
        }
        self.shared_with.clear();
    }

    /// Peer chains changed since the last call (for the store), with their current state.
    pub fn take_dirty_chains(&mut self) -> Vec<((DeviceId, u32), Option<PeerChain>)> {
        std::mem::take(&mut self.dirty_peers).into_iter().map(|k| (k, self.peers.get(&k).cloned())).collect()
    }

    /// All peer chains, for loading into a fresh store row set.
    pub fn restore_chain(&mut self, device: DeviceId, generation: u32, chain: PeerChain) {
        self.peers.insert((device, generation), chain);
    }

    /// Whether an admin should heal a fork in the membership log with a `Rekey`: concurrent
    /// changes each sealed their new secret to members the other one removed. The lowest
    /// admin device acts, so that exactly one does.
    pub fn needs_heal(&self, me: &LocalDevice) -> bool {
        if self.membership.heads.len() < 2 || !self.is_admin(&me.account()) {
            return false;
        }
        let lowest_admin_device = self.devices.values().filter(|c| self.is_admin(&c.account)).map(|c| c.device).min();
        lowest_admin_device == Some(me.id())
    }

    /// Serialises everything but the peer chains (stored one row each).
    pub fn encode_state(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1024);
        w.u8(STATE_VERSION).raw(&self.id).u64(self.created_ms);
        match &self.kind {
            GroupKind::Pair { accounts } => {
                w.u8(1).raw(&accounts[0]).raw(&accounts[1]);
            }
            GroupKind::Many => {
                w.u8(2);
            }
        }
        w.count(self.ops.len());
        for op in self.ops.values() {
            w.bytes(&op.to_bytes());
        }
        w.count(self.devices.len());
        for cert in self.devices.values() {
            cert.encode(&mut w);
        }
        w.count(self.epochs.len());
        for epoch in self.epochs.values() {
            w.raw(&epoch.id).raw(&epoch.secret[..]);
        }
        match &self.own {
            Some(own) => {
                w.u8(1);
                own.encode(&mut w);
            }
            None => {
                w.u8(0);
            }
        }
        w.count(self.shared_with.len());
        for s in &self.shared_with {
            w.raw(s);
        }
        w.count(self.heads.len());
        for h in &self.heads {
            w.raw(&h.0);
        }
        w.count(self.prekeys.len());
        for p in self.prekeys.values() {
            p.encode(&mut w);
        }
        w.count(self.channels.len());
        for (device, channel) in &self.channels {
            w.raw(device);
            channel.encode(&mut w);
        }
        match self.last_update_ms {
            Some(t) => w.u8(1).u64(t),
            None => w.u8(0),
        };
        w.u32(self.next_generation);
        w.count(self.unreached.len());
        for d in &self.unreached {
            w.raw(d);
        }
        w.count(self.retired_epochs.len());
        for (id, since) in &self.retired_epochs {
            w.raw(id).u64(*since);
        }
        w.count(self.invite_parts.len());
        for (hash, parts) in &self.invite_parts {
            w.raw(hash).count(parts.len());
            for (index, bytes) in parts {
                w.u16(*index).bytes(bytes);
            }
        }
        for epoch in [&self.pair_epoch, &self.pair_pending] {
            match epoch {
                Some(id) => w.u8(1).raw(id),
                None => w.u8(0),
            };
        }
        // Last, where tests that play a hostile clock find it.
        w.u64(self.lamport);
        w.into_bytes()
    }

    pub fn decode_state(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "stored group");
        let version = r.u8()?;
        if !(1..=STATE_VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion { what: "stored group", found: version, supported: STATE_VERSION });
        }
        let id = r.array()?;
        let created_ms = r.u64()?;
        let kind = match r.u8()? {
            1 => GroupKind::Pair { accounts: [r.array()?, r.array()?] },
            2 => GroupKind::Many,
            _ => {
                return Err(Error::Malformed { what: "stored group", why: "unknown kind" });
            }
        };
        let mut group = Group::empty(id, kind, created_ms);
        for _ in 0..r.count(1 << 20, 4)? {
            let op = SignedOp::from_bytes(r.bytes(1 << 16)?)?;
            group.ops.insert(op.hash(), op);
        }
        for _ in 0..r.count(1 << 20, DeviceCert::ENCODED_LEN)? {
            let cert = DeviceCert::decode(&mut r)?;
            group.devices.insert(cert.device, cert);
        }
        for _ in 0..r.count(1 << 20, 64)? {
            let id = r.array()?;
            group.epochs.insert(id, Epoch::new(id, r.array()?));
        }
        if r.bool()? {
            group.own = Some(OwnChain::decode(&mut r)?);
        }
        for _ in 0..r.count(1 << 20, 32)? {
            group.shared_with.insert(r.array()?);
        }
        for _ in 0..r.count(1 << 20, 32)? {
            group.heads.insert(EnvelopeId(r.array()?));
        }
        if version >= 2 {
            for _ in 0..r.count(1 << 20, SignedPrekey::ENCODED_LEN)? {
                let prekey = SignedPrekey::decode(&mut r)?;
                group.prekeys.insert(prekey.device, prekey);
            }
            for _ in 0..r.count(1 << 20, 32 + 10)? {
                let device = r.array()?;
                group.channels.insert(device, Channel::decode(&mut r)?);
            }
            group.last_update_ms = if r.bool()? { Some(r.u64()?) } else { None };
            group.next_generation = r.u32()?;
            for _ in 0..r.count(1 << 20, 32)? {
                group.unreached.insert(r.array()?);
            }
            for _ in 0..r.count(1 << 20, 40)? {
                let id = r.array()?;
                group.retired_epochs.insert(id, r.u64()?);
            }
            for _ in 0..r.count(2, 36)? {
                let hash = r.array()?;
                let mut parts = BTreeMap::new();
                for _ in 0..r.count(MAX_WELCOME_PARTS, 6)? {
                    let index = r.u16()?;
                    parts.insert(index, r.bytes(WELCOME_PART_LEN)?.to_vec());
                }
                group.invite_parts.insert(hash, parts);
            }
        }
        if version >= 3 {
            group.pair_epoch = if r.bool()? { Some(r.array()?) } else { None };
        }
        if version >= 4 {
            group.pair_pending = if r.bool()? { Some(r.array()?) } else { None };
        }
        group.lamport = r.u64()?;
        if let Some(own) = &group.own {
            group.next_generation = group.next_generation.max(own.generation.saturating_add(1));
        }
        r.finish()?;
        group.refresh_membership();
        Ok(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;
    use crate::identity::AccountKey;

    const NOW: u64 = 1_750_000_000_000;

    fn device(seed: u64) -> LocalDevice {
        let mut rng = SeededEntropy::new(seed);
        LocalDevice::generate(&AccountKey::generate(&mut rng).unwrap(), 0, &mut rng).unwrap()
    }

    /// alice (admin) with bob and carol, everyone in the latest epoch.
    fn trio(rng: &mut SeededEntropy) -> [(LocalDevice, Group); 3] {
        let (a, b, c) = (device(1), device(2), device(3));
        let mut ga = Group::create(&a, "g", NOW, rng).unwrap();
        ga.note_prekey(b.prekeys.current());
        ga.note_prekey(c.prekeys.current());
        let add = |m: &LocalDevice| Action::Add {
            member: m.account(),
            name: None,
            devices: vec![m.cert.clone()],
            admin: false,
        };
        let add_b = ga.change_membership(&a, add(&b), NOW, rng).unwrap();
        let add_c = ga.change_membership(&a, add(&c), NOW, rng).unwrap();
        let wb = ga.welcome(&a, &b.account(), NOW, rng).unwrap();
        let wc = ga.welcome(&a, &c.account(), NOW, rng).unwrap();
        let gb = Group::from_welcome(&b, &wb, &a.cert, NOW).unwrap();
        let gc = Group::from_welcome(&c, &wc, &a.cert, NOW).unwrap();
        let _ = (add_b, add_c);
        [(a, ga), (b, gb), (c, gc)]
    }

    fn deliver(me: &LocalDevice, group: &mut Group, envelope: &Envelope) -> Result<Event> {
        let epoch = group.current_epoch().unwrap().id;
        let opened = group.open(me, envelope, &epoch)?;
        group.accept(me, opened)
    }

    #[test]
    fn a_membership_change_relayed_with_other_shares_is_refused() {
        let mut rng = SeededEntropy::new(9);
        let [(a, mut ga), (b, mut gb), (c, mut gc)] = trio(&mut rng);
        let removal = ga.change_membership(&a, Action::Remove { member: c.account() }, NOW, &mut rng).unwrap();
        let Content::Membership { op, .. } = removal[0].inner.content.clone() else { panic!() };
        // carol wraps the genuine removal with a secret of her own, sealed to bob.
        let context = gb.epoch_share_context(&op.hash(), &b.id());
        gc.note_prekey(b.prekeys.current());
        let planted = gc.seal_share(&b.id(), &context, &[7; 32], &mut rng).unwrap();
        let content = Content::Membership { op, prekeys: vec![], epoch_shares: vec![planted] };
        let relayed = gc.seal_control(&c, content, NOW, &mut rng).unwrap();
        assert!(matches!(deliver(&b, &mut gb, &relayed.envelope), Err(Error::Malformed { .. })));
        // The genuine one applies, and bob's new epoch is alice's, not carol's.
        deliver(&b, &mut gb, &removal[0].envelope).unwrap();
        assert_eq!(gb.current_epoch().unwrap().secret, ga.current_epoch().unwrap().secret);
    }

    #[test]
    fn a_re_encrypted_control_message_fails_its_signature() {
        let mut rng = SeededEntropy::new(10);
        let [(a, mut ga), (b, mut gb), (_, _)] = trio(&mut rng);
        let share = ga.announce(&a, NOW, &mut rng).unwrap().remove(0).envelope;
        // Anyone holding the epoch secret can open a control message and seal it again under a
        // new nonce, making a "new" envelope; the signature, which covers the nonce, breaks.
        let epoch = gb.current_epoch().unwrap().clone();
        let bytes = share.as_bytes();
        let body = crypto::open_into(
            &epoch.control_key(&share.nonce()),
            &share.nonce(),
            share.body_associated_data(),
            share.sealed_body(),
        )
        .unwrap();
        let nonce = [42u8; 24];
        let mut forged = Vec::new();
        forged.extend_from_slice(&bytes[..1 + envelope::TOPIC_LEN]);
        forged.extend_from_slice(&nonce);
        forged.extend_from_slice(&crypto::seal(epoch.header_key(), &nonce, &bytes[..17], &{
            crypto::open(epoch.header_key(), &share.nonce(), share.header_associated_data(), share.sealed_header())
                .unwrap()
        }));
        let aad = forged.clone();
        forged.extend_from_slice(&crypto::seal(&epoch.control_key(&nonce), &nonce, &aad, &body));
        let forged = Envelope::parse(forged).unwrap();
        assert!(matches!(deliver(&b, &mut gb, &forged), Err(Error::BadSignature { .. })));
        deliver(&b, &mut gb, &share).unwrap();
    }

    /// A receipt is a group message like a short reply: the same size on the wire, opened only
    /// with the group's keys, and it names what it acknowledges only inside.
    #[test]
    fn a_receipt_looks_like_a_short_reply_and_opens_only_for_members() {
        let mut rng = SeededEntropy::new(13);
        let [(a, mut ga), (b, mut gb), (_, _)] = trio(&mut rng);
        let text = ga.send_text(&a, "ok", NOW, &mut rng).unwrap().pop().unwrap();
        for s in gb.send_text(&b, "first", NOW, &mut rng).unwrap() {
            deliver(&a, &mut ga, &s.envelope).unwrap();
        }
        let acked = text.envelope.id();
        // Sealed at the same point in the conversation (the same parents), a receipt for one
        // message pads to the size of a one-line reply (the smallest bucket holds only replies of
        // a few words, so a receipt is never the only kind of envelope of its size).
        let reply = gb.send_text(&b, "thanks, got it: see you at the north gate at nine", NOW, &mut rng);
        let reply = reply.unwrap().pop().unwrap();
        let receipt = Receipt { delivered: vec![acked], read: vec![] };
        let sealed = gb.send_receipt(&b, receipt.clone(), NOW, &mut rng).unwrap().pop().unwrap();
        assert_eq!(sealed.envelope.as_bytes().len(), reply.envelope.as_bytes().len(), "same size bucket");
        assert!(!sealed.envelope.as_bytes().windows(32).any(|w| w == acked.0), "the id it acknowledges is sealed");
        assert_eq!(deliver(&a, &mut ga, &sealed.envelope).unwrap(), Event::Receipt { sender: b.account(), receipt });
    }

    /// Issue 13, finding 7: secrets inside values that derive `Debug` (a welcome, an event that
    /// carries one, a chain) print as `Secret32(..)`, never as their bytes.
    #[test]
    fn secrets_are_never_printed() {
        let mut rng = SeededEntropy::new(14);
        let [(a, mut ga), (b, _), (_, _)] = trio(&mut rng);
        let welcome = ga.welcome(&a, &b.account(), NOW, &mut rng).unwrap();
        let event =
            Event::Invited { id: EnvelopeId([0; 32]), from: a.cert.clone(), welcome: Box::new(welcome.clone()) };
        let printed = format!("{welcome:?} {event:?}");
        for secret in [*welcome.epoch_secret, *welcome.inviter_chain_key] {
            assert!(!printed.contains(&format!("{secret:?}")), "a secret was printed");
        }
        assert!(printed.contains("Secret32(..)"));
    }

    /// Issue 16 review: only an account revokes its own devices. A member who signs a
    /// revocation of someone else's device with his own key names a pair that no certificate
    /// has, and one signed by another account but sent by him is not taken.
    #[test]
    fn only_an_account_revokes_its_own_devices() {
        use crate::devices::revocation::Revocation;
        let mut rng = SeededEntropy::new(16);
        let [(a, mut ga), (b, mut gb), (c, _)] = trio(&mut rng);
        let b_key = AccountKey::generate(&mut SeededEntropy::new(2)).unwrap();
        assert_eq!(b_key.public(), b.account());
        let forged = Revocation::sign(&b_key, &c.id(), NOW);
        let sealed = gb.send_revocation(&b, forged.clone(), NOW, &mut rng).unwrap();
        let events: Vec<Event> = sealed.iter().map(|s| deliver(&a, &mut ga, &s.envelope).unwrap()).collect();
        assert!(events.contains(&Event::DeviceRevoked { revocation: forged.clone() }));
        assert!(!ga.mark_revoked(&forged.account, &forged.device), "carol's device is not bob's to revoke");
        assert!(ga.devices_of(&c.account()).iter().any(|d| d.device == c.id()));
        assert!(!ga.refuses_device(&c.id()));
        let c_key = AccountKey::generate(&mut SeededEntropy::new(3)).unwrap();
        let relayed = Revocation::sign(&c_key, &c.id(), NOW);
        let sealed = gb.send_revocation(&b, relayed, NOW, &mut rng).unwrap();
        let last = deliver(&a, &mut ga, &sealed.last().unwrap().envelope).unwrap();
        assert_eq!(last, Event::Nothing, "a revocation is taken only from its own account");
    }

    /// A member who puts a contact or a setting in a group (or in its 1:1 conversation with us:
    /// the same check) shares nothing with us: only an account's conversation with itself
    /// carries them, and the account takes them only from its own devices.
    #[test]
    fn contacts_and_settings_travel_only_in_an_account_s_own_conversation() {
        let mut rng = SeededEntropy::new(17);
        let [(a, mut ga), (b, mut gb), (_, _)] = trio(&mut rng);
        let setting = super::super::SharedSetting::ReadReceipts(false);
        assert!(matches!(
            gb.send_to_own_devices(&b, Content::SettingShared(setting.clone()), NOW, &mut rng),
            Err(Error::NotAllowed(_))
        ));
        let contact = super::super::SharedContact {
            card: vec![1; 10],
            name: "mallory".into(),
            accepted: true,
            verified: true,
            created_ms: NOW,
            pair_epoch: None,
        };
        // A link (bob's own, signed by his account key) is not taken from a group either, nor
        // its keys anywhere but in the account's own conversation.
        let bob_key = AccountKey::generate(&mut SeededEntropy::new(2)).unwrap();
        assert_eq!(bob_key.public(), b.account());
        let invite = crate::identity::InviteKeys::generate(&mut rng).unwrap();
        let card = crate::identity::ContactCard {
            account: b.account(),
            request_key: invite.request_public(),
            rendezvous_seed: invite.rendezvous_seed,
            name: None,
        };
        let link = crate::devices::rotation::RotatedLink::sign(&bob_key, card, NOW).unwrap();
        assert!(matches!(gb.send_rotated_link(&b, link.clone(), NOW, &mut rng), Err(Error::NotAllowed(_))));
        let keys = Content::InviteKeysShared { request_secret: invite.request.to_bytes().into(), link: link.clone() };
        for content in
            [Content::SettingShared(setting), Content::ContactShared(contact), Content::LinkRotated(link), keys]
        {
            // (A replaced link is a control message; the rest ride on chains.)
            let sealed = match content {
                Content::LinkRotated(_) => vec![gb.seal_control(&b, content, NOW, &mut rng).unwrap()],
                _ => gb.send(&b, content, NOW, &mut rng).unwrap(),
            };
            let events: Vec<Event> = sealed.iter().map(|s| deliver(&a, &mut ga, &s.envelope).unwrap()).collect();
            assert!(events.iter().all(|e| !matches!(
                e,
                Event::SettingShared { .. }
                    | Event::ContactShared { .. }
                    | Event::LinkRotated { .. }
                    | Event::InviteKeysShared { .. }
            )));
        }
        assert!(!gb.is_own_conversation());
        let own = Group::pair(&a, a.account(), &[4; 32], NOW);
        assert!(own.is_own_conversation());
    }

    /// Both sides of a 1:1 conversation come to the same new epoch from the same two request
    /// keys. The side whose key changed follows it and writes there once the other side did
    /// (which reads the new link in the current epoch first); the epochs left stay readable
    /// for their grace, and all of it is stored.
    #[test]
    fn both_sides_of_a_one_to_one_move_to_the_epoch_their_new_keys_give() {
        use x25519_dalek::{PublicKey, StaticSecret};
        let (a, b) = (device(1), device(2));
        let mut rng = SeededEntropy::new(19);
        let mut key = || StaticSecret::from(rng.bytes32().unwrap());
        let (a_old, b_keys, a_new) = (key(), key(), key());
        let dh = |x: &StaticSecret, y: &StaticSecret| *x.diffie_hellman(&PublicKey::from(y)).as_bytes();
        let mut rng = SeededEntropy::new(20);
        let mut ga = Group::pair(&a, b.account(), &dh(&a_old, &b_keys), NOW);
        let mut gb = Group::pair(&b, a.account(), &dh(&b_keys, &a_old), NOW);
        for (g, other) in [(&mut ga, &b), (&mut gb, &a)] {
            g.learn_device(&other.cert).unwrap();
            g.note_prekey(other.prekeys.current());
        }
        let first = ga.current_epoch().unwrap().clone();
        assert_eq!(first.id, ga.id);
        // Alice's key changed: she follows the new epoch and goes on writing in the first.
        assert!(ga.take_pair_keys(&dh(&a_new, &b_keys), KeyChange::Ours));
        assert_eq!(ga.current_epoch().unwrap().id, first.id);
        let pending = ga.pair_pending.unwrap();
        assert!(ga.previous_epochs(4).any(|e| e.id == pending), "the new epoch is followed");
        assert!(!ga.take_pair_keys(&dh(&a_new, &b_keys), KeyChange::Ours), "the same keys change nothing");
        let stored = Group::decode_state(&ga.encode_state()).unwrap();
        assert_eq!((stored.current_epoch().unwrap().id, stored.pair_pending), (first.id, Some(pending)));
        // Bob read her new link: he writes in the new epoch at once, and she follows him there.
        assert!(gb.take_pair_keys(&dh(&b_keys, &a_new), KeyChange::Theirs));
        assert_eq!(gb.current_epoch().unwrap().id, pending);
        assert_eq!(gb.current_epoch().unwrap().secret, ga.epochs.get(&pending).unwrap().secret);
        for sealed in gb.send_text(&b, "hello in the new epoch", NOW, &mut rng).unwrap() {
            let opened = ga.open(&a, &sealed.envelope, &pending).unwrap();
            ga.accept(&a, opened).unwrap();
        }
        assert_eq!((ga.current_epoch().unwrap().id, ga.pair_pending), (pending, None));
        assert!(ga.epochs().any(|e| e.id == first.id), "the epoch left is kept for its grace");
        ga.forget_old_epochs(NOW);
        ga.forget_old_epochs(NOW + EPOCH_GRACE_MS);
        assert_eq!(ga.epochs().map(|e| e.id).collect::<Vec<_>>(), vec![pending]);
    }

    /// A contact who replaces their link again and again leaves a bounded number of epochs.
    #[test]
    fn a_contact_replacing_links_again_and_again_keeps_few_epochs() {
        let (a, b) = (device(1), device(2));
        let mut ga = Group::pair(&a, b.account(), &[1; 32], NOW);
        for i in 0..50u8 {
            assert!(ga.take_pair_keys(&[i.wrapping_add(2); 32], KeyChange::Theirs));
            ga.forget_old_epochs(NOW + i as u64);
        }
        assert!(ga.epochs().count() <= 1 + MAX_PAST_PAIR_EPOCHS, "{}", ga.epochs().count());
    }

    /// Another of our devices that had not heard of a revocation hands over a later epoch: the
    /// revoked device it still lists does not come back into the group here.
    #[test]
    fn a_welcome_from_our_own_device_does_not_bring_back_a_revoked_one() {
        let mut rng = SeededEntropy::new(18);
        let [(a, mut ga), (_, _), (c, _)] = trio(&mut rng);
        let key = AccountKey::generate(&mut SeededEntropy::new(1)).unwrap();
        assert_eq!(key.public(), a.account());
        let laptop = LocalDevice::generate(&key, NOW, &mut SeededEntropy::new(50)).unwrap();
        let stolen = LocalDevice::generate(&key, NOW, &mut SeededEntropy::new(51)).unwrap();
        ga.learn_device(&laptop.cert).unwrap();
        ga.learn_device(&stolen.cert).unwrap();
        let first = ga.welcome(&a, &a.account(), NOW, &mut rng).unwrap();
        let mut gl = Group::from_welcome(&laptop, &first, &a.cert, NOW).unwrap();
        assert!(gl.knows_device(&stolen.id()));
        // The laptop processed the revocation; the phone, which still lists the stolen device,
        // removes carol and hands the laptop the new epoch.
        assert!(gl.mark_revoked(&a.account(), &stolen.id()));
        ga.change_membership(&a, Action::Remove { member: c.account() }, NOW, &mut rng).unwrap();
        let later = ga.welcome(&a, &a.account(), NOW, &mut rng).unwrap();
        assert!(later.devices.iter().any(|d| d.device == stolen.id()), "the phone still lists it");
        assert!(gl.take_own_welcome(&laptop, &later, &a.cert).unwrap(), "the laptop moves to the new epoch");
        assert!(!gl.knows_device(&stolen.id()), "the revoked device stays out");
        assert!(gl.refuses_device(&stolen.id()));
    }

    /// A welcome made before it carried the group's clock (held in a store from then, or from
    /// a member not yet updated) still reads, with the clock at 0.
    #[test]
    fn a_welcome_without_the_clock_still_reads() {
        let mut rng = SeededEntropy::new(15);
        let [(a, mut ga), (b, _), (_, _)] = trio(&mut rng);
        ga.lamport = 77;
        let welcome = ga.welcome(&a, &b.account(), NOW, &mut rng).unwrap();
        let (bytes, _) = welcome.to_bytes();
        assert_eq!(Welcome::from_bytes(&bytes).unwrap().lamport, 77);
        let old = Welcome::from_bytes(&bytes[..bytes.len() - 8]).unwrap();
        assert_eq!(old, Welcome { lamport: 0, ..welcome });
    }

    #[test]
    fn clocks_saturate_instead_of_overflowing() {
        let mut rng = SeededEntropy::new(11);
        let [(a, mut ga), (b, mut gb), (_, _)] = trio(&mut rng);
        ga.lamport = u64::MAX;
        let sealed = ga.send_text(&a, "late", NOW, &mut rng).unwrap();
        assert!(sealed.iter().all(|s| s.inner.lamport <= MAX_LAMPORT));
        for s in &sealed {
            deliver(&b, &mut gb, &s.envelope).unwrap();
        }
    }

    /// Prekeys of devices that are not members' (ones that left, or a hostile inviter's
    /// thousands in a welcome) never keep out the prekey of a device about to be added.
    #[test]
    fn prekeys_of_devices_that_are_not_members_make_room() {
        let mut rng = SeededEntropy::new(16);
        let [(_, mut ga), (_, _), (_, _)] = trio(&mut rng);
        for _ in 0..MAX_MEMBERS * MAX_DEVICES_PER_ACCOUNT {
            let keys = DeviceKeys::generate(&mut rng).unwrap();
            ga.note_prekey(PrekeyRing::generate(&keys, NOW, &mut rng).unwrap().current());
        }
        let newcomer = device(40);
        ga.note_prekey(newcomer.prekeys.current());
        assert!(ga.prekey_of(&newcomer.id()).is_some());
    }

    /// A home made by version 1 keeps its conversations: a stored group of version 1 is read,
    /// with no prekeys or channels (its devices are reached through their prekeys once they
    /// speak), and stored again as version 2.
    #[test]
    fn a_version_1_group_state_is_read() {
        let (a, b) = (device(1), device(2));
        let pair = Group::pair(&a, b.account(), &[4; 32], NOW);
        let GroupKind::Pair { accounts } = &pair.kind else { unreachable!() };
        let epoch = pair.current_epoch().unwrap();
        let mut w = Writer::new();
        w.u8(1).raw(&pair.id).u64(NOW).u8(1).raw(&accounts[0]).raw(&accounts[1]);
        w.count(0).count(0).count(1).raw(&epoch.id).raw(&epoch.secret[..]);
        w.u8(0).count(0).count(0).u64(7);
        let old = Group::decode_state(&w.into_bytes()).unwrap();
        assert_eq!(old.current_epoch().unwrap().secret, epoch.secret);
        assert_eq!(old.lamport, 7);
        let again = Group::decode_state(&old.encode_state()).unwrap();
        assert_eq!(again.encode_state(), old.encode_state());
        assert_eq!(again.encode_state()[0], STATE_VERSION);
    }

    #[test]
    fn a_past_epochs_secret_is_deleted_after_its_grace() {
        let mut rng = SeededEntropy::new(15);
        let [(a, mut ga), (_, _), (c, _)] = trio(&mut rng);
        let before = ga.current_epoch().unwrap().id;
        ga.change_membership(&a, Action::Remove { member: c.account() }, NOW, &mut rng).unwrap();
        let current = ga.current_epoch().unwrap().id;
        assert!(ga.forget_old_epochs(NOW), "the past epochs are noted");
        assert!(!ga.forget_old_epochs(NOW + EPOCH_GRACE_MS - 1));
        assert!(ga.epochs().any(|e| e.id == before), "kept through the grace");
        assert!(ga.forget_old_epochs(NOW + EPOCH_GRACE_MS));
        assert!(ga.epochs().all(|e| e.id == current), "only the current epoch is left");
        let stored = Group::decode_state(&ga.encode_state()).unwrap();
        assert_eq!(stored.epochs().count(), 1);
    }

    #[test]
    fn removal_erases_the_removed_members_chains_on_disk_too() {
        let mut rng = SeededEntropy::new(12);
        let [(a, mut ga), (_, _), (c, mut gc)] = trio(&mut rng);
        for s in ga.send_text(&a, "hi", NOW, &mut rng).unwrap() {
            deliver(&c, &mut gc, &s.envelope).unwrap();
        }
        gc.take_dirty_chains();
        let removal = ga.change_membership(&a, Action::Remove { member: c.account() }, NOW, &mut rng).unwrap();
        deliver(&c, &mut gc, &removal[0].envelope).unwrap();
        let dirty = gc.take_dirty_chains();
        assert!(!dirty.is_empty() && dirty.iter().all(|(_, chain)| chain.is_none()), "every chain row is deleted");
    }
}
