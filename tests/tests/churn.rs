//! A six-member group on loopback with churn: members go offline and come back, one member is
//! removed; everyone still in the group converges on one history, and the removed member
//! receives nothing written after the removal.

use std::sync::Arc;
use std::time::Duration;

use weft_core::net::{Multiaddr, NetHandle};
use weft_core::node::Node;
use weft_tests::nodes::{Clock, config, create_with_clock, eventually, introduce, online, texts};

const NAMES: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];

/// Starts `i`'s network, dialling every address in `known`.
async fn go_online(node: &Arc<Node>, known: &[Multiaddr]) -> (NetHandle, Multiaddr) {
    online(node, config(known.to_vec(), vec![])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_members_with_churn_and_a_removal_converge() {
    // At noon: between 23:00 and midnight UTC each node runs tomorrow's sessions beside today's,
    // and there this test still fails 2 runs of 3 (docs/DECISIONS.md, "The hour before
    // midnight"); the hour CI happens to run at must not decide its result.
    let clock = Clock::default();
    clock.advance_to_hour(12);
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for name in NAMES {
        nodes.push(create_with_clock(dir.path(), name, &clock).await);
    }
    let alice = nodes[0].clone();
    for other in &nodes[1..] {
        introduce(&alice, other).await;
    }
    alice.create_group("crew".into()).await.unwrap();

    // Everyone online, each dialling those who came before.
    let mut nets: Vec<Option<NetHandle>> = Vec::new();
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for node in &nodes {
        let (net, addr) = go_online(node, &addrs).await;
        nets.push(Some(net));
        addrs.push(addr);
    }
    for name in &NAMES[1..] {
        alice.invite("crew".into(), (*name).into()).await.unwrap();
    }
    for node in &nodes {
        eventually("everyone to join", 90, || async { node.members("crew".into()).await.is_ok_and(|m| m.len() == 6) })
            .await;
    }
    for (i, node) in nodes.iter().enumerate() {
        node.send("crew".into(), format!("{} checks in", NAMES[i])).await.unwrap();
    }
    for node in &nodes {
        eventually("every check-in everywhere", 90, || async { texts(node, "crew").await.len() == 6 }).await;
    }

    // Dave and Erin drop off. The others talk; Alice removes Frank.
    for i in [3, 4] {
        nets[i].take().unwrap().stop();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    nodes[1].send("crew".into(), "bob: dave and erin are gone".into()).await.unwrap();
    nodes[2].send("crew".into(), "carol: noted".into()).await.unwrap();
    eventually("frank to see bob's and carol's notes", 90, || async { texts(&nodes[5], "crew").await.len() == 8 })
        .await;
    alice.remove_member("crew".into(), "frank".into()).await.unwrap();
    alice.send("crew".into(), "after frank left".into()).await.unwrap();

    // Dave and Erin come back (with new peer ids), and write.
    for i in [3, 4] {
        let (net, addr) = go_online(&nodes[i], &[addrs[0].clone(), addrs[1].clone()]).await;
        nets[i] = Some(net);
        addrs[i] = addr;
    }
    nodes[3].send("crew".into(), "dave: back".into()).await.unwrap();
    nodes[4].send("crew".into(), "erin: back too".into()).await.unwrap();

    // 6 check-ins, 2 notes, alice's message, dave's and erin's.
    let members = [0, 1, 2, 3, 4];
    for &i in &members {
        eventually(&format!("{} to converge", NAMES[i]), 120, || async { texts(&nodes[i], "crew").await.len() == 11 })
            .await;
    }
    let reference = texts(&alice, "crew").await;
    for &i in &members {
        assert_eq!(texts(&nodes[i], "crew").await, reference, "{} sees the same history", NAMES[i]);
        let names: Vec<String> = nodes[i].members("crew".into()).await.unwrap().into_iter().map(|m| m.name).collect();
        assert!(!names.iter().any(|n| n == "frank"), "{} still lists frank: {names:?}", NAMES[i]);
    }
    // Frank stayed online the whole time and received nothing new.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let franks = texts(&nodes[5], "crew").await;
    assert!(franks.len() <= 8, "frank read after his removal: {franks:?}");
    assert!(!franks.iter().any(|l| l.contains("after frank left") || l.contains("back")));
    assert!(nodes[5].send("crew".into(), "let me in".into()).await.is_err(), "frank can no longer write");
    for net in nets.into_iter().flatten() {
        net.stop();
    }
}
