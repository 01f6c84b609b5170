//! Nodes on the simulated radio (the same `Radio` trait the btleplug and app drivers sit
//! behind): chat with no network at all, fallback when libp2p is cut, and a hostile neighbour.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft_core::mesh::fragment::{Fragmenter, Reassembled, Reassembler};
use weft_core::mesh::medium::{MediumConfig, Mobility, SimRng};
use weft_core::mesh::message::MeshMessage;
use weft_core::mesh::radio::Radio;
use weft_core::mesh::radio::sim::SimAir;
use weft_core::mesh::{RouterConfig, driver as mesh};
use weft_core::net::Protocol;
use weft_core::node::{Delivery, NodeEvent};
use weft_tests::nodes::{config, create, eventually, introduce, online, secrets_of, texts};
use weft_tests::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_with_only_radios_chat_and_events_name_the_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (create(dir.path(), "alice").await, create(dir.path(), "bob").await);
    introduce(&alice, &bob).await;
    let air = SimAir::start(MediumConfig::default(), 1);
    let (radio_a, _) = air.add_radio(0.0, 0.0, Mobility::Static);
    let (radio_b, _) = air.add_radio(10.0, 0.0, Mobility::Static);
    let _mesh_a = mesh::start(alice.clone(), radio_a, RouterConfig::default());
    let _mesh_b = mesh::start(bob.clone(), radio_b, RouterConfig::default());
    let (mut alice_events, mut bob_events) = (alice.subscribe(), bob.subscribe());

    for i in 0..20 {
        alice.send("bob".into(), format!("a{i}")).await.unwrap();
        bob.send("alice".into(), format!("b{i}")).await.unwrap();
    }
    for (node, peer) in [(&alice, "bob"), (&bob, "alice")] {
        eventually("forty messages on both sides", 60, || async { texts(node, peer).await.len() == 40 }).await;
    }
    let alice_view = texts(&alice, "bob").await;
    for i in 0..20 {
        assert_eq!(alice_view.iter().filter(|l| l.ends_with(&format!(": b{i}"))).count(), 1, "each arrives once");
    }
    let (mut via_mesh, mut sent) = (0, 0);
    while let Ok(event) = bob_events.try_recv() {
        if let NodeEvent::MessageReceived { via, .. } = event {
            assert_eq!(via, mesh::VIA);
            via_mesh += 1;
        }
    }
    assert_eq!(via_mesh, 20);
    // Each message of alice's turns 'sent' once a neighbour took it (recorded a moment after).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sent < 20 && tokio::time::Instant::now() < deadline {
        let next = tokio::time::timeout(Duration::from_millis(200), alice_events.recv()).await;
        if let Ok(Ok(NodeEvent::DeliveryChanged { state: Delivery::Sent, .. })) = next {
            sent += 1;
        }
    }
    assert_eq!(sent, 20);
}

