//! What a messenger's user can do with contacts and groups beyond writing (issue 15, finding 6):
//! reject, block and delete contacts; leave and rename groups; a conversation list with unread
//! counts and last messages. Each test fails if the behaviour breaks.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

mod common;
use common::{carry, contacts, person, texts, trip};

use weft_core::Error;
use weft_core::store::ContactStatus;

#[test]
fn a_rejected_request_is_forgotten_and_not_shown_again() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let mut alice = person("alice", 1, &clock);
    let mut mallory = person("mallory", 9, &clock);
    mallory.account.add_contact(&alice.account.card().to_link(), None).unwrap();
    mallory.account.send("alice", "hello?").unwrap();
    let report = carry(&mallory, &mut alice);
    assert_eq!(report.new_contacts, vec!["mallory".to_owned()]);
    let accepted = alice.account.contacts().unwrap().into_iter().find(|c| c.name == "mallory").unwrap();
    assert!(matches!(alice.account.reject_contact("bob"), Err(Error::NotFound { .. })));
    alice.account.reject_contact(&hex(&accepted.account)).unwrap();
    assert!(alice.account.contacts().unwrap().is_empty());
    assert!(alice.account.conversations().unwrap().is_empty());
    // The same request comes again (her node republishes it): not shown again.
    let again = carry(&mallory, &mut alice);
    assert!(again.new_contacts.is_empty(), "{again:?}");
    assert!(alice.account.contacts().unwrap().is_empty());
}

#[test]
fn only_a_waiting_request_can_be_rejected() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, _bob) = contacts(&clock);
    assert!(matches!(alice.account.reject_contact("bob"), Err(Error::NotAllowed(_))));
}

#[test]
fn a_blocked_contact_is_neither_shown_nor_written_to_until_unblocked() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob) = contacts(&clock);
    bob.account.send("alice", "before").unwrap();
    carry(&bob, &mut alice);
    alice.account.block("bob").unwrap();
    let listed = alice.account.contacts().unwrap();
    assert!(listed[0].blocked);
    bob.account.send("alice", "while blocked").unwrap();
    let report = carry(&bob, &mut alice);
    assert!(report.messages.iter().all(|m| m.kind != "text"), "{:?}", report.messages);
    assert_eq!(texts(&alice, "bob"), vec!["bob: before"]);
    assert_eq!(alice.account.unread_count(&listed[0].conversation).unwrap(), 1);
    assert!(matches!(alice.account.send("bob", "hi"), Err(Error::NotAllowed(_))));
    // Nothing of ours went out to him either: no receipt for what he wrote while blocked.
    alice.account.unblock("bob").unwrap();
    assert!(!alice.account.contacts().unwrap()[0].blocked);
    alice.account.send("bob", "back").unwrap();
    carry(&alice, &mut bob);
    assert_eq!(texts(&bob, "alice"), vec!["bob: before", "bob: while blocked", "alice: back"]);
}

#[test]
fn a_blocked_member_is_not_shown_in_a_group_and_a_blocked_stranger_cannot_ask() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, mut carol) = trip(&clock);
    let bob_id = hex(&bob.account.account_public());
    carol.account.block(&bob_id).unwrap();
    bob.account.send("trip", "carol cannot see this").unwrap();
    alice.account.send("trip", "but this").unwrap();
    carry(&bob, &mut carol);
    carry(&alice, &mut carol);
    assert_eq!(texts(&carol, "trip"), vec!["alice: but this"]);

    let mut mallory = person("mallory", 9, &clock);
    alice.account.block(&hex(&mallory.account.account_public())).unwrap();
    mallory.account.add_contact(&alice.account.card().to_link(), None).unwrap();
    let report = carry(&mallory, &mut alice);
    assert!(report.new_contacts.is_empty());
    assert!(alice.account.contacts().unwrap().iter().all(|c| c.name != "mallory"));
    assert!(matches!(alice.account.block(&hex(&alice.account.account_public())), Err(Error::NotAllowed(_))));
}

#[test]
fn a_deleted_contact_takes_the_conversation_but_not_the_groups() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, _carol) = trip(&clock);
    bob.account.send("alice", "private").unwrap();
    carry(&bob, &mut alice);
    alice.account.delete_contact("bob").unwrap();
    assert!(alice.account.contacts().unwrap().iter().all(|c| c.name != "bob"));
    let names: Vec<String> = alice.account.conversations().unwrap().into_iter().map(|c| c.name).collect();
    assert!(!names.contains(&"bob".to_owned()) && names.contains(&"trip".to_owned()), "{names:?}");
    // Bob stays a member of the trip, and alice still reads him there.
    bob.account.send("trip", "still here").unwrap();
    carry(&bob, &mut alice);
    let bob_there = alice.account.members("trip").unwrap();
    let bob_there = bob_there.iter().find(|m| m.account == bob.account.account_public()).unwrap();
    assert_eq!(texts(&alice, "trip").last().unwrap(), &format!("{}: still here", bob_there.name));
    // What was written in the 1:1 went with it.
    let (bundle, _) = weft_core::bundle::Bundle::decode(&alice.account.export_bundle().unwrap()).unwrap();
    assert!(bundle.requests.is_empty());
}

