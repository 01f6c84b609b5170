//! The hex test vectors of docs/PROTOCOL.md, recomputed. Run with WEFT_PRINT_VECTORS=1 to
//! print them (for updating the document after a deliberate change of the wire format).

use weft_core::crypto::SeededEntropy;
use weft_core::envelope::Envelope;
use weft_core::group::{Epoch, Event, Group, LocalDevice, chain_step};
use weft_core::identity::{AccountKey, ContactCard, fingerprint, rendezvous_point};

const NOW: u64 = 1_750_000_000_000;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn device(seed: u64) -> LocalDevice {
    let mut rng = SeededEntropy::new(seed);
    LocalDevice::generate(&AccountKey::generate(&mut rng).unwrap(), 0, &mut rng).unwrap()
}

fn computed() -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    // Sender chain from chain key 00 01 .. 1f.
    let ck0: [u8; 32] = std::array::from_fn(|i| i as u8);
    let (mk0, ck1) = chain_step(&ck0);
    let (mk1, ck2) = chain_step(&ck1);
    v.push(("chain.message_key_0", hex(&mk0[..])));
    v.push(("chain.chain_key_1", hex(&ck1[..])));
    v.push(("chain.message_key_1", hex(&mk1[..])));
    v.push(("chain.chain_key_2", hex(&ck2[..])));

    // Epoch-derived values.
    let epoch = Epoch::new([0x22; 32], [0x11; 32]);
    v.push(("epoch.topic_period_20000", hex(&epoch.topic(20_000))));
    v.push(("epoch.topic_period_20001", hex(&epoch.topic(20_001))));
    v.push(("epoch.header_key", hex(epoch.header_key())));
    v.push(("epoch.control_key_nonce_33", hex(&epoch.control_key(&[0x33; 24])[..])));
    v.push(("epoch.history_token_period_20000", hex(&epoch.history_token(20_000))));
    v.push(("epoch.meet_token_period_20000", hex(&epoch.meet_token(20_000))));
    let meet = weft_core::net::meet::MeetRequest { tokens: vec![epoch.meet_token(20_000)] };
    v.push(("meet.request", hex(&meet.encode())));

    // Rendezvous point and a contact link.
    v.push(("rendezvous.seed_55_period_20000", hex(&rendezvous_point(&[0x55; 32], 20_000))));
    let alice = device(100);
    let card = ContactCard {
        account: alice.cert.account,
        request_key: [0x66; 32],
        rendezvous_seed: [0x55; 32],
        name: Some("alice".into()),
    };
    v.push(("card.link", card.to_link()));
    v.push(("card.fingerprint", fingerprint(&card.account)));

    // The account's link replaced (alice's account key, the card above, signed at NOW), and a
    // 1:1 group moved by new request keys whose X25519 agreement is 45..45.
    let alice_key = AccountKey::generate(&mut SeededEntropy::new(100)).unwrap();
    let rotated = weft_core::devices::rotation::RotatedLink::sign(&alice_key, card.clone(), NOW).unwrap();
    v.push(("link.rotated", hex(&rotated.to_bytes())));
    let mut moved = Group::pair(&alice, device(200).cert.account, &[0x44; 32], NOW);
    assert!(moved.take_pair_keys(&[0x45; 32], weft_core::group::KeyChange::Theirs));
    let epoch = moved.current_epoch().unwrap();
    v.push(("pair.moved_epoch_id", hex(&epoch.id)));
    v.push(("pair.moved_epoch_secret", hex(&epoch.secret[..])));

    // Inner payloads of issue 19's kinds (lamport 7, sent at NOW, no parents), each naming
    // message 77..77.
    {
        use weft_core::envelope::EnvelopeId;
        use weft_core::group::{Content, Inner, MessageChange};
        let to = EnvelopeId([0x77; 32]);
        for (name, content) in [
            ("inner.reply", Content::Reply { to, text: "yes".into(), replaces: None }),
            ("inner.reaction", Content::Change(MessageChange::Reaction { to, emoji: "\u{1f44d}".into() })),
            ("inner.edit", Content::Change(MessageChange::Edit { of: to, text: "at seven".into() })),
            ("inner.delete", Content::Change(MessageChange::Delete { of: to })),
            ("inner.timer", Content::Timer { keep_ms: Some(86_400_000) }),
        ] {
            v.push((name, hex(&Inner { lamport: 7, sent_ms: NOW, parents: vec![], content }.encode())));
        }
        // A file: hash 11..11, key 22..22, one index envelope 33..33.
        let manifest = weft_core::attachment::Manifest {
            hash: [0x11; 32],
            name: "map.jpg".into(),
            mime: "image/jpeg".into(),
            size: 200_000,
            key: [0x22; 32].into(),
            index: vec![EnvelopeId([0x33; 32])],
        };
        v.push(("attachment.topic", hex(&manifest.topic())));
        let content = Content::Attachment { manifest: Box::new(manifest), caption: "gates".into(), replaces: None };
        v.push(("inner.attachment", hex(&Inner { lamport: 7, sent_ms: NOW, parents: vec![], content }.encode())));
    }

    // A full envelope: alice's first message "hello" in a 1:1 group with pair secret 44..44.
    let bob = device(200);
    let mut rng = SeededEntropy::new(300);
    let mut sender = Group::pair(&alice, bob.cert.account, &[0x44; 32], NOW);
    let chain = sender.ensure_own_chain(NOW, &mut rng).unwrap().clone();
    sender.mark_shared(bob.cert.account);
    let sealed = sender.send_text(&alice, "hello", NOW, &mut rng).unwrap();
    assert_eq!(sealed.len(), 1);
    let envelope = &sealed[0].envelope;
    v.push(("envelope.chain_key", hex(&chain.chain_key[..])));
    v.push(("envelope.bytes", hex(envelope.as_bytes())));
    v.push(("envelope.id", envelope.id().to_hex()));

    // And it opens on the other side.
    let mut receiver = Group::pair(&bob, alice.cert.account, &[0x44; 32], NOW);
    receiver.learn_device(&alice.cert).unwrap();
    receiver.learn_chain(alice.cert.device, chain.generation, chain.next_index, *chain.chain_key);
    let epoch = receiver.current_epoch().unwrap().id;
    let parsed = Envelope::parse(envelope.as_bytes().to_vec()).unwrap();
    let opened = receiver.open(&bob, &parsed, &epoch).unwrap();
    assert!(matches!(receiver.accept(&bob, opened).unwrap(), Event::Message { text, .. } if text == "hello"));

    // Group protocol v2: alice's signed prekey, and the first secret bob hands her through
    // their channel (his chain key), sealed to that prekey.
    let mut prekey = weft_core::wire::Writer::new();
    alice.prekeys.current().encode(&mut prekey);
    v.push(("prekey.device_100", hex(&prekey.into_bytes())));
    let mut rng = SeededEntropy::new(400);
    receiver.note_prekey(alice.prekeys.current());
    let share = receiver.announce(&bob, NOW, &mut rng).unwrap().remove(0);
    let weft_core::group::Content::KeyShare(ks) = &share.inner.content else { unreachable!("a key share") };
    assert_eq!(ks.shares.len(), 1);
    v.push(("channel.first_share_to_device_100", hex(&ks.shares[0].sealed)));
    let epoch = sender.current_epoch().unwrap().id;
    let opened = sender.open(&alice, &share.envelope, &epoch).unwrap();
    assert!(matches!(sender.accept(&alice, opened).unwrap(), Event::KeysArrived { .. }), "alice opens it");

    // Linking a device (issue 16): the offer from SeededEntropy(500) at NOW, a laptop's keys
    // and its request from SeededEntropy(600), the code, and the grant of payload "grant".
    use weft_core::devices::linking::{Joining, Offer};
    let offer = Offer::new(NOW, &mut SeededEntropy::new(500)).unwrap();
    let offer_bytes = offer.to_bytes();
    v.push(("link.link", offer.ticket().to_link()));
    let mut rng = SeededEntropy::new(600);
    let laptop = weft_core::identity::DeviceKeys::generate(&mut rng).unwrap();
    let joining = Joining::start(offer.ticket().clone(), &laptop, "laptop", NOW, &mut rng).unwrap();
    v.push(("link.request", hex(joining.request())));
    let opened = offer.open(joining.request(), NOW).unwrap();
    let token = offer.ticket().token;
    v.push(("link.code", opened.code.to_string()));
    let grant = offer.grant(opened, b"grant");
    v.push(("link.grant", hex(&grant)));
    assert_eq!(joining.open_grant(&grant).unwrap(), b"grant");
    // Carried as envelopes: the two topics, the grant's chunk key, and the grant as one chunk
    // (message id, nonce from SeededEntropy(700)).
    use weft_core::devices::carrier::{self, Leg};
    v.push(("link.topic_request", hex(&carrier::topic(&token, Leg::Request))));
    v.push(("link.topic_grant", hex(&carrier::topic(&token, Leg::Grant))));
    v.push(("link.grant_chunk_key", hex(&joining.grant_chunk_key())));
    let chunks =
        carrier::wrap_with(&token, Leg::Grant, &joining.grant_chunk_key(), &grant, &mut SeededEntropy::new(700))
            .unwrap();
    assert_eq!(chunks.len(), 1);
    v.push(("link.grant_chunk", hex(&chunks[0])));
    // The network path: the primary's nonce 11…11 for this request, the code it makes, and the
    // key the nonce is sealed under.
    let opened =
        Offer::from_bytes(&offer_bytes).unwrap().open_with_nonce(joining.request(), NOW, Some(&[0x11; 32])).unwrap();
    v.push(("link.nonce_chunk_key", hex(&opened.nonce_chunk_key())));
    v.push(("link.code_with_nonce_11", opened.code.to_string()));
    v.push(("link.nonce_for_request", hex(&Offer::from_bytes(&offer_bytes).unwrap().nonce_for(joining.request()))));
    assert_eq!(joining.with_nonce(&[0x11; 32]).code(), opened.code);
    v
}

#[test]
fn protocol_document_vectors_match_the_code() {
    let vectors = computed();
    if std::env::var_os("WEFT_PRINT_VECTORS").is_some() {
        for (name, value) in &vectors {
            println!("{name}: {value}");
        }
    }
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md")).unwrap();
    // The document holds each vector as a line `name: value`, long values wrapped over several
    // lines inside a fenced block; joining the block's lines restores them.
    let joined: String = doc.lines().map(str::trim).collect::<Vec<_>>().join("\n");
    for (name, value) in vectors {
        let start = joined.find(&format!("{name}: ")).unwrap_or_else(|| panic!("docs/PROTOCOL.md lacks vector {name}"));
        let rest = &joined[start + name.len() + 2..];
        let mut found = String::new();
        for line in rest.lines() {
            if line.is_empty() || line.contains(": ") || line.starts_with("```") {
                break;
            }
            found.push_str(line);
        }
        assert_eq!(found, value, "vector {name} in docs/PROTOCOL.md differs from the code");
    }
}
