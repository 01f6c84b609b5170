//! Large groups (issue 13): what does not fit one envelope is split, and every device still gets
//! what it needs. A group of MEMBERS members with four devices each: an update's key shares,
//! a removal's epoch shares and a newcomer's welcome each take several envelopes, arrive in any
//! order, and a device whose share is in the last of them reads on.

mod common;

use common::group::{NOW, Receiver, envelopes};
use common::members::{DEVICES, add, member};
use weft_core::crypto::SeededEntropy;
use weft_core::envelope::Envelope;
use weft_core::group::{Action, Content, Event, Group, LocalDevice};
use weft_core::identity::AccountKey;

const MEMBERS: usize = 1_000;

/// Delivers `sent` to `r` last first (the part with the change itself comes last).
fn deliver_backwards(r: &mut Receiver, sent: &[Envelope]) {
    for e in sent.iter().rev() {
        r.deliver(e).unwrap();
    }
}

#[test]
fn a_group_of_a_thousand_members_with_four_devices_each() {
    let mut rng = SeededEntropy::new(1000);
    let alice = LocalDevice::generate(&AccountKey::generate(&mut rng).unwrap(), 0, &mut rng).unwrap();
    let mut group = Group::create(&alice, "stadium", NOW, &mut rng).unwrap();
    let members: Vec<Vec<LocalDevice>> = (1..MEMBERS).map(|_| member(&mut rng)).collect();
    // Added before alice knows their prekeys: nothing is sealed while the group grows (the
    // benchmark times that); from here on every device is reachable.
    for m in &members {
        group.change_membership(&alice, add(m), NOW, &mut rng).unwrap();
    }
    for d in members.iter().flatten() {
        group.note_prekey(d.prekeys.current());
    }
    assert_eq!(group.member_count(), MEMBERS);

    // The last device of the last member: its shares are in the last envelope of each step.
    let last = members.last().unwrap().last().unwrap();
    let welcome = group.welcome(&alice, &last.account(), NOW, &mut rng).unwrap();
    let joined = Group::from_welcome(last, &welcome, &alice.cert, NOW).unwrap();
    let mut far = Receiver::new(clone_device(last), joined);

    // An update: 3,996 shares take twelve key shares; the last device reads alice afterwards.
    let update = envelopes(group.update(&alice, NOW, &mut rng).unwrap());
    assert_eq!(update.len(), ((MEMBERS - 1) * DEVICES).div_ceil(weft_core::group::SHARES_PER_MESSAGE));
    deliver_backwards(&mut far, &update);
    let hello = envelopes(group.send_text(&alice, "hello, stadium", NOW, &mut rng).unwrap());
    for e in &hello {
        far.deliver(e).unwrap();
    }
    assert_eq!(far.history().last().unwrap().2, "hello, stadium");

    // A removal: the change and nine more envelopes of epoch shares, the change arriving last.
    let gone = &members[0];
    let removal = envelopes(
        group.change_membership(&alice, Action::Remove { member: gone[0].account() }, NOW, &mut rng).unwrap(),
    );
    assert!(removal.len() > 1, "the epoch shares take several envelopes");
    deliver_backwards(&mut far, &removal);
    assert!(far.parked.is_empty(), "what waited for the change opened once it came");
    assert_eq!(far.group.current_epoch().map(|e| e.id), group.current_epoch().map(|e| e.id), "in the new epoch");
    let after = envelopes(group.send_text(&alice, "after the removal", NOW, &mut rng).unwrap());
    for e in &after {
        far.deliver(e).unwrap();
    }
    assert_eq!(far.history().last().unwrap().2, "after the removal");

    // A newcomer's welcome does not fit one envelope: it goes in parts through the 1:1
    // conversation, in any order, and the newcomer joins from them.
    let newcomer = member(&mut rng);
    for d in &newcomer {
        group.note_prekey(d.prekeys.current());
    }
    group.change_membership(&alice, add(&newcomer), NOW, &mut rng).unwrap();
    let welcome = group.welcome(&alice, &newcomer[0].account(), NOW, &mut rng).unwrap();
    let mut pair_alice = Group::pair(&alice, newcomer[0].account(), &[7; 32], NOW);
    pair_alice.mark_shared(newcomer[0].account());
    let chain = pair_alice.ensure_own_chain(NOW, &mut rng).unwrap().clone();
    let parts = pair_alice.send_invite(&alice, welcome, NOW, &mut rng).unwrap();
    assert!(parts.len() > 1, "the welcome takes {} envelopes", parts.len());
    assert!(parts.iter().all(|p| matches!(p.inner.content, Content::InvitePart(_))));
    let mut pair_new = Group::pair(&newcomer[0], alice.account(), &[7; 32], NOW);
    pair_new.learn_device(&alice.cert).unwrap();
    pair_new.learn_chain(alice.id(), chain.generation, chain.next_index, *chain.chain_key);
    let epoch = pair_new.current_epoch().unwrap().id;
    let mut invited = None;
    let mut order: Vec<&weft_core::group::Sealed> = parts.iter().collect();
    order.reverse();
    for part in order {
        let opened = pair_new.open(&newcomer[0], &part.envelope, &epoch).unwrap();
        if let Event::Invited { welcome, .. } = pair_new.accept(&newcomer[0], opened).unwrap() {
            invited = Some(welcome);
        }
    }
    let welcome = invited.expect("the parts put together make the welcome");
    let joined = Group::from_welcome(&newcomer[0], &welcome, &alice.cert, NOW).unwrap();
    assert_eq!(joined.member_count(), MEMBERS);
}

fn clone_device(d: &LocalDevice) -> LocalDevice {
    let keys = weft_core::identity::DeviceKeys::from_secrets(&d.keys.sign_secret(), &d.keys.dh_secret_bytes());
    let prekeys = weft_core::identity::PrekeyRing::decode(&d.prekeys.encode(), &keys).unwrap();
    LocalDevice { cert: d.cert.clone(), keys, prekeys }
}
