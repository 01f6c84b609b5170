//! Typed reads and writes of the store's rows. Implemented on `Connection`, so the same calls
//! work inside a transaction (which dereferences to one) and outside.

use rusqlite::{Connection, OptionalExtension, params};

use crate::envelope::EnvelopeId;
use crate::error::{Error, Result};
use crate::group::{Content, Group, GroupId, Inner, PeerChain, Welcome};
use crate::identity::DeviceCert;
use crate::wire::{Reader, Writer};

pub struct IdentityRow {
    pub name: Option<String>,
    /// `None` on a linked device: the account key stays on the primary.
    pub account_secret: Option<crate::crypto::Secret32>,
    pub device_sign_secret: crate::crypto::Secret32,
    pub device_dh_secret: crate::crypto::Secret32,
    pub device_cert: Vec<u8>,
    pub request_secret: crate::crypto::Secret32,
    pub rendezvous_seed: [u8; 32],
    pub created_ms: u64,
}

/// Where a parked envelope sits in its sender's chains: device, chain generation and index, big
/// endian, so that the bytes sort in chain order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ParkedPlace(pub [u8; 40]);

impl ParkedPlace {
    pub fn new(device: &[u8; 32], generation: u32, index: u32) -> Self {
        let mut place = [0u8; 40];
        place[..32].copy_from_slice(device);
        place[32..36].copy_from_slice(&generation.to_be_bytes());
        place[36..].copy_from_slice(&index.to_be_bytes());
        ParkedPlace(place)
    }

    fn first_of(device: &[u8; 32]) -> Self {
        Self::new(device, 0, 0)
    }

    fn last_of(device: &[u8; 32]) -> Self {
        Self::new(device, u32::MAX, u32::MAX)
    }
}

/// One of the account's devices: its certificate (encoded), name, when it was linked, when
/// revoked and when this device last had an envelope of it.
pub type DeviceRow = (Vec<u8>, String, u64, Option<u64>, Option<u64>);

/// Someone whose request waits for an answer: their account and their conversation.
pub type Stranger = ([u8; 32], GroupId);

/// A parked envelope's place and id: where a page of them ends.
pub type ParkedKey = (ParkedPlace, EnvelopeId);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactStatus {
    /// We added their link; they have not answered yet.
    Added,
    /// They sent us a request we have not accepted.
    Incoming,
    /// Both sides know each other.
    Accepted,
}

impl ContactStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ContactStatus::Added => "added",
            ContactStatus::Incoming => "incoming",
            ContactStatus::Accepted => "accepted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "incoming" => ContactStatus::Incoming,
            "accepted" => ContactStatus::Accepted,
            _ => ContactStatus::Added,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ContactRow {
    pub account: [u8; 32],
    pub name: String,
    pub card: Vec<u8>,
    pub status: ContactStatus,
    pub verified: bool,
    pub group_id: GroupId,
    /// Our sealed request to them, kept (and exported) until they reply to one of our messages.
    pub request: Option<Vec<u8>>,
    pub created_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeStatus {
    /// Made by us.
    Sent,
    /// Received and applied.
    Opened,
    /// Received; its sender's key has not arrived yet.
    Waiting,
}

impl EnvelopeStatus {
    fn as_str(&self) -> &'static str {
        match self {
            EnvelopeStatus::Sent => "sent",
            EnvelopeStatus::Opened => "opened",
            EnvelopeStatus::Waiting => "waiting",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRow {
    pub id: EnvelopeId,
    pub group_id: GroupId,
    pub sender: [u8; 32],
    pub lamport: u64,
    pub sent_ms: u64,
    /// `text`, or a system event such as `added` or `removed`.
    pub kind: String,
    pub body: String,
    pub outgoing: bool,
    /// How a received message came (`libp2p`, `mesh`, `bundle`); `None` for ours, and for
    /// messages received before this was recorded.
    pub via: Option<String>,
    /// The message a reply quotes.
    pub reply_to: Option<EnvelopeId>,
}

/// A file a message carries, and how far its download is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentRow {
    pub message: EnvelopeId,
    pub group_id: GroupId,
    pub topic: [u8; 16],
    /// The manifest as the message carried it (see [`crate::attachment::Manifest::encode`]).
    pub manifest: Vec<u8>,
    /// The file's size, as its manifest says.
    pub size: u64,
    /// Chunks here, of `total`.
    pub have: u32,
    pub total: u32,
    /// Being fetched (ours, or asked for, or small enough to fetch unasked).
    pub wanted: bool,
    pub added_ms: u64,
    /// Sent from this account (on this device or another of ours).
    pub ours: bool,
}

fn attachment_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttachmentRow> {
    let blob = |i: usize| -> rusqlite::Result<Vec<u8>> { r.get(i) };
    let fixed = |i: usize, v: Vec<u8>| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, format!("{} bytes", v.len()).into())
    };
    Ok(AttachmentRow {
        message: EnvelopeId(blob(0)?.try_into().map_err(|v| fixed(0, v))?),
        group_id: blob(1)?.try_into().map_err(|v| fixed(1, v))?,
        topic: blob(2)?.try_into().map_err(|v| fixed(2, v))?,
        manifest: blob(3)?,
        size: r.get::<_, i64>(4)? as u64,
        have: r.get(5)?,
        total: r.get(6)?,
        wanted: r.get(7)?,
        added_ms: r.get::<_, i64>(8)? as u64,
        ours: r.get(9)?,
    })
}

/// Whether two manifests name the same file: the same hash, size and envelopes (its name
/// and media type may differ).
fn same_file(a: &[u8], b: &[u8]) -> bool {
    let read = |bytes: &[u8]| crate::attachment::Manifest::decode(&mut Reader::new(bytes, "attachment")).ok();
    match (read(a), read(b)) {
        (Some(a), Some(b)) => a.hash == b.hash && a.size == b.size && a.key == b.key && a.index == b.index,
        _ => false,
    }
}

const ATTACHMENT_COLUMNS: &str = "message, group_id, topic, manifest, size, have, total, wanted, added_ms, ours";

/// A reaction, edit or delete, as received (see [`crate::group::MessageChange`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRow {
    /// The change's own envelope.
    pub id: EnvelopeId,
    pub group_id: GroupId,
    pub target: EnvelopeId,
    pub sender: [u8; 32],
    pub lamport: u64,
    pub kind: ChangeKind,
    /// The emoji (empty: withdrawn) or the new text; `None` for a delete, and for an edit of a
    /// deleted message.
    pub body: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Reaction,
    Edit,
    Delete,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Reaction => "reaction",
            ChangeKind::Edit => "edit",
            ChangeKind::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<ChangeKind> {
        [ChangeKind::Reaction, ChangeKind::Edit, ChangeKind::Delete].into_iter().find(|k| k.as_str() == s)
    }
}

/// An envelope of ours that no peer has taken yet.
pub struct OutboxEntry {
    pub id: EnvelopeId,
    pub group: Option<GroupId>,
    pub bytes: Vec<u8>,
    /// Its inner payload (what it says), kept to seal it again; none for key shares.
    pub inner: Option<Vec<u8>>,
}

fn blob32(v: Vec<u8>) -> rusqlite::Result<[u8; 32]> {
    v.try_into().map_err(|_| rusqlite::Error::InvalidColumnType(0, "32-byte blob".into(), rusqlite::types::Type::Blob))
}

fn contact_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContactRow> {
    Ok(ContactRow {
        account: blob32(r.get(0)?)?,
        name: r.get(1)?,
        card: r.get(2)?,
        status: ContactStatus::parse(&r.get::<_, String>(3)?),
        verified: r.get(4)?,
        group_id: blob32(r.get(5)?)?,
        request: r.get(6)?,
        created_ms: r.get::<_, i64>(7)? as u64,
    })
}

/// Which of `ids` the query `exists_by_id` (one `?1` parameter, an envelope id) finds.
fn ids_found(
    conn: &Connection,
    exists_by_id: &'static str,
    ids: &[EnvelopeId],
) -> Result<std::collections::HashSet<EnvelopeId>> {
    let mut stmt = conn.prepare_cached(exists_by_id)?;
    let mut found = std::collections::HashSet::new();
    for id in ids {
        if stmt.exists([&id.0[..]])? {
            found.insert(*id);
        }
    }
    Ok(found)
}

/// A message from `SELECT envelope_id, group_id, sender, lamport, sent_ms, kind, body, outgoing,
/// via`.
fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        id: EnvelopeId(blob32(r.get(0)?)?),
        group_id: blob32(r.get(1)?)?,
        sender: blob32(r.get(2)?)?,
        lamport: r.get::<_, i64>(3)? as u64,
        sent_ms: r.get::<_, i64>(4)? as u64,
        kind: r.get(5)?,
        body: r.get(6)?,
        outgoing: r.get(7)?,
        via: r.get(8)?,
        reply_to: r.get::<_, Option<Vec<u8>>>(9)?.map(|b| blob32(b).map(EnvelopeId)).transpose()?,
    })
}

