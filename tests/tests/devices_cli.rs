//! Issue 16 with the real `weft` binary: alice's phone links a laptop by files carried by hand;
//! both of alice's devices write in a 1:1 and in a group; bob sees one alice and both messages;
//! his reply reaches both; the laptop, revoked, reads nothing new and is refused. Then the same
//! link made over loopback libp2p, with no file carried.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use weft_tests::daemon::Rpc;
use weft_tests::{Home, Running, contacts_by_bundle, wait_until};

/// `weft log CONVERSATION` of `home`.
fn log(home: &Home, conversation: &str) -> String {
    home.ok(&["log", conversation, "--limit", "100"])
}

/// Carries `from`'s bundle to each of `to`.
fn carry(dir: &std::path::Path, from: &Home, to: &[&Home]) {
    let bundle = dir.join("carried.weft");
    from.ok(&["export", "--out", bundle.to_str().unwrap()]);
    for home in to {
        home.ok(&["import", bundle.to_str().unwrap()]);
    }
}

/// `weft init --join LINK` on `home` with files only, left waiting for the grant; with the code
/// it shows.
fn join(home: &Home, link: &str, request: &std::path::Path, grant: &std::path::Path) -> (std::process::Child, String) {
    let (child, code, _) = join_with(home, link, request, grant, &["--offline"]);
    (child, code)
}

/// [`join`] with more arguments (how to reach the network); also the rest of what it says, line
/// by line.
fn join_with(
    home: &Home,
    link: &str,
    request: &std::path::Path,
    grant: &std::path::Path,
    more: &[&str],
) -> (std::process::Child, String, std::sync::mpsc::Receiver<String>) {
    let mut args = vec![
        "init",
        "--name",
        "laptop",
        "--join",
        link,
        "--request",
        request.to_str().unwrap(),
        "--grant",
        grant.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    let mut joining = home.command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(joining.stderr.take().unwrap()).lines();
    let code = loop {
        let line = stderr.next().expect("the laptop shows a code").unwrap();
        if let Some(at) = line.find("same code: ") {
            break line[at + "same code: ".len()..].trim().to_owned();
        }
    };
    // The rest is read as it comes (a closed pipe would fail the process's later messages).
    let (tx, rest) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.map_while(Result::ok) {
            eprintln!("laptop: {line}");
            let _ = tx.send(line);
        }
    });
    (joining, code, rest)
}

