//! Real libp2p sockets on loopback: two people who only exchanged links become contacts over
//! the network, chat, and catch up after one of them was offline.

use std::sync::Arc;
use std::time::Duration;

use weft_core::account::Account;
use weft_core::crypto::OsEntropy;
use weft_core::net::{Keypair, NetConfig, NetHandle};
use weft_core::node::{Node, NodeEvent};
use weft_core::store::DatabaseKey;

async fn node(dir: &std::path::Path, name: &'static str) -> Arc<Node> {
    let home = dir.join(name);
    Arc::new(
        Node::start(move || {
            Account::create_with_key(
                &home,
                &DatabaseKey::from_bytes([name.len() as u8; 32]),
                Some(name),
                Box::new(OsEntropy),
                weft_core::account::system_clock(),
            )
        })
        .await
        .unwrap(),
    )
}

fn config(bootstrap: Vec<weft_core::net::Multiaddr>) -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        mdns: false,
        tick: Duration::from_millis(200),
    }
}

async fn texts(node: &Node, conversation: &str) -> Vec<String> {
    node.history(conversation.into(), 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "text")
        .map(|m| format!("{}: {}", m.sender, m.body))
        .collect()
}

/// Waits (bounded: 60 s, for loaded CI machines) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_by_link_then_chat_and_catch_up_over_libp2p() {
    let dir = tempfile::tempdir().unwrap();
    let alice = node(dir.path(), "alice").await;
    let bob = node(dir.path(), "bob").await;
    let mut bob_events = bob.subscribe();

    let alice_net = weft_core::net::start(alice.clone(), config(vec![]), Keypair::generate_ed25519()).await.unwrap();
    let alice_addr = alice_net.listen_addrs().await[0].clone();
    let bob_key = Keypair::generate_ed25519();
    let bob_net: NetHandle =
        weft_core::net::start(bob.clone(), config(vec![alice_addr.clone()]), bob_key.clone()).await.unwrap();
    bob_net.wait_for_peers(1).await;

    // Alice only has Bob's link. Her request reaches him at his rendezvous topic.
    alice.add_contact(bob.link().await.unwrap(), None).await.unwrap();
    alice.send("bob".into(), "hello over the network".into()).await.unwrap();
    eventually("bob to hear of alice", || async { bob.contacts().await.unwrap().iter().any(|c| c.name == "alice") })
        .await;
    eventually("bob to read alice", || async { texts(&bob, "alice").await == ["alice: hello over the network"] }).await;
    let mut saw_libp2p = false;
    while let Ok(event) = bob_events.try_recv() {
        if let NodeEvent::MessageReceived { via, .. } = event {
            saw_libp2p |= via == "libp2p";
        }
    }
    assert!(saw_libp2p, "the message event names its transport");

    bob.accept_contact("alice".into()).await.unwrap();
    for i in 0..20 {
        bob.send("alice".into(), format!("b{i}")).await.unwrap();
    }
    eventually("alice to read bob's 20", || async { texts(&alice, "bob").await.len() == 21 }).await;

    // Bob goes offline; Alice writes; Bob comes back and catches up by reconciliation.
    bob_net.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..10 {
        alice.send("bob".into(), format!("while you were away {i}")).await.unwrap();
    }
    let bob_net = weft_core::net::start(bob.clone(), config(vec![alice_addr]), bob_key).await.unwrap();
    bob_net.wait_for_peers(1).await;
    eventually("bob to catch up", || async { texts(&bob, "alice").await.len() == 31 }).await;
    assert_eq!(texts(&alice, "bob").await, texts(&bob, "alice").await, "both see one history in one order");
    alice_net.stop();
    bob_net.stop();
}
