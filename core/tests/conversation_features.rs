//! Issue 19: replies, reactions, edits and deletes-for-everyone between accounts, carried as
//! bundles; a member cannot change someone else's message, a removed member's edit is
//! refused, and a deleted message's text leaves every member's database file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_core::account::{Account, MessageAction, MessageInfo, ReactionInfo};
use weft_core::crypto::SeededEntropy;
use weft_core::envelope::EnvelopeId;
use weft_core::store::{DB_FILE, DatabaseKey};

mod common;
use common::{carry, trip};

const NOW: u64 = 1_700_000_000_000;

fn id(m: &MessageInfo) -> EnvelopeId {
    EnvelopeId::from_hex(&m.id).unwrap()
}

/// The text message of `conversation` whose id is `id`, as `p` shows it.
fn shown(account: &Account, conversation: &str, id: &EnvelopeId) -> MessageInfo {
    account
        .history(conversation, 1000)
        .unwrap()
        .into_iter()
        .find(|m| m.id == id.to_hex())
        .unwrap_or_else(|| panic!("{} is not in {conversation}", id.to_hex()))
}

/// Alice and Bob as contacts, their databases unencrypted so that a test can search the raw
/// files: (alice's home, bob's home, alice, bob).
fn plaintext_contacts(clock: &Arc<AtomicU64>) -> (tempfile::TempDir, tempfile::TempDir, Account, Account) {
    let make = |dir: &std::path::Path, seed: u64, name: &str| {
        let c = clock.clone();
        Account::create_with_key(
            dir,
            &DatabaseKey::plaintext_for_tests(),
            Some(name),
            Box::new(SeededEntropy::new(seed)),
            Box::new(move || c.fetch_add(1, Ordering::SeqCst)),
        )
        .unwrap()
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut alice = make(da.path(), 1, "alice");
    let mut bob = make(db.path(), 2, "bob");
    alice.add_contact(&bob.card().to_link(), None).unwrap();
    bob.import_bundle(&alice.export_bundle().unwrap()).unwrap();
    bob.accept_contact("alice").unwrap();
    alice.import_bundle(&bob.export_bundle().unwrap()).unwrap();
    (da, db, alice, bob)
}

#[test]
fn replies_reactions_edits_and_deletes_reach_every_member() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let (mut alice, mut bob, mut carol) = trip(&clock);
    let asked = bob.account.send("trip", "dinner at six?").unwrap();
    let asked = id(&asked);
    carry(&bob, &mut alice);
    carry(&bob, &mut carol);

    // A reply quotes the message it answers.
    let reply =
        alice.account.act("trip", MessageAction::Reply { to: asked, text: "yes, the usual place".into() }).unwrap();
    assert_eq!(reply.reply_to.as_deref(), Some(asked.to_hex().as_str()));
    carry(&alice, &mut bob);
    let seen = shown(&bob.account, "trip", &id(&reply));
    assert_eq!((seen.body.as_str(), seen.reply_to), ("yes, the usual place", Some(asked.to_hex())));

    // Reactions: each member's latest counts; a changed mind replaces the first.
    alice.account.act("trip", MessageAction::React { to: asked, emoji: "🎉".into() }).unwrap();
    let mine = alice.account.act("trip", MessageAction::React { to: asked, emoji: "👍".into() }).unwrap();
    assert!(mine.changed_by.is_some());
    assert_eq!(mine.reactions, vec![ReactionInfo { emoji: "👍".into(), count: 1, mine: true }]);
    carol.account.act("trip", MessageAction::React { to: asked, emoji: "👍".into() }).unwrap();
    carry(&alice, &mut bob);
    carry(&carol, &mut bob);
    assert_eq!(
        shown(&bob.account, "trip", &asked).reactions,
        vec![ReactionInfo { emoji: "👍".into(), count: 2, mine: false }]
    );
    // Letters are not a reaction: it could pass for text beside someone else's message.
    assert!(carol.account.act("trip", MessageAction::React { to: asked, emoji: "no".into() }).is_err());

    // The sender edits: every member shows the new text, marked edited.
    bob.account.act("trip", MessageAction::Edit { of: asked, text: "dinner at seven?".into() }).unwrap();
    carry(&bob, &mut alice);
    let edited = shown(&alice.account, "trip", &asked);
    assert_eq!((edited.body.as_str(), edited.edited), ("dinner at seven?", true));
    // Only the sender: another member's client refuses to try.
    assert!(alice.account.act("trip", MessageAction::Edit { of: asked, text: "cancelled".into() }).is_err());
    assert!(alice.account.act("trip", MessageAction::Delete { of: asked }).is_err());

    // The sender deletes it for everyone: no text, no reactions, and nothing more to do to it.
    bob.account.act("trip", MessageAction::Delete { of: asked }).unwrap();
    carry(&bob, &mut alice);
    carry(&bob, &mut carol);
    for account in [&alice.account, &carol.account, &bob.account] {
        let gone = shown(account, "trip", &asked);
        assert!(gone.deleted && gone.body.is_empty() && gone.reactions.is_empty(), "{gone:?}");
    }
    assert!(carol.account.act("trip", MessageAction::React { to: asked, emoji: "👍".into() }).is_err());
    // A message that does not exist, or is in another conversation, is named as not found.
    let nowhere = EnvelopeId([7; 32]);
    assert!(alice.account.act("trip", MessageAction::Reply { to: nowhere, text: "?".into() }).is_err());
}