/// Berty #5149: after Bluetooth was toggled, nothing arrived until both sides sent again. Here
/// bob's radio goes off while alice writes, and on again: what she wrote arrives with no action
/// by either of them, and so does what she writes after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_radio_turned_off_and_on_again_carries_on_with_no_user_action() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (create(dir.path(), "alice").await, create(dir.path(), "bob").await);
    introduce(&alice, &bob).await;
    let air = SimAir::start(MediumConfig::default(), 3);
    let (radio_a, _) = air.add_radio(0.0, 0.0, Mobility::Static);
    let (radio_b, b) = air.add_radio(10.0, 0.0, Mobility::Static);
    let _mesh_a = mesh::start(alice.clone(), radio_a, RouterConfig::default());
    let _mesh_b = mesh::start(bob.clone(), radio_b, RouterConfig::default());
    alice.send("bob".into(), "before".into()).await.unwrap();
    eventually("the first message", 30, || async { texts(&bob, "alice").await.len() == 1 }).await;

    air.set_enabled(b, false);
    eventually("bob's link gone", 10, || async { air.links_of(b) == 0 }).await;
    alice.send("bob".into(), "while bob's radio was off".into()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(texts(&bob, "alice").await.len(), 1, "nothing crosses a radio that is off");
    air.set_enabled(b, true);
    eventually("what alice wrote while it was off", 30, || async { texts(&bob, "alice").await.len() == 2 }).await;
    alice.send("bob".into(), "after".into()).await.unwrap();
    eventually("what alice writes after", 30, || async { texts(&bob, "alice").await.len() == 3 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_libp2p_is_cut_delivery_continues_over_the_mesh_and_nothing_shows_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (create(dir.path(), "alice").await, create(dir.path(), "bob").await);
    introduce(&alice, &bob).await;
    let (alice_net, alice_addr) = online(&alice, config(vec![], vec![])).await;
    let port = match alice_addr.iter().nth(1) {
        Some(Protocol::Tcp(port)) => port,
        other => panic!("unexpected {other:?}"),
    };
    let proxy = Proxy::start(([127, 0, 0, 1], port).into()).await;
    let (_bob_net, _) = online(&bob, config(vec![proxy.multiaddr()], vec![])).await;
    let air = SimAir::start(MediumConfig::default(), 2);
    let (radio_a, _) = air.add_radio(0.0, 0.0, Mobility::Static);
    let (radio_b, _) = air.add_radio(10.0, 0.0, Mobility::Static);
    let _mesh_a = mesh::start(alice.clone(), radio_a, RouterConfig::default());
    let _mesh_b = mesh::start(bob.clone(), radio_b, RouterConfig::default());

    let mut bob_events = bob.subscribe();
    alice.send("bob".into(), "both paths".into()).await.unwrap();
    eventually("the first message", 60, || async { texts(&bob, "alice").await.len() == 1 }).await;
    // Give the slower path time to bring its copy too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(texts(&bob, "alice").await, vec!["alice: both paths"], "stored and shown once");

    // Cutting the proxy alone left bob a direct path to alice's own address (learnt by
    // identify), and the test then raced the radio against it: alice's libp2p stops too.
    proxy.cut();
    alice_net.stop();
    alice.send("bob".into(), "only the radio is left".into()).await.unwrap();
    eventually("the second message", 60, || async { texts(&bob, "alice").await.len() == 2 }).await;
    let mut vias = Vec::new();
    while let Ok(event) = bob_events.try_recv() {
        if let NodeEvent::MessageReceived { message, via } = event {
            vias.push((message.body, via));
        }
    }
    assert_eq!(vias.len(), 2, "one event per message: {vias:?}");
    assert_eq!(vias[1], ("only the radio is left".to_string(), mesh::VIA));
}

/// What the hostile neighbour does on every link it gets.
async fn misbehave(link: Arc<dyn weft_core::mesh::radio::Link>, captured: Arc<Mutex<Vec<Vec<u8>>>>) {
    // Listen: keep every envelope the honest nodes hand over, to replay later.
    let reader = {
        let (link, captured) = (link.clone(), captured.clone());
        tokio::spawn(async move {
            let mut reassembler = Reassembler::default();
            while let Some(fragment) = link.recv().await {
                if let Reassembled::Frame(frame) = reassembler.push(&fragment, 0)
                    && let Ok(MeshMessage::Carry { envelope, .. }) = MeshMessage::decode(&frame)
                {
                    captured.lock().unwrap().push(envelope);
                }
            }
        })
    };
    let mut rng = SimRng::new(99);
    let mut fragmenter = Fragmenter::default();
    for round in 0..40u64 {
        // Malformed fragments and a flood of them.
        for n in 0..50u8 {
            let _ = link.send(vec![n; (n as usize) % 40]).await;
        }
        // A frame that declares 60 KiB and never ends.
        let mut endless = vec![0xff, 0xff, 0, 0];
        endless.extend_from_slice(&(60_000u32).to_be_bytes());
        endless.extend_from_slice(&[0; 4]);
        let _ = link.send(endless).await;
        for i in 1..30u16 {
            let mut more = vec![0xff, 0xff];
            more.extend_from_slice(&i.to_be_bytes());
            more.extend_from_slice(&[7; 200]);
            let _ = link.send(more).await;
        }
        // Junk ciphertext pushed as fresh envelopes, well formed on the outside.
        for _ in 0..20 {
            let topic = rng.bytes16();
            let envelope = weft_core::mesh::sim::fake_envelope(&mut rng, topic);
            let frame = MeshMessage::Carry { hops_left: 5, copies: 1000, envelope }.encode();
            for f in fragmenter.fragment(&frame, link.mtu()).unwrap() {
                let _ = link.send(f).await;
            }
        }
        // Replays of whatever honest envelopes it heard.
        let replays: Vec<Vec<u8>> = captured.lock().unwrap().clone();
        for envelope in replays {
            let frame = MeshMessage::Carry { hops_left: 5, copies: 1000, envelope }.encode();
            for f in fragmenter.fragment(&frame, link.mtu()).unwrap() {
                let _ = link.send(f).await;
            }
        }
        if round % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    reader.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_neighbour_neither_stops_honest_traffic_nor_grows_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (create(dir.path(), "alice").await, create(dir.path(), "bob").await);
    introduce(&alice, &bob).await;
    let air = SimAir::start(MediumConfig::default(), 3);
    let (radio_a, _) = air.add_radio(0.0, 0.0, Mobility::Static);
    let (radio_b, _) = air.add_radio(10.0, 0.0, Mobility::Static);
    let (mut hostile, _) = air.add_radio(5.0, 5.0, Mobility::Static);
    let captured = Arc::new(Mutex::new(Vec::new()));
    let attacker = {
        let captured = captured.clone();
        tokio::spawn(async move {
            while let Some(link) = hostile.next_link().await {
                tokio::spawn(misbehave(link, captured.clone()));
            }
        })
    };
    let config = RouterConfig { per_link_bytes: 64 << 10, cache_bytes: 256 << 10, ..RouterConfig::default() };
    let mesh_a = mesh::start(alice.clone(), radio_a, config);
    let mesh_b = mesh::start(bob.clone(), radio_b, config);

    for i in 0..10 {
        alice.send("bob".into(), format!("honest {i}")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually("honest traffic to flow through the attack", 90, || async { texts(&bob, "alice").await.len() == 10 })
        .await;
    // Let the attack run its course, replays included.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(texts(&bob, "alice").await.len(), 10, "replays are not shown again");
    for handle in [&mesh_a, &mesh_b] {
        let stats = handle.stats();
        assert!(stats.carried_bytes <= config.cache_bytes, "{stats:?}");
        // Two neighbours (the attacker, and the honest node passing the attacker's pushes on).
        assert!(stats.carried_bytes <= 2 * config.per_link_bytes, "each neighbour fills at most its quota: {stats:?}");
    }
    attacker.abort();
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Alice and Bob are two hops apart with a stranger's phone between them. An eavesdropper who
/// hears every byte on the air, and the stranger who carries the envelopes, find no key, no
/// name, no group id and no word of the message: what a libp2p relay sees, and no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_air_and_a_carrier_learn_no_names_keys_or_group_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob, sam) =
        (create(dir.path(), "alice").await, create(dir.path(), "bob").await, create(dir.path(), "sam").await);
    introduce(&alice, &bob).await;
    let group = alice.create_group("night-walk".into()).await.unwrap();
    alice.invite("night-walk".into(), "bob".into()).await.unwrap();
    bob.import_bundle(alice.export_bundle().await.unwrap()).await.unwrap();

    let air = SimAir::start(MediumConfig::default(), 4);
    air.start_capture();
    let (radio_a, _) = air.add_radio(0.0, 0.0, Mobility::Static);
    let (radio_s, _) = air.add_radio(25.0, 0.0, Mobility::Static);
    let (radio_b, _) = air.add_radio(50.0, 0.0, Mobility::Static);
    let _meshes = [
        mesh::start(alice.clone(), radio_a, RouterConfig::default()),
        mesh::start(sam.clone(), radio_s, RouterConfig::default()),
        mesh::start(bob.clone(), radio_b, RouterConfig::default()),
    ];
    alice.send("night-walk".into(), "meet at the old bridge".into()).await.unwrap();
    eventually("bob to read through the stranger", 60, || async { texts(&bob, "night-walk").await.len() == 1 }).await;

    let heard = air.captured();
    assert!(heard.len() > 256, "the eavesdropper heard the exchange");
    let mut secrets = secrets_of(&[&alice, &bob, &sam]).await;
    secrets.push(("group id".into(), group.id.to_vec()));
    secrets.push(("the group's name".into(), b"night-walk".to_vec()));
    secrets.push(("a message".into(), b"old bridge".to_vec()));
    for (what, bytes) in &secrets {
        assert!(!contains(&heard, bytes), "{what} went over the air in clear");
    }
    assert!(sam.history("night-walk".into(), 10).await.is_err(), "the stranger carried it and reads nothing");
}
