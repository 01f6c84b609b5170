//! An opened account home: the engine bound to its store. Every method that changes state
//! runs one store transaction and returns only after it committed, so what a caller reports
//! as done survives a crash. The async `Node` of later layers wraps this type.

mod attachments;
pub use attachments::{
    AUTO_FETCH_MAX, AUTO_FETCH_PER_DAY, MAX_FOLLOWED as MAX_FOLLOWED_ATTACHMENTS, MESH_MAX_DEFAULT, SERVE_FOR_MS,
};
mod catch_up;
pub use catch_up::{CATCH_UP_BUCKET_BITS, CatchUpPlan};
mod contacts;
mod devices;
mod disappearing;
pub use contacts::RequestOutcome;
pub use devices::{DeviceInfo, HistoryChoice};
pub use link_watch::ArrivedRequest;
mod conversations;
mod keys;
mod link_rotation;
mod link_watch;
pub use keys::UPDATE_EVERY_MS;
mod outbox;
pub use outbox::{NOT_A_MEMBER, OutboxBatch, QUEUED_BY_AN_OLDER_VERSION, THE_GROUP_MOVED_ON};
mod receipts;
pub use receipts::Acknowledged;
mod receive;
pub use receive::{TOMORROW_LEAD_MS, YESTERDAY_GRACE_MS};
mod retention;
mod topics;
mod types;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use types::{
    AttachmentInfo, AttachmentProgress, ContactInfo, ConversationInfo, ConversationKind, ConversationOverview,
    ImportProgress, ImportReport, MemberInfo, MessageAction, MessageInfo, ReactionInfo, Received,
};

use crate::crypto::{Entropy, OsEntropy};
use crate::error::{Error, Result};
use crate::group::{Group, GroupId, LocalDevice};
use crate::identity::{AccountKey, ContactCard, DeviceCert, DeviceKeys, InviteKeys, PrekeyRing, fingerprint};
use crate::store::{DB_FILE, DatabaseKey, IdentityRow, KdfParams, Rows, Store};
use crate::wire::{Reader, Writer};

pub use crate::clock::{Clock, system_clock};

pub struct Account {
    store: Store,
    home: PathBuf,
    me: LocalDevice,
    /// `None` on a linked device: the primary keeps the account key (see docs/DECISIONS.md).
    account_key: Option<AccountKey>,
    invite: InviteKeys,
    name: Option<String>,
    groups: BTreeMap<GroupId, Group>,
    /// Which group and epoch each topic we can read belongs to.
    topics: topics::TopicIndex,
    /// The period (day) the topic index was built for.
    topics_period: u64,
    entropy: Box<dyn Entropy + Send>,
    clock: Clock,
    receipts: receipts::Pending,
    /// When messages past their retention were last looked for.
    retention_checked_ms: u64,
    /// When texts past their conversation's disappearing timer were last looked for.
    disappearing_checked_ms: u64,
    /// Our pending contact requests as published on the network, wrapped afresh each day (by
    /// the request's hash and the day: a contact added again gets a new request, and with it a
    /// new wrapping), so that each day's bytes differ from the last.
    request_wraps: std::collections::HashMap<([u8; 32], u64), Vec<u8>>,
    /// Devices their accounts revoked (ours included, if this one was): their envelopes are
    /// refused.
    revoked: std::collections::BTreeSet<(crate::identity::AccountPublic, crate::identity::DeviceId)>,
    /// Revocations an envelope just brought, applied once its group is back in `groups`.
    pending_revocations: Vec<crate::devices::revocation::Revocation>,
    /// Contacts another of our devices shared, taken once their envelope is applied.
    pending_contacts: Vec<crate::group::SharedContact>,
    /// Settings another of our devices changed, taken once their envelope is applied.
    pending_settings: Vec<crate::group::SharedSetting>,
    /// Replaced links (ours from another of our devices, or contacts'), taken once their
    /// envelope is applied.
    pending_links: Vec<link_rotation::ArrivedLink>,
    /// When each contact was last reminded of our replaced link (at most daily).
    link_reminded: std::collections::HashMap<crate::identity::AccountPublic, u64>,
    /// When this device last wrote down hearing from each other device of ours.
    seen_written: std::collections::HashMap<crate::identity::DeviceId, u64>,
    /// The device link that is out, followed on the network (the account's device only).
    link_watch: Option<link_watch::LinkWatch>,
    /// The epoch of each group last handed to our other devices through the account's
    /// conversation with itself (each epoch once).
    shared_epochs: std::collections::HashMap<GroupId, [u8; 32]>,
    /// The account's other devices this one knows (its device list), read once and read again
    /// when the list changed.
    own_devices: Option<Vec<crate::identity::DeviceId>>,
    /// Files being fetched, each envelope checked as it comes.
    downloads: attachments::Downloads,
    /// Held while the account is open: one process at a time owns a home, since each keeps
    /// the group machines (chain positions) in memory.
    _lock: std::fs::File,
}

