//! The offline bundle story through the real `weft` binary: two people who only exchanged
//! links chat by carrying files, build a group with a third, and remove her.

use serde_json::Value;
use weft_tests::Home;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `from` exports a bundle, `to` imports it; returns the import report.
fn carry(from: &Home, to: &Home, file: &std::path::Path) -> Value {
    from.ok(&["export", "--out", file.to_str().unwrap()]);
    json(&to.ok(&["--json", "import", file.to_str().unwrap()]))
}

fn texts(home: &Home, conversation: &str) -> Vec<String> {
    let log = json(&home.ok(&["--json", "log", conversation]));
    log.as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "text")
        .map(|m| format!("{}: {}", m["sender"].as_str().unwrap(), m["body"].as_str().unwrap()))
        .collect()
}

#[test]
fn offline_bundle_story() {
    let root = tempfile::tempdir().unwrap();
    let bundle = root.path().join("carried.weft");
    let (alice, bob, carol) =
        (Home::new(root.path(), "alice"), Home::new(root.path(), "bob"), Home::new(root.path(), "carol"));
    for (home, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        home.ok(&["init", "--name", name]);
    }
    let link = |h: &Home| h.ok(&["id", "--link"]).trim().to_owned();

    // Alice adds Bob's link and writes; Bob only imports.
    alice.ok(&["contact", "add", &link(&bob)]);
    alice.ok(&["send", "bob", "hello bob"]);
    alice.ok(&["export", "--out", bundle.to_str().unwrap()]);
    let said = bob.ok(&["import", bundle.to_str().unwrap()]);
    assert!(said.contains("Contact request from alice"), "{said}");
    // Nothing of a stranger's conversation is read before bob accepts her; the same file,
    // imported again, is read then.
    assert!(said.contains("import this file again"), "{said}");
    assert!(texts(&bob, "alice").is_empty());
    let contacts = json(&bob.ok(&["--json", "contact", "list"]));
    assert_eq!(contacts[0]["status"], "incoming");
    bob.ok(&["contact", "accept", "alice"]);
    bob.ok(&["import", bundle.to_str().unwrap()]);
    assert_eq!(texts(&bob, "alice"), ["alice: hello bob"]);

    bob.ok(&["send", "alice", "hello alice"]);
    carry(&bob, &alice, &bundle);
    assert_eq!(texts(&alice, "bob"), ["alice: hello bob", "bob: hello alice"]);

    // Safety numbers agree on both sides.
    let sn_a = json(&alice.ok(&["--json", "contact", "verify", "bob", "--yes"]));
    let sn_b = json(&bob.ok(&["--json", "contact", "verify", "alice", "--yes"]));
    assert_eq!(sn_a["safety_number"], sn_b["safety_number"]);
    assert_eq!(json(&alice.ok(&["--json", "contact", "list"]))[0]["verified"], true);

    // Carol and Alice, then a group.
    carol.ok(&["contact", "add", &link(&alice)]);
    alice.ok(&["contact", "add", &link(&carol)]);
    carry(&carol, &alice, &bundle);
    alice.ok(&["group", "create", "hikers"]);
    alice.ok(&["group", "invite", "hikers", "bob"]);
    alice.ok(&["group", "invite", "hikers", "carol"]);
    alice.ok(&["send", "hikers", "trail at dawn"]);
    assert_eq!(carry(&alice, &bob, &bundle)["joined_groups"], serde_json::json!(["hikers"]));
    assert_eq!(carry(&alice, &carol, &bundle)["joined_groups"], serde_json::json!(["hikers"]));
    carol.ok(&["send", "hikers", "bringing water"]);
    carry(&carol, &alice, &bundle);
    carry(&carol, &bob, &bundle);
    let members = json(&bob.ok(&["--json", "group", "members", "hikers"]));
    assert_eq!(members.as_array().unwrap().len(), 3);

    alice.ok(&["group", "remove", "hikers", "carol"]);
    alice.ok(&["send", "hikers", "new plan without carol"]);
    carry(&alice, &bob, &bundle);
    let report = carry(&alice, &carol, &bundle);
    assert!(report["unreadable"].as_u64().unwrap() >= 1);
    let expected = ["alice: trail at dawn", "carol: bringing water", "alice: new plan without carol"];
    assert_eq!(texts(&bob, "hikers"), expected);
    assert_eq!(texts(&carol, "hikers"), expected[..2]);
    let refused = carol.run(&["send", "hikers", "let me back in"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a member"));
}

#[test]
fn bad_input_gets_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let alice = Home::new(root.path(), "alice");
    alice.ok(&["init", "--name", "alice"]);

    let wrong = Home { passphrase: "not it".into(), ..alice.clone() };
    let out = wrong.run(&["id"]);
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wrong passphrase"));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one clear line and what to do, no library noise: {stderr}");
    assert!(lines[1].starts_with("  hint: check WEFT_PASSPHRASE"), "{stderr}");

    let nobody = Home::new(root.path(), "nobody");
    let out = nobody.run(&["log", "x"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("weft init"));

    let link = alice.ok(&["id", "--link"]).trim().to_owned();
    let mut typo: Vec<char> = link.chars().collect();
    let i = typo.len() - 10;
    typo[i] = if typo[i] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    let bob = Home::new(root.path(), "bob");
    bob.ok(&["init", "--name", "bob"]);
    let out = bob.run(&["contact", "add", &typo]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"));
    let out = bob.run(&["contact", "add", &link[..link.len() - 7]]);
    assert!(!out.status.success());

    let damaged = root.path().join("damaged.weft");
    alice.ok(&["export", "--out", damaged.to_str().unwrap()]);
    let mut bytes = std::fs::read(&damaged).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&damaged, bytes).unwrap();
    let out = bob.run(&["import", damaged.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));

    let out = bob.run(&["send", "nobody-by-that-name", "hi"]);
    assert_eq!(out.status.code(), Some(5));
}
