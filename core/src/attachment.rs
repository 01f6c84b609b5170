//! Attachments (issue 19), the format: a file cut into envelopes of a topic of its own, sealed
//! under a key of its own, and named by a manifest that travels inside the conversation (so
//! only members learn the key, the topic and the ids).
//!
//! Every path that carries envelopes carries these as they are (libp2p sync and relays, bundles,
//! the mesh), verifies them by id as they come and fetches what is missing from anyone who holds
//! it: a download resumes where it stopped, whoever it resumes from. To a carrier a chunk is an
//! envelope of the largest size under a topic nobody else uses. The manifest names the index
//! envelopes by id; an index names the chunk envelopes by id, in order; so a chunk is verified
//! when it arrives (its id is in the index) before it is opened, and a member who holds the key
//! cannot slip in a chunk of their own. The whole file is checked against its BLAKE3 hash when
//! it is put together. Pure functions: the account stores what they return.

use crate::crypto::{self, Entropy, NONCE_LEN, Secret32};
use crate::envelope::{
    ENVELOPE_VERSION, Envelope, EnvelopeId, HEADER_SEALED_LEN, MAX_ENVELOPE_LEN, OVERHEAD, PREFIX_LEN, TOPIC_LEN,
    Topic, bucket_for,
};
use crate::error::{Error, Result};
use crate::wire::{Reader, Writer};

/// The largest attachment.
pub const MAX_ATTACHMENT_LEN: u64 = 100 << 20;
/// File bytes one chunk envelope carries: the largest envelope, less its overhead and the
/// length word.
pub const CHUNK_LEN: usize = MAX_ENVELOPE_LEN - OVERHEAD - 4;
/// Chunk ids one index envelope lists.
pub const IDS_PER_INDEX: usize = CHUNK_LEN / 32;
/// Index envelopes a manifest may name (a 100 MiB file needs one).
pub const MAX_INDEX: usize = 4;
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_MIME_LEN: usize = 127;

/// What a member needs to fetch, open and check an attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// BLAKE3 of the whole file.
    pub hash: [u8; 32],
    /// The file's name, as its sender gave it (no directories).
    pub name: String,
    /// Its media type, as its sender said (`image/jpeg`); shown, never trusted.
    pub mime: String,
    pub size: u64,
    pub key: Secret32,
    /// The index envelopes, in order.
    pub index: Vec<EnvelopeId>,
}

impl Manifest {
    /// The topic the attachment's envelopes travel under.
    pub fn topic(&self) -> Topic {
        topic_of(&self.key)
    }

    pub fn chunks(&self) -> usize {
        self.size.div_ceil(CHUNK_LEN as u64) as usize
    }

    pub fn encode(&self, w: &mut Writer) {
        w.raw(&self.hash).string(&self.name).string(&self.mime).u64(self.size).raw(&self.key[..]);
        w.u8(self.index.len() as u8);
        for id in &self.index {
            w.raw(&id.0);
        }
    }

    pub fn decode(r: &mut Reader) -> Result<Manifest> {
        let hash = r.array()?;
        let name = r.string(MAX_NAME_LEN)?;
        check_name(&name)?;
        let mime = r.string(MAX_MIME_LEN)?;
        if mime.chars().any(char::is_control) {
            return Err(Error::Malformed { what: "attachment", why: "a media type with control characters" });
        }
        let size = r.u64()?;
        if size > MAX_ATTACHMENT_LEN {
            return Err(Error::TooLong { what: "attachment", len: size as usize, max: MAX_ATTACHMENT_LEN as usize });
        }
        let key: [u8; 32] = r.array()?;
        let n = r.u8()? as usize;
        let needed = (size.div_ceil(CHUNK_LEN as u64) as usize).div_ceil(IDS_PER_INDEX).max(1);
        if n != needed || n > MAX_INDEX {
            return Err(Error::Malformed { what: "attachment", why: "its index does not fit its size" });
        }
        let index = (0..n).map(|_| r.array().map(EnvelopeId)).collect::<Result<Vec<_>>>()?;
        Ok(Manifest { hash, name, mime, size, key: key.into(), index })
    }
}