#[test]
fn a_member_who_leaves_is_removed_by_an_admin_and_reads_nothing_after() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, mut carol) = trip(&clock);
    carry(&bob, &mut alice);
    carry(&carol, &mut alice);
    carol.account.leave_group("trip").unwrap();
    let left = carol.account.conversations().unwrap().into_iter().find(|c| c.name == "trip").unwrap();
    assert!(!left.active, "a group we left is not active");
    assert!(matches!(carol.account.send("trip", "one more"), Err(Error::NotAllowed(_))));
    // Alice (the admin) gets the request and removes her: a new epoch carol cannot read.
    carry(&carol, &mut alice);
    let members = alice.account.members("trip").unwrap();
    assert_eq!(members.len(), 2, "{members:?}");
    let history = alice.account.history("trip", 100).unwrap();
    let kinds: Vec<&str> = history.iter().map(|m| m.kind.as_str()).collect();
    let at = |kind: &str| kinds.iter().rposition(|k| *k == kind);
    assert!(at("left").is_some() && at("left") < at("removed"), "{kinds:?}");
    carry(&alice, &mut bob);
    assert_eq!(bob.account.members("trip").unwrap().len(), 2);
    alice.account.send("trip", "after carol left").unwrap();
    carry(&alice, &mut carol);
    assert!(!texts(&carol, "trip").iter().any(|t| t.contains("after carol left")));
    assert!(carol.account.history("trip", 100).unwrap().iter().any(|m| m.kind == "removed" && m.body == "you"));
    carry(&alice, &mut bob);
    assert!(texts(&bob, "trip").iter().any(|t| t.contains("after carol left")));
}

#[test]
fn the_only_admin_cannot_leave_a_group_with_others_in_it() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, _bob, _carol) = trip(&clock);
    assert!(matches!(alice.account.leave_group("trip"), Err(Error::NotAllowed(_))));
    let mut solo = person("solo", 7, &clock);
    solo.account.create_group("alone").unwrap();
    solo.account.leave_group("alone").unwrap();
    assert!(!solo.account.conversations().unwrap()[0].active);
}

#[test]
fn an_admin_renames_a_group_for_everyone_and_a_member_cannot() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, _carol) = trip(&clock);
    carry(&bob, &mut alice);
    let id = alice.account.resolve("trip").unwrap().id;
    alice.account.rename_group(&hex(&id), "voyage").unwrap();
    carry(&alice, &mut bob);
    let on_bob = bob.account.conversations().unwrap().into_iter().find(|c| c.id == id).unwrap();
    assert_eq!(on_bob.name, "voyage");
    let last = bob.account.history(&hex(&id), 1).unwrap();
    assert_eq!((last[0].kind.as_str(), last[0].body.as_str()), ("renamed", "voyage"));
    assert!(matches!(bob.account.rename_group(&hex(&id), "mine"), Err(Error::NotAllowed(_))));
}

#[test]
fn the_conversation_list_shows_unread_counts_and_last_messages_newest_first() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, _carol) = trip(&clock);
    bob.account.send("alice", "one").unwrap();
    bob.account.send("alice", "two").unwrap();
    carry(&bob, &mut alice);
    let overview = alice.account.overview().unwrap();
    assert_eq!(overview[0].info.name, "bob", "the conversation written in last comes first");
    assert_eq!(overview[0].unread, 2);
    assert_eq!(overview[0].last.as_ref().unwrap().body, "two");
    alice.account.mark_read("bob").unwrap();
    alice.account.send("trip", "newest").unwrap();
    let overview = alice.account.overview().unwrap();
    assert_eq!(overview[0].info.name, "trip");
    assert_eq!(overview[0].unread, 0);
    assert_eq!(overview[1].unread, 0);
    assert_eq!(overview[0].last.as_ref().unwrap().state, Some("queued"));
}

#[test]
fn a_safety_number_and_verification_by_account_id() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, bob) = contacts(&clock);
    let bob_id = hex(&bob.account.account_public());
    let on_alice = alice.account.safety_number(&bob_id).unwrap();
    assert_eq!(on_alice, bob.account.safety_number("alice").unwrap());
    assert!(alice.account.mark_verified(&bob_id).unwrap().verified);
    assert_eq!(alice.account.contacts().unwrap()[0].status, ContactStatus::Accepted);
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

