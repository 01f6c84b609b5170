//! The mesh between real `weft` processes with no Bluetooth adapter: daemons given one
//! `--mesh-dir` are in range of each other over Unix sockets (`core/src/mesh/radio/socket.rs`),
//! the same mesh driver and router as over Bluetooth, and no libp2p path joins them (no mDNS, no
//! bootstrap, no relay). Contacts write to each other over it; strangers read each other on the
//! nearby channel (issue 19), under session keys that are never their accounts'.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use weft_tests::daemon::Daemon;
use weft_tests::{Home, contacts_by_bundle, wait_until};

fn person(root: &Path, name: &str) -> Home {
    let home = Home::new(root, name);
    home.ok(&["init", "--name", name]);
    home
}

/// `weft daemon` on the mesh of `mesh`, with libp2p on loopback and nothing to dial.
fn on_the_mesh(home: &Home, mesh: &Path) -> Daemon {
    let mesh = mesh.to_str().expect("a UTF-8 path");
    Daemon::start_with(home, &["daemon", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--mesh-dir", mesh])
}

/// What `weft --json nearby show` lists on `home`.
fn nearby(home: &Home) -> Vec<Value> {
    serde_json::from_str(&home.ok(&["--json", "nearby", "show"])).expect("nearby show answers a list")
}

fn said(home: &Home, text: &str) -> Option<Value> {
    nearby(home).into_iter().find(|m| m["text"] == text)
}

/// The mesh links `home`'s node holds now.
fn mesh_links(home: &Home) -> u64 {
    let status: Value = serde_json::from_str(&home.ok(&["--json", "status"])).expect("status answers JSON");
    status["mesh"]["links"].as_u64().unwrap_or(0)
}

/// Each node linked with the two others: a nearby post goes to the neighbours linked when it is
/// sent, and is not kept for those who come later.
fn all_linked(homes: &[&Home]) {
    for home in homes {
        wait_until("each node linked with the two others", 30, || mesh_links(home) >= 2);
    }
}

#[test]
fn contacts_write_over_the_mesh_and_strangers_read_each_other_nearby() {
    let root = tempfile::tempdir().unwrap();
    let mesh = root.path().join("mesh");
    let (alice, bob, carol) = (person(root.path(), "alice"), person(root.path(), "bob"), person(root.path(), "carol"));
    contacts_by_bundle(root.path(), &alice, &bob);
    let _daemons = [on_the_mesh(&alice, &mesh), on_the_mesh(&bob, &mesh), on_the_mesh(&carol, &mesh)];

    // A message between contacts, with no network between them.
    alice.ok(&["send", "bob", "over the mesh, no network"]);
    wait_until("bob to read alice's message over the mesh", 60, || {
        bob.ok(&["log", "alice"]).contains("over the mesh, no network")
    });

    // Carol is nobody's contact: she reads what alice says to everyone nearby.
    all_linked(&[&alice, &bob, &carol]);
    alice.ok(&["nearby", "post", "water at the north gate"]);
    let first_post = std::time::Instant::now();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while said(&carol, "water at the north gate").is_none() {
        let links = [&alice, &bob, &carol].map(mesh_links);
        assert!(
            std::time::Instant::now() < deadline,
            "carol never read alice's post (links now {links:?}; bob read {:?})",
            nearby(&bob)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let post = said(&carol, "water at the north gate").unwrap();
    let session = post["sender"].as_str().unwrap().to_owned();
    let account: Value = serde_json::from_str(&alice.ok(&["--json", "id"])).unwrap();
    let account = account["account"].as_str().unwrap();
    let shown = carol.ok(&["--json", "nearby", "show"]);
    assert!(!shown.contains(account) && !shown.contains("alice"), "the channel never shows the account: {shown}");
    assert_ne!(session, account);

    // Blocked by carol: bob still reads that session's posts, carol no longer does.
    carol.ok(&["nearby", "mute", &session, "--block"]);
    // A session posts once at first, then once every 10 s (the rate every listener holds it to).
    std::thread::sleep(Duration::from_millis(10_500).saturating_sub(first_post.elapsed()));
    alice.ok(&["nearby", "post", "and food at the south gate"]);
    wait_until("bob to read the second post", 60, || said(&bob, "and food at the south gate").is_some());
    std::thread::sleep(Duration::from_secs(2));
    assert!(said(&carol, "and food at the south gate").is_none(), "a blocked session is not shown");

    // A new session is a new key, which carol has not blocked.
    alice.ok(&["nearby", "session"]);
    alice.ok(&["nearby", "post", "new key, same person"]);
    wait_until("carol to read the new session's post", 60, || said(&carol, "new key, same person").is_some());
    assert_ne!(said(&carol, "new key, same person").unwrap()["sender"], session.as_str());
}
