//! The fuzzing corpus's seeds (fuzz/corpus/TARGET/), made from real encodings: envelopes,
//! bundles and contact requests two real accounts exchanged, the documented contact link, and
//! messages of each kind built with the encoders the node uses. Written on demand, after a
//! deliberate change of a format:
//!
//! `cargo test -p weft-tests --test fuzz_seeds -- --ignored`
//!
//! Each seed is in the form its target reads (docs/FUZZING.md): most take the bytes as they
//! come; the stream targets take length-prefixed steps.

use std::path::{Path, PathBuf};

use weft_core::bundle::Bundle;
use weft_core::crypto::{Secret32, SeededEntropy};
use weft_core::devices::grant::{Grant, GrantedContact, GrantedGroup, History, HistoryMessage};
use weft_core::devices::revocation::Revocation;
use weft_core::devices::rotation::RotatedLink;
use weft_core::group::{Action, Content, Inner, LocalDevice, Receipt, Share, SignedOp, Welcome};
use weft_core::identity::{AccountKey, ContactCard};
use weft_core::mesh::fragment::Fragmenter;
use weft_core::mesh::message::MeshMessage;
use weft_core::mesh::{Output, Router, RouterConfig};
use weft_core::net::{decode_batch, encode_batch};
use weft_core::store::ContactStatus;
use weft_core::sync::{Buckets, Cursor, EnvelopeSource, Initiator, Item, PeerSync, Scope, SyncMessage};
use weft_tests::nodes::{create, introduce};

const NOW: u64 = 1_750_000_000_000;

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(corpus(target).join(format!("seed-{name}")), bytes).unwrap();
}

fn device(seed: u64) -> (AccountKey, LocalDevice) {
    let mut rng = SeededEntropy::new(seed);
    let account = AccountKey::generate(&mut rng).unwrap();
    let device = LocalDevice::generate(&account, NOW, &mut rng).unwrap();
    (account, device)
}

/// Steps of a stream target: each preceded by its length in two bytes.
fn steps(first: &[u8], steps: &[Vec<u8>]) -> Vec<u8> {
    let mut out = first.to_vec();
    for s in steps {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s);
    }
    out
}

struct Store(Vec<(Item, Vec<u8>)>);

impl EnvelopeSource for Store {
    fn ids(&self, scope: &Scope) -> Option<Vec<Item>> {
        (*scope == Scope::Topic([7; 16])).then(|| self.0.iter().map(|(id, _)| *id).collect())
    }
    fn envelope(&self, _: &Scope, id: &Item) -> Option<Vec<u8>> {
        self.0.iter().find(|(i, _)| i == id).map(|(_, e)| e.clone())
    }
}

