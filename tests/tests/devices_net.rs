//! Linking a device over the network (issue 16): the exchange travels as envelopes on two
//! topics derived from the link, over loopback libp2p directly, through a relay that holds it,
//! and over simulated radios with no libp2p at all; the laptop then writes as alice and bob
//! sees one alice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_core::account::{Account, HistoryChoice};
use weft_core::crypto::OsEntropy;
use weft_core::devices::linking::{Joining, Ticket};
use weft_core::identity::DeviceKeys;
use weft_core::net::{Granted, JoinOverNetwork, NetConfig};
use weft_core::node::{Node, NodeEvent};
use weft_core::store::DatabaseKey;
use weft_tests::nodes::{config, create, eventually, introduce, key_of, online, relay_with_clock, texts};

/// The laptop's keys and its answer to `link`.
fn answer(link: &str) -> (DeviceKeys, Joining) {
    let keys = DeviceKeys::generate(&mut OsEntropy).unwrap();
    let now = weft_core::clock::system_ms();
    let joining = Joining::start(Ticket::from_link(link).unwrap(), &keys, "laptop", now, &mut OsEntropy).unwrap();
    (keys, joining)
}

/// The laptop answers `link` over libp2p `net`; alice grants it when its code shows on her
/// node. Returns the laptop's node and how long the exchange took on the wire.
async fn join_over(
    alice: &Arc<Node>,
    link: &str,
    net: NetConfig,
    home: &std::path::Path,
    history: HistoryChoice,
) -> (Arc<Node>, Duration) {
    let events = alice.subscribe();
    let (keys, joining) = answer(link);
    let started = Instant::now();
    let mut join = JoinOverNetwork::start(&joining, net, &mut OsEntropy).await.unwrap();
    grant_when_asked(alice, events, &keys, &join, history).await;
    let requested = started.elapsed();
    let granted =
        tokio::time::timeout(Duration::from_secs(60), join.grant()).await.expect("the grant to arrive").unwrap();
    let took = started.elapsed();
    println!("the request reached the account's device after {} ms", requested.as_millis());
    join.stop();
    (finish(home, keys, granted).await, took)
}

/// Waits for the laptop's request on alice's node and grants it.
async fn grant_when_asked(
    alice: &Node,
    mut events: tokio::sync::broadcast::Receiver<NodeEvent>,
    keys: &DeviceKeys,
    join: &JoinOverNetwork,
    history: HistoryChoice,
) {
    let code = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(NodeEvent::LinkRequested { name, code, device }) = events.recv().await {
                assert_eq!((name.as_str(), device), ("laptop", keys.id()));
                return code;
            }
        }
    })
    .await
    .expect("the request to reach alice");
    // The laptop's code shows once alice's answer (her nonce) reached it.
    let mut shown = join.code_receiver();
    let shown = tokio::time::timeout(Duration::from_secs(60), shown.wait_for(Option::is_some))
        .await
        .expect("alice's answer to reach the laptop")
        .unwrap()
        .expect("waited for a code");
    assert_eq!(code, shown.to_string(), "both screens show the same code");
    alice.grant_arrived(shown.0, history).await.unwrap();
}

/// Alice and bob, contacts, both in alice's group "camp" (bundles carried by hand).
async fn alice_and_bob_in_camp(dir: &std::path::Path) -> (Arc<Node>, Arc<Node>) {
    let alice = create(dir, "alice").await;
    let bob = create(dir, "bob").await;
    introduce(&alice, &bob).await;
    alice.create_group("camp".into()).await.unwrap();
    alice.invite("camp".into(), "bob".into()).await.unwrap();
    bob.import_bundle(alice.export_bundle().await.unwrap()).await.unwrap();
    (alice, bob)
}

/// The story after the link: both of alice's devices write to bob and in "camp"; bob sees
/// one alice and both messages; his reply reaches both devices.
async fn both_devices_write_and_bob_sees_one_alice(alice: &Node, laptop: &Node, bob: &Node) {
    laptop.send("bob".into(), "from the laptop".into()).await.unwrap();
    laptop.send("camp".into(), "laptop in the camp".into()).await.unwrap();
    alice.send("bob".into(), "from the phone".into()).await.unwrap();
    eventually("bob to see both of alice's devices as alice", 90, || async {
        let t = texts(bob, "alice").await;
        t.iter().filter(|l| *l == "alice: from the laptop" || *l == "alice: from the phone").count() == 2
            && texts(bob, "camp").await.contains(&"alice: laptop in the camp".to_owned())
    })
    .await;
    bob.send("alice".into(), "hello both".into()).await.unwrap();
    eventually("bob's reply on both devices", 90, || async {
        texts(alice, "bob").await.contains(&"bob: hello both".to_owned())
            && texts(laptop, "bob").await.contains(&"bob: hello both".to_owned())
    })
    .await;
}

