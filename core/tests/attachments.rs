//! Issue 19: files in conversations, between accounts. A file reaches every member whole and
//! checked; each envelope is verified before it is opened or stored, so a tampered or forged
//! chunk is refused and the true one still taken; a download resumes from what is stored; a
//! large file waits until asked for; a deleted message takes its file's envelopes with it.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use weft_core::account::{AUTO_FETCH_MAX, MessageAction, Received};
use weft_core::bundle::Bundle;
use weft_core::envelope::{Envelope, EnvelopeId};
use weft_core::sync::{EnvelopeSource, Scope};

mod common;
use common::{Person, carry, contacts, trip};

const NOW: u64 = 1_700_000_000_000;

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Every envelope `from` holds, split: those of the file's topic, and the others.
fn envelopes(from: &Person, topic: [u8; 16]) -> (Vec<Envelope>, Vec<Envelope>) {
    let (bundle, _) = Bundle::decode(&from.account.export_bundle().unwrap()).unwrap();
    bundle.envelopes.into_iter().partition(|e| e.topic() == topic)
}

fn topic_of(p: &Person, message: &EnvelopeId) -> [u8; 16] {
    let topics = p.account.attachment_topics(None);
    assert_eq!(topics.len(), 1, "one file followed");
    let _ = message;
    topics[0]
}

#[test]
fn a_file_reaches_every_member_whole() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let (mut alice, mut bob, mut carol) = trip(&clock);
    let photo = file(300_000);
    let sent = bob.account.send_file("trip", &photo, "map.jpg", "image/jpeg", "where we meet").unwrap();
    let info = sent.attachment.clone().expect("the message carries the file");
    assert_eq!((info.name.as_str(), info.size, info.is_complete()), ("map.jpg", 300_000, true));
    assert_eq!(sent.body, "where we meet");
    for member in [&mut alice, &mut carol] {
        carry(&bob, member);
        let shown = member.account.history("trip", 100).unwrap().into_iter().find(|m| m.id == sent.id).unwrap();
        let got = shown.attachment.expect("shown with its file");
        assert!(got.is_complete(), "{got:?}");
        let id = EnvelopeId::from_hex(&sent.id).unwrap();
        let (_, bytes) = member.account.attachment_bytes(&id).unwrap().expect("whole");
        assert_eq!(bytes, photo);
    }
}

#[test]
fn a_tampered_or_forged_chunk_is_refused_and_the_true_one_taken() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let (mut alice, mut bob) = contacts(&clock);
    let photo = file(200_000);
    let sent = bob.account.send_file("alice", &photo, "a.bin", "application/octet-stream", "").unwrap();
    let id = EnvelopeId::from_hex(&sent.id).unwrap();
    let topic = topic_of(&bob, &id);
    let (chunks, messages) = envelopes(&bob, topic);
    for e in messages {
        let _ = alice.account.receive_envelope(e);
    }
    assert_eq!(alice.account.attachment(&id).unwrap().have, 0);
    assert!(alice.account.attachment_topics(None).contains(&topic), "a small file is fetched unasked");

    // A chunk with one byte changed, and an envelope of the topic nobody's index names (a
    // member holds the key and could seal one): both refused, nothing stored.
    let index_first = chunks.iter().position(|e| {
        let r = alice.account.receive_envelope(e.clone());
        matches!(r, Ok(Received::Attachment(_)))
    });
    assert!(index_first.is_some());
    let taken_so_far = alice.account.attachment(&id).unwrap().have;
    for e in &chunks {
        let mut bytes = e.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = Envelope::parse(bytes).unwrap();
        assert!(alice.account.receive_envelope(tampered).is_err(), "a tampered envelope is refused");
    }
    let (_, forged) =
        weft_core::attachment::seal(b"not the file", "a.bin", "x/y", &mut weft_core::crypto::SeededEntropy::new(9))
            .unwrap();
    let mut forged_bytes = forged[1].as_bytes().to_vec();
    forged_bytes[1..17].copy_from_slice(&topic);
    let forged = Envelope::parse(forged_bytes).unwrap();
    assert!(alice.account.receive_envelope(forged).is_err(), "an envelope no index names is refused");
    assert_eq!(alice.account.attachment(&id).unwrap().have, taken_so_far, "nothing of them was stored");
    assert_eq!(alice.account.ids(&Scope::Topic(topic)).unwrap().len(), taken_so_far as usize);

    // The true envelopes still come in.
    for e in chunks {
        let _ = alice.account.receive_envelope(e);
    }
    let info = alice.account.attachment(&id).unwrap();
    assert!(info.is_complete(), "{info:?}");
    assert_eq!(alice.account.attachment_bytes(&id).unwrap().unwrap().1, photo);
    assert!(
        alice.account.attachment_topics(None).contains(&topic),
        "a file held whole is served to the other members for a while"
    );
}

