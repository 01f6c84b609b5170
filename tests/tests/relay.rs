//! A relay on loopback: a member who was offline catches up from the relay alone, after the
//! sender went offline too. The relay cannot decrypt: neither what it stores nor what crossed
//! the wire (captured by a proxy in front of it) contains any account key, device key, group
//! id or name.

use std::time::Duration;

use weft_core::net::NetConfig;
use weft_core::relay::CacheLimits;
use weft_tests::nodes::{config, create, eventually, introduce, online, secrets_of, texts};
use weft_tests::proxy::Proxy;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether the relay stores every message of `node`'s in these conversations ("sent" only means
/// a peer's connection took it).
async fn relay_holds_all(
    relay: &weft_core::relay::RelayHost,
    node: &weft_core::node::Node,
    conversations: &[&str],
) -> bool {
    let held: Vec<String> = relay
        .envelopes()
        .into_iter()
        .filter_map(|b| weft_core::envelope::Envelope::parse(b).ok())
        .map(|e| e.id().to_hex())
        .collect();
    for c in conversations {
        for m in node.history((*c).into(), 1000).await.unwrap() {
            if m.outgoing && m.kind == "text" && !held.contains(&m.id) {
                return false;
            }
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_catch_up_through_a_relay_that_cannot_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let (relay_net, relay) = weft_core::relay::start(
        &dir.path().join("relay"),
        NetConfig { listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()], mdns: false, ..config(vec![], vec![]) },
        CacheLimits::default(),
    )
    .await
    .unwrap();
    let relay_port = match relay_net.listen_addrs().await[0].iter().nth(1) {
        Some(weft_core::net::Protocol::Tcp(port)) => port,
        other => panic!("unexpected address part {other:?}"),
    };
    // Everyone reaches the relay through a proxy that records the bytes.
    let proxy = Proxy::start(([127, 0, 0, 1], relay_port).into()).await;
    let relay_addr = proxy.multiaddr().with_p2p(relay_net.peer_id()).unwrap();

    // Names long enough that finding one in the captured ciphertext by chance is out of the
    // question (a three-letter name turns up in a megabyte of random bytes one run in twenty).
    let alice = create(dir.path(), "alice-at-the-camp").await;
    let bob = create(dir.path(), "bob-on-the-road").await;
    let carol = create(dir.path(), "carol-in-the-city").await;
    introduce(&alice, &bob).await;
    introduce(&alice, &carol).await;
    let group = alice.create_group("night-shift".into()).await.unwrap();
    alice.invite("night-shift".into(), "bob-on-the-road".into()).await.unwrap();
    alice.invite("night-shift".into(), "carol-in-the-city".into()).await.unwrap();
    bob.import_bundle(alice.export_bundle().await.unwrap()).await.unwrap();
    carol.import_bundle(alice.export_bundle().await.unwrap()).await.unwrap();

    // Bob and Carol are offline. Alice is online with the relay only, and writes.
    let (alice_net, _) = online(&alice, config(vec![], vec![relay_addr.clone()])).await;
    for i in 0..5 {
        alice.send("night-shift".into(), format!("shift report {i}")).await.unwrap();
    }
    alice.send("bob-on-the-road".into(), "bob, only for you".into()).await.unwrap();
    eventually("the relay to take alice's outbox", 60, || async { alice.call(|a| a.outbox_len()).await.unwrap() == 0 })
        .await;
    eventually("the relay to store alice's messages", 60, || {
        relay_holds_all(&relay, &alice, &["night-shift", "bob-on-the-road"])
    })
    .await;
    let status = alice_net.status().await.unwrap();
    assert!(status.relays[0].connected, "{status:?}");
    let alice_peer = alice_net.peer_id().to_bytes();
    alice_net.stop();
    // The relay's file names no peer id: who handed over what is not on its disk.
    let mut on_disk = Vec::new();
    for file in ["relay.db", "relay.db-wal"] {
        on_disk.extend(std::fs::read(dir.path().join("relay").join(file)).unwrap_or_default());
    }
    assert!(!on_disk.is_empty() && !contains(&on_disk, &alice_peer), "relay.db names alice's peer id");

    // Alice is gone. Bob comes online knowing only the relay.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (bob_net, _) = online(&bob, config(vec![], vec![relay_addr.clone()])).await;
    eventually("bob to catch up from the relay", 60, || async {
        texts(&bob, "night-shift").await.len() == 5 && texts(&bob, "alice-at-the-camp").await.len() == 1
    })
    .await;
    eventually("bob's reservation on the relay", 30, || async { bob_net.status().await.unwrap().relays[0].reserved })
        .await;
    // Carol too, after Bob left.
    bob_net.stop();
    let (carol_net, _) = online(&carol, config(vec![], vec![relay_addr])).await;
    eventually("carol to catch up from the relay", 60, || async { texts(&carol, "night-shift").await.len() == 5 })
        .await;
    carol_net.stop();

    let held = relay.envelopes().concat();
    let wire = proxy.captured();
    assert!(!held.is_empty() && wire.len() > held.len() / 2, "the relay held and the proxy saw traffic");
    let mut secrets = secrets_of(&[&alice, &bob, &carol]).await;
    secrets.push(("group id".into(), group.id.to_vec()));
    secrets.push(("the group's name".into(), b"night-shift".to_vec()));
    secrets.push(("a message".into(), b"shift report".to_vec()));
    for (what, bytes) in &secrets {
        assert!(!contains(&held, bytes), "the relay stored {what}");
        assert!(!contains(&wire, bytes), "{what} crossed the wire in clear");
    }
    relay_net.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarts_with_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let relay_config = || NetConfig { mdns: false, ..config(vec![], vec![]) };
    let (relay_net, relay) = weft_core::relay::start(&relay_dir, relay_config(), CacheLimits::default()).await.unwrap();
    let relay_addr = relay_net.listen_addrs().await[0].clone().with_p2p(relay_net.peer_id()).unwrap();
    let alice = create(dir.path(), "alice").await;
    let bob = create(dir.path(), "bob").await;
    introduce(&alice, &bob).await;
    let (alice_net, _) = online(&alice, config(vec![], vec![relay_addr.clone()])).await;
    alice.send("bob".into(), "kept across a relay restart".into()).await.unwrap();
    eventually("the relay to hold it", 60, || relay_holds_all(&relay, &alice, &["bob"])).await;
    let held = relay.usage();
    alice_net.stop();
    relay_net.stop();
    drop(relay);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Same directory: same peer id, same cache.
    let listen = vec![relay_addr.iter().take(2).collect()];
    let (relay_net, relay) =
        weft_core::relay::start(&relay_dir, NetConfig { listen, ..relay_config() }, CacheLimits::default())
            .await
            .unwrap();
    assert_eq!(relay.usage(), held);
    let (bob_net, _) = online(&bob, config(vec![], vec![relay_addr])).await;
    eventually("bob to read it", 60, || async { texts(&bob, "alice").await.len() == 1 }).await;
    bob_net.stop();
    relay_net.stop();
}