#[tokio::test]
#[ignore = "writes the fuzzing corpus's seeds into the source tree"]
async fn write_fuzz_seeds() {
    // Two real accounts: a contact request each way, a 1:1 message, a group and its invitation.
    let dir = tempfile::tempdir().unwrap();
    let alice = create(dir.path(), "alice").await;
    let bob = create(dir.path(), "bob").await;
    let alice_link = alice.link().await.unwrap();
    write("contact_card", "link", alice_link.as_bytes());
    write("contact_card", "card", &ContactCard::from_link(&alice_link).unwrap().to_bytes());
    bob.add_contact(alice_link, None).await.unwrap();
    let request_bundle = bob.export_bundle().await.unwrap();
    introduce(&alice, &bob).await;
    alice.send("bob".into(), "hello bob".into()).await.unwrap();
    alice.create_group("team".into()).await.unwrap();
    alice.invite("team".into(), "bob".into()).await.unwrap();
    alice.send("team".into(), "hello team".into()).await.unwrap();
    let bundle = alice.export_bundle().await.unwrap();
    write("bundle", "requests", &request_bundle);
    write("bundle", "envelopes", &bundle);
    let (decoded, _) = Bundle::decode(&bundle).unwrap();
    for (n, e) in decoded.envelopes.iter().enumerate().take(8) {
        write("envelope", &format!("real-{n}"), e.as_bytes());
    }
    for (n, r) in Bundle::decode(&request_bundle).unwrap().0.requests.iter().enumerate() {
        write("contact_request", &format!("sealed-{n}"), r);
    }
    let offer = alice.link_offer().await.unwrap();
    write("device_link", "offer", offer.as_bytes());
    let envelopes: Vec<Vec<u8>> = decoded.envelopes.iter().map(|e| e.as_bytes().to_vec()).collect();

    // Membership operations of each kind, an invitation, and the payloads inside envelopes.
    let (alice_key, alice_dev) = device(1);
    let (bob_key, bob_dev) = device(2);
    let create_op = SignedOp::new(
        [1; 32],
        vec![],
        alice_dev.cert.clone(),
        &alice_dev.keys,
        NOW,
        Action::Create { name: "team".into(), salt: [2; 16] },
    );
    let add = SignedOp::new(
        [1; 32],
        vec![create_op.hash()],
        alice_dev.cert.clone(),
        &alice_dev.keys,
        NOW + 1,
        Action::Add {
            member: bob_key.public(),
            name: Some("bob".into()),
            devices: vec![bob_dev.cert.clone()],
            admin: false,
        },
    );
    let ops = [
        create_op.clone(),
        add.clone(),
        SignedOp::new([1; 32], vec![add.hash()], alice_dev.cert.clone(), &alice_dev.keys, NOW + 2, Action::Rekey),
        SignedOp::new(
            [1; 32],
            vec![add.hash()],
            alice_dev.cert.clone(),
            &alice_dev.keys,
            NOW + 3,
            Action::Rename { name: "crew".into() },
        ),
        SignedOp::new(
            [1; 32],
            vec![add.hash()],
            alice_dev.cert.clone(),
            &alice_dev.keys,
            NOW + 4,
            Action::Remove { member: bob_key.public() },
        ),
    ];
    for (n, op) in ops.iter().enumerate() {
        write("membership_op", &format!("op-{n}"), &op.to_bytes());
    }
    let welcome = Welcome {
        group: [1; 32],
        ops: vec![create_op.clone(), add.clone()],
        epoch: [3; 32],
        epoch_secret: Secret32::from([4; 32]),
        devices: vec![alice_dev.cert.clone(), bob_dev.cert.clone()],
        prekeys: vec![alice_dev.prekeys.current().clone()],
        inviter_generation: 1,
        inviter_index: 7,
        inviter_chain_key: Secret32::from([5; 32]),
        lamport: 12,
    };
    write("welcome", "two-members", &welcome.to_bytes().0);
    let revocation = Revocation::sign(&alice_key, &bob_dev.cert.device, NOW);
    let card = ContactCard {
        account: alice_key.public(),
        request_key: [6; 32],
        rendezvous_seed: [7; 32],
        name: Some("alice".into()),
    };
    let rotated = RotatedLink::sign(&alice_key, card.clone(), NOW).unwrap();
    write("revocation", "revocation", &revocation.to_bytes());
    write("revocation", "rotated-link", &rotated.to_bytes());
    let contents = vec![
        Content::Text("hello".into()),
        Content::Resent { replaces: weft_core::envelope::EnvelopeId([8; 32]), text: "again".into() },
        Content::Receipt(Receipt { delivered: vec![weft_core::envelope::EnvelopeId([9; 32])], read: vec![] }),
        Content::Membership {
            op: add.clone(),
            prekeys: vec![bob_dev.prekeys.current().clone()],
            epoch_shares: vec![Share { to: [1; 8], sealed: vec![2; 80] }],
        },
        Content::Invite(Box::new(welcome.clone())),
        Content::LinkRotated(rotated.clone()),
        Content::InviteKeysShared { request_secret: Secret32::from([10; 32]), link: rotated.clone() },
        Content::DeviceRevoked(revocation.clone()),
        Content::Leave,
    ];
    for (n, content) in contents.into_iter().enumerate() {
        let inner = Inner {
            lamport: 3 + n as u64,
            sent_ms: NOW,
            parents: vec![weft_core::envelope::EnvelopeId([11; 32])],
            content,
        };
        write("inner", &format!("kind-{n}"), &inner.encode());
    }
    let grant = Grant {
        cert: bob_dev.cert.clone(),
        primary: alice_dev.cert.clone(),
        account_name: Some("alice".into()),
        request_secret: Secret32::from([12; 32]),
        rendezvous_seed: [13; 32],
        contacts: vec![GrantedContact {
            account: bob_key.public(),
            name: "bob".into(),
            card: card.to_bytes(),
            status: ContactStatus::Accepted,
            verified: true,
            created_ms: NOW,
        }],
        groups: vec![GrantedGroup { pair_with: None, welcome }],
        revocations: vec![revocation],
        history: Some(History {
            messages: vec![HistoryMessage {
                group: [1; 32],
                id: [14; 32],
                sender: alice_key.public(),
                lamport: 4,
                sent_ms: NOW,
                kind: "text".into(),
                body: "hello".into(),
            }],
            read_marks: vec![([1; 32], 4, [14; 32])],
        }),
        settings: vec![],
    };
    write("grant", "full", &grant.encode());

    // A reconciliation between two stores, as it crossed: each side's messages in turn.
    let a = Store((0u8..5).map(|n| ([n; 16], envelopes[n as usize % envelopes.len()].clone())).collect());
    let b = Store((3u8..9).map(|n| ([n; 16], envelopes[n as usize % envelopes.len()].clone())).collect());
    let (mut left, mut right) = (PeerSync::new(true), PeerSync::new(false));
    let mut to_right = vec![left.start(Scope::Topic([7; 16]), [1; 16], &a).unwrap()];
    let mut crossed: Vec<Vec<u8>> = Vec::new();
    let mut received_by_left: Vec<Vec<u8>> = Vec::new();
    for _ in 0..8 {
        let mut to_left = Vec::new();
        for m in to_right.drain(..) {
            crossed.push(m.encode());
            to_left.extend(right.handle(m, &b).unwrap().send);
        }
        for m in to_left {
            let encoded = m.encode();
            received_by_left.push(encoded.clone());
            crossed.push(encoded);
            to_right.extend(left.handle(m, &a).unwrap().send);
        }
    }
    for (n, m) in crossed.iter().enumerate() {
        write("sync_message", &format!("crossed-{n}"), m);
    }
    let mut extra = vec![
        SyncMessage::Refuse { scope: Scope::Topic([7; 16]) },
        SyncMessage::Since { after: Cursor { stored_ms: NOW, id: [1; 16] }, buckets: Buckets::new(4) },
        SyncMessage::Held { envelopes: envelopes.clone(), next: Some(Cursor { stored_ms: NOW, id: [2; 16] }) },
        SyncMessage::Want { scope: Scope::History { key: [3; 16], from: 20_000 }, ids: vec![[4; 16]] },
    ];
    extra.push(SyncMessage::Reconcile {
        scope: Scope::Topic([7; 16]),
        message: Initiator::new([5; 16], (0u8..40).map(|n| [n; 16])).next_batch(),
    });
    for (n, m) in extra.iter().enumerate() {
        write("sync_message", &format!("kind-{n}"), &m.encode());
    }
    write("reconcile", "as-left-heard", &steps(&[1], &received_by_left));
    let decoded_batch: Vec<SyncMessage> = crossed.iter().map(|m| SyncMessage::decode(m).unwrap()).collect();
    let batch = encode_batch(&decoded_batch[..decoded_batch.len().min(6)]);
    assert!(decode_batch(&batch).is_ok());
    write("sync_codec", "crossed", &batch);
    write("sync_codec", "kinds", &encode_batch(&extra));

    // The mesh: messages of each kind in fragments, and what one router wrote to another.
    let messages = [
        MeshMessage::Carry { hops_left: 3, copies: 8, envelope: envelopes[0].clone() },
        MeshMessage::Describe { ids: vec![[1; 16], [2; 16]] },
        MeshMessage::Summary { ids: vec![[3; 16]] },
        MeshMessage::Offer { topics: vec![([7; 16], vec![([4; 16], 2)])] },
        MeshMessage::Want { ids: vec![[4; 16]] },
        MeshMessage::OfferIds { ids: vec![[4; 16], [5; 16]] },
        MeshMessage::Reconcile(Initiator::new([5; 16], (0u8..12).map(|n| [n; 16])).next_batch()),
        MeshMessage::OfferTagged { entries: vec![([4; 16], [7; 4]), ([5; 16], [1, 2, 3, 4])] },
    ];
    for (n, m) in messages.iter().enumerate() {
        let mut stream = Vec::new();
        for f in Fragmenter::default().fragment(&m.encode(), 185).unwrap() {
            stream.push(f.len() as u8);
            stream.extend_from_slice(&f);
        }
        write("mesh_fragment", &format!("kind-{n}"), &stream);
        write("mesh_fragment", &format!("whole-{n}"), &m.encode());
    }
    let mut sender = Router::new(RouterConfig::default());
    let mut receiver = Router::new(RouterConfig::default());
    let _ = receiver.set_interests([[7u8; 16]]);
    let mut wire = Vec::new();
    let mut outputs = sender.link_up(1, 185, true, [1; 16], 0);
    let _ = receiver.link_up(1, 185, false, [2; 16], 0);
    for e in envelopes.iter().take(4) {
        outputs.extend(sender.originate(e.clone(), 0));
    }
    for round in 0..6 {
        let mut back = Vec::new();
        for o in outputs.drain(..) {
            if let Output::Send { fragment, .. } = o {
                // The router target's step: which link (odd: the first), then the length.
                wire.push(1);
                wire.push(fragment.len() as u8);
                wire.extend_from_slice(&fragment);
                back.extend(receiver.fragment(1, &fragment, round * 1_000));
            }
        }
        for o in back {
            if let Output::Send { fragment, .. } = o {
                outputs.extend(sender.fragment(1, &fragment, round * 1_000));
            }
        }
        wire.push(0);
    }
    write("mesh_router", "a-neighbour", &wire);

    // The carrier: chunk plaintexts as a device link's leg carries them.
    let mut chunk = vec![0x11; 16];
    chunk.extend_from_slice(&0u16.to_be_bytes());
    chunk.extend_from_slice(&1u16.to_be_bytes());
    chunk.extend_from_slice(&32u32.to_be_bytes());
    chunk.extend_from_slice(&[0x22; 32]);
    write("carrier", "nonce", &steps(&[2], &[chunk]));

    // JSON-RPC lines from the documentation, and the configuration template.
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/JSONRPC.md")).unwrap();
    // Each documented method (its `### `method`` heading), its params as the line under it
    // names them (`{link, name?}`), every one a string: some are read, some refused by type.
    let mut lines = doc.lines().peekable();
    let mut n = 0;
    while let Some(line) = lines.next() {
        let Some(method) = line.strip_prefix("### `").and_then(|l| l.split('`').next()) else { continue };
        let shape = lines.peek().and_then(|l| l.strip_prefix("`{")).and_then(|l| l.split('}').next()).unwrap_or("");
        let params: Vec<String> = shape
            .split(',')
            .map(|p| p.trim().trim_end_matches('?'))
            .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .map(|p| format!("\"{p}\":\"x\""))
            .collect();
        let request =
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{n},\"method\":\"{method}\",\"params\":{{{}}}}}", params.join(","));
        write("jsonrpc", &format!("doc-{n}"), request.as_bytes());
        n += 1;
    }
    assert!(n > 20, "docs/JSONRPC.md documents the methods");
    let config = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../cli/src/config.rs")).unwrap();
    let template = config.split("pub const TEMPLATE: &str = r#\"").nth(1).unwrap().split("\"#;").next().unwrap();
    write("config", "template", template.as_bytes());
    let uncommented: String = template
        .lines()
        .map(|l| l.strip_prefix("# ").filter(|r| r.contains(" = ")).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    write("config", "every-key", uncommented.as_bytes());
}

/// The seeds of `meet`: a request as a member sends it, an answer as a relay gives it.
#[test]
#[ignore = "writes the fuzzing corpus's seeds into the source tree"]
fn write_meet_seeds() {
    use weft_core::net::meet::{MeetAnswer, MeetRequest};
    let request = MeetRequest { tokens: vec![[1; 16], [2; 16], [3; 16]] };
    write("meet", "request", &request.encode());
    write("meet", "empty-request", &MeetRequest { tokens: Vec::new() }.encode());
    let peers = (0..3).map(|_| weft_core::net::Keypair::generate_ed25519().public().to_peer_id()).collect();
    write("meet", "answer", &MeetAnswer { peers }.encode());
}
