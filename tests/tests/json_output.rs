//! `--json` on every command that prints data: each prints one JSON document, for scripts.

use weft_tests::Home;

fn json(home: &Home, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = home.ok(&all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("weft {args:?} printed no JSON ({e}):\n{out}"))
}

#[test]
fn every_command_that_prints_data_prints_json() {
    let root = tempfile::tempdir().unwrap();
    let (alice, bob) = (Home::new(root.path(), "alice"), Home::new(root.path(), "bob"));
    assert_eq!(json(&alice, &["init", "--name", "alice"])["name"], "alice");
    json(&bob, &["init", "--name", "bob"]);
    let link = json(&bob, &["id"])["link"].as_str().unwrap().to_owned();
    assert_eq!(json(&alice, &["contact", "add", &link])["name"], "bob");
    assert!(json(&alice, &["contact", "list"]).is_array());
    assert!(json(&alice, &["contact", "verify", "bob", "--yes"])["safety_number"].is_string());
    let bundle = root.path().join("alice.weft");
    let bundle = bundle.to_str().unwrap();
    assert!(json(&alice, &["send", "bob", "hello"])["id"].is_string());
    assert!(json(&alice, &["export", "--out", bundle])["bytes"].is_number());
    assert_eq!(json(&bob, &["import", bundle])["new_contacts"], serde_json::json!(["alice"]));
    assert_eq!(json(&bob, &["contact", "accept", "alice"])["contact"]["name"], "alice");
    assert!(json(&bob, &["log", "alice"]).is_array());
    assert!(json(&bob, &["read", "alice"])["marked"].is_number());
    assert_eq!(json(&bob, &["update-keys", "alice"])["updated"], 1);
    assert!(json(&bob, &["retention", "alice"])["keep_ms"].is_null());
    assert_eq!(json(&bob, &["retention", "alice", "1w"])["keep_ms"], 7 * 24 * 3_600_000);
    assert!(json(&bob, &["retention", "alice", "forever"])["keep_ms"].is_null());
    assert!(json(&alice, &["group", "create", "crew"])["name"] == "crew");
    json(&alice, &["group", "invite", "crew", "bob"]);
    assert!(json(&alice, &["group", "list"]).is_array());
    assert!(json(&alice, &["group", "members", "crew"]).is_array());
    json(&alice, &["group", "remove", "crew", "bob"]);
    assert!(json(&alice, &["settings"])["read_receipts"].is_boolean());
    assert!(json(&alice, &["settings", "--read-receipts", "off"])["read_receipts"] == false);
    assert!(json(&alice, &["status"])["outbox"].is_number());
    assert!(json(&alice, &["passphrase", "status"])["remembered"].is_boolean());
    assert!(json(&alice, &["config", "path"])["path"].is_string());
    assert!(json(&alice, &["config", "show"]).is_object());
}
