//! `weft daemon` through the real binary: every method of docs/JSONRPC.md called on its socket,
//! events by subscription, the other `weft` commands going through it, and bad input — malformed
//! requests, unknown methods, huge requests, a second daemon, a stale socket after a crash.
#![cfg(unix)]

use std::io::{Read, Write};
use std::path::Path;

use serde_json::{Value, json};
use weft_tests::Home;
use weft_tests::daemon::{Daemon, Rpc};

/// The methods docs/JSONRPC.md documents (its `### `method`` headings).
fn documented_methods() -> Vec<String> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/JSONRPC.md")).unwrap();
    doc.lines().filter_map(|l| l.strip_prefix("### `")).map(|l| l.split('`').next().unwrap().to_owned()).collect()
}

#[test]
fn every_documented_method_answers_on_the_daemons_socket() {
    let root = tempfile::tempdir().unwrap();
    let (alice, bob, carol) =
        (Home::new(root.path(), "alice"), Home::new(root.path(), "bob"), Home::new(root.path(), "carol"));
    for h in [&alice, &bob, &carol] {
        h.ok(&["init", "--name", h.dir.file_name().unwrap().to_str().unwrap()]);
    }
    let bob_link = bob.ok(&["id", "--link"]).trim().to_owned();
    // Carol writes to alice before alice's daemon runs; her bundle is imported through it.
    carol.ok(&["contact", "add", alice.ok(&["id", "--link"]).trim()]);
    let carol_bundle = root.path().join("carol.weft");
    carol.ok(&["export", "--out", carol_bundle.to_str().unwrap()]);
    // Dave asks too, and is rejected; erin is added and deleted.
    let (dave, erin) = (Home::new(root.path(), "dave"), Home::new(root.path(), "erin"));
    dave.ok(&["init", "--name", "dave"]);
    erin.ok(&["init", "--name", "erin"]);
    let erin_link = erin.ok(&["id", "--link"]).trim().to_owned();
    dave.ok(&["contact", "add", alice.ok(&["id", "--link"]).trim()]);
    let dave_bundle = root.path().join("dave.weft");
    dave.ok(&["export", "--out", dave_bundle.to_str().unwrap()]);

    let _daemon = Daemon::start(&alice);
    let mut rpc = Rpc::connect(&alice.dir).unwrap();
    let mut called = Vec::new();
    let mut call = |rpc: &mut Rpc, method: &str, params: Value| {
        called.push(method.to_owned());
        rpc.ok(method, params)
    };

    let me = call(&mut rpc, "identity", json!({}));
    assert_eq!(me["name"], "alice");
    assert!(me["link"].as_str().unwrap().starts_with("weft://contact/"));
    let added = call(&mut rpc, "contact.add", json!({ "link": bob_link }));
    assert_eq!((added["name"].as_str(), added["status"].as_str()), (Some("bob"), Some("added")));
    assert_eq!(call(&mut rpc, "contact.list", json!({})).as_array().unwrap().len(), 1);
    let number = call(&mut rpc, "contact.safety_number", json!({ "name": "bob" }));
    assert_eq!(number["verified"], false);
    let verified = call(&mut rpc, "contact.verify", json!({ "name": "bob" }));
    assert_eq!(
        (verified["verified"].clone(), verified["safety_number"].clone()),
        (json!(true), number["safety_number"].clone())
    );

    assert_eq!(call(&mut rpc, "subscribe", json!({})), json!({ "subscribed": true }));
    let imported = call(&mut rpc, "import", json!({ "path": carol_bundle, "progress": true }));
    assert_eq!(imported["new_contacts"], json!(["carol"]));
    // Progress came before the answer, and ended with everything done.
    let progress: Vec<Value> = rpc.notifications.iter().filter(|n| n["method"] == "progress").cloned().collect();
    rpc.notifications.retain(|n| n["method"] != "progress");
    let last = progress.last().expect("progress notifications")["params"].clone();
    assert!(last["total"].as_u64().unwrap() >= 1, "{last}");
    assert_eq!((last["done"].clone(), last["id"].is_number()), (last["total"].clone(), true), "{last}");
    assert_eq!(rpc.event(), json!({ "event": "contact_request", "name": "carol" }));
    let accepted = call(&mut rpc, "contact.accept", json!({ "name": "carol" }));
    assert_eq!((accepted["contact"]["name"].as_str(), accepted["was_request"].as_bool()), (Some("carol"), Some(true)));

    let conversations = call(&mut rpc, "conversations", json!({}));
    let carol_chat = conversations.as_array().unwrap().iter().find(|c| c["name"] == "carol").cloned().unwrap();
    assert_eq!((carol_chat["group"].clone(), carol_chat["verified"].clone()), (json!(false), json!(false)));
    let group = call(&mut rpc, "group.create", json!({ "name": "crew" }));
    assert_eq!((group["name"].as_str(), group["members"].as_u64()), (Some("crew"), Some(1)));
    assert_eq!(call(&mut rpc, "group.list", json!({}))[0]["name"], "crew");
    let invited = call(&mut rpc, "group.invite", json!({ "group": "crew", "contact": "carol" }));
    assert_eq!(invited["invited"], "carol");
    let members = call(&mut rpc, "group.members", json!({ "group": "crew" }));
    assert_eq!(members.as_array().unwrap().len(), 2, "{members}");
    let removed = call(&mut rpc, "group.remove", json!({ "group": "crew", "member": "carol" }));
    assert_eq!(removed["removed"], "carol");
    let renamed = call(&mut rpc, "group.rename", json!({ "group": "crew", "name": "team" }));
    assert_eq!((renamed["name"].as_str(), renamed["group_id"].clone()), (Some("team"), group["id"].clone()));
    // Alone in it now, its admin may leave.
    let left = call(&mut rpc, "group.leave", json!({ "group": "team" }));
    assert_eq!(left["group_id"], group["id"]);
    assert_eq!(call(&mut rpc, "group.list", json!({}))[0]["active"], false);

    call(&mut rpc, "import", json!({ "path": dave_bundle }));
    assert_eq!(rpc.event(), json!({ "event": "contact_request", "name": "dave" }));
    let rejected = call(&mut rpc, "contact.reject", json!({ "name": "dave" }));
    assert_eq!(rejected["contact"], "dave");
    let refused = rpc.call("contact.reject", json!({ "name": "bob" })).unwrap_err();
    assert!(refused["message"].as_str().unwrap().contains("waits for an answer"), "{refused}");
    call(&mut rpc, "contact.add", json!({ "link": erin_link }));
    let deleted = call(&mut rpc, "contact.delete", json!({ "name": "erin" }));
    assert_eq!(deleted["contact"], "erin");
    let blocked = call(&mut rpc, "contact.block", json!({ "name": "bob" }));
    assert_eq!((blocked["blocked"].clone(), blocked["account"].clone()), (json!(true), added["account"].clone()));
    assert_eq!(call(&mut rpc, "contact.list", json!({}))[0]["blocked"], true);
    assert_eq!(call(&mut rpc, "contact.unblock", json!({ "name": "bob" }))["blocked"], false);

    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(call(&mut rpc, "send", json!({ "conversation": "bob", "text": format!("hello {i}") }))["id"].clone());
    }
    let last_two = call(&mut rpc, "log", json!({ "conversation": "bob", "limit": 2 }));
    assert_eq!(last_two.as_array().unwrap().iter().map(|m| m["id"].clone()).collect::<Vec<_>>(), sent[3..]);
    let page_above = call(&mut rpc, "log", json!({ "conversation": "bob", "limit": 2, "before": sent[3] }));
    assert_eq!(page_above.as_array().unwrap().iter().map(|m| m["id"].clone()).collect::<Vec<_>>(), sent[1..3]);

    // Replies, reactions, edits and deletes (issue 19), and disappearing messages.
    let reply = call(&mut rpc, "send", json!({ "conversation": "bob", "text": "re", "reply_to": sent[0] }));
    assert_eq!(reply["reply_to"], sent[0]);
    let reacted = call(&mut rpc, "react", json!({ "conversation": "bob", "message": sent[0], "emoji": "👍" }));
    assert_eq!(reacted["reactions"], json!([{ "emoji": "👍", "count": 1, "mine": true }]));
    let edited = call(&mut rpc, "edit", json!({ "conversation": "bob", "message": sent[1], "text": "hello one" }));
    assert_eq!((edited["body"].as_str(), edited["edited"].as_bool()), (Some("hello one"), Some(true)));
    let deleted = call(&mut rpc, "delete", json!({ "conversation": "bob", "message": sent[2] }));
    assert_eq!((deleted["body"].as_str(), deleted["deleted"].as_bool()), (Some(""), Some(true)));
    // A file: sent, shown with its attachment, and saved back whole (ours is here whole).
    let photo_path = root.path().join("map.jpg");
    let photo: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&photo_path, &photo).unwrap();
    let with_file = call(
        &mut rpc,
        "send.file",
        json!({ "conversation": "bob", "path": photo_path.to_str().unwrap(), "caption": "where we meet" }),
    );
    assert_eq!(with_file["body"], "where we meet");
    assert_eq!(
        (&with_file["attachment"]["name"], &with_file["attachment"]["mime"], &with_file["attachment"]["complete"]),
        (&json!("map.jpg"), &json!("image/jpeg"), &json!(true))
    );
    let file_id = with_file["id"].as_str().unwrap().to_owned();
    let shown = call(&mut rpc, "attachment", json!({ "message": &file_id[..10] }));
    assert_eq!((shown["size"].clone(), shown["message"].clone()), (json!(150_000), json!(file_id)));
    let saved_dir = root.path().join("saved");
    std::fs::create_dir(&saved_dir).unwrap();
    let saved = call(&mut rpc, "attachment.save", json!({ "message": file_id, "path": saved_dir.to_str().unwrap() }));
    assert_eq!(std::fs::read(saved_dir.join("map.jpg")).unwrap(), photo, "{saved}");
    // Saved into the folder again: never over the file already there.
    let again = rpc.ok("attachment.save", json!({ "message": file_id, "path": saved_dir.to_str().unwrap() }));
    assert_eq!(again["saved_to"], json!(saved_dir.join("map (1).jpg").to_str().unwrap()));
    assert_eq!(std::fs::read_dir(&saved_dir).unwrap().count(), 2, "no partial file left behind");
    let missing_file = rpc.call("send.file", json!({ "conversation": "bob", "path": "/nonexistent/x" })).unwrap_err();
    assert!(missing_file.to_string().contains("/nonexistent/x"), "{missing_file}");
    // The nearby channel: a session of its own; this daemon drives no radio, so a post is
    // refused with a clear error (the Python test posts over a radio).
    assert_eq!(call(&mut rpc, "nearby", json!({})), json!([]));
    let session = call(&mut rpc, "nearby.session", json!({ "nick": "alice" }));
    let sender = session["sender"].as_str().unwrap().to_owned();
    assert_eq!(sender.len(), 64);
    assert_ne!(json!(sender), me["account"], "a nearby key is never the account's");
    let muted = call(&mut rpc, "nearby.mute", json!({ "sender": sender, "block": true }));
    assert_eq!(muted["blocked"], true);
    let refused_as_documented = ["nearby.post"];
    let no_radio = rpc.call("nearby.post", json!({ "text": "anyone?" })).unwrap_err();
    assert!(no_radio.to_string().contains("Bluetooth mesh"), "{no_radio}");
    let refused = rpc.call("react", json!({ "conversation": "bob", "message": "abc", "emoji": "👍" })).unwrap_err();
    assert!(refused["message"].as_str().unwrap().contains("not a message id"), "{refused}");
    assert_eq!(call(&mut rpc, "disappearing", json!({ "conversation": "bob" })), json!({ "conversation": "bob" }));
    let timer = call(&mut rpc, "disappearing.set", json!({ "conversation": "bob", "keep_ms": 86_400_000 }));
    assert_eq!((timer["kind"].as_str(), timer["body"].as_str()), (Some("timer"), Some("86400000")));
    assert_eq!(call(&mut rpc, "disappearing", json!({ "conversation": "bob" }))["keep_ms"], 86_400_000);

    // A message on its way is not sent twice (an expired one is: core/tests/queued.rs).
    let refused = rpc.call("resend", json!({ "message": sent[0] })).unwrap_err();
    assert!(refused["message"].as_str().unwrap().contains("still on its way"), "{refused}");
    let unread = call(&mut rpc, "read", json!({ "conversation": "carol" }));
    assert_eq!(unread, json!({ "conversation": "carol", "marked": 0 }));
    assert_eq!(call(&mut rpc, "keys.update", json!({ "conversation": "carol" })), json!({ "updated": 1 }));
    assert_eq!(
        call(&mut rpc, "retention", json!({ "conversation": "bob" })),
        json!({ "conversation": "bob", "keep_ms": null })
    );
    let kept = call(&mut rpc, "retention.set", json!({ "conversation": "bob", "keep_ms": 86_400_000 }));
    assert_eq!(kept, json!({ "conversation": "bob", "keep_ms": 86_400_000, "deleted": 0 }));
    let refused = rpc.call("retention.set", json!({ "conversation": "bob", "keep_ms": 0 })).unwrap_err();
    assert!(refused["message"].as_str().unwrap().contains("positive"), "{refused}");
    assert_eq!(call(&mut rpc, "settings", json!({})), json!({ "read_receipts": true }));
    assert_eq!(call(&mut rpc, "settings.set", json!({ "read_receipts": false })), json!({ "read_receipts": false }));
    assert_eq!(last_two[0]["state"], "queued", "{last_two}");

    let bundle = root.path().join("alice.weft");
    let exported = call(&mut rpc, "export", json!({ "path": bundle }));
    assert_eq!(exported["bytes"].as_u64(), Some(std::fs::metadata(&bundle).unwrap().len()));
    // A new device: a link, a request made from it, its code, the grant; then revoked.
    let devices = call(&mut rpc, "device.list", json!({}));
    assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");
    assert_eq!(call(&mut rpc, "device.cancel", json!({})), json!({ "cancelled": true }));
    let link = call(&mut rpc, "device.link", json!({}))["link"].as_str().unwrap().to_owned();
    let mut rng = weft_core::crypto::OsEntropy;
    let laptop = weft_core::identity::DeviceKeys::generate(&mut rng).unwrap();
    let ticket = weft_core::devices::linking::Ticket::from_link(&link).unwrap();
    let now = weft_core::clock::system_clock()();
    let joining = weft_core::devices::linking::Joining::start(ticket, &laptop, "laptop", now, &mut rng).unwrap();
    let (request, grant) = (root.path().join("request.weft"), root.path().join("grant.weft"));
    std::fs::write(&request, joining.request()).unwrap();
    let asked = call(&mut rpc, "device.request", json!({ "request": request }));
    assert_eq!((asked["name"].as_str(), asked["code"].as_str()), (Some("laptop"), Some(&*joining.code().to_string())));
    let accepted =
        call(&mut rpc, "device.accept", json!({ "request": request, "grant": grant, "code": joining.code().0 }));
    assert_eq!(accepted["granted"], true);
    assert!(joining.open_grant(&std::fs::read(&grant).unwrap()).is_ok());
    // Over the network: nothing arrived for a fresh link, so a code grants nothing and ends it.
    call(&mut rpc, "device.link", json!({}));
    assert_eq!(call(&mut rpc, "device.arrived", json!({})), json!([]));
    let refused = rpc.call("device.grant", json!({ "code": 123456 })).unwrap_err();
    assert!(refused["message"].as_str().unwrap().contains("cancelled"), "{refused}");
    let revoked = call(&mut rpc, "device.revoke", json!({ "device": "laptop" }));
    assert_eq!(revoked["name"], "laptop");
    let replaced = call(&mut rpc, "identity.replace_link", json!({}));
    assert_ne!(replaced["link"], me["link"], "a new link");
    assert_eq!(replaced["fingerprint"], me["fingerprint"], "the same account");

    let status = call(&mut rpc, "status", json!({}));
    assert_eq!((status["running"].clone(), status["outbox"].as_u64().is_some()), (json!(true), true), "{status}");
    called.push("resend".into());
    called.push("device.grant".into());
    called.push("unsubscribe".into());
    assert_eq!(rpc.ok("unsubscribe", json!({})), json!({ "subscribed": false }));
    // Called last, below: it erases the account and the daemon exits.
    called.push("wipe".into());

    // Every documented method was called here, and nothing undocumented.
    called.extend(refused_as_documented.map(str::to_owned));
    called.sort();
    called.dedup();
    let mut documented = documented_methods();
    documented.sort();
    assert_eq!(called, documented, "docs/JSONRPC.md and this test disagree");

    // The other weft commands go through the daemon (the home is locked by it, so they could
    // not open it themselves).
    let listed: Value = serde_json::from_str(&alice.ok(&["--json", "contact", "list"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let log = alice.ok(&["log", "bob", "--limit", "4"]);
    assert!(log.contains("alice: hello 4"), "{log}");
    assert!(log.contains("[file map.jpg, 146.5 KiB] where we meet"), "{log}");
    let sent = alice.ok(&["send", "bob", "from the command line"]);
    assert!(sent.contains("through the running node"), "{sent}");

    // The panic wipe: answered, then the daemon is gone and so is the account.
    let wiped = rpc.ok("wipe", json!({}));
    assert!(wiped["files"].as_u64().unwrap() >= 2, "{wiped}");
    weft_tests::wait_until("the daemon's exit after the wipe", 10, || !alice.dir.join("weft.sock").exists());
    assert!(!alice.dir.join("weft.db").exists() && !alice.dir.join("weft.kdf").exists());
}

#[test]
fn bad_input_gets_clear_errors_and_the_daemon_stays_up() {
    let root = tempfile::tempdir().unwrap();
    let alice = Home::new(root.path(), "alice");
    alice.ok(&["init", "--name", "alice"]);
    let daemon = Daemon::start(&alice);
    let mut rpc = Rpc::connect(&alice.dir).unwrap();
    let code = |response: &Value| response["error"]["code"].as_i64();

    // Only the owner can reach the socket: the home is 0700 and the socket 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&alice.dir), mode(&alice.dir.join("weft.sock"))), (0o700, 0o600));

    rpc.send_line(b"{not json");
    assert_eq!(code(&rpc.response()), Some(-32700));
    rpc.send_line(&[0xff, 0xfe, 0xfd]);
    assert_eq!(code(&rpc.response()), Some(-32700));
    rpc.send_line(br#"[{"jsonrpc":"2.0","id":1,"method":"status"}]"#);
    assert_eq!(code(&rpc.response()), Some(-32600));
    rpc.send_line(br#"{"jsonrpc":"1.0","id":2,"method":"status"}"#);
    assert_eq!(code(&rpc.response()), Some(-32600));
    let unknown = rpc.call("contact.delete_everything", json!({})).unwrap_err();
    assert_eq!(unknown["code"], -32601);
    assert!(unknown["message"].as_str().unwrap().contains("contact.list"), "names the methods: {unknown}");
    let missing = rpc.call("send", json!({ "conversation": "bob" })).unwrap_err();
    assert_eq!(missing["code"], -32602);
    assert!(missing["message"].as_str().unwrap().contains("\"text\" is missing"), "{missing}");
    let wrong_type = rpc.call("log", json!({ "conversation": "bob", "limit": "ten" })).unwrap_err();
    assert_eq!(wrong_type["code"], -32602);
    let relative = rpc.call("export", json!({ "path": "relative.weft" })).unwrap_err();
    assert_eq!(relative["code"], -32602);
    let not_found = rpc.call("send", json!({ "conversation": "nobody", "text": "hi" })).unwrap_err();
    assert_eq!((not_found["code"].as_i64(), not_found["data"]["exit_code"].as_u64()), (Some(-32000), Some(5)));
    assert!(not_found["data"]["hint"].as_str().unwrap().contains("weft contact list"), "says what to do: {not_found}");
    // The command line passes the node's hint on.
    let unknown = alice.run(&["send", "nobody", "hi"]);
    assert_eq!(unknown.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("hint: `weft contact list`"));
    let bad_link = rpc.call("contact.add", json!({ "link": "weft://contact/garbage" })).unwrap_err();
    assert_eq!(bad_link["code"], -32000);
    // A notification (no id) is carried out and not answered: the next answer is the next call's.
    rpc.send_line(br#"{"jsonrpc":"2.0","method":"status"}"#);
    assert_eq!(rpc.ok("identity", json!({}))["name"], "alice");

    // A huge request is refused without being read into memory, and that connection ends.
    let mut huge = Rpc::connect(&alice.dir).unwrap();
    let _ = huge.writer.write_all(&vec![b'x'; 1 << 20]);
    let answer = huge.response();
    assert_eq!(code(&answer), Some(-32600), "{answer}");
    let mut rest = Vec::new();
    assert_eq!(huge.reader.read_to_end(&mut rest).unwrap_or(0), 0, "the connection is closed");

    // The daemon is still up and nothing was changed.
    let mut again = Rpc::connect(&alice.dir).unwrap();
    assert_eq!(again.ok("contact.list", json!({})), json!([]));

    // A second daemon on the same home is refused with the home-busy exit code.
    let second = alice.run(&["daemon", "--no-mdns", "--no-ble", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert_eq!(second.status.code(), Some(6), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another weft process is using"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    again.ok("status", json!({}));

    // After a crash the socket file stays behind: commands open the home themselves, and a new
    // daemon takes the socket over.
    daemon.crash();
    assert!(alice.dir.join("weft.sock").exists(), "the crash left its socket");
    let status: Value = serde_json::from_str(&alice.ok(&["--json", "status"])).unwrap();
    assert_eq!(status["running"], false, "{status}");
    let _daemon = Daemon::start(&alice);
    let status: Value = serde_json::from_str(&alice.ok(&["--json", "status"])).unwrap();
    assert_eq!(status["running"], true, "{status}");
}