/// A file name others may save under: not empty, no directories or drives (`/`, `\`, `:`), no
/// control, invisible or bidirectional characters (`invoice\u{202E}fdp.exe` shows as
/// `invoiceexe.pdf`), no trailing dot or space (Windows drops them).
pub fn check_name(name: &str) -> Result<()> {
    let hidden = |c: char| matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.ends_with('.')
        || name.ends_with(' ')
        || name.chars().any(|c| matches!(c, '/' | '\\' | ':') || c.is_control() || hidden(c));
    if bad {
        return Err(Error::Malformed {
            what: "attachment name",
            why: "empty, a directory, or with control characters",
        });
    }
    Ok(())
}

fn topic_of(key: &[u8; 32]) -> Topic {
    let full: [u8; 32] = crypto::derive_array(b"", key, &[crypto::label("weft/v1/attachment-topic")]);
    full[..TOPIC_LEN].try_into().expect("16 of 32")
}

fn body_key(key: &[u8; 32]) -> [u8; 32] {
    crypto::derive_array(b"", key, &[crypto::label("weft/v1/attachment-body")])
}

/// Cuts `file` into envelopes: the index envelopes first (the manifest names them), then the
/// chunks in order.
pub fn seal(file: &[u8], name: &str, mime: &str, entropy: &mut dyn Entropy) -> Result<(Manifest, Vec<Envelope>)> {
    check_name(name)?;
    if name.len() > MAX_NAME_LEN || mime.len() > MAX_MIME_LEN || mime.chars().any(char::is_control) {
        return Err(Error::Malformed { what: "attachment", why: "name or media type too long" });
    }
    if file.len() as u64 > MAX_ATTACHMENT_LEN {
        return Err(Error::TooLong { what: "attachment", len: file.len(), max: MAX_ATTACHMENT_LEN as usize });
    }
    let mut key = [0u8; 32];
    entropy.fill(&mut key)?;
    let key = Secret32::from(key);
    let (topic, body) = (topic_of(&key), body_key(&key));
    let chunks = file.chunks(CHUNK_LEN).map(|c| seal_one(&body, &topic, c, entropy)).collect::<Result<Vec<_>>>()?;
    let ids: Vec<EnvelopeId> = chunks.iter().map(Envelope::id).collect();
    let mut parts: Vec<Vec<u8>> =
        ids.chunks(IDS_PER_INDEX).map(|part| part.iter().flat_map(|id| id.0).collect()).collect();
    if parts.is_empty() {
        parts.push(Vec::new());
    }
    let index = parts.iter().map(|p| seal_one(&body, &topic, p, entropy)).collect::<Result<Vec<_>>>()?;
    let manifest = Manifest {
        hash: *blake3::hash(file).as_bytes(),
        name: name.to_owned(),
        mime: mime.to_owned(),
        size: file.len() as u64,
        key,
        index: index.iter().map(Envelope::id).collect(),
    };
    Ok((manifest, index.into_iter().chain(chunks).collect()))
}

/// One envelope: `version | topic | nonce | 56 random bytes where a message's sealed header
/// is | body`, the body `len (4) | bytes | zeros` sealed under the body key with everything
/// before it as associated data, in the largest bucket.
fn seal_one(body_key: &[u8; 32], topic: &Topic, plain: &[u8], entropy: &mut dyn Entropy) -> Result<Envelope> {
    // Always the largest bucket, the last chunk and the index too: a file's envelopes say its
    // size to the nearest chunk, no closer.
    let len = bucket_for(4 + plain.len()).map(|_| MAX_ENVELOPE_LEN)?;
    let nonce: [u8; NONCE_LEN] = entropy.nonce()?;
    let mut bytes = Vec::with_capacity(len);
    bytes.push(ENVELOPE_VERSION);
    bytes.extend_from_slice(topic);
    bytes.extend_from_slice(&nonce);
    let mut header = [0u8; HEADER_SEALED_LEN];
    entropy.fill(&mut header)?;
    bytes.extend_from_slice(&header);
    let mut body = Vec::with_capacity(len - PREFIX_LEN - HEADER_SEALED_LEN);
    body.extend_from_slice(&(plain.len() as u32).to_be_bytes());
    body.extend_from_slice(plain);
    body.resize(len - OVERHEAD, 0);
    let sealed = crypto::seal(body_key, &nonce, &bytes, &body);
    bytes.extend_from_slice(&sealed);
    debug_assert_eq!(bytes.len(), len);
    Envelope::parse(bytes)
}