/// A member removed before they heard of it edits their old message: the others refuse the
/// edit (their membership is checked when it arrives, not when it was written).
#[test]
fn a_removed_members_edit_is_refused() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let (mut alice, mut bob, mut carol) = trip(&clock);
    let said = carol.account.send("trip", "bring the banner").unwrap();
    carry(&carol, &mut alice);
    carry(&carol, &mut bob);
    alice.account.remove_member("trip", "carol").unwrap();
    carry(&alice, &mut bob);
    // Carol has not heard: her client still takes her for a member.
    carol.account.act("trip", MessageAction::Edit { of: id(&said), text: "bring nothing".into() }).unwrap();
    carol.account.act("trip", MessageAction::Delete { of: id(&said) }).unwrap();
    carry(&carol, &mut alice);
    carry(&carol, &mut bob);
    for account in [&alice.account, &bob.account] {
        let kept = shown(account, "trip", &id(&said));
        assert_eq!((kept.body.as_str(), kept.edited, kept.deleted), ("bring the banner", false, false));
    }
}

/// The text of a message deleted for everyone leaves the database file of the member who
/// received it, and of its sender: secure delete, and the write-ahead log folded back in.
#[test]
fn a_deleted_messages_text_leaves_every_members_file() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let (da, db, mut alice, mut bob) = plaintext_contacts(&clock);

    let secret = "the list is in the blue folder";
    let amended = "the list is with marta now";
    let said = alice.send("bob", secret).unwrap();
    alice.act("bob", MessageAction::Edit { of: id(&said), text: amended.into() }).unwrap();
    bob.import_bundle(&alice.export_bundle().unwrap()).unwrap();
    assert_eq!(shown(&bob, "alice", &id(&said)).body, amended);
    let file = |dir: &std::path::Path| {
        let mut all = Vec::new();
        for name in [DB_FILE.to_string(), format!("{DB_FILE}-wal")] {
            all.extend(std::fs::read(dir.join(name)).unwrap_or_default());
        }
        all
    };
    let contains = |haystack: &[u8], needle: &str| haystack.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains(&file(db.path()), secret), "the search must see a stored body");

    alice.act("bob", MessageAction::Delete { of: id(&said) }).unwrap();
    bob.import_bundle(&alice.export_bundle().unwrap()).unwrap();
    assert!(shown(&bob, "alice", &id(&said)).deleted);
    for (who, dir) in [("bob", db.path()), ("alice", da.path())] {
        let raw = file(dir);
        assert!(!contains(&raw, secret), "{who}'s file still holds the deleted text");
        assert!(!contains(&raw, amended), "{who}'s file still holds the deleted message's edit");
    }
}

