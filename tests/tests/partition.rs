//! Partition and heal. Four members: alice and bob on one side, carol and dave on the other;
//! the only link between the sides (bob ↔ carol) runs through a proxy we can cut. Messages
//! written on both sides during the partition converge once it heals.

use std::time::Duration;

use weft_core::net::Protocol;
use weft_tests::nodes::{config, create, eventually, introduce, online, texts};
use weft_tests::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_of_a_partition_converge_after_it_heals() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["alice", "bob", "carol", "dave"];
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(create(dir.path(), name).await);
    }
    let [alice, bob, carol, dave] = [&nodes[0], &nodes[1], &nodes[2], &nodes[3]];
    for other in [bob, carol, dave] {
        introduce(alice, other).await;
    }
    alice.create_group("rally".into()).await.unwrap();
    for name in ["bob", "carol", "dave"] {
        alice.invite("rally".into(), name.into()).await.unwrap();
    }
    for other in [bob, carol, dave] {
        other.import_bundle(alice.export_bundle().await.unwrap()).await.unwrap();
    }

    let (alice_net, alice_addr) = online(alice, config(vec![], vec![])).await;
    let (bob_net, bob_addr) = online(bob, config(vec![alice_addr], vec![])).await;
    let bob_port = match bob_addr.iter().nth(1) {
        Some(Protocol::Tcp(port)) => port,
        other => panic!("unexpected {other:?}"),
    };
    let bridge = Proxy::start(([127, 0, 0, 1], bob_port).into()).await;
    let (carol_net, carol_addr) = online(carol, config(vec![bridge.multiaddr()], vec![])).await;
    let (dave_net, _) = online(dave, config(vec![carol_addr], vec![])).await;
    alice.send("rally".into(), "before the cut".into()).await.unwrap();
    for node in &nodes {
        eventually("the first message everywhere", 60, || async { texts(node, "rally").await.len() == 1 }).await;
    }

    bridge.cut();
    tokio::time::sleep(Duration::from_millis(500)).await;
    alice.send("rally".into(), "west 1".into()).await.unwrap();
    bob.send("rally".into(), "west 2".into()).await.unwrap();
    carol.send("rally".into(), "east 1".into()).await.unwrap();
    dave.send("rally".into(), "east 2".into()).await.unwrap();
    eventually("each side to see its own", 60, || async {
        texts(bob, "rally").await.len() == 3 && texts(dave, "rally").await.len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!texts(bob, "rally").await.iter().any(|l| l.contains("east")), "nothing crosses a partition");
    assert!(!texts(carol, "rally").await.iter().any(|l| l.contains("west")), "nothing crosses a partition");

    bridge.heal();
    for node in &nodes {
        eventually("convergence after the heal", 90, || async { texts(node, "rally").await.len() == 5 }).await;
    }
    let reference = texts(alice, "rally").await;
    for node in &nodes {
        assert_eq!(texts(node, "rally").await, reference, "one history everywhere");
    }
    for net in [alice_net, bob_net, carol_net, dave_net] {
        net.stop();
    }
}