fn open_one(body_key: &[u8; 32], envelope: &Envelope) -> Result<Vec<u8>> {
    let bytes = envelope.as_bytes();
    let split = PREFIX_LEN + HEADER_SEALED_LEN;
    let nonce: [u8; NONCE_LEN] = envelope.nonce();
    let body = crypto::open(body_key, &nonce, &bytes[..split], &bytes[split..])?;
    let len = u32::from_be_bytes(body[..4].try_into().expect("a body holds its length")) as usize;
    if 4 + len > body.len() || body[4 + len..].iter().any(|b| *b != 0) {
        return Err(Error::Malformed { what: "attachment envelope", why: "its length word is wrong" });
    }
    Ok(body[4..4 + len].to_vec())
}

/// What an arriving envelope was.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken {
    /// An index envelope; the chunks it names can now be verified.
    Index,
    /// Chunk `index` (from 0), its file bytes.
    Chunk { index: usize, bytes: Vec<u8> },
    /// Already taken.
    Again,
}

/// A download in progress: which envelopes are wanted, and each arriving one verified before
/// it is opened. Holds ids, never file bytes (the caller stores chunks as they come).
#[derive(Debug)]
pub struct Assembly {
    manifest: Manifest,
    /// Each index envelope's chunk ids, once it came.
    index: Vec<Option<Vec<EnvelopeId>>>,
    have: Vec<bool>,
}