/// The laptop's home from its grant, running.
async fn finish(home: &std::path::Path, keys: DeviceKeys, granted: Granted) -> Arc<Node> {
    let Granted { joining, grant } = granted;
    let (home, key) = (home.to_path_buf(), DatabaseKey::from_bytes(key_of("laptop")));
    let laptop = Node::start(move || {
        Account::create_linked(
            &home,
            &key,
            &keys,
            "laptop",
            &joining,
            &grant,
            Box::new(OsEntropy),
            weft_core::account::system_clock(),
        )
    })
    .await
    .unwrap();
    Arc::new(laptop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_laptop_links_over_loopback_libp2p_and_writes_as_alice() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = alice_and_bob_in_camp(dir.path()).await;

    alice.send("bob".into(), "before the laptop".into()).await.unwrap();
    bob.import_bundle(alice.export_bundle().await.unwrap()).await.unwrap();
    bob.send("alice".into(), "bob before the laptop".into()).await.unwrap();
    alice.import_bundle(bob.export_bundle().await.unwrap()).await.unwrap();

    let (_alice_net, alice_addr) = online(&alice, config(vec![], vec![])).await;
    let (_bob_net, _) = online(&bob, config(vec![alice_addr.clone()], vec![])).await;
    let link = alice.link_offer().await.unwrap();
    let (laptop, took) = join_over(
        &alice,
        &link,
        config(vec![alice_addr.clone()], vec![]),
        &dir.path().join("laptop"),
        HistoryChoice::Include,
    )
    .await;
    // The history came with the grant: what was written before the link, in order.
    assert_eq!(texts(&laptop, "bob").await, ["alice: before the laptop", "bob: bob before the laptop"]);
    println!("linking over loopback libp2p: {} ms from the request's first push to the grant", took.as_millis());
    assert!(alice.arrived_link_requests().await.unwrap().is_empty(), "the link is used up");

    let (_laptop_net, _) = online(&laptop, config(vec![alice_addr.clone()], vec![])).await;
    both_devices_write_and_bob_sees_one_alice(&alice, &laptop, &bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_carries_the_linking_exchange_between_devices_that_never_meet() {
    let dir = tempfile::tempdir().unwrap();
    let clock = weft_tests::nodes::Clock::default();
    let (_relay_net, relay, relay_addr) = relay_with_clock(dir.path(), &clock).await;
    let alice = create(dir.path(), "alice").await;
    let (_alice_net, _) = online(&alice, config(vec![], vec![relay_addr.clone()])).await;
    let link = alice.link_offer().await.unwrap();
    let (laptop, _) = join_over(
        &alice,
        &link,
        config(vec![], vec![relay_addr.clone()]),
        &dir.path().join("laptop"),
        HistoryChoice::Leave,
    )
    .await;
    assert_eq!(
        laptop.call(|a| Ok(a.account_public())).await.unwrap(),
        alice.call(|a| Ok(a.account_public())).await.unwrap()
    );
    // What the relay holds of the exchange is envelopes like any other: no account or device
    // key, and no name, in clear.
    let (account, device) = alice.call(|a| Ok((a.account_public().to_vec(), a.device_id().to_vec()))).await.unwrap();
    let laptop_device = laptop.call(|a| Ok(a.device_id().to_vec())).await.unwrap();
    let held = relay.envelopes();
    assert!(!held.is_empty(), "the relay held the exchange");
    for e in &held {
        weft_core::envelope::Envelope::parse(e.clone()).expect("an envelope like any other");
        for secret in [&account, &device, &laptop_device, &b"laptop".to_vec()] {
            assert!(!e.windows(secret.len()).any(|w| w == &secret[..]), "a key or name in clear on the relay");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_over_the_network_cancels_the_link_and_grants_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let alice = create(dir.path(), "alice").await;
    let (_alice_net, alice_addr) = online(&alice, config(vec![], vec![])).await;
    let link = alice.link_offer().await.unwrap();
    let mut events = alice.subscribe();
    let keys = DeviceKeys::generate(&mut OsEntropy).unwrap();
    let joining = Joining::start(
        Ticket::from_link(&link).unwrap(),
        &keys,
        "laptop",
        weft_core::clock::system_ms(),
        &mut OsEntropy,
    )
    .unwrap();
    let join = JoinOverNetwork::start(&joining, config(vec![alice_addr], vec![]), &mut OsEntropy).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), async {
        while !matches!(events.recv().await, Ok(NodeEvent::LinkRequested { .. })) {}
    })
    .await
    .expect("the request to reach alice");
    let wrong = (joining.code().0 + 1) % 1_000_000;
    assert!(alice.grant_arrived(wrong, HistoryChoice::Leave).await.is_err());
    assert!(
        alice.grant_arrived(joining.code().0, HistoryChoice::Leave).await.is_err(),
        "the link was cancelled by the wrong code"
    );
    assert_eq!(alice.devices().await.unwrap().len(), 1, "nothing was granted");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(join.try_grant().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_laptop_links_over_simulated_radios_only_and_writes_as_alice() {
    use weft_core::mesh::medium::{MediumConfig, Mobility};
    use weft_core::mesh::radio::sim::SimAir;
    use weft_core::mesh::{RouterConfig, driver as mesh};
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = alice_and_bob_in_camp(dir.path()).await;
    let air = SimAir::start(MediumConfig::default(), 16);
    let (radio_a, _) = air.add_radio(0.0, 0.0, Mobility::Static);
    let (radio_b, _) = air.add_radio(10.0, 0.0, Mobility::Static);
    let (radio_joining, _) = air.add_radio(5.0, 5.0, Mobility::Static);
    let _mesh_a = mesh::start(alice.clone(), radio_a, RouterConfig::default());
    let _mesh_b = mesh::start(bob.clone(), radio_b, RouterConfig::default());

    // No libp2p anywhere: the request and the grant cross the simulated air.
    let link = alice.link_offer().await.unwrap();
    let events = alice.subscribe();
    let (keys, joining) = answer(&link);
    let started = Instant::now();
    let mut join = JoinOverNetwork::new(&joining, &mut OsEntropy).unwrap();
    join.attach_radio(radio_joining, RouterConfig::default());
    grant_when_asked(&alice, events, &keys, &join, HistoryChoice::Leave).await;
    let granted =
        tokio::time::timeout(Duration::from_secs(60), join.grant()).await.expect("the grant to arrive").unwrap();
    println!("linking over simulated radios: {} ms", started.elapsed().as_millis());
    join.stop();
    let laptop = finish(&dir.path().join("laptop"), keys, granted).await;
    let (radio_laptop, _) = air.add_radio(5.0, 5.0, Mobility::Static);
    let _mesh_laptop = mesh::start(laptop.clone(), radio_laptop, RouterConfig::default());

    both_devices_write_and_bob_sees_one_alice(&alice, &laptop, &bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_else_who_answers_the_link_too_gets_no_grant_and_a_second_accept_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let alice = create(dir.path(), "alice").await;
    let (_alice_net, alice_addr) = online(&alice, config(vec![], vec![])).await;
    let link = alice.link_offer().await.unwrap();
    let (keys, joining) = answer(&link);
    // Mallory saw the QR code and answers it too, from her own machine.
    let (_, mallory) = answer(&link);
    let mut join =
        JoinOverNetwork::start(&joining, config(vec![alice_addr.clone()], vec![]), &mut OsEntropy).await.unwrap();
    let theirs = JoinOverNetwork::start(&mallory, config(vec![alice_addr], vec![]), &mut OsEntropy).await.unwrap();
    eventually("both requests to arrive", 60, || async { alice.arrived_link_requests().await.unwrap().len() == 2 })
        .await;
    eventually("alice's answers to reach both", 60, || async { join.code().is_some() && theirs.code().is_some() })
        .await;
    let (code, mallorys) = (join.code().unwrap(), theirs.code().unwrap());
    let codes: Vec<_> = alice.arrived_link_requests().await.unwrap().into_iter().map(|a| a.code).collect();
    assert!(codes.contains(&code) && codes.contains(&mallorys));
    // Over the network the codes cover alice's nonces: neither is the file path's code.
    assert!(code != joining.code() && mallorys != mallory.code());
    // The user types the code the laptop shows.
    alice.grant_arrived(code.0, HistoryChoice::Leave).await.unwrap();
    // Granting again (a double tap, a retry) changes nothing and cancels nothing.
    assert!(matches!(alice.grant_arrived(code.0, HistoryChoice::Leave).await, Err(weft_core::Error::AlreadyExists(_))));
    let granted = tokio::time::timeout(Duration::from_secs(60), join.grant()).await.expect("the grant").unwrap();
    assert!(granted.joining.open_grant(&granted.grant).is_ok());
    assert!(joining.open_grant(&granted.grant).is_err(), "the grant's key covers the nonce");
    let laptop = finish(&dir.path().join("laptop"), keys, granted).await;
    assert_eq!(
        laptop.call(|a| Ok(a.account_public())).await.unwrap(),
        alice.call(|a| Ok(a.account_public())).await.unwrap()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(theirs.try_grant().is_none(), "mallory's request was not granted, and the grant does not open for her");
    assert_eq!(alice.devices().await.unwrap().len(), 2);
}
