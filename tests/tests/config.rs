//! The machine's config file through the real binary: it names the home and how the node joins
//! the network; flags win over it; a broken one is refused with its line, and `weft config`
//! still works to mend it.

use std::process::{Command, Stdio};

use weft_tests::{Home, weft_binary};

/// `weft --config FILE ARGS...` with no home given, so the config's home is the one used.
fn weft(config: &std::path::Path, home: &Home, args: &[&str]) -> std::process::Output {
    Command::new(weft_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("WEFT_PASSPHRASE", &home.passphrase)
        .env_remove("WEFT_HOME")
        .output()
        .expect("running weft")
}

#[test]
fn the_config_names_the_home_and_flags_win_over_it() {
    let root = tempfile::tempdir().unwrap();
    let home = Home::new(root.path(), "alice");
    let config = root.path().join("config.toml");
    std::fs::write(&config, format!("home = {:?}\n", home.dir.to_str().unwrap())).unwrap();

    let init = weft(&config, &home, &["init", "--name", "alice"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    assert!(home.dir.join("weft.db").exists(), "the account is made in the config's home");
    let id = weft(&config, &home, &["--json", "id"]);
    assert!(String::from_utf8_lossy(&id.stdout).contains("\"alice\""));

    let elsewhere = root.path().join("nobody");
    let other = weft(&config, &home, &["--home", elsewhere.to_str().unwrap(), "id"]);
    assert_eq!(other.status.code(), Some(4), "--home wins over the config: no account there");
}

#[test]
fn weft_run_joins_the_network_as_the_config_says() {
    let root = tempfile::tempdir().unwrap();
    let home = Home::new(root.path(), "bob");
    home.ok(&["init", "--name", "bob"]);
    let config = root.path().join("config.toml");
    std::fs::write(&config, "[network]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nmdns = false\nbluetooth = false\n")
        .unwrap();
    let mut child = home
        .command(&["--config", config.to_str().unwrap(), "--json", "run"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let started: serde_json::Value =
        serde_json::Deserializer::from_reader(stdout).into_iter().next().expect("a start report").unwrap();
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let listening = started["listening"].as_array().unwrap();
    assert!(!listening.is_empty());
    assert!(listening.iter().all(|a| a.as_str().unwrap().starts_with("/ip4/127.0.0.1/tcp/")), "{listening:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("Bluetooth mesh off"), "bluetooth = false skips the radio: {stderr}");
}

#[test]
fn a_broken_config_is_refused_with_its_line_and_weft_config_still_works() {
    let root = tempfile::tempdir().unwrap();
    let home = Home::new(root.path(), "carol");
    home.ok(&["init", "--name", "carol"]);
    let config = root.path().join("config.toml");
    std::fs::write(&config, "[network]\nmdns = false\nbootstrapp = []\n").unwrap();
    let config_arg = config.to_str().unwrap();

    let refused = home.run(&["--config", config_arg, "status"]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains(config_arg) && stderr.contains("line 3") && stderr.contains("bootstrapp"), "{stderr}");

    let path = home.run(&["--config", config_arg, "config", "path"]);
    assert!(path.status.success());
    assert!(String::from_utf8_lossy(&path.stdout).contains(config_arg));
    let init = home.run(&["--config", config_arg, "config", "init"]);
    assert!(!init.status.success(), "init never overwrites");
    assert!(std::fs::read_to_string(&config).unwrap().contains("bootstrapp"));

    std::fs::remove_file(&config).unwrap();
    home.ok(&["--config", config_arg, "config", "init"]);
    home.ok(&["--config", config_arg, "status"]);
    let named_but_missing = home.run(&["--config", root.path().join("none.toml").to_str().unwrap(), "status"]);
    assert_eq!(named_but_missing.status.code(), Some(2), "a config asked for by name must exist");
}