impl Assembly {
    pub fn new(manifest: Manifest) -> Assembly {
        let have = vec![false; manifest.chunks()];
        Assembly { index: vec![None; manifest.index.len()], manifest, have }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The envelopes still wanted: index envelopes not yet here, and the chunks the indexes
    /// that are here name and that are not.
    pub fn wanted(&self) -> Vec<EnvelopeId> {
        let mut wanted = Vec::new();
        for (part, ids) in self.index.iter().enumerate() {
            match ids {
                None => wanted.push(self.manifest.index[part]),
                Some(ids) => wanted.extend(
                    ids.iter().enumerate().filter(|(i, _)| !self.have[part * IDS_PER_INDEX + i]).map(|(_, id)| *id),
                ),
            }
        }
        wanted
    }

    /// Chunks here, of all.
    pub fn progress(&self) -> (usize, usize) {
        (self.have.iter().filter(|h| **h).count(), self.have.len())
    }

    pub fn is_complete(&self) -> bool {
        self.index.iter().all(Option::is_some) && self.have.iter().all(|h| *h)
    }

    /// The chunks' ids in file order, as far as the indexes here name them.
    pub fn chunk_ids(&self) -> Vec<EnvelopeId> {
        self.index.iter().flatten().flatten().copied().collect()
    }

    /// Index envelopes not here yet.
    pub fn missing_index(&self) -> usize {
        self.index.iter().filter(|i| i.is_none()).count()
    }

    /// Marks chunk `index` as here already (a download resumed from what the store holds).
    pub fn already_have(&mut self, index: usize) {
        if let Some(h) = self.have.get_mut(index) {
            *h = true;
        }
    }

    /// Takes an envelope of the attachment's topic: verified by its id against the manifest
    /// (an index) or an index (a chunk) before it is opened. An envelope nobody named (a
    /// member's forgery under the topic, junk) is refused and changes nothing.
    pub fn take(&mut self, envelope: &Envelope) -> Result<Taken> {
        if envelope.topic() != self.manifest.topic() {
            return Err(Error::Malformed { what: "attachment envelope", why: "of another topic" });
        }
        let id = envelope.id();
        let body = body_key(&self.manifest.key);
        if let Some(part) = self.manifest.index.iter().position(|i| *i == id) {
            if self.index[part].is_some() {
                return Ok(Taken::Again);
            }
            let plain = open_one(&body, envelope)?;
            let expected = self.have.len().saturating_sub(part * IDS_PER_INDEX).min(IDS_PER_INDEX);
            if plain.len() != 32 * expected {
                return Err(Error::Malformed { what: "attachment index", why: "it names the wrong number of chunks" });
            }
            let ids: Vec<EnvelopeId> = plain.chunks(32).map(|c| EnvelopeId(c.try_into().expect("32"))).collect();
            // An id twice (or an index's id among the chunks) would leave a place never filled
            // and the download asking for it for ever.
            let known = self.index.iter().flatten().flatten().chain(&self.manifest.index);
            let mut all: std::collections::HashSet<&EnvelopeId> = known.collect();
            if !ids.iter().all(|id| all.insert(id)) {
                return Err(Error::Malformed { what: "attachment index", why: "it names an envelope twice" });
            }
            self.index[part] = Some(ids);
            return Ok(Taken::Index);
        }
        let found = self.index.iter().enumerate().find_map(|(part, ids)| {
            ids.as_ref().and_then(|ids| ids.iter().position(|i| *i == id)).map(|i| part * IDS_PER_INDEX + i)
        });
        let Some(index) = found else {
            return Err(Error::Malformed { what: "attachment envelope", why: "no index names it" });
        };
        if self.have[index] {
            return Ok(Taken::Again);
        }
        let bytes = open_one(&body, envelope)?;
        let expected = if index + 1 == self.have.len() {
            (self.manifest.size - (index as u64) * CHUNK_LEN as u64) as usize
        } else {
            CHUNK_LEN
        };
        if bytes.len() != expected {
            return Err(Error::Malformed { what: "attachment chunk", why: "wrong length" });
        }
        self.have[index] = true;
        Ok(Taken::Chunk { index, bytes })
    }
}

/// Checks a whole file put together from its chunks against its manifest.
pub fn verify(manifest: &Manifest, file: &[u8]) -> Result<()> {
    if file.len() as u64 != manifest.size || *blake3::hash(file).as_bytes() != manifest.hash {
        return Err(Error::Malformed { what: "attachment", why: "the file put together does not match its hash" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SeededEntropy;

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn assemble(manifest: &Manifest, envelopes: &[Envelope]) -> Vec<u8> {
        let mut assembly = Assembly::new(manifest.clone());
        let mut chunks = vec![Vec::new(); manifest.chunks()];
        // Any order: chunks before their index are refused, and taken once it came.
        let mut pending: Vec<&Envelope> = envelopes.iter().rev().collect();
        while !pending.is_empty() {
            pending.retain(|e| match assembly.take(e) {
                Ok(Taken::Chunk { index, bytes }) => {
                    chunks[index] = bytes;
                    false
                }
                Ok(_) => false,
                Err(_) => true,
            });
        }
        assert!(assembly.is_complete() && assembly.wanted().is_empty());
        let whole: Vec<u8> = chunks.concat();
        verify(manifest, &whole).unwrap();
        whole
    }

    #[test]
    fn a_file_goes_through_whole_in_any_order() {
        let mut rng = SeededEntropy::new(1);
        for len in [0, 1, CHUNK_LEN - 1, CHUNK_LEN, 3 * CHUNK_LEN + 5] {
            let f = file(len);
            let (manifest, envelopes) = seal(&f, "photo.jpg", "image/jpeg", &mut rng).unwrap();
            assert_eq!(envelopes.len(), 1 + len.div_ceil(CHUNK_LEN));
            assert!(envelopes.iter().all(|e| e.topic() == manifest.topic()));
            assert_eq!(assemble(&manifest, &envelopes), f, "{len} bytes");
            // The manifest goes inside a message: it reads back.
            let mut w = Writer::new();
            manifest.encode(&mut w);
            let bytes = w.into_bytes();
            assert_eq!(Manifest::decode(&mut Reader::new(&bytes, "manifest")).unwrap(), manifest);
        }
    }

    /// A member holds the key and can seal envelopes under the topic: a chunk no index names is
    /// refused before it is opened, and changes nothing; so is an envelope of another attachment.
    #[test]
    fn a_forged_chunk_is_refused_and_the_real_one_still_taken() {
        let mut rng = SeededEntropy::new(2);
        let f = file(2 * CHUNK_LEN);
        let (manifest, envelopes) = seal(&f, "list.txt", "text/plain", &mut rng).unwrap();
        let mut assembly = Assembly::new(manifest.clone());
        assert_eq!(assembly.take(&envelopes[0]).unwrap(), Taken::Index);
        let forged = seal_one(&body_key(&manifest.key), &manifest.topic(), &file(CHUNK_LEN), &mut rng).unwrap();
        assert!(assembly.take(&forged).is_err());
        let (_, other) = seal(&f, "list.txt", "text/plain", &mut rng).unwrap();
        assert!(assembly.take(&other[1]).is_err());
        assert_eq!(assembly.progress(), (0, 2));
        assert_eq!(assembly.wanted(), vec![envelopes[1].id(), envelopes[2].id()]);
        assert!(matches!(assembly.take(&envelopes[2]).unwrap(), Taken::Chunk { index: 1, .. }));
        assert_eq!(assembly.take(&envelopes[2]).unwrap(), Taken::Again);
        assert_eq!(assembly.wanted(), vec![envelopes[1].id()]);
    }

    proptest::proptest! {
        #[test]
        fn outside_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = Manifest::decode(&mut Reader::new(&bytes, "manifest"));
            let mut rng = SeededEntropy::new(4);
            let (manifest, _) = seal(&file(3), "a.bin", "", &mut rng).unwrap();
            let mut assembly = Assembly::new(manifest);
            let mut envelope = bytes.clone();
            envelope.resize(256, 0);
            envelope[0] = ENVELOPE_VERSION;
            if let Ok(e) = Envelope::parse(envelope) {
                proptest::prop_assert!(assembly.take(&e).is_err());
            }
        }
    }

    /// Review: an index that names a chunk twice would leave a place never filled, and the
    /// download asking for it for ever; an envelope of another topic is not looked at.
    #[test]
    fn an_index_naming_an_envelope_twice_is_refused() {
        let mut rng = SeededEntropy::new(5);
        let (manifest, envelopes) = seal(&file(2 * CHUNK_LEN), "a.bin", "", &mut rng).unwrap();
        let twice = [envelopes[1].id().0, envelopes[1].id().0].concat();
        let index = seal_one(&body_key(&manifest.key), &manifest.topic(), &twice, &mut rng).unwrap();
        let mut lying = Assembly::new(Manifest { index: vec![index.id()], ..manifest.clone() });
        assert!(lying.take(&index).is_err());
        let (_, elsewhere) = seal(&file(5), "b.bin", "", &mut rng).unwrap();
        assert!(Assembly::new(manifest).take(&elsewhere[0]).is_err());
        assert!(envelopes.iter().all(|e| e.as_bytes().len() == MAX_ENVELOPE_LEN), "every envelope the largest size");
    }

    #[test]
    fn manifests_that_lie_are_refused() {
        let mut rng = SeededEntropy::new(3);
        let (manifest, _) = seal(&file(10), "a.bin", "", &mut rng).unwrap();
        for bad in [
            Manifest { size: MAX_ATTACHMENT_LEN + 1, ..manifest.clone() },
            Manifest { index: vec![], ..manifest.clone() },
            Manifest { name: "../../etc/passwd".into(), ..manifest.clone() },
            Manifest { name: "".into(), ..manifest.clone() },
            Manifest { name: "invoice\u{202e}fdp.exe".into(), ..manifest.clone() },
            Manifest { name: "C:evil".into(), ..manifest.clone() },
            Manifest { name: "report.".into(), ..manifest.clone() },
            Manifest { mime: "text/\u{1b}[2J".into(), ..manifest.clone() },
        ] {
            let mut w = Writer::new();
            bad.encode(&mut w);
            let bytes = w.into_bytes();
            assert!(Manifest::decode(&mut Reader::new(&bytes, "manifest")).is_err(), "{bad:?}");
        }
        assert!(seal(&file(1), "a/b", "", &mut rng).is_err());
        // A file that was changed after it was put together is caught.
        assert!(verify(&manifest, &file(9)).is_err());
    }
}