impl Account {
    /// Creates an account in `home` (made if missing), its database keyed from `passphrase`.
    pub fn create(home: &Path, passphrase: &str, name: Option<&str>) -> Result<Account> {
        if let Some(n) = name {
            check_name(n)?;
        }
        let mut entropy = OsEntropy;
        let params = KdfParams::generate(&mut entropy)?;
        let key = DatabaseKey::from_passphrase(passphrase, &params)?;
        std::fs::create_dir_all(home).map_err(|e| Error::io(format!("creating {}", home.display()), e))?;
        if home.join(DB_FILE).exists() {
            return Err(Error::AlreadyExists(format!("an account in {}", home.display())));
        }
        params.write(home)?;
        Self::create_with_key(home, &key, name, Box::new(OsEntropy), system_clock())
    }

    /// What `PRAGMA integrity_check` finds wrong with the account's database file (nothing, when
    /// it is sound).
    pub fn integrity_problems(&self) -> Result<Vec<String>> {
        self.store.integrity_problems()
    }

    /// Opens the account in `home` with its passphrase.
    pub fn open(home: &Path, passphrase: &str) -> Result<Account> {
        let params = KdfParams::read(home)?;
        let key = DatabaseKey::from_passphrase(passphrase, &params)?;
        let opened = Self::open_with_key(home, &key, Box::new(OsEntropy), system_clock());
        duress_wipes(home, passphrase, opened)
    }

    /// Whether `passphrase` opens the account in `home`, without opening it: nothing is
    /// written, and a process holding the home may keep running.
    pub fn check_passphrase(home: &Path, passphrase: &str) -> Result<()> {
        let params = KdfParams::read(home)?;
        let key = DatabaseKey::from_passphrase(passphrase, &params)?;
        // (No duress here: `weft passphrase remember` may run beside a daemon holding the home,
        // which a wipe from here could not stop; duress is for where the account is opened.)
        Store::check_key(&home.join(DB_FILE), &key)
    }

