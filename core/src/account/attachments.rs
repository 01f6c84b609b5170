//! Files in conversations (issue 19): sending one, fetching those that arrive (each envelope
//! verified against the manifest before it is opened or stored, from whoever holds it), and
//! putting a file back together. The format is [`crate::attachment`]; this is the account's
//! side: which attachment topics the transports follow, and what the store keeps.
//!
//! A file's envelopes live in the `envelopes` table under the attachment's own topic, so every
//! path serves them to peers as it serves any envelope (reconciliation, relays, bundles), and
//! a download resumes from whatever is stored, whoever brings the rest.

use std::collections::HashMap;

use super::Account;
use super::types::{AttachmentInfo, AttachmentProgress, ConversationInfo, MessageInfo, Received};
use crate::attachment::{self, Assembly, Manifest, Taken};
use crate::envelope::{Envelope, EnvelopeId, Topic};
use crate::error::{Error, Result};
use crate::store::{AttachmentRow, EnvelopeStatus, MessageRow, Rows};
use crate::wire::{Reader, Writer};

/// Files up to this size are fetched as soon as their message arrives; larger ones once asked
/// for (`weft save`), so that a member cannot fill a device's disk unasked.
pub const AUTO_FETCH_MAX: u64 = 25 << 20;
/// Bytes of files fetched unasked in a day, from everyone: past it, files wait to be asked for.
pub const AUTO_FETCH_PER_DAY: u64 = 200 << 20;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// How long a file we hold whole (sent, or fetched) is still offered to peers that ask for it:
/// its topic is followed this long after it was added.
pub const SERVE_FOR_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Attachment topics followed at once: downloads (those of the last [`SERVE_FOR_MS`] only,
/// so that a file whose pieces never come is not followed for ever), and apart from them the
/// newest files we hold.
pub const MAX_FOLLOWED: usize = 16;
/// The mesh's default size policy: larger files wait for a network, so that a photo never
/// starves text on a Bluetooth link (see `docs/DECISIONS.md`).
pub const MESH_MAX_DEFAULT: u64 = 256 << 10;

const MESH_LIMIT_SETTING: &str = "mesh_file_limit";

/// Downloads under way, by topic: their assembly, built from the store the first time an
/// envelope of theirs comes.
#[derive(Default)]
pub(super) struct Downloads(HashMap<Topic, (EnvelopeId, Assembly)>, Untold);

/// Pieces held for their index: per file, and in all (4 and 16 MiB).
const MAX_UNTOLD_PER_FILE: usize = 64;
const MAX_UNTOLD: usize = 256;
/// How long a file's pieces wait for its index, from the first of them: a member whose index
/// never comes does not keep the room from honest files until a restart. (An index that comes
/// later finds its pieces again at the next reconciliation.)
const UNTOLD_FOR_MS: u64 = 5 * 60 * 1000;

/// Pieces that came before the index naming them, held until it comes, by file: since when,
/// and the pieces.
#[derive(Default)]
struct Untold(HashMap<Topic, (u64, Vec<Envelope>)>);

impl Untold {
    /// Holds `envelope`, a piece of the file of `topic`, at `now_ms`: false if it was held
    /// already (the same piece offered again takes no second place).
    fn hold(&mut self, topic: Topic, envelope: &Envelope, now_ms: u64) -> Result<bool> {
        self.0.retain(|_, (since, _)| now_ms.saturating_sub(*since) < UNTOLD_FOR_MS);
        let held: usize = self.0.values().map(|(_, pieces)| pieces.len()).sum();
        let here = self.0.get(&topic).map_or(&[][..], |(_, pieces)| pieces);
        if here.iter().any(|e| e.id() == envelope.id()) {
            return Ok(false);
        }
        // Refused before an entry is made: its start would shorten the file's later wait.
        if here.len() >= MAX_UNTOLD_PER_FILE || held >= MAX_UNTOLD {
            return Err(Error::Limit("too many pieces of a file wait for its index"));
        }
        self.0.entry(topic).or_insert_with(|| (now_ms, Vec::new())).1.push(envelope.clone());
        Ok(true)
    }

    /// The pieces of `topic`'s file held, which leave.
    fn take(&mut self, topic: &Topic) -> Vec<Envelope> {
        self.0.remove(topic).map(|(_, pieces)| pieces).unwrap_or_default()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl Downloads {
    /// Forgets every assembly (after a failed batch: what they counted may not be stored);
    /// each is built again from the store when its next envelope comes.
    pub(super) fn clear(&mut self) {
        self.0.clear();
        self.1.clear();
    }
}

fn manifest_bytes(manifest: &Manifest) -> Vec<u8> {
    let mut w = Writer::new();
    manifest.encode(&mut w);
    w.into_bytes()
}

fn manifest_of(row: &AttachmentRow) -> Result<Manifest> {
    let mut r = Reader::new(&row.manifest, "attachment");
    let manifest = Manifest::decode(&mut r)?;
    r.finish()?;
    Ok(manifest)
}

/// The row a message with an attachment is stored with: `whole` when every envelope is here
/// (ours, just sealed), `fetch` when it is to be fetched now.
pub(super) fn attachment_row(
    message: EnvelopeId,
    group: crate::group::GroupId,
    manifest: &Manifest,
    (whole, fetch, ours): (bool, bool, bool),
    now: u64,
) -> AttachmentRow {
    let total = (manifest.chunks() + manifest.index.len()) as u32;
    AttachmentRow {
        message,
        group_id: group,
        topic: manifest.topic(),
        manifest: manifest_bytes(manifest),
        size: manifest.size,
        have: if whole { total } else { 0 },
        total,
        wanted: whole || fetch,
        added_ms: now,
        ours,
    }
}

/// Whether a file that just arrived is fetched unasked: small enough, and within the day's
/// allowance of what came unasked from everyone.
pub(super) fn fetch_unasked(store: &impl Rows, size: u64, now: u64) -> bool {
    size <= AUTO_FETCH_MAX
        && store
            .fetched_unasked_since(now.saturating_sub(DAY_MS), AUTO_FETCH_MAX)
            .is_ok_and(|taken| taken.saturating_add(size) <= AUTO_FETCH_PER_DAY)
}

pub(super) fn attachment_info(row: &AttachmentRow) -> Option<AttachmentInfo> {
    let manifest = manifest_of(row).ok()?;
    Some(AttachmentInfo {
        name: manifest.name,
        mime: manifest.mime,
        size: manifest.size,
        have: row.have,
        total: row.total,
        fetching: row.wanted && row.have < row.total,
    })
}

impl Account {
    /// Sends a file, with a caption (may be empty), in a conversation: its envelopes are
    /// stored here and served to whoever asks for them; the message naming them goes out as
    /// any message does.
    pub fn send_file(
        &mut self,
        conversation: &str,
        file: &[u8],
        name: &str,
        mime: &str,
        caption: &str,
    ) -> Result<MessageInfo> {
        let c = self.resolve(conversation)?;
        self.may_write_to(&c)?;
        let (manifest, envelopes) = attachment::seal(file, name, mime, self.entropy.as_mut())?;
        self.send_sealed_file(&c, manifest, envelopes, caption)
    }

    fn send_sealed_file(
        &mut self,
        c: &ConversationInfo,
        manifest: Manifest,
        envelopes: Vec<Envelope>,
        caption: &str,
    ) -> Result<MessageInfo> {
        let now = self.now();
        let me = self.account_public();
        let content = crate::group::Content::Attachment {
            manifest: Box::new(manifest.clone()),
            caption: caption.into(),
            replaces: None,
        };
        let (mut group, sealed) = self.seal_about(c, content, now)?;
        let last = sealed.last().expect("a message is always sealed");
        let (id, lamport) = (last.envelope.id(), last.inner.lamport);
        let row = MessageRow {
            id,
            group_id: c.id,
            sender: me,
            lamport,
            sent_ms: now,
            kind: "text".into(),
            body: caption.to_owned(),
            outgoing: true,
            via: None,
            reply_to: None,
        };
        let attachment = attachment_row(id, c.id, &manifest, (true, true, true), now);
        let written = self.store.write(|tx| {
            super::conversations::put_sent(tx, &c.id, &sealed, now)?;
            for e in &envelopes {
                tx.put_envelope(&e.id(), Some(&c.id), e.as_bytes(), EnvelopeStatus::Opened, now)?;
            }
            tx.insert_message(&row)?;
            tx.put_attachment(&attachment)?;
            tx.save_group(&mut group)
        });
        self.settle([group], written)?;
        Ok(self.message_info(&row, &c.name))
    }

    /// The message carrying a file whose id is `given` or starts with it (6 hex digits at
    /// least, as `weft log --ids` shows them).
    pub fn attachment_message(&self, given: &str) -> Result<EnvelopeId> {
        let given = given.to_ascii_lowercase();
        let not_found = || Error::NotFound { what: "attachment", name: given.clone() };
        if given.len() < 6 || !given.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let rows = self.store.read().attachments()?;
        let mut matching = rows.iter().map(|r| r.message).filter(|m| m.to_hex().starts_with(&given));
        match (matching.next(), matching.next()) {
            (Some(id), None) => Ok(id),
            (None, _) => Err(not_found()),
            (Some(_), Some(_)) => Err(Error::NotAllowed("several files' messages start with those digits: give more")),
        }
    }

    /// The file message `message` carries, and how far it has come.
    pub fn attachment(&self, message: &EnvelopeId) -> Result<AttachmentInfo> {
        let row = self.attachment_row_of(message)?;
        attachment_info(&row).ok_or(Error::Internal("a stored manifest does not read"))
    }

    fn attachment_row_of(&self, message: &EnvelopeId) -> Result<AttachmentRow> {
        let not_found = || Error::NotFound { what: "attachment", name: message.to_hex() };
        self.store.read().attachment(message)?.ok_or_else(not_found)
    }

    /// Asks for the file message `message` carries (one too large to be fetched unasked): its
    /// topic is followed from now on. Says how far it has come.
    pub fn fetch_attachment(&mut self, message: &EnvelopeId) -> Result<AttachmentInfo> {
        let row = self.attachment_row_of(message)?;
        if !row.wanted {
            self.store.write(|tx| tx.set_attachment_wanted(&row.message, true))?;
        }
        self.attachment(message)
    }

    /// The whole file message `message` carries, checked against its hash; `None` while
    /// pieces are missing (it is then asked for, as [`Account::fetch_attachment`] does).
    pub fn attachment_bytes(&mut self, message: &EnvelopeId) -> Result<Option<(AttachmentInfo, Vec<u8>)>> {
        let info = self.fetch_attachment(message)?;
        if !info.is_complete() {
            return Ok(None);
        }
        let row = self.attachment_row_of(message)?;
        let manifest = manifest_of(&row)?;
        let mut assembly = Assembly::new(manifest.clone());
        let store = self.store.read();
        let mut file = Vec::with_capacity(manifest.size as usize);
        for id in manifest.index.clone() {
            let bytes = store.envelope_bytes(&id)?.ok_or(Error::Internal("an attachment's index is missing"))?;
            assembly.take(&Envelope::parse(bytes)?)?;
        }
        for id in assembly.chunk_ids() {
            let bytes = store.envelope_bytes(&id)?.ok_or(Error::Internal("an attachment's chunk is missing"))?;
            match assembly.take(&Envelope::parse(bytes)?)? {
                Taken::Chunk { bytes, .. } => file.extend_from_slice(&bytes),
                _ => return Err(Error::Internal("an attachment's chunk came twice")),
            }
        }
        attachment::verify(&manifest, &file)?;
        Ok(Some((info, file)))
    }

    /// The attachment topics to follow now: every download under way, then the files we hold
    /// whole that were added in the last [`SERVE_FOR_MS`], newest first, [`MAX_FOLLOWED`] in
    /// all. `max_size` leaves out larger files (the mesh's size policy).
    pub fn attachment_topics(&self, max_size: Option<u64>) -> Vec<Topic> {
        let Ok(rows) = self.store.read().attachments() else { return Vec::new() };
        let since = self.now().saturating_sub(SERVE_FOR_MS);
        let fits = |row: &AttachmentRow| max_size.is_none_or(|max| manifest_of(row).is_ok_and(|m| m.size <= max));
        let recent = |r: &&AttachmentRow| r.added_ms >= since && fits(r);
        let downloads = rows.iter().filter(|r| r.wanted && r.have < r.total).filter(recent);
        let held = rows.iter().filter(|r| r.have >= r.total).filter(recent);
        let mut topics: Vec<Topic> = Vec::new();
        for group in [downloads.collect::<Vec<_>>(), held.collect()] {
            let mut taken = 0;
            for row in group {
                if taken < MAX_FOLLOWED && !topics.contains(&row.topic) {
                    topics.push(row.topic);
                    taken += 1;
                }
            }
        }
        topics
    }

    /// The largest file the Bluetooth mesh carries (default [`MESH_MAX_DEFAULT`]); `0` keeps
    /// every file off the mesh.
    pub fn mesh_file_limit(&self) -> u64 {
        let stored = self.store.read().setting(MESH_LIMIT_SETTING).ok().flatten();
        stored.and_then(|v| v.parse().ok()).unwrap_or(MESH_MAX_DEFAULT)
    }

    pub fn set_mesh_file_limit(&mut self, bytes: u64) -> Result<()> {
        let bytes = bytes.min(attachment::MAX_ATTACHMENT_LEN);
        self.store.write(|tx| tx.set_setting(MESH_LIMIT_SETTING, &bytes.to_string()))
    }

    /// Whether `topic` is one of a file we know of.
    pub(super) fn is_attachment_topic(&self, topic: &Topic) -> bool {
        self.store.read().attachment_on_topic(topic).ok().flatten().is_some()
    }

    /// Takes an envelope of an attachment's topic: verified against the manifest (or an index
    /// already here) before it is opened or stored. What nobody named (a member's forgery,
    /// junk) is refused and changes nothing; a download resumes from whatever is stored.
    pub(super) fn take_attachment_envelope(&mut self, envelope: &Envelope) -> Result<Received> {
        let topic = envelope.topic();
        let id = envelope.id();
        if self.store.read().has_envelope(&id)?.is_some() {
            return Err(Error::Duplicate);
        }
        let Some(row) = self.store.read().attachment_on_topic(&topic)? else { return Err(Error::UnknownTopic) };
        if !row.wanted {
            return Err(Error::NotAllowed("that file was not asked for"));
        }
        // A download built for another message of the topic (one since gone) starts afresh
        // from the store.
        if self.downloads.0.get(&topic).is_some_and(|(message, _)| *message != row.message) {
            self.downloads.0.remove(&topic);
        }
        if !self.downloads.0.contains_key(&topic) {
            if row.have >= row.total {
                return Err(Error::Malformed { what: "attachment envelope", why: "the file is already whole" });
            }
            let mut assembly = Assembly::new(manifest_of(&row)?);
            // Indexes first, so that the chunks they name can be told.
            let held = self.store.read().envelopes_on_topic(&topic)?;
            let mut parsed: Vec<Envelope> = held.into_iter().filter_map(|b| Envelope::parse(b).ok()).collect();
            parsed.sort_by_key(|e| !assembly.manifest().index.contains(&e.id()));
            for e in &parsed {
                let _ = assembly.take(e);
            }
            self.downloads.0.insert(topic, (row.message, assembly));
        }
        let (message, assembly) = self.downloads.0.get_mut(&topic).expect("just inserted");
        let message = *message;
        let mut taken = vec![envelope.clone()];
        match assembly.take(envelope) {
            Ok(Taken::Again) => return Err(Error::Duplicate),
            Ok(Taken::Chunk { .. }) => {}
            // The chunks it names that came before it can be told now.
            Ok(Taken::Index) => {
                for early in self.downloads.1.take(&topic) {
                    if matches!(assembly.take(&early), Ok(Taken::Chunk { .. })) {
                        taken.push(early);
                    }
                }
            }
            // Perhaps a chunk of an index not here yet (a peer answers in any order, and a
            // transport may hand its answer over in several batches): held in memory, within
            // bounds, until its index comes. Beyond them it is dropped, and fetched again at
            // the next reconciliation.
            Err(_) if assembly.missing_index() > 0 => {
                let now = self.now();
                self.downloads.1.hold(topic, envelope, now)?;
                return Ok(Received::Waiting);
            }
            Err(e) => return Err(e),
        }
        let index_here = assembly.manifest().index.len() - assembly.missing_index();
        let have = (assembly.progress().0 + index_here) as u32;
        let total = (assembly.progress().1 + assembly.manifest().index.len()) as u32;
        let complete = assembly.is_complete();
        let group = row.group_id;
        let now = self.now();
        let stored = self.store.write_relaxed(|tx| {
            for e in &taken {
                tx.put_envelope(&e.id(), Some(&group), e.as_bytes(), EnvelopeStatus::Opened, now)?;
            }
            tx.set_attachment_progress(&topic, have)
        });
        // The assembly counted them as here: if they are not, it must be built again.
        if complete || stored.is_err() {
            self.downloads.0.remove(&topic);
            self.downloads.1.take(&topic);
        }
        stored?;
        Ok(Received::Attachment(AttachmentProgress { message: message.to_hex(), conversation_id: group, have, total }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DB_FILE, DatabaseKey, Store};

    fn piece(topic: Topic, n: u16) -> Envelope {
        let mut bytes = vec![0u8; crate::envelope::SIZE_BUCKETS[0]];
        bytes[0] = crate::envelope::ENVELOPE_VERSION;
        bytes[1..17].copy_from_slice(&topic);
        bytes[17..19].copy_from_slice(&n.to_be_bytes());
        Envelope::parse(bytes).unwrap()
    }

    /// A member whose indexes never come fills the room for early pieces (four files of 64):
    /// honest files' pieces are refused, but only until those pieces have waited their time.
    #[test]
    fn pieces_whose_index_never_comes_give_up_their_room() {
        let mut untold = Untold::default();
        let t0 = 1_700_000_000_000;
        for file in 0..4u8 {
            for n in 0..MAX_UNTOLD_PER_FILE as u16 {
                assert!(untold.hold([file; 16], &piece([file; 16], n), t0).unwrap());
            }
        }
        let honest = [9u8; 16];
        assert!(untold.hold(honest, &piece(honest, 0), t0 + 1_000).is_err(), "the room is full");
        assert!(!untold.hold([0; 16], &piece([0; 16], 0), t0).unwrap(), "a piece held already takes no place");
        assert!(untold.hold(honest, &piece(honest, 0), t0 + UNTOLD_FOR_MS).unwrap(), "the stale ones left");
        assert_eq!(untold.take(&honest).len(), 1);
        assert!(untold.take(&[0; 16]).is_empty());
    }

    /// What comes unasked in a day is bounded: past 200 MiB of files from everyone, small files
    /// too wait to be asked for; ours and those of yesterday do not count.
    #[test]
    fn files_fetched_unasked_are_bounded_by_the_day() {
        const NOW: u64 = 1_700_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(&dir.path().join(DB_FILE), &DatabaseKey::plaintext_for_tests()).unwrap();
        let manifest = |n: u8| Manifest {
            hash: [n; 32],
            name: "f.bin".into(),
            mime: "x/y".into(),
            size: AUTO_FETCH_MAX,
            key: [n; 32].into(),
            index: vec![EnvelopeId([n; 32])],
        };
        let mut fetched = Vec::new();
        // Yesterday's, and ours, count for nothing.
        store
            .write(|tx| {
                tx.put_attachment(&attachment_row(
                    EnvelopeId([200; 32]),
                    [9; 32],
                    &manifest(200),
                    (false, true, false),
                    NOW - 2 * DAY_MS,
                ))?;
                tx.put_attachment(&attachment_row(
                    EnvelopeId([201; 32]),
                    [9; 32],
                    &manifest(201),
                    (true, true, true),
                    NOW,
                ))
            })
            .unwrap();
        for n in 0..10u8 {
            let fetch = fetch_unasked(store.read(), AUTO_FETCH_MAX, NOW);
            fetched.push(fetch);
            let row = attachment_row(EnvelopeId([n; 32]), [9; 32], &manifest(n), (false, fetch, false), NOW);
            store.write(|tx| tx.put_attachment(&row)).unwrap();
        }
        assert_eq!(
            fetched.iter().filter(|f| **f).count(),
            (AUTO_FETCH_PER_DAY / AUTO_FETCH_MAX) as usize,
            "{fetched:?}"
        );
        assert!(!fetched[9]);
        assert!(!fetch_unasked(store.read(), AUTO_FETCH_MAX + 1, NOW - 9 * DAY_MS), "too large, whatever the day");
    }
}