#[test]
fn a_download_cut_in_the_middle_resumes_after_a_restart() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let (mut alice, mut bob) = contacts(&clock);
    let photo = file(600_000);
    let sent = bob.account.send_file("alice", &photo, "c.bin", "application/octet-stream", "").unwrap();
    let id = EnvelopeId::from_hex(&sent.id).unwrap();
    let topic = topic_of(&bob, &id);
    let (chunks, messages) = envelopes(&bob, topic);
    for e in messages {
        let _ = alice.account.receive_envelope(e);
    }
    // Pieces come until half are stored (a chunk before the index that names it is refused,
    // and comes again later, as a peer would offer it again); then the process stops.
    let total = alice.account.attachment(&id).unwrap().total;
    let mut stored = 0;
    for _ in 0..2 {
        for e in &chunks {
            if stored * 2 < total && alice.account.receive_envelope(e.clone()).is_ok() {
                stored += 1;
            }
        }
    }
    assert_eq!(alice.account.attachment(&id).unwrap().have, stored);
    let mut alice = alice.reopen(1, &clock);
    assert_eq!(alice.account.attachment(&id).unwrap().have, stored, "what was stored counts after the restart");
    // Only the rest is taken, each once.
    let rest = chunks.iter().filter(|e| alice.account.receive_envelope((*e).clone()).is_ok()).count() as u32;
    assert_eq!(stored + rest, total);
    assert_eq!(alice.account.attachment_bytes(&id).unwrap().unwrap().1, photo);
}

#[test]
fn a_large_file_waits_until_asked_for() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let (mut alice, mut bob) = contacts(&clock);
    let big = file(AUTO_FETCH_MAX as usize + 1);
    let sent = bob.account.send_file("alice", &big, "film.mp4", "video/mp4", "").unwrap();
    let id = EnvelopeId::from_hex(&sent.id).unwrap();
    let topic = topic_of(&bob, &id);
    let (_, messages) = envelopes(&bob, topic);
    for e in messages {
        let _ = alice.account.receive_envelope(e);
    }
    let info = alice.account.attachment(&id).unwrap();
    assert!(!info.fetching && info.have == 0, "{info:?}");
    assert!(!alice.account.attachment_topics(None).contains(&topic), "not followed unasked");
    assert!(alice.account.attachment_bytes(&id).unwrap().is_none(), "not here yet: asked for");
    assert!(alice.account.attachment(&id).unwrap().fetching);
    assert!(alice.account.attachment_topics(None).contains(&topic), "followed once asked for");
    assert!(!alice.account.mesh_attachment_topics().contains(&topic), "too large for the mesh");
}

#[test]
fn a_deleted_message_takes_its_file_with_it() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let (mut alice, mut bob) = contacts(&clock);
    let sent = bob.account.send_file("alice", &file(100_000), "d.bin", "application/octet-stream", "").unwrap();
    let id = EnvelopeId::from_hex(&sent.id).unwrap();
    let topic = topic_of(&bob, &id);
    carry(&bob, &mut alice);
    assert!(alice.account.attachment(&id).unwrap().is_complete());
    bob.account.act("alice", MessageAction::Delete { of: id }).unwrap();
    carry(&bob, &mut alice);
    for p in [&alice, &bob] {
        assert!(p.account.attachment(&id).is_err(), "the file is gone with its message");
        assert_eq!(p.account.ids(&Scope::Topic(topic)).unwrap().len(), 0, "and so are its envelopes");
    }
}

#[test]
fn a_disappeared_message_takes_its_file_with_it() {
    const HOUR_MS: u64 = 60 * 60 * 1000;
    let clock = Arc::new(AtomicU64::new(NOW));
    let (mut alice, mut bob) = contacts(&clock);
    bob.account.set_disappearing("alice", Some(HOUR_MS)).unwrap();
    carry(&bob, &mut alice);
    let sent = bob.account.send_file("alice", &file(100_000), "e.bin", "application/octet-stream", "").unwrap();
    let id = EnvelopeId::from_hex(&sent.id).unwrap();
    let topic = topic_of(&bob, &id);
    carry(&bob, &mut alice);
    assert!(alice.account.attachment(&id).unwrap().is_complete());
    clock.fetch_add(2 * HOUR_MS, std::sync::atomic::Ordering::SeqCst);
    for p in [&mut alice, &mut bob] {
        p.account.follow_the_day();
        assert!(p.account.attachment(&id).is_err(), "the file is gone with its message");
        assert_eq!(p.account.ids(&Scope::Topic(topic)).unwrap().len(), 0, "and so are its envelopes");
    }
}