#[test]
fn a_phone_links_a_laptop_by_files_and_revokes_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let (alice, bob, carol) = (Home::new(dir, "alice"), Home::new(dir, "bob"), Home::new(dir, "carol"));
    for h in [&alice, &bob, &carol] {
        h.ok(&["init", "--name", h.dir.file_name().unwrap().to_str().unwrap()]);
    }
    contacts_by_bundle(dir, &alice, &bob);
    contacts_by_bundle(dir, &alice, &carol);
    alice.ok(&["group", "create", "trip"]);
    alice.ok(&["group", "invite", "trip", "bob"]);
    alice.ok(&["group", "invite", "trip", "carol"]);
    carry(dir, &alice, &[&bob, &carol]);
    carry(dir, &bob, &[&alice]);
    carry(dir, &carol, &[&alice]);

    // The phone shows a link; the laptop answers it and waits for the grant.
    let link: serde_json::Value = serde_json::from_str(&alice.ok(&["--json", "device", "link"])).unwrap();
    let link = link["link"].as_str().unwrap().to_owned();
    let laptop = Home { passphrase: "alice passphrase".into(), ..Home::new(dir, "laptop") };
    let (request, grant) = (dir.join("request.weft"), dir.join("grant.weft"));
    let (mut joining, code) = join(&laptop, &link, &request, &grant);
    wait_until("the laptop's request", 30, || request.exists());
    // A wrong code grants nothing and ends the link.
    let wrong = if code == "000 000" { "111 111" } else { "000 000" };
    let refused =
        alice.run(&["device", "accept", request.to_str().unwrap(), "--out", grant.to_str().unwrap(), "--code", wrong]);
    assert!(!refused.status.success() && !grant.exists());
    // So the user makes a new link: the laptop answers it again.
    let _ = joining.kill();
    let _ = joining.wait();
    // Nothing was stored on either side: no home on the laptop, no device on the phone.
    assert!(!laptop.dir.join(weft_core::store::DB_FILE).exists(), "the laptop kept nothing");
    let listed = alice.ok(&["--json", "device", "list"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&listed).unwrap().as_array().unwrap().len(), 1, "{listed}");
    let link: serde_json::Value = serde_json::from_str(&alice.ok(&["--json", "device", "link"])).unwrap();
    let link = link["link"].as_str().unwrap().to_owned();
    let _ = std::fs::remove_file(&request);
    let (joining, code) = join(&laptop, &link, &request, &grant);
    wait_until("the laptop's request", 30, || request.exists());
    let accepted =
        alice.ok(&["device", "accept", request.to_str().unwrap(), "--out", grant.to_str().unwrap(), "--code", &code]);
    assert!(accepted.contains("Granted \"laptop\""), "{accepted}");
    let done = joining.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let listed = alice.ok(&["device", "list"]);
    assert!(listed.contains("laptop") && listed.contains("(this device)"), "{listed}");
    assert_eq!(laptop.ok(&["id", "--link"]), alice.ok(&["id", "--link"]), "one account, one link");

    // Both devices write, in the 1:1 and in the group.
    laptop.ok(&["send", "bob", "from the laptop"]);
    alice.ok(&["send", "bob", "from the phone"]);
    laptop.ok(&["send", "trip", "the laptop in the group"]);
    for _ in 0..2 {
        carry(dir, &laptop, &[&bob, &carol, &alice]);
        carry(dir, &alice, &[&bob, &carol, &laptop]);
        carry(dir, &bob, &[&alice, &laptop]);
        carry(dir, &carol, &[&alice, &laptop]);
    }
    let on_bob = log(&bob, "alice");
    assert!(on_bob.contains("alice: from the laptop") && on_bob.contains("alice: from the phone"), "{on_bob}");
    assert!(log(&carol, "trip").contains("alice: the laptop in the group"));
    bob.ok(&["send", "alice", "hello both"]);
    carry(dir, &bob, &[&alice, &laptop]);
    assert!(log(&laptop, "bob").contains("bob: hello both"));
    assert!(log(&alice, "bob").contains("bob: hello both"));

    // The laptop is lost: the phone revokes it, and with it the contact link the laptop held.
    let link_of = |id: &str| id.split_whitespace().find(|w| w.starts_with("weft://contact/")).map(str::to_owned);
    let before = link_of(&alice.ok(&["id"]));
    let revoked = alice.ok(&["device", "revoke", "laptop"]);
    assert!(revoked.contains("Revoked \"laptop\"") && revoked.contains("contact link changed"), "{revoked}");
    let after = link_of(&alice.ok(&["id"]));
    assert!(before.is_some() && after.is_some() && before != after, "{before:?} {after:?}");
    carry(dir, &alice, &[&bob, &carol]);
    bob.ok(&["send", "alice", "after the revocation"]);
    carry(dir, &bob, &[&alice, &laptop]);
    carry(dir, &alice, &[&laptop]);
    assert!(log(&alice, "bob").contains("bob: after the revocation"));
    assert!(!log(&laptop, "bob").contains("after the revocation"));
    let refused = laptop.run(&["send", "bob", "still here?"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("revoked"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// The same story with no file carried after the contacts met: the phone links the laptop over
/// loopback libp2p, then the phone, the laptop and bob all run on the network: both of alice's
/// devices write in the 1:1 and the group, bob sees one alice, his reply reaches both, what the
/// laptop wrote shows on the phone as alice's own, and a read on the laptop clears the phone's
/// unread count.
#[test]
fn a_phone_links_a_laptop_over_loopback_libp2p() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let (alice, bob) = (Home::new(dir, "alice"), Home::new(dir, "bob"));
    for h in [&alice, &bob] {
        h.ok(&["init", "--name", h.dir.file_name().unwrap().to_str().unwrap()]);
    }
    contacts_by_bundle(dir, &alice, &bob);
    alice.ok(&["group", "create", "trip"]);
    alice.ok(&["group", "invite", "trip", "bob"]);
    carry(dir, &alice, &[&bob]);
    alice.ok(&["send", "bob", "written before the link"]);
    // The phone runs on the network; its link is made through the running node.
    let phone = Running::start(&alice, &["--no-ble"]);
    let addr = phone.wait_for("/ip4/127.0.0.1/").trim().to_owned();
    alice.wait_for_socket();
    let link: serde_json::Value = serde_json::from_str(&alice.ok(&["--json", "device", "link"])).unwrap();
    let link = link["link"].as_str().unwrap().to_owned();

    // The laptop reaches it by its address alone: no file is carried.
    let laptop = Home { passphrase: "alice passphrase".into(), ..Home::new(dir, "laptop") };
    let (request, grant) = (dir.join("unused-request.weft"), dir.join("unused-grant.weft"));
    let (joining, file_code, rest) = join_with(
        &laptop,
        &link,
        &request,
        &grant,
        &["--bootstrap", &addr, "--no-mdns", "--no-ble", "--listen", "/ip4/127.0.0.1/tcp/0"],
    );
    // Over the network the code covers the phone's answer: the laptop shows it once that came.
    let code = loop {
        let line = rest.recv_timeout(std::time::Duration::from_secs(60)).expect("the laptop shows a network code");
        if let Some(at) = line.find("network code: ") {
            break line[at + "network code: ".len()..].trim().to_owned();
        }
    };
    assert_ne!(code, file_code);
    let asked = phone.wait_for("asks to join");
    assert!(asked.contains("\"laptop\"") && asked.contains(&format!("shows {code},")), "{asked}");
    let accepted = alice.ok(&["device", "accept", "--code", &code, "--history"]);
    assert!(accepted.contains("Granted \"laptop\""), "{accepted}");
    let done = joining.wait_with_output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert!(!grant.exists(), "the grant came over the network");
    assert_eq!(laptop.ok(&["id", "--link"]), alice.ok(&["id", "--link"]), "one account, one link");
    assert!(log(&laptop, "bob").contains("alice: written before the link"), "the history came with the grant");

    // Everyone on the network now; nothing is carried from here on.
    let _laptop_node = Running::start(&laptop, &["--no-ble", "--bootstrap", &addr]);
    laptop.wait_for_socket();
    let _bob_node = Running::start(&bob, &["--no-ble", "--bootstrap", &addr]);
    bob.wait_for_socket();
    laptop.ok(&["send", "bob", "from the laptop"]);
    alice.ok(&["send", "bob", "from the phone"]);
    laptop.ok(&["send", "trip", "the laptop in the group"]);
    wait_until("bob reading both of alice's devices", 90, || {
        let on_bob = log(&bob, "alice");
        on_bob.contains("alice: from the laptop") && on_bob.contains("alice: from the phone")
    });
    wait_until("the group message on bob's side", 90, || log(&bob, "trip").contains("alice: the laptop in the group"));
    // What the laptop wrote shows on the phone as alice's own.
    wait_until("the laptop's message on the phone", 90, || log(&alice, "bob").contains("from the laptop"));
    let on_phone: serde_json::Value =
        serde_json::from_str(&alice.ok(&["--json", "log", "bob", "--limit", "100"])).unwrap();
    let mine = on_phone.as_array().unwrap().iter().find(|m| m["body"] == "from the laptop").unwrap();
    assert_eq!((mine["sender"].as_str(), mine["outgoing"].as_bool()), (Some("alice"), Some(true)), "{mine}");

    // Bob's reply reaches both; read on the laptop, it is read on the phone too.
    bob.ok(&["send", "alice", "hello both"]);
    let unread = |home: &Home| {
        let mut rpc = Rpc::connect(&home.dir).expect("the node's socket");
        let list = rpc.ok("conversations", serde_json::json!({}));
        list.as_array().unwrap().iter().find(|c| c["name"] == "bob").expect("bob listed")["unread"].as_u64().unwrap()
    };
    wait_until("bob's reply on both of alice's devices", 90, || {
        log(&alice, "bob").contains("bob: hello both") && log(&laptop, "bob").contains("bob: hello both")
    });
    assert!(unread(&alice) >= 1 && unread(&laptop) >= 1);
    let marked = laptop.ok(&["read", "bob"]);
    assert!(marked.contains("Marked"), "{marked}");
    wait_until("the read on the laptop clearing the phone's unread", 90, || unread(&alice) == 0);
    drop(phone);
}

/// A link that leaked is replaced with `weft id --new-link`: bob takes the new one in his
/// conversation with alice and they go on writing; a request sent to the old link is not
/// opened any more, one sent to the new link is.
#[test]
fn a_leaked_link_is_replaced_and_contacts_follow() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let (alice, bob, mallory, carol) =
        (Home::new(dir, "alice"), Home::new(dir, "bob"), Home::new(dir, "mallory"), Home::new(dir, "carol"));
    for h in [&alice, &bob, &mallory, &carol] {
        h.ok(&["init", "--name", h.dir.file_name().unwrap().to_str().unwrap()]);
    }
    contacts_by_bundle(dir, &alice, &bob);
    let old = alice.ok(&["id", "--link"]).trim().to_owned();
    let replaced = alice.ok(&["id", "--new-link", "--no-qr"]);
    let new = alice.ok(&["id", "--link"]).trim().to_owned();
    assert!(new != old && replaced.contains(&new), "{replaced}");
    carry(dir, &alice, &[&bob]);
    bob.ok(&["send", "alice", "after the new link"]);
    carry(dir, &bob, &[&alice]);
    assert!(log(&alice, "bob").contains("bob: after the new link"));
    alice.ok(&["send", "bob", "alice after"]);
    carry(dir, &alice, &[&bob]);
    assert!(log(&bob, "alice").contains("alice: alice after"));
    // Mallory found the old link; carol was given the new one.
    mallory.ok(&["contact", "add", &old]);
    carol.ok(&["contact", "add", &new]);
    carry(dir, &mallory, &[&alice]);
    carry(dir, &carol, &[&alice]);
    let contacts = alice.ok(&["contact", "list"]);
    assert!(contacts.contains("carol") && !contacts.contains("mallory"), "{contacts}");
}