#[test]
fn a_newcomers_first_message_comes_after_her_addition() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, _bob, mut carol) = trip(&clock);
    carol.account.send("trip", "hi all").unwrap();
    carry(&carol, &mut alice);
    let history = alice.account.history("trip", 100).unwrap();
    let lines: Vec<String> = history.iter().map(|m| format!("{} {} {}", m.lamport, m.kind, m.body)).collect();
    let added = history.iter().rposition(|m| m.kind == "added").unwrap();
    let hi = history.iter().position(|m| m.body == "hi all").unwrap();
    assert!(added < hi, "{lines:?}");
}

#[test]
fn a_group_renamed_after_another_groups_short_id_does_not_take_what_is_sent_to_it() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, _carol) = trip(&clock);
    // Bob makes a group of his own with alice, then renames it after the start of the trip's id.
    let trip_id = alice.account.resolve("trip").unwrap().id;
    let prefix = hex(&trip_id[..4]);
    bob.account.create_group("mine").unwrap();
    bob.account.invite("mine", "alice").unwrap();
    assert!(matches!(bob.account.rename_group("mine", &prefix), Err(Error::Malformed { .. })));
    // (A hostile client that renames it anyway is shown under another name:
    // `conversations::tests::a_group_name_that_looks_like_an_id_is_not_shown`.) An id's prefix
    // names the conversation with that id before any name is looked at.
    carry(&bob, &mut alice);
    assert_eq!(alice.account.resolve(&prefix).unwrap().id, trip_id);
    assert!(alice.account.conversations().unwrap().iter().all(|c| c.name != prefix));
}

#[test]
fn after_leaving_nothing_of_hers_goes_to_the_group() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, _bob, mut carol) = trip(&clock);
    alice.account.send("trip", "one").unwrap();
    alice.account.send("trip", "two").unwrap();
    carry(&alice, &mut carol);
    carol.account.leave_group("trip").unwrap();
    let queued = carol.account.outbox_len().unwrap();
    carol.account.mark_read("trip").unwrap();
    carol.account.update_keys(Some("trip")).unwrap();
    assert_eq!(carol.account.outbox_len().unwrap(), queued, "no receipt, no key update after leaving");
}

#[test]
fn the_last_admin_leaves_only_once_the_others_did() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob, mut carol) = trip(&clock);
    alice.account.create_group("crew").unwrap();
    alice.account.invite("crew", "carol").unwrap();
    alice.account.invite("crew", "bob").unwrap();
    carry(&alice, &mut carol);
    carry(&alice, &mut bob);
    // (Only the founder is an admin: she cannot leave while others stay.)
    assert!(matches!(alice.account.leave_group("crew"), Err(Error::NotAllowed(_))));
    carol.account.leave_group("crew").unwrap();
    bob.account.leave_group("crew").unwrap();
    carry(&carol, &mut alice);
    carry(&bob, &mut alice);
    assert_eq!(alice.account.members("crew").unwrap().len(), 1);
    // Alone now, she may go too.
    alice.account.leave_group("crew").unwrap();
}

#[test]
fn a_blocked_contacts_invitation_puts_us_nowhere() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, mut bob) = contacts(&clock);
    alice.account.block("bob").unwrap();
    bob.account.create_group("trap").unwrap();
    bob.account.invite("trap", "alice").unwrap();
    carry(&bob, &mut alice);
    assert!(alice.account.conversations().unwrap().iter().all(|c| c.name != "trap"));
    alice.account.unblock("bob").unwrap();
    alice.account.accept_contact("bob").unwrap();
    assert!(alice.account.conversations().unwrap().iter().all(|c| c.name != "trap"), "not held for later either");
}

#[test]
fn a_clock_in_the_future_does_not_pin_a_conversation_at_the_top() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let (mut alice, _bob, _carol) = trip(&clock);
    // Mallory's clock runs a year ahead.
    let ahead = Arc::new(AtomicU64::new(1_000_000 + 365 * common::DAY_MS));
    let mut mallory = person("mallory", 9, &ahead);
    mallory.account.add_contact(&alice.account.card().to_link(), None).unwrap();
    carry(&mallory, &mut alice);
    alice.account.accept_contact("mallory").unwrap();
    carry(&alice, &mut mallory);
    mallory.account.send("alice", "from the future").unwrap();
    carry(&mallory, &mut alice);
    alice.account.send("trip", "written after").unwrap();
    let overview = alice.account.overview().unwrap();
    assert_eq!(overview[0].info.name, "trip", "{:?}", overview.iter().map(|o| &o.info.name).collect::<Vec<_>>());
}
