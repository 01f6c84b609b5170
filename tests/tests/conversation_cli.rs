//! Issue 19 through the real `weft` binary: replies, reactions, edits and deletes-for-everyone,
//! addressed by the short ids `weft log --ids` shows, carried as bundles; what is not ours to
//! change is refused with a clear error.

use serde_json::Value;
use weft_tests::Home;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

fn carry(from: &Home, to: &Home, file: &std::path::Path) {
    from.ok(&["export", "--out", file.to_str().unwrap()]);
    to.ok(&["import", file.to_str().unwrap()]);
}

/// The message of `conversation` whose body is `body`, as `home` logs it in JSON.
fn message(home: &Home, conversation: &str, id: &str) -> Value {
    let log = json(&home.ok(&["--json", "log", conversation]));
    log.as_array().unwrap().iter().find(|m| m["id"] == id).cloned().unwrap_or_else(|| panic!("{id} not in {log}"))
}

#[test]
fn replies_reactions_edits_and_deletes_from_the_command_line() {
    let root = tempfile::tempdir().unwrap();
    let bundle = root.path().join("carried.weft");
    let (alice, bob) = (Home::new(root.path(), "alice"), Home::new(root.path(), "bob"));
    for (home, name) in [(&alice, "alice"), (&bob, "bob")] {
        home.ok(&["init", "--name", name]);
    }
    alice.ok(&["contact", "add", bob.ok(&["id", "--link"]).trim()]);
    carry(&alice, &bob, &bundle);
    bob.ok(&["contact", "accept", "alice"]);
    carry(&bob, &alice, &bundle);

    let asked = json(&bob.ok(&["--json", "send", "alice", "dinner at six?"]));
    let asked_id = asked["id"].as_str().unwrap().to_owned();
    carry(&bob, &alice, &bundle);
    // `log --ids` starts each line with the id's first 12 digits; they are enough to name it.
    let logged = alice.ok(&["log", "bob", "--ids"]);
    let short = &asked_id[..12];
    assert!(logged.lines().any(|l| l.starts_with(short) && l.contains("dinner at six?")), "{logged}");

    let reply = json(&alice.ok(&["--json", "send", "bob", "yes, the usual place", "--reply-to", short]));
    assert_eq!(reply["reply_to"], asked_id.as_str());
    alice.ok(&["react", "bob", short, "🎉"]);
    let reacted = json(&alice.ok(&["--json", "react", "bob", short, "👍"]));
    assert_eq!(reacted["reactions"], serde_json::json!([{"emoji": "👍", "count": 1, "mine": true}]));
    carry(&alice, &bob, &bundle);
    let on_bob = message(&bob, "alice", &asked_id);
    assert_eq!(on_bob["reactions"], serde_json::json!([{"emoji": "👍", "count": 1, "mine": false}]));
    assert_eq!(message(&bob, "alice", reply["id"].as_str().unwrap())["reply_to"], asked_id.as_str());
    let log = bob.ok(&["log", "alice"]);
    assert!(log.contains(&format!("alice: (reply to {}) yes, the usual place", &asked_id[..8])), "{log}");
    assert!(log.contains("bob: dinner at six?  [👍 1]"), "{log}");

    // Only the sender edits or deletes; a wrong or ambiguous id says so.
    let refused = alice.run(&["edit", "bob", short, "cancelled"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only its sender"), "{refused:?}");
    let unknown = alice.run(&["react", "bob", "abcdef", "👍"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no message of bob has an id starting abcdef"));
    let letters = alice.run(&["react", "bob", short, "ok"]);
    assert!(!letters.status.success(), "letters are not a reaction");

    bob.ok(&["edit", "alice", short, "dinner at seven?"]);
    carry(&bob, &alice, &bundle);
    assert!(alice.ok(&["log", "bob"]).contains("bob: dinner at seven? (edited)"));
    bob.ok(&["delete", "alice", short]);
    carry(&bob, &alice, &bundle);
    let gone = message(&alice, "bob", &asked_id);
    assert_eq!((gone["deleted"].as_bool(), gone["body"].as_str()), (Some(true), Some("")));
    assert!(gone.get("reactions").is_none(), "a deleted message shows no reactions: {gone}");
    assert!(alice.ok(&["log", "bob"]).contains("bob: (deleted)"));
    // Disappearing messages: set by either member, shown to both, and shown when asked.
    let said = alice.ok(&["disappear", "bob", "1d"]);
    assert!(said.contains("disappear from every member's devices 1 day after they arrive"), "{said}");
    carry(&alice, &bob, &bundle);
    assert!(bob.ok(&["disappear", "alice"]).contains("disappear 1 day after they arrive"));
    assert!(bob.ok(&["log", "alice"]).contains("— alice set messages to disappear 1 day after they arrive —"));
    assert!(!bob.run(&["disappear", "alice", "0m"]).status.success());
    bob.ok(&["disappear", "alice", "off"]);
    carry(&bob, &alice, &bundle);
    assert!(alice.ok(&["disappear", "bob"]).contains("do not disappear"));
    assert!(alice.ok(&["log", "bob"]).contains("— bob turned disappearing messages off —"));
    // Our reaction can be taken back too (on a message still there).
    let withdrawn = json(&bob.ok(&["--json", "react", "alice", &reply["id"].as_str().unwrap()[..12], "--remove"]));
    assert!(withdrawn.get("reactions").is_none(), "{withdrawn}");
}