/// Issue 19, disappearing messages: any member sets the timer, every member is shown who did,
/// and the texts written after it leave every member's devices when it runs out; what was
/// written before it stays (a member cannot wipe the group's history by setting a timer), and
/// turned off, later texts stay.
#[test]
fn a_timer_any_member_sets_makes_later_texts_disappear_on_every_device() {
    const HOUR_MS: u64 = 60 * 60 * 1000;
    let clock = Arc::new(AtomicU64::new(NOW));
    let (mut alice, mut bob, mut carol) = trip(&clock);
    alice.account.send("trip", "before the timer").unwrap();
    carry(&alice, &mut bob);
    // Bob is no admin: any member may set it.
    let set = bob.account.set_disappearing("trip", Some(HOUR_MS)).unwrap();
    assert_eq!((set.kind.as_str(), set.body.as_str()), ("timer", "3600000"));
    carry(&bob, &mut alice);
    carry(&bob, &mut carol);
    for p in [&alice, &carol] {
        assert_eq!(p.account.disappearing("trip").unwrap(), Some(HOUR_MS));
        let shown = p.account.history("trip", 100).unwrap();
        assert!(shown.iter().any(|m| m.kind == "timer" && m.sender == "bob"), "every member is told who set it");
    }
    alice.account.send("trip", "after the timer").unwrap();
    for to in [&mut bob, &mut carol] {
        carry(&alice, to);
    }
    let texts = |p: &common::Person| common::texts(p, "trip");
    assert!(texts(&carol).contains(&"alice: after the timer".to_string()));

    clock.fetch_add(2 * HOUR_MS, Ordering::SeqCst);
    for p in [&mut alice, &mut bob, &mut carol] {
        p.account.follow_the_day();
        assert_eq!(texts(p), vec!["alice: before the timer".to_string()], "on {:?}", p.account.name());
    }

    // Turned off by another member: what comes later stays.
    carol.account.set_disappearing("trip", None).unwrap();
    carry(&carol, &mut alice);
    assert_eq!(alice.account.disappearing("trip").unwrap(), None);
    alice.account.send("trip", "after it was turned off").unwrap();
    clock.fetch_add(2 * HOUR_MS, Ordering::SeqCst);
    alice.account.follow_the_day();
    assert!(texts(&alice).contains(&"alice: after it was turned off".to_string()));
    // Out of bounds: under a minute, over a year.
    assert!(alice.account.set_disappearing("trip", Some(1_000)).is_err());
    assert!(alice.account.set_disappearing("trip", Some(400 * 24 * HOUR_MS)).is_err());
}

/// When a disappearing message's timer runs out its text leaves the database file of the
/// member who received it and of its sender.
#[test]
fn a_disappeared_messages_text_leaves_the_file() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let (da, db, mut alice, mut bob) = plaintext_contacts(&clock);
    alice.set_disappearing("bob", Some(5 * 60 * 1000)).unwrap();
    let secret = "the safe house is on mill street";
    alice.send("bob", secret).unwrap();
    bob.import_bundle(&alice.export_bundle().unwrap()).unwrap();
    let contains = |dir: &std::path::Path| {
        let mut all = Vec::new();
        for name in [DB_FILE.to_string(), format!("{DB_FILE}-wal")] {
            all.extend(std::fs::read(dir.join(name)).unwrap_or_default());
        }
        all.windows(secret.len()).any(|w| w == secret.as_bytes())
    };
    assert!(contains(db.path()), "the search must see a stored body");
    clock.fetch_add(6 * 60 * 1000, Ordering::SeqCst);
    for (who, account, dir) in [("alice", &mut alice, da.path()), ("bob", &mut bob, db.path())] {
        account.follow_the_day();
        assert!(!contains(dir), "{who}'s file still holds a disappeared message");
    }
}