    /// Whether `passphrase` is the account's, and nothing else: a duress passphrase is just not
    /// the account's here (for choosing one).
    pub fn is_account_passphrase(home: &Path, passphrase: &str) -> Result<bool> {
        let params = KdfParams::read(home)?;
        let key = DatabaseKey::from_passphrase(passphrase, &params)?;
        match Store::check_key(&home.join(DB_FILE), &key) {
            Ok(()) => Ok(true),
            Err(Error::WrongPassphrase(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates an account with a raw database key (a mobile app's keystore key), entropy and clock.
    pub fn create_with_key(
        home: &Path,
        key: &DatabaseKey,
        name: Option<&str>,
        mut entropy: Box<dyn Entropy + Send>,
        clock: Clock,
    ) -> Result<Account> {
        if let Some(n) = name {
            check_name(n)?;
        }
        std::fs::create_dir_all(home).map_err(|e| Error::io(format!("creating {}", home.display()), e))?;
        let now = clock();
        let account_key = AccountKey::generate(entropy.as_mut())?;
        let device = DeviceKeys::generate(entropy.as_mut())?;
        let invite = InviteKeys::generate(entropy.as_mut())?;
        let cert = account_key.certify(&device, now);
        let mut cert_bytes = Writer::new();
        cert.encode(&mut cert_bytes);
        let mut store = Store::create(&home.join(DB_FILE), key)?;
        store.write(|tx| {
            tx.insert_identity(&IdentityRow {
                name: name.map(str::to_owned),
                account_secret: Some(account_key.secret_bytes()),
                device_sign_secret: device.sign_secret(),
                device_dh_secret: device.dh_secret_bytes(),
                device_cert: cert_bytes.into_bytes(),
                request_secret: crate::crypto::secret(invite.request.to_bytes()),
                rendezvous_seed: invite.rendezvous_seed,
                created_ms: now,
            })
        })?;
        drop(store);
        Self::open_with_key(home, key, entropy, clock)
    }

    pub fn open_with_key(
        home: &Path,
        key: &DatabaseKey,
        entropy: Box<dyn Entropy + Send>,
        clock: Clock,
    ) -> Result<Account> {
        let lock = lock_home(home, LOCK_WAIT)?;
        let mut store = Store::open(&home.join(DB_FILE), key)?;
        let id = store.read().identity()?.ok_or_else(|| Error::NoAccount(home.to_path_buf()))?;
        let cert = DeviceCert::decode(&mut Reader::new(&id.device_cert, "stored device certificate"))?;
        let keys = DeviceKeys::from_secrets(&id.device_sign_secret, &id.device_dh_secret);
        let mut entropy = entropy;
        let prekeys = match store.read().prekeys()? {
            Some(bytes) => PrekeyRing::decode(&bytes, &keys)?,
            None => {
                let ring = PrekeyRing::generate(&keys, clock(), entropy.as_mut())?;
                store.write(|tx| tx.set_prekeys(&ring.encode()))?;
                ring
            }
        };
        let me = LocalDevice { cert, keys, prekeys };
        let invite = InviteKeys {
            request: x25519_dalek::StaticSecret::from(*id.request_secret),
            rendezvous_seed: id.rendezvous_seed,
        };
        let revoked: std::collections::BTreeSet<_> =
            store.read().revocations()?.iter().map(|r| (r.account, r.device)).collect();
        let mut groups: BTreeMap<GroupId, Group> = store.read().load_groups()?.into_iter().map(|g| (g.id, g)).collect();
        for group in groups.values_mut() {
            for (account, device) in &revoked {
                group.mark_revoked(account, device);
            }
        }
        let mut account = Account {
            store,
            home: home.to_path_buf(),
            me,
            account_key: id.account_secret.as_ref().map(|s| AccountKey::from_secret(s)),
            invite,
            name: id.name,
            groups,
            topics: topics::TopicIndex::default(),
            topics_period: 0,
            entropy,
            clock,
            receipts: receipts::Pending::default(),
            retention_checked_ms: 0,
            disappearing_checked_ms: 0,
            request_wraps: std::collections::HashMap::new(),
            revoked,
            pending_revocations: Vec::new(),
            pending_contacts: Vec::new(),
            pending_settings: Vec::new(),
            pending_links: Vec::new(),
            link_reminded: std::collections::HashMap::new(),
            seen_written: std::collections::HashMap::new(),
            link_watch: None,
            shared_epochs: std::collections::HashMap::new(),
            own_devices: None,
            downloads: attachments::Downloads::default(),
            _lock: lock,
        };
        account.rebuild_topics();
        // A link made before a restart is followed again (a bad stored one is simply not).
        let offer =
            account.store.read().link_offer()?.and_then(|b| crate::devices::linking::Offer::from_bytes(&b).ok());
        account.watch_link(offer.as_ref());
        // A one-shot command (`weft log`) shows nothing whose timer ran out while weft was off.
        account.disappearing_checked_ms = account.now();
        if let Err(e) = account.forget_disappeared_messages() {
            tracing::debug!(error = %e, "disappearing messages were not deleted");
        }
        Ok(account)
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Our contact card, as shared by link and QR code.
    pub fn card(&self) -> ContactCard {
        ContactCard {
            account: self.account_public(),
            request_key: self.invite.request_public(),
            rendezvous_seed: self.invite.rendezvous_seed,
            name: self.name.clone(),
        }
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.account_public())
    }

    /// This device's id (its Ed25519 public key).
    pub fn device_id(&self) -> [u8; 32] {
        self.me.id()
    }

    pub fn account_public(&self) -> [u8; 32] {
        self.me.cert.account
    }

    /// Whether this device holds the account key (it made the account): only it links and
    /// revokes devices.
    pub fn is_primary(&self) -> bool {
        self.account_key.is_some()
    }

    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Brings the topic index up to date with the groups, their epochs and the day.
    fn rebuild_topics(&mut self) {
        let now = self.now();
        self.topics.refresh(&self.groups, now);
        self.topics_period = crate::group::period_of(now);
    }

    /// Follows the day: once it turns, the new day's topics (and tomorrow's) are readable. A
    /// node that runs for days without a change of its own calls this as it goes (every
    /// receive does); cheap when the day is the same.
    pub fn follow_the_day(&mut self) {
        let now = self.now();
        if now.saturating_sub(self.retention_checked_ms) >= retention::RETENTION_CHECK_MS {
            self.retention_checked_ms = now;
            if let Err(e) = self.forget_expired_messages() {
                tracing::debug!(error = %e, "messages past their retention were not deleted");
            }
        }
        if now.saturating_sub(self.disappearing_checked_ms) >= disappearing::DISAPPEARING_CHECK_MS {
            self.disappearing_checked_ms = now;
            if let Err(e) = self.forget_disappeared_messages() {
                tracing::debug!(error = %e, "disappearing messages were not deleted");
            }
        }
        if crate::group::period_of(now) != self.topics_period {
            self.rebuild_topics();
            if let Err(e) = self.expire_parked() {
                tracing::debug!(error = %e, "parked envelopes were not expired");
            }
            if let Err(e) = self.forget_old_epochs() {
                tracing::debug!(error = %e, "past epochs were not forgotten");
            }
            if let Err(e) = self.rotate_prekeys() {
                tracing::debug!(error = %e, "prekeys were not rotated");
            }
            if let Err(e) = self.send_due_updates() {
                tracing::debug!(error = %e, "scheduled key updates were not sent");
            }
        }
    }

    fn group(&self, id: &GroupId) -> Result<&Group> {
        self.groups.get(id).ok_or_else(|| {
            // A stranger's conversation is stored but not loaded until their request is accepted.
            let waiting = self
                .store
                .read()
                .contacts()
                .ok()
                .into_iter()
                .flatten()
                .any(|c| c.group_id == *id && c.status == crate::store::ContactStatus::Incoming);
            if waiting {
                Error::NotAllowed("they asked to be a contact: accept them first")
            } else {
                Error::NotFound { what: "group", name: data_encoding::HEXLOWER.encode(id) }
            }
        })
    }

    /// Puts groups taken out for a change back, and settles the change's outcome: on success the
    /// topic index follows the groups; on failure in-memory state is reloaded from the store, so
    /// memory never runs ahead of the disk.
    /// Seals with `seal` in the loaded group `gid` and stores what it sealed with the group, in
    /// one transaction.
    fn seal_in(
        &mut self,
        gid: &GroupId,
        seal: impl FnOnce(&mut Group, &LocalDevice, u64, &mut dyn Entropy) -> Result<Vec<crate::group::Sealed>>,
    ) -> Result<()> {
        let mut group = self.groups.remove(gid).ok_or(Error::NotInGroup)?;
        let now = self.now();
        let result = seal(&mut group, &self.me, now, self.entropy.as_mut()).and_then(|sealed| {
            self.store.write(|tx| {
                conversations::put_sent(tx, gid, &sealed, now)?;
                tx.save_group(&mut group)
            })
        });
        self.settle([group], result)
    }

    fn settle<T>(&mut self, groups: impl IntoIterator<Item = Group>, result: Result<T>) -> Result<T> {
        let mut settled = Vec::new();
        for mut group in groups {
            settled.push(group.id);
            // A group made or joined since a revocation holds the revoked device from a
            // welcome or a log: it is forgotten here, whichever way the group came.
            for (account, device) in &self.revoked {
                group.mark_revoked(account, device);
            }
            self.groups.insert(group.id, group);
        }
        match result {
            Ok(value) => {
                self.share_groups_with_own_devices(&settled);
                self.rebuild_topics();
                Ok(value)
            }
            Err(e) => {
                self.groups = self.store.read().load_groups()?.into_iter().map(|g| (g.id, g)).collect();
                self.rebuild_topics();
                Err(e)
            }
        }
    }
}

/// How long opening a home waits for another process to let go of it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes the home's lock file, waiting a while if another process holds it.
fn lock_home(home: &Path, wait: std::time::Duration) -> Result<std::fs::File> {
    let path = home.join("weft.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::HomeBusy(home.to_path_buf())),
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }
}

/// A passphrase that did not open the home and is its duress passphrase wipes the home, and the
/// home then looks as if it never held an account. (The real passphrase is tried first: the
/// duress check costs nothing to an honest open.)
fn duress_wipes<T>(home: &Path, passphrase: &str, opened: Result<T>) -> Result<T> {
    match opened {
        Err(Error::WrongPassphrase(path)) => match crate::store::is_duress(home, passphrase) {
            Ok(true) => {
                crate::wipe::wipe_home(home)?;
                Err(Error::NoAccount(home.to_path_buf()))
            }
            _ => Err(Error::WrongPassphrase(path)),
        },
        other => other,
    }
}

/// Display names are at most 64 bytes and not empty.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::Malformed { what: "name", why: "it is empty" });
    }
    if name.len() > crate::identity::MAX_NAME_LEN {
        return Err(Error::TooLong { what: "name", len: name.len(), max: crate::identity::MAX_NAME_LEN });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_at_a_time_owns_a_home() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_home(dir.path(), LOCK_WAIT).unwrap();
        // A second open (here: the same lock taken again through a new file handle, as another
        // process would) waits, then gives up with a clear error.
        assert!(matches!(lock_home(dir.path(), std::time::Duration::from_millis(100)), Err(Error::HomeBusy(_))));
        drop(held);
        assert!(lock_home(dir.path(), std::time::Duration::from_millis(100)).is_ok());
    }
}