/// The columns [`message_from_row`] reads, in its order.
const MESSAGE_COLUMNS: &str = "envelope_id, group_id, sender, lamport, sent_ms, kind, body, outgoing, via, reply_to";

const CONTACT_COLUMNS: &str = "account, name, card, status, verified, group_id, request, created_ms";

/// The store's typed operations.
pub trait Rows {
    fn conn(&self) -> &Connection;

    fn insert_identity(&self, id: &IdentityRow) -> Result<()> {
        self.conn().execute(
            "INSERT INTO identity (id, name, account_secret, device_sign_secret, device_dh_secret, device_cert,
                request_secret, rendezvous_seed, created_ms, holds_account_key)
                VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                id.name,
                &id.account_secret.as_ref().map_or([0u8; 32], |s| **s)[..],
                &id.device_sign_secret[..],
                &id.device_dh_secret[..],
                id.device_cert,
                &id.request_secret[..],
                &id.rendezvous_seed[..],
                id.created_ms as i64,
                id.account_secret.is_some()
            ],
        )?;
        Ok(())
    }

    fn identity(&self) -> Result<Option<IdentityRow>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name, account_secret, device_sign_secret, device_dh_secret, device_cert, request_secret,
                    rendezvous_seed, created_ms, holds_account_key FROM identity WHERE id = 1",
                [],
                |r| {
                    Ok(IdentityRow {
                        name: r.get(0)?,
                        account_secret: r
                            .get::<_, bool>(8)?
                            .then(|| blob32(r.get(1)?).map(crate::crypto::secret))
                            .transpose()?,
                        device_sign_secret: crate::crypto::secret(blob32(r.get(2)?)?),
                        device_dh_secret: crate::crypto::secret(blob32(r.get(3)?)?),
                        device_cert: r.get(4)?,
                        request_secret: crate::crypto::secret(blob32(r.get(5)?)?),
                        rendezvous_seed: blob32(r.get(6)?)?,
                        created_ms: r.get::<_, i64>(7)? as u64,
                    })
                },
            )
            .optional()?)
    }

    /// The account's devices as this device knows them.
    fn devices(&self) -> Result<Vec<DeviceRow>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT cert, name, linked_ms, revoked_ms, last_seen_ms FROM devices ORDER BY linked_ms")?;
        let rows = stmt
            .query_map([], |r| {
                let ms = |i: usize| r.get::<_, Option<i64>>(i).map(|m| m.map(|m| m as u64));
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64, ms(3)?, ms(4)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn put_device(&self, device: &[u8; 32], cert: &[u8], name: &str, linked_ms: u64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO devices (device, cert, name, linked_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(device) DO UPDATE SET cert = ?2, name = ?3",
            params![&device[..], cert, name, linked_ms as i64],
        )?;
        Ok(())
    }

    /// Every device revocation this device processed (one that no longer reads is skipped: it
    /// must not keep the home from opening).
    fn revocations(&self) -> Result<Vec<crate::devices::revocation::Revocation>> {
        let mut stmt = self.conn().prepare("SELECT revocation FROM revocations")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows.iter().filter_map(|b| crate::devices::revocation::Revocation::from_bytes(b).ok()).collect())
    }

    /// Replaces the keys behind our contact link (at a revocation).
    fn set_invite_keys(&self, request_secret: &[u8; 32], rendezvous_seed: &[u8; 32]) -> Result<()> {
        self.conn().execute(
            "UPDATE identity SET request_secret = ?1, rendezvous_seed = ?2 WHERE id = 1",
            params![&request_secret[..], &rendezvous_seed[..]],
        )?;
        Ok(())
    }

    /// Records an account's replaced link, the latest taken.
    fn put_link_rotation(&self, link: &crate::devices::rotation::RotatedLink) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO link_rotations (account, link, issued_ms) VALUES (?1, ?2, ?3)",
            params![&link.card.account[..], link.to_bytes(), link.issued_ms as i64],
        )?;
        Ok(())
    }

    /// The latest replaced link of an account we took (ours included).
    fn link_rotation(&self, account: &[u8; 32]) -> Result<Option<crate::devices::rotation::RotatedLink>> {
        let bytes: Option<Vec<u8>> = self
            .conn()
            .query_row("SELECT link FROM link_rotations WHERE account = ?1", params![&account[..]], |r| r.get(0))
            .optional()?;
        bytes.map(|b| crate::devices::rotation::RotatedLink::from_bytes(&b)).transpose()
    }

    /// When the latest link of an account we took was signed.
    fn link_rotated_ms(&self, account: &[u8; 32]) -> Result<Option<u64>> {
        Ok(self
            .conn()
            .query_row("SELECT issued_ms FROM link_rotations WHERE account = ?1", params![&account[..]], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .map(|t| t as u64))
    }

    /// A contact's card, as their replaced link gives it.
    fn set_contact_card(&self, account: &[u8; 32], card: &[u8]) -> Result<()> {
        self.conn().execute("UPDATE contacts SET card = ?2 WHERE account = ?1", params![&account[..], card])?;
        Ok(())
    }

    /// Records a revocation; says whether it was new. The device's row (if ours) is marked.
    fn put_revocation(&self, r: &crate::devices::revocation::Revocation) -> Result<bool> {
        let new = self.conn().execute(
            "INSERT OR IGNORE INTO revocations (account, device, revocation) VALUES (?1, ?2, ?3)",
            params![&r.account[..], &r.device[..], r.to_bytes()],
        )? == 1;
        // (The `devices` table holds only our own account's devices.)
        self.conn().execute(
            "UPDATE devices SET revoked_ms = ?2 WHERE device = ?1 AND ?3 = (SELECT substr(device_cert, 1, 32) FROM identity)",
            params![&r.device[..], r.revoked_ms as i64, &r.account[..]],
        )?;
        Ok(new)
    }

    /// Notes that another device of our account was heard from (one linked elsewhere, or
    /// before this one, is listed under a name of its own).
    fn device_seen(&self, device: &[u8; 32], cert: &[u8], now_ms: u64) -> Result<()> {
        let name = format!("device-{}", data_encoding::HEXLOWER.encode(&device[..3]));
        self.conn().execute(
            "INSERT INTO devices (device, cert, name, linked_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT(device) DO UPDATE SET last_seen_ms = max(coalesce(last_seen_ms, 0), ?4)",
            params![&device[..], cert, name, now_ms as i64],
        )?;
        Ok(())
    }

    fn link_offer(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.conn().query_row("SELECT offer FROM link_offer WHERE id = 1", [], |r| r.get(0)).optional()?)
    }

    fn set_link_offer(&self, offer: Option<&[u8]>) -> Result<()> {
        match offer {
            Some(bytes) => {
                self.conn().execute("INSERT OR REPLACE INTO link_offer (id, offer) VALUES (1, ?1)", [bytes])?
            }
            None => self.conn().execute("DELETE FROM link_offer", [])?,
        };
        Ok(())
    }

    /// The device's prekeys as [`crate::identity::PrekeyRing::encode`] wrote them, if any yet.
    fn prekeys(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.conn().query_row("SELECT prekeys FROM identity WHERE id = 1", [], |r| r.get(0))?)
    }

    fn set_prekeys(&self, encoded: &[u8]) -> Result<()> {
        self.conn().execute("UPDATE identity SET prekeys = ?1 WHERE id = 1", params![encoded])?;
        Ok(())
    }

    fn upsert_contact(&self, c: &ContactRow) -> Result<()> {
        self.conn().execute(
            "INSERT INTO contacts (account, name, card, status, verified, group_id, request, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(account) DO UPDATE SET name = ?2, card = ?3, status = ?4, verified = ?5, group_id = ?6, request = ?7",
            params![&c.account[..], c.name, c.card, c.status.as_str(), c.verified, &c.group_id[..], c.request, c.created_ms as i64],
        )?;
        Ok(())
    }

    fn contacts(&self) -> Result<Vec<ContactRow>> {
        let mut stmt = self.conn().prepare(&format!("SELECT {CONTACT_COLUMNS} FROM contacts ORDER BY name"))?;
        let rows = stmt.query_map([], contact_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn contact_by_account(&self, account: &[u8; 32]) -> Result<Option<ContactRow>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {CONTACT_COLUMNS} FROM contacts WHERE account = ?1"),
                [&account[..]],
                contact_from_row,
            )
            .optional()?)
    }

    fn contact_name_taken(&self, name: &str) -> Result<bool> {
        Ok(self.conn().query_row("SELECT count(*) FROM contacts WHERE name = ?1", [name], |r| r.get::<_, i64>(0))? > 0)
    }

    /// Saves a group's state and the chains that changed; a chain of `None` is deleted.
    fn save_group(&self, group: &mut Group) -> Result<()> {
        self.conn().execute(
            "INSERT INTO groups (id, state, created_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET state = ?2",
            params![&group.id[..], group.encode_state(), group.created_ms as i64],
        )?;
        for ((device, generation), chain) in group.take_dirty_chains() {
            match chain {
                Some(chain) => {
                    let mut w = Writer::new();
                    chain.encode(&mut w);
                    self.conn().execute(
                        "INSERT INTO peer_chains (group_id, device, generation, state) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(group_id, device, generation) DO UPDATE SET state = ?4",
                        params![&group.id[..], &device[..], generation, w.into_bytes()],
                    )?;
                }
                None => {
                    self.conn().execute(
                        "DELETE FROM peer_chains WHERE group_id = ?1 AND device = ?2 AND generation = ?3",
                        params![&group.id[..], &device[..], generation],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The groups we take part in, with their chains. A stranger's 1:1 conversation (a contact
    /// whose request we have not accepted) is not among them: nothing of it is followed or
    /// read until we accept (see [`Rows::load_group`]).
    fn load_groups(&self) -> Result<Vec<Group>> {
        let mut stmt = self.conn().prepare(
            "SELECT state FROM groups WHERE id NOT IN (SELECT group_id FROM contacts WHERE status = 'incoming')
             ORDER BY created_ms, id",
        )?;
        let states = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        states.iter().map(|state| self.group_with_chains(state)).collect()
    }

    /// One group by id, whoever's it is.
    fn load_group(&self, id: &GroupId) -> Result<Option<Group>> {
        let state: Option<Vec<u8>> =
            self.conn().query_row("SELECT state FROM groups WHERE id = ?1", [&id[..]], |r| r.get(0)).optional()?;
        state.map(|s| self.group_with_chains(&s)).transpose()
    }

    fn group_with_chains(&self, state: &[u8]) -> Result<Group> {
        let mut group = Group::decode_state(state)?;
        let mut chains =
            self.conn().prepare_cached("SELECT device, generation, state FROM peer_chains WHERE group_id = ?1")?;
        let rows = chains
            .query_map([&group.id[..]], |r| Ok((blob32(r.get(0)?)?, r.get::<_, u32>(1)?, r.get::<_, Vec<u8>>(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (device, generation, bytes) in rows {
            let mut reader = Reader::new(&bytes, "stored chain");
            let chain = PeerChain::decode(&mut reader)?;
            reader.finish()?;
            group.restore_chain(device, generation, chain);
        }
        Ok(group)
    }

    /// The stranger who has waited longest for an answer, and how many wait.
    fn oldest_stranger(&self) -> Result<(Option<Stranger>, usize)> {
        let waiting: i64 =
            self.conn().query_row("SELECT count(*) FROM contacts WHERE status = 'incoming'", [], |r| r.get(0))?;
        let oldest = self
            .conn()
            .query_row(
                "SELECT account, group_id FROM contacts WHERE status = 'incoming' ORDER BY created_ms, account LIMIT 1",
                [],
                |r| Ok((blob32(r.get(0)?)?, blob32(r.get(1)?)?)),
            )
            .optional()?;
        Ok((oldest, waiting as usize))
    }

    /// Forgets a stranger whose request was never answered: the contact, their conversation and
    /// whatever of it was kept.
    fn forget_stranger(&self, account: &[u8; 32], group: &GroupId) -> Result<()> {
        self.conn().execute("DELETE FROM contacts WHERE account = ?1 AND status = 'incoming'", [&account[..]])?;
        self.conn().execute("DELETE FROM held_invites WHERE from_account = ?1", [&account[..]])?;
        self.conn().execute("DELETE FROM peer_chains WHERE group_id = ?1", [&group[..]])?;
        self.conn().execute("DELETE FROM envelopes WHERE group_id = ?1", [&group[..]])?;
        self.conn().execute("DELETE FROM attachments WHERE group_id = ?1", [&group[..]])?;
        self.conn().execute("DELETE FROM groups WHERE id = ?1", [&group[..]])?;
        Ok(())
    }

    /// Forgets a contact of any status and everything of our 1:1 conversation with them: its
    /// state, envelopes, messages and what refers to them. Groups shared with them are kept.
    fn forget_contact(&self, account: &[u8; 32], group: &GroupId) -> Result<()> {
        let conn = self.conn();
        let in_group = "SELECT id FROM envelopes WHERE group_id = ?1";
        conn.execute("DELETE FROM contacts WHERE account = ?1", [&account[..]])?;
        conn.execute("DELETE FROM held_invites WHERE from_account = ?1", [&account[..]])?;
        for table in ["receipts", "outbox", "expired"] {
            conn.execute(&format!("DELETE FROM {table} WHERE envelope_id IN ({in_group})"), [&group[..]])?;
        }
        conn.execute(&format!("DELETE FROM replaced WHERE replacement IN ({in_group})"), [&group[..]])?;
        for (table, column) in [
            ("messages", "group_id"),
            ("message_changes", "group_id"),
            ("timers", "group_id"),
            ("read_marks", "group_id"),
            ("retention", "group_id"),
            ("synced_through", "group_id"),
            ("peer_chains", "group_id"),
            ("attachments", "group_id"),
            ("groups", "id"),
        ] {
            conn.execute(&format!("DELETE FROM {table} WHERE {column} = ?1"), [&group[..]])?;
        }
        // A file another conversation carries too keeps its pieces (they are stored under the
        // conversation whose message came last).
        conn.execute(
            "DELETE FROM envelopes WHERE group_id = ?1 AND (topic IS NULL OR topic NOT IN (SELECT topic FROM attachments))",
            [&group[..]],
        )?;
        Ok(())
    }

    fn is_blocked(&self, account: &[u8; 32]) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT count(*) FROM blocked WHERE account = ?1", [&account[..]], |r| r.get::<_, i64>(0))?
            > 0)
    }

    fn blocked(&self) -> Result<std::collections::BTreeSet<[u8; 32]>> {
        let mut stmt = self.conn().prepare("SELECT account FROM blocked")?;
        let rows = stmt.query_map([], |r| blob32(r.get(0)?))?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn set_blocked(&self, account: &[u8; 32], blocked: bool, now_ms: u64) -> Result<()> {
        if blocked {
            self.conn().execute(
                "INSERT OR IGNORE INTO blocked (account, since_ms) VALUES (?1, ?2)",
                params![&account[..], now_ms as i64],
            )?;
        } else {
            self.conn().execute("DELETE FROM blocked WHERE account = ?1", [&account[..]])?;
        }
        Ok(())
    }

    /// Groups we asked to leave and are still members of, waiting for an admin to remove us.
    fn left_groups(&self) -> Result<std::collections::BTreeSet<GroupId>> {
        let mut stmt = self.conn().prepare("SELECT group_id FROM left_groups")?;
        let rows = stmt.query_map([], |r| blob32(r.get(0)?))?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn set_left(&self, group: &GroupId, now_ms: u64) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO left_groups (group_id, since_ms) VALUES (?1, ?2)",
            params![&group[..], now_ms as i64],
        )?;
        Ok(())
    }

    /// The members who asked to leave a group (its `left` lines), whether or not they are out.
    fn leave_requests(&self, group: &GroupId) -> Result<std::collections::BTreeSet<[u8; 32]>> {
        let mut stmt =
            self.conn().prepare("SELECT DISTINCT sender FROM messages WHERE group_id = ?1 AND kind = 'left'")?;
        let rows = stmt.query_map([&group[..]], |r| blob32(r.get(0)?))?.collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// When an envelope reached this device (by this device's clock).
    fn received_ms(&self, id: &EnvelopeId) -> Result<Option<u64>> {
        let ms: Option<i64> = self
            .conn()
            .query_row("SELECT received_ms FROM envelopes WHERE id = ?1", [&id.0[..]], |r| r.get(0))
            .optional()?;
        Ok(ms.map(|m| m as u64))
    }

    fn clear_left(&self, group: &GroupId) -> Result<()> {
        self.conn().execute("DELETE FROM left_groups WHERE group_id = ?1", [&group[..]])?;
        Ok(())
    }

    fn has_envelope(&self, id: &EnvelopeId) -> Result<Option<EnvelopeStatus>> {
        let status: Option<String> = self
            .conn()
            .query_row("SELECT status FROM envelopes WHERE id = ?1", [&id.0[..]], |r| r.get(0))
            .optional()?;
        Ok(status.map(|s| match s.as_str() {
            "sent" => EnvelopeStatus::Sent,
            "waiting" => EnvelopeStatus::Waiting,
            _ => EnvelopeStatus::Opened,
        }))
    }

    fn put_envelope(
        &self,
        id: &EnvelopeId,
        group: Option<&GroupId>,
        bytes: &[u8],
        status: EnvelopeStatus,
        now_ms: u64,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO envelopes (id, group_id, bytes, status, received_ms, topic) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET status = ?4, group_id = ?2",
            params![&id.0[..], group.map(|g| &g[..]), bytes, status.as_str(), now_ms as i64, &bytes[1..17]],
        )?;
        if status == EnvelopeStatus::Sent {
            self.conn().execute("INSERT OR IGNORE INTO outbox (envelope_id) VALUES (?1)", [&id.0[..]])?;
        }
        Ok(())
    }

    /// Parks an envelope that waits (for its sender's key, the messages before it in its chain,
    /// or the membership changes it builds on) at its place in its sender's chains.
    fn park_envelope(
        &self,
        id: &EnvelopeId,
        group: &GroupId,
        bytes: &[u8],
        place: &ParkedPlace,
        known: bool,
        now_ms: u64,
    ) -> Result<()> {
        self.put_envelope(id, Some(group), bytes, EnvelopeStatus::Waiting, now_ms)?;
        self.conn().execute(
            "UPDATE envelopes SET parked_at = ?2, parked_known = ?3 WHERE id = ?1",
            params![&id.0[..], &place.0[..], known],
        )?;
        Ok(())
    }

    /// Up to `limit` parked envelopes of a group after `after`, in their senders' chain order.
    fn parked_page(
        &self,
        group: &GroupId,
        after: Option<&ParkedKey>,
        limit: usize,
    ) -> Result<Vec<(ParkedKey, Vec<u8>)>> {
        let (place, id) = after.map_or(([0u8; 40].to_vec(), Vec::new()), |(p, i)| (p.0.to_vec(), i.0.to_vec()));
        let mut stmt = self.conn().prepare_cached(
            "SELECT parked_at, id, bytes FROM envelopes
             WHERE status = 'waiting' AND group_id = ?1 AND (parked_at, id) > (?2, ?3)
             ORDER BY parked_at, id LIMIT ?4",
        )?;
        let rows = stmt
            .query_map(params![&group[..], place, id, limit as i64], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(place, id, bytes)| {
                let place =
                    ParkedPlace(place.try_into().map_err(|_| Error::Internal("a parked place is not 40 bytes"))?);
                let id = EnvelopeId(id.try_into().map_err(|_| Error::Internal("an envelope id is not 32 bytes"))?);
                Ok(((place, id), bytes))
            })
            .collect()
    }

    /// How many bytes are parked in a group by one known sender device (`Some`), or by all the
    /// devices the group did not know when they parked (`None`).
    fn parked_bytes(&self, group: &GroupId, device: Option<&[u8; 32]>) -> Result<usize> {
        let bytes: i64 = match device {
            Some(device) => {
                let (from, to) = (ParkedPlace::first_of(device), ParkedPlace::last_of(device));
                self.conn().query_row(
                    "SELECT ifnull(sum(length(bytes)), 0) FROM envelopes
                     WHERE status = 'waiting' AND group_id = ?1 AND parked_at BETWEEN ?2 AND ?3 AND parked_known = 1",
                    params![&group[..], &from.0[..], &to.0[..]],
                    |r| r.get(0),
                )?
            }
            None => self.conn().query_row(
                "SELECT ifnull(sum(length(bytes)), 0) FROM envelopes
                 WHERE status = 'waiting' AND group_id = ?1 AND parked_known = 0",
                [&group[..]],
                |r| r.get(0),
            )?,
        };
        Ok(bytes as usize)
    }

    /// Drops parked envelopes that came before `before_ms`: what they wait for has not come in
    /// all that time. Returns how many.
    fn expire_parked(&self, before_ms: u64) -> Result<usize> {
        Ok(self
            .conn()
            .execute("DELETE FROM envelopes WHERE status = 'waiting' AND received_ms < ?1", [before_ms as i64])?)
    }

    fn all_envelopes(&self) -> Result<Vec<Vec<u8>>> {
        let mut stmt = self.conn().prepare("SELECT bytes FROM envelopes ORDER BY received_ms, id")?;
        let rows = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Short ids (16-byte prefixes) of the envelopes held on a topic.
    fn short_ids_on_topic(&self, topic: &[u8; 16]) -> Result<Vec<[u8; 16]>> {
        let mut stmt = self.conn().prepare("SELECT substr(id, 1, 16) FROM envelopes WHERE topic = ?1")?;
        let rows = stmt
            .query_map([&topic[..]], |r| {
                let v: Vec<u8> = r.get(0)?;
                v.try_into().map_err(|_| {
                    rusqlite::Error::InvalidColumnType(0, "16-byte blob".into(), rusqlite::types::Type::Blob)
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The envelope on `topic` whose id starts with `short`.
    fn envelope_by_short_id(&self, topic: &[u8; 16], short: &[u8; 16]) -> Result<Option<Vec<u8>>> {
        let mut low = [0u8; 32];
        low[..16].copy_from_slice(short);
        let mut high = [0xffu8; 32];
        high[..16].copy_from_slice(short);
        Ok(self
            .conn()
            .query_row(
                "SELECT bytes FROM envelopes WHERE id BETWEEN ?1 AND ?2 AND topic = ?3 LIMIT 1",
                params![&low[..], &high[..], &topic[..]],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Short ids of the envelopes held on any of `topics`.
    fn short_ids_on_topics(&self, topics: &[[u8; 16]]) -> Result<Vec<[u8; 16]>> {
        let mut out = Vec::new();
        for topic in topics {
            out.extend(self.short_ids_on_topic(topic)?);
        }
        Ok(out)
    }

    /// The envelope whose id starts with `short`, whatever its topic, with its topic.
    fn envelope_by_short_id_any(&self, short: &[u8; 16]) -> Result<Option<([u8; 16], Vec<u8>)>> {
        let mut low = [0u8; 32];
        low[..16].copy_from_slice(short);
        let mut high = [0xffu8; 32];
        high[..16].copy_from_slice(short);
        let row: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT bytes FROM envelopes WHERE id BETWEEN ?1 AND ?2 LIMIT 1",
                params![&low[..], &high[..]],
                |r| r.get(0),
            )
            .optional()?;
        Ok(row.filter(|b| b.len() > 17).map(|b| (b[1..17].try_into().expect("checked"), b)))
    }

    /// The last period through which a conversation is caught up, if recorded.
    fn synced_through(&self, group: &GroupId) -> Result<Option<u64>> {
        Ok(self
            .conn()
            .query_row("SELECT period FROM synced_through WHERE group_id = ?1", [&group[..]], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|p| p as u64))
    }

    /// Records the period a conversation is caught up through.
    fn set_synced_through(&self, group: &GroupId, period: u64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO synced_through (group_id, period) VALUES (?1, ?2)
             ON CONFLICT(group_id) DO UPDATE SET period = ?2",
            params![&group[..], period as i64],
        )?;
        Ok(())
    }

    /// Records how received messages came; the first path to bring one is kept.
    fn set_via(&self, ids: &[EnvelopeId], via: &str) -> Result<()> {
        let mut stmt =
            self.conn().prepare_cached("UPDATE messages SET via = ?2 WHERE envelope_id = ?1 AND via IS NULL")?;
        for id in ids {
            stmt.execute(params![&id.0[..], via])?;
        }
        Ok(())
    }

    fn insert_message(&self, m: &MessageRow) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO messages
                 (envelope_id, group_id, sender, lamport, sent_ms, kind, body, outgoing, reply_to)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                &m.id.0[..],
                &m.group_id[..],
                &m.sender[..],
                m.lamport as i64,
                m.sent_ms as i64,
                m.kind,
                m.body,
                m.outgoing,
                m.reply_to.map(|r| r.0.to_vec()),
            ],
        )?;
        // Its sender deleted it before it reached us: its text is not kept. (Every received
        // message comes through here, a catch-up's thousands too: one indexed look for a change
        // naming it, and the erasing's statements only when there is one.)
        let changed = self
            .conn()
            .prepare_cached("SELECT 1 FROM message_changes WHERE target = ?1 LIMIT 1")?
            .exists([&m.id.0[..]])?;
        if changed {
            self.erase_deleted(&m.id)?;
        }
        if m.kind != "text" {
            return Ok(());
        }
        // A text disappears by the conversation's timer set last before it, among the timers
        // this device holds now, counted from when it reached this device.
        self.conn().execute(
            "UPDATE messages SET expires_ms =
                 (SELECT e.received_ms FROM envelopes e WHERE e.id = messages.envelope_id)
                 + (SELECT t.keep_ms FROM timers t WHERE t.group_id = messages.group_id AND t.lamport < messages.lamport
                    ORDER BY t.lamport DESC, t.envelope_id DESC LIMIT 1)
             WHERE envelope_id = ?1 AND kind = 'text' AND expires_ms IS NULL",
            [&m.id.0[..]],
        )?;
        Ok(())
    }

    /// Stores a reaction, edit or delete (once: a repeat of its envelope changes nothing). Of
    /// each sender's reactions, and edits, to a message only the latest is kept (what a member
    /// sends costs us one row per message, not one per change). A change its sender made to a
    /// message of theirs sealed again names the message's first envelope: it goes to the new
    /// one. A delete empties its target's text, and its edits', when they are from its sender.
    fn insert_change(&self, c: &ChangeRow) -> Result<()> {
        let conn = self.conn();
        let target: Vec<u8> = conn
            .query_row(
                "SELECT replacement FROM replaced WHERE original = ?1 AND sender = ?2",
                params![&c.target.0[..], &c.sender[..]],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_else(|| c.target.0.to_vec());
        conn.execute(
            "INSERT OR IGNORE INTO message_changes (envelope_id, group_id, target, sender, lamport, kind, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![&c.id.0[..], &c.group_id[..], target, &c.sender[..], c.lamport as i64, c.kind.as_str(), c.body],
        )?;
        if c.kind != ChangeKind::Delete {
            conn.execute(
                "DELETE FROM message_changes WHERE target = ?1 AND sender = ?2 AND kind = ?3 AND group_id = ?4
                 AND (lamport, envelope_id) < (SELECT lamport, envelope_id FROM message_changes
                     WHERE target = ?1 AND sender = ?2 AND kind = ?3 AND group_id = ?4
                     ORDER BY lamport DESC, envelope_id DESC LIMIT 1)",
                params![target, &c.sender[..], c.kind.as_str(), &c.group_id[..]],
            )?;
        }
        self.erase_deleted(&EnvelopeId(blob32(target)?))
    }

    /// Records a disappearing-message timer set in `group` by message `id` (once); a group keeps
    /// its last 64 (what came before them has long disappeared, or never will).
    fn add_timer(&self, group: &GroupId, id: &EnvelopeId, lamport: u64, keep_ms: Option<u64>) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO timers (envelope_id, group_id, lamport, keep_ms) VALUES (?1, ?2, ?3, ?4)",
            params![&id.0[..], &group[..], lamport as i64, keep_ms.map(|k| k as i64)],
        )?;
        self.conn().execute(
            "DELETE FROM timers WHERE group_id = ?1 AND envelope_id NOT IN (
                 SELECT envelope_id FROM timers WHERE group_id = ?1 ORDER BY lamport DESC, envelope_id DESC LIMIT 64)",
            [&group[..]],
        )?;
        Ok(())
    }

    /// A group's disappearing-message timers, oldest first: (Lamport clock, keep_ms).
    fn timers(&self, group: &GroupId) -> Result<Vec<(u64, Option<u64>)>> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT lamport, keep_ms FROM timers WHERE group_id = ?1 ORDER BY lamport, envelope_id")?;
        let rows = stmt
            .query_map([&group[..]], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<i64>>(1)?.map(|k| k as u64)))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Whether any text's disappearing timer ran out by `now`.
    fn anything_disappears_by(&self, now: u64) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM messages WHERE expires_ms IS NOT NULL AND expires_ms <= ?1 LIMIT 1",
                [now as i64],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Deletes the texts whose disappearing timer ran out by `now`, with their reactions and
    /// edits (whatever their own clocks) and what refers to them, as retention does; how many
    /// rows went. One indexed statement whatever the number of conversations and timers.
    fn forget_disappeared(&self, now: u64) -> Result<usize> {
        let texts = "SELECT envelope_id FROM messages WHERE expires_ms IS NOT NULL AND expires_ms <= ?1";
        let changes = format!("SELECT envelope_id FROM message_changes WHERE kind != 'delete' AND target IN ({texts})");
        let conn = self.conn();
        let now = now as i64;
        conn.execute(&format!("DELETE FROM receipts WHERE envelope_id IN ({texts})"), [now])?;
        conn.execute(&format!("UPDATE outbox SET inner = NULL WHERE envelope_id IN ({texts} UNION {changes})"), [now])?;
        conn.execute(&format!("DELETE FROM replaced WHERE replacement IN ({texts})"), [now])?;
        let changed = conn.execute(&format!("DELETE FROM message_changes WHERE envelope_id IN ({changes})"), [now])?;
        let gone = conn.execute(&format!("DELETE FROM messages WHERE envelope_id IN ({texts})"), [now])?;
        self.forget_gone_attachments()?;
        Ok(changed + gone)
    }

    /// A change of ours sealed again: it keeps its place under its new envelope.
    fn rename_change(&self, old: &EnvelopeId, new: &EnvelopeId, lamport: u64) -> Result<()> {
        self.conn().execute(
            "UPDATE message_changes SET envelope_id = ?2, lamport = ?3 WHERE envelope_id = ?1",
            params![&old.0[..], &new.0[..], lamport as i64],
        )?;
        Ok(())
    }

    /// If text message `id` and a delete of it by its own sender, in its conversation, are both
    /// here: its text, and the text of its sender's edits, are emptied (secure_delete overwrites
    /// the freed bytes), edits and deletes by anyone else are dropped (they change nothing), and
    /// our own envelopes of it that no peer took yet are not sent at all.
    fn erase_deleted(&self, id: &EnvelopeId) -> Result<()> {
        let conn = self.conn();
        // Once the message is here, what others claim to edit or delete of it is dead weight.
        conn.execute(
            "DELETE FROM message_changes WHERE target = ?1 AND kind IN ('edit', 'delete')
             AND EXISTS (SELECT 1 FROM messages m WHERE m.envelope_id = ?1 AND m.sender != message_changes.sender)",
            [&id.0[..]],
        )?;
        let deleted = "EXISTS (SELECT 1 FROM message_changes d JOIN messages m ON m.envelope_id = d.target
                        WHERE d.target = ?1 AND d.kind = 'delete' AND d.sender = m.sender
                        AND d.group_id = m.group_id AND m.kind = 'text')";
        conn.execute(
            &format!("UPDATE messages SET body = '' WHERE envelope_id = ?1 AND body != '' AND {deleted}"),
            [&id.0[..]],
        )?;
        conn.execute(
            &format!(
                "UPDATE message_changes SET body = NULL WHERE target = ?1 AND kind = 'edit' AND body IS NOT NULL
                 AND sender = (SELECT sender FROM messages WHERE envelope_id = ?1) AND {deleted}"
            ),
            [&id.0[..]],
        )?;
        // Ours that no peer took yet, the message and its edits: not sent at all (the text would
        // go out, and wait in the outbox to be sealed again).
        let unsent = "SELECT envelope_id FROM outbox WHERE envelope_id = ?1
                      OR envelope_id IN (SELECT envelope_id FROM message_changes WHERE target = ?1 AND kind = 'edit')";
        for table in ["envelopes WHERE id", "outbox WHERE envelope_id"] {
            conn.execute(&format!("DELETE FROM {table} IN ({unsent}) AND {deleted}"), [&id.0[..]])?;
        }
        self.forget_deleted_attachment(id)?;
        Ok(())
    }

    /// The reactions, edits and deletes naming `target` within its conversation `group`,
    /// oldest first by Lamport clock, then id (a change sent in another conversation changes
    /// nothing here).
    fn changes_of(&self, target: &EnvelopeId, group: &GroupId) -> Result<Vec<ChangeRow>> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT envelope_id, group_id, target, sender, lamport, kind, body FROM message_changes
             WHERE target = ?1 AND group_id = ?2 ORDER BY lamport, envelope_id",
        )?;
        let rows = stmt
            .query_map(params![&target.0[..], &group[..]], |r| {
                Ok((
                    blob32(r.get(0)?)?,
                    blob32(r.get(1)?)?,
                    blob32(r.get(2)?)?,
                    blob32(r.get(3)?)?,
                    r.get::<_, i64>(4)? as u64,
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, group_id, target, sender, lamport, kind, body)| {
                Some(ChangeRow {
                    id: EnvelopeId(id),
                    group_id,
                    target: EnvelopeId(target),
                    sender,
                    lamport,
                    kind: ChangeKind::parse(&kind)?,
                    body,
                })
            })
            .collect())
    }

    /// The last `limit` messages of a conversation in causal order (Lamport clock, then id),
    /// oldest first.
    /// The messages of `groups`, newest first (by sent time, then order), each handed to `take`
    /// until it says to stop: what needs only the newest (a grant's history, under its budget)
    /// never holds every message in memory.
    fn newest_messages(&self, groups: &[GroupId], mut take: impl FnMut(MessageRow) -> bool) -> Result<()> {
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages
             ORDER BY sent_ms DESC, lamport DESC"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let row = message_from_row(r)?;
            if groups.contains(&row.group_id) && !take(row) {
                break;
            }
        }
        Ok(())
    }

    fn messages(&self, group: &GroupId, limit: usize) -> Result<Vec<MessageRow>> {
        self.messages_before(group, None, limit)
    }

    /// The `limit` messages that come just before the message `before` (or the last ones when
    /// `None`), oldest first. Paging by a message rather than an offset keeps pages stable while
    /// new messages arrive. `NotFound` when `before` is not in this conversation.
    fn messages_before(&self, group: &GroupId, before: Option<&EnvelopeId>, limit: usize) -> Result<Vec<MessageRow>> {
        let cursor: Option<i64> = match before {
            None => None,
            Some(id) => Some(
                self.conn()
                    .query_row(
                        "SELECT lamport FROM messages WHERE group_id = ?1 AND envelope_id = ?2",
                        params![&group[..], &id.0[..]],
                        |r| r.get(0),
                    )
                    .optional()?
                    .ok_or_else(|| Error::NotFound { what: "message", name: id.to_hex() })?,
            ),
        };
        let mut stmt = self.conn().prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM (
                 SELECT * FROM messages WHERE group_id = ?1 AND (?3 IS NULL OR (lamport, envelope_id) < (?3, ?4))
                 ORDER BY lamport DESC, envelope_id DESC LIMIT ?2
             ) ORDER BY lamport, envelope_id"
        ))?;
        let before_id = before.map(|id| id.0.to_vec());
        let rows = stmt
            .query_map(params![&group[..], limit as i64, cursor, before_id], message_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn request_seen(&self, hash: &[u8; 32]) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT count(*) FROM seen_requests WHERE hash = ?1", [&hash[..]], |r| r.get::<_, i64>(0))?
            > 0)
    }

    /// Envelopes waiting for keys, in one group or in all.
    fn count_waiting(&self, group: Option<&GroupId>) -> Result<usize> {
        let n: i64 = match group {
            Some(g) => self.conn().query_row(
                "SELECT count(*) FROM envelopes WHERE status = 'waiting' AND group_id = ?1",
                [&g[..]],
                |r| r.get(0),
            )?,
            None => {
                self.conn().query_row("SELECT count(*) FROM envelopes WHERE status = 'waiting'", [], |r| r.get(0))?
            }
        };
        Ok(n as usize)
    }

    /// Records that `member` has (1) or read (2) our message `id` in `group`; true when this
    /// moved the state on. Ids that are not our messages in that group are ignored, so a member
    /// cannot make us store anything for ids they invent.
    fn record_receipt(&self, group: &GroupId, id: &EnvelopeId, member: &[u8; 32], state: u8) -> Result<bool> {
        let ours: bool = self.conn().query_row(
            "SELECT count(*) FROM messages WHERE envelope_id = ?1 AND group_id = ?2 AND outgoing = 1 AND kind = 'text'",
            params![&id.0[..], &group[..]],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !ours {
            return Ok(false);
        }
        let changed = self.conn().execute(
            "INSERT INTO receipts (envelope_id, member, state) VALUES (?1, ?2, ?3)
             ON CONFLICT (envelope_id, member) DO UPDATE SET state = excluded.state WHERE excluded.state > state",
            params![&id.0[..], &member[..], state],
        )?;
        // A member has it, so a peer took it: it leaves the outbox, and no later "sent" or
        // "expired" can follow "delivered".
        self.outbox_remove(id)?;
        Ok(changed > 0)
    }

    /// For each of `ids` that has receipts: how many members acknowledged it, and how many
    /// read it. By id, through the table's key, so the cost follows the page or the receipt at
    /// hand, not all the receipts a conversation ever got.
    fn receipt_counts(&self, ids: &[EnvelopeId]) -> Result<std::collections::HashMap<EnvelopeId, (u32, u32)>> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT count(*), coalesce(sum(state >= 2), 0) FROM receipts WHERE envelope_id = ?1")?;
        let mut counts = std::collections::HashMap::new();
        for id in ids {
            let (acks, reads) =
                stmt.query_row([&id.0[..]], |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u32)))?;
            if acks > 0 {
                counts.insert(*id, (acks, reads));
            }
        }
        Ok(counts)
    }

    /// Which of `ids` are still in the outbox (no peer took them yet).
    fn queued_among(&self, ids: &[EnvelopeId]) -> Result<std::collections::HashSet<EnvelopeId>> {
        ids_found(self.conn(), "SELECT 1 FROM outbox WHERE envelope_id = ?1", ids)
    }

    /// How far we read `group`: its last message we saw, by (Lamport clock, id).
    fn read_mark(&self, group: &GroupId) -> Result<Option<(u64, EnvelopeId)>> {
        Ok(self
            .conn()
            .query_row("SELECT lamport, envelope_id FROM read_marks WHERE group_id = ?1", [&group[..]], |r| {
                Ok((r.get::<_, i64>(0)? as u64, EnvelopeId(blob32(r.get(1)?)?)))
            })
            .optional()?)
    }

    fn set_read_mark(&self, group: &GroupId, lamport: u64, id: &EnvelopeId) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO read_marks (group_id, lamport, envelope_id) VALUES (?1, ?2, ?3)",
            params![&group[..], lamport as i64, &id.0[..]],
        )?;
        Ok(())
    }

    /// Others' text messages in `group` after our read mark, oldest first, at most `limit`
    /// (`me`: ours from another of our devices are not unread).
    /// Moves a conversation's read mark to the newest of `read` that this device holds, if
    /// that is further than the mark (another of our devices read them).
    fn advance_read_mark(&self, group: &GroupId, read: &[EnvelopeId]) -> Result<()> {
        let mut newest: Option<(u64, EnvelopeId)> = None;
        for id in read {
            if let Some(m) = self.message(id)?
                && m.group_id == *group
                && newest.is_none_or(|n| (m.lamport, m.id) > n)
            {
                newest = Some((m.lamport, m.id));
            }
        }
        let Some((lamport, id)) = newest else { return Ok(()) };
        if self.read_mark(group)?.is_none_or(|(l, i)| (lamport, id) > (l, i)) {
            self.set_read_mark(group, lamport, &id)?;
        }
        Ok(())
    }

    fn unread(&self, group: &GroupId, me: &[u8; 32], limit: usize) -> Result<Vec<(u64, EnvelopeId)>> {
        let (lamport, id) = self.read_mark(group)?.map_or((-1, vec![]), |(l, id)| (l as i64, id.0.to_vec()));
        let mut stmt = self.conn().prepare(
            "SELECT lamport, envelope_id FROM messages
             WHERE group_id = ?1 AND outgoing = 0 AND kind = 'text' AND (lamport, envelope_id) > (?2, ?3)
               AND sender != ?5
             ORDER BY lamport, envelope_id LIMIT ?4",
        )?;
        let rows = stmt
            .query_map(params![&group[..], lamport, id, limit as i64, &me[..]], |r| {
                Ok((r.get::<_, i64>(0)? as u64, EnvelopeId(blob32(r.get(1)?)?)))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn().query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn().execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)", [key, value])?;
        Ok(())
    }

    /// Our envelopes that no peer has taken yet, oldest first, at most `limit`.
    fn outbox(&self, limit: usize) -> Result<Vec<Vec<u8>>> {
        let mut stmt = self.conn().prepare(
            "SELECT e.bytes FROM outbox o JOIN envelopes e ON e.id = o.envelope_id ORDER BY e.rowid LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// What waits in the outbox (at most `limit`, oldest first), with what each says.
    fn outbox_entries(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let mut stmt = self.conn().prepare(
            "SELECT e.id, e.group_id, e.bytes, o.inner FROM outbox o JOIN envelopes e ON e.id = o.envelope_id
             ORDER BY e.rowid LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(OutboxEntry {
                    id: EnvelopeId(blob32(r.get(0)?)?),
                    group: r.get::<_, Option<Vec<u8>>>(1)?.map(blob32).transpose()?,
                    bytes: r.get(2)?,
                    inner: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Notes what an outbox envelope says, for sealing it again should it wait too long.
    fn set_outbox_inner(&self, id: &EnvelopeId, inner: &[u8]) -> Result<()> {
        self.conn().execute("UPDATE outbox SET inner = ?2 WHERE envelope_id = ?1", params![&id.0[..], inner])?;
        Ok(())
    }

    /// Forgets an envelope of ours that never left and was sealed again: nobody may be handed
    /// both.
    fn forget_unsent(&self, id: &EnvelopeId) -> Result<()> {
        self.conn().execute("DELETE FROM outbox WHERE envelope_id = ?1", [&id.0[..]])?;
        self.conn().execute("DELETE FROM envelopes WHERE id = ?1", [&id.0[..]])?;
        Ok(())
    }

    /// A message of ours sealed again: it keeps its place in history under its new envelope.
    /// Our message `old`, sealed again as `new`: it takes the new id and place, and `old`, should
    /// it come back from a peer that took it after all, is not shown again.
    fn rename_message(&self, old: &EnvelopeId, new: &EnvelopeId, lamport: u64) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO replaced (original, sender, replacement)
             SELECT envelope_id, sender, ?2 FROM messages WHERE envelope_id = ?1",
            params![&old.0[..], &new.0[..]],
        )?;
        self.conn().execute(
            "UPDATE messages SET envelope_id = ?2, lamport = ?3 WHERE envelope_id = ?1",
            params![&old.0[..], &new.0[..], lamport as i64],
        )?;
        self.conn()
            .execute("UPDATE message_changes SET target = ?2 WHERE target = ?1", params![&old.0[..], &new.0[..]])?;
        self.conn().execute(
            "UPDATE OR IGNORE attachments SET message = ?2 WHERE message = ?1",
            params![&old.0[..], &new.0[..]],
        )?;
        Ok(())
    }

    /// Records that a message of ours cannot be delivered, and why.
    fn mark_expired(&self, id: &EnvelopeId, reason: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO expired (envelope_id, reason) VALUES (?1, ?2) ON CONFLICT(envelope_id) DO UPDATE SET reason = ?2",
            params![&id.0[..], reason],
        )?;
        Ok(())
    }

    /// Why a message of ours cannot be delivered, if it cannot.
    fn expired_reason(&self, id: &EnvelopeId) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT reason FROM expired WHERE envelope_id = ?1", [&id.0[..]], |r| r.get(0))
            .optional()?)
    }

    /// One message, by id.
    fn message(&self, id: &EnvelopeId) -> Result<Option<MessageRow>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE envelope_id = ?1"),
                [&id.0[..]],
                message_from_row,
            )
            .optional()?)
    }

    /// Records that `sender`'s message `replacement` replaces their `original` (it was sealed
    /// again) and takes `original` out of the history. Only the sender's own text is replaced:
    /// a member naming someone else's message replaces nothing. Whether `original` was shown.
    fn replace_message(
        &self,
        group: &GroupId,
        original: &EnvelopeId,
        sender: &[u8; 32],
        replacement: &EnvelopeId,
    ) -> Result<bool> {
        self.conn().execute(
            "INSERT OR IGNORE INTO replaced (original, sender, replacement) VALUES (?1, ?2, ?3)",
            params![&original.0[..], &sender[..], &replacement.0[..]],
        )?;
        let removed = self.conn().execute(
            "DELETE FROM messages WHERE envelope_id = ?1 AND sender = ?2 AND kind = 'text' AND group_id = ?3",
            params![&original.0[..], &sender[..], &group[..]],
        )?;
        // It was the sender's: what members did to it goes with it to its new envelope.
        if removed > 0 {
            self.conn().execute(
                "UPDATE OR IGNORE message_changes SET target = ?2 WHERE target = ?1 AND group_id = ?3",
                params![&original.0[..], &replacement.0[..], &group[..]],
            )?;
            self.conn().execute(
                "UPDATE OR IGNORE attachments SET message = ?2 WHERE message = ?1 AND group_id = ?3",
                params![&original.0[..], &replacement.0[..], &group[..]],
            )?;
            self.erase_deleted(replacement)?;
        }
        Ok(removed > 0)
    }

    /// Whether `sender`'s message `id` was replaced by a later sealing of it.
    fn is_replaced(&self, id: &EnvelopeId, sender: &[u8; 32]) -> Result<bool> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM replaced WHERE original = ?1 AND sender = ?2",
                params![&id.0[..], &sender[..]],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// A message of ours that expired is on its way again.
    fn clear_expired(&self, id: &EnvelopeId) -> Result<()> {
        self.conn().execute("DELETE FROM expired WHERE envelope_id = ?1", [&id.0[..]])?;
        Ok(())
    }

    /// Which of these messages cannot be delivered.
    fn expired_among(&self, ids: &[EnvelopeId]) -> Result<std::collections::HashSet<EnvelopeId>> {
        ids_found(self.conn(), "SELECT 1 FROM expired WHERE envelope_id = ?1", ids)
    }

    fn outbox_len(&self) -> Result<usize> {
        Ok(self.conn().query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))? as usize)
    }

    /// Takes an envelope out of the outbox; true if it was there.
    fn outbox_remove(&self, id: &EnvelopeId) -> Result<bool> {
        Ok(self.conn().execute("DELETE FROM outbox WHERE envelope_id = ?1", [&id.0[..]])? > 0)
    }

    fn is_message(&self, id: &EnvelopeId) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT count(*) FROM messages WHERE envelope_id = ?1", [&id.0[..]], |r| r.get::<_, i64>(0))?
            > 0)
    }

    /// Remembers an address a peer was reached at; keeps the `keep` most recent.
    fn note_peer_addr(&self, addr: &str, now_ms: u64, keep: usize) -> Result<()> {
        self.conn().execute(
            "INSERT INTO peer_addrs (addr, last_ms) VALUES (?1, ?2) ON CONFLICT(addr) DO UPDATE SET last_ms = ?2",
            params![addr, now_ms as i64],
        )?;
        self.conn().execute(
            "DELETE FROM peer_addrs WHERE addr NOT IN (SELECT addr FROM peer_addrs ORDER BY last_ms DESC LIMIT ?1)",
            [keep as i64],
        )?;
        Ok(())
    }

    /// Addresses peers were reached at, most recent first.
    fn peer_addrs(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn().prepare("SELECT addr FROM peer_addrs ORDER BY last_ms DESC")?;
        let rows = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Forgets our contact request to `account` once they have shown they received it.
    fn clear_request(&self, account: &[u8; 32]) -> Result<()> {
        self.conn().execute("UPDATE contacts SET request = NULL WHERE account = ?1", [&account[..]])?;
        Ok(())
    }

    /// Keeps an invitation from a contact we have not accepted yet.
    fn hold_invite(&self, id: &EnvelopeId, from: &DeviceCert, welcome: &Welcome) -> Result<()> {
        let mut cert = Writer::new();
        from.encode(&mut cert);
        let inner =
            Inner { lamport: 0, sent_ms: 0, parents: vec![], content: Content::Invite(Box::new(welcome.clone())) };
        self.conn().execute(
            "INSERT OR IGNORE INTO held_invites (envelope_id, from_account, from_cert, inner) VALUES (?1, ?2, ?3, ?4)",
            params![&id.0[..], &from.account[..], cert.into_bytes(), inner.encode()],
        )?;
        Ok(())
    }

    fn held_invites(&self, from: &[u8; 32]) -> Result<Vec<(EnvelopeId, DeviceCert, Welcome)>> {
        let mut stmt =
            self.conn().prepare("SELECT envelope_id, from_cert, inner FROM held_invites WHERE from_account = ?1")?;
        let rows = stmt
            .query_map([&from[..]], |r| Ok((blob32(r.get(0)?)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut out = Vec::new();
        for (id, cert, inner) in rows {
            let decoded = DeviceCert::decode(&mut Reader::new(&cert, "held invitation"))
                .and_then(|cert| Ok((cert, Inner::decode(&inner)?.content)));
            match decoded {
                Ok((cert, Content::Invite(welcome))) => out.push((EnvelopeId(id), cert, *welcome)),
                // One this version cannot read (written by another) joins nothing; it must not
                // stop the others, nor accepting the contact, for ever. It goes with the contact.
                _ => tracing::debug!("a held invitation that does not decode is skipped"),
            }
        }
        Ok(out)
    }

    fn drop_held_invite(&self, id: &EnvelopeId) -> Result<()> {
        self.conn().execute("DELETE FROM held_invites WHERE envelope_id = ?1", [&id.0[..]])?;
        Ok(())
    }

    /// How long a conversation's messages are kept; `None` keeps them for ever.
    fn set_retention(&self, group: &GroupId, keep_ms: Option<u64>) -> Result<()> {
        match keep_ms {
            Some(ms) => self.conn().execute(
                "INSERT INTO retention (group_id, keep_ms) VALUES (?1, ?2)
                 ON CONFLICT(group_id) DO UPDATE SET keep_ms = ?2",
                params![&group[..], ms as i64],
            )?,
            None => self.conn().execute("DELETE FROM retention WHERE group_id = ?1", [&group[..]])?,
        };
        Ok(())
    }

    fn retention(&self, group: &GroupId) -> Result<Option<u64>> {
        let ms: Option<i64> = self
            .conn()
            .query_row("SELECT keep_ms FROM retention WHERE group_id = ?1", [&group[..]], |r| r.get(0))
            .optional()?;
        Ok(ms.map(|m| m as u64))
    }

    /// Every conversation with a retention, and how long it keeps messages.
    fn retentions(&self) -> Result<Vec<(GroupId, u64)>> {
        let mut stmt = self.conn().prepare("SELECT group_id, keep_ms FROM retention")?;
        let rows = stmt
            .query_map([], |r| Ok((blob32(r.get(0)?)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Deletes the messages of a conversation (their bodies, the receipts for them, and what
    /// our own still waiting to go out say) whose envelope reached this device before
    /// `before_ms`: the device's own clock, not the time a sender claims. One of ours that has
    /// not gone out yet still goes, as sealed, but can no longer be sealed again. Returns how
    /// many messages.
    fn forget_messages_before(&self, group: &GroupId, before_ms: u64) -> Result<usize> {
        let old = "SELECT id FROM envelopes WHERE group_id = ?1 AND received_ms < ?2";
        self.conn().execute(
            &format!("DELETE FROM receipts WHERE envelope_id IN ({old})"),
            params![&group[..], before_ms as i64],
        )?;
        self.conn().execute(
            &format!("UPDATE outbox SET inner = NULL WHERE envelope_id IN ({old})"),
            params![&group[..], before_ms as i64],
        )?;
        // Which message replaced which names its sender: it goes with the message.
        self.conn().execute(
            &format!("DELETE FROM replaced WHERE replacement IN ({old})"),
            params![&group[..], before_ms as i64],
        )?;
        // Reactions and edits go with their own envelopes' age; deletes stay (they hold no
        // text), lest a message that arrives late come back whole.
        self.conn().execute(
            &format!("DELETE FROM message_changes WHERE group_id = ?1 AND kind != 'delete' AND envelope_id IN ({old})"),
            params![&group[..], before_ms as i64],
        )?;
        let gone = self.conn().execute(
            &format!("DELETE FROM messages WHERE group_id = ?1 AND envelope_id IN ({old})"),
            params![&group[..], before_ms as i64],
        )?;
        self.forget_gone_attachments()?;
        Ok(gone)
    }

    /// Records a file a message carries (a second copy of the message changes nothing). A
    /// topic names one file: a manifest that reuses another file's topic (its key) with other
    /// contents is not recorded (a member cannot break someone else's download that way); one
    /// naming the same file takes the progress already made. Whether it was recorded.
    fn put_attachment(&self, a: &AttachmentRow) -> Result<bool> {
        let same_topic = self.attachment_on_topic(&a.topic)?;
        let mut row = a.clone();
        if let Some(other) = same_topic {
            if other.manifest != a.manifest && !same_file(&other.manifest, &a.manifest) {
                return Ok(false);
            }
            row.have = row.have.max(other.have);
            row.wanted |= other.wanted;
        }
        let inserted = self.conn().execute(
            &format!(
                "INSERT OR IGNORE INTO attachments ({ATTACHMENT_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
            ),
            params![
                &row.message.0[..],
                &row.group_id[..],
                &row.topic[..],
                row.manifest,
                row.size as i64,
                row.have,
                row.total,
                row.wanted,
                row.added_ms as i64,
                row.ours,
            ],
        )?;
        Ok(inserted > 0)
    }

    /// Bytes of files fetched unasked (not ours; at most `max_unasked` each, so a large file
    /// the user asked for does not count) that came since `since_ms`.
    fn fetched_unasked_since(&self, since_ms: u64, max_unasked: u64) -> Result<u64> {
        let bytes: i64 = self.conn().query_row(
            "SELECT coalesce(sum(size), 0) FROM attachments
             WHERE wanted = 1 AND ours = 0 AND added_ms >= ?1 AND size <= ?2",
            params![since_ms as i64, max_unasked as i64],
            |r| r.get(0),
        )?;
        Ok(bytes as u64)
    }

    fn attachment(&self, message: &EnvelopeId) -> Result<Option<AttachmentRow>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE message = ?1"),
                [&message.0[..]],
                attachment_from_row,
            )
            .optional()?)
    }

    /// The file whose envelopes travel under `topic` (the newest message carrying it).
    fn attachment_on_topic(&self, topic: &[u8; 16]) -> Result<Option<AttachmentRow>> {
        Ok(self
            .conn()
            .prepare_cached(&format!(
                "SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE topic = ?1 ORDER BY added_ms DESC LIMIT 1"
            ))?
            .query_row([&topic[..]], attachment_from_row)
            .optional()?)
    }

    /// Every attachment, newest first.
    fn attachments(&self) -> Result<Vec<AttachmentRow>> {
        let mut stmt = self
            .conn()
            .prepare_cached(&format!("SELECT {ATTACHMENT_COLUMNS} FROM attachments ORDER BY added_ms DESC"))?;
        Ok(stmt.query_map([], attachment_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// How many of a file's envelopes are here, for every message that carries it.
    fn set_attachment_progress(&self, topic: &[u8; 16], have: u32) -> Result<()> {
        self.conn().execute("UPDATE attachments SET have = ?2 WHERE topic = ?1", params![&topic[..], have])?;
        Ok(())
    }

    /// A file's serving window starts again from `now_ms` (its message was sent again).
    fn restart_serving(&self, message: &EnvelopeId, now_ms: u64) -> Result<()> {
        self.conn().execute(
            "UPDATE attachments SET added_ms = ?2 WHERE message = ?1",
            params![&message.0[..], now_ms as i64],
        )?;
        Ok(())
    }

    fn set_attachment_wanted(&self, message: &EnvelopeId, wanted: bool) -> Result<()> {
        self.conn()
            .execute("UPDATE attachments SET wanted = ?2 WHERE message = ?1", params![&message.0[..], wanted])?;
        Ok(())
    }

    /// The attachment envelope with this id, if held.
    fn envelope_bytes(&self, id: &EnvelopeId) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn()
            .prepare_cached("SELECT bytes FROM envelopes WHERE id = ?1")?
            .query_row([&id.0[..]], |r| r.get(0))
            .optional()?)
    }

    /// Every envelope held under `topic`.
    fn envelopes_on_topic(&self, topic: &[u8; 16]) -> Result<Vec<Vec<u8>>> {
        let mut stmt = self.conn().prepare_cached("SELECT bytes FROM envelopes WHERE topic = ?1")?;
        Ok(stmt.query_map([&topic[..]], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Forgets the files of messages that are gone (disappeared, past retention): their
    /// manifests, and their envelopes unless another message still carries the same file. How
    /// many files went. (Not while a message is being replaced by its resealed copy: the row
    /// moves to the copy first.)
    fn forget_gone_attachments(&self) -> Result<usize> {
        self.forget_attachments_where("NOT EXISTS (SELECT 1 FROM messages m WHERE m.envelope_id = a.message)", [])
    }

    /// Forgets the file of message `id` if its sender deleted it for everyone.
    fn forget_deleted_attachment(&self, id: &EnvelopeId) -> Result<usize> {
        self.forget_attachments_where(
            "a.message = ?1 AND EXISTS (SELECT 1 FROM message_changes d JOIN messages m ON m.envelope_id = d.target
                 WHERE d.target = a.message AND d.kind = 'delete' AND d.sender = m.sender AND d.group_id = m.group_id)",
            [&id.0[..]],
        )
    }

    fn forget_attachments_where<P: rusqlite::Params>(&self, condition: &str, params: P) -> Result<usize> {
        let gone: Vec<(Vec<u8>, Vec<u8>)> = self
            .conn()
            .prepare(&format!("SELECT a.message, a.topic FROM attachments a WHERE {condition}"))?
            .query_map(params, |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (message, topic) in &gone {
            self.conn().execute("DELETE FROM attachments WHERE message = ?1", [message])?;
            self.conn().execute(
                "DELETE FROM envelopes WHERE topic = ?1 AND NOT EXISTS (SELECT 1 FROM attachments WHERE topic = ?1)",
                [topic],
            )?;
        }
        Ok(gone.len())
    }

    /// Records a processed request; says whether it was new.
    fn note_request(&self, hash: &[u8; 32]) -> Result<bool> {
        Ok(self.conn().execute("INSERT OR IGNORE INTO seen_requests (hash) VALUES (?1)", [&hash[..]])? == 1)
    }
}

impl Rows for Connection {
    fn conn(&self) -> &Connection {
        self
    }
}
