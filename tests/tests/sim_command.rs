//! `weft sim` through the real binary: a table, JSON, and a plot.

use std::process::Command;

use weft_tests::weft_binary;

#[test]
fn weft_sim_prints_figures_and_plots_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("line.svg");
    let out = Command::new(weft_binary())
        .args(["--json", "sim", "--scenario", "line", "--seed", "4", "--plot"])
        .arg(&plot)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 7, "ours and six baselines");
    assert!(reports.iter().any(|r| r["strategy"] == "bitchat (ttl 7)"), "today's bitchat is one");
    assert!(reports.iter().any(|r| r["strategy"] == "prophet"), "and PRoPHET");
    let weft = reports.iter().find(|r| r["strategy"] == "weft").unwrap();
    assert_eq!(weft["delivery_ratio"], 1.0);
    assert!(weft["bytes_on_air"].as_u64().unwrap() > 0);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 7);

    let table = Command::new(weft_binary()).args(["sim", "--scenario", "line", "--strategy", "weft"]).output().unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("scenario line") && text.contains("weft"), "{text}");
    let bad = Command::new(weft_binary()).args(["sim", "--scenario", "moon"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown scenario"));

    // The ideal radio and the realistic one, side by side on the same seed.
    let both = Command::new(weft_binary())
        .args(["--json", "sim", "--scenario", "line", "--seed", "4", "--strategy", "weft", "--radio", "both"])
        .output()
        .unwrap();
    assert!(both.status.success(), "{}", String::from_utf8_lossy(&both.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&both.stdout).unwrap();
    let scenarios: Vec<&str> = reports.as_array().unwrap().iter().map(|r| r["scenario"].as_str().unwrap()).collect();
    assert_eq!(scenarios, ["line", "line (realistic radio)"]);
    let bad = Command::new(weft_binary()).args(["sim", "--radio", "perfect"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown radio"));
}
